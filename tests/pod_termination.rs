//! Graceful pod deletion on a real node, driven by the real kubectl: `kubectl delete
//! pod` marks the pod Terminating, the agent sends SIGTERM to every container's
//! PID 1, waits for the deletion's grace period, SIGKILLs what still runs, and only
//! then removes the pod object; `--grace-period=0 --force` is immediate, a shorter
//! grace period on a second delete shortens the wait, and a Deployment's scale-down
//! goes the same way. Containers keep their probed readiness while they stop (as
//! kubelet's), and the pod reports a terminal phase (Succeeded or Failed) before the
//! object goes.
//!
//! Needs root and the Debian packages containernetworking-plugins, busybox-static and
//! zstd; run with `flock /tmp/skiff-e2e.lock cargo test --test pod_termination --
//! --include-ignored`. Each test's node has its own bridge and cgroup root
//! (`common::node::NodeScope`) but the default pod range, so they run one at a time;
//! each cleans up even when it fails.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::node::{force_clean, leftovers, Agent};
use common::{eventually, Server};
use serde_json::Value;

/// One test at a time: each node has its own bridge, but they share the pod CIDR.
static NODE: Mutex<()> = Mutex::new(());

/// A server, one real agent and a directory pods write markers into (a hostPath
/// volume); cleans the node on drop.
struct Node {
    server: Server,
    agent: Option<Agent>,
    work: tempfile::TempDir,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Node {
    fn start() -> Node {
        let lock = NODE.lock().unwrap_or_else(|p| p.into_inner());
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(work.path().join("markers")).unwrap();
        let archive = common::busybox_e2e_archive(work.path());
        let (server, agent) =
            common::node_cluster(work.path(), &[archive], &common::offline_registries());
        Node {
            server,
            agent: Some(agent),
            work,
            _lock: lock,
        }
    }

    fn agent(&self) -> &Agent {
        self.agent.as_ref().unwrap()
    }

    fn agent_mut(&mut self) -> &mut Agent {
        self.agent.as_mut().unwrap()
    }

    /// The hostPath directory pods write their markers into.
    fn markers(&self) -> PathBuf {
        self.work.path().join("markers")
    }

    fn apply(&self, manifest: &str) {
        let (ok, out, err) = self.server.with_stdin(&["apply", "-f", "-"], manifest);
        assert!(ok, "apply failed: {out}{err}");
    }

    /// The pod's JSON, or None once it is gone.
    fn pod(&self, name: &str) -> Option<Value> {
        let (ok, out, err) = self.server.kubectl(&["get", "pod", name, "-o", "json"]);
        if ok {
            return Some(serde_json::from_str(&out).unwrap());
        }
        assert!(err.contains("NotFound"), "kubectl get pod {name}: {err}");
        None
    }

    /// Waits for `check` on the pod; panics with the pod and the agent log.
    fn wait_pod(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pod = self.pod(name);
            if let Some(pod) = pod.as_ref().filter(|p| check(p)) {
                return pod.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "pod {name}: {what} not reached:\n{pod:#?}\nagent log:\n{}",
                    tail(&self.agent().log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_gone(&self, name: &str, timeout: Duration) {
        let gone = eventually(timeout, || self.pod(name).is_none());
        assert!(
            gone,
            "pod {name} still there after {timeout:?}:\n{:#?}\nagent log:\n{}",
            self.pod(name),
            tail(&self.agent().log(), 40)
        );
    }

    /// `kubectl delete pod` without waiting for the deletion to finish.
    fn delete(&self, name: &str, extra: &[&str]) {
        let mut args = vec!["delete", "pod", name, "--wait=false"];
        args.extend_from_slice(extra);
        self.server.ok(&args);
    }

    fn assert_node_clean(&self) {
        let data = self.agent().data_dir();
        let clean = eventually(Duration::from_secs(30), || leftovers(&data).is_empty());
        assert!(clean, "left behind: {:?}", leftovers(&data));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.server.kubectl(&[
            "delete",
            "deployments,pods",
            "--all",
            "--grace-period=0",
            "--force",
        ]);
        let data = self.agent().data_dir();
        let _ = eventually(Duration::from_secs(20), || leftovers(&data).is_empty());
        if let Some(mut agent) = self.agent.take() {
            agent.kill9();
        }
        force_clean(&data);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A pod whose only container writes `<markers>/<name>` when it gets SIGTERM and
/// exits 0. `sh` runs the trap between foreground commands, so within a second.
fn trapping_pod(name: &str, markers: &Path, grace: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: app
    image: "busybox:e2e"
    command: ["sh", "-c", "trap 'sleep 2; echo bye > /markers/{name}; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{{name: markers, mountPath: /markers}}]
  volumes:
  - {{name: markers, hostPath: {{path: "{}"}}}}
"#,
        markers.display()
    )
}

#[test]
#[ignore = "needs root"]
fn deleting_a_pod_runs_its_sigterm_handler_before_the_object_goes() {
    let node = Node::start();
    node.apply(&trapping_pod("trapper", &node.markers(), 30));
    node.wait_pod("trapper", "Ready", common::is_ready);
    let marker = node.markers().join("trapper");

    node.delete("trapper", &[]);
    let terminating = node.pod("trapper").expect("the pod stays while it stops");
    assert!(common::is_terminating(&terminating), "{terminating:#}");
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    let row = node.server.ok(&["get", "pod", "trapper", "--no-headers"]);
    assert!(row.contains("Terminating"), "{row}");

    // The object goes only after the handler ran (it sleeps 2 s, then writes).
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.pod("trapper").is_some() {
        assert!(
            Instant::now() < deadline,
            "the pod did not go:\n{}",
            tail(&node.agent().log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        marker.exists(),
        "the pod went before its SIGTERM handler ran:\n{}",
        tail(&node.agent().log(), 40)
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "bye\n");
    node.assert_node_clean();
}

/// A pod of two containers: `quitter` exits 7 on SIGTERM, `stubborn` ignores it.
fn stubborn_pod(name: &str, grace: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: quitter
    image: "busybox:e2e"
    command: ["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 1; done"]
  - name: stubborn
    image: "busybox:e2e"
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
"#
    )
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The host PIDs of the pod's containers, from the runtime's state directories.
fn container_pids(node: &Node, uid: &str) -> Vec<i32> {
    let containers = node.agent().data_dir().join("agent/containers");
    std::fs::read_dir(containers)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(uid))
        .filter_map(|e| std::fs::read_to_string(e.path().join("state/container.pid")).ok())
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn a_container_that_ignores_sigterm_is_killed_when_the_grace_period_ends() {
    let node = Node::start();
    node.apply(&stubborn_pod("stubborn", 3));
    let pod = node.wait_pod("stubborn", "Ready", common::is_ready);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let pids = container_pids(&node, &uid);
    assert_eq!(pids.len(), 2, "{pids:?}");

    let began = Instant::now();
    node.delete("stubborn", &[]);
    assert!(
        node.pod("stubborn")
            .is_some_and(|p| common::is_terminating(&p)),
        "the pod went before its grace period ended"
    );
    // The container that handles SIGTERM stops; the status says how, while the pod
    // still waits for the other one.
    let stopping = node.wait_pod("stubborn", "quitter's exit reported", |p| {
        container(p, "quitter")["state"]["terminated"]["exitCode"] == 7
    });
    assert!(common::is_terminating(&stopping));
    assert!(
        container(&stopping, "stubborn")["state"]["running"].is_object(),
        "{stopping:#}"
    );
    // The pod goes once the grace period (3 s, from whole seconds) is over.
    node.wait_gone("stubborn", Duration::from_secs(30));
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "gone after {:?}",
        began.elapsed()
    );
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "container process {pid} outlived its pod"
        );
    }
    node.assert_node_clean();
}

#[test]
#[ignore = "needs root"]
fn force_deletion_is_immediate_and_a_shorter_second_delete_shortens_the_wait() {
    let node = Node::start();
    node.apply(&stubborn_pod("forced", 300));
    node.apply(&stubborn_pod("hurried", 300));
    node.wait_pod("forced", "Ready", common::is_ready);
    node.wait_pod("hurried", "Ready", common::is_ready);

    // --grace-period=0 --force: the object goes at once (kubectl waits for it).
    node.server
        .ok(&["delete", "pod", "forced", "--grace-period=0", "--force"]);
    assert!(node.pod("forced").is_none());

    // A 300 s deletion, then a 2 s one: the pod goes after about 2 s.
    node.delete("hurried", &[]);
    let marked = node.pod("hurried").expect("terminating");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 300);
    node.delete("hurried", &["--grace-period=2"]);
    if let Some(pod) = node.pod("hurried") {
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 2);
    }
    // A longer one later does not lengthen it again.
    let _ = node.server.kubectl(&[
        "delete",
        "pod",
        "hurried",
        "--wait=false",
        "--grace-period=100",
    ]);
    node.wait_gone("hurried", Duration::from_secs(30));
    // The force-deleted pod's containers are gone from the node too.
    node.assert_node_clean();
}

#[test]
#[ignore = "needs root"]
fn a_deployment_scale_down_lets_the_removed_pod_handle_sigterm() {
    let node = Node::start();
    node.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: db}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: db
        image: "busybox:e2e"
        command: ["sh", "-c", "trap 'echo flushed > /markers/$(hostname); exit 0' TERM; while true; do sleep 1; done"]
        volumeMounts: [{{name: markers, mountPath: /markers}}]
      volumes:
      - {{name: markers, hostPath: {{path: "{}"}}}}
"#,
        node.markers().display()
    ));
    let names = |node: &Node| -> Vec<String> {
        common::pods(&node.server, "app=db")
            .iter()
            .filter(|p| common::is_ready(p) && !common::is_terminating(p))
            .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
            .collect()
    };
    let both = eventually(Duration::from_secs(60), || names(&node).len() == 2);
    assert!(both, "{}", tail(&node.agent().log(), 40));
    let before = names(&node);

