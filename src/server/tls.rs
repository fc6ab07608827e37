//! The HTTPS listener: TLS handshakes (client certificates optional, verified against
//! the cluster CA), the caller's identity attached to every request, HTTP/1.1 and
//! HTTP/2 with upgrades (for exec and port-forward streams later).

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::auth::{PeerAddress, PeerIdentity};
use crate::pki;

pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) {
    serve_with(listener, tls, router, PeerIdentity).await
}

/// Accepts TLS connections and serves `router` on them (HTTP/1.1 and HTTP/2, with
/// upgrades), attaching `wrap(identity of the client certificate)` to every request
/// as an extension.
pub async fn serve_with<E>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    wrap: fn(Option<pki::Identity>) -> E,
) where
    E: Clone + Send + Sync + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls_stream = match acceptor.accept(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let identity = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| pki::client_identity(cert.as_ref()).ok());
            let service = TowerToHyperService::new(
                router
                    .layer(axum::Extension(wrap(identity)))
                    .layer(axum::Extension(PeerAddress(peer))),
            );
            let result = Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
