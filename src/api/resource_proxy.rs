//! The `proxy` subresources, as kube-apiserver serves them: any verb on
//!
//! - `/api/v1/namespaces/{ns}/pods/{[scheme:]name[:port]}/proxy/{path}`: to the pod's
//!   IP (`status.podIP`) at `port` (a number or a container port's name; default the
//!   first declared container port, else 80);
//! - `/api/v1/namespaces/{ns}/services/{[scheme:]name[:port]}/proxy/{path}`: to a ready
//!   address of the service's `Endpoints`, on the endpoint port whose name is `port`
//!   (a service port's number selects that port's name; none: the unnamed port);
//! - `/api/v1/nodes/{name}[:port]/proxy/{path}`: to the node's kubelet API over HTTPS
//!   with the API server's kubelet client certificate (`proxy::Kubelet`); another port
//!   is plain HTTP (or `https:`) to the node's `InternalIP`.
//!
//! `scheme` is `http` (default) or `https`; pods and services behind `https` are not
//! verified, as upstream. The path after `/proxy` and the query go to the target as
//! they are; request and response bodies stream; hop-by-hop headers, `Host` and
//! `Authorization` stay behind. WebSocket upgrades are not relayed.
//!
//! Owns: locating proxy targets and relaying plain HTTP to them.
//! May call: the store (pods, services, endpoints, nodes) and `proxy` (kubelet TLS).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

use super::proxy::{self, kubelet_endpoint};
use super::status::ApiError;
use super::SharedState;

/// How long reaching a proxy target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers that belong to one connection and are not passed on.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// What a proxy path addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Service,
    Node,
}

/// A parsed proxy request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPath {
    pub kind: Kind,
    pub namespace: Option<String>,
    /// `[scheme:]name[:port]` as given.
    pub id: String,
    /// What follows `/proxy` (may be empty).
    pub rest: String,
}

/// `Some` when `path` (undecoded, as requested) is a proxy subresource path.
pub fn parse_path(path: &str) -> Option<ProxyPath> {
    let tail = path.strip_prefix("/api/v1/")?;
    let (kind, namespace, after) = if let Some(nodes) = tail.strip_prefix("nodes/") {
        (Kind::Node, None, nodes)
    } else {
        let in_ns = tail.strip_prefix("namespaces/")?;
        let (ns, after_ns) = in_ns.split_once('/')?;
        let (plural, after) = after_ns.split_once('/')?;
        let kind = match plural {
            "pods" => Kind::Pod,
            "services" => Kind::Service,
            _ => return None,
        };
        (kind, Some(ns.to_string()), after)
    };
    let (id, sub) = after.split_once('/')?;
    let rest = match sub.strip_prefix("proxy")? {
        "" => "",
        rest if rest.starts_with('/') => rest,
        _ => return None,
    };
    if id.is_empty() || namespace.as_deref() == Some("") {
        return None;
    }
    Some(ProxyPath {
        kind,
        namespace,
        id: percent_decode(id),
        rest: rest.to_string(),
    })
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// `[scheme:]name[:port]` split as upstream's `SplitSchemeNamePort`.
pub fn split_id(id: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https"))
        .then(|| (scheme.to_string(), name.to_string(), port.to_string()))
}

/// How the target is reached.
enum Transport {
    Plain,
    /// TLS without verification (pods and services behind `https:`).
    Unverified,
    /// The node's kubelet, with the API server's client certificate.
    Kubelet(Arc<rustls::ClientConfig>),
}

struct Target {
    address: IpAddr,
    port: u16,
    transport: Transport,
    /// For messages: `pod default/web`.
    what: String,
}

/// Serves one proxy request.
pub async fn serve(state: SharedState, path: ProxyPath, request: Request) -> Response {
    match locate(&state, &path).await {
        Ok(target) => match forward(&target, &path.rest, request).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn locate(state: &SharedState, path: &ProxyPath) -> Result<Target, ApiError> {
    let (scheme, name, port) = split_id(&path.id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid request {:?}", path.id)))?;
    let ns = path.namespace.as_deref();
    match path.kind {
        Kind::Pod => {
            let pod = proxy::read(state, "pods", ns, &name).await?;
            pod_target(&pod, &scheme, &name, &port)
        }
        Kind::Service => {
            let service = proxy::read(state, "services", ns, &name).await?;
            let endpoints = proxy::read(state, "endpoints", ns, &name).await.ok();
            service_target(&service, endpoints.as_ref(), &scheme, &name, &port)
        }
        Kind::Node => {
            let node = proxy::read(state, "nodes", None, &name).await?;
            let (address, kubelet_port) = kubelet_endpoint(&node).ok_or_else(|| {
                ApiError::unavailable(format!("node {name} reports no InternalIP"))
            })?;
            let port = if port.is_empty() {
                kubelet_port
            } else {
                port.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid port {port:?}")))?
            };
            let transport = if port == kubelet_port && scheme != "http" {
                Transport::Kubelet(state.kubelet_client.tls(state)?)
            } else {
                transport_for(&scheme)
            };
            Ok(Target {
                address,
                port,
                transport,
                what: format!("node {name}"),
            })
        }
    }
}

fn transport_for(scheme: &str) -> Transport {
    if scheme == "https" {
        Transport::Unverified
    } else {
        Transport::Plain
    }
}

fn container_ports(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("ports").and_then(Value::as_array))
        .flatten()
}

/// The pod's address and port (see the module docs).
fn pod_target(pod: &Value, scheme: &str, name: &str, port: &str) -> Result<Target, ApiError> {
    let address = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| ApiError::unavailable(format!("pod {name} has no IP address yet")))?;
    let number = |p: &Value| {
        p.get("containerPort")
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
    };
    let port = if port.is_empty() {
        container_ports(pod).find_map(number).unwrap_or(80)
    } else if let Ok(n) = port.parse::<u16>() {
        n
    } else {
        container_ports(pod)
            .find(|p| p.get("name").and_then(Value::as_str) == Some(port))
            .and_then(number)
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {name} has no container port named {port:?}"))
            })?
    };
    Ok(Target {
        address,
        port,
        transport: transport_for(scheme),
        what: format!("pod {name}"),
    })
}

