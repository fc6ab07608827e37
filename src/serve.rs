//! The HTTPS listener: TLS handshakes (client certificates optional, verified against
//! the cluster CA), the caller's identity attached to every request, HTTP/1.1 and
//! HTTP/2 with upgrades (for exec and port-forward streams).
//!
//! Guards against clients that hold connections without using them (slowloris):
//! - the TLS handshake must finish within [`HANDSHAKE_TIMEOUT`] (10 s);
//! - HTTP/1 request headers must arrive within [`HEADER_READ_TIMEOUT`] (this also
//!   bounds an idle keep-alive connection, hyper starts the clock at once);
//! - a connection with no request in flight for [`IDLE_TIMEOUT`] is shut down
//!   (gracefully: HTTP/2 gets a GOAWAY; a watch or exec stream is in flight);
//! - at most `ConnectionLimits::max_connections` are open, below the process's
//!   file-descriptor limit (see [`raise_fd_limit`]) so the database, watches and
//!   outgoing kubelet connections keep their descriptors. When full, the oldest
//!   connection that has not yet had one authenticated request answered is closed
//!   for the new one; if every open connection is established, the new one is
//!   refused. So a flood of idle connections delays nobody who completes a request.
//!
//! A panic while serving a request becomes a 500 Status (the connection lives on).
//!
//! Serves both the API server and each node's kubelet API, so it sits below both.
//! Owns: the listener, [`ConnectionLimits`], [`PeerAddress`]. May call: `pki` (the
//! identity in a client certificate); nothing else in skiff.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use futures::FutureExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::pki;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a gracefully closing idle connection may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Descriptors kept back from connections: the database, watches, CNI, outgoing
/// kubelet connections and the controllers' own clients.
const FD_RESERVE_MIN: u64 = 256;

/// How many connections, and how long each may idle.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// Limits for a process allowed `fd_limit` open files.
    pub fn for_fd_limit(fd_limit: u64) -> Self {
        let reserve = FD_RESERVE_MIN.max(fd_limit / 4);
        let max = fd_limit.saturating_sub(reserve).max(16);
        ConnectionLimits {
            max_connections: usize::try_from(max).unwrap_or(usize::MAX),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return rlimit_to_u64(hard),
            Err(e) => tracing::warn!(error = %e, soft, hard, "raising the open-file limit failed"),
        }
    }
    rlimit_to_u64(soft)
}

/// The process's soft `RLIMIT_NOFILE`.
pub fn fd_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| rlimit_to_u64(soft))
}

/// A limit as u64: `rlim_t` is 32 bits on armv7 glibc, where unlimited is `u32::MAX`.
#[allow(clippy::useless_conversion)] // u64 to u64 on 64-bit targets
fn rlimit_to_u64(limit: nix::sys::resource::rlim_t) -> u64 {
    if limit == nix::libc::RLIM_INFINITY {
        u64::MAX
    } else {
        u64::from(limit)
    }
}

/// The TCP peer of the request's connection, put on each request by [`serve_limited`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddress(pub std::net::SocketAddr);

/// [`serve_limited`] with limits from the current open-file limit.
pub async fn serve_with<E>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    wrap: fn(Option<pki::Identity>) -> E,
) where
    E: Clone + Send + Sync + 'static,
{
    let limits = ConnectionLimits::for_fd_limit(fd_limit());
    serve_limited(listener, tls, router, wrap, limits).await
}

/// Accepts TLS connections and serves `router` on them (HTTP/1.1 and HTTP/2, with
/// upgrades), attaching `wrap(identity of the client certificate)` to every request
/// as an extension.
pub async fn serve_limited<E>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    wrap: fn(Option<pki::Identity>) -> E,
    limits: ConnectionLimits,
) where
    E: Clone + Send + Sync + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let slots = Slots::new(limits.max_connections);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.admit() else {
            tracing::debug!(%peer, "connection limit reached: refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            acceptor: acceptor.clone(),
            router: router.clone(),
            slot: Arc::new(slot),
            limits,
        };
        tokio::spawn(async move {
            connection.run(stream, peer, wrap).await;
        });
    }
}

/// One accepted connection and what it may use.
struct Connection {
    acceptor: TlsAcceptor,
    router: Router,
    slot: Arc<Slot>,
    limits: ConnectionLimits,
}

