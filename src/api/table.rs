//! Server-side Table rendering: the `meta.k8s.io/v1` `Table` that `kubectl get`
//! asks for with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! This module owns Table rendering and calls nothing else in skiff. It takes
//! stored objects as plain `serde_json::Value`s and produces the JSON that the
//! real kube-apiserver would send, so that kubectl prints the same columns and
//! the same cell text as against a real cluster.
//!
//! Behaviour follows upstream Kubernetes 1.32:
//! * columns and cells come from `pkg/printers/internalversion/printers.go`;
//!   like the real server we always render the wide (`-o wide`) cells and mark
//!   the extra columns with `priority: 1`, and kubectl hides them unless asked;
//! * ages come from `k8s.io/apimachinery/pkg/util/duration.HumanDuration`;
//! * kinds without a printer fall back to the generic converters: the
//!   built-ins that upstream serves through `rest.NewDefaultTableConvertor`
//!   (Role, ClusterRole, LimitRange, CustomResourceDefinition) get
//!   `Name`/`Created At`, anything else gets the custom-resource default
//!   `Name`/`Age`;
//! * each row carries a `PartialObjectMetadata` with the object's metadata
//!   minus `managedFields`, which kubectl uses for `--show-labels`, `-L` and
//!   namespaces.
//!
//! The printers read the external (v1) JSON. Where the real server would have
//! defaulted a field before printing (pod phase `Pending`, service type
//! `ClusterIP`, port protocol `TCP`, `replicas: 1`, secret type `Opaque`,
//! namespace phase `Active`) a missing value is printed as that default.
//! Events of both `v1` and `events.k8s.io/v1` are printed by the one event
//! printer, as upstream does after converting both to the internal type.
//! Missing or mistyped fields never panic; they print as upstream prints the
//! zero value (`<none>`, `<unknown>`, `0`, or an empty cell).

mod storage;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

/// `apiVersion` of the Table itself and of the row objects.
const META_API_VERSION: &str = "meta.k8s.io/v1";

/// How many endpoints, ports or hosts a cell lists before "+ N more...".
const LIST_LIMIT: usize = 3;

/// Label prefix that names a node role, as in `node-role.kubernetes.io/control-plane`.
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";

/// Older single-label form of a node role: `kubernetes.io/role=<role>`.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) as Unix seconds; upstream treats it as unset.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// Builds a full Table for a list of objects of one kind. `resource_version`
/// goes to `metadata.resourceVersion`; `continue_token` to `metadata.continue`
/// when `Some`.
pub fn table(
    kind: &str,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let printer = printer_for(kind);
    let mut metadata = Map::new();
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), json!(resource_version));
    }
    if let Some(token) = continue_token.filter(|token| !token.is_empty()) {
        metadata.insert("continue".into(), json!(token));
    }
    let rows = objects
        .iter()
        .map(|object| printer.row(object, now))
        .collect();
    assemble(metadata, Some(printer.columns), rows)
}

/// One watch event's object: a Table with exactly one row. The column
/// definitions are included when `with_columns` is true (the first event of a
/// watch) and are `null` otherwise, as the real server sends them.
/// `metadata.resourceVersion` is the object's own resourceVersion.
pub fn table_for_event(
    kind: &str,
    object: &Value,
    with_columns: bool,
    now: DateTime<Utc>,
) -> Value {
    let printer = printer_for(kind);
    let mut metadata = Map::new();
    let resource_version = text(object, &["metadata", "resourceVersion"]);
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), json!(resource_version));
    }
    let columns = with_columns.then_some(printer.columns);
    assemble(metadata, columns, vec![printer.row(object, now)])
}

