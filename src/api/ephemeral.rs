//! `pods/{name}/ephemeralcontainers` (GET, PUT, PATCH), as kube-apiserver serves it
//! for `kubectl debug`: the Pod itself is read and written, but a write changes only
//! `spec.ephemeralContainers`, and only by adding containers — existing ones may not
//! change or go. The rest of the checks (unique names across all containers, no
//! ports, probes, resources or lifecycle) are the Pod validation's
//! (`validation`, `ContainerKind::Ephemeral`); the Pod's own update path leaves
//! ephemeral containers alone (`keep_on_update`).
//!
//! Owns: the merge and the additions-only rule. May call: nothing but its inputs.

use serde_json::Value;

use super::status::ApiError;
use super::validation::{CauseReason, FieldError};

const FIELD: &str = "spec.ephemeralContainers";

fn list(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn name_of(container: &Value) -> &str {
    container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The stored pod with `input`'s ephemeral containers, if they only add to the
/// stored ones.
pub fn merge(existing: &Value, input: &Value) -> Result<Value, ApiError> {
    let old = list(existing);
    let new = list(input);
    let pod_name = existing
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut errors = Vec::new();
    for (i, before) in old.iter().enumerate() {
        let name = name_of(before);
        match new.iter().find(|c| name_of(c) == name) {
            None => errors.push(FieldError {
                field: FIELD.to_string(),
                reason: CauseReason::Forbidden,
                message: format!("existing ephemeral containers \"{name}\" may not be removed"),
            }),
            Some(after) if !same_container(before, after) => errors.push(FieldError {
                field: format!("{FIELD}[{i}]"),
                reason: CauseReason::Forbidden,
                message: format!("existing ephemeral containers \"{name}\" may not be changed"),
            }),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid("Pod", "", pod_name, &errors));
    }
    let mut merged = existing.clone();
    if new.is_empty() {
        if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("ephemeralContainers");
        }
    } else {
        merged["spec"]["ephemeralContainers"] = Value::Array(new);
    }
    Ok(merged)
}

/// Equal but for fields defaulting fills in (a client may send them back bare).
fn same_container(before: &Value, after: &Value) -> bool {
    let strip = |c: &Value| {
        let mut c = c.clone();
        if let Some(map) = c.as_object_mut() {
            for key in [
                "terminationMessagePath",
                "terminationMessagePolicy",
                "imagePullPolicy",
            ] {
                map.remove(key);
            }
        }
        c
    };
    strip(before) == strip(after)
}

/// A new Pod may not bring ephemeral containers (they are added to running pods).
pub fn forbid_on_create(pod: &Value) -> Result<(), ApiError> {
    if list(pod).is_empty() {
        return Ok(());
    }
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let error = FieldError {
        field: FIELD.to_string(),
        reason: CauseReason::Forbidden,
        message: "cannot be set on create".to_string(),
    };
    Err(ApiError::invalid("Pod", "", name, &[error]))
}

/// A Pod update through the main resource keeps the stored ephemeral containers.
pub fn keep_on_update(existing: &Value, new: &mut Value) {
    let old = existing.pointer("/spec/ephemeralContainers").cloned();
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match old {
        Some(list) => {
            spec.insert("ephemeralContainers".into(), list);
        }
        None => {
            spec.remove("ephemeralContainers");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ephemeral: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], "ephemeralContainers": ephemeral}})
    }

    #[test]
    fn additions_are_taken_and_nothing_else() {
        let stored = pod(json!([{"name": "d1", "image": "busybox"}]));
        let input = pod(json!([{"name": "d1", "image": "busybox"}, {"name": "d2", "image": "x"}]));
        let mut input = input;
        input["spec"]["containers"] = json!([{"name": "changed"}]);
        let merged = merge(&stored, &input).expect("addition");
        assert_eq!(merged["spec"]["ephemeralContainers"][1]["name"], "d2");
        assert_eq!(merged["spec"]["containers"][0]["name"], "c");

        let removed = merge(&stored, &pod(json!([]))).expect_err("removal");
        assert_eq!(removed.code, 422);
        assert!(
            removed.message.contains("may not be removed"),
            "{}",
            removed.message
        );
        let changed =
            merge(&stored, &pod(json!([{"name": "d1", "image": "other"}]))).expect_err("change");
        assert!(
            changed.message.contains("may not be changed"),
            "{}",
            changed.message
        );
        let defaulted =
            pod(json!([{"name": "d1", "image": "busybox", "imagePullPolicy": "Always"}]));
        assert!(merge(&stored, &defaulted).is_ok());
    }

    #[test]
    fn new_pods_bring_no_ephemeral_containers() {
        let err = forbid_on_create(&pod(json!([{"name": "d"}]))).expect_err("forbidden");
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains("cannot be set on create"),
            "{}",
            err.message
        );
        assert!(forbid_on_create(&pod(json!([]))).is_ok());
        assert!(forbid_on_create(&json!({"spec": {}})).is_ok());
    }

    #[test]
    fn main_updates_keep_the_stored_ephemeral_containers() {
        let stored = pod(json!([{"name": "d1"}]));
        let mut new = pod(json!([]));
        keep_on_update(&stored, &mut new);
        assert_eq!(new["spec"]["ephemeralContainers"][0]["name"], "d1");
        let mut added = pod(json!([{"name": "d9"}]));
        keep_on_update(&json!({"spec": {}}), &mut added);
        assert!(added["spec"].get("ephemeralContainers").is_none());
    }
}
