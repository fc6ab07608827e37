//! Endpoints and EndpointSlices for Services with a selector: Kubernetes' endpoints and
//! endpointslice controllers in one loop, fed by the same caches.
//!
//! Owns: the `Endpoints` named like each selector Service, and the EndpointSlices
//! labelled `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`.
//! Leaves alone: Endpoints of Services without a selector (user-managed, and
//! `default/kubernetes`, which the API server writes).
//! May call: the API through `ctx.client` — watches of Services, Pods, Nodes, Endpoints
//! and managed EndpointSlices; writes of Endpoints and EndpointSlices; Events.
//!
//! Layout: pure decisions first (`backends`, `desired_endpoints`, `plan_slices`), then
//! the in-memory index the watches feed (`Cache`: namespace → services by selector,
//! service → member pods, pod → services), the work queue, and the API I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, Node, ObjectReference,
    Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinSet;

use super::events::EventType;
use super::{Context, Result};

const CONTROLLER: &str = "endpoints";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Endpoints per EndpointSlice (the controller's default `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Addresses per Endpoints object; more are truncated and the object annotated.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

const WORKERS: usize = 4;
/// Everything is reconciled again this often, as a safety net for missed events.
const RESYNC_EVERY: Duration = Duration::from_secs(120);
/// How long to wait for the caches to show our own writes before writing again.
const EXPECTATION_TTL: Duration = Duration::from_secs(5);
const STALE_RETRY: Duration = Duration::from_millis(500);
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// What the controller keeps of pods and services
// ---------------------------------------------------------------------------

/// A Service, by namespace and name; also the key of its Endpoints and the value of
/// its slices' `kubernetes.io/service-name` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn of(meta: &ObjectMeta) -> Option<Self> {
        Some(ServiceKey::new(
            meta.namespace.as_deref()?,
            meta.name.as_deref()?,
        ))
    }

    /// `default/kubernetes`: the API server writes its Endpoints.
    fn is_api_server(&self) -> bool {
        self.namespace == "default" && self.name == "kubernetes"
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A container port a Service's named `targetPort` may refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: String,
    pub port: i32,
}

/// The fields of a pod that shape endpoints; a change elsewhere in the pod is no
/// reason to reconcile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `status.podIP` first, then the rest of `status.podIPs`.
    pub ips: Vec<String>,
    pub node_name: String,
    /// Condition Ready=True.
    pub ready: bool,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Phase Succeeded or Failed.
    pub terminal: bool,
    pub hostname: String,
    pub subdomain: String,
    pub ports: Vec<NamedPort>,
    /// When readiness last changed (or the pod was created): the change trigger time.
    pub changed_at: Option<DateTime<Utc>>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let ready_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
        let mut ips: Vec<String> = status.and_then(|s| s.pod_ip.clone()).into_iter().collect();
        for ip in status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
        {
            if !ips.contains(&ip.ip) {
                ips.push(ip.ip.clone());
            }
        }
        ips.retain(|ip| !ip.is_empty());
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            ips,
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            ready: ready_condition.is_some_and(|c| c.status == "True"),
            terminating: meta.deletion_timestamp.is_some(),
            terminal: phase == "Succeeded" || phase == "Failed",
            hostname: spec.and_then(|s| s.hostname.clone()).unwrap_or_default(),
            subdomain: spec.and_then(|s| s.subdomain.clone()).unwrap_or_default(),
            ports: spec.map(named_ports).unwrap_or_default(),
            changed_at: ready_condition
                .and_then(|c| c.last_transition_time.as_ref())
                .or(meta.creation_timestamp.as_ref())
                .map(|t| t.0),
        }
    }
}

/// Named ports of the containers and of sidecars (init containers that keep running).
fn named_ports(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<NamedPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.clone().filter(|n| !n.is_empty())?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.container_port,
            })
        })
        .collect()
}

/// The map-form selector of a Service this controller manages endpoints for: none for
/// selector-less and ExternalName Services (an empty selector is no selector, as the
/// API server drops it).
pub fn managed_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_headless(service: &Service) -> bool {
    let cluster_ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    matches!(cluster_ip, None | Some("") | Some("None"))
}

fn publishes_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn service_ports(service: &Service) -> &[k8s_openapi::api::core::v1::ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// The Service's primary IP family, which picks pod addresses and the slices' type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(service: &Service) -> Family {
        let first = service
            .spec
            .as_ref()
            .and_then(|s| s.ip_families.as_ref())
            .and_then(|f| f.first());
        match first.map(String::as_str) {
            Some("IPv6") => Family::V6,
            _ => Family::V4,
        }
    }

    fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn accepts(self, ip: &str) -> bool {
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => self == Family::V4,
            Ok(IpAddr::V6(_)) => self == Family::V6,
            Err(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Pure decisions: which pods back a Service, and on which ports
// ---------------------------------------------------------------------------

/// A Service port resolved for one pod: what an EndpointPort says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// One pod as an endpoint of one Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub ip: String,
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub node_name: String,
    pub zone: Option<String>,
    pub hostname: Option<String>,
    /// Ready to receive traffic: `publishNotReadyAddresses`, or ready and not terminating.
    pub ready: bool,
    /// The pod's own readiness, terminating or not.
    pub serving: bool,
    pub terminating: bool,
    /// The Service's ports this pod has, in the Service's order.
    pub ports: Vec<PortSpec>,
}

/// Node name → the node's zone label; a pod whose node is missing has no endpoint.
pub type NodeZones = HashMap<String, Option<String>>;

/// The endpoints of `service` among the `pods` its selector chose, sorted by address:
/// terminal pods, pods without an address of the Service's family and pods whose node
/// is gone (unless `publishNotReadyAddresses`) are left out; terminating pods stay
/// (slices mark them; Endpoints drop them).
pub fn backends<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a PodInfo>,
    nodes: &NodeZones,
) -> Vec<Backend> {
    let publish = publishes_not_ready(service);
    let family = Family::of(service);
    let service_name = service.metadata.name.as_deref().unwrap_or_default();
    let mut found: Vec<Backend> = pods
        .into_iter()
        .filter_map(|pod| {
            if pod.terminal {
                return None;
            }
            let ip = pod.ips.iter().find(|ip| family.accepts(ip))?;
            let zone = match nodes.get(&pod.node_name) {
                Some(zone) => zone.clone(),
                None if publish => None,
                None => return None,
            };
            let sets_hostname = !pod.hostname.is_empty() && pod.subdomain == service_name;
            Some(Backend {
                ip: ip.clone(),
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                uid: pod.uid.clone(),
                node_name: pod.node_name.clone(),
                zone,
                hostname: sets_hostname.then(|| pod.hostname.clone()),
                ready: publish || (pod.ready && !pod.terminating),
                serving: pod.ready,
                terminating: pod.terminating,
                ports: resolve_ports(service, pod),
            })
        })
        .collect();
    found.sort_by(|a, b| (&a.ip, &a.uid).cmp(&(&b.ip, &b.uid)));
    found
}

