//! Server-side defaulting: fills in what Kubernetes 1.32 fills in on create and
//! update (the `SetDefaults_*` functions of `pkg/apis/*/v1/defaults.go`, plus
//! the few values that admission plugins and registry strategies add to Pods,
//! Services and Namespaces), so that stored objects read back as on a real
//! cluster.
//!
//! Owns: `apply_defaults` and the per-kind default tables below.
//! Calls: `crate::model::quantity::parse_quantity` (for the Pod QoS class) only.
//!
//! Rules: only values that are missing (absent, `null`, or the Go zero value
//! Kubernetes treats as unset) are filled; a value of the wrong JSON type is
//! left alone for validation to report. Defaulting twice equals defaulting once.

use serde_json::{json, Map, Value};

use crate::model::quantity::parse_quantity;

type Obj = Map<String, Value>;

/// Fills in what Kubernetes defaults on create and update, for the object's `kind`
/// (Pod, Deployment, ReplicaSet, Service, Namespace, Node, ConfigMap, Secret, Event,
/// Endpoints, EndpointSlice, ServiceAccount, Lease; unknown kinds untouched).
/// Idempotent: defaulting twice = once. Never removes user-set values (except where
/// Kubernetes itself rewrites them: Secret `stringData` is folded into `data`, and a
/// Service's `sessionAffinityConfig` is dropped when `sessionAffinity` is `None`).
/// Pods also get `status.phase: Pending` and their `status.qosClass` when missing.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match kind {
        "Pod" => default_pod(root),
        "Deployment" => default_deployment(root),
        "ReplicaSet" => default_replica_set(root),
        "Job" => default_job(root),
        "CronJob" => default_cron_job(root),
        "DaemonSet" => default_daemon_set(root),
        "Service" => default_service(root),
        "Namespace" => default_namespace(root),
        "Node" => default_node(root),
        "Secret" => default_secret(root),
        "Endpoints" => default_endpoints(root),
        "EndpointSlice" => default_endpoint_slice(root),
        "RoleBinding" | "ClusterRoleBinding" => default_binding_subjects(root),
        "PersistentVolumeClaim" => default_pvc(root),
        "PersistentVolume" => default_pv(root),
        "StorageClass" => default_storage_class(root),
        // ConfigMap, Event, ServiceAccount and Lease have no v1 defaults.
        _ => {}
    }
}

/// A subject's `apiGroup`: `rbac.authorization.k8s.io` for users and groups, empty
/// for service accounts (upstream's SetDefaults_Subject).
fn default_binding_subjects(root: &mut Map<String, Value>) {
    let Some(subjects) = root.get_mut("subjects").and_then(Value::as_array_mut) else {
        return;
    };
    for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
        if !is_empty_str(subject.get("apiGroup")) {
            continue;
        }
        let group = match subject.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => "rbac.authorization.k8s.io",
            _ => "",
        };
        subject.insert("apiGroup".into(), Value::from(group));
    }
}

// ---------------------------------------------------------------------------
// Small JSON helpers
// ---------------------------------------------------------------------------

