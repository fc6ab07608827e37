//! [`Kernel`] over rtnetlink: `netlink-packet-route` messages on a `netlink-sys`
//! socket, one request at a time, synchronous (callers run it on a blocking thread;
//! a socket belongs to the network namespace of the thread that opened it).
//!
//! Why not the `rtnetlink` crate: it is an async layer (netlink-proto, its own
//! connection task) over the same two crates, and each release pins its own
//! netlink-packet-route; the two crates are already in the build (youki's
//! libcontainer uses them), and the overlay needs a dozen plain requests.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::Socket;

use super::{
    Address, Fdb, Kernel, Link, Mac, Neighbour, OverlayError, Route, Vxlan, VxlanSpec,
    ROUTE_PROTOCOL,
};

/// A route netlink socket in the namespace of the thread that opened it.
pub struct NetlinkKernel {
    socket: Socket,
    sequence: u32,
}

impl NetlinkKernel {
    pub fn open() -> Result<NetlinkKernel, OverlayError> {
        let mut socket = Socket::new(NETLINK_ROUTE)
            .map_err(|e| OverlayError::kernel("opening a route netlink socket", e))?;
        socket
            .bind_auto()
            .map_err(|e| OverlayError::kernel("binding a route netlink socket", e))?;
        Ok(NetlinkKernel {
            socket,
            sequence: 0,
        })
    }

    /// Sends `message` and collects the answers: a dump's messages, or nothing for a
    /// change the kernel acknowledged.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        action: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, OverlayError> {
        let fail = |e: io::Error| OverlayError::kernel(action(), e);
        self.sequence = self.sequence.wrapping_add(1);
        let mut packet = NetlinkMessage::from(message);
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.sequence;
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket.send(&buffer, 0).map_err(fail)?;
        let mut answers = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(fail)?;
            let mut offset = 0;
            while offset < data.len() {
                let rest = &data[offset..];
                let reply = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest) {
                    Ok(reply) => reply,
                    Err(e) => {
                        // An object this crate cannot parse (a newer kernel's
                        // attribute): skipped, so one odd link does not stop the rest.
                        let length = NetlinkBuffer::new_checked(rest)
                            .map(|b| b.length() as usize)
                            .map_err(|_| fail(io::Error::other(e.to_string())))?;
                        tracing::debug!(error = %e, "skipping a netlink message that does not parse");
                        if length == 0 {
                            break;
                        }
                        offset += length;
                        continue;
                    }
                };
                let length = reply.header.length as usize;
                if reply.header.sequence_number == self.sequence {
                    match reply.payload {
                        NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                        NetlinkPayload::Error(error) if error.code.is_some() => {
                            return Err(fail(error.to_io()));
                        }
                        NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(answers),
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }

    fn change(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        action: &dyn Fn() -> String,
    ) -> Result<(), OverlayError> {
        self.request(message, NLM_F_ACK | flags, action).map(drop)
    }
}

fn mac_of(bytes: &[u8]) -> Option<Mac> {
    bytes.try_into().ok()
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        up: message.header.flags.contains(LinkFlags::Up),
        ..Link::default()
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(bytes) => link.mac = mac_of(bytes),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
            LinkAttribute::LinkInfo(infos) => link.vxlan = vxlan_of(infos),
            _ => {}
        }
    }
    link
}

fn vxlan_of(infos: &[LinkInfo]) -> Option<Vxlan> {
    let is_vxlan = infos
        .iter()
        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vxlan)));
    if !is_vxlan {
        return None;
    }
    let mut vxlan = Vxlan {
        vni: 0,
        port: 0,
        local: None,
        link: None,
    };
    for info in infos {
        if let LinkInfo::Data(InfoData::Vxlan(settings)) = info {
            for setting in settings {
                match setting {
                    InfoVxlan::Id(vni) => vxlan.vni = *vni,
                    InfoVxlan::Port(port) => vxlan.port = *port,
                    InfoVxlan::Local(ip) => vxlan.local = Some(*ip),
                    InfoVxlan::Link(index) => vxlan.link = Some(*index),
                    _ => {}
                }
            }
        }
    }
    Some(vxlan)
}