/// Each Service port as this pod offers it; a named `targetPort` the pod's containers
/// lack (same name and protocol) leaves that port out.
fn resolve_ports(service: &Service, pod: &PodInfo) -> Vec<PortSpec> {
    service_ports(service)
        .iter()
        .filter_map(|sp| {
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            let port = match &sp.target_port {
                None => sp.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => {
                    pod.ports
                        .iter()
                        .find(|p| &p.name == name && p.protocol == protocol)?
                        .port
                }
            };
            Some(PortSpec {
                name: sp.name.clone().unwrap_or_default(),
                port,
                protocol,
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// When the newest change these endpoints reflect happened: the Service's creation or
/// a selected pod's creation or readiness change.
pub fn trigger_time<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a PodInfo>,
) -> Option<DateTime<Utc>> {
    let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
    pods.into_iter()
        .filter_map(|p| p.changed_at)
        .chain(created)
        .max()
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn pod_reference(backend: &Backend) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(backend.namespace.clone()),
        name: Some(backend.pod.clone()),
        uid: Some(backend.uid.clone()),
        ..Default::default()
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn non_empty_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

// ---------------------------------------------------------------------------
// Pure decisions: the Endpoints object
// ---------------------------------------------------------------------------

/// Endpoints subsets as upstream's `RepackSubsets` builds them: every port maps to the
/// set of addresses offering it, ports with identical address sets share a subset.
/// Terminating pods are left out unless `publishNotReadyAddresses`. A headless Service
/// without ports gets its addresses with no ports.
pub fn endpoint_subsets(service: &Service, backends: &[Backend]) -> Vec<EndpointSubset> {
    let publish = publishes_not_ready(service);
    let portless = service_ports(service).is_empty();
    if portless && !is_headless(service) {
        return Vec::new();
    }
    // Port (None: "no ports") → (backend index, ready) of the addresses offering it.
    let mut by_port: BTreeMap<Option<&PortSpec>, Vec<(usize, bool)>> = BTreeMap::new();
    for (i, backend) in backends.iter().enumerate() {
        if backend.terminating && !publish {
            continue;
        }
        if portless {
            by_port.entry(None).or_default().push((i, backend.ready));
        }
        for port in &backend.ports {
            by_port
                .entry(Some(port))
                .or_default()
                .push((i, backend.ready));
        }
    }
    let mut by_addresses: BTreeMap<Vec<(usize, bool)>, Vec<&PortSpec>> = BTreeMap::new();
    for (port, addresses) in by_port {
        let ports = by_addresses.entry(addresses).or_default();
        ports.extend(port);
    }
    by_addresses
        .into_iter()
        .map(|(addresses, ports)| {
            let pick = |ready: bool| {
                let chosen = addresses.iter().filter(|(_, r)| *r == ready);
                non_empty(
                    chosen
                        .map(|(i, _)| endpoint_address(&backends[*i]))
                        .collect(),
                )
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: non_empty(ports.into_iter().map(core_port).collect()),
            }
        })
        .collect()
}

fn endpoint_address(backend: &Backend) -> EndpointAddress {
    EndpointAddress {
        ip: backend.ip.clone(),
        hostname: backend.hostname.clone(),
        node_name: Some(backend.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(backend)),
    }
}

fn core_port(port: &PortSpec) -> CorePort {
    CorePort {
        name: Some(port.name.clone()).filter(|n| !n.is_empty()),
        port: port.port,
        protocol: Some(port.protocol.clone()),
        app_protocol: port.app_protocol.clone(),
    }
}

fn address_count(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(ready, not_ready), s| {
        (
            ready + s.addresses.as_ref().map_or(0, Vec::len),
            not_ready + s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    })
}

/// Keeps at most `MAX_ENDPOINTS_ADDRESSES` addresses, ready ones first, each subset
/// keeping its share (upstream's `truncateEndpoints`); true when something was cut.
pub fn truncate_subsets(subsets: &mut Vec<EndpointSubset>) -> bool {
    let (ready, not_ready) = address_count(subsets);
    if ready + not_ready <= MAX_ENDPOINTS_ADDRESSES {
        return false;
    }
    let cut_ready = ready > MAX_ENDPOINTS_ADDRESSES;
    let (budget, total) = if cut_ready {
        (MAX_ENDPOINTS_ADDRESSES, ready)
    } else {
        (MAX_ENDPOINTS_ADDRESSES - ready, not_ready)
    };
    let mut left = budget;
    for subset in subsets.iter_mut() {
        let list = if cut_ready {
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let Some(addresses) = list.as_mut() else {
            continue;
        };
        let share = (addresses.len() * budget).div_ceil(total).min(left);
        addresses.truncate(share);
        left -= addresses.len();
        if addresses.is_empty() {
            *list = None;
        }
    }
    subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    true
}

/// The Service's labels, plus `service.kubernetes.io/headless` for headless Services.
pub fn endpoints_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// Subsets with empty lists spelled as absent, to compare what the API returns.
fn normalized(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    let tidy = |list: &Option<Vec<EndpointAddress>>| list.clone().and_then(non_empty);
    subsets
        .into_iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: tidy(&s.addresses),
            not_ready_addresses: tidy(&s.not_ready_addresses),
            ports: s.ports.clone().and_then(non_empty),
        })
        .collect()
}

/// The Endpoints to write for `service`, or None when `current` already says it all
/// (subsets, labels, over-capacity mark; the trigger time alone is no reason to write).
pub fn desired_endpoints(
    service: &Service,
    backends: &[Backend],
    current: Option<&Endpoints>,
    trigger: Option<DateTime<Utc>>,
) -> Option<Endpoints> {
    let mut subsets = endpoint_subsets(service, backends);
    let truncated = truncate_subsets(&mut subsets);
    let labels = endpoints_labels(service);
    if let Some(current) = current {
        let annotations = current.metadata.annotations.as_ref();
        let marked = annotations.is_some_and(|a| a.contains_key(OVER_CAPACITY_ANNOTATION));
        let current_labels = current.metadata.labels.clone().unwrap_or_default();
        if normalized(current.subsets.as_ref()) == subsets
            && current_labels == labels
            && marked == truncated
        {
            return None;
        }
    }
    let mut endpoints = current.cloned().unwrap_or_default();
    endpoints.metadata.name = service.metadata.name.clone();
    endpoints.metadata.namespace = service.metadata.namespace.clone();
    endpoints.metadata.labels = non_empty_map(labels);
    let mut annotations = endpoints.metadata.annotations.take().unwrap_or_default();
    match trigger {
        Some(time) => annotations.insert(TRIGGER_TIME_ANNOTATION.into(), format_time(time)),
        None => annotations.remove(TRIGGER_TIME_ANNOTATION),
    };
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    endpoints.metadata.annotations = non_empty_map(annotations);
    endpoints.subsets = non_empty(subsets);
    Some(endpoints)
}

/// Endpoints this controller wrote (it always sets the trigger time, and points at
/// pods); user-managed ones of a selector-less Service are never touched.
fn looks_managed(endpoints: &Endpoints) -> bool {
    let annotated = endpoints
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(TRIGGER_TIME_ANNOTATION));
    let points_at_pods = endpoints.subsets.iter().flatten().any(|s| {
        s.addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .any(|a| a.target_ref.as_ref().and_then(|r| r.kind.as_deref()) == Some("Pod"))
    });
    annotated || points_at_pods
}

// ---------------------------------------------------------------------------
// Pure decisions: EndpointSlices
// ---------------------------------------------------------------------------

/// The writes that bring a Service's slices to the desired state.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl SlicePlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The Service's labels except the reserved ones, plus service-name, managed-by and,
/// for headless Services, the headless label.
pub fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let reserved = [SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL];
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    let name = service.metadata.name.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name);
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Service" && Some(o.uid.as_str()) == uid)
}

fn owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn slice_endpoint(backend: &Backend) -> Endpoint {
    Endpoint {
        addresses: vec![backend.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(backend.ready),
            serving: Some(backend.serving),
            terminating: Some(backend.terminating),
        }),
        hostname: backend.hostname.clone(),
        node_name: Some(backend.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(backend)),
        zone: backend.zone.clone(),
        ..Default::default()
    }
}

fn slice_port(port: &PortSpec) -> SlicePort {
    SlicePort {
        name: Some(port.name.clone()),
        port: Some(port.port),
        protocol: Some(port.protocol.clone()),
        app_protocol: port.app_protocol.clone(),
    }
}

fn port_spec(port: &SlicePort) -> PortSpec {
    PortSpec {
        name: port.name.clone().unwrap_or_default(),
        port: port.port.unwrap_or_default(),
        protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
        app_protocol: port.app_protocol.clone(),
    }
}

/// Identifies an endpoint across slices: its address and pod.
type EndpointKey = (String, String);

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let address = endpoint.addresses.first().cloned().unwrap_or_default();
    let uid = endpoint.target_ref.as_ref().and_then(|r| r.uid.clone());
    (address, uid.unwrap_or_default())
}

/// A port set as a grouping key: sorted, so order does not matter.
fn port_set_key(ports: &[PortSpec]) -> Vec<PortSpec> {
    let mut key = ports.to_vec();
    key.sort();
    key
}

fn slice_port_set(slice: &EndpointSlice) -> Vec<PortSpec> {
    let ports: Vec<PortSpec> = slice.ports.iter().flatten().map(port_spec).collect();
    port_set_key(&ports)
}

/// Desired endpoints sharing one port set.
struct PortGroup {
    ports: Vec<PortSpec>,
    remaining: BTreeMap<EndpointKey, Endpoint>,
}

/// An existing slice of a wanted port set, with its endpoints brought up to date.
struct Kept {
    slice: EndpointSlice,
    ports: Vec<PortSpec>,
    changed: bool,
}

/// What a written slice carries besides its endpoints.
struct SliceMeta<'a> {
    service: &'a Service,
    labels: BTreeMap<String, String>,
    trigger: Option<DateTime<Utc>>,
}

impl SliceMeta<'_> {
    fn dress(&self, mut slice: EndpointSlice, ports: &[PortSpec]) -> EndpointSlice {
        slice.endpoints.sort_by_key(endpoint_key);
        slice.ports = non_empty(ports.iter().map(slice_port).collect());
        slice.metadata.labels = Some(self.labels.clone());
        let mut annotations = slice.metadata.annotations.take().unwrap_or_default();
        match self.trigger {
            Some(time) => annotations.insert(TRIGGER_TIME_ANNOTATION.into(), format_time(time)),
            None => annotations.remove(TRIGGER_TIME_ANNOTATION),
        };
        slice.metadata.annotations = non_empty_map(annotations);
        if !owned_by(&slice, self.service) {
            slice.metadata.owner_references = Some(vec![owner_reference(self.service)]);
        }
        slice
    }

    fn fresh(&self) -> EndpointSlice {
        let name = self.service.metadata.name.clone().unwrap_or_default();
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: self.service.metadata.namespace.clone(),
                ..Default::default()
            },
            address_type: Family::of(self.service).address_type().into(),
            endpoints: Vec::new(),
            ports: None,
        }
    }
}