/// Kubernetes' short human age, exactly as apimachinery's `HumanDuration`:
/// seconds below 2 minutes ("0s", "119s"), minutes and seconds below 10
/// minutes ("2m3s"), minutes below 3 hours ("15m"), hours and minutes below 8
/// hours ("3h12m"), hours below 2 days ("9h"), days and hours below 8 days
/// ("2d3h"), days below 2 years ("45d"), years and days below 8 years
/// ("2y10d"), then years. Up to a second in the future prints "0s"; further in
/// the future prints "<invalid>".
pub fn human_duration(d: Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_remainder(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return with_remainder(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

/// "2m" when the smaller unit is zero, "2m3s" otherwise.
fn with_remainder(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

// ---------------------------------------------------------------------------
// Table assembly
// ---------------------------------------------------------------------------

/// The Table envelope; `columns: None` serialises `columnDefinitions: null`.
fn assemble(metadata: Map<String, Value>, columns: Option<&[Column]>, rows: Vec<Value>) -> Value {
    let column_definitions = match columns {
        Some(columns) => Value::Array(columns.iter().copied().map(Column::to_json).collect()),
        None => Value::Null,
    };
    json!({
        "kind": "Table",
        "apiVersion": META_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// The row's `object`: the object's metadata as a `PartialObjectMetadata`,
/// without `managedFields`.
fn partial_object_metadata(object: &Value) -> Value {
    let metadata: Map<String, Value> = object
        .get("metadata")
        .and_then(Value::as_object)
        .map(|metadata| {
            metadata
                .iter()
                .filter(|(key, _)| key.as_str() != "managedFields")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": META_API_VERSION,
        "metadata": metadata,
    })
}

/// One `TableColumnDefinition`.
#[derive(Clone, Copy)]
struct Column {
    name: &'static str,
    /// The column's `type`: "string", "integer", "boolean" or "date".
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

impl Column {
    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column shown by plain `kubectl get`.
const fn column(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 0,
    }
}

/// A column shown only by `kubectl get -o wide`.
const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 1,
    }
}

/// The object's name column; `format: "name"` tells kubectl it is the name.
const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};

/// The usual Age column, cells from [`human_duration`].
const AGE: Column = column("Age", "string", CREATION_DESC);

/// How one kind is printed: its columns and a function that computes the cells
/// of one object, in column order.
struct Printer {
    columns: &'static [Column],
    cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
    conditions: fn(&Value) -> Option<Value>,
}

impl Printer {
    fn new(columns: &'static [Column], cells: fn(&Value, DateTime<Utc>) -> Vec<Value>) -> Self {
        Printer {
            columns,
            cells,
            conditions: no_row_conditions,
        }
    }

    fn row(&self, object: &Value, now: DateTime<Utc>) -> Value {
        let mut row = Map::new();
        row.insert("cells".into(), Value::Array((self.cells)(object, now)));
        if let Some(conditions) = (self.conditions)(object) {
            row.insert("conditions".into(), conditions);
        }
        row.insert("object".into(), partial_object_metadata(object));
        Value::Object(row)
    }
}

fn no_row_conditions(_: &Value) -> Option<Value> {
    None
}

/// The printer for a kind; unknown kinds get the custom-resource default.
fn printer_for(kind: &str) -> Printer {
    match kind {
        "Pod" => Printer {
            conditions: pod_row_conditions,
            ..Printer::new(POD_COLUMNS, pod_cells)
        },
        "Deployment" => Printer::new(DEPLOYMENT_COLUMNS, deployment_cells),
        "ReplicaSet" => Printer::new(REPLICA_SET_COLUMNS, replica_set_cells),
        "StatefulSet" => Printer::new(STATEFUL_SET_COLUMNS, stateful_set_cells),
        "DaemonSet" => Printer::new(DAEMON_SET_COLUMNS, daemon_set_cells),
        "ControllerRevision" => {
            Printer::new(CONTROLLER_REVISION_COLUMNS, controller_revision_cells)
        }
        "Job" => Printer::new(JOB_COLUMNS, job_cells),
        "CronJob" => Printer::new(CRON_JOB_COLUMNS, cron_job_cells),
        "Service" => Printer::new(SERVICE_COLUMNS, service_cells),
        "Ingress" => Printer::new(INGRESS_COLUMNS, ingress_cells),
        "Node" => Printer::new(NODE_COLUMNS, node_cells),
        "Endpoints" => Printer::new(ENDPOINTS_COLUMNS, endpoints_cells),
        "EndpointSlice" => Printer::new(ENDPOINT_SLICE_COLUMNS, endpoint_slice_cells),
        "Event" => Printer::new(EVENT_COLUMNS, event_cells),
        "Namespace" => Printer::new(NAMESPACE_COLUMNS, namespace_cells),
        "ConfigMap" => Printer::new(CONFIG_MAP_COLUMNS, config_map_cells),
        "Secret" => Printer::new(SECRET_COLUMNS, secret_cells),
        "ServiceAccount" => Printer::new(SERVICE_ACCOUNT_COLUMNS, service_account_cells),
        "Lease" => Printer::new(LEASE_COLUMNS, lease_cells),
        "PersistentVolumeClaim" => Printer::new(storage::PVC_COLUMNS, storage::pvc_cells),
        "PersistentVolume" => Printer::new(storage::PV_COLUMNS, storage::pv_cells),
        "StorageClass" => {
            Printer::new(storage::STORAGE_CLASS_COLUMNS, storage::storage_class_cells)
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            Printer::new(ROLE_BINDING_COLUMNS, role_binding_cells)
        }
        "Role" | "ClusterRole" | "LimitRange" | "CustomResourceDefinition" => {
            Printer::new(CREATED_AT_COLUMNS, created_at_cells)
        }
        _ => Printer::new(CUSTOM_RESOURCE_COLUMNS, name_age_cells),
    }
}

// ---------------------------------------------------------------------------
// Column descriptions (the API's own field docs, as upstream uses them)
// ---------------------------------------------------------------------------

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const SELECTOR_DESC: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";
const NODE_ADDRESSES_DESC: &str =
    "List of addresses reachable to the node. Queried from cloud provider, if available.";

// ---------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------

const POD_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    column("Status", "string", "The aggregate status of the containers in this pod."),
    column("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\""),
];

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let summary = pod_summary(pod);
    let restarts = match summary.last_restart {
        Some(last) if summary.restarts != 0 => {
            format!("{} ({} ago)", summary.restarts, since(Some(last), now))
        }
        _ => summary.restarts.to_string(),
    };
    vec![
        json!(name(pod)),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(summary.reason),
        json!(restarts),
        json!(age(pod, now)),
        json!(pod_ip(pod)),
        json!(or_none(text(pod, &["spec", "nodeName"]))),
        json!(or_none(text(pod, &["status", "nominatedNodeName"]))),
        json!(readiness_gates(pod)),
    ]
}

/// Succeeded and Failed pods carry a `Completed` row condition.
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match pod_phase(pod) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

/// What the Ready, Status and Restarts cells are made of.
struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<DateTime<Utc>>,
}

/// The pod's phase; the server defaults a missing one to Pending.
fn pod_phase(pod: &Value) -> &str {
    non_empty(text(pod, &["status", "phase"])).unwrap_or("Pending")
}

/// Upstream `printPod`'s status logic: phase or status.reason, then the first
/// blocking init container, then the app containers (last one wins), then
/// Terminating/Unknown for pods being deleted.
fn pod_summary(pod: &Value) -> PodSummary {
    let phase = pod_phase(pod);
    let mut reason = non_empty(text(pod, &["status", "reason"])).unwrap_or(phase);
    let gated = list(pod, &["status", "conditions"])
        .iter()
        .any(|condition| {
            text(condition, &["type"]) == "PodScheduled"
                && text(condition, &["reason"]) == "SchedulingGated"
        });
    if gated {
        reason = "SchedulingGated";
    }

    let init_specs = list(pod, &["spec", "initContainers"]);
    let sidecars: Vec<&str> = init_specs
        .iter()
        .filter(|container| text(container, &["restartPolicy"]) == "Always")
        .map(|container| text(container, &["name"]))
        .collect();
    let mut summary = PodSummary {
        ready: 0,
        total: list(pod, &["spec", "containers"]).len() + sidecars.len(),
        reason: reason.to_string(),
        restarts: 0,
        last_restart: None,
    };

    let mut sidecar_restarts = 0;
    let mut sidecar_last_restart = None;
    let mut initializing = false;
    for (index, status) in list(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let restart_count = int(status, &["restartCount"]);
        let finished = last_termination(status);
        summary.restarts += restart_count;
        keep_latest(&mut summary.last_restart, finished);
        let is_sidecar = sidecars.contains(&text(status, &["name"]));
        if is_sidecar {
            sidecar_restarts += restart_count;
            keep_latest(&mut sidecar_last_restart, finished);
        }
        let terminated = at(status, &["state", "terminated"]);
        if terminated.is_some_and(|terminated| int(terminated, &["exitCode"]) == 0) {
            continue;
        }
        if is_sidecar && boolean(status, &["started"]) {
            if boolean(status, &["ready"]) {
                summary.ready += 1;
            }
            continue;
        }
        summary.reason = init_blocking_reason(status, terminated, index, init_specs.len());
        initializing = true;
        break;
    }

    if !initializing || condition_is_true(pod, "Initialized") {
        summary.restarts = sidecar_restarts;
        summary.last_restart = sidecar_last_restart;
        let mut has_running = false;
        for status in list(pod, &["status", "containerStatuses"]).iter().rev() {
            summary.restarts += int(status, &["restartCount"]);
            keep_latest(&mut summary.last_restart, last_termination(status));
            let waiting = text(status, &["state", "waiting", "reason"]);
            if !waiting.is_empty() {
                summary.reason = waiting.to_string();
            } else if let Some(terminated) = at(status, &["state", "terminated"]) {
                summary.reason = terminated_reason(terminated, "");
            } else if boolean(status, &["ready"]) && present(status, &["state", "running"]) {
                has_running = true;
                summary.ready += 1;
            }
        }
        if summary.reason == "Completed" && has_running {
            let ready = if condition_is_true(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            };
            summary.reason = ready.to_string();
        }
    }

    if present(pod, &["metadata", "deletionTimestamp"]) {
        if text(pod, &["status", "reason"]) == "NodeLost" {
            summary.reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            summary.reason = "Terminating".to_string();
        }
    }
    summary
}

/// Status text for the first init container that has not finished:
/// `Init:<reason>`, `Init:ExitCode:N`, `Init:Signal:N` or `Init:i/n`.
fn init_blocking_reason(
    status: &Value,
    terminated: Option<&Value>,
    index: usize,
    init_containers: usize,
) -> String {
    if let Some(terminated) = terminated {
        return terminated_reason(terminated, "Init:");
    }
    let waiting = text(status, &["state", "waiting", "reason"]);
    if !waiting.is_empty() && waiting != "PodInitializing" {
        return format!("Init:{waiting}");
    }
    format!("Init:{index}/{init_containers}")
}

/// A terminated container's reason, or `Signal:N` / `ExitCode:N` without one.
fn terminated_reason(terminated: &Value, prefix: &str) -> String {
    let reason = text(terminated, &["reason"]);
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = int(terminated, &["signal"]);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int(terminated, &["exitCode"]))
    }
}

/// When a container last stopped, from `lastState.terminated.finishedAt`.
fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    timestamp(status, &["lastState", "terminated", "finishedAt"])
}

/// Whether the pod has a condition of this type with status "True".
fn condition_is_true(pod: &Value, condition_type: &str) -> bool {
    list(pod, &["status", "conditions"])
        .iter()
        .any(|condition| {
            text(condition, &["type"]) == condition_type && text(condition, &["status"]) == "True"
        })
}

/// The pod's first IP, from `status.podIPs` or the older `status.podIP`.
fn pod_ip(pod: &Value) -> String {
    let first = list(pod, &["status", "podIPs"])
        .first()
        .map(|ip| text(ip, &["ip"]))
        .unwrap_or_else(|| text(pod, &["status", "podIP"]));
    or_none(first)
}

