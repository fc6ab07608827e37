//! A pod's volumes on this node, and the values its containers' environment takes
//! from elsewhere. Volumes: emptyDir (a directory, or tmpfs for `medium: Memory`),
//! hostPath; configMap, secret, downwardAPI and projected written as files by the
//! atomic writer (`projected` builds their contents) and refreshed when their
//! sources change; persistentVolumeClaim when the claim is bound to a hostPath or
//! local volume. A volume that cannot be provided — a missing claim, ConfigMap or
//! Secret, any volume type not implemented here — is an error (`FailedMount`, the
//! pod keeps waiting), never an empty directory. Environment: `env[].valueFrom`
//! and `envFrom` from ConfigMaps, Secrets and the downward API, and the
//! service-link variables (`service_env`).
//!
//! May call: the API (ConfigMaps, Secrets, Services, claims and volumes,
//! TokenRequests) with the node's credentials.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::Api;
use nix::mount::{mount, MsFlags};

use super::atomic_writer::{self, Payload, WriteError};
use super::downward::{self, Allocatable, DownwardError};
use super::projected::{self, Tokens};
use super::service_env;

/// Why a volume (or a value of the environment) cannot be provided; the messages
/// follow the kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Other(String),
    #[error("{what} {name:?} not found")]
    Missing { what: &'static str, name: String },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        kind: &'static str,
        key: String,
        name: String,
        namespace: String,
    },
    #[error("{} references non-existent {what} key: {key}", if what == "config" { "configmap" } else { "secret" })]
    ItemKey { what: String, key: String },
    #[error("reading {what} {namespace}/{name}: {}", api_message(source))]
    Api {
        what: &'static str,
        name: String,
        namespace: String,
        source: Box<kube::Error>,
    },
    #[error("unsupported volume type {0:?}")]
    Unsupported(String),
    #[error("persistentvolumeclaim {0:?} is not bound")]
    ClaimNotBound(String),
    #[error("failed to fetch token for serviceaccount {account:?}: {message}")]
    Token { account: String, message: String },
    #[error(transparent)]
    Downward(#[from] DownwardError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// An API error as the server put it (its `Status` message), anything else as is.
pub(super) fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

impl VolumeError {
    pub(super) fn missing(what: &'static str, name: &str) -> VolumeError {
        VolumeError::Missing {
            what,
            name: name.to_string(),
        }
    }
}

/// A volume that could not be set up: the `FailedMount` event's message.
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
pub struct MountError {
    pub volume: String,
    pub source: VolumeError,
}

/// The data of a ConfigMap or Secret, as bytes per key.
pub(super) type Data = BTreeMap<String, Vec<u8>>;

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

pub(super) async fn config_map(
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

pub(super) async fn secret(
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

/// The pod's volumes on this node and when they are set up again: at the first
/// pass, then every `REFRESH`, at once when the pod's labels or annotations change
/// (downward API files) or a token is due; after a failure with back-off.
#[derive(Debug, Default)]
pub struct Mounts {
    paths: Option<HashMap<String, PathBuf>>,
    /// When the volumes were last set up, and the pod metadata they saw.
    synced: Option<(Instant, u64)>,
    retry_at: Option<Instant>,
    backoff: Duration,
    tokens: Tokens,
    node: Option<Allocatable>,
}

impl Mounts {
    /// The host path of each volume by name, once all could be set up.
    pub fn paths(&self) -> Option<&HashMap<String, PathBuf>> {
        self.paths.as_ref()
    }

    /// Whether the volumes should be set up (again) now.
    pub fn due(&self, pod: &Pod) -> bool {
        let now = Instant::now();
        if let Some(at) = self.retry_at {
            return now >= at;
        }
        match self.synced {
            None => true,
            Some((at, seen)) => {
                at.elapsed() >= REFRESH
                    || seen != metadata_fingerprint(pod)
                    || self.tokens.next_renewal().is_some_and(|t| now >= t)
            }
        }
    }

    /// Sets every volume of the pod up under `dir` (idempotent: file volumes are
    /// rewritten atomically when their sources changed). On failure the volumes
    /// already provided stay as they are and the next try waits a back-off.
    pub async fn sync(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        dir: &Path,
    ) -> Result<(), MountError> {
        let node = *self.node.get_or_insert_with(Allocatable::of_machine);
        let seen = metadata_fingerprint(pod);
        match prepare(client, pod, dir, &mut self.tokens, &node).await {
            Ok(paths) => {
                self.paths = Some(paths);
                self.synced = Some((Instant::now(), seen));
                self.retry_at = None;
                self.backoff = Duration::ZERO;
                Ok(())
            }
            Err(e) => {
                self.backoff = next_backoff(self.backoff);
                self.retry_at = Some(Instant::now() + self.backoff);
                Err(e)
            }
        }
    }
}

/// How often file volumes are rewritten from their sources without another reason.
const REFRESH: Duration = Duration::from_secs(60);
const RETRY_START: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(120);

fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        RETRY_START
    } else {
        (current * 2).min(RETRY_MAX)
    }
}

/// A hash of what downward API files show that can change: labels, annotations.
fn metadata_fingerprint(pod: &Pod) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    pod.metadata.labels.hash(&mut hasher);
    pod.metadata.annotations.hash(&mut hasher);
    hasher.finish()
}