/// The slice writes for `service` given its backends and its existing managed slices:
/// endpoints grouped by port set, at most `MAX_ENDPOINTS_PER_SLICE` per slice; existing
/// slices keep their endpoints where possible and are filled before new ones are made;
/// a slice that would be deleted is reused for one that would be created; slices of
/// another owner or address type go; with no endpoints at all one empty placeholder
/// slice remains (as upstream).
pub fn plan_slices(
    service: &Service,
    backends: &[Backend],
    existing: &[EndpointSlice],
    trigger: Option<DateTime<Utc>>,
) -> SlicePlan {
    let meta = SliceMeta {
        service,
        labels: slice_labels(service),
        trigger,
    };
    let address_type = Family::of(service).address_type();
    let mut groups: BTreeMap<Vec<PortSpec>, PortGroup> = BTreeMap::new();
    for backend in backends {
        let group = groups
            .entry(port_set_key(&backend.ports))
            .or_insert_with(|| PortGroup {
                ports: backend.ports.clone(),
                remaining: BTreeMap::new(),
            });
        let endpoint = slice_endpoint(backend);
        group.remaining.insert(endpoint_key(&endpoint), endpoint);
    }

    let mut plan = SlicePlan::default();
    let mut sorted: Vec<&EndpointSlice> = existing.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut spare = Vec::new();
    let mut kept: BTreeMap<Vec<PortSpec>, Vec<Kept>> = BTreeMap::new();
    for slice in sorted {
        if !owned_by(slice, service) || slice.address_type != address_type {
            plan.delete.push(slice.clone());
            continue;
        }
        let key = slice_port_set(slice);
        let Some(group) = groups.get_mut(&key) else {
            spare.push(slice.clone());
            continue;
        };
        match keep_current(slice, group, &meta.labels) {
            Some(k) => kept.entry(key).or_default().push(k),
            None => spare.push(slice.clone()),
        }
    }

    let mut fresh: Vec<(Vec<PortSpec>, Vec<Endpoint>)> = Vec::new();
    for (key, group) in groups {
        let slices = kept.entry(key).or_default();
        let mut remaining = group.remaining.into_values();
        for changed_first in [true, false] {
            for k in slices.iter_mut().filter(|k| k.changed == changed_first) {
                while k.slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                    let Some(endpoint) = remaining.next() else {
                        break;
                    };
                    k.slice.endpoints.push(endpoint);
                    k.changed = true;
                }
            }
        }
        let rest: Vec<Endpoint> = remaining.collect();
        for chunk in rest.chunks(MAX_ENDPOINTS_PER_SLICE) {
            fresh.push((group.ports.clone(), chunk.to_vec()));
        }
    }
    for k in kept.into_values().flatten().filter(|k| k.changed) {
        plan.update.push(meta.dress(k.slice, &k.ports));
    }

    if backends.is_empty() {
        let placeholder = spare
            .iter()
            .position(|s| s.endpoints.is_empty() && s.ports.iter().flatten().next().is_none());
        match placeholder {
            Some(i) => {
                let slice = spare.remove(i);
                if slice.metadata.labels.as_ref() != Some(&meta.labels) {
                    plan.update.push(meta.dress(slice, &[]));
                }
            }
            None => fresh.push((Vec::new(), Vec::new())),
        }
    }

    for (ports, endpoints) in fresh {
        match spare.pop() {
            Some(mut reused) => {
                reused.endpoints = endpoints;
                plan.update.push(meta.dress(reused, &ports));
            }
            None => {
                let mut slice = meta.fresh();
                slice.endpoints = endpoints;
                plan.create.push(meta.dress(slice, &ports));
            }
        }
    }
    plan.delete.extend(spare);
    plan
}

/// `slice`'s endpoints that are still wanted, in their desired form (taken out of
/// `group`); None when none are left.
fn keep_current(
    slice: &EndpointSlice,
    group: &mut PortGroup,
    labels: &BTreeMap<String, String>,
) -> Option<Kept> {
    let mut endpoints = Vec::new();
    let mut changed = false;
    for current in &slice.endpoints {
        match group.remaining.remove(&endpoint_key(current)) {
            Some(desired) => {
                changed |= desired != *current;
                endpoints.push(desired);
            }
            None => changed = true,
        }
    }
    while endpoints.len() > MAX_ENDPOINTS_PER_SLICE {
        if let Some(extra) = endpoints.pop() {
            group.remaining.insert(endpoint_key(&extra), extra);
        }
        changed = true;
    }
    if endpoints.is_empty() {
        return None;
    }
    changed |= slice.metadata.labels.as_ref() != Some(labels);
    let current_ports: Vec<PortSpec> = slice.ports.iter().flatten().map(port_spec).collect();
    changed |= current_ports != group.ports;
    let mut slice = slice.clone();
    slice.endpoints = endpoints;
    Some(Kept {
        slice,
        ports: group.ports.clone(),
        changed,
    })
}

// ---------------------------------------------------------------------------
// The cache the watches feed
// ---------------------------------------------------------------------------

/// A pod and the selector Services it belongs to.
struct PodEntry {
    info: Arc<PodInfo>,
    services: Vec<String>,
}

/// An object the controller wrote and waits to see in its caches.
#[derive(Debug, Clone, PartialEq)]
enum Written {
    Endpoints,
    Slice(String),
}

/// `version` None: deleted.
#[derive(Debug, Clone)]
struct Expectation {
    object: Written,
    version: Option<u64>,
    since: Instant,
}

/// Selector Services indexed by one pair of their selector: namespace → key → value →
/// service names. A pod can only match a Service indexed under one of its labels.
type SelectorIndex = HashMap<String, HashMap<String, HashMap<String, BTreeSet<String>>>>;

/// Everything the controller knows, fed by watches, read by reconciles.
#[derive(Default)]
struct Cache {
    services: HashMap<ServiceKey, Arc<Service>>,
    selector_index: SelectorIndex,
    /// Selector Service → names of the pods it selects.
    members: HashMap<ServiceKey, BTreeSet<String>>,
    /// Namespace → pod name → pod.
    pods: HashMap<String, HashMap<String, PodEntry>>,
    nodes: NodeZones,
    endpoints: HashMap<ServiceKey, Arc<Endpoints>>,
    /// Managed slices by the Service they are labelled for.
    slices: HashMap<ServiceKey, BTreeMap<String, Arc<EndpointSlice>>>,
    /// (namespace, slice name) → the Service it is filed under.
    slice_service: HashMap<(String, String), ServiceKey>,
    expectations: HashMap<ServiceKey, Vec<Expectation>>,
}

/// What a reconcile has to do, decided under the cache lock.
enum Work {
    Nothing,
    DeleteEndpoints(Arc<Endpoints>),
    DeleteSlices(Vec<EndpointSlice>),
    Sync(Box<SyncWork>),
}

struct SyncWork {
    service: Arc<Service>,
    backends: Vec<Backend>,
    trigger: Option<DateTime<Utc>>,
    endpoints: Option<Arc<Endpoints>>,
    slices: Vec<EndpointSlice>,
}

