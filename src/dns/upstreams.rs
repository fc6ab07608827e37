//! The host's resolvers, where cluster DNS forwards: the `nameserver` lines of
//! `/etc/resolv.conf`, or of `--resolv-conf` when given (as in k3s). When the host
//! file names only systemd-resolved's stub (127.0.0.53, which forwards back into
//! the host's own view and is not what pods should depend on), the real upstreams
//! are read from `/run/systemd/resolve/resolv.conf`. Other loopback resolvers are
//! kept (a local dnsmasq, or a test's resolver inside its namespace).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use super::DnsError;

pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
pub const SYSTEMD_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));

/// The `nameserver` addresses of a resolv.conf text, in order (IPv6 zone suffixes
/// dropped, unparsable entries skipped).
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let address = words.next()?;
            address.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The upstream resolvers (port 53): from `explicit` if given, else the host's,
/// minus `own` (the cluster DNS address itself, which would loop).
pub fn upstreams(explicit: Option<&Path>, own: IpAddr) -> Result<Vec<SocketAddr>, DnsError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf {
            path: path.to_path_buf(),
            source,
        })
    };
    let servers = match explicit {
        Some(path) => nameservers(&read(path)?),
        None => {
            let host = nameservers(&read(Path::new(HOST_RESOLV_CONF))?);
            behind_stub(host, || read(Path::new(SYSTEMD_RESOLV_CONF)).ok())
        }
    };
    Ok(servers
        .into_iter()
        .filter(|ip| *ip != own)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect())
}

/// `host`, or systemd-resolved's upstreams when `host` is only its stub.
fn behind_stub(host: Vec<IpAddr>, systemd: impl FnOnce() -> Option<String>) -> Vec<IpAddr> {
    if host.is_empty() || host.iter().any(|ip| *ip != SYSTEMD_STUB) {
        return host;
    }
    match systemd().map(|text| nameservers(&text)) {
        Some(real) if !real.is_empty() => real,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parses_nameserver_lines() {
        let text = "# generated\nsearch lan\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\n\
                    nameserver   10.0.0.2 # trailing\nnameserver bogus\noptions ndots:1\n";
        assert_eq!(
            nameservers(text),
            ips(&["192.168.1.1", "fe80::1", "10.0.0.2"])
        );
    }

    #[test]
    fn the_systemd_stub_is_replaced_by_the_real_upstreams() {
        let real = || Some("nameserver 192.168.1.1\nnameserver 1.1.1.1\n".to_string());
        assert_eq!(
            behind_stub(ips(&["127.0.0.53"]), real),
            ips(&["192.168.1.1", "1.1.1.1"])
        );
        // Without systemd's file the stub is all there is.
        assert_eq!(
            behind_stub(ips(&["127.0.0.53"]), || None),
            ips(&["127.0.0.53"])
        );
        // Other loopback resolvers are the host's choice: kept.
        assert_eq!(behind_stub(ips(&["127.0.0.1"]), real), ips(&["127.0.0.1"]));
        assert_eq!(
            behind_stub(ips(&["127.0.0.53", "10.0.0.2"]), real),
            ips(&["127.0.0.53", "10.0.0.2"])
        );
    }

    #[test]
    fn an_explicit_file_is_used_as_is_minus_the_cluster_dns_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "nameserver 127.0.0.53\nnameserver 10.43.0.10\nnameserver 127.0.0.2\n",
        )
        .unwrap();
        let got = upstreams(Some(&path), "10.43.0.10".parse().unwrap()).unwrap();
        assert_eq!(
            got,
            [
                "127.0.0.53:53".parse().unwrap(),
                "127.0.0.2:53".parse().unwrap()
            ]
        );
        let missing = upstreams(
            Some(&dir.path().join("nope")),
            "10.43.0.10".parse().unwrap(),
        );
        assert!(missing.unwrap_err().to_string().contains("nope"));
    }
}