/// A ready endpoint of the service on the named port (see the module docs).
fn service_target(
    service: &Value,
    endpoints: Option<&Value>,
    scheme: &str,
    name: &str,
    port: &str,
) -> Result<Target, ApiError> {
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<u64>() {
        let ports = service.pointer("/spec/ports").and_then(Value::as_array);
        let found = ports
            .into_iter()
            .flatten()
            .find(|p| p.get("port").and_then(Value::as_u64) == Some(number))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "no service port {number} found for service {name:?}"
                ))
            })?;
        port_name = found
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
    }
    let subsets = endpoints
        .and_then(|e| e.get("subsets"))
        .and_then(Value::as_array);
    let mut candidates = Vec::new();
    for subset in subsets.into_iter().flatten() {
        let port = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|n| u16::try_from(n).ok());
        let Some(port) = port else { continue };
        let addresses = subset.get("addresses").and_then(Value::as_array);
        for address in addresses.into_iter().flatten() {
            if let Some(ip) = address
                .get("ip")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            {
                candidates.push((ip, port));
            }
        }
    }
    if candidates.is_empty() {
        return Err(ApiError::unavailable(format!(
            "no endpoints available for service {name:?}"
        )));
    }
    let pick = rand::random::<u64>() as usize % candidates.len();
    let (address, port) = candidates[pick];
    Ok(Target {
        address,
        port,
        transport: transport_for(scheme),
        what: format!("service {name}"),
    })
}

impl Target {
    fn unreachable(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::unavailable(format!(
            "error trying to reach {} at {}: {e}",
            self.what,
            SocketAddr::new(self.address, self.port)
        ))
    }

    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Body>, ApiError> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((self.address, self.port))
                .await
                .map_err(|e| self.unreachable(e))?;
            let _ = tcp.set_nodelay(true);
            let tls = match &self.transport {
                Transport::Plain => return handshake(TokioIo::new(tcp)).await,
                Transport::Unverified => unverified_tls(),
                Transport::Kubelet(config) => config.clone(),
            };
            let name = ServerName::IpAddress(self.address.into());
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| self.unreachable(e))?;
            handshake(TokioIo::new(stream)).await
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| self.unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| self.unreachable(e.message))
    }
}

