//! Taint eviction (kube-controller-manager's taint-eviction controller): a pod bound to
//! a node with a `NoExecute` taint it does not tolerate is deleted, gracefully, with a
//! `TaintManagerEviction` event "Marking for deletion Pod ns/name".
//!
//! - A toleration with `tolerationSeconds` delays the eviction by that many seconds,
//!   counted from the taint's `timeAdded` (else from when this controller first saw
//!   the taint); when several tolerations match a taint, the smallest wins, and across
//!   taints the earliest deadline.
//! - A matching toleration without `tolerationSeconds` tolerates the taint forever.
//! - A taint removed before its deadline cancels the eviction (the loop is
//!   level-triggered: nothing is scheduled, each pass recomputes the deadlines).
//! - The node lifecycle taints (`node.kubernetes.io/unreachable`, `…/not-ready`) are
//!   tolerated for `Settings::pod_eviction_timeout` by pods that carry no toleration
//!   for them: skiff's stand-in for upstream's DefaultTolerationSeconds admission,
//!   which it does not run (its 300 s default is skiff's 30 s).
//!
//! May call: the API (nodes and pods: watch; pods: delete, status patch; events).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::{cache, Context};

/// The taints node lifecycle puts on nodes it cannot hear from.
pub const LIFECYCLE_TAINTS: &[&str] = &[
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
];
const TICK: Duration = Duration::from_secs(1);

/// A taint as it identifies itself on one node.
type TaintId = (String, String, String, String);

fn taint_id(node: &str, taint: &Taint) -> TaintId {
    (
        node.to_string(),
        taint.key.clone(),
        taint.value.clone().unwrap_or_default(),
        taint.effect.clone(),
    )
}

pub async fn run(ctx: Arc<Context>) {
    let nodes = cache(Api::<Node>::all(ctx.client.clone()));
    let pods = cache(Api::<Pod>::all(ctx.client.clone()));
    let _ = nodes.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let mut first_seen: HashMap<TaintId, DateTime<Utc>> = HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let now = Utc::now();
        let mut tainted: BTreeMap<String, Vec<(Taint, DateTime<Utc>)>> = BTreeMap::new();
        let mut still: HashMap<TaintId, DateTime<Utc>> = HashMap::new();
        for node in nodes.state() {
            let name = node.name_any();
            for taint in no_execute_taints(&node) {
                let id = taint_id(&name, &taint);
                let seen = first_seen.get(&id).copied().unwrap_or(now);
                still.insert(id, seen);
                let since = taint.time_added.as_ref().map(|t| t.0).unwrap_or(seen);
                tainted
                    .entry(name.clone())
                    .or_default()
                    .push((taint, since));
            }
        }
        first_seen = still;
        if tainted.is_empty() {
            continue;
        }
        for pod in pods.state() {
            let Some(taints) = pod_node(&pod).and_then(|n| tainted.get(n)) else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let due = eviction_time(&pod, taints, ctx.settings.pod_eviction_timeout);
            if due.is_some_and(|at| at <= now) {
                if let Err(e) = evict(&ctx, &pod).await {
                    tracing::debug!(pod = %pod.name_any(), error = %e, "taint eviction failed");
                }
            }
        }
    }
}

fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect()
}

/// Whether `toleration` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// When the pod must go because of `taints` (each with the time it counts from);
/// None: it tolerates them all forever.
fn eviction_time(
    pod: &Pod,
    taints: &[(Taint, DateTime<Utc>)],
    lifecycle_default: Duration,
) -> Option<DateTime<Utc>> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    taints
        .iter()
        .filter_map(|(taint, since)| {
            let stay = stay_for(tolerations, taint, lifecycle_default)?;
            let stay = chrono::Duration::from_std(stay).unwrap_or(chrono::Duration::MAX);
            Some(
                since
                    .checked_add_signed(stay)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            )
        })
        .min()
}

/// How long a pod may stay under `taint`: the smallest `tolerationSeconds` of the
/// tolerations matching it (zero when none does, `lifecycle_default` for node
/// lifecycle taints); None = forever.
fn stay_for(
    tolerations: &[Toleration],
    taint: &Taint,
    lifecycle_default: Duration,
) -> Option<Duration> {
    let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
    if matching.is_empty() {
        return Some(if LIFECYCLE_TAINTS.contains(&taint.key.as_str()) {
            lifecycle_default
        } else {
            Duration::ZERO
        });
    }
    matching
        .iter()
        .filter_map(|t| t.toleration_seconds)
        .min()
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

async fn evict(ctx: &Context, pod: &Pod) -> Result<(), kube::Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }]}});
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&condition),
        )
        .await
    {
        tracing::debug!(pod = %pod.name_any(), error = %e, "marking a pod's disruption failed");
    }
    let message = format!("Marking for deletion Pod {namespace}/{}", pod.name_any());
    super::delete_pod_and_record(ctx, pod, None, "TaintManagerEviction", &message).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(String::from),
            effect: "NoExecute".into(),
            time_added: None,
        }
    }

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [], "nodeName": "n", "tolerations": tolerations}}))
        .unwrap()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    const DEFAULT: Duration = Duration::from_secs(30);

    #[test]
    fn tolerations_match_like_upstream() {
        let t = taint("k", Some("v"));
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(
            &tol(json!({"key": "k", "value": "v", "effect": "NoExecute"})),
            &t
        ));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Exists"})),
            &t
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &t));
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"key": "other", "operator": "Exists"})),
            &t
        ));
    }

    #[test]
    fn an_untolerated_taint_evicts_at_once() {
        let taints = [(taint("k", Some("v")), at(100))];
        assert_eq!(
            eviction_time(&pod(json!([])), &taints, DEFAULT),
            Some(at(100))
        );
    }

    #[test]
    fn the_smallest_toleration_seconds_counts_from_the_taint() {
        let taints = [(taint("k", Some("v")), at(100))];
        let p = pod(json!([
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20},
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5}
        ]));
        assert_eq!(eviction_time(&p, &taints, DEFAULT), Some(at(105)));
    }

    #[test]
    fn a_toleration_without_seconds_tolerates_forever() {
        let taints = [(taint("k", Some("v")), at(100))];
        let p = pod(json!([{"key": "k", "operator": "Exists"}]));
        assert_eq!(eviction_time(&p, &taints, DEFAULT), None);
        // … unless another taint is not tolerated.
        let both = [
            (taint("k", Some("v")), at(100)),
            (taint("x", None), at(150)),
        ];
        assert_eq!(eviction_time(&p, &both, DEFAULT), Some(at(150)));
    }

    #[test]
    fn lifecycle_taints_get_the_default_toleration() {
        let taints = [(taint("node.kubernetes.io/unreachable", None), at(100))];
        assert_eq!(
            eviction_time(&pod(json!([])), &taints, DEFAULT),
            Some(at(130))
        );
        let own = pod(
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 5}]),
        );
        assert_eq!(eviction_time(&own, &taints, DEFAULT), Some(at(105)));
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&forever, &taints, DEFAULT), None);
    }
}
