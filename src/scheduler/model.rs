//! The scheduler's compact, pre-parsed views of nodes and pods: every quantity,
//! taint, toleration and selector is parsed once when a watch event arrives, so the
//! per-node checks of a scheduling attempt compare integers and short strings only.
//!
//! Owns: the conversion from k8s-openapi objects. May call: `parse_quantity`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::model::quantity::parse_quantity;

/// What the scheduler calls itself in `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Requests that count against allocatable, CPU in millicores, the rest in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Requests {
    pub fn add(&mut self, other: &Requests) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
    }

    pub fn subtract(&mut self, other: &Requests) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
    }

    fn raise_to(&mut self, other: &Requests) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
    }
}

/// What a node offers (`status.allocatable`, else `status.capacity`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub milli_cpu: i64,
    pub memory: i64,
    /// Checked only when the node reports it.
    pub ephemeral_storage: Option<i64>,
    pub pods: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
    Other(String),
}

impl Effect {
    fn parse(s: &str) -> Effect {
        match s {
            "NoSchedule" => Effect::NoSchedule,
            "PreferNoSchedule" => Effect::PreferNoSchedule,
            "NoExecute" => Effect::NoExecute,
            other => Effect::Other(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: Effect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    /// Empty with `exists` tolerates every key.
    pub key: String,
    /// `Exists` when true, `Equal` otherwise.
    pub exists: bool,
    pub value: String,
    /// `None` tolerates every effect.
    pub effect: Option<Effect>,
}

impl Toleration {
    /// As upstream's `ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.as_ref().is_some_and(|e| *e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        self.exists || self.value == taint.value
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    /// An operator we do not know matches nothing.
    Unknown,
}

/// One `matchExpressions` or `matchFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether a label (or field) value, `None` when absent, satisfies this requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|w| w == v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|w| w == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt => self.compare(value).is_some_and(|(v, bound)| v > bound),
            Operator::Lt => self.compare(value).is_some_and(|(v, bound)| v < bound),
            Operator::Unknown => false,
        }
    }

    /// The value and the single bound of Gt/Lt, both integers, or `None`.
    fn compare(&self, value: Option<&str>) -> Option<(i64, i64)> {
        let [bound] = self.values.as_slice() else {
            return None;
        };
        Some((value?.parse().ok()?, bound.parse().ok()?))
    }
}

/// One `nodeSelectorTerms` entry: its requirements are ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorTerm {
    pub labels: Vec<Requirement>,
    pub fields: Vec<Requirement>,
}

impl SelectorTerm {
    /// An empty term matches no node, as upstream.
    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.labels
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self
                .fields
                .iter()
                .all(|r| r.key == "metadata.name" && r.matches(Some(node_name)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub port: i32,
    pub protocol: String,
    /// `0.0.0.0` when unset: every address.
    pub ip: String,
}

impl HostPort {
    /// Same port and protocol, and the same address or a wildcard on either side.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        const ANY: &str = "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY || other.ip == ANY)
    }
}

/// A node, reduced to what filtering and scoring look at. Equality tells whether an
/// update could change a scheduling decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub allocatable: Allocatable,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let taints = spec
            .and_then(|s| s.taints.as_ref())
            .map(|ts| {
                ts.iter()
                    .map(|t| Taint {
                        key: t.key.clone(),
                        value: t.value.clone().unwrap_or_default(),
                        effect: Effect::parse(&t.effect),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let resources = status.and_then(|s| {
            s.allocatable
                .as_ref()
                .filter(|a| !a.is_empty())
                .or(s.capacity.as_ref())
        });
        let quantity = |name: &str, unit: f64| {
            resources
                .and_then(|r| r.get(name))
                .map(|q| quantity_value(q, unit))
        };
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            ready,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            taints,
            allocatable: Allocatable {
                milli_cpu: quantity("cpu", 1000.0).unwrap_or(0),
                memory: quantity("memory", 1.0).unwrap_or(0),
                ephemeral_storage: quantity("ephemeral-storage", 1.0),
                pods: quantity("pods", 1.0).unwrap_or(0),
            },
        }
    }
}

/// What a pod takes from the node it runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    pub requests: Requests,
    /// Requests with upstream's defaults for unset CPU (100m) and memory (200Mi):
    /// used for scoring only, so that best-effort pods still spread by load.
    pub nonzero: Requests,
    pub host_ports: Vec<HostPort>,
    /// A hash of the controller ownerReference's uid: pods of one owner spread.
    pub owner: Option<u64>,
}

/// Where a pod must, may or may not go. Compared to tell whether an update of a
/// waiting pod deserves a fresh attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    pub priority: i32,
    pub node_selector: Vec<(String, String)>,
    /// `requiredDuringSchedulingIgnoredDuringExecution` terms (ORed); `None` when unset.
    pub required_affinity: Option<Vec<SelectorTerm>>,
    pub tolerations: Vec<Toleration>,
}

