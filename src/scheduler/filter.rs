//! Filters: whether a pod may run on a node, and if not, why — in upstream's words,
//! so `kubectl describe pod` reads as on Kubernetes. Checked in upstream's plugin
//! order; the first filter that fails names the node's reason (resources name every
//! resource that is short).
//!
//! Owns: the feasibility rules and the "0/3 nodes are available" message. May call:
//! nothing (pure).

use std::collections::HashMap;
use std::fmt;

use super::cache::NodeUsage;
use super::model::{Effect, NodeInfo, PodInfo, Taint};

/// The taint a cordoned node carries; a pod tolerating it may go there anyway.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// One reason a node was rejected, as counted in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason<'a> {
    Unschedulable,
    Taint(&'a str, &'a str),
    NotReady,
    Selector,
    Ports,
    Insufficient(&'static str),
    TooManyPods,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::Taint(key, value) => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::Selector => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Reason::Ports => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Reason::TooManyPods => f.write_str("Too many pods"),
        }
    }
}

/// Why a node was rejected: one reason, or every resource it lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit<'a> {
    Other(Reason<'a>),
    Resources(Shortage),
}

impl<'a> Misfit<'a> {
    pub fn for_each_reason(&self, mut f: impl FnMut(Reason<'a>)) {
        match self {
            Misfit::Other(reason) => f(*reason),
            Misfit::Resources(shortage) => shortage.for_each_reason(f),
        }
    }
}

/// The resources a node lacks for a pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shortage {
    pub pods: bool,
    pub cpu: bool,
    pub memory: bool,
    pub ephemeral_storage: bool,
}

impl Shortage {
    fn any(&self) -> bool {
        self.pods || self.cpu || self.memory || self.ephemeral_storage
    }

    fn for_each_reason<'a>(&self, mut f: impl FnMut(Reason<'a>)) {
        if self.pods {
            f(Reason::TooManyPods);
        }
        if self.cpu {
            f(Reason::Insufficient("cpu"));
        }
        if self.memory {
            f(Reason::Insufficient("memory"));
        }
        if self.ephemeral_storage {
            f(Reason::Insufficient("ephemeral-storage"));
        }
    }
}

/// Whether `pod` fits `node` given what is already there.
pub fn check<'a>(pod: &PodInfo, node: &'a NodeInfo, usage: &NodeUsage) -> Result<(), Misfit<'a>> {
    let reject = |reason| Err(Misfit::Other(reason));
    if is_cordoned_for(pod, node) {
        return reject(Reason::Unschedulable);
    }
    if let Some(taint) = untolerated_taint(pod, node) {
        return reject(Reason::Taint(&taint.key, &taint.value));
    }
    if !node.ready {
        return reject(Reason::NotReady);
    }
    if !matches_node_selector(pod, node) || !matches_required_affinity(pod, node) {
        return reject(Reason::Selector);
    }
    if has_port_conflict(pod, usage) {
        return reject(Reason::Ports);
    }
    let shortage = shortage(pod, node, usage);
    if shortage.any() {
        return Err(Misfit::Resources(shortage));
    }
    Ok(())
}

/// Cordoned (`spec.unschedulable`), unless the pod tolerates the cordon's taint.
pub fn is_cordoned_for(pod: &PodInfo, node: &NodeInfo) -> bool {
    if !node.unschedulable {
        return false;
    }
    let cordon = Taint {
        key: UNSCHEDULABLE_TAINT.into(),
        value: String::new(),
        effect: Effect::NoSchedule,
    };
    !pod.constraints
        .tolerations
        .iter()
        .any(|t| t.tolerates(&cordon))
}

/// The first NoSchedule or NoExecute taint the pod does not tolerate.
pub fn untolerated_taint<'a>(pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a Taint> {
    node.taints
        .iter()
        .filter(|t| matches!(t.effect, Effect::NoSchedule | Effect::NoExecute))
        .find(|taint| {
            !pod.constraints
                .tolerations
                .iter()
                .any(|t| t.tolerates(taint))
        })
}