/// `true/total` over `spec.readinessGates`, or `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = list(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list(pod, &["status", "conditions"]);
    let passing = gates
        .iter()
        .filter(|gate| {
            let wanted = text(gate, &["conditionType"]);
            conditions
                .iter()
                .find(|condition| text(condition, &["type"]) == wanted)
                .is_some_and(|condition| text(condition, &["status"]) == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}

// ---------------------------------------------------------------------------
// Workloads: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob
// ---------------------------------------------------------------------------

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Number of the pod with ready state"),
    column("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    column("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", SELECTOR_DESC),
];

fn deployment_cells(deployment: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(deployment, &["spec", "template"]);
    let selector = label_selector_string(at(deployment, &["spec", "selector"]))
        .unwrap_or_else(|_| "<invalid>".to_string());
    let ready = int(deployment, &["status", "readyReplicas"]);
    vec![
        json!(name(deployment)),
        json!(format!("{ready}/{}", desired_replicas(deployment))),
        json!(int(deployment, &["status", "updatedReplicas"])),
        json!(int(deployment, &["status", "availableReplicas"])),
        json!(age(deployment, now)),
        json!(containers),
        json!(images),
        json!(selector),
    ]
}

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Desired",
        "integer",
        "Replicas is the number of desired pods.",
    ),
    column(
        "Current",
        "integer",
        "Replicas is the most recently observed number of non-terminating pods.",
    ),
    column(
        "Ready",
        "integer",
        "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", SELECTOR_DESC),
];

fn replica_set_cells(replica_set: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(replica_set, &["spec", "template"]);
    vec![
        json!(name(replica_set)),
        json!(desired_replicas(replica_set)),
        json!(int(replica_set, &["status", "replicas"])),
        json!(int(replica_set, &["status", "readyReplicas"])),
        json!(age(replica_set, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(at(
            replica_set,
            &["spec", "selector"]
        ))),
    ]
}

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Number of the pod with ready state"),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
];

