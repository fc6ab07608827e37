//! Server-side apply (`application/apply-patch+yaml`): the applied configuration is
//! merged into the live object, and each field manager's applied fields are recorded
//! in `metadata.managedFields` (FieldsV1), so that a field a manager applied before
//! and leaves out now is removed, and a field another manager applied is not silently
//! taken over (409 Conflict unless `force=true`).
//!
//! Simplification (documented in docs/adr/0003): lists are owned as a whole (atomic),
//! and only Apply managers are tracked; plain updates do not record ownership.

use serde_json::{json, Map, Value};

use crate::api::status::ApiError;

/// Fields nobody owns: identity and type.
const UNOWNED: &[&str] = &["apiVersion", "kind"];
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
];

pub struct ApplyRequest<'a> {
    pub applied: &'a Value,
    pub manager: &'a str,
    pub force: bool,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// The FieldsV1 set of an applied configuration.
pub fn field_set(applied: &Value) -> Value {
    field_set_at(applied, true)
}

fn field_set_at(value: &Value, top: bool) -> Value {
    let Some(map) = value.as_object() else {
        return json!({});
    };
    let mut set = Map::new();
    for (key, child) in map {
        if top && UNOWNED.contains(&key.as_str()) {
            continue;
        }
        let child_set = if top && key == "metadata" {
            let set = metadata_set(child);
            // Only unowned identity fields (name, namespace): no ownership to record,
            // as upstream's managed fields strip them too.
            if set.as_object().is_some_and(Map::is_empty) {
                continue;
            }
            set
        } else {
            field_set_at(child, false)
        };
        set.insert(format!("f:{key}"), child_set);
    }
    Value::Object(set)
}

fn metadata_set(metadata: &Value) -> Value {
    let mut set = field_set_at(metadata, false);
    if let Some(map) = set.as_object_mut() {
        for field in UNOWNED_METADATA {
            map.remove(&format!("f:{field}"));
        }
    }
    set
}

/// Leaf paths of a field set, as lists of keys (without the `f:` prefix).
fn leaves(set: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match set.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, child) in map {
                prefix.push(k.trim_start_matches("f:").to_string());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn set_contains(set: &Value, path: &[String]) -> bool {
    let mut node = set;
    for key in path {
        match node.get(format!("f:{key}")) {
            Some(child) => node = child,
            None => return false,
        }
    }
    true
}

fn lookup<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |node, key| node.get(key))
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for key in parents {
        match node.get_mut(key) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// Deep-merges `applied` into `live`: maps merge, everything else replaces.
fn merge_into(live: &mut Value, applied: &Value) {
    match (live.as_object_mut(), applied.as_object()) {
        (Some(live_map), Some(applied_map)) => {
            for (k, v) in applied_map {
                if v.is_null() {
                    live_map.remove(k);
                } else if let Some(existing) = live_map.get_mut(k) {
                    merge_into(existing, v);
                } else {
                    live_map.insert(k.clone(), v.clone());
                }
            }
        }
        _ => *live = applied.clone(),
    }
}

fn managed_fields(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn is_apply_by(entry: &Value, manager: &str) -> bool {
    entry["manager"] == manager && entry["operation"] == "Apply"
}

/// Applies `request.applied` to `live` (None: the object is created from it).
pub fn apply(live: Option<&Value>, request: &ApplyRequest<'_>) -> Result<Value, ApiError> {
    if !request.applied.is_object() {
        return Err(ApiError::bad_request(
            "apply configuration must be an object",
        ));
    }
    let new_set = field_set(request.applied);
    let mut entries = live.map(managed_fields).unwrap_or_default();
    let mut result = live.cloned().unwrap_or_else(|| json!({}));

    check_conflicts(&result, &mut entries, request, &new_set)?;
    remove_dropped_fields(&mut result, &entries, request.manager, &new_set);
    merge_into(&mut result, request.applied);

    entries.retain(|e| !is_apply_by(e, request.manager));
    entries.push(json!({
        "manager": request.manager,
        "operation": "Apply",
        "apiVersion": request.api_version,
        "time": request.now,
        "fieldsType": "FieldsV1",
        "fieldsV1": new_set,
    }));
    result["metadata"]["managedFields"] = Value::Array(entries);
    Ok(result)
}

/// Fields whose applied value differs from live and that another Apply manager owns.
fn check_conflicts(
    live: &Value,
    entries: &mut [Value],
    request: &ApplyRequest<'_>,
    new_set: &Value,
) -> Result<(), ApiError> {
    let mut paths = Vec::new();
    leaves(new_set, &mut Vec::new(), &mut paths);
    let mut conflicts = Vec::new();
    for path in paths {
        let applied = lookup(request.applied, &path);
        // Equal values are shared (both managers own the field); an applied empty
        // map sets no value of its own, so it cannot conflict either.
        let same = match (applied, lookup(live, &path)) {
            (Some(applied), Some(live)) => same_as_live(applied, live),
            (applied, live) => applied == live,
        };
        if same || applied.is_some_and(Value::is_object) {
            continue;
        }
        for entry in entries.iter_mut() {
            let other = entry["manager"].as_str().unwrap_or("").to_string();
            if other == request.manager || entry["operation"] != "Apply" {
                continue;
            }
            if set_contains(&entry["fieldsV1"], &path) {
                if request.force {
                    remove_path(&mut entry["fieldsV1"], &prefixed(&path));
                } else {
                    conflicts.push((other, path.join(".")));
                }
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, field)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\""), "field": format!(".{field}")})
        })
        .collect();
    let mut error = ApiError::conflict_message(conflict_message(&conflicts));
    error.details = Some(json!({"causes": causes}));
    Err(error)
}

