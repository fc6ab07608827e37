//! Node lifecycle: gives each node a pod CIDR from `--cluster-cidr`, watches node
//! leases, and when a node's lease is older than the grace period marks it
//! `Ready=Unknown`, taints it `node.kubernetes.io/unreachable` (NoSchedule and
//! NoExecute) and turns its pods `Ready=False` at once (so Services drop them). The
//! NoExecute taint does the rest through `taint_eviction`: after the eviction timeout
//! (a pod's own toleration wins) the pods are deleted so their controllers replace
//! them elsewhere. A node that renews its lease again loses the taints (which cancels
//! pending evictions); the agent reports itself Ready and completes the deletion of
//! its stale pods. Pods bound to a node that was deleted are force-deleted (nobody
//! else would finish them).
//!
//! May call: the API (nodes, nodes/status, pods, pods/status, leases, events).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::events::EventType;
use super::{cache, Context};
use crate::model::cidr::Cidr;

pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
const TICK: Duration = Duration::from_secs(1);

pub async fn run(ctx: Arc<Context>) {
    let nodes = cache(Api::<Node>::all(ctx.client.clone()));
    let leases = cache(Api::<Lease>::namespaced(
        ctx.client.clone(),
        "kube-node-lease",
    ));
    let _ = nodes.wait_until_ready().await;
    let _ = leases.wait_until_ready().await;
    let mut ticker = tokio::time::interval(TICK);
    // Pods bound to nodes that no longer exist: swept once at start, then whenever a
    // node disappears.
    let mut known: BTreeSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
    if let Err(e) = collect_orphaned_pods(&ctx, &known).await {
        tracing::debug!(error = %e, "sweeping pods of deleted nodes failed");
    }
    loop {
        ticker.tick().await;
        let now_known: BTreeSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
        for gone in known.difference(&now_known) {
            if let Err(e) = delete_pods_of_deleted_node(&ctx, gone).await {
                tracing::debug!(node = %gone, error = %e, "deleting pods of a deleted node failed");
            }
        }
        known = now_known;
        let renewals: HashMap<String, DateTime<Utc>> = leases
            .state()
            .iter()
            .filter_map(|l| Some((l.name_any(), l.spec.as_ref()?.renew_time.as_ref()?.0)))
            .collect();
        let all = nodes.state();
        let mut used: BTreeSet<String> = all
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
            .collect();
        for node in all {
            if let Err(e) = reconcile(
                &ctx,
                &node,
                renewals.get(&node.name_any()).copied(),
                &mut used,
            )
            .await
            {
                tracing::debug!(node = %node.name_any(), error = %e, "node lifecycle step failed");
            }
        }
    }
}

/// When the node was last heard from: its lease, else its creation.
fn last_heard(node: &Node, renewal: Option<DateTime<Utc>>) -> DateTime<Utc> {
    renewal
        .or(node.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or_else(Utc::now)
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

fn unreachable_since(node: &Node) -> Option<DateTime<Utc>> {
    node.spec
        .as_ref()?
        .taints
        .as_ref()?
        .iter()
        .find(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute")
        .map(|t| t.time_added.as_ref().map(|t| t.0).unwrap_or_else(Utc::now))
}

async fn reconcile(
    ctx: &Context,
    node: &Node,
    renewal: Option<DateTime<Utc>>,
    used_cidrs: &mut BTreeSet<String>,
) -> Result<(), kube::Error> {
    if node.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    assign_pod_cidr(ctx, node, used_cidrs).await?;
    let silent = Utc::now() - last_heard(node, renewal);
    let grace =
        chrono::Duration::from_std(ctx.settings.node_monitor_grace_period).unwrap_or_default();
    if silent > grace {
        mark_unreachable(ctx, node).await
    } else if unreachable_since(node).is_some() {
        set_taints(ctx, node, without_unreachable(node)).await
    } else {
        Ok(())
    }
}

/// The first free /`prefix` of the cluster CIDR not in `used`.
fn free_cidr(cluster: &Cidr, prefix: u8, used: &BTreeSet<String>) -> Option<String> {
    if prefix < cluster.prefix || prefix > 30 {
        return None;
    }
    let count = 1u32 << (prefix - cluster.prefix);
    let step = 1u32 << (32 - prefix);
    (0..count)
        .map(|i| format!("{}/{prefix}", cluster.nth(i * step)))
        .find(|c| !used.contains(c))
}

async fn assign_pod_cidr(
    ctx: &Context,
    node: &Node,
    used: &mut BTreeSet<String>,
) -> Result<(), kube::Error> {
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some()
    {
        return Ok(());
    }
    let Some(cidr) = free_cidr(
        &ctx.settings.cluster_cidr,
        ctx.settings.node_cidr_prefix,
        used,
    ) else {
        tracing::warn!(node = %node.name_any(), "no free pod CIDR left in the cluster CIDR");
        return Ok(());
    };
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    Api::<Node>::all(ctx.client.clone())
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    used.insert(cidr);
    Ok(())
}

fn unreachable_taints(now: DateTime<Utc>) -> [Taint; 2] {
    ["NoSchedule", "NoExecute"].map(|effect| Taint {
        key: UNREACHABLE_TAINT.into(),
        value: None,
        effect: effect.into(),
        time_added: Some(Time(now)),
    })
}

fn without_unreachable(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != UNREACHABLE_TAINT)
        .collect()
}

async fn set_taints(ctx: &Context, node: &Node, taints: Vec<Taint>) -> Result<(), kube::Error> {
    let patch = json!({"spec": {"taints": taints}});
    Api::<Node>::all(ctx.client.clone())
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
}

/// Ready=Unknown (once), the unreachable taints, and the node's pods not ready.
async fn mark_unreachable(ctx: &Context, node: &Node) -> Result<(), kube::Error> {
    let now = Utc::now().trunc_subsecs(0);
    if unreachable_since(node).is_none() {
        let mut taints = without_unreachable(node);
        taints.extend(unreachable_taints(now));
        set_taints(ctx, node, taints).await?;
    }
    if ready_status(node) == Some("Unknown") {
        return Ok(());
    }
    let conditions: Vec<serde_json::Value> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!({"type": c.type_, "status": "Unknown", "reason": "NodeStatusUnknown",
                   "message": "Kubelet stopped posting node status.",
                   "lastHeartbeatTime": c.last_heartbeat_time, "lastTransitionTime": Time(now)})
        })
        .collect();
    Api::<Node>::all(ctx.client.clone())
        .patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": conditions}})),
        )
        .await?;
    ctx.recorder
        .publish(
            &node.object_ref(&()),
            EventType::Normal,
            "NodeNotReady",
            &format!("Node {} status is now: NodeNotReady", node.name_any()),
        )
        .await;
    mark_pods_not_ready(ctx, node).await
}

