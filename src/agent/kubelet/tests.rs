//! The kubelet API over real TLS with certificates from a real cluster PKI, reached
//! through the API server's kubelet client (`api::proxy::Kubelet`). Exec runs on the
//! host through a stand-in helper (the real helper's container tests are in
//! tests/runtime_exec.rs).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::*;
use crate::api::join::{CredentialIssuer, PkiIssuer};
use crate::api::proxy::{client_config, Kubelet};
use crate::pki::{CertOptions, Pki};
use crate::runtime::UserIds;
use axum::http::Method;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct FakeAccess {
    log: PathBuf,
    /// How often the log path was asked for (a follower asks every second).
    asked: Arc<std::sync::atomic::AtomicUsize>,
}

impl ContainerAccess for FakeAccess {
    fn log_path(&self, _ns: &str, pod: &str, container: &str, previous: bool) -> Option<PathBuf> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (pod == "p" && container == "c" && !previous).then(|| self.log.clone())
    }

    fn exec_target(&self, _ns: &str, pod: &str, container: &str) -> Option<ExecTarget> {
        (pod == "p" && container == "c").then(|| ExecTarget {
            container_id: "c1".into(),
            pid: 1,
            env: vec![("GREETING".into(), "hello".into())],
            user: UserIds::default(),
            working_dir: None,
            cgroup_path: "/skiff/c1".into(),
        })
    }

    fn pod_network(&self, _ns: &str, pod: &str) -> Option<PathBuf> {
        (pod == "p").then(|| PathBuf::from("/proc/self/ns/net"))
    }
}

