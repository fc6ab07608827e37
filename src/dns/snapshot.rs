//! What cluster DNS knows of the cluster: each Service with its kind, ports and
//! *ready* endpoints. Plain data, built by the agent from Services and
//! EndpointSlices; the zone is computed from it.

use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub kind: ServiceKind,
    pub ports: Vec<ServicePort>,
    /// The ready endpoints (only used for headless Services).
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A Service with cluster IPs (one per family).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the name resolves to the ready endpoints.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Empty for an unnamed port (no SRV record).
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    /// The endpoint's `hostname` (a pod's `hostname` when its `subdomain` names the
    /// Service).
    pub hostname: Option<String>,
}
