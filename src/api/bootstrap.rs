//! Objects every cluster starts with: the default namespaces and the `kubernetes`
//! Service (first service IP, port 443) with Endpoints and an EndpointSlice pointing
//! at the API server.
//! They are created through the API itself, so they are defaulted and validated like
//! anything a user creates.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::auth::{Identity, PeerIdentity};
use super::status::ApiError;

pub const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// What the `kubernetes` Service and Endpoints point at.
pub struct ApiEndpoint {
    pub service_ip: IpAddr,
    pub address: IpAddr,
    pub port: u16,
}

pub async fn ensure_defaults(router: &Router, endpoint: &ApiEndpoint) -> Result<(), ApiError> {
    for ns in NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        ensure(router, "/api/v1/namespaces", body).await?;
    }
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": endpoint.service_ip.to_string(), "type": "ClusterIP",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": endpoint.port}]},
    });
    ensure(router, "/api/v1/namespaces/default/services", service).await?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": endpoint.address.to_string()}],
                     "ports": [{"name": "https", "port": endpoint.port, "protocol": "TCP"}]}],
    });
    put(
        router,
        "/api/v1/namespaces/default/endpoints/kubernetes",
        endpoints,
    )
    .await?;
    put(
        router,
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
        kubernetes_slice(endpoint),
    )
    .await
}

/// The default ClusterRoles and ClusterRoleBindings (`authz::default_policy`); ones
/// that exist are left as they are, so an admin's edits stay.
pub async fn ensure_default_policy(router: &Router) -> Result<(), ApiError> {
    let base = "/apis/rbac.authorization.k8s.io/v1";
    for role in super::authz::default_policy::cluster_roles() {
        ensure(router, &format!("{base}/clusterroles"), role).await?;
    }
    for binding in super::authz::default_policy::cluster_role_bindings() {
        ensure(router, &format!("{base}/clusterrolebindings"), binding).await?;
    }
    Ok(())
}

/// The `kube-dns` Service in `kube-system` with the cluster DNS address, as k3s has
/// it, so tools find the cluster DNS (every node's agent answers on that address).
/// Its ClusterIP is taken like any requested one, so no other Service gets it. No
/// selector: no pods serve it, the agents do (and the data plane leaves it alone).
pub async fn ensure_cluster_dns(router: &Router, cluster_dns: IpAddr) -> Result<(), ApiError> {
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"clusterIP": cluster_dns.to_string(), "clusterIPs": [cluster_dns.to_string()],
                 "type": "ClusterIP",
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]},
    });
    ensure(router, "/api/v1/namespaces/kube-system/services", service).await
}

/// The default StorageClass `local-path`, as k3s ships it (provisioner
/// `rancher.io/local-path`, `WaitForFirstConsumer`, `Delete`). Created when missing,
/// never overwritten: a user who changed or deleted its default mark keeps that.
pub async fn ensure_local_path_class(router: &Router) -> Result<(), ApiError> {
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-path",
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    ensure(router, "/apis/storage.k8s.io/v1/storageclasses", class).await
}

/// The `kubernetes` EndpointSlice, as the API server keeps it: what the node's
/// service data plane reads to reach the API from pods.
fn kubernetes_slice(endpoint: &ApiEndpoint) -> Value {
    let address_type = if endpoint.address.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": address_type,
        "endpoints": [{"addresses": [endpoint.address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": endpoint.port, "protocol": "TCP"}],
    })
}

fn admin_request(method: Method, uri: &str, body: &Value) -> Result<Request<Body>, ApiError> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("user-agent", "skiff-bootstrap")
        .body(Body::from(body.to_string()))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    request.extensions_mut().insert(PeerIdentity(Some(Identity {
        user: "system:apiserver".into(),
        groups: vec!["system:masters".into()],
    })));
    Ok(request)
}

async fn call(router: &Router, request: Request<Body>) -> Result<(StatusCode, String), ApiError> {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let code = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((code, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Creates the object unless it exists.
async fn ensure(router: &Router, collection: &str, body: Value) -> Result<(), ApiError> {
    let (code, text) = call(router, admin_request(Method::POST, collection, &body)?).await?;
    match code {
        StatusCode::CREATED | StatusCode::CONFLICT => Ok(()),
        _ => Err(ApiError::internal(format!(
            "creating {collection}: {code}: {text}"
        ))),
    }
}

/// Creates or replaces the object (the API server's address may change).
async fn put(router: &Router, item: &str, body: Value) -> Result<(), ApiError> {
    let (code, text) = call(router, admin_request(Method::PUT, item, &body)?).await?;
    if code == StatusCode::NOT_FOUND {
        let collection = item.rsplit_once('/').map(|(c, _)| c).unwrap_or(item);
        return ensure(router, collection, body).await;
    }
    if code.is_success() {
        Ok(())
    } else {
        Err(ApiError::internal(format!(
            "updating {item}: {code}: {text}"
        )))
    }
}
