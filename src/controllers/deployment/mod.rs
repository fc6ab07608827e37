//! The Deployment controller: rolls Deployments out through ReplicaSets the way
//! Kubernetes' deployment controller does, so that `kubectl rollout
//! status|history|undo|restart|pause|resume`, `kubectl scale` and `kubectl wait
//! --for=condition=Available` work unmodified.
//!
//! Owns: the Deployment's ReplicaSets (named `<deployment>-<pod-template-hash>`,
//! controller ownerReference with blockOwnerDeletion; adopting orphans that match the
//! selector, releasing those that no longer do), their `spec.replicas`, their
//! revision/desired-replicas/max-replicas annotations, deleting old ones past
//! `revisionHistoryLimit`, and the Deployment's `/status` and revision annotation.
//! Does not own: pods and ReplicaSet status (the ReplicaSet controller), deleting
//! dependents of a deleted Deployment (the garbage collector).
//!
//! Each reconcile reads the Deployment fresh from the API, its ReplicaSets from a
//! watched cache (writes to them carry the cached resourceVersion, so a decision made
//! on a stale cache fails with a conflict and is retried), for Recreate its pods from
//! the API, decides with the pure functions of
//! [`rollout`] and [`status`], and writes back through the API. Triggers: the
//! Deployment, any ReplicaSet it controls or that it could adopt, and requeues while a
//! rollout is under way or its progress deadline is pending.

mod rollout;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use super::events::EventType;
use super::{Context, Error, Result};
use rollout::{Scale, HASH_LABEL, REVISION};

const CONTROLLER: &str = "deployment";

/// How often a settled Deployment is looked at anyway (orphans to adopt, missed events).
const RESYNC: Duration = Duration::from_secs(300);
/// How often a rollout under way is looked at, whatever the watches say.
const ROLLING_POLL: Duration = Duration::from_secs(10);
/// How often Recreate looks for the old pods to be gone.
const RECREATE_POLL: Duration = Duration::from_secs(2);

/// What every reconcile gets: the controllers' context and the ReplicaSet cache.
struct Shared {
    ctx: Arc<Context>,
    replicasets: Store<ReplicaSet>,
}

/// Runs the controller until its watches end.
pub async fn run(ctx: Arc<Context>) {
    let deployments: Api<Deployment> = Api::all(ctx.client.clone());
    let replicasets: Api<ReplicaSet> = Api::all(ctx.client.clone());
    let controller = crate::client::lenient::controller(deployments, watcher::Config::default());
    let store = controller.store();
    // One ReplicaSet watch feeds the cache reconciles read and the triggers.
    // The watch runs in its own task (see the ReplicaSet controller).
    let (cache, writer) = reflector::store();
    let (triggers, woken) = futures::channel::mpsc::unbounded();
    let feed = reflector::reflector(
        writer,
        crate::client::lenient::watcher(replicasets, watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(move |rs| {
        for deployment in rs.ok().iter().flat_map(|rs| deployments_for(&store, rs)) {
            let _ = triggers.unbounded_send(deployment);
        }
        futures::future::ready(())
    });
    let feed = tokio::spawn(feed);
    let shared = Arc::new(Shared {
        ctx,
        replicasets: cache,
    });
    controller
        .reconcile_on(woken)
        .run(
            |d, shared| super::spawned(reconcile(d, shared)),
            error_policy,
            shared,
        )
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(controller = CONTROLLER, %error, "reconcile stream");
            }
            futures::future::ready(())
        })
        .await;
    feed.abort();
}

/// Conflicts (a cache older than the object written) are retried at once; other
/// errors after the shared delay.
fn error_policy(_d: Arc<Deployment>, error: &Error, _shared: Arc<Shared>) -> Action {
    if let Error::Kube(kube::Error::Api(status)) = error {
        if status.code == 409 {
            return Action::requeue(Duration::from_millis(200));
        }
    }
    super::requeue_after_error(CONTROLLER, error)
}

