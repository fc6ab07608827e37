//! The pod network across nodes, agent side — what flannel's kube subnet manager
//! does in k3s: announces this node on its own Node object (the
//! `flannel.alpha.coreos.com/*` annotations: backend type, backend data with the VTEP
//! MAC, public IP, `kube-subnet-manager: "true"`), watches all Nodes, and hands the
//! peers they announce to the kernel side (`network::overlay::reconcile`), level-
//! triggered: on every change of the peers the Nodes announce (Node heartbeats alone
//! do not touch the kernel) and every [`RESYNC`], so a route someone deleted comes
//! back and the routes of nodes that went away go.
//!
//! The node's address on the overlay is the first IPv4 address of `--flannel-iface`
//! when given, else the node IP; the uplink (VXLAN `dev`, MTU) is that interface,
//! else the one holding the node IP. `--flannel-backend=none` runs nothing;
//! `wireguard-native` fails at start with what to do.
//!
//! Owns: the node's flannel annotations and the overlay loop. May call: the API (the
//! node's credentials: it may read all Nodes, write only its own), `network::overlay`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::Notify;

use super::{FlannelBackend, NetworkConfig, NetworkError};
use crate::model::cidr::Cidr;
use crate::network::overlay::{self as kernel, netlink::NetlinkKernel, Local, Mode, Peer};

/// How often the kernel is compared with the Nodes even without a change.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon a failed pass is tried again.
const RETRY: Duration = Duration::from_secs(5);

const PREFIX: &str = "flannel.alpha.coreos.com/";
pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const PUBLIC_IP_OVERWRITE: &str = "flannel.alpha.coreos.com/public-ip-overwrite";
pub const SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

fn overlay_error(e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Overlay(e.to_string())
}

/// Starts the pod network across nodes for a node whose pod CIDR is `pod_cidr`:
/// checks what the backend needs, then runs the loop in the background.
pub async fn start(
    client: kube::Client,
    config: Arc<NetworkConfig>,
    pod_cidr: &str,
) -> Result<(), NetworkError> {
    let mode = match config.backend {
        FlannelBackend::None => return Ok(()),
        FlannelBackend::Vxlan => Mode::Vxlan,
        FlannelBackend::HostGw => Mode::HostGw,
        FlannelBackend::WireguardNative => {
            return Err(tokio::task::spawn_blocking(wireguard_unavailable)
                .await
                .map_err(overlay_error)?);
        }
    };
    let pod_cidr: Cidr = pod_cidr
        .parse()
        .map_err(|e| overlay_error(format!("the node's pod CIDR: {e}")))?;
    let for_local = config.clone();
    let local = tokio::task::spawn_blocking(move || local_node(&for_local, mode, pod_cidr))
        .await
        .map_err(overlay_error)??;
    if !first_start(&local.node_name) {
        return Ok(());
    }
    tracing::info!(
        backend = %config.backend,
        public_ip = %local.public_ip,
        uplink = local.uplink.as_ref().map(|u| u.name.as_str()).unwrap_or(""),
        "pod network across nodes"
    );
    tokio::spawn(run(client, Arc::new(local)));
    Ok(())
}

/// Whether this is the first start for `node` in this process: a runtime that
/// retries its set-up calls [`start`] again, and one loop per node is enough.
fn first_start(node: &str) -> bool {
    static STARTED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::LazyLock::new(Default::default);
    STARTED
        .lock()
        .map(|mut started| started.insert(node.to_string()))
        .unwrap_or(false)
}

/// The error for `wireguard-native`: what the kernel lacks, or that skiff lacks it.
fn wireguard_unavailable() -> NetworkError {
    let probed = NetlinkKernel::open().and_then(|mut k| kernel::check_wireguard(&mut k));
    match probed {
        Err(e) => overlay_error(e),
        Ok(()) => overlay_error(
            "--flannel-backend=wireguard-native is not implemented by this skiff: \
             choose --flannel-backend=vxlan or host-gw",
        ),
    }
}

