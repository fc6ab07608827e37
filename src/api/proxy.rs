//! `pods/{name}/log`, `pods/{name}/exec`, `pods/{name}/attach` and
//! `pods/{name}/portforward`: the API server passes them on to the kubelet API of the pod's node (`agent::kubelet`) and relays
//! the answer.
//!
//! The pod gives the node (`spec.nodeName`; 400 "does not have a host assigned"
//! before scheduling) and the container (`container`, else the
//! `kubectl.kubernetes.io/default-container` annotation, else the only one; 400 with
//! the choices otherwise). The Node gives the address (its `InternalIP`) and port
//! (`status.daemonEndpoints.kubeletEndpoint.Port`, default 10250).
//!
//! The connection is TLS that trusts only the cluster CA (the kubelet's serving
//! certificate must name the node's IP) and presents the API server's own client
//! certificate, `CN=system:kube-apiserver-kubelet-client, O=system:masters`, which
//! the credential issuer makes on first use and again before it expires.
//!
//! Logs relay as a streamed `text/plain` body (chunked while following). Exec is
//! relayed below the WebSocket: the client's upgrade request goes to the kubelet as
//! it is (its key, version and subprotocol), and once both sides switched protocols
//! the bytes are copied both ways, so framing, pings and the exit status pass
//! untouched (attach the same way; port-forward too, whether the upgrade is a
//! WebSocket or SPDY/3.1, and without a container). A kubelet answer other than 101 (such as the 400 for kubectl's SPDY
//! fallback) is relayed as it is.
//!
//! Owns: the API server's kubelet client certificate and connections to kubelets.
//! May call: the store (pods, nodes), the credential issuer.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use super::resources;
use super::status::ApiError;
use super::{object, SharedState};

/// The kubelet port when a Node reports none.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// The annotation naming the container `kubectl logs` and `exec` default to.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// How long reaching a kubelet may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The client certificate is made again when it has less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Request headers an upgrade needs at the kubelet.
const UPGRADE_HEADERS: [&str; 7] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// The subresources served here.
pub fn handles(subresource: &str) -> bool {
    matches!(subresource, "log" | "exec" | "attach" | "portforward")
}

/// The TLS client configuration for kubelets, made once per certificate.
#[derive(Default)]
pub struct KubeletClient {
    current: Mutex<Option<ClientTls>>,
}

#[derive(Clone)]
struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    not_after: i64,
}

