use super::fake::FakeKernel;
use super::*;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn local(mode: Mode) -> Local {
    Local {
        node_name: "n0".into(),
        mode,
        pod_cidr: cidr("10.42.0.0/24"),
        cluster_cidr: cidr("10.42.0.0/16"),
        public_ip: ip("192.168.1.10"),
        uplink: Some(Uplink {
            index: 2,
            name: "eth0".into(),
            mtu: 1500,
        }),
    }
}

fn peer(n: u8) -> Peer {
    let name = format!("n{n}");
    Peer {
        vtep_mac: Some(vtep_mac(&name)),
        name,
        pod_cidr: cidr(&format!("10.42.{n}.0/24")),
        public_ip: ip(&format!("192.168.1.{}", 10 + n)),
    }
}

fn machine() -> FakeKernel {
    FakeKernel::with_uplink(ip("192.168.1.10"))
}

fn device(kernel: &FakeKernel) -> Link {
    kernel
        .link(VXLAN_DEVICE)
        .cloned()
        .expect("the vxlan device")
}

#[test]
fn macs_print_and_parse_as_flannel_writes_them() {
    let mac = [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f];
    assert_eq!(format_mac(mac), "0a:1b:2c:3d:4e:5f");
    assert_eq!(parse_mac("0A:1b:2c:3d:4e:5f"), Some(mac));
    assert_eq!(parse_mac("0a:1b:2c:3d:4e"), None);
    assert_eq!(parse_mac("0a:1b:2c:3d:4e:5f:00"), None);
    assert_eq!(parse_mac("0a:1b:2c:3d:4e:zz"), None);
}

#[test]
fn the_vtep_mac_is_stable_local_and_unicast() {
    let mac = vtep_mac("n1");
    assert_eq!(mac, vtep_mac("n1"));
    assert_ne!(mac, vtep_mac("n2"));
    assert_eq!(mac[0] & 0x03, 0x02, "{}", format_mac(mac));
}

#[test]
fn a_lone_node_makes_no_device_and_no_routes() {
    let mut kernel = machine();
    let changes = reconcile(&mut kernel, &local(Mode::Vxlan), &[]).unwrap();
    assert_eq!(changes, 0);
    assert_eq!(kernel.writes, 0);
    assert!(kernel.link(VXLAN_DEVICE).is_none());
}

#[test]
fn vxlan_programs_a_route_neighbour_and_fdb_entry_per_peer() {
    let mut kernel = machine();
    let peers = [peer(1), peer(2)];
    reconcile(&mut kernel, &local(Mode::Vxlan), &peers).unwrap();

    let dev = device(&kernel);
    assert_eq!(dev.mtu, 1450);
    assert_eq!(dev.mac, Some(vtep_mac("n0")));
    assert!(dev.up);
    assert_eq!(dev.alias.as_deref(), Some("skiff node n0"));
    assert_eq!(
        dev.vxlan,
        Some(Vxlan {
            vni: 1,
            port: 8472,
            local: Some(ip("192.168.1.10")),
            link: Some(2)
        })
    );
    let own: Vec<_> = kernel
        .addresses
        .iter()
        .filter(|a| a.index == dev.index)
        .collect();
    assert_eq!(own.len(), 1);
    assert_eq!((own[0].ip, own[0].prefix), (ip("10.42.0.0"), 32));

    let routes: Vec<Route> = kernel.routes.iter().copied().collect();
    assert_eq!(
        routes,
        [
            Route {
                dst: (ip("10.42.1.0"), 24),
                gateway: ip("10.42.1.0"),
                oif: Some(dev.index),
                onlink: true
            },
            Route {
                dst: (ip("10.42.2.0"), 24),
                gateway: ip("10.42.2.0"),
                oif: Some(dev.index),
                onlink: true
            }
        ]
    );
    assert!(kernel.neighbours.contains(&(
        dev.index,
        Neighbour {
            ip: ip("10.42.1.0"),
            mac: vtep_mac("n1")
        }
    )));
    assert!(kernel.fdb.contains(&(
        dev.index,
        Fdb {
            mac: vtep_mac("n2"),
            dst: ip("192.168.1.12")
        }
    )));
    assert_eq!((kernel.neighbours.len(), kernel.fdb.len()), (2, 2));
}

#[test]
fn a_second_pass_changes_nothing() {
    let mut kernel = machine();
    let peers = [peer(1), peer(2)];
    assert!(reconcile(&mut kernel, &local(Mode::Vxlan), &peers).unwrap() > 0);
    let writes = kernel.writes;
    assert_eq!(
        reconcile(&mut kernel, &local(Mode::Vxlan), &peers).unwrap(),
        0
    );
    assert_eq!(kernel.writes, writes);
}