/// The Deployments a ReplicaSet event concerns: its controller if that is a
/// Deployment; if it is an orphan, every Deployment in its namespace that selects it.
fn deployments_for(store: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    store
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|d| selector_of(d).is_some_and(|s| s.matches(&labels)))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The Deployment's selector, unless empty (which would select everything) or invalid.
fn selector_of(d: &Deployment) -> Option<Selector> {
    let selector = d.spec.as_ref()?.selector.clone();
    if selector == LabelSelector::default() {
        return None;
    }
    let selector = Selector::try_from(selector).ok()?;
    (!selector.selects_all()).then_some(selector)
}

async fn reconcile(cached: Arc<Deployment>, shared: Arc<Shared>) -> Result<Action> {
    let ctx = &shared.ctx;
    // Never decide on a cache that has not been filled yet.
    let _ = shared.replicasets.wait_until_ready().await;
    let namespace = cached.metadata.namespace.clone().unwrap_or_default();
    let name = cached.metadata.name.clone().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    // Fresh, not cached: decisions and resourceVersions must be current.
    let Some(d) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if d.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes its ReplicaSets.
        return Ok(Action::await_change());
    }
    let mut sync = Sync {
        ctx,
        cache: &shared.replicasets,
        deployments: api,
        replicasets: Api::namespaced(ctx.client.clone(), &namespace),
        d,
        rss: Vec::new(),
        waiting_for_old_pods: false,
        idle: false,
    };
    sync.run().await?;
    Ok(sync.next_action())
}

/// One reconcile of one Deployment: the latest Deployment and ReplicaSets as written.
struct Sync<'a> {
    ctx: &'a Context,
    /// Every ReplicaSet, as last seen by the watch.
    cache: &'a Store<ReplicaSet>,
    deployments: Api<Deployment>,
    replicasets: Api<ReplicaSet>,
    d: Deployment,
    /// The ReplicaSets this Deployment controls, kept current as they are written.
    rss: Vec<ReplicaSet>,
    waiting_for_old_pods: bool,
    /// Nothing to do until the Deployment changes (it selects everything).
    idle: bool,
}

