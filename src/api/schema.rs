//! Typed schema check for built-in kinds.
//!
//! This module owns the question "does this JSON object have the right field types for its
//! kind, and which of its fields are unknown?". It answers it with k8s-openapi only: the object
//! is deserialized into the kind's generated type (through `serde_path_to_error`, so a type error
//! names the offending path), serialized back, and every non-null key of the input that the round
//! trip dropped is reported as an unknown field (`spec.template.spec.containers[0].imagee`).
//! Only key presence is compared; values that the round trip rewrites (quantities, times,
//! numbers, base64) never count.

use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use serde_path_to_error::Segment;

use k8s_openapi::api::apps::v1 as apps_v1;
use k8s_openapi::api::autoscaling::v1 as autoscaling_v1;
use k8s_openapi::api::batch::v1 as batch_v1;
use k8s_openapi::api::coordination::v1 as coordination_v1;
use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::api::discovery::v1 as discovery_v1;
use k8s_openapi::api::events::v1 as events_v1;
use k8s_openapi::api::rbac::v1 as rbac_v1;

const RBAC: &str = "rbac.authorization.k8s.io/v1";
use k8s_openapi::api::storage::v1 as storage_v1;

/// The body does not fit the kind's types.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The body does not fit the kind's types: Kubernetes answers 400 BadRequest with a message like
    /// `Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`; ours: `Deployment in version "v1" cannot be handled as a Deployment: spec.replicas: invalid type: string "x", expected i32`.
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}")]
    Type {
        kind: String,
        version: String,
        detail: String,
    },
}

/// Deserializes an object into a kind's type and serializes it back.
/// `Err` carries the path-qualified type error; `Ok(None)` means the round trip could not be
/// serialized, so nothing can be said about unknown fields.
type RoundTrip = fn(&Value) -> Result<Option<Value>, String>;

/// The kinds with a typed schema: (apiVersion, kind, round trip).
const KINDS: &[(&str, &str, RoundTrip)] = &[
    ("v1", "Namespace", round_trip::<core_v1::Namespace>),
    ("v1", "Pod", round_trip::<core_v1::Pod>),
    ("v1", "Node", round_trip::<core_v1::Node>),
    ("v1", "Service", round_trip::<core_v1::Service>),
    ("v1", "Endpoints", round_trip::<core_v1::Endpoints>),
    ("v1", "ConfigMap", round_trip::<core_v1::ConfigMap>),
    ("v1", "Secret", round_trip::<core_v1::Secret>),
    ("v1", "Event", round_trip::<core_v1::Event>),
    (
        "v1",
        "ServiceAccount",
        round_trip::<core_v1::ServiceAccount>,
    ),
    ("v1", "Binding", round_trip::<core_v1::Binding>),
    (
        "v1",
        "PersistentVolumeClaim",
        round_trip::<core_v1::PersistentVolumeClaim>,
    ),
    (
        "v1",
        "PersistentVolume",
        round_trip::<core_v1::PersistentVolume>,
    ),
    (
        "storage.k8s.io/v1",
        "StorageClass",
        round_trip::<storage_v1::StorageClass>,
    ),
    ("apps/v1", "Deployment", round_trip::<apps_v1::Deployment>),
    ("apps/v1", "ReplicaSet", round_trip::<apps_v1::ReplicaSet>),
    ("batch/v1", "Job", round_trip::<batch_v1::Job>),
    ("batch/v1", "CronJob", round_trip::<batch_v1::CronJob>),
    ("apps/v1", "DaemonSet", round_trip::<apps_v1::DaemonSet>),
    (
        "apps/v1",
        "ControllerRevision",
        round_trip::<apps_v1::ControllerRevision>,
    ),
    (
        "discovery.k8s.io/v1",
        "EndpointSlice",
        round_trip::<discovery_v1::EndpointSlice>,
    ),
    (
        "coordination.k8s.io/v1",
        "Lease",
        round_trip::<coordination_v1::Lease>,
    ),
    ("events.k8s.io/v1", "Event", round_trip::<events_v1::Event>),
    (RBAC, "Role", round_trip::<rbac_v1::Role>),
    (RBAC, "ClusterRole", round_trip::<rbac_v1::ClusterRole>),
    (RBAC, "RoleBinding", round_trip::<rbac_v1::RoleBinding>),
    (
        RBAC,
        "ClusterRoleBinding",
        round_trip::<rbac_v1::ClusterRoleBinding>,
    ),
    (
        "autoscaling/v1",
        "Scale",
        round_trip::<autoscaling_v1::Scale>,
    ),
];

/// How many lenient fixes (see [`lenient_fix`]) one object may need before we give up.
const MAX_FIXES: usize = 256;

