//! The ClusterRoles and ClusterRoleBindings every cluster starts with, named and
//! shaped as Kubernetes' bootstrap policy: `cluster-admin` (bound to `system:masters`),
//! the user-facing `admin`, `edit` and `view` (aggregated from the
//! `system:aggregate-to-*` roles, so charts can extend them), and the `system:` roles
//! every authenticated caller gets (discovery, its own reviews, public info).
//!
//! Owns: the policy data. May call: nothing.

use serde_json::{json, Value};

const RBAC: &str = "rbac.authorization.k8s.io/v1";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn paths(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": RBAC, "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules,
    })
}

fn bootstrapping() -> Value {
    json!({"kubernetes.io/bootstrapping": "rbac-defaults"})
}

fn aggregate_to(role: &str) -> Value {
    let mut labels = bootstrapping();
    labels[format!("rbac.authorization.k8s.io/aggregate-to-{role}")] = json!("true");
    labels
}

fn aggregated(name: &str, sources: &[&str], rules: Vec<Value>) -> Value {
    let mut role = cluster_role(name, bootstrapping(), rules);
    let selectors: Vec<Value> = sources
        .iter()
        .map(|s| json!({"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{s}"): "true"}}))
        .collect();
    role["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
    role
}

fn view_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            READ,
        ),
        rule(
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
            READ,
        ),
        rule(&[""], &["namespaces"], READ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            READ,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            READ,
        ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            READ,
        ),
    ]
}

fn edit_rules() -> Vec<Value> {
    let pod_access = [
        "pods/attach",
        "pods/exec",
        "pods/portforward",
        "pods/proxy",
        "secrets",
        "services/proxy",
    ];
    vec![
        rule(&[""], &pod_access, READ),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
            WRITE,
        ),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
        rule(&["batch"], &["cronjobs", "jobs"], WRITE),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            WRITE,
        ),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(&["discovery.k8s.io"], &["endpointslices"], WRITE),
    ]
}

fn admin_rules() -> Vec<Value> {
    let all = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    vec![
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
            &all,
        ),
    ]
}

/// Every default ClusterRole. `admin`, `edit` and `view` carry the union of what they
/// aggregate, as the aggregation controller would have written it.
pub fn cluster_roles() -> Vec<Value> {
    let everything = vec![rule(&["*"], &["*"], &["*"]), paths(&["*"], &["*"])];
    let view = view_rules();
    let edit: Vec<Value> = edit_rules().into_iter().chain(view.clone()).collect();
    let admin: Vec<Value> = admin_rules().into_iter().chain(edit.clone()).collect();
    let discovery = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    let public = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    vec![
        cluster_role("cluster-admin", bootstrapping(), everything),
        aggregated("admin", &["admin"], admin),
        aggregated("edit", &["edit"], edit),
        aggregated("view", &["view"], view.clone()),
        cluster_role(
            "system:aggregate-to-admin",
            aggregate_to("admin"),
            admin_rules(),
        ),
        cluster_role(
            "system:aggregate-to-edit",
            aggregate_to("edit"),
            edit_rules(),
        ),
        cluster_role("system:aggregate-to-view", aggregate_to("view"), view),
        cluster_role(
            "system:discovery",
            bootstrapping(),
            vec![paths(&discovery, &["get"])],
        ),
        cluster_role(
            "system:public-info-viewer",
            bootstrapping(),
            vec![paths(&public, &["get"])],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            bootstrapping(),
            vec![paths(
                &["/.well-known/openid-configuration", "/openid/v1/jwks"],
                &["get"],
            )],
        ),
        cluster_role(
            "system:basic-user",
            bootstrapping(),
            vec![
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
            ],
        ),
    ]
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g}))
        .collect();
    json!({
        "apiVersion": RBAC, "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": bootstrapping(),
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// Every default ClusterRoleBinding.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}