#[test]
fn a_node_that_goes_away_loses_its_route_neighbour_and_fdb_entry() {
    let mut kernel = machine();
    reconcile(&mut kernel, &local(Mode::Vxlan), &[peer(1), peer(2)]).unwrap();
    reconcile(&mut kernel, &local(Mode::Vxlan), &[peer(2)]).unwrap();
    let dev = device(&kernel);
    assert_eq!(kernel.routes.len(), 1);
    assert_eq!(kernel.routes.iter().next().unwrap().dst.0, ip("10.42.2.0"));
    assert_eq!(
        kernel
            .neighbours
            .iter()
            .map(|(_, n)| n.ip)
            .collect::<Vec<_>>(),
        [ip("10.42.2.0")]
    );
    assert_eq!(
        kernel
            .fdb
            .iter()
            .map(|(i, f)| (*i, f.dst))
            .collect::<Vec<_>>(),
        [(dev.index, ip("192.168.1.12"))]
    );
    // The last one gone: the device goes, with all that hung off it.
    reconcile(&mut kernel, &local(Mode::Vxlan), &[]).unwrap();
    assert!(kernel.link(VXLAN_DEVICE).is_none());
    assert!(kernel.routes.is_empty() && kernel.fdb.is_empty() && kernel.neighbours.is_empty());
}

#[test]
fn a_peer_that_moves_gets_its_fdb_entry_replaced() {
    let mut kernel = machine();
    reconcile(&mut kernel, &local(Mode::Vxlan), &[peer(1)]).unwrap();
    let moved = Peer {
        public_ip: ip("192.168.1.99"),
        ..peer(1)
    };
    reconcile(&mut kernel, &local(Mode::Vxlan), &[moved]).unwrap();
    let dsts: Vec<_> = kernel.fdb.iter().map(|(_, f)| f.dst).collect();
    assert_eq!(dsts, [ip("192.168.1.99")]);
}

#[test]
fn peers_that_cannot_or_need_not_be_routed_are_left_out() {
    let mut kernel = machine();
    let no_mac = Peer {
        vtep_mac: None,
        ..peer(1)
    };
    // Shares this namespace: its public IP is one of ours.
    let here = Peer {
        public_ip: ip("192.168.1.10"),
        ..peer(2)
    };
    let outside = Peer {
        pod_cidr: cidr("10.99.3.0/24"),
        ..peer(3)
    };
    let clash = Peer {
        pod_cidr: cidr("10.42.0.0/24"),
        ..peer(4)
    };
    let loopback = Peer {
        public_ip: ip("127.0.0.2"),
        ..peer(6)
    };
    let me = Peer {
        name: "n0".into(),
        ..peer(5)
    };
    let peers = [no_mac, here, outside, clash, loopback, me];
    reconcile(&mut kernel, &local(Mode::Vxlan), &peers).unwrap();
    assert_eq!(kernel.writes, 0);
    assert!(kernel.link(VXLAN_DEVICE).is_none());
}

#[test]
fn a_foreign_device_is_adopted_when_needed_and_left_alone_otherwise() {
    let mut kernel = machine();
    kernel.links.push(Link {
        index: 7,
        name: VXLAN_DEVICE.into(),
        mac: Some([2, 2, 2, 2, 2, 2]),
        mtu: 1450,
        up: true,
        alias: None,
        vxlan: Some(Vxlan {
            vni: 1,
            port: 8472,
            local: Some(ip("192.168.1.10")),
            link: Some(2),
        }),
    });
    reconcile(&mut kernel, &local(Mode::Vxlan), &[]).unwrap();
    assert_eq!(device(&kernel).index, 7, "not ours, not needed: kept");

    reconcile(&mut kernel, &local(Mode::Vxlan), &[peer(1)]).unwrap();
    let dev = device(&kernel);
    assert_eq!(dev.index, 7, "adopted, not re-created");
    assert_eq!(dev.mac, Some(vtep_mac("n0")));
    assert_eq!(dev.alias.as_deref(), Some("skiff node n0"));
}

#[test]
fn a_device_with_other_settings_is_replaced() {
    let mut kernel = machine();
    kernel.links.push(Link {
        index: 7,
        name: VXLAN_DEVICE.into(),
        mtu: 1450,
        vxlan: Some(Vxlan {
            vni: 1,
            port: 4789,
            local: None,
            link: None,
        }),
        ..Link::default()
    });
    reconcile(&mut kernel, &local(Mode::Vxlan), &[peer(1)]).unwrap();
    let dev = device(&kernel);
    assert_ne!(dev.index, 7);
    assert_eq!(dev.vxlan.unwrap().port, 8472);
}

