//! The Service data plane's kernel side (skiff's kube-proxy): a pure model of the
//! node's service ports ([`ServicePort`]), the nftables ruleset they become
//! ([`ruleset`]), the scripts that load it whole or change it by a diff against the
//! last applied ruleset ([`script`]), and the UDP conntrack flush when a backend goes
//! ([`conntrack`]).
//!
//! Layout of the table (one per node instance and address family, named after the
//! node's bridge: `table ip skiff-<bridge>`, so several skiffs can share a network
//! namespace): flat and map-driven, as kube-proxy's nftables mode.
//! - `service-ips` (verdict map, `daddr . proto . port`): ClusterIPs, externalIPs and
//!   load-balancer ingress IPs → `goto` the service port's chain.
//! - `service-nodeports` (verdict map, `proto . port`): node ports on every local
//!   address (`fib daddr type local`) but 127.0.0.0/8 (as kube-proxy's nftables mode;
//!   no `route_localnet`) → the external chain.
//! - one chain per service port (`svc-…`, `ext-…`) picking an endpoint with
//!   `numgen random` rules (endpoint i of n with probability 1/(n-i)) that DNAT;
//!   with ClientIP affinity each endpoint has its own chain (`sep-…`) that records
//!   the client in the endpoint's affinity set.
//! - masquerade only where needed: a `mark-for-masquerade` jump for traffic from
//!   outside the cluster CIDR (node ports and external IPs with
//!   `externalTrafficPolicy: Cluster`, the node itself), hairpin (a pod DNATed to
//!   itself: the `hairpin` set of `endpoint . endpoint` pairs), and pod egress
//!   (cluster CIDR → outside it, as flannel).
//! - a filter chain rejects (TCP reset, ICMP port unreachable) whatever still goes to
//!   the service CIDR after DNAT: unknown IPs and ports and services without usable
//!   endpoints are refused at once. The cluster DNS address is left alone (served on
//!   the node by the DNS component).
//!
//! IPv4 only for now. Ready for dual-stack: the family and address type are named in
//! one place ([`Family`]); an `ip6` table would be a second [`ruleset::build`].
//!
//! Owns: the pure model, generation and diffing. Calls: `network::nft` (applying) and
//! the `conntrack` program (flushing); nothing else touches the kernel.

pub mod conntrack;
pub mod ruleset;
pub mod script;

use std::net::Ipv4Addr;

/// The address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
}

impl Family {
    /// The nftables family keyword.
    pub fn nft(self) -> &'static str {
        match self {
            Family::Ipv4 => "ip",
        }
    }
    /// The nftables type of an address.
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4_addr",
        }
    }
}

/// The table of the node whose bridge is `bridge`.
pub fn table_name(bridge: &str) -> String {
    format!("skiff-{bridge}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One port of one Service, with its endpoints: what the data plane serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name (may be empty for a single-port Service).
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `spec.externalIPs` and `status.loadBalancer.ingress[].ip`: served like the
    /// ClusterIP, but as external traffic.
    pub external_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP`: its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint of a service port, as its EndpointSlice says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node.
    pub local: bool,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl ServicePort {
    /// A readable, unique name: `namespace/name/proto/port-name` (or the port number
    /// when the port has no name). Every part is a DNS label, so it is an nftables
    /// identifier once prefixed.
    pub fn id(&self) -> String {
        let port = if self.port_name.is_empty() {
            format!("p{}", self.port)
        } else {
            self.port_name.clone()
        };
        format!(
            "{}/{}/{}/{port}",
            self.namespace,
            self.name,
            self.protocol.nft()
        )
    }

    /// Whether traffic from outside the node's view of the cluster (node ports,
    /// external and load-balancer IPs) reaches this port.
    pub fn is_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

/// The endpoints traffic may go to among those `wanted` admits: the ready ones, or,
/// when none is ready, the serving terminating ones (as kube-proxy).
pub fn usable(endpoints: &[Endpoint], wanted: impl Fn(&Endpoint) -> bool) -> Vec<&Endpoint> {
    let ready: Vec<&Endpoint> = endpoints.iter().filter(|e| wanted(e) && e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .iter()
        .filter(|e| wanted(e) && e.serving && e.terminating)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn endpoint(ip: &str, ready: bool, terminating: bool) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 8080,
            local: true,
            ready,
            serving: ready || terminating,
            terminating,
        }
    }

    pub fn service(name: &str, ip: &str, endpoints: Vec<Endpoint>) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: name.into(),
            port_name: String::new(),
            protocol: Protocol::Tcp,
            cluster_ip: Some(ip.parse().unwrap()),
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_timeout: None,
            external_local: false,
            internal_local: false,
            endpoints,
        }
    }

    #[test]
    fn ready_endpoints_win_and_terminating_ones_stand_in_when_none_is_ready() {
        let eps = vec![
            endpoint("10.42.0.2", true, false),
            endpoint("10.42.0.3", false, true),
        ];
        let picked = usable(&eps, |_| true);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].ip.to_string(), "10.42.0.2");
        let eps = vec![
            endpoint("10.42.0.3", false, true),
            endpoint("10.42.0.4", false, false),
        ];
        let picked = usable(&eps, |_| true);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].ip.to_string(), "10.42.0.3");
    }

    #[test]
    fn ids_name_namespace_service_protocol_and_port() {
        let mut svc = service("web", "10.43.0.5", vec![]);
        assert_eq!(svc.id(), "default/web/tcp/p80");
        svc.port_name = "http".into();
        assert_eq!(svc.id(), "default/web/tcp/http");
    }
}
