//! The agent's HTTPS API (port 10250, like the kubelet's): container logs and exec,
//! which the API server proxies for `kubectl logs` and `kubectl exec`.
//!
//! Routes: `GET /containerLogs/{namespace}/{pod}/{container}` (`logs`), `GET
//! /exec/{namespace}/{pod}/{container}` and `GET /attach/{namespace}/{pod}/{container}`
//! as WebSockets (`exec`, `attach`; other requests, such as kubectl's SPDY fallback,
//! get a 400 Status after the container checks, so that the client sees why the
//! WebSocket attempt failed), `/portForward/{namespace}/{pod}` (SPDY/3.1 upgrade,
//! SPDY in a WebSocket, or the WebSocket channel protocol: `portforward`),
//! `GET /healthz`.
//!
//! Security: TLS with a serving certificate signed by the cluster CA (from the
//! node-credentials join, `join::serving_credentials`; SANs: node name and node IP;
//! kept in `<data-dir>/agent/credentials/<node>-serving.{crt,key}` and renewed in
//! place when under 30 days remain). Client certificates signed by the cluster CA are
//! required, and only the API server may call: the user
//! `system:kube-apiserver-kubelet-client` (the certificate the API server's proxy
//! presents) or a member of `system:masters` (cluster admins). Nodes
//! (`system:nodes`) and everyone else get 403: a node must not read other nodes'
//! logs or run commands on them.
//!
//! Owns: the listener, its certificate, request parsing and the stream formats.
//! May call: `ContainerAccess` (the pod runtime's view of containers), the runtime's
//! exec helper (`runtime::exec`), `join` (certificates) and `pki` (client identities).

pub mod attach;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod spdy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use serde_json::json;
use tokio::net::TcpListener;

use super::join::{self, ServingCredentials};
use super::AgentConfig;
use crate::model::join::KUBELET_CLIENT_USER;
use crate::pki::Identity;
use crate::runtime::exec::{helper_command, ExecTarget};
use crate::runtime::ShimCommand;

/// The kubelet's port, where the API server looks when a Node does not say.
pub const DEFAULT_PORT: u16 = 10250;
/// How often the serving certificate is checked for renewal.
const RENEW_CHECK: Duration = Duration::from_secs(6 * 60 * 60);

/// What the kubelet API needs from the pod runtime.
pub trait ContainerAccess: Send + Sync + 'static {
    /// The CRI-format log file of a container of a pod on this node: the current run,
    /// or with `previous` the run before it. `None` if unknown.
    fn log_path(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<PathBuf>;
    /// How to enter the container, if it is running.
    fn exec_target(&self, namespace: &str, pod: &str, container: &str) -> Option<ExecTarget>;
    /// The state directory of the running container, whose shim serves attach
    /// (`runtime::attach`). `None`: attach is not available.
    fn attach_dir(&self, _namespace: &str, _pod: &str, _container: &str) -> Option<PathBuf> {
        None
    }
    /// The network namespace of a running pod (`/proc/<pid>/ns/net` of one of its
    /// containers), where port-forward connects. `None`: no running container.
    fn pod_network(&self, _namespace: &str, _pod: &str) -> Option<PathBuf> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("kubelet api: {0}")]
    Other(String),
    #[error("kubelet api: serving certificate: {0}")]
    Credentials(#[from] join::JoinError),
    #[error("kubelet api: listening on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("kubelet api: tls: {0}")]
    Tls(String),
}

/// Obtains the serving certificate, binds `config.node_ip:config.kubelet_port`, spawns
/// the server and returns once it listens.
pub async fn start(
    config: &AgentConfig,
    access: Arc<dyn ContainerAccess>,
) -> Result<(), KubeletError> {
    if config.kubelet_port == 0 {
        return Ok(());
    }
    let credentials = serving_credentials(config).await?;
    let resolver = Arc::new(CertResolver::new(&credentials)?);
    let tls = tls_config(&credentials.ca_pem, resolver.clone())?;
    let address = SocketAddr::new(config.node_ip, config.kubelet_port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| KubeletError::Bind { address, source })?;
    let helper =
        helper_command().map_err(|e| KubeletError::Other(format!("finding skiff: {e}")))?;
    tokio::spawn(renew_forever(config.clone(), resolver));
    tokio::spawn(serve(listener, tls, router(access, helper)));
    tracing::info!(%address, node = %config.node_name, "kubelet api listening");
    Ok(())
}

