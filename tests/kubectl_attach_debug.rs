//! `kubectl run -i`, `kubectl attach` (and `kubectl debug`, ephemeral containers) end
//! to end: the server is its own node (real agent, real containers), the real kubectl
//! attaches through the API server to the kubelet API and the container's shim.
//!
//! Needs root, busybox-static and the CNI plugins; run under the e2e lock:
//! `flock /tmp/skiff-e2e.lock cargo test --test kubectl_attach_debug -- --include-ignored`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::images;
use common::{eventually, Server};

const IMAGE: &str = "busybox:attach";

/// One node at a time: each has its own bridge, but they share the pod CIDR.
static NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `body` against a server that is a node too, then removes pods, stops the
/// server by PID and cleans the node.
fn with_node(body: impl FnOnce(&Server)) {
    let _lock = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let build = tempfile::tempdir().unwrap();
    let archive = images::busybox_image(build.path(), IMAGE, images::ImageConfigSpec::cmd(&["sh"]));
    let server = common::start_server_node(&archive, &[]);
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

/// A kubectl that is killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs kubectl with `input` on stdin; kills it after `timeout`. Returns (success,
/// stdout, stderr).
fn kubectl_with_input(
    server: &Server,
    args: &[&str],
    input: &str,
    timeout: Duration,
) -> (bool, String, String) {
    let mut child = server
        .kubectl_cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.is_some(),
        "kubectl {args:?} did not finish within {timeout:?}:\n{out}\n{err}"
    );
    (status.unwrap().success(), out, err)
}

fn apply(server: &Server, manifest: &str) {
    let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], manifest);
    assert!(ok, "{out}{err}");
}

fn wait_running(server: &Server, pod: &str) {
    let running = eventually(Duration::from_secs(60), || {
        server.get_json(&["pod", pod])["status"]["phase"] == "Running"
    });
    assert!(running, "{}", server.kubectl(&["describe", "pod", pod]).1);
}

#[test]
#[ignore = "needs root"]
fn run_interactive_and_attach_stream_through_the_shim() {
    with_node(|server| {
        // kubectl run -i: waits for Running, attaches, sends stdin, prints the output
        // and (--rm) deletes the pod afterwards.
        let (ok, out, err) = kubectl_with_input(
            server,
            &[
                "run",
                "--rm",
                "-i",
                "t",
                &format!("--image={IMAGE}"),
                "--image-pull-policy=IfNotPresent",
                "--restart=Never",
                "--",
                "sh",
                "-c",
                "read v; echo got $v",
            ],
            "x\n",
            Duration::from_secs(90),
        );
        assert!(ok, "{out}\n{err}");
        assert!(out.contains("got x"), "stdout: {out}\nstderr: {err}");
        assert!(!err.contains("falling back to streaming logs"), "{err}");
        let gone = eventually(Duration::from_secs(30), || {
            let (ok, _, err) = server.kubectl(&["get", "pod", "t"]);
            !ok && err.contains("NotFound")
        });
        assert!(gone, "pod t still there");

        // kubectl attach: a running container's output from now on.
        apply(
            server,
            &format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: talker}}
spec:
  containers:
  - name: c
    image: "{IMAGE}"
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"]
"#
            ),
        );
        wait_running(server, "talker");
        let mut child = server
            .kubectl_cmd(&["attach", "talker", "-c", "c"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl attach");
        let stdout = child.stdout.take().unwrap();
        let _attach = Running(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut ticks = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while ticks.len() < 2 && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
                if line.starts_with("tick ") {
                    ticks.push(line);
                }
            }
        }
        assert_eq!(ticks.len(), 2, "attach streamed {ticks:?}");

        // kubectl attach -i: input reaches a stdin container; with stdinOnce its
        // stdin closes when the attach's input ends, so the container finishes.
        apply(
            server,
            &format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: "{IMAGE}"
    imagePullPolicy: IfNotPresent
    stdin: true
    stdinOnce: true
    command: ["sh", "-c", "while read line; do echo got $line; done; echo stdin closed"]
"#
            ),
        );
        wait_running(server, "reader");
        let (ok, out, err) = kubectl_with_input(
            server,
            &["attach", "-i", "reader", "-c", "c"],
            "one\ntwo\n",
            Duration::from_secs(60),
        );
        assert!(ok, "{out}\n{err}");
        assert!(
            out.contains("got one") && out.contains("got two") && out.contains("stdin closed"),
            "stdout: {out}\nstderr: {err}"
        );
        let done = eventually(Duration::from_secs(30), || {
            server.get_json(&["pod", "reader"])["status"]["phase"] == "Succeeded"
        });
        assert!(done, "{}", server.kubectl(&["describe", "pod", "reader"]).1);
    });
}

