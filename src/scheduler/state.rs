//! The scheduler's decision loop without I/O: it absorbs watch events, hands out one
//! decision at a time (bind this pod to that node, or report it unschedulable), and
//! settles the outcome of each binding. Whatever it decides to bind is assumed on the
//! node at once, and a pod is never handed out again while its binding is pending.
//!
//! Owns: the cache, the queue and their coupling. May call: nothing (pure; time is
//! passed in).

use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;

use super::cache::Cache;
use super::model::{NodeInfo, PodInfo};
use super::queue::Queue;
use super::score;
use super::volumes::{ClaimInfo, VolumeInfo, Volumes};

/// A watch event, converted to the scheduler's own types where the watch runs.
#[derive(Debug)]
pub enum Change<T> {
    Apply(T),
    InitApply(T),
    /// The node's name or the pod's uid.
    Delete(String),
    Init,
    InitDone,
}

#[derive(Debug)]
pub enum Input {
    Node(Change<NodeInfo>),
    Pod(Change<Box<PodInfo>>),
    /// Claims are deleted by `namespace/name`, volumes and classes by name.
    Claim(Change<ClaimInfo>),
    Volume(Change<VolumeInfo>),
    /// (name, waits for the first consumer)
    Class(Change<(String, bool)>),
}

/// How a binding ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Bound(String),
    /// 409 or 404: someone else bound it, or it is gone.
    Taken(String),
    Failed(String),
}

/// A pod as the API and events name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

impl PodRef {
    fn of(pod: &PodInfo) -> PodRef {
        PodRef {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            resource_version: pod.resource_version.clone(),
        }
    }

    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            resource_version: self.resource_version.clone(),
            ..Default::default()
        }
    }
}

/// What to write for one scheduling attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind {
        pod: PodRef,
        node: String,
        /// Claims to annotate with the node first (`WaitForFirstConsumer`).
        select: Vec<String>,
    },
    Unschedulable {
        pod: PodRef,
        message: String,
        /// Write `PodScheduled=False`: `Some(true)` when its status changes (a new
        /// transition time), `Some(false)` for a new message, `None` when current.
        condition: Option<bool>,
        /// Record a `FailedScheduling` event (not for a recent repeat).
        event: bool,
    },
}

impl Decision {
    /// An unschedulable pod already marked so, whose repeat is not worth an event.
    pub fn writes_nothing(&self) -> bool {
        matches!(
            self,
            Decision::Unschedulable {
                condition: None,
                event: false,
                ..
            }
        )
    }
}

#[derive(Debug, Default)]
pub struct State {
    cache: Cache,
    queue: Queue,
    nodes_synced: bool,
    pods_synced: bool,
    volumes: Volumes,
}

impl State {
    /// Both watches have listed everything and some pod waits for an attempt.
    pub fn has_work(&self) -> bool {
        self.nodes_synced && self.pods_synced && self.queue.has_active()
    }

    pub fn absorb(&mut self, input: Input) {
        match input {
            Input::Node(change) => self.absorb_node(change),
            Input::Pod(change) => self.absorb_pod(change),
            Input::Claim(change) => {
                match change {
                    Change::Apply(c) | Change::InitApply(c) => {
                        self.volumes.claims.insert(c.key.clone(), c);
                    }
                    Change::Delete(key) => {
                        self.volumes.claims.remove(&key);
                    }
                    Change::Init => {
                        self.volumes.synced[0] = false;
                        self.volumes.claims.clear();
                    }
                    Change::InitDone => self.volumes.synced[0] = true,
                }
                self.queue.cluster_changed();
            }
            Input::Volume(change) => {
                match change {
                    Change::Apply(v) | Change::InitApply(v) => {
                        self.volumes.volumes.insert(v.name.clone(), v);
                    }
                    Change::Delete(name) => {
                        self.volumes.volumes.remove(&name);
                    }
                    Change::Init => {
                        self.volumes.synced[1] = false;
                        self.volumes.volumes.clear();
                    }
                    Change::InitDone => self.volumes.synced[1] = true,
                }
                self.queue.cluster_changed();
            }
            Input::Class(change) => {
                match change {
                    Change::Apply((name, wffc)) | Change::InitApply((name, wffc)) => {
                        self.volumes.classes.insert(name, wffc);
                    }
                    Change::Delete(name) => {
                        self.volumes.classes.remove(&name);
                    }
                    Change::Init => {
                        self.volumes.synced[2] = false;
                        self.volumes.classes.clear();
                    }
                    Change::InitDone => self.volumes.synced[2] = true,
                }
                self.queue.cluster_changed();
            }
        }
    }

