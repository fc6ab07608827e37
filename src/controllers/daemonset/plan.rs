//! The DaemonSet controller's decisions, as upstream's `manage`, `rollingUpdate` and
//! `updateDaemonSetStatus` make them: which nodes need a pod, which pods go (failed,
//! duplicate, misplaced, replaced by a rolling update within maxUnavailable or
//! maxSurge), and the status counts. Also the template hash that tells updated pods
//! from old ones (`controller-revision-hash`).
//!
//! Pure functions over k8s-openapi types; calls nothing else in skiff.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::eligibility::Fit;

/// The label that carries a daemon pod's template hash (and names its revision).
pub const HASH_LABEL: &str = "controller-revision-hash";

/// One node as a reconcile sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFit {
    pub name: String,
    pub fit: Fit,
}

/// The DaemonSet's pods (not terminal-and-deleted) grouped by target node.
pub type PodsByNode = BTreeMap<String, Vec<Arc<Pod>>>;

/// What to do: nodes to create a pod on, pods to delete (with why), failed pods
/// found (reported as events) and whether a failed pod waits for its back-off.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create_on: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    pub failed: Vec<Arc<Pod>>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create_on.is_empty() && self.delete.is_empty()
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn ready_since(pod: &Pod) -> Option<DateTime<Utc>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or_else(Utc::now, |t| t.0)
        })
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` seconds (`podutil.IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready: i32, now: DateTime<Utc>) -> bool {
    ready_since(pod)
        .is_some_and(|t| min_ready == 0 || now - t >= chrono::Duration::seconds(min_ready.into()))
}

/// Whether the pod runs the current template.
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .is_some_and(|h| h == hash)
}

/// Scheduled pods first, then oldest, then by name (`podByCreationTimestampAndPhase`).
fn sort_oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| {
        let unscheduled = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty);
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (unscheduled, created, p.metadata.name.clone())
    });
}

/// `manage`: per node, create a missing pod, delete failed, succeeded and duplicate
/// pods, and every pod on a node it must leave; pods for unknown nodes go too.
/// `surge` is whether the update strategy allows a second pod per node.
pub fn manage(
    nodes: &[NodeFit],
    pods: &PodsByNode,
    hash: &str,
    surge: bool,
    min_ready: i32,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    for node in nodes {
        let on_node = pods.get(&node.name).map(Vec::as_slice).unwrap_or_default();
        let Fit {
            should_run,
            should_continue_running,
        } = node.fit;
        if should_run && on_node.is_empty() {
            plan.create_on.push(node.name.clone());
        } else if should_continue_running {
            let mut running = Vec::new();
            for pod in on_node.iter().filter(|p| !deleting(p)) {
                match phase(pod) {
                    "Failed" => plan.failed.push(pod.clone()),
                    "Succeeded" => plan.delete.push(pod.clone()),
                    _ => running.push(pod.clone()),
                }
            }
            sort_oldest_first(&mut running);
            if !surge {
                plan.delete.extend(running.into_iter().skip(1));
                continue;
            }
            if running.is_empty() {
                if should_run {
                    plan.create_on.push(node.name.clone());
                }
                continue;
            }
            // Surging: keep the oldest new and the oldest old pod; the old one goes
            // once it is unready or the new one is available.
            let (mut oldest_new, mut oldest_old) = (None, None);
            for pod in running {
                let slot = if is_updated(&pod, hash) {
                    &mut oldest_new
                } else {
                    &mut oldest_old
                };
                if slot.is_none() {
                    *slot = Some(pod);
                } else {
                    plan.delete.push(pod);
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                if !is_ready(&old) || is_available(&new, min_ready, now) {
                    plan.delete.push(old);
                }
            }
        } else {
            plan.delete
                .extend(on_node.iter().filter(|p| !deleting(p)).cloned());
        }
    }
    let known: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    for (node, on_node) in pods {
        if !known.contains(&node.as_str()) {
            plan.delete
                .extend(on_node.iter().filter(|p| !deleting(p)).cloned());
        }
    }
    plan
}

/// `intstr.GetScaledValueFromIntOrPercent`.
pub fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let product = percent * i64::from(total);
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            value as i32
        }
    }
}

/// maxSurge and maxUnavailable resolved against the desired node count (both
/// rounded up, and maxUnavailable 1 when both come out 0, as `updatedDesiredNodeCounts`).
pub fn budgets(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = scaled(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired,
        true,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The one new and one old live pod on a node; `None` when there are more of either
/// (the manage loop cleans that up first).
/// A node's new and old pod, either possibly missing.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

fn updated_and_old(pods: &[Arc<Pod>], hash: &str) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !deleting(p)) {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod.clone());
    }
    Some((new, old))
}

