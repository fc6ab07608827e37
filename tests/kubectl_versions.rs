//! Every supported kubectl minor (1.27–1.33, the versioned binaries the Cloud SDK
//! ships) discovers skiff and manages a Deployment: `api-resources`, `apply -f`,
//! `get deploy`, `delete`. Each command gets a fresh `--cache-dir`, so discovery is
//! really fetched every time, and the aggregated discovery version the server chose
//! (`v2beta1` for 1.27–1.29, `v2` from 1.30) is checked in kubectl's own `-v=8` log.
//! Each also explains `deployment.spec.strategy.rollingUpdate` from the served OpenAPI
//! schemas. The negotiation itself (q-values, q=0, legacy, 406, `Vary: Accept`) is checked on
//! the wire through curl with the kubeconfig's client certificate.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use common::{fixture, Server};
use serde_json::Value;

/// The versioned kubectl binaries installed next to the Cloud SDK.
fn kubectl_binary(minor: u32) -> PathBuf {
    let path = PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"));
    assert!(path.exists(), "{} is missing", path.display());
    path
}

struct VersionedKubectl<'a> {
    server: &'a Server,
    binary: PathBuf,
    runs: std::cell::Cell<u32>,
}

impl VersionedKubectl<'_> {
    /// Runs one command with a cache dir of its own; returns (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let run = self.runs.get() + 1;
        self.runs.set(run);
        let cache = self.server.dir.path().join(format!("cache-{run}"));
        let out = Command::new(&self.binary)
            .args(args)
            .arg("--cache-dir")
            .arg(&cache)
            .env("KUBECONFIG", self.server.kubeconfig())
            .env("HOME", self.server.dir.path().join("home"))
            .stdin(Stdio::null())
            .output()
            .expect("run versioned kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(
            ok,
            "{} {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}",
            self.binary.display()
        );
        stdout
    }
}

fn discovers_and_manages_a_deployment(minor: u32, expected_discovery: &str) {
    let server = Server::start();
    let kubectl = VersionedKubectl {
        server: &server,
        binary: kubectl_binary(minor),
        runs: Default::default(),
    };

    let (ok, resources, log) = kubectl.run(&["api-resources", "-v=8"]);
    assert!(ok, "api-resources failed:\n{resources}\n{log}");
    let deployments = resources
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_else(|| panic!("no deployments in api-resources:\n{resources}"));
    assert!(deployments.contains("apps/v1"), "{deployments}");
    let content_type = format!(
        "Content-Type: application/json;g=apidiscovery.k8s.io;v={expected_discovery};as=APIGroupDiscoveryList"
    );
    assert!(
        log.contains(&content_type),
        "kubectl 1.{minor} did not get {expected_discovery} aggregated discovery:\n{log}"
    );

    explains_a_deployment_field(&kubectl, minor);

    let path = fixture("deployment.yaml");
    let path = path.to_str().unwrap();
    let applied = kubectl.ok(&["apply", "-f", path]);
    assert!(
        applied.contains("deployment.apps/my-flask-app created"),
        "{applied}"
    );
    let listed = kubectl.ok(&["get", "deploy"]);
    assert!(
        listed.lines().any(|l| l.starts_with("my-flask-app ")),
        "{listed}"
    );
    let deleted = kubectl.ok(&["delete", "-f", path]);
    assert!(
        deleted.contains("deployment.apps \"my-flask-app\" deleted"),
        "{deleted}"
    );
    let (found, stdout, stderr) = kubectl.run(&["get", "deploy", "my-flask-app"]);
    assert!(!found, "still there after delete: {stdout}");
    assert!(stderr.contains("NotFound"), "{stderr}");
}

/// `kubectl explain` renders a field from the OpenAPI v3 schemas: its type, its
/// description and its own fields with theirs.
fn explains_a_deployment_field(kubectl: &VersionedKubectl, minor: u32) {
    let explained = kubectl.ok(&["explain", "deployment.spec.strategy.rollingUpdate"]);
    for expected in [
        "KIND:",
        "Deployment",
        "rollingUpdate",
        "<RollingUpdateDeployment>",
        "maxSurge",
        "maxUnavailable",
        "The maximum number of pods that can be scheduled above the desired number",
    ] {
        assert!(
            explained.contains(expected),
            "kubectl 1.{minor} explain lacks {expected:?}:\n{explained}"
        );
    }
    // An int-or-string field is a string with format int-or-string in upstream's
    // schemas, and every kubectl prints it so.
    let int_or_string = "maxSurge\t<string>";
    assert!(
        explained.contains(int_or_string),
        "kubectl 1.{minor}: no {int_or_string:?}:\n{explained}"
    );
}

