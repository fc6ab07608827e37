//! This node's Node object (registration, conditions, capacity) and its Lease in
//! `kube-node-lease`, renewed every few seconds: the lease is how the control plane
//! knows the node is alive.
//!
//! The node sets only labels NodeRestriction lets it set ([`check_labels`]); the
//! control-plane role of the server's own node is set by the server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::runtime::PodRuntime;
use super::{AgentConfig, AgentError};

/// How often Node conditions are re-posted when nothing changed: kubelet's
/// `nodeStatusReportFrequency`. Liveness is the Lease's job, renewed far more often.
const STATUS_REFRESH: Duration = Duration::from_secs(300);
pub const LEASE_SECONDS: i32 = 40;

fn labels(config: &AgentConfig) -> BTreeMap<String, String> {
    let arch = crate::model::version::go_arch().to_string();
    let mut labels = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            config.node_name.clone(),
        ),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch),
    ]);
    labels.extend(config.labels.clone());
    labels
}

/// Refuses `--node-label`s a node may not set on itself (NodeRestriction), as kubelet
/// refuses them at start: roles and other `kubernetes.io`/`k8s.io` labels outside
/// kubelet's set are an admin's (`kubectl label node`) or, on the server's own node,
/// the server's to set.
pub fn check_labels(config: &AgentConfig) -> Result<(), AgentError> {
    let restricted: Vec<&str> = config
        .labels
        .keys()
        .map(String::as_str)
        .filter(|k| !crate::model::node_labels::kubelet_may_set_label(k))
        .collect();
    if restricted.is_empty() {
        return Ok(());
    }
    Err(AgentError::Invalid {
        flag: "--node-label",
        value: restricted.join(", "),
        message: format!(
            "a node may not set its own labels in the kubernetes.io, k8s.io or node-restriction.kubernetes.io namespaces except {} (set them with kubectl label node {}, or on the server's node with skiff server --node-label)",
            crate::model::node_labels::allowed_labels_description(),
            config.node_name
        ),
    })
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn quantities(c: &super::Capacity) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(c.cpu.clone())),
        ("memory".to_string(), Quantity(c.memory.clone())),
        ("pods".to_string(), Quantity(c.pods.clone())),
    ])
}

/// Resource pressure on the node, with the kubelet's default hard eviction
/// thresholds: less than 100 MiB of memory available, less than 10 % of the data
/// directory's filesystem free, more than 90 % of the PID space in use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pids: bool,
}

impl Pressure {
    pub fn observe(data_dir: &std::path::Path) -> Pressure {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let available_kib = meminfo
            .lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
        let disk = nix::sys::statvfs::statvfs(data_dir)
            .ok()
            .filter(|s| s.blocks() > 0)
            .map(|s| (s.blocks_available() as f64) / (s.blocks() as f64) < 0.10);
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        let processes = std::fs::read_dir("/proc").map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        });
        Pressure {
            memory: available_kib.is_some_and(|kib| kib < 100 * 1024),
            disk: disk.unwrap_or(false),
            pids: match (pid_max, processes) {
                (Some(max), Ok(n)) => n * 10 > max * 9,
                _ => false,
            },
        }
    }
}

