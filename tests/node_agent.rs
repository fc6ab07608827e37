//! The node agent with real containers, driven by the real kubectl: the seed's
//! deployment.yaml unchanged (limits, liveness restarts, logs, exec), crash loops,
//! OOM kills, re-adoption after the agent is killed, images from a real registry
//! (basic auth, multi-arch, missing tags) and from air-gap archives, and a clean
//! node after pods go.
//!
//! Needs root and the Debian packages containernetworking-plugins, busybox-static,
//! docker-registry, skopeo and zstd (`#[ignore = "needs root"]`). Each node has its
//! own bridge, sink and cgroup root (`common::node::NodeScope`); the tests still run
//! one at a time because their clusters share the default pod CIDR. Each cleans up
//! what its node made (pods, processes by PID, mounts, links, iptables chains) even
//! when it fails, and nothing else.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::images::{self, ArchiveFormat, Registry};
use common::node::{force_clean, leftovers, Agent, NodeScope};
use common::{eventually, Server};
use serde_json::Value;

/// One test at a time: their clusters share 10.42.0.0/16.
static NODE: Mutex<()> = Mutex::new(());

/// A server, one real agent and a work directory; cleans the node on drop.
struct Node {
    server: Server,
    agent: Option<Agent>,
    _work: tempfile::TempDir,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Node {
    /// Starts a server and an agent whose air-gap directory holds `archives` and whose
    /// registries.yaml is `registries`.
    fn start(archives: &[PathBuf], registries: &str) -> Node {
        let lock = NODE.lock().unwrap_or_else(|p| p.into_inner());
        let work = tempfile::tempdir().unwrap();
        let (server, agent) = common::node_cluster(work.path(), archives, registries);
        Node {
            server,
            agent: Some(agent),
            _work: work,
            _lock: lock,
        }
    }

    fn agent(&self) -> &Agent {
        self.agent.as_ref().unwrap()
    }

    fn agent_mut(&mut self) -> &mut Agent {
        self.agent.as_mut().unwrap()
    }

    fn apply(&self, manifest: &str) {
        let (ok, out, err) = self.server.with_stdin(&["apply", "-f", "-"], manifest);
        assert!(ok, "apply failed: {out}{err}");
    }

    fn pod(&self, name: &str) -> Value {
        self.server.get_json(&["pod", name])
    }

    /// Waits for `check` on the pod's JSON; panics with the pod and the agent log.
    fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (ok, out, _) = self.server.kubectl(&["get", "pod", name, "-o", "json"]);
            if ok {
                let pod: Value = serde_json::from_str(&out).unwrap();
                if check(&pod) {
                    return pod;
                }
                if Instant::now() > deadline {
                    panic!(
                        "pod {name}: {what} not reached:\n{}\n{}\nagent log:\n{}",
                        serde_json::to_string_pretty(&pod["status"]).unwrap(),
                        self.server.kubectl(&["describe", "pod", name]).1,
                        tail(&self.agent().log(), 40)
                    );
                }
            } else if Instant::now() > deadline {
                panic!("pod {name} not found");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn containers_dir(&self) -> PathBuf {
        self.agent().data_dir().join("agent/containers")
    }

    /// Deletes every pod and checks the node holds nothing of them any more.
    fn assert_clean_after_deleting_pods(&self) {
        self.server
            .ok(&["delete", "deployments,pods", "--all", "--timeout=90s"]);
        let data = self.agent().data_dir();
        let clean = eventually(Duration::from_secs(30), || leftovers(&data).is_empty());
        assert!(
            clean,
            "left behind after deleting pods: {:?}",
            leftovers(&data)
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Node {
    fn drop(&mut self) {
        // Pods first, while the agent can still stop them.
        let _ = self.server.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--timeout=60s",
        ]);
        let data = self.agent().data_dir();
        if let Some(mut agent) = self.agent.take() {
            agent.kill9();
        }
        force_clean(&data);
    }
}

/// A registries.yaml that sends docker.io to a loopback port where nothing listens:
/// pulls fail at once, nothing leaves the machine.
fn offline_registries() -> String {
    let dead = images::free_port();
    format!("mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:{dead}\"]\n")
}

fn ready_pods(server: &Server, selector: &str) -> Vec<Value> {
    common::pods(server, selector)
        .into_iter()
        .filter(common::is_ready)
        .collect()
}

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

fn restarts(pod: &Value) -> i64 {
    container_status(pod)["restartCount"].as_i64().unwrap_or(0)
}

fn pod_names(server: &Server, selector: &str) -> Vec<String> {
    common::pods(server, selector)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect()
}

#[test]
#[ignore = "needs root"]
fn the_seed_deployment_runs_with_limits_logs_exec_and_liveness_restarts() {
    let build = tempfile::tempdir().unwrap();
    let flask = images::flask_app_layout(build.path());
    let archive = images::archive_in(build.path(), &flask, ArchiveFormat::OciZstd);
    let node = Node::start(&[archive], &offline_registries());
    let server = &node.server;
    server.ok(&[
        "apply",
        "-f",
        common::fixture("deployment.yaml").to_str().unwrap(),
    ]);
    let ready = eventually(Duration::from_secs(60), || {
        ready_pods(server, "app=my-flask-app").len() == 3
    });
    assert!(
        ready,
        "3 ready pods expected:\n{}\n{}",
        server.kubectl(&["get", "pods", "-o", "wide"]).1,
        tail(&node.agent().log(), 40)
    );
    let (ok, _, err) = server.kubectl(&[
        "rollout",
        "status",
        "deployment/my-flask-app",
        "--timeout=30s",
    ]);
    assert!(ok, "{err}");
    let names = pod_names(server, "app=my-flask-app");
    let pod = &names[0];

    // exec: the /health body fetched with nc from inside the pod.
    let body = server.ok(&[
        "exec",
        pod,
        "--",
        "sh",
        "-c",
        "printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 5000",
    ]);
    assert!(
        body.contains("200 OK") && body.ends_with(images::FLASK_APP_HEALTH_BODY),
        "{body}"
    );
    // exec exit codes propagate.
    let (ok, _, _) = server.kubectl(&["exec", pod, "--", "sh", "-c", "exit 3"]);
    assert!(!ok);

    // logs: the server's own output.
    let logs = server.ok(&["logs", pod]);
    assert!(logs.contains(images::FLASK_APP_STARTUP_LINE), "{logs}");

    // The container's cgroup holds the 256Mi and 500m limits.
    let json = node.pod(pod);
    let id = container_status(&json)["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("skiff://")
        .to_string();
    // Below this node's own cgroup root (`--cgroup-root`).
    let root = NodeScope::for_data(&node.agent().data_dir()).cgroup_root;
    let memory = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{root}/{id}/memory.limit_in_bytes"
    ))
    .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup{root}/{id}/memory.max")))
    .unwrap();
    assert_eq!(memory.trim(), (256 * 1024 * 1024).to_string());
    let quota = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{root}/{id}/cpu.cfs_quota_us"))
        .map(|q| q.trim().to_string())
        .or_else(|_| {
            std::fs::read_to_string(format!("/sys/fs/cgroup{root}/{id}/cpu.max"))
                .map(|m| m.split(' ').next().unwrap_or("").to_string())
        })
        .unwrap();
    assert_eq!(quota, "50000");

    // Break /health: the liveness probe restarts the container.
    server.ok(&["exec", pod, "--", "rm", "/www/health"]);
    let restarted = node.wait_pod(pod, Duration::from_secs(60), "a liveness restart", |p| {
        restarts(p) >= 1 && common::is_ready(p)
    });
    assert_eq!(restarts(&restarted), 1);
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
    ]);
    assert!(
        events.contains("Unhealthy") && events.contains("Liveness probe failed"),
        "{events}"
    );
    assert!(
        events.contains("Killing") && events.contains("failed liveness probe"),
        "{events}"
    );
    // The restarted container serves again (a fresh rootfs has /www/health back).
    let body = server.ok(&["exec", pod, "--", "cat", "/www/health"]);
    assert_eq!(body, images::FLASK_APP_HEALTH_BODY);
    let previous = server.ok(&["logs", pod, "--previous"]);
    assert!(
        previous.contains(images::FLASK_APP_STARTUP_LINE),
        "{previous}"
    );