fn version(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

impl Cache {
    fn selector_of(&self, key: &ServiceKey) -> Option<&BTreeMap<String, String>> {
        self.services.get(key).and_then(|s| managed_selector(s))
    }

    // --- services -----------------------------------------------------------

    fn apply_service(&mut self, service: Service, out: &mut Vec<ServiceKey>) {
        let Some(key) = ServiceKey::of(&service.metadata) else {
            return;
        };
        let service = Arc::new(service);
        let old = self.services.insert(key.clone(), service.clone());
        if old.as_deref() == Some(&*service) {
            return;
        }
        let old_selector = old.as_deref().and_then(managed_selector);
        if old_selector != managed_selector(&service) {
            if let Some(selector) = old_selector {
                self.unindex_service(&key, selector);
            }
            if let Some(selector) = managed_selector(&service) {
                self.index_service(&key, selector);
            }
        }
        out.push(key);
    }

    fn delete_service(&mut self, key: &ServiceKey, out: &mut Vec<ServiceKey>) {
        if let Some(old) = self.services.remove(key) {
            if let Some(selector) = managed_selector(&old) {
                self.unindex_service(key, selector);
            }
            out.push(key.clone());
        }
    }

    fn index_service(&mut self, key: &ServiceKey, selector: &BTreeMap<String, String>) {
        let Some((k, v)) = selector.iter().next() else {
            return;
        };
        self.selector_index
            .entry(key.namespace.clone())
            .or_default()
            .entry(k.clone())
            .or_default()
            .entry(v.clone())
            .or_default()
            .insert(key.name.clone());
        let mut members = BTreeSet::new();
        for (name, entry) in self.pods.get_mut(&key.namespace).into_iter().flatten() {
            if selects(selector, &entry.info.labels) {
                entry.services.push(key.name.clone());
                members.insert(name.clone());
            }
        }
        self.members.insert(key.clone(), members);
    }

    fn unindex_service(&mut self, key: &ServiceKey, selector: &BTreeMap<String, String>) {
        if let Some((k, v)) = selector.iter().next() {
            let by_key = self.selector_index.get_mut(&key.namespace);
            let names = by_key.and_then(|m| m.get_mut(k)).and_then(|m| m.get_mut(v));
            if let Some(names) = names {
                names.remove(&key.name);
            }
        }
        let members = self.members.remove(key).unwrap_or_default();
        if let Some(pods) = self.pods.get_mut(&key.namespace) {
            for pod in members {
                if let Some(entry) = pods.get_mut(&pod) {
                    entry.services.retain(|s| s != &key.name);
                }
            }
        }
    }

    /// Names of the selector Services in `namespace` that select `labels`.
    fn matching_services(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
        let Some(by_key) = self.selector_index.get(namespace) else {
            return Vec::new();
        };
        let mut found = BTreeSet::new();
        for (k, v) in labels {
            let candidates = by_key.get(k).and_then(|by_value| by_value.get(v));
            for name in candidates.into_iter().flatten() {
                let selector = self.selector_of(&ServiceKey::new(namespace, name));
                if selector.is_some_and(|s| selects(s, labels)) {
                    found.insert(name.clone());
                }
            }
        }
        found.into_iter().collect()
    }

    // --- pods and nodes -----------------------------------------------------

    fn apply_pod(&mut self, info: PodInfo, out: &mut Vec<ServiceKey>) {
        let namespace = info.namespace.clone();
        let name = info.name.clone();
        let previous = self.pods.get(&namespace).and_then(|p| p.get(&name));
        if previous.is_some_and(|p| *p.info == info) {
            return;
        }
        let old_services = previous.map(|p| p.services.clone()).unwrap_or_default();
        let services = self.matching_services(&namespace, &info.labels);
        for service in &old_services {
            if !services.contains(service) {
                let key = ServiceKey::new(&namespace, service);
                if let Some(members) = self.members.get_mut(&key) {
                    members.remove(&name);
                }
            }
        }
        for service in &services {
            let key = ServiceKey::new(&namespace, service);
            self.members.entry(key).or_default().insert(name.clone());
        }
        let touched: BTreeSet<&String> = old_services.iter().chain(&services).collect();
        out.extend(touched.into_iter().map(|s| ServiceKey::new(&namespace, s)));
        let entry = PodEntry {
            info: Arc::new(info),
            services,
        };
        self.pods.entry(namespace).or_default().insert(name, entry);
    }

    fn delete_pod(&mut self, namespace: &str, name: &str, out: &mut Vec<ServiceKey>) {
        let Some(entry) = self.pods.get_mut(namespace).and_then(|p| p.remove(name)) else {
            return;
        };
        for service in entry.services {
            let key = ServiceKey::new(namespace, &service);
            if let Some(members) = self.members.get_mut(&key) {
                members.remove(name);
            }
            out.push(key);
        }
    }

    fn apply_node(&mut self, name: String, zone: Option<String>, out: &mut Vec<ServiceKey>) {
        let previous = self.nodes.insert(name.clone(), zone.clone());
        if previous != Some(zone) {
            self.services_on_node(&name, out);
        }
    }

    fn delete_node(&mut self, name: &str, out: &mut Vec<ServiceKey>) {
        if self.nodes.remove(name).is_some() {
            self.services_on_node(name, out);
        }
    }

    fn services_on_node(&self, node: &str, out: &mut Vec<ServiceKey>) {
        let mut found = BTreeSet::new();
        for (namespace, pods) in &self.pods {
            for entry in pods.values().filter(|e| e.info.node_name == node) {
                for service in &entry.services {
                    found.insert(ServiceKey::new(namespace, service));
                }
            }
        }
        out.extend(found);
    }

    // --- endpoints and slices -----------------------------------------------

    fn apply_endpoints(&mut self, endpoints: Endpoints, out: &mut Vec<ServiceKey>) {
        let Some(key) = ServiceKey::of(&endpoints.metadata) else {
            return;
        };
        let endpoints = Arc::new(endpoints);
        let old = self.endpoints.insert(key.clone(), endpoints.clone());
        if old.as_deref() == Some(&*endpoints) {
            return;
        }
        let orphan = !self.services.contains_key(&key) && looks_managed(&endpoints);
        if orphan || self.selector_of(&key).is_some() {
            out.push(key);
        }
    }

    fn delete_endpoints(&mut self, key: &ServiceKey, out: &mut Vec<ServiceKey>) {
        if self.endpoints.remove(key).is_some() && self.selector_of(key).is_some() {
            out.push(key.clone());
        }
    }

    fn apply_slice(&mut self, slice: EndpointSlice, out: &mut Vec<ServiceKey>) {
        let Some(namespace) = slice.metadata.namespace.clone() else {
            return;
        };
        let Some(name) = slice.metadata.name.clone() else {
            return;
        };
        let labels = slice.metadata.labels.as_ref();
        let service = labels.and_then(|l| l.get(SERVICE_NAME_LABEL));
        let Some(key) = service.map(|s| ServiceKey::new(&namespace, s)) else {
            self.delete_slice(&namespace, &name, out);
            return;
        };
        let id = (namespace, name.clone());
        if let Some(previous) = self.slice_service.insert(id, key.clone()) {
            if previous != key {
                self.slices.entry(previous).or_default().remove(&name);
            }
        }
        let slice = Arc::new(slice);
        let old = self
            .slices
            .entry(key.clone())
            .or_default()
            .insert(name, slice.clone());
        if old.as_deref() != Some(&*slice) && self.services.contains_key(&key) {
            out.push(key);
        }
    }

    fn delete_slice(&mut self, namespace: &str, name: &str, out: &mut Vec<ServiceKey>) {
        let id = (namespace.to_string(), name.to_string());
        let Some(key) = self.slice_service.remove(&id) else {
            return;
        };
        if let Some(slices) = self.slices.get_mut(&key) {
            slices.remove(name);
            if slices.is_empty() {
                self.slices.remove(&key);
            }
        }
        if self.services.contains_key(&key) {
            out.push(key);
        }
    }

    // --- reconcile support --------------------------------------------------

    fn expect(&mut self, key: &ServiceKey, object: Written, version: Option<u64>) {
        let list = self.expectations.entry(key.clone()).or_default();
        list.retain(|e| e.object != object);
        list.push(Expectation {
            object,
            version,
            since: Instant::now(),
        });
    }

    /// Whether a write of ours for `key` is not in the caches yet (so a reconcile would
    /// decide on old state); forgets expectations that are met or too old.
    fn is_stale(&mut self, key: &ServiceKey) -> bool {
        let Some(list) = self.expectations.remove(key) else {
            return false;
        };
        let pending: Vec<Expectation> = list
            .into_iter()
            .filter(|e| !self.is_met(key, e) && e.since.elapsed() < EXPECTATION_TTL)
            .collect();
        let stale = !pending.is_empty();
        if stale {
            self.expectations.insert(key.clone(), pending);
        }
        stale
    }

    fn is_met(&self, key: &ServiceKey, expectation: &Expectation) -> bool {
        let seen = match &expectation.object {
            Written::Endpoints => self.endpoints.get(key).map(|e| version(&e.metadata)),
            Written::Slice(name) => self
                .slice_service
                .get(&(key.namespace.clone(), name.clone()))
                .and_then(|k| self.slices.get(k)?.get(name))
                .map(|s| version(&s.metadata)),
        };
        match (expectation.version, seen) {
            (None, seen) => seen.is_none(),
            (Some(_), None) => false,
            (Some(wanted), Some(seen)) => seen.is_none_or(|seen| seen >= wanted),
        }
    }

    fn work(&self, key: &ServiceKey) -> Work {
        let Some(service) = self.services.get(key).cloned() else {
            return match self.endpoints.get(key) {
                Some(endpoints) if looks_managed(endpoints) => {
                    Work::DeleteEndpoints(endpoints.clone())
                }
                _ => Work::Nothing,
            };
        };
        let slices: Vec<EndpointSlice> = self
            .slices
            .get(key)
            .into_iter()
            .flat_map(|s| s.values())
            .map(|s| (**s).clone())
            .collect();
        if managed_selector(&service).is_none() {
            return if slices.is_empty() {
                Work::Nothing
            } else {
                Work::DeleteSlices(slices)
            };
        }
        let pods = self.pods.get(&key.namespace);
        let members = self.members.get(key).into_iter().flatten();
        let infos: Vec<&PodInfo> = members
            .filter_map(|name| pods?.get(name))
            .map(|entry| &*entry.info)
            .collect();
        Work::Sync(Box::new(SyncWork {
            backends: backends(&service, infos.iter().copied(), &self.nodes),
            trigger: trigger_time(&service, infos.iter().copied()),
            endpoints: self.endpoints.get(key).cloned(),
            service,
            slices,
        }))
    }

    fn selector_services(&self) -> Vec<ServiceKey> {
        let keys = self.services.iter();
        let managed = keys.filter(|(_, s)| managed_selector(s).is_some());
        managed.map(|(k, _)| k.clone()).collect()
    }
}

/// How each watched kind goes into the cache.
trait Feed: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug {
    type Item: Send;
    fn item(self) -> Self::Item;
    /// (namespace, name)
    fn id(item: &Self::Item) -> (String, String);
    fn ids(cache: &Cache) -> Vec<(String, String)>;
    fn apply(cache: &mut Cache, item: Self::Item, out: &mut Vec<ServiceKey>);
    fn remove(cache: &mut Cache, id: &(String, String), out: &mut Vec<ServiceKey>);
}

fn meta_id(meta: &ObjectMeta) -> (String, String) {
    let namespace = meta.namespace.clone().unwrap_or_default();
    (namespace, meta.name.clone().unwrap_or_default())
}

fn key_ids<'a>(keys: impl Iterator<Item = &'a ServiceKey>) -> Vec<(String, String)> {
    keys.map(|k| (k.namespace.clone(), k.name.clone()))
        .collect()
}

impl Feed for Service {
    type Item = Service;
    fn item(self) -> Service {
        self
    }
    fn id(item: &Service) -> (String, String) {
        meta_id(&item.metadata)
    }
    fn ids(cache: &Cache) -> Vec<(String, String)> {
        key_ids(cache.services.keys())
    }
    fn apply(cache: &mut Cache, item: Service, out: &mut Vec<ServiceKey>) {
        cache.apply_service(item, out);
    }
    fn remove(cache: &mut Cache, (namespace, name): &(String, String), out: &mut Vec<ServiceKey>) {
        cache.delete_service(&ServiceKey::new(namespace, name), out);
    }
}