#[test]
fn host_gw_routes_each_pod_cidr_through_its_node() {
    let mut kernel = machine();
    reconcile(&mut kernel, &local(Mode::HostGw), &[peer(1), peer(2)]).unwrap();
    assert!(kernel.link(VXLAN_DEVICE).is_none());
    let routes: Vec<_> = kernel
        .routes
        .iter()
        .map(|r| (r.dst, r.gateway, r.onlink))
        .collect();
    assert_eq!(
        routes,
        [
            ((ip("10.42.1.0"), 24), ip("192.168.1.11"), false),
            ((ip("10.42.2.0"), 24), ip("192.168.1.12"), false)
        ]
    );
    let writes = kernel.writes;
    assert_eq!(
        reconcile(&mut kernel, &local(Mode::HostGw), &[peer(1), peer(2)]).unwrap(),
        0
    );
    assert_eq!(kernel.writes, writes);
    reconcile(&mut kernel, &local(Mode::HostGw), &[peer(2)]).unwrap();
    assert_eq!(kernel.routes.len(), 1);
}

#[test]
fn switching_from_vxlan_to_host_gw_removes_the_device() {
    let mut kernel = machine();
    reconcile(&mut kernel, &local(Mode::Vxlan), &[peer(1)]).unwrap();
    reconcile(&mut kernel, &local(Mode::HostGw), &[peer(1)]).unwrap();
    assert!(kernel.link(VXLAN_DEVICE).is_none());
    assert_eq!(
        kernel.routes.iter().next().unwrap().gateway,
        ip("192.168.1.11")
    );
}

#[test]
fn routes_outside_the_cluster_cidr_are_never_touched() {
    let mut kernel = machine();
    let foreign = Route {
        dst: (ip("10.99.0.0"), 16),
        gateway: ip("192.168.1.1"),
        oif: Some(2),
        onlink: false,
    };
    kernel.routes.insert(foreign);
    reconcile(&mut kernel, &local(Mode::HostGw), &[]).unwrap();
    assert!(kernel.routes.contains(&foreign));
}

#[test]
fn cleanup_removes_the_device_and_skiffs_routes() {
    let mut kernel = machine();
    reconcile(&mut kernel, &local(Mode::HostGw), &[peer(1)]).unwrap();
    let mut vx = machine();
    reconcile(&mut vx, &local(Mode::Vxlan), &[peer(1)]).unwrap();
    assert!(cleanup(&mut kernel, Some(cidr("10.42.0.0/16"))).unwrap() > 0);
    assert!(kernel.routes.is_empty());
    cleanup(&mut vx, None).unwrap();
    assert!(vx.link(VXLAN_DEVICE).is_none() && vx.routes.is_empty());
}

#[test]
fn wireguard_missing_names_the_fix() {
    let mut kernel = machine();
    let err = check_wireguard(&mut kernel).unwrap_err().to_string();
    assert!(err.contains("modprobe wireguard"), "{err}");
    assert!(err.contains("--flannel-backend=vxlan"), "{err}");
    kernel.has_wireguard = true;
    check_wireguard(&mut kernel).unwrap();
    assert!(
        kernel.link(WIREGUARD_PROBE).is_none(),
        "the probe is removed"
    );
}

#[test]
fn the_uplink_is_the_named_interface_or_the_one_holding_the_node_ip() {
    let mut kernel = machine();
    kernel.links.push(Link {
        index: 3,
        name: "wg-lan".into(),
        mtu: 1420,
        ..Link::default()
    });
    kernel.addresses.push(Address {
        index: 3,
        ip: ip("10.8.0.5"),
        prefix: 24,
    });
    let (uplink, public) = find_uplink(&mut kernel, None, ip("192.168.1.10")).unwrap();
    assert_eq!(
        (uplink.unwrap().name, public),
        ("eth0".into(), ip("192.168.1.10"))
    );
    let (uplink, public) = find_uplink(&mut kernel, Some("wg-lan"), ip("192.168.1.10")).unwrap();
    assert_eq!((uplink.unwrap().mtu, public), (1420, ip("10.8.0.5")));
    let err = find_uplink(&mut kernel, Some("nope0"), ip("192.168.1.10")).unwrap_err();
    assert!(err.to_string().contains("--flannel-iface nope0"), "{err}");
    assert_eq!(pod_mtu(Mode::Vxlan, 1500), 1450);
    assert_eq!(pod_mtu(Mode::HostGw, 1500), 1500);
}
