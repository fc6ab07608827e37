//! NodeRestriction for a node's own Node object, as Kubernetes' admission plugin: a
//! node may set or change labels only outside the `kubernetes.io` and `k8s.io`
//! namespaces, or in kubelet's allowed set ([`kubelet_may_set_label`]); never labels
//! under `node-restriction.kubernetes.io/`. It may register with taints (kubelet's
//! `--register-with-taints`, skiff's `--node-taint`) but never change them later, and
//! may not set `spec.configSource`. Other writers (admins, controllers, the server
//! labelling its own node) are not restricted.
//!
//! The checks need the written object (and the old one on update), so the handlers
//! call [`admit_create`] and [`admit_update`]; the agent uses
//! [`kubelet_may_set_label`] (in `model::node_labels`) to refuse restricted
//! `--node-label`s at start.
//!
//! May call: nothing but the identity and object helpers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::node::NODE_USER_PREFIX;
use crate::api::auth::Identity;
use crate::api::resources::Resource;
use crate::api::status::ApiError;
pub use crate::model::node_labels::{allowed_labels_description, kubelet_may_set_label};

fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The label keys added, removed or changed from `old` to `new`.
fn modified_labels(new: &Value, old: Option<&Value>) -> BTreeSet<String> {
    let new = labels(new);
    let old = old.map(labels).unwrap_or_default();
    let changed = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    changed(&new, &old)
        .into_iter()
        .chain(changed(&old, &new))
        .collect()
}

fn forbidden_labels(new: &Value, old: Option<&Value>) -> Vec<String> {
    modified_labels(new, old)
        .into_iter()
        .filter(|k| !kubelet_may_set_label(k))
        .collect()
}

fn taints(obj: &Value) -> &[Value] {
    obj["spec"]["taints"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn config_source(obj: &Value) -> Option<&Value> {
    obj["spec"].get("configSource").filter(|v| !v.is_null())
}

/// The node a request writes its own Node as, when NodeRestriction applies.
fn restricted_node<'a>(identity: Option<&'a Identity>, resource: &Resource) -> Option<&'a str> {
    let identity = identity.filter(|i| super::is_node(i))?;
    if !(resource.group.is_empty() && resource.plural == "nodes") {
        return None;
    }
    identity.user.strip_prefix(NODE_USER_PREFIX)
}

fn refuse(name: &str, reason: String) -> ApiError {
    ApiError::forbidden(format!("nodes \"{name}\" is forbidden: {reason}"))
}

