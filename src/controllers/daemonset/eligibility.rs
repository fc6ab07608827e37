//! Which nodes a DaemonSet's pod belongs on, as upstream's `NodeShouldRunDaemonPod`
//! decides it: the template's `nodeName`, `nodeSelector`, required node affinity and
//! the node's taints against the template's tolerations plus the ones every daemon
//! pod gets. Also the pod-shaping helpers that go with it: those added tolerations and
//! the `matchFields metadata.name` affinity that binds a daemon pod to its node (the
//! scheduler then places it, as upstream since 1.12).
//!
//! Pure functions over k8s-openapi types; calls nothing else in skiff.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The field a daemon pod's node affinity names its node by.
const NAME_FIELD: &str = "metadata.name";

/// What a node means for a DaemonSet: whether a pod should be started there, and
/// whether one already there may keep running (it tolerates every NoExecute taint
/// but not some NoSchedule one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub should_run: bool,
    pub should_continue_running: bool,
}

fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The tolerations upstream adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`),
/// plus `network-unavailable` for host-network pods.
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut all = vec![
        exists(NOT_READY, "NoExecute"),
        exists(UNREACHABLE, "NoExecute"),
        exists(DISK_PRESSURE, "NoSchedule"),
        exists(MEMORY_PRESSURE, "NoSchedule"),
        exists(PID_PRESSURE, "NoSchedule"),
        exists(UNSCHEDULABLE, "NoSchedule"),
    ];
    if host_network {
        all.push(exists(NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    all
}

/// Same key, operator, value and effect (`Toleration.MatchToleration`).
fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    let op = |t: &Toleration| t.operator.clone().unwrap_or_else(|| "Equal".into());
    a.key == b.key && op(a) == op(b) && a.value == b.value && a.effect == b.effect
}

/// The template's tolerations with the daemon ones added or, where one matches,
/// replacing it (`AddOrUpdateTolerationInPodSpec`).
pub fn pod_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    for added in daemon_tolerations(spec.host_network == Some(true)) {
        match tolerations.iter_mut().find(|t| same_toleration(t, &added)) {
            Some(existing) => *existing = added,
            None => tolerations.push(added),
        }
    }
    tolerations
}

/// Upstream's `ToleratesTaint`.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Whether some taint with an effect in `effects` is tolerated by none of `tolerations`.
fn has_untolerated(taints: &[Taint], tolerations: &[Toleration], effects: &[&str]) -> bool {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let bound = || -> Option<(i64, i64)> {
        let [b] = values else { return None };
        Some((value?.parse().ok()?, b.parse().ok()?))
    };
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => bound().is_some_and(|(v, b)| v > b),
        "Lt" => bound().is_some_and(|(v, b)| v < b),
        _ => false,
    }
}

/// One `nodeSelectorTerms` entry: its requirements are ANDed; an empty term matches
/// nothing; `matchFields` knows only `metadata.name`.
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref().unwrap_or_default();
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == NAME_FIELD && requirement_matches(r, Some(name)))
}

/// `nodeSelector` and required node affinity (`GetRequiredNodeAffinity(pod).Match`).
fn fits_affinity(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// `NodeShouldRunDaemonPod` for a DaemonSet with pod template spec `spec`.
pub fn node_fit(spec: &PodSpec, node: &Node) -> Fit {
    const NO: Fit = Fit {
        should_run: false,
        should_continue_running: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return NO;
    }
    if !fits_affinity(spec, node) {
        return NO;
    }
    let tolerations = pod_tolerations(spec);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    if has_untolerated(taints, &tolerations, &["NoSchedule", "NoExecute"]) {
        return Fit {
            should_run: false,
            should_continue_running: !has_untolerated(taints, &tolerations, &["NoExecute"]),
        };
    }
    Fit {
        should_run: true,
        should_continue_running: true,
    }
}

/// The node a daemon pod is for: its `spec.nodeName`, or before binding the node its
/// `matchFields metadata.name` affinity names (`GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|term| {
        term.match_fields.iter().flatten().find_map(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            match (r.key.as_str(), r.operator.as_str(), values) {
                (NAME_FIELD, "In", [one]) => Some(one.clone()),
                _ => None,
            }
        })
    })
}

