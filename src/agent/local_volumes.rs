//! Clean-up of this node's local-path volumes: when the server's local-path
//! provisioner deletes a released `Delete` volume pinned to this node, the volume
//! waits on the `skiff.dev/local-path-cleanup` finalizer; this loop removes the
//! volume's directory here, then the finalizer (ADR 0019). The directory is made by
//! the volume code when the volume is first mounted (`containers::volumes`).
//!
//! Only directories that look like the provisioner's own are removed: an absolute
//! path without `..` whose last component starts with `<volume name>_`.
//!
//! May call: the API (persistentvolumes: watch, patch) with the node's credentials.

use std::path::{Component, Path};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

pub const LOCAL_PATH_CLEANUP: &str = "skiff.dev/local-path-cleanup";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
const RETRIES: usize = 5;
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// The directory to remove for `volume`, if it is ours to clean on `node`.
pub fn directory_to_remove(volume: &PersistentVolume, node: &str) -> Option<String> {
    if volume.metadata.deletion_timestamp.is_none()
        || !volume.finalizers().iter().any(|f| f == LOCAL_PATH_CLEANUP)
        || volume.annotations().get(PROVISIONED_BY).map(String::as_str)
            != Some(LOCAL_PATH_PROVISIONER)
    {
        return None;
    }
    let spec = volume.spec.as_ref()?;
    let terms = &spec
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let pinned = terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .any(|r| {
            r.key == "kubernetes.io/hostname"
                && r.operator == "In"
                && r.values.as_deref() == Some(&[node.to_string()][..])
        });
    if !pinned {
        return None;
    }
    let path = spec.host_path.as_ref().map(|h| h.path.clone())?;
    let p = Path::new(&path);
    let safe = p.is_absolute()
        && !p.components().any(|c| matches!(c, Component::ParentDir))
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{}_", volume.name_any())));
    safe.then_some(path)
}

/// Watches the volumes and cleans up those of this node, until the process stops.
/// A failed clean-up is retried a few times; the next relist tries again after that.
pub async fn clean_forever(client: kube::Client, node: String) {
    let api: Api<PersistentVolume> = Api::all(client);
    let mut events = std::pin::pin!(crate::client::lenient::watcher(
        api.clone(),
        watcher::Config::default()
    )
    .default_backoff());
    while let Some(event) = events.next().await {
        let volume = match event {
            Ok(watcher::Event::Apply(v) | watcher::Event::InitApply(v)) => v,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "watching persistent volumes failed; retrying");
                continue;
            }
        };
        let Some(dir) = directory_to_remove(&volume, &node) else {
            continue;
        };
        for _ in 0..RETRIES {
            match clean(&api, &volume, &dir).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(volume = %volume.name_any(), %error, "cleaning up a local volume failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CleanError {
    #[error("removing {path}: {source}")]
    Remove {
        path: String,
        source: std::io::Error,
    },
    #[error("removing the finalizer: {0}")]
    Api(#[from] kube::Error),
}

async fn clean(
    api: &Api<PersistentVolume>,
    volume: &PersistentVolume,
    dir: &str,
) -> Result<(), CleanError> {
    let owned = dir.to_string();
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&owned) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    removed.map_err(|source| CleanError::Remove {
        path: dir.to_string(),
        source,
    })?;
    tracing::info!(volume = %volume.name_any(), dir, "removed a local volume's directory");
    let rest: Vec<&String> = volume
        .finalizers()
        .iter()
        .filter(|f| *f != LOCAL_PATH_CLEANUP)
        .collect();
    let patch = json!({"metadata": {"finalizers": rest,
                                    "resourceVersion": volume.resource_version()}});
    match api
        .patch(
            &volume.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other.map(drop).map_err(CleanError::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str, path: &str, node: &str, deleting: bool) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name, "finalizers": [LOCAL_PATH_CLEANUP],
                "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
            "spec": {"hostPath": {"path": path},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_deleted_volumes_of_this_node_with_their_own_directory_are_cleaned() {
        let dir = "/var/lib/skiff/storage/pvc-1_default_data";
        assert_eq!(
            directory_to_remove(&volume("pvc-1", dir, "n1", true), "n1").as_deref(),
            Some(dir)
        );
        assert_eq!(
            directory_to_remove(&volume("pvc-1", dir, "n1", false), "n1"),
            None
        );
        assert_eq!(
            directory_to_remove(&volume("pvc-1", dir, "n2", true), "n1"),
            None
        );
        assert_eq!(
            directory_to_remove(&volume("pvc-1", "/etc", "n1", true), "n1"),
            None
        );
        assert_eq!(
            directory_to_remove(&volume("pvc-1", "/x/../pvc-1_a", "n1", true), "n1"),
            None
        );
        assert_eq!(
            directory_to_remove(&volume("pvc-2", dir, "n1", true), "n1"),
            None
        );
    }
}
