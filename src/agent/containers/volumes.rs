//! A pod's volumes on this node, and the values its containers' environment takes
//! from elsewhere: emptyDir (a directory, or tmpfs for `medium: Memory`), configMap
//! and secret (their keys written as files), hostPath; `env[].valueFrom` and
//! `envFrom` from ConfigMaps, Secrets and the pod's own fields.
//!
//! May call: the API (reading ConfigMaps and Secrets with the node's credentials).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};
use kube::Api;
use nix::mount::{mount, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {message}")]
    Volume { volume: String, message: String },
    #[error("{what} {name} not found in namespace {namespace}")]
    Missing {
        what: &'static str,
        name: String,
        namespace: String,
    },
    #[error("couldn't find key {key} in {what} {namespace}/{name}")]
    MissingKey {
        what: &'static str,
        key: String,
        name: String,
        namespace: String,
    },
    #[error("reading {what} {namespace}/{name}: {source}")]
    Api {
        what: &'static str,
        name: String,
        namespace: String,
        source: Box<kube::Error>,
    },
}

/// The data of a ConfigMap or Secret, as bytes per key.
type Data = BTreeMap<String, Vec<u8>>;

/// Reads a ConfigMap or Secret (`what` names the kind in errors); `None` if absent.
async fn fetch<K>(
    client: &kube::Client,
    what: &'static str,
    namespace: &str,
    name: &str,
    data: impl FnOnce(K) -> Data,
) -> Result<Option<Data>, VolumeError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(|e| VolumeError::Api {
        what,
        name: name.into(),
        namespace: namespace.into(),
        source: Box::new(e),
    })?;
    Ok(found.map(data))
}

async fn config_map(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Data>, VolumeError> {
    fetch(client, "configmap", namespace, name, |cm: ConfigMap| {
        let text = cm.data.unwrap_or_default().into_iter();
        let binary = cm.binary_data.unwrap_or_default().into_iter();
        text.map(|(k, v)| (k, v.into_bytes()))
            .chain(binary.map(|(k, v)| (k, v.0)))
            .collect()
    })
    .await
}

async fn secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Data>, VolumeError> {
    fetch(client, "secret", namespace, name, |s: Secret| {
        let data = s.data.unwrap_or_default().into_iter();
        let text = s.string_data.unwrap_or_default().into_iter();
        data.map(|(k, v)| (k, v.0))
            .chain(text.map(|(k, v)| (k, v.into_bytes())))
            .collect()
    })
    .await
}

fn volume_error(volume: &str, message: impl std::fmt::Display) -> VolumeError {
    VolumeError::Volume {
        volume: volume.into(),
        message: message.to_string(),
    }
}

/// Prepares every volume of the pod under `dir` (idempotent: configMap and secret
/// contents are rewritten, so updates reach running pods at the next call); returns
/// the host path of each volume by name.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    dir: &Path,
) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut paths = HashMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = prepare_one(client, &namespace, volume, &dir.join(&volume.name)).await?;
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

