//! The ReplicaSet controller: keeps `spec.replicas` pods matching each ReplicaSet —
//! creates them from the template (`<rs>-<5 chars>`, controller ownerReference),
//! deletes the least valuable ones first (unscheduled, pending, not ready, newest),
//! adopts matching orphans and releases pods that stopped matching — and reports
//! `replicas`, `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas` (honouring
//! `minReadySeconds`) and `observedGeneration`.
//!
//! Caches lag behind writes, so, like upstream, each ReplicaSet carries
//! "expectations": after creating or deleting pods it waits until the cache has seen
//! them before counting again, instead of creating twice.
//!
//! May call: the API (pods, replicasets/status, events).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::events::EventType;
use super::{requeue_after_error, Context, Error, Result};
use crate::model::selector::LabelSelector;

const NAME: &str = "replicaset";
/// Most pods created or deleted in one pass (upstream's burst).
const BURST: usize = 500;
/// Expectations older than this are abandoned (a write the cache never showed).
/// (Upstream's five minutes: giving up early on a lagging cache creates duplicates,
/// which make the cache lag more.)
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Every ReplicaSet is looked at again this often even without a change (adoption of
/// new orphans, anything a watch missed).
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Expectation {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    index: Mutex<PodIndex>,
    expectations: Mutex<HashMap<String, Expectation>>,
}

/// Which cached pods each ReplicaSet owns, and which pods have no controller (the
/// ones it may adopt), so a reconcile looks at its own pods instead of every pod in
/// the cluster. A hint kept from the watch events: every key is checked against the
/// cache when used, and keys the cache no longer has are pruned after each relist.
#[derive(Default)]
struct PodIndex {
    by_owner: HashMap<String, HashSet<ObjectRef<Pod>>>,
    orphans: HashSet<ObjectRef<Pod>>,
    owner: HashMap<ObjectRef<Pod>, Option<String>>,
}

impl PodIndex {
    fn note(&mut self, pod: &Pod) {
        let key = ObjectRef::from_obj(pod);
        let owner = controller_uid(pod).map(str::to_string);
        if self.owner.get(&key) == Some(&owner) {
            return;
        }
        self.forget(&key);
        match &owner {
            Some(uid) => {
                self.by_owner
                    .entry(uid.clone())
                    .or_default()
                    .insert(key.clone());
            }
            None => {
                self.orphans.insert(key.clone());
            }
        }
        self.owner.insert(key, owner);
    }

    fn forget(&mut self, key: &ObjectRef<Pod>) {
        match self.owner.remove(key) {
            Some(Some(uid)) => {
                if let Some(keys) = self.by_owner.get_mut(&uid) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_owner.remove(&uid);
                    }
                }
            }
            Some(None) => {
                self.orphans.remove(key);
            }
            None => {}
        }
    }

    /// Keeps only the keys `present` says the cache still has.
    fn prune(&mut self, present: impl Fn(&ObjectRef<Pod>) -> bool) {
        let gone: Vec<ObjectRef<Pod>> =
            self.owner.keys().filter(|k| !present(k)).cloned().collect();
        for key in gone {
            self.forget(&key);
        }
    }

    /// The pods a ReplicaSet owns or could adopt.
    fn candidates(&self, rs_uid: &str) -> Vec<ObjectRef<Pod>> {
        self.by_owner
            .get(rs_uid)
            .into_iter()
            .flatten()
            .chain(&self.orphans)
            .cloned()
            .collect()
    }
}

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let pods_api: Api<Pod> = Api::all(client.clone());
    let (pods, writer) = reflector::store();
    let state = Arc::new(State {
        ctx,
        pods,
        index: Mutex::default(),
        expectations: Mutex::default(),
    });
    // One pod watch feeds the cache, the index and the triggers: a pod event reaches
    // the cache before it triggers its ReplicaSet, so a reconcile never reads a cache
    // older than the change that woke it.
    // The watch runs in its own task, so a burst of reconciles never leaves the cache
    // behind (kube-runtime drives a controller's reconciles and its trigger streams
    // from one task).
    let (triggers, woken) = futures::channel::mpsc::unbounded();
    let indexer = state.clone();
    let pod_events =
        crate::client::lenient::watcher(pods_api, watcher::Config::default()).modify(slim);
    let feed = reflector::reflector(writer, pod_events)
        .default_backoff()
        .for_each(move |event| {
            if let Some(rs) = event.ok().and_then(|e| indexer.index_event(e)) {
                let _ = triggers.unbounded_send(rs);
            }
            futures::future::ready(())
        });
    let feed = tokio::spawn(feed);
    crate::client::lenient::controller(Api::<ReplicaSet>::all(client), watcher::Config::default())
        .reconcile_on(woken)
        .run(
            |rs, state| super::spawned(reconcile(rs, state)),
            |_, e, _| requeue_after_error(NAME, e),
            state,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    feed.abort();
}