fn route_message(route: Route) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header = RouteHeader {
        address_family: AddressFamily::Inet,
        destination_prefix_length: route.dst.1,
        table: RouteHeader::RT_TABLE_MAIN,
        protocol: RouteProtocol::from(ROUTE_PROTOCOL),
        scope: RouteScope::Universe,
        kind: RouteType::Unicast,
        flags: if route.onlink {
            RouteFlags::Onlink
        } else {
            RouteFlags::empty()
        },
        ..RouteHeader::default()
    };
    message.attributes = vec![
        RouteAttribute::Destination(RouteAddress::Inet(route.dst.0)),
        RouteAttribute::Gateway(RouteAddress::Inet(route.gateway)),
    ];
    if let Some(oif) = route.oif {
        message.attributes.push(RouteAttribute::Oif(oif));
    }
    message
}

fn route_of(message: &RouteMessage) -> Option<Route> {
    let header = &message.header;
    let table = message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(header.table.into());
    if header.address_family != AddressFamily::Inet
        || table != u32::from(RouteHeader::RT_TABLE_MAIN)
        || u8::from(header.protocol) != ROUTE_PROTOCOL
    {
        return None;
    }
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(index) => oif = Some(*index),
            _ => {}
        }
    }
    Some(Route {
        dst: (dst, header.destination_prefix_length),
        gateway: gateway?,
        oif,
        onlink: header.flags.contains(RouteFlags::Onlink),
    })
}

fn neighbour_message(
    family: AddressFamily,
    index: u32,
    ip: Ipv4Addr,
    mac: Mac,
) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    message.attributes = vec![
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)),
        NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
    ];
    message
}

/// (ip, mac) of a permanent entry on `index` of `family`.
fn entry_of(
    message: &NeighbourMessage,
    family: AddressFamily,
    index: u32,
) -> Option<(Ipv4Addr, Mac)> {
    let header = &message.header;
    if header.family != family
        || header.ifindex != index
        || header.state != NeighbourState::Permanent
    {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(*a),
            // Bridge (fdb) entries: the crate leaves the address as bytes.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                ip = <[u8; 4]>::try_from(bytes.as_slice())
                    .ok()
                    .map(Ipv4Addr::from)
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => mac = mac_of(bytes),
            _ => {}
        }
    }
    Some((ip?, mac?))
}

fn fdb_message(index: u32, entry: Fdb) -> NeighbourMessage {
    let mut message = neighbour_message(AddressFamily::Bridge, index, entry.dst, entry.mac);
    message.header.flags = NeighbourFlags::Own;
    message
}

fn address_message(address: Address) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = address.prefix;
    message.header.index = address.index;
    message.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(address.ip)),
        AddressAttribute::Address(IpAddr::V4(address.ip)),
    ];
    message
}

fn link_request(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
}

fn fmt_mac(mac: Mac) -> String {
    super::format_mac(mac)
}

