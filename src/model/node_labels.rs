//! Which labels a node may set on its own Node (kubelet's set, as Kubernetes'
//! NodeRestriction admission plugin): the API enforces it on nodes' writes, the agent
//! refuses restricted `--node-label`s before it joins.
//!
//! May call: nothing else in skiff.

/// Labels kubelet sets itself, allowed by name.
const KUBELET_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Label namespaces (and their subdomains) a node may use freely.
const KUBELET_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

const RESTRICTED_NAMESPACE: &str = "node-restriction.kubernetes.io";

/// The allowed set, for messages.
pub fn allowed_labels_description() -> String {
    format!(
        "{}, or labels under {}",
        KUBELET_LABELS.join(", "),
        KUBELET_NAMESPACES
            .iter()
            .map(|n| format!("{n}/"))
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or("")
}

fn in_namespace(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

/// Whether a node may add, change or remove the label `key` on its own Node.
pub fn kubelet_may_set_label(key: &str) -> bool {
    let ns = label_namespace(key);
    if in_namespace(ns, RESTRICTED_NAMESPACE) {
        return false;
    }
    let kubernetes = in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io");
    !kubernetes
        || KUBELET_LABELS.contains(&key)
        || KUBELET_NAMESPACES.iter().any(|d| in_namespace(ns, d))
}
