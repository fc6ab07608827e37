//! `kubectl port-forward` and `kubectl cp` end to end: the server is its own node
//! (real agent, real busybox container running `httpd`), the real kubectl forwards
//! local ports through the API server and the kubelet API into the pod's network;
//! curl fetches pages through them. Two kubectl versions cover both transports:
//! `/usr/bin/kubectl` (1.32: SPDY/3.1 tunnelled in a WebSocket) and
//! `kubectl.1.29`/`kubectl.1.27` (plain SPDY/3.1 after an HTTP upgrade). `kubectl cp` runs `tar`
//! through exec both ways, for a file and a directory.
//!
//! Needs root, busybox-static, curl and the CNI plugins. The node has pod and service
//! ranges of its own, so it may run beside other tests' nodes:
//! `cargo test --test kubectl_port_forward -- --include-ignored`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::images;
use common::{eventually, Server};

const IMAGE: &str = "busybox:portforward";
const KUBECTL_SPDY: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.29";
/// The oldest kubectl skiff supports, also plain SPDY.
const KUBECTL_OLDEST: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const PAGE: &str = "hello from the pod\n";

/// One node at a time: each has its own bridge, but they share the pod CIDR.
static NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// 300 KiB that no compression or framing bug leaves intact by chance.
fn big_file() -> Vec<u8> {
    noise(300 * 1024)
}

/// `len` pseudo-random bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

fn with_node(body: impl FnOnce(&Server)) {
    let _lock = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let build = tempfile::tempdir().unwrap();
    let mut spec = images::ImageConfigSpec::cmd(&["httpd", "-f", "-p", "80", "-h", "/www"])
        .with_file("/www/index.html", PAGE, 0o644)
        .with_file("/www/big.bin", big_file(), 0o644);
    spec.applets = images::DEFAULT_APPLETS
        .iter()
        .chain(&["tar", "cmp", "find", "sort"])
        .map(|a| a.to_string())
        .collect();
    let archive = images::busybox_image(build.path(), IMAGE, spec);
    // Ranges of its own, so that it can run beside other tests' nodes.
    let server = common::start_server_node(
        &archive,
        &[
            "--cluster-cidr",
            "10.152.0.0/16",
            "--service-cidr",
            "10.153.0.0/16",
            "--cluster-dns",
            "10.153.0.10",
        ],
    );
    common::run_then_clean_node(server, |server| {
        let ready = eventually(Duration::from_secs(30), || {
            server
                .kubectl(&["get", "nodes", "--no-headers"])
                .1
                .contains(" Ready ")
        });
        assert!(ready, "no ready node:\n{}", tail(&server.log(), 30));
        body(server)
    });
}

/// A `kubectl port-forward` that is killed when dropped; its output lines arrive on
/// `lines`.
struct Forward {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything read so far, for messages.
    seen: Vec<String>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Forward {
    fn start(server: &Server, kubectl: &str, args: &[&str]) -> Forward {
        Self::start_with_env(server, kubectl, &[], args)
    }

    fn start_with_env(
        server: &Server,
        kubectl: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Forward {
        let mut child = Command::new(kubectl)
            .arg("port-forward")
            .envs(env.iter().copied())
            .args(args)
            .env("KUBECONFIG", server.kubeconfig())
            .env("HOME", server.dir.path().join("home"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl port-forward");
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Forward {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line that `matches` (within `timeout`) and returns it.
    fn wait_for(&mut self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line.clone());
                if matches(&line) {
                    return line;
                }
            }
        }
        panic!(
            "kubectl port-forward printed no such line:\n{}",
            self.seen.join("\n")
        );
    }

    /// The local port kubectl chose for `remote` ("Forwarding from 127.0.0.1:N -> 80").
    fn local_port(&mut self, remote: u16) -> u16 {
        let suffix = format!(" -> {remote}");
        let line = self.wait_for(Duration::from_secs(30), |l| {
            l.starts_with("Forwarding from 127.0.0.1:") && l.ends_with(&suffix)
        });
        line["Forwarding from 127.0.0.1:".len()..line.len() - suffix.len()]
            .parse()
            .expect("a port number")
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

/// `curl -s` of `path` on a local port: (exit success, body bytes).
fn curl(port: u16, path: &str) -> (bool, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    (out.status.success(), out.stdout)
}

fn wait_running(server: &Server, pod: &str) {
    let running = eventually(Duration::from_secs(60), || {
        server.get_json(&["pod", pod])["status"]["phase"] == "Running"
    });
    assert!(running, "{}", server.kubectl(&["describe", "pod", pod]).1);
}

fn start_web(server: &Server) {
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: httpd
    image: "{IMAGE}"
    imagePullPolicy: IfNotPresent
"#
    );
    let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], &manifest);
    assert!(ok, "{out}{err}");
    wait_running(server, "web");
}

/// Port-forward with `kubectl`: a page, a large file, two connections at once, and
/// a port nothing listens on.
fn forward_with(server: &Server, kubectl: &str) {
    let mut forward = Forward::start(server, kubectl, &["-v=4", "pod/web", "0:80", "0:8080"]);
    let web = forward.local_port(80);
    let closed = forward.local_port(8080);

    let (ok, body) = curl(web, "/index.html");
    assert!(
        ok,
        "curl through {kubectl} failed:\n{}",
        forward.seen.join("\n")
    );
    assert_eq!(String::from_utf8_lossy(&body), PAGE);

    // Two connections at once, each with the whole large file.
    let fetches: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || curl(web, "/big.bin")))
        .collect();
    for fetch in fetches {
        let (ok, body) = fetch.join().expect("curl thread");
        assert!(ok, "concurrent curl through {kubectl} failed");
        assert!(
            body == big_file(),
            "the large file came back different ({} bytes)",
            body.len()
        );
    }

