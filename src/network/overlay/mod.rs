//! The pod network across nodes, kernel side: what a node programs so its pods reach
//! the pods of the other nodes, flannel-compatible (k3s' default data plane).
//!
//! - **vxlan**: one VXLAN device `flannel.1` (VNI 1, UDP 8472, no learning, MTU of the
//!   uplink − 50) holding the node's pod CIDR network address as a /32; for each
//!   remote node a route `<its podCIDR> via <its podCIDR>.0 dev flannel.1 onlink`, a
//!   permanent neighbour `<its podCIDR>.0 → <its VtepMAC>` and an fdb entry
//!   `<its VtepMAC> → <its public IP>` — the same state flannel writes, so skiff and
//!   flannel nodes interoperate.
//! - **host-gw**: a route `<its podCIDR> via <its public IP>` per remote node.
//!
//! The device is named `flannel.1` as flannel names it (k3s' tooling and users'
//! firewall rules know the name). With VNI 1 on port 8472 the kernel allows only one
//! such device per network namespace whatever its name, so a second skiff node in the
//! same namespace (tests; a bystander cluster) could not have its own anyway. Hence:
//! the device exists only while there is at least one remote peer, and peers whose
//! public IP is an address of this namespace are not remote (they share our routing
//! table; their pods are behind their own bridge already). The device carries the
//! alias [`ALIAS_PREFIX`]`<node>`; a `flannel.1` without it (flannel's, another
//! skiff's) is adopted only when needed and never deleted when not.
//!
//! Routes skiff makes carry the route protocol [`ROUTE_PROTOCOL`]; the ones inside the
//! cluster CIDR that no peer wants are stale and removed (nodes that went away). The
//! VTEP MAC is derived from the node name ([`vtep_mac`]) so the node can announce it
//! before the device exists and it survives a re-creation.
//!
//! Kernel access is the [`Kernel`] trait (rtnetlink in [`netlink`]; an in-memory
//! double in the tests), so [`reconcile`] — desired state from the peer list, diffed
//! against what the kernel holds — is tested without root.
//!
//! Owns: the overlay's kernel state. May call: `model` (CIDRs); the kernel.

pub mod netlink;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::model::cidr::Cidr;

/// flannel's VXLAN device name.
pub const VXLAN_DEVICE: &str = "flannel.1";
/// flannel's VNI.
pub const VXLAN_VNI: u32 = 1;
/// flannel's (the Linux default) VXLAN UDP port.
pub const VXLAN_PORT: u16 = 8472;
/// What VXLAN over IPv4 adds to a packet (outer IP, UDP, VXLAN, inner Ethernet).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The route protocol number on skiff's routes (`ip route show proto 83`).
pub const ROUTE_PROTOCOL: u8 = 83;
/// The alias skiff gives the VXLAN device it owns, followed by the node name.
pub const ALIAS_PREFIX: &str = "skiff node ";
/// The link skiff creates, and deletes at once, to learn whether the kernel has
/// WireGuard.
pub const WIREGUARD_PROBE: &str = "skiff-wgprobe";

pub type Mac = [u8; 6];

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{action}: {source}")]
    Kernel {
        action: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

impl OverlayError {
    pub fn kernel(action: impl Into<String>, source: std::io::Error) -> Self {
        OverlayError::Kernel {
            action: action.into(),
            source,
        }
    }
}

/// How remote pod CIDRs are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Vxlan,
    HostGw,
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    pub mtu: u32,
    pub up: bool,
    pub alias: Option<String>,
    /// Set for VXLAN links.
    pub vxlan: Option<Vxlan>,
}

/// A VXLAN device's identity: what makes an existing `flannel.1` usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub port: u16,
    pub local: Option<Ipv4Addr>,
    /// The uplink's index.
    pub link: Option<u32>,
}

/// An IPv4 address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

/// A main-table IPv4 route with skiff's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: (Ipv4Addr, u8),
    pub gateway: Ipv4Addr,
    pub oif: Option<u32>,
    pub onlink: bool,
}

/// A permanent ARP entry on the VXLAN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