async fn handshake<S>(
    io: TokioIo<S>,
) -> Result<hyper::client::conn::http1::SendRequest<Body>, ApiError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Copies end-to-end headers.
fn end_to_end(from: &HeaderMap, to: &mut HeaderMap, drop_auth: bool) {
    let listed: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        let lower = name.as_str();
        let skip = HOP_BY_HOP.contains(&lower)
            || listed.iter().any(|l| l == lower)
            || (drop_auth && lower == "authorization");
        if !skip {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The target's path: what followed `/proxy` (at least `/`), and the query.
fn target_uri(rest: &str, query: Option<&str>) -> Result<Uri, ApiError> {
    let path = if rest.is_empty() { "/" } else { rest };
    let text = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    };
    text.parse()
        .map_err(|e| ApiError::bad_request(format!("invalid proxy path {text:?}: {e}")))
}

async fn forward(target: &Target, rest: &str, request: Request) -> Result<Response, ApiError> {
    let uri = target_uri(rest, request.uri().query())?;
    let (parts, body) = request.into_parts();
    let mut outgoing = hyper::Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = uri;
    end_to_end(&parts.headers, outgoing.headers_mut(), true);
    let authority = SocketAddr::new(target.address, target.port).to_string();
    if let Ok(host) = HeaderValue::from_str(&authority) {
        outgoing.headers_mut().insert(header::HOST, host);
    }
    let mut sender = target.connect().await?;
    let response = sender
        .send_request(outgoing)
        .await
        .map_err(|e| target.unreachable(e))?;
    let (parts, body) = response.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    end_to_end(&parts.headers, out.headers_mut(), false);
    Ok(out)
}

/// TLS that accepts any server certificate (upstream does not verify pods either).
fn unverified_tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(crate::pki::insecure::NoVerification(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn proxy_paths_are_recognised() {
        let p = parse_path("/api/v1/namespaces/ns/pods/web:8080/proxy/a/b").expect("pod");
        assert_eq!(
            (
                p.kind,
                p.namespace.as_deref(),
                p.id.as_str(),
                p.rest.as_str()
            ),
            (Kind::Pod, Some("ns"), "web:8080", "/a/b")
        );
        let p = parse_path("/api/v1/namespaces/ns/services/https:s:443/proxy").expect("svc");
        assert_eq!(
            (p.kind, p.id.as_str(), p.rest.as_str()),
            (Kind::Service, "https:s:443", "")
        );
        let p = parse_path("/api/v1/nodes/n1/proxy/healthz").expect("node");
        assert_eq!(
            (p.kind, p.namespace, p.rest.as_str()),
            (Kind::Node, None, "/healthz")
        );
        let p = parse_path("/api/v1/namespaces/ns/pods/web%3A80/proxy/").expect("encoded");
        assert_eq!((p.id.as_str(), p.rest.as_str()), ("web:80", "/"));
        assert_eq!(parse_path("/api/v1/namespaces/ns/pods/web/log"), None);
        assert_eq!(parse_path("/api/v1/namespaces/ns/pods/web/proxyx"), None);
        assert_eq!(
            parse_path("/api/v1/namespaces/ns/configmaps/c/proxy/"),
            None
        );
        assert_eq!(
            parse_path("/apis/apps/v1/namespaces/ns/pods/web/proxy/"),
            None
        );
    }

    #[test]
    fn ids_split_like_upstream() {
        let s = |a: &str, b: &str, c: &str| Some((a.into(), b.into(), c.into()));
        assert_eq!(split_id("web"), s("", "web", ""));
        assert_eq!(split_id("web:80"), s("", "web", "80"));
        assert_eq!(split_id("https:web:"), s("https", "web", ""));
        assert_eq!(split_id("ftp:web:21"), None);
        assert_eq!(split_id(":80"), None);
        assert_eq!(split_id("a:b:c:d"), None);
    }

    #[test]
    fn pod_ports_by_number_name_or_first_declared() {
        let pod = json!({"spec": {"containers": [
            {"name": "a"},
            {"name": "b", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]},
        ]}, "status": {"podIP": "10.42.0.7"}});
        let port = |p: &str| pod_target(&pod, "", "web", p).map(|t| t.port);
        assert_eq!(port("").expect("first"), 8080);
        assert_eq!(port("9000").expect("number"), 9000);
        assert_eq!(port("http").expect("name"), 8080);
        assert_eq!(port("nope").expect_err("unknown").code, 400);
        let pending = json!({"spec": {"containers": [{"name": "a"}]}, "status": {}});
        assert_eq!(
            pod_target(&pending, "", "p", "").err().map(|e| e.code),
            Some(503)
        );
    }

    #[test]
    fn services_pick_a_ready_endpoint_on_the_named_port() {
        let service = json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9100}]}});
        let endpoints = json!({"subsets": [{
            "addresses": [{"ip": "10.42.0.9"}],
            "notReadyAddresses": [{"ip": "10.42.0.10"}],
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9101}],
        }]});
        let pick = |p: &str| {
            service_target(&service, Some(&endpoints), "", "s", p)
                .map(|t| (t.address.to_string(), t.port))
        };
        assert_eq!(pick("http").expect("name"), ("10.42.0.9".into(), 8080));
        assert_eq!(pick("9100").expect("number"), ("10.42.0.9".into(), 9101));
        assert_eq!(pick("81").expect_err("no such port").code, 400);
        assert_eq!(pick("").expect_err("no unnamed port").code, 503);
        let none = service_target(&service, None, "", "s", "http");
        assert_eq!(none.err().map(|e| e.code), Some(503));
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut from = HeaderMap::new();
        from.insert("connection", HeaderValue::from_static("close, x-private"));
        from.insert("x-private", HeaderValue::from_static("1"));
        from.insert("authorization", HeaderValue::from_static("Bearer t"));
        from.insert("accept", HeaderValue::from_static("text/html"));
        from.insert("host", HeaderValue::from_static("api:6443"));
        let mut to = HeaderMap::new();
        end_to_end(&from, &mut to, true);
        assert_eq!(to.len(), 1);
        assert_eq!(to["accept"], "text/html");
        assert_eq!(
            target_uri("", Some("a=1")).expect("uri").to_string(),
            "/?a=1"
        );
        assert_eq!(target_uri("/x/y", None).expect("uri").to_string(), "/x/y");
    }
}
