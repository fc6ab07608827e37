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
            metadata_set(child)
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
        if lookup(live, &path) == lookup(request.applied, &path) {
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
    let listing: Vec<String> = conflicts
        .iter()
        .map(|(m, f)| format!("conflict with \"{m}\": .{f}"))
        .collect();
    let mut error = ApiError::conflict_message(format!(
        "Apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        listing.join(", ")
    ));
    error.details = Some(json!({"causes": causes}));
    Err(error)
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
}