/// Keeps what this controller reads of a pod (metadata, `spec.nodeName`, phase,
/// conditions, restart counts): the cache holds every pod of the cluster.
fn slim(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(spec) = pod.spec.as_mut() {
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            ..PodSpec::default()
        };
    }
    if let Some(status) = pod.status.as_mut() {
        let restarts = status.container_statuses.take().map(|statuses| {
            statuses
                .into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    restart_count: c.restart_count,
                    ..ContainerStatus::default()
                })
                .collect()
        });
        status.container_statuses = restarts;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
        status.host_ips = None;
        status.pod_ips = None;
    }
}

/// The ReplicaSet controlling a pod, as a reconcile trigger.
fn owner_of(pod: &Pod) -> Option<ObjectRef<ReplicaSet>> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
    Some(ObjectRef::new(&owner.name).within(&pod.namespace()?))
}

fn uid(rs: &ReplicaSet) -> String {
    rs.metadata.uid.clone().unwrap_or_default()
}

fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn condition_true(pod: &Pod, kind: &str) -> Option<chrono::DateTime<Utc>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or_else(Utc::now)
        })
}

pub fn is_ready(pod: &Pod) -> bool {
    condition_true(pod, "Ready").is_some()
}

/// Ready for at least `min_ready` seconds.
pub fn is_available(pod: &Pod, min_ready: i32, now: chrono::DateTime<Utc>) -> bool {
    condition_true(pod, "Ready")
        .is_some_and(|since| now - since >= chrono::Duration::seconds(min_ready.into()))
}

/// Deletion preference: lower sorts first (deleted first), as upstream ranks pods.
fn deletion_rank(pod: &Pod) -> (u8, u8, u8, i32, std::cmp::Reverse<i64>) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum::<i32>())
        .unwrap_or(0);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.timestamp())
        .unwrap_or(0);
    (
        scheduled as u8,
        phase,
        is_ready(pod) as u8,
        -restarts,
        std::cmp::Reverse(created),
    )
}

/// The pods to delete to come down by `count`.
fn choose_victims(mut pods: Vec<Arc<Pod>>, count: usize) -> Vec<Arc<Pod>> {
    pods.sort_by_key(|p| deletion_rank(p));
    pods.truncate(count);
    pods
}

/// Status from the pods the ReplicaSet owns.
fn compute_status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    now: chrono::DateTime<Utc>,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| is_active(p)).collect();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.labels();
            template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(active.iter().filter(|p| is_ready(p)).count() as i32),
        available_replicas: Some(
            active
                .iter()
                .filter(|p| is_available(p, min_ready, now))
                .count() as i32,
        ),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

fn selector_of(rs: &ReplicaSet) -> Result<LabelSelector> {
    let spec = rs
        .spec
        .as_ref()
        .ok_or_else(|| Error::Invalid("replicaset has no spec".into()))?;
    let json = serde_json::to_value(&spec.selector).map_err(|e| Error::Invalid(e.to_string()))?;
    LabelSelector::from_json(&json).map_err(|e| Error::Invalid(format!("replicaset selector: {e}")))
}

fn labels_json(pod: &Pod) -> serde_json::Map<String, serde_json::Value> {
    pod.labels()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

impl State {
    /// Updates the index from one watch event; returns the ReplicaSet to wake.
    fn index_event(&self, event: watcher::Event<Pod>) -> Option<ObjectRef<ReplicaSet>> {
        let mut index = self.index.lock().ok()?;
        match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                index.note(&pod);
                owner_of(&pod)
            }
            watcher::Event::Delete(pod) => {
                index.forget(&ObjectRef::from_obj(&pod));
                owner_of(&pod)
            }
            watcher::Event::InitDone => {
                index.prune(|key| self.pods.get(key).is_some());
                None
            }
            watcher::Event::Init => None,
        }
    }

    /// The cached pods a ReplicaSet owns or could adopt.
    fn candidates(&self, rs_uid: &str) -> Vec<Arc<Pod>> {
        let keys = match self.index.lock() {
            Ok(index) => index.candidates(rs_uid),
            Err(_) => return self.pods.state(),
        };
        keys.iter().filter_map(|key| self.pods.get(key)).collect()
    }

    /// True while pods this controller just created or deleted are not yet visible in
    /// (or gone from) the cache.
    fn awaiting_cache(&self, rs_uid: &str, owned: &[Arc<Pod>]) -> bool {
        let Ok(mut all) = self.expectations.lock() else {
            return false;
        };
        let Some(expectation) = all.get_mut(rs_uid) else {
            return false;
        };
        let names: HashSet<&str> = owned
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        let live_uids: HashSet<&str> = owned
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        expectation.creates.retain(|n| !names.contains(n.as_str()));
        expectation
            .deletes
            .retain(|u| live_uids.contains(u.as_str()));
        let timed_out = expectation
            .since
            .is_some_and(|s| s.elapsed() > EXPECTATION_TIMEOUT);
        if timed_out || (expectation.creates.is_empty() && expectation.deletes.is_empty()) {
            all.remove(rs_uid);
            return false;
        }
        true
    }

    fn expect(&self, rs_uid: &str, creates: Vec<String>, deletes: Vec<String>) {
        if let Ok(mut all) = self.expectations.lock() {
            let e = all.entry(rs_uid.to_string()).or_default();
            e.creates.extend(creates);
            e.deletes.extend(deletes);
            e.since = Some(Instant::now());
        }
    }
}