/// True when the field is absent or `null`.
fn is_unset(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// True when the field is absent, `null` or `""` (Go's unset string).
fn is_empty_str(v: Option<&Value>) -> bool {
    is_unset(v) || v.and_then(Value::as_str) == Some("")
}

/// True when the field is absent, `null` or the number zero (Go's unset int).
fn is_zero(v: Option<&Value>) -> bool {
    is_unset(v) || v.and_then(Value::as_f64) == Some(0.0)
}

fn default_str(m: &mut Obj, key: &str, val: &str) {
    if is_empty_str(m.get(key)) {
        m.insert(key.to_string(), Value::from(val));
    }
}

fn default_value(m: &mut Obj, key: &str, val: Value) {
    if is_unset(m.get(key)) {
        m.insert(key.to_string(), val);
    }
}

fn default_nonzero(m: &mut Obj, key: &str, val: i64) {
    if is_zero(m.get(key)) {
        m.insert(key.to_string(), Value::from(val));
    }
}

/// The child object at `key`, created as `{}` when absent or null; `None` when
/// the field holds something that is not an object.
fn ensure_obj<'a>(m: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    let slot = m.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The existing child object at `key`, if it is an object.
fn child_obj<'a>(m: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// Calls `f` on every object element of the array at `key`.
fn each_obj(m: &mut Obj, key: &str, mut f: impl FnMut(&mut Obj)) {
    if let Some(items) = m.get_mut(key).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

fn str_field<'a>(m: &'a Obj, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Pods and pod templates
// ---------------------------------------------------------------------------

/// Pod: the PodSpec defaults plus what only materialises on Pods (not templates):
/// requests from limits, enableServiceLinks, hostNetwork host ports, and the
/// values the ServiceAccount and Priority admission plugins and the create
/// strategy add.
fn default_pod(root: &mut Obj) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    default_pod_spec(spec);
    each_obj(spec, "containers", default_requests_from_limits);
    each_obj(spec, "initContainers", default_requests_from_limits);
    default_value(spec, "enableServiceLinks", Value::Bool(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        each_obj(spec, "containers", default_host_ports);
        each_obj(spec, "initContainers", default_host_ports);
    }
    default_service_account(spec);
    default_priority(spec);
    let qos = qos_class(spec);
    if let Some(status) = ensure_obj(root, "status") {
        default_str(status, "phase", "Pending");
        default_str(status, "qosClass", qos);
    }
}

/// SetDefaults_PodSpec and everything nested in it (shared by Pods and templates).
fn default_pod_spec(spec: &mut Obj) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_value(spec, "securityContext", json!({}));
    default_value(spec, "terminationGracePeriodSeconds", Value::from(30));
    default_str(spec, "schedulerName", "default-scheduler");
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        each_obj(spec, key, default_container);
    }
    each_obj(spec, "volumes", default_volume);
}

/// A pod template (`spec.template` of Deployment and ReplicaSet): PodSpec defaults
/// only; labels and annotations are left exactly as given.
fn default_pod_template(parent: &mut Obj) {
    let Some(template) = ensure_obj(parent, "template") else {
        return;
    };
    if let Some(spec) = ensure_obj(template, "spec") {
        default_pod_spec(spec);
    }
}

/// SetDefaults_Container (also used for init and ephemeral containers).
fn default_container(c: &mut Obj) {
    if is_empty_str(c.get("imagePullPolicy")) {
        let image = str_field(c, "image");
        let policy = if image_tag(image) == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), Value::from(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    // `resources` is a non-pointer struct in Go, so it always reads back.
    default_value(c, "resources", json!({}));
    each_obj(c, "ports", |p| default_str(p, "protocol", "TCP"));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child_obj(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lifecycle) = child_obj(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = child_obj(lifecycle, hook) {
                default_handler(h);
            }
        }
    }
    each_obj(c, "env", |e| {
        if let Some(field_ref) = child_obj(e, "valueFrom").and_then(|v| child_obj(v, "fieldRef")) {
            default_str(field_ref, "apiVersion", "v1");
        }
    });
}

/// The tag Kubernetes' image parser reports: the explicit tag, else "latest"
/// when there is no digest either, else none. Unparseable names give none.
fn image_tag(image: &str) -> Option<&str> {
    if image.is_empty() {
        return None;
    }
    let (name, has_digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((repo, tag)) if !repo.is_empty() && !tag.is_empty() => {
            (!repo.bytes().any(|b| b.is_ascii_uppercase())).then_some(tag)
        }
        Some(_) => None,
        None if has_digest => None,
        None if last.bytes().any(|b| b.is_ascii_uppercase()) => None,
        None => Some("latest"),
    }
}

/// SetDefaults_Probe plus the defaults of its handler.
fn default_probe(p: &mut Obj) {
    default_nonzero(p, "timeoutSeconds", 1);
    default_nonzero(p, "periodSeconds", 10);
    default_nonzero(p, "successThreshold", 1);
    default_nonzero(p, "failureThreshold", 3);
    default_handler(p);
}

/// SetDefaults_HTTPGetAction, and the gRPC service default.
fn default_handler(h: &mut Obj) {
    if let Some(http) = child_obj(h, "httpGet") {
        default_str(http, "path", "/");
        default_str(http, "scheme", "HTTP");
    }
    if let Some(grpc) = child_obj(h, "grpc") {
        default_value(grpc, "service", Value::from(""));
    }
}