    // Nothing listens on 8080 in the pod: the kubelet's error reaches kubectl.
    let (ok, body) = curl(closed, "/");
    assert!(!ok && body.is_empty(), "a closed port answered");
    let error = forward.wait_for(Duration::from_secs(20), |l| {
        l.contains("error forwarding port 8080 to pod default/web")
    });
    assert!(error.contains("refused"), "{error}");
    // kubectl (1.27 to 1.32 alike) closes the whole connection after an error on an
    // error stream, as it does with the kubelet's, and exits: "lost connection to
    // pod". (That the session itself would go on is checked in the agent's tests.)
    let exited = eventually(Duration::from_secs(10), || !forward.running());
    while let Ok(line) = forward.lines.recv_timeout(Duration::from_millis(500)) {
        forward.seen.push(line);
    }
    let seen = forward.seen.join("\n");
    assert!(exited && seen.contains("lost connection to pod"), "{seen}");
    // With -v=4 kubectl says when the WebSocket failed and it fell back to SPDY.
    assert!(!seen.contains("fallback to secondary dialer"), "{seen}");
}

#[test]
#[ignore = "needs root"]
fn kubectl_port_forward_and_cp() {
    with_node(|server| {
        start_web(server);

        // kubectl 1.32: SPDY inside a WebSocket; kubectl 1.29 and 1.27: plain SPDY.
        for binary in [KUBECTL_SPDY, KUBECTL_OLDEST] {
            assert!(Path::new(binary).exists(), "{binary} is missing");
        }
        forward_with(server, common::KUBECTL);
        forward_with(server, KUBECTL_SPDY);
        forward_with(server, KUBECTL_OLDEST);
        // kubectl 1.32 told to use SPDY (no WebSocket attempt).
        let mut forward = Forward::start_with_env(
            server,
            common::KUBECTL,
            &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
            &["web", "0:80"],
        );
        let web = forward.local_port(80);
        let (ok, body) = curl(web, "/index.html");
        assert!(ok && body == PAGE.as_bytes());
        drop(forward);

        // A pod that does not exist.
        let err = server.fails(&["port-forward", "pod/nope", "0:80"]);
        assert!(err.contains("pods \"nope\" not found"), "{err}");

        // kubectl cp: a file there and back (8 MiB: many exec frames each way).
        let data = noise(8 << 20);
        let work = tempfile::tempdir().unwrap();
        let original = work.path().join("data.bin");
        std::fs::write(&original, &data).unwrap();
        let there = format!("{}", original.display());
        server.ok(&["cp", &there, "web:/tmp/data.bin"]);
        let size = server.ok(&["exec", "web", "--", "wc", "-c", "/tmp/data.bin"]);
        assert!(
            size.trim_start().starts_with(&data.len().to_string()),
            "{size}"
        );
        let back = work.path().join("back.bin");
        server.ok(&["cp", "web:/tmp/data.bin", &back.display().to_string()]);
        assert!(
            std::fs::read(&back).unwrap() == data,
            "the file came back different"
        );

        // A directory with a nested one.
        let dir = work.path().join("site");
        std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
        std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
        std::fs::write(dir.join("nested/b.txt"), "beta\n").unwrap();
        std::fs::write(dir.join("nested/deeper/c.bin"), &big_file()[..4096]).unwrap();
        server.ok(&["cp", &dir.display().to_string(), "web:/tmp/site"]);
        let listing = server.ok(&[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "cd /tmp/site && find . -type f | sort",
        ]);
        assert_eq!(listing, "./a.txt\n./nested/b.txt\n./nested/deeper/c.bin\n");
        let copy = work.path().join("copy");
        server.ok(&["cp", "web:/tmp/site", &copy.display().to_string()]);
        assert_eq!(
            std::fs::read_to_string(copy.join("a.txt")).unwrap(),
            "alpha\n"
        );
        assert_eq!(
            std::fs::read_to_string(copy.join("nested/b.txt")).unwrap(),
            "beta\n"
        );
        assert!(std::fs::read(copy.join("nested/deeper/c.bin")).unwrap() == big_file()[..4096]);
    });
}
