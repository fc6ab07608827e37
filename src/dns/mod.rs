//! Cluster DNS: the Kubernetes DNS schema (https://github.com/kubernetes/dns,
//! docs/specification.md) answered from a snapshot of Services and their ready
//! endpoints, everything else forwarded to the host's resolvers through a small
//! cache. Every node's agent runs one, node-local, on the `--cluster-dns` address.
//!
//! Owns: the snapshot types ([`snapshot`]), the zone built from them ([`zone`], pure),
//! the forwarder and its cache ([`forward`]), the upstream list from resolv.conf
//! ([`upstreams`]) and the hickory-server request handler ([`server`]).
//! May call: `model`. The agent builds snapshots from the API and starts the server.

pub mod forward;
pub mod server;
pub mod snapshot;
#[cfg(test)]
mod test_upstream;
pub mod upstreams;
pub mod zone;

/// The time-to-live of every answer from the cluster zone.
pub const TTL: u32 = 5;

/// The DNS schema version this implementation answers (`dns-version.<zone>` TXT).
pub const SCHEMA_VERSION: &str = "1.1.0";

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid cluster domain {0:?}: {1}")]
    Domain(String, String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    ResolvConf {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
