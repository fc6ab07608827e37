//! The scheduler: binds pods that wait for a node (`spec.nodeName` empty, ours by
//! `spec.schedulerName`, not being deleted) to a Ready, schedulable node that passes
//! kube-scheduler's filters for taints, node selectors, required node affinity,
//! resources and host ports, choosing by its scores for spreading and load.
//!
//! One task owns all state: a cache of nodes and per-node usage fed by two watches,
//! and a queue ordered by priority and age. Each attempt checks every node against
//! pre-parsed data only; the pod is assumed on the chosen node at once, and the
//! `binding` POST (or, when it fits nowhere, the `PodScheduled=False` status and the
//! `FailedScheduling` event) runs in a task of its own, a few dozen at a time.
//! Pods with PersistentVolumeClaims are placed where their volumes can be
//! (`volumes`): bound local volumes pin them, waiting claims get the chosen node.
//!
//! Owns: pods' `spec.nodeName` (through `pods/binding`), their `PodScheduled`
//! condition while unschedulable, `Scheduled` and `FailedScheduling` events.
//! May call: the API only, through the `component::Context`'s kube client and
//! recorder, and `model` (quantities); never `controllers` or `api`.

mod cache;
mod filter;
mod model;
mod queue;
mod score;
mod state;
mod volumes;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::component::events::EventType;
use crate::component::Context;
use model::{NodeInfo, PodInfo};
use state::{Change, Decision, Input, Outcome, PodRef, State};

/// Bindings and unschedulable reports in flight at once.
const CONCURRENT_WRITES: usize = 64;
/// A write that takes longer is given up (a binding is then retried).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Watch events buffered between the watches and the scheduling task.
const INPUT_BUFFER: usize = 1024;
/// Watch events absorbed in one go before the next scheduling attempt.
const DRAIN_BATCH: usize = 256;
/// How often parked pods are checked for a retry.
const TICK: Duration = Duration::from_secs(1);

/// Runs the scheduler until its watches end (the supervisor restarts it).
pub async fn run(ctx: Arc<Context>) {
    let (sender, inputs) = mpsc::channel(INPUT_BUFFER);
    let _watches = [
        AbortOnDrop(tokio::spawn(forward(
            Api::<Node>::all(ctx.client.clone()),
            sender.clone(),
            |node| Input::Node(Change::Apply(NodeInfo::from_node(node))),
            |node| Input::Node(Change::InitApply(NodeInfo::from_node(node))),
            |node| {
                Input::Node(Change::Delete(
                    node.metadata.name.clone().unwrap_or_default(),
                ))
            },
            |marker| Input::Node(marker.into()),
        ))),
        AbortOnDrop(tokio::spawn(forward(
            Api::<Pod>::all(ctx.client.clone()),
            sender.clone(),
            |pod| Input::Pod(Change::Apply(Box::new(PodInfo::from_pod(pod)))),
            |pod| Input::Pod(Change::InitApply(Box::new(PodInfo::from_pod(pod)))),
            |pod| Input::Pod(Change::Delete(pod.metadata.uid.clone().unwrap_or_default())),
            |marker| Input::Pod(marker.into()),
        ))),
        AbortOnDrop(tokio::spawn(forward(
            Api::<PersistentVolumeClaim>::all(ctx.client.clone()),
            sender.clone(),
            |c| Input::Claim(Change::Apply(volumes::ClaimInfo::from_claim(c))),
            |c| Input::Claim(Change::InitApply(volumes::ClaimInfo::from_claim(c))),
            |c| Input::Claim(Change::Delete(volumes::ClaimInfo::from_claim(c).key)),
            |marker| Input::Claim(marker.into()),
        ))),
        AbortOnDrop(tokio::spawn(forward(
            Api::<PersistentVolume>::all(ctx.client.clone()),
            sender.clone(),
            |v| Input::Volume(Change::Apply(volumes::VolumeInfo::from_volume(v))),
            |v| Input::Volume(Change::InitApply(volumes::VolumeInfo::from_volume(v))),
            |v| Input::Volume(Change::Delete(v.metadata.name.clone().unwrap_or_default())),
            |marker| Input::Volume(marker.into()),
        ))),
        AbortOnDrop(tokio::spawn(forward(
            Api::<StorageClass>::all(ctx.client.clone()),
            sender,
            |c| Input::Class(Change::Apply(volumes::class_info(c))),
            |c| Input::Class(Change::InitApply(volumes::class_info(c))),
            |c| Input::Class(Change::Delete(c.metadata.name.clone().unwrap_or_default())),
            |marker| Input::Class(marker.into()),
        ))),
    ];
    schedule(ctx, inputs).await;
}