/// kube-apiserver's wording: one conflict on one line, several grouped by manager.
fn conflict_message(conflicts: &[(String, String)]) -> String {
    if let [(manager, field)] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with \"{manager}\": .{field}");
    }
    let mut by_manager: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (manager, field) in conflicts {
        by_manager.entry(manager).or_default().push(field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with \"{manager}\":"));
        lines.extend(fields.iter().map(|f| format!("- .{f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Whether an applied value is what live holds, up to the fields the server
/// defaulted into live (e.g. a container's `imagePullPolicy` inside an atomic list).
fn same_as_live(applied: &Value, live: &Value) -> bool {
    match (applied, live) {
        (Value::Object(a), Value::Object(l)) => a
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| same_as_live(v, lv))),
        (Value::Array(a), Value::Array(l)) => {
            a.len() == l.len() && a.iter().zip(l).all(|(x, y)| same_as_live(x, y))
        }
        _ => applied == live,
    }
}

fn prefixed(path: &[String]) -> Vec<String> {
    path.iter().map(|k| format!("f:{k}")).collect()
}

/// Fields this manager applied before, left out now, and owned by no other Apply
/// manager, are removed.
fn remove_dropped_fields(result: &mut Value, entries: &[Value], manager: &str, new_set: &Value) {
    let Some(previous) = entries.iter().find(|e| is_apply_by(e, manager)) else {
        return;
    };
    let mut old_paths = Vec::new();
    leaves(&previous["fieldsV1"], &mut Vec::new(), &mut old_paths);
    for path in old_paths {
        let kept = set_contains(new_set, &path)
            || entries
                .iter()
                .filter(|e| !is_apply_by(e, manager) && e["operation"] == "Apply")
                .any(|e| set_contains(&e["fieldsV1"], &path));
        if !kept {
            remove_path(result, &path);
        }
    }
}

impl ApiError {
    fn conflict_message(message: String) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message,
            details: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(applied: &'a Value, manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            applied,
            manager,
            force,
            api_version: "v1",
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn creates_then_removes_fields_the_manager_dropped() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let created = apply(None, &request(&first, "kubectl", false)).unwrap();
        assert_eq!(created["data"], json!({"a": "1", "b": "2"}));
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let updated = apply(Some(&created), &request(&second, "kubectl", false)).unwrap();
        assert_eq!(updated["data"], json!({"a": "1"}));
        assert_eq!(
            updated["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced() {
        let a = json!({"spec": {"replicas": 1}});
        let live = apply(None, &request(&a, "alice", false)).unwrap();
        let b = json!({"spec": {"replicas": 3}});
        let err = apply(Some(&live), &request(&b, "bob", false)).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(err.message.contains("alice"));
        let forced = apply(Some(&live), &request(&b, "bob", true)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        // The same value is shared, not a conflict.
        assert!(apply(Some(&live), &request(&a, "bob", false)).is_ok());
    }

    #[test]
    fn identical_values_are_shared_between_managers() {
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"app": "x"}}, "data": {"a": "1"}});
        let mut live = apply(None, &request(&config, "a", false)).unwrap();
        // What the store adds must not make metadata look changed.
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("7");
        let shared = apply(Some(&live), &request(&config, "b", false)).unwrap();
        let managers: Vec<&str> = shared["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["a", "b"]);
        assert_eq!(
            shared["metadata"]["managedFields"][1]["fieldsV1"],
            json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
        );
        // a dropping the field leaves it to b.
        let only_name = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let after = apply(Some(&shared), &request(&only_name, "a", false)).unwrap();
        assert_eq!(after["data"], json!({"a": "1"}));
        let entries = after["metadata"]["managedFields"].as_array().unwrap();
        let of_a = entries.iter().find(|e| e["manager"] == "a").unwrap();
        assert_eq!(of_a["fieldsV1"], json!({}));
    }

    #[test]
    fn defaulted_lists_still_count_as_the_same_value() {
        let applied = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let mut live = apply(None, &request(&applied, "a", false)).unwrap();
        live["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        assert!(apply(Some(&live), &request(&applied, "b", false)).is_ok());
        let other = json!({"spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        assert_eq!(
            apply(Some(&live), &request(&other, "b", false))
                .unwrap_err()
                .code,
            409
        );
    }

    #[test]
    fn conflicts_read_like_kube_apiserver() {
        let a = json!({"data": {"x": "1", "y": "1"}});
        let live = apply(None, &request(&a, "a", false)).unwrap();
        let one = apply(
            Some(&live),
            &request(&json!({"data": {"x": "2"}}), "b", false),
        )
        .unwrap_err();
        assert_eq!(
            one.message,
            "Apply failed with 1 conflict: conflict with \"a\": .data.x"
        );
        assert_eq!(
            one.details.unwrap()["causes"],
            json!([{"reason": "FieldManagerConflict", "message": "conflict with \"a\"", "field": ".data.x"}])
        );
        let two = apply(
            Some(&live),
            &request(&json!({"data": {"x": "2", "y": "2"}}), "b", false),
        )
        .unwrap_err();
        assert_eq!(
            two.message,
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .data.x\n- .data.y"
        );
    }
}