async fn serving_credentials(config: &AgentConfig) -> Result<ServingCredentials, KubeletError> {
    let dir = config.data_dir.join("agent").join("credentials");
    Ok(join::serving_credentials(
        &config.server,
        &config.token,
        &config.node_name,
        &[config.node_ip],
        &dir,
    )
    .await?)
}

/// Checks the certificate now and then; a renewed one replaces the live one.
async fn renew_forever(config: AgentConfig, resolver: Arc<CertResolver>) {
    loop {
        tokio::time::sleep(RENEW_CHECK).await;
        match serving_credentials(&config).await {
            Ok(credentials) if credentials.cert_pem != resolver.cert_pem() => {
                match resolver.replace(&credentials) {
                    Ok(()) => tracing::info!("kubelet api: serving certificate renewed"),
                    Err(e) => {
                        tracing::warn!(error = %e, "kubelet api: renewed certificate unusable")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "kubelet api: renewing the serving certificate"),
        }
    }
}

/// Serves the current certificate; renewal swaps it without a restart.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<(String, Arc<CertifiedKey>)>,
}

impl CertResolver {
    pub fn new(credentials: &ServingCredentials) -> Result<CertResolver, KubeletError> {
        let key = certified_key(credentials)?;
        Ok(CertResolver {
            current: RwLock::new((credentials.cert_pem.clone(), Arc::new(key))),
        })
    }

    pub fn replace(&self, credentials: &ServingCredentials) -> Result<(), KubeletError> {
        let key = certified_key(credentials)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            (credentials.cert_pem.clone(), Arc::new(key));
        Ok(())
    }

    fn cert_pem(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .clone(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn certified_key(credentials: &ServingCredentials) -> Result<CertifiedKey, KubeletError> {
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut credentials.key_pem.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| KubeletError::Tls("unreadable serving key".into()))?;
    CertifiedKey::from_der(pem_certs(&credentials.cert_pem), key, &provider())
        .map_err(|e| KubeletError::Tls(format!("loading the serving certificate: {e}")))
}

/// TLS for the kubelet API: the given certificate, HTTP/1.1 (WebSockets need it),
/// client certificates signed by `ca_pem` required.
pub fn tls_config(
    ca_pem: &str,
    certs: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, KubeletError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(ca_pem) {
        roots
            .add(cert)
            .map_err(|e| KubeletError::Tls(format!("cluster ca: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| KubeletError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| KubeletError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Who may call the kubelet API (see the module docs).
pub fn may_call(identity: &Identity) -> bool {
    identity.user == KUBELET_CLIENT_USER || identity.groups.iter().any(|g| g == "system:masters")
}

/// The verified client certificate's identity, per connection.
#[derive(Debug, Clone)]
struct Caller(Option<Identity>);

/// Accepts TLS connections and serves `router` on them (with upgrades, for exec).
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) {
    crate::serve::serve_with(listener, tls, router, Caller).await
}

#[derive(Clone)]
struct KubeletState {
    access: Arc<dyn ContainerAccess>,
    helper: ShimCommand,
}

/// The kubelet API's routes; `helper` starts the exec helper (`skiff nsexec`).
pub fn router(access: Arc<dyn ContainerAccess>, helper: ShimCommand) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec_handler))
        .route("/attach/{namespace}/{pod}/{container}", any(attach_handler))
        .route("/portForward/{namespace}/{pod}", any(port_forward_handler))
        .layer(middleware::from_fn(authorize))
        .with_state(KubeletState { access, helper })
}

async fn authorize(request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().cloned();
    match caller.and_then(|c| c.0) {
        Some(identity) if may_call(&identity) => next.run(request).await,
        Some(identity) => status_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "user {:?} may not use the kubelet api (path {})",
                identity.user,
                request.uri().path()
            ),
        ),
        None => status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"),
    }
}

/// A Kubernetes `Status` error response.
fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = (code, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(message: &str) -> Response {
    status_response(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn not_found(message: &str) -> Response {
    status_response(StatusCode::NOT_FOUND, "NotFound", message)
}

async fn container_logs(
    State(state): State<KubeletState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut options = match logs::LogOptions::parse(&query.unwrap_or_default(), chrono::Utc::now())
    {
        Ok(options) => options,
        Err(message) => return bad_request(&message),
    };
    let access = state.access.clone();
    let Some(path) = access.log_path(&namespace, &pod, &container, options.previous) else {
        let message = if options.previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} is not available")
        };
        return not_found(&message);
    };
    // The previous run's log is finished.
    options.follow &= !options.previous;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut send = |chunk: Bytes| {
            if chunk.is_empty() {
                !tx.is_closed()
            } else {
                tx.blocking_send(Ok(chunk)).is_ok()
            }
        };
        let mut still_writing = || {
            access
                .log_path(&namespace, &pod, &container, false)
                .as_deref()
                == Some(&path)
                && access.exec_target(&namespace, &pod, &container).is_some()
        };
        if let Err(e) = logs::stream_log(&path, &options, &mut send, &mut still_writing) {
            tracing::debug!(path = %path.display(), error = %e, "kubelet api: reading a log");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

async fn exec_handler(
    State(state): State<KubeletState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let options = match exec::ExecOptions::parse(&query.unwrap_or_default()) {
        Ok(options) => options,
        Err(message) => return bad_request(&message),
    };
    let Some(target) = state.access.exec_target(&namespace, &pod, &container) else {
        return not_found(&format!(
            "container {container:?} in pod {pod:?} is not running"
        ));
    };
    let upgrade = match streaming_upgrade(upgrade, "exec") {
        Ok(upgrade) => upgrade,
        Err(message) => return bad_request(&message),
    };
    let helper = state.helper.clone();
    upgrade.on_upgrade(move |socket| exec::session(socket, helper, target, options))
}

/// The WebSocket upgrade of an exec/attach (`verb`) stream with one of the channel
/// subprotocols selected, or the message of the 400 kubectl prints (SPDY, unknown
/// subprotocol).
fn streaming_upgrade(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    verb: &str,
) -> Result<WebSocketUpgrade, String> {
    let Ok(upgrade) = upgrade else {
        return Err(format!(
            "skiff serves {verb} over WebSocket only (v5.channel.k8s.io or v4.channel.k8s.io); \
             SPDY is not supported: use kubectl 1.30 or newer"
        ));
    };
    let upgrade = upgrade.protocols(exec::PROTOCOLS);
    if upgrade.selected_protocol().is_none() {
        return Err(format!(
            "unsupported {verb} subprotocol: expected one of {:?}",
            exec::PROTOCOLS
        ));
    }
    Ok(upgrade)
}

/// `/portForward/{namespace}/{pod}`: SPDY/3.1 after an HTTP upgrade, SPDY/3.1 in a
/// WebSocket, or the WebSocket channel protocol (`portforward`).
async fn port_forward_handler(
    State(state): State<KubeletState>,
    Path((namespace, pod)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let Some(netns) = state.access.pod_network(&namespace, &pod) else {
        return not_found(&format!(
            "pod {pod:?} in namespace {namespace:?} is not running"
        ));
    };
    let target = Arc::new(portforward::PodPorts {
        pod: format!("{namespace}/{pod}"),
        netns: Some(netns),
    });
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if upgrade == "spdy/3.1" {
        return spdy_upgrade(request, target);
    }
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(_) => {
            return bad_request(&format!(
                "port-forward needs an upgrade to SPDY/3.1 ({}) or a WebSocket ({} or {:?})",
                portforward::STREAM_PROTOCOL,
                portforward::SPDY_OVER_WEBSOCKET,
                portforward::CHANNEL_PROTOCOLS
            ))
        }
    };
    let mut protocols = vec![portforward::SPDY_OVER_WEBSOCKET];
    protocols.extend(portforward::CHANNEL_PROTOCOLS);
    let upgrade = upgrade.protocols(protocols);
    let tunnel = match upgrade.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(portforward::SPDY_OVER_WEBSOCKET) => None,
        Some(_) => match portforward::parse_ports(&query.unwrap_or_default()) {
            Ok(ports) => Some(ports),
            Err(message) => return bad_request(&message),
        },
        None => {
            return bad_request(&format!(
                "unsupported port-forward subprotocol: expected one of {:?}",
                [
                    portforward::SPDY_OVER_WEBSOCKET,
                    portforward::CHANNEL_PROTOCOLS[0],
                    portforward::CHANNEL_PROTOCOLS[1]
                ]
            ))
        }
    };
    upgrade.on_upgrade(move |socket| async move {
        use axum::extract::ws::Message;
        use futures::{SinkExt, StreamExt};
        let (mut sink, mut stream) = socket.split();
        let (in_tx, incoming) = tokio::sync::mpsc::channel::<Bytes>(16);
        let (outgoing, mut out_rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let writer = tokio::spawn(async move {
            while let Some(bytes) = out_rx.recv().await {
                if sink.send(Message::Binary(bytes)).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(exec::close_normal()).await;
            let _ = sink.close().await;
        });
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    // (Bytes clones share the buffer.)
                    Message::Binary(bytes) if in_tx.send(bytes.clone()).await.is_err() => return,
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        });
        match tunnel {
            None => portforward::spdy_session(incoming, outgoing, target).await,
            Some(ports) => portforward::channel_session(incoming, outgoing, target, ports).await,
        }
        reader.abort();
        let _ = writer.await;
    })
}

/// Port-forward over SPDY/3.1 on the upgraded connection itself.
fn spdy_upgrade(mut request: Request, target: Arc<portforward::PodPorts>) -> Response {
    let offered = request
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == portforward::STREAM_PROTOCOL);
    if !offered {
        return bad_request(&format!(
            "unable to upgrade: the client does not offer X-Stream-Protocol-Version {}",
            portforward::STREAM_PROTOCOL
        ));
    }
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let io = match upgraded.await {
            Ok(io) => hyper_util::rt::TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "port-forward: spdy upgrade failed");
                return;
            }
        };
        let (mut read, mut write) = tokio::io::split(io);
        let (in_tx, incoming) = tokio::sync::mpsc::channel::<Bytes>(16);
        let (outgoing, mut out_rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let writer = tokio::spawn(async move {
            while let Some(bytes) = out_rx.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = write.shutdown().await;
        });
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 || in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
            }
        });
        portforward::spdy_session(incoming, outgoing, target).await;
        reader.abort();
        let _ = writer.await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    headers.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(portforward::STREAM_PROTOCOL),
    );
    response
}

async fn attach_handler(
    State(state): State<KubeletState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let stdio = match attach::parse(&query.unwrap_or_default()) {
        Ok(stdio) => stdio,
        Err(message) => return bad_request(&message),
    };
    let Some(dir) = state.access.attach_dir(&namespace, &pod, &container) else {
        return not_found(&format!(
            "container {container:?} in pod {pod:?} is not running"
        ));
    };
    let shim = match crate::runtime::attach::AttachClient::connect(&dir).await {
        Ok(shim) => shim,
        Err(e) => {
            return status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("attaching to container {container:?} in pod {pod:?}: {e}"),
            )
        }
    };
    let upgrade = match streaming_upgrade(upgrade, "attach") {
        Ok(upgrade) => upgrade,
        Err(message) => return bad_request(&message),
    };
    upgrade.on_upgrade(move |socket| attach::session(socket, shim, stdio))
}

#[cfg(test)]
mod tests;
