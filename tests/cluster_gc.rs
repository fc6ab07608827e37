//! Garbage collection: deleting a Deployment removes its ReplicaSets and pods,
//! `--cascade=orphan` leaves them, and deleting a namespace removes everything in it.

mod common;

use std::time::Duration;

use common::{cluster, eventually, pods};

#[test]
fn deleting_a_deployment_removes_its_replicasets_and_pods() {
    let (server, _agents) = cluster(2);
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=2",
    ]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    server.ok(&["delete", "deployment", "web"]);
    let gone = eventually(Duration::from_secs(30), || {
        server
            .ok(&["get", "rs,pods", "-l", "app=web", "--no-headers"])
            .trim()
            .is_empty()
    });
    assert!(gone, "{}", server.ok(&["get", "rs,pods"]));
}

#[test]
fn orphan_cascade_leaves_the_pods() {
    let (server, _agents) = cluster(2);
    server.ok(&[
        "create",
        "deployment",
        "keep",
        "--image=busybox",
        "--replicas=2",
    ]);
    server.ok(&["rollout", "status", "deployment/keep", "--timeout=60s"]);
    server.ok(&["delete", "deployment", "keep", "--cascade=orphan"]);
    assert!(server
        .kubectl(&["get", "deployment", "keep"])
        .2
        .contains("NotFound"));
    // Orphaned pods stay: watch for 3 s that none goes.
    let lost = eventually(Duration::from_secs(3), || {
        pods(&server, "app=keep").len() != 2
    });
    assert!(!lost, "orphaned pods were deleted");
    let rs = server.get_json(&["rs", "-l", "app=keep"]);
    let items = rs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(
        items[0]["metadata"]["ownerReferences"].is_null(),
        "{}",
        items[0]["metadata"]
    );
}

#[test]
fn deleting_a_namespace_removes_everything_inside() {
    let (server, _agents) = cluster(2);
    server.ok(&["create", "namespace", "doomed"]);
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=2",
        "-n",
        "doomed",
    ]);
    server.ok(&["create", "configmap", "settings", "-n", "doomed"]);
    server.ok(&["expose", "deployment", "web", "--port=80", "-n", "doomed"]);
    server.ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "doomed",
        "--timeout=60s",
    ]);
    server.ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let (found, _, err) = server.kubectl(&["get", "namespace", "doomed"]);
    assert!(!found && err.contains("NotFound"), "{err}");
    let left = server.ok(&[
        "get",
        "pods,rs,deploy,svc,cm",
        "-n",
        "doomed",
        "--no-headers",
    ]);
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn pods_of_a_deleted_node_are_removed_and_replaced() {
    let (server, mut agents) = cluster(2);
    server.ok(&[
        "create",
        "deployment",
        "spread",
        "--image=busybox",
        "--replicas=4",
    ]);
    server.ok(&["rollout", "status", "deployment/spread", "--timeout=60s"]);
    let on_node0 = |server: &common::Server| {
        pods(server, "app=spread")
            .iter()
            .filter(|p| p["spec"]["nodeName"] == "node-0")
            .count()
    };
    assert!(
        on_node0(&server) > 0,
        "{}",
        server.ok(&["get", "pods", "-o", "wide"])
    );
    // The node dies and an admin removes it: nobody is left to finish its pods.
    agents[0].kill();
    server.ok(&["delete", "node", "node-0"]);
    let gone = eventually(Duration::from_secs(20), || on_node0(&server) == 0);
    assert!(gone, "{}", server.ok(&["get", "pods", "-o", "wide"]));
    let (ok, _, err) = server.kubectl(&["rollout", "status", "deployment/spread", "--timeout=60s"]);
    assert!(ok, "{err}");
    assert!(pods(&server, "app=spread")
        .iter()
        .all(|p| p["spec"]["nodeName"] == "node-1"));
    let events = server.ok(&["get", "events", "--field-selector", "reason=NodeGone"]);
    assert!(events.contains("Node node-0 is gone"), "{events}");
}
