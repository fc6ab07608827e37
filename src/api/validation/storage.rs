//! Validation of the storage kinds, as upstream's `pkg/apis/core/validation`
//! (PersistentVolume, PersistentVolumeClaim) and `pkg/apis/storage/validation`
//! (StorageClass) check them on create and update: access modes, the storage
//! request or capacity, the class name, the volume mode, exactly one volume source,
//! the reclaim and binding policies; a claim's spec is immutable except that a bound
//! claim's storage request may grow (and an empty `volumeName` or
//! `storageClassName` may be filled in, as the binder and the default class do).
//!
//! A child of `validation`: it uses the parent's error collection and typed reads.

use super::*;

pub(super) const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: [&str; 2] = ["Block", "Filesystem"];
const PV_RECLAIM_POLICIES: [&str; 3] = ["Delete", "Recycle", "Retain"];
const SC_RECLAIM_POLICIES: [&str; 2] = ["Delete", "Retain"];
const BINDING_MODES: [&str; 2] = ["Immediate", "WaitForFirstConsumer"];

/// The volume sources a PersistentVolume may have (`PersistentVolumeSource`).
pub(crate) const PV_SOURCES: [&str; 21] = [
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
];

const PVC_IMMUTABLE_MSG: &str =
    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

fn validate_access_modes(e: &mut Errs, spec: &Obj, p: &str, required_msg: &str) {
    let modes = strs_at(e, spec, p, "accessModes");
    let path = child(p, "accessModes");
    if modes.is_empty() {
        e.required(&path, required_msg);
    }
    for (_, mode) in &modes {
        if !ACCESS_MODES.contains(mode) {
            e.not_supported(&path, Bad::Str(mode), &ACCESS_MODES);
        }
    }
    if modes.len() > 1 && modes.iter().any(|(_, m)| *m == "ReadWriteOncePod") {
        e.forbidden(
            &path,
            "may not use ReadWriteOncePod with other access modes",
        );
    }
}

fn validate_class_name(e: &mut Errs, spec: &Obj, p: &str) {
    if let Some(class) = opt_str_at(e, spec, p, "storageClassName") {
        if !class.is_empty() {
            for msg in dns1123_subdomain_errors(class) {
                e.invalid(&child(p, "storageClassName"), Bad::Str(class), &msg);
            }
        }
    }
}

fn validate_volume_mode(e: &mut Errs, spec: &Obj, p: &str) {
    if let Some(mode) = opt_str_at(e, spec, p, "volumeMode") {
        if !VOLUME_MODES.contains(&mode) {
            e.not_supported(&child(p, "volumeMode"), Bad::Str(mode), &VOLUME_MODES);
        }
    }
}

// --- PersistentVolumeClaim ---------------------------------------------------

pub(super) fn validate_pvc(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    validate_pvc_spec(e, spec, "spec");
}

/// ValidatePersistentVolumeClaimSpec (also for claim templates).
pub(crate) fn validate_pvc_spec(e: &mut Errs, spec: &Obj, p: &str) {
    validate_access_modes(e, spec, p, "at least 1 access mode is required");
    if let Some(selector) = get(spec, "selector") {
        validate_label_selector(e, selector, &child(p, "selector"));
    }
    let resources = child(p, "resources");
    let storage_path = key_path(&resources, "storage");
    let requests = obj_at(e, spec, p, "resources")
        .and_then(|r| obj_at(e, r, &resources, "requests"))
        .and_then(|r| get(r, "storage"));
    match requests {
        None => e.required(&storage_path, ""),
        Some(v) => {
            if let Some((text, value)) = quantity_at(e, v, &storage_path) {
                if value <= 0.0 {
                    e.invalid(&storage_path, Bad::Str(&text), "must be greater than zero");
                }
            }
        }
    }
    validate_class_name(e, spec, p);
    validate_volume_mode(e, spec, p);
}