/// Checks `obj` (which has apiVersion/kind) against the typed schema of `api_version`+`kind`.
/// Ok(list of unknown field paths, possibly empty). Kinds without a typed schema here: Ok(vec![]).
pub fn check(api_version: &str, kind: &str, obj: &Value) -> Result<Vec<String>, SchemaError> {
    check_and_prune(api_version, kind, &mut obj.clone())
}

/// Whether this group/version/kind is known to the schema check.
pub fn is_known(api_version: &str, kind: &str) -> bool {
    lookup(api_version, kind).is_some()
}

fn lookup(api_version: &str, kind: &str) -> Option<RoundTrip> {
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, round_trip)| *round_trip)
}

/// `apps/v1` -> `v1`, `v1` -> `v1`.
fn version_of(api_version: &str) -> &str {
    api_version.rsplit('/').next().unwrap_or(api_version)
}

fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Option<Value>, String> {
    let typed: T = deserialize(obj)?;
    Ok(serde_json::to_value(&typed).ok())
}

/// Deserializes `obj` as `T`. The common case borrows `obj`; only when the first attempt trips
/// over a value that Kubernetes accepts but k8s-openapi does not (see [`lenient_fix`]) is the
/// object copied, fixed and retried.
fn deserialize<T: DeserializeOwned>(obj: &Value) -> Result<T, String> {
    let first = match serde_path_to_error::deserialize::<_, T>(obj) {
        Ok(typed) => return Ok(typed),
        Err(err) => err,
    };
    if lenient_fix(obj, &first).is_none() {
        return Err(first.to_string());
    }
    let mut patched = obj.clone();
    let mut err = first;
    for _ in 0..MAX_FIXES {
        let Some((path, fixed)) = lenient_fix(&patched, &err) else {
            break;
        };
        let Some(slot) = value_at_mut(&mut patched, &path) else {
            break;
        };
        *slot = fixed;
        match serde_path_to_error::deserialize::<_, T>(&patched) {
            Ok(typed) => return Ok(typed),
            Err(next) => err = next,
        }
    }
    Err(err.to_string())
}

/// Values that Kubernetes decodes but k8s-openapi rejects, with the form it accepts:
/// - `null` where a value is required (a list item, a map value): Go leaves the zero value;
/// - a fractional quantity (`cpu: 0.5`);
/// - a float with an integral value in an integer or int-or-string field (`replicas: 3.0`, as a
///   YAML-to-JSON conversion may produce).
///
/// Returns the path of the rejected value and its replacement.
fn lenient_fix(
    root: &Value,
    err: &serde_path_to_error::Error<serde_json::Error>,
) -> Option<(Vec<Segment>, Value)> {
    let message = err.inner().to_string();
    let (_, expected) = message.rsplit_once(", expected ")?;
    let path: Vec<Segment> = err.path().iter().cloned().collect();
    let fixed = match value_at(root, &path)? {
        Value::Null => zero_value(expected),
        Value::Number(number) if number.is_f64() => lenient_number(number, expected)?,
        _ => return None,
    };
    Some((path, fixed))
}

/// The JSON form of the zero value of the type serde describes as `expected`.
fn zero_value(expected: &str) -> Value {
    match expected {
        "Quantity" => Value::from("0"),
        "i32" | "i64" | "IntOrString" => Value::from(0),
        "a boolean" => Value::Bool(false),
        "a sequence" => Value::Array(Vec::new()),
        _ if expected.contains("string") => Value::from(""),
        _ => Value::Object(serde_json::Map::new()),
    }
}

fn lenient_number(number: &serde_json::Number, expected: &str) -> Option<Value> {
    match expected {
        "Quantity" => Some(Value::String(number.to_string())),
        "i32" | "i64" | "IntOrString" => number.as_f64().and_then(integral),
        _ => None,
    }
}

/// `3.0` -> `3`; `None` for fractions and out-of-range values.
fn integral(float: f64) -> Option<Value> {
    let in_range = (i64::MIN as f64..i64::MAX as f64).contains(&float);
    (float.fract() == 0.0 && in_range).then(|| Value::from(float as i64))
}

fn value_at<'a>(root: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(root, |value, segment| match segment {
        Segment::Seq { index } => value.get(index),
        Segment::Map { key } => value.get(key),
        _ => None,
    })
}

fn value_at_mut<'a>(root: &'a mut Value, path: &[Segment]) -> Option<&'a mut Value> {
    path.iter().try_fold(root, |value, segment| match segment {
        Segment::Seq { index } => value.get_mut(index),
        Segment::Map { key } => value.get_mut(key),
        _ => None,
    })
}