impl Kernel for NetlinkKernel {
    fn links(&mut self) -> Result<Vec<Link>, OverlayError> {
        let answers = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &|| "listing links".into(),
        )?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link_of(link)),
                _ => None,
            })
            .collect())
    }

    fn addresses(&mut self) -> Result<Vec<Address>, OverlayError> {
        let mut request = AddressMessage::default();
        request.header.family = AddressFamily::Inet;
        let answers = self.request(
            RouteNetlinkMessage::GetAddress(request),
            NLM_F_DUMP,
            &|| "listing addresses".into(),
        )?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.family == AddressFamily::Inet => {
                    let ip = a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    });
                    let ip = ip.or_else(|| {
                        a.attributes.iter().find_map(|attr| match attr {
                            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    Some(Address {
                        index: a.header.index,
                        ip,
                        prefix: a.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<(), OverlayError> {
        let mut settings = vec![
            InfoVxlan::Id(spec.vxlan.vni),
            InfoVxlan::Port(spec.vxlan.port),
            InfoVxlan::Learning(false),
        ];
        if let Some(local) = spec.vxlan.local {
            settings.push(InfoVxlan::Local(local));
        }
        if let Some(link) = spec.vxlan.link {
            settings.push(InfoVxlan::Link(link));
        }
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(spec.name.clone()),
            LinkAttribute::Address(spec.mac.to_vec()),
            LinkAttribute::Mtu(spec.mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(settings)),
            ]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| {
                format!(
                    "creating the vxlan device {} (vni {}, port {})",
                    spec.name, spec.vxlan.vni, spec.vxlan.port
                )
            },
        )
    }

    fn set_link(
        &mut self,
        index: u32,
        mac: Mac,
        mtu: u32,
        alias: &str,
    ) -> Result<(), OverlayError> {
        let mut message = link_request(index);
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes = vec![
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::IfAlias(alias.to_string()),
        ];
        self.change(RouteNetlinkMessage::SetLink(message), 0, &|| {
            format!("setting link {index} up (mac {}, mtu {mtu})", fmt_mac(mac))
        })
    }

    fn delete_link(&mut self, index: u32) -> Result<(), OverlayError> {
        self.change(
            RouteNetlinkMessage::DelLink(link_request(index)),
            0,
            &|| format!("deleting link {index}"),
        )
    }

    fn add_address(&mut self, address: Address) -> Result<(), OverlayError> {
        self.change(
            RouteNetlinkMessage::NewAddress(address_message(address)),
            NLM_F_CREATE | NLM_F_REPLACE,
            &|| {
                format!(
                    "adding {}/{} to link {}",
                    address.ip, address.prefix, address.index
                )
            },
        )
    }

    fn delete_address(&mut self, address: Address) -> Result<(), OverlayError> {
        self.change(
            RouteNetlinkMessage::DelAddress(address_message(address)),
            0,
            &|| {
                format!(
                    "removing {}/{} from link {}",
                    address.ip, address.prefix, address.index
                )
            },
        )
    }

    fn routes(&mut self) -> Result<Vec<Route>, OverlayError> {
        let mut request = RouteMessage::default();
        request.header.address_family = AddressFamily::Inet;
        let answers = self.request(RouteNetlinkMessage::GetRoute(request), NLM_F_DUMP, &|| {
            "listing routes".into()
        })?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_of(r),
                _ => None,
            })
            .collect())
    }

    fn replace_route(&mut self, route: Route) -> Result<(), OverlayError> {
        self.change(
            RouteNetlinkMessage::NewRoute(route_message(route)),
            NLM_F_CREATE | NLM_F_REPLACE,
            &|| {
                format!(
                    "routing {}/{} via {}",
                    route.dst.0, route.dst.1, route.gateway
                )
            },
        )
    }

    fn delete_route(&mut self, route: Route) -> Result<(), OverlayError> {
        self.change(
            RouteNetlinkMessage::DelRoute(route_message(route)),
            0,
            &|| format!("removing the route to {}/{}", route.dst.0, route.dst.1),
        )
    }

    fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>, OverlayError> {
        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Inet;
        let answers = self.request(
            RouteNetlinkMessage::GetNeighbour(request),
            NLM_F_DUMP,
            &|| "listing neighbours".into(),
        )?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => entry_of(n, AddressFamily::Inet, index),
                _ => None,
            })
            .map(|(ip, mac)| Neighbour { ip, mac })
            .collect())
    }

    fn replace_neighbour(&mut self, index: u32, entry: Neighbour) -> Result<(), OverlayError> {
        let message = neighbour_message(AddressFamily::Inet, index, entry.ip, entry.mac);
        self.change(
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_CREATE | NLM_F_REPLACE,
            &|| {
                format!(
                    "adding neighbour {} lladdr {}",
                    entry.ip,
                    fmt_mac(entry.mac)
                )
            },
        )
    }

    fn delete_neighbour(&mut self, index: u32, entry: Neighbour) -> Result<(), OverlayError> {
        let message = neighbour_message(AddressFamily::Inet, index, entry.ip, entry.mac);
        self.change(RouteNetlinkMessage::DelNeighbour(message), 0, &|| {
            format!("removing neighbour {}", entry.ip)
        })
    }

    fn fdb(&mut self, index: u32) -> Result<Vec<Fdb>, OverlayError> {
        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Bridge;
        let answers = self.request(
            RouteNetlinkMessage::GetNeighbour(request),
            NLM_F_DUMP,
            &|| "listing forwarding entries".into(),
        )?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => entry_of(n, AddressFamily::Bridge, index),
                _ => None,
            })
            .map(|(dst, mac)| Fdb { mac, dst })
            .collect())
    }

    fn replace_fdb(&mut self, index: u32, entry: Fdb) -> Result<(), OverlayError> {
        self.change(
            RouteNetlinkMessage::NewNeighbour(fdb_message(index, entry)),
            NLM_F_CREATE | NLM_F_REPLACE,
            &|| format!("adding fdb {} dst {}", fmt_mac(entry.mac), entry.dst),
        )
    }

    fn delete_fdb(&mut self, index: u32, entry: Fdb) -> Result<(), OverlayError> {
        self.change(
            RouteNetlinkMessage::DelNeighbour(fdb_message(index, entry)),
            0,
            &|| format!("removing fdb {}", fmt_mac(entry.mac)),
        )
    }

    fn create_wireguard(&mut self, name: &str) -> Result<(), OverlayError> {
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Wireguard)]),
        ];
        self.change(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("creating the wireguard link {name}"),
        )
    }
}
