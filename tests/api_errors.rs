//! Errors a user can cause come back as Kubernetes Status objects that kubectl prints
//! cleanly, and bad input never reaches the store.

mod common;

use common::Server;

fn deployment(name: &str, replicas: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n{extra}  selector:\n    matchLabels:\n      app: x\n  template:\n    metadata:\n      labels:\n        app: x\n    spec:\n      containers:\n      - name: c\n        image: busybox\n"
    )
}

#[test]
fn missing_objects_are_not_found() {
    let server = Server::start();
    let (ok, _, err) = server.kubectl(&["get", "deployment", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("Error from server (NotFound): deployments.apps \"nope\" not found"),
        "{err}"
    );
    let err = server.fails(&["get", "pods", "-n", "no-such-ns", "missing"]);
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn invalid_manifests_are_refused_and_nothing_is_stored() {
    let server = Server::start();
    let cases = [
        ("Bad_Name", deployment("Bad_Name", "1", ""), "metadata.name"),
        (
            "negative",
            deployment("negative", "-1", ""),
            "spec.replicas",
        ),
        (
            "typo",
            deployment("typo", "1", "  replicass: 2\n"),
            "replicass",
        ),
    ];
    for (name, manifest, field) in cases {
        let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], &manifest);
        assert!(!ok, "{name} was accepted: {out}");
        assert!(err.contains("is invalid"), "{name}: {err}");
        assert!(err.contains(field), "{name}: {err}");
        let (found, _, _) = server.kubectl(&["get", "deployment", name]);
        assert!(!found, "{name} was stored");
    }
    // The server is still fine and stores a valid one.
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], &deployment("good", "1", ""));
    assert!(ok, "{err}");
}

#[test]
fn creating_an_existing_name_is_already_exists() {
    let server = Server::start();
    server.ok(&["create", "configmap", "twice"]);
    let err = server.fails(&["create", "configmap", "twice"]);
    assert!(err.contains("configmaps \"twice\" already exists"), "{err}");
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: twice\n";
    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], manifest);
    assert!(!ok);
    assert!(err.contains("Error from server (AlreadyExists)"), "{err}");
}

/// curl, since kubectl prompts for a password when a kubeconfig user has no
/// credentials at all.
fn curl(server: &Server, path: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sk", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{}{path}", server.port));
    if let Some(token) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    let out = cmd
        .output()
        .expect("curl is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn unauthenticated_callers_get_401_and_the_join_token_403() {
    let server = Server::start();
    let (code, body) = curl(&server, "/api/v1/namespaces", None);
    assert_eq!(code, 401, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    // Health and version need no credentials.
    assert_eq!(curl(&server, "/readyz", None), (200, "ok".to_string()));
    let (code, body) = curl(&server, "/version", None);
    assert_eq!(code, 200);
    assert!(body.contains("\"minor\":\"32\""), "{body}");

    let token = std::fs::read_to_string(server.data_dir().join("server/token")).unwrap();
    let token = token.trim();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    let (code, body) = curl(&server, "/api/v1/namespaces", Some(token));
    assert_eq!(code, 403, "{body}");
    assert_eq!(curl(&server, "/api/v1/namespaces", Some("wrong")).0, 401);
    // kubectl with a wrong token prints the usual error.
    let config = server.dir.path().join("wrong-token.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: wrong\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
            server.port
        ),
    )
    .unwrap();
    let flag = format!("--kubeconfig={}", config.display());
    let err = server.fails(&[flag.as_str(), "get", "namespaces"]);
    assert!(
        err.contains("must be logged in") || err.contains("Unauthorized"),
        "{err}"
    );
}