/// A pod, reduced to what the cache and the scheduler look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub resource_version: Option<String>,
    pub node_name: Option<String>,
    /// Ours to schedule: `spec.schedulerName` is ours or empty.
    pub ours: bool,
    pub deleting: bool,
    /// Succeeded or Failed: takes no resources any more.
    pub finished: bool,
    /// Has `spec.schedulingGates`: not to be scheduled yet.
    pub gated: bool,
    /// Milliseconds since the epoch: older pods of one priority go first.
    pub created_ms: i64,
    /// The current `PodScheduled` condition as (status, reason, message).
    pub scheduled_condition: Option<(String, String, String)>,
    pub footprint: Footprint,
    pub constraints: Constraints,
    /// The PersistentVolumeClaims the pod uses (`volumes::pod_claims`).
    pub claims: Vec<String>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
        let scheduler = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or_default();
        let scheduled_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .map(|c| {
                (
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        let owner = meta
            .owner_references
            .as_ref()
            .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)))
            .map(|r| fnv1a(&[r.uid.as_bytes()]));
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
            node_name: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            ours: scheduler.is_empty() || scheduler == SCHEDULER_NAME,
            deleting: meta.deletion_timestamp.is_some(),
            finished: phase == "Succeeded" || phase == "Failed",
            gated: spec
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_some_and(|g| !g.is_empty()),
            created_ms: meta
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.timestamp_millis())
                .unwrap_or_default(),
            scheduled_condition,
            footprint: Footprint {
                requests: spec.map(|s| pod_requests(s, false)).unwrap_or_default(),
                nonzero: spec.map(|s| pod_requests(s, true)).unwrap_or_default(),
                host_ports: spec.map(host_ports).unwrap_or_default(),
                owner,
            },
            constraints: spec.map(constraints).unwrap_or_default(),
            claims: super::volumes::pod_claims(pod),
        }
    }

    /// Unbound, ours, alive and ungated: waiting for us.
    pub fn wants_scheduling(&self) -> bool {
        self.node_name.is_none() && self.ours && !self.deleting && !self.finished && !self.gated
    }

    /// `namespace/name`, as messages show a pod.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn constraints(spec: &PodSpec) -> Constraints {
    let node_selector = spec
        .node_selector
        .as_ref()
        .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let required_affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|selector| {
            selector
                .node_selector_terms
                .iter()
                .map(selector_term)
                .collect()
        });
    let tolerations = spec
        .tolerations
        .as_ref()
        .map(|ts| {
            ts.iter()
                .map(|t| Toleration {
                    key: t.key.clone().unwrap_or_default(),
                    exists: t.operator.as_deref() == Some("Exists"),
                    value: t.value.clone().unwrap_or_default(),
                    effect: t
                        .effect
                        .as_deref()
                        .filter(|e| !e.is_empty())
                        .map(Effect::parse),
                })
                .collect()
        })
        .unwrap_or_default();
    Constraints {
        priority: spec.priority.unwrap_or(0),
        node_selector,
        required_affinity,
        tolerations,
    }
}

pub fn selector_term(term: &NodeSelectorTerm) -> SelectorTerm {
    let convert = |rs: &Option<Vec<NodeSelectorRequirement>>| -> Vec<Requirement> {
        rs.iter().flatten().map(requirement).collect()
    };
    SelectorTerm {
        labels: convert(&term.match_expressions),
        fields: convert(&term.match_fields),
    }
}

fn requirement(r: &NodeSelectorRequirement) -> Requirement {
    let operator = match r.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::Gt,
        "Lt" => Operator::Lt,
        _ => Operator::Unknown,
    };
    Requirement {
        key: r.key.clone(),
        operator,
        values: r.values.clone().unwrap_or_default(),
    }
}

fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|&hp| hp > 0)?;
            Some(HostPort {
                port,
                protocol: p
                    .protocol
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
            })
        })
        .collect()
}

/// Default CPU and memory a container without requests is scored as (upstream's
/// `DefaultMilliCPURequest` and `DefaultMemoryRequest`).
const NONZERO_MILLI_CPU: i64 = 100;
const NONZERO_MEMORY: i64 = 200 * 1024 * 1024;

/// The pod's effective requests as upstream computes them: the containers' sum
/// (with sidecar init containers, which keep running) against the largest init
/// container (plus the sidecars started before it), plus the pod overhead.
pub fn pod_requests(spec: &PodSpec, nonzero: bool) -> Requests {
    let mut total = Requests::default();
    for c in &spec.containers {
        total.add(&container_requests(c, nonzero));
    }
    let mut sidecars = Requests::default();
    let mut largest_init = Requests::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, nonzero);
        let during = if c.restart_policy.as_deref() == Some("Always") {
            total.add(&own);
            sidecars.add(&own);
            sidecars
        } else {
            let mut during = own;
            during.add(&sidecars);
            during
        };
        largest_init.raise_to(&during);
    }
    total.raise_to(&largest_init);
    if let Some(overhead) = &spec.overhead {
        total.add(&resource_list(overhead));
    }
    total
}