/// Judges a node creating its Node: no config source, labels in the allowed set.
pub fn admit_create(
    identity: Option<&Identity>,
    resource: &Resource,
    obj: &Value,
) -> Result<(), ApiError> {
    let Some(node) = restricted_node(identity, resource) else {
        return Ok(());
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if config_source(obj).is_some() {
        return Err(refuse(
            name,
            format!("node \"{node}\" is not allowed to create pods with a non-nil configSource"),
        ));
    }
    let forbidden = forbidden_labels(obj, None);
    if !forbidden.is_empty() {
        return Err(refuse(
            name,
            format!(
                "node \"{node}\" is not allowed to set the following labels: {}",
                forbidden.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Judges a node updating or patching its Node (or its status): the config source
/// and taints unchanged, label changes in the allowed set only.
pub fn admit_update(
    identity: Option<&Identity>,
    resource: &Resource,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let Some(node) = restricted_node(identity, resource) else {
        return Ok(());
    };
    let name = old["metadata"]["name"].as_str().unwrap_or_default();
    if config_source(new).is_some() && config_source(new) != config_source(old) {
        return Err(refuse(
            name,
            format!(
                "node \"{node}\" is not allowed to update configSource to a new non-nil configSource"
            ),
        ));
    }
    if taints(new) != taints(old) {
        return Err(refuse(
            name,
            format!("node \"{node}\" is not allowed to modify taints"),
        ));
    }
    let forbidden = forbidden_labels(new, Some(old));
    if !forbidden.is_empty() {
        return Err(refuse(
            name,
            format!(
                "node \"{node}\" is not allowed to modify labels: {}",
                forbidden.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nodes() -> &'static Resource {
        crate::api::resources::find("", "v1", "nodes").unwrap()
    }

    fn node_n1() -> Identity {
        Identity {
            user: "system:node:n1".into(),
            groups: vec![super::super::node::NODES_GROUP.into()],
        }
    }

    fn admin() -> Identity {
        Identity {
            user: "admin".into(),
            groups: vec!["system:masters".into()],
        }
    }

    fn node(labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})
    }

    #[test]
    fn kubelets_label_set_is_upstreams() {
        for allowed in [
            "kubernetes.io/hostname",
            "kubernetes.io/arch",
            "beta.kubernetes.io/instance-type",
            "topology.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/region",
            "kubelet.kubernetes.io/anything",
            "node.kubernetes.io/instance-type",
            "node.kubernetes.io/whatever",
            "sub.node.kubernetes.io/x",
            "zone",
            "example.com/team",
            "skiff.test/role",
        ] {
            assert!(kubelet_may_set_label(allowed), "{allowed}");
        }
        for refused in [
            "node-role.kubernetes.io/control-plane",
            "node-role.kubernetes.io/x",
            "node-restriction.kubernetes.io/pci",
            "example.node-restriction.kubernetes.io/pci",
            "kubernetes.io/role",
            "k8s.io/anything",
            "foo.k8s.io/bar",
            "topology.kubernetes.io/rack",
        ] {
            assert!(!kubelet_may_set_label(refused), "{refused}");
        }
    }

    #[test]
    fn a_node_registers_with_taints_but_allowed_labels_only() {
        let me = node_n1();
        let ok = node(
            json!({"kubernetes.io/hostname": "n1", "zone": "a"}),
            json!([{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]),
        );
        assert!(admit_create(Some(&me), nodes(), &ok).is_ok());
        let bad = node(
            json!({"kubernetes.io/hostname": "n1", "node-role.kubernetes.io/control-plane": "true"}),
            json!([]),
        );
        let err = admit_create(Some(&me), nodes(), &bad).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to set the following labels: node-role.kubernetes.io/control-plane"
        );
        let sourced =
            json!({"metadata": {"name": "n1"}, "spec": {"configSource": {"configMap": {}}}});
        assert!(admit_create(Some(&me), nodes(), &sourced).is_err());
        // Admins (and the server labelling its own node) are not restricted.
        assert!(admit_create(Some(&admin()), nodes(), &bad).is_ok());
        assert!(admit_create(None, nodes(), &bad).is_ok());
    }

    #[test]
    fn a_node_keeps_its_taints_and_restricted_labels_on_update() {
        let me = node_n1();
        let taint = json!([{"key": "dedicated", "effect": "NoSchedule"}]);
        let old = node(
            json!({"kubernetes.io/hostname": "n1", "node-role.kubernetes.io/control-plane": "true"}),
            taint.clone(),
        );
        // Unrelated and allowed label changes are fine; restricted labels it already
        // has may stay.
        let mut new = old.clone();
        new["metadata"]["labels"]["zone"] = json!("b");
        new["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] =
            json!("");
        assert!(admit_update(Some(&me), nodes(), &old, &new).is_ok());

        let mut added = old.clone();
        added["metadata"]["labels"]["node-role.kubernetes.io/x"] = json!("");
        let err = admit_update(Some(&me), nodes(), &old, &added).unwrap_err();
        assert_eq!(
            err.message,
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify labels: node-role.kubernetes.io/x"
        );
        let mut removed = old.clone();
        removed["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("node-role.kubernetes.io/control-plane");
        assert!(admit_update(Some(&me), nodes(), &old, &removed).is_err());

        for taints in [
            json!([]),
            json!(null),
            json!([{"key": "other", "effect": "NoSchedule"}]),
        ] {
            let mut changed = old.clone();
            changed["spec"]["taints"] = taints;
            let err = admit_update(Some(&me), nodes(), &old, &changed).unwrap_err();
            assert_eq!(
                err.message,
                "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints"
            );
            assert!(admit_update(Some(&admin()), nodes(), &old, &changed).is_ok());
        }
        let mut sourced = old.clone();
        sourced["spec"]["configSource"] = json!({"configMap": {"name": "c"}});
        assert!(admit_update(Some(&me), nodes(), &old, &sourced).is_err());
        // Other resources are not this check's business.
        let pods = crate::api::resources::find("", "v1", "pods").unwrap();
        assert!(admit_update(Some(&me), pods, &old, &added).is_ok());
    }
}