/// A relist's start or end, without an object.
enum Marker {
    Init,
    InitDone,
}

impl<T> From<Marker> for Change<T> {
    fn from(marker: Marker) -> Self {
        match marker {
            Marker::Init => Change::Init,
            Marker::InitDone => Change::InitDone,
        }
    }
}

/// Stops a spawned task when the scheduler stops.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches `api` (retrying with back-off) and sends each event, converted, to the
/// scheduling task.
async fn forward<K>(
    api: Api<K>,
    sender: mpsc::Sender<Input>,
    applied: fn(&K) -> Input,
    listed: fn(&K) -> Input,
    deleted: fn(&K) -> Input,
    marker: fn(Marker) -> Input,
) where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut events =
        std::pin::pin!(
            crate::client::lenient::watcher(api, watcher::Config::default()).default_backoff()
        );
    while let Some(event) = events.next().await {
        let input = match event {
            Ok(Event::Apply(object)) => applied(&object),
            Ok(Event::InitApply(object)) => listed(&object),
            Ok(Event::Delete(object)) => deleted(&object),
            Ok(Event::Init) => marker(Marker::Init),
            Ok(Event::InitDone) => marker(Marker::InitDone),
            Err(error) => {
                tracing::debug!(%error, kind = %K::kind(&()), "scheduler watch failed; retrying");
                continue;
            }
        };
        if sender.send(input).await.is_err() {
            return;
        }
    }
}

/// The scheduling task: absorbs watch events, makes one decision whenever a write
/// slot is free, and settles bindings as they end.
async fn schedule(ctx: Arc<Context>, mut inputs: mpsc::Receiver<Input>) {
    let mut state = State::default();
    let permits = Arc::new(Semaphore::new(CONCURRENT_WRITES));
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let has_work = state.has_work();
        tokio::select! {
            input = inputs.recv() => {
                let Some(input) = input else {
                    return;
                };
                state.absorb(input);
                for _ in 0..DRAIN_BATCH {
                    let Ok(input) = inputs.try_recv() else {
                        break;
                    };
                    state.absorb(input);
                }
            }
            Some(outcome) = outcomes.recv() => state.settle(outcome, Instant::now()),
            _ = tick.tick() => state.activate_due(Instant::now()),
            permit = permits.clone().acquire_owned(), if has_work => {
                let (Ok(permit), Some(decision)) = (permit, state.decide(Instant::now())) else {
                    continue;
                };
                if decision.writes_nothing() {
                    continue;
                }
                tokio::spawn(carry_out(ctx.clone(), decision, outcomes_tx.clone(), permit));
            }
        }
    }
}

