//! Persistent storage on a real node, driven by the real kubectl: the built-in
//! default class `local-path` (k3s's), a claim that waits for its first consumer,
//! the scheduler's `selected-node`, the provisioned volume `pvc-<uid>` (a directory
//! under the server's `<data-dir>/storage`, made by the node's agent), data that
//! survives the pod, a read-only mount, `kubernetes.io/pvc-protection` holding a
//! claim in use, `Delete` reclaim removing the volume and its directory; and a static
//! hostPath volume binding a matching claim, kept (`Retain`) when released.
//!
//! Needs root and busybox-static. Its cluster has ranges of its own (10.162/16 pods,
//! 10.163/16 services), so it may run beside the other root tests. Run with
//! `cargo test --test storage_local_path -- --include-ignored`.
//! Each test cleans up (pods, processes by PID, mounts, links) even when it fails.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::node::{force_clean, Agent};
use common::{eventually, Server};
use serde_json::Value;

/// One test at a time: each node has its own bridge, but they share the pod CIDR.
static NODE: Mutex<()> = Mutex::new(());

/// A server, one real agent with a busybox image; cleans the node on drop.
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
        let archive = common::busybox_e2e_archive(work.path());
        let (server, agent) = node_cluster(work.path(), &archive);
        Node {
            server,
            agent: Some(agent),
            work,
            _lock: lock,
        }
    }

    fn agent_log(&self) -> String {
        let log = self.agent.as_ref().map(|a| a.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn apply(&self, manifest: &str) {
        let (ok, out, err) = self.server.with_stdin(&["apply", "-f", "-"], manifest);
        assert!(ok, "apply failed: {out}{err}");
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        let (ok, out, _) = self.server.kubectl(&all);
        ok.then(|| serde_json::from_str(&out).unwrap())
    }

    /// Waits for `check` on the object's JSON (None: it does not exist).
    fn wait(
        &self,
        args: &[&str],
        what: &str,
        check: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let found = self.json(args);
            if check(found.as_ref()) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "{args:?}: {what} not reached: {found:#?}\npvc:\n{}\npv:\n{}\nevents:\n{}\nagent log:\n{}\nserver log:\n{}",
                    self.server.kubectl(&["get", "pvc", "-A"]).1,
                    self.server.kubectl(&["get", "pv"]).1,
                    self.server.kubectl(&["get", "events", "-A"]).1,
                    self.agent_log(),
                    tail(&self.server.log(), 30),
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_ready(&self, pod: &str) -> Value {
        self.wait(&["pod", pod], "Ready", |p| p.is_some_and(common::is_ready))
            .unwrap()
    }

    fn wait_gone(&self, args: &[&str]) {
        self.wait(args, "deleted", |o| o.is_none());
    }

    fn exec(&self, pod: &str, script: &str) -> (bool, String, String) {
        self.server
            .kubectl(&["exec", pod, "--", "sh", "-c", script])
    }

    fn storage_dir(&self) -> PathBuf {
        self.server.data_dir().join("storage")
    }
}

/// Ranges of this test's own: it may run beside the root tests of the default ranges.
const RANGES: [&str; 6] = [
    "--cluster-cidr",
    "10.162.0.0/16",
    "--service-cidr",
    "10.163.0.0/16",
    "--cluster-dns",
    "10.163.0.10",
];

/// `common::node_cluster` on this test's own ranges.
fn node_cluster(work: &Path, archive: &Path) -> (Server, Agent) {
    let agent_dir = work.join("agent");
    let images_dir = agent_dir.join("data/agent/images");
    std::fs::create_dir_all(&images_dir).unwrap();
    std::fs::copy(archive, images_dir.join(archive.file_name().unwrap())).unwrap();
    std::fs::write(
        agent_dir.join("registries.yaml"),
        common::offline_registries(),
    )
    .unwrap();
    let server = Server::start_with(&RANGES);
    let skiff = Path::new(env!("CARGO_BIN_EXE_skiff"));
    let agent = Agent::start(skiff, server.port, &server.data_dir(), &agent_dir, &RANGES);
    let ready = eventually(Duration::from_secs(30), || {
        server
            .kubectl(&["get", "node", "e2e-node", "--no-headers"])
            .1
            .contains(" Ready")
    });
    assert!(ready, "node not ready:\n{}", agent.log());
    (server, agent)
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.server.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--timeout=60s",
        ]);
        let data: PathBuf = self.agent.as_ref().unwrap().data_dir().to_path_buf();
        if let Some(mut agent) = self.agent.take() {
            agent.kill9();
        }
        force_clean(&data);
    }
}

/// A pod of one busybox container that runs `script` then sleeps, mounting claim
/// `claim` at /data.
fn pod(name: &str, claim: &str, script: &str, read_only: bool) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: "busybox:e2e"
    command: ["sh", "-c", "{script}; sleep 3600"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}, readOnly: {read_only}}}
"#
    )
}

fn phase(o: Option<&Value>) -> &str {
    o.and_then(|o| o["status"]["phase"].as_str()).unwrap_or("")
}