async fn prepare_one(
    client: &kube::Client,
    namespace: &str,
    volume: &Volume,
    path: &Path,
) -> Result<PathBuf, VolumeError> {
    let name = volume.name.as_str();
    let err = |m: std::io::Error| volume_error(name, format!("{}: {m}", path.display()));
    if let Some(host) = &volume.host_path {
        let host_path = PathBuf::from(&host.path);
        match host.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => std::fs::create_dir_all(&host_path).map_err(err)?,
            "Directory" if !host_path.is_dir() => {
                return Err(volume_error(
                    name,
                    format!("{} is not a directory", host.path),
                ))
            }
            "File" if !host_path.is_file() => {
                return Err(volume_error(name, format!("{} is not a file", host.path)))
            }
            "FileOrCreate" if !host_path.exists() => {
                std::fs::File::create(&host_path).map_err(err)?;
            }
            _ => {}
        }
        return Ok(host_path);
    }
    if let Some(empty) = &volume.empty_dir {
        if !path.exists() {
            std::fs::create_dir_all(path).map_err(err)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
            if empty.medium.as_deref() == Some("Memory") {
                let size = empty
                    .size_limit
                    .as_ref()
                    .and_then(|q| crate::api::validation::parse_quantity(&q.0).ok())
                    .map(|b| format!(",size={}", b as u64))
                    .unwrap_or_default();
                mount(
                    Some("tmpfs"),
                    path,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(format!("mode=1777{size}").as_str()),
                )
                .map_err(|e| volume_error(name, format!("mounting tmpfs: {e}")))?;
            }
        }
        return Ok(path.to_path_buf());
    }
    if let Some(source) = &volume.config_map {
        let optional = source.optional.unwrap_or(false);
        let data = config_map(client, namespace, &source.name).await?;
        let data = match data {
            Some(d) => d,
            None if optional => Data::new(),
            None => {
                return Err(VolumeError::Missing {
                    what: "configmap",
                    name: source.name.clone(),
                    namespace: namespace.into(),
                })
            }
        };
        let mode = source.default_mode.unwrap_or(0o644);
        write_files(name, path, &data, source.items.as_deref(), mode)?;
        return Ok(path.to_path_buf());
    }
    if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let optional = source.optional.unwrap_or(false);
        let data = match secret(client, namespace, &secret_name).await? {
            Some(d) => d,
            None if optional => Data::new(),
            None => {
                return Err(VolumeError::Missing {
                    what: "secret",
                    name: secret_name,
                    namespace: namespace.into(),
                })
            }
        };
        let mode = source.default_mode.unwrap_or(0o644);
        write_files(name, path, &data, source.items.as_deref(), mode)?;
        return Ok(path.to_path_buf());
    }
    // Other volume types (projected, downwardAPI, …) get an empty directory.
    std::fs::create_dir_all(path).map_err(err)?;
    Ok(path.to_path_buf())
}

/// Writes the keys (or the listed items) as files; files no longer wanted go.
fn write_files(
    volume: &str,
    dir: &Path,
    data: &Data,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
) -> Result<(), VolumeError> {
    let err = |p: &Path, e: std::io::Error| volume_error(volume, format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let wanted: Vec<(PathBuf, &[u8], i32)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                let bytes = data.get(&i.key)?;
                Some((
                    PathBuf::from(&i.path),
                    bytes.as_slice(),
                    i.mode.unwrap_or(default_mode),
                ))
            })
            .collect(),
        None => data
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.as_slice(), default_mode))
            .collect(),
    };
    for (relative, bytes, mode) in &wanted {
        if relative.is_absolute() || relative.components().any(|c| c.as_os_str() == "..") {
            return Err(volume_error(
                volume,
                format!("invalid item path {}", relative.display()),
            ));
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(parent, e))?;
        }
        let tmp = path.with_extension("skiff-tmp");
        std::fs::write(&tmp, bytes).map_err(|e| err(&tmp, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode as u32 & 0o777))
            .map_err(|e| err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
    }
    let keep: Vec<PathBuf> = wanted.iter().map(|(p, _, _)| dir.join(p)).collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && !keep.contains(&path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    Ok(())
}

/// A field of the pod, as `fieldRef` names it.
fn pod_field(pod: &Pod, path: &str, pod_ip: Option<&str>, host_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref()?.get(key).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.podIP" | "status.podIPs" => pod_ip.map(str::to_string),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        _ => keyed("metadata.labels['", &meta.labels)
            .or_else(|| keyed("metadata.annotations['", &meta.annotations)),
    }
}

/// A container resource, as `resourceFieldRef` names it (cpu in whole cores,
/// rounded up, unless a divisor says otherwise; memory in bytes).
fn resource_field(container: &Container, resource: &str, divisor: Option<&str>) -> Option<String> {
    let resources = container.resources.as_ref();
    let (section, name) = resource.split_once('.')?;
    let map = match section {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => None,
    };
    let value = map
        .and_then(|m| m.get(name))
        .and_then(|q| crate::api::validation::parse_quantity(&q.0).ok())
        .unwrap_or(0.0);
    let divisor = divisor
        .and_then(|d| crate::api::validation::parse_quantity(d).ok())
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Some(format!("{}", (value / divisor).ceil() as i64))
}

