//! RBAC end to end with the real kubectl against a server without a node: the default
//! roles exist, a ServiceAccount bound to a Role may do exactly what the Role grants
//! in its namespace (token from `kubectl create token`), `kubectl auth can-i` (with
//! `--as`, and `--list`) and `kubectl auth whoami` agree with what the requests get,
//! a ClusterRole bound in one namespace grants only there, escalation is prevented,
//! aggregated roles follow the roles labelled into them, and impersonation needs the
//! `impersonate` verb.

mod common;

use std::time::Duration;

use common::{eventually, Server};

const WAIT: Duration = Duration::from_secs(30);

const DEV: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ci, namespace: dev}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: dev}
rules:
- apiGroups: [""]
  resources: ["pods", "pods/log"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci-reads-pods, namespace: dev}
subjects:
- kind: ServiceAccount
  name: ci
  namespace: dev
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: pod-reader
"#;

fn forbidden(stderr: &str, what: &str) {
    assert!(
        stderr.contains("forbidden") && stderr.contains(what),
        "expected Forbidden with {what:?}:\n{stderr}"
    );
}

#[test]
fn a_service_account_may_do_what_its_role_grants_and_nothing_else() {
    let server = Server::start();
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], DEV);
    assert!(ok, "{err}");
    assert!(eventually(WAIT, || server
        .kubectl(&["-n", "dev", "get", "sa", "ci"])
        .0));
    let token = server.ok(&["-n", "dev", "create", "token", "ci"]);
    let token = token.trim();
    let user = "system:serviceaccount:dev:ci";

    let (ok, out, err) = server.kubectl_with_token(token, &["auth", "whoami"]);
    assert!(ok && out.contains(user), "{out}{err}");

    let (ok, out, err) = server.kubectl_with_token(token, &["-n", "dev", "get", "pods"]);
    assert!(ok, "listing pods in dev: {out}{err}");
    assert!(err.contains("No resources found in dev namespace"), "{err}");

    let (ok, _, err) = server.kubectl_with_token(token, &["-n", "dev", "get", "secrets"]);
    assert!(!ok);
    forbidden(
        &err,
        &format!("secrets is forbidden: User \"{user}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"dev\""),
    );
    let (ok, _, err) = server.kubectl_with_token(token, &["-n", "default", "get", "pods"]);
    assert!(!ok);
    forbidden(&err, "in the namespace \"default\"");
    let (ok, _, err) = server.kubectl_with_token(token, &["delete", "node", "some-node"]);
    assert!(!ok);
    forbidden(
        &err,
        &format!(
            "nodes \"some-node\" is forbidden: User \"{user}\" cannot delete resource \"nodes\""
        ),
    );
    let (ok, _, err) = server.kubectl_with_token(token, &["-n", "dev", "delete", "pod", "x"]);
    assert!(!ok);
    forbidden(&err, "cannot delete resource \"pods\"");

    // can-i agrees, as the account itself and through impersonation by the admin.
    let (ok, out, _) =
        server.kubectl_with_token(token, &["auth", "can-i", "list", "pods", "-n", "dev"]);
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out, _) =
        server.kubectl_with_token(token, &["auth", "can-i", "get", "secrets", "-n", "dev"]);
    assert!(!ok && out.trim() == "no", "{out}");
    let as_ci = format!("--as={user}");
    let (ok, out, _) = server.kubectl(&["auth", "can-i", "list", "pods", "-n", "dev", &as_ci]);
    assert!(ok && out.trim() == "yes", "{out}");
    for (verb, what, ns) in [
        ("get", "secrets", "dev"),
        ("list", "pods", "default"),
        ("delete", "nodes", ""),
    ] {
        let mut args = vec!["auth", "can-i", verb, what, as_ci.as_str()];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        let (ok, out, _) = server.kubectl(&args);
        assert!(
            !ok && out.trim() == "no",
            "can-i {verb} {what} -n {ns}: {out}"
        );
    }
    // Impersonation works for requests too, and the admin may impersonate.
    let (ok, _, err) = server.kubectl(&["-n", "dev", "get", "secrets", &as_ci]);
    assert!(!ok);
    forbidden(&err, "cannot list resource \"secrets\"");
    assert!(server.kubectl(&["-n", "dev", "get", "pods", &as_ci]).0);

    let (ok, out, err) =
        server.kubectl_with_token(token, &["auth", "can-i", "--list", "-n", "dev"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{out}"
    );

    // The account may not impersonate anyone.
    let (ok, _, err) = server.kubectl_with_token(token, &["-n", "dev", "get", "pods", "--as=jane"]);
    assert!(!ok);
    forbidden(
        &err,
        &format!(
            "users \"jane\" is forbidden: User \"{user}\" cannot impersonate resource \"users\""
        ),
    );
}