/// A forwarding entry on the VXLAN device: frames to `mac` go to `dst` over UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fdb {
    pub mac: Mac,
    pub dst: Ipv4Addr,
}

/// What creating the VXLAN device takes.
#[derive(Debug, Clone, PartialEq)]
pub struct VxlanSpec {
    pub name: String,
    pub vxlan: Vxlan,
    pub mac: Mac,
    pub mtu: u32,
    pub alias: String,
}

/// The kernel touchpoints of the overlay.
pub trait Kernel {
    fn links(&mut self) -> Result<Vec<Link>, OverlayError>;
    fn addresses(&mut self) -> Result<Vec<Address>, OverlayError>;
    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<(), OverlayError>;
    /// Sets the MAC, MTU and alias and brings the link up.
    fn set_link(&mut self, index: u32, mac: Mac, mtu: u32, alias: &str)
        -> Result<(), OverlayError>;
    fn delete_link(&mut self, index: u32) -> Result<(), OverlayError>;
    fn add_address(&mut self, address: Address) -> Result<(), OverlayError>;
    fn delete_address(&mut self, address: Address) -> Result<(), OverlayError>;
    /// The main table's IPv4 routes with [`ROUTE_PROTOCOL`].
    fn routes(&mut self) -> Result<Vec<Route>, OverlayError>;
    fn replace_route(&mut self, route: Route) -> Result<(), OverlayError>;
    fn delete_route(&mut self, route: Route) -> Result<(), OverlayError>;
    /// The permanent IPv4 neighbours on `index`.
    fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>, OverlayError>;
    fn replace_neighbour(&mut self, index: u32, entry: Neighbour) -> Result<(), OverlayError>;
    fn delete_neighbour(&mut self, index: u32, entry: Neighbour) -> Result<(), OverlayError>;
    /// The permanent forwarding entries with a destination on `index`.
    fn fdb(&mut self, index: u32) -> Result<Vec<Fdb>, OverlayError>;
    fn replace_fdb(&mut self, index: u32, entry: Fdb) -> Result<(), OverlayError>;
    fn delete_fdb(&mut self, index: u32, entry: Fdb) -> Result<(), OverlayError>;
    /// Creates a `wireguard` link named `name` (fails where the kernel has none).
    fn create_wireguard(&mut self, name: &str) -> Result<(), OverlayError>;
}

/// This node, as the overlay sees it.
#[derive(Debug, Clone)]
pub struct Local {
    pub node_name: String,
    pub mode: Mode,
    pub pod_cidr: Cidr,
    pub cluster_cidr: Cidr,
    pub public_ip: Ipv4Addr,
    pub uplink: Option<Uplink>,
}

/// The interface that carries the pod network between nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
}

/// Another node as its Node object announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    pub pod_cidr: Cidr,
    pub public_ip: Ipv4Addr,
    /// Its VTEP MAC (vxlan only).
    pub vtep_mac: Option<Mac>,
}