/// This node on the overlay: its uplink and public IP, from the kernel.
fn local_node(config: &NetworkConfig, mode: Mode, pod_cidr: Cidr) -> Result<Local, NetworkError> {
    let node_ip = match config.node_ip {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => {
            return Err(overlay_error(format!(
                "the pod network across nodes needs an IPv4 node IP, not {ip} (set --node-ip)"
            )))
        }
    };
    let mut netlink = NetlinkKernel::open().map_err(overlay_error)?;
    let (uplink, public_ip) = kernel::find_uplink(&mut netlink, config.iface.as_deref(), node_ip)
        .map_err(overlay_error)?;
    Ok(Local {
        node_name: config.node_name.clone(),
        mode,
        pod_cidr,
        cluster_cidr: config.cluster_cidr,
        public_ip,
        uplink,
    })
}

/// The pod MTU that crosses to other nodes unfragmented (uplink MTU − 50 for vxlan,
/// the uplink MTU for host-gw), for the pod network's bridge; `None` with
/// `--flannel-backend=none` or when the uplink is not found.
pub fn pod_mtu(config: &NetworkConfig) -> Option<u32> {
    let mode = match config.backend {
        FlannelBackend::Vxlan => Mode::Vxlan,
        FlannelBackend::HostGw | FlannelBackend::WireguardNative => Mode::HostGw,
        FlannelBackend::None => return None,
    };
    let IpAddr::V4(node_ip) = config.node_ip else {
        return None;
    };
    let mut netlink = NetlinkKernel::open().ok()?;
    let (uplink, _) = kernel::find_uplink(&mut netlink, config.iface.as_deref(), node_ip).ok()?;
    Some(kernel::pod_mtu(mode, uplink?.mtu))
}

/// Removes the overlay's kernel state: the VXLAN device skiff made and skiff's routes
/// inside `cluster_cidr` (all of skiff's routes when `None`). For `skiff network
/// cleanup`; returns how many it removed.
pub fn cleanup_overlay(cluster_cidr: Option<Cidr>) -> Result<usize, NetworkError> {
    let mut netlink = NetlinkKernel::open().map_err(overlay_error)?;
    kernel::cleanup(&mut netlink, cluster_cidr).map_err(overlay_error)
}

/// Watches all Nodes and reconciles on each change and every [`RESYNC`]; never ends.
async fn run(client: kube::Client, local: Arc<Local>) {
    let api: Api<Node> = Api::all(client.clone());
    let changed = Arc::new(Notify::new());
    let reader = crate::client::lenient::notifying_cache(
        api.clone(),
        watcher::Config::default(),
        changed.clone(),
    );
    if reader.wait_until_ready().await.is_err() {
        return;
    }
    let mut applied = None;
    let mut resync = true;
    loop {
        let wait = match sync_once(&api, &reader, &local, &mut applied, resync).await {
            Ok(()) => RESYNC,
            Err(e) => {
                tracing::warn!(error = %e, "the pod network across nodes is not in place yet");
                applied = None;
                RETRY
            }
        };
        resync = tokio::select! {
            _ = changed.notified() => false,
            _ = tokio::time::sleep(wait) => true,
        };
    }
}

