//! The ServiceAccount admission plugin for pods, as upstream's
//! (`plugin/pkg/admission/serviceaccount`) on create: `spec.serviceAccountName`
//! defaults to `default`; the named account must exist (else 403 `error looking up
//! service account <ns>/<name>: serviceaccount "<name>" not found`); and unless the
//! pod or the account says `automountServiceAccountToken: false`, a projected volume
//! `kube-api-access-<5 chars>` (token, `kube-root-ca.crt`'s `ca.crt`, the namespace)
//! is added and mounted read-only at `/var/run/secrets/kubernetes.io/serviceaccount`
//! in every container and init container that has no mount there yet.
//!
//! One difference (ADR 0009): a missing `default` account is not an error — the
//! serviceaccounts controller creates it moments after a namespace appears, and a
//! pod created in that moment mounts the token as if it existed.
//! Mirror pods (static pods) are left alone.
//!
//! May call: the store (through `ApiState`) to read the ServiceAccount.

use serde_json::{json, Map, Value};

use super::status::ApiError;
use super::{defaults, object, resources, SharedState};

pub const DEFAULT_ACCOUNT: &str = "default";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The projected token's lifetime: kubelets refresh it; upstream's value.
const TOKEN_EXPIRATION_SECS: i64 = 3607;

/// Admits a pod being created in `namespace` (mutating it as upstream does).
pub async fn admit_pod(
    state: &SharedState,
    namespace: &str,
    pod: &mut Value,
) -> Result<(), ApiError> {
    if is_mirror(pod) || !pod["spec"].is_object() {
        return Ok(());
    }
    let account = account_name(pod);
    pod["spec"]["serviceAccountName"] = json!(account);
    pod["spec"]["serviceAccount"] = json!(account);
    let sa = match lookup(state, namespace, &account).await? {
        Some(sa) => sa,
        None if account == DEFAULT_ACCOUNT => json!({}),
        None => {
            return Err(forbidden(
                pod,
                &format!(
                    "error looking up service account {namespace}/{account}: serviceaccount \"{account}\" not found"
                ),
            ))
        }
    };
    if should_automount(&sa, pod) {
        mount_token(pod);
        defaults::apply_defaults("Pod", pod);
    }
    Ok(())
}

fn is_mirror(pod: &Value) -> bool {
    pod["metadata"]["annotations"]
        .get(MIRROR_ANNOTATION)
        .is_some()
}

/// `serviceAccountName`, else the deprecated `serviceAccount`, else `default`.
fn account_name(pod: &Value) -> String {
    ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|f| pod["spec"][f].as_str().filter(|s| !s.is_empty()))
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_string()
}

async fn lookup(
    state: &SharedState,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let resource = resources::find("", "v1", "serviceaccounts").ok_or_else(ApiError::no_route)?;
    let entry = state
        .store
        .get(&resource.key(Some(namespace), name))
        .await
        .map_err(|e| ApiError::from_store(e, resource, name))?;
    entry
        .map(|e| object::from_entry(&e).map_err(|e| ApiError::internal(e.to_string())))
        .transpose()
}

/// Upstream's `admission.NewForbidden` for a pod.
fn forbidden(pod: &Value, reason: &str) -> ApiError {
    let name = object::name(pod);
    let mut error = if name.is_empty() {
        ApiError::forbidden(format!("pods is forbidden: {reason}"))
    } else {
        ApiError::forbidden(format!("pods \"{name}\" is forbidden: {reason}"))
    };
    error.details = Some(json!({"name": name, "group": "", "kind": "pods"}));
    error
}

/// The pod's own `automountServiceAccountToken` wins, then the account's; default yes.
fn should_automount(sa: &Value, pod: &Value) -> bool {
    pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// Adds the mount to every container lacking one at the token path, and the volume
/// when any container took the mount.
fn mount_token(pod: &mut Value) {
    let Some(spec) = pod["spec"].as_object_mut() else {
        return;
    };
    let volume_name = unused_volume_name(spec);
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            needed |= add_mount(container, &mount);
        }
    }
    if needed {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(token_volume(&volume_name));
        }
    }
}

fn add_mount(container: &mut Map<String, Value>, mount: &Value) -> bool {
    let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
    if !mounts.is_array() {
        *mounts = json!([]);
    }
    let Some(mounts) = mounts.as_array_mut() else {
        return false;
    };
    if mounts.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH) {
        return false;
    }
    mounts.push(mount.clone());
    true
}

fn unused_volume_name(spec: &Map<String, Value>) -> String {
    let taken: Vec<&str> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    loop {
        let name = format!("{VOLUME_PREFIX}{}", object::random_suffix(5));
        if !taken.contains(&name.as_str()) {
            return name;
        }
    }
}

/// The projected volume upstream adds.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn every_container_gets_one_read_only_mount_of_one_volume() {
        let mut p = pod(json!({
            "initContainers": [{"name": "init", "image": "x"}],
            "containers": [
                {"name": "a", "image": "x"},
                {"name": "b", "image": "x", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
            "volumes": [{"name": "own", "emptyDir": {}}],
        }));
        mount_token(&mut p);
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        let name = volumes[1]["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(
            volumes[1]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        for path in ["/spec/initContainers/0", "/spec/containers/0"] {
            let mounts = p.pointer(path).unwrap()["volumeMounts"].as_array().unwrap();
            assert_eq!(mounts.len(), 1);
            assert_eq!(
                mounts[0],
                json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH})
            );
        }
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn no_volume_when_every_container_mounts_the_path_itself() {
        let mut p = pod(json!({"containers": [
            {"name": "a", "image": "x", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}
        ]}));
        mount_token(&mut p);
        assert!(p["spec"].get("volumes").is_none());
    }

    #[test]
    fn automount_pod_setting_wins_over_the_account() {
        let off = json!({"automountServiceAccountToken": false});
        let on = json!({"automountServiceAccountToken": true});
        assert!(should_automount(&json!({}), &pod(json!({}))));
        assert!(!should_automount(&off, &pod(json!({}))));
        assert!(should_automount(&off, &pod(on.clone())));
        assert!(!should_automount(&on, &pod(off.clone())));
    }

    #[test]
    fn account_name_falls_back_to_the_legacy_field_then_default() {
        assert_eq!(account_name(&pod(json!({}))), "default");
        assert_eq!(account_name(&pod(json!({"serviceAccount": "old"}))), "old");
        assert_eq!(
            account_name(&pod(
                json!({"serviceAccount": "old", "serviceAccountName": "new"})
            )),
            "new"
        );
        let err = forbidden(
            &pod(json!({})),
            "error looking up service account x/y: serviceaccount \"y\" not found",
        );
        assert_eq!(err.code, 403);
        assert_eq!(err.message, "pods \"web\" is forbidden: error looking up service account x/y: serviceaccount \"y\" not found");
    }
}