/// How many PreferNoSchedule taints the pod does not tolerate (for scoring).
pub fn untolerated_preferences(pod: &PodInfo, node: &NodeInfo) -> usize {
    node.taints
        .iter()
        .filter(|t| t.effect == Effect::PreferNoSchedule)
        .filter(|taint| {
            !pod.constraints
                .tolerations
                .iter()
                .any(|t| t.tolerates(taint))
        })
        .count()
}

pub fn matches_node_selector(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.constraints
        .node_selector
        .iter()
        .all(|(key, value)| node.labels.get(key) == Some(value))
}

/// Some `requiredDuringSchedulingIgnoredDuringExecution` term matches (or none is set).
pub fn matches_required_affinity(pod: &PodInfo, node: &NodeInfo) -> bool {
    match &pod.constraints.required_affinity {
        None => true,
        Some(terms) => terms
            .iter()
            .any(|term| term.matches(&node.name, &node.labels)),
    }
}

pub fn has_port_conflict(pod: &PodInfo, usage: &NodeUsage) -> bool {
    pod.footprint.host_ports.iter().any(|wanted| {
        usage
            .host_ports
            .iter()
            .any(|used| used.conflicts_with(wanted))
    })
}

/// Requested resources against allocatable minus what the node's pods request.
pub fn shortage(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> Shortage {
    let want = &pod.footprint.requests;
    let have = &node.allocatable;
    let used = &usage.requests;
    let short = |want: i64, have: i64, used: i64| want > 0 && want > have - used;
    Shortage {
        pods: usage.pods + 1 > have.pods,
        cpu: short(want.milli_cpu, have.milli_cpu, used.milli_cpu),
        memory: short(want.memory, have.memory, used.memory),
        ephemeral_storage: have
            .ephemeral_storage
            .is_some_and(|have| short(want.ephemeral_storage, have, used.ephemeral_storage)),
    }
}

/// Why a pod fits nowhere: upstream's `FitError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    /// Each reason with the number of nodes that gave it.
    pub reasons: Vec<(String, usize)>,
}

impl FitError {
    pub fn new(nodes: usize, counted: HashMap<Reason<'_>, usize>) -> FitError {
        FitError {
            nodes,
            reasons: counted
                .into_iter()
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
        }
    }