#[test]
fn default_roles_and_a_cluster_role_bound_in_one_namespace() {
    let server = Server::start();
    let roles = server.ok(&["get", "clusterroles"]);
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
    ] {
        assert!(
            roles
                .lines()
                .any(|l| l.split_whitespace().next() == Some(role)),
            "no {role}:\n{roles}"
        );
    }
    let binding = server.ok(&["get", "clusterrolebinding", "cluster-admin", "-o", "wide"]);
    assert!(
        binding.contains("ClusterRole/cluster-admin") && binding.contains("system:masters"),
        "{binding}"
    );

    server.ok(&["create", "namespace", "team"]);
    server.ok(&["-n", "team", "create", "serviceaccount", "viewer"]);
    server.ok(&[
        "-n",
        "team",
        "create",
        "rolebinding",
        "viewer-view",
        "--clusterrole=view",
        "--serviceaccount=team:viewer",
    ]);
    let token = server.ok(&["-n", "team", "create", "token", "viewer"]);
    let token = token.trim();
    let (ok, _, err) =
        server.kubectl_with_token(token, &["-n", "team", "get", "deployments,pods,services"]);
    assert!(ok, "{err}");
    let (ok, _, err) = server.kubectl_with_token(
        token,
        &[
            "-n",
            "team",
            "create",
            "configmap",
            "c",
            "--from-literal=a=b",
        ],
    );
    assert!(!ok);
    forbidden(&err, "cannot create resource \"configmaps\"");
    let (ok, _, err) = server.kubectl_with_token(token, &["-n", "default", "get", "deployments"]);
    assert!(!ok);
    forbidden(&err, "in the namespace \"default\"");
    // view does not read secrets.
    let (ok, _, err) = server.kubectl_with_token(token, &["-n", "team", "get", "secrets"]);
    assert!(!ok);
    forbidden(&err, "secrets is forbidden");

    // Escalation prevention: allowed to write roles and bindings, the account may
    // grant what it holds (view) but nothing more.
    server.ok(&[
        "-n",
        "team",
        "create",
        "role",
        "rbac-writer",
        "--verb=create,get,update",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
    ]);
    server.ok(&[
        "-n",
        "team",
        "create",
        "rolebinding",
        "viewer-writes-rbac",
        "--role=rbac-writer",
        "--serviceaccount=team:viewer",
    ]);
    let (ok, _, err) = server.kubectl_with_token(
        token,
        &[
            "-n",
            "team",
            "create",
            "role",
            "pod-lister",
            "--verb=list",
            "--resource=pods",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = server.kubectl_with_token(
        token,
        &[
            "-n",
            "team",
            "create",
            "role",
            "secret-reader",
            "--verb=get",
            "--resource=secrets",
        ],
    );
    assert!(!ok);
    forbidden(
        &err,
        "is attempting to grant RBAC permissions not currently held",
    );
    forbidden(
        &err,
        r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#,
    );
    let (ok, _, err) = server.kubectl_with_token(
        token,
        &[
            "-n",
            "team",
            "create",
            "rolebinding",
            "self-edit",
            "--clusterrole=edit",
            "--serviceaccount=team:viewer",
        ],
    );
    assert!(!ok);
    forbidden(
        &err,
        "is attempting to grant RBAC permissions not currently held",
    );
    let (ok, _, err) = server.kubectl_with_token(
        token,
        &[
            "-n",
            "team",
            "create",
            "rolebinding",
            "lister",
            "--role=pod-lister",
            "--user=jane",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        !server
            .kubectl(&["-n", "team", "get", "role", "secret-reader"])
            .0
    );

    // A ClusterRole labelled to aggregate into view extends every view binding.
    let (ok, _, err) = server.with_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "secrets-view",
                         "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}"#,
    );
    assert!(ok, "{err}");
    assert!(
        eventually(WAIT, || server
            .ok(&["get", "clusterrole", "view", "-o", "json"])
            .contains("\"secrets\"")),
        "view did not aggregate secrets-view"
    );
    let (ok, _, err) = server.kubectl_with_token(token, &["-n", "team", "get", "secrets"]);
    assert!(ok, "{err}");

    // Bad bindings are refused and not stored.
    let err = server.fails(&[
        "-n",
        "team",
        "create",
        "rolebinding",
        "bad",
        "--role=x",
        "--user=",
    ]);
    assert!(err.contains("invalid") || err.contains("required"), "{err}");
    let changed = server.kubectl(&[
        "-n",
        "team",
        "patch",
        "rolebinding",
        "viewer-view",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"name":"edit"}}"#,
    ]);
    assert!(
        !changed.0 && changed.2.contains("cannot change roleRef"),
        "{}",
        changed.2
    );
}