    node.server
        .ok(&["scale", "deployment", "db", "--replicas=1"]);
    let gone = eventually(Duration::from_secs(30), || {
        common::pods(&node.server, "app=db").len() == 1
    });
    assert!(gone, "{}", tail(&node.agent().log(), 40));
    let kept = names(&node);
    assert_eq!(kept.len(), 1);
    let removed: Vec<&String> = before.iter().filter(|n| !kept.contains(n)).collect();
    assert_eq!(removed.len(), 1, "{before:?} → {kept:?}");
    assert_eq!(
        std::fs::read_to_string(node.markers().join(removed[0])).ok(),
        Some("flushed\n".to_string()),
        "the scaled-down pod's SIGTERM handler did not run"
    );
    assert!(!node.markers().join(&kept[0]).exists());
}

#[test]
#[ignore = "needs root"]
fn prestop_hooks_run_before_sigterm_and_cannot_outlast_the_grace_period() {
    let node = Node::start();
    let pod = |name: &str, hook: &str, grace: u32| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: app
    image: "busybox:e2e"
    command: ["sh", "-c", "trap 'echo term >> /markers/{name}; exit 0' TERM; while true; do sleep 1 & wait $!; done"]
    lifecycle:
      preStop:
        exec: {{command: ["sh", "-c", "{hook}"]}}
    volumeMounts: [{{name: markers, mountPath: /markers}}]
  volumes:
  - {{name: markers, hostPath: {{path: "{}"}}}}
"#,
            node.markers().display()
        )
    };
    node.apply(&pod("hooked", "echo prestop >> /markers/hooked", 30));
    node.apply(&pod("overrun", "sleep 600", 2));
    node.wait_pod("hooked", "Ready", common::is_ready);
    node.wait_pod("overrun", "Ready", common::is_ready);

    node.delete("hooked", &[]);
    node.delete("overrun", &[]);
    node.wait_gone("hooked", Duration::from_secs(30));
    let hooked = std::fs::read_to_string(node.markers().join("hooked")).unwrap_or_default();
    assert_eq!(hooked, "prestop\nterm\n");
    // The hook still sleeps when the 2 s are over: SIGTERM comes anyway, then SIGKILL
    // 2 s later (the container waits on `wait`, so its trap runs at once, even on a
    // loaded machine).
    node.wait_gone("overrun", Duration::from_secs(30));
    let overrun = std::fs::read_to_string(node.markers().join("overrun")).unwrap_or_default();
    assert_eq!(overrun, "term\n");
    node.assert_node_clean();
}