/// Volume source keys of core/v1 VolumeSource, in Kubernetes' checking order.
const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Exposed to validation so both agree on what counts as a volume source.
pub(crate) fn volume_source_keys() -> &'static [&'static str] {
    VOLUME_SOURCES
}

/// SetDefaults_Volume and the per-source defaults.
fn default_volume(v: &mut Obj) {
    if !VOLUME_SOURCES.iter().any(|k| !is_unset(v.get(*k))) {
        v.insert("emptyDir".into(), json!({}));
    }
    for key in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(src) = child_obj(v, key) {
            default_value(src, "defaultMode", Value::from(420));
        }
    }
    if let Some(host_path) = child_obj(v, "hostPath") {
        default_value(host_path, "type", Value::from(""));
    }
    if let Some(downward) = child_obj(v, "downwardAPI") {
        each_obj(downward, "items", default_downward_item);
    }
    if let Some(projected) = child_obj(v, "projected") {
        each_obj(projected, "sources", default_projection);
    }
    let claim_spec = child_obj(v, "ephemeral")
        .and_then(|e| child_obj(e, "volumeClaimTemplate"))
        .and_then(|t| child_obj(t, "spec"));
    if let Some(spec) = claim_spec {
        default_str(spec, "volumeMode", "Filesystem");
    }
}