impl Sync<'_> {
    /// syncDeployment.
    async fn run(&mut self) -> Result<()> {
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let selector = Selector::try_from(selector).map_err(|e| Error::Invalid(e.to_string()))?;
        if selector.selects_all() {
            return self.selecting_all().await;
        }
        self.claim_replica_sets(&selector).await?;
        self.check_paused_conditions().await?;
        if rollout::is_paused(&self.d) {
            return self.sync().await;
        }
        let (new_rs, old) = self.new_and_old(false).await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
        if rollout::is_scaling_event(&self.d, all.iter().copied()) {
            return self.sync().await;
        }
        if rollout::is_rolling_update(&self.d) {
            self.rollout_rolling().await
        } else {
            self.rollout_recreate(&selector).await
        }
    }

    /// An empty selector would take every pod in the namespace: refuse, as Kubernetes
    /// does, but record that the generation was seen.
    async fn selecting_all(&mut self) -> Result<()> {
        self.idle = true;
        self.event(
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        )
        .await;
        let mut status = status::current(&self.d);
        if status.observed_generation < self.d.metadata.generation {
            status.observed_generation = self.d.metadata.generation;
            self.write_status(status).await?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // ReplicaSets: claiming, finding, creating
    // -----------------------------------------------------------------------

    /// getReplicaSetsForDeployment: every ReplicaSet of the namespace; keeps those this
    /// Deployment controls and its selector matches, adopts matching orphans, releases
    /// its own that no longer match.
    async fn claim_replica_sets(&mut self, selector: &Selector) -> Result<()> {
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let namespace = self.d.metadata.namespace.clone();
        let candidates: Vec<ReplicaSet> = self
            .cache
            .state()
            .iter()
            .filter(|rs| rs.metadata.namespace == namespace)
            .filter(|rs| controller_of(&rs.metadata).is_none_or(|o| o.uid == uid))
            .map(|rs| rs.as_ref().clone())
            .collect();
        let mut claimed = Vec::new();
        for rs in candidates {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = selector.matches(&labels);
            match controller_of(&rs.metadata) {
                Some(owner) if owner.uid != uid => {}
                Some(_) if matches => claimed.push(rs),
                Some(_) => self.release(&rs).await?,
                None => {
                    if matches && rs.metadata.deletion_timestamp.is_none() {
                        if let Some(adopted) = self.adopt(&rs).await? {
                            claimed.push(adopted);
                        }
                    }
                }
            }
        }
        self.rss = claimed;
        Ok(())
    }

    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.d.metadata.name.clone().unwrap_or_default(),
            uid: self.d.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    async fn adopt(&self, rs: &ReplicaSet) -> Result<Option<ReplicaSet>> {
        let patch = json!({"metadata": {
            "ownerReferences": [self.owner_reference()],
            "uid": rs.metadata.uid,
        }});
        let name = rollout::name(rs);
        match self
            .replicasets
            .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(adopted) => Ok(Some(adopted)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self, rs: &ReplicaSet) -> Result<()> {
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": self.d.metadata.uid}],
            "uid": rs.metadata.uid,
        }});
        match self
            .replicasets
            .patch(
                rollout::name(rs),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// getAllReplicaSetsAndSyncRevision: the new ReplicaSet (created if asked and
    /// missing) and all old ones, with the new one's revision brought to
    /// max(old) + 1 and the Deployment's revision annotation following it.
    async fn new_and_old(&mut self, create: bool) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let existing = rollout::find_new(&self.d, &self.rss).cloned();
        let old: Vec<ReplicaSet> = rollout::find_old(&self.d, &self.rss)
            .into_iter()
            .cloned()
            .collect();
        let new_revision = rollout::max_revision(&old) + 1;
        if let Some(rs) = existing {
            let rs = self.sync_existing_new(rs, new_revision).await?;
            return Ok((Some(rs), old));
        }
        if !create {
            return Ok((None, old));
        }
        let rs = self.create_new(&old, new_revision).await?;
        Ok((Some(rs), old))
    }

    async fn sync_existing_new(&mut self, rs: ReplicaSet, new_revision: i64) -> Result<ReplicaSet> {
        let mut updated = rs.clone();
        let annotations_changed =
            rollout::set_new_rs_annotations(&self.d, &mut updated, new_revision, true);
        let min_ready = rollout::min_ready_seconds(&self.d);
        let min_ready_changed = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
            != min_ready;
        let rs = if annotations_changed || min_ready_changed {
            let patch = json!({
                "metadata": {"annotations": updated.metadata.annotations},
                // Zero is left out, as Kubernetes stores it.
                "spec": {"minReadySeconds": (min_ready != 0).then_some(min_ready)},
            });
            self.patch_rs(rollout::name(&rs), &patch).await?
        } else {
            rs
        };
        let revision = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .cloned()
            .unwrap_or_default();
        self.set_deployment_revision(&revision).await?;
        let mut status = status::current(&self.d);
        if rollout::progress_deadline(&self.d).is_some()
            && status::get_condition(&status, status::PROGRESSING).is_none()
        {
            let message = format!("Found new replica set \"{}\"", rollout::name(&rs));
            let c = status::new_condition(
                status::PROGRESSING,
                "True",
                status::FOUND_NEW_RS,
                message,
                status::now(),
            );
            status::set_condition(&mut status, c);
            self.write_status(status).await?;
        }
        Ok(rs)
    }

    async fn create_new(&mut self, old: &[ReplicaSet], new_revision: i64) -> Result<ReplicaSet> {
        let d = &self.d;
        let spec = d.spec.clone().unwrap_or_default();
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = rollout::compute_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let template_meta = template.metadata.get_or_insert_with(Default::default);
        let labels = template_meta.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(HASH_LABEL.into(), hash.clone());
        let labels = labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or(""));
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels: Some(labels),
                owner_references: Some(vec![self.owner_reference()]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(rollout::min_ready_seconds(d)).filter(|&m| m != 0),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let replicas = rollout::new_rs_new_replicas(d, old.iter().chain(std::iter::once(&rs)), &rs);
        rs.spec.as_mut().expect("set above").replicas = Some(replicas);
        rollout::set_new_rs_annotations(d, &mut rs, new_revision, false);

        let (created, already_existed) =
            match self.replicasets.create(&PostParams::default(), &rs).await {
                Ok(created) => (created, false),
                Err(e) if is_already_exists(&e) => {
                    let found = self.replicasets.get(&name).await?;
                    let ours = controller_of(&found.metadata)
                        .is_some_and(|o| Some(&o.uid) == d.metadata.uid.as_ref());
                    let same = rollout::equal_ignore_hash(
                        &spec.template,
                        &found
                            .spec
                            .as_ref()
                            .and_then(|s| s.template.clone())
                            .unwrap_or_default(),
                    );
                    if !(ours && same) {
                        // A hash collision: another template already has this name. Bump
                        // collisionCount so the next attempt hashes differently.
                        let mut status = status::current(d);
                        status.collision_count = Some(collision_count.unwrap_or(0) + 1);
                        self.write_status(status).await?;
                        return Err(e.into());
                    }
                    (found, true)
                }
                // Nothing can be created in a namespace being deleted; nothing to report.
                Err(e) if is_namespace_terminating(&e) => return Err(e.into()),
                Err(e) => {
                    let message = format!("Failed to create new replica set \"{name}\": {e}");
                    if rollout::progress_deadline(d).is_some() {
                        let mut status = status::current(d);
                        let c = status::new_condition(
                            status::PROGRESSING,
                            "False",
                            status::FAILED_RS_CREATE,
                            message.clone(),
                            status::now(),
                        );
                        status::set_condition(&mut status, c);
                        let _ = self.write_status(status).await;
                    }
                    self.event(EventType::Warning, status::FAILED_RS_CREATE, &message)
                        .await;
                    return Err(e.into());
                }
            };
        if !already_existed && replicas > 0 {
            let message = rollout::scaling_message(&name, 0, replicas);
            self.event(EventType::Normal, "ScalingReplicaSet", &message)
                .await;
        }
        self.rss.push(created.clone());
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if !already_existed && rollout::progress_deadline(&self.d).is_some() {
            let mut status = status::current(&self.d);
            let message = format!("Created new replica set \"{name}\"");
            let c = status::new_condition(
                status::PROGRESSING,
                "True",
                status::NEW_REPLICA_SET,
                message,
                status::now(),
            );
            status::set_condition(&mut status, c);
            self.write_status(status).await?;
        }
        Ok(created)
    }

    // -----------------------------------------------------------------------
    // Strategies
    // -----------------------------------------------------------------------

    /// sync: a scaling event or a paused Deployment. Sizes proportionally, cleans up
    /// history when paused, and updates the status without progress estimation.
    async fn sync(&mut self) -> Result<()> {
        let (new_rs, old) = self.new_and_old(false).await?;
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let steps = rollout::proportional_scale(&self.d, new_rs.as_ref(), &old_refs);
        self.apply(&steps, true).await?;
        let (new_rs, old) = self.refresh(new_rs, old);
        if rollout::is_paused(&self.d) {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
        let new_status = status::calculate(&all, new_rs.as_ref(), &self.d, status::now());
        self.write_status_if_changed(new_status).await
    }

    /// rolloutRolling: create the new ReplicaSet, scale it up within the surge, or
    /// scale old ones down within the unavailability budget; one kind of move per pass.
    async fn rollout_rolling(&mut self) -> Result<()> {
        let (new_rs, old) = self.new_and_old(true).await?;
        let new_rs = new_rs.expect("created when missing");
        let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new_rs)).collect();
        if let Some(step) = rollout::reconcile_new_rs(&self.d, &all, &new_rs) {
            if self.apply(&[step], false).await? {
                return self.sync_rollout_status(Some(new_rs), old).await;
            }
        }
        let steps = rollout::reconcile_old_rss(&self.d, &all, &new_rs);
        if self.apply(&steps, false).await? {
            return self.sync_rollout_status(Some(new_rs), old).await;
        }
        if status::complete(&self.d, &status::current(&self.d)) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(new_rs), old).await
    }

    /// rolloutRecreate: all old ReplicaSets to zero, wait until their pods are gone,
    /// then the new ReplicaSet straight to `replicas`.
    async fn rollout_recreate(&mut self, selector: &Selector) -> Result<()> {
        let (new_rs, old) = self.new_and_old(false).await?;
        let steps: Vec<Scale> = rollout::active(&old)
            .into_iter()
            .map(|rs| Scale {
                name: rollout::name(rs).to_string(),
                to: 0,
            })
            .collect();
        if self.apply(&steps, false).await? {
            self.waiting_for_old_pods = true;
            return self.sync_rollout_status(new_rs, old).await;
        }
        let pods = self.pods(selector).await?;
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        if rollout::old_pods_running(new_rs.as_ref(), &old_refs, &pods) {
            self.waiting_for_old_pods = true;
            return self.sync_rollout_status(new_rs, old).await;
        }
        let (new_rs, old) = match new_rs {
            Some(rs) => (rs, old),
            None => {
                let (rs, old) = self.new_and_old(true).await?;
                (rs.expect("created when missing"), old)
            }
        };
        let step = Scale {
            name: rollout::name(&new_rs).to_string(),
            to: rollout::replicas(&self.d),
        };
        self.apply(&[step], false).await?;
        if status::complete(&self.d, &status::current(&self.d)) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(new_rs), old).await
    }

    /// The Deployment's pods (its selector; Recreate checks their owners).
    async fn pods(&self, selector: &Selector) -> Result<Vec<Pod>> {
        let namespace = self.d.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let params = ListParams::default().labels_from(selector);
        Ok(crate::client::lenient::list(&api, &params).await?.items)
    }

    // -----------------------------------------------------------------------
    // Writes
    // -----------------------------------------------------------------------

    /// Applies scale steps in order. `always` also writes steps that only bring the
    /// replica annotations up to date (the proportional path); otherwise an unchanged
    /// size is skipped. True if any size changed.
    async fn apply(&mut self, steps: &[Scale], always: bool) -> Result<bool> {
        let mut scaled = false;
        for step in steps {
            let Some(rs) = self
                .rss
                .iter()
                .find(|rs| rollout::name(rs) == step.name)
                .cloned()
            else {
                continue;
            };
            let from = rollout::rs_replicas(&rs);
            if from == step.to && !always {
                continue;
            }
            let annotations_stale = rollout::replicas_annotations_need_update(&rs, &self.d);
            if from == step.to && !annotations_stale {
                continue;
            }
            let patch = json!({
                "metadata": {"annotations": {
                    rollout::DESIRED_REPLICAS: rollout::replicas(&self.d).to_string(),
                    rollout::MAX_REPLICAS: (rollout::replicas(&self.d) + rollout::max_surge(&self.d)).to_string(),
                }},
                "spec": {"replicas": step.to},
            });
            self.patch_rs(&step.name, &patch).await?;
            if from != step.to {
                scaled = true;
                let message = rollout::scaling_message(&step.name, from, step.to);
                self.event(EventType::Normal, "ScalingReplicaSet", &message)
                    .await;
            }
        }
        Ok(scaled)
    }

    /// Merge-patches a ReplicaSet, on the condition that it is still the version this
    /// reconcile decided on (the cache may lag), and keeps `rss` current.
    async fn patch_rs(&mut self, name: &str, patch: &serde_json::Value) -> Result<ReplicaSet> {
        let mut patch = patch.clone();
        let seen = self
            .rss
            .iter()
            .find(|rs| rollout::name(rs) == name)
            .and_then(|rs| rs.metadata.resource_version.clone());
        if let Some(version) = seen {
            patch["metadata"]["resourceVersion"] = json!(version);
        }
        let patch = &patch;
        let updated = self
            .replicasets
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        if let Some(slot) = self.rss.iter_mut().find(|rs| rollout::name(rs) == name) {
            *slot = updated.clone();
        }
        Ok(updated)
    }

    /// The new and old ReplicaSets as last written.
    fn refresh(
        &self,
        new_rs: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let latest = |rs: ReplicaSet| {
            self.rss
                .iter()
                .find(|r| r.metadata.uid == rs.metadata.uid)
                .cloned()
                .unwrap_or(rs)
        };
        (new_rs.map(latest), old.into_iter().map(latest).collect())
    }

    /// cleanupDeployment: deletes old ReplicaSets past revisionHistoryLimit.
    async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<()> {
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        for name in rollout::history_to_delete(&self.d, &old_refs) {
            match self
                .replicasets
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => self.rss.retain(|rs| rollout::name(rs) != name),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// syncRolloutStatus.
    async fn sync_rollout_status(
        &mut self,
        new_rs: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> Result<()> {
        let (new_rs, old) = self.refresh(new_rs, old);
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
        let new_status = status::rollout(&all, new_rs.as_ref(), &self.d, status::now());
        self.write_status_if_changed(new_status).await
    }

    /// checkPausedConditions.
    async fn check_paused_conditions(&mut self) -> Result<()> {
        if let Some(status) = status::paused_update(&self.d, status::now()) {
            self.write_status(status).await?;
        }
        Ok(())
    }

    async fn write_status_if_changed(&mut self, new_status: DeploymentStatus) -> Result<()> {
        if new_status == status::current(&self.d) {
            return Ok(());
        }
        self.write_status(new_status).await
    }

    /// Replaces the Deployment's status (resourceVersion-checked) and keeps `d` current.
    async fn write_status(&mut self, new_status: DeploymentStatus) -> Result<()> {
        let mut d = self.d.clone();
        d.status = Some(new_status);
        let body = serde_json::to_vec(&d).map_err(|e| Error::Invalid(e.to_string()))?;
        let name = d.metadata.name.clone().unwrap_or_default();
        self.d = self
            .deployments
            .replace_status(&name, &PostParams::default(), body)
            .await?;
        Ok(())
    }

    /// SetDeploymentRevision, written as a metadata patch (status writes keep metadata).
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<()> {
        let Some(revision) = rollout::deployment_revision_update(&self.d, revision) else {
            return Ok(());
        };
        let patch = json!({"metadata": {
            "annotations": {REVISION: revision},
            "resourceVersion": self.d.metadata.resource_version,
        }});
        let name = self.d.metadata.name.clone().unwrap_or_default();
        self.d = self
            .deployments
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn event(&self, kind: EventType, reason: &str, message: &str) {
        let regarding = ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: self.d.metadata.name.clone(),
            namespace: self.d.metadata.namespace.clone(),
            uid: self.d.metadata.uid.clone(),
            resource_version: self.d.metadata.resource_version.clone(),
            ..Default::default()
        };
        self.ctx
            .recorder
            .publish(&regarding, kind, reason, message)
            .await;
    }

    /// When to look again: soon while Recreate waits for old pods or a rollout is
    /// under way (and no later than the progress deadline check); otherwise a slow
    /// resync.
    fn next_action(&self) -> Action {
        let current = status::current(&self.d);
        if self.idle {
            return Action::await_change();
        }
        if self.waiting_for_old_pods {
            return Action::requeue(RECREATE_POLL);
        }
        if rollout::is_paused(&self.d) || status::complete(&self.d, &current) {
            return Action::requeue(RESYNC);
        }
        let now = status::now();
        if status::timed_out(&self.d, &current, now) {
            // Failed: ReplicaSet changes (pods becoming available) still wake it.
            return Action::requeue(RESYNC);
        }
        let deadline = status::progress_check_after(&self.d, &current, now);
        Action::requeue(deadline.map_or(ROLLING_POLL, |after| after.min(ROLLING_POLL)))
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}
