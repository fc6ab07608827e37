//! The volume side of scheduling, as upstream's VolumeBinding plugin in the small:
//! a pod's PersistentVolumeClaims must exist and not be being deleted; a claim bound
//! to a volume with node affinity (a local volume) restricts the pod to the nodes
//! the affinity admits; an unbound claim of a `WaitForFirstConsumer` class is
//! annotated `volume.kubernetes.io/selected-node` with the chosen node before the
//! pod is bound (the provisioner then makes its volume there), or, once annotated,
//! keeps the pod on that node; an unbound claim of an `Immediate` class keeps the
//! pod waiting until the binder has bound it.
//!
//! Owns: the scheduler's view of claims, volumes and classes. May call: `model`
//! (node selector terms); pure.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::model::{selector_term, NodeInfo, SelectorTerm};

pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimInfo {
    /// `namespace/name`.
    pub key: String,
    pub volume_name: String,
    pub class: String,
    pub selected_node: Option<String>,
    pub deleting: bool,
}

impl ClaimInfo {
    pub fn from_claim(claim: &PersistentVolumeClaim) -> ClaimInfo {
        let meta = &claim.metadata;
        let spec = claim.spec.as_ref();
        ClaimInfo {
            key: format!(
                "{}/{}",
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default()
            ),
            volume_name: spec.and_then(|s| s.volume_name.clone()).unwrap_or_default(),
            class: spec
                .and_then(|s| s.storage_class_name.clone())
                .unwrap_or_default(),
            selected_node: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(SELECTED_NODE).cloned()),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    /// Required node affinity terms (ORed); `None` admits every node.
    pub terms: Option<Vec<SelectorTerm>>,
}

impl VolumeInfo {
    pub fn from_volume(volume: &PersistentVolume) -> VolumeInfo {
        VolumeInfo {
            name: volume.metadata.name.clone().unwrap_or_default(),
            terms: volume
                .spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.as_ref())
                .map(|r| r.node_selector_terms.iter().map(selector_term).collect()),
        }
    }
}

/// (class name, waits for the first consumer)
pub fn class_info(class: &StorageClass) -> (String, bool) {
    (
        class.metadata.name.clone().unwrap_or_default(),
        class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"),
    )
}

/// The claims a pod uses: `persistentVolumeClaim` volumes and the claims its
/// `ephemeral` volumes make (`<pod>-<volume>`).
pub fn pod_claims(pod: &Pod) -> Vec<String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral.as_ref().map(|_| format!("{name}-{}", v.name))
            }
        })
        .collect()
}

/// Where a pod's volumes let it go.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every set of terms must admit the node.
    pub required: Vec<Vec<SelectorTerm>>,
    /// The node must be this one.
    pub node: Option<String>,
    /// Claims (names) to annotate with the chosen node before binding.
    pub select: Vec<String>,
}

impl Plan {
    pub fn admits(&self, node: &NodeInfo) -> bool {
        self.node.as_ref().is_none_or(|n| *n == node.name)
            && self
                .required
                .iter()
                .all(|terms| terms.iter().any(|t| t.matches(&node.name, &node.labels)))
    }

    pub fn restricts(&self) -> bool {
        self.node.is_some() || !self.required.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Volumes {
    pub claims: HashMap<String, ClaimInfo>,
    pub volumes: HashMap<String, VolumeInfo>,
    /// Class name → waits for the first consumer.
    pub classes: HashMap<String, bool>,
    /// Whether claims, volumes and classes have been listed.
    pub synced: [bool; 3],
}

impl Volumes {
    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    /// The plan for a pod in `namespace` using `claims`, or why it cannot be placed.
    pub fn plan(&self, namespace: &str, claims: &[String]) -> Result<Plan, String> {
        let mut plan = Plan::default();
        for name in claims {
            let Some(claim) = self.claims.get(&format!("{namespace}/{name}")) else {
                return Err(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if claim.deleting {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            if !claim.volume_name.is_empty() {
                if let Some(terms) = self
                    .volumes
                    .get(&claim.volume_name)
                    .and_then(|v| v.terms.clone())
                {
                    plan.required.push(terms);
                }
                continue;
            }
            let wffc = self.classes.get(&claim.class).copied().unwrap_or(false);
            if !wffc {
                return Err("pod has unbound immediate PersistentVolumeClaims".into());
            }
            match &claim.selected_node {
                Some(node) => match &plan.node {
                    Some(other) if other != node => {
                        return Err("pod's claims were provisioned on different nodes".into())
                    }
                    _ => plan.node = Some(node.clone()),
                },
                None => plan.select.push(name.clone()),
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]),
            ready: true,
            unschedulable: false,
            taints: vec![],
            allocatable: Default::default(),
        }
    }

    fn claim(name: &str, volume: &str, class: &str, selected: Option<&str>) -> ClaimInfo {
        ClaimInfo {
            key: format!("default/{name}"),
            volume_name: volume.into(),
            class: class.into(),
            selected_node: selected.map(String::from),
            deleting: false,
        }
    }

    fn volumes() -> Volumes {
        let pinned: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv-n2"},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}}))
            .unwrap();
        let mut v = Volumes::default();
        v.volumes
            .insert("pv-n2".into(), VolumeInfo::from_volume(&pinned));
        v.classes.insert("local-path".into(), true);
        v.classes.insert("fast".into(), false);
        for c in [
            claim("bound", "pv-n2", "local-path", None),
            claim("waiting", "", "local-path", None),
            claim("chosen", "", "local-path", Some("n1")),
            claim("immediate", "", "fast", None),
        ] {
            v.claims.insert(c.key.clone(), c);
        }
        v
    }

    #[test]
    fn bound_local_volumes_pin_the_pod_to_their_node() {
        let plan = volumes().plan("default", &["bound".into()]).unwrap();
        assert!(!plan.admits(&node("n1")));
        assert!(plan.admits(&node("n2")));
    }

    #[test]
    fn waiting_claims_are_selected_chosen_ones_pin_and_immediate_ones_wait() {
        let v = volumes();
        let plan = v.plan("default", &["waiting".into()]).unwrap();
        assert_eq!(plan.select, ["waiting"]);
        assert!(plan.admits(&node("n1")) && !plan.restricts());
        let plan = v.plan("default", &["chosen".into()]).unwrap();
        assert!(plan.admits(&node("n1")) && !plan.admits(&node("n2")));
        assert_eq!(
            v.plan("default", &["immediate".into()]),
            Err("pod has unbound immediate PersistentVolumeClaims".into())
        );
        assert_eq!(
            v.plan("default", &["nope".into()]),
            Err("persistentvolumeclaim \"nope\" not found".into())
        );
        // Pinned to n1 by one claim and to n2 by the other: no node admits the pod.
        let both = v
            .plan("default", &["chosen".into(), "bound".into()])
            .unwrap();
        assert!(!both.admits(&node("n1")) && !both.admits(&node("n2")));
    }
}