/// SetDefaults_PersistentVolumeClaim: `volumeMode: Filesystem`, phase `Pending`.
fn default_pvc(root: &mut Obj) {
    if let Some(spec) = ensure_obj(root, "spec") {
        default_str(spec, "volumeMode", "Filesystem");
    }
    if let Some(status) = ensure_obj(root, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// SetDefaults_PersistentVolume: reclaim policy `Retain`, `volumeMode: Filesystem`,
/// phase `Pending`, hostPath `type: ""`.
fn default_pv(root: &mut Obj) {
    if let Some(spec) = ensure_obj(root, "spec") {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_str(spec, "volumeMode", "Filesystem");
        if let Some(host_path) = child_obj(spec, "hostPath") {
            default_value(host_path, "type", Value::from(""));
        }
    }
    if let Some(status) = ensure_obj(root, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// SetDefaults_StorageClass: reclaim policy `Delete`, binding mode `Immediate`.
fn default_storage_class(root: &mut Obj) {
    default_str(root, "reclaimPolicy", "Delete");
    default_str(root, "volumeBindingMode", "Immediate");
}

fn default_downward_item(item: &mut Obj) {
    if let Some(field_ref) = child_obj(item, "fieldRef") {
        default_str(field_ref, "apiVersion", "v1");
    }
}

fn default_projection(source: &mut Obj) {
    if let Some(token) = child_obj(source, "serviceAccountToken") {
        default_value(token, "expirationSeconds", Value::from(3600));
    }
    if let Some(downward) = child_obj(source, "downwardAPI") {
        each_obj(downward, "items", default_downward_item);
    }
}

/// SetDefaults_Pod: requests default to limits for every resource without a request.
fn default_requests_from_limits(c: &mut Obj) {
    let Some(resources) = child_obj(c, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    if let Some(requests) = ensure_obj(resources, "requests") {
        for (name, quantity) in limits {
            requests.entry(name).or_insert(quantity);
        }
    }
}

/// With host networking, every container port is also a host port.
fn default_host_ports(c: &mut Obj) {
    each_obj(c, "ports", |p| {
        if is_zero(p.get("hostPort")) {
            if let Some(port) = p.get("containerPort").cloned() {
                p.insert("hostPort".into(), port);
            }
        }
    });
}

/// ServiceAccount admission: `default` when none is named; the deprecated
/// `serviceAccount` field mirrors `serviceAccountName` (as v1 conversion does).
fn default_service_account(spec: &mut Obj) {
    if is_empty_str(spec.get("serviceAccountName")) {
        let legacy = str_field(spec, "serviceAccount");
        let name = if legacy.is_empty() { "default" } else { legacy };
        let name = name.to_string();
        spec.insert("serviceAccountName".into(), Value::from(name));
    }
    if let Some(name) = spec.get("serviceAccountName").and_then(Value::as_str) {
        let name = name.to_string();
        spec.insert("serviceAccount".into(), Value::from(name));
    }
}

/// Priority admission: priority from the built-in classes (0 without a class),
/// and the default preemption policy.
fn default_priority(spec: &mut Obj) {
    let priority = match str_field(spec, "priorityClassName") {
        "system-node-critical" => 2_000_001_000,
        "system-cluster-critical" => 2_000_000_000,
        _ => 0,
    };
    default_value(spec, "priority", Value::from(priority));
    default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
}

/// The Pod's QoS class as Kubernetes computes it from cpu and memory
/// requests and limits of its containers and init containers.
fn qos_class(spec: &Obj) -> &'static str {
    let mut requests: Vec<(&str, f64)> = Vec::new();
    let mut limits: Vec<(&str, f64)> = Vec::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_object);
    for c in containers {
        let resources = c.get("resources");
        add_qos_resources(resources, "requests", &mut requests);
        let limit_names = add_qos_resources(resources, "limits", &mut limits);
        if !(limit_names.contains(&"cpu") && limit_names.contains(&"memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let limit_of = |name: &str| limits.iter().find(|(n, _)| *n == name).map(|(_, q)| *q);
    let all_match = requests.iter().all(|(n, q)| limit_of(n) == Some(*q));
    if guaranteed && all_match && requests.len() == limits.len() {
        return "Guaranteed";
    }
    "Burstable"
}

/// Adds the non-zero cpu/memory quantities of `resources.<which>` into `sums`;
/// returns the resource names that were found.
fn add_qos_resources(
    resources: Option<&Value>,
    which: &str,
    sums: &mut Vec<(&'static str, f64)>,
) -> Vec<&'static str> {
    let mut found = Vec::new();
    let Some(list) = resources
        .and_then(|r| r.get(which))
        .and_then(Value::as_object)
    else {
        return found;
    };
    for name in ["cpu", "memory"] {
        let quantity = list.get(name).and_then(quantity_value).unwrap_or(0.0);
        if quantity == 0.0 {
            continue;
        }
        found.push(name);
        match sums.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += quantity,
            None => sums.push((name, quantity)),
        }
    }
    found
}

fn quantity_value(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => parse_quantity(s).ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

/// apps/v1 SetDefaults_Deployment.
fn default_deployment(root: &mut Obj) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    default_value(spec, "replicas", Value::from(1));
    if let Some(strategy) = ensure_obj(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if str_field(strategy, "type") == "RollingUpdate" {
            if let Some(rolling) = ensure_obj(strategy, "rollingUpdate") {
                default_value(rolling, "maxUnavailable", Value::from("25%"));
                default_value(rolling, "maxSurge", Value::from("25%"));
            }
        }
    }
    default_value(spec, "revisionHistoryLimit", Value::from(10));
    default_value(spec, "progressDeadlineSeconds", Value::from(600));
    default_pod_template(spec);
}

/// apps/v1 SetDefaults_ReplicaSet.
fn default_replica_set(root: &mut Obj) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    default_value(spec, "replicas", Value::from(1));
    default_pod_template(spec);
}

/// batch/v1 SetDefaults_Job (with the JobPodReplacementPolicy feature on, as in 1.32).
/// A Job without labels takes its template's (which by now carry the generated
/// `job-name`/`controller-uid` labels, see `api::batch`).
fn default_job(root: &mut Obj) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec.insert("completions".into(), Value::from(1));
    }
    default_value(spec, "parallelism", Value::from(1));
    let backoff = if is_unset(spec.get("backoffLimitPerIndex")) {
        6
    } else {
        i64::from(i32::MAX)
    };
    default_value(spec, "backoffLimit", Value::from(backoff));
    default_str(spec, "completionMode", "NonIndexed");
    default_value(spec, "suspend", Value::Bool(false));
    default_value(spec, "manualSelector", Value::Bool(false));
    let replacement = if is_unset(spec.get("podFailurePolicy")) {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    default_str(spec, "podReplacementPolicy", replacement);
    if let Some(rules) = child_obj(spec, "podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut)
    {
        for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
            each_obj(rule, "onPodConditions", |c| {
                default_str(c, "status", "True")
            });
        }
    }
    default_pod_template(spec);
    let template_labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let (Some(labels), Some(meta)) = (template_labels, ensure_obj(root, "metadata")) {
        let empty = meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if empty {
            meta.insert("labels".into(), labels);
        }
    }
}

/// batch/v1 SetDefaults_CronJob; the job template gets pod-template defaults only,
/// as upstream (SetDefaults_Job is not applied to templates).
fn default_cron_job(root: &mut Obj) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    default_str(spec, "concurrencyPolicy", "Allow");
    default_value(spec, "suspend", Value::Bool(false));
    default_value(spec, "successfulJobsHistoryLimit", Value::from(3));
    default_value(spec, "failedJobsHistoryLimit", Value::from(1));
    if let Some(job_spec) = ensure_obj(spec, "jobTemplate").and_then(|t| ensure_obj(t, "spec")) {
        default_pod_template(job_spec);
    }
}

/// apps/v1 SetDefaults_DaemonSet: RollingUpdate with maxUnavailable 1 and maxSurge 0,
/// revisionHistoryLimit 10, and the pod template's defaults.
fn default_daemon_set(root: &mut Obj) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if str_field(strategy, "type") == "RollingUpdate" {
            if let Some(rolling) = ensure_obj(strategy, "rollingUpdate") {
                default_value(rolling, "maxUnavailable", Value::from(1));
                default_value(rolling, "maxSurge", Value::from(0));
            }
        }
    }
    default_value(spec, "revisionHistoryLimit", Value::from(10));
    default_pod_template(spec);
}

