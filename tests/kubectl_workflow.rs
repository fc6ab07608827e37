//! The everyday kubectl workflow against a real server: apply (create, unchanged,
//! configured), server-side apply, protobuf creates, `kind: List` files, get in every
//! output form, watch, scale, label, annotate, expose, delete.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{eventually, fixture, Server};

fn modified_fixture() -> String {
    let original = std::fs::read_to_string(fixture("deployment.yaml")).unwrap();
    let modified = original.replace("replicas: 3", "replicas: 2").replace(
        "image: my-flask-app:latest",
        "image: my-flask-app:v2\n        env:\n        - name: MODE\n          value: production",
    );
    // Drop the liveness probe (its six lines).
    let mut lines: Vec<&str> = modified.lines().collect();
    let probe = lines
        .iter()
        .position(|l| l.contains("livenessProbe"))
        .unwrap();
    lines.drain(probe..probe + 6);
    lines.join("\n") + "\n"
}

#[test]
fn apply_is_created_unchanged_then_configured_with_exactly_the_new_spec() {
    let server = Server::start();
    let path = fixture("deployment.yaml");
    let path = path.to_str().unwrap();
    assert!(server
        .ok(&["apply", "-f", path])
        .contains("deployment.apps/my-flask-app created"));
    assert!(server
        .ok(&["apply", "-f", path])
        .contains("deployment.apps/my-flask-app unchanged"));

    let d = server.get_json(&["deployment", "my-flask-app"]);
    assert_eq!(d["metadata"]["generation"], 1);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    // Server-side defaults, as kubectl describe relies on.
    assert_eq!(container["ports"][0]["protocol"], "TCP");
    assert_eq!(container["livenessProbe"]["timeoutSeconds"], 1);
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);

    let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], &modified_fixture());
    assert!(ok, "{err}");
    assert!(
        out.contains("deployment.apps/my-flask-app configured"),
        "{out}"
    );
    let d = server.get_json(&["deployment", "my-flask-app"]);
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["spec"]["replicas"], 2);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["image"], "my-flask-app:v2");
    assert_eq!(
        containers[0]["env"],
        serde_json::json!([{"name": "MODE", "value": "production"}])
    );
    assert!(
        containers[0].get("livenessProbe").is_none(),
        "probe removed: {}",
        containers[0]
    );
    assert_eq!(containers[0]["resources"]["limits"]["memory"], "256Mi");
    let yaml = server.ok(&["get", "deployment", "my-flask-app", "-o", "yaml"]);
    assert!(yaml.contains("image: my-flask-app:v2") && !yaml.contains("livenessProbe"));

    assert!(server
        .ok(&["delete", "-f", path])
        .contains("deployment.apps \"my-flask-app\" deleted"));
    let err = server.fails(&["get", "deployment", "my-flask-app"]);
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn server_side_apply_creates_updates_and_drops_fields() {
    let server = Server::start();
    let first = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let (ok, out, err) = server.with_stdin(&["apply", "--server-side", "-f", "-"], first);
    assert!(ok, "{err}");
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    let second =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n";
    let (ok, _, err) = server.with_stdin(&["apply", "--server-side", "-f", "-"], second);
    assert!(ok, "{err}");
    let cm = server.get_json(&["configmap", "settings", "--show-managed-fields"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1"}));
    assert_eq!(cm["metadata"]["managedFields"][0]["manager"], "kubectl");
}

#[test]
fn imperative_creates_send_protobuf_and_work() {
    let server = Server::start();
    assert!(server
        .ok(&["create", "namespace", "edge"])
        .contains("namespace/edge created"));
    let out = server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=2",
        "-n",
        "edge",
    ]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = server.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=mode=fast",
        "-n",
        "edge",
    ]);
    assert!(out.contains("configmap/cfg created"), "{out}");
    let d = server.get_json(&["deployment", "web", "-n", "edge"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let cm = server.get_json(&["configmap", "cfg", "-n", "edge"]);
    assert_eq!(cm["data"]["mode"], "fast");
    let err = server.fails(&["create", "namespace", "edge"]);
    assert!(err.contains("AlreadyExists"), "{err}");
}

const CONFIG_MAP_LIST: &str = "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: first}
  data: {x: \"1\"}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: second}
  data: {x: \"2\"}
";

/// A `kind: List` file (what `kubectl get -o yaml` writes) goes through create and
/// apply with kubectl's default validation, which reads `/openapi/v2` (protobuf) for
/// it; an unknown field in an item is refused by kubectl itself against those
/// definitions, as against kube-apiserver.
#[test]
fn list_files_create_apply_and_round_trip_with_default_validation() {
    let server = Server::start();
    let (ok, out, err) = server.with_stdin(&["create", "-f", "-"], CONFIG_MAP_LIST);
    assert!(ok, "{err}");
    assert!(out.contains("configmap/first created"), "{out}");
    assert!(out.contains("configmap/second created"), "{out}");

    let listed = server.ok(&["get", "configmap", "first", "second", "-o", "yaml"]);
    assert!(listed.contains("kind: List"), "{listed}");
    let edited = listed.replace("x: \"1\"", "x: \"3\"");
    let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], &edited);
    assert!(ok, "{err}");
    assert!(out.contains("configmap/first configured"), "{out}");
    assert_eq!(server.get_json(&["configmap", "first"])["data"]["x"], "3");

    let bad = CONFIG_MAP_LIST
        .replace("first", "third")
        .replace("data: {x: \"1\"}", "data: {x: \"1\"}\n  bogus: 1");
    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], &bad);
    assert!(!ok);
    assert!(
        err.contains(
            r#"ValidationError(ConfigMap): unknown field "bogus" in io.k8s.api.core.v1.ConfigMap"#
        ),
        "{err}"
    );
    server.fails(&["get", "configmap", "third"]);
    // Without validation, the unknown field is dropped (fieldValidation=Ignore).
    let (ok, _, err) = server.with_stdin(&["apply", "--validate=false", "-f", "-"], &bad);
    assert!(ok, "{err}");
    let third = server.get_json(&["configmap", "third"]);
    assert!(third.get("bogus").is_none(), "{third}");
}