fn container_requests(c: &Container, nonzero: bool) -> Requests {
    let mut requests = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(resource_list)
        .unwrap_or_default();
    if nonzero {
        if requests.milli_cpu == 0 {
            requests.milli_cpu = NONZERO_MILLI_CPU;
        }
        if requests.memory == 0 {
            requests.memory = NONZERO_MEMORY;
        }
    }
    requests
}

fn resource_list(list: &BTreeMap<String, Quantity>) -> Requests {
    let get = |name: &str, unit: f64| list.get(name).map(|q| quantity_value(q, unit)).unwrap_or(0);
    Requests {
        milli_cpu: get("cpu", 1000.0),
        memory: get("memory", 1.0),
        ephemeral_storage: get("ephemeral-storage", 1.0),
    }
}

/// A quantity in `1/unit`s (millicores for 1000), rounded up as upstream's
/// `MilliValue`; unparseable quantities count as zero (the API validated them).
fn quantity_value(q: &Quantity, unit: f64) -> i64 {
    let Ok(value) = parse_quantity(&q.0) else {
        return 0;
    };
    let scaled = value * unit;
    let nearest = scaled.round();
    if (scaled - nearest).abs() < 1e-6 {
        nearest as i64
    } else {
        scaled.ceil() as i64
    }
}

/// FNV-1a over some byte strings: cheap, stable hashing for owners and tie-breaks.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap();
        PodInfo::from_pod(&pod)
    }

    #[test]
    fn requests_sum_containers_against_the_largest_init_container() {
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m"}}},
            ],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}},
                {"name": "i2", "resources": {"requests": {"memory": "128Mi"}}},
            ],
        }));
        let r = p.footprint.requests;
        assert_eq!(r.milli_cpu, 1000);
        assert_eq!(r.memory, 128 * 1024 * 1024);
        assert_eq!(p.footprint.nonzero.milli_cpu, 1000);
    }

    #[test]
    fn sidecars_add_to_the_sum_and_to_later_init_containers() {
        let p = pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "500m"}}},
            ],
            "overhead": {"cpu": "10m"},
        }));
        assert_eq!(p.footprint.requests.milli_cpu, 710);
    }

    #[test]
    fn best_effort_pods_score_with_default_requests() {
        let p = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        assert_eq!(p.footprint.requests, Requests::default());
        assert_eq!(p.footprint.nonzero.milli_cpu, 200);
        assert_eq!(p.footprint.nonzero.memory, 400 * 1024 * 1024);
    }

    #[test]
    fn host_ports_default_protocol_and_address() {
        let p = pod(json!({"containers": [{"name": "a", "ports": [
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
            {"containerPort": 9000},
        ]}]}));
        assert_eq!(
            p.footprint.host_ports,
            vec![
                HostPort {
                    port: 8080,
                    protocol: "TCP".into(),
                    ip: "0.0.0.0".into()
                },
                HostPort {
                    port: 53,
                    protocol: "UDP".into(),
                    ip: "10.0.0.1".into()
                },
            ]
        );
    }

    #[test]
    fn cpu_quantities_round_to_millicores() {
        assert_eq!(quantity_value(&Quantity("100m".into()), 1000.0), 100);
        assert_eq!(quantity_value(&Quantity("0.1".into()), 1000.0), 100);
        assert_eq!(quantity_value(&Quantity("1.0001".into()), 1000.0), 1001);
        assert_eq!(quantity_value(&Quantity("1Gi".into()), 1.0), 1 << 30);
    }

    #[test]
    fn nodes_fall_back_to_capacity() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .unwrap();
        let info = NodeInfo::from_node(&node);
        assert!(info.ready && info.unschedulable);
        assert_eq!(info.allocatable.milli_cpu, 2000);
        assert_eq!(info.allocatable.pods, 110);
        assert_eq!(info.allocatable.ephemeral_storage, None);
        assert_eq!(info.taints[0].effect, Effect::NoSchedule);
    }

    #[test]
    fn pods_know_whether_they_wait_for_us() {
        assert!(pod(json!({"containers": []})).wants_scheduling());
        assert!(
            pod(json!({"containers": [], "schedulerName": "default-scheduler"})).wants_scheduling()
        );
        assert!(!pod(json!({"containers": [], "schedulerName": "other"})).wants_scheduling());
        assert!(!pod(json!({"containers": [], "nodeName": "n1"})).wants_scheduling());
        assert!(
            !pod(json!({"containers": [], "schedulingGates": [{"name": "g"}]})).wants_scheduling()
        );
    }
}
