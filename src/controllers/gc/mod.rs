//! The garbage collector and namespace deletion, as Kubernetes' own:
//! - a dependent whose owners (by uid) are all gone is deleted in the background;
//! - an owner deleted in the foreground (`foregroundDeletion` finalizer) has its
//!   dependents deleted and keeps the finalizer until no dependent blocks it;
//! - an owner deleted with orphan propagation (`orphan` finalizer) has its reference
//!   removed from every dependent before the finalizer goes;
//! - a Terminating namespace is emptied, then finalized (see [`namespace`]).
//!
//! Owns: those finalizers, dependents' ownerReferences pointing at gone or deleting
//! owners, namespaces' `kubernetes` finalizer and deletion conditions.
//! May call: the API only. Its view is a metadata-only graph of every kind skiff
//! serves ([`graph`]), fed by one watch per kind; decisions are pure functions of it
//! ([`decide`]), and an owner's absence is confirmed by a live read before anything
//! is deleted on its account.

mod decide;
mod graph;
mod kinds;
mod namespace;
mod queue;

use std::collections::HashSet;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::{metadata_watcher, watcher, WatchStreamExt};
use serde_json::json;

use super::{Context, Result};
use decide::{OwnerPlace, OwnerState, Propagation, Verdict};
use graph::{Graph, Node, OwnerRef, Uid, Work, FOREGROUND, ORPHAN};
use kinds::{KindId, KINDS};
use queue::Queue;

/// Objects worked on at once.
const WORKERS: usize = 8;
/// Everything that may need work is looked at again this often.
const RESYNC: Duration = Duration::from_secs(30);

/// Runs the collector: one metadata watch per kind, workers, a periodic resync.
/// Never returns.
pub async fn run(ctx: Arc<Context>) {
    let gc = Arc::new(Gc {
        ctx,
        graph: Mutex::default(),
        queue: Arc::new(Queue::new()),
        gone: Mutex::default(),
    });
    let watches = futures::future::join_all((0..KINDS.len()).map(|kind| gc.watch(kind)));
    let workers = futures::future::join_all((0..WORKERS).map(|_| gc.work()));
    tokio::join!(watches, workers, gc.resync_forever());
}

pub(super) struct Gc {
    ctx: Arc<Context>,
    graph: Mutex<Graph>,
    queue: Arc<Queue<Work>>,
    /// Owner uids a live read found gone (uids never come back): spares the siblings
    /// of a collected dependent the same read.
    gone: Mutex<HashSet<Uid>>,
}

/// Gone owner uids remembered at most (then forgotten all at once).
const REMEMBERED_GONE: usize = 10_000;

/// 404: the object we meant is gone.
fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

/// An emptied list goes from the object (a merge patch's null) rather than stay `[]`.
fn none_if_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

impl Gc {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn api(&self, kind: KindId, namespace: Option<&str>) -> Api<DynamicObject> {
        let client = self.ctx.client.clone();
        let resource = &KINDS[kind].resource;
        match namespace.filter(|_| kinds::is_namespaced(kind)) {
            Some(ns) => Api::namespaced_with(client, ns, resource),
            None => Api::all_with(client, resource),
        }
    }

