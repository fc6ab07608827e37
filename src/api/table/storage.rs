//! Table printers of the storage kinds, as upstream's `printPersistentVolume`,
//! `printPersistentVolumeClaim` and `printStorageClass`.
//!
//! A child of `table`: it uses the parent's columns and formatting helpers.

use super::*;

const STATUS_DESC: &str = "Phase represents the current phase of the object.";
const CAPACITY_DESC: &str = "The actual resources of the underlying volume.";
const ACCESS_MODES_DESC: &str =
    "AccessModes contains the desired access modes the volume should have.";
const CLASS_DESC: &str = "The name of the StorageClass this object belongs to.";
const VAC_DESC: &str = "The name of the VolumeAttributesClass this object belongs to.";
const VOLUME_MODE_DESC: &str = "Whether the volume is a filesystem or a raw block device.";

pub(super) const PVC_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", STATUS_DESC),
    column(
        "Volume",
        "string",
        "VolumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    column("Capacity", "string", CAPACITY_DESC),
    column("Access Modes", "string", ACCESS_MODES_DESC),
    column("StorageClass", "string", CLASS_DESC),
    column("VolumeAttributesClass", "string", VAC_DESC),
    AGE,
    wide("VolumeMode", "string", VOLUME_MODE_DESC),
];

pub(super) const PV_COLUMNS: &[Column] = &[
    NAME,
    column("Capacity", "string", CAPACITY_DESC),
    column("Access Modes", "string", ACCESS_MODES_DESC),
    column("Reclaim Policy", "string", "What happens to a persistent volume when released from its claim."),
    column("Status", "string", STATUS_DESC),
    column("Claim", "string", "ClaimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    column("StorageClass", "string", CLASS_DESC),
    column("VolumeAttributesClass", "string", VAC_DESC),
    column("Reason", "string", "Reason is a brief CamelCase string that describes any failure."),
    AGE,
    wide("VolumeMode", "string", VOLUME_MODE_DESC),
];

pub(super) const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    column("Provisioner", "string", "Provisioner indicates the type of the provisioner."),
    column("ReclaimPolicy", "string", "ReclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
    column("VolumeBindingMode", "string", "VolumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
    column("AllowVolumeExpansion", "string", "AllowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

/// `RWO,ROX,RWX,RWOP`, in upstream's order, for the modes listed at `path`.
fn access_modes(object: &Value, path: &[&str]) -> String {
    let modes: Vec<&str> = at(object, path)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The phase, or `Terminating` while deleting.
fn phase(object: &Value) -> String {
    if present(object, &["metadata", "deletionTimestamp"]) {
        "Terminating".into()
    } else {
        text(object, &["status", "phase"]).to_string()
    }
}

/// The class name (spec, else the beta annotation).
fn class(object: &Value, spec_path: &[&str]) -> String {
    let class = text(object, spec_path);
    if class.is_empty() {
        text(
            object,
            &[
                "metadata",
                "annotations",
                "volume.beta.kubernetes.io/storage-class",
            ],
        )
        .to_string()
    } else {
        class.to_string()
    }
}

fn unset_or(object: &Value, path: &[&str]) -> String {
    non_empty(text(object, path))
        .unwrap_or("<unset>")
        .to_string()
}

fn quantity(object: &Value, path: &[&str]) -> String {
    match at(object, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

pub(super) fn pvc_cells(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let volume = text(pvc, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(pvc, &["status", "capacity", "storage"]),
            access_modes(pvc, &["status", "accessModes"]),
        )
    };
    vec![
        json!(name(pvc)),
        json!(phase(pvc)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(class(pvc, &["spec", "storageClassName"])),
        json!(unset_or(pvc, &["spec", "volumeAttributesClassName"])),
        json!(age(pvc, now)),
        json!(unset_or(pvc, &["spec", "volumeMode"])),
    ]
}

pub(super) fn pv_cells(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match at(pv, &["spec", "claimRef"]) {
        Some(r) => format!("{}/{}", text(r, &["namespace"]), text(r, &["name"])),
        None => String::new(),
    };
    vec![
        json!(name(pv)),
        json!(quantity(pv, &["spec", "capacity", "storage"])),
        json!(access_modes(pv, &["spec", "accessModes"])),
        json!(text(pv, &["spec", "persistentVolumeReclaimPolicy"])),
        json!(phase(pv)),
        json!(claim),
        json!(class(pv, &["spec", "storageClassName"])),
        json!(unset_or(pv, &["spec", "volumeAttributesClassName"])),
        json!(text(pv, &["status", "reason"])),
        json!(age(pv, now)),
        json!(unset_or(pv, &["spec", "volumeMode"])),
    ]
}

pub(super) fn storage_class_cells(class: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let annotations = &class["metadata"]["annotations"];
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| annotations[*a].as_str() == Some("true"));
    let shown = if is_default {
        format!("{} (default)", name(class))
    } else {
        name(class).to_string()
    };
    vec![
        json!(shown),
        json!(text(class, &["provisioner"])),
        json!(non_empty(text(class, &["reclaimPolicy"])).unwrap_or("Delete")),
        json!(non_empty(text(class, &["volumeBindingMode"])).unwrap_or("Immediate")),
        json!(at(class, &["allowVolumeExpansion"])
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        json!(age(class, now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn claims_show_their_volume_capacity_and_modes_once_bound() {
        let pending = json!({"metadata": {"name": "data", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"storageClassName": "local-path", "volumeMode": "Filesystem"},
            "status": {"phase": "Pending"}});
        assert_eq!(
            pvc_cells(&pending, now()),
            [
                json!("data"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("local-path"),
                json!("<unset>"),
                json!("60m"),
                json!("Filesystem")
            ]
        );
        let bound = json!({"metadata": {"name": "data", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"storageClassName": "local-path", "volumeName": "pvc-1"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"},
                       "accessModes": ["ReadWriteMany", "ReadWriteOnce"]}});
        let cells = pvc_cells(&bound, now());
        assert_eq!(
            cells[2..5],
            [json!("pvc-1"), json!("1Gi"), json!("RWO,RWX")]
        );
    }

    #[test]
    fn volumes_show_their_claim_and_classes_their_default_mark() {
        let pv = json!({"metadata": {"name": "pv1", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain",
                     "claimRef": {"namespace": "default", "name": "data"}},
            "status": {"phase": "Bound"}});
        assert_eq!(
            pv_cells(&pv, now())[..9],
            [
                json!("pv1"),
                json!("2Gi"),
                json!("RWO"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!(""),
                json!("<unset>"),
                json!("")
            ]
        );
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": "2024-01-01T00:00:00Z",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            storage_class_cells(&sc, now()),
            [
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("60m")
            ]
        );
    }
}