impl KubeletClient {
    /// The TLS configuration, with a client certificate fresh from `state`'s issuer.
    pub(crate) fn tls(&self, state: &SharedState) -> Result<Arc<rustls::ClientConfig>, ApiError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = chrono::Utc::now().timestamp();
        if let Some(tls) = current.as_ref() {
            if tls.not_after - now > RENEW_BEFORE.as_secs() as i64 {
                return Ok(tls.config.clone());
            }
        }
        let issuer = state
            .issuer
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("this server has no CA to reach kubelets with"))?;
        let (cert, key) = issuer
            .issue_kubelet_client_cert()
            .map_err(|e| ApiError::internal(format!("kubelet client certificate: {e}")))?;
        let config = client_config(&issuer.ca_pem(), &cert, &key).map_err(ApiError::internal)?;
        let tls = ClientTls {
            config: Arc::new(config),
            not_after: not_after(&cert).unwrap_or(now),
        };
        *current = Some(tls.clone());
        Ok(tls.config)
    }
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn not_after(cert_pem: &str) -> Option<i64> {
    let der = pem_certs(cert_pem).into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// TLS trusting only `ca_pem` and presenting (`cert_pem`, `key_pem`), HTTP/1.1.
pub fn client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(ca_pem) {
        roots.add(cert).map_err(|e| format!("cluster ca: {e}"))?;
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .ok()
        .flatten()
        .ok_or("unreadable client key")?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(pem_certs(cert_pem), key)
        .map_err(|e| format!("client certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `pods/{name}/{subresource}` (see [`handles`]).
pub async fn serve(
    state: SharedState,
    namespace: String,
    name: String,
    subresource: String,
    request: Request,
) -> Response {
    match proxy(&state, &namespace, &name, &subresource, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn proxy(
    state: &SharedState,
    namespace: &str,
    name: &str,
    subresource: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let allowed = match subresource {
        "log" => request.method() == Method::GET,
        _ => matches!(*request.method(), Method::GET | Method::POST),
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            request.method()
        )));
    }
    let pod = read(state, "pods", Some(namespace), name).await?;
    let query = request.uri().query().unwrap_or("").to_string();
    // Port-forward reaches the pod's network, not a container.
    let container = if subresource == "portforward" {
        String::new()
    } else {
        choose_container(&pod, name, container_param(&query).as_deref())?
    };
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let node = read(state, "nodes", None, node_name).await?;
    let (address, port) = kubelet_endpoint(&node)
        .ok_or_else(|| ApiError::internal(format!("node {node_name} reports no InternalIP")))?;
    let path = match subresource {
        "portforward" => format!("/portForward/{namespace}/{name}?{query}"),
        _ => {
            let route = match subresource {
                "log" => "containerLogs",
                "attach" => "attach",
                _ => "exec",
            };
            format!(
                "/{route}/{namespace}/{name}/{container}?{}",
                without_container(&query)
            )
        }
    };
    let tls = state.kubelet_client.tls(state)?;
    let target = Kubelet {
        node: node_name.to_string(),
        address,
        port,
        tls,
    };
    if subresource == "log" {
        relay_log(&target, &path).await
    } else {
        relay_upgrade(&target, &path, request).await
    }
}

pub(crate) async fn read(
    state: &SharedState,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let resource = resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("no resource {plural}")))?;
    let entry = state
        .store
        .get(&resource.key(namespace, name))
        .await
        .map_err(|e| ApiError::from_store(e, resource, name))?
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    object::from_entry(&entry)
        .map_err(|e| ApiError::internal(format!("stored object {name} is unreadable: {e}")))
}

fn container_param(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The query minus `container` (it is part of the kubelet's path).
fn without_container(query: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "container" {
            out.append_pair(&key, &value);
        }
    }
    out.finish()
}

/// The container a request is about, as Kubernetes picks it.
pub fn choose_container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let others = [names("initContainers"), names("ephemeralContainers")].concat();
    if let Some(asked) = asked {
        if containers.iter().chain(&others).any(|c| c == asked) {
            return Ok(asked.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {asked} is not valid for pod {name}"
        )));
    }
    let annotated = object::metadata(pod)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|c| containers.iter().any(|n| n == c));
    if let Some(container) = annotated {
        return Ok(container.to_string());
    }
    match containers.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(ApiError::bad_request(format!(
            "pod {name} has no containers"
        ))),
        many => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            many.join(" ")
        ))),
    }
}

/// A node's kubelet address: its `InternalIP` and reported port.
pub fn kubelet_endpoint(node: &Value) -> Option<(IpAddr, u16)> {
    let addresses = node.pointer("/status/addresses")?.as_array()?;
    let ip = addresses
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .filter_map(|a| a.get("address")?.as_str()?.parse().ok())
        .next()?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((ip, port))
}

/// Where and how to reach one kubelet.
pub struct Kubelet {
    pub node: String,
    pub address: IpAddr,
    pub port: u16,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Kubelet {
    fn unreachable(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::internal(format!(
            "reaching the kubelet of node {} at {}: {e}",
            self.node,
            self.authority()
        ))
    }

    fn authority(&self) -> String {
        std::net::SocketAddr::new(self.address, self.port).to_string()
    }

    /// An HTTP/1.1 connection (upgrades allowed) to the kubelet.
    pub async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Body>, ApiError> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((self.address, self.port))
                .await
                .map_err(|e| self.unreachable(e))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::IpAddress(self.address.into());
            tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| self.unreachable(e))
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| self.unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))??;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e))?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        Ok(sender)
    }

    /// Sends one request (`headers` copied onto it) and returns the answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ApiError> {
        let mut sender = self.connect().await?;
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.authority());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| self.unreachable(e))
    }
}