pub(super) fn validate_pvc_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let spec_of = |o: &Obj| o.get("spec").cloned().unwrap_or(Value::Null);
    let (mut new_spec, mut old_spec) = (spec_of(new), spec_of(old));
    if !new_spec.is_object() || !old_spec.is_object() {
        if !same(Some(&new_spec), Some(&old_spec)) {
            e.forbidden("spec", PVC_IMMUTABLE_MSG);
        }
        return;
    }
    let bound = old
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        == Some("Bound");
    for field in ["volumeName", "storageClassName"] {
        if old_spec[field].as_str().unwrap_or("").is_empty() && !new_spec[field].is_null() {
            old_spec[field] = new_spec[field].clone();
        }
    }
    let new_size = new_spec["resources"]["requests"]["storage"].clone();
    let old_size = old_spec["resources"]["requests"]["storage"].clone();
    if bound && new_spec["resources"]["requests"].is_object() {
        new_spec["resources"]["requests"]["storage"] = old_size.clone();
        let size = |v: &Value| quantity_text(v).and_then(|t| parse_quantity(&t).ok());
        if let (Some(now), Some(before)) = (size(&new_size), size(&old_size)) {
            if now < before {
                e.forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than previous value",
                );
            }
        }
    }
    new_spec["volumeAttributesClassName"] = old_spec["volumeAttributesClassName"].clone();
    if !same(Some(&new_spec), Some(&old_spec)) {
        e.forbidden("spec", PVC_IMMUTABLE_MSG);
    }
}

// --- PersistentVolume --------------------------------------------------------

pub(super) fn validate_pv(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    let p = "spec";
    validate_access_modes(e, spec, p, "");
    let capacity_path = child(p, "capacity");
    match obj_at(e, spec, p, "capacity") {
        None => e.required(&capacity_path, ""),
        Some(capacity) if capacity.is_empty() => e.required(&capacity_path, ""),
        Some(capacity) => {
            if !capacity.contains_key("storage") || capacity.len() > 1 {
                e.not_supported(
                    &capacity_path,
                    Bad::Json(spec.get("capacity").unwrap_or(&Value::Null)),
                    &["storage"],
                );
            }
            for (name, v) in capacity {
                quantity_at(e, v, &key_path(&capacity_path, name));
            }
        }
    }
    if let Some(policy) = opt_str_at(e, spec, p, "persistentVolumeReclaimPolicy") {
        if !PV_RECLAIM_POLICIES.contains(&policy) {
            e.not_supported(
                &child(p, "persistentVolumeReclaimPolicy"),
                Bad::Str(policy),
                &PV_RECLAIM_POLICIES,
            );
        }
    }
    validate_class_name(e, spec, p);
    validate_volume_mode(e, spec, p);
    let affinity = obj_at(e, spec, p, "nodeAffinity");
    if let Some(affinity) = affinity {
        let path = child(p, "nodeAffinity");
        let required = obj_at(e, affinity, &path, "required");
        match required {
            None => e.required(
                &child(&path, "required"),
                "must specify required node constraints",
            ),
            Some(r) => {
                if objs_at(e, r, &child(&path, "required"), "nodeSelectorTerms").is_empty() {
                    e.required(
                        &child(&child(&path, "required"), "nodeSelectorTerms"),
                        "must have at least one node selector term",
                    );
                }
            }
        }
    }
    let mut count = 0;
    for key in PV_SOURCES {
        let Some(src) = get(spec, key) else {
            continue;
        };
        let src_path = child(p, key);
        if count > 0 {
            e.forbidden(&src_path, "may not specify more than 1 volume type");
            continue;
        }
        count += 1;
        let Some(src) = as_obj(e, src, &src_path) else {
            continue;
        };
        match key {
            "hostPath" => validate_one_source(e, key, src, &src_path),
            "local" => {
                let path = str_at(e, src, &src_path, "path");
                if path.is_empty() {
                    e.required(&child(&src_path, "path"), "");
                }
                if affinity.is_none() {
                    e.required(
                        &child(p, "nodeAffinity"),
                        "Local volume requires node affinity",
                    );
                }
            }
            "nfs" => validate_one_source(e, key, src, &src_path),
            _ => {}
        }
    }
    if count == 0 {
        e.required(p, "must specify a volume type");
    }
}