// ---------------------------------------------------------------------------
// Services and endpoints
// ---------------------------------------------------------------------------

/// SetDefaults_Service plus the IP-family fields the Service REST storage fills
/// in (single-stack IPv4 cluster). Allocating the cluster IP itself is not
/// defaulting and is left to the caller.
fn default_service(root: &mut Obj) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    default_str(spec, "type", "ClusterIP");
    default_session_affinity(spec);
    each_obj(spec, "ports", default_service_port);
    let svc_type = str_field(spec, "type").to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible = matches!(svc_type.as_str(), "NodePort" | "LoadBalancer")
        || (svc_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(svc_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_str(spec, "internalTrafficPolicy", "Cluster");
    }
    if svc_type == "LoadBalancer" {
        default_value(spec, "allocateLoadBalancerNodePorts", Value::Bool(true));
    }
    if svc_type != "ExternalName" {
        default_service_ips(spec);
    }
    if let Some(status) = ensure_obj(root, "status") {
        default_value(status, "loadBalancer", json!({}));
    }
}

fn default_session_affinity(spec: &mut Obj) {
    default_str(spec, "sessionAffinity", "None");
    match str_field(spec, "sessionAffinity") {
        "None" => {
            spec.shift_remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let timeout =
                ensure_obj(spec, "sessionAffinityConfig").and_then(|c| ensure_obj(c, "clientIP"));
            if let Some(client_ip) = timeout {
                default_value(client_ip, "timeoutSeconds", Value::from(10800));
            }
        }
        _ => {}
    }
}

/// Port protocol TCP; targetPort = port when absent, 0 or "".
fn default_service_port(p: &mut Obj) {
    default_str(p, "protocol", "TCP");
    let target = p.get("targetPort");
    if is_zero(target) || is_empty_str(target) {
        if let Some(port) = p.get("port").cloned() {
            p.insert("targetPort".into(), port);
        }
    }
}

/// clusterIP and clusterIPs kept in sync; ipFamilyPolicy and ipFamilies for a
/// single-stack IPv4 cluster (headless services without selector require dual
/// stack, as the registry does).
fn default_service_ips(spec: &mut Obj) {
    let cluster_ip = str_field(spec, "clusterIP").to_string();
    let ips_empty = spec
        .get("clusterIPs")
        .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty) || v.is_null());
    if !cluster_ip.is_empty() && ips_empty {
        spec.insert("clusterIPs".into(), json!([cluster_ip]));
    }
    if cluster_ip.is_empty() {
        let first = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(first) = first {
            spec.insert("clusterIP".into(), Value::from(first));
        }
    }
    let headless = str_field(spec, "clusterIP") == "None";
    let has_selector = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_some_and(|s| !s.is_empty());
    let policy = if headless && !has_selector {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    default_str(spec, "ipFamilyPolicy", policy);
    let families_empty = spec
        .get("ipFamilies")
        .is_none_or(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty));
    if families_empty {
        spec.insert("ipFamilies".into(), json!(["IPv4"]));
    }
}

