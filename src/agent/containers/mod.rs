//! The real pod runtime: runs pods as Linux containers with skiff's bundled runtime
//! (`crate::runtime`: libcontainer behind one shim per container), images from the
//! node's image store (`crate::image`), and the pod network through CNI
//! (`crate::network`). The simulated runtime is the other `PodRuntime`.
//!
//! Owns: pod sandboxes and pod directories under `<data-dir>/agent/pods`, container
//! logs under `<data-dir>/agent/logs`, one worker task per pod (`worker`), probes.
//! May call: the runtime, image and network modules, the API (events, ConfigMaps,
//! Secrets) with the node's credentials.
//!
//! Everything a pod holds is on disk and in the kernel, not only in memory: an agent
//! that restarts finds its sandboxes (`sandbox.json`) and containers (the runtime's
//! state directories, annotated with pod uid, container name and attempt) and adopts
//! them — same processes, no duplicates; pods the API no longer knows are torn down.

mod atomic_writer;
mod downward;
mod ephemeral;
mod probes;
mod projected;
pub mod sandbox;
mod service_env;
mod spec;
mod volumes;
mod worker;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

use super::kubelet::ContainerAccess;
use super::runtime::{NodeEnv, PodRuntime, PodState, RuntimeError};
use crate::component::events::Recorder;
use crate::image::{ImageStore, RegistriesConfig, StoreOptions};
use crate::runtime::exec::ExecTarget;
use sandbox::{Dns, Network};

/// How the node runs containers.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub data_dir: PathBuf,
    pub node_ip: IpAddr,
    pub dns: Dns,
    /// Where CNI plugins are looked for, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// A directory with a `.conflist` to use instead of skiff's default bridge network.
    pub cni_conf_dir: Option<PathBuf>,
    /// The bridge of the default network (`--cni-bridge`).
    pub cni_bridge: String,
    /// The cgroup containers run under (`--cgroup-root`).
    pub cgroup_root: PathBuf,
    pub registries: RegistriesConfig,
    /// The node's network beyond the pods' interfaces (sink, services, DNS, routes).
    pub network: Arc<crate::agent::network::NetworkConfig>,
}

/// What the runtime gets once the node is registered.
pub(crate) struct Attached {
    client: kube::Client,
    changed: Arc<tokio::sync::Notify>,
    recorder: Recorder,
    network: Arc<Network>,
}

pub(crate) struct Inner {
    config: RuntimeConfig,
    runtime: crate::runtime::Runtime,
    images: ImageStore,
    env: OnceLock<Attached>,
    workers: Mutex<HashMap<String, worker::Handle>>,
    /// Containers found on disk at start, by pod uid, waiting for their pod's worker.
    adoptable: Mutex<HashMap<String, Vec<crate::runtime::ContainerInfo>>>,
    /// False while the air-gap archives are being imported.
    imported: watch::Receiver<bool>,
}

impl Inner {
    fn agent_dir(&self) -> PathBuf {
        self.config.data_dir.join("agent")
    }

    fn pods_dir(&self) -> PathBuf {
        self.agent_dir().join("pods")
    }

    fn pod_logs_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.agent_dir()
            .join("logs")
            .join(format!("{namespace}_{name}_{uid}"))
    }

    /// `<data-dir>/agent/logs/<ns>_<pod>_<uid>/<container>/<attempt>.log`, as the
    /// kubelet lays out `/var/log/pods`.
    fn log_path(&self, pod: &Pod, container: &str, attempt: u32) -> PathBuf {
        let m = &pod.metadata;
        self.pod_logs_dir(
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
            m.uid.as_deref().unwrap_or_default(),
        )
        .join(container)
        .join(format!("{attempt}.log"))
    }

    fn remove_logs(&self, pod: &Pod) {
        let m = &pod.metadata;
        let dir = self.pod_logs_dir(
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
            m.uid.as_deref().unwrap_or_default(),
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    async fn wait_for_airgap_import(&self) {
        let mut imported = self.imported.clone();
        let _ = imported.wait_for(|done| *done).await;
    }
}

/// Where the links to the built-in CNI plugins live: `<data-dir>/agent/cni/bin`.
pub fn builtin_cni_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("agent").join("cni").join("bin")
}

/// Points the built-in plugins' links at this executable (again, if it moved).
fn link_builtin_plugins(data_dir: &std::path::Path) -> Result<(), String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("finding the skiff executable for the cni plugins: {e}"))?;
    // Replaced on disk while running (an upgrade): the new binary is at the old path.
    let exe = match exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
        Some(path) => PathBuf::from(path),
        None => exe,
    };
    crate::network::plugins::install_links(&builtin_cni_dir(data_dir), &exe)
        .map_err(|e| e.to_string())
}