/// Force-deletes the pods bound to `node`, which no longer exists: no agent is left
/// to finish their deletion (the pod garbage collector of kube-controller-manager).
async fn delete_pods_of_deleted_node(ctx: &Context, node: &str) -> Result<(), kube::Error> {
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods = crate::client::lenient::list(&Api::<Pod>::all(ctx.client.clone()), &params)
        .await?
        .items;
    for pod in pods {
        force_delete(ctx, &pod, node).await?;
    }
    Ok(())
}

async fn force_delete(ctx: &Context, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let message = format!("Node {node} is gone: deleting pod {}", pod.name_any());
    super::delete_pod_and_record(ctx, pod, Some(0), "NodeGone", &message).await
}

/// Pods bound to a node that is not in `nodes` (e.g. deleted while the server was down).
async fn collect_orphaned_pods(ctx: &Context, nodes: &BTreeSet<String>) -> Result<(), kube::Error> {
    let api = Api::<Pod>::all(ctx.client.clone());
    let mut params = ListParams::default().fields("spec.nodeName!=").limit(500);
    loop {
        let page = crate::client::lenient::list(&api, &params).await?;
        for pod in &page.items {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            if !node.is_empty() && !nodes.contains(&node) {
                force_delete(ctx, pod, &node).await?;
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(()),
        }
    }
}

async fn pods_on(ctx: &Context, node: &Node) -> Result<Vec<Pod>, kube::Error> {
    let params = ListParams::default().fields(&format!("spec.nodeName={}", node.name_any()));
    Ok(
        crate::client::lenient::list(&Api::<Pod>::all(ctx.client.clone()), &params)
            .await?
            .items,
    )
}

async fn mark_pods_not_ready(ctx: &Context, node: &Node) -> Result<(), kube::Error> {
    let now = Time(Utc::now().trunc_subsecs(0));
    for pod in pods_on(ctx, node).await? {
        let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
            continue;
        };
        if !conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            continue;
        }
        let updated: Vec<_> = conditions
            .into_iter()
            .map(|mut c| {
                if c.type_ == "Ready" || c.type_ == "ContainersReady" {
                    c.status = "False".into();
                    c.reason = Some("NodeLost".into());
                    c.last_transition_time = Some(now.clone());
                }
                c
            })
            .collect();
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({"status": {"conditions": updated}});
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::debug!(pod = %pod.name_any(), error = %e, "marking a pod not ready failed");
        }
        ctx.recorder
            .publish(
                &pod.object_ref(&()),
                EventType::Warning,
                "NodeNotReady",
                "Node is not ready",
            )
            .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidrs_are_handed_out_in_order_and_never_twice() {
        let cluster: Cidr = "10.42.0.0/16".parse().unwrap();
        let mut used = BTreeSet::new();
        let first = free_cidr(&cluster, 24, &used).unwrap();
        assert_eq!(first, "10.42.0.0/24");
        used.insert(first);
        assert_eq!(free_cidr(&cluster, 24, &used).unwrap(), "10.42.1.0/24");
        let tiny: Cidr = "10.42.0.0/24".parse().unwrap();
        let all: BTreeSet<String> = ["10.42.0.0/24".to_string()].into();
        assert_eq!(free_cidr(&tiny, 24, &all), None);
    }
}
