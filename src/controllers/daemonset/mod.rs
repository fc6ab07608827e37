//! The DaemonSet controller: one pod of each DaemonSet on every node that should run
//! it, as Kubernetes' daemon controller keeps them.
//!
//! Owns: the DaemonSet's pods (named `<ds>-<5 chars>`, controller ownerReference,
//! label `controller-revision-hash`, bound to their node through a required node
//! affinity `matchFields metadata.name In [node]` so the scheduler places them, and
//! given the tolerations every daemon pod gets), adopting matching orphans and
//! releasing pods that stopped matching; replacing failed pods (with a back-off per
//! node); rolling updates within maxUnavailable/maxSurge (OnDelete: only deleted pods
//! are replaced); and the DaemonSet's `/status`.
//! Does not own: deleting the pods of a deleted DaemonSet (the garbage collector),
//! pods bound to deleted nodes (node lifecycle).
//!
//! Which nodes qualify is [`eligibility`]; what to create and delete, and the status,
//! is [`plan`]; the template history (one ControllerRevision per template, which
//! `kubectl rollout history|undo ds` use) is [`history`]. Caches of nodes and pods feed the reconciles; a node change wakes every
//! DaemonSet, a pod change its owner. As in the ReplicaSet controller, "expectations"
//! hold back the next decision until the cache has seen the last writes.
//!
//! May call: the API (pods, nodes, controllerrevisions, daemonsets/status, events).

mod eligibility;
mod history;
mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::events::EventType;
use super::{requeue_after_error, Context, Error, Result};
use crate::model::selector::LabelSelector;
use eligibility::{bind_to_node, node_fit, pod_tolerations, target_node};
use plan::{NodeFit, PodsByNode, HASH_LABEL};

const NAME: &str = "daemonset";
/// Most pods created or deleted in one pass.
const BURST: usize = 250;
/// Expectations older than this are abandoned (a write the cache never showed).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Every DaemonSet is looked at again this often without a change.
const RESYNC: Duration = Duration::from_secs(300);
/// Back-off before the next failed pod on one node is replaced (upstream: 1 s doubling
/// to 15 min).
const FAILED_BACKOFF_START: Duration = Duration::from_secs(1);
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(900);