/// What the overlay wants in the kernel for a peer list.
#[derive(Debug, Default, PartialEq)]
pub struct Desired {
    /// Whether the VXLAN device is wanted.
    pub device: bool,
    pub routes: BTreeSet<Route>,
    pub neighbours: BTreeSet<Neighbour>,
    pub fdb: BTreeSet<Fdb>,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The node's VTEP MAC: locally administered, unicast, from a hash of its name, so
/// it is known before the device exists and stays the same across re-creations.
pub fn vtep_mac(node_name: &str) -> Mac {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("skiff vtep {node_name}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// The VXLAN device's MTU for an uplink MTU.
pub fn vxlan_mtu(uplink_mtu: u32) -> u32 {
    uplink_mtu.saturating_sub(VXLAN_OVERHEAD)
}

/// The pod MTU that never needs fragmenting on the way to another node.
pub fn pod_mtu(mode: Mode, uplink_mtu: u32) -> u32 {
    match mode {
        Mode::Vxlan => vxlan_mtu(uplink_mtu),
        Mode::HostGw => uplink_mtu,
    }
}

fn cidr_key(cidr: Cidr) -> (Ipv4Addr, u8) {
    (cidr.network, cidr.prefix)
}

fn overlaps(a: Cidr, b: Cidr) -> bool {
    a.contains(b.network) || b.contains(a.network)
}

/// The peers this node programs: other nodes, with what `mode` needs, inside the
/// cluster CIDR, not overlapping this node's pod CIDR, and not in this namespace.
pub fn remote_peers<'a>(local: &Local, peers: &'a [Peer], local_ips: &[Ipv4Addr]) -> Vec<&'a Peer> {
    let mut seen_cidrs: Vec<Cidr> = vec![local.pod_cidr];
    let mut sorted: Vec<&Peer> = peers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .into_iter()
        .filter(|p| p.name != local.node_name)
        .filter(|p| local.mode != Mode::Vxlan || p.vtep_mac.is_some())
        .filter(|p| {
            let ip = p.public_ip;
            !(local_ips.contains(&ip) || ip.is_loopback() || ip.is_unspecified())
        })
        .filter(|p| local.cluster_cidr.contains(p.pod_cidr.network))
        .filter(|p| {
            let clash = seen_cidrs.iter().any(|c| overlaps(*c, p.pod_cidr));
            if clash {
                tracing::warn!(node = %p.name, cidr = %p.pod_cidr, "a peer's pod CIDR overlaps another's; skipped");
            } else {
                seen_cidrs.push(p.pod_cidr);
            }
            !clash
        })
        .collect()
}

/// The kernel state `peers` call for; `device` is the VXLAN device's index (vxlan).
pub fn desired(local: &Local, peers: &[&Peer], device: Option<u32>) -> Desired {
    let mut want = Desired::default();
    match local.mode {
        Mode::Vxlan => {
            want.device = !peers.is_empty();
            let Some(index) = device else {
                return want;
            };
            for peer in peers {
                let Some(mac) = peer.vtep_mac else { continue };
                let gateway = peer.pod_cidr.network;
                want.routes.insert(Route {
                    dst: cidr_key(peer.pod_cidr),
                    gateway,
                    oif: Some(index),
                    onlink: true,
                });
                want.neighbours.insert(Neighbour { ip: gateway, mac });
                want.fdb.insert(Fdb {
                    mac,
                    dst: peer.public_ip,
                });
            }
        }
        Mode::HostGw => {
            for peer in peers {
                want.routes.insert(Route {
                    dst: cidr_key(peer.pod_cidr),
                    gateway: peer.public_ip,
                    oif: None,
                    onlink: false,
                });
            }
        }
    }
    want
}

/// Whether a skiff route is the overlay's to manage: inside the cluster CIDR.
fn managed_route(route: &Route, cluster: Cidr) -> bool {
    route.dst.1 >= cluster.prefix && cluster.contains(route.dst.0)
}

fn owns(link: &Link) -> bool {
    link.alias
        .as_deref()
        .is_some_and(|a| a.starts_with(ALIAS_PREFIX))
}

/// The device `local` wants: VNI, port, local address and uplink.
fn device_spec(local: &Local) -> VxlanSpec {
    let uplink_mtu = local.uplink.as_ref().map_or(1500, |u| u.mtu);
    VxlanSpec {
        name: VXLAN_DEVICE.into(),
        vxlan: Vxlan {
            vni: VXLAN_VNI,
            port: VXLAN_PORT,
            local: Some(local.public_ip),
            link: local.uplink.as_ref().map(|u| u.index),
        },
        mac: vtep_mac(&local.node_name),
        mtu: vxlan_mtu(uplink_mtu),
        alias: format!("{ALIAS_PREFIX}{}", local.node_name),
    }
}

/// Makes the kernel match `peers`: creates, adopts or removes the VXLAN device and
/// adds, replaces and removes routes, neighbours and fdb entries. Idempotent: a
/// second call with the same peers changes nothing. Returns how many changes it made.
pub fn reconcile(
    kernel: &mut dyn Kernel,
    local: &Local,
    peers: &[Peer],
) -> Result<usize, OverlayError> {
    let local_ips: Vec<Ipv4Addr> = kernel.addresses()?.iter().map(|a| a.ip).collect();
    let remote = remote_peers(local, peers, &local_ips);
    let mut changes = 0;
    let wants_device = local.mode == Mode::Vxlan && !remote.is_empty();
    let device = kernel.links()?.into_iter().find(|l| l.name == VXLAN_DEVICE);
    let index = match (wants_device, device) {
        (true, device) => Some(ensure_device(kernel, local, device, &mut changes)?),
        (false, Some(device)) if owns(&device) => {
            kernel.delete_link(device.index)?;
            changes += 1;
            None
        }
        (false, _) => None,
    };
    let want = desired(local, &remote, index);
    if let Some(index) = index {
        changes += sync_set(
            kernel.fdb(index)?,
            &want.fdb,
            |k, e| k.replace_fdb(index, e),
            |k, e| k.delete_fdb(index, e),
            kernel,
            |a, b| a.mac == b.mac,
        )?;
        changes += sync_set(
            kernel.neighbours(index)?,
            &want.neighbours,
            |k, e| k.replace_neighbour(index, e),
            |k, e| k.delete_neighbour(index, e),
            kernel,
            |a, b| a.ip == b.ip,
        )?;
    }
    let routes: Vec<Route> = kernel
        .routes()?
        .into_iter()
        .filter(|r| managed_route(r, local.cluster_cidr))
        .map(|r| as_wanted(r, &want.routes))
        .collect();
    changes += sync_set(
        routes,
        &want.routes,
        |k, r| k.replace_route(r),
        |k, r| k.delete_route(r),
        kernel,
        |a, b| a.dst == b.dst,
    )?;
    Ok(changes)
}

/// `route` as `wanted` names it: a wanted route without an output interface (the
/// kernel picks one for host-gw) matches the kernel's with one.
fn as_wanted(route: Route, wanted: &BTreeSet<Route>) -> Route {
    let loose = Route { oif: None, ..route };
    if wanted.contains(&loose) {
        loose
    } else {
        route
    }
}

/// Brings `current` to `want`: entries not wanted are deleted (unless a wanted one
/// with the same key replaces them), wanted ones missing are put (replace).
fn sync_set<T: Ord + Copy>(
    current: Vec<T>,
    want: &BTreeSet<T>,
    put: impl Fn(&mut dyn Kernel, T) -> Result<(), OverlayError>,
    delete: impl Fn(&mut dyn Kernel, T) -> Result<(), OverlayError>,
    kernel: &mut dyn Kernel,
    same_key: impl Fn(&T, &T) -> bool,
) -> Result<usize, OverlayError> {
    let have: BTreeSet<T> = current.into_iter().collect();
    let mut changes = 0;
    for entry in want.difference(&have) {
        put(kernel, *entry)?;
        changes += 1;
    }
    for entry in have.difference(want) {
        if !want.iter().any(|w| same_key(w, entry)) {
            delete(kernel, *entry)?;
            changes += 1;
        }
    }
    Ok(changes)
}

/// Returns the index of a usable VXLAN device: the existing one if it has the right
/// VNI, port, local address and uplink (adopted: MAC, MTU, alias, up, address set),
/// else a new one (an unusable existing one is replaced, as flannel does).
fn ensure_device(
    kernel: &mut dyn Kernel,
    local: &Local,
    existing: Option<Link>,
    changes: &mut usize,
) -> Result<u32, OverlayError> {
    let spec = device_spec(local);
    let usable = existing
        .as_ref()
        .filter(|l| l.vxlan.is_some_and(|v| v == spec.vxlan));
    let link = match (usable, existing.as_ref()) {
        (Some(link), _) => link.clone(),
        (None, stale) => {
            if let Some(stale) = stale {
                tracing::info!(
                    device = VXLAN_DEVICE,
                    "replacing a VXLAN device with other settings"
                );
                kernel.delete_link(stale.index)?;
            }
            kernel.create_vxlan(&spec)?;
            *changes += 1;
            kernel
                .links()?
                .into_iter()
                .find(|l| l.name == VXLAN_DEVICE)
                .ok_or_else(|| {
                    OverlayError::Config(format!(
                        "{VXLAN_DEVICE} vanished right after its creation"
                    ))
                })?
        }
    };
    if link.mac != Some(spec.mac)
        || link.mtu != spec.mtu
        || !link.up
        || link.alias.as_deref() != Some(&spec.alias)
    {
        kernel.set_link(link.index, spec.mac, spec.mtu, &spec.alias)?;
        *changes += 1;
    }
    let own = Address {
        index: link.index,
        ip: local.pod_cidr.network,
        prefix: 32,
    };
    let addresses: Vec<Address> = kernel
        .addresses()?
        .into_iter()
        .filter(|a| a.index == link.index)
        .collect();
    for stale in addresses.iter().filter(|a| **a != own) {
        kernel.delete_address(*stale)?;
        *changes += 1;
    }
    if !addresses.contains(&own) {
        kernel.add_address(own)?;
        *changes += 1;
    }
    Ok(link.index)
}

/// Removes what the overlay made: skiff's routes inside `cluster` (all of skiff's
/// routes when `None`) and the VXLAN device if skiff owns it.
pub fn cleanup(kernel: &mut dyn Kernel, cluster: Option<Cidr>) -> Result<usize, OverlayError> {
    let mut removed = 0;
    for route in kernel.routes()? {
        if cluster.is_none_or(|c| managed_route(&route, c)) {
            kernel.delete_route(route)?;
            removed += 1;
        }
    }
    if let Some(device) = kernel.links()?.into_iter().find(|l| l.name == VXLAN_DEVICE) {
        if owns(&device) {
            kernel.delete_link(device.index)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether the kernel has WireGuard: creates and deletes a probe link. The error
/// names the fix.
pub fn check_wireguard(kernel: &mut dyn Kernel) -> Result<(), OverlayError> {
    if let Some(stale) = kernel
        .links()?
        .into_iter()
        .find(|l| l.name == WIREGUARD_PROBE)
    {
        kernel.delete_link(stale.index)?;
    }
    match kernel.create_wireguard(WIREGUARD_PROBE) {
        Ok(()) => {
            if let Some(probe) = kernel.links()?.into_iter().find(|l| l.name == WIREGUARD_PROBE) {
                kernel.delete_link(probe.index)?;
            }
            Ok(())
        }
        Err(e) => Err(OverlayError::Config(format!(
            "--flannel-backend=wireguard-native needs WireGuard in the kernel, and this one has none ({e}): \
             load it (`modprobe wireguard`; built in since Linux 5.6, else the wireguard-dkms package) \
             or choose --flannel-backend=vxlan or host-gw"
        ))),
    }
}

/// The uplink: the interface named `iface`, else the one holding `ip`. Returns it
/// with the IPv4 address the overlay announces (the interface's first one when
/// `iface` is given, else `ip`).
pub fn find_uplink(
    kernel: &mut dyn Kernel,
    iface: Option<&str>,
    ip: Ipv4Addr,
) -> Result<(Option<Uplink>, Ipv4Addr), OverlayError> {
    let links = kernel.links()?;
    let addresses = kernel.addresses()?;
    let uplink = |link: &Link| Uplink {
        index: link.index,
        name: link.name.clone(),
        mtu: link.mtu,
    };
    if let Some(name) = iface {
        let link = links.iter().find(|l| l.name == name).ok_or_else(|| {
            OverlayError::Config(format!("--flannel-iface {name}: no such interface"))
        })?;
        let first = addresses
            .iter()
            .find(|a| a.index == link.index)
            .ok_or_else(|| {
                OverlayError::Config(format!(
                    "--flannel-iface {name}: the interface has no IPv4 address"
                ))
            })?;
        return Ok((Some(uplink(link)), first.ip));
    }
    let holder = addresses
        .iter()
        .find(|a| a.ip == ip)
        .and_then(|a| links.iter().find(|l| l.index == a.index));
    Ok((holder.map(uplink), ip))
}