impl Feed for Pod {
    type Item = PodInfo;
    fn item(self) -> PodInfo {
        PodInfo::from_pod(&self)
    }
    fn id(item: &PodInfo) -> (String, String) {
        (item.namespace.clone(), item.name.clone())
    }
    fn ids(cache: &Cache) -> Vec<(String, String)> {
        let all = cache.pods.iter();
        let ids = all.flat_map(|(ns, pods)| pods.keys().map(|n| (ns.clone(), n.clone())));
        ids.collect()
    }
    fn apply(cache: &mut Cache, item: PodInfo, out: &mut Vec<ServiceKey>) {
        cache.apply_pod(item, out);
    }
    fn remove(cache: &mut Cache, (namespace, name): &(String, String), out: &mut Vec<ServiceKey>) {
        cache.delete_pod(namespace, name, out);
    }
}

impl Feed for Node {
    /// (name, zone)
    type Item = (String, Option<String>);
    fn item(self) -> Self::Item {
        let zone = self
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ZONE_LABEL));
        let zone = zone.filter(|z| !z.is_empty()).cloned();
        (self.metadata.name.unwrap_or_default(), zone)
    }
    fn id(item: &Self::Item) -> (String, String) {
        (String::new(), item.0.clone())
    }
    fn ids(cache: &Cache) -> Vec<(String, String)> {
        cache
            .nodes
            .keys()
            .map(|n| (String::new(), n.clone()))
            .collect()
    }
    fn apply(cache: &mut Cache, (name, zone): Self::Item, out: &mut Vec<ServiceKey>) {
        cache.apply_node(name, zone, out);
    }
    fn remove(cache: &mut Cache, (_, name): &(String, String), out: &mut Vec<ServiceKey>) {
        cache.delete_node(name, out);
    }
}

impl Feed for Endpoints {
    type Item = Endpoints;
    fn item(self) -> Endpoints {
        self
    }
    fn id(item: &Endpoints) -> (String, String) {
        meta_id(&item.metadata)
    }
    fn ids(cache: &Cache) -> Vec<(String, String)> {
        key_ids(cache.endpoints.keys())
    }
    fn apply(cache: &mut Cache, item: Endpoints, out: &mut Vec<ServiceKey>) {
        cache.apply_endpoints(item, out);
    }
    fn remove(cache: &mut Cache, (namespace, name): &(String, String), out: &mut Vec<ServiceKey>) {
        cache.delete_endpoints(&ServiceKey::new(namespace, name), out);
    }
}

impl Feed for EndpointSlice {
    type Item = EndpointSlice;
    fn item(self) -> EndpointSlice {
        self
    }
    fn id(item: &EndpointSlice) -> (String, String) {
        meta_id(&item.metadata)
    }
    fn ids(cache: &Cache) -> Vec<(String, String)> {
        cache.slice_service.keys().cloned().collect()
    }
    fn apply(cache: &mut Cache, item: EndpointSlice, out: &mut Vec<ServiceKey>) {
        cache.apply_slice(item, out);
    }
    fn remove(cache: &mut Cache, (namespace, name): &(String, String), out: &mut Vec<ServiceKey>) {
        cache.delete_slice(namespace, name, out);
    }
}

/// A relist: objects gone from the list are deleted, the rest applied (each apply
/// enqueues only what changed).
fn replace_all<K: Feed>(cache: &mut Cache, items: Vec<K::Item>, out: &mut Vec<ServiceKey>) {
    let listed: HashSet<(String, String)> = items.iter().map(K::id).collect();
    for id in K::ids(cache) {
        if !listed.contains(&id) {
            K::remove(cache, &id, out);
        }
    }
    for item in items {
        K::apply(cache, item, out);
    }
}

// ---------------------------------------------------------------------------
// The work queue: deduplicated keys, never one key in two workers at once
// ---------------------------------------------------------------------------

#[derive(Default)]
struct QueueState {
    ready: VecDeque<ServiceKey>,
    queued: HashSet<ServiceKey>,
    busy: HashSet<ServiceKey>,
    /// Added while busy: queued again when its worker is done.
    again: HashSet<ServiceKey>,
    failures: HashMap<ServiceKey, u32>,
}

#[derive(Default)]
struct WorkQueue {
    state: Mutex<QueueState>,
    wake: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl WorkQueue {
    fn add(&self, key: ServiceKey) {
        let mut state = lock(&self.state);
        if state.busy.contains(&key) {
            state.again.insert(key);
        } else if state.queued.insert(key.clone()) {
            state.ready.push_back(key);
            drop(state);
            self.wake.notify_one();
        }
    }

    fn take(&self) -> Option<ServiceKey> {
        let mut state = lock(&self.state);
        let key = state.ready.pop_front()?;
        state.queued.remove(&key);
        state.busy.insert(key.clone());
        Some(key)
    }

    async fn next(&self) -> ServiceKey {
        loop {
            let woken = self.wake.notified();
            if let Some(key) = self.take() {
                return key;
            }
            woken.await;
        }
    }

    fn done(&self, key: &ServiceKey) {
        let again = {
            let mut state = lock(&self.state);
            state.busy.remove(key);
            state.again.remove(key)
        };
        if again {
            self.add(key.clone());
        }
    }

    /// The back-off before retrying a failed key: doubling from `RETRY_BASE`.
    fn failed(&self, key: &ServiceKey) -> Duration {
        let mut state = lock(&self.state);
        let failures = state.failures.entry(key.clone()).or_default();
        *failures = failures.saturating_add(1);
        let factor = 1u32 << (*failures - 1).min(16);
        (RETRY_BASE * factor).min(RETRY_MAX)
    }

    fn succeeded(&self, key: &ServiceKey) {
        lock(&self.state).failures.remove(key);
    }
}

// ---------------------------------------------------------------------------
// I/O: watches, workers, writes
// ---------------------------------------------------------------------------

#[derive(Default)]
struct State {
    cache: Mutex<Cache>,
    queue: WorkQueue,
}

impl State {
    /// Changes the cache and queues the Services the change touched.
    fn update(&self, change: impl FnOnce(&mut Cache, &mut Vec<ServiceKey>)) {
        let mut touched = Vec::new();
        change(&mut lock(&self.cache), &mut touched);
        for key in touched {
            self.queue.add(key);
        }
    }

    fn add_after(self: &Arc<Self>, key: ServiceKey, delay: Duration) {
        let state = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            state.queue.add(key);
        });
    }

    fn expect(&self, key: &ServiceKey, object: Written, written: &ObjectMeta) {
        lock(&self.cache).expect(key, object, version(written));
    }

    fn expect_gone(&self, key: &ServiceKey, object: Written) {
        lock(&self.cache).expect(key, object, None);
    }
}

/// Runs the controller: caches first (Services, Nodes, then Pods, Endpoints and
/// slices, so indexes build cheaply), then the workers; returns if any part stops.
pub async fn run(ctx: Arc<Context>) {
    let state = Arc::new(State::default());
    let mut tasks = JoinSet::new();
    let client = &ctx.client;
    let all = watcher::Config::default;
    let first = [
        spawn_feed(
            &mut tasks,
            &state,
            Api::<Service>::all(client.clone()),
            all(),
        ),
        spawn_feed(&mut tasks, &state, Api::<Node>::all(client.clone()), all()),
    ];
    if !synced(first).await {
        return;
    }
    let managed = all().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let rest = [
        spawn_feed(&mut tasks, &state, Api::<Pod>::all(client.clone()), all()),
        spawn_feed(
            &mut tasks,
            &state,
            Api::<Endpoints>::all(client.clone()),
            all(),
        ),
        spawn_feed(
            &mut tasks,
            &state,
            Api::<EndpointSlice>::all(client.clone()),
            managed,
        ),
    ];
    if !synced(rest).await {
        return;
    }
    tracing::debug!(controller = CONTROLLER, "caches synced");
    for _ in 0..WORKERS {
        tasks.spawn(work_forever(ctx.clone(), state.clone()));
    }
    tasks.spawn(resync_forever(state.clone()));
    tasks.join_next().await;
}

async fn synced<const N: usize>(signals: [oneshot::Receiver<()>; N]) -> bool {
    for signal in signals {
        if signal.await.is_err() {
            return false;
        }
    }
    true
}

fn spawn_feed<K: Feed + Send + Sync + 'static>(
    tasks: &mut JoinSet<()>,
    state: &Arc<State>,
    api: Api<K>,
    config: watcher::Config,
) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    tasks.spawn(feed(state.clone(), api, config, tx));
    rx
}

/// Keeps one kind's part of the cache in step with a watch.
async fn feed<K: Feed + Send + Sync + 'static>(
    state: Arc<State>,
    api: Api<K>,
    config: watcher::Config,
    synced: oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let mut listing: Vec<K::Item> = Vec::new();
    let mut events = std::pin::pin!(crate::client::lenient::watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(object)) => listing.push(object.item()),
            Ok(Event::InitDone) => {
                let items = std::mem::take(&mut listing);
                state.update(|cache, out| replace_all::<K>(cache, items, out));
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Apply(object)) => {
                let item = object.item();
                state.update(|cache, out| K::apply(cache, item, out));
            }
            Ok(Event::Delete(object)) => {
                let id = K::id(&object.item());
                state.update(|cache, out| K::remove(cache, &id, out));
            }
            Err(error) => {
                let kind = K::kind(&());
                tracing::debug!(controller = CONTROLLER, %kind, %error, "watch failed");
            }
        }
    }
}

async fn resync_forever(state: Arc<State>) {
    loop {
        tokio::time::sleep(RESYNC_EVERY).await;
        let keys = lock(&state.cache).selector_services();
        for key in keys {
            state.queue.add(key);
        }
    }
}

