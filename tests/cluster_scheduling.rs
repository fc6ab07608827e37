//! The scheduler on simulated nodes: cordoned nodes get no new pods, and a pod that
//! fits nowhere stays Pending with a FailedScheduling event.

mod common;

use std::time::Duration;

use common::{cluster, eventually, pods};

#[test]
fn cordoned_nodes_get_no_new_pods() {
    let (server, _agents) = cluster(3);
    server.ok(&["cordon", "node-0"]);
    let nodes = server.ok(&["get", "nodes"]);
    assert!(nodes.contains("SchedulingDisabled"), "{nodes}");
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=6",
    ]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let placed = pods(&server, "app=web");
    assert_eq!(placed.len(), 6);
    assert!(
        placed.iter().all(|p| p["spec"]["nodeName"] != "node-0"),
        "a pod landed on the cordoned node"
    );
    server.ok(&["uncordon", "node-0"]);
}

#[test]
fn a_pod_that_fits_nowhere_is_pending_with_a_failed_scheduling_event() {
    let (server, _agents) = cluster(3);
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: huge\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources:\n      requests:\n        cpu: \"64\"\n";
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], manifest);
    assert!(ok, "{err}");
    let pending = eventually(Duration::from_secs(20), || {
        let events = server.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=huge",
        ]);
        events.contains("FailedScheduling")
    });
    assert!(pending, "{}", server.ok(&["describe", "pod", "huge"]));
    let pod = server.get_json(&["pod", "huge"]);
    assert_eq!(pod["status"]["phase"], "Pending");
    let scheduled = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()
        .clone();
    assert_eq!(scheduled["status"], "False");
    assert!(
        scheduled["message"]
            .as_str()
            .unwrap()
            .contains("Insufficient cpu"),
        "{scheduled}"
    );
    let describe = server.ok(&["describe", "pod", "huge"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");
}
