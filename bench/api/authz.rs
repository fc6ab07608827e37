//! What RBAC costs a request. Two measurements:
//! - In process: `Policy::allows` over the default policy, then over the default
//!   policy plus 1,000 ClusterRoleBindings and 1,000 RoleBindings in the asked
//!   namespace (all for other users), for an allowed and a refused request.
//!   The best of several rounds, so other work on the machine inflates it least.
//! - Over HTTPS: GETs of one ConfigMap as the admin (`system:masters`, which skips
//!   RBAC), as a user bound by a RoleBinding (the admin impersonating it, so
//!   the only extra work is RBAC), as a user with no binding (403), and with a
//!   ServiceAccount token (bearer-token check plus RBAC); then the same after the
//!   2,000 extra bindings are stored.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use skiff::api::authz::rbac::{Policy, Request as RbacRequest, User};
use skiff::api::authz::{default_policy, Attributes};

use crate::http::{Conn, Request};
use crate::load::create_namespace;
use crate::report::{ms, p50_p99, Report};
use crate::server::Server;
use crate::workload::config_map;

const NAMESPACE: &str = "authz";
const EXTRA_BINDINGS: usize = 1_000;
const GETS: usize = 2_000;
const WARM_UP: usize = 200;
const CHECKS: usize = 100_000;
const ROUNDS: usize = 5;
const RBAC: &str = "/registry/rbac.authorization.k8s.io";

pub async fn run(report: &mut Report) -> Result<()> {
    in_process(report);
    over_https(report).await
}

fn role_binding(name: &str, user: &str, role_kind: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": role_kind, "name": role, "apiGroup": "rbac.authorization.k8s.io"}})
}

fn cluster_role_binding(name: &str, user: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"}})
}

fn reader_role() -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "config-reader", "namespace": NAMESPACE},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The store's RBAC objects, keyed as the store keys them.
fn policy_objects(extra: usize) -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    for role in default_policy::cluster_roles() {
        objects.insert(format!("{RBAC}/clusterroles/{}", name_of(&role)), role);
    }
    for binding in default_policy::cluster_role_bindings() {
        let key = format!("{RBAC}/clusterrolebindings/{}", name_of(&binding));
        objects.insert(key, binding);
    }
    objects.insert(
        format!("{RBAC}/roles/{NAMESPACE}/config-reader"),
        reader_role(),
    );
    objects.insert(
        format!("{RBAC}/rolebindings/{NAMESPACE}/zz-reader"),
        role_binding("zz-reader", "reader", "Role", "config-reader"),
    );
    for i in 0..extra {
        let name = format!("other-{i:04}");
        let user = format!("user-{i:04}");
        objects.insert(
            format!("{RBAC}/clusterrolebindings/{name}"),
            cluster_role_binding(&name, &user),
        );
        objects.insert(
            format!("{RBAC}/rolebindings/{NAMESPACE}/{name}"),
            role_binding(&name, &user, "ClusterRole", "edit"),
        );
    }
    objects
}

fn get_config_map() -> Attributes {
    Attributes {
        verb: "get",
        group: String::new(),
        resource: "configmaps".into(),
        subresource: String::new(),
        namespace: NAMESPACE.into(),
        name: "probe".into(),
        field_selector: String::new(),
    }
}