enum Outcome {
    Done,
    RetryAfter(Duration),
}

async fn work_forever(ctx: Arc<Context>, state: Arc<State>) {
    loop {
        let key = state.queue.next().await;
        match reconcile(&ctx, &state, &key).await {
            Ok(Outcome::Done) => state.queue.succeeded(&key),
            Ok(Outcome::RetryAfter(delay)) => state.add_after(key.clone(), delay),
            Err(error) => {
                let delay = state.queue.failed(&key);
                tracing::debug!(
                    controller = CONTROLLER,
                    service = %key,
                    %error,
                    ?delay,
                    "reconcile failed; retrying"
                );
                state.add_after(key.clone(), delay);
            }
        }
        state.queue.done(&key);
    }
}

async fn reconcile(ctx: &Context, state: &State, key: &ServiceKey) -> Result<Outcome> {
    if key.is_api_server() {
        return Ok(Outcome::Done);
    }
    let work = {
        let mut cache = lock(&state.cache);
        if cache.is_stale(key) {
            return Ok(Outcome::RetryAfter(STALE_RETRY));
        }
        cache.work(key)
    };
    match work {
        Work::Nothing => {}
        Work::DeleteEndpoints(endpoints) => delete_endpoints(ctx, key, &endpoints).await?,
        Work::DeleteSlices(slices) => {
            let plan = SlicePlan {
                delete: slices,
                ..Default::default()
            };
            write_slices(ctx, state, key, plan).await?;
        }
        Work::Sync(sync) => {
            let endpoints = sync_endpoints(ctx, state, key, &sync).await;
            let plan = plan_slices(&sync.service, &sync.backends, &sync.slices, sync.trigger);
            let slices = write_slices(ctx, state, key, plan).await;
            if let Err(error) = &slices {
                warn_unless_conflict(ctx, &sync.service, SLICES_FAILED, error).await;
            }
            endpoints?;
            slices?;
        }
    }
    Ok(Outcome::Done)
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(response) if response.code == code)
}