/// The container's environment from the pod spec, in order, `$(VAR)` references
/// expanded as the kubelet does.
pub async fn environment(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> Result<Vec<(String, String)>, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (data, optional) = if let Some(r) = &source.config_map_ref {
            (
                config_map(client, &namespace, &r.name).await?,
                r.optional.unwrap_or(false),
            )
        } else if let Some(r) = &source.secret_ref {
            (
                secret(client, &namespace, &r.name).await?,
                r.optional.unwrap_or(false),
            )
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(
                        &mut env,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into(),
                    );
                }
            }
            None if optional => {}
            None => {
                let (what, name) = match (&source.config_map_ref, &source.secret_ref) {
                    (Some(r), _) => ("configmap", r.name.clone()),
                    (_, Some(r)) => ("secret", r.name.clone()),
                    _ => ("object", String::new()),
                };
                return Err(VolumeError::Missing {
                    what,
                    name,
                    namespace,
                });
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or(""), &env),
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    pod_field(pod, &field.field_path, pod_ip, host_ip).unwrap_or_default()
                } else if let Some(res) = &from.resource_field_ref {
                    let divisor = res.divisor.as_ref().map(|d| d.0.as_str());
                    resource_field(container, &res.resource, divisor).unwrap_or_default()
                } else if let Some(key) = &from.config_map_key_ref {
                    let data = config_map(client, &namespace, &key.name).await?;
                    match keyed_value(
                        "configmap",
                        &namespace,
                        &key.name,
                        &key.key,
                        data,
                        key.optional,
                    )? {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let data = secret(client, &namespace, &key.name).await?;
                    match keyed_value(
                        "secret",
                        &namespace,
                        &key.name,
                        &key.key,
                        data,
                        key.optional,
                    )? {
                        Some(v) => v,
                        None => continue,
                    }
                } else {
                    String::new()
                }
            }
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

fn keyed_value(
    what: &'static str,
    namespace: &str,
    name: &str,
    key: &str,
    data: Option<Data>,
    optional: Option<bool>,
) -> Result<Option<String>, VolumeError> {
    let optional = optional.unwrap_or(false);
    match data.as_ref().and_then(|d| d.get(key)) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into())),
        None if optional => Ok(None),
        None if data.is_none() => Err(VolumeError::Missing {
            what,
            name: name.into(),
            namespace: namespace.into(),
        }),
        None => Err(VolumeError::MissingKey {
            what,
            key: key.into(),
            name: name.into(),
            namespace: namespace.into(),
        }),
    }
}

/// Expands `$(NAME)` from `env`; `$$` escapes; unknown references stay as written.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(close) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..close + 1];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[i..i + close + 3]),
            }
            rest = &after[close + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_like_the_kubelet() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("cost $5", &env), "cost $5");
    }

    #[test]
    fn pod_fields_resolve() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [], "nodeName": "n1"}}))
        .unwrap();
        assert_eq!(
            pod_field(&pod, "metadata.name", None, "h").as_deref(),
            Some("p")
        );
        assert_eq!(
            pod_field(&pod, "spec.nodeName", None, "h").as_deref(),
            Some("n1")
        );
        assert_eq!(
            pod_field(&pod, "status.podIP", Some("10.42.0.2"), "h").as_deref(),
            Some("10.42.0.2")
        );
        assert_eq!(
            pod_field(&pod, "metadata.labels['app']", None, "h").as_deref(),
            Some("web")
        );
    }

    #[test]
    fn items_become_files_and_stale_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Data::new();
        data.insert("a".into(), b"1".to_vec());
        data.insert("b".into(), b"2".to_vec());
        write_files("v", dir.path(), &data, None, 0o644).unwrap();
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"2");
        data.remove("b");
        write_files("v", dir.path(), &data, None, 0o600).unwrap();
        assert!(!dir.path().join("b").exists());
        let mode = std::fs::metadata(dir.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let bad = [KeyToPath {
            key: "a".into(),
            path: "../x".into(),
            mode: None,
        }];
        assert!(write_files("v", dir.path(), &data, Some(&bad), 0o644).is_err());
    }
}
