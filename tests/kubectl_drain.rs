//! Node maintenance with the real kubectl over simulated nodes: `kubectl drain`
//! (evictions, and protobuf DELETEs with `--disable-eviction`) empties a node and the
//! Deployment's pods land on the other one; bare pods need `--force`; `kubectl
//! uncordon` lets pods come back. A `NoExecute` taint evicts pods that do not
//! tolerate it, later those with `tolerationSeconds`, never those tolerating it
//! forever, and not at all when the taint goes before the time is up.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, eventually, is_terminating, pods, Server};

const APP: &str = "app=web";

fn on_node(server: &Server, node: &str) -> Vec<String> {
    pods(server, APP)
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn all_running_on(server: &Server, node: &str, count: usize) -> bool {
    let live: Vec<_> = pods(server, APP)
        .into_iter()
        .filter(|p| !is_terminating(p))
        .collect();
    live.len() == count
        && live
            .iter()
            .all(|p| p["spec"]["nodeName"] == node && p["status"]["phase"] == "Running")
}

fn pod_exists(server: &Server, name: &str) -> bool {
    server.kubectl(&["get", "pod", name]).0
}

#[test]
fn drain_empties_a_node_and_uncordon_lets_pods_back() {
    let (server, _agents) = cluster(2);
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=4",
    ]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        !on_node(&server, "node-0").is_empty(),
        "no pod on node-0 to drain"
    );

    let out = server.ok(&[
        "drain",
        "node-0",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=60s",
    ]);
    assert!(out.contains("evicted"), "{out}");
    assert!(out.contains("node/node-0 drained"), "{out}");
    assert!(
        eventually(Duration::from_secs(30), || all_running_on(
            &server, "node-1", 4
        )),
        "the Deployment's pods did not move to node-1: {}",
        server.ok(&["get", "pods", "-o", "wide"])
    );
    let node = server.get_json(&["node", "node-0"]);
    assert_eq!(node["spec"]["unschedulable"], true);

    server.ok(&["uncordon", "node-0"]);
    assert!(server.get_json(&["node", "node-0"])["spec"]["unschedulable"].is_null());
    server.ok(&["scale", "deployment", "web", "--replicas=8"]);
    assert!(
        eventually(Duration::from_secs(30), || on_node(&server, "node-0").len()
            >= 2),
        "no new pod landed on the uncordoned node-0: {}",
        server.ok(&["get", "pods", "-o", "wide"])
    );
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);

    // Without evictions, drain DELETEs each pod with a protobuf DeleteOptions body.
    let out = server.ok(&[
        "drain",
        "node-0",
        "--ignore-daemonsets",
        "--disable-eviction",
        "--timeout=60s",
    ]);
    assert!(out.contains("deleted"), "{out}");
    assert!(
        eventually(Duration::from_secs(30), || all_running_on(
            &server, "node-1", 8
        )),
        "pods not back on node-1 after the protobuf deletes: {}",
        server.ok(&["get", "pods", "-o", "wide"])
    );
}

#[test]
fn bare_pods_need_force() {
    let (server, _agents) = cluster(2);
    let lonely = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: lonely\nspec:\n  nodeName: node-0\n  containers:\n  - name: c\n    image: busybox\n";
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], lonely);
    assert!(ok, "{err}");
    let (ok, _, err) = server.kubectl(&["drain", "node-0", "--timeout=20s"]);
    assert!(!ok, "a bare pod was drained without --force");
    assert!(err.contains("--force"), "{err}");
    assert!(pod_exists(&server, "lonely"));

    let out = server.ok(&["drain", "node-0", "--force", "--timeout=60s"]);
    assert!(out.contains("node/node-0 drained"), "{out}");
    assert!(!pod_exists(&server, "lonely"));
}

fn pinned_pod(name: &str, node: &str, tolerations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  tolerations: {tolerations}\n  containers:\n  - name: c\n    image: busybox\n---\n"
    )
}

#[test]
fn no_execute_taints_evict_pods_that_do_not_tolerate_them() {
    let (server, _agents) = cluster(2);
    let manifest = [
        pinned_pod("plain", "node-0", "[]"),
        pinned_pod(
            "five",
            "node-0",
            "[{key: k, operator: Equal, value: v, effect: NoExecute, tolerationSeconds: 5}]",
        ),
        pinned_pod(
            "forever",
            "node-0",
            "[{key: k, operator: Exists, effect: NoExecute}]",
        ),
        pinned_pod(
            "spared",
            "node-1",
            "[{key: gone, operator: Exists, effect: NoExecute, tolerationSeconds: 6}]",
        ),
    ]
    .concat();
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], &manifest);
    assert!(ok, "{err}");
    let running = eventually(Duration::from_secs(30), || {
        server.get_json(&["pods"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 4
    });
    assert!(running, "{}", server.ok(&["get", "pods", "-o", "wide"]));

    // A taint that goes before the 6 s its pod tolerates are up: no eviction.
    let spared_tainted = Instant::now();
    server.ok(&["taint", "node", "node-1", "gone=x:NoExecute"]);
    std::thread::sleep(Duration::from_secs(2));
    server.ok(&["taint", "node", "node-1", "gone=x:NoExecute-"]);

    let tainted = Instant::now();
    server.ok(&["taint", "node", "node-0", "k=v:NoExecute"]);
    assert!(
        eventually(Duration::from_secs(20), || !pod_exists(&server, "plain")),
        "the pod without a toleration was not evicted"
    );
    assert!(
        eventually(Duration::from_secs(30), || !pod_exists(&server, "five")),
        "the pod tolerating 5 s was never evicted"
    );
    assert!(
        tainted.elapsed() >= Duration::from_secs(5),
        "the pod tolerating 5 s went after {:?}",
        tainted.elapsed()
    );
    // Polled, bounded: the forever-tolerating pod and the spared one stay well past
    // every deadline.
    let deadline =
        (tainted + Duration::from_secs(10)).max(spared_tainted + Duration::from_secs(12));
    while Instant::now() < deadline {
        assert!(
            pod_exists(&server, "forever"),
            "the tolerating pod was evicted"
        );
        assert!(
            pod_exists(&server, "spared"),
            "a cancelled eviction happened"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("Marking for deletion Pod default/plain")
            && events.contains("Marking for deletion Pod default/five"),
        "{events}"
    );
}
