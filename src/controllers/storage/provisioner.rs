//! The local-path provisioner, as k3s's `rancher.io/local-path`: for a claim of a
//! class with that provisioner, once the scheduler has chosen a node
//! (`volume.kubernetes.io/selected-node`), it creates the PersistentVolume
//! `pvc-<claim uid>`: a `hostPath` (`DirectoryOrCreate`) directory
//! `<local storage path>/pvc-<uid>_<namespace>_<claim>` pinned to that node by node
//! affinity, with the claim's size, access modes and volume mode, the class's
//! reclaim policy, and a `claimRef` so the binder binds exactly this pair. The
//! directory itself is made by the node's agent when it first mounts the volume
//! (the node may be another machine). When a `Delete` volume is Released, the
//! provisioner deletes it; its `skiff.dev/local-path-cleanup` finalizer keeps it
//! until the node's agent has removed the directory (or the node no longer exists).
//! `Retain` volumes and their directories stay.
//!
//! May call: the API (claims, volumes, classes, nodes).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::binder::phase_of_volume;
use super::*;
use crate::component::events::EventType;
use crate::controllers::{cache, Context};

const TICK: Duration = Duration::from_millis(500);

/// The directory of a claim's volume under `base`, named as k3s names it.
pub fn volume_dir(base: &Path, claim: &PersistentVolumeClaim) -> String {
    base.join(format!(
        "pvc-{}_{}_{}",
        claim.uid().unwrap_or_default(),
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    ))
    .to_string_lossy()
    .into_owned()
}

/// Whether this provisioner should provision the claim now: a claim of a
/// local-path class, not bound, not being deleted, handed to this provisioner by
/// the binder (`volume.kubernetes.io/storage-provisioner`, as external
/// provisioners wait for it), with a node chosen. `Err` when
/// it can never be (a local-path class that does not wait for the first consumer
/// gets no node).
pub fn wants_volume(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
) -> Result<Option<String>, String> {
    let Some(class) = class.filter(|c| c.provisioner == LOCAL_PATH_PROVISIONER) else {
        return Ok(None);
    };
    let unbound = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
        .is_empty();
    if !unbound || claim.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let annotations = claim.annotations();
    let handed_over = [STORAGE_PROVISIONER, BETA_STORAGE_PROVISIONER]
        .iter()
        .any(|key| annotations.get(*key).map(String::as_str) == Some(LOCAL_PATH_PROVISIONER));
    if !handed_over {
        return Ok(None);
    }
    match annotations.get(SELECTED_NODE) {
        Some(node) => Ok(Some(node.clone())),
        None if !is_wait_for_first_consumer(Some(class)) => Err(
            "configuration error, no node was specified: the local-path class needs volumeBindingMode WaitForFirstConsumer".into(),
        ),
        None => Ok(None),
    }
}

/// The volume for a claim on `node`.
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    base: &Path,
) -> serde_json::Value {
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".into());
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{}", claim.uid().unwrap_or_default()),
            "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER,
                            "local.path.provisioner/selected-node": node},
            "finalizers": [LOCAL_PATH_CLEANUP],
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.name_any(),
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": volume_dir(base, claim), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                         "namespace": claim.namespace(), "name": claim.name_any(),
                         "uid": claim.uid(), "resourceVersion": claim.resource_version()},
        },
    })
}

/// Whether a volume is one of ours, released, and to be deleted.
pub fn should_delete(volume: &PersistentVolume) -> bool {
    volume.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(LOCAL_PATH_PROVISIONER)
        && volume.metadata.deletion_timestamp.is_none()
        && phase_of_volume(volume) == "Released"
        && volume
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete")
}

pub async fn run(ctx: Arc<Context>) {
    let claims = cache(Api::<PersistentVolumeClaim>::all(ctx.client.clone()));
    let volumes = cache(Api::<PersistentVolume>::all(ctx.client.clone()));
    let classes = cache(Api::<StorageClass>::all(ctx.client.clone()));
    let nodes = cache(Api::<Node>::all(ctx.client.clone()));
    let _ = claims.wait_until_ready().await;
    let _ = volumes.wait_until_ready().await;
    let _ = classes.wait_until_ready().await;
    let _ = nodes.wait_until_ready().await;
    let base = ctx.settings.local_storage_path.clone();
    let mut reported: HashSet<(String, &'static str)> = HashSet::new();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let class_map: HashMap<String, Arc<StorageClass>> = classes
            .state()
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect();
        let existing: HashSet<String> = volumes.state().iter().map(|v| v.name_any()).collect();
        for claim in claims.state() {
            let class = class_map.get(&claim_class(&claim)).map(Arc::as_ref);
            match wants_volume(&claim, class) {
                Ok(Some(node)) => {
                    let name = format!("pvc-{}", claim.uid().unwrap_or_default());
                    if existing.contains(&name) {
                        continue;
                    }
                    let Some(class) = class else { continue };
                    let volume = volume_for(&claim, class, &node, &base);
                    if let Err(error) = provision(&ctx, &claim, volume, &name, &mut reported).await
                    {
                        tracing::debug!(claim = %claim_key(&claim), %error, "provisioning failed; retrying");
                    }
                }
                Ok(None) => {}
                Err(message) => {
                    if reported.insert((claim.uid().unwrap_or_default(), "ProvisioningFailed")) {
                        ctx.recorder
                            .publish(
                                &claim.object_ref(&()),
                                EventType::Warning,
                                "ProvisioningFailed",
                                &message,
                            )
                            .await;
                    }
                }
            }
        }
        let node_names: HashSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
        for volume in volumes.state() {
            if let Err(error) = reclaim(&ctx, &volume, &node_names).await {
                tracing::debug!(volume = %volume.name_any(), %error, "reclaiming a volume failed; retrying");
            }
        }
        if reported.len() > 10_000 {
            reported.clear();
        }
    }
}