    node.assert_clean_after_deleting_pods();
}

#[test]
#[ignore = "needs root"]
fn crashing_containers_back_off_and_oom_kills_are_reported() {
    let build = tempfile::tempdir().unwrap();
    let archive = images::busybox_image(
        build.path(),
        "busybox:e2e",
        images::ImageConfigSpec::cmd(&["sh"]),
    );
    let node = Node::start(&[archive], &offline_registries());
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - {name: c, image: "busybox:e2e", command: ["sh", "-c", "echo failing; exit 3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: "busybox:e2e"
    command: ["sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done"]
    resources: {limits: {memory: 32Mi}}
"#,
    );
    let crash = node.wait_pod("crash", Duration::from_secs(60), "CrashLoopBackOff", |p| {
        container_status(p)["state"]["waiting"]["reason"] == "CrashLoopBackOff" && restarts(p) >= 1
    });
    let status = container_status(&crash);
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3);
    assert!(
        status["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off 10s"),
        "{status}"
    );
    let wide = node.server.ok(&["get", "pod", "crash"]);
    assert!(
        wide.contains("CrashLoopBackOff") || wide.contains("Error"),
        "{wide}"
    );
    // The delay grows: the next message says 20s.
    node.wait_pod("crash", Duration::from_secs(60), "a 20s back-off", |p| {
        container_status(p)["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("back-off 20s"))
    });
    assert!(node.server.ok(&["logs", "crash"]).contains("failing"));

    let hog = node.wait_pod("hog", Duration::from_secs(60), "OOMKilled", |p| {
        container_status(p)["state"]["terminated"]["reason"] == "OOMKilled"
    });
    assert_eq!(hog["status"]["phase"], "Failed");
    assert_eq!(
        container_status(&hog)["state"]["terminated"]["exitCode"],
        137
    );
    node.assert_clean_after_deleting_pods();
}

#[test]
#[ignore = "needs root"]
fn a_killed_agent_readopts_its_containers_and_reports_exits_from_its_absence() {
    let build = tempfile::tempdir().unwrap();
    let archive = images::busybox_archive(
        build.path(),
        "busybox:e2e",
        images::ImageConfigSpec::cmd(&["sh"]),
        ArchiveFormat::DockerZstd,
    );
    let mut node = Node::start(&[archive], &offline_registries());
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  containers:
  - {name: c, image: "busybox:e2e", command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: brief}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: "busybox:e2e", command: ["sh", "-c", "touch /tmp/up; sleep 8; exit 7"]}
"#,
    );
    for name in ["steady", "brief"] {
        node.wait_pod(name, Duration::from_secs(60), "Running", |p| {
            p["status"]["phase"] == "Running"
        });
    }
    let pids_before = container_pids(&node.containers_dir());
    assert_eq!(pids_before.len(), 2, "{pids_before:?}");
    node.agent_mut().kill9();
    // The containers outlive the agent.
    for pid in &pids_before {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "container {pid} died with the agent"
        );
    }
    // brief exits while the agent is down.
    std::thread::sleep(Duration::from_secs(9));
    node.agent_mut().restart();
    let brief = node.wait_pod("brief", Duration::from_secs(60), "exit 7 reported", |p| {
        container_status(p)["state"]["terminated"]["exitCode"] == 7
    });
    assert_eq!(brief["status"]["phase"], "Failed");
    let steady = node.wait_pod("steady", Duration::from_secs(30), "still running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(restarts(&steady), 0);
    let pids_after = container_pids(&node.containers_dir());
    assert!(
        pids_after.iter().all(|p| pids_before.contains(p)),
        "{pids_before:?} → {pids_after:?}"
    );
    assert_eq!(
        node.agent().log().matches("adopted a container").count(),
        2,
        "{}",
        node.agent().log()
    );
    // The air-gap archive was imported once; the restart skipped it.
    assert_eq!(
        node.agent().log().matches("imported image archive").count(),
        1
    );
    node.assert_clean_after_deleting_pods();
}