    /// `0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu.`
    pub fn message(&self) -> String {
        if self.nodes == 0 {
            return "no nodes available to schedule pods".into();
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        let mut message = format!("0/{} nodes are available", self.nodes);
        if !parts.is_empty() {
            message.push_str(&format!(": {}.", parts.join(", ")));
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{node, pod};
    use crate::scheduler::model::{HostPort, Operator, Requirement, SelectorTerm, Toleration};

    fn taint(key: &str, value: &str, effect: Effect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }

    fn toleration(key: &str, exists: bool, value: &str, effect: Option<Effect>) -> Toleration {
        Toleration {
            key: key.into(),
            exists,
            value: value.into(),
            effect,
        }
    }

    fn requirement(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn labelled(labels: &[(&str, &str)]) -> NodeInfo {
        let mut n = node("n1", 1000);
        n.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        n
    }

    #[test]
    fn not_ready_nodes_are_rejected() {
        let mut n = node("n1", 1000);
        n.ready = false;
        let usage = NodeUsage::default();
        assert_eq!(
            check(&pod("p", 0), &n, &usage),
            Err(Misfit::Other(Reason::NotReady))
        );
    }

    #[test]
    fn cordoned_nodes_are_rejected_unless_the_cordon_is_tolerated() {
        let mut n = node("n1", 1000);
        n.unschedulable = true;
        let mut p = pod("p", 0);
        assert_eq!(
            check(&p, &n, &NodeUsage::default()),
            Err(Misfit::Other(Reason::Unschedulable))
        );
        p.constraints
            .tolerations
            .push(toleration(UNSCHEDULABLE_TAINT, true, "", None));
        assert_eq!(check(&p, &n, &NodeUsage::default()), Ok(()));
    }

    #[test]
    fn taints_need_tolerations() {
        let mut n = node("n1", 1000);
        n.taints = vec![taint("dedicated", "gpu", Effect::NoSchedule)];
        let mut p = pod("p", 0);
        assert_eq!(
            untolerated_taint(&p, &n).map(|t| t.key.as_str()),
            Some("dedicated")
        );
        // Equal: the value must match.
        p.constraints.tolerations = vec![toleration("dedicated", false, "cpu", None)];
        assert!(untolerated_taint(&p, &n).is_some());
        p.constraints.tolerations = vec![toleration("dedicated", false, "gpu", None)];
        assert!(untolerated_taint(&p, &n).is_none());
        // Exists: any value; the effect must match when given.
        p.constraints.tolerations =
            vec![toleration("dedicated", true, "", Some(Effect::NoExecute))];
        assert!(untolerated_taint(&p, &n).is_some());
        p.constraints.tolerations =
            vec![toleration("dedicated", true, "", Some(Effect::NoSchedule))];
        assert!(untolerated_taint(&p, &n).is_none());
        // An empty key with Exists tolerates everything.
        p.constraints.tolerations = vec![toleration("", true, "", None)];
        assert!(untolerated_taint(&p, &n).is_none());
    }

    #[test]
    fn no_execute_excludes_and_prefer_no_schedule_only_counts() {
        let mut n = node("n1", 1000);
        n.taints = vec![
            taint("evict", "", Effect::NoExecute),
            taint("soft", "x", Effect::PreferNoSchedule),
        ];
        let mut p = pod("p", 0);
        assert_eq!(
            check(&p, &n, &NodeUsage::default()),
            Err(Misfit::Other(Reason::Taint("evict", "")))
        );
        p.constraints.tolerations = vec![toleration("evict", true, "", None)];
        assert_eq!(check(&p, &n, &NodeUsage::default()), Ok(()));
        assert_eq!(untolerated_preferences(&p, &n), 1);
        p.constraints.tolerations.push(toleration(
            "soft",
            false,
            "x",
            Some(Effect::PreferNoSchedule),
        ));
        assert_eq!(untolerated_preferences(&p, &n), 0);
    }

    #[test]
    fn node_selector_needs_every_label() {
        let n = labelled(&[("disk", "ssd"), ("zone", "a")]);
        let mut p = pod("p", 0);
        p.constraints.node_selector = vec![("disk".into(), "ssd".into())];
        assert!(matches_node_selector(&p, &n));
        p.constraints
            .node_selector
            .push(("zone".into(), "b".into()));
        assert!(!matches_node_selector(&p, &n));
        assert_eq!(
            check(&p, &n, &NodeUsage::default()),
            Err(Misfit::Other(Reason::Selector))
        );
    }

    #[test]
    fn affinity_operators() {
        let n = labelled(&[("zone", "a"), ("cores", "8")]);
        let matches = |r: Requirement| {
            SelectorTerm {
                labels: vec![r],
                fields: vec![],
            }
            .matches(&n.name, &n.labels)
        };
        assert!(matches(requirement("zone", Operator::In, &["a", "b"])));
        assert!(!matches(requirement("zone", Operator::In, &["b"])));
        assert!(!matches(requirement("zone", Operator::NotIn, &["a"])));
        assert!(matches(requirement("missing", Operator::NotIn, &["a"])));
        assert!(matches(requirement("zone", Operator::Exists, &[])));
        assert!(!matches(requirement("missing", Operator::Exists, &[])));
        assert!(matches(requirement("missing", Operator::DoesNotExist, &[])));
        assert!(!matches(requirement("zone", Operator::DoesNotExist, &[])));
        assert!(matches(requirement("cores", Operator::Gt, &["4"])));
        assert!(!matches(requirement("cores", Operator::Gt, &["8"])));
        assert!(matches(requirement("cores", Operator::Lt, &["16"])));
        assert!(!matches(requirement("zone", Operator::Lt, &["16"])));
        assert!(!matches(requirement("cores", Operator::Gt, &["1", "2"])));
        assert!(!matches(requirement("zone", Operator::Unknown, &["a"])));
    }

    #[test]
    fn affinity_terms_are_ored_and_fields_match_the_name() {
        let n = labelled(&[("zone", "a")]);
        let mut p = pod("p", 0);
        let by_name = |op, names: &[&str]| SelectorTerm {
            labels: vec![],
            fields: vec![requirement("metadata.name", op, names)],
        };
        p.constraints.required_affinity = Some(vec![by_name(Operator::In, &["n2"])]);
        assert!(!matches_required_affinity(&p, &n));
        p.constraints.required_affinity = Some(vec![
            by_name(Operator::In, &["n2"]),
            by_name(Operator::In, &["n1"]),
        ]);
        assert!(matches_required_affinity(&p, &n));
        p.constraints.required_affinity = Some(vec![by_name(Operator::NotIn, &["n1"])]);
        assert!(!matches_required_affinity(&p, &n));
        // An empty term, or no terms at all, matches nothing.
        p.constraints.required_affinity = Some(vec![SelectorTerm {
            labels: vec![],
            fields: vec![],
        }]);
        assert!(!matches_required_affinity(&p, &n));
        p.constraints.required_affinity = Some(vec![]);
        assert!(!matches_required_affinity(&p, &n));
        p.constraints.required_affinity = None;
        assert!(matches_required_affinity(&p, &n));
    }

    #[test]
    fn host_ports_conflict_on_port_protocol_and_address() {
        let port = |port, protocol: &str, ip: &str| HostPort {
            port,
            protocol: protocol.into(),
            ip: ip.into(),
        };
        let usage = NodeUsage {
            host_ports: vec![port(80, "TCP", "0.0.0.0"), port(53, "UDP", "10.0.0.1")],
            ..Default::default()
        };
        let mut p = pod("p", 0);
        let mut conflicts = |wanted: HostPort| {
            p.footprint.host_ports = vec![wanted];
            has_port_conflict(&p, &usage)
        };
        assert!(conflicts(port(80, "TCP", "0.0.0.0")));
        assert!(conflicts(port(80, "TCP", "10.0.0.2")));
        assert!(!conflicts(port(80, "UDP", "0.0.0.0")));
        assert!(!conflicts(port(81, "TCP", "0.0.0.0")));
        assert!(conflicts(port(53, "UDP", "0.0.0.0")));
        assert!(conflicts(port(53, "UDP", "10.0.0.1")));
        assert!(!conflicts(port(53, "UDP", "10.0.0.2")));
    }

    #[test]
    fn resources_count_what_is_already_requested() {
        let mut n = node("n1", 1000);
        n.allocatable.pods = 2;
        n.allocatable.ephemeral_storage = Some(100);
        let mut usage = NodeUsage::default();
        usage.requests.milli_cpu = 700;
        usage.pods = 1;
        let mut p = pod("p", 300);
        assert_eq!(shortage(&p, &n, &usage), Shortage::default());
        p.footprint.requests.milli_cpu = 301;
        p.footprint.requests.memory = 9 << 30;
        p.footprint.requests.ephemeral_storage = 101;
        assert_eq!(
            shortage(&p, &n, &usage),
            Shortage {
                pods: false,
                cpu: true,
                memory: true,
                ephemeral_storage: true
            }
        );
        usage.pods = 2;
        assert!(shortage(&pod("q", 0), &n, &usage).pods);
        // Ephemeral storage is only checked on nodes that report it.
        n.allocatable.ephemeral_storage = None;
        usage.pods = 0;
        p.footprint.requests = Default::default();
        p.footprint.requests.ephemeral_storage = 1 << 40;
        assert_eq!(shortage(&p, &n, &usage), Shortage::default());
    }

    #[test]
    fn messages_read_like_upstream() {
        let mut counted = HashMap::new();
        counted.insert(Reason::Insufficient("cpu"), 2);
        counted.insert(Reason::Unschedulable, 1);
        assert_eq!(
            FitError::new(3, counted).message(),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
        );
        let mut counted = HashMap::new();
        counted.insert(
            Reason::Taint("node-role.kubernetes.io/control-plane", ""),
            1,
        );
        assert_eq!(
            FitError::new(1, counted).message(),
            "0/1 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
        );
        assert_eq!(
            FitError::new(0, HashMap::new()).message(),
            "no nodes available to schedule pods"
        );
    }
}
