//! Persistent storage: the PersistentVolume controller (binding claims to volumes,
//! phases, reclaim), the local-path provisioner (k3s's default `local-path` class:
//! a directory per claim on the node that runs its first consumer) and the
//! protection controller (the `kubernetes.io/pvc-protection` and
//! `kubernetes.io/pv-protection` finalizers). See `docs/adr/0019-local-path-storage.md`.
//!
//! Each is a level-triggered loop over watch caches that compares what is with what
//! should be and writes the difference through the API; the decisions are pure
//! functions (`binder::decide_claim`, `binder::decide_volume`, `binder::find_match`,
//! `provisioner::volume_for`, `protection::claim_in_use`) with unit tests.
//! Kept apart from the workload controllers: StatefulSets create claims and meet
//! these controllers only through the API.
//!
//! May call: the API (claims, volumes, classes, pods, nodes) through the context's client.

pub mod binder;
pub mod protection;
pub mod provisioner;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;

/// Set on a claim whose binding the controller completed.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on claims and volumes the controller bound (rather than a user pre-binding).
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner a volume came from.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The provisioner asked to provision a claim (and its older beta form).
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The node the scheduler chose for a `WaitForFirstConsumer` claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner of the built-in `local-path` class, named as k3s names it.
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
/// On local-path volumes: the node's agent removes the directory, then this finalizer.
pub const LOCAL_PATH_CLEANUP: &str = "skiff.dev/local-path-cleanup";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The storage size a claim requests, in bytes.
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> Option<f64> {
    let q = claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    crate::model::quantity::parse_quantity(&q.0).ok()
}

/// A volume's capacity, in bytes.
pub fn capacity_bytes(volume: &PersistentVolume) -> Option<f64> {
    let q = volume.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    crate::model::quantity::parse_quantity(&q.0).ok()
}

/// A claim's class name ("" for none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| {
            claim
                .annotations()
                .get("volume.beta.kubernetes.io/storage-class")
                .cloned()
        })
        .unwrap_or_default()
}

pub fn volume_class(volume: &PersistentVolume) -> String {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

pub fn is_wait_for_first_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// `namespace/name`.
pub fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    )
}

/// Whether a volume's node affinity admits a node (name and labels); a volume
/// without affinity admits every node.
pub fn affinity_admits(
    affinity: Option<&VolumeNodeAffinity>,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(terms) = affinity
        .and_then(|a| a.required.as_ref())
        .map(|r| &r.node_selector_terms)
    else {
        return true;
    };
    terms.iter().any(|term| {
        let exprs = term.match_expressions.iter().flatten();
        let fields = term.match_fields.iter().flatten();
        let has_any = term
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
            || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
        has_any
            && exprs
                .into_iter()
                .all(|r| requirement_holds(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .into_iter()
                .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(node)))
    })
}

fn requirement_holds(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|b| number(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// The one node a volume's affinity names by hostname (`kubernetes.io/hostname In
/// [node]` or `metadata.name In [node]`), as local volumes carry it.
pub fn pinned_node(volume: &PersistentVolume) -> Option<String> {
    let terms = &volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let [term] = terms.as_slice() else {
        return None;
    };
    let exprs = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    exprs
        .chain(fields)
        .find(|r| {
            (r.key == HOSTNAME_LABEL || r.key == "metadata.name")
                && r.operator == "In"
                && r.values.as_ref().is_some_and(|v| v.len() == 1)
        })
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_affinity_matches_labels_and_names() {
        let affinity: VolumeNodeAffinity = serde_json::from_value(json!({"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}]}}))
        .unwrap();
        let labels = |host: &str| BTreeMap::from([(HOSTNAME_LABEL.to_string(), host.to_string())]);
        assert!(affinity_admits(Some(&affinity), "n1", &labels("n1")));
        assert!(!affinity_admits(Some(&affinity), "n2", &labels("n2")));
        assert!(affinity_admits(Some(&affinity), "n3", &labels("other")));
        assert!(affinity_admits(None, "n2", &labels("n2")));
        let pv: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "v"},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}))
        .unwrap();
        assert_eq!(pinned_node(&pv).as_deref(), Some("n1"));
    }
}