/// The pod's affinity with its required node terms replaced by one that names `node`
/// (`ReplaceDaemonSetPodNodeNameNodeAffinity`); preferred terms and pod (anti-)affinity
/// are kept.
pub fn bind_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([{"name": "c", "image": "busybox"}]);
        serde_json::from_value(v).unwrap()
    }

    const RUN: Fit = Fit {
        should_run: true,
        should_continue_running: true,
    };
    const NO: Fit = Fit {
        should_run: false,
        should_continue_running: false,
    };
    const KEEP_ONLY: Fit = Fit {
        should_run: false,
        should_continue_running: true,
    };

    #[test]
    fn taints_need_tolerations_and_no_execute_evicts() {
        let tainted = node(json!({"metadata": {"name": "edge-1"},
            "spec": {"taints": [{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]}}));
        assert_eq!(node_fit(&spec(json!({})), &tainted), KEEP_ONLY);
        let tolerant = spec(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}]}),
        );
        assert_eq!(node_fit(&tolerant, &tainted), RUN);
        let wrong_value = spec(json!({"tolerations": [{"key": "dedicated", "value": "core"}]}));
        assert_eq!(node_fit(&wrong_value, &tainted), KEEP_ONLY);
        let everything = spec(json!({"tolerations": [{"operator": "Exists"}]}));
        assert_eq!(node_fit(&everything, &tainted), RUN);
        let evicting = node(json!({"metadata": {"name": "n"},
            "spec": {"taints": [{"key": "gpu", "effect": "NoExecute"}]}}));
        assert_eq!(node_fit(&spec(json!({})), &evicting), NO);
        let soft = node(json!({"metadata": {"name": "n"},
            "spec": {"taints": [{"key": "gpu", "effect": "PreferNoSchedule"}]}}));
        assert_eq!(node_fit(&spec(json!({})), &soft), RUN);
    }

    #[test]
    fn daemon_pods_tolerate_node_conditions_and_cordons() {
        let troubled = node(
            json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/pid-pressure", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(node_fit(&spec(json!({})), &troubled), RUN);
        let no_network = node(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}));
        assert_eq!(node_fit(&spec(json!({})), &no_network), KEEP_ONLY);
        assert_eq!(
            node_fit(&spec(json!({"hostNetwork": true})), &no_network),
            RUN
        );
    }

    #[test]
    fn added_tolerations_replace_matching_ones_and_keep_the_rest() {
        let s = spec(json!({"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            {"key": "dedicated", "operator": "Exists"}]}));
        let all = pod_tolerations(&s);
        assert_eq!(all.len(), 7);
        assert_eq!(all[0].key.as_deref(), Some("node.kubernetes.io/not-ready"));
        assert_eq!(all[0].toleration_seconds, None);
        assert_eq!(all[1].key.as_deref(), Some("dedicated"));
        assert!(!all
            .iter()
            .any(|t| t.key.as_deref() == Some(NETWORK_UNAVAILABLE)));
        let host = pod_tolerations(&spec(json!({"hostNetwork": true})));
        assert_eq!(host.len(), 7);
        assert_eq!(host[6].key.as_deref(), Some(NETWORK_UNAVAILABLE));
    }

    #[test]
    fn node_selectors_affinity_and_node_names_choose_nodes() {
        let arm = node(
            json!({"metadata": {"name": "pi", "labels": {"kubernetes.io/arch": "arm64", "zone": "3"}}}),
        );
        let amd =
            node(json!({"metadata": {"name": "nuc", "labels": {"kubernetes.io/arch": "amd64"}}}));
        let by_selector = spec(json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}));
        assert_eq!(node_fit(&by_selector, &arm), RUN);
        assert_eq!(node_fit(&by_selector, &amd), NO);
        let by_affinity = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["2"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["nuc"]}]}]}}}}),
        );
        assert_eq!(node_fit(&by_affinity, &arm), RUN);
        assert_eq!(node_fit(&by_affinity, &amd), RUN);
        let other = node(json!({"metadata": {"name": "other", "labels": {"zone": "1"}}}));
        assert_eq!(node_fit(&by_affinity, &other), NO);
        let empty_term = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}),
        );
        assert_eq!(node_fit(&empty_term, &arm), NO);
        let pinned = spec(json!({"nodeName": "pi"}));
        assert_eq!(node_fit(&pinned, &arm), RUN);
        assert_eq!(node_fit(&pinned, &amd), NO);
    }

    #[test]
    fn daemon_pods_are_bound_by_match_fields() {
        let kept = Affinity {
            pod_anti_affinity: Some(Default::default()),
            ..Affinity::default()
        };
        let affinity = bind_to_node(Some(kept), "edge-2");
        assert!(affinity.pod_anti_affinity.is_some());
        let pod: Pod =
            serde_json::from_value(json!({"spec": {"containers": [], "affinity": affinity}}))
                .unwrap();
        assert_eq!(target_node(&pod).as_deref(), Some("edge-2"));
        let bound: Pod = serde_json::from_value(
            json!({"spec": {"containers": [], "nodeName": "edge-3", "affinity": affinity}}),
        )
        .unwrap();
        assert_eq!(target_node(&bound).as_deref(), Some("edge-3"));
        let free: Pod = serde_json::from_value(json!({"spec": {"containers": []}})).unwrap();
        assert_eq!(target_node(&free), None);
    }
}
