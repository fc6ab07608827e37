//! The rtnetlink [`Kernel`] against the real kernel (root): two network namespaces
//! joined by a veth pair, each node's overlay programmed from inside its namespace,
//! and pings between addresses in the two pod CIDRs. The namespaces (and with them
//! every link, route and entry in them) are deleted at the end, also on failure.

use std::net::Ipv4Addr;
use std::process::Command;

use super::netlink::NetlinkKernel;
use super::*;

/// Two named network namespaces (`ip netns`), deleted on drop.
struct Pair {
    names: [String; 2],
}

impl Drop for Pair {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `192.168.<net>.1` in namespace a and `.2` in b, pod addresses `10.42.<n>.1/32` on lo.
fn pair(tag: &str, net: u8) -> Pair {
    let id = std::process::id();
    let pair = Pair {
        names: [
            format!("skiff-ovl-{tag}a-{id}"),
            format!("skiff-ovl-{tag}b-{id}"),
        ],
    };
    for name in &pair.names {
        ip(&["netns", "add", name]);
    }
    let [a, b] = &pair.names;
    ip(&[
        "link", "add", "uplink", "netns", a, "type", "veth", "peer", "name", "uplink", "netns", b,
    ]);
    for (n, ns) in [(1, a), (2, b)] {
        let own = format!("192.168.{net}.{n}/24");
        let pod = format!("10.42.{n}.1/32");
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", "uplink", "up"],
            vec!["addr", "add", &own, "dev", "uplink"],
            vec!["addr", "add", &pod, "dev", "lo"],
        ] {
            let (ok, out) = in_ns(ns, &[&["ip"], &args[..]].concat());
            assert!(ok, "{out}");
        }
    }
    pair
}

/// Runs `f` on a thread inside namespace `ns`.
fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn node(n: u8, net: u8) -> (Peer, Ipv4Addr) {
    let name = format!("node{n}");
    let public: Ipv4Addr = format!("192.168.{net}.{n}").parse().unwrap();
    let peer = Peer {
        vtep_mac: Some(vtep_mac(&name)),
        name,
        pod_cidr: format!("10.42.{n}.0/24").parse().unwrap(),
        public_ip: public,
    };
    (peer, public)
}

fn program(ns: &str, mode: Mode, n: u8, net: u8, peers: Vec<Peer>) -> usize {
    inside(ns, move || {
        let mut kernel = NetlinkKernel::open().unwrap();
        let (me, public) = node(n, net);
        let (uplink, public_ip) = find_uplink(&mut kernel, None, public).unwrap();
        assert_eq!(uplink.as_ref().map(|u| u.name.as_str()), Some("uplink"));
        let local = Local {
            node_name: me.name,
            mode,
            pod_cidr: me.pod_cidr,
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            public_ip,
            uplink,
        };
        reconcile(&mut kernel, &local, &peers).unwrap()
    })
}

fn pings(ns: &str, from: &str, to: &str) -> bool {
    in_ns(ns, &["ping", "-c", "1", "-W", "2", "-I", from, to]).0
}

