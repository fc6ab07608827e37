//! The Kubernetes-compatible HTTP API: routing, discovery, OpenAPI, authentication,
//! the object handlers (get, list, watch, create, update, patch, delete), Tables and
//! `Status` errors.
//!
//! Owns: everything between an HTTP request and the store.
//! May call: `store` (through the `Store` trait only) and `pki` (client identities).
//! Controllers, the scheduler and agents reach the store only through this API.

pub mod alloc;
pub mod auth;
pub mod body;
pub mod bootstrap;
pub mod defaults;
pub mod discovery;
pub mod ephemeral;
pub mod events;
mod handlers;
pub mod join;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod proxy;
mod rawlist;
pub mod resource_proxy;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
pub mod table;
pub mod validation;
mod watch;
pub mod watchcache;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

/// The version skiff reports; kubectl picks its client version from `minor`.
pub const KUBERNETES_VERSION: (&str, &str, &str) = ("1", "32", "v1.32.4");

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
    ready: AtomicBool,
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
            ready: AtomicBool::new(false),
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
    let identity = auth::identify(&request, &state.config.join_secret);
    if !is_public(request.uri().path()) {
        match &identity {
            None => return ApiError::unauthorized().into_response(),
            Some(id) => {
                if let Err(e) = auth::authorize(id, request.method(), request.uri().path()) {
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

/// The architecture as Kubernetes names it (amd64, arm64, arm).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
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