/// Nanoseconds per `allows`, the best of `ROUNDS` rounds of `CHECKS` checks.
fn ns_per_check(policy: &Policy, user: &User, expect: bool) -> f64 {
    let attributes = get_config_map();
    let request = RbacRequest::Resource(&attributes);
    assert_eq!(policy.allows(user, &request), expect, "{}", user.name);
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CHECKS {
                std::hint::black_box(policy.allows(std::hint::black_box(user), &request));
            }
            start.elapsed().as_nanos() as f64 / CHECKS as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn in_process(report: &mut Report) {
    let reader = User::new("reader", &[]);
    let stranger = User::new("stranger", &[]);
    for (extra, label) in [
        (0, "default policy"),
        (
            EXTRA_BINDINGS,
            "+1,000 ClusterRoleBindings +1,000 RoleBindings",
        ),
    ] {
        let policy = Policy::from_objects(&policy_objects(extra));
        let allowed = ns_per_check(&policy, &reader, true);
        let refused = ns_per_check(&policy, &stranger, false);
        report.row(
            &format!("RBAC check in process, {label}"),
            format!(
                "allowed {:.2} µs · refused {:.2} µs per request",
                allowed / 1e3,
                refused / 1e3
            ),
            "",
        );
    }
}

async fn sample(conn: &mut Conn, request: &Request, expected: u16) -> Result<Vec<f64>> {
    for _ in 0..WARM_UP {
        conn.call(request, expected).await?;
    }
    let mut samples = Vec::with_capacity(GETS);
    for _ in 0..GETS {
        let start = Instant::now();
        conn.call(request, expected).await?;
        samples.push(ms(start.elapsed()));
    }
    Ok(samples)
}

async fn service_account_token(conn: &mut Conn) -> Result<String> {
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "bench", "namespace": NAMESPACE}});
    let path = format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts");
    conn.call(&Request::post_json(path.clone(), &account), 201)
        .await?;
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bench-sa-reader", "namespace": NAMESPACE},
        "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": NAMESPACE}],
        "roleRef": {"kind": "Role", "name": "config-reader", "apiGroup": "rbac.authorization.k8s.io"}});
    conn.call(&Request::post_json(bindings_path(), &binding), 201)
        .await?;
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}});
    let answer = conn
        .call(
            &Request::post_json(format!("{path}/bench/token"), &request),
            201,
        )
        .await?
        .json()?;
    answer["status"]["token"]
        .as_str()
        .map(str::to_string)
        .context("the TokenRequest answer holds no token")
}

fn bindings_path() -> String {
    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings")
}

async fn store_extra_bindings(conn: &mut Conn) -> Result<()> {
    for i in 0..EXTRA_BINDINGS {
        let name = format!("other-{i:04}");
        let user = format!("user-{i:04}");
        let cluster = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
        conn.call(
            &Request::post_json(cluster, &cluster_role_binding(&name, &user)),
            201,
        )
        .await?;
        let binding = role_binding(&name, &user, "ClusterRole", "edit");
        conn.call(&Request::post_json(bindings_path(), &binding), 201)
            .await?;
    }
    Ok(())
}

async fn https_rows(
    report: &mut Report,
    admin: &mut Conn,
    bearer: &mut Conn,
    token: &str,
    label: &str,
) -> Result<()> {
    let get = Request::get(format!("/api/v1/namespaces/{NAMESPACE}/configmaps/probe"));
    let cases = [
        ("admin (system:masters, no RBAC)", get.clone(), 200),
        (
            "user bound by a RoleBinding (impersonated)",
            get.clone().with_header("Impersonate-User", "reader"),
            200,
        ),
        (
            "user with no binding, refused (impersonated)",
            get.clone().with_header("Impersonate-User", "stranger"),
            403,
        ),
    ];
    for (who, request, status) in cases {
        let samples = sample(admin, &request, status).await?;
        report.row(
            &format!("GET one ConfigMap, {label}: {who}"),
            p50_p99(&samples),
            "",
        );
    }
    let with_token = get.with_header("Authorization", format!("Bearer {token}"));
    let samples = sample(bearer, &with_token, 200).await?;
    report.row(
        &format!("GET one ConfigMap, {label}: ServiceAccount token (token check + RBAC)"),
        p50_p99(&samples),
        "",
    );
    Ok(())
}

async fn over_https(report: &mut Report) -> Result<()> {
    let (server, _) = Server::start(&[]).await?;
    let mut admin = server.client()?.connect().await?;
    create_namespace(&mut admin, NAMESPACE).await?;
    let config_maps = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    admin
        .call(
            &Request::post_json(config_maps, &config_map(NAMESPACE, "probe")),
            201,
        )
        .await?;
    let roles = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/roles");
    admin
        .call(&Request::post_json(roles, &reader_role()), 201)
        .await?;
    let binding = role_binding("zz-reader", "reader", "Role", "config-reader");
    admin
        .call(&Request::post_json(bindings_path(), &binding), 201)
        .await?;
    let token = service_account_token(&mut admin).await?;
    let mut bearer = server.token_client()?.connect().await?;
    https_rows(report, &mut admin, &mut bearer, &token, "default policy").await?;
    store_extra_bindings(&mut admin).await?;
    https_rows(report, &mut admin, &mut bearer, &token, "+2,000 bindings").await
}
