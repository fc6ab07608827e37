//! DELETE and eviction answers on the wire, as kube-apiserver gives them: a `Status`
//! for most kinds, the object for pods, services, namespaces and serviceaccounts;
//! protobuf DeleteOptions and Eviction bodies; every 404 with `details`. Requests go
//! through curl with the kubeconfig's client certificate, so the bodies are exactly
//! what the server sent.

mod common;

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use common::Server;
use serde_json::Value;

/// curl with the admin credentials of `server`'s kubeconfig.
struct Http {
    base: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Http {
    fn new(server: &Server) -> Http {
        let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
        let field = |name: &str| -> Vec<u8> {
            let line = kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("{name} in the kubeconfig"));
            base64::engine::general_purpose::STANDARD
                .decode(line.trim())
                .unwrap()
        };
        let write = |file: &str, name: &str| -> PathBuf {
            let path = server.dir.path().join(file);
            std::fs::write(&path, field(name)).unwrap();
            path
        };
        Http {
            base: format!("https://127.0.0.1:{}", server.port),
            ca: write("ca.pem", "certificate-authority-data"),
            cert: write("client.pem", "client-certificate-data"),
            key: write("client-key.pem", "client-key-data"),
        }
    }

    /// (HTTP code, parsed body).
    fn call(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let body_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(body_file.path(), body).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "-X", method, "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .args(["-H", &format!("Content-Type: {content_type}")])
            .arg("--data-binary")
            .arg(format!("@{}", body_file.path().display()))
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (json, code) = text.rsplit_once('\n').expect("curl wrote the code");
        let value = serde_json::from_str(json).unwrap_or(Value::String(json.to_string()));
        (code.trim().parse().expect("an HTTP code"), value)
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, "application/json", b"")
    }

    /// DELETE that must answer 200 with a body of `kind`; returns the body.
    fn delete_ok(&self, path: &str, kind: &str) -> Value {
        let (code, body) = self.delete(path);
        assert_eq!((code, &body["kind"]), (200, &Value::from(kind)), "{body}");
        body
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (json, code) = text.rsplit_once('\n').unwrap();
        (
            code.trim().parse().unwrap(),
            serde_json::from_str(json).unwrap(),
        )
    }
}

// ---- a minimal protobuf writer, for the bodies client-go sends ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn int_field(out: &mut Vec<u8>, number: u64, v: u64) {
    varint(out, number << 3);
    varint(out, v);
}

/// `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    bytes_field(&mut type_meta, 1, api_version.as_bytes());
    bytes_field(&mut type_meta, 2, kind.as_bytes());
    let mut body = b"k8s\0".to_vec();
    bytes_field(&mut body, 1, &type_meta);
    bytes_field(&mut body, 2, raw);
    body
}

/// DeleteOptions{gracePeriodSeconds, preconditions{uid}}.
fn delete_options(grace: u64, uid: &str) -> Vec<u8> {
    let mut preconditions = Vec::new();
    bytes_field(&mut preconditions, 1, uid.as_bytes());
    let mut raw = Vec::new();
    int_field(&mut raw, 1, grace);
    bytes_field(&mut raw, 2, &preconditions);
    raw
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

#[test]
fn deletes_answer_a_status_or_the_object_as_kube_apiserver() {
    let server = Server::start();
    let http = Http::new(&server);
    server.ok(&["create", "configmap", "c1", "--from-literal=a=b"]);
    let uid = server.get_json(&["configmap", "c1"])["metadata"]["uid"].clone();
    let (code, body) = http.delete("/api/v1/namespaces/default/configmaps/c1");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["status"], "Success");
    assert_eq!(body["details"]["name"], "c1");
    assert_eq!(body["details"]["kind"], "configmaps");
    assert_eq!(body["details"]["uid"], uid);
    assert!(body["details"].get("group").is_none(), "{body}");

    server.ok(&["create", "deployment", "d1", "--image=busybox"]);
    let body = http.delete_ok("/apis/apps/v1/namespaces/default/deployments/d1", "Status");
    assert_eq!(body["details"]["group"], "apps");
    assert_eq!(body["details"]["kind"], "deployments");

    // ReturnDeletedObject registries: the object itself.
    server.ok(&["create", "service", "clusterip", "s1", "--tcp=80:80"]);
    http.delete_ok("/api/v1/namespaces/default/services/s1", "Service");
    server.ok(&["create", "namespace", "n1"]);
    let body = http.delete_ok("/api/v1/namespaces/n1", "Namespace");
    assert_eq!(body["status"]["phase"], "Terminating");

    // kubectl is fine with it.
    server.ok(&["create", "configmap", "c2"]);
    let out = server.ok(&["delete", "configmap", "c2"]);
    assert!(out.contains("configmap \"c2\" deleted"), "{out}");
}

