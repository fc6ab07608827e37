//! Admission for the storage kinds, as upstream's plugins do it on create:
//! - `DefaultStorageClass`: a PersistentVolumeClaim without `storageClassName`
//!   (absent or null; `""` means "no class" and is kept) gets the name of the
//!   default StorageClass (annotation `storageclass.kubernetes.io/is-default-class:
//!   "true"`, or its beta form); with several defaults the newest wins, as in 1.28+.
//! - `StorageObjectInUseProtection`: claims get the `kubernetes.io/pvc-protection`
//!   finalizer and volumes `kubernetes.io/pv-protection`; the protection controller
//!   (`controllers::storage::protection`) removes them once nothing uses the object.
//!
//! May call: the store (through `ApiState`) to read StorageClasses.

use serde_json::{json, Value};

use super::status::ApiError;
use super::{object, resources, SharedState};
use crate::store::ListRequest;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Admits a PersistentVolumeClaim or PersistentVolume being created.
pub async fn admit(state: &SharedState, kind: &str, obj: &mut Value) -> Result<(), ApiError> {
    match kind {
        "PersistentVolumeClaim" => {
            if obj["spec"].is_object() && obj["spec"]["storageClassName"].is_null() {
                if let Some(class) = default_class(state).await? {
                    obj["spec"]["storageClassName"] = json!(class);
                }
            }
            add_finalizer(obj, PVC_PROTECTION);
        }
        "PersistentVolume" => add_finalizer(obj, PV_PROTECTION),
        _ => {}
    }
    Ok(())
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = object::metadata_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut() {
        if !items.iter().any(|f| f == finalizer) {
            items.push(json!(finalizer));
        }
    }
}

/// Whether a StorageClass is marked the default.
pub fn is_default_class(class: &Value) -> bool {
    let annotations = &class["metadata"]["annotations"];
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| annotations[*a].as_str() == Some("true"))
}

/// The default class's name: among the defaults, the newest (then by name).
pub fn pick_default(classes: &[Value]) -> Option<String> {
    classes
        .iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            let created = |c: &Value| {
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            };
            created(a)
                .cmp(&created(b))
                .then_with(|| object::name(b).cmp(object::name(a)))
        })
        .map(|c| object::name(c).to_string())
}

async fn default_class(state: &SharedState) -> Result<Option<String>, ApiError> {
    let resource =
        resources::find("storage.k8s.io", "v1", "storageclasses").ok_or_else(ApiError::no_route)?;
    let listed = state
        .store
        .list(ListRequest {
            prefix: resource.prefix(None),
            ..Default::default()
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let classes: Vec<Value> = listed
        .entries
        .iter()
        .filter_map(|e| object::from_entry(e).ok())
        .collect();
    Ok(pick_default(&classes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_default_class_wins() {
        let class = |name: &str, created: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {DEFAULT_CLASS_ANNOTATION: if default {"true"} else {"false"}}}})
        };
        assert_eq!(
            pick_default(&[class("a", "2024-01-01T00:00:00Z", false)]),
            None
        );
        let classes = [
            class("old", "2024-01-01T00:00:00Z", true),
            class("new", "2024-02-01T00:00:00Z", true),
            class("plain", "2024-03-01T00:00:00Z", false),
        ];
        assert_eq!(pick_default(&classes).as_deref(), Some("new"));
    }

    #[test]
    fn finalizers_are_added_once() {
        let mut pv = json!({"metadata": {"name": "v", "finalizers": ["x"]}});
        add_finalizer(&mut pv, PV_PROTECTION);
        add_finalizer(&mut pv, PV_PROTECTION);
        assert_eq!(pv["metadata"]["finalizers"], json!(["x", PV_PROTECTION]));
    }
}