fn container_pids(containers: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir(containers)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("state/container.pid")).ok())
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    pids.sort();
    pids
}

#[test]
#[ignore = "needs root"]
fn images_come_from_a_registry_with_auth_and_multi_arch_indexes() {
    let build = tempfile::tempdir().unwrap();
    let htpasswd = build.path().join("htpasswd");
    images::run(
        Command::new("htpasswd")
            .args(["-Bbc"])
            .arg(&htpasswd)
            .args(["skiff", "s3cret"]),
    );
    let registry = Registry::start_with(build.path(), Some(&htpasswd), None);
    let host = registry.host();
    let multi = images::multi_arch_layout(
        build.path(),
        "multi:v1",
        &images::ImageConfigSpec::cmd(&["sleep", "3600"]),
    );
    images::push(
        &multi.layout,
        &multi.name,
        &format!("{host}/team/multi:v1"),
        Some("skiff:s3cret"),
    );
    let registries = format!(
        "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:{}\"]\nconfigs:\n  \"{host}\":\n    auth: {{username: skiff, password: s3cret}}\n",
        images::free_port()
    );
    let node = Node::start(&[], &registries);
    node.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: multi}}
spec:
  containers:
  - {{name: c, image: "{host}/team/multi:v1"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: missing}}
spec:
  containers:
  - {{name: c, image: "{host}/team/multi:nope"}}