/// The bundled container runtime as a `PodRuntime`.
#[derive(Clone)]
pub struct ContainerRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("opening the image store in {path}: {message}")]
    Images { path: PathBuf, message: String },
    #[error("starting the container runtime: {0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("listing containers left by an earlier run: {0}")]
    List(crate::runtime::RuntimeError),
}

impl ContainerRuntime {
    /// Opens the image store (starting the air-gap import in the background) and
    /// finds the containers an earlier run of the agent left.
    pub fn new(config: RuntimeConfig) -> Result<ContainerRuntime, SetupError> {
        let images_dir = config.data_dir.join("agent").join("images");
        let images = ImageStore::open(
            &images_dir,
            StoreOptions {
                registries: config.registries.clone(),
                ..StoreOptions::default()
            },
        )
        .map_err(|e| SetupError::Images {
            path: images_dir.clone(),
            message: e.to_string(),
        })?;
        let runtime =
            crate::runtime::Runtime::new(config.data_dir.join("agent").join("containers"))?;
        let mut adoptable: HashMap<String, Vec<_>> = HashMap::new();
        for info in runtime.list().map_err(SetupError::List)? {
            let uid = info
                .annotations
                .get(spec::POD_UID)
                .cloned()
                .unwrap_or_default();
            adoptable.entry(uid).or_default().push(info);
        }
        let (imported_tx, imported) = watch::channel(false);
        let store = images.clone();
        tokio::spawn(async move {
            store.import_airgap().await;
            let _ = imported_tx.send(true);
        });
        Ok(ContainerRuntime {
            inner: Arc::new(Inner {
                config,
                runtime,
                images,
                env: OnceLock::new(),
                workers: Mutex::new(HashMap::new()),
                adoptable: Mutex::new(adoptable),
                imported,
            }),
        })
    }

    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    fn network(&self, pod_cidr: &str) -> Result<Network, RuntimeError> {
        let config = &self.inner.config;
        let state = self.inner.agent_dir().join("cni");
        link_builtin_plugins(&config.data_dir).map_err(|message| RuntimeError::Pod {
            pod: String::new(),
            message,
        })?;
        let conflist = config
            .cni_conf_dir
            .as_ref()
            .and_then(|dir| first_conflist(dir))
            .unwrap_or_else(|| {
                crate::network::cni::default_conflist(
                    pod_cidr,
                    &state.join("ipam"),
                    &config.cni_bridge,
                    crate::agent::network::overlay::pod_mtu(&config.network),
                )
            });
        Network::new(config.cni_bin_dirs.clone(), &state, conflist).map_err(|e| RuntimeError::Pod {
            pod: String::new(),
            message: format!("setting up the pod network: {e}"),
        })
    }

    fn snapshot(&self, uid: &str) -> Option<worker::Snapshot> {
        let workers = self.inner.workers.lock().ok()?;
        let handle = workers.get(uid)?;
        let snapshot = handle.snapshot.lock().ok()?.clone();
        Some(snapshot)
    }

    fn find(&self, namespace: &str, pod: &str) -> Option<worker::Snapshot> {
        let workers = self.inner.workers.lock().ok()?;
        workers.values().find_map(|h| {
            let s = h.snapshot.lock().ok()?;
            (s.namespace == namespace && s.name == pod).then(|| s.clone())
        })
    }