    fn absorb_node(&mut self, change: Change<NodeInfo>) {
        match change {
            Change::Apply(node) | Change::InitApply(node) => {
                if self.cache.apply_node(node) {
                    self.queue.cluster_changed();
                }
            }
            Change::Delete(name) => self.cache.delete_node(&name),
            Change::Init => {
                self.nodes_synced = false;
                self.cache.begin_node_relist();
            }
            Change::InitDone => {
                self.cache.finish_node_relist();
                self.nodes_synced = true;
                self.queue.cluster_changed();
                tracing::debug!(
                    nodes = self.cache.nodes().count(),
                    "scheduler has listed nodes"
                );
            }
        }
    }

    fn absorb_pod(&mut self, change: Change<Box<PodInfo>>) {
        match change {
            Change::Apply(pod) | Change::InitApply(pod) => self.apply_pod(*pod),
            Change::Delete(uid) => {
                self.queue.remove(&uid);
                if self.cache.delete_pod(&uid) {
                    self.queue.cluster_changed();
                }
            }
            Change::Init => {
                self.pods_synced = false;
                self.cache.begin_pod_relist();
            }
            Change::InitDone => {
                let (gone, freed) = self.cache.finish_pod_relist();
                for uid in gone {
                    self.queue.remove(&uid);
                }
                if freed {
                    self.queue.cluster_changed();
                }
                self.pods_synced = true;
                tracing::debug!(
                    pods = self.cache.pod_count(),
                    waiting = self.queue.len(),
                    "scheduler has listed pods"
                );
            }
        }
    }

    fn apply_pod(&mut self, pod: PodInfo) {
        let uid = pod.uid.clone();
        let change = self.cache.apply_pod(pod);
        if change.freed {
            self.queue.cluster_changed();
        }
        match self.cache.pending_pod(&uid).filter(|_| change.pending) {
            Some(pending) => self.queue.add(pending, change.reshaped),
            None => self.queue.remove(&uid),
        }
    }

    /// The next attempt: the pod is assumed on the node it is to be bound to, or
    /// parked if it fits nowhere. `None` when the queue head went stale.
    pub fn decide(&mut self, now: Instant) -> Option<Decision> {
        let uid = self.queue.pop()?;
        let Some(pod) = self.cache.pending_pod(&uid) else {
            self.queue.remove(&uid);
            return None;
        };
        if !pod.claims.is_empty() && !self.volumes.is_synced() {
            // Claims, volumes and classes not listed yet: their lists wake it.
            self.queue.retry(&uid, now);
            return None;
        }
        let target = PodRef::of(pod);
        let plan = if pod.claims.is_empty() {
            Ok(Default::default())
        } else {
            self.volumes.plan(&pod.namespace, &pod.claims)
        };
        let placed = match &plan {
            Ok(plan) => {
                let placed =
                    score::place(pod, self.cache.nodes().filter(|(_, n, _)| plan.admits(n)));
                let total = self.cache.nodes().count();
                let excluded = self
                    .cache
                    .nodes()
                    .filter(|(_, n, _)| !plan.admits(n))
                    .count();
                placed.map_err(|unfit| {
                    if plan.restricts() && excluded == total {
                        format!("0/{total} nodes are available: {excluded} node(s) had volume node affinity conflict.")
                    } else {
                        unfit.message()
                    }
                })
            }
            Err(reason) => Err(format!(
                "0/{} nodes are available: {reason}.",
                self.cache.nodes().count()
            )),
        };
        match placed {
            Ok(slot) => {
                let Some(node) = self.cache.node_name(slot).map(String::from) else {
                    self.queue.retry(&uid, now);
                    return None;
                };
                self.cache.assume(&uid, slot);
                let select = plan.map(|p| p.select).unwrap_or_default();
                Some(Decision::Bind {
                    pod: target,
                    node,
                    select,
                })
            }
            Err(message) => {
                let condition = condition_update(pod, &message);
                tracing::debug!(pod = %pod.key(), %message, "pod fits no node");
                let event = self.queue.should_report(&uid, &message, now);
                self.queue.park(&uid, now);
                Some(Decision::Unschedulable {
                    pod: target,
                    message,
                    condition,
                    event,
                })
            }
        }
    }