/// One pass: this node's annotations, then the kernel — unless the peers are the
/// ones `applied` last and this is no `resync` (most Node changes are heartbeats).
async fn sync_once(
    api: &Api<Node>,
    nodes: &Store<Node>,
    local: &Arc<Local>,
    applied: &mut Option<Vec<Peer>>,
    resync: bool,
) -> Result<(), NetworkError> {
    let all: Vec<Arc<Node>> = nodes.state();
    let own = all
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(&local.node_name));
    let wanted = annotations(local);
    if own.is_some_and(|n| !has_annotations(n, &wanted)) {
        let patch = serde_json::json!({"metadata": {"annotations": wanted}});
        api.patch(
            &local.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| overlay_error(format!("annotating node {}: {e}", local.node_name)))?;
    }
    let mut peers: Vec<Peer> = all.iter().filter_map(|n| peer_of(n, local.mode)).collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    if !resync && applied.as_ref() == Some(&peers) {
        return Ok(());
    }
    *applied = Some(peers.clone());
    let local = local.clone();
    let changes = tokio::task::spawn_blocking(move || {
        let mut netlink = NetlinkKernel::open()?;
        kernel::reconcile(&mut netlink, &local, &peers)
    })
    .await
    .map_err(overlay_error)?
    .map_err(overlay_error)?;
    if changes > 0 {
        tracing::info!(changes, "pod network across nodes reconciled");
    }
    Ok(())
}

fn backend_type(mode: Mode) -> &'static str {
    match mode {
        Mode::Vxlan => "vxlan",
        Mode::HostGw => "host-gw",
    }
}

/// The annotations this node announces, as flannel writes them.
pub fn annotations(local: &Local) -> BTreeMap<String, String> {
    let data = match local.mode {
        Mode::Vxlan => serde_json::json!({
            "VNI": kernel::VXLAN_VNI,
            "VtepMAC": kernel::format_mac(kernel::vtep_mac(&local.node_name)),
        })
        .to_string(),
        Mode::HostGw => "null".into(),
    };
    BTreeMap::from([
        (BACKEND_TYPE.into(), backend_type(local.mode).into()),
        (BACKEND_DATA.into(), data),
        (PUBLIC_IP.into(), local.public_ip.to_string()),
        (SUBNET_MANAGER.into(), "true".into()),
    ])
}

fn has_annotations(node: &Node, wanted: &BTreeMap<String, String>) -> bool {
    let current = node.metadata.annotations.as_ref();
    wanted
        .iter()
        .all(|(k, v)| current.and_then(|c| c.get(k)) == Some(v))
}

/// The peer a Node announces for `mode`, if it announces one: a pod CIDR, the same
/// backend type, a public IP (the overwrite first, as flannel) and, for vxlan, the
/// VTEP MAC. Nodes without the annotations (simulated nodes, nodes still starting)
/// are not peers.
pub fn peer_of(node: &Node, mode: Mode) -> Option<Peer> {
    let annotations = node.metadata.annotations.as_ref()?;
    let get = |key: &str| annotations.get(key).map(String::as_str);
    if get(BACKEND_TYPE)? != backend_type(mode) {
        return None;
    }
    let public_ip: Ipv4Addr = get(PUBLIC_IP_OVERWRITE)
        .and_then(|ip| ip.parse().ok())
        .or_else(|| get(PUBLIC_IP)?.parse().ok())?;
    let pod_cidr: Cidr = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
    let vtep_mac = match mode {
        Mode::Vxlan => {
            let data: serde_json::Value = serde_json::from_str(get(BACKEND_DATA)?).ok()?;
            Some(kernel::parse_mac(data.get("VtepMAC")?.as_str()?)?)
        }
        Mode::HostGw => None,
    };
    Some(Peer {
        name: node.metadata.name.clone()?,
        pod_cidr,
        public_ip,
        vtep_mac,
    })
}