    /// Tears down a pod the agent knows only from disk (no worker).
    async fn remove_orphan(&self, uid: &str) {
        let containers = self
            .inner
            .adoptable
            .lock()
            .ok()
            .and_then(|mut a| a.remove(uid))
            .unwrap_or_default();
        for info in containers {
            if let Err(e) = self.inner.runtime.remove(&info.id).await {
                tracing::warn!(id = %info.id, error = %e, "removing an orphaned container failed");
            }
        }
        let dir = self.inner.pods_dir().join(uid);
        if let Some(sandbox) = sandbox::load(&dir) {
            let network = self.inner.env.get().map(|e| e.network.clone());
            for e in sandbox.teardown(network.as_ref()).await {
                tracing::warn!(pod = uid, error = %e, "tearing down an orphaned sandbox");
            }
            let logs =
                self.inner
                    .pod_logs_dir(&sandbox.record.namespace, &sandbox.record.name, uid);
            let _ = std::fs::remove_dir_all(logs);
        } else {
            sandbox::unmount_all_below(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn first_conflist(dir: &std::path::Path) -> Option<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conflist"))
        .collect();
    files.sort();
    let text = std::fs::read_to_string(files.first()?).ok()?;
    serde_json::from_str(&text).ok()
}

#[async_trait]
impl PodRuntime for ContainerRuntime {
    async fn attach(&self, env: NodeEnv) -> Result<(), RuntimeError> {
        if self.inner.env.get().is_some() {
            return Ok(());
        }
        crate::agent::network::start(
            env.client.clone(),
            self.inner.config.network.clone(),
            &env.pod_cidr,
        )
        .await
        .map_err(|e| RuntimeError::Pod {
            pod: String::new(),
            message: e.to_string(),
        })?;
        let network = Arc::new(self.network(&env.pod_cidr)?);
        let recorder = Recorder::new(env.client.clone(), "kubelet");
        let _ = self.inner.env.set(Attached {
            client: env.client,
            changed: env.changed,
            recorder,
            network,
        });
        Ok(())
    }

    async fn sync_pod(&self, pod: &Pod, _ip: Option<IpAddr>) -> Result<(), RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut workers = self.inner.workers.lock().map_err(|_| RuntimeError::Pod {
            pod: uid.clone(),
            message: "worker table poisoned".into(),
        })?;
        match workers.get(&uid) {
            Some(handle) => {
                handle.pod.send_if_modified(|current| {
                    let changed = current != pod;
                    if changed {
                        *current = pod.clone();
                    }
                    changed
                });
            }
            None => {
                let adopted = self
                    .inner
                    .adoptable
                    .lock()
                    .ok()
                    .and_then(|mut a| a.remove(&uid))
                    .unwrap_or_default();
                // A pod found deleting (after an agent restart) only stops, by its
                // deletion's deadline.
                let stop = pod.metadata.deletion_timestamp.is_some().then(|| {
                    Instant::now() + crate::agent::pods::grace_left(pod, chrono::Utc::now())
                });
                let handle = worker::spawn(self.inner.clone(), pod.clone(), adopted, stop);
                workers.insert(uid, handle);
            }
        }
        Ok(())
    }

    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<Option<PodState>, RuntimeError> {
        let handle = self
            .inner
            .workers
            .lock()
            .ok()
            .and_then(|w| w.get(uid).map(|h| (h.stop.clone(), h.done.clone())));
        match handle {
            Some((stop, mut done)) => {
                // A stop under way only ever gets an earlier deadline.
                let deadline = Instant::now() + grace;
                stop.send_if_modified(|current| {
                    let earlier = current.is_none_or(|c| deadline < c);
                    if earlier {
                        *current = Some(deadline);
                    }
                    earlier
                });
                let _ = done.wait_for(|d| *d).await;
                let last = self.pod_state(uid);
                if let Ok(mut workers) = self.inner.workers.lock() {
                    workers.remove(uid);
                }
                Ok(last)
            }
            None => {
                self.remove_orphan(uid).await;
                Ok(None)
            }
        }
    }

    fn pod_state(&self, uid: &str) -> Option<PodState> {
        self.snapshot(uid)?.state
    }

    fn pods(&self) -> Vec<String> {
        let mut uids: Vec<String> = self
            .inner
            .workers
            .lock()
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.inner.pods_dir()) {
            uids.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok()),
            );
        }
        if let Ok(adoptable) = self.inner.adoptable.lock() {
            uids.extend(adoptable.keys().filter(|k| !k.is_empty()).cloned());
        }
        uids.sort();
        uids.dedup();
        uids
    }

    fn version(&self) -> String {
        format!("skiff://{}", env!("CARGO_PKG_VERSION"))
    }
}

impl ContainerAccess for ContainerRuntime {
    fn log_path(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<PathBuf> {
        let snapshot = self.find(namespace, pod)?;
        let access = snapshot.containers.get(container)?;
        if previous {
            access.previous_log.clone()
        } else {
            access.log.clone()
        }
    }

    fn exec_target(&self, namespace: &str, pod: &str, container: &str) -> Option<ExecTarget> {
        self.find(namespace, pod)?
            .containers
            .get(container)?
            .exec
            .clone()
    }

    fn attach_dir(&self, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
        let target = self.exec_target(namespace, pod, container)?;
        Some(self.inner.runtime.state_dir(&target.container_id))
    }

    fn pod_network(&self, namespace: &str, pod: &str) -> Option<PathBuf> {
        // Every container of a pod shares its network: any running one will do.
        let snapshot = self.find(namespace, pod)?;
        let mut running: Vec<_> = snapshot
            .containers
            .iter()
            .filter_map(|(name, access)| Some((name.clone(), access.exec.as_ref()?.pid)))
            .collect();
        running.sort();
        let (_, pid) = running.first()?;
        Some(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }
}