/// Relays a log: the body streams through as it arrives.
async fn relay_log(kubelet: &Kubelet, path: &str) -> Result<Response, ApiError> {
    let response = kubelet.send(Method::GET, path, &HeaderMap::new()).await?;
    Ok(relayed(response))
}

/// The kubelet's answer as the client's, body streamed.
fn relayed(response: hyper::Response<hyper::body::Incoming>) -> Response {
    let (parts, body) = response.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    if let Some(value) = parts.headers.get(header::CONTENT_TYPE) {
        out.headers_mut()
            .insert(header::CONTENT_TYPE, value.clone());
    }
    out
}

/// Relays an upgrade request (WebSocket exec); once both sides switched protocols,
/// bytes flow both ways untouched.
async fn relay_upgrade(
    kubelet: &Kubelet,
    path: &str,
    mut request: Request,
) -> Result<Response, ApiError> {
    let mut headers = HeaderMap::new();
    for name in UPGRADE_HEADERS {
        for value in request.headers().get_all(name) {
            headers.append(HeaderName::from_static(name), value.clone());
        }
    }
    let method = request.method().clone();
    let response = kubelet.send(method, path, &headers).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(relayed(response));
    }
    let client_upgrade = hyper::upgrade::on(&mut request);
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in response.headers() {
        let keep = matches!(
            name.as_str(),
            "connection"
                | "upgrade"
                | "sec-websocket-accept"
                | "sec-websocket-protocol"
                | "sec-websocket-extensions"
                | "x-stream-protocol-version"
        );
        if keep {
            answer.headers_mut().append(name, value.clone());
        }
    }
    let node = kubelet.node.clone();
    tokio::spawn(async move {
        let (client, upstream) =
            match tokio::try_join!(client_upgrade, hyper::upgrade::on(response)) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(%node, error = %e, "exec: upgrade failed");
                    return;
                }
            };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%node, error = %e, "exec: relay ended");
        }
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn containers_are_chosen_like_kubernetes() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "init"}],
        }});
        assert_eq!(choose_container(&pod, "p", Some("b")).expect("b"), "b");
        assert_eq!(
            choose_container(&pod, "p", Some("init")).expect("init"),
            "init"
        );
        let err = choose_container(&pod, "p", None).expect_err("ambiguous");
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        let err = choose_container(&pod, "p", Some("c")).expect_err("unknown");
        assert_eq!(err.message, "container c is not valid for pod p");
        let mut annotated = pod.clone();
        annotated["metadata"]["annotations"] = json!({DEFAULT_CONTAINER_ANNOTATION: "b"});
        assert_eq!(choose_container(&annotated, "p", None).expect("b"), "b");
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(choose_container(&single, "p", None).expect("only"), "only");
    }

    #[test]
    fn kubelet_endpoints_come_from_the_node() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}},
        }});
        assert_eq!(
            kubelet_endpoint(&node),
            Some(("10.0.0.5".parse().expect("ip"), 10251))
        );
        let bare = json!({"status": {"addresses": [{"type": "InternalIP", "address": "::1"}]}});
        assert_eq!(
            kubelet_endpoint(&bare),
            Some(("::1".parse().expect("ip"), DEFAULT_KUBELET_PORT))
        );
        assert_eq!(kubelet_endpoint(&json!({"status": {}})), None);
    }

    #[test]
    fn queries_pass_on_without_the_container() {
        assert_eq!(
            without_container("command=sh&container=c&command=-c&command=echo+%24X&stdout=true"),
            "command=sh&command=-c&command=echo+%24X&stdout=true"
        );
        assert_eq!(
            container_param("follow=true&container=web"),
            Some("web".into())
        );
        assert_eq!(container_param("container="), None);
    }
}
