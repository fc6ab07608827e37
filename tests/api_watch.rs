//! Watches resume from a resourceVersion, and a compacted one gets 410 Expired.

mod common;

use std::time::Duration;

use common::{eventually, Server};

fn raw_watch(server: &Server, rv: &str) -> String {
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2"
    );
    server.ok(&["get", "--raw", &path])
}

/// A watch of one configmap: the root CA publisher may add `kube-root-ca.crt` to the
/// namespace at any moment after start, which a test of one object must not see.
fn raw_watch_of(server: &Server, rv: &str, name: &str) -> String {
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2&fieldSelector=metadata.name%3D{name}"
    );
    server.ok(&["get", "--raw", &path])
}

fn many_configmaps(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {prefix}-{i}\ndata:\n  i: \"{i}\"\n"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn watch_resumes_from_a_resource_version() {
    let server = Server::start();
    server.ok(&["create", "configmap", "tracked", "--from-literal=v=0"]);
    let rv = server.get_json(&["configmap", "tracked"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for v in 1..=3 {
        server.ok(&[
            "label",
            "configmap",
            "tracked",
            &format!("v={v}"),
            "--overwrite",
        ]);
    }
    server.ok(&["delete", "configmap", "tracked"]);
    let events: Vec<serde_json::Value> = raw_watch_of(&server, &rv, "tracked")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"],
        "{events:?}"
    );
    assert_eq!(events[2]["object"]["metadata"]["labels"]["v"], "3");
    let rvs: Vec<i64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
}

#[test]
fn a_compacted_resource_version_gets_410_expired() {
    let server = Server::start_with(&["--history-revisions", "100", "--history-min-age", "0"]);
    server.ok(&["create", "configmap", "early"]);
    let rv = server.get_json(&["configmap", "early"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], &many_configmaps("churn", 150));
    assert!(ok, "{err}");
    let mut last = String::new();
    let expired = eventually(Duration::from_secs(40), || {
        last = raw_watch(&server, &rv);
        last.contains("\"ERROR\"")
    });
    assert!(expired, "watch from {rv} never expired: {last}");
    let event: serde_json::Value = serde_json::from_str(last.lines().next().unwrap()).unwrap();
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    assert!(event["object"]["message"]
        .as_str()
        .unwrap()
        .contains("too old resource version"));
    // A recent revision still works.
    let now = server.get_json(&["configmap", "churn-149"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!raw_watch(&server, &now).contains("ERROR"));
}
