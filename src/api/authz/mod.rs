//! Authorization of requests by what they do: a request's attributes (verb, API
//! group, resource, subresource, namespace, name, field selector), parsed from its
//! method and path as Kubernetes' RequestInfo does, and the authorizers that judge
//! them: the node authorizer ([`node`]), for identities in `system:nodes`, and
//! NodeRestriction on a node's own Node ([`restriction`], called by the handlers);
//! RBAC ([`rbac`]) for everyone else but `system:masters`, with the default policy
//! ([`default_policy`]) and escalation prevention ([`escalation`]), access reviews ([`reviews`]) and impersonation
//! ([`impersonation`]).
//!
//! Owns: request attributes, the `Forbidden` message shape, the node graph.
//! May call: the store (through [`graph`], read only) and `body` (to read the name of
//! an object a node creates).

pub mod default_policy;
pub mod escalation;
pub mod graph;
pub mod impersonation;
pub mod node;
pub mod rbac;
pub mod restriction;
pub mod reviews;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method};

use super::auth::Identity;
use super::status::ApiError;
use super::{body, SharedState};

/// What a request does, as Kubernetes' authorizers see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete or deletecollection.
    pub verb: &'static str,
    pub group: String,
    /// The resource's plural name (`pods`).
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    /// The object named by the path (empty for collections).
    pub name: String,
    /// The `fieldSelector` query parameter, as sent.
    pub field_selector: String,
}

impl Attributes {
    /// The attributes of a resource request; `None` for other paths (discovery,
    /// health, the join endpoint).
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Option<Attributes> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let (group, _version, rest) = match segments.as_slice() {
            ["api", "v1", rest @ ..] => ("", "v1", rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return None,
        };
        // As kube-apiserver's RequestInfoFactory, from the path alone (a resource the
        // server does not serve is still named, so its refusal or 404 reads right):
        // `namespaces/<ns>/<plural>/…` unless `<plural>` is a namespace subresource.
        let (namespace, plural, name, sub) = match rest {
            [] => return None,
            ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
                (*ns, *plural, tail.first(), tail.get(1))
            }
            [plural, tail @ ..] => ("", *plural, tail.first(), tail.get(1)),
        };
        let query: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let param = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let watch = matches!(param("watch").map(String::as_str), Some("true" | "1"));
        let name = name.map(|s| s.to_string()).unwrap_or_default();
        let verb = match (method.clone(), name.is_empty()) {
            (Method::GET | Method::HEAD, true) if watch => "watch",
            (Method::GET | Method::HEAD, true) => "list",
            (Method::GET | Method::HEAD, false) => "get",
            (Method::POST, _) => "create",
            (Method::PUT, _) => "update",
            (Method::PATCH, _) => "patch",
            (Method::DELETE, true) => "deletecollection",
            (Method::DELETE, false) => "delete",
            _ => "unknown",
        };
        // As Kubernetes 1.30+ (AuthorizePodWebsocketUpgradeCreatePermission): the
        // streaming subresources need `create` whichever method opens them (a
        // WebSocket upgrade is a GET, SPDY a POST).
        let streaming = matches!(sub.copied(), Some("exec" | "attach" | "portforward"));
        let verb = if group.is_empty() && plural == "pods" && streaming && verb == "get" {
            "create"
        } else {
            verb
        };
        Some(Attributes {
            verb,
            group: group.to_string(),
            resource: plural.to_string(),
            subresource: sub.map(|s| s.to_string()).unwrap_or_default(),
            namespace: namespace.to_string(),
            name,
            field_selector: param("fieldSelector").cloned().unwrap_or_default(),
        })
    }

    /// Whether the field selector requires `field` to equal `value`.
    pub fn selects(&self, field: &str, value: &str) -> bool {
        self.field_selector.split(',').any(|term| {
            let term = term.trim();
            [format!("{field}={value}"), format!("{field}=={value}")].contains(&term.to_string())
        })
    }

    /// `resource "pods/status"` as Kubernetes names what was refused.
    fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// Kubernetes' refusal: `secrets "s" is forbidden: User "u" cannot get resource
/// "secrets" in API group "" in the namespace "ns": <reason>`.
pub fn forbidden(identity: &Identity, attrs: &Attributes, reason: &str) -> ApiError {
    let qualified = if attrs.group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.group)
    };
    let object = if attrs.name.is_empty() {
        qualified
    } else {
        format!("{qualified} \"{}\"", attrs.name)
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", attrs.namespace)
    };
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    let mut error = ApiError::forbidden(format!(
        "{object} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}{reason}",
        identity.user,
        attrs.verb,
        attrs.resource_path(),
        attrs.group
    ));
    error.details = Some(serde_json::json!({
        "name": attrs.name, "group": attrs.group, "kind": attrs.resource,
    }));
    error
}

/// Whether the identity is in `system:masters`, which RBAC's default binding gives
/// `cluster-admin` and which is never refused (so a broken policy cannot lock the
/// admin out).
pub fn is_master(identity: &Identity) -> bool {
    identity.groups.iter().any(|g| g == "system:masters")
}