/// The ephemeral container's status, once it has one.
fn ephemeral_status(server: &Server, pod: &str, container: &str) -> Option<serde_json::Value> {
    let pod = server.get_json(&["pod", pod]);
    pod["status"]["ephemeralContainerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == container)
        .cloned()
}

/// Waits until the ephemeral container has terminated; returns its status, or panics
/// with the status and the pod's description.
fn wait_ephemeral_terminated(
    server: &Server,
    pod: &str,
    container: &str,
    timeout: Duration,
) -> serde_json::Value {
    let terminated = |s: &serde_json::Value| s["state"]["terminated"].is_object();
    let done = eventually(timeout, || {
        ephemeral_status(server, pod, container).is_some_and(|s| terminated(&s))
    });
    assert!(
        done,
        "{:?}\n{}",
        ephemeral_status(server, pod, container),
        server.kubectl(&["describe", "pod", pod]).1
    );
    ephemeral_status(server, pod, container).unwrap()
}

#[test]
#[ignore = "needs root"]
fn debug_runs_ephemeral_containers_in_a_running_pod() {
    with_node(|server| {
        apply(
            server,
            &format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: app}}
spec:
  containers:
  - name: main
    image: "{IMAGE}"
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#
            ),
        );
        wait_running(server, "app");
        let started_at = server.get_json(&["pod", "app"])["status"]["containerStatuses"][0]
            ["state"]["running"]["startedAt"]
            .clone();

        // Non-interactive: the container runs to completion; its log is readable.
        let (ok, out, err) = kubectl_with_input(
            server,
            &[
                "debug",
                "app",
                &format!("--image={IMAGE}"),
                "--container=dbg",
                "--",
                "sh",
                "-c",
                "echo hi from $(hostname)",
            ],
            "",
            Duration::from_secs(60),
        );
        assert!(ok, "{out}\n{err}");
        let status = wait_ephemeral_terminated(server, "app", "dbg", Duration::from_secs(60));
        assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");
        let logs = server.ok(&["logs", "app", "-c", "dbg"]);
        assert_eq!(logs.trim(), "hi from app");
        let pod = server.get_json(&["pod", "app"]);
        assert_eq!(pod["spec"]["ephemeralContainers"][0]["name"], "dbg");
        // Adding it restarted nothing.
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
        assert_eq!(
            pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"],
            started_at
        );

        // --target: the debugger shares the target container's PID namespace.
        let (ok, out, err) = kubectl_with_input(
            server,
            &[
                "debug",
                "app",
                &format!("--image={IMAGE}"),
                "--container=peek",
                "--target=main",
                "--",
                "ps",
            ],
            "",
            Duration::from_secs(60),
        );
        assert!(ok, "{out}\n{err}");
        wait_ephemeral_terminated(server, "app", "peek", Duration::from_secs(60));
        let processes = server.ok(&["logs", "app", "-c", "peek"]);
        assert!(processes.contains("sleep 3600"), "{processes}");

        // Interactive (-it): kubectl attaches to the new container's terminal.
        let (ok, out, err) = kubectl_with_input(
            server,
            &[
                "debug",
                "app",
                "-it",
                &format!("--image={IMAGE}"),
                "--container=shell",
                "--",
                "sh",
            ],
            "echo $((6*7))\nexit\n",
            Duration::from_secs(60),
        );
        assert!(ok, "{out}\n{err}");
        assert!(out.contains("42"), "stdout: {out}\nstderr: {err}");
        wait_ephemeral_terminated(server, "app", "shell", Duration::from_secs(30));

        // Only additions: an existing ephemeral container may not be changed.
        let (ok, _, err) = server.kubectl(&[
            "patch",
            "pod",
            "app",
            "--subresource=ephemeralcontainers",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/spec/ephemeralContainers/0/image", "value": "other"}]"#,
        ]);
        assert!(!ok && err.contains("may not be changed"), "{err}");
    });
}