/// SetDefaults_Endpoints: every subset port defaults to TCP.
fn default_endpoints(root: &mut Obj) {
    each_obj(root, "subsets", |subset| {
        each_obj(subset, "ports", |p| default_str(p, "protocol", "TCP"));
    });
}

/// discovery/v1 SetDefaults_EndpointPort: name "" and protocol TCP.
fn default_endpoint_slice(root: &mut Obj) {
    each_obj(root, "ports", |p| {
        default_value(p, "name", Value::from(""));
        default_value(p, "protocol", Value::from("TCP"));
    });
}

// ---------------------------------------------------------------------------
// Cluster objects and data objects
// ---------------------------------------------------------------------------

/// SetDefaults_Namespace (the metadata-name label), SetDefaults_NamespaceStatus,
/// and the `kubernetes` finalizer the create strategy adds (only while not
/// being deleted, so the finalizer is not re-added once the controller drops it).
fn default_namespace(root: &mut Obj) {
    let name = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let deleting = root
        .get("metadata")
        .is_some_and(|m| !is_unset(m.get("deletionTimestamp")));
    if !name.is_empty() {
        let labels = ensure_obj(root, "metadata").and_then(|m| ensure_obj(m, "labels"));
        if let Some(labels) = labels {
            labels.insert("kubernetes.io/metadata.name".into(), Value::from(name));
        }
    }
    if !deleting {
        if let Some(spec) = ensure_obj(root, "spec") {
            default_value(spec, "finalizers", json!(["kubernetes"]));
        }
    }
    if let Some(status) = ensure_obj(root, "status") {
        default_str(status, "phase", "Active");
    }
}

/// SetDefaults_NodeStatus (allocatable = capacity) and the podCIDR/podCIDRs
/// pairing v1 conversion keeps.
fn default_node(root: &mut Obj) {
    if let Some(spec) = child_obj(root, "spec") {
        let pod_cidr = str_field(spec, "podCIDR").to_string();
        let cidrs_empty = spec
            .get("podCIDRs")
            .is_none_or(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty));
        if !pod_cidr.is_empty() && cidrs_empty {
            spec.insert("podCIDRs".into(), json!([pod_cidr]));
        }
        if pod_cidr.is_empty() {
            let first = spec
                .get("podCIDRs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(first) = first {
                spec.insert("podCIDR".into(), Value::from(first));
            }
        }
    }
    if let Some(status) = child_obj(root, "status") {
        if is_unset(status.get("allocatable")) {
            if let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned() {
                status.insert("allocatable".into(), capacity);
            }
        }
    }
}

/// SetDefaults_Secret (type Opaque), and `stringData` folded into `data` as
/// base64, as the v1 conversion does (write-only field, never stored).
fn default_secret(root: &mut Obj) {
    default_str(root, "type", "Opaque");
    let Some(string_data) = root.get("stringData").and_then(Value::as_object).cloned() else {
        if root.get("stringData").is_some_and(Value::is_null) {
            root.shift_remove("stringData");
        }
        return;
    };
    let mut leftover = Map::new();
    if let Some(data) = ensure_obj(root, "data") {
        for (key, value) in string_data {
            match value.as_str() {
                Some(s) => {
                    data.insert(key, Value::from(base64_encode(s.as_bytes())));
                }
                None => {
                    leftover.insert(key, value);
                }
            }
        }
    } else {
        return;
    }
    if leftover.is_empty() {
        root.shift_remove("stringData");
    } else {
        root.insert("stringData".into(), Value::Object(leftover));
    }
}

