//! A node that dies: within 60 s it is NotReady and its pods run elsewhere; a
//! Service's endpoints stop listing pods on it within 25 s; when it comes back its
//! stale pods are cleaned up, not duplicated.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, eventually, is_terminating, pods};

const APP: &str = "app=web";

fn endpoint_pods(server: &common::Server) -> Vec<String> {
    let ep = server.get_json(&["endpoints", "web"]);
    ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| a["targetRef"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn pods_leave_a_dead_node_and_endpoints_drop_them() {
    let (server, mut agents) = cluster(3);
    server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=3",
        "--port=80",
    ]);
    server.ok(&["expose", "deployment", "web", "--port=80"]);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(eventually(Duration::from_secs(20), || endpoint_pods(
        &server
    )
    .len()
        == 3));
    let on_dead: Vec<String> = pods(&server, APP)
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "node-1")
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!on_dead.is_empty(), "no pod on node-1 to lose");

    let died = Instant::now();
    agents[1].kill();
    let not_ready = eventually(Duration::from_secs(60), || {
        server
            .ok(&["get", "node", "node-1", "--no-headers"])
            .contains("NotReady")
    });
    assert!(not_ready, "node-1 never became NotReady");
    let dropped = eventually(
        Duration::from_secs(25).saturating_sub(died.elapsed()),
        || endpoint_pods(&server).iter().all(|p| !on_dead.contains(p)),
    );
    assert!(
        dropped,
        "endpoints still list pods of the dead node after 25 s: {:?}",
        endpoint_pods(&server)
    );
    let moved = eventually(
        Duration::from_secs(60).saturating_sub(died.elapsed()),
        || {
            let live: Vec<_> = pods(&server, APP)
                .into_iter()
                .filter(|p| !is_terminating(p))
                .collect();
            live.len() == 3
                && live
                    .iter()
                    .all(|p| p["spec"]["nodeName"] != "node-1" && p["status"]["phase"] == "Running")
        },
    );
    assert!(
        moved,
        "pods not replaced within 60 s:\n{}",
        server.ok(&["get", "pods", "-o", "wide"])
    );

    // The node comes back: its stale pods are deleted, none is duplicated.
    // (The same machine: its data dir, so its node password, is kept.)
    agents[1].restart(&server);
    let cleaned = eventually(Duration::from_secs(40), || {
        let all = pods(&server, APP);
        all.len() == 3
            && all
                .iter()
                .all(|p| !on_dead.contains(&p["metadata"]["name"].as_str().unwrap().to_string()))
    });
    assert!(cleaned, "{}", server.ok(&["get", "pods", "-o", "wide"]));
    assert!(eventually(Duration::from_secs(30), || server
        .ok(&["get", "node", "node-1", "--no-headers"])
        .contains(" Ready")));
}
