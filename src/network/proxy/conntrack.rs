//! UDP conntrack entries of backends that went away. UDP has no connection to end:
//! without a flush, a client's flow keeps going to the old backend's address for as
//! long as it keeps sending. Which flows to delete is pure ([`stale_udp_flows`]);
//! deleting them runs the `conntrack` program (conntrack-tools): NETLINK_NETFILTER
//! from the binary is the better way and a later step (see ADR 0011 for the same
//! trade-off with nft).
//!
//! Owns: choosing and deleting stale UDP flows. Calls: the `conntrack` program.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::{usable, Protocol, ServicePort};

/// UDP flows to one former backend, as `conntrack -D` selects them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaleFlow {
    /// The address the client sent to (a ClusterIP or external IP); `None` for a
    /// node port, whatever node address it came in on.
    pub orig_dst: Option<Ipv4Addr>,
    /// The port the client sent to.
    pub orig_port: u16,
    /// The backend that went, and its port.
    pub endpoint: Ipv4Addr,
    pub endpoint_port: u16,
}

/// The UDP flows that went to a backend in `old` that `new` no longer uses.
pub fn stale_udp_flows(old: &[ServicePort], new: &[ServicePort]) -> Vec<StaleFlow> {
    let backends = |ports: &[ServicePort]| -> BTreeMap<String, BTreeSet<(Ipv4Addr, u16)>> {
        ports
            .iter()
            .filter(|p| p.protocol == Protocol::Udp)
            .map(|p| {
                let ips = usable(&p.endpoints, |_| true)
                    .iter()
                    .map(|e| (e.ip, e.port))
                    .collect();
                (p.id(), ips)
            })
            .collect()
    };
    let now = backends(new);
    let mut flows = BTreeSet::new();
    for port in old.iter().filter(|p| p.protocol == Protocol::Udp) {
        let Some(before) = backends(std::slice::from_ref(port)).remove(&port.id()) else {
            continue;
        };
        let after = now.get(&port.id()).cloned().unwrap_or_default();
        for (endpoint, endpoint_port) in before.difference(&after) {
            let mut add = |orig_dst, orig_port| {
                flows.insert(StaleFlow {
                    orig_dst,
                    orig_port,
                    endpoint: *endpoint,
                    endpoint_port: *endpoint_port,
                });
            };
            if let Some(ip) = port.cluster_ip {
                add(Some(ip), port.port);
            }
            for ip in &port.external_ips {
                add(Some(*ip), port.port);
            }
            if let Some(node_port) = port.node_port {
                add(None, node_port);
            }
        }
    }
    flows.into_iter().collect()
}

/// The `conntrack` arguments deleting `flow`.
pub fn delete_args(flow: &StaleFlow) -> Vec<String> {
    let mut args = vec!["-D".to_string(), "-p".into(), "udp".into()];
    if let Some(dst) = flow.orig_dst {
        args.extend(["--orig-dst".into(), dst.to_string()]);
    }
    args.extend([
        "--orig-port-dst".into(),
        flow.orig_port.to_string(),
        "--reply-src".into(),
        flow.endpoint.to_string(),
        "--reply-port-src".into(),
        flow.endpoint_port.to_string(),
    ]);
    args
}

#[derive(Debug, thiserror::Error)]
#[error("running conntrack {args}: {error}")]
pub struct ConntrackError {
    args: String,
    error: std::io::Error,
}

/// Deletes `flows`. `conntrack` failing because no entry matched is not an error.
pub fn delete(flows: &[StaleFlow]) -> Result<(), ConntrackError> {
    for flow in flows {
        let args = delete_args(flow);
        Command::new("conntrack")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|error| ConntrackError {
                args: args.join(" "),
                error,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{endpoint, service};
    use super::*;

    #[test]
    fn a_gone_udp_backend_flushes_its_cluster_ip_and_node_port_flows() {
        let mut svc = service(
            "dns",
            "10.43.0.20",
            vec![
                endpoint("10.42.0.2", true, false),
                endpoint("10.42.0.3", true, false),
            ],
        );
        svc.protocol = Protocol::Udp;
        svc.node_port = Some(30053);
        let old = vec![svc.clone()];
        svc.endpoints.remove(0);
        let flows = stale_udp_flows(&old, &[svc]);
        let ep: Ipv4Addr = "10.42.0.2".parse().unwrap();
        assert_eq!(
            flows,
            vec![
                StaleFlow {
                    orig_dst: None,
                    orig_port: 30053,
                    endpoint: ep,
                    endpoint_port: 8080
                },
                StaleFlow {
                    orig_dst: Some("10.43.0.20".parse().unwrap()),
                    orig_port: 80,
                    endpoint: ep,
                    endpoint_port: 8080
                },
            ]
        );
        assert_eq!(
            delete_args(&flows[1]).join(" "),
            "-D -p udp --orig-dst 10.43.0.20 --orig-port-dst 80 --reply-src 10.42.0.2 --reply-port-src 8080"
        );
    }

    #[test]
    fn a_backend_moving_to_another_port_is_a_gone_backend() {
        let mut svc = service("d", "10.43.0.5", vec![endpoint("10.42.0.2", true, false)]);
        svc.protocol = Protocol::Udp;
        let old = vec![svc.clone()];
        svc.endpoints[0].port = 9090;
        let flows = stale_udp_flows(&old, &[svc]);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].endpoint_port, 8080);
    }

    #[test]
    fn tcp_backends_and_a_gone_service_of_tcp_flush_nothing() {
        let svc = service("web", "10.43.0.5", vec![endpoint("10.42.0.2", true, false)]);
        assert!(stale_udp_flows(&[svc], &[]).is_empty());
    }

    #[test]
    fn a_deleted_udp_service_flushes_all_its_backends() {
        let mut svc = service("d", "10.43.0.5", vec![endpoint("10.42.0.2", true, false)]);
        svc.protocol = Protocol::Udp;
        assert_eq!(stale_udp_flows(&[svc], &[]).len(), 1);
    }
}