/// Standard base64 with padding.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(kind: &str, v: Value) -> Value {
        let mut v = v;
        apply_defaults(kind, &mut v);
        v
    }

    /// The user's fixture (/work/shared/fixtures/deployment.yaml) as JSON.
    fn fixture_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "my-flask-app"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "my-flask-app"}},
                "template": {
                    "metadata": {"labels": {"app": "my-flask-app"}},
                    "spec": {
                        "containers": [{
                            "name": "flask",
                            "image": "my-flask-app:latest",
                            "ports": [{"containerPort": 5000}],
                            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 5000},
                                "initialDelaySeconds": 5,
                                "periodSeconds": 10
                            }
                        }]
                    }
                }
            }
        })
    }

    #[test]
    fn fixture_deployment_gets_kubernetes_defaults() {
        let d = defaulted("Deployment", fixture_deployment());
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["schedulerName"], "default-scheduler");
        assert_eq!(pod["securityContext"], json!({}));
        // Pod-only defaults do not appear in templates.
        assert!(pod.get("enableServiceLinks").is_none());
        assert!(pod.get("serviceAccountName").is_none());
        let c = &pod["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert!(c["resources"].get("requests").is_none());
        let probe = &c["livenessProbe"];
        assert_eq!(probe["timeoutSeconds"], 1);
        assert_eq!(probe["periodSeconds"], 10);
        assert_eq!(probe["successThreshold"], 1);
        assert_eq!(probe["failureThreshold"], 3);
        assert_eq!(probe["initialDelaySeconds"], 5);
        assert_eq!(probe["httpGet"]["scheme"], "HTTP");
        assert_eq!(probe["httpGet"]["path"], "/health");
        assert_eq!(
            spec["template"]["metadata"],
            json!({"labels": {"app": "my-flask-app"}})
        );
    }

    #[test]
    fn defaulting_is_idempotent() {
        let cases = [
            ("Deployment", fixture_deployment()),
            (
                "Pod",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"limits": {"cpu": "1"}}}]}}),
            ),
            (
                "Service",
                json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
            ),
            ("Namespace", json!({"metadata": {"name": "ns"}})),
            (
                "Secret",
                json!({"metadata": {"name": "s"}, "stringData": {"a": "hello"}}),
            ),
            (
                "ReplicaSet",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x@sha256:abc"}]}}}}),
            ),
            (
                "DaemonSet",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            ),
            (
                "Node",
                json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/24"}, "status": {"capacity": {"cpu": "2"}}}),
            ),
            (
                "EndpointSlice",
                json!({"addressType": "IPv4", "ports": [{"port": 80}]}),
            ),
            ("Endpoints", json!({"subsets": [{"ports": [{"port": 80}]}]})),
        ];
        for (kind, obj) in cases {
            let once = defaulted(kind, obj);
            let twice = defaulted(kind, once.clone());
            assert_eq!(once, twice, "{kind}");
        }
    }

    #[test]
    fn user_values_are_kept() {
        let d = defaulted(
            "Deployment",
            json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "revisionHistoryLimit": 0,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "a:1",
                "imagePullPolicy": "Never", "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 3}}]}}}}),
        );
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 0);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(pod["containers"][0]["readinessProbe"]["periodSeconds"], 3);
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v2", "IfNotPresent"),
            ("nginx@sha256:0123", "IfNotPresent"),
            ("nginx:latest@sha256:0123", "Always"),
            ("", "IfNotPresent"),
        ];
        for (image, want) in cases {
            let p = defaulted(
                "Pod",
                json!({"spec": {"containers": [{"name": "c", "image": image}]}}),
            );
            assert_eq!(
                p["spec"]["containers"][0]["imagePullPolicy"], want,
                "{image}"
            );
        }
    }

    #[test]
    fn pod_only_defaults() {
        let p = defaulted(
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i", "image": "busybox"}],
                "containers": [{"name": "c", "image": "nginx", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}}]}}),
        );
        let spec = &p["spec"];
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(
            spec["containers"][0]["resources"]["requests"],
            json!({"cpu": "100m", "memory": "64Mi"})
        );
        assert_eq!(
            spec["initContainers"][0]["terminationMessagePolicy"],
            "File"
        );
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn qos_classes() {
        let guaranteed = defaulted(
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}),
        );
        assert_eq!(guaranteed["status"]["qosClass"], "Guaranteed");
        let best_effort = defaulted(
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "image": "x"}]}}),
        );
        assert_eq!(best_effort["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn host_network_pods_get_host_ports() {
        let p = defaulted(
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}]}}),
        );
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    }

    #[test]
    fn volumes_and_env_defaults() {
        let p = defaulted(
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "image": "x",
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "lifecycle": {"preStop": {"httpGet": {"port": 80}}}}],
                "volumes": [{"name": "a"}, {"name": "b", "configMap": {"name": "cm"}}, {"name": "c", "secret": {"secretName": "s"}},
                    {"name": "d", "hostPath": {"path": "/tmp"}}, {"name": "e", "emptyDir": {}},
                    {"name": "f", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]}}),
        );
        let vols = &p["spec"]["volumes"];
        assert_eq!(vols[0]["emptyDir"], json!({}));
        assert_eq!(vols[1]["configMap"]["defaultMode"], 420);
        assert_eq!(vols[2]["secret"]["defaultMode"], 420);
        assert_eq!(vols[3]["hostPath"]["type"], "");
        assert_eq!(vols[4], json!({"name": "e", "emptyDir": {}}));
        assert_eq!(vols[5]["projected"]["defaultMode"], 420);
        assert_eq!(
            vols[5]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3600
        );
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["lifecycle"]["preStop"]["httpGet"],
            json!({"port": 80, "path": "/", "scheme": "HTTP"})
        );
    }

    #[test]
    fn service_defaults() {
        let s = defaulted(
            "Service",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "UDP"}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "https");
        assert_eq!(spec["ports"][1]["protocol"], "UDP");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert!(spec.get("clusterIPs").is_none());

        let lb = defaulted(
            "Service",
            json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(lb["spec"]["clusterIPs"], json!(["10.96.0.10"]));

        let headless = defaulted("Service", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");

        let ext = defaulted(
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(ext["spec"].get("ipFamilies").is_none());
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());

        let affinity = defaulted("Service", json!({"spec": {"sessionAffinity": "ClientIP"}}));
        assert_eq!(
            affinity["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
    }

    #[test]
    fn namespace_secret_node_and_endpoints() {
        let ns = defaulted("Namespace", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");

        let secret = defaulted(
            "Secret",
            json!({"stringData": {"user": "admin", "x": "hello!"}, "data": {"y": "eQ=="}}),
        );
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(
            secret["data"],
            json!({"y": "eQ==", "user": "YWRtaW4=", "x": "aGVsbG8h"})
        );
        assert!(secret.get("stringData").is_none());

        let node = defaulted(
            "Node",
            json!({"spec": {"podCIDR": "10.244.0.0/24"}, "status": {"capacity": {"cpu": "4"}}}),
        );
        assert_eq!(node["spec"]["podCIDRs"], json!(["10.244.0.0/24"]));
        assert_eq!(node["status"]["allocatable"], json!({"cpu": "4"}));

        let eps = defaulted(
            "Endpoints",
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
        );
        assert_eq!(eps["subsets"][0]["ports"][0]["protocol"], "TCP");
        let slice = defaulted("EndpointSlice", json!({"ports": [{"port": 80}]}));
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
    }

    #[test]
    fn daemon_sets_roll_one_node_at_a_time_by_default() {
        let ds = defaulted(
            "DaemonSet",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}}),
        );
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(ds["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        let on_delete = defaulted(
            "DaemonSet",
            json!({"spec": {"updateStrategy": {"type": "OnDelete"}, "revisionHistoryLimit": 0}}),
        );
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
        assert_eq!(on_delete["spec"]["revisionHistoryLimit"], 0);
    }

    #[test]
    fn weird_inputs_do_not_panic() {
        for kind in [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "DaemonSet",
            "Service",
            "Namespace",
            "Node",
            "Secret",
            "Endpoints",
            "EndpointSlice",
            "Event",
            "Other",
        ] {
            for v in [
                json!(null),
                json!("x"),
                json!({"spec": "x", "metadata": 3, "status": []}),
                json!({"spec": {"containers": "x", "template": [], "ports": {"a": 1}, "strategy": 1, "volumes": [1, null]}}),
                json!({"spec": {"containers": [{"ports": "x", "livenessProbe": 3, "resources": {"limits": 4}}]}, "stringData": 5, "subsets": [{"ports": 1}]}),
                json!({"spec": {"template": {"spec": {"containers": [null, {"image": 7}]}}}}),
            ] {
                let _ = defaulted(kind, v);
            }
        }
    }

    #[test]
    fn unknown_kinds_are_untouched() {
        let v = json!({"spec": {"replicas": null}});
        assert_eq!(defaulted("StatefulSet", v.clone()), v);
        assert_eq!(
            defaulted("ConfigMap", json!({"data": {}})),
            json!({"data": {}})
        );
    }
}