async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Never decide on a cache that has not been filled yet.
    let _ = state.pods.wait_until_ready().await;
    let ns = rs.namespace().unwrap_or_default();
    let rs_uid = uid(&rs);
    let selector = selector_of(&rs)?;
    let pods_api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
    let owned = claim_pods(&rs, &selector, &state, &pods_api).await?;
    if !state.awaiting_cache(&rs_uid, &owned) {
        scale(&rs, &owned, &state, &pods_api).await?;
    }
    let now = Utc::now();
    let status = compute_status(&rs, &owned, now);
    if rs.status.as_ref() != Some(&status) {
        let api: Api<ReplicaSet> = Api::namespaced(state.ctx.client.clone(), &ns);
        let patch = json!({"status": status});
        api.patch_status(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(requeue_for_availability(&rs, &owned, now))
}

/// Pods owned by the ReplicaSet after adopting matching orphans and releasing owned
/// pods that no longer match.
async fn claim_pods(
    rs: &ReplicaSet,
    selector: &LabelSelector,
    state: &State,
    api: &Api<Pod>,
) -> Result<Vec<Arc<Pod>>> {
    let ns = rs.namespace();
    let rs_uid = uid(rs);
    let mut owned = Vec::new();
    for pod in state.candidates(&rs_uid) {
        if pod.namespace() != ns {
            continue;
        }
        let matches = selector.matches(Some(&labels_json(&pod)));
        match controller_uid(&pod) {
            Some(owner) if owner == rs_uid && matches => owned.push(pod),
            Some(owner) if owner == rs_uid => release(&pod, &rs_uid, api).await?,
            None if matches && is_active(&pod) && !selector.is_empty() => {
                if let Some(adopted) = adopt(rs, &pod, api).await? {
                    owned.push(Arc::new(adopted));
                }
            }
            _ => {}
        }
    }
    Ok(owned)
}

fn owner_reference(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs.name_any(),
        uid: uid(rs),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

async fn adopt(rs: &ReplicaSet, pod: &Pod, api: &Api<Pod>) -> Result<Option<Pod>> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(owner_reference(rs));
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid}});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn release(pod: &Pod, rs_uid: &str, api: &Api<Pod>) -> Result<()> {
    let refs: Vec<&OwnerReference> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.uid != rs_uid)
        .collect();
    let patch = json!({"metadata": {"ownerReferences": refs}});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn scale(rs: &ReplicaSet, owned: &[Arc<Pod>], state: &State, api: &Api<Pod>) -> Result<()> {
    let wanted = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
    if active.len() < wanted {
        create_pods(rs, (wanted - active.len()).min(BURST), state, api).await
    } else if active.len() > wanted {
        let victims = choose_victims(active.clone(), (active.len() - wanted).min(BURST));
        delete_pods(rs, victims, state, api).await
    } else {
        Ok(())
    }
}