#[test]
#[ignore = "needs root"]
fn local_path_claims_wait_for_a_consumer_keep_data_across_pods_and_are_deleted_with_their_directory(
) {
    let node = Node::start();
    // The built-in default class, as k3s has it.
    let classes = node.server.ok(&["get", "storageclass"]);
    let row = classes
        .lines()
        .find(|l| l.starts_with("local-path"))
        .unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..7],
        [
            "local-path",
            "(default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false",
            cells[6]
        ],
        "{classes}"
    );
    assert!(classes.starts_with("NAME"), "{classes}");
    // Validation: access modes are required.
    let (ok, _, err) = node.server.with_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\nspec: {resources: {requests: {storage: 1Gi}}}\n",
    );
    assert!(
        !ok && err.contains("is invalid") && err.contains("spec.accessModes"),
        "{err}"
    );

    // A claim without a class gets the default one and waits for its first consumer.
    node.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 64Mi}}\n",
    );
    let claim = node.json(&["pvc", "data"]).unwrap();
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        claim["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pvc-protection"])
    );
    std::thread::sleep(Duration::from_secs(3));
    let listed = node.server.ok(&["get", "pvc", "data"]);
    assert!(
        listed
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .nth(1)
            == Some("Pending"),
        "{listed}"
    );
    let events = node.server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=data",
    ]);
    assert!(events.contains("WaitForFirstConsumer"), "{events}");

    // A pod uses it: the claim gets the node, a volume, and the pod writes into it.
    node.apply(&pod("writer", "data", "echo hello > /data/greeting", false));
    node.wait_ready("writer");
    let claim = node
        .wait(&["pvc", "data"], "Bound", |c| phase(c) == "Bound")
        .unwrap();
    let uid = claim["metadata"]["uid"].as_str().unwrap().to_string();
    let volume_name = format!("pvc-{uid}");
    assert_eq!(claim["spec"]["volumeName"], volume_name.as_str());
    let annotations = &claim["metadata"]["annotations"];
    assert_eq!(
        annotations["volume.kubernetes.io/selected-node"],
        "e2e-node"
    );
    assert_eq!(annotations["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(
        annotations["volume.kubernetes.io/storage-provisioner"],
        "rancher.io/local-path"
    );
    assert_eq!(claim["status"]["capacity"]["storage"], "64Mi");
    let volume = node.json(&["pv", &volume_name]).unwrap();
    let dir = node.storage_dir().join(format!("pvc-{uid}_default_data"));
    assert_eq!(volume["spec"]["hostPath"]["path"], dir.to_str().unwrap());
    assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(volume["spec"]["storageClassName"], "local-path");
    assert_eq!(volume["spec"]["claimRef"]["uid"], uid.as_str());
    assert_eq!(
        volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            ["values"],
        serde_json::json!(["e2e-node"])
    );
    assert_eq!(
        volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rancher.io/local-path"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("greeting")).unwrap(),
        "hello\n"
    );

    // kubectl's columns, as upstream prints them.
    let pvc_table = node.server.ok(&["get", "pvc", "data"]);
    let header: Vec<&str> = pvc_table
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    let row: Vec<&str> = pvc_table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..7],
        [
            "data",
            "Bound",
            volume_name.as_str(),
            "64Mi",
            "RWO",
            "local-path",
            "<unset>"
        ]
    );
    let pv_table = node.server.ok(&["get", "pv", &volume_name]);
    let header: Vec<&str> = pv_table
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "RECLAIM",
            "POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    let row: Vec<&str> = pv_table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..7],
        [
            volume_name.as_str(),
            "64Mi",
            "RWO",
            "Delete",
            "Bound",
            "default/data",
            "local-path"
        ]
    );

    // The data survives the pod; a new pod (read-only) reads it.
    node.server
        .ok(&["delete", "pod", "writer", "--timeout=60s"]);
    node.wait_gone(&["pod", "writer"]);
    assert_eq!(phase(node.json(&["pvc", "data"]).as_ref()), "Bound");
    node.apply(&pod("reader", "data", "true", true));
    node.wait_ready("reader");
    let (ok, out, _) = node.exec("reader", "cat /data/greeting");
    assert!(ok && out == "hello\n", "{out}");
    let (ok, _, err) = node.exec("reader", "touch /data/other");
    assert!(
        !ok && err.contains("Read-only"),
        "a read-only claim was writable: {err}"
    );

    // In use, the claim is protected: deleting it leaves it Terminating.
    node.server.ok(&["delete", "pvc", "data", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(3));
    let listed = node.server.ok(&["get", "pvc", "data"]);
    assert!(listed.contains("Terminating"), "{listed}");
    assert!(dir.join("greeting").exists());
    // The pod goes: the claim, then its volume and the directory go.
    node.server
        .ok(&["delete", "pod", "reader", "--timeout=60s"]);
    node.wait_gone(&["pvc", "data"]);
    node.wait_gone(&["pv", &volume_name]);
    assert!(
        eventually(Duration::from_secs(30), || !dir.exists()),
        "{} is still there",
        dir.display()
    );
}