fn service_reference(service: &Service) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        namespace: service.metadata.namespace.clone(),
        name: service.metadata.name.clone(),
        uid: service.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Event reasons (upstream's) and what failed.
const ENDPOINTS_FAILED: (&str, &str) = ("FailedToUpdateEndpoint", "endpoints");
const SLICES_FAILED: (&str, &str) = ("FailedToUpdateEndpointSlices", "endpoint slices");

/// A Warning event on the Service, except for conflicts and missing objects (a stale
/// cache, retried soon).
async fn warn_unless_conflict(
    ctx: &Context,
    service: &Service,
    (reason, what): (&str, &str),
    error: &super::Error,
) {
    if matches!(error, super::Error::Kube(e) if is_status(e, 409) || is_status(e, 404)) {
        return;
    }
    let name = ServiceKey::of(&service.metadata).map(|k| k.to_string());
    let message = format!(
        "failed to update {what} of service {}: {error}",
        name.unwrap_or_default()
    );
    let reference = service_reference(service);
    ctx.recorder
        .publish(&reference, EventType::Warning, reason, &message)
        .await;
}

async fn sync_endpoints(
    ctx: &Context,
    state: &State,
    key: &ServiceKey,
    sync: &SyncWork,
) -> Result<()> {
    let current = sync.endpoints.as_deref();
    let Some(desired) = desired_endpoints(&sync.service, &sync.backends, current, sync.trigger)
    else {
        return Ok(());
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let params = PostParams::default();
    let written = match current {
        Some(_) => api.replace(&key.name, &params, &desired).await,
        None => api.create(&params, &desired).await,
    };
    match written {
        Ok(endpoints) => {
            tracing::debug!(controller = CONTROLLER, service = %key, "endpoints written");
            state.expect(key, Written::Endpoints, &endpoints.metadata);
            Ok(())
        }
        Err(error) => {
            let error = super::Error::from(error);
            warn_unless_conflict(ctx, &sync.service, ENDPOINTS_FAILED, &error).await;
            Err(error)
        }
    }
}

async fn delete_endpoints(ctx: &Context, key: &ServiceKey, endpoints: &Endpoints) -> Result<()> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: endpoints.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&key.name, &params).await {
        Ok(_) => {
            tracing::debug!(
                controller = CONTROLLER,
                service = %key,
                "removed endpoints of a deleted service"
            );
            Ok(())
        }
        Err(error) if is_status(&error, 404) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn write_slices(
    ctx: &Context,
    state: &State,
    key: &ServiceKey,
    plan: SlicePlan,
) -> Result<()> {
    if plan.is_empty() {
        return Ok(());
    }
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let params = PostParams::default();
    for slice in plan.create {
        let made = api.create(&params, &slice).await?;
        let name = made.metadata.name.clone().unwrap_or_default();
        state.expect(key, Written::Slice(name), &made.metadata);
    }
    for slice in plan.update {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let made = api.replace(&name, &params, &slice).await?;
        state.expect(key, Written::Slice(name), &made.metadata);
    }
    for slice in plan.delete {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(error.into()),
        }
        state.expect_gone(key, Written::Slice(name));
    }
    tracing::debug!(controller = CONTROLLER, service = %key, "endpoint slices written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("a valid service")
    }

    fn web() -> Service {
        service(json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "svc-uid",
                         "labels": {"app": "web"}, "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.5", "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            ]},
        }))
    }

    fn with_spec(mut service: Service, change: impl FnOnce(&mut serde_json::Value)) -> Service {
        let mut value = serde_json::to_value(&service).expect("serializable");
        change(&mut value["spec"]);
        service = serde_json::from_value(value).expect("a valid service");
        service
    }

    fn pod(name: &str, ip: &str, ready: bool) -> PodInfo {
        PodInfo {
            namespace: "d".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
            ips: vec![ip.into()],
            node_name: "n1".into(),
            ready,
            ports: vec![NamedPort {
                name: "web".into(),
                protocol: "TCP".into(),
                port: 8080,
            }],
            ..Default::default()
        }
    }

    fn nodes() -> NodeZones {
        HashMap::from([("n1".to_string(), Some("z1".to_string()))])
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    /// "ready addresses → name:port,…" of a subset.
    fn subset_shape(subset: &EndpointSubset) -> String {
        let ports = subset.ports.iter().flatten();
        let ports: Vec<String> = ports
            .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or_default(), p.port))
            .collect();
        format!("{} → {}", ips(&subset.addresses).join(","), ports.join(","))
    }

    fn subsets_of(service: &Service, pods: &[PodInfo]) -> Vec<EndpointSubset> {
        endpoint_subsets(service, &backends(service, pods, &nodes()))
    }

    #[test]
    fn ready_pods_are_addresses_and_the_rest_not_ready() {
        let pods = [pod("b", "10.42.0.2", false), pod("a", "10.42.0.1", true)];
        let subsets = subsets_of(&web(), &pods);
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.1"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.2"]);
        let port = &subsets[0].ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        let address = &subsets[0].addresses.as_ref().expect("addresses")[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        let target = address.target_ref.as_ref().expect("target");
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert_eq!(target.name.as_deref(), Some("a"));
        assert_eq!(target.namespace.as_deref(), Some("d"));
        assert_eq!(target.uid.as_deref(), Some("uid-a"));
        assert_eq!(address.hostname, None);
    }

    #[test]
    fn terminating_pods_leave_endpoints_but_stay_in_slices_marked() {
        let mut going = pod("c", "10.42.0.3", true);
        going.terminating = true;
        let pods = [pod("a", "10.42.0.1", true), going];
        let found = backends(&web(), &pods, &nodes());
        let subsets = endpoint_subsets(&web(), &found);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.1"]);
        assert_eq!(subsets[0].not_ready_addresses, None);
        let plan = plan_slices(&web(), &found, &[], None);
        let endpoints = &plan.create[0].endpoints;
        assert_eq!(endpoints.len(), 2);
        let conditions = endpoints[1].conditions.as_ref().expect("conditions");
        assert_eq!(endpoints[1].addresses, ["10.42.0.3"]);
        assert_eq!(conditions.ready, Some(false));
        assert_eq!(conditions.serving, Some(true));
        assert_eq!(conditions.terminating, Some(true));
        let first = endpoints[0].conditions.as_ref().expect("conditions");
        assert_eq!(
            (first.ready, first.serving, first.terminating),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(endpoints[0].zone.as_deref(), Some("z1"));
        assert_eq!(endpoints[0].node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_pod_ready() {
        let publishing = with_spec(web(), |spec| spec["publishNotReadyAddresses"] = json!(true));
        let mut going = pod("c", "10.42.0.3", false);
        going.terminating = true;
        let pods = [pod("b", "10.42.0.2", false), going];
        let found = backends(&publishing, &pods, &nodes());
        let subsets = endpoint_subsets(&publishing, &found);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.2", "10.42.0.3"]);
        assert_eq!(subsets[0].not_ready_addresses, None);
        let plan = plan_slices(&publishing, &found, &[], None);
        let ready: Vec<_> = plan.create[0]
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().and_then(|c| c.ready))
            .collect();
        assert_eq!(ready, [Some(true), Some(true)]);
    }

    #[test]
    fn pods_without_ip_finished_or_on_a_gone_node_are_left_out() {
        let mut no_ip = pod("a", "", true);
        no_ip.ips.clear();
        let mut done = pod("b", "10.42.0.2", true);
        done.terminal = true;
        let mut orphan = pod("c", "10.42.0.3", true);
        orphan.node_name = "gone".into();
        let mut v6 = pod("d", "fd00::4", true);
        v6.node_name = "n1".into();
        let pods = [no_ip, done, orphan.clone(), v6];
        assert!(backends(&web(), &pods, &nodes()).is_empty());
        // publishNotReadyAddresses publishes a pod whose node is gone.
        let publishing = with_spec(web(), |spec| spec["publishNotReadyAddresses"] = json!(true));
        let kept = backends(&publishing, [&orphan], &nodes());
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].zone, None);
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_group_like_upstream() {
        let svc = with_spec(web(), |spec| {
            spec["ports"] = json!([
                {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
            ])
        });
        let mut other = pod("b", "10.42.0.2", true);
        other.ports = vec![NamedPort {
            name: "web".into(),
            protocol: "UDP".into(),
            port: 7000,
        }];
        let mut moved = pod("c", "10.42.0.3", true);
        moved.ports[0].port = 8081;
        let pods = [pod("a", "10.42.0.1", true), other, moved];
        let subsets = subsets_of(&svc, &pods);
        let shape: Vec<String> = subsets.iter().map(subset_shape).collect();
        assert_eq!(
            shape,
            [
                "10.42.0.1 → http:8080",
                "10.42.0.1,10.42.0.2,10.42.0.3 → metrics:9090",
                "10.42.0.3 → http:8081",
            ]
        );
        // Slices group pods by their whole port set: three port sets, three slices.
        let plan = plan_slices(&svc, &backends(&svc, &pods, &nodes()), &[], None);
        assert_eq!(plan.create.len(), 3);
    }

    #[test]
    fn pods_sharing_all_ports_share_one_subset() {
        let svc = with_spec(web(), |spec| {
            spec["ports"] = json!([
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
            ])
        });
        let pods = [pod("a", "10.42.0.1", true), pod("b", "10.42.0.2", false)];
        let subsets = subsets_of(&svc, &pods);
        assert_eq!(subsets.len(), 1);
        let names: Vec<_> = subsets[0]
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(names, [Some("dns".to_string()), Some("http".to_string())]);
    }

    #[test]
    fn headless_services_without_ports_get_bare_addresses_and_hostnames() {
        let headless = with_spec(web(), |spec| {
            spec["clusterIP"] = json!("None");
            spec["ports"] = json!(null);
        });
        let mut named = pod("a", "10.42.0.1", true);
        named.hostname = "db-0".into();
        named.subdomain = "web".into();
        let mut elsewhere = pod("b", "10.42.0.2", true);
        elsewhere.hostname = "db-1".into();
        elsewhere.subdomain = "other".into();
        let found = backends(&headless, [&named, &elsewhere], &nodes());
        let subsets = endpoint_subsets(&headless, &found);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].ports, None);
        let addresses = subsets[0].addresses.as_ref().expect("addresses");
        assert_eq!(addresses[0].hostname.as_deref(), Some("db-0"));
        assert_eq!(addresses[1].hostname, None);
        let endpoints = desired_endpoints(&headless, &found, None, None).expect("new endpoints");
        let labels = endpoints.metadata.labels.expect("labels");
        assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        let plan = plan_slices(&headless, &found, &[], None);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].ports, None);
        assert_eq!(
            plan.create[0].endpoints[0].hostname.as_deref(),
            Some("db-0")
        );
        let slice_labels = plan.create[0].metadata.labels.as_ref().expect("labels");
        assert!(slice_labels.contains_key(HEADLESS_LABEL));
    }

    /// What the API server hands back: the object through JSON, with a version.
    fn stored<T: serde::Serialize + DeserializeOwned>(object: &T, version: u64) -> T {
        let mut value = serde_json::to_value(object).expect("serializable");
        value["metadata"]["resourceVersion"] = json!(version.to_string());
        serde_json::from_value(value).expect("deserializable")
    }

    #[test]
    fn endpoints_are_not_rewritten_when_nothing_changed() {
        let created = Utc::now();
        let mut pods = vec![pod("a", "10.42.0.1", true), pod("b", "10.42.0.2", false)];
        let found = backends(&web(), &pods, &nodes());
        let first = desired_endpoints(&web(), &found, None, Some(created)).expect("created");
        let annotations = first.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(
            annotations.get(TRIGGER_TIME_ANNOTATION),
            Some(&format_time(created))
        );
        assert_eq!(first.metadata.name.as_deref(), Some("web"));
        let current = stored(&first, 7);
        let later = Some(Utc::now());
        assert_eq!(
            desired_endpoints(&web(), &found, Some(&current), later),
            None
        );

        // A readiness change rewrites, keeping the object's version for the update.
        pods[1].ready = true;
        let found = backends(&web(), &pods, &nodes());
        let update = desired_endpoints(&web(), &found, Some(&current), later).expect("update");
        assert_eq!(update.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            ips(&update.subsets.as_ref().expect("subsets")[0].addresses).len(),
            2
        );

        // So does a change of the Service's labels.
        let mut relabelled = web();
        relabelled.metadata.labels = Some(BTreeMap::from([("tier".into(), "front".into())]));
        let found = backends(&relabelled, &pods, &nodes());
        let update = desired_endpoints(&relabelled, &found, Some(&current), later);
        let labels = update.and_then(|e| e.metadata.labels).expect("labels");
        assert_eq!(labels, BTreeMap::from([("tier".into(), "front".into())]));
    }

    #[test]
    fn more_than_a_thousand_addresses_are_truncated_ready_first() {
        let mut pods = Vec::new();
        for i in 0..1100u32 {
            pods.push(pod(
                &format!("p{i}"),
                &format!("10.42.{}.{}", i / 250, i % 250 + 1),
                i < 1050,
            ));
        }
        let found = backends(&web(), &pods, &nodes());
        let endpoints = desired_endpoints(&web(), &found, None, None).expect("created");
        let subsets = endpoints.subsets.as_ref().expect("subsets");
        assert_eq!(address_count(subsets), (1000, 0));
        let annotations = endpoints
            .metadata
            .annotations
            .as_ref()
            .expect("annotations");
        assert_eq!(
            annotations
                .get(OVER_CAPACITY_ANNOTATION)
                .map(String::as_str),
            Some("truncated")
        );
        let current = stored(&endpoints, 3);
        assert_eq!(
            desired_endpoints(&web(), &found, Some(&current), None),
            None
        );

        let fewer = backends(&web(), &pods[..1020], &nodes());
        let endpoints = desired_endpoints(&web(), &fewer, None, None).expect("created");
        let subsets = endpoints.subsets.as_ref().expect("subsets");
        assert_eq!(address_count(subsets), (1000, 0));
        let few = backends(&web(), &pods[..990], &nodes());
        let endpoints = desired_endpoints(&web(), &few, None, None).expect("created");
        assert_eq!(endpoints.metadata.annotations, None);
    }

    fn many(count: u32) -> Vec<PodInfo> {
        (0..count)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.42.{}.{}", i / 200, i % 200 + 1),
                    true,
                )
            })
            .collect()
    }

    /// Applies a plan to a set of slices as the API server would.
    fn applied(plan: SlicePlan, existing: &[EndpointSlice], next: &mut u64) -> Vec<EndpointSlice> {
        let mut slices: BTreeMap<String, EndpointSlice> = existing
            .iter()
            .map(|s| (s.metadata.name.clone().unwrap_or_default(), s.clone()))
            .collect();
        for slice in plan.delete {
            slices.remove(slice.metadata.name.as_deref().unwrap_or_default());
        }
        for mut slice in plan.create.into_iter().chain(plan.update) {
            *next += 1;
            let name = slice.metadata.name.clone().unwrap_or_else(|| {
                format!(
                    "{}{next:05}",
                    slice.metadata.generate_name.clone().unwrap_or_default()
                )
            });
            slice.metadata.name = Some(name.clone());
            slices.insert(name, stored(&slice, *next));
        }
        slices.into_values().collect()
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints() {
        let found = backends(&web(), &many(250), &nodes());
        let plan = plan_slices(&web(), &found, &[], None);
        let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let slice = &plan.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.metadata.namespace.as_deref(), Some("d"));
        assert_eq!(slice.address_type, "IPv4");
        let labels = slice.metadata.labels.as_ref().expect("labels");
        assert_eq!(
            labels.get(SERVICE_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(MANAGED_BY)
        );
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        let owner = &slice.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid")
        );
        assert_eq!(owner.controller, Some(true));
        let ports = slice.ports.as_ref().expect("ports");
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(ports[0].port, Some(8080));
    }

    #[test]
    fn slices_are_reused_and_left_alone_when_nothing_changed() {
        let mut next = 0;
        let mut pods = many(250);
        let found = backends(&web(), &pods, &nodes());
        let slices = applied(plan_slices(&web(), &found, &[], None), &[], &mut next);
        assert_eq!(slices.len(), 3);
        assert!(plan_slices(&web(), &found, &slices, Some(Utc::now())).is_empty());

        // One pod turns not ready: one slice is updated, nothing else.
        pods[120].ready = false;
        let found = backends(&web(), &pods, &nodes());
        let plan = plan_slices(&web(), &found, &slices, None);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 0)
        );
        let slices = applied(plan, &slices, &mut next);

        // Pods go: their slices shrink; new pods fill the room before a slice is made.
        pods.truncate(200);
        let found = backends(&web(), &pods, &nodes());
        let plan = plan_slices(&web(), &found, &slices, None);
        assert_eq!((plan.create.len(), plan.delete.len()), (0, 1));
        let slices = applied(plan, &slices, &mut next);
        assert_eq!(slices.len(), 2);
        pods.extend(many(230).into_iter().skip(200));
        let found = backends(&web(), &pods, &nodes());
        let plan = plan_slices(&web(), &found, &slices, None);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (1, 0, 0)
        );
    }

    #[test]
    fn a_port_change_updates_slices_in_place() {
        let mut next = 0;
        let found = backends(&web(), &many(3), &nodes());
        let slices = applied(plan_slices(&web(), &found, &[], None), &[], &mut next);
        let moved = with_spec(web(), |spec| spec["ports"][0]["targetPort"] = json!(9000));
        let found = backends(&moved, &many(3), &nodes());
        let plan = plan_slices(&moved, &found, &slices, None);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 0)
        );
        assert_eq!(plan.update[0].metadata.name, slices[0].metadata.name);
        assert_eq!(
            plan.update[0].ports.as_ref().expect("ports")[0].port,
            Some(9000)
        );
    }

    #[test]
    fn a_service_without_pods_keeps_one_empty_slice() {
        let plan = plan_slices(&web(), &[], &[], None);
        assert_eq!(plan.create.len(), 1);
        assert!(plan.create[0].endpoints.is_empty());
        let mut next = 0;
        let placeholder = applied(plan, &[], &mut next);
        assert!(plan_slices(&web(), &[], &placeholder, None).is_empty());

        // Pods arrive: the placeholder becomes their slice.
        let found = backends(&web(), &many(2), &nodes());
        let plan = plan_slices(&web(), &found, &placeholder, None);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 0)
        );
        let full = applied(plan, &placeholder, &mut next);
        // And when they go, that slice is emptied rather than deleted and recreated.
        let plan = plan_slices(&web(), &[], &full, None);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 0)
        );
        assert!(plan.update[0].endpoints.is_empty());
    }

    #[test]
    fn slices_of_another_owner_are_deleted() {
        let mut next = 0;
        let found = backends(&web(), &many(2), &nodes());
        let slices = applied(plan_slices(&web(), &found, &[], None), &[], &mut next);
        let mut recreated = web();
        recreated.metadata.uid = Some("new-uid".into());
        let plan = plan_slices(&recreated, &found, &slices, None);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (1, 0, 1)
        );
        let owner = &plan.create[0]
            .metadata
            .owner_references
            .as_ref()
            .expect("owner")[0];
        assert_eq!(owner.uid, "new-uid");
    }

    #[test]
    fn pod_info_reads_what_matters_from_a_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "d", "uid": "u", "labels": {"app": "web"},
                         "deletionTimestamp": "2024-01-01T00:00:09Z"},
            "spec": {
                "nodeName": "n1", "hostname": "h", "subdomain": "web",
                "containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}],
                "initContainers": [{"name": "s", "restartPolicy": "Always", "ports": [
                    {"name": "side", "containerPort": 9000, "protocol": "UDP"},
                ]}],
            },
            "status": {
                "phase": "Running", "podIP": "10.42.0.1",
                "podIPs": [{"ip": "10.42.0.1"}, {"ip": "fd00::1"}],
                "conditions": [{"type": "Ready", "status": "True",
                                "lastTransitionTime": "2024-01-01T00:00:05Z"}],
            },
        }))
        .expect("a valid pod");
        let info = PodInfo::from_pod(&pod);
        assert_eq!(info.ips, ["10.42.0.1", "fd00::1"]);
        assert!(info.ready && info.terminating && !info.terminal);
        assert_eq!(info.ports.len(), 2);
        assert_eq!(info.ports[1].protocol, "UDP");
        assert_eq!(info.changed_at.map(|t| t.timestamp() % 60), Some(5));
    }

    fn keys(out: &[ServiceKey]) -> Vec<String> {
        let mut names: Vec<String> = out.iter().map(|k| k.to_string()).collect();
        names.sort();
        names.dedup();
        names
    }

    fn selecting(name: &str, selector: serde_json::Value) -> Service {
        service(json!({
            "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{name}")},
            "spec": {"selector": selector, "clusterIP": "10.43.0.9", "ports": [{"port": 80}]},
        }))
    }

    #[test]
    fn pod_changes_reach_the_services_that_select_them_before_and_after() {
        let mut cache = Cache::default();
        let mut out = Vec::new();
        cache.apply_service(selecting("web", json!({"app": "web"})), &mut out);
        cache.apply_service(
            selecting("api", json!({"app": "api", "tier": "x"})),
            &mut out,
        );
        cache.apply_service(
            service(json!({"metadata": {"name": "manual", "namespace": "d"}})),
            &mut out,
        );
        assert_eq!(keys(&out), ["d/api", "d/manual", "d/web"]);

        out.clear();
        cache.apply_pod(pod("a", "10.42.0.1", true), &mut out);
        assert_eq!(keys(&out), ["d/web"]);
        out.clear();
        cache.apply_pod(pod("a", "10.42.0.1", true), &mut out);
        assert!(out.is_empty(), "an unchanged pod touches nothing");

        let mut relabelled = pod("a", "10.42.0.1", true);
        relabelled.labels =
            BTreeMap::from([("app".into(), "api".into()), ("tier".into(), "x".into())]);
        cache.apply_pod(relabelled, &mut out);
        assert_eq!(keys(&out), ["d/api", "d/web"]);
        let web = ServiceKey::new("d", "web");
        let api = ServiceKey::new("d", "api");
        assert!(cache.members[&web].is_empty());
        assert_eq!(cache.members[&api].len(), 1);

        // A new selector re-reads the namespace's pods.
        out.clear();
        cache.apply_service(selecting("web", json!({"tier": "x"})), &mut out);
        assert_eq!(cache.members[&web].len(), 1);
        let Work::Sync(sync) = cache.work(&web) else {
            panic!("a selector service syncs");
        };
        assert!(sync.backends.is_empty(), "node n1 is not known yet");
        cache.apply_node("n1".into(), None, &mut out);
        assert_eq!(keys(&out), ["d/api", "d/web"]);
        let Work::Sync(sync) = cache.work(&web) else {
            panic!("a selector service syncs");
        };
        assert_eq!(sync.backends.len(), 1);

        out.clear();
        cache.delete_pod("d", "a", &mut out);
        assert_eq!(keys(&out), ["d/api", "d/web"]);
        assert!(matches!(
            cache.work(&ServiceKey::new("d", "manual")),
            Work::Nothing
        ));
    }

    fn managed_endpoints(name: &str) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "resourceVersion": "5",
                         "annotations": {TRIGGER_TIME_ANNOTATION: "2024-01-01T00:00:00Z"}},
        }))
        .expect("valid endpoints")
    }

    #[test]
    fn only_controller_endpoints_of_a_deleted_service_are_deleted() {
        let mut cache = Cache::default();
        let mut out = Vec::new();
        cache.apply_service(selecting("web", json!({"app": "web"})), &mut out);
        cache.apply_endpoints(managed_endpoints("web"), &mut out);
        let user: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "manual", "namespace": "d"},
            "subsets": [{"addresses": [{"ip": "192.168.1.1"}], "ports": [{"port": 80}]}],
        }))
        .expect("valid endpoints");
        cache.apply_endpoints(user, &mut out);
        out.clear();
        cache.delete_service(&ServiceKey::new("d", "web"), &mut out);
        assert_eq!(keys(&out), ["d/web"]);
        assert!(matches!(
            cache.work(&ServiceKey::new("d", "web")),
            Work::DeleteEndpoints(_)
        ));
        assert!(matches!(
            cache.work(&ServiceKey::new("d", "manual")),
            Work::Nothing
        ));
    }

    #[test]
    fn own_writes_must_show_in_the_cache_before_the_next_decision() {
        let mut cache = Cache::default();
        let mut out = Vec::new();
        let key = ServiceKey::new("d", "web");
        cache.expect(&key, Written::Endpoints, Some(6));
        assert!(cache.is_stale(&key));
        cache.apply_endpoints(managed_endpoints("web"), &mut out);
        assert!(cache.is_stale(&key), "version 5 is older than our write");
        let mut newer = managed_endpoints("web");
        newer.metadata.resource_version = Some("6".into());
        cache.apply_endpoints(newer, &mut out);
        assert!(!cache.is_stale(&key));

        cache.expect(&key, Written::Slice("web-abcde".into()), None);
        assert!(!cache.is_stale(&key), "a deleted slice the cache never had");
    }

    #[test]
    fn the_queue_hands_out_each_key_once_and_requeues_keys_added_while_busy() {
        let queue = WorkQueue::default();
        let web = ServiceKey::new("d", "web");
        queue.add(web.clone());
        queue.add(web.clone());
        assert_eq!(queue.take(), Some(web.clone()));
        assert_eq!(queue.take(), None);
        queue.add(web.clone());
        assert_eq!(queue.take(), None, "busy keys wait for their worker");
        queue.done(&web);
        assert_eq!(queue.take(), Some(web.clone()));
        queue.done(&web);
        assert_eq!(queue.take(), None);
        assert_eq!(queue.failed(&web), RETRY_BASE);
        assert_eq!(queue.failed(&web), RETRY_BASE * 2);
        queue.succeeded(&web);
        assert_eq!(queue.failed(&web), RETRY_BASE);
    }
}