"#
    ));
    let multi_pod = node.wait_pod("multi", Duration::from_secs(60), "Running", |p| {
        common::is_ready(p)
    });
    let image_id = container_status(&multi_pod)["imageID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        image_id.ends_with(&multi.digest),
        "{image_id} vs index {}",
        multi.digest
    );
    // The index resolved to this node's platform.
    let listed = images::run(
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["image", "ls", "--data-dir"])
            .arg(node.agent().data_dir()),
    );
    let row = listed
        .lines()
        .find(|l| l.contains("team/multi"))
        .unwrap_or_default();
    let platform = if cfg!(target_arch = "aarch64") {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    assert!(row.contains(platform), "{listed}");
    let hostname = node
        .server
        .ok(&["exec", "multi", "--", "sh", "-c", "echo $HOSTNAME"]);
    assert_eq!(hostname.trim(), "multi");
    let missing = node.wait_pod(
        "missing",
        Duration::from_secs(60),
        "ImagePullBackOff",
        |p| container_status(p)["state"]["waiting"]["reason"] == "ImagePullBackOff",
    );
    let events = node.server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=missing",
    ]);
    assert!(
        events.contains("Failed to pull image") && events.contains("nope"),
        "{events}"
    );
    let _ = missing;
    node.assert_clean_after_deleting_pods();
}

#[test]
#[ignore = "needs root"]
fn pods_get_their_environment_volumes_and_init_containers() {
    let build = tempfile::tempdir().unwrap();
    let archive = images::busybox_image(
        build.path(),
        "busybox:e2e",
        images::ImageConfigSpec::cmd(&["sh"]).with_env("FROM_IMAGE=image"),
    );
    let node = Node::start(&[archive], &offline_registries());
    let host_dir = build.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("greeting"), "from the host\n").unwrap();
    node.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{mode: fast, "app.conf": "port=8080"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: full, labels: {{tier: web}}}}