#[test]
#[ignore = "needs root"]
fn a_static_host_path_volume_binds_a_matching_claim_and_is_retained() {
    let node = Node::start();
    let dir = node.work.path().join("static");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seed"), "from the host\n").unwrap();
    let too_small = node.work.path().join("small");
    std::fs::create_dir_all(&too_small).unwrap();
    node.apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: small-pv, labels: {{kind: e2e}}}}
spec:
  capacity: {{storage: 10Mi}}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {{path: {small}}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: static-pv, labels: {{kind: e2e}}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  storageClassName: ""
  hostPath: {{path: {path}}}
"#,
        small = too_small.display(),
        path = dir.display()
    ));
    let volume = node
        .wait(&["pv", "static-pv"], "Available", |v| {
            phase(v) == "Available"
        })
        .unwrap();
    assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(
        volume["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pv-protection"])
    );
    node.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: static-claim}\nspec:\n  storageClassName: \"\"\n  accessModes: [ReadWriteOnce]\n  selector: {matchLabels: {kind: e2e}}\n  resources: {requests: {storage: 100Mi}}\n",
    );
    let claim = node
        .wait(&["pvc", "static-claim"], "Bound", |c| phase(c) == "Bound")
        .unwrap();
    assert_eq!(claim["spec"]["volumeName"], "static-pv");
    assert_eq!(claim["status"]["capacity"]["storage"], "1Gi");
    assert_eq!(
        claim["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    let volume = node
        .wait(&["pv", "static-pv"], "Bound", |v| phase(v) == "Bound")
        .unwrap();
    assert_eq!(volume["spec"]["claimRef"]["name"], "static-claim");
    assert_eq!(phase(node.json(&["pv", "small-pv"]).as_ref()), "Available");
    let row = node
        .server
        .ok(&["get", "pvc", "static-claim", "--no-headers"]);
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[..5]
            == ["static-claim", "Bound", "static-pv", "1Gi", "RWO,ROX"],
        "{row}"
    );

    node.apply(&pod(
        "user",
        "static-claim",
        "cat /data/seed > /data/copy",
        false,
    ));
    node.wait_ready("user");
    assert_eq!(
        std::fs::read_to_string(dir.join("copy")).unwrap(),
        "from the host\n"
    );
    // An unbound volume goes at once (pv-protection holds only bound ones).
    node.server
        .ok(&["delete", "pv", "small-pv", "--timeout=30s"]);
    node.server.ok(&["delete", "pod", "user", "--timeout=60s"]);
    node.server
        .ok(&["delete", "pvc", "static-claim", "--timeout=60s"]);
    let volume = node
        .wait(&["pv", "static-pv"], "Released", |v| phase(v) == "Released")
        .unwrap();
    assert_eq!(volume["spec"]["claimRef"]["name"], "static-claim");
    let row = node.server.ok(&["get", "pv", "static-pv", "--no-headers"]);
    assert!(
        row.contains("Released") && row.contains("default/static-claim"),
        "{row}"
    );
    assert!(
        Path::new(&dir).join("copy").exists(),
        "a retained volume lost its data"
    );
    node.server
        .ok(&["delete", "pv", "static-pv", "--timeout=60s"]);

    // A pod placed on the node directly waits in ContainerCreating (FailedMount) until
    // its claim is bound; one left to the scheduler waits Pending (FailedScheduling).
    node.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: later}\nspec:\n  storageClassName: \"\"\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 10Mi}}\n",
    );
    node.apply(&format!(
        "{}  nodeName: e2e-node\n",
        pod("direct", "later", "true", false)
    ));
    node.apply(&pod("scheduled", "later", "true", false));
    let found = eventually(Duration::from_secs(60), || {
        let events = node.server.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=direct",
        ]);
        events.contains("FailedMount")
            && events.contains("persistentvolumeclaim \"later\" is not bound")
    });
    assert!(found, "{}", node.server.ok(&["describe", "pod", "direct"]));
    let direct = node.json(&["pod", "direct"]).unwrap();
    assert_eq!(
        direct["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating",
        "{}",
        direct["status"]
    );
    let scheduled = node.json(&["pod", "scheduled"]).unwrap();
    assert!(
        scheduled["spec"]["nodeName"].is_null(),
        "{}",
        scheduled["spec"]
    );
    let events = node.server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=scheduled",
    ]);
    assert!(
        events.contains("unbound immediate PersistentVolumeClaims"),
        "{events}"
    );
    let late = node.work.path().join("late");
    std::fs::create_dir_all(&late).unwrap();
    node.apply(&format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: late-pv}}\nspec:\n  capacity: {{storage: 10Mi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  hostPath: {{path: {}}}\n",
        late.display()
    ));
    node.wait_ready("direct");
    node.wait_ready("scheduled");
    assert_eq!(phase(node.json(&["pvc", "later"]).as_ref()), "Bound");
}
