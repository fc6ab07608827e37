//! What the API server itself does to batch/v1 Jobs on create, beyond defaulting:
//! the generated selector of upstream's Job registry strategy. Unless
//! `spec.manualSelector` is true, the pod template gets the labels
//! `batch.kubernetes.io/controller-uid` and `controller-uid` (the Job's uid),
//! `batch.kubernetes.io/job-name` and `job-name` (its name), each only where the user
//! did not set it, and the selector matches `batch.kubernetes.io/controller-uid`.
//! A user value that contradicts the generated one is left for validation to refuse.
//!
//! Owns: `generate_job_selector`. Calls nothing else in skiff.

use serde_json::{Map, Value};

pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Adds the generated labels and selector to a Job being created (a no-op with
/// `spec.manualSelector: true`, or when the object is not shaped like a Job).
pub fn generate_job_selector(job: &mut Value) {
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = job["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(labels) = object_at(spec, &["template", "metadata", "labels"]) {
        for (key, value) in [
            (LEGACY_JOB_NAME_LABEL, &name),
            (JOB_NAME_LABEL, &name),
            (LEGACY_CONTROLLER_UID_LABEL, &uid),
            (CONTROLLER_UID_LABEL, &uid),
        ] {
            labels
                .entry(key)
                .or_insert_with(|| Value::String(value.clone()));
        }
    }
    if let Some(match_labels) = object_at(spec, &["selector", "matchLabels"]) {
        match_labels
            .entry(CONTROLLER_UID_LABEL)
            .or_insert_with(|| Value::String(uid.clone()));
    }
}

/// The object at `path` below `m`, creating missing or null levels; `None` when a
/// level holds something that is not an object.
fn object_at<'a>(
    m: &'a mut Map<String, Value>,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let mut current = m;
    for key in path {
        let slot = current.entry(key.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        current = slot.as_object_mut()?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_labels_and_selector() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "x", "job-name": "mine"}}}}});
        generate_job_selector(&mut job);
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "x", "job-name": "mine", "batch.kubernetes.io/job-name": "pi",
                   "controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1"})
        );
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
    }

    #[test]
    fn manual_selectors_and_odd_shapes_are_left_alone() {
        let manual = json!({"metadata": {"name": "pi", "uid": "u1"},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}}});
        let mut job = manual.clone();
        generate_job_selector(&mut job);
        assert_eq!(job, manual);
        let mut odd = json!({"metadata": {"name": "pi"}, "spec": {"template": 3}});
        generate_job_selector(&mut odd);
        assert_eq!(odd["spec"]["template"], 3);
    }
}