pub(super) fn validate_pv_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let (new_spec, old_spec) = (
        new.get("spec").unwrap_or(&Value::Null),
        old.get("spec").unwrap_or(&Value::Null),
    );
    let source = |spec: &Value| -> Value {
        let mut out = Obj::new();
        for key in PV_SOURCES {
            if let Some(v) = spec.get(key).filter(|v| !v.is_null()) {
                out.insert(key.to_string(), v.clone());
            }
        }
        Value::Object(out)
    };
    if !same(Some(&source(new_spec)), Some(&source(old_spec))) {
        e.forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is forbidden.",
        );
    }
    if !same(new_spec.get("volumeMode"), old_spec.get("volumeMode")) {
        e.invalid(
            "spec.volumeMode",
            Bad::Json(&new_spec["volumeMode"]),
            IMMUTABLE_MSG,
        );
    }
    let old_affinity = old_spec.get("nodeAffinity").filter(|v| !v.is_null());
    if old_affinity.is_some() && !same(new_spec.get("nodeAffinity"), old_affinity) {
        e.invalid(
            "nodeAffinity.required.nodeSelectorTerms",
            Bad::Json(&new_spec["nodeAffinity"]),
            IMMUTABLE_MSG,
        );
    }
}

// --- StorageClass ------------------------------------------------------------

pub(super) fn validate_storage_class(e: &mut Errs, root: &Obj) {
    let provisioner = str_at(e, root, "", "provisioner");
    if provisioner.is_empty() {
        e.required("provisioner", "");
    } else if provisioner.len() > 63 * 4 || provisioner.contains(char::is_whitespace) {
        e.invalid(
            "provisioner",
            Bad::Str(provisioner),
            "must be a qualified name",
        );
    }
    string_map_at(e, root, "", "parameters");
    if let Some(policy) = opt_str_at(e, root, "", "reclaimPolicy") {
        if !SC_RECLAIM_POLICIES.contains(&policy) {
            e.not_supported("reclaimPolicy", Bad::Str(policy), &SC_RECLAIM_POLICIES);
        }
    }
    match opt_str_at(e, root, "", "volumeBindingMode") {
        None => e.required("volumeBindingMode", ""),
        Some(mode) if !BINDING_MODES.contains(&mode) => {
            e.not_supported("volumeBindingMode", Bad::Str(mode), &BINDING_MODES)
        }
        Some(_) => {}
    }
    bool_at(e, root, "", "allowVolumeExpansion");
}