impl Connection {
    async fn run<E>(
        self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        wrap: fn(Option<pki::Identity>) -> E,
    ) where
        E: Clone + Send + Sync + 'static,
    {
        let handshake =
            tokio::time::timeout(self.limits.handshake_timeout, self.acceptor.accept(stream));
        let tls_stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            _ = self.slot.evicted.notified() => return,
        };
        let identity = tls_stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| pki::client_identity(cert.as_ref()).ok());
        let router = self
            .router
            .layer(axum::Extension(wrap(identity)))
            .layer(axum::Extension(PeerAddress(peer)));
        let activity = Arc::new(Activity::new(self.slot.clone()));
        let service = request_service::<Incoming>(router, activity.clone());
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(tls_stream),
            TowerToHyperService::new(service),
        );
        tokio::pin!(conn);
        let mut check = tokio::time::interval(self.limits.idle_timeout / 3);
        let mut closing_since: Option<Instant> = None;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.slot.evicted.notified() => {
                    tracing::debug!(%peer, "connection closed for a newer one (limit reached)");
                    return;
                }
                _ = check.tick() => {
                    if let Some(since) = closing_since {
                        if since.elapsed() >= CLOSE_GRACE && activity.in_flight() == 0 {
                            return;
                        }
                    } else if activity.idle_for() >= self.limits.idle_timeout {
                        tracing::debug!(%peer, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing_since = Some(Instant::now());
                    }
                }
            }
        }
    }
}

/// The router as a per-connection service: tracks requests in flight, marks the
/// connection established after its first authenticated answer, and turns a panic
/// into a 500 Status.
fn request_service<B>(
    router: Router,
    activity: Arc<Activity>,
) -> impl tower::Service<Request<B>, Response = Response<Body>, Error = Infallible, Future = impl Send>
       + Clone
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    tower::service_fn(move |request: Request<B>| {
        let router = router.clone();
        let activity = activity.clone();
        async move {
            let guard = activity.start();
            let served = AssertUnwindSafe(router.oneshot(request))
                .catch_unwind()
                .await;
            let response = match served {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(panic) => {
                    let what = panic_message(&panic);
                    tracing::error!(panic = %what, "a request handler panicked");
                    internal_error(&format!("the server failed serving this request: {what}"))
                }
            };
            if response.status() != StatusCode::UNAUTHORIZED {
                activity.slot.establish();
            }
            let (parts, body) = response.into_parts();
            let body = Body::new(Tracked {
                inner: body,
                _guard: guard,
            });
            Ok::<_, Infallible>(Response::from_parts(parts, body))
        }
    })
}

/// A Kubernetes `Status` for a 500, as the API's own errors look.
fn internal_error(message: &str) -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    });
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, status.to_string()).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Requests in flight on one connection and when it was last used.
struct Activity {
    slot: Arc<Slot>,
    started: Instant,
    in_flight: AtomicUsize,
    last_used_ms: AtomicU64,
}

impl Activity {
    fn new(slot: Arc<Slot>) -> Self {
        Activity {
            slot,
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_used_ms.store(now, Ordering::Relaxed);
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// How long nothing has been in flight (zero while something is).
    fn idle_for(&self) -> Duration {
        if self.in_flight() > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// One request in flight until its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight.
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections, and which of them may be closed for a newer one.
struct Slots {
    max: usize,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    open: usize,
    next_id: u64,
    /// Connections without an authenticated request yet, oldest first.
    unproven: BTreeMap<u64, Arc<Notify>>,
}

impl Slots {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Slots {
            max,
            state: Mutex::new(SlotState::default()),
        })
    }

    /// A slot for a new connection: free, or taken from the oldest unproven one.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.open >= self.max {
            let (_, oldest) = state.unproven.pop_first()?;
            oldest.notify_one();
        }
        state.open += 1;
        state.next_id += 1;
        let id = state.next_id;
        let evicted = Arc::new(Notify::new());
        state.unproven.insert(id, evicted.clone());
        Some(Slot {
            slots: self.clone(),
            id,
            evicted,
        })
    }
}

/// One connection's place; freed on drop.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evicted: Arc<Notify>,
}

impl Slot {
    /// The connection had an authenticated request answered: it is kept.
    fn establish(&self) {
        let mut state = self.slots.state.lock().unwrap_or_else(|e| e.into_inner());
        state.unproven.remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open -= 1;
        state.unproven.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_closes_the_oldest_unproven_connection() {
        let slots = Slots::new(2);
        let first = slots.admit().unwrap();
        let second = slots.admit().unwrap();
        second.establish();
        let third = slots.admit().expect("the oldest unproven one makes room");
        assert!(first.evicted.notified().now_or_never().is_some());
        third.establish();
        assert!(
            slots.admit().is_none(),
            "all established: a new one is refused"
        );
        drop(first);
        assert!(slots.admit().is_none(), "still two open");
        drop(second);
        assert!(slots.admit().is_some());
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_a_status() {
        let router = Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                if true {
                    panic!("boom");
                }
                "never"
            }),
        );
        let slots = Slots::new(4);
        let activity = Arc::new(Activity::new(Arc::new(slots.admit().unwrap())));
        let service = request_service::<Body>(router, activity.clone());
        let request = Request::get("/boom").body(Body::empty()).unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], 500);
        assert_eq!(activity.in_flight(), 0, "the request is over");
    }

    #[test]
    fn limits_keep_a_reserve_of_descriptors() {
        let small = ConnectionLimits::for_fd_limit(1024);
        assert_eq!(small.max_connections, 768);
        let large = ConnectionLimits::for_fd_limit(1 << 20);
        assert_eq!(large.max_connections, (1 << 20) - (1 << 18));
    }
}