/// Runs the command on the host, skipping the helper's own arguments.
fn host_helper() -> ShimCommand {
    ShimCommand {
        program: "/bin/sh".into(),
        leading_args: vec![
            "-c".into(),
            "while [ \"$1\" != -- ]; do shift; done; shift; \
             eval \"$(env | sed -n 's/^SKIFF_EXEC_ENV_[0-9]*=/export /p')\"; exec \"$@\""
                .into(),
            "fake-nsexec".into(),
        ],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    log: PathBuf,
    port: u16,
    issuer: PkiIssuer,
    asked: Arc<std::sync::atomic::AtomicUsize>,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = CertOptions {
            hostname: "server".into(),
            sans: Vec::new(),
            cluster_domain: "cluster.local".into(),
            first_service_ip: "10.43.0.1".parse().expect("ip"),
            node_addresses: Vec::new(),
        };
        let pki = Pki::load_or_create(&dir.path().join("tls"), &options).expect("pki");
        let issuer = PkiIssuer(Arc::new(pki));
        let (cert_pem, key_pem) = issuer
            .issue_node_serving_cert("node1", &[LOCALHOST])
            .expect("serving cert");
        let credentials = ServingCredentials {
            ca_pem: issuer.ca_pem(),
            cert_pem,
            key_pem,
        };
        let resolver = Arc::new(CertResolver::new(&credentials).expect("resolver"));
        let tls = tls_config(&credentials.ca_pem, resolver).expect("tls");
        let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = dir.path().join("c.log");
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let access = Arc::new(FakeAccess {
            log: log.clone(),
            asked: asked.clone(),
        });
        tokio::spawn(serve(listener, tls, router(access, host_helper())));
        Setup {
            _dir: dir,
            log,
            port,
            issuer,
            asked,
        }
    }

    fn kubelet(&self, cert: (String, String)) -> Kubelet {
        let tls = client_config(&self.issuer.ca_pem(), &cert.0, &cert.1).expect("client tls");
        Kubelet {
            node: "node1".into(),
            address: LOCALHOST,
            port: self.port,
            tls: Arc::new(tls),
        }
    }

    fn api_server(&self) -> Kubelet {
        self.kubelet(self.issuer.issue_kubelet_client_cert().expect("cert"))
    }

    async fn get(&self, kubelet: &Kubelet, path: &str) -> (u16, String) {
        let response = kubelet
            .send(Method::GET, path, &axum::http::HeaderMap::new())
            .await
            .expect("send");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Runs an exec over a WebSocket: sends `frames` (channel byte first) and returns
    /// the chosen subprotocol, the output per channel and the status.
    async fn exec(
        &self,
        query: &str,
        frames: &[&[u8]],
    ) -> (String, Vec<u8>, Vec<u8>, serde_json::Value) {
        let kubelet = self.api_server();
        let tcp = tokio::net::TcpStream::connect((LOCALHOST, self.port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::IpAddress(LOCALHOST.into());
        let tls = tokio_rustls::TlsConnector::from(kubelet.tls.clone())
            .connect(name, tcp)
            .await
            .expect("tls");
        let url = format!("wss://127.0.0.1:{}/exec/ns/p/c?{query}", self.port);
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        let (mut socket, response) = tokio_tungstenite::client_async(request, tls)
            .await
            .expect("websocket");
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        for frame in frames {
            socket
                .send(WsMessage::binary(frame.to_vec()))
                .await
                .expect("send a frame");
        }
        let (mut stdout, mut stderr, mut status) =
            (Vec::new(), Vec::new(), serde_json::Value::Null);
        let read = async {
            while let Some(message) = socket.next().await {
                match message.expect("message") {
                    WsMessage::Binary(data) => match data.first() {
                        Some(1) => stdout.extend_from_slice(&data[1..]),
                        Some(2) => stderr.extend_from_slice(&data[1..]),
                        Some(3) => status = serde_json::from_slice(&data[1..]).expect("status"),
                        _ => {}
                    },
                    WsMessage::Close(_) => break,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("exec ends in time");
        (protocol, stdout, stderr, status)
    }
}

fn cri(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| format!("2024-05-01T10:00:00.5Z {l}\n"))
        .collect()
}

#[tokio::test]
async fn logs_are_served_to_the_api_server_only() {
    let setup = Setup::start().await;
    std::fs::write(
        &setup.log,
        cri(&[
            "stdout F one",
            "stderr P tw",
            "stderr F o",
            "stdout F three",
        ]),
    )
    .expect("write");
    let api = setup.api_server();
    let (status, body) = setup.get(&api, "/containerLogs/ns/p/c").await;
    assert_eq!((status, body.as_str()), (200, "one\ntwo\nthree\n"));
    let (_, body) = setup
        .get(&api, "/containerLogs/ns/p/c?tailLines=1&timestamps=true")
        .await;
    assert_eq!(body, "2024-05-01T10:00:00.5Z three\n");
    let (status, body) = setup.get(&api, "/containerLogs/ns/p/other").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"reason\":\"NotFound\""), "{body}");
    let (status, _) = setup.get(&api, "/containerLogs/ns/p/c?previous=true").await;
    assert_eq!(status, 404);
    let (status, body) = setup.get(&api, "/containerLogs/ns/p/c?tailLines=x").await;
    assert_eq!(status, 400, "{body}");

    let node = setup.kubelet(
        setup
            .issuer
            .issue_node_credentials("node1")
            .expect("node cert"),
    );
    let (status, body) = setup.get(&node, "/containerLogs/ns/p/c").await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn clients_without_a_cluster_certificate_are_refused() {
    let setup = Setup::start().await;
    let other = Pki::load_or_create(
        &setup._dir.path().join("other"),
        &CertOptions {
            hostname: "x".into(),
            sans: Vec::new(),
            cluster_domain: "cluster.local".into(),
            first_service_ip: "10.43.0.1".parse().expect("ip"),
            node_addresses: Vec::new(),
        },
    )
    .expect("other pki");
    let foreign = other
        .issue_client_cert(KUBELET_CLIENT_USER, &["system:masters"], 1)
        .expect("cert");
    let kubelet = setup.kubelet(foreign);
    let result = kubelet
        .send(Method::GET, "/healthz", &axum::http::HeaderMap::new())
        .await;
    assert!(
        result.is_err(),
        "a foreign client certificate must not pass"
    );
}

#[tokio::test]
async fn followed_logs_stream_until_the_client_leaves() {
    let setup = Setup::start().await;
    std::fs::write(&setup.log, cri(&["stdout F first"])).expect("write");
    let api = setup.api_server();
    let response = api
        .send(
            Method::GET,
            "/containerLogs/ns/p/c?follow=true",
            &axum::http::HeaderMap::new(),
        )
        .await
        .expect("send");
    let mut body = response.into_body();
    let mut seen = String::new();
    let mut next_text = async |seen: &mut String| {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("in time")
            .expect("a frame")
            .expect("data");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    };
    while !seen.contains("first\n") {
        next_text(&mut seen).await;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&setup.log)
        .expect("open");
    std::io::Write::write_all(&mut file, cri(&["stdout F second"]).as_bytes()).expect("append");
    while !seen.contains("second\n") {
        next_text(&mut seen).await;
    }
    assert_eq!(seen, "first\nsecond\n");

    // The client leaves: the follower notices and stops asking about the container.
    drop(body);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let asked = setup.asked.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        setup.asked.load(std::sync::atomic::Ordering::SeqCst),
        asked,
        "the follower still runs"
    );
}

#[tokio::test]
async fn exec_over_websocket_relays_streams_and_exit_codes() {
    let setup = Setup::start().await;
    let (protocol, stdout, stderr, status) = setup
        .exec(
            "command=sh&command=-c&command=echo+%24GREETING;+echo+oops+%3E%262;+exit+3&stdout=true&stderr=true",
            &[],
        )
        .await;
    assert_eq!(protocol, "v5.channel.k8s.io");
    assert_eq!(String::from_utf8_lossy(&stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&stderr), "oops\n");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    let (_, stdout, _, status) = setup
        .exec(
            "command=cat&stdin=true&stdout=true&stderr=true",
            &[b"\x00hi there\n", b"\xff\x00"],
        )
        .await;
    assert_eq!(String::from_utf8_lossy(&stdout), "hi there\n");
    assert_eq!(
        status,
        serde_json::json!({"metadata": {}, "status": "Success"})
    );

    let (_, stdout, _, status) = setup
        .exec(
            "command=sh&command=-c&command=read+x;+stty+size;+echo+got+%24x;+exit+4\
             &stdin=true&stdout=true&tty=true",
            &[b"\x04{\"Width\":100,\"Height\":30}", b"\x00x\n"],
        )
        .await;
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(stdout.contains("30 100"), "{stdout:?}");
    assert!(stdout.contains("got x"), "{stdout:?}");
    assert_eq!(status["details"]["causes"][0]["message"], "4", "{status}");
}

#[tokio::test]
async fn a_client_that_leaves_ends_the_command() {
    let setup = Setup::start().await;
    let pid_file = setup._dir.path().join("pid");
    let query = format!(
        "command=sh&command=-c&command=echo+%24%24+%3E+{}%3B+exec+sleep+100&stdout=true",
        pid_file.display()
    );
    let kubelet = setup.api_server();
    let tcp = tokio::net::TcpStream::connect((LOCALHOST, setup.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(LOCALHOST.into());
    let tls = tokio_rustls::TlsConnector::from(kubelet.tls.clone())
        .connect(name, tcp)
        .await
        .expect("tls");
    let url = format!("wss://127.0.0.1:{}/exec/ns/p/c?{query}", setup.port);
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let (socket, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("websocket");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v4.channel.k8s.io"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(socket);
    let alive = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the command outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn exec_needs_a_websocket_and_a_running_container() {
    let setup = Setup::start().await;
    let api = setup.api_server();
    let (status, body) = setup.get(&api, "/exec/ns/p/c?command=ls&stdout=true").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("SPDY is not supported"), "{body}");
    let (status, body) = setup
        .get(&api, "/exec/ns/p/gone?command=ls&stdout=true")
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = setup.get(&api, "/exec/ns/p/c?stdout=true").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn attach_needs_streams_and_a_container_with_a_shim() {
    let setup = Setup::start().await;
    let api = setup.api_server();
    // This runtime serves no attach directories: the container is not attachable.
    let (status, body) = setup.get(&api, "/attach/ns/p/c?stdout=true").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is not running"), "{body}");
    let (status, body) = setup.get(&api, "/attach/ns/p/c?tty=true").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("at least 1 of stdin, stdout, stderr"),
        "{body}"
    );
}

#[tokio::test]
async fn port_forward_over_spdy_reaches_the_pods_port() {
    use super::spdy::{Decoder, Encoder, Frame, FLAG_FIN};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let setup = Setup::start().await;
    let api = setup.api_server();
    // Refusals: no upgrade, an unknown pod, SPDY without the port-forward protocol.
    let (status, body) = setup.get(&api, "/portForward/ns/p").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("SPDY/3.1+portforward.k8s.io"), "{body}");
    let (status, body) = setup.get(&api, "/portForward/ns/q").await;
    assert_eq!(status, 404, "{body}");
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("Upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("SPDY/3.1"));
    let response = api
        .send(Method::POST, "/portForward/ns/p", &headers)
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);

    // Entering the pod's network namespace (here: our own) needs CAP_SYS_ADMIN.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: the forwarding part needs setns");
        return;
    }
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        socket.read_to_end(&mut request).await.expect("read");
        socket.write_all(b"pod says: ").await.expect("write");
        socket.write_all(&request).await.expect("write");
    });
    headers.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static("portforward.k8s.io"),
    );
    let response = api
        .send(Method::POST, "/portForward/ns/p", &headers)
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(
        response.headers().get("x-stream-protocol-version"),
        Some(&HeaderValue::from_static("portforward.k8s.io"))
    );
    let io = hyper::upgrade::on(response).await.expect("upgraded");
    let mut io = hyper_util::rt::TokioIo::new(io);
    let (mut encoder, mut decoder) = (Encoder::new(), Decoder::new());
    let syn = |stream: u32, kind: &str| Frame::SynStream {
        stream,
        associated: 0,
        priority: 0,
        flags: 0,
        headers: vec![
            ("streamType".into(), kind.into()),
            ("port".into(), port.to_string()),
            ("requestID".into(), "0".into()),
        ],
    };
    for frame in [
        syn(1, "error"),
        syn(3, "data"),
        Frame::Data {
            stream: 3,
            flags: FLAG_FIN,
            data: b"hi".to_vec(),
        },
    ] {
        io.write_all(&encoder.encode(&frame)).await.expect("write");
    }
    let mut received = Vec::new();
    let mut finished = 0;
    let mut buf = vec![0u8; 4096];
    let read = async {
        while finished < 2 {
            while let Some(frame) = decoder.next_frame().expect("decode") {
                match frame {
                    Frame::Data {
                        stream: 3,
                        flags,
                        data,
                    } => {
                        received.extend(data);
                        finished += usize::from(flags & FLAG_FIN != 0);
                    }
                    Frame::Data {
                        stream: 1,
                        flags,
                        data,
                    } => {
                        assert!(data.is_empty(), "{}", String::from_utf8_lossy(&data));
                        finished += usize::from(flags & FLAG_FIN != 0);
                    }
                    Frame::SynReply { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            if finished == 2 {
                break;
            }
            let n = io.read(&mut buf).await.expect("read");
            assert!(n > 0, "the session ended early");
            decoder.push(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("forwarded in time");
    assert_eq!(received, b"pod says: hi");
}

#[tokio::test]
async fn port_forward_over_the_websocket_channel_protocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: forwarding needs setns");
        return;
    }
    let setup = Setup::start().await;
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 5];
        socket.read_exact(&mut buf).await.expect("read");
        socket.write_all(&buf).await.expect("write");
    });
    let kubelet = setup.api_server();
    let tcp = tokio::net::TcpStream::connect((LOCALHOST, setup.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(LOCALHOST.into());
    let tls = tokio_rustls::TlsConnector::from(kubelet.tls.clone())
        .connect(name, tcp)
        .await
        .expect("tls");
    let url = format!(
        "wss://127.0.0.1:{}/portForward/ns/p?ports={port}",
        setup.port
    );
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let (mut socket, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("websocket");
    assert_eq!(
        response.headers().get("sec-websocket-protocol"),
        Some(&HeaderValue::from_static("v4.channel.k8s.io"))
    );
    let le = port.to_le_bytes();
    let mut next = async || loop {
        match socket.next().await.expect("a message").expect("message") {
            WsMessage::Binary(data) => return data.to_vec(),
            WsMessage::Close(_) => return Vec::new(),
            _ => {}
        }
    };
    let read = async {
        assert_eq!(next().await, vec![0, le[0], le[1]]);
        assert_eq!(next().await, vec![1, le[0], le[1]]);
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("port prefixes in time");
    socket
        .send(WsMessage::binary(b"\x00hello".to_vec()))
        .await
        .expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let message = socket.next().await.expect("a message").expect("message");
            if let WsMessage::Binary(data) = message {
                return data.to_vec();
            }
        }
    })
    .await
    .expect("echo in time");
    assert_eq!(echoed, b"\x00hello".to_vec());
}