/// Sets up every volume of the pod under `dir`; the host path of each by name.
async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    dir: &Path,
    tokens: &mut Tokens,
    node: &Allocatable,
) -> Result<HashMap<String, PathBuf>, MountError> {
    let mut paths = HashMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = dir.join(&volume.name);
        let path = prepare_one(client, pod, volume, &path, tokens, node)
            .await
            .map_err(|source| MountError {
                volume: volume.name.clone(),
                source,
            })?;
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

async fn prepare_one(
    client: &kube::Client,
    pod: &Pod,
    volume: &Volume,
    path: &Path,
    tokens: &mut Tokens,
    node: &Allocatable,
) -> Result<PathBuf, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let payload = if let Some(host) = &volume.host_path {
        return host_path(&host.path, host.type_.as_deref().unwrap_or(""));
    } else if let Some(empty) = &volume.empty_dir {
        empty_dir(path, empty.medium.as_deref(), empty.size_limit.as_ref())?;
        return Ok(path.to_path_buf());
    } else if let Some(claim) = &volume.persistent_volume_claim {
        return claim_path(client, &namespace, &claim.claim_name).await;
    } else if let Some(source) = &volume.config_map {
        let optional = source.optional.unwrap_or(false);
        match config_map(client, &namespace, &source.name).await? {
            Some(data) => projected::key_payload(
                "config",
                &data,
                source.items.as_deref(),
                source.default_mode,
                optional,
            )?,
            None if optional => Payload::new(),
            None => return Err(VolumeError::missing("configmap", &source.name)),
        }
    } else if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let optional = source.optional.unwrap_or(false);
        match secret(client, &namespace, &name).await? {
            Some(data) => projected::key_payload(
                "secret",
                &data,
                source.items.as_deref(),
                source.default_mode,
                optional,
            )?,
            None if optional => Payload::new(),
            None => return Err(VolumeError::missing("secret", &name)),
        }
    } else if let Some(source) = &volume.downward_api {
        let items = source.items.as_deref().unwrap_or_default();
        projected::downward_payload(pod, items, source.default_mode, node)?
    } else if let Some(source) = &volume.projected {
        projected::projected_payload(client, pod, source, tokens, node).await?
    } else {
        return Err(VolumeError::Unsupported(volume_type(volume)));
    };
    atomic_writer::write(path, &payload)?;
    Ok(path.to_path_buf())
}

/// The name of a volume's source as the pod spec spells it (`nfs`, `csi`, …).
fn volume_type(volume: &Volume) -> String {
    serde_json::to_value(volume)
        .ok()
        .and_then(|v| {
            v.as_object()?
                .keys()
                .find(|k| k.as_str() != "name")
                .cloned()
        })
        .unwrap_or_else(|| "none".into())
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> VolumeError + '_ {
    move |e| VolumeError::Other(format!("{}: {e}", path.display()))
}

/// A hostPath volume, checked or created as its type says.
fn host_path(path: &str, kind: &str) -> Result<PathBuf, VolumeError> {
    let host = PathBuf::from(path);
    let err = |e| io_error(&host)(e);
    match kind {
        "DirectoryOrCreate" => std::fs::create_dir_all(&host).map_err(err)?,
        "Directory" if !host.is_dir() => {
            return Err(VolumeError::Other(format!("{path} is not a directory")))
        }
        "File" if !host.is_file() => {
            return Err(VolumeError::Other(format!("{path} is not a file")))
        }
        "FileOrCreate" if !host.exists() => {
            std::fs::File::create(&host).map_err(err)?;
        }
        _ => {}
    }
    Ok(host)
}

