//! A stored object that no longer decodes into its typed struct (a schema change, a
//! bug, an older skiff) is logged and skipped by the controllers, the scheduler and
//! the node agent instead of stalling their watches.

mod common;

use std::time::Duration;

use common::{cluster, eventually, pods};

const LOGGED: &str = "skipping a stored object that does not decode";

/// Rewrites `"containerPort":80` to a string in every stored version of the objects
/// whose key ends with `suffix` (the server must be stopped). repair.rs does not fix
/// this: only a typed decode fails on it.
fn plant_bad_port(db: &std::path::Path, suffix: &str) {
    let db = rusqlite::Connection::open(db).unwrap();
    for table in ["current", "log"] {
        let changed = db
            .execute(
                &format!(
                    "UPDATE {table} SET value = CAST(replace(CAST(value AS TEXT), '\"containerPort\":80', '\"containerPort\":\"eighty\"') AS BLOB) WHERE key LIKE '%{suffix}'"
                ),
                [],
            )
            .unwrap();
        assert!(changed > 0, "planted in {table} for {suffix}");
    }
}

#[test]
fn objects_that_no_longer_decode_are_logged_and_skipped_by_controllers_scheduler_and_agent() {
    let (mut server, mut agents) = cluster(1);
    let port = "    ports:\n    - containerPort: 80\n";
    let old_pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: old\nspec:\n  nodeName: node-0\n  containers:\n  - name: c\n    image: busybox\n{port}"
    );
    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], &old_pod);
    assert!(ok, "{err}");
    let old_deployment = deployment("olddep", 0, port);
    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], &old_deployment);
    assert!(ok, "{err}");

    server.kill9();
    plant_bad_port(&server.db_path(), "/default/old");
    plant_bad_port(&server.db_path(), "/default/olddep");
    server.restart();
    // The running agent resumes its watch where it was (the planted change made no
    // new revision); a restarted one lists the bad pod afresh.
    agents[0].restart(&server);
    // The object itself is still served as stored (untyped), so kubectl can fix it.
    let stored = server.get_json(&["pod", "old"]);
    assert_eq!(
        stored["spec"]["containers"][0]["ports"][0]["containerPort"],
        "eighty"
    );

    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], &deployment("web", 2, ""));
    assert!(ok, "{err}");
    let running = eventually(Duration::from_secs(40), || {
        let web = pods(&server, "app=web");
        web.len() == 2
            && web
                .iter()
                .all(|p| p["spec"]["nodeName"] == "node-0" && p["status"]["phase"] == "Running")
    });
    assert!(
        running,
        "the deployment's pods were not created, scheduled and started: {}\n{}",
        server.ok(&["get", "pods", "-o", "wide"]),
        server.log()
    );
    assert!(!server
        .ok(&["get", "replicasets", "-l", "app=web"])
        .is_empty());

    let log = server.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("kube_client") && l.contains("eighty")),
        "a typed list still failed on the bad object: {log}"
    );
    for name in ["\"old\"", "\"olddep\""] {
        let line = log
            .lines()
            .find(|l| l.contains(LOGGED) && l.contains(name))
            .unwrap_or_else(|| panic!("no log line for {name}: {log}"));
        assert!(
            line.contains("containerPort") || line.contains("invalid type"),
            "{line}"
        );
    }
    assert!(
        eventually(Duration::from_secs(20), || agents[0].log().contains(LOGGED)),
        "the node agent's pod watch did not log the bad pod: {}",
        agents[0].log()
    );
}

fn deployment(name: &str, replicas: u32, container_extra: &str) -> String {
    let container_extra = container_extra.replace("    ", "        ");
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n{container_extra}"
    )
}
