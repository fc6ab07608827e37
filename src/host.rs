//! Facts about the machine skiff runs on: its hostname and addresses. The server
//! (certificate names, advertised address) and the node agent (node name, node IP)
//! both read them.
//!
//! Owns: [`hostname`], [`local_addresses`], [`default_address`]; the service
//! manager's notifications ([`notify`]) and the checks `skiff check` runs ([`check`]).
//! Calls: nothing in skiff (the OS through `nix` and /proc).

pub mod check;
pub mod notify;

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

/// The node's address when none is configured: an address of the interface holding
/// the default route, else the first global address (not loopback, not link-local;
/// IPv4 first), else loopback.
pub fn default_address() -> IpAddr {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let addresses: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| {
                    let address = a.address?;
                    let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                        (Some(v4), _) => IpAddr::V4(v4.ip()),
                        (_, Some(v6)) => IpAddr::V6(v6.ip()),
                        _ => return None,
                    };
                    Some((a.interface_name, ip))
                })
                .collect()
        })
        .unwrap_or_default();
    choose_address(&routes, &addresses).unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The interface of the IPv4 default route with the lowest metric in a
/// `/proc/net/route` table.
fn default_route_interface(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 7 && f[1] == "00000000" && f[7] == "00000000")
        .min_by_key(|f| f[6].parse::<u32>().unwrap_or(u32::MAX))
        .map(|f| f[0].to_string())
}

/// Whether `ip` can name this machine to others: not loopback, link-local,
/// unspecified or multicast.
fn is_global(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_loopback() || link_local || v6.is_unspecified() || v6.is_multicast())
        }
    }
}

/// The choice of [`default_address`] from the route table and (interface, address)
/// pairs in the system's order.
fn choose_address(routes: &str, addresses: &[(String, IpAddr)]) -> Option<IpAddr> {
    let global: Vec<&(String, IpAddr)> = addresses.iter().filter(|(_, ip)| is_global(ip)).collect();
    let first = |want_v4: bool| {
        let route_iface = default_route_interface(routes);
        global
            .iter()
            .filter(|(_, ip)| ip.is_ipv4() == want_v4)
            .find(|(name, _)| Some(name) == route_iface.as_ref())
            .or_else(|| global.iter().find(|(_, ip)| ip.is_ipv4() == want_v4))
            .map(|(_, ip)| *ip)
    };
    first(true).or_else(|| first(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    fn addrs(pairs: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
        pairs
            .iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
            .collect()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_default_route_interface_wins() {
        let routes = format!(
            "{HEADER}eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
             wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             eth1\t00000000\t0101000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        );
        let found = addrs(&[
            ("lo", "127.0.0.1"),
            ("eth0", "192.168.0.5"),
            ("wlan0", "192.168.1.5"),
            ("eth1", "10.0.1.5"),
        ]);
        assert_eq!(
            choose_address(&routes, &found),
            ip("10.0.1.5"),
            "lowest metric"
        );
    }

    #[test]
    fn without_a_default_route_the_first_global_address() {
        let routes =
            format!("{HEADER}eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        let found = addrs(&[
            ("lo", "127.0.0.1"),
            ("eth0", "169.254.3.4"),
            ("eth0", "fe80::1"),
            ("eth1", "2001:db8::5"),
            ("eth1", "192.168.0.5"),
            ("eth2", "10.0.0.9"),
        ]);
        assert_eq!(choose_address(&routes, &found), ip("192.168.0.5"));
        let v6_only = addrs(&[("lo", "::1"), ("eth0", "fe80::1"), ("eth0", "2001:db8::5")]);
        assert_eq!(choose_address("", &v6_only), ip("2001:db8::5"));
    }

    #[test]
    fn nothing_global_leaves_the_choice_to_the_caller() {
        let found = addrs(&[("lo", "127.0.0.1"), ("eth0", "169.254.3.4")]);
        assert_eq!(choose_address("", &found), None);
    }
}