/// An emptyDir: a directory, or a tmpfs for `medium: Memory`.
fn empty_dir(
    path: &Path,
    medium: Option<&str>,
    size_limit: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Result<(), VolumeError> {
    if path.exists() {
        return Ok(());
    }
    let err = io_error(path);
    std::fs::create_dir_all(path).map_err(&err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(&err)?;
    if medium == Some("Memory") {
        let size = size_limit
            .and_then(|q| crate::model::quantity::parse_quantity(&q.0).ok())
            .map(|b| format!(",size={}", b as u64))
            .unwrap_or_default();
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("mode=1777{size}").as_str()),
        )
        .map_err(|e| VolumeError::Other(format!("mounting tmpfs on {}: {e}", path.display())))?;
    }
    Ok(())
}

/// A persistentVolumeClaim: the claim must exist and be bound to a volume this node
/// can provide (hostPath or local); anything else keeps the pod waiting.
async fn claim_path(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<PathBuf, VolumeError> {
    let api_error = |what: &'static str, name: &str| {
        let (name, namespace) = (name.to_string(), namespace.to_string());
        move |e: kube::Error| VolumeError::Api {
            what,
            name,
            namespace,
            source: Box::new(e),
        }
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claim = claims
        .get_opt(name)
        .await
        .map_err(api_error("persistentvolumeclaim", name))?
        .ok_or_else(|| VolumeError::missing("persistentvolumeclaim", name))?;
    let bound = claim.status.and_then(|s| s.phase).as_deref() == Some("Bound");
    let volume_name = claim
        .spec
        .and_then(|s| s.volume_name)
        .filter(|v| bound && !v.is_empty())
        .ok_or_else(|| VolumeError::ClaimNotBound(name.to_string()))?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume = volumes
        .get_opt(&volume_name)
        .await
        .map_err(api_error("persistentvolume", &volume_name))?
        .ok_or_else(|| VolumeError::missing("persistentvolume", &volume_name))?;
    let local_path = volume
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| p == LOCAL_PATH_PROVISIONER);
    let spec = volume.spec.unwrap_or_default();
    if let Some(host) = spec.host_path {
        if local_path {
            return local_path_dir(&host.path);
        }
        return host_path(&host.path, host.type_.as_deref().unwrap_or(""));
    }
    if let Some(local) = spec.local {
        return host_path(&local.path, "Directory");
    }
    let kind = serde_json::to_value(&spec)
        .ok()
        .and_then(|v| {
            let keys = v.as_object()?.keys().cloned().collect::<Vec<_>>();
            keys.into_iter().find(|k| {
                !matches!(
                    k.as_str(),
                    "accessModes"
                        | "capacity"
                        | "claimRef"
                        | "mountOptions"
                        | "nodeAffinity"
                        | "persistentVolumeReclaimPolicy"
                        | "storageClassName"
                        | "volumeAttributesClassName"
                        | "volumeMode"
                )
            })
        })
        .unwrap_or_else(|| "none".into());
    Err(VolumeError::Unsupported(kind))
}

/// The annotation naming a volume's provisioner, and the local-path provisioner's
/// name (the server's `controllers::storage` sets them; ADR 0019).
pub(crate) const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub(crate) const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";

/// A local-path volume's directory: this node makes it on first mount, open to
/// every user (mode 0777, as k3s's provisioner makes it), so containers running as
/// any user can write.
fn local_path_dir(path: &str) -> Result<PathBuf, VolumeError> {
    let dir = PathBuf::from(path);
    if !dir.is_dir() {
        let err = io_error(&dir);
        std::fs::create_dir_all(&dir).map_err(&err)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(&err)?;
    }
    Ok(dir)
}