#[derive(Default)]
struct Expectation {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Option<Instant>,
}

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Mutex<HashMap<String, Expectation>>,
    /// (DaemonSet uid, node) → (when the last failed pod was deleted, current delay).
    failed_backoff: Mutex<HashMap<(String, String), (Instant, Duration)>>,
}

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let controller = crate::client::lenient::controller(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let daemon_sets = controller.store();
    let (pods, pod_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let state = Arc::new(State {
        ctx,
        pods,
        nodes,
        revisions: super::cache(Api::<ControllerRevision>::all(client.clone())),
        expectations: Mutex::default(),
        failed_backoff: Mutex::default(),
    });
    // Pod events wake their owner; a node that comes, goes or changes its labels or
    // taints wakes every DaemonSet (heartbeats and status updates do not). Both
    // watches run on their own tasks and fill their caches before they trigger.
    let (triggers, woken) = futures::channel::mpsc::unbounded();
    let pod_triggers = triggers.clone();
    let pod_feed = reflector::reflector(
        pod_writer,
        crate::client::lenient::watcher(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(slim),
    )
    .default_backoff()
    .touched_objects()
    .for_each(move |pod| {
        if let Some(owner) = pod.ok().as_ref().and_then(owner_of) {
            let _ = pod_triggers.unbounded_send(owner);
        }
        futures::future::ready(())
    });
    let node_feed = reflector::reflector(
        node_writer,
        crate::client::lenient::watcher(Api::<Node>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .for_each({
        let mut seen = HashMap::new();
        move |event| {
            if event.is_ok_and(|e| node_changed(&mut seen, e)) {
                for ds in daemon_sets.state() {
                    let _ = triggers.unbounded_send(ObjectRef::from_obj(ds.as_ref()));
                }
            }
            futures::future::ready(())
        }
    });
    let pod_feed = tokio::spawn(pod_feed);
    let node_feed = tokio::spawn(node_feed);
    controller
        .reconcile_on(woken)
        .run(
            |ds, state| super::spawned(reconcile(ds, state)),
            |_, e, _| requeue_after_error(NAME, e),
            state,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    pod_feed.abort();
    node_feed.abort();
}

/// What of a node decides where daemon pods go.
type NodeFacts = (
    Option<std::collections::BTreeMap<String, String>>,
    Option<Vec<k8s_openapi::api::core::v1::Taint>>,
);

/// Whether a node watch event can change any DaemonSet's nodes: a node added,
/// deleted, or with other labels or taints than `seen` remembers (updated here).
fn node_changed(seen: &mut HashMap<String, NodeFacts>, event: watcher::Event<Node>) -> bool {
    match event {
        watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
            let facts = (
                node.metadata.labels.clone(),
                node.spec.as_ref().and_then(|s| s.taints.clone()),
            );
            seen.insert(node.name_any(), facts.clone()) != Some(facts)
        }
        watcher::Event::Delete(node) => {
            seen.remove(&node.name_any());
            true
        }
        watcher::Event::InitDone => true,
        watcher::Event::Init => false,
    }
}

/// Drops what this controller never reads of a pod (managed fields, containers,
/// volumes, container statuses): the cache holds every pod of the cluster.
fn slim(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers = Vec::new();
        spec.init_containers = None;
        spec.volumes = None;
        spec.ephemeral_containers = None;
    }
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

fn controller_ref(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// The DaemonSet controlling a pod, as a reconcile trigger.
fn owner_of(pod: &Pod) -> Option<ObjectRef<DaemonSet>> {
    let owner = controller_ref(pod).filter(|o| o.kind == "DaemonSet")?;
    Some(ObjectRef::new(&owner.name).within(&pod.namespace()?))
}

fn uid(ds: &DaemonSet) -> String {
    ds.metadata.uid.clone().unwrap_or_default()
}

fn owner_reference(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: ds.name_any(),
        uid: uid(ds),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn selector_of(ds: &DaemonSet) -> Result<LabelSelector> {
    let spec = ds
        .spec
        .as_ref()
        .ok_or_else(|| Error::Invalid(format!("daemonset {} has no spec", ds.name_any())))?;
    let json = serde_json::to_value(&spec.selector).map_err(|e| Error::Invalid(e.to_string()))?;
    LabelSelector::from_json(&json)
        .map_err(|e| Error::Invalid(format!("daemonset {} selector: {e}", ds.name_any())))
}

fn labels_json(pod: &Pod) -> serde_json::Map<String, serde_json::Value> {
    pod.labels()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn update_strategy(ds: &DaemonSet) -> &str {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

impl State {
    /// True while pods this controller just created or deleted are not yet visible in
    /// (or gone from) the cache.
    fn awaiting_cache(&self, ds_uid: &str, owned: &[Arc<Pod>]) -> bool {
        let Ok(mut all) = self.expectations.lock() else {
            return false;
        };
        let Some(expectation) = all.get_mut(ds_uid) else {
            return false;
        };
        let names: HashSet<&str> = owned
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        let live: HashSet<&str> = owned
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        expectation.creates.retain(|n| !names.contains(n.as_str()));
        expectation.deletes.retain(|u| live.contains(u.as_str()));
        let timed_out = expectation
            .since
            .is_some_and(|s| s.elapsed() > EXPECTATION_TIMEOUT);
        if timed_out || (expectation.creates.is_empty() && expectation.deletes.is_empty()) {
            all.remove(ds_uid);
            return false;
        }
        true
    }

    fn expect(&self, ds_uid: &str, creates: Vec<String>, deletes: Vec<String>) {
        if let Ok(mut all) = self.expectations.lock() {
            let e = all.entry(ds_uid.to_string()).or_default();
            e.creates.extend(creates);
            e.deletes.extend(deletes);
            e.since = Some(Instant::now());
        }
    }

    /// Whether a failed pod on `node` may be replaced now; if so, the back-off grows.
    /// Otherwise how long to wait.
    fn failed_pod_allowed(&self, ds_uid: &str, node: &str) -> Result<(), Duration> {
        let Ok(mut all) = self.failed_backoff.lock() else {
            return Ok(());
        };
        let key = (ds_uid.to_string(), node.to_string());
        let now = Instant::now();
        match all.get(&key).copied() {
            Some((last, delay)) if now < last + delay => Err(last + delay - now),
            Some((last, delay)) if now < last + 2 * FAILED_BACKOFF_MAX => {
                all.insert(key, (now, (delay * 2).min(FAILED_BACKOFF_MAX)));
                Ok(())
            }
            _ => {
                all.insert(key, (now, FAILED_BACKOFF_START));
                Ok(())
            }
        }
    }
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let _ = state.pods.wait_until_ready().await;
    let _ = state.nodes.wait_until_ready().await;
    let ns = ds.namespace().unwrap_or_default();
    let ds_uid = uid(&ds);
    let template_spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .ok_or_else(|| Error::Invalid(format!("daemonset {} has no pod spec", ds.name_any())))?;
    let pods_api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &ns);
    let owned = claim_pods(&ds, &state, &pods_api).await?;
    let nodes: Vec<NodeFit> = state
        .nodes
        .state()
        .iter()
        .map(|n| NodeFit {
            name: n.name_any(),
            fit: node_fit(&template_spec, n),
        })
        .collect();
    let mut by_node = PodsByNode::new();
    for pod in &owned {
        // Pods both deleted and terminal no longer count.
        if pod.metadata.deletion_timestamp.is_some() && is_terminal(pod) {
            continue;
        }
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    let _ = state.revisions.wait_until_ready().await;
    let (hash, revisions, current) = construct_history(&ds, &state).await?;
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let now = Utc::now();
    let mut requeue = RESYNC;
    if !state.awaiting_cache(&ds_uid, &owned) {
        let (max_surge, max_unavailable) = {
            let desired = nodes.iter().filter(|n| n.fit.should_run).count() as i32;
            plan::budgets(&ds, desired)
        };
        let rolling = update_strategy(&ds) == "RollingUpdate";
        let surge = rolling && max_surge > 0;
        let mut step = plan::manage(&nodes, &by_node, &hash, surge, min_ready, now);
        for pod in std::mem::take(&mut step.failed) {
            let node = target_node(&pod).unwrap_or_default();
            match state.failed_pod_allowed(&ds_uid, &node) {
                Ok(()) => {
                    let message = format!(
                        "Found failed daemon pod {ns}/{} on node {node}, will try to kill it",
                        pod.name_any()
                    );
                    state
                        .ctx
                        .recorder
                        .publish(
                            &ds.object_ref(&()),
                            EventType::Warning,
                            "FailedDaemonPod",
                            &message,
                        )
                        .await;
                    step.delete.push(pod);
                }
                Err(wait) => requeue = requeue.min(wait),
            }
        }
        if step.is_empty() && rolling {
            step = plan::rolling_update(
                &nodes,
                &by_node,
                &hash,
                (max_surge, max_unavailable),
                min_ready,
                now,
            );
        }
        sync_nodes(&ds, &template_spec, &hash, step, &state, &pods_api).await?;
    }
    cleanup_history(&ds, &owned, &revisions, &current, &state).await?;
    let status = plan::status(&ds, &nodes, &by_node, &hash, now);
    if ds.status.as_ref() != Some(&status) {
        let api: Api<DaemonSet> = Api::namespaced(state.ctx.client.clone(), &ns);
        let patch = json!({"status": status});
        api.patch_status(
            &ds.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    // Pods ready but not yet available for minReadySeconds (a surge pod too, which
    // the status does not count): look again when they are.
    let waiting = by_node
        .values()
        .flatten()
        .any(|p| plan::is_ready(p) && !plan::is_available(p, min_ready, now));
    if waiting {
        requeue = requeue.min(Duration::from_secs(min_ready as u64 + 1));
    }
    Ok(Action::requeue(requeue))
}

/// The current template's hash after making sure its ControllerRevision exists with
/// the highest revision number (`constructHistory`); also the DaemonSet's revisions
/// and the current one's name. A revision name taken by another template bumps
/// `status.collisionCount` so the next attempt hashes differently.
async fn construct_history(
    ds: &DaemonSet,
    state: &State,
) -> Result<(String, Vec<Arc<ControllerRevision>>, String)> {
    let ns = ds.namespace().unwrap_or_default();
    let ds_uid = uid(ds);
    let api: Api<ControllerRevision> = Api::namespaced(state.ctx.client.clone(), &ns);
    let selector = selector_of(ds)?;
    let mut revisions = Vec::new();
    for revision in state.revisions.state() {
        if revision.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        let owner = revision
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let labels: serde_json::Map<String, serde_json::Value> = revision
            .labels()
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        match owner {
            Some(o) if o.uid == ds_uid => revisions.push(revision),
            None if !selector.is_empty() && selector.matches(Some(&labels)) => {
                let mut refs = revision
                    .metadata
                    .owner_references
                    .clone()
                    .unwrap_or_default();
                refs.push(owner_reference(ds));
                let patch =
                    json!({"metadata": {"ownerReferences": refs, "uid": revision.metadata.uid}});
                match api
                    .patch(
                        &revision.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(adopted) => revisions.push(Arc::new(adopted)),
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {}
        }
    }
    let data = plan::revision_data(ds);
    let (current, max) = history::find_current(&revisions, &data);
    if let Some(current) = current {
        let name = current.name_any();
        if current.revision < max {
            let patch = json!({"revision": max + 1});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        return Ok((history::hash_of(&current), revisions, name));
    }
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = plan::revision_hash(&data, collision_count);
    let name = format!("{}-{hash}", ds.name_any());
    let mut labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![owner_reference(ds)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data.clone())),
        revision: max + 1,
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(created) => {
            revisions.push(Arc::new(created));
            Ok((hash, revisions, name))
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&name).await?;
            let ours = existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == ds_uid);
            if ours && existing.data.as_ref().is_some_and(|d| d.0 == data) {
                if existing.revision < max {
                    let patch = json!({"revision": max + 1});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
                revisions.push(Arc::new(existing));
                return Ok((hash, revisions, name));
            }
            let count = collision_count.unwrap_or(0) + 1;
            let ds_api: Api<DaemonSet> = Api::namespaced(state.ctx.client.clone(), &ns);
            let patch = json!({"status": {"collisionCount": count}});
            ds_api
                .patch_status(
                    &ds.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            Err(Error::Invalid(format!(
                "controllerrevision {name} belongs to another template; collisionCount is now {count}"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes old revisions past `revisionHistoryLimit` that no pod runs any more.
async fn cleanup_history(
    ds: &DaemonSet,
    owned: &[Arc<Pod>],
    revisions: &[Arc<ControllerRevision>],
    current: &str,
    state: &State,
) -> Result<()> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let live: HashSet<String> = owned
        .iter()
        .filter_map(|p| p.labels().get(HASH_LABEL).cloned())
        .collect();
    let victims = history::to_delete(revisions, Some(current), limit, &live);
    if victims.is_empty() {
        return Ok(());
    }
    let api: Api<ControllerRevision> = Api::namespaced(
        state.ctx.client.clone(),
        &ds.namespace().unwrap_or_default(),
    );
    for revision in victims {
        match api
            .delete(&revision.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Pods owned by the DaemonSet after adopting matching orphans and releasing owned
/// pods that no longer match.
async fn claim_pods(ds: &DaemonSet, state: &State, api: &Api<Pod>) -> Result<Vec<Arc<Pod>>> {
    let selector = selector_of(ds)?;
    let ns = ds.namespace();
    let ds_uid = uid(ds);
    let mut owned = Vec::new();
    for pod in state.pods.state() {
        if pod.namespace() != ns {
            continue;
        }
        let matches = selector.matches(Some(&labels_json(&pod)));
        match controller_ref(&pod).map(|o| o.uid.as_str()) {
            Some(owner) if owner == ds_uid && matches => owned.push(pod),
            Some(owner) if owner == ds_uid => release(&pod, &ds_uid, api).await?,
            None if matches
                && !selector.is_empty()
                && pod.metadata.deletion_timestamp.is_none()
                && !is_terminal(&pod) =>
            {
                if let Some(adopted) = adopt(ds, &pod, api).await? {
                    owned.push(Arc::new(adopted));
                }
            }
            _ => {}
        }
    }
    Ok(owned)
}

async fn adopt(ds: &DaemonSet, pod: &Pod, api: &Api<Pod>) -> Result<Option<Pod>> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(owner_reference(ds));
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

async fn release(pod: &Pod, ds_uid: &str, api: &Api<Pod>) -> Result<()> {
    let refs: Vec<&OwnerReference> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.uid != ds_uid)
        .collect();
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid}});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The daemon pod for `node`: the template, the hash label, the owner, the daemon
/// tolerations and the node affinity that binds it (`NewPod` + `syncNodes`).
fn new_pod(
    ds: &DaemonSet,
    template_spec: &k8s_openapi::api::core::v1::PodSpec,
    hash: &str,
    node: &str,
) -> Pod {
    let meta = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.clone())
        .unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    let mut spec = template_spec.clone();
    spec.tolerations = Some(pod_tolerations(template_spec));
    spec.affinity = Some(bind_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner_reference(ds)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Deletes and creates what the plan says, recording events and expectations;
/// creations go in growing batches (1, 2, 4, …) so a broken template fails fast.
async fn sync_nodes(
    ds: &DaemonSet,
    template_spec: &k8s_openapi::api::core::v1::PodSpec,
    hash: &str,
    step: plan::Plan,
    state: &State,
    api: &Api<Pod>,
) -> Result<()> {
    let ds_ref = ds.object_ref(&());
    let ds_uid = uid(ds);
    let mut seen = HashSet::new();
    let victims: Vec<Arc<Pod>> = step
        .delete
        .into_iter()
        .filter(|p| seen.insert(p.metadata.uid.clone()))
        .take(BURST)
        .collect();
    let uids = victims
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    state.expect(&ds_uid, vec![], uids);
    for pod in victims {
        let name = pod.name_any();
        let params = DeleteParams {
            preconditions: pod
                .metadata
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                let message = format!("Deleted pod: {name}");
                state
                    .ctx
                    .recorder
                    .publish(&ds_ref, EventType::Normal, "SuccessfulDelete", &message)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let params = PostParams::default();
    let mut nodes: Vec<String> = step.create_on.into_iter().take(BURST).collect();
    let mut batch = 1;
    while !nodes.is_empty() {
        let now: Vec<String> = nodes.drain(..batch.min(nodes.len())).collect();
        let pods: Vec<Pod> = now
            .iter()
            .map(|node| new_pod(ds, template_spec, hash, node))
            .collect();
        let creates = pods.iter().map(|pod| api.create(&params, pod));
        let results = futures::future::join_all(creates).await;
        let mut names = Vec::new();
        let mut failure = None;
        for result in results {
            match result {
                Ok(created) => {
                    let name = created.name_any();
                    let message = format!("Created pod: {name}");
                    state
                        .ctx
                        .recorder
                        .publish(&ds_ref, EventType::Normal, "SuccessfulCreate", &message)
                        .await;
                    names.push(name);
                }
                Err(e) => failure = Some(e),
            }
        }
        state.expect(&ds_uid, names, vec![]);
        if let Some(e) = failure {
            let message = format!("Error creating: {e}");
            state
                .ctx
                .recorder
                .publish(&ds_ref, EventType::Warning, "FailedCreate", &message)
                .await;
            return Err(e.into());
        }
        batch *= 2;
    }
    Ok(())
}