pub(super) fn validate_storage_class_update(e: &mut Errs, new: &Obj, old: &Obj) {
    if !same(new.get("parameters"), old.get("parameters")) {
        e.forbidden("parameters", "updates to parameters are forbidden.");
    }
    if new.get("provisioner") != old.get("provisioner") {
        e.forbidden("provisioner", "updates to provisioner are forbidden.");
    }
    if new.get("reclaimPolicy") != old.get("reclaimPolicy") {
        e.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.");
    }
    if new.get("volumeBindingMode") != old.get("volumeBindingMode") {
        e.invalid(
            "volumeBindingMode",
            Bad::Json(new.get("volumeBindingMode").unwrap_or(&Value::Null)),
            IMMUTABLE_MSG,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use serde_json::json;

    fn messages(kind: &str, obj: serde_json::Value, old: Option<serde_json::Value>) -> Vec<String> {
        validate(kind, &obj, old.as_ref())
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    fn pvc(spec: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "c", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn claims_need_access_modes_and_a_storage_request() {
        let errs = messages("PersistentVolumeClaim", pvc(json!({})), None);
        assert!(
            errs.contains(
                &"spec.accessModes: Required value: at least 1 access mode is required".to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.resources[storage]: Required value".to_string()),
            "{errs:?}"
        );
        let errs = messages(
            "PersistentVolumeClaim",
            pvc(
                json!({"accessModes": ["ReadWriteSometimes"], "volumeMode": "Disk",
                       "resources": {"requests": {"storage": "lots"}}}),
            ),
            None,
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("spec.accessModes: Unsupported value: \"ReadWriteSometimes\""));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.resources[storage]: Invalid value: \"lots\"")));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.volumeMode: Unsupported value: \"Disk\"")));
        let ok = pvc(
            json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                            "resources": {"requests": {"storage": "1Gi"}}}),
        );
        assert!(messages("PersistentVolumeClaim", ok, None).is_empty());
    }

    #[test]
    fn claim_specs_are_immutable_except_growth_when_bound() {
        let old = pvc(json!({"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}}));
        let mut bigger = old.clone();
        bigger["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        let errs = messages("PersistentVolumeClaim", bigger.clone(), Some(old.clone()));
        assert_eq!(
            errs,
            [format!("spec: Forbidden: {}", super::PVC_IMMUTABLE_MSG)]
        );
        let mut bound = old.clone();
        bound["status"] = json!({"phase": "Bound"});
        assert!(messages("PersistentVolumeClaim", bigger, Some(bound.clone())).is_empty());
        let mut smaller = old.clone();
        smaller["spec"]["resources"]["requests"]["storage"] = json!("500Mi");
        let errs = messages("PersistentVolumeClaim", smaller, Some(bound));
        assert_eq!(
            errs,
            ["spec.resources.requests.storage: Forbidden: field can not be less than previous value"]
        );
        let mut named = old.clone();
        named["spec"]["volumeName"] = json!("pv1");
        named["spec"]["storageClassName"] = json!("local-path");
        assert!(messages("PersistentVolumeClaim", named.clone(), Some(old)).is_empty());
        let mut renamed = named.clone();
        renamed["spec"]["volumeName"] = json!("pv2");
        assert_eq!(
            messages("PersistentVolumeClaim", renamed, Some(named)).len(),
            1
        );
    }

    #[test]
    fn volumes_need_exactly_one_source_capacity_and_valid_policies() {
        let pv = |spec: serde_json::Value| json!({"metadata": {"name": "v"}, "spec": spec});
        let errs = messages("PersistentVolume", pv(json!({})), None);
        assert!(
            errs.contains(&"spec.accessModes: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.capacity: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec: Required value: must specify a volume type".to_string()),
            "{errs:?}"
        );
        let errs = messages(
            "PersistentVolume",
            pv(
                json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                      "persistentVolumeReclaimPolicy": "Shred",
                      "hostPath": {"path": "/x"}, "local": {"path": "/y"}}),
            ),
            None,
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.persistentVolumeReclaimPolicy: Unsupported value: \"Shred\"")
        );
        assert_eq!(
            errs[1],
            "spec.local: Forbidden: may not specify more than 1 volume type"
        );
        let errs = messages(
            "PersistentVolume",
            pv(
                json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                      "local": {"path": "/y"}}),
            ),
            None,
        );
        assert_eq!(
            errs,
            ["spec.nodeAffinity: Required value: Local volume requires node affinity"]
        );
        let ok = pv(
            json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                           "hostPath": {"path": "/x", "type": ""}}),
        );
        assert!(messages("PersistentVolume", ok.clone(), None).is_empty());
        let mut moved = ok.clone();
        moved["spec"]["hostPath"]["path"] = json!("/z");
        assert_eq!(
            messages("PersistentVolume", moved, Some(ok)),
            ["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is forbidden."]
        );
    }

    #[test]
    fn storage_classes_need_a_provisioner_and_keep_their_policies() {
        let sc = json!({"metadata": {"name": "fast"}, "provisioner": "rancher.io/local-path",
                        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
        assert!(messages("StorageClass", sc.clone(), None).is_empty());
        let mut bad = sc.clone();
        bad["provisioner"] = json!("");
        bad["reclaimPolicy"] = json!("Recycle");
        let errs = messages("StorageClass", bad, None);
        assert_eq!(errs.len(), 2, "{errs:?}");
        let mut changed = sc.clone();
        changed["reclaimPolicy"] = json!("Retain");
        assert_eq!(
            messages("StorageClass", changed, Some(sc)),
            ["reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."]
        );
    }
}