    /// Accounts for how a binding ended.
    pub fn settle(&mut self, outcome: Outcome, now: Instant) {
        match outcome {
            Outcome::Bound(uid) => self.queue.remove(&uid),
            Outcome::Taken(uid) => {
                self.queue.remove(&uid);
                if self.cache.forget(&uid) {
                    self.queue.cluster_changed();
                }
            }
            Outcome::Failed(uid) => {
                if self.cache.forget(&uid) {
                    self.queue.cluster_changed();
                }
                match self.cache.pending_pod(&uid) {
                    Some(pod) => {
                        self.queue.add(pod, false);
                        self.queue.retry(&uid, now);
                    }
                    None => self.queue.remove(&uid),
                }
            }
        }
    }

    /// Moves parked pods whose back-off or flush time has come back to the queue.
    pub fn activate_due(&mut self, now: Instant) {
        self.queue.activate_due(now);
    }
}

/// The `PodScheduled=False` update a pod needs (see [`Decision::Unschedulable`]).
fn condition_update(pod: &PodInfo, message: &str) -> Option<bool> {
    match &pod.scheduled_condition {
        Some((status, reason, current)) if status == "False" => {
            (reason != "Unschedulable" || current != message).then_some(false)
        }
        _ => Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{node, pod};
    use std::time::Duration;

    fn synced(nodes: &[(&str, i64)]) -> State {
        let mut state = State::default();
        state.absorb(Input::Node(Change::Init));
        for (name, cpu) in nodes {
            state.absorb(Input::Node(Change::InitApply(node(name, *cpu))));
        }
        state.absorb(Input::Node(Change::InitDone));
        state.absorb(Input::Pod(Change::Init));
        state.absorb(Input::Pod(Change::InitDone));
        state
    }

    fn apply(state: &mut State, p: PodInfo) {
        state.absorb(Input::Pod(Change::Apply(Box::new(p))));
    }

    fn bound_to(mut p: PodInfo, node: &str) -> PodInfo {
        p.node_name = Some(node.into());
        p
    }

    fn decisions(state: &mut State, now: Instant) -> Vec<Decision> {
        std::iter::from_fn(|| state.has_work().then(|| state.decide(now)))
            .flatten()
            .collect()
    }

    fn bind(pod_name: &str, node: &str) -> Decision {
        Decision::Bind {
            pod: PodRef::of(&pod(pod_name, 0)),
            node: node.into(),
            select: vec![],
        }
    }

    #[test]
    fn pods_with_claims_wait_for_the_volume_lists_then_select_the_node() {
        let now = Instant::now();
        let mut state = synced(&[("n1", 1000)]);
        let mut p = pod("db", 100);
        p.claims = vec!["data".into()];
        apply(&mut state, p);
        assert_eq!(decisions(&mut state, now), vec![]);
        state.absorb(Input::Class(Change::InitApply(("local-path".into(), true))));
        state.absorb(Input::Claim(Change::InitApply(ClaimInfo {
            key: "default/data".into(),
            volume_name: String::new(),
            class: "local-path".into(),
            selected_node: None,
            deleting: false,
        })));
        for done in [
            Input::Claim(Change::InitDone),
            Input::Volume(Change::InitDone),
            Input::Class(Change::InitDone),
        ] {
            state.absorb(done);
        }
        state.activate_due(now + Duration::from_secs(600));
        let decided = decisions(&mut state, now + Duration::from_secs(600));
        assert_eq!(
            decided,
            vec![Decision::Bind {
                pod: PodRef::of(&pod("db", 0)),
                node: "n1".into(),
                select: vec!["data".into()],
            }]
        );
    }

    #[test]
    fn nothing_is_scheduled_before_both_lists_are_complete() {
        let mut state = State::default();
        state.absorb(Input::Node(Change::Apply(node("n1", 1000))));
        apply(&mut state, pod("a", 100));
        assert!(!state.has_work());
        state.absorb(Input::Node(Change::InitDone));
        state.absorb(Input::Pod(Change::InitDone));
        assert_eq!(decisions(&mut state, Instant::now()), vec![bind("a", "n1")]);
    }

    #[test]
    fn a_pod_is_never_handed_out_twice() {
        let now = Instant::now();
        let mut state = synced(&[("n1", 1000)]);
        apply(&mut state, pod("a", 100));
        assert_eq!(decisions(&mut state, now), vec![bind("a", "n1")]);
        // A stale event from before the binding, then its success, then the watch.
        apply(&mut state, pod("a", 100));
        state.settle(Outcome::Bound("uid-a".into()), now);
        apply(&mut state, pod("a", 100));
        state.activate_due(now + Duration::from_secs(60));
        assert!(decisions(&mut state, now).is_empty());
        apply(&mut state, bound_to(pod("a", 100), "n1"));
        assert!(decisions(&mut state, now).is_empty());
    }

    #[test]
    fn a_conflict_skips_the_pod_and_releases_the_assumption() {
        let now = Instant::now();
        let mut state = synced(&[("n1", 1000)]);
        apply(&mut state, pod("a", 800));
        apply(&mut state, pod("b", 800));
        let first = decisions(&mut state, now);
        assert_eq!(first.len(), 2);
        assert!(matches!(first[1], Decision::Unschedulable { .. }));
        let Decision::Bind { pod: bound, .. } = &first[0] else {
            panic!("expected a binding first: {first:?}");
        };
        state.settle(Outcome::Taken(bound.uid.clone()), now);
        // The released CPU lets the other pod in after its back-off.
        state.activate_due(now + Duration::from_secs(1));
        let second = decisions(&mut state, now);
        assert_eq!(second.len(), 1);
        assert!(matches!(&second[0], Decision::Bind { pod, .. } if pod.uid != bound.uid));
    }

    #[test]
    fn a_failed_binding_is_retried_after_the_backoff() {
        let now = Instant::now();
        let mut state = synced(&[("n1", 1000)]);
        apply(&mut state, pod("a", 100));
        assert_eq!(decisions(&mut state, now).len(), 1);
        state.settle(Outcome::Failed("uid-a".into()), now);
        assert!(decisions(&mut state, now).is_empty());
        state.activate_due(now + Duration::from_secs(1));
        assert_eq!(decisions(&mut state, now), vec![bind("a", "n1")]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_new_node() {
        let now = Instant::now();
        let mut state = synced(&[("small", 500)]);
        apply(&mut state, pod("big", 2000));
        let first = decisions(&mut state, now);
        assert_eq!(
            first,
            vec![Decision::Unschedulable {
                pod: PodRef::of(&pod("big", 0)),
                message: "0/1 nodes are available: 1 Insufficient cpu.".into(),
                condition: Some(true),
                event: true,
            }]
        );
        state.activate_due(now + Duration::from_secs(2));
        assert!(decisions(&mut state, now).is_empty());
        state.absorb(Input::Node(Change::Apply(node("large", 4000))));
        state.activate_due(now + Duration::from_secs(2));
        assert_eq!(decisions(&mut state, now), vec![bind("big", "large")]);
    }

    #[test]
    fn deleted_pods_free_their_node_for_waiting_pods() {
        let now = Instant::now();
        let mut state = synced(&[("n1", 1000)]);
        apply(&mut state, bound_to(pod("old", 900), "n1"));
        apply(&mut state, pod("new", 500));
        assert!(matches!(
            decisions(&mut state, now)[..],
            [Decision::Unschedulable { .. }]
        ));
        state.absorb(Input::Pod(Change::Delete("uid-old".into())));
        state.activate_due(now + Duration::from_secs(1));
        assert_eq!(decisions(&mut state, now), vec![bind("new", "n1")]);
    }

    #[test]
    fn pods_of_other_schedulers_or_being_deleted_are_left_alone() {
        let mut state = synced(&[("n1", 1000)]);
        let mut other = pod("other", 100);
        other.ours = false;
        apply(&mut state, other);
        let mut going = pod("going", 100);
        going.deleting = true;
        apply(&mut state, going);
        assert!(decisions(&mut state, Instant::now()).is_empty());
    }

    #[test]
    fn the_unschedulable_condition_is_written_only_when_it_changes() {
        let message = "0/1 nodes are available: 1 Insufficient cpu.";
        let waiting = |condition: Option<(&str, &str, &str)>| PodInfo {
            scheduled_condition: condition.map(|(s, r, m)| (s.into(), r.into(), m.into())),
            ..Default::default()
        };
        assert_eq!(condition_update(&waiting(None), message), Some(true));
        assert_eq!(
            condition_update(&waiting(Some(("True", "", ""))), message),
            Some(true)
        );
        assert_eq!(
            condition_update(&waiting(Some(("False", "Unschedulable", "old"))), message),
            Some(false)
        );
        assert_eq!(
            condition_update(&waiting(Some(("False", "Unschedulable", message))), message),
            None
        );
    }

    #[test]
    fn many_pods_schedule_quickly_and_evenly() {
        let nodes: Vec<(String, i64)> = (0..200).map(|i| (format!("node-{i}"), 4000)).collect();
        let refs: Vec<(&str, i64)> = nodes.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        let mut state = synced(&refs);
        for i in 0..4000 {
            let mut p = pod(&format!("web-{i}"), 100);
            p.footprint.owner = Some(i % 10);
            p.created_ms = i as i64;
            apply(&mut state, p);
        }
        let started = Instant::now();
        let placed = decisions(&mut state, started);
        assert_eq!(placed.len(), 4000);
        let mut per_node = std::collections::HashMap::<String, usize>::new();
        for d in &placed {
            let Decision::Bind { node, .. } = d else {
                panic!("unschedulable: {d:?}");
            };
            *per_node.entry(node.clone()).or_default() += 1;
        }
        assert_eq!(per_node.len(), 200);
        assert!(per_node.values().all(|&n| n == 20), "uneven: {per_node:?}");
    }

    /// The scale target's decision cost alone (run with `--ignored --release`):
    /// 30,000 pods of 300 owners on 1,000 nodes.
    #[test]
    #[ignore]
    fn thirty_thousand_pods_on_a_thousand_nodes() {
        let nodes: Vec<(String, i64)> = (0..1000).map(|i| (format!("node-{i}"), 8000)).collect();
        let refs: Vec<(&str, i64)> = nodes.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        let mut state = synced(&refs);
        for i in 0..30_000 {
            let mut p = pod(&format!("web-{i}"), 100);
            p.footprint.owner = Some(i % 300);
            apply(&mut state, p);
        }
        let started = Instant::now();
        let placed = decisions(&mut state, started);
        let bound = placed
            .iter()
            .filter(|d| matches!(d, Decision::Bind { .. }))
            .count();
        eprintln!("{bound} pods bound in {:?}", started.elapsed());
        assert_eq!(bound, 30_000);
    }
}
