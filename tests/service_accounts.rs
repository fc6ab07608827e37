//! Service accounts end to end, with the real kubectl against a server without a
//! node: every namespace gets its `default` ServiceAccount and `kube-root-ca.crt`
//! (kept there when deleted or edited), `kubectl create token` issues a JWT the API
//! accepts (and authorizes only for discovery and whoami until RBAC), bad tokens get
//! 401, and pods get the service-account token volume unless they opt out.

mod common;

use std::time::Duration;

use common::{eventually, Server};
use serde_json::json;
use skiff::pki::signing::SigningKey;

const WAIT: Duration = Duration::from_secs(30);
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn server_ca(server: &Server) -> String {
    std::fs::read_to_string(server.data_dir().join("server/tls/ca.crt")).unwrap()
}

fn exists(server: &Server, args: &[&str]) -> bool {
    server.kubectl(args).0
}

fn wait_for_defaults(server: &Server, ns: &str) {
    assert!(
        eventually(WAIT, || exists(server, &["-n", ns, "get", "sa", "default"])),
        "no default ServiceAccount in {ns}:\n{}",
        server.log()
    );
    assert!(
        eventually(WAIT, || exists(
            server,
            &["-n", ns, "get", "cm", "kube-root-ca.crt"]
        )),
        "no kube-root-ca.crt in {ns}:\n{}",
        server.log()
    );
}

#[test]
fn every_namespace_keeps_its_default_account_and_root_ca() {
    let server = Server::start();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        wait_for_defaults(&server, ns);
    }
    server.ok(&["create", "namespace", "x"]);
    wait_for_defaults(&server, "x");
    let cm = server.get_json(&["-n", "x", "cm", "kube-root-ca.crt"]);
    assert_eq!(cm["data"]["ca.crt"], server_ca(&server));
    assert!(cm["metadata"]["annotations"]["kubernetes.io/description"]
        .as_str()
        .unwrap()
        .starts_with("Contains a CA bundle"));

    // Deleted: recreated.
    let old_uid = server.get_json(&["-n", "x", "sa", "default"])["metadata"]["uid"].clone();
    server.ok(&["-n", "x", "delete", "sa", "default"]);
    server.ok(&["-n", "x", "delete", "cm", "kube-root-ca.crt"]);
    assert!(eventually(WAIT, || {
        server
            .kubectl(&[
                "-n",
                "x",
                "get",
                "sa",
                "default",
                "-o",
                "jsonpath={.metadata.uid}",
            ])
            .1
            .trim()
            .len()
            > 10
            && server.get_json(&["-n", "x", "sa", "default"])["metadata"]["uid"] != old_uid
    }));
    wait_for_defaults(&server, "x");

    // Edited: set back.
    server.ok(&[
        "-n",
        "x",
        "patch",
        "cm",
        "kube-root-ca.crt",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"tampered","extra":"x"}}"#,
    ]);
    let ca = server_ca(&server);
    assert!(eventually(WAIT, || {
        let cm = server.get_json(&["-n", "x", "cm", "kube-root-ca.crt"]);
        cm["data"] == json!({"ca.crt": ca})
    }));
}

#[test]
fn created_tokens_authenticate_as_the_service_account() {
    let server = Server::start();
    wait_for_defaults(&server, "default");
    let token = server
        .ok(&["create", "token", "default"])
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let (ok, out, err) = server.kubectl_with_token(&token, &["auth", "whoami", "-o", "json"]);
    assert!(ok, "{err}");
    let review: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "system:serviceaccount:default:default"
    );
    let groups = review["status"]["userInfo"]["groups"].as_array().unwrap();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ] {
        assert!(groups.iter().any(|x| x == g), "{groups:?}");
    }

    let (ok, out, err) = server.kubectl_with_token(&token, &["get", "--raw", "/version"]);
    assert!(ok && out.contains("gitVersion"), "{err}");
    let (ok, _, err) = server.kubectl_with_token(&token, &["get", "pods"]);
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );

    // The OIDC documents describe the key that signed it.
    let (ok, out, err) = server.kubectl_with_token(&token, &["get", "--raw", "/openid/v1/jwks"]);
    assert!(ok, "{err}");
    let jwks: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    let (ok, out, err) = server.kubectl_with_token(
        &token,
        &["get", "--raw", "/.well-known/openid-configuration"],
    );
    assert!(ok, "{err}");
    let discovery: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        discovery["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        discovery["jwks_uri"],
        "https://kubernetes.default.svc.cluster.local/openid/v1/jwks"
    );

    // Deleting the account revokes its tokens.
    server.ok(&["delete", "sa", "default"]);
    assert!(eventually(WAIT, || {
        let (ok, _, err) = server.kubectl_with_token(&token, &["auth", "whoami"]);
        !ok && err.contains("Unauthorized")
    }));
}

