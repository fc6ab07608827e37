//! This node's Node object (registration, conditions, capacity) and its Lease in
//! `kube-node-lease`, renewed every few seconds: the lease is how the control plane
//! knows the node is alive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::runtime::PodRuntime;
use super::{AgentConfig, AgentError};

/// How often Node conditions are re-posted when nothing changed.
const STATUS_REFRESH: Duration = Duration::from_secs(60);
pub const LEASE_SECONDS: i32 = 40;

fn labels(config: &AgentConfig) -> BTreeMap<String, String> {
    let arch = crate::api::go_arch().to_string();
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
    if config.control_plane {
        labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            "true".into(),
        );
    }
    labels.extend(config.labels.clone());
    labels
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

fn conditions(previous: Option<&NodeStatus>) -> Vec<NodeCondition> {
    let now = Time(Utc::now().trunc_subsecs(0));
    let wanted = [
        (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
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
        conditions: Some(conditions(previous)),
        node_info: Some(NodeSystemInfo {
            architecture: crate::api::go_arch().into(),
            operating_system: "linux".into(),
            kernel_version: kernel_version(),
            os_image: os_image(),
            container_runtime_version: runtime.version(),
            kubelet_version: format!("{}+skiff", crate::api::KUBERNETES_VERSION.2),
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
fn status_stale(node: &Node) -> bool {
    let Some(conditions) = node.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
        return true;
    };
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
                if status_stale(&current) {
                    let runtime_version = current
                        .status
                        .as_ref()
                        .and_then(|s| s.node_info.as_ref())
                        .map(|i| i.container_runtime_version.clone())
                        .unwrap_or_default();
                    let patch =
                        json!({"status": {"conditions": conditions(current.status.as_ref())}});
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