fn conditions(previous: Option<&NodeStatus>, pressure: Pressure) -> Vec<NodeCondition> {
    let now = Time(Utc::now().trunc_subsecs(0));
    let flag = |on: bool| if on { "True" } else { "False" };
    let wanted = [
        (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
        if pressure.memory {
            (
                "MemoryPressure",
                flag(true),
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            (
                "MemoryPressure",
                flag(false),
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if pressure.disk {
            (
                "DiskPressure",
                flag(true),
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            (
                "DiskPressure",
                flag(false),
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if pressure.pids {
            (
                "PIDPressure",
                flag(true),
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            (
                "PIDPressure",
                flag(false),
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
    ];
    wanted
        .iter()
        .map(|(kind, status, reason, message)| {
            let kept = previous
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == *kind))
                .filter(|c| c.status == *status)
                .and_then(|c| c.last_transition_time.clone());
            NodeCondition {
                type_: kind.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(kept.unwrap_or_else(|| now.clone())),
            }
        })
        .collect()
}

fn node_status(
    config: &AgentConfig,
    runtime: &dyn PodRuntime,
    previous: Option<&NodeStatus>,
) -> NodeStatus {
    NodeStatus {
        capacity: Some(quantities(&config.capacity)),
        allocatable: Some(quantities(&config.capacity)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        conditions: Some(conditions(previous, Pressure::observe(&config.data_dir))),
        daemon_endpoints: (config.kubelet_port > 0).then(|| NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: crate::model::version::go_arch().into(),
            operating_system: "linux".into(),
            kernel_version: kernel_version(),
            os_image: os_image(),
            container_runtime_version: runtime.version(),
            kubelet_version: format!("{}+skiff", crate::model::version::KUBERNETES_VERSION.2),
            kube_proxy_version: String::new(),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
        }),
        ..Default::default()
    }
}

/// Creates this node's Node, or brings an existing one's labels up to date; posts its
/// status. Returns the Node as stored.
pub async fn register(
    client: &kube::Client,
    config: &AgentConfig,
    runtime: &dyn PodRuntime,
) -> Result<Node, AgentError> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |source| AgentError::Register {
        node: config.node_name.clone(),
        source: Box::new(source),
    };
    let existing = api.get_opt(&config.node_name).await.map_err(err)?;
    let node = match existing {
        Some(_) => {
            let patch = json!({"metadata": {"labels": labels(config)}});
            api.patch(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(err)?
        }
        None => {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(config.node_name.clone()),
                    labels: Some(labels(config)),
                    ..Default::default()
                },
                spec: Some(NodeSpec {
                    taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
                    ..Default::default()
                }),
                status: Some(node_status(config, runtime, None)),
            };
            api.create(&PostParams::default(), &node)
                .await
                .map_err(err)?
        }
    };
    let status = node_status(config, runtime, node.status.as_ref());
    let patch = json!({"status": status});
    api.patch_status(
        &config.node_name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(err)
}

fn lease(config: &AgentConfig, node: &Node) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            namespace: Some("kube-node-lease".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: config.node_name.clone(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.node_name.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(Utc::now())),
            ..Default::default()
        }),
    }
}

async fn renew_lease(
    client: &kube::Client,
    config: &AgentConfig,
    node: &Node,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let patch = json!({"spec": {"holderIdentity": config.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                                "renewTime": MicroTime(Utc::now())}});
    match api
        .patch(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => api
            .create(&PostParams::default(), &lease(config, node))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}

/// Whether the stored conditions are not what this agent reports (e.g. the control
/// plane marked the node Unknown while it was away), or the heartbeat is stale.
fn status_stale(node: &Node, pressure: Pressure) -> bool {
    let Some(conditions) = node.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
        return true;
    };
    let shows = |kind: &str, on: bool| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && (c.status == "True") == on)
    };
    if !shows("MemoryPressure", pressure.memory)
        || !shows("DiskPressure", pressure.disk)
        || !shows("PIDPressure", pressure.pids)
    {
        return true;
    }
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    let heartbeat_old = ready
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .is_none_or(|t| (Utc::now() - t.0).to_std().unwrap_or_default() >= STATUS_REFRESH);
    ready.is_none_or(|c| c.status != "True") || heartbeat_old
}

/// Renews the lease every `lease_interval` and re-posts Node status when needed.
pub async fn heartbeat_forever(client: kube::Client, config: Arc<AgentConfig>, mut node: Node) {
    let api: Api<Node> = Api::all(client.clone());
    let mut ticker = tokio::time::interval(config.lease_interval);
    loop {
        ticker.tick().await;
        if let Err(e) = renew_lease(&client, &config, &node).await {
            tracing::warn!(node = %config.node_name, error = %e, "renewing the node lease failed");
        }
        match api.get_opt(&config.node_name).await {
            Ok(Some(current)) => {
                let pressure = Pressure::observe(&config.data_dir);
                if status_stale(&current, pressure) {
                    let runtime_version = current
                        .status
                        .as_ref()
                        .and_then(|s| s.node_info.as_ref())
                        .map(|i| i.container_runtime_version.clone())
                        .unwrap_or_default();
                    let patch = json!({"status": {"conditions": conditions(current.status.as_ref(), pressure)}});
                    if let Err(e) = api
                        .patch_status(
                            &config.node_name,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                    {
                        tracing::warn!(node = %config.node_name, error = %e, runtime = %runtime_version, "posting node status failed");
                    }
                }
                node = current;
            }
            Ok(None) => {
                tracing::warn!(node = %config.node_name, "this node's Node object was deleted")
            }
            Err(e) => {
                tracing::warn!(node = %config.node_name, error = %e, "reading this node failed")
            }
        }
    }
}

/// Whether the API reports `node` Ready (its Ready condition True).
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Tells the service manager `READY=1` once the API reports this node Ready: at once
/// when the status registration stored says so, else when a later read does.
pub async fn notify_when_ready(
    client: kube::Client,
    name: String,
    registered: Node,
    notifier: crate::host::notify::Notifier,
) {
    let api: Api<Node> = Api::all(client);
    let mut node = Some(registered);
    loop {
        if node.as_ref().is_some_and(is_ready) {
            tracing::info!(node = %name, "node is Ready");
            notifier.ready();
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        node = api.get_opt(&name).await.ok().flatten();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(labels: &[(&str, &str)]) -> AgentConfig {
        AgentConfig {
            server: "https://127.0.0.1:6443".into(),
            token: String::new(),
            node_name: "n1".into(),
            node_ip: "127.0.0.1".parse().unwrap(),
            data_dir: "/nonexistent".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taints: vec![],
            control_plane: false,
            capacity: crate::agent::machine_capacity(),
            lease_interval: Duration::from_secs(10),
            kubelet_port: 0,
            notify: None,
        }
    }

    #[test]
    fn a_node_refuses_labels_noderestriction_would_refuse() {
        let fine = config(&[("zone", "a"), ("node.kubernetes.io/pool", "edge")]);
        assert!(check_labels(&fine).is_ok());
        assert!(!labels(&fine).contains_key("node-role.kubernetes.io/control-plane"));
        let err = check_labels(&config(&[
            ("zone", "a"),
            ("node-role.kubernetes.io/worker", ""),
            ("node-restriction.kubernetes.io/pci", "yes"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "invalid --node-label \"node-restriction.kubernetes.io/pci, node-role.kubernetes.io/worker\": a node may not set its own labels"
            ),
            "{err}"
        );
        assert!(err.contains("kubectl label node n1"), "{err}");
    }

    #[test]
    fn pressure_turns_conditions_true_and_makes_the_status_stale() {
        let calm = conditions(None, Pressure::default());
        let status = |cs: &[NodeCondition], kind: &str| {
            cs.iter().find(|c| c.type_ == kind).unwrap().status.clone()
        };
        assert_eq!(status(&calm, "Ready"), "True");
        assert_eq!(status(&calm, "MemoryPressure"), "False");
        let node = Node {
            status: Some(NodeStatus {
                conditions: Some(calm),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!status_stale(&node, Pressure::default()));
        let low_disk = Pressure {
            disk: true,
            ..Default::default()
        };
        assert!(status_stale(&node, low_disk));
        let pressed = conditions(None, low_disk);
        assert_eq!(status(&pressed, "DiskPressure"), "True");
        // This machine is healthy.
        let here = Pressure::observe(std::path::Path::new("/"));
        assert!(!here.memory && !here.pids, "{here:?}");
    }
}