#[test]
fn token_requests_are_checked_like_upstream() {
    let server = Server::start();
    wait_for_defaults(&server, "default");
    let err = server.fails(&["create", "token", "default", "--duration=1m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let err = server.fails(&["create", "token", "nobody"]);
    assert!(
        err.contains(r#"serviceaccounts "nobody" not found"#),
        "{err}"
    );
    let err = server.fails(&[
        "create",
        "token",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=ghost",
    ]);
    assert!(err.contains(r#"pods "ghost" not found"#), "{err}");
    let audience_token = server
        .ok(&[
            "create",
            "token",
            "default",
            "--audience=vault",
            "--duration=20m",
        ])
        .trim()
        .to_string();
    // Tokens for another audience are not API credentials.
    let (ok, _, err) = server.kubectl_with_token(&audience_token, &["auth", "whoami"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");
}

#[test]
fn garbage_and_expired_tokens_are_unauthorized() {
    let server = Server::start();
    wait_for_defaults(&server, "default");
    let (ok, _, err) =
        server.kubectl_with_token("eyJhbGciOiJFUzI1NiJ9.e30.AAAA", &["get", "--raw", "/api"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");

    // Signed with the server's own key, but long expired.
    let sa = server.get_json(&["sa", "default"]);
    let key = SigningKey::load_or_create(&server.data_dir().join("server/tls")).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": now - 3600,
        "iat": now - 7200,
        "nbf": now - 7200,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": "system:serviceaccount:default:default",
        "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "default", "uid": sa["metadata"]["uid"]}},
    });
    let expired = key.sign(&claims).unwrap();
    let (ok, _, err) = server.kubectl_with_token(&expired, &["get", "--raw", "/api"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");
    // The same claims, still valid, are accepted: the expiry is what failed.
    let mut fresh = claims;
    fresh["exp"] = json!(now + 600);
    let (ok, _, err) =
        server.kubectl_with_token(&key.sign(&fresh).unwrap(), &["get", "--raw", "/api"]);
    assert!(ok, "{err}");
}

#[test]
fn pods_get_the_service_account_and_its_token_volume() {
    let server = Server::start();
    wait_for_defaults(&server, "default");
    server.ok(&["run", "web", "--image=busybox", "--restart=Never"]);
    let pod = server.get_json(&["pod", "web"]);
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    let volume = &spec["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == 21,
        "{name}"
    );
    assert_eq!(
        volume["projected"],
        json!({
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        })
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        json!([{"name": name, "readOnly": true, "mountPath": MOUNT}])
    );

    // The added volume passes validation on later updates, and stays as it was.
    server.ok(&["label", "pod", "web", "tier=web"]);
    assert_eq!(
        server.get_json(&["pod", "web"])["spec"]["volumes"][0]["name"],
        name
    );

    let opted_out = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"quiet"},
        "spec":{"automountServiceAccountToken":false,"containers":[{"name":"c","image":"busybox"}]}}"#;
    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], opted_out);
    assert!(ok, "{err}");
    let pod = server.get_json(&["pod", "quiet"]);
    assert!(pod["spec"].get("volumes").is_none(), "{pod}");
    assert!(pod["spec"]["containers"][0].get("volumeMounts").is_none());

    // An account that opts out covers its pods too.
    let account = r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"robot"},"automountServiceAccountToken":false}"#;
    let (ok, _, err) = server.with_stdin(&["create", "-f", "-"], account);
    assert!(ok, "{err}");
    server.ok(&[
        "run",
        "bot",
        "--image=busybox",
        "--restart=Never",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"robot"}}"#,
    ]);
    let pod = server.get_json(&["pod", "bot"]);
    assert_eq!(pod["spec"]["serviceAccountName"], "robot");
    assert!(pod["spec"].get("volumes").is_none(), "{pod}");

    let err = server.fails(&[
        "run",
        "lost",
        "--image=busybox",
        "--restart=Never",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"ghost"}}"#,
    ]);
    assert!(
        err.contains(r#"pods "lost" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#),
        "{err}"
    );
}

#[test]
fn tokens_bound_to_a_pod_die_with_it() {
    let server = Server::start();
    wait_for_defaults(&server, "default");
    server.ok(&["run", "web", "--image=busybox", "--restart=Never"]);
    let token = server
        .ok(&[
            "create",
            "token",
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=web",
        ])
        .trim()
        .to_string();
    let (ok, _, err) = server.kubectl_with_token(&token, &["auth", "whoami"]);
    assert!(ok, "{err}");
    // No node runs it, so the pod goes at once when forced.
    server.ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    assert!(eventually(WAIT, || {
        let (ok, _, err) = server.kubectl_with_token(&token, &["auth", "whoami"]);
        !ok && err.contains("Unauthorized")
    }));
}

#[test]
fn the_signing_key_survives_a_restart() {
    let mut server = Server::start();
    wait_for_defaults(&server, "default");
    let token = server
        .ok(&["create", "token", "default"])
        .trim()
        .to_string();
    let key = server.data_dir().join("server/tls/service.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    server.restart();
    let (ok, _, err) = server.kubectl_with_token(&token, &["auth", "whoami"]);
    assert!(ok, "{err}");
}