/// `--validate=warn`: kubectl prints the server's warning and the object is stored
/// without the unknown field, as kube-apiserver stores it.
#[test]
fn unknown_fields_warned_about_are_not_stored() {
    let server = Server::start();
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: warned}\ndata: {x: \"1\"}\nbogus: 1\n";
    let (ok, _, err) = server.with_stdin(&["apply", "--validate=warn", "-f", "-"], manifest);
    assert!(ok, "{err}");
    assert!(err.contains("Warning: unknown field \"bogus\""), "{err}");
    let stored = server.get_json(&["configmap", "warned"]);
    assert!(stored.get("bogus").is_none(), "{stored}");
    assert_eq!(stored["data"]["x"], "1");
}

#[test]
fn get_prints_tables_wide_all_namespaces_labels_and_documents() {
    let server = Server::start();
    server.ok(&["create", "deployment", "web", "--image=nginx"]);
    server.ok(&["create", "namespace", "other"]);
    server.ok(&[
        "create",
        "deployment",
        "api",
        "--image=busybox",
        "-n",
        "other",
    ]);

    let table = server.ok(&["get", "deployments"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(table.contains("web"));
    let wide = server.ok(&["get", "deployments", "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("nginx") && wide.contains("app=web"),
        "{wide}"
    );
    let all = server.ok(&["get", "deployments", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(all.contains("other") && all.contains("api") && all.contains("web"));
    let labelled = server.ok(&["get", "deployments", "-A", "-l", "app=api", "--show-labels"]);
    assert!(
        labelled.contains("api") && !labelled.contains("web") && labelled.contains("app=api"),
        "{labelled}"
    );
    let yaml = server.ok(&["get", "deployment", "web", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment") && yaml.contains("resourceVersion:"));
    let list = server.get_json(&["deployments", "-A"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let ns = server.ok(&["get", "namespaces"]);
    for name in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "other",
    ] {
        assert!(ns.contains(name), "{ns}");
    }
    let svc = server.ok(&["get", "service", "kubernetes"]);
    assert!(
        svc.contains("10.43.0.1") && svc.contains("443/TCP"),
        "{svc}"
    );
}

#[test]
fn watch_sees_a_change_made_by_another_command() {
    let server = Server::start();
    server.ok(&["create", "configmap", "watched", "--from-literal=a=1"]);
    let mut watcher = server
        .kubectl_cmd(&["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The initial listing arrives first.
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        first.contains("NAME") || first.contains("watched"),
        "{first}"
    );
    std::thread::sleep(Duration::from_millis(300));
    server.ok(&["label", "configmap", "watched", "color=blue"]);
    server.ok(&["create", "configmap", "newcomer", "--from-literal=b=2"]);
    let mut seen = String::new();
    let got = eventually(Duration::from_secs(10), || {
        while let Ok(line) = rx.try_recv() {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen.contains("MODIFIED") && seen.contains("newcomer")
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(got, "watch output:\n{seen}");
}

#[test]
fn scale_label_annotate_expose_and_delete() {
    let server = Server::start();
    let path = fixture("deployment.yaml");
    server.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert!(server
        .ok(&["scale", "deployment", "my-flask-app", "--replicas=5"])
        .contains("scaled"));
    let d = server.get_json(&["deployment", "my-flask-app"]);
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2);

    server.ok(&["label", "deployment", "my-flask-app", "tier=web"]);
    server.ok(&["annotate", "deployment", "my-flask-app", "owner=ops"]);
    let d = server.get_json(&["deployment", "my-flask-app"]);
    assert_eq!(d["metadata"]["labels"]["tier"], "web");
    assert_eq!(d["metadata"]["annotations"]["owner"], "ops");
    // Metadata changes do not bump the generation.
    assert_eq!(d["metadata"]["generation"], 2);
    server.ok(&["label", "deployment", "my-flask-app", "tier-"]);
    let d = server.get_json(&["deployment", "my-flask-app"]);
    assert!(d["metadata"]["labels"].get("tier").is_none());

    let out = server.ok(&[
        "expose",
        "deployment",
        "my-flask-app",
        "--port=80",
        "--target-port=5000",
    ]);
    assert!(out.contains("service/my-flask-app exposed"), "{out}");
    let svc = server.get_json(&["service", "my-flask-app"]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.43."), "{ip}");
    assert_ne!(ip, "10.43.0.1");
    assert_eq!(svc["spec"]["selector"]["app"], "my-flask-app");
    let nodeport = "apiVersion: v1\nkind: Service\nmetadata:\n  name: np\nspec:\n  type: NodePort\n  selector:\n    app: my-flask-app\n  ports:\n  - port: 80\n";
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], nodeport);
    assert!(ok, "{err}");
    let np = server.get_json(&["service", "np"]);
    let port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&port));
    assert_ne!(np["spec"]["clusterIP"], svc["spec"]["clusterIP"]);

    server.ok(&["delete", "service", "my-flask-app", "np"]);
    server.ok(&["delete", "deployment", "my-flask-app"]);
    assert!(server.ok(&["get", "deployments"]).is_empty());
}