spec:
  initContainers:
  - name: prepare
    image: "busybox:e2e"
    command: ["sh", "-c", "echo prepared > /work/ready"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: app
    image: "busybox:e2e"
    command: ["sh", "-c", "sleep 3600"]
    env:
    - {{name: MODE, valueFrom: {{configMapKeyRef: {{name: settings, key: mode}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: TIER, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['tier']"}}}}}}
    - {{name: COMBINED, value: "$(MODE)-$(POD_NAME)"}}
    securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
    volumeMounts:
    - {{name: work, mountPath: /work}}
    - {{name: config, mountPath: /etc/app, readOnly: true}}
    - {{name: secret, mountPath: /etc/creds}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: host, mountPath: /host}}
  volumes:
  - {{name: work, emptyDir: {{}}}}
  - {{name: scratch, emptyDir: {{medium: Memory}}}}
  - {{name: config, configMap: {{name: settings}}}}
  - {{name: secret, secret: {{secretName: creds}}}}
  - {{name: host, hostPath: {{path: "{}"}}}}
"#,
        host_dir.display()
    ));
    let pod = node.wait_pod("full", Duration::from_secs(60), "Running", |p| {
        common::is_ready(p)
    });
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    let exec = |script: &str| node.server.ok(&["exec", "full", "--", "sh", "-c", script]);
    assert_eq!(
        exec("echo $MODE $PASSWORD $POD_NAME $TIER $COMBINED $FROM_IMAGE"),
        "fast s3cret full web fast-full image\n"
    );
    assert_eq!(exec("cat /work/ready"), "prepared\n");
    assert_eq!(
        exec("cat /etc/app/app.conf; echo; cat /etc/creds/password"),
        "port=8080\ns3cret"
    );
    assert_eq!(exec("cat /host/greeting"), "from the host\n");
    assert_eq!(exec("id -u; id -g"), "1000\n1000\n");
    assert!(exec("grep ' /scratch ' /proc/mounts").contains("tmpfs"));
    let (ok, _, _) = node
        .server
        .kubectl(&["exec", "full", "--", "touch", "/etc/app/x"]);
    assert!(!ok, "a read-only configMap mount is writable");
    let resolv = exec("cat /etc/resolv.conf");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("nameserver 10.43.0.10"), "{resolv}");
    assert!(exec("cat /etc/hosts").contains("\tfull\n"));
    node.server.ok(&["delete", "configmap", "settings"]);
    node.server.ok(&["delete", "secret", "creds"]);
    node.assert_clean_after_deleting_pods();
}

#[test]
#[ignore = "needs root"]
fn the_server_is_a_node_too_unless_its_agent_is_disabled() {
    let _lock = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let build = tempfile::tempdir().unwrap();
    let archive = images::busybox_image(
        build.path(),
        "busybox:e2e",
        images::ImageConfigSpec::cmd(&["sh"]),
    );
    let kubelet_port = images::free_port();
    let server = common::start_server_node(
        &archive,
        &[
            "--node-name",
            "e2e-server",
            "--node-label",
            "skiff.test/role=server-node",
            "--node-taint",
            "skiff.test/soft=yes:PreferNoSchedule",
            "--kubelet-port",
            &kubelet_port.to_string(),
            // Debian's CNI plugins instead of the built-in ones still work.
            "--cni-bin-dir",
            "/usr/lib/cni",
        ],
    );
    let data = server.data_dir();
    let scope = server.node_scope();
    common::run_then_clean_node(server, |server| {
        let ready = eventually(Duration::from_secs(30), || {
            let out = server.kubectl(&["get", "nodes", "--no-headers"]).1;
            out.contains(" Ready ") && out.contains("control-plane")
        });
        assert!(
            ready,
            "{}\n{}",
            server.kubectl(&["get", "nodes"]).1,
            tail(&server.log(), 30)
        );
        let (ok, out, err) = server.with_stdin(
            &["apply", "-f", "-"],
            r#"
apiVersion: v1
kind: Pod
metadata: {name: local}
spec:
  containers:
  - {name: c, image: "busybox:e2e", imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
"#,
        );
        assert!(ok, "{out}{err}");
        let running = eventually(Duration::from_secs(60), || {
            common::is_ready(&server.get_json(&["pod", "local"]))
        });
        assert!(
            running,
            "{}",
            server.kubectl(&["describe", "pod", "local"]).1
        );
        assert_eq!(
            server.ok(&["exec", "local", "--", "hostname"]).trim(),
            "local"
        );
        // The node flags given to `skiff server` configure its own node.
        let labelled = server.ok(&[
            "get",
            "nodes",
            "-l",
            "skiff.test/role=server-node",
            "-o",
            "name",
        ]);
        assert_eq!(labelled.trim(), "node/e2e-server");
        let node = server.get_json(&["node", "e2e-server"]);
        assert_eq!(
            node["spec"]["taints"][0]["key"], "skiff.test/soft",
            "{node}"
        );
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], kubelet_port,
            "{node}"
        );
        // The node's host objects carry the names its configuration gave it.
        let pod_cgroups: Vec<_> = scope
            .cgroup_dirs()
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(
            !pod_cgroups.is_empty(),
            "no cgroup under {}",
            scope.cgroup_root
        );
        let bridged = Command::new("ip")
            .args(["-o", "link", "show", "master", &scope.bridge])
            .output()
            .unwrap();
        assert!(!bridged.stdout.is_empty(), "no veth on {}", scope.bridge);
        let sink = Command::new("ip")
            .args(["link", "show", &scope.sink()])
            .output()
            .unwrap();
        assert!(sink.status.success(), "no sink link {}", scope.sink());
        server.ok(&["delete", "pod", "local", "--timeout=60s"]);
        let clean = eventually(Duration::from_secs(30), || leftovers(&data).is_empty());
        assert!(clean, "{:?}", leftovers(&data));
    });
}