/// Appends to `unknown` the path of every non-null key of `input` that `typed` (its round trip)
/// lacks. `path` is the dotted path of `input`; it is restored before returning.
/// [`check`], then drops the unknown fields from `obj`, as kube-apiserver's decoding
/// into typed structs drops them (`fieldValidation=Ignore` or `Warn`).
pub fn check_and_prune(
    api_version: &str,
    kind: &str,
    obj: &mut Value,
) -> Result<Vec<String>, SchemaError> {
    let Some(round_trip) = lookup(api_version, kind) else {
        return Ok(Vec::new());
    };
    let typed = round_trip(obj).map_err(|detail| SchemaError::Type {
        kind: kind.to_string(),
        version: version_of(api_version).to_string(),
        detail,
    })?;
    let mut unknown = Vec::new();
    if let Some(typed) = typed {
        collect_unknown(obj, &typed, &mut String::new(), &mut unknown);
        if !unknown.is_empty() {
            prune_unknown(obj, &typed);
        }
    }
    Ok(unknown)
}

/// Removes every non-null key of `input` that the typed round trip dropped.
fn prune_unknown(input: &mut Value, typed: &Value) {
    match (input, typed) {
        (Value::Object(fields), Value::Object(kept)) => {
            fields.retain(|key, value| value.is_null() || kept.contains_key(key));
            for (key, value) in fields.iter_mut() {
                if let Some(kept_value) = kept.get(key) {
                    prune_unknown(value, kept_value);
                }
            }
        }
        (Value::Array(items), Value::Array(kept)) => {
            for (item, kept_item) in items.iter_mut().zip(kept) {
                prune_unknown(item, kept_item);
            }
        }
        _ => {}
    }
}