/// Writes one decision; the permit limits how many writes run at once.
async fn carry_out(
    ctx: Arc<Context>,
    decision: Decision,
    outcomes: mpsc::UnboundedSender<Outcome>,
    permit: OwnedSemaphorePermit,
) {
    match decision {
        Decision::Bind { pod, node, select } => {
            let outcome = match select_node(&ctx, &pod, &select, &node).await {
                Ok(()) => bind(&ctx, &pod, &node).await,
                Err(error) => {
                    tracing::info!(pod = %pod.name, namespace = %pod.namespace, node, %error, "selecting a node for the pod's claims failed; retrying");
                    Outcome::Failed(pod.uid.clone())
                }
            };
            let bound = outcome == Outcome::Bound(pod.uid.clone());
            let _ = outcomes.send(outcome);
            if bound {
                let message = format!(
                    "Successfully assigned {}/{} to {node}",
                    pod.namespace, pod.name
                );
                ctx.recorder
                    .publish(&pod.object_ref(), EventType::Normal, "Scheduled", &message)
                    .await;
            }
        }
        Decision::Unschedulable {
            pod,
            message,
            condition,
            event,
        } => {
            let report = report_unschedulable(&ctx, &pod, &message, condition, event);
            if tokio::time::timeout(WRITE_TIMEOUT, report).await.is_err() {
                tracing::debug!(pod = %pod.name, namespace = %pod.namespace, "reporting an unschedulable pod timed out");
            }
        }
    }
    drop(permit);
}

/// Annotates the pod's waiting claims with the chosen node, as upstream's volume
/// binder does before binding (the provisioner makes their volumes there).
async fn select_node(
    ctx: &Context,
    pod: &PodRef,
    claims: &[String],
    node: &str,
) -> kube::Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &pod.namespace);
    let patch = json!({"metadata": {"annotations": {volumes::SELECTED_NODE: node}}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    for claim in claims {
        let request = api.patch(claim, &params, &patch);
        match tokio::time::timeout(WRITE_TIMEOUT, request).await {
            Ok(result) => {
                result?;
            }
            Err(_) => return Err(kube::Error::Service("annotating a claim timed out".into())),
        }
    }
    Ok(())
}

/// POSTs the pod's Binding to `node`.
async fn bind(ctx: &Context, pod: &PodRef, node: &str) -> Outcome {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    let body = match serde_json::to_vec(&binding) {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(pod = %pod.name, %error, "encoding a binding failed");
            return Outcome::Failed(pod.uid.clone());
        }
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace);
    let params = PostParams::default();
    let request = api.create_subresource::<serde_json::Value>("binding", &pod.name, &params, body);
    let Ok(result) = tokio::time::timeout(WRITE_TIMEOUT, request).await else {
        tracing::info!(pod = %pod.name, namespace = %pod.namespace, node, "binding pod timed out; retrying");
        return Outcome::Failed(pod.uid.clone());
    };
    match result {
        Ok(_) => {
            tracing::debug!(pod = %pod.name, namespace = %pod.namespace, node, "bound pod");
            Outcome::Bound(pod.uid.clone())
        }
        Err(kube::Error::Api(response)) if response.code == 409 || response.code == 404 => {
            tracing::debug!(pod = %pod.name, reason = %response.message, "pod was bound elsewhere or is gone");
            Outcome::Taken(pod.uid.clone())
        }
        Err(error) => {
            tracing::info!(pod = %pod.name, namespace = %pod.namespace, node, %error, "binding pod failed; retrying");
            Outcome::Failed(pod.uid.clone())
        }
    }
}

/// Marks the pod `PodScheduled=False` (reason `Unschedulable`) when it is not yet,
/// and records a `FailedScheduling` warning when asked to.
async fn report_unschedulable(
    ctx: &Context,
    pod: &PodRef,
    message: &str,
    condition: Option<bool>,
    event: bool,
) {
    if let Some(transition) = condition {
        let mut entry = json!({
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
        });
        if transition {
            entry["lastTransitionTime"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        let patch = json!({"status": {"conditions": [entry]}});
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace);
        if let Err(error) = api
            .patch_status(
                &pod.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            tracing::debug!(pod = %pod.name, namespace = %pod.namespace, %error, "marking pod unschedulable failed");
        }
    }
    if event {
        ctx.recorder
            .publish(
                &pod.object_ref(),
                EventType::Warning,
                "FailedScheduling",
                message,
            )
            .await;
    }
}