fn stateful_set_cells(stateful_set: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(stateful_set, &["spec", "template"]);
    let ready = int(stateful_set, &["status", "readyReplicas"]);
    vec![
        json!(name(stateful_set)),
        json!(format!("{ready}/{}", desired_replicas(stateful_set))),
        json!(age(stateful_set, now)),
        json!(containers),
        json!(images),
    ]
}

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
    column("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    column("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    column("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    column("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    column("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", SELECTOR_DESC),
];

fn daemon_set_cells(daemon_set: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(daemon_set, &["spec", "template"]);
    let node_selector = at(daemon_set, &["spec", "template", "spec", "nodeSelector"]);
    vec![
        json!(name(daemon_set)),
        json!(int(daemon_set, &["status", "desiredNumberScheduled"])),
        json!(int(daemon_set, &["status", "currentNumberScheduled"])),
        json!(int(daemon_set, &["status", "numberReady"])),
        json!(int(daemon_set, &["status", "updatedNumberScheduled"])),
        json!(int(daemon_set, &["status", "numberAvailable"])),
        json!(format_labels(node_selector)),
        json!(age(daemon_set, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(at(daemon_set, &["spec", "selector"]))),
    ]
}

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    column("Controller", "string", "Controller of the object"),
    column(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// printControllerRevision: the controller as `daemonset.apps/<name>`.
fn controller_revision_cells(revision: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let owners = at(revision, &["metadata", "ownerReferences"]).and_then(Value::as_array);
    let controller = owners
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == json!(true))
        .map(|o| {
            let api_version = o["apiVersion"].as_str().unwrap_or_default();
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let kind = o["kind"].as_str().unwrap_or_default().to_lowercase();
            let name = o["name"].as_str().unwrap_or_default();
            match group {
                "" => format!("{kind}/{name}"),
                g => format!("{kind}.{g}/{name}"),
            }
        })
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        json!(name(revision)),
        json!(controller),
        json!(int(revision, &["revision"])),
        json!(age(revision, now)),
    ]
}

const JOB_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "Status of the job."),
    column(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    column("Duration", "string", "Time required to complete the job."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", SELECTOR_DESC),
];

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(job, &["spec", "template"]);
    vec![
        json!(name(job)),
        json!(job_status(job)),
        json!(job_completions(job)),
        json!(job_duration(job, now)),
        json!(age(job, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(at(job, &["spec", "selector"]))),
    ]
}

/// Complete, Failed, Terminating, Suspended, FailureTarget or Running.
fn job_status(job: &Value) -> &'static str {
    let has = |condition_type: &str| {
        list(job, &["status", "conditions"])
            .iter()
            .find(|condition| text(condition, &["type"]) == condition_type)
            .is_some_and(|condition| text(condition, &["status"]) == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if present(job, &["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// `succeeded/completions`, or `succeeded/1 of parallelism` for work queues.
fn job_completions(job: &Value) -> String {
    let succeeded = int(job, &["status", "succeeded"]);
    if let Some(completions) = at(job, &["spec", "completions"]).and_then(as_int) {
        return format!("{succeeded}/{completions}");
    }
    let parallelism = int(job, &["spec", "parallelism"]);
    if parallelism > 1 {
        format!("{succeeded}/1 of {parallelism}")
    } else {
        format!("{succeeded}/1")
    }
}

/// Start to completion, or start to now while running; empty before start.
fn job_duration(job: &Value, now: DateTime<Utc>) -> String {
    let Some(start) = timestamp(job, &["status", "startTime"]) else {
        return String::new();
    };
    let end = timestamp(job, &["status", "completionTime"]).unwrap_or(now);
    human_duration(end.signed_duration_since(start))
}

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    column("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    column("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
    column("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
    column("Active", "integer", "A list of pointers to currently running jobs."),
    column("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", SELECTOR_DESC),
];

fn cron_job_cells(cron_job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) =
        template_containers(cron_job, &["spec", "jobTemplate", "spec", "template"]);
    let last_schedule = match timestamp(cron_job, &["status", "lastScheduleTime"]) {
        Some(last) => since(Some(last), now),
        None if present(cron_job, &["status", "lastScheduleTime"]) => "<unknown>".to_string(),
        None => "<none>".to_string(),
    };
    let suspend = match at(cron_job, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let selector = at(cron_job, &["spec", "jobTemplate", "spec", "selector"]);
    vec![
        json!(name(cron_job)),
        json!(text(cron_job, &["spec", "schedule"])),
        json!(or_none(text(cron_job, &["spec", "timeZone"]))),
        json!(suspend),
        json!(list(cron_job, &["status", "active"]).len()),
        json!(last_schedule),
        json!(age(cron_job, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(selector)),
    ]
}

/// `spec.replicas`, which the server defaults to 1.
fn desired_replicas(object: &Value) -> i64 {
    at(object, &["spec", "replicas"])
        .and_then(as_int)
        .unwrap_or(1)
}

/// Comma-joined container names and images of the pod template at `template`.
fn template_containers(object: &Value, template: &[&str]) -> (String, String) {
    let containers = at(object, template)
        .map(|template| list(template, &["spec", "containers"]))
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

// ---------------------------------------------------------------------------
// Networking: Service, Ingress, Endpoints, EndpointSlice
// ---------------------------------------------------------------------------

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
    column("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    column("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    column("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

fn service_cells(service: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let service_type = service_type(service);
    vec![
        json!(name(service)),
        json!(service_type),
        json!(service_cluster_ip(service)),
        json!(service_external_ip(service, service_type)),
        json!(service_ports(service)),
        json!(age(service, now)),
        json!(format_labels(at(service, &["spec", "selector"]))),
    ]
}

/// `spec.type`, which the server defaults to ClusterIP.
fn service_type(service: &Value) -> &str {
    non_empty(text(service, &["spec", "type"])).unwrap_or("ClusterIP")
}

/// The first of `spec.clusterIPs` (or the older `spec.clusterIP`), or `<none>`.
fn service_cluster_ip(service: &Value) -> String {
    match list(service, &["spec", "clusterIPs"]).first() {
        Some(first) => first.as_str().unwrap_or_default().to_string(),
        None => or_none(text(service, &["spec", "clusterIP"])),
    }
}

/// External IPs for ClusterIP/NodePort, load-balancer ingress (or `<pending>`)
/// for LoadBalancer, the DNS name for ExternalName.
fn service_external_ip(service: &Value, service_type: &str) -> String {
    let external_ips: Vec<&str> = strings(service, &["spec", "externalIPs"]);
    match service_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let ingress = load_balancer_ingress(service);
            if !external_ips.is_empty() {
                let all: Vec<&str> = ingress.iter().copied().chain(external_ips).collect();
                all.join(",")
            } else if !ingress.is_empty() {
                ingress.into_iter().collect::<Vec<_>>().join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => text(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// Sorted, de-duplicated IPs (or hostnames) of `status.loadBalancer.ingress`.
fn load_balancer_ingress(object: &Value) -> BTreeSet<&str> {
    list(object, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|ingress| {
            non_empty(text(ingress, &["ip"])).or(non_empty(text(ingress, &["hostname"])))
        })
        .collect()
}

/// `80/TCP`, or `80:30080/TCP` with a node port, comma-joined; `<none>` without ports.
fn service_ports(service: &Value) -> String {
    let pieces: Vec<String> = list(service, &["spec", "ports"])
        .iter()
        .map(|port| {
            let number = int(port, &["port"]);
            let protocol = non_empty(text(port, &["protocol"])).unwrap_or("TCP");
            let node_port = int(port, &["nodePort"]);
            if node_port > 0 {
                format!("{number}:{node_port}/{protocol}")
            } else {
                format!("{number}/{protocol}")
            }
        })
        .collect();
    if pieces.is_empty() {
        "<none>".to_string()
    } else {
        pieces.join(",")
    }
}

const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    column(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    column(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    column("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

fn ingress_cells(ingress: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let address: Vec<&str> = load_balancer_ingress(ingress).into_iter().collect();
    let ports = if list(ingress, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        json!(name(ingress)),
        json!(or_none(text(ingress, &["spec", "ingressClassName"]))),
        json!(ingress_hosts(ingress)),
        json!(address.join(",")),
        json!(ports),
        json!(age(ingress, now)),
    ]
}

/// Up to three rule hosts, `*` when no rule names a host.
fn ingress_hosts(ingress: &Value) -> String {
    let rules = list(ingress, &["spec", "rules"]);
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == LIST_LIMIT {
            more = true;
        }
        let host = text(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    let joined = hosts.join(",");
    if more {
        format!(
            "{joined} + {} more...",
            rules.len().saturating_sub(LIST_LIMIT)
        )
    } else {
        joined
    }
}

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

fn endpoints_cells(endpoints: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(endpoints)),
        json!(endpoints_summary(endpoints)),
        json!(age(endpoints, now)),
    ]
}

/// Up to three `ip:port` pairs (bare IPs for port-less subsets) and
/// "+ N more..."; `<none>` without subsets.
fn endpoints_summary(endpoints: &Value) -> String {
    let subsets = list(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0;
    let mut more = false;
    for subset in subsets {
        let addresses = list(subset, &["addresses"]);
        let ports = list(subset, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for address in addresses {
                if shown.len() == LIST_LIMIT {
                    more = true;
                    break;
                }
                shown.push(text(address, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if shown.len() == LIST_LIMIT {
                    more = true;
                    break;
                }
                shown.push(join_host_port(text(address, &["ip"]), int(port, &["port"])));
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count.saturating_sub(LIST_LIMIT))
    } else {
        joined
    }
}

/// `host:port`, with IPv6 hosts in brackets, as Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    column(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    column(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    column(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn endpoint_slice_cells(slice: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports = list(slice, &["ports"]).iter().map(|port| {
        match (at(port, &["port"]).and_then(as_int), at(port, &["name"])) {
            (Some(number), _) => number.to_string(),
            (None, Some(name)) => name.as_str().unwrap_or_default().to_string(),
            (None, None) => "*".to_string(),
        }
    });
    let addresses = list(slice, &["endpoints"])
        .iter()
        .flat_map(|endpoint| strings(endpoint, &["addresses"]))
        .map(str::to_string);
    vec![
        json!(name(slice)),
        json!(text(slice, &["addressType"])),
        json!(list_with_more(ports)),
        json!(list_with_more(addresses)),
        json!(age(slice, now)),
    ]
}

/// Up to three items and "+ N more...", or `<unset>` for none.
fn list_with_more(items: impl Iterator<Item = String>) -> String {
    let mut shown = Vec::new();
    let mut count = 0;
    for item in items {
        if shown.len() < LIST_LIMIT {
            shown.push(item);
        }
        count += 1;
    }
    let joined = shown.join(",");
    if count > LIST_LIMIT {
        format!("{joined} + {} more...", count - LIST_LIMIT)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

// ---------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------

const NODE_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "The status of the node"),
    column("Roles", "string", "The roles of the node"),
    AGE,
    column("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", NODE_ADDRESSES_DESC),
    wide("External-IP", "string", NODE_ADDRESSES_DESC),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let info = |field: &str| {
        non_empty(text(node, &["status", "nodeInfo", field]))
            .unwrap_or("<unknown>")
            .to_string()
    };
    vec![
        json!(name(node)),
        json!(node_status(node)),
        json!(node_roles(node)),
        json!(age(node, now)),
        json!(text(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// Ready / NotReady / Unknown from the Ready condition (the last one listed
/// wins), plus `,SchedulingDisabled` for a cordoned node.
fn node_status(node: &Value) -> String {
    let ready = list(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|condition| text(condition, &["type"]) == "Ready");
    let mut status = match ready {
        Some(condition) if text(condition, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if boolean(node, &["spec", "unschedulable"]) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// Sorted roles from `node-role.kubernetes.io/<role>` and
/// `kubernetes.io/role=<role>` labels, or `<none>`.
fn node_roles(node: &Value) -> String {
    let labels = at(node, &["metadata", "labels"]).and_then(Value::as_object);
    let roles: BTreeSet<&str> = labels
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            if let Some(role) = key.strip_prefix(NODE_ROLE_PREFIX) {
                non_empty(role)
            } else if key == NODE_ROLE_LABEL {
                value.as_str().and_then(non_empty)
            } else {
                None
            }
        })
        .collect();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

/// The first node address of this type, or `<none>`.
fn node_address(node: &Value, address_type: &str) -> String {
    list(node, &["status", "addresses"])
        .iter()
        .find(|address| text(address, &["type"]) == address_type)
        .map(|address| text(address, &["address"]).to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

// ---------------------------------------------------------------------------
// Event (v1 and events.k8s.io/v1)
// ---------------------------------------------------------------------------

const EVENT_COLUMNS: &[Column] = &[
    column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    column("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    column("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    column("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        kind: "string",
        format: "name",
        description: NAME_DESC,
        priority: 1,
    },
];

/// Field names of an event in one of its two API shapes.
struct EventFields {
    regarding: &'static str,
    message: &'static str,
    count: &'static str,
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

/// core/v1 Event.
const CORE_EVENT: EventFields = EventFields {
    regarding: "involvedObject",
    message: "message",
    count: "count",
    first_timestamp: "firstTimestamp",
    last_timestamp: "lastTimestamp",
    source: "source",
    reporting_controller: "reportingComponent",
};

/// events.k8s.io/v1 Event.
const EVENTS_API_EVENT: EventFields = EventFields {
    regarding: "regarding",
    message: "note",
    count: "deprecatedCount",
    first_timestamp: "deprecatedFirstTimestamp",
    last_timestamp: "deprecatedLastTimestamp",
    source: "deprecatedSource",
    reporting_controller: "reportingController",
};

fn event_fields(event: &Value) -> &'static EventFields {
    let new_api = text(event, &["apiVersion"]).starts_with("events.k8s.io/")
        || present(event, &["regarding"])
        || present(event, &["note"]);
    if new_api {
        &EVENTS_API_EVENT
    } else {
        &CORE_EVENT
    }
}

fn event_cells(event: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let fields = event_fields(event);
    let first_seen = match timestamp(event, &[fields.first_timestamp]) {
        Some(first) => since(Some(first), now),
        None => since(timestamp(event, &["eventTime"]), now),
    };
    let mut last_seen = match timestamp(event, &[fields.last_timestamp]) {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = int(event, &[fields.count]);
    if let Some(series) = at(event, &["series"]) {
        last_seen = since(timestamp(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let regarding = at(event, &[fields.regarding]).unwrap_or(&Value::Null);
    let kind = text(regarding, &["kind"]).to_lowercase();
    let object = match non_empty(text(regarding, &["name"])) {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    vec![
        json!(last_seen),
        json!(text(event, &["type"])),
        json!(text(event, &["reason"])),
        json!(object),
        json!(text(regarding, &["fieldPath"])),
        json!(event_source(event, fields)),
        json!(text(event, &[fields.message]).trim()),
        json!(first_seen),
        json!(count),
        json!(name(event)),
    ]
}

/// `component, host`, falling back to the reporting controller and instance.
fn event_source(event: &Value, fields: &EventFields) -> String {
    let component = non_empty(text(event, &[fields.source, "component"]))
        .unwrap_or_else(|| text(event, &[fields.reporting_controller]));
    let instance = non_empty(text(event, &[fields.source, "host"]))
        .unwrap_or_else(|| text(event, &["reportingInstance"]));
    if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    }
}

// ---------------------------------------------------------------------------
// Namespace, ConfigMap, Secret, ServiceAccount, Lease, RBAC bindings
// ---------------------------------------------------------------------------

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "The status of the namespace"),
    AGE,
];

fn namespace_cells(namespace: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = non_empty(text(namespace, &["status", "phase"])).unwrap_or("Active");
    vec![
        json!(name(namespace)),
        json!(phase),
        json!(age(namespace, now)),
    ]
}

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    column("Data", "string", "Data contains the configuration data."),
    AGE,
];

fn config_map_cells(config_map: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let entries = key_count(config_map, &["data"]) + key_count(config_map, &["binaryData"]);
    vec![
        json!(name(config_map)),
        json!(entries),
        json!(age(config_map, now)),
    ]
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    column("Data", "string", "Data contains the secret data."),
    AGE,
];

fn secret_cells(secret: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let secret_type = non_empty(text(secret, &["type"])).unwrap_or("Opaque");
    vec![
        json!(name(secret)),
        json!(secret_type),
        json!(secret_entries(secret)),
        json!(age(secret, now)),
    ]
}

/// Keys of `data`, plus `stringData` keys the server would merge into it.
fn secret_entries(secret: &Value) -> usize {
    let keys = |field: &str| {
        at(secret, &[field])
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|map| map.keys().map(String::as_str))
    };
    keys("data")
        .chain(keys("stringData"))
        .collect::<BTreeSet<_>>()
        .len()
}

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    column("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    AGE,
];

fn service_account_cells(account: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(account)),
        json!(list(account, &["secrets"]).len()),
        json!(age(account, now)),
    ]
}

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

fn lease_cells(lease: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(lease)),
        json!(text(lease, &["spec", "holderIdentity"])),
        json!(age(lease, now)),
    ]
}

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    column("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

fn role_binding_cells(binding: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        text(binding, &["roleRef", "kind"]),
        text(binding, &["roleRef", "name"])
    );
    let subjects = list(binding, &["subjects"]);
    let of_kind = |kind: &str| -> String {
        let names: Vec<String> = subjects
            .iter()
            .filter(|subject| text(subject, &["kind"]) == kind)
            .map(|subject| match kind {
                "ServiceAccount" => format!(
                    "{}/{}",
                    text(subject, &["namespace"]),
                    text(subject, &["name"])
                ),
                _ => text(subject, &["name"]).to_string(),
            })
            .collect();
        names.join(", ")
    };
    vec![
        json!(name(binding)),
        json!(role),
        json!(age(binding, now)),
        json!(of_kind("User")),
        json!(of_kind("Group")),
        json!(of_kind("ServiceAccount")),
    ]
}

// ---------------------------------------------------------------------------
// Generic fallbacks
// ---------------------------------------------------------------------------

/// Built-ins served by upstream's default table convertor.
const CREATED_AT_COLUMNS: &[Column] = &[NAME, column("Created At", "date", CREATION_DESC)];

fn created_at_cells(object: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let created = timestamp(object, &["metadata", "creationTimestamp"])
        .map(|created| created.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![json!(name(object)), json!(created)]
}

/// Custom resources (and anything else unknown): the CRD default columns.
const CUSTOM_RESOURCE_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Age",
        "date",
        "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp",
    ),
];

fn name_age_cells(object: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![json!(name(object)), json!(age(object, now))]
}

// ---------------------------------------------------------------------------
// Shared formatting
// ---------------------------------------------------------------------------

fn name(object: &Value) -> &str {
    text(object, &["metadata", "name"])
}

/// The Age cell: time since `metadata.creationTimestamp`.
fn age(object: &Value, now: DateTime<Utc>) -> String {
    since(timestamp(object, &["metadata", "creationTimestamp"]), now)
}

/// Human time since `then`, or `<unknown>` when it is unset.
fn since(then: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match then {
        Some(then) => human_duration(now.signed_duration_since(then)),
        None => "<unknown>".to_string(),
    }
}

/// Keeps the later of `latest` and `candidate`.
fn keep_latest(latest: &mut Option<DateTime<Utc>>, candidate: Option<DateTime<Utc>>) {
    if let Some(candidate) = candidate {
        if latest.is_none_or(|current| current < candidate) {
            *latest = Some(candidate);
        }
    }
}

fn or_none(value: &str) -> String {
    non_empty(value).unwrap_or("<none>").to_string()
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

/// A label map as sorted `k=v` pairs, or `<none>` (upstream `FormatLabels`).
fn format_labels(labels: Option<&Value>) -> String {
    let pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|labels| {
            let mut pairs: Vec<(&String, &Value)> = labels.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            pairs
                .into_iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// A label selector as upstream's `FormatLabelSelector`: `<none>` when it
/// selects everything or nothing, `<error>` when it is malformed.
fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector_string(selector) {
        Ok(text) if text.is_empty() => "<none>".to_string(),
        Ok(text) => text,
        Err(InvalidSelector) => "<error>".to_string(),
    }
}

/// A `LabelSelector` that `LabelSelectorAsSelector` would reject.
#[derive(Debug)]
struct InvalidSelector;

/// `LabelSelectorAsSelector(selector).String()`: requirements sorted by key,
/// `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma-joined; empty for a
/// missing or empty selector.
fn label_selector_string(selector: Option<&Value>) -> Result<String, InvalidSelector> {
    let Some(selector) = selector.filter(|selector| !selector.is_null()) else {
        return Ok(String::new());
    };
    let mut requirements: Vec<(&str, String)> = Vec::new();
    if let Some(match_labels) = at(selector, &["matchLabels"]) {
        let match_labels = match_labels.as_object().ok_or(InvalidSelector)?;
        for (key, value) in match_labels {
            let value = value.as_str().ok_or(InvalidSelector)?;
            requirements.push((key, format!("{key}={value}")));
        }
    }
    for expression in list(selector, &["matchExpressions"]) {
        let key = text(expression, &["key"]);
        let mut values = Vec::new();
        for value in list(expression, &["values"]) {
            values.push(value.as_str().ok_or(InvalidSelector)?);
        }
        values.sort_unstable();
        let requirement = match (text(expression, &["operator"]), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return Err(InvalidSelector),
        };
        requirements.push((key, requirement));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = requirements.into_iter().map(|(_, text)| text).collect();
    Ok(parts.join(","))
}

// ---------------------------------------------------------------------------
// JSON access: every reader tolerates missing, null and mistyped fields
// ---------------------------------------------------------------------------

/// The value at `path`, treating `null` as absent.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |current, key| current.get(*key))
        .filter(|found| !found.is_null())
}

fn present(value: &Value, path: &[&str]) -> bool {
    at(value, path).is_some()
}

/// The string at `path`, or "" (Go's zero string).
fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or_default()
}

/// The integer at `path`, or 0.
fn int(value: &Value, path: &[&str]) -> i64 {
    at(value, path).and_then(as_int).unwrap_or(0)
}

/// An integer from a JSON number (floats truncated) or a numeric string.
fn as_int(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_u64().map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .or_else(|| value.as_f64().map(|f| f as i64))
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The boolean at `path`, or false.
fn boolean(value: &Value, path: &[&str]) -> bool {
    at(value, path).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `path`, or an empty slice.
fn list<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The string items of the array at `path`.
fn strings<'a>(value: &'a Value, path: &[&str]) -> Vec<&'a str> {
    list(value, path).iter().filter_map(Value::as_str).collect()
}

/// How many keys the object at `path` has.
fn key_count(value: &Value, path: &[&str]) -> usize {
    at(value, path)
        .and_then(Value::as_object)
        .map_or(0, Map::len)
}

/// The RFC 3339 timestamp at `path`; unparsable or Go-zero times are unset.
fn timestamp(value: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text(value, path)).ok()?;
    let parsed = parsed.with_timezone(&Utc);
    let go_zero = parsed.timestamp() == GO_ZERO_TIME_UNIX && parsed.timestamp_subsec_nanos() == 0;
    (!go_zero).then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-10T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid test time")
    }

    /// An RFC 3339 time `seconds` before [`now`].
    fn ago(seconds: i64) -> String {
        (now() - Duration::seconds(seconds))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    fn cells(kind: &str, object: &Value) -> Vec<Value> {
        let table = table(kind, std::slice::from_ref(object), "1", None, now());
        table["rows"][0]["cells"]
            .as_array()
            .cloned()
            .expect("row has cells")
    }

    fn column_names(table: &Value) -> Vec<String> {
        table["columnDefinitions"]
            .as_array()
            .expect("columns present")
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_string())
            .collect()
    }

    fn running_pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-8br2n",
                "namespace": "default",
                "uid": "1234",
                "resourceVersion": "1033",
                "creationTimestamp": ago(75),
                "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "web", "image": "nginx"}],
            },
            "status": {
                "phase": "Running",
                "podIP": "10.42.0.11",
                "podIPs": [{"ip": "10.42.0.11"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "web",
                    "ready": true,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": ago(70)}},
                }],
            },
        })
    }

    #[test]
    fn table_envelope_matches_kubectl_shape() {
        let t = table("Pod", &[running_pod()], "1034", Some("tok"), now());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "1034", "continue": "tok"})
        );
        let keys: Vec<&String> = t.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            [
                "kind",
                "apiVersion",
                "metadata",
                "columnDefinitions",
                "rows"
            ]
        );
        let first = &t["columnDefinitions"][0];
        assert_eq!(first["name"], "Name");
        assert_eq!(first["format"], "name");
        assert_eq!(first["priority"], 0);
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        let object = &t["rows"][0]["object"];
        assert_eq!(object["kind"], "PartialObjectMetadata");
        assert_eq!(object["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(object["metadata"]["labels"]["app"], "web");
        assert_eq!(object["metadata"]["uid"], "1234");
        assert!(object["metadata"].get("managedFields").is_none());
        assert!(t["rows"][0].get("conditions").is_none());

        let bare = table("Pod", &[], "", None, now());
        assert_eq!(bare["metadata"], json!({}));
        assert_eq!(bare["rows"], json!([]));
    }

    #[test]
    fn running_pod_with_ip_and_node() {
        let t = table("Pod", &[running_pod()], "1034", None, now());
        assert_eq!(
            column_names(&t),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web-8br2n",
                "1/1",
                "Running",
                "0",
                "75s",
                "10.42.0.11",
                "node-1",
                "<none>",
                "<none>"
            ])
        );
    }

    #[test]
    fn crash_looping_pod_shows_reason_and_last_restart() {
        let mut pod = running_pod();
        pod["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        pod["status"]["containerStatuses"] = json!([{
            "name": "web",
            "ready": false,
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(125)}},
        }]);
        let row = cells("Pod", &pod);
        assert_eq!(row[1], "0/1");
        assert_eq!(row[2], "CrashLoopBackOff");
        assert_eq!(row[3], "3 (2m5s ago)");
    }

    #[test]
    fn restarts_without_finish_time_print_the_bare_count() {
        let mut pod = running_pod();
        pod["status"]["containerStatuses"][0]["restartCount"] = json!(2);
        assert_eq!(cells("Pod", &pod)[3], "2");
    }

    #[test]
    fn terminating_pod() {
        let mut pod = running_pod();
        pod["metadata"]["deletionTimestamp"] = json!(ago(5));
        assert_eq!(cells("Pod", &pod)[2], "Terminating");

        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells("Pod", &pod)[2], "Unknown");

        let mut done = running_pod();
        done["metadata"]["deletionTimestamp"] = json!(ago(5));
        done["status"]["phase"] = json!("Succeeded");
        done["status"]["containerStatuses"] = json!([{
            "name": "web", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
        }]);
        assert_eq!(cells("Pod", &done)[2], "Completed");
    }

    #[test]
    fn completed_and_failed_pods_carry_row_conditions() {
        let mut pod = running_pod();
        pod["status"]["phase"] = json!("Succeeded");
        pod["status"]["containerStatuses"] = json!([{
            "name": "web", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
        }]);
        let t = table("Pod", &[pod.clone()], "1", None, now());
        assert_eq!(t["rows"][0]["cells"][1], "0/1");
        assert_eq!(t["rows"][0]["cells"][2], "Completed");
        assert_eq!(
            t["rows"][0]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                    "message": "The pod has completed successfully."}])
        );

        pod["status"]["phase"] = json!("Failed");
        pod["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 137, "signal": 9}});
        let t = table("Pod", &[pod], "1", None, now());
        assert_eq!(t["rows"][0]["cells"][2], "Signal:9");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Failed");
    }

    #[test]
    fn pod_status_from_init_containers() {
        let mut pod = running_pod();
        pod["status"]["phase"] = json!("Pending");
        pod["spec"]["initContainers"] = json!([{"name": "a"}, {"name": "b"}]);
        pod["status"]["initContainerStatuses"] = json!([
            {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "restartCount": 0, "state": {"running": {}}},
        ]);
        pod["status"]["containerStatuses"] = json!([{
            "name": "web", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "PodInitializing"}},
        }]);
        assert_eq!(cells("Pod", &pod)[2], "Init:1/2");

        pod["status"]["initContainerStatuses"][1] = json!({
            "name": "b", "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(20)}},
        });
        let row = cells("Pod", &pod);
        assert_eq!(row[2], "Init:CrashLoopBackOff");
        assert_eq!(row[3], "4 (20s ago)");

        pod["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 2}});
        assert_eq!(cells("Pod", &pod)[2], "Init:ExitCode:2");
    }

    #[test]
    fn sidecar_init_containers_count_as_containers() {
        let mut pod = running_pod();
        pod["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        pod["status"]["conditions"] = json!([
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True"},
        ]);
        pod["status"]["initContainerStatuses"] = json!([{
            "name": "proxy", "ready": true, "started": true, "restartCount": 1,
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
        }]);
        let row = cells("Pod", &pod);
        assert_eq!(row[1], "2/2");
        assert_eq!(row[2], "Running");
        assert_eq!(row[3], "1 (30s ago)");
    }

    #[test]
    fn pod_wide_cells_and_gates() {
        let mut pod = running_pod();
        pod["status"]["podIPs"] = Value::Null;
        pod["status"]["nominatedNodeName"] = json!("node-2");
        pod["spec"]["readinessGates"] =
            json!([{"conditionType": "Ready"}, {"conditionType": "x/lb"}]);
        let row = cells("Pod", &pod);
        assert_eq!(row[5], "10.42.0.11");
        assert_eq!(row[7], "node-2");
        assert_eq!(row[8], "1/2");
    }

    #[test]
    fn scheduling_gated_and_empty_pods() {
        let pod = json!({
            "metadata": {"name": "gated"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]},
        });
        assert_eq!(
            cells("Pod", &pod),
            json!([
                "gated",
                "0/1",
                "SchedulingGated",
                "0",
                "<unknown>",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ])
            .as_array()
            .cloned()
            .expect("array")
        );
        let bare = json!({"metadata": {"name": "new"}});
        assert_eq!(cells("Pod", &bare)[2], "Pending");
    }

    #[test]
    fn deployment_row() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(3600 * 5 + 60 * 12)},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                             "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27"},
                    {"name": "log", "image": "busybox"}]}},
            },
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        let t = table("Deployment", &[deployment], "9", None, now());
        assert_eq!(
            column_names(&t),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "2/3",
                3,
                2,
                "5h12m",
                "web,log",
                "nginx:1.27,busybox",
                "app=web,env in (dev,prod),tier=fe"
            ])
        );

        let fresh = json!({"metadata": {"name": "new"}, "spec": {}});
        assert_eq!(
            cells("Deployment", &fresh),
            json!(["new", "0/1", 0, 0, "<unknown>", "", "", ""])
                .as_array()
                .cloned()
                .expect("array")
        );
    }

    #[test]
    fn replica_set_row() {
        let rs = json!({
            "metadata": {"name": "web-5d4f", "creationTimestamp": ago(90)},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        assert_eq!(
            cells("ReplicaSet", &rs),
            json!(["web-5d4f", 2, 2, 1, "90s", "web", "nginx", "app=web"])
                .as_array()
                .cloned()
                .expect("array")
        );
        let empty = json!({"metadata": {"name": "x"}, "spec": {"replicas": 0, "selector": {}}});
        assert_eq!(cells("ReplicaSet", &empty)[7], "<none>");
        let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}});
        assert_eq!(cells("ReplicaSet", &bad)[7], "<error>");
        assert_eq!(cells("Deployment", &bad)[7], "<invalid>");
    }

    #[test]
    fn other_workloads() {
        let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 3}});
        assert_eq!(cells("StatefulSet", &sts)[1], "3/3");

        let ds = json!({
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"spec": {"nodeSelector": {"os": "linux"}, "containers": []}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                       "updatedNumberScheduled": 2, "numberAvailable": 1},
        });
        assert_eq!(
            cells("DaemonSet", &ds),
            json!([
                "agent",
                2,
                2,
                1,
                2,
                1,
                "os=linux",
                "<unknown>",
                "",
                "",
                "app=agent"
            ])
            .as_array()
            .cloned()
            .expect("array")
        );

        let job = json!({
            "metadata": {"name": "pi"},
            "spec": {"completions": 1, "parallelism": 1},
            "status": {"succeeded": 1, "startTime": ago(100), "completionTime": ago(40),
                       "conditions": [{"type": "Complete", "status": "True"}]},
        });
        let row = cells("Job", &job);
        assert_eq!(row[1..4], [json!("Complete"), json!("1/1"), json!("60s")]);
        let queue = json!({"spec": {"parallelism": 3}, "status": {"startTime": ago(30)}});
        let row = cells("Job", &queue);
        assert_eq!(
            row[1..4],
            [json!("Running"), json!("0/1 of 3"), json!("30s")]
        );

        let cron = json!({
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "suspend": false},
            "status": {"active": [{"name": "a"}], "lastScheduleTime": ago(600)},
        });
        let row = cells("CronJob", &cron);
        assert_eq!(
            row[1..6],
            [
                json!("0 3 * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("10m")
            ]
        );
    }

    #[test]
    fn node_port_service() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(15 * 60)},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.43.0.20",
                "clusterIPs": ["10.43.0.20"],
                "selector": {"tier": "fe", "app": "web"},
                "ports": [
                    {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"port": 53, "protocol": "UDP"},
                ],
            },
        });
        let t = table("Service", &[svc], "5", None, now());
        assert_eq!(
            column_names(&t),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "NodePort",
                "10.43.0.20",
                "<none>",
                "80:30080/TCP,53/UDP",
                "15m",
                "app=web,tier=fe"
            ])
        );
    }

    #[test]
    fn other_service_types() {
        let lb = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.9", "ports": [{"port": 443}]}});
        let row = cells("Service", &lb);
        assert_eq!(
            row[2..5],
            [json!("10.43.0.9"), json!("<pending>"), json!("443/TCP")]
        );

        let mut served = lb.clone();
        served["status"] =
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}, {"hostname": "lb.example"}]}});
        served["spec"]["externalIPs"] = json!(["198.51.100.1"]);
        assert_eq!(
            cells("Service", &served)[3],
            "192.0.2.9,lb.example,198.51.100.1"
        );

        let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        let row = cells("Service", &external);
        assert_eq!(
            row[2..5],
            [json!("<none>"), json!("db.example.com"), json!("<none>")]
        );

        let headless = json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        let row = cells("Service", &headless);
        assert_eq!(
            row[1..4],
            [json!("ClusterIP"), json!("None"), json!("<none>")]
        );
        assert_eq!(row[6], "<none>");
    }

    #[test]
    fn cordoned_control_plane_node() {
        let node = json!({
            "metadata": {
                "name": "node-1",
                "creationTimestamp": ago(3 * 86400 + 5 * 3600),
                "labels": {
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/etcd": "true",
                    "kubernetes.io/role": "master",
                    "kubernetes.io/hostname": "node-1",
                },
            },
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "192.168.1.10"},
                    {"type": "Hostname", "address": "node-1"},
                ],
                "nodeInfo": {"kubeletVersion": "v1.32.0+skiff", "osImage": "Debian GNU/Linux 12",
                             "kernelVersion": "6.1.0", "containerRuntimeVersion": ""},
            },
        });
        let t = table("Node", &[node], "7", None, now());
        assert_eq!(
            column_names(&t),
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "node-1",
                "Ready,SchedulingDisabled",
                "control-plane,etcd,master",
                "3d5h",
                "v1.32.0+skiff",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12",
                "6.1.0",
                "<unknown>"
            ])
        );
    }

    #[test]
    fn node_status_variants() {
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cells("Node", &not_ready)[1], "NotReady");
        let unknown = json!({"metadata": {"labels": {"a": "b"}}});
        let row = cells("Node", &unknown);
        assert_eq!(row[1..3], [json!("Unknown"), json!("<none>")]);
    }

    #[test]
    fn endpoints_with_five_addresses() {
        let addresses: Vec<Value> = (5..10)
            .map(|i| json!({"ip": format!("10.42.0.{i}")}))
            .collect();
        let ep = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(45 * 86400)},
            "subsets": [{"addresses": addresses, "ports": [{"port": 80, "protocol": "TCP"}]}],
        });
        let t = table("Endpoints", &[ep], "3", None, now());
        assert_eq!(column_names(&t), ["Name", "Endpoints", "Age"]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "10.42.0.5:80,10.42.0.6:80,10.42.0.7:80 + 2 more...",
                "45d"
            ])
        );
    }

    #[test]
    fn endpoints_edge_cases() {
        assert_eq!(cells("Endpoints", &json!({"subsets": []}))[1], "<none>");
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}]});
        assert_eq!(cells("Endpoints", &headless)[1], "10.0.0.1,fd00::1");
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(cells("Endpoints", &v6)[1], "[fd00::1]:80,[fd00::1]:443");
        let not_ready = json!({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells("Endpoints", &not_ready)[1], "");
    }

    #[test]
    fn endpoint_slice_row() {
        let slice = json!({
            "metadata": {"name": "web-abc12"},
            "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}, {}, {"port": 9}],
            "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["10.42.0.6"]}],
        });
        assert_eq!(
            cells("EndpointSlice", &slice),
            json!([
                "web-abc12",
                "IPv4",
                "80,metrics,* + 1 more...",
                "10.42.0.5,10.42.0.6",
                "<unknown>"
            ])
            .as_array()
            .cloned()
            .expect("array")
        );
        let empty = json!({"addressType": "IPv6"});
        assert_eq!(
            cells("EndpointSlice", &empty)[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn human_duration_boundaries() {
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (123, "2m3s"),
            (599, "9m59s"),
            (600, "10m"),
            (15 * 60 + 59, "15m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 12 * 60 + 30, "3h12m"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (9 * 3600, "9h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (8 * 86400 - 1, "7d23h"),
            (8 * 86400, "8d"),
            (45 * 86400, "45d"),
            (730 * 86400 - 1, "729d"),
            (730 * 86400, "2y"),
            ((730 + 10) * 86400, "2y10d"),
            (365 * 8 * 86400 - 1, "7y364d"),
            (365 * 8 * 86400, "8y"),
            (365 * 30 * 86400, "30y"),
        ];
        for &(seconds, expected) in cases {
            assert_eq!(
                human_duration(Duration::seconds(seconds)),
                expected,
                "{seconds}s"
            );
        }
        assert_eq!(human_duration(Duration::milliseconds(-1999)), "0s");
        assert_eq!(human_duration(Duration::milliseconds(1999)), "1s");
    }

    #[test]
    fn core_event_rows() {
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web-8br2n.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-8br2n", "fieldPath": "spec.containers{web}"},
            "reason": "Pulled",
            "message": "Successfully pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": ago(300),
            "lastTimestamp": ago(30),
            "count": 4,
            "type": "Normal",
        });
        let t = table("Event", &[event], "11", None, now());
        assert_eq!(
            column_names(&t),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(t["columnDefinitions"][9]["format"], "name");
        assert_eq!(t["columnDefinitions"][9]["priority"], 1);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "30s",
                "Normal",
                "Pulled",
                "pod/web-8br2n",
                "spec.containers{web}",
                "kubelet, node-1",
                "Successfully pulled image \"nginx\"",
                "5m",
                4,
                "web-8br2n.17a"
            ])
        );
    }

    #[test]
    fn events_api_event_rows() {
        let event = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "web.18b"},
            "eventTime": ago(90),
            "series": {"count": 7, "lastObservedTime": ago(10)},
            "reportingController": "skiff/scheduler",
            "reportingInstance": "skiff-node-1",
            "action": "Binding",
            "reason": "Scheduled",
            "regarding": {"kind": "Pod", "name": "web"},
            "note": "Successfully assigned default/web to node-1",
            "type": "Normal",
        });
        assert_eq!(
            cells("Event", &event),
            json!([
                "10s",
                "Normal",
                "Scheduled",
                "pod/web",
                "",
                "skiff/scheduler, skiff-node-1",
                "Successfully assigned default/web to node-1",
                "90s",
                7,
                "web.18b"
            ])
            .as_array()
            .cloned()
            .expect("array")
        );

        let singleton = json!({
            "apiVersion": "events.k8s.io/v1",
            "metadata": {"name": "n.1"},
            "eventTime": ago(5),
            "reportingController": "skiff",
            "regarding": {"kind": "Node"},
            "note": "x",
        });
        let row = cells("Event", &singleton);
        assert_eq!(row[0], "5s");
        assert_eq!(row[3], "node");
        assert_eq!(row[5], "skiff");
        assert_eq!(row[8], 1);
        assert_eq!(cells("Event", &json!({}))[0], "<unknown>");
    }

    #[test]
    fn small_core_kinds() {
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(86400)},
                        "status": {"phase": "Terminating"}});
        assert_eq!(
            cells("Namespace", &ns),
            [json!("default"), json!("Terminating"), json!("24h")]
        );
        assert_eq!(cells("Namespace", &json!({}))[1], "Active");

        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells("ConfigMap", &cm)[1], 3);

        let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                            "data": {"tls.crt": "", "tls.key": ""}, "stringData": {"tls.key": "", "ca.crt": ""}});
        assert_eq!(
            cells("Secret", &secret)[1..3],
            [json!("kubernetes.io/tls"), json!(3)]
        );
        assert_eq!(
            cells("Secret", &json!({}))[1..3],
            [json!("Opaque"), json!(0)]
        );

        let sa = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
        let t = table("ServiceAccount", &[sa], "1", None, now());
        assert_eq!(column_names(&t), ["Name", "Secrets", "Age"]);
        assert_eq!(t["rows"][0]["cells"][1], 1);

        let lease = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "node-1_abc"}});
        assert_eq!(cells("Lease", &lease)[1], "node-1_abc");
        assert_eq!(cells("Lease", &json!({}))[1], "");

        let binding = json!({
            "metadata": {"name": "admins"},
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                         {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}],
        });
        assert_eq!(
            cells("RoleBinding", &binding),
            json!([
                "admins",
                "ClusterRole/admin",
                "<unknown>",
                "alice, bob",
                "",
                "tools/ci"
            ])
            .as_array()
            .cloned()
            .expect("array")
        );
    }

    #[test]
    fn ingress_row() {
        let ingress = json!({
            "metadata": {"name": "web"},
            "spec": {"ingressClassName": "traefik",
                     "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}],
                     "tls": [{"hosts": ["a.example"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
        });
        assert_eq!(
            cells("Ingress", &ingress)[1..5],
            [
                json!("traefik"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("192.0.2.1"),
                json!("80, 443")
            ]
        );
        assert_eq!(
            cells("Ingress", &json!({}))[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    #[test]
    fn generic_fallback_for_custom_resources() {
        let widget = json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default", "creationTimestamp": ago(7200)},
        });
        let t = table("Widget", &[widget], "42", None, now());
        assert_eq!(column_names(&t), ["Name", "Age"]);
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["cells"], json!(["w1", "120m"]));
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "w1");
    }

    #[test]
    fn default_convertor_kinds_show_created_at() {
        let role =
            json!({"metadata": {"name": "view", "creationTimestamp": "2024-05-01T10:20:30.123Z"}});
        let t = table("ClusterRole", &[role], "1", None, now());
        assert_eq!(column_names(&t), ["Name", "Created At"]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["view", "2024-05-01T10:20:30Z"])
        );
        assert_eq!(cells("Role", &json!({}))[1], "0001-01-01T00:00:00Z");
    }

    #[test]
    fn event_tables_with_and_without_columns() {
        let pod = running_pod();
        let first = table_for_event("Pod", &pod, true, now());
        assert_eq!(first["kind"], "Table");
        assert_eq!(first["metadata"], json!({"resourceVersion": "1033"}));
        assert_eq!(column_names(&first).len(), 9);
        assert_eq!(first["rows"].as_array().map(Vec::len), Some(1));
        assert_eq!(first["rows"][0]["cells"][0], "web-8br2n");

        let later = table_for_event("Pod", &pod, false, now());
        assert!(later["columnDefinitions"].is_null());
        assert!(later
            .as_object()
            .is_some_and(|t| t.contains_key("columnDefinitions")));
        assert_eq!(later["rows"], first["rows"]);

        let bare = table_for_event("Widget", &json!({}), false, now());
        assert_eq!(bare["metadata"], json!({}));
        assert_eq!(bare["rows"][0]["cells"], json!(["", "<unknown>"]));
        assert_eq!(bare["rows"][0]["object"]["metadata"], json!({}));
    }

    #[test]
    fn garbage_input_never_panics() {
        let kinds = [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "Service",
            "Ingress",
            "Node",
            "Endpoints",
            "EndpointSlice",
            "Event",
            "Namespace",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Lease",
            "RoleBinding",
            "ClusterRole",
            "Widget",
        ];
        let junk = [
            Value::Null,
            json!(42),
            json!("pod"),
            json!([1, 2]),
            json!({"metadata": 5, "spec": [], "status": "x", "subsets": {}}),
            json!({"metadata": {"name": 7, "creationTimestamp": "yesterday", "labels": []},
                   "spec": {"containers": "x", "initContainers": [1], "replicas": "3", "ports": [null],
                            "selector": {"matchLabels": [], "matchExpressions": [5]}, "unschedulable": "yes"},
                   "status": {"containerStatuses": [null, 3, {"state": 1}], "initContainerStatuses": [{}],
                              "conditions": [[]], "addresses": "x", "loadBalancer": {"ingress": [1]}},
                   "subsets": [{"addresses": [1], "ports": [{"port": "80"}]}],
                   "endpoints": [{"addresses": [1]}], "series": 1, "involvedObject": 3}),
        ];
        for kind in kinds {
            let t = table(kind, &junk, "1", None, now());
            let columns = t["columnDefinitions"].as_array().map_or(0, Vec::len);
            for row in t["rows"].as_array().expect("rows") {
                assert_eq!(
                    row["cells"].as_array().map(Vec::len),
                    Some(columns),
                    "{kind}"
                );
            }
            for object in &junk {
                table_for_event(kind, object, true, now());
            }
        }
    }

    #[test]
    fn every_printer_fills_every_column() {
        for kind in [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "Service",
            "Ingress",
            "Node",
            "Endpoints",
            "EndpointSlice",
            "Event",
            "Namespace",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Lease",
            "RoleBinding",
            "ClusterRoleBinding",
            "Role",
            "LimitRange",
            "Widget",
        ] {
            let t = table(kind, &[running_pod()], "1", None, now());
            let columns = column_names(&t);
            assert_eq!(
                t["rows"][0]["cells"].as_array().map(Vec::len),
                Some(columns.len()),
                "{kind}"
            );
            let names = columns.iter().filter(|c| c.as_str() == "Name").count();
            assert_eq!(names, 1, "{kind}");
        }
    }

    #[test]
    fn controller_revisions_name_their_controller() {
        let revision = json!({
            "metadata": {"name": "agent-5d8f7b9c6", "creationTimestamp": ago(60),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u", "controller": true}]},
            "data": {}, "revision": 3
        });
        assert_eq!(
            cells("ControllerRevision", &revision),
            vec![
                json!("agent-5d8f7b9c6"),
                json!("daemonset.apps/agent"),
                json!(3),
                json!("60s")
            ]
        );
        let orphan = json!({"metadata": {"name": "r"}, "revision": 1});
        assert_eq!(cells("ControllerRevision", &orphan)[1], json!("<none>"));
    }
}