/// The verb of a request outside the resource tree: the method, lowercased.
pub fn path_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// Decides a request with RBAC (for callers neither master nor node).
pub async fn authorize_rbac(
    state: &SharedState,
    identity: &Identity,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<(), ApiError> {
    if is_master(identity) {
        return Ok(());
    }
    let user = rbac::User::from_identity(identity);
    match Attributes::parse(method, path, query) {
        Some(mut attrs) => {
            // A namespace is its own namespace, so a RoleBinding in it can grant it.
            if attrs.resource == "namespaces" && attrs.namespace.is_empty() {
                attrs.namespace = attrs.name.clone();
            }
            let request = rbac::Request::Resource(&attrs);
            if state.rbac.allows(&state.store, &user, &request).await {
                Ok(())
            } else {
                Err(forbidden(identity, &attrs, ""))
            }
        }
        None => {
            let verb = path_verb(method);
            let request = rbac::Request::Path { verb, path };
            if state.rbac.allows(&state.store, &user, &request).await {
                Ok(())
            } else {
                Err(ApiError::forbidden(format!(
                    "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                    identity.user
                )))
            }
        }
    }
}

/// Whether the node authorizer judges this identity's requests.
pub fn is_node(identity: &Identity) -> bool {
    let has = |g: &str| identity.groups.iter().any(|x| x == g);
    has(node::NODES_GROUP) && !has("system:masters")
}

/// Authorizes a node's request; hands the request back (its body re-attached when
/// it had to be read).
pub async fn authorize_node(
    state: &SharedState,
    identity: &Identity,
    request: Request,
) -> Result<Request, ApiError> {
    let Some(attrs) = Attributes::parse(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    ) else {
        // Discovery documents (`/api`, `/apis/<group>/<version>`, `/openapi/…`) are
        // readable; otherwise the rules every caller has (the join endpoint).
        let path = request.uri().path();
        let discovery = path.starts_with("/api") || path.starts_with("/openapi/");
        if !(discovery && matches!(*request.method(), Method::GET | Method::HEAD)) {
            super::auth::authorize(identity, request.method(), path)?;
        }
        return Ok(request);
    };
    let (request, created_name) = if node::needs_created_name(&attrs) {
        created_name(request).await?
    } else {
        (request, None)
    };
    let facts = node::StoreFacts {
        store: state.store.clone(),
        graph: state.node_graph.clone(),
    };
    node::authorize(&facts, identity, &attrs, created_name.as_deref()).await?;
    Ok(request)
}

/// Reads the body to learn the name of the object being created.
async fn created_name(request: Request) -> Result<(Request, Option<String>), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, body::MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let name = body::decode(content_type, &bytes)
        .ok()
        .and_then(|obj| obj["metadata"]["name"].as_str().map(String::from));
    Ok((Request::from_parts(parts, Body::from(bytes)), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, uri: &str) -> Attributes {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        Attributes::parse(&method, path, Some(query)).expect("a resource path")
    }

    #[test]
    fn paths_give_kubernetes_request_attributes() {
        let a = parse(Method::GET, "/api/v1/namespaces/ns/secrets/s");
        assert_eq!(
            (
                a.verb,
                a.resource.as_str(),
                a.namespace.as_str(),
                a.name.as_str()
            ),
            ("get", "secrets", "ns", "s")
        );
        let a = parse(
            Method::GET,
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=true",
        );
        assert_eq!((a.verb, a.namespace.as_str()), ("watch", ""));
        assert!(a.selects("spec.nodeName", "n1"));
        assert!(!a.selects("spec.nodeName", "n2"));
        let a = parse(Method::PATCH, "/api/v1/namespaces/ns/pods/p/status");
        assert_eq!((a.verb, a.subresource.as_str()), ("patch", "status"));
        let a = parse(Method::DELETE, "/api/v1/nodes/n2");
        assert_eq!(
            (a.verb, a.name.as_str(), a.namespace.as_str()),
            ("delete", "n2", "")
        );
        let a = parse(
            Method::GET,
            "/api/v1/namespaces/ns/persistentvolumeclaims/c",
        );
        assert_eq!(
            (a.resource.as_str(), a.namespace.as_str(), a.name.as_str()),
            ("persistentvolumeclaims", "ns", "c")
        );
        let a = parse(Method::PUT, "/api/v1/namespaces/ns/finalize");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.subresource.as_str()),
            ("namespaces", "ns", "finalize")
        );
        let a = parse(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(
            (a.resource.as_str(), a.name.as_str()),
            ("namespaces", "kube-system")
        );
        let a = parse(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
        );
        assert_eq!(
            (a.verb, a.group.as_str(), a.resource.as_str()),
            ("update", "coordination.k8s.io", "leases")
        );
        let a = parse(
            Method::POST,
            "/api/v1/namespaces/ns/serviceaccounts/sa/token",
        );
        assert_eq!(
            (a.verb, a.name.as_str(), a.subresource.as_str()),
            ("create", "sa", "token")
        );
        for sub in ["exec", "attach", "portforward"] {
            let a = parse(Method::GET, &format!("/api/v1/namespaces/ns/pods/p/{sub}"));
            assert_eq!((a.verb, a.subresource.as_str()), ("create", sub));
        }
        let a = parse(Method::GET, "/api/v1/namespaces/ns/pods/p/log");
        assert_eq!((a.verb, a.subresource.as_str()), ("get", "log"));
        assert_eq!(Attributes::parse(&Method::GET, "/apis/apps/v1", None), None);
        assert_eq!(Attributes::parse(&Method::GET, "/version", None), None);
    }

    #[test]
    fn refusals_read_like_kubernetes() {
        let who = Identity {
            user: "system:node:n1".into(),
            groups: vec![node::NODES_GROUP.into()],
        };
        let err = forbidden(
            &who,
            &parse(Method::DELETE, "/api/v1/nodes/x"),
            "node 'n1' cannot modify node 'x'",
        );
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "nodes \"x\" is forbidden: User \"system:node:n1\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope: node 'n1' cannot modify node 'x'"
        );
        let err = forbidden(
            &who,
            &parse(Method::GET, "/apis/apps/v1/namespaces/d/deployments"),
            "",
        );
        assert_eq!(
            err.message,
            "deployments.apps is forbidden: User \"system:node:n1\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"d\""
        );
    }
}