/// Whether `key` is one of flannel's annotations.
pub fn is_flannel_annotation(key: &str) -> bool {
    key.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(mode: Mode) -> Local {
        Local {
            node_name: "n1".into(),
            mode,
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            public_ip: "192.168.1.11".parse().unwrap(),
            uplink: None,
        }
    }

    fn node(name: &str, cidr: Option<&str>, annotations: BTreeMap<String, String>) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some(name.into());
        node.metadata.annotations = Some(annotations);
        node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: cidr.map(str::to_string),
            ..Default::default()
        });
        node
    }

    #[test]
    fn one_loop_per_node() {
        assert!(first_start("once-a"));
        assert!(!first_start("once-a"));
        assert!(first_start("once-b"));
    }

    #[test]
    fn a_node_announces_what_flannel_announces() {
        let wanted = annotations(&local(Mode::Vxlan));
        assert_eq!(wanted[BACKEND_TYPE], "vxlan");
        assert_eq!(wanted[PUBLIC_IP], "192.168.1.11");
        assert_eq!(wanted[SUBNET_MANAGER], "true");
        let data: serde_json::Value = serde_json::from_str(&wanted[BACKEND_DATA]).unwrap();
        assert_eq!(data["VNI"], 1);
        assert_eq!(
            data["VtepMAC"],
            kernel::format_mac(kernel::vtep_mac("n1")).as_str()
        );
        assert!(wanted.keys().all(|k| is_flannel_annotation(k)));
        let gw = annotations(&local(Mode::HostGw));
        assert_eq!(
            (gw[BACKEND_TYPE].as_str(), gw[BACKEND_DATA].as_str()),
            ("host-gw", "null")
        );
    }

    #[test]
    fn an_announcing_node_is_a_peer_of_its_backend_only() {
        let announced = node("n1", Some("10.42.1.0/24"), annotations(&local(Mode::Vxlan)));
        let peer = peer_of(&announced, Mode::Vxlan).expect("a vxlan peer");
        assert_eq!(peer.name, "n1");
        assert_eq!(peer.pod_cidr.to_string(), "10.42.1.0/24");
        assert_eq!(peer.public_ip.to_string(), "192.168.1.11");
        assert_eq!(peer.vtep_mac, Some(kernel::vtep_mac("n1")));
        assert!(peer_of(&announced, Mode::HostGw).is_none());
        let gw = node(
            "n1",
            Some("10.42.1.0/24"),
            annotations(&local(Mode::HostGw)),
        );
        assert_eq!(peer_of(&gw, Mode::HostGw).unwrap().vtep_mac, None);
    }

    #[test]
    fn the_public_ip_overwrite_wins() {
        let mut wanted = annotations(&local(Mode::Vxlan));
        wanted.insert(PUBLIC_IP_OVERWRITE.into(), "203.0.113.7".into());
        let peer = peer_of(&node("n1", Some("10.42.1.0/24"), wanted), Mode::Vxlan).unwrap();
        assert_eq!(peer.public_ip.to_string(), "203.0.113.7");
    }

    #[test]
    fn nodes_without_a_cidr_or_annotations_are_no_peers() {
        let wanted = annotations(&local(Mode::Vxlan));
        assert!(peer_of(&node("n1", None, wanted.clone()), Mode::Vxlan).is_none());
        assert!(peer_of(
            &node("sim", Some("10.42.9.0/24"), BTreeMap::new()),
            Mode::Vxlan
        )
        .is_none());
        let mut no_mac = wanted.clone();
        no_mac.insert(BACKEND_DATA.into(), r#"{"VNI":1}"#.into());
        assert!(peer_of(&node("n1", Some("10.42.1.0/24"), no_mac), Mode::Vxlan).is_none());
        let mut bad_ip = wanted;
        bad_ip.insert(PUBLIC_IP.into(), "nowhere".into());
        assert!(peer_of(&node("n1", Some("10.42.1.0/24"), bad_ip), Mode::Vxlan).is_none());
    }

    #[test]
    fn annotations_are_patched_only_when_they_differ() {
        let wanted = annotations(&local(Mode::Vxlan));
        let mut with_more = wanted.clone();
        with_more.insert("other".into(), "x".into());
        assert!(has_annotations(&node("n1", None, with_more), &wanted));
        let mut stale = wanted.clone();
        stale.insert(PUBLIC_IP.into(), "192.168.1.99".into());
        assert!(!has_annotations(&node("n1", None, stale), &wanted));
    }
}
