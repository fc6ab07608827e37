//! The node authorizer, with the NodeRestriction admission checks folded in (skiff has
//! no RBAC: what Kubernetes splits between the Node authorizer, the `system:node`
//! ClusterRole and the NodeRestriction plugin is judged here in one place). A caller
//! `system:node:<n>` in group `system:nodes` may, as on Kubernetes 1.32 (with
//! `AuthorizeNodeWithSelectors`, on by default):
//!
//! - nodes: get/list/watch every Node (read-only: the agent is also the cluster's
//!   flannel and kube-proxy, ADR 0008's amendment), create its own (the name in the
//!   body), update/patch its own Node and its status; never delete a Node, never
//!   write another node's;
//! - pods: get pods bound to it, list/watch with `fieldSelector=spec.nodeName=<n>`,
//!   update/patch the status of, delete and evict pods bound to it; never create pods
//!   (Kubernetes allows mirror pods of static pods; skiff has no static pods);
//! - secrets, configmaps, persistentvolumeclaims: get one that a pod bound to it
//!   names (see [`super::graph`]); pvc status update/patch likewise;
//! - persistentvolumes: get/list/watch every one (read-only, like Nodes); update/patch
//!   those whose node affinity pins them to it (local-path clean-up, ADR 0019);
//! - serviceaccounts/<sa>/token: create for a service account a pod bound to it runs as;
//! - leases in `kube-node-lease`: get/create/update/patch/delete its own (`<n>`) only;
//! - events (core and events.k8s.io): create/update/patch;
//! - services, endpoints, endpointslices, runtimeclasses, csidrivers: get/list/watch;
//! - tokenreviews and subjectaccessreviews: create.
//!
//! Everything else is refused with Kubernetes' Forbidden message.
//!
//! May call: [`super::graph`] (through [`Facts`]).

use std::sync::Arc;

use async_trait::async_trait;

use super::graph::{NodeGraph, Ref, RefKind};
use super::{forbidden, Attributes};
use crate::api::auth::Identity;
use crate::api::status::ApiError;
use crate::store::Store;

pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the authorizer needs to know about the cluster.
#[async_trait]
pub trait Facts: Send + Sync {
    /// The node a pod is bound to.
    async fn pod_node(&self, namespace: &str, name: &str) -> Option<String>;
    /// Whether a pod bound to `node` names the object.
    async fn node_uses(&self, node: &str, object: &Ref) -> bool;
    /// The one node a PersistentVolume's node affinity pins it to (local volumes).
    async fn volume_node(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The facts as the store and the node graph hold them.
pub struct StoreFacts {
    pub store: Arc<dyn Store>,
    pub graph: Arc<NodeGraph>,
}

#[async_trait]
impl Facts for StoreFacts {
    async fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
        self.graph.pod_node(&self.store, namespace, name).await
    }

    async fn node_uses(&self, node: &str, object: &Ref) -> bool {
        self.graph.node_uses(&self.store, node, object).await
    }

    async fn volume_node(&self, name: &str) -> Option<String> {
        let resource = crate::api::resources::find("", "v1", "persistentvolumes")?;
        let entry = self.store.get(&resource.key(None, name)).await.ok()??;
        let volume = crate::api::object::from_entry(&entry).ok()?;
        pinned_node(&volume)
    }
}

/// `kubernetes.io/hostname In [node]` (or `metadata.name`), alone in the volume's one
/// required node selector term.
fn pinned_node(volume: &serde_json::Value) -> Option<String> {
    let terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"].as_array()?;
    let [term] = terms.as_slice() else {
        return None;
    };
    ["matchExpressions", "matchFields"]
        .iter()
        .filter_map(|k| term[*k].as_array())
        .flatten()
        .find(|r| {
            matches!(
                r["key"].as_str(),
                Some("kubernetes.io/hostname" | "metadata.name")
            ) && r["operator"] == "In"
                && r["values"].as_array().is_some_and(|v| v.len() == 1)
        })
        .and_then(|r| r["values"][0].as_str().map(String::from))
}

/// Whether judging the request needs the name of the object being created.
pub fn needs_created_name(attrs: &Attributes) -> bool {
    attrs.verb == "create"
        && attrs.subresource.is_empty()
        && matches!(
            (attrs.group.as_str(), attrs.resource.as_str()),
            ("", "nodes") | ("coordination.k8s.io", "leases")
        )
}

/// Allows or refuses a node's request. `created_name` is the name in the body of a
/// create, when [`needs_created_name`].
pub async fn authorize(
    facts: &dyn Facts,
    identity: &Identity,
    attrs: &Attributes,
    created_name: Option<&str>,
) -> Result<(), ApiError> {
    let refuse = |reason: String| Err(forbidden(identity, attrs, &reason));
    let Some(node) = identity
        .user
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
    else {
        return refuse("unknown node identity".into());
    };
    let verb = attrs.verb;
    let sub = attrs.subresource.as_str();
    match (attrs.group.as_str(), attrs.resource.as_str()) {
        ("", "nodes") => authorize_node_object(node, attrs, created_name)
            .map_err(|r| forbidden(identity, attrs, &r)),
        ("", "pods") => match (sub, verb) {
            ("", "list" | "watch") if attrs.selects("spec.nodeName", node) => Ok(()),
            ("", "list" | "watch") => {
                refuse("can only list/watch pods with spec.nodeName field selector".into())
            }
            ("", "create") => refuse(format!(
                "node '{node}' may not create pods (skiff has no static pods)"
            )),
            ("", "get" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => {
                bound_pod(facts, node, attrs)
                    .await
                    .map_err(|r| forbidden(identity, attrs, &r))
            }
            _ => refuse(String::new()),
        },
        ("", plural @ ("secrets" | "configmaps" | "persistentvolumeclaims")) => {
            let kind = match plural {
                "secrets" => RefKind::Secret,
                "configmaps" => RefKind::ConfigMap,
                _ => RefKind::PersistentVolumeClaim,
            };
            let allowed_verb = match sub {
                "" => verb == "get",
                "status" => {
                    kind == RefKind::PersistentVolumeClaim && matches!(verb, "update" | "patch")
                }
                _ => false,
            };
            if !allowed_verb {
                return refuse("can only get individual resources of this type".into());
            }
            related(facts, node, kind, attrs)
                .await
                .map_err(|r| forbidden(identity, attrs, &r))
        }
        ("", "serviceaccounts") => {
            if verb != "create" || sub != "token" || attrs.name.is_empty() {
                return refuse("can only create tokens for individual service accounts".into());
            }
            related(facts, node, RefKind::ServiceAccount, attrs)
                .await
                .map_err(|r| forbidden(identity, attrs, &r))
        }
        // Every PersistentVolume, read-only (the agent resolves its pods' claims and
        // cleans up its local volumes); update/patch only of volumes pinned to it
        // (ADR 0019).
        ("", "persistentvolumes") => match (sub, verb) {
            ("", "get" | "list" | "watch") => Ok(()),
            ("", "update" | "patch") => {
                if facts.volume_node(&attrs.name).await.as_deref() == Some(node) {
                    Ok(())
                } else {
                    refuse(format!(
                        "node '{node}' can only modify persistentvolumes pinned to it"
                    ))
                }
            }
            _ => refuse(String::new()),
        },
        ("coordination.k8s.io", "leases") => {
            authorize_lease(node, attrs, created_name).map_err(|r| forbidden(identity, attrs, &r))
        }
        ("" | "events.k8s.io", "events") if matches!(verb, "create" | "update" | "patch") => Ok(()),
        ("", "services" | "endpoints")
        | ("discovery.k8s.io", "endpointslices")
        | ("node.k8s.io", "runtimeclasses")
        | ("storage.k8s.io", "csidrivers")
            if sub.is_empty() && matches!(verb, "get" | "list" | "watch") =>
        {
            Ok(())
        }
        ("authentication.k8s.io", "tokenreviews")
        | ("authorization.k8s.io", "subjectaccessreviews")
            if verb == "create" =>
        {
            Ok(())
        }
        _ => refuse(String::new()),
    }
}

fn authorize_node_object(
    node: &str,
    attrs: &Attributes,
    created_name: Option<&str>,
) -> Result<(), String> {
    let own = attrs.name == node;
    match (attrs.subresource.as_str(), attrs.verb) {
        // Every Node, read-only: the agent is also the cluster's flannel and
        // kube-proxy (ADR 0008, amendment).
        ("", "get" | "list" | "watch") => Ok(()),
        ("", "create") if created_name == Some(node) => Ok(()),
        ("", "create") => Err(format!(
            "node '{node}' cannot create node '{}'",
            created_name.unwrap_or_default()
        )),
        ("" | "status", "update" | "patch") if own => Ok(()),
        ("" | "status", "update" | "patch" | "delete") => {
            Err(format!("node '{node}' cannot modify node '{}'", attrs.name))
        }
        _ => Err(String::new()),
    }
}

fn authorize_lease(
    node: &str,
    attrs: &Attributes,
    created_name: Option<&str>,
) -> Result<(), String> {
    if !matches!(attrs.verb, "get" | "create" | "update" | "patch" | "delete")
        || !attrs.subresource.is_empty()
    {
        return Err("can only get, create, update, patch, or delete a node lease".into());
    }
    if attrs.namespace != NODE_LEASE_NAMESPACE {
        return Err(format!(
            "can only access leases in the \"{NODE_LEASE_NAMESPACE}\" system namespace"
        ));
    }
    let name = if attrs.verb == "create" {
        created_name.unwrap_or_default()
    } else {
        attrs.name.as_str()
    };
    if name != node {
        return Err("can only access node lease with the same name as the requesting node".into());
    }
    Ok(())
}

async fn bound_pod(facts: &dyn Facts, node: &str, attrs: &Attributes) -> Result<(), String> {
    match facts.pod_node(&attrs.namespace, &attrs.name).await {
        Some(bound) if bound == node => Ok(()),
        Some(_) => Err(format!("node '{node}' can only access pods bound to it")),
        None => Err(format!(
            "no relationship found between node '{node}' and this object"
        )),
    }
}

async fn related(
    facts: &dyn Facts,
    node: &str,
    kind: RefKind,
    attrs: &Attributes,
) -> Result<(), String> {
    let object = Ref {
        kind,
        namespace: attrs.namespace.clone(),
        name: attrs.name.clone(),
    };
    if !attrs.name.is_empty() && facts.node_uses(node, &object).await {
        Ok(())
    } else {
        Err(format!(
            "no relationship found between node '{node}' and this object"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    /// Pod `ns/mine` on n1 (naming secret `used`, configmap `cm`, sa `robot`), pod
    /// `ns/theirs` on n2 (naming secret `other`).
    struct Cluster;

    #[async_trait]
    impl Facts for Cluster {
        async fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
            match (namespace, name) {
                ("ns", "mine") => Some("n1".into()),
                ("ns", "theirs") => Some("n2".into()),
                _ => None,
            }
        }

        async fn node_uses(&self, node: &str, object: &Ref) -> bool {
            let used = match object.kind {
                RefKind::Secret => ["used", "other"].contains(&object.name.as_str()),
                RefKind::ConfigMap => object.name == "cm",
                RefKind::ServiceAccount => object.name == "robot",
                RefKind::PersistentVolumeClaim => false,
            };
            used && object.namespace == "ns" && (node == "n1") == (object.name != "other")
        }

        async fn volume_node(&self, name: &str) -> Option<String> {
            (name == "pvc-local").then(|| "n1".into())
        }
    }

    fn n1() -> Identity {
        Identity {
            user: "system:node:n1".into(),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        }
    }

    async fn check(method: Method, uri: &str, created: Option<&str>) -> Result<(), ApiError> {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let attrs = Attributes::parse(&method, path, Some(query)).expect("resource path");
        authorize(&Cluster, &n1(), &attrs, created).await
    }

    async fn allowed(method: Method, uri: &str) -> bool {
        check(method, uri, None).await.is_ok()
    }

    #[tokio::test]
    async fn nodes_read_every_node_and_write_only_their_own() {
        assert!(allowed(Method::GET, "/api/v1/nodes/n1").await);
        assert!(allowed(Method::PATCH, "/api/v1/nodes/n1/status").await);
        assert!(allowed(Method::PUT, "/api/v1/nodes/n1").await);
        assert!(
            allowed(
                Method::GET,
                "/api/v1/nodes?fieldSelector=metadata.name%3Dn1&watch=1"
            )
            .await
        );
        assert!(check(Method::POST, "/api/v1/nodes", Some("n1"))
            .await
            .is_ok());
        assert!(check(Method::POST, "/api/v1/nodes", Some("n2"))
            .await
            .is_err());
        assert!(allowed(Method::GET, "/api/v1/nodes").await);
        assert!(allowed(Method::GET, "/api/v1/nodes?watch=true").await);
        assert!(allowed(Method::GET, "/api/v1/nodes/n2").await);
        assert!(!allowed(Method::PUT, "/api/v1/nodes/n2").await);
        assert!(!allowed(Method::PUT, "/api/v1/nodes/n2/status").await);
        assert!(!allowed(Method::PATCH, "/api/v1/nodes/n2").await);
        assert!(!allowed(Method::PATCH, "/api/v1/nodes/n2/status").await);
        assert!(!allowed(Method::DELETE, "/api/v1/nodes/n1").await);
        let err = check(Method::DELETE, "/api/v1/nodes/n2", None)
            .await
            .unwrap_err();
        assert_eq!(err.code, 403);
        assert!(
            err.message.ends_with("node 'n1' cannot modify node 'n2'"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn volumes_are_readable_and_writable_only_when_pinned_to_the_node() {
        assert!(allowed(Method::GET, "/api/v1/persistentvolumes").await);
        assert!(allowed(Method::GET, "/api/v1/persistentvolumes/pvc-other").await);
        assert!(allowed(Method::PATCH, "/api/v1/persistentvolumes/pvc-local").await);
        assert!(!allowed(Method::PATCH, "/api/v1/persistentvolumes/pvc-other").await);
        assert!(!allowed(Method::DELETE, "/api/v1/persistentvolumes/pvc-local").await);
        assert!(!allowed(Method::POST, "/api/v1/persistentvolumes").await);
        assert!(
            pinned_node(&serde_json::json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}))
                .as_deref()
                == Some("n1")
        );
    }

    #[tokio::test]
    async fn pods_only_those_bound_to_the_node() {
        assert!(allowed(Method::GET, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1").await);
        assert!(
            allowed(
                Method::GET,
                "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=true"
            )
            .await
        );
        assert!(!allowed(Method::GET, "/api/v1/pods").await);
        assert!(!allowed(Method::GET, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2").await);
        assert!(allowed(Method::GET, "/api/v1/namespaces/ns/pods/mine").await);
        assert!(allowed(Method::PATCH, "/api/v1/namespaces/ns/pods/mine/status").await);
        assert!(allowed(Method::DELETE, "/api/v1/namespaces/ns/pods/mine").await);
        assert!(!allowed(Method::GET, "/api/v1/namespaces/ns/pods/theirs").await);
        assert!(!allowed(Method::PATCH, "/api/v1/namespaces/ns/pods/theirs/status").await);
        assert!(!allowed(Method::DELETE, "/api/v1/namespaces/ns/pods/theirs").await);
        assert!(!allowed(Method::PATCH, "/api/v1/namespaces/ns/pods/mine").await);
        assert!(!allowed(Method::POST, "/api/v1/namespaces/ns/pods").await);
        assert!(!allowed(Method::GET, "/api/v1/namespaces/ns/pods/mine/log").await);
        assert!(!allowed(Method::DELETE, "/api/v1/namespaces/ns/pods").await);
    }

    #[tokio::test]
    async fn secrets_and_configmaps_only_through_the_nodes_pods() {
        assert!(allowed(Method::GET, "/api/v1/namespaces/ns/secrets/used").await);
        assert!(allowed(Method::GET, "/api/v1/namespaces/ns/configmaps/cm").await);
        assert!(!allowed(Method::GET, "/api/v1/namespaces/ns/secrets/other").await);
        assert!(!allowed(Method::GET, "/api/v1/namespaces/ns/secrets/unused").await);
        assert!(!allowed(Method::GET, "/api/v1/namespaces/ns/secrets").await);
        assert!(!allowed(Method::GET, "/api/v1/secrets").await);
        assert!(!allowed(Method::PUT, "/api/v1/namespaces/ns/secrets/used").await);
        assert!(!allowed(Method::GET, "/api/v1/namespaces/other/secrets/used").await);
        assert!(
            allowed(
                Method::POST,
                "/api/v1/namespaces/ns/serviceaccounts/robot/token"
            )
            .await
        );
        assert!(
            !allowed(
                Method::POST,
                "/api/v1/namespaces/ns/serviceaccounts/admin/token"
            )
            .await
        );
        assert!(!allowed(Method::GET, "/api/v1/namespaces/ns/serviceaccounts/robot").await);
        let err = check(Method::GET, "/api/v1/namespaces/ns/secrets/unused", None)
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "secrets \"unused\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"ns\": no relationship found between node 'n1' and this object"
        );
    }

    #[tokio::test]
    async fn leases_only_its_own_in_kube_node_lease() {
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
        assert!(allowed(Method::GET, &format!("{lease}/n1")).await);
        assert!(allowed(Method::PATCH, &format!("{lease}/n1")).await);
        assert!(check(Method::POST, lease, Some("n1")).await.is_ok());
        assert!(check(Method::POST, lease, Some("n2")).await.is_err());
        assert!(!allowed(Method::PATCH, &format!("{lease}/n2")).await);
        assert!(!allowed(Method::GET, lease).await);
        assert!(
            !allowed(
                Method::PATCH,
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/n1"
            )
            .await
        );
    }

    #[tokio::test]
    async fn the_rest_is_read_only_or_refused() {
        assert!(allowed(Method::POST, "/api/v1/namespaces/ns/events").await);
        assert!(allowed(Method::PATCH, "/api/v1/namespaces/ns/events/e").await);
        assert!(!allowed(Method::DELETE, "/api/v1/namespaces/ns/events/e").await);
        assert!(allowed(Method::GET, "/api/v1/services?watch=true").await);
        assert!(allowed(Method::GET, "/apis/discovery.k8s.io/v1/endpointslices").await);
        assert!(!allowed(Method::POST, "/api/v1/namespaces/ns/services").await);
        assert!(!allowed(Method::PATCH, "/apis/apps/v1/namespaces/ns/deployments/d").await);
        assert!(!allowed(Method::GET, "/apis/apps/v1/deployments").await);
        assert!(!allowed(Method::POST, "/api/v1/namespaces").await);
        assert!(!allowed(Method::GET, "/api/v1/namespaces/ns").await);
        let stranger = Identity {
            user: "mallory".into(),
            groups: vec![NODES_GROUP.into()],
        };
        let attrs = Attributes::parse(&Method::GET, "/api/v1/nodes/mallory", None).unwrap();
        assert!(authorize(&Cluster, &stranger, &attrs, None).await.is_err());
    }
}