/// One rolling-update step (`rollingUpdate`). Without surge: delete old pods while
/// fewer than maxUnavailable nodes are unavailable (unavailable old pods always), and
/// let `manage` create their replacements. With surge: start a new pod beside an old
/// one on up to maxSurge nodes at once (at once where the old one is unavailable),
/// and delete the old pod when the new one is available.
pub fn rolling_update(
    nodes: &[NodeFit],
    pods: &PodsByNode,
    hash: &str,
    (max_surge, max_unavailable): (i32, i32),
    min_ready: i32,
    now: DateTime<Utc>,
) -> Plan {
    let available = |p: &Arc<Pod>| is_available(p, min_ready, now);
    let should_run = |name: &str| nodes.iter().any(|n| n.name == name && n.fit.should_run);
    let mut plan = Plan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for on_node in pods.values() {
            match updated_and_old(on_node, hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += i32::from(!available(&new)),
                Some((None, Some(old))) => {
                    if !available(&old) {
                        plan.delete.push(old);
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }
    let desired = nodes.iter().filter(|n| n.fit.should_run).count() as i32;
    let (mut surging, mut available_count) = (0, 0);
    let (mut candidates, mut misplaced) = (Vec::new(), Vec::new());
    for (node, on_node) in pods {
        let Some((new, old)) = updated_and_old(on_node, hash) else {
            surging += 1;
            continue;
        };
        if old.as_ref().or(new.as_ref()).is_some_and(available) {
            available_count += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(&old) => {
                if should_run(node) {
                    plan.create_on.push(node.clone());
                } else {
                    plan.delete.push(old);
                }
            }
            (None, Some(old)) => {
                if !should_run(node) {
                    misplaced.push(old);
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(&new) {
                    plan.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes they must leave go only while enough others are available.
    let deletable = (available_count - desired).max(0) as usize;
    plan.delete.extend(misplaced.into_iter().take(deletable));
    let room = (max_surge - surging).max(0) as usize;
    plan.create_on.extend(candidates.into_iter().take(room));
    plan
}

/// `updateDaemonSetStatus`'s counts; conditions and collisionCount are carried over.
pub fn status(
    ds: &DaemonSet,
    nodes: &[NodeFit],
    pods: &PodsByNode,
    hash: &str,
    now: DateTime<Utc>,
) -> DaemonSetStatus {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..DaemonSetStatus::default()
    };
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let mut on_node = pods.get(&node.name).cloned().unwrap_or_default();
        if !node.fit.should_run {
            st.number_misscheduled += i32::from(!on_node.is_empty());
            continue;
        }
        st.desired_number_scheduled += 1;
        if on_node.is_empty() {
            continue;
        }
        st.current_number_scheduled += 1;
        sort_oldest_first(&mut on_node);
        let pod = &on_node[0];
        if is_ready(pod) {
            ready += 1;
            available += i32::from(is_available(pod, min_ready, now));
        }
        updated += i32::from(is_updated(pod, hash));
    }
    st.number_ready = ready;
    st.number_available = Some(available);
    st.updated_number_scheduled = Some(updated);
    st.number_unavailable = Some(st.desired_number_scheduled - available);
    st
}

/// 32-bit FNV-1 (Go's `fnv.New32`).
fn fnv32(data: &[u8]) -> u32 {
    data.iter().fold(2_166_136_261u32, |hash, &b| {
        hash.wrapping_mul(16_777_619) ^ u32::from(b)
    })
}

/// rand.SafeEncodeString: each byte mapped into an alphabet without vowels.
fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// The revision data upstream stores for a DaemonSet: a patch that replaces
/// `spec.template` (`{"spec":{"template":{…,"$patch":"replace"}}}`).
pub fn revision_data(ds: &DaemonSet) -> serde_json::Value {
    let template = ds
        .spec
        .as_ref()
        .map(|s| serde_json::to_value(&s.template).unwrap_or_default())
        .unwrap_or_default();
    let mut template = match template {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    template.insert("$patch".into(), "replace".into());
    serde_json::json!({"spec": {"template": template}})
}

/// `HashControllerRevision`: FNV-1 of the revision data and, when set, the collision
/// count in decimal; the sum safe-encoded.
pub fn revision_hash(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(count.to_string().as_bytes());
    }
    safe_encode(&fnv32(&bytes).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RUN: Fit = Fit {
        should_run: true,
        should_continue_running: true,
    };
    const NO: Fit = Fit {
        should_run: false,
        should_continue_running: false,
    };

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    /// A pod on `node` with template `hash`, created `age` seconds ago; `ready`
    /// since `age` seconds ago, or not ready.
    fn pod(name: &str, node: &str, hash: &str, age: i64, ready: bool, phase: &str) -> Arc<Pod> {
        let t = (now() - chrono::Duration::seconds(age)).to_rfc3339();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "uid": name, "creationTimestamp": t, "labels": {HASH_LABEL: hash}},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": t}]}
            }))
            .unwrap(),
        )
    }

    fn nodes(fits: &[(&str, Fit)]) -> Vec<NodeFit> {
        fits.iter()
            .map(|(n, fit)| NodeFit {
                name: n.to_string(),
                fit: *fit,
            })
            .collect()
    }

    fn by_node(pods: &[Arc<Pod>]) -> PodsByNode {
        let mut all = PodsByNode::new();
        for p in pods {
            let node = p.spec.as_ref().unwrap().node_name.clone().unwrap();
            all.entry(node).or_default().push(p.clone());
        }
        all
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        let mut n: Vec<&str> = pods
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn manage_creates_missing_pods_and_removes_misplaced_ones() {
        let ns = nodes(&[("a", RUN), ("b", RUN), ("c", NO)]);
        let pods = by_node(&[
            pod("on-a", "a", "h1", 60, true, "Running"),
            pod("on-c", "c", "h1", 60, true, "Running"),
            pod("on-gone", "gone", "h1", 60, true, "Running"),
        ]);
        let plan = manage(&ns, &pods, "h1", false, 0, now());
        assert_eq!(plan.create_on, vec!["b"]);
        assert_eq!(names(&plan.delete), vec!["on-c", "on-gone"]);
    }

    #[test]
    fn manage_replaces_failed_pods_and_keeps_the_oldest_duplicate() {
        let ns = nodes(&[("a", RUN), ("b", RUN)]);
        let pods = by_node(&[
            pod("failed", "a", "h1", 60, false, "Failed"),
            pod("old", "b", "h1", 60, true, "Running"),
            pod("young", "b", "h1", 5, true, "Running"),
        ]);
        let plan = manage(&ns, &pods, "h1", false, 0, now());
        assert_eq!(names(&plan.failed), vec!["failed"]);
        assert_eq!(names(&plan.delete), vec!["young"]);
        assert!(plan.create_on.is_empty());
    }

    #[test]
    fn untolerated_no_schedule_keeps_a_running_pod_but_starts_none() {
        let keep = Fit {
            should_run: false,
            should_continue_running: true,
        };
        let ns = nodes(&[("a", keep), ("b", keep)]);
        let pods = by_node(&[pod("on-a", "a", "h1", 60, true, "Running")]);
        let plan = manage(&ns, &pods, "h1", false, 0, now());
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn rolling_update_deletes_within_max_unavailable() {
        let ns = nodes(&[("a", RUN), ("b", RUN), ("c", RUN)]);
        let pods = by_node(&[
            pod("a1", "a", "old", 60, true, "Running"),
            pod("b1", "b", "old", 60, true, "Running"),
            pod("c1", "c", "old", 60, true, "Running"),
        ]);
        let plan = rolling_update(&ns, &pods, "new", (0, 1), 0, now());
        assert_eq!(plan.delete.len(), 1);
        assert!(plan.create_on.is_empty());
        // One node mid-update (new pod not ready yet): nothing more goes.
        let pods = by_node(&[
            pod("a2", "a", "new", 1, false, "Running"),
            pod("b1", "b", "old", 60, true, "Running"),
            pod("c1", "c", "old", 60, true, "Running"),
        ]);
        assert!(rolling_update(&ns, &pods, "new", (0, 1), 0, now()).is_empty());
        // Unavailable old pods are replaced regardless of the budget.
        let pods = by_node(&[
            pod("a2", "a", "new", 1, false, "Running"),
            pod("b1", "b", "old", 60, false, "Running"),
            pod("c1", "c", "old", 60, true, "Running"),
        ]);
        let plan = rolling_update(&ns, &pods, "new", (0, 1), 0, now());
        assert_eq!(names(&plan.delete), vec!["b1"]);
        // maxUnavailable 2 with one node done: two old pods may go.
        let pods = by_node(&[
            pod("a2", "a", "new", 30, true, "Running"),
            pod("b1", "b", "old", 60, true, "Running"),
            pod("c1", "c", "old", 60, true, "Running"),
        ]);
        let plan = rolling_update(&ns, &pods, "new", (0, 2), 0, now());
        assert_eq!(names(&plan.delete), vec!["b1", "c1"]);
        // minReadySeconds: a new pod ready for 30 s is not available at 60 s.
        let plan = rolling_update(&ns, &pods, "new", (0, 1), 60, now());
        assert!(plan.is_empty());
    }

    #[test]
    fn rolling_update_with_surge_starts_new_pods_before_removing_old_ones() {
        let ns = nodes(&[("a", RUN), ("b", RUN), ("c", RUN)]);
        let pods = by_node(&[
            pod("a1", "a", "old", 60, true, "Running"),
            pod("b1", "b", "old", 60, true, "Running"),
            pod("c1", "c", "old", 60, false, "Running"),
        ]);
        let plan = rolling_update(&ns, &pods, "new", (1, 0), 0, now());
        // c's old pod is unavailable: replaced at once; plus one surge candidate.
        assert_eq!(plan.create_on, vec!["c", "a"]);
        assert!(plan.delete.is_empty());
        let pods = by_node(&[
            pod("a1", "a", "old", 60, true, "Running"),
            pod("a2", "a", "new", 10, true, "Running"),
            pod("b1", "b", "old", 60, true, "Running"),
            pod("b2", "b", "new", 1, false, "Running"),
            pod("c1", "c", "old", 60, true, "Running"),
        ]);
        let plan = rolling_update(&ns, &pods, "new", (1, 0), 0, now());
        // a's new pod is available: its old one goes; b is still surging: no new surge.
        assert_eq!(names(&plan.delete), vec!["a1"]);
        assert!(plan.create_on.is_empty());
        // manage keeps the surge pair until the new pod is available.
        let plan = manage(&ns, &pods, "new", true, 0, now());
        assert_eq!(names(&plan.delete), vec!["a1"]);
    }

    #[test]
    fn budgets_round_percentages_up() {
        let ds: DaemonSet = serde_json::from_value(json!({"metadata": {}, "spec": {
            "selector": {}, "template": {},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}}}}))
        .unwrap();
        assert_eq!(budgets(&ds, 3), (0, 1));
        assert_eq!(budgets(&ds, 25), (0, 3));
        let zero: DaemonSet = serde_json::from_value(json!({"metadata": {}, "spec": {
            "selector": {}, "template": {},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "0%", "maxSurge": "0%"}}}}))
        .unwrap();
        assert_eq!(budgets(&zero, 10), (0, 1));
    }

    #[test]
    fn status_counts_nodes_as_upstream() {
        let ds: DaemonSet = serde_json::from_value(json!({"metadata": {"generation": 3}, "spec": {
            "selector": {}, "template": {}, "minReadySeconds": 30}}))
        .unwrap();
        let keep = Fit {
            should_run: false,
            should_continue_running: true,
        };
        let ns = nodes(&[("a", RUN), ("b", RUN), ("c", RUN), ("d", keep)]);
        let pods = by_node(&[
            pod("a1", "a", "new", 60, true, "Running"),
            pod("b1", "b", "old", 10, true, "Running"),
            pod("d1", "d", "new", 60, true, "Running"),
        ]);
        let st = status(&ds, &ns, &pods, "new", now());
        assert_eq!(st.desired_number_scheduled, 3);
        assert_eq!(st.current_number_scheduled, 2);
        assert_eq!(st.number_misscheduled, 1);
        assert_eq!(st.number_ready, 2);
        assert_eq!(st.number_available, Some(1));
        assert_eq!(st.number_unavailable, Some(2));
        assert_eq!(st.updated_number_scheduled, Some(1));
        assert_eq!(st.observed_generation, Some(3));
    }

    #[test]
    fn revision_hashes_follow_the_template_and_collision_count() {
        let ds = |image: &str| -> DaemonSet {
            serde_json::from_value(json!({"metadata": {}, "spec": {"selector": {},
                "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}))
            .unwrap()
        };
        let data = revision_data(&ds("busybox:1"));
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let h1 = revision_hash(&data, None);
        assert_eq!(h1, revision_hash(&revision_data(&ds("busybox:1")), None));
        assert_ne!(h1, revision_hash(&revision_data(&ds("busybox:2")), None));
        assert_ne!(h1, revision_hash(&data, Some(1)));
        assert!(h1.chars().all(|c| c.is_ascii_alphanumeric()));
        // FNV-1 of "a" is 0x050c5d7e.
        assert_eq!(fnv32(b"a"), 0x050c_5d7e);
    }
}
