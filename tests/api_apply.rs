//! Server-side apply between field managers, with the real kubectl: identical values
//! are shared (no conflict, both managers own the field), different values conflict
//! with kube-apiserver's message until `--force-conflicts`.

mod common;

use common::Server;

const CONFIG: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    app: web
data:
  mode: fast
  level: \"3\"
";

fn apply_as(
    server: &Server,
    manager: &str,
    manifest: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "apply",
        "--server-side",
        "--field-manager",
        manager,
        "-f",
        "-",
    ];
    args.extend_from_slice(extra);
    server.with_stdin(&args, manifest)
}

fn managers(server: &Server) -> Vec<String> {
    let cm = server.get_json(&["configmap", "settings", "--show-managed-fields"]);
    cm["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["operation"] == "Apply")
        .map(|e| e["manager"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn identical_values_are_shared_and_different_ones_conflict() {
    let server = Server::start();
    let (ok, out, err) = apply_as(&server, "a", CONFIG, &[]);
    assert!(ok, "first apply failed: {out}{err}");

    // b applies the same values: no conflict (not even on .metadata), co-ownership.
    let (ok, out, err) = apply_as(&server, "b", CONFIG, &[]);
    assert!(
        ok,
        "identical apply by a second manager conflicted: {out}{err}"
    );
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    assert_eq!(managers(&server), ["a", "b"]);
    let cm = server.get_json(&["configmap", "settings", "--show-managed-fields"]);
    for entry in cm["metadata"]["managedFields"].as_array().unwrap() {
        assert!(
            entry["fieldsV1"]["f:data"]["f:mode"].is_object(),
            "{} does not own data.mode: {entry}",
            entry["manager"]
        );
    }

    // A different value for a shared field is a conflict with both owners... only
    // one other owner here: a.
    let changed = CONFIG.replace("mode: fast", "mode: slow");
    let (ok, _, err) = apply_as(&server, "b", &changed, &[]);
    assert!(!ok, "a differing value did not conflict");
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"a\": .data.mode"),
        "{err}"
    );
    assert_eq!(
        server.get_json(&["configmap", "settings"])["data"]["mode"],
        "fast"
    );

    // Forced, b takes the field over; a keeps what it still shares.
    let (ok, out, err) = apply_as(&server, "b", &changed, &["--force-conflicts"]);
    assert!(ok, "forced apply failed: {out}{err}");
    let cm = server.get_json(&["configmap", "settings", "--show-managed-fields"]);
    assert_eq!(cm["data"]["mode"], "slow");
    let of_a = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "a")
        .cloned()
        .unwrap();
    assert!(of_a["fieldsV1"]["f:data"].get("f:mode").is_none(), "{of_a}");
    assert!(of_a["fieldsV1"]["f:data"]["f:level"].is_object(), "{of_a}");
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let server = Server::start();
    assert!(apply_as(&server, "a", CONFIG, &[]).0);
    let changed = CONFIG
        .replace("mode: fast", "mode: slow")
        .replace("level: \"3\"", "level: \"4\"");
    let (ok, _, err) = apply_as(&server, "b", &changed, &[]);
    assert!(!ok);
    assert!(err.contains("Apply failed with 2 conflicts"), "{err}");
    assert!(err.contains("conflicts with \"a\":"), "{err}");
    assert!(
        err.contains("- .data.level") && err.contains("- .data.mode"),
        "{err}"
    );
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: c
        image: busybox
";

#[test]
fn a_defaulted_deployment_is_shared_too() {
    let server = Server::start();
    let (ok, out, err) = apply_as(&server, "a", DEPLOYMENT, &[]);
    assert!(ok, "{out}{err}");
    // The server defaulted the containers (imagePullPolicy, …): still the same value.
    let (ok, out, err) = apply_as(&server, "b", DEPLOYMENT, &[]);
    assert!(
        ok,
        "identical Deployment by a second manager conflicted: {out}{err}"
    );
    let (ok, _, err) = apply_as(
        &server,
        "b",
        &DEPLOYMENT.replace("replicas: 2", "replicas: 3"),
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"),
        "{err}"
    );
}