#[test]
fn kubectl_1_27_gets_v2beta1_discovery_and_manages_a_deployment() {
    discovers_and_manages_a_deployment(27, "v2beta1");
}

#[test]
fn kubectl_1_28_gets_v2beta1_discovery_and_manages_a_deployment() {
    discovers_and_manages_a_deployment(28, "v2beta1");
}

#[test]
fn kubectl_1_29_gets_v2beta1_discovery_and_manages_a_deployment() {
    discovers_and_manages_a_deployment(29, "v2beta1");
}

#[test]
fn kubectl_1_30_gets_v2_discovery_and_manages_a_deployment() {
    discovers_and_manages_a_deployment(30, "v2");
}

#[test]
fn kubectl_1_31_gets_v2_discovery_and_manages_a_deployment() {
    discovers_and_manages_a_deployment(31, "v2");
}

#[test]
fn kubectl_1_32_gets_v2_discovery_and_manages_a_deployment() {
    discovers_and_manages_a_deployment(32, "v2");
}

#[test]
fn kubectl_1_33_gets_v2_discovery_and_manages_a_deployment() {
    discovers_and_manages_a_deployment(33, "v2");
}

/// One discovery answer as curl saw it.
struct Answer {
    code: u16,
    headers: String,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// `GET path` with the given Accept header, as the kubeconfig's admin.
fn get_with_accept(server: &Server, path: &str, accept: &str) -> Answer {
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    let write = |file: &str, field: &str| -> PathBuf {
        let data = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("{field} in the kubeconfig"));
        let path = server.dir.path().join(file);
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .unwrap();
        std::fs::write(&path, pem).unwrap();
        path
    };
    let headers_file = server.dir.path().join("headers.txt");
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Accept: {accept}"))
        .arg("-D")
        .arg(&headers_file)
        .arg("--cacert")
        .arg(write("ca.pem", "certificate-authority-data"))
        .arg("--cert")
        .arg(write("client.pem", "client-certificate-data"))
        .arg("--key")
        .arg(write("client-key.pem", "client-key-data"))
        .arg(format!("https://127.0.0.1:{}{path}", server.port))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl wrote no code: {text}"));
    Answer {
        code: code.trim().parse().expect("an HTTP code"),
        headers: std::fs::read_to_string(&headers_file).unwrap(),
        body: serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    }
}

const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

#[test]
fn discovery_answers_the_form_the_accept_header_prefers() {
    let server = Server::start();
    let cases = [
        (format!("{V2BETA1},application/json"), V2BETA1),
        (format!("{V2},{V2BETA1},application/json"), V2),
        (
            format!("{V2};q=0.5,{V2BETA1};q=0.8,application/json;q=0.1"),
            V2BETA1,
        ),
        (format!("{V2};q=0,application/json"), "application/json"),
        ("application/json".to_string(), "application/json"),
        ("*/*".to_string(), "application/json"),
    ];
    for path in ["/api", "/apis"] {
        for (accept, expected) in &cases {
            let answer = get_with_accept(&server, path, accept);
            assert_eq!(answer.code, 200, "{path} {accept}: {}", answer.body);
            assert_eq!(
                answer.header("Content-Type"),
                Some(*expected),
                "{path} {accept}"
            );
            assert_eq!(answer.header("Vary"), Some("Accept"), "{path} {accept}");
            let (kind, api_version) = match (*expected, path) {
                (V2, _) => ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2"),
                (V2BETA1, _) => ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2beta1"),
                (_, "/api") => ("APIVersions", ""),
                _ => ("APIGroupList", "v1"),
            };
            assert_eq!(answer.body["kind"], kind, "{path} {accept}");
            if !api_version.is_empty() {
                assert_eq!(answer.body["apiVersion"], api_version, "{path} {accept}");
            }
        }
    }
    let refused = get_with_accept(&server, "/apis", "application/json;q=0");
    assert_eq!(refused.code, 406, "{}", refused.body);
    assert_eq!(refused.body["reason"], "NotAcceptable");
}
