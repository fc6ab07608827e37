//! DaemonSets end to end with the real kubectl: a server that is its own node (a real
//! busybox container) plus simulated nodes tainted `dedicated=edge:NoSchedule`. A
//! DaemonSet that tolerates the taint gets a Ready pod on every node, one that does
//! not only on the server's; a node added later gets its pod; a node tainted
//! NoExecute loses it; a template change rolls out (`kubectl rollout status`), is a
//! ControllerRevision (`kubectl rollout history`, `undo`), and deleting the DaemonSet
//! deletes its pods and revisions.
//!
//! Needs root (the server's node runs real containers) and busybox-static:
//! `cargo test --test workloads_daemonsets -- --include-ignored`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{eventually, Agent, Server};
use serde_json::Value;

const TAINT: &str = "dedicated=edge:NoSchedule";

fn daemon_set(name: &str, tolerate: bool) -> String {
    let tolerations = if tolerate {
        "      tolerations:\n      - key: dedicated\n        operator: Equal\n        value: edge\n        effect: NoSchedule\n"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 1
{tolerations}      containers:
      - name: main
        image: busybox:e2e
        command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']
"
    )
}

/// Live (not terminating) pods of DaemonSet `name`, by node.
fn pods_by_node(server: &Server, name: &str) -> Vec<(String, Value)> {
    common::pods(server, &format!("app={name}"))
        .into_iter()
        .filter(|p| !common::is_terminating(p))
        .map(|p| {
            let node = p["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (node, p)
        })
        .collect()
}

/// Waits until DaemonSet `name` has exactly one Ready pod on each of `nodes` and no
/// other pod.
fn wait_for_pods_on(server: &Server, name: &str, nodes: &[&str]) {
    let wanted: BTreeSet<&str> = nodes.iter().copied().collect();
    let ok = eventually(Duration::from_secs(90), || {
        let pods = pods_by_node(server, name);
        let on: BTreeSet<&str> = pods.iter().map(|(n, _)| n.as_str()).collect();
        pods.len() == wanted.len() && on == wanted && pods.iter().all(|(_, p)| common::is_ready(p))
    });
    assert!(
        ok,
        "{name}: wanted one ready pod on each of {nodes:?}:\n{}\n{}",
        server.ok(&["get", "pods", "-o", "wide"]),
        server.ok(&["describe", "ds", name]),
    );
}

fn status(server: &Server, name: &str) -> Value {
    server.get_json(&["ds", name])["status"].clone()
}

fn wait_nodes_ready(server: &Server, count: usize) {
    let ok = eventually(Duration::from_secs(120), || {
        let out = server.kubectl(&["get", "nodes", "--no-headers"]).1;
        out.lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count()
            == count
    });
    let log = server.log();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert!(
        ok,
        "nodes not ready:\n{}\nserver log (last lines first):\n{}",
        server.ok(&["get", "nodes"]),
        tail.join("\n")
    );
}

#[test]
#[ignore = "needs root"]
fn daemon_sets_follow_nodes_taints_and_templates() {
    let build = tempfile::tempdir().unwrap();
    let archive = common::busybox_e2e_archive(build.path());
    let server = common::start_server_node(&archive, &[]);
    common::run_then_clean_node(server, |server| {
        wait_nodes_ready(server, 1);
        let own = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
        let own = own.trim().to_string();
        let _edge = Agent::start(server, "edge", 2, &["--node-taint", TAINT]);
        wait_nodes_ready(server, 3);

        // Served as upstream serves it: short name, category, defaults.
        let resources = server.ok(&["api-resources", "--api-group=apps", "--no-headers"]);
        assert!(
            resources
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["daemonsets", "ds", "apps/v1", "true", "DaemonSet"]),
            "{resources}"
        );
        let (ok, _, err) =
            server.with_stdin(&["apply", "-f", "-"], &daemon_set("everywhere", true));
        assert!(ok, "{err}");
        let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], &daemon_set("plain", false));
        assert!(ok, "{err}");
        let ds = server.get_json(&["ds", "everywhere"]);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);

        // The tolerant DaemonSet runs everywhere, the other only on the untainted node.
        wait_for_pods_on(server, "everywhere", &[&own, "edge-0", "edge-1"]);
        wait_for_pods_on(server, "plain", &[&own]);
        let ok = eventually(Duration::from_secs(30), || {
            let st = status(server, "everywhere");
            st["desiredNumberScheduled"] == 3
                && st["numberReady"] == 3
                && st["numberAvailable"] == 3
        });
        assert!(ok, "{}", status(server, "everywhere"));
        let st = status(server, "plain");
        assert_eq!(st["desiredNumberScheduled"], 1, "{st}");
        assert_eq!(st["numberMisscheduled"], 0, "{st}");
        let table = server.ok(&["get", "ds"]);
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE",
                "SELECTOR",
                "AGE"
            ],
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().take(6).collect::<Vec<_>>()
                    == ["everywhere", "3", "3", "3", "3", "3"]),
            "{table}"
        );
        assert!(server
            .ok(&["get", "all"])
            .contains("daemonset.apps/everywhere"));

        // Each pod is the daemon's: owned, labelled with the template hash, bound to its
        // node through matchFields, tolerating what every daemon pod tolerates.
        let (node, pod) = pods_by_node(server, "everywhere")
            .into_iter()
            .find(|(n, _)| n == "edge-0")
            .unwrap();
        assert_eq!(node, "edge-0");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string());
        let term = &pod["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchFields"],
            serde_json::json!([{"key": "metadata.name", "operator": "In", "values": ["edge-0"]}])
        );
        let tolerated: Vec<&str> = pod["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["key"].as_str())
            .collect();
        for key in [
            "dedicated",
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/unschedulable",
        ] {
            assert!(tolerated.contains(&key), "{tolerated:?}");
        }
        server.ok(&["rollout", "status", "ds/everywhere", "--timeout=60s"]);

        // A node that joins later gets its pod; the intolerant DaemonSet stays put.
        let mut late = Agent::start(server, "late", 1, &["--node-taint", TAINT]);
        wait_nodes_ready(server, 4);
        wait_for_pods_on(server, "everywhere", &[&own, "edge-0", "edge-1", "late"]);
        wait_for_pods_on(server, "plain", &[&own]);

        // A NoExecute taint the pods do not tolerate takes the pod off that node.
        server.ok(&["taint", "node", "edge-1", "drain=now:NoExecute"]);
        wait_for_pods_on(server, "everywhere", &[&own, "edge-0", "late"]);
        let ok = eventually(Duration::from_secs(30), || {
            status(server, "everywhere")["desiredNumberScheduled"] == 3
        });
        assert!(ok, "{}", status(server, "everywhere"));

        // A template change rolls out node by node: rollout status waits for it.
        let old_hashes: BTreeSet<String> = pods_by_node(server, "everywhere")
            .iter()
            .map(|(_, p)| {
                p["metadata"]["labels"]["controller-revision-hash"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        server.ok(&["set", "env", "ds/everywhere", "ROUND=2"]);
        let out = server.ok(&["rollout", "status", "ds/everywhere", "--timeout=120s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        wait_for_pods_on(server, "everywhere", &[&own, "edge-0", "late"]);
        let pods = pods_by_node(server, "everywhere");
        for (_, pod) in &pods {
            let hash = pod["metadata"]["labels"]["controller-revision-hash"]
                .as_str()
                .unwrap();
            assert!(!old_hashes.contains(hash), "{hash} is an old template's");
        }
        let own_pod = &pods.iter().find(|(n, _)| *n == own).unwrap().1;
        let env = server.ok(&[
            "exec",
            own_pod["metadata"]["name"].as_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo round=$ROUND",
        ]);
        assert_eq!(env.trim(), "round=2");
        let st = status(server, "everywhere");
        assert_eq!(st["updatedNumberScheduled"], 3, "{st}");
        assert_eq!(
            st["observedGeneration"],
            server.get_json(&["ds", "everywhere"])["metadata"]["generation"]
        );

        // Each template is a ControllerRevision: rollout history lists both, and undo
        // brings the first template back (as revision 3).
        let revisions = server.ok(&["get", "controllerrevisions"]);
        let header: Vec<&str> = revisions
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            ["NAME", "CONTROLLER", "REVISION", "AGE"],
            "{revisions}"
        );
        assert!(
            revisions.contains("daemonset.apps/everywhere"),
            "{revisions}"
        );
        let history = server.ok(&["rollout", "history", "ds/everywhere"]);
        let numbers: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.parse::<u32>().is_ok())
            .collect();
        assert_eq!(numbers, ["1", "2"], "{history}");
        server.ok(&["rollout", "undo", "ds/everywhere"]);
        let out = server.ok(&["rollout", "status", "ds/everywhere", "--timeout=120s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        wait_for_pods_on(server, "everywhere", &[&own, "edge-0", "late"]);
        let ok = eventually(Duration::from_secs(60), || {
            pods_by_node(server, "everywhere").iter().all(|(_, p)| {
                let hash = p["metadata"]["labels"]["controller-revision-hash"]
                    .as_str()
                    .unwrap_or_default();
                old_hashes.contains(hash)
            })
        });
        assert!(
            ok,
            "{}",
            server.ok(&["get", "pods", "-L", "controller-revision-hash"])
        );
        let history = server.ok(&["rollout", "history", "ds/everywhere"]);
        let numbers: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.parse::<u32>().is_ok())
            .collect();
        assert_eq!(numbers, ["2", "3"], "{history}");
        assert!(
            server.get_json(&["ds", "everywhere"])["spec"]["template"]["spec"]["containers"][0]
                ["env"]
                .is_null()
        );

        // `rollout restart` is a template change too.
        server.ok(&["rollout", "restart", "ds/plain"]);
        let out = server.ok(&["rollout", "status", "ds/plain", "--timeout=120s"]);
        assert!(out.contains("successfully rolled out"), "{out}");

        // A node that is removed takes its pod with it.
        late.kill();
        server.ok(&["delete", "node", "late"]);
        wait_for_pods_on(server, "everywhere", &[&own, "edge-0"]);
        let ok = eventually(Duration::from_secs(30), || {
            let st = status(server, "everywhere");
            st["desiredNumberScheduled"] == 2 && st["numberAvailable"] == 2
        });
        assert!(ok, "{}", status(server, "everywhere"));

        // Deleting the DaemonSet deletes its pods (garbage collection).
        server.ok(&["delete", "ds", "everywhere", "--timeout=60s"]);
        let gone = eventually(Duration::from_secs(60), || {
            pods_by_node(server, "everywhere").is_empty()
        });
        assert!(gone, "{}", server.ok(&["get", "pods", "-o", "wide"]));
        let gone = eventually(Duration::from_secs(60), || {
            !server
                .ok(&["get", "controllerrevisions"])
                .contains("daemonset.apps/everywhere")
        });
        assert!(gone, "{}", server.ok(&["get", "controllerrevisions"]));
    });
}

/// Simulated nodes only (no root): a surge rollout keeps a Ready pod on every node
/// throughout, and a node selector follows node labels both ways.
#[test]
fn surge_rollouts_keep_every_node_served_and_selectors_follow_labels() {
    let (server, _agents) = common::cluster(3);
    let manifest = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: surge
spec:
  minReadySeconds: 1
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels: {app: surge}
  template:
    metadata:
      labels: {app: surge}
    spec:
      containers:
      - name: c
        image: busybox:1.36
";
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], manifest);
    assert!(ok, "{err}");
    wait_for_pods_on(&server, "surge", &["node-0", "node-1", "node-2"]);
    server.ok(&["rollout", "status", "ds/surge", "--timeout=60s"]);
    let old = pods_by_node(&server, "surge")[0].1["metadata"]["labels"]["controller-revision-hash"]
        .clone();
    server.ok(&["set", "image", "ds/surge", "c=busybox:1.37"]);
    let mut served_throughout = true;
    let done = eventually(Duration::from_secs(90), || {
        let pods = pods_by_node(&server, "surge");
        let served: BTreeSet<&str> = pods
            .iter()
            .filter(|(_, p)| common::is_ready(p))
            .map(|(n, _)| n.as_str())
            .collect();
        served_throughout &= served.len() == 3;
        pods.len() == 3
            && pods.iter().all(|(_, p)| {
                common::is_ready(p) && p["metadata"]["labels"]["controller-revision-hash"] != old
            })
    });
    assert!(
        done,
        "{}",
        server.ok(&[
            "get",
            "pods",
            "-o",
            "wide",
            "-L",
            "controller-revision-hash"
        ])
    );
    assert!(
        served_throughout,
        "a node was left without a ready pod during the surge"
    );
    let out = server.ok(&["rollout", "status", "ds/surge", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");

    // Only labelled nodes run `picky`; a node that loses the label loses its pod.
    let picky = manifest.replace("surge", "picky").replace(
        "      containers:",
        "      nodeSelector: {role: edge}\n      containers:",
    );
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], &picky);
    assert!(ok, "{err}");
    server.ok(&["label", "node", "node-1", "role=edge"]);
    wait_for_pods_on(&server, "picky", &["node-1"]);
    server.ok(&["label", "node", "node-2", "role=edge"]);
    wait_for_pods_on(&server, "picky", &["node-1", "node-2"]);
    server.ok(&["label", "node", "node-1", "role-"]);
    wait_for_pods_on(&server, "picky", &["node-2"]);
    // Available once ready for minReadySeconds.
    let mut table = String::new();
    let ok = eventually(Duration::from_secs(30), || {
        table = server.ok(&["get", "ds", "picky", "--no-headers"]);
        let cells: Vec<&str> = table.split_whitespace().collect();
        cells[..7] == ["picky", "1", "1", "1", "1", "1", "role=edge"]
    });
    assert!(ok, "{table}");
}