#[test]
fn protobuf_delete_options_are_decoded() {
    let server = Server::start();
    let http = Http::new(&server);
    server.ok(&["create", "configmap", "c1"]);
    let path = "/api/v1/namespaces/default/configmaps/c1";
    // A precondition on another uid must fail: the body was read.
    let wrong = envelope("v1", "DeleteOptions", &delete_options(0, "not-the-uid"));
    let (code, body) = http.call("DELETE", path, PROTOBUF, &wrong);
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed"),
        "{body}"
    );

    let uid = server.get_json(&["configmap", "c1"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let right = envelope("v1", "DeleteOptions", &delete_options(0, &uid));
    let (code, body) = http.call("DELETE", path, PROTOBUF, &right);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "Success");
}

#[test]
fn evictions_delete_pods_and_missing_pods_are_not_found() {
    let server = Server::start();
    let http = Http::new(&server);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    assert!(server.with_stdin(&["apply", "-f", "-"], pod).0);

    // Discovery lists it, where kubectl drain looks.
    let (_, resources) = http.get("/api/v1");
    let eviction = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .expect("pods/eviction in /api/v1");
    assert_eq!(
        (&eviction["group"], &eviction["version"], &eviction["kind"]),
        (
            &Value::from("policy"),
            &Value::from("v1"),
            &Value::from("Eviction")
        )
    );

    let path = "/api/v1/namespaces/default/pods/p1/eviction";
    let mut meta = Vec::new();
    bytes_field(&mut meta, 1, b"p1");
    let mut raw = Vec::new();
    bytes_field(&mut raw, 1, &meta);
    let body = envelope("policy/v1", "Eviction", &raw);
    let (code, answer) = http.call("POST", path, PROTOBUF, &body);
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["status"], "Success");
    assert!(
        !server.kubectl(&["get", "pod", "p1"]).0,
        "the evicted pod is still there"
    );

    let json = br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p1"}}"#;
    let (code, answer) = http.call("POST", path, "application/json", json);
    assert_eq!(code, 404, "{answer}");
    assert_eq!(answer["details"]["name"], "p1");
    assert_eq!(answer["details"]["kind"], "pods");

    let other = br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p2"}}"#;
    let (code, _) = http.call("POST", path, "application/json", other);
    assert_eq!(code, 400);
}

#[test]
fn every_not_found_carries_details() {
    let server = Server::start();
    let http = Http::new(&server);
    server.ok(&["create", "configmap", "c1"]);
    for path in [
        "/api/v1/namespaces/default/pods/nope",
        "/api/v1/namespaces/default/pods/nope/ephemeralcontainers",
        "/api/v1/namespaces/default/configmaps/c1/bogus",
        "/api/v1/namespaces/default/bogus/x",
        "/apis/apps/v1/namespaces/default/daemonsets/ds",
        "/apis/no.such.group/v1/things",
    ] {
        let (code, body) = http.get(path);
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(body["kind"], "Status", "{path}: {body}");
        assert_eq!(body["reason"], "NotFound", "{path}: {body}");
        assert!(body["details"].is_object(), "{path} has no details: {body}");
    }
    // A missing object names itself; a path nothing serves has empty details, which
    // kubectl debug tells apart by the name.
    let (_, body) = http.get("/api/v1/namespaces/default/pods/nope");
    assert_eq!(body["details"]["name"], "nope");
    assert_eq!(body["details"]["kind"], "pods");
    let (_, body) = http.get("/api/v1/namespaces/default/configmaps/c1/bogus");
    assert_eq!(body["details"], serde_json::json!({}));
}
