//! Container probes: liveness, readiness and startup, by `httpGet`, `tcpSocket` or
//! `exec`, with the kubelet's timing (`initialDelaySeconds`, `periodSeconds`,
//! `timeoutSeconds`) and thresholds (`successThreshold`, `failureThreshold`).
//!
//! One task per probe and container run. Results go to shared flags (ready,
//! started) and, for a liveness failure, to the pod worker, which restarts the
//! container. May call: the container's network address, `runtime::exec`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::runtime::exec::ExecTarget;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// What probes tell the pod worker.
#[derive(Debug, Clone)]
pub enum Report {
    /// A probe failed (an `Unhealthy` event).
    Failed {
        container: String,
        kind: Kind,
        message: String,
    },
    /// Liveness (or startup) failed `failureThreshold` times: restart the container.
    Restart {
        container: String,
        container_id: String,
        kind: Kind,
    },
}

/// The probe results of one container run.
#[derive(Debug, Default)]
pub struct Flags {
    pub ready: AtomicBool,
    pub started: AtomicBool,
}

/// Where a container's probes connect and exec.
#[derive(Clone)]
pub struct Target {
    pub container: Container,
    pub container_id: String,
    pub ip: IpAddr,
    pub exec: ExecTarget,
}

/// Starts the container's probes; dropping the returned handles stops them.
pub fn start(
    target: Target,
    flags: Arc<Flags>,
    reports: mpsc::UnboundedSender<Report>,
) -> Vec<tokio::task::AbortHandle> {
    let c = &target.container;
    if c.startup_probe.is_none() {
        flags.started.store(true, Ordering::Relaxed);
    }
    if c.readiness_probe.is_none() {
        flags.ready.store(true, Ordering::Relaxed);
    }
    let probes = [
        (Kind::Startup, c.startup_probe.clone()),
        (Kind::Liveness, c.liveness_probe.clone()),
        (Kind::Readiness, c.readiness_probe.clone()),
    ];
    probes
        .into_iter()
        .filter_map(|(kind, probe)| {
            let probe = probe?;
            let task = tokio::spawn(run(
                kind,
                probe,
                target.clone(),
                flags.clone(),
                reports.clone(),
            ));
            Some(task.abort_handle())
        })
        .collect()
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(0) as u64)
}

async fn run(
    kind: Kind,
    probe: Probe,
    target: Target,
    flags: Arc<Flags>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let period = seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    tokio::time::sleep(seconds(probe.initial_delay_seconds, 0)).await;
    let (mut successes, mut failures) = (0, 0);
    let name = target.container.name.clone();
    loop {
        // Liveness and readiness wait for the startup probe.
        if kind == Kind::Startup || flags.started.load(Ordering::Relaxed) {
            match check(&probe, &target, timeout).await {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    if successes >= success_threshold {
                        match kind {
                            Kind::Readiness => flags.ready.store(true, Ordering::Relaxed),
                            Kind::Startup => {
                                flags.started.store(true, Ordering::Relaxed);
                                return;
                            }
                            Kind::Liveness => {}
                        }
                    }
                }
                Err(message) => {
                    successes = 0;
                    failures += 1;
                    let _ = reports.send(Report::Failed {
                        container: name.clone(),
                        kind,
                        message,
                    });
                    if failures >= failure_threshold {
                        match kind {
                            Kind::Readiness => flags.ready.store(false, Ordering::Relaxed),
                            Kind::Liveness | Kind::Startup => {
                                let _ = reports.send(Report::Restart {
                                    container: name.clone(),
                                    container_id: target.container_id.clone(),
                                    kind,
                                });
                                return;
                            }
                        }
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// One probe attempt: `Ok` or the failure message as the kubelet words it.
pub async fn check(probe: &Probe, target: &Target, timeout: Duration) -> Result<(), String> {
    if let Some(http) = &probe.http_get {
        let port = port(&http.port, &target.container)?;
        let host: IpAddr = http
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(target.ip);
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let https = http.scheme.as_deref() == Some("HTTPS");
        let url = format!(
            "{}://{host}:{port}{path}",
            if https { "https" } else { "http" }
        );
        return match tokio::time::timeout(timeout, http_get(host, port, &path, &headers, https)).await {
            Err(_) => Err(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
            Ok(Err(e)) => Err(format!("Get \"{url}\": {e}")),
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = port(&tcp.port, &target.container)?;
        let host: IpAddr = tcp
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(target.ip);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: connect: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        return match crate::runtime::exec::run(&target.exec, &argv, timeout).await {
            Ok(out) if out.code == 0 => Ok(()),
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.output).trim().to_string();
                Err(if text.is_empty() {
                    format!("command {argv:?} exited with {}", out.code)
                } else {
                    text
                })
            }
            Err(e) => Err(e.to_string()),
        };
    }
    Err("the probe has no handler (httpGet, tcpSocket or exec)".into())
}

/// A port by number, or by the name of one of the container's ports.
fn port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port {name:?} in the container"))
        }
    }
}

/// A minimal HTTP/1.1 GET: returns the status code.
async fn http_get(
    host: IpAddr,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    https: bool,
) -> std::io::Result<u16> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        request.push_str(&format!(
            "Host: {}\r\n",
            std::net::SocketAddr::new(host, port)
        ));
    }
    if !has("user-agent") {
        request.push_str("User-Agent: kube-probe/1.32\r\n");
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    let head = if https {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::pki::insecure::NoVerification(
                provider,
            )))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::IpAddress(host.into());
        let mut tls = connector.connect(name, stream).await?;
        exchange(&mut tls, &request).await?
    } else {
        let mut stream = stream;
        exchange(&mut stream, &request).await?
    };
    parse_status(&head)
        .ok_or_else(|| std::io::Error::other(format!("malformed HTTP response {head:?}")))
}

async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
) -> std::io::Result<String> {
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn parse_status(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status("HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status("HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(parse_status("garbage"), None);
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(
            json!({"name": "c", "ports": [{"name": "http", "containerPort": 5000}]}),
        )
        .unwrap();
        assert_eq!(port(&IntOrString::String("http".into()), &c), Ok(5000));
        assert_eq!(port(&IntOrString::Int(80), &c), Ok(80));
        assert!(port(&IntOrString::String("nope".into()), &c).is_err());
    }

    #[tokio::test]
    async fn http_and_tcp_probes_check_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /health HTTP/1.1"));
                s.write_all(format!("HTTP/1.1 {status}\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let target = Target {
            container: serde_json::from_value(json!({"name": "c"})).unwrap(),
            container_id: "x".into(),
            ip: "127.0.0.1".parse().unwrap(),
            exec: ExecTarget {
                container_id: "x".into(),
                pid: 0,
                env: vec![],
                user: Default::default(),
                working_dir: None,
                cgroup_path: "/x".into(),
            },
        };
        let probe: Probe =
            serde_json::from_value(json!({"httpGet": {"path": "/health", "port": port}})).unwrap();
        assert_eq!(check(&probe, &target, Duration::from_secs(2)).await, Ok(()));
        let err = check(&probe, &target, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.contains("statuscode: 500"), "{err}");
        let tcp: Probe = serde_json::from_value(json!({"tcpSocket": {"port": 1}})).unwrap();
        assert!(check(&tcp, &target, Duration::from_secs(2)).await.is_err());
    }
}