    /// Feeds one kind's metadata watch into the graph and queues what it triggers.
    async fn watch(&self, kind: KindId) {
        let resource = &KINDS[kind].resource;
        loop {
            let api: Api<DynamicObject> = Api::all_with(self.ctx.client.clone(), resource);
            let mut events =
                pin!(metadata_watcher(api, watcher::Config::default()).default_backoff());
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => self.observe(kind, event),
                    Err(error) => {
                        tracing::debug!(kind = %resource.plural, %error, "garbage collector watch failed")
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn observe(&self, kind: KindId, event: watcher::Event<PartialObjectMeta<DynamicObject>>) {
        let work = self.graph().observe(kind, event);
        for item in work {
            self.queue.add(item);
        }
    }

    async fn resync_forever(&self) {
        let mut ticks = tokio::time::interval(RESYNC);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let work = self.graph().resync();
            for item in work {
                self.queue.add(item);
            }
        }
    }

    /// One worker: takes items once every kind has been listed, retries failures.
    async fn work(&self) {
        while !self.graph().synced() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            let item = self.queue.next().await;
            let outcome = match &item {
                Work::Object(uid) => self.collect(uid).await.map(|()| None),
                Work::Namespace(name) => self.finish_namespace(name).await,
            };
            match outcome {
                Ok(again) => {
                    self.queue.succeeded(&item);
                    if let Some(delay) = again {
                        self.queue.add_after(item.clone(), delay);
                    }
                }
                Err(error) => {
                    tracing::debug!(?item, %error, "garbage collection failed; retrying");
                    let delay = self.queue.failed(&item);
                    self.queue.add_after(item.clone(), delay);
                }
            }
            self.queue.done(&item);
        }
    }

    /// Does what one object needs: run its orphan or foreground finalizer, or check
    /// whether its owners are gone.
    async fn collect(&self, uid: &Uid) -> Result<()> {
        let Some(node) = self.graph().node(uid).cloned() else {
            return Ok(());
        };
        if node.orphans_dependents() {
            return self.orphan_dependents(uid, &node).await;
        }
        if node.waits_for_dependents() {
            return self.delete_dependents(uid, &node).await;
        }
        if node.deleting || node.owners.is_empty() {
            return Ok(());
        }
        self.check_owners(uid, &node).await
    }

    /// Orphan propagation: every dependent loses its reference, then the finalizer goes.
    async fn orphan_dependents(&self, owner: &Uid, node: &Node) -> Result<()> {
        let dependents = self.graph().dependents(owner);
        for (uid, dependent) in &dependents {
            self.drop_owners(uid, dependent, std::slice::from_ref(owner))
                .await?;
        }
        self.remove_finalizer(owner, node, ORPHAN).await
    }

    /// Foreground propagation: dependents are collected, and the finalizer goes once
    /// none blocks the owner any more.
    async fn delete_dependents(&self, owner: &Uid, node: &Node) -> Result<()> {
        let step = decide::foreground_step(owner, &self.graph().dependents(owner));
        for uid in step.collect {
            self.queue.add(Work::Object(uid));
        }
        if step.finished {
            self.remove_finalizer(owner, node, FOREGROUND).await?;
        }
        Ok(())
    }

    /// Deletes a dependent whose owners are gone, or drops its references to gone and
    /// foreground-deleting owners while another owner holds it.
    async fn check_owners(&self, uid: &Uid, node: &Node) -> Result<()> {
        let cached = self.owner_states(node.namespace.as_deref(), &node.owners);
        if !decide::needs_check(&cached) {
            return Ok(());
        }
        // The cache may lag: decide on the object as it is now.
        let api = self.api(node.kind, node.namespace.as_deref());
        let Some(live) = api.get_metadata_opt(&node.name).await? else {
            return Ok(());
        };
        if live.metadata.uid.as_deref() != Some(&**uid)
            || live.metadata.deletion_timestamp.is_some()
        {
            return Ok(());
        }
        let refs: Vec<OwnerRef> = live
            .metadata
            .owner_references
            .iter()
            .flatten()
            .map(OwnerRef::from_api)
            .collect();
        let mut owners = Vec::with_capacity(refs.len());
        for (owner, state) in refs
            .iter()
            .zip(self.owner_states(node.namespace.as_deref(), &refs))
        {
            let state = match state {
                OwnerState::Missing => {
                    self.confirm_missing(owner, node.namespace.as_deref())
                        .await?
                }
                other => other,
            };
            owners.push((owner.uid.clone(), state));
        }
        let has_dependents = self.graph().has_dependents(uid);
        match decide::verdict(&owners, has_dependents) {
            Verdict::Keep => Ok(()),
            Verdict::DropOwners(gone) => self.drop_owners(uid, node, &gone).await,
            Verdict::Delete(propagation) => self.delete(uid, node, propagation).await,
        }
    }

    fn owner_states(&self, namespace: Option<&str>, owners: &[OwnerRef]) -> Vec<OwnerState> {
        let graph = self.graph();
        owners
            .iter()
            .map(|o| decide::cached_owner_state(&graph, namespace, o))
            .collect()
    }

    /// A live read of an owner the cache does not know: gone, or present after all.
    async fn confirm_missing(
        &self,
        owner: &OwnerRef,
        dependent_namespace: Option<&str>,
    ) -> Result<OwnerState> {
        let (Some(kind), Some(place)) = (
            kinds::resolve(&owner.api_version, &owner.kind),
            decide::owner_place(owner, dependent_namespace),
        ) else {
            return Ok(OwnerState::Unresolvable);
        };
        let namespace = match place {
            OwnerPlace::Cluster => None,
            OwnerPlace::Namespace(ns) => Some(ns),
            OwnerPlace::Invalid => return Ok(OwnerState::Gone),
        };
        if self.known_gone(&owner.uid) {
            return Ok(OwnerState::Gone);
        }
        let live = self
            .api(kind, namespace)
            .get_metadata_opt(&owner.name)
            .await?;
        if live.is_some_and(|o| o.metadata.uid.as_deref() == Some(&*owner.uid)) {
            return Ok(OwnerState::Solid);
        }
        self.remember_gone(&owner.uid);
        Ok(OwnerState::Gone)
    }

    fn known_gone(&self, uid: &Uid) -> bool {
        self.gone.lock().is_ok_and(|gone| gone.contains(uid))
    }

    fn remember_gone(&self, uid: &Uid) {
        if let Ok(mut gone) = self.gone.lock() {
            if gone.len() >= REMEMBERED_GONE {
                gone.clear();
            }
            gone.insert(uid.clone());
        }
    }

    async fn delete(&self, uid: &Uid, node: &Node, propagation: Propagation) -> Result<()> {
        let policy = match propagation {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
        };
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::debug!(
            kind = decide::kind_name(node),
            namespace = node.namespace.as_deref().unwrap_or_default(),
            name = %node.name,
            ?propagation,
            "collecting a dependent"
        );
        let api = self.api(node.kind, node.namespace.as_deref());
        match api.delete(&node.name, &params).await {
            Err(e) if !is_gone(&e) && !is_conflict(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Removes the references to `owners` from a dependent (no-op if already gone).
    async fn drop_owners(&self, uid: &Uid, node: &Node, owners: &[Uid]) -> Result<()> {
        let api = self.api(node.kind, node.namespace.as_deref());
        let Some(live) = api.get_metadata_opt(&node.name).await? else {
            return Ok(());
        };
        if live.metadata.uid.as_deref() != Some(&**uid) {
            return Ok(());
        }
        let refs: &[OwnerReference] = live
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default();
        let Some(kept) = decide::without_owners(refs, owners) else {
            return Ok(());
        };
        let patch = json!({"metadata": {
            "ownerReferences": none_if_empty(kept),
            "resourceVersion": live.metadata.resource_version,
        }});
        self.patch_metadata(&api, &node.name, &patch).await
    }

    /// Removes `finalizer` from an object being deleted (no-op if already gone).
    async fn remove_finalizer(&self, uid: &Uid, node: &Node, finalizer: &str) -> Result<()> {
        let api = self.api(node.kind, node.namespace.as_deref());
        let Some(live) = api.get_metadata_opt(&node.name).await? else {
            return Ok(());
        };
        if live.metadata.uid.as_deref() != Some(&**uid) {
            return Ok(());
        }
        let finalizers = live.metadata.finalizers.as_deref().unwrap_or_default();
        let Some(kept) = decide::without_finalizer(finalizers, finalizer) else {
            return Ok(());
        };
        let patch = json!({"metadata": {
            "finalizers": none_if_empty(kept),
            "resourceVersion": live.metadata.resource_version,
        }});
        self.patch_metadata(&api, &node.name, &patch).await
    }

    /// A merge patch guarded by the resourceVersion it carries (409s are retried).
    async fn patch_metadata(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<()> {
        match api
            .patch_metadata(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(e) if !is_gone(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }
}
