//! Facts about the machine skiff runs on: its hostname and addresses. The server
//! (certificate names, advertised address) and the node agent (node name, node IP)
//! both read them.
//!
//! Owns: [`hostname`], [`local_addresses`], [`default_address`]. Calls: nothing in
//! skiff (the OS through `nix` and /proc).

use std::net::IpAddr;

/// This machine's hostname, lowercased (the default node name), else `localhost`.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
        .to_lowercase()
}

/// Every non-loopback address of this machine.
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return vec![];
    };
    let mut found = Vec::new();
    for ifaddr in addrs {
        let Some(address) = ifaddr.address else {
            continue;
        };
        let ip = if let Some(v4) = address.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = address.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        let link_local_v6 = matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
        if !ip.is_loopback() && !link_local_v6 && !found.contains(&ip) {
            found.push(ip);
        }
    }
    found
}

/// The address of the interface holding the default route, else any IPv4 one,
/// else loopback.
pub fn default_address() -> IpAddr {
    let route_iface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|table| {
            table
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[1] == "00000000")
                .map(|f| f[0].to_string())
        });
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return IpAddr::from([127, 0, 0, 1]);
    };
    let v4: Vec<(String, IpAddr)> = addrs
        .filter_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            (!ip.is_loopback()).then_some((a.interface_name, IpAddr::V4(ip)))
        })
        .collect();
    v4.iter()
        .find(|(name, _)| Some(name) == route_iface.as_ref())
        .or(v4.first())
        .map(|(_, ip)| *ip)
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}