async fn provision(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    volume: serde_json::Value,
    name: &str,
    reported: &mut HashSet<(String, &'static str)>,
) -> kube::Result<()> {
    let uid = claim.uid().unwrap_or_default();
    if reported.insert((uid.clone(), "Provisioning")) {
        ctx.recorder
            .publish(
                &claim.object_ref(&()),
                EventType::Normal,
                "Provisioning",
                &format!(
                    "External provisioner is provisioning volume for claim \"{}\"",
                    claim_key(claim)
                ),
            )
            .await;
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let volume: PersistentVolume =
        serde_json::from_value(volume).map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &volume).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
        Err(e) => return Err(e),
    }
    ctx.recorder
        .publish(
            &claim.object_ref(&()),
            EventType::Normal,
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {name}"),
        )
        .await;
    Ok(())
}

/// Deletes a released `Delete` volume of ours; lets a deleted one go when its node
/// is gone (nobody is left to remove the directory).
async fn reclaim(
    ctx: &Context,
    volume: &PersistentVolume,
    nodes: &HashSet<String>,
) -> kube::Result<()> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if should_delete(volume) {
        let params = DeleteParams {
            preconditions: volume.uid().map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        return match api.delete(&volume.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        };
    }
    let cleaning = volume.metadata.deletion_timestamp.is_some()
        && volume.finalizers().iter().any(|f| f == LOCAL_PATH_CLEANUP);
    let orphaned = pinned_node(volume).is_none_or(|n| !nodes.contains(&n));
    if cleaning && orphaned {
        // Confirm with the API: the node cache may lag behind a new node.
        let node_api: Api<Node> = Api::all(ctx.client.clone());
        if let Some(node) = pinned_node(volume) {
            if node_api.get_opt(&node).await?.is_some() {
                return Ok(());
            }
        }
        tracing::warn!(volume = %volume.name_any(), "the node of a local-path volume is gone; its directory is left behind");
        remove_finalizer(&api, volume, LOCAL_PATH_CLEANUP).await?;
    }
    Ok(())
}

/// Removes one finalizer (a merge patch of the list, guarded by resourceVersion).
pub async fn remove_finalizer<K>(api: &Api<K>, object: &K, finalizer: &str) -> kube::Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let rest: Vec<&String> = object
        .meta()
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .collect();
    let patch = json!({"metadata": {"finalizers": rest,
                                    "resourceVersion": object.meta().resource_version}});
    let name = object.meta().name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_path(mode: &str) -> StorageClass {
        serde_json::from_value(json!({"metadata": {"name": "local-path"},
            "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": mode}))
        .unwrap()
    }

    fn claim(annotations: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "web", "uid": "1234",
                "resourceVersion": "7", "annotations": annotations},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "2Gi"}}}}),
        )
        .unwrap()
    }

    #[test]
    fn claims_get_a_volume_once_a_node_is_chosen() {
        let class = local_path("WaitForFirstConsumer");
        let handed = json!({STORAGE_PROVISIONER: LOCAL_PATH_PROVISIONER});
        assert_eq!(wants_volume(&claim(handed.clone()), Some(&class)), Ok(None));
        // A node alone is not enough: the binder hands the claim over first.
        let not_handed = claim(json!({SELECTED_NODE: "n1"}));
        assert_eq!(wants_volume(&not_handed, Some(&class)), Ok(None));
        let chosen =
            claim(json!({SELECTED_NODE: "n1", STORAGE_PROVISIONER: LOCAL_PATH_PROVISIONER}));
        assert_eq!(wants_volume(&chosen, Some(&class)), Ok(Some("n1".into())));
        let beta =
            claim(json!({SELECTED_NODE: "n1", BETA_STORAGE_PROVISIONER: LOCAL_PATH_PROVISIONER}));
        assert_eq!(wants_volume(&beta, Some(&class)), Ok(Some("n1".into())));
        assert!(wants_volume(&claim(handed), Some(&local_path("Immediate"))).is_err());
        let other: StorageClass = serde_json::from_value(
            json!({"metadata": {"name": "x"}, "provisioner": "example.com/nfs"}),
        )
        .unwrap();
        assert_eq!(wants_volume(&chosen, Some(&other)), Ok(None));
    }

    #[test]
    fn the_volume_is_pinned_to_the_node_and_sized_like_the_claim() {
        let chosen = claim(json!({SELECTED_NODE: "n1"}));
        let v = volume_for(
            &chosen,
            &local_path("WaitForFirstConsumer"),
            "n1",
            Path::new("/var/lib/skiff/storage"),
        );
        assert_eq!(v["metadata"]["name"], "pvc-1234");
        assert_eq!(
            v["spec"]["hostPath"]["path"],
            "/var/lib/skiff/storage/pvc-1234_web_data"
        );
        assert_eq!(v["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(v["spec"]["claimRef"]["uid"], "1234");
        let pv: PersistentVolume = serde_json::from_value(v).unwrap();
        assert_eq!(pinned_node(&pv).as_deref(), Some("n1"));
        assert!(!should_delete(&pv));
        let mut released = pv.clone();
        released.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some("Released".into()),
            ..Default::default()
        });
        assert!(should_delete(&released));
    }
}