/// The container's environment from the pod spec, in order, `$(VAR)` references
/// expanded as the kubelet does (service-link variables may be referenced), then
/// the service-link variables the spec does not set.
pub async fn environment(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> Result<Vec<(String, String)>, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let services = service_env::for_pod(client, pod).await.map_err(|e| {
        VolumeError::Other(format!(
            "listing the services of namespace {namespace}: {e}"
        ))
    })?;
    let node = Allocatable::of_machine();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (what, name, data, optional) = if let Some(r) = &source.config_map_ref {
            let data = config_map(client, &namespace, &r.name).await?;
            ("configmap", &r.name, data, r.optional)
        } else if let Some(r) = &source.secret_ref {
            let data = secret(client, &namespace, &r.name).await?;
            ("secret", &r.name, data, r.optional)
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    let value = String::from_utf8_lossy(&v).into();
                    set(&mut env, format!("{prefix}{k}"), value);
                }
            }
            None if optional.unwrap_or(false) => {}
            None => return Err(VolumeError::missing(what, name)),
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => {
                let lookup: Vec<(String, String)> =
                    services.iter().chain(env.iter()).cloned().collect();
                expand(var.value.as_deref().unwrap_or(""), &lookup)
            }
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    downward::env_field(pod, &field.field_path, pod_ip, host_ip).unwrap_or_default()
                } else if let Some(res) = &from.resource_field_ref {
                    let divisor = res.divisor.as_ref().map(|d| d.0.as_str());
                    downward::resource_value(container, &res.resource, divisor, &node)?
                } else if let Some(key) = &from.config_map_key_ref {
                    let data = config_map(client, &namespace, &key.name).await?;
                    let found = keyed_value("configmap", &namespace, &key.name, &key.key, data);
                    match found.or_else(|e| optional(e, key.optional))? {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let data = secret(client, &namespace, &key.name).await?;
                    let found = keyed_value("secret", &namespace, &key.name, &key.key, data);
                    match found.or_else(|e| optional(e, key.optional))? {
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
    for (k, v) in services {
        if !env.iter().any(|(name, _)| *name == k) {
            env.push((k, v));
        }
    }
    Ok(env)
}

/// An optional reference that cannot be resolved is left out.
fn optional(e: VolumeError, optional: Option<bool>) -> Result<Option<String>, VolumeError> {
    if optional.unwrap_or(false) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// One key of a ConfigMap or Secret (`what`), with the kubelet's errors.
fn keyed_value(
    what: &'static str,
    namespace: &str,
    name: &str,
    key: &str,
    data: Option<Data>,
) -> Result<Option<String>, VolumeError> {
    let Some(data) = data else {
        return Err(VolumeError::missing(what, name));
    };
    match data.get(key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into())),
        None => Err(VolumeError::MissingKey {
            kind: if what == "configmap" {
                "ConfigMap"
            } else {
                "Secret"
            },
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
    fn unsupported_volumes_are_named_by_their_type() {
        let volume: Volume = serde_json::from_value(serde_json::json!({
            "name": "data", "nfs": {"server": "nfs.example", "path": "/x"}}))
        .unwrap();
        assert_eq!(volume_type(&volume), "nfs");
        let error = MountError {
            volume: "data".into(),
            source: VolumeError::Unsupported(volume_type(&volume)),
        };
        assert_eq!(
            error.to_string(),
            "MountVolume.SetUp failed for volume \"data\" : unsupported volume type \"nfs\""
        );
    }

    #[test]
    fn mount_errors_read_like_the_kubelet() {
        let missing = MountError {
            volume: "data".into(),
            source: VolumeError::missing("persistentvolumeclaim", "nope"),
        };
        assert_eq!(
            missing.to_string(),
            "MountVolume.SetUp failed for volume \"data\" : persistentvolumeclaim \"nope\" not found"
        );
        let key = VolumeError::ItemKey {
            what: "secret".into(),
            key: "k".into(),
        };
        assert_eq!(
            key.to_string(),
            "secret references non-existent secret key: k"
        );
    }

    #[test]
    fn failed_mounts_back_off_and_metadata_changes_are_due() {
        assert_eq!(next_backoff(Duration::ZERO), RETRY_START);
        assert_eq!(next_backoff(RETRY_START), RETRY_START * 2);
        assert_eq!(next_backoff(RETRY_MAX), RETRY_MAX);
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"containers": []}}))
        .unwrap();
        let mut mounts = Mounts::default();
        assert!(mounts.due(&pod));
        mounts.synced = Some((Instant::now(), metadata_fingerprint(&pod)));
        assert!(!mounts.due(&pod));
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("note".into(), "x".into());
        assert!(mounts.due(&pod));
        mounts.retry_at = Some(Instant::now() + Duration::from_secs(60));
        assert!(!mounts.due(&pod));
    }
}