fn new_pod(rs: &ReplicaSet) -> Result<Pod> {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| Error::Invalid(format!("replicaset {} has no template", rs.name_any())))?;
    let meta = template.metadata.unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner_reference(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// Creates in growing batches (1, 2, 4, …) so a broken template fails fast.
async fn create_pods(rs: &ReplicaSet, count: usize, state: &State, api: &Api<Pod>) -> Result<()> {
    let pod = new_pod(rs)?;
    let rs_ref = rs.object_ref(&());
    let params = PostParams::default();
    let mut remaining = count;
    let mut batch = 1;
    while remaining > 0 {
        let size = batch.min(remaining);
        let creates = (0..size).map(|_| api.create(&params, &pod));
        let results = futures::future::join_all(creates).await;
        let mut names = Vec::new();
        let mut failure = None;
        for result in results {
            match result {
                Ok(created) => {
                    let name = created.name_any();
                    state
                        .ctx
                        .recorder
                        .publish(
                            &rs_ref,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        )
                        .await;
                    names.push(name);
                }
                Err(e) => failure = Some(e),
            }
        }
        state.expect(&uid(rs), names, vec![]);
        if let Some(e) = failure {
            state
                .ctx
                .recorder
                .publish(
                    &rs_ref,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {e}"),
                )
                .await;
            return Err(e.into());
        }
        remaining -= size;
        batch *= 2;
    }
    Ok(())
}

async fn delete_pods(
    rs: &ReplicaSet,
    victims: Vec<Arc<Pod>>,
    state: &State,
    api: &Api<Pod>,
) -> Result<()> {
    let rs_ref = rs.object_ref(&());
    let uids: Vec<String> = victims
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    state.expect(&uid(rs), vec![], uids);
    for pod in victims {
        let name = pod.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                state
                    .ctx
                    .recorder
                    .publish(
                        &rs_ref,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// With `minReadySeconds`, come back when the next ready pod becomes available.
fn requeue_for_availability(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    now: chrono::DateTime<Utc>,
) -> Action {
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    if min_ready <= 0 {
        return Action::requeue(RESYNC);
    }
    let soonest = owned
        .iter()
        .filter_map(|p| condition_true(p, "Ready"))
        .map(|since| since + chrono::Duration::seconds(min_ready.into()) - now)
        .filter(|left| *left > chrono::Duration::zero())
        .min();
    match soonest.and_then(|d| d.to_std().ok()) {
        Some(wait) => Action::requeue(wait + Duration::from_millis(100)),
        None => Action::requeue(RESYNC),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: i64) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "uid": name, "creationTimestamp": chrono::DateTime::from_timestamp(created, 0).unwrap().to_rfc3339(), "labels": {"app": "web"}},
                "spec": {"containers": [], "nodeName": node},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}, "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
            }))
            .unwrap(),
        )
    }

    fn owned(name: &str, owner: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": owner.map(|uid| vec![json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true})])},
        }))
        .unwrap()
    }

    fn names(keys: Vec<ObjectRef<Pod>>) -> Vec<String> {
        let mut names: Vec<String> = keys.into_iter().map(|k| k.name).collect();
        names.sort();
        names
    }

    #[test]
    fn the_index_follows_owners_orphans_and_deletions() {
        let mut index = PodIndex::default();
        index.note(&owned("a", Some("rs1")));
        index.note(&owned("b", Some("rs2")));
        index.note(&owned("c", None));
        assert_eq!(names(index.candidates("rs1")), ["a", "c"]);
        // c is adopted by rs2; a is released.
        index.note(&owned("c", Some("rs2")));
        index.note(&owned("a", None));
        assert_eq!(names(index.candidates("rs1")), ["a"]);
        assert_eq!(names(index.candidates("rs2")), ["a", "b", "c"]);
        index.forget(&ObjectRef::from_obj(&owned("b", None)));
        assert_eq!(names(index.candidates("rs2")), ["a", "c"]);
        index.prune(|key| key.name != "c");
        assert_eq!(names(index.candidates("rs2")), ["a"]);
        assert!(index.by_owner.is_empty());
    }

    #[test]
    fn victims_are_unscheduled_then_pending_then_unready_then_newest() {
        let pods = vec![
            pod("old-ready", Some("n"), "Running", true, 100),
            pod("new-ready", Some("n"), "Running", true, 200),
            pod("unready", Some("n"), "Running", false, 50),
            pod("pending", Some("n"), "Pending", false, 10),
            pod("unscheduled", None, "Pending", false, 5),
        ];
        let names = |n: usize| -> Vec<String> {
            choose_victims(pods.clone(), n)
                .iter()
                .map(|p| p.name_any())
                .collect()
        };
        assert_eq!(names(1), ["unscheduled"]);
        assert_eq!(names(3), ["unscheduled", "pending", "unready"]);
        assert_eq!(names(4)[3], "new-ready");
    }

    #[test]
    fn status_counts_ready_and_available_pods() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 3, "minReadySeconds": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}}},
        }))
        .unwrap();
        let pods = vec![
            pod("a", Some("n"), "Running", true, 1),
            pod("b", Some("n"), "Running", false, 2),
        ];
        let status = compute_status(&rs, &pods, Utc::now());
        assert_eq!(status.replicas, 2);
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("a", Some("n"), "Running", true, 1);
        let since: chrono::DateTime<Utc> = "2020-01-01T00:00:00Z".parse().unwrap();
        assert!(!is_available(&p, 30, since + chrono::Duration::seconds(10)));
        assert!(is_available(&p, 30, since + chrono::Duration::seconds(31)));
    }
}