#[test]
#[ignore = "needs root"]
fn a_pod_deleted_while_its_agent_was_down_still_stops_gracefully() {
    let mut node = Node::start();
    node.apply(&trapping_pod("survivor", &node.markers(), 30));
    node.wait_pod("survivor", "Ready", common::is_ready);
    node.agent_mut().kill9();

    // Nobody completes the deletion while the node's agent is away.
    node.delete("survivor", &[]);
    std::thread::sleep(Duration::from_secs(2));
    let waiting = node.pod("survivor").expect("the pod waits for its node");
    assert!(common::is_terminating(&waiting));

    // The restarted agent adopts the container and stops it gracefully.
    node.agent_mut().restart();
    node.wait_gone("survivor", Duration::from_secs(60));
    assert_eq!(
        std::fs::read_to_string(node.markers().join("survivor")).ok(),
        Some("bye\n".to_string()),
        "the adopted container did not get SIGTERM:\n{}",
        tail(&node.agent().log(), 40)
    );
    node.assert_node_clean();
}

/// Watches the pod with kubectl until it is gone; returns one `phase,ready…,deleting`
/// line per version of the pod the watch saw.
fn watch_until_gone(node: &Node, name: &str, delete: impl FnOnce()) -> Vec<String> {
    let out_path = node.work.path().join(format!("{name}.watch"));
    let out = std::fs::File::create(&out_path).unwrap();
    let template = r#"jsonpath={.status.phase},{.status.containerStatuses[*].ready},{.metadata.deletionTimestamp}{"\n"}"#;
    let mut watcher = node
        .server
        .kubectl_cmd(&["get", "pod", name, "--watch", "-o", template])
        .stdout(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run kubectl get --watch");
    // The watch shows the pod before it is deleted.
    let watching = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&out_path).is_ok_and(|t| !t.is_empty())
    });
    delete();
    node.wait_gone(name, Duration::from_secs(30));
    // The watch may print the last versions a moment after the pod went.
    let _ = eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&out_path).is_ok_and(|t| {
            t.lines()
                .any(|l| l.starts_with("Succeeded,") || l.starts_with("Failed,"))
        })
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(watching, "kubectl get --watch printed nothing");
    std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs root"]