fn collect_unknown(input: &Value, typed: &Value, path: &mut String, unknown: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(fields), Value::Object(kept)) => {
            for (key, value) in fields {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match kept.get(key) {
                    Some(kept_value) => collect_unknown(value, kept_value, path, unknown),
                    None => unknown.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(items), Value::Array(kept)) => {
            for (index, (item, kept_item)) in items.iter().zip(kept).enumerate() {
                let len = path.len();
                let _ = write!(path, "[{index}]");
                collect_unknown(item, kept_item, path, unknown);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_pruned_where_they_are_and_known_ones_kept() {
        let mut obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap", "bogus": 1,
            "metadata": {"name": "c", "labels": {"odd.key/x": "y"}, "nope": true},
            "data": {"x": "1"},
        });
        let unknown = check_and_prune("v1", "ConfigMap", &mut obj).unwrap();
        assert_eq!(unknown, ["bogus", "metadata.nope"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "labels": {"odd.key/x": "y"}}, "data": {"x": "1"}})
        );
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i", "imagee": "x"}]}});
        let unknown = check_and_prune("v1", "Pod", &mut pod).unwrap();
        assert_eq!(unknown, ["spec.containers[1].imagee"]);
        assert_eq!(
            pod["spec"]["containers"][1],
            json!({"name": "b", "image": "i"})
        );
    }

    /// `/work/shared/fixtures/deployment.yaml` as kubectl sends it.
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

    fn unknown(api_version: &str, kind: &str, obj: &Value) -> Vec<String> {
        match check(api_version, kind, obj) {
            Ok(paths) => paths,
            Err(err) => panic!("{api_version} {kind}: unexpected type error: {err}"),
        }
    }

    fn type_error(api_version: &str, kind: &str, obj: &Value) -> String {
        match check(api_version, kind, obj) {
            Ok(paths) => panic!("{api_version} {kind}: expected a type error, got {paths:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn fixture_deployment_has_no_unknown_fields() {
        assert_eq!(
            unknown("apps/v1", "Deployment", &fixture_deployment()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn misspelt_spec_field_is_unknown() {
        let mut obj = fixture_deployment();
        obj["spec"]["replicass"] = json!(3);
        assert_eq!(unknown("apps/v1", "Deployment", &obj), ["spec.replicass"]);
    }

    #[test]
    fn misspelt_container_field_is_unknown_with_index() {
        let mut obj = fixture_deployment();
        obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
        obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPortt"] = json!(1);
        obj["metadata"]["labelz"] = json!({"a": "b"});
        assert_eq!(
            unknown("apps/v1", "Deployment", &obj),
            [
                "metadata.labelz",
                "spec.template.spec.containers[0].ports[0].hostPortt",
                "spec.template.spec.containers[0].imagee",
            ]
        );
    }

    #[test]
    fn top_level_unknown_field_is_reported() {
        let mut obj = fixture_deployment();
        obj["spek"] = json!({});
        assert_eq!(unknown("apps/v1", "Deployment", &obj), ["spek"]);
    }

    #[test]
    fn null_unknown_fields_are_not_reported() {
        let mut obj = fixture_deployment();
        obj["spec"]["replicass"] = Value::Null;
        assert_eq!(unknown("apps/v1", "Deployment", &obj), Vec::<String>::new());
    }

    #[test]
    fn wrong_type_is_a_type_error_naming_the_path() {
        let mut obj = fixture_deployment();
        obj["spec"]["replicas"] = json!("x");
        assert_eq!(
            type_error("apps/v1", "Deployment", &obj),
            "Deployment in version \"v1\" cannot be handled as a Deployment: \
             spec.replicas: invalid type: string \"x\", expected i32"
        );
    }

    #[test]
    fn wrong_type_in_a_list_names_the_index() {
        let mut obj = fixture_deployment();
        obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("80");
        let message = type_error("apps/v1", "Deployment", &obj);
        assert!(
            message
                .contains("spec.template.spec.containers[0].ports[0].containerPort: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_in_core_kind_reports_v1() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}});
        let message = type_error("v1", "ConfigMap", &obj);
        assert!(
            message.starts_with("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: data.a: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn non_object_body_is_a_type_error() {
        type_error("v1", "Pod", &json!("pod"));
        type_error("v1", "Pod", &json!([1, 2]));
        type_error(
            "v1",
            "Pod",
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": []}),
        );
    }

    #[test]
    fn mismatched_kind_in_body_is_a_type_error() {
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}});
        let message = type_error("v1", "Pod", &obj);
        assert!(
            message.ends_with("invalid value: string \"Service\", expected Pod"),
            "{message}"
        );
    }

    #[test]
    fn null_timestamp_and_empty_status_are_fine() {
        let mut obj = fixture_deployment();
        obj["metadata"]["creationTimestamp"] = Value::Null;
        obj["spec"]["template"]["metadata"]["creationTimestamp"] = Value::Null;
        obj["spec"]["strategy"] = json!({});
        obj["status"] = json!({});
        assert_eq!(unknown("apps/v1", "Deployment", &obj), Vec::<String>::new());
    }

    #[test]
    fn nulls_and_empty_collections_are_fine() {
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {}, "annotations": null, "finalizers": []},
            "spec": {
                "containers": [{"name": "c", "image": "i", "env": [], "args": null, "resources": {}}],
                "volumes": [],
                "tolerations": null,
                "nodeSelector": {}
            },
            "status": {"conditions": [], "containerStatuses": null}
        });
        assert_eq!(unknown("v1", "Pod", &obj), Vec::<String>::new());
    }

    #[test]
    fn required_fields_may_be_missing_or_null() {
        // Missing required fields are the validator's business (422), not a decoding error.
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": null,
                         "spec": {"selector": null, "template": {"spec": {"containers": null}}}});
        assert_eq!(unknown("apps/v1", "Deployment", &obj), Vec::<String>::new());
    }

    #[test]
    fn service_target_port_as_string_and_int() {
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    {"name": "metrics", "port": 9090, "targetPort": 9090}
                ]
            }
        });
        assert_eq!(unknown("v1", "Service", &obj), Vec::<String>::new());
        let mut bad = obj.clone();
        bad["spec"]["ports"][1]["targetPort"] = json!(true);
        assert!(
            type_error("v1", "Service", &bad).contains("spec.ports[1].targetPort: invalid type")
        );
    }

    #[test]
    fn quantities_as_strings_and_numbers() {
        let mut obj = fixture_deployment();
        obj["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({
            "limits": {"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": 2},
            "requests": {"cpu": 0.5, "memory": 1e9, "ephemeral-storage": "10G"}
        });
        obj["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "scratch", "emptyDir": {"sizeLimit": 1.5}}]);
        assert_eq!(unknown("apps/v1", "Deployment", &obj), Vec::<String>::new());
        obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!([]);
        let message = type_error("apps/v1", "Deployment", &obj);
        assert!(
            message.contains("spec.template.spec.containers[0].resources.limits.cpu: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn lenient_fixes_still_report_unknown_fields_and_later_errors() {
        let mut obj = fixture_deployment();
        obj["spec"]["replicas"] = json!(3.0);
        obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
            json!(0.25);
        obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
        assert_eq!(
            unknown("apps/v1", "Deployment", &obj),
            ["spec.template.spec.containers[0].imagee"]
        );
        obj["spec"]["replicas"] = json!(2.5);
        assert!(type_error("apps/v1", "Deployment", &obj)
            .contains("spec.replicas: invalid type: floating point"));
        obj["spec"]["replicas"] = json!(3);
        obj["spec"]["minReadySeconds"] = json!("x");
        assert!(type_error("apps/v1", "Deployment", &obj).contains("spec.minReadySeconds"));
    }

    #[test]
    fn unknown_kinds_are_not_checked() {
        let obj =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"anything": 1}});
        assert_eq!(check("example.com/v1", "Widget", &obj).ok(), Some(vec![]));
        assert_eq!(
            check("v1", "Widget", &json!("not even an object")).ok(),
            Some(vec![])
        );
        assert!(!is_known("example.com/v1", "Widget"));
        assert!(!is_known("apps/v1", "Pod"));
    }

    #[test]
    fn known_kinds() {
        for (api_version, kind) in [
            ("v1", "Namespace"),
            ("v1", "Pod"),
            ("v1", "Node"),
            ("v1", "Service"),
            ("v1", "Endpoints"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "Event"),
            ("v1", "ServiceAccount"),
            ("v1", "Binding"),
            ("v1", "PersistentVolumeClaim"),
            ("v1", "PersistentVolume"),
            ("storage.k8s.io/v1", "StorageClass"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "ReplicaSet"),
            ("apps/v1", "DaemonSet"),
            ("apps/v1", "ControllerRevision"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("coordination.k8s.io/v1", "Lease"),
            ("events.k8s.io/v1", "Event"),
            ("autoscaling/v1", "Scale"),
        ] {
            assert!(is_known(api_version, kind), "{api_version} {kind}");
            let obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "bogus": 1});
            assert_eq!(
                unknown(api_version, kind, &obj),
                ["bogus"],
                "{api_version} {kind}"
            );
        }
    }

    fn assert_clean(obj: &Value) {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        assert!(is_known(api_version, kind), "{api_version} {kind}");
        assert_eq!(
            unknown(api_version, kind, obj),
            Vec::<String>::new(),
            "{api_version} {kind}"
        );
    }

    fn managed_fields() -> Value {
        json!([{
            "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:replicas": {}}},
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "time": "2024-05-01T10:00:00Z"
        }, {
            "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}}}}},
            "manager": "kube-controller-manager",
            "operation": "Update",
            "subresource": "status",
            "time": "2024-05-01T10:00:05Z"
        }])
    }

    fn rich_container() -> Value {
        json!({
            "args": ["--port=8080"],
            "command": ["/app"],
            "env": [
                {"name": "A", "value": "1"},
                {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"containerName": "web", "divisor": "0", "resource": "limits.cpu"}}},
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}}
            ],
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
            "image": "nginx:1.27",
            "imagePullPolicy": "IfNotPresent",
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
            "livenessProbe": {"failureThreshold": 3, "httpGet": {"path": "/", "port": "http", "scheme": "HTTP",
                "httpHeaders": [{"name": "X", "value": "y"}]},
                "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1},
            "name": "web",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 2},
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": true, "runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "startupProbe": {"grpc": {"port": 9000, "service": "health"}},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "volumeMounts": [{"mountPath": "/data", "name": "data", "readOnly": true, "subPath": "x"}]
        })
    }

    fn rich_volumes() -> Value {
        json!([
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420, "items": [{"key": "a", "path": "a"}]}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
            {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"metadata": {"labels": {"a": "b"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}
        ])
    }

    #[test]
    fn full_deployment_with_status_is_clean() {
        assert_clean(&json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "annotations": {
                    "deployment.kubernetes.io/revision": "1",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\"}\n"
                },
                "creationTimestamp": "2024-05-01T10:00:00Z",
                "generation": 1,
                "labels": {"app": "web"},
                "managedFields": managed_fields(),
                "name": "web",
                "namespace": "default",
                "resourceVersion": "1234",
                "uid": "0b4f7c36-8b0f-4b3e-9c55-3c1f6f0b2a11"
            },
            "spec": {
                "progressDeadlineSeconds": 600,
                "replicas": 2,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}, "type": "RollingUpdate"},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}},
                                                "topologyKey": "kubernetes.io/hostname"}
                        }]}},
                        "containers": [rich_container()],
                        "dnsPolicy": "ClusterFirst",
                        "imagePullSecrets": [{"name": "regcred"}],
                        "initContainers": [{"name": "init", "image": "busybox", "command": ["true"], "restartPolicy": "Always"}],
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "restartPolicy": "Always",
                        "schedulerName": "default-scheduler",
                        "securityContext": {"fsGroup": 2000, "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
                        "terminationGracePeriodSeconds": 30,
                        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
                        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                                                       "labelSelector": {"matchLabels": {"app": "web"}}}],
                        "volumes": rich_volumes()
                    }
                }
            },
            "status": {
                "availableReplicas": 2,
                "conditions": [{
                    "lastTransitionTime": "2024-05-01T10:00:05Z",
                    "lastUpdateTime": "2024-05-01T10:00:05Z",
                    "message": "Deployment has minimum availability.",
                    "reason": "MinimumReplicasAvailable",
                    "status": "True",
                    "type": "Available"
                }],
                "observedGeneration": 1,
                "readyReplicas": 2,
                "replicas": 2,
                "updatedReplicas": 2
            }
        }));
    }

    #[test]
    fn full_replica_set_is_clean() {
        assert_clean(&json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": "web-7c5ddbdf54",
                "namespace": "default",
                "labels": {"app": "web", "pod-template-hash": "7c5ddbdf54"},
                "annotations": {"deployment.kubernetes.io/desired-replicas": "2"},
                "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true,
                                     "kind": "Deployment", "name": "web", "uid": "0b4f7c36-8b0f-4b3e-9c55-3c1f6f0b2a11"}],
                "generation": 1
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7c5ddbdf54"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
            },
            "status": {"availableReplicas": 2, "fullyLabeledReplicas": 2, "observedGeneration": 1,
                       "readyReplicas": 2, "replicas": 2,
                       "conditions": [{"type": "ReplicaFailure", "status": "False", "lastTransitionTime": "2024-05-01T10:00:05Z"}]}
        }));
    }

    fn rich_pod_status() -> Value {
        json!({
            "conditions": [
                {"lastProbeTime": null, "lastTransitionTime": "2024-05-01T10:00:03Z", "status": "True", "type": "PodReadyToStartContainers"},
                {"lastProbeTime": null, "lastTransitionTime": "2024-05-01T10:00:01Z", "status": "True", "type": "Initialized"},
                {"lastProbeTime": null, "lastTransitionTime": "2024-05-01T10:00:04Z", "status": "True", "type": "Ready"},
                {"lastProbeTime": null, "lastTransitionTime": "2024-05-01T10:00:04Z", "status": "True", "type": "ContainersReady"},
                {"lastProbeTime": null, "lastTransitionTime": "2024-05-01T10:00:01Z", "status": "True", "type": "PodScheduled"}
            ],
            "containerStatuses": [{
                "allocatedResources": {"cpu": "100m"},
                "containerID": "containerd://abc",
                "image": "docker.io/library/nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:abc",
                "lastState": {"terminated": {"containerID": "containerd://old", "exitCode": 137, "finishedAt": "2024-05-01T10:00:02Z",
                                              "reason": "OOMKilled", "signal": 9, "startedAt": "2024-05-01T10:00:01Z", "message": "oom"}},
                "name": "web",
                "ready": true,
                "resources": {"requests": {"cpu": "100m"}},
                "restartCount": 1,
                "started": true,
                "state": {"running": {"startedAt": "2024-05-01T10:00:03Z"}},
                "user": {"linux": {"gid": 0, "supplementalGroups": [0, 1], "uid": 0}},
                "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-x",
                                  "readOnly": true, "recursiveReadOnly": "Disabled"}]
            }],
            "initContainerStatuses": [{
                "image": "busybox", "imageID": "", "name": "init", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing", "message": "waiting"}}, "lastState": {}
            }],
            "hostIP": "192.0.2.10",
            "hostIPs": [{"ip": "192.0.2.10"}],
            "phase": "Running",
            "podIP": "10.42.0.5",
            "podIPs": [{"ip": "10.42.0.5"}],
            "qosClass": "Burstable",
            "startTime": "2024-05-01T10:00:01Z"
        })
    }

    fn rich_pod_spec() -> Value {
        json!({
            "containers": [{
                "image": "nginx:1.27",
                "imagePullPolicy": "IfNotPresent",
                "name": "web",
                "ports": [{"containerPort": 80, "protocol": "TCP", "hostPort": 8080, "hostIP": "0.0.0.0"}],
                "resources": {"requests": {"cpu": "100m"}, "claims": [{"name": "gpu"}]},
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
                "stdin": false,
                "tty": false,
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                  "name": "kube-api-access-x", "readOnly": true,
                                  "recursiveReadOnly": "Disabled", "mountPropagation": "None"}]
            }],
            "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}], "searches": ["a.b"]},
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local"]}],
            "hostNetwork": false,
            "nodeName": "edge-1",
            "os": {"name": "linux"},
            "overhead": {"cpu": "10m"},
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "priorityClassName": "default",
            "readinessGates": [{"conditionType": "example.com/ready"}],
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu-template"}],
            "restartPolicy": "Always",
            "runtimeClassName": "runc",
            "schedulerName": "default-scheduler",
            "schedulingGates": [{"name": "example.com/gate"}],
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "shareProcessNamespace": false,
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
            ],
            "volumes": [{
                "name": "kube-api-access-x",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                        {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}
                    ]
                }
            }]
        })
    }

    #[test]
    fn full_pod_with_status_is_clean() {
        assert_clean(&json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "creationTimestamp": "2024-05-01T10:00:01Z",
                "deletionGracePeriodSeconds": 30,
                "deletionTimestamp": "2024-05-01T11:00:01Z",
                "finalizers": ["example.com/x"],
                "generateName": "web-7c5ddbdf54-",
                "labels": {"app": "web", "pod-template-hash": "7c5ddbdf54"},
                "managedFields": managed_fields(),
                "name": "web-7c5ddbdf54-abcde",
                "namespace": "default",
                "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true,
                                     "kind": "ReplicaSet", "name": "web-7c5ddbdf54", "uid": "5e1c"}],
                "resourceVersion": "5678",
                "uid": "9a0e"
            },
            "spec": rich_pod_spec(),
            "status": rich_pod_status()
        }));
    }

    #[test]
    fn full_node_with_status_is_clean() {
        assert_clean(&json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                "creationTimestamp": "2024-05-01T09:00:00Z",
                "labels": {"beta.kubernetes.io/arch": "amd64", "kubernetes.io/hostname": "edge-1",
                           "node-role.kubernetes.io/control-plane": ""},
                "name": "edge-1",
                "resourceVersion": "42",
                "uid": "n1"
            },
            "spec": {
                "podCIDR": "10.42.0.0/24",
                "podCIDRs": ["10.42.0.0/24"],
                "providerID": "skiff://edge-1",
                "taints": [{"effect": "NoSchedule", "key": "node.kubernetes.io/not-ready", "timeAdded": "2024-05-01T09:00:00Z"}],
                "unschedulable": false
            },
            "status": {
                "addresses": [{"address": "192.0.2.10", "type": "InternalIP"}, {"address": "edge-1", "type": "Hostname"}],
                "allocatable": {"cpu": "2", "ephemeral-storage": "19586931083", "hugepages-2Mi": "0", "memory": "24367612Ki", "pods": "110"},
                "capacity": {"cpu": 2, "ephemeral-storage": "20134592Ki", "hugepages-2Mi": "0", "memory": "24470012Ki", "pods": 110},
                "conditions": [
                    {"lastHeartbeatTime": "2024-05-01T10:00:00Z", "lastTransitionTime": "2024-05-01T09:00:00Z",
                     "message": "kubelet has sufficient memory available", "reason": "KubeletHasSufficientMemory",
                     "status": "False", "type": "MemoryPressure"},
                    {"lastHeartbeatTime": "2024-05-01T10:00:00Z", "lastTransitionTime": "2024-05-01T09:00:10Z",
                     "message": "kubelet is posting ready status", "reason": "KubeletReady", "status": "True", "type": "Ready"}
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "features": {"supplementalGroupsPolicy": true},
                "images": [{"names": ["docker.io/library/nginx@sha256:abc", "docker.io/library/nginx:1.27"], "sizeBytes": 72099410}],
                "nodeInfo": {
                    "architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://1.7.22",
                    "kernelVersion": "6.1.0", "kubeProxyVersion": "v1.32.0", "kubeletVersion": "v1.32.0",
                    "machineID": "m", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": "s"
                },
                "runtimeHandlers": [{"name": "runc", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": false}}],
                "volumesAttached": [{"devicePath": "/dev/sdb", "name": "kubernetes.io/csi/x"}],
                "volumesInUse": ["kubernetes.io/csi/x"]
            }
        }));
    }

    #[test]
    fn full_service_is_clean() {
        assert_clean(&json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {
                "allocateLoadBalancerNodePorts": true,
                "clusterIP": "10.43.0.10",
                "clusterIPs": ["10.43.0.10"],
                "externalTrafficPolicy": "Cluster",
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "ports": [{"name": "http", "nodePort": 30080, "port": 80, "protocol": "TCP", "targetPort": 8080, "appProtocol": "http"}],
                "selector": {"app": "web"},
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                "trafficDistribution": "PreferClose",
                "type": "LoadBalancer"
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z",
                                "reason": "Ok", "message": "", "observedGeneration": 1}],
                "loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]}]}
            }
        }));
    }

    #[test]
    fn endpoints_and_endpoint_slices_are_clean() {
        assert_clean(&json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-05-01T10:00:04Z"}},
            "subsets": [{
                "addresses": [{"ip": "10.42.0.5", "nodeName": "edge-1",
                               "targetRef": {"kind": "Pod", "name": "web-abcde", "namespace": "default", "uid": "9a0e"}}],
                "notReadyAddresses": [{"ip": "10.42.0.6", "hostname": "h"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            }]
        }));
        assert_clean(&json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-x7k2p", "namespace": "default", "generateName": "web-",
                         "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": ["10.42.0.5"],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "edge-1",
                "targetRef": {"kind": "Pod", "name": "web-abcde", "namespace": "default", "uid": "9a0e"},
                "zone": "z1",
                "hints": {"forZones": [{"name": "z1"}]}
            }],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
        }));
    }

    #[test]
    fn config_maps_secrets_and_service_accounts_are_clean() {
        assert_clean(&json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "default"},
            "data": {"a": "1", "config.yaml": "x: 1\n"},
            "binaryData": {"b": "AAEC"},
            "immutable": false
        }));
        assert_clean(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default"},
            "data": {"password": "cGFzcw==", "empty": ""},
            "stringData": {"user": "admin"},
            "type": "Opaque"
        }));
        assert_clean(&json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "default"},
            "automountServiceAccountToken": true,
            "imagePullSecrets": [{"name": "regcred"}],
            "secrets": [{"name": "tok", "namespace": "default"}]
        }));
        assert_clean(&json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "team"}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active", "conditions": [{"type": "NamespaceDeletionDiscoveryFailure", "status": "False",
                                                          "lastTransitionTime": "2024-05-01T10:00:00Z"}]}
        }));
        let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "not base64!"}});
        assert!(type_error("v1", "Secret", &bad).contains("data.k"));
    }

    #[test]
    fn events_leases_bindings_and_scales_are_clean() {
        assert_clean(&json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.17c", "namespace": "default"},
            "action": "Binding",
            "count": 1,
            "eventTime": "2024-05-01T10:00:01.123456Z",
            "firstTimestamp": "2024-05-01T10:00:01Z",
            "lastTimestamp": null,
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-abcde", "namespace": "default",
                               "resourceVersion": "5678", "uid": "9a0e", "fieldPath": "spec.containers{web}"},
            "message": "Successfully assigned default/web-abcde to edge-1",
            "reason": "Scheduled",
            "related": {"kind": "Node", "name": "edge-1"},
            "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler-edge-1",
            "series": {"count": 2, "lastObservedTime": "2024-05-01T10:00:02.000000Z"},
            "source": {"component": "default-scheduler", "host": "edge-1"},
            "type": "Normal"
        }));
        assert_clean(&json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.17d", "namespace": "default"},
            "action": "Pulling",
            "deprecatedCount": 1,
            "deprecatedFirstTimestamp": "2024-05-01T10:00:01Z",
            "deprecatedLastTimestamp": "2024-05-01T10:00:01Z",
            "deprecatedSource": {"component": "kubelet", "host": "edge-1"},
            "eventTime": "2024-05-01T10:00:01.000000Z",
            "note": "Pulling image \"nginx\"",
            "reason": "Pulling",
            "regarding": {"kind": "Pod", "name": "web-abcde", "namespace": "default"},
            "reportingController": "kubelet",
            "reportingInstance": "edge-1",
            "series": {"count": 3, "lastObservedTime": "2024-05-01T10:00:03.000000Z"},
            "type": "Normal"
        }));
        assert_clean(&json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "edge-1", "namespace": "kube-node-lease",
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "edge-1", "uid": "n1"}]},
            "spec": {"holderIdentity": "edge-1", "leaseDurationSeconds": 40, "renewTime": "2024-05-01T10:00:00.000000Z",
                     "acquireTime": "2024-05-01T09:00:00.000000Z", "leaseTransitions": 0}
        }));
        assert_clean(&json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "web-abcde", "namespace": "default"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "edge-1"}
        }));
        assert_clean(&json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"replicas": 5},
            "status": {"replicas": 2, "selector": "app=web"}
        }));
    }

    #[test]
    fn typos_deep_in_rich_objects_are_found() {
        let mut spec = rich_pod_spec();
        spec["containers"][0]["volumeMounts"][0]["mountPth"] = json!("/x");
        spec["volumes"][0]["projected"]["sources"][1]["configMap"]["itemz"] = json!([]);
        let mut status = rich_pod_status();
        status["containerStatuses"][0]["state"]["running"]["startedAtt"] = json!("now");
        status["conditions"][2]["lastProbeTimee"] = json!("2024-05-01T10:00:04Z");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec, "status": status});
        assert_eq!(
            unknown("v1", "Pod", &pod),
            [
                "spec.containers[0].volumeMounts[0].mountPth",
                "spec.volumes[0].projected.sources[1].configMap.itemz",
                "status.conditions[2].lastProbeTimee",
                "status.containerStatuses[0].state.running.startedAtt",
            ]
        );
    }

    #[test]
    fn wrong_types_in_status_and_times_are_type_errors() {
        let mut status = rich_pod_status();
        status["containerStatuses"][0]["restartCount"] = json!("1");
        let pod =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": status});
        assert!(type_error("v1", "Pod", &pod)
            .contains("status.containerStatuses[0].restartCount: invalid type"));
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "creationTimestamp": "yesterday"}});
        assert!(type_error("v1", "Pod", &pod).contains("metadata.creationTimestamp: "));
    }

    #[test]
    fn integral_float_target_port_is_accepted() {
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                         "spec": {"ports": [{"port": 80.0, "targetPort": 8080.0}]}});
        assert_eq!(unknown("v1", "Service", &obj), Vec::<String>::new());
    }

    #[test]
    fn nulls_in_lists_and_maps_decode_as_zero_values() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": null}, "finalizers": [null]},
            "spec": {"containers": [null, {"name": "c", "args": [null], "resources": {"limits": {"cpu": null}}}],
                     "tolerations": [null], "hostAliases": [{"hostnames": [null]}]}
        });
        assert_eq!(unknown("v1", "Pod", &obj), Vec::<String>::new());
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                            "data": {"k": null}, "stringData": {"u": null}});
        assert_eq!(unknown("v1", "Secret", &secret), Vec::<String>::new());
    }
}
