//! The node's network beyond each pod's own interface: the service sink link, and
//! the node-level network components (the services data plane, the node-local
//! cluster DNS, the pod network across nodes) that every agent runs, the server's
//! in-process agent too.
//!
//! Owns: [`NetworkConfig`], starting the node's network components once the node
//! has its pod CIDR, and stopping them.
//! May call: the API (with the node's credentials), `crate::network` (the kernel
//! side: links, routes, nftables), `model`, `host`.

pub mod proxy;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::model::cidr::Cidr;

pub mod dns;
pub mod overlay;

/// How pods on different nodes reach each other (`--flannel-backend`, as in k3s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlannelBackend {
    /// Flannel-compatible VXLAN (VNI 1, UDP 8472).
    #[default]
    Vxlan,
    /// Routes through the other nodes' addresses (all nodes on one L2 segment).
    HostGw,
    /// WireGuard tunnels, where the kernel has WireGuard.
    WireguardNative,
    /// No pod network across nodes: the user brings one.
    None,
}

impl std::str::FromStr for FlannelBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vxlan" => Ok(Self::Vxlan),
            "host-gw" => Ok(Self::HostGw),
            "wireguard-native" => Ok(Self::WireguardNative),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "unknown flannel backend {s:?}: expected vxlan, host-gw, wireguard-native or none"
            )),
        }
    }
}

impl std::fmt::Display for FlannelBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vxlan => "vxlan",
            Self::HostGw => "host-gw",
            Self::WireguardNative => "wireguard-native",
            Self::None => "none",
        })
    }
}

/// What the node's network components need to know.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub node_name: String,
    /// The node's own address (`--node-ip`).
    pub node_ip: IpAddr,
    /// The pod range of the whole cluster (`--cluster-cidr`).
    pub cluster_cidr: Cidr,
    /// The service range (`--service-cidr`), routed to the sink link.
    pub service_cidr: Cidr,
    /// The cluster DNS address (`--cluster-dns`), served on this node.
    pub cluster_dns: IpAddr,
    /// The cluster domain (`--cluster-domain`).
    pub cluster_domain: String,
    /// The pod bridge of the default network (`--cni-bridge`).
    pub bridge: String,
    /// The link the service CIDR is routed to (`<bridge>-sink`).
    pub sink_link: String,
    /// The agent's state directory (`<data-dir>/agent`).
    pub state_dir: PathBuf,
    /// `--flannel-backend`.
    pub backend: FlannelBackend,
    /// `--flannel-iface`: the interface whose address carries the pod network.
    pub iface: Option<String>,
    /// `--resolv-conf`: where cluster DNS finds its upstreams (`None`: the host's).
    pub resolv_conf: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Sink(String),
    #[error("pod network across nodes: {0}")]
    Overlay(String),
}

/// Sets up the node's network once its pod CIDR is known: the service sink first
/// (so no service packet ever takes the default route), then the components.
pub async fn start(
    client: kube::Client,
    config: Arc<NetworkConfig>,
    pod_cidr: &str,
) -> Result<(), NetworkError> {
    let cidr = config.service_cidr.to_string();
    let sink = config.sink_link.clone();
    tokio::task::spawn_blocking(move || route_service_cidr_to_sink(&cidr, &sink))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
        .map_err(NetworkError::Sink)?;
    enable_forwarding();
    overlay::start(client.clone(), config.clone(), pod_cidr).await?;
    dns::start(client.clone(), config.clone());
    proxy::start(client.clone(), config.clone());
    Ok(())
}

/// Routes the service CIDR to a sink link (`link`), so service traffic nobody
/// answers dies here. Uses a `dummy` link where the kernel has them, else `ifb`.
fn route_service_cidr_to_sink(cidr: &str, link: &str) -> Result<(), String> {
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("running ip {}: {e}", args.join(" ")))
    };
    let exists = ip(&["link", "show", link])?.status.success();
    if !exists {
        let dummy = ip(&["link", "add", link, "type", "dummy"])?;
        if !dummy.status.success() {
            let ifb = ip(&["link", "add", link, "type", "ifb"])?;
            if !ifb.status.success() {
                return Err(format!(
                    "creating the sink link {link}: {}",
                    String::from_utf8_lossy(&ifb.stderr).trim()
                ));
            }
        }
    }
    ip(&["link", "set", link, "up"])?;
    let route = ip(&["route", "replace", cidr, "dev", link])?;
    if !route.status.success() {
        return Err(format!(
            "routing {cidr} to {link}: {}",
            String::from_utf8_lossy(&route.stderr).trim()
        ));
    }
    Ok(())
}

/// Kernel settings pods need: forwarding, and bridged traffic through netfilter.
fn enable_forwarding() {
    for (path, value) in [
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        ("/proc/sys/net/bridge/bridge-nf-call-iptables", "1"),
    ] {
        if let Err(e) = std::fs::write(path, value) {
            tracing::warn!(path, error = %e, "setting a kernel parameter failed");
        }
    }
}

/// Which node instance `skiff network cleanup` cleans (several may share a host).
#[derive(Debug, Clone)]
pub struct CleanupTarget {
    /// The node's pod bridge (`--cni-bridge`): names its table and links.
    pub bridge: String,
    /// The service sink link (`<bridge>-sink`).
    pub sink_link: String,
    /// The node's data directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// The cluster's pod range: the overlay routes inside it are removed (`None`:
    /// every route skiff's overlay made in this network namespace).
    pub cluster_cidr: Option<Cidr>,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("removing the services table {table}: {error}")]
    Table {
        table: String,
        error: crate::network::nft::NftError,
    },
    #[error("removing link {link}: {message}")]
    Link { link: String, message: String },
    #[error("removing the pod network's routes: {0}")]
    Overlay(NetworkError),
}

/// Removes the node's network state that outlives the agent: the services table
/// (`ip skiff-<bridge>`), the built-in CNI plugins' tables (`ip skiff-portmap-<bridge>`,
/// `ip skiff-masq-<bridge>`), the sink link with its service route and the cluster
/// DNS address, the pod bridge, and the overlay's device and routes. Every step
/// runs; the errors are collected (a missing piece is not one). Run it after the
/// node's pods are gone (the data dir and its IPAM state stay, as k3s's killall).
pub fn cleanup(target: &CleanupTarget) -> Vec<CleanupError> {
    let mut errors = Vec::new();
    let tables = [
        crate::network::proxy::table_name(&target.bridge),
        format!(
            "{}{}",
            crate::network::plugins::portmap::TABLE_PREFIX,
            target.bridge
        ),
        format!(
            "{}{}",
            crate::network::plugins::bridge::MASQ_TABLE_PREFIX,
            target.bridge
        ),
    ];
    for table in tables {
        if let Err(error) = crate::network::nft::delete_table("ip", &table) {
            errors.push(CleanupError::Table { table, error });
        }
    }
    for link in [&target.sink_link, &target.bridge] {
        if let Err(message) = delete_link(link) {
            errors.push(CleanupError::Link {
                link: link.clone(),
                message,
            });
        }
    }
    if let Err(e) = overlay::cleanup_overlay(target.cluster_cidr) {
        errors.push(CleanupError::Overlay(e));
    }
    errors
}

/// Deletes `link` (and the routes through it) if it exists.
fn delete_link(link: &str) -> Result<(), String> {
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("running ip {}: {e}", args.join(" ")))
    };
    if !ip(&["link", "show", link])?.status.success() {
        return Ok(());
    }
    let out = ip(&["link", "del", link])?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