fn a_deleted_pod_is_terminal_before_it_goes() {
    let node = Node::start();
    // Exits 0 two seconds after SIGTERM: Succeeded, whatever restartPolicy (Always).
    node.apply(&trapping_pod("trapper", &node.markers(), 30));
    node.wait_pod("trapper", "Ready", common::is_ready);
    let seen = watch_until_gone(&node, "trapper", || node.delete("trapper", &[]));
    let deleting: Vec<&String> = seen.iter().filter(|l| !l.ends_with(',')).collect();
    // No readiness probe: ready until the container exits, as kubelet reports it.
    assert!(
        deleting.iter().any(|l| l.starts_with("Running,true,")),
        "no Running status while the container handled SIGTERM: {seen:#?}"
    );
    let last = deleting.last().expect("the watch saw the deletion");
    assert!(last.starts_with("Succeeded,false,"), "{seen:#?}");

    // One container exits 7, the other is killed at the end of the grace period.
    node.apply(&stubborn_pod("stubborn", 2));
    node.wait_pod("stubborn", "Ready", common::is_ready);
    let seen = watch_until_gone(&node, "stubborn", || node.delete("stubborn", &[]));
    let last = seen.last().expect("the watch saw the pod");
    assert!(last.starts_with("Failed,false false,"), "{seen:#?}");
    node.assert_node_clean();
}