#[test]
#[ignore = "needs root"]
fn vxlan_carries_pod_traffic_between_two_namespaces() {
    let net = 77;
    let pair = pair("vx", net);
    let [a, b] = pair.names.clone();
    let (p1, _) = node(1, net);
    let (p2, _) = node(2, net);
    assert!(!pings(&a, "10.42.1.1", "10.42.2.1"), "no route yet");

    assert!(program(&a, Mode::Vxlan, 1, net, vec![p1.clone(), p2.clone()]) > 0);
    assert!(program(&b, Mode::Vxlan, 2, net, vec![p1.clone(), p2.clone()]) > 0);
    let (_, link) = in_ns(&a, &["ip", "-d", "link", "show", VXLAN_DEVICE]);
    assert!(
        link.contains("vxlan id 1") && link.contains("dstport 8472") && link.contains("mtu 1450"),
        "{link}"
    );
    assert!(link.contains(&format_mac(vtep_mac("node1"))), "{link}");
    let (_, route) = in_ns(&a, &["ip", "route", "show", "10.42.2.0/24"]);
    assert!(
        route.contains("via 10.42.2.0 dev flannel.1") && route.contains("onlink"),
        "{route}"
    );
    let (_, fdb) = in_ns(&a, &["bridge", "fdb", "show", "dev", VXLAN_DEVICE]);
    assert!(
        fdb.contains(&format!(
            "{} dst 192.168.{net}.2",
            format_mac(vtep_mac("node2"))
        )),
        "{fdb}"
    );

    assert!(
        pings(&a, "10.42.1.1", "10.42.2.1"),
        "a → b across the vxlan"
    );
    assert!(
        pings(&b, "10.42.2.1", "10.42.1.1"),
        "b → a across the vxlan"
    );
    assert_eq!(
        program(&a, Mode::Vxlan, 1, net, vec![p1.clone(), p2.clone()]),
        0,
        "idempotent"
    );

    // node2 goes away: a drops what it had for it, and the device with its last peer.
    program(&a, Mode::Vxlan, 1, net, vec![p1.clone()]);
    let (_, links) = in_ns(&a, &["ip", "link", "show"]);
    assert!(!links.contains(VXLAN_DEVICE), "{links}");
    assert!(!pings(&a, "10.42.1.1", "10.42.2.1"));

    // Cleanup on b removes the device and skiff's routes.
    let removed = inside(&b, || {
        cleanup(&mut NetlinkKernel::open().unwrap(), None).unwrap()
    });
    assert!(removed > 0);
    let (_, routes) = in_ns(&b, &["ip", "route", "show", "proto", "83"]);
    assert!(routes.trim().is_empty(), "{routes}");
}

#[test]
#[ignore = "needs root"]
fn host_gw_routes_pod_traffic_between_two_namespaces() {
    let net = 78;
    let pair = pair("gw", net);
    let [a, b] = pair.names.clone();
    let peers = vec![node(1, net).0, node(2, net).0];
    program(&a, Mode::HostGw, 1, net, peers.clone());
    program(&b, Mode::HostGw, 2, net, peers.clone());
    for ns in [&a, &b] {
        let (ok, _) = in_ns(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        assert!(ok);
    }
    let (_, route) = in_ns(&a, &["ip", "route", "show", "proto", "83"]);
    assert!(
        route.contains(&format!("10.42.2.0/24 via 192.168.{net}.2 dev uplink")),
        "{route}"
    );
    assert!(pings(&a, "10.42.1.1", "10.42.2.1"));
    assert_eq!(program(&a, Mode::HostGw, 1, net, peers), 0, "idempotent");
    program(&a, Mode::HostGw, 1, net, vec![]);
    let (_, route) = in_ns(&a, &["ip", "route", "show", "proto", "83"]);
    assert!(route.trim().is_empty(), "{route}");
}

#[test]
#[ignore = "needs root"]
fn wireguard_is_detected_from_the_kernel() {
    let pair = pair("wg", 79);
    let a = pair.names[0].clone();
    let result = inside(&a, || check_wireguard(&mut NetlinkKernel::open().unwrap()));
    let (_, links) = in_ns(&a, &["ip", "link", "show"]);
    assert!(!links.contains(WIREGUARD_PROBE), "{links}");
    let has_module = std::path::Path::new("/sys/module/wireguard").exists();
    match result {
        Ok(()) => assert!(has_module),
        Err(e) => assert!(e.to_string().contains("modprobe wireguard"), "{e}"),
    }
}

#[test]
#[ignore = "needs root"]
fn the_hosts_tables_parse() {
    // Read-only: whatever links, routes and entries this machine holds parse.
    let mut kernel = NetlinkKernel::open().unwrap();
    let links = kernel.links().unwrap();
    assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
    assert!(kernel
        .addresses()
        .unwrap()
        .iter()
        .any(|a| a.ip.is_loopback()));
    kernel.routes().unwrap();
    for link in &links {
        kernel.neighbours(link.index).unwrap();
        kernel.fdb(link.index).unwrap();
    }
}
