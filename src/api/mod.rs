//! The Kubernetes-compatible HTTP API: routing, discovery, OpenAPI, authentication,
//! the object handlers (get, list, watch, create, update, patch, delete), Tables and
//! `Status` errors.
//!
//! Owns: everything between an HTTP request and the store.
//! May call: `store` (through the `Store` trait only), `pki` (client identities),
//! `model` (the shared Kubernetes model) and `serve` (the TLS peer address).
//! Inside `api/` no module cycle (docs/adr/0010-layering.md): `request` and `list`
//! sit below the handlers, list and watch that share them.
//! Controllers, the scheduler and agents reach the store only through this API.

pub mod alloc;
pub mod auth;
pub mod authz;
pub mod batch;
pub mod body;
pub mod bootstrap;
pub mod defaults;
pub mod discovery;
pub mod ephemeral;
pub mod events;
mod handlers;
pub mod join;
mod list;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod proxy;
mod rawlist;
pub mod repair;
mod request;
pub mod resource_proxy;
pub mod resources;
pub mod sa_admission;
pub mod satoken;
pub mod schema;
pub mod status;
pub mod storage_admission;
pub mod table;
mod tokenrequest;
pub mod validation;
mod watch;
pub mod watchcache;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::store::Store;
use alloc::Cidr;
use auth::Identity;
use status::ApiError;

pub use crate::model::version::{go_arch, KUBERNETES_VERSION};

/// What the API needs to know about the cluster.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub service_cidr: Cidr,
    /// host:port clients reach the API at (legacy discovery reports it).
    pub advertise_address: String,
    /// The join token's secret; a bearer token equal to it identifies a joining node.
    pub join_secret: String,
}

pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub config: ApiConfig,
    /// Issues node credentials to joining agents, when this server has a CA.
    pub issuer: Option<Arc<dyn join::CredentialIssuer>>,
    pub watch_cache: watchcache::WatchCache,
    /// TLS to node kubelets, for pods' logs and exec.
    pub kubelet_client: proxy::KubeletClient,
    /// Signs and checks service-account tokens, once the server installed its key.
    pub tokens: OnceLock<Arc<satoken::TokenAuthority>>,
    ready: AtomicBool,
    /// Which objects each node may read (the node authorizer's graph).
    pub node_graph: Arc<authz::graph::NodeGraph>,
    pub rbac: Arc<authz::rbac::PolicyCache>,
}

pub type SharedState = Arc<ApiState>;

impl ApiState {
    pub fn new(
        store: Arc<dyn Store>,
        config: ApiConfig,
        issuer: Option<Arc<dyn join::CredentialIssuer>>,
    ) -> SharedState {
        Arc::new(ApiState {
            watch_cache: watchcache::WatchCache::new(store.clone()),
            store,
            config,
            issuer,
            kubelet_client: proxy::KubeletClient::default(),
            tokens: OnceLock::new(),
            ready: AtomicBool::new(false),
            node_graph: authz::graph::NodeGraph::new(),
            rbac: authz::rbac::PolicyCache::new(),
        })
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The whole HTTP surface.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/cacerts", get(join::cacerts))
        .route(
            join::CREDENTIALS_PATH,
            axum::routing::post(join::node_credentials),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            axum::routing::post(satoken::self_subject_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            axum::routing::post(authz::reviews::self_subject_access_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            axum::routing::post(authz::reviews::self_subject_rules_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            axum::routing::post(authz::reviews::subject_access_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews",
            axum::routing::post(authz::reviews::local_subject_access_review),
        )
        .route(
            satoken::OPENID_CONFIGURATION,
            get(satoken::openid_configuration),
        )
        .route(satoken::JWKS, get(satoken::jwks))
        .fallback(handlers::dispatch)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/version" | "/healthz" | "/livez" | "/readyz" | "/cacerts"
    )
}

/// Resolves the caller (client certificate from the TLS layer, or bearer token) and
/// refuses unauthenticated callers outside the public health endpoints.
async fn authenticate(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    let mut identity = auth::identify(&request, &state.config.join_secret);
    if identity.is_none() {
        if let Some(token) = auth::bearer(&request).filter(|t| satoken::looks_like_jwt(t)) {
            identity = satoken::authenticate(&state, token).await;
        }
    }
    if let Some(id) = &identity {
        match authz::impersonation::impersonated(&state, id, request.headers()).await {
            Ok(Some(as_user)) => identity = Some(as_user),
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    if !is_public(request.uri().path()) {
        match &identity {
            None => return ApiError::unauthorized().into_response(),
            Some(id) if authz::is_node(id) => {
                match authz::authorize_node(&state, id, request).await {
                    Ok(checked) => request = checked,
                    Err(e) => return e.into_response(),
                }
            }
            Some(id) if id.groups.iter().any(|g| g == auth::BOOTSTRAP_GROUP) => {
                if let Err(e) = auth::authorize(id, request.method(), request.uri().path()) {
                    return e.into_response();
                }
            }
            Some(id) => {
                let uri = request.uri();
                let decision =
                    authz::authorize_rbac(&state, id, request.method(), uri.path(), uri.query())
                        .await;
                if let Err(e) = decision {
                    return e.into_response();
                }
            }
        }
    }
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity);
    }
    next.run(request).await
}

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    json_response_typed(code, value, "application/json")
}

pub fn json_response_typed(
    code: StatusCode,
    value: &Value,
    content_type: &'static str,
) -> Response {
    let mut response = (code, value.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn version() -> Response {
    let (major, minor, git) = KUBERNETES_VERSION;
    json_response(
        StatusCode::OK,
        &json!({
            "major": major,
            "minor": minor,
            "gitVersion": format!("{git}+skiff-{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
        }),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<SharedState>) -> Response {
    if state.is_ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

/// The identity a handler runs as, for fields like managedFields' manager.
pub fn caller(request: &Request) -> Option<&Identity> {
    request.extensions().get::<Identity>()
}

pub(crate) fn method_is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
