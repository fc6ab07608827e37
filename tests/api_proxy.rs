//! The `proxy` subresources end to end: the server is its own node (real agent, real
//! containers on its own bridge), a busybox httpd pod serves a page, and the real kubectl reaches
//! it through `pods/web:8080/proxy/`, `services/web:http/proxy/` and `kubectl proxy`;
//! `nodes/N/proxy/healthz` reaches the node's kubelet API.
//!
//! Needs root, busybox-static and the CNI plugins; run under the e2e lock:
//! `flock /tmp/skiff-e2e.lock cargo test --test api_proxy -- --include-ignored`.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::images;
use common::{eventually, Server};

const PAGE: &str = "<h1>hello through the proxy</h1>\n";

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A server that is a node too, with a busybox image that has a web page.
fn start_node(build: &std::path::Path) -> Server {
    let spec =
        images::ImageConfigSpec::cmd(&["sh"]).with_file("www/index.html", PAGE.as_bytes(), 0o644);
    let archive = images::busybox_image(build, "busybox:proxy", spec);
    common::start_server_node(&archive, &[])
}

/// Runs `body`, then removes pods, stops the server by PID and cleans the node.
fn with_node(body: impl FnOnce(&Server)) {
    let build = tempfile::tempdir().unwrap();
    common::run_then_clean_node(start_node(build.path()), body);
}

fn node_name(server: &Server) -> String {
    let ready = eventually(Duration::from_secs(30), || {
        server
            .kubectl(&["get", "nodes", "--no-headers"])
            .1
            .contains(" Ready ")
    });
    assert!(ready, "no ready node:\n{}", tail(&server.log(), 30));
    let names = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    names.trim().to_string()
}

fn raw(server: &Server, path: &str) -> (bool, String, String) {
    server.kubectl(&["get", "--raw", path])
}

/// An HTTP/1.0 GET to `kubectl proxy` on the loopback port; returns the whole answer.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

struct KubectlProxy(Child);

impl Drop for KubectlProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root"]
fn pods_services_and_nodes_are_reachable_through_proxy_subresources() {
    with_node(|server| {
        let node = node_name(server);
        let (ok, out, err) = server.with_stdin(
            &["apply", "-f", "-"],
            r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: httpd
    image: "busybox:proxy"
    imagePullPolicy: IfNotPresent
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#,
        );
        assert!(ok, "{out}{err}");
        let ready = eventually(Duration::from_secs(60), || {
            common::is_ready(&server.get_json(&["pod", "web"]))
        });
        assert!(ready, "{}", server.kubectl(&["describe", "pod", "web"]).1);

        // The pod, by port number, by port name and by its first declared port.
        for id in ["web:8080", "web:http", "web", "http:web:8080"] {
            let path = format!("/api/v1/namespaces/default/pods/{id}/proxy/");
            let mut last = (false, String::new(), String::new());
            let served = eventually(Duration::from_secs(20), || {
                last = raw(server, &path);
                last.0 && last.1 == PAGE
            });
            assert!(served, "{path}: {last:?}");
        }
        let (ok, _, err) = raw(
            server,
            "/api/v1/namespaces/default/pods/web:8080/proxy/missing.html",
        );
        assert!(!ok && err.contains("NotFound"), "{err}");

        // The service, once its endpoints list the pod, by port name and number.
        for id in ["web:http", "web:80"] {
            let path = format!("/api/v1/namespaces/default/services/{id}/proxy/index.html");
            let mut last = (false, String::new(), String::new());
            let served = eventually(Duration::from_secs(30), || {
                last = raw(server, &path);
                last.0 && last.1 == PAGE
            });
            assert!(served, "{path}: {last:?}");
        }
        let (ok, _, err) = raw(server, "/api/v1/namespaces/default/services/web:81/proxy/");
        assert!(!ok && err.contains("no service port 81"), "{err}");

        // The node's kubelet API, over TLS with the server's kubelet client certificate.
        let (ok, out, err) = raw(server, &format!("/api/v1/nodes/{node}/proxy/healthz"));
        assert!(ok && out.trim() == "ok", "{out}{err}");

        // kubectl proxy in front of it all.
        let port = images::free_port();
        let child = server
            .kubectl_cmd(&["proxy", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl proxy");
        let _proxy = KubectlProxy(child);
        images::wait_for_port(port);
        let answer = http_get(
            port,
            "/api/v1/namespaces/default/services/web:http/proxy/index.html",
        );
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "{answer}"
        );
        assert!(answer.ends_with(PAGE), "{answer}");
    });
}
