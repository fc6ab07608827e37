//! One task per pod: makes the pod's containers run as its spec says and keeps a
//! snapshot of what it observes. Level-triggered: every pass looks at each
//! container's real state (from its shim's record) and decides — start, wait for
//! init containers, restart under the restart policy with back-off (10 s doubling to
//! 5 min: `CrashLoopBackOff`), pull images (`ErrImagePull` → `ImagePullBackOff`),
//! restart on liveness failures. On stop it runs each container's preStop hook,
//! sends SIGTERM to the container's PID 1, waits for the containers to exit until the
//! stop's deadline (which may move earlier meanwhile: a shorter grace period on a
//! second delete), SIGKILLs what still runs, publishes the exits (real exit codes)
//! and tears everything down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};

use super::ephemeral;
use super::probes::{self, Flags, Report};
use super::sandbox::{self, Sandbox};
use super::spec;
use super::{volumes, Inner};
use crate::agent::runtime::{ContainerPhase, ContainerState, PodState};
use crate::component::events::EventType;
use crate::image::{Image, ImageConfig, PullOptions};
use crate::runtime::exec::ExecTarget;
use crate::runtime::ContainerState as RunState;

/// How often a pod is looked at without a reason.
const TICK: Duration = Duration::from_secs(1);
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long without failing starts over at the shortest back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often a terminating pod's containers are looked at.
const STOP_POLL: Duration = Duration::from_millis(100);
/// How long SIGKILLed containers get to be reaped by their shims.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// What a container still gets after SIGTERM when its preStop hook used up the grace
/// period (the kubelet's one-off extension).
const HOOK_OVERRUN_GRACE: Duration = Duration::from_secs(2);

/// What the worker publishes: the pod's state plus what logs and exec need.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub namespace: String,
    pub name: String,
    pub state: Option<PodState>,
    pub containers: HashMap<String, Access>,
}

/// Logs and exec of one container.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub log: Option<PathBuf>,
    pub previous_log: Option<PathBuf>,
    pub exec: Option<ExecTarget>,
}

/// A finished run.
#[derive(Debug, Clone)]
struct Finished {
    code: i32,
    reason: String,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
}

/// One run of a container.
struct Run {
    id: String,
    exec: ExecTarget,
    log: PathBuf,
    started_at: DateTime<Utc>,
    started: Instant,
    flags: Arc<Flags>,
    probes: Vec<tokio::task::AbortHandle>,
    exit: Option<Finished>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop_probes();
    }
}

impl Run {
    fn stop_probes(&mut self) {
        for probe in self.probes.drain(..) {
            probe.abort();
        }
    }
}

/// One container of the pod and its history.
struct Slot {
    spec: Container,
    init: bool,
    next_attempt: u32,
    restarts: i32,
    current: Option<Run>,
    last: Option<Finished>,
    previous_log: Option<PathBuf>,
    waiting: Option<(String, String)>,
    backoff: Duration,
    retry_at: Option<Instant>,
    image: Option<(Image, ImageConfig)>,
    image_id: String,
    /// An ephemeral container (`ephemeral`): started once, never restarted.
    ephemeral: bool,
}

impl Slot {
    fn new(spec: Container, init: bool) -> Slot {
        Slot {
            spec,
            init,
            next_attempt: 0,
            restarts: 0,
            current: None,
            last: None,
            previous_log: None,
            waiting: None,
            backoff: Duration::ZERO,
            retry_at: None,
            image: None,
            image_id: String::new(),
            ephemeral: false,
        }
    }

    fn running(&self) -> bool {
        self.current.as_ref().is_some_and(|r| r.exit.is_none())
    }

    fn succeeded(&self) -> bool {
        self.current
            .as_ref()
            .and_then(|r| r.exit.as_ref())
            .is_some_and(|e| e.code == 0)
    }

    /// Doubles the back-off (from zero: the first restart is immediate).
    fn next_backoff(&mut self) -> Duration {
        let delay = self.backoff;
        self.backoff = if self.backoff.is_zero() {
            BACKOFF_START
        } else {
            (self.backoff * 2).min(BACKOFF_MAX)
        };
        delay
    }
}

pub struct Worker {
    rt: Arc<Inner>,
    pod: Pod,
    uid: String,
    dir: PathBuf,
    sandbox: Option<Sandbox>,
    sandbox_retry: Option<Instant>,
    volumes: volumes::Mounts,
    slots: Vec<Slot>,
    failed: bool,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    snapshot: Arc<Mutex<Snapshot>>,
}

/// How the pod loop talks to a worker.
pub struct Handle {
    pub pod: watch::Sender<Pod>,
    /// When set, the pod stops: SIGKILL for what still runs at this deadline.
    pub stop: watch::Sender<Option<Instant>>,
    pub done: watch::Receiver<bool>,
    pub snapshot: Arc<Mutex<Snapshot>>,
}

/// Starts a worker for `pod`, adopting `adopted` containers left by an earlier run of
/// the agent; with `stop`, the worker only stops the pod by that deadline.
pub fn spawn(
    rt: Arc<Inner>,
    pod: Pod,
    adopted: Vec<crate::runtime::ContainerInfo>,
    stop: Option<Instant>,
) -> Handle {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let snapshot = Arc::new(Mutex::new(Snapshot {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        state: None,
        containers: HashMap::new(),
    }));
    let (pod_tx, pod_rx) = watch::channel(pod.clone());
    let (stop_tx, stop_rx) = watch::channel(stop);
    let (done_tx, done_rx) = watch::channel(false);
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let spec = pod.spec.clone().unwrap_or_default();
    let slots = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| Slot::new(c.clone(), true))
        .chain(spec.containers.iter().map(|c| Slot::new(c.clone(), false)))
        .collect();
    let dir = rt.pods_dir().join(&uid);
    let mut worker = Worker {
        rt,
        pod,
        uid,
        sandbox: sandbox::load(&dir),
        dir,
        sandbox_retry: None,
        volumes: volumes::Mounts::default(),
        slots,
        failed: false,
        reports_tx,
        reports,
        snapshot: snapshot.clone(),
    };
    tokio::spawn(async move {
        worker.add_ephemeral_slots();
        worker.adopt(adopted);
        worker.run(pod_rx, stop_rx).await;
        let _ = done_tx.send(true);
    });
    Handle {
        pod: pod_tx,
        stop: stop_tx,
        done: done_rx,
        snapshot,
    }
}

impl Worker {
    async fn run(
        &mut self,
        mut pod_rx: watch::Receiver<Pod>,
        mut stop_rx: watch::Receiver<Option<Instant>>,
    ) {
        loop {
            if stop_rx.borrow_and_update().is_some() {
                self.terminate(&mut stop_rx).await;
                return;
            }
            self.pod = pod_rx.borrow_and_update().clone();
            self.add_ephemeral_slots();
            self.step().await;
            self.publish();
            tokio::select! {
                _ = pod_rx.changed() => {}
                _ = stop_rx.changed() => {}
                Some(report) = self.reports.recv() => self.on_report(report).await,
                _ = tokio::time::sleep(TICK) => {}
            }
            while let Ok(report) = self.reports.try_recv() {
                self.on_report(report).await;
            }
        }
    }

    /// Slots for ephemeral containers the pod gained.
    fn add_ephemeral_slots(&mut self) {
        let known: Vec<&str> = self.slots.iter().map(|s| s.spec.name.as_str()).collect();
        let added = ephemeral::added(&self.pod, &known);
        self.slots.extend(added.into_iter().map(|c| Slot {
            ephemeral: true,
            ..Slot::new(c, false)
        }));
    }

    /// The PID namespace of an ephemeral container's running target, if it has one.
    fn ephemeral_target_pid_ns(&self, name: &str) -> Option<PathBuf> {
        let target = ephemeral::target_of(&self.pod, name)?;
        let slot = self.slots.iter().find(|s| s.spec.name == target)?;
        let run = slot.current.as_ref().filter(|r| r.exit.is_none())?;
        ephemeral::pid_namespace(run.exec.pid)
    }

    fn reference(&self, container: Option<&str>) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: self.pod.metadata.name.clone(),
            namespace: self.pod.metadata.namespace.clone(),
            uid: self.pod.metadata.uid.clone(),
            field_path: container.map(|c| format!("spec.containers{{{c}}}")),
            ..Default::default()
        }
    }

    async fn event(&self, container: Option<&str>, kind: EventType, reason: &str, message: &str) {
        if let Some(env) = self.rt.env.get() {
            env.recorder
                .publish(&self.reference(container), kind, reason, message)
                .await;
        }
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    fn pod_ip(&self) -> Option<IpAddr> {
        self.sandbox.as_ref().and_then(|s| s.record.ip)
    }

    /// Takes over containers found on disk: the newest run of each becomes current.
    fn adopt(&mut self, mut adopted: Vec<crate::runtime::ContainerInfo>) {
        adopted.sort_by_key(attempt_of);
        for info in adopted {
            let name = info
                .annotations
                .get(spec::CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            let attempt = attempt_of(&info);
            let Some(slot) = self.slots.iter_mut().find(|s| s.spec.name == name) else {
                let _ = self.rt.runtime.remove_blocking(&info.id);
                continue;
            };
            let Some(exec) = read_exec(&self.dir, &info.id) else {
                continue;
            };
            if let Some(old) = slot.current.take() {
                slot.previous_log = Some(old.log.clone());
                slot.last = old.exit.clone();
            }
            slot.next_attempt = attempt + 1;
            slot.restarts = attempt as i32;
            slot.image_id = info
                .annotations
                .get(spec::IMAGE_ID)
                .cloned()
                .unwrap_or_default();
            let started_at = match &info.state {
                RunState::Running { started_at, .. } => *started_at,
                RunState::Exited { started_at, .. } => *started_at,
                _ => Utc::now(),
            };
            let mut run = Run {
                id: info.id.clone(),
                exec,
                log: info.log_path.clone().unwrap_or_default(),
                started_at,
                started: Instant::now(),
                flags: Arc::new(Flags::default()),
                probes: Vec::new(),
                exit: None,
            };
            run.exit = finished(&info.state);
            if run.exit.is_none() {
                if let Some(ip) = self
                    .sandbox
                    .as_ref()
                    .and_then(|s| s.record.ip)
                    .or(Some(self.rt.config.node_ip))
                {
                    run.probes = probes::start(
                        probes::Target {
                            container: slot.spec.clone(),
                            container_id: run.id.clone(),
                            ip,
                            exec: run.exec.clone(),
                        },
                        run.flags.clone(),
                        self.reports_tx.clone(),
                    );
                }
            }
            tracing::info!(pod = %self.uid, container = %name, id = %info.id, "adopted a container");
            slot.current = Some(run);
        }
    }

    /// One reconcile pass.
    async fn step(&mut self) {
        if self.failed {
            return;
        }
        if !self.ensure_sandbox().await {
            return;
        }
        if !self.ensure_volumes().await {
            return;
        }
        self.observe_exits();
        let policy = self.restart_policy().to_string();
        // Init containers, in order, each to success.
        for i in 0..self.slots.len() {
            if !self.slots[i].init {
                continue;
            }
            if self.slots[i].succeeded() {
                continue;
            }
            if self.slots[i].running() {
                return;
            }
            let failed_before = self.slots[i].current.as_ref().and_then(|r| r.exit.clone());
            if failed_before.is_some() && policy == "Never" {
                self.failed = true;
                return;
            }
            self.start_when_due(i).await;
            return;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].ephemeral {
                if self.slots[i].current.is_none() {
                    self.start_when_due(i).await;
                }
                continue;
            }
            if self.slots[i].init || self.slots[i].running() {
                continue;
            }
            let exit = self.slots[i].current.as_ref().and_then(|r| r.exit.clone());
            let restart = match (&exit, policy.as_str()) {
                (None, _) => true,
                (Some(_), "Always") => true,
                (Some(e), "OnFailure") => e.code != 0,
                _ => false,
            };
            if restart {
                self.start_when_due(i).await;
            }
        }
    }

    /// Starts slot `i` now, or records the back-off it waits for.
    async fn start_when_due(&mut self, i: usize) {
        let now = Instant::now();
        let pod = self.pod_label();
        let slot = &mut self.slots[i];
        let exited = slot
            .current
            .as_ref()
            .and_then(|r| r.exit.as_ref().map(|_| r.started));
        if let (Some(started), None) = (exited, slot.retry_at) {
            if started.elapsed() > BACKOFF_RESET {
                slot.backoff = Duration::ZERO;
            }
            let delay = slot.next_backoff();
            slot.retry_at = Some(now + delay);
            if !delay.is_zero() {
                let name = slot.spec.name.clone();
                slot.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!(
                        "back-off {}s restarting failed container={name} pod={pod}",
                        delay.as_secs()
                    ),
                ));
            }
        }
        if slot.retry_at.is_some_and(|at| now < at) {
            return;
        }
        slot.retry_at = None;
        if let Err((reason, message)) = self.start(i).await {
            let slot = &mut self.slots[i];
            let delay = slot.next_backoff();
            slot.retry_at = Some(Instant::now() + delay.max(Duration::from_secs(1)));
            slot.waiting = Some((reason, message));
        }
    }

    fn pod_label(&self) -> String {
        format!(
            "{}_{}({})",
            self.pod.metadata.name.clone().unwrap_or_default(),
            self.pod.metadata.namespace.clone().unwrap_or_default(),
            self.uid
        )
    }

    async fn ensure_sandbox(&mut self) -> bool {
        if self.sandbox.is_some() {
            return true;
        }
        if self.sandbox_retry.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        let Some(env) = self.rt.env.get() else {
            return false;
        };
        match Sandbox::create(&self.dir, &self.pod, &env.network, &self.rt.config.dns).await {
            Ok(sandbox) => {
                self.sandbox = Some(sandbox);
                true
            }
            Err(e) => {
                let message = format!("Failed to create pod sandbox: {e}");
                tracing::warn!(pod = %self.uid, error = %e, "creating the pod sandbox failed");
                // Whatever was half made goes; the next try starts clean.
                if let Some(half) = sandbox::load(&self.dir) {
                    half.teardown(Some(&env.network)).await;
                }
                self.sandbox_retry = Some(Instant::now() + BACKOFF_START);
                self.event(None, EventType::Warning, "FailedCreatePodSandBox", &message)
                    .await;
                false
            }
        }
    }

    /// Sets the volumes up when due (see `volumes::Mounts`); until all could be
    /// provided the containers wait in `ContainerCreating` with a `FailedMount` event.
    async fn ensure_volumes(&mut self) -> bool {
        let ready = self.volumes.paths().is_some();
        if !self.volumes.due(&self.pod) {
            return ready;
        }
        let (Some(env), Some(sandbox)) = (self.rt.env.get(), self.sandbox.as_ref()) else {
            return false;
        };
        let dir = sandbox.volumes_dir();
        match self.volumes.sync(&env.client, &self.pod, &dir).await {
            Ok(()) => true,
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(pod = %self.uid, error = %message, "setting up volumes failed");
                self.event(None, EventType::Warning, "FailedMount", &message)
                    .await;
                if !ready {
                    for slot in &mut self.slots {
                        slot.waiting = Some(("ContainerCreating".into(), String::new()));
                    }
                }
                ready
            }
        }
    }

    /// Reads every current run's state; records exits.
    fn observe_exits(&mut self) {
        for slot in &mut self.slots {
            let Some(run) = slot.current.as_mut().filter(|r| r.exit.is_none()) else {
                continue;
            };
            match self.rt.runtime.state(&run.id) {
                Ok(state) => {
                    if let Some(done) = finished(&state) {
                        run.exit = Some(done);
                        run.stop_probes();
                    }
                }
                Err(e) => {
                    tracing::debug!(id = %run.id, error = %e, "container state unknown");
                }
            }
        }
    }

    /// Makes sure the slot's image is here, per its pull policy.
    async fn ensure_image(&mut self, i: usize) -> Result<(Image, ImageConfig), (String, String)> {
        let reference = self.slots[i].spec.image.clone().unwrap_or_default();
        let policy = pull_policy(&self.slots[i].spec);
        let name = self.slots[i].spec.name.clone();
        let images = &self.rt.images;
        self.rt.wait_for_airgap_import().await;
        let local = images.get(&reference).ok().flatten();
        let image = match (policy.as_str(), local) {
            ("Never", None) => {
                let message = format!(
                    "Container image \"{reference}\" is not present with pull policy of Never"
                );
                self.event(
                    Some(&name),
                    EventType::Warning,
                    "ErrImageNeverPull",
                    &message,
                )
                .await;
                return Err(("ErrImageNeverPull".into(), message));
            }
            ("Never", Some(image)) | ("IfNotPresent", Some(image)) => {
                if self.slots[i].image.is_none() {
                    let message =
                        format!("Container image \"{reference}\" already present on machine");
                    self.event(Some(&name), EventType::Normal, "Pulled", &message)
                        .await;
                }
                image
            }
            (_, local) => {
                if self.slots[i].image.is_some() && policy != "Always" {
                    return Ok(self.slots[i].image.clone().expect("checked"));
                }
                self.event(
                    Some(&name),
                    EventType::Normal,
                    "Pulling",
                    &format!("Pulling image \"{reference}\""),
                )
                .await;
                let began = Instant::now();
                match images.pull(&reference, PullOptions::default()).await {
                    Ok(image) => {
                        let message = format!(
                            "Successfully pulled image \"{reference}\" in {:.3}s. Image size: {} bytes.",
                            began.elapsed().as_secs_f64(),
                            image.size
                        );
                        self.event(Some(&name), EventType::Normal, "Pulled", &message)
                            .await;
                        image
                    }
                    Err(e) => match local {
                        // Air-gapped nodes: an image already here is used when the
                        // registry cannot be reached (see docs/adr/0005).
                        Some(image) => {
                            let message = format!("Failed to pull image \"{reference}\": {e}; using the image present on the node");
                            self.event(Some(&name), EventType::Warning, "Failed", &message)
                                .await;
                            image
                        }
                        None => {
                            let message = format!("Failed to pull image \"{reference}\": {e}");
                            self.event(Some(&name), EventType::Warning, "Failed", &message)
                                .await;
                            let reason =
                                if self.slots[i].waiting.as_ref().is_some_and(|w| {
                                    w.0 == "ErrImagePull" || w.0 == "ImagePullBackOff"
                                }) {
                                    "ImagePullBackOff"
                                } else {
                                    "ErrImagePull"
                                };
                            if reason == "ImagePullBackOff" {
                                let m = format!("Back-off pulling image \"{reference}\"");
                                self.event(Some(&name), EventType::Normal, "BackOff", &m)
                                    .await;
                            }
                            return Err((reason.into(), message));
                        }
                    },
                }
            }
        };
        let config = images.config(&image).map_err(|e| {
            (
                "CreateContainerError".to_string(),
                format!("reading the config of {reference}: {e}"),
            )
        })?;
        self.slots[i].image_id = image.repo_digest().unwrap_or_else(|| image.id.to_string());
        self.slots[i].image = Some((image.clone(), config.clone()));
        Ok((image, config))
    }

    /// Creates and starts a new run of slot `i`.
    async fn start(&mut self, i: usize) -> Result<(), (String, String)> {
        let (image, config) = self.ensure_image(i).await?;
        let name = self.slots[i].spec.name.clone();
        let fail = |reason: &str, message: String| (reason.to_string(), message);
        let layers = self
            .rt
            .images
            .rootfs_layers(&image)
            .await
            .map_err(|e| fail("CreateContainerError", e.to_string()))?;
        // The run before the previous one goes; the previous one's log stays for --previous.
        if let Some(old) = self.slots[i].current.take() {
            self.remove_run(&old).await;
            self.slots[i].previous_log = Some(old.log.clone());
            self.slots[i].last = old.exit.clone();
        }
        let attempt = self.slots[i].next_attempt;
        self.slots[i].next_attempt += 1;
        let id = format!("{}-{}-{}", self.uid, name, attempt);
        let sandbox = self.sandbox.clone().expect("sandbox exists");
        let container_dir = sandbox.containers_dir().join(&id);
        let rootfs = spec::mount_rootfs(&container_dir, &layers)
            .map_err(|m| fail("CreateContainerError", m))?;
        let result = self
            .create(i, &id, attempt, &sandbox, &rootfs, &config)
            .await;
        match result {
            Ok(run) => {
                let slot = &mut self.slots[i];
                slot.restarts = attempt as i32;
                slot.waiting = None;
                slot.current = Some(run);
                self.event(
                    Some(&name),
                    EventType::Normal,
                    "Created",
                    &format!("Created container {name}"),
                )
                .await;
                self.event(
                    Some(&name),
                    EventType::Normal,
                    "Started",
                    &format!("Started container {name}"),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                let _ = spec::remove_rootfs(&container_dir);
                self.event(
                    Some(&name),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {}", e.1),
                )
                .await;
                Err(e)
            }
        }
    }

    async fn create(
        &mut self,
        i: usize,
        id: &str,
        attempt: u32,
        sandbox: &Sandbox,
        rootfs: &std::path::Path,
        image: &ImageConfig,
    ) -> Result<Run, (String, String)> {
        let fail = |reason: &str, message: String| (reason.to_string(), message);
        let env_client = self
            .rt
            .env
            .get()
            .map(|e| e.client.clone())
            .ok_or_else(|| fail("ContainerCreating", String::new()))?;
        let container = self.slots[i].spec.clone();
        let pod_ip = self.pod_ip().map(|ip| ip.to_string());
        let host_ip = self.rt.config.node_ip.to_string();
        let env = volumes::environment(
            &env_client,
            &self.pod,
            &container,
            pod_ip.as_deref(),
            &host_ip,
        )
        .await
        .map_err(|e| fail("CreateContainerConfigError", e.to_string()))?;
        let log = self.rt.log_path(&self.pod, &container.name, attempt);
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail("CreateContainerError", format!("{}: {e}", parent.display())))?;
        }
        let volumes = self.volumes.paths().cloned().unwrap_or_default();
        let mut config = spec::container_config(&spec::Input {
            id,
            pod: &self.pod,
            container: &container,
            attempt,
            image,
            image_id: &self.slots[i].image_id,
            rootfs,
            env: &env,
            volumes: &volumes,
            sandbox,
            log_path: log.clone(),
            cgroup_root: &self.rt.config.cgroup_root,
        })
        .map_err(|m| fail("CreateContainerConfigError", m))?;
        if self.slots[i].ephemeral {
            config.namespaces.pid = self.ephemeral_target_pid_ns(&container.name);
        }
        let exec = ExecTarget {
            container_id: id.to_string(),
            pid: 0,
            env: config.env.clone(),
            user: config.user.clone(),
            working_dir: config.working_dir.clone(),
            cgroup_path: config.cgroup_path.clone(),
        };
        let handle = self
            .rt
            .runtime
            .create(&config)
            .await
            .map_err(|e| fail("RunContainerError", e.to_string()))?;
        let exec = ExecTarget {
            pid: handle.pid,
            ..exec
        };
        write_exec(&self.dir, id, &exec);
        let flags = Arc::new(Flags::default());
        let ip = self.pod_ip().unwrap_or(self.rt.config.node_ip);
        let probes = probes::start(
            probes::Target {
                container,
                container_id: id.to_string(),
                ip,
                exec: exec.clone(),
            },
            flags.clone(),
            self.reports_tx.clone(),
        );
        Ok(Run {
            id: id.to_string(),
            exec,
            log,
            started_at: Utc::now(),
            started: Instant::now(),
            flags,
            probes,
            exit: None,
        })
    }

    async fn on_report(&mut self, report: Report) {
        match report {
            Report::Failed {
                container,
                kind,
                message,
            } => {
                let text = format!("{} probe failed: {message}", kind.name());
                self.event(Some(&container), EventType::Warning, "Unhealthy", &text)
                    .await;
            }
            Report::Restart {
                container,
                container_id,
                kind,
            } => {
                let Some(i) = self.slots.iter().position(|s| s.spec.name == container) else {
                    return;
                };
                let current = self.slots[i].current.as_ref().map(|r| r.id.clone());
                if current.as_deref() != Some(container_id.as_str()) {
                    return;
                }
                let text = format!(
                    "Container {container} failed {} probe, will be restarted",
                    kind.name().to_lowercase()
                );
                self.event(Some(&container), EventType::Normal, "Killing", &text)
                    .await;
                let grace = crate::agent::pods::grace_period(&self.pod);
                if let Err(e) = self.rt.runtime.stop(&container_id, grace).await {
                    tracing::warn!(id = %container_id, error = %e, "stopping an unhealthy container failed");
                }
                // A liveness restart is not a crash: no back-off before it.
                self.slots[i].retry_at = Some(Instant::now());
                self.observe_exits();
            }
        }
    }

    async fn remove_run(&self, run: &Run) {
        if let Err(e) = self.rt.runtime.remove(&run.id).await {
            tracing::warn!(id = %run.id, error = %e, "removing a container failed");
        }
        if let Some(sandbox) = &self.sandbox {
            if let Err(e) = spec::remove_rootfs(&sandbox.containers_dir().join(&run.id)) {
                tracing::warn!(id = %run.id, error = %e, "removing a rootfs failed");
            }
        }
    }

    /// Stops every container — preStop hook, then SIGTERM to its PID 1 — waits for
    /// them until the stop's deadline, SIGKILLs the rest, publishes their exits, then
    /// removes everything.
    async fn terminate(&mut self, stop_rx: &mut watch::Receiver<Option<Instant>>) {
        let deadline =
            |rx: &watch::Receiver<Option<Instant>>| rx.borrow().unwrap_or_else(Instant::now);
        self.observe_exits();
        let mut signals = tokio::task::JoinSet::new();
        for slot in &mut self.slots {
            let Some(run) = slot.current.as_mut().filter(|r| r.exit.is_none()) else {
                continue;
            };
            // A stopping container is not restarted for failing its probes.
            run.stop_probes();
            let target = probes::Target {
                container: slot.spec.clone(),
                container_id: run.id.clone(),
                ip: self
                    .sandbox
                    .as_ref()
                    .and_then(|s| s.record.ip)
                    .unwrap_or(self.rt.config.node_ip),
                exec: run.exec.clone(),
            };
            let hook = slot.spec.lifecycle.clone().and_then(|l| l.pre_stop);
            signals.spawn(stop_container(
                self.rt.runtime.clone(),
                target,
                hook,
                deadline(stop_rx),
            ));
        }
        for slot in self.slots.iter().filter(|s| s.running()) {
            let name = slot.spec.name.clone();
            self.event(
                Some(&name),
                EventType::Normal,
                "Killing",
                &format!("Stopping container {name}"),
            )
            .await;
        }
        self.wait_for_exits(stop_rx, Duration::ZERO).await;
        while signals.try_join_next().is_some() {}
        if !signals.is_empty() {
            // preStop hooks outran the grace period: SIGTERM now and, as the kubelet
            // does, 2 s more before SIGKILL.
            signals.abort_all();
            for run in self.slots.iter().filter_map(|s| s.current.as_ref()) {
                if run.exit.is_none() {
                    let _ = self.rt.runtime.kill(&run.id, Signal::SIGTERM);
                }
            }
            self.wait_for_exits(stop_rx, HOOK_OVERRUN_GRACE).await;
        }
        self.kill_remaining().await;
        self.publish();
        self.tear_down().await;
    }

    /// Waits until every container exited or the stop's deadline (plus `extra`) passed,
    /// publishing each exit; follows the deadline when it moves earlier.
    async fn wait_for_exits(
        &mut self,
        stop_rx: &mut watch::Receiver<Option<Instant>>,
        extra: Duration,
    ) {
        loop {
            self.observe_exits();
            self.publish();
            if !self.slots.iter().any(Slot::running) {
                return;
            }
            let deadline = stop_rx.borrow().unwrap_or_else(Instant::now) + extra;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let pause = tokio::time::sleep(left.min(STOP_POLL));
            tokio::pin!(pause);
            tokio::select! {
                changed = stop_rx.changed() => {
                    if changed.is_err() {
                        pause.await;
                    }
                }
                _ = &mut pause => {}
            }
        }
    }

    /// SIGKILLs every container still running and waits for their shims to record it.
    async fn kill_remaining(&mut self) {
        for run in self.slots.iter().filter_map(|s| s.current.as_ref()) {
            if run.exit.is_none() {
                tracing::info!(pod = %self.uid, id = %run.id, "grace period over: killing the container");
                if let Err(e) = self.rt.runtime.kill(&run.id, Signal::SIGKILL) {
                    tracing::debug!(id = %run.id, error = %e, "SIGKILL failed");
                }
            }
        }
        let until = Instant::now() + KILL_WAIT;
        while self.slots.iter().any(Slot::running) && Instant::now() < until {
            tokio::time::sleep(STOP_POLL).await;
            self.observe_exits();
        }
    }

    /// Removes the containers, the sandbox and the logs.
    async fn tear_down(&mut self) {
        let runs: Vec<Run> = self
            .slots
            .iter_mut()
            .filter_map(|s| s.current.take())
            .collect();
        for run in &runs {
            self.remove_run(run).await;
        }
        let network = self.rt.env.get().map(|e| e.network.clone());
        let sandbox = self.sandbox.take().or_else(|| sandbox::load(&self.dir));
        if let Some(sandbox) = sandbox {
            for e in sandbox.teardown(network.as_ref()).await {
                tracing::warn!(pod = %self.uid, error = %e, "tearing the sandbox down");
            }
        }
        self.rt.remove_logs(&self.pod);
        if let Ok(mut snapshot) = self.snapshot.lock() {
            snapshot.containers.clear();
        }
    }

    /// Publishes the pod's state for status reports, logs and exec.
    fn publish(&self) {
        let Some(sandbox) = &self.sandbox else {
            return;
        };
        let mut init = Vec::new();
        let mut containers = Vec::new();
        let mut ephemeral_containers = Vec::new();
        let mut access = HashMap::new();
        let policy = self.restart_policy();
        for slot in &self.slots {
            if slot.ephemeral {
                ephemeral_containers.push(container_state(slot, ephemeral::RESTART_POLICY));
            } else if slot.init {
                init.push(container_state(slot, policy));
            } else {
                containers.push(container_state(slot, policy));
            }
            access.insert(
                slot.spec.name.clone(),
                Access {
                    log: slot.current.as_ref().map(|r| r.log.clone()),
                    previous_log: slot.previous_log.clone(),
                    exec: slot
                        .current
                        .as_ref()
                        .filter(|r| r.exit.is_none())
                        .map(|r| r.exec.clone()),
                },
            );
        }
        let state = PodState {
            ip: sandbox.record.ip.or(sandbox
                .record
                .host_network
                .then_some(self.rt.config.node_ip)),
            started_at: sandbox.record.started_at,
            init_containers: init,
            containers,
            ephemeral_containers,
            failed: self.failed,
        };
        let changed = match self.snapshot.lock() {
            Ok(mut snapshot) => {
                snapshot.namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
                snapshot.name = self.pod.metadata.name.clone().unwrap_or_default();
                snapshot.containers = access;
                let changed = snapshot.state.as_ref() != Some(&state);
                snapshot.state = Some(state);
                changed
            }
            Err(_) => false,
        };
        if changed {
            if let Some(env) = self.rt.env.get() {
                env.changed.notify_one();
            }
        }
    }
}

/// One container's graceful stop: its preStop hook (within the grace period), then
/// SIGTERM to its PID 1. The caller SIGKILLs it at the deadline.
async fn stop_container(
    runtime: crate::runtime::Runtime,
    target: probes::Target,
    hook: Option<k8s_openapi::api::core::v1::LifecycleHandler>,
    deadline: Instant,
) {
    if let Some(hook) = hook {
        let probe = k8s_openapi::api::core::v1::Probe {
            exec: hook.exec,
            http_get: hook.http_get,
            tcp_socket: hook.tcp_socket,
            ..Default::default()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = probes::check(&probe, &target, left.max(Duration::from_secs(1))).await {
            tracing::info!(id = %target.container_id, error = %e, "the preStop hook failed");
        }
    }
    match runtime.kill(&target.container_id, Signal::SIGTERM) {
        Ok(()) | Err(crate::runtime::RuntimeError::NotRunning { .. }) => {}
        Err(e) => tracing::warn!(id = %target.container_id, error = %e, "SIGTERM failed"),
    }
}

fn terminated(f: &Finished) -> ContainerPhase {
    ContainerPhase::Terminated {
        exit_code: f.code,
        reason: f.reason.clone(),
        started_at: f.started_at,
        finished_at: f.finished_at,
    }
}

/// A slot as the pod status shows it.
fn container_state(slot: &Slot, policy: &str) -> ContainerState {
    let image = slot.spec.image.clone().unwrap_or_default();
    let id = slot
        .current
        .as_ref()
        .map(|r| format!("skiff://{}", r.id))
        .unwrap_or_default();
    let mut last = slot.last.as_ref().map(terminated);
    let phase = match &slot.current {
        Some(run) => match &run.exit {
            None => ContainerPhase::Running {
                started_at: run.started_at,
            },
            Some(exit) => {
                let restarts = match policy {
                    "Always" => !slot.init || exit.code != 0,
                    "OnFailure" => exit.code != 0,
                    _ => false,
                };
                match (&slot.waiting, restarts) {
                    (Some((reason, message)), true) => {
                        last = Some(terminated(exit));
                        ContainerPhase::Waiting {
                            reason: reason.clone(),
                            message: message.clone(),
                        }
                    }
                    _ => terminated(exit),
                }
            }
        },
        None => {
            let (reason, message) = slot
                .waiting
                .clone()
                .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
            let reason = if reason == "ContainerCreating" && slot.init {
                "PodInitializing".into()
            } else {
                reason
            };
            ContainerPhase::Waiting { reason, message }
        }
    };
    let running = matches!(phase, ContainerPhase::Running { .. });
    let ready = running
        && slot.current.as_ref().is_some_and(|r| {
            r.flags.started.load(Ordering::Relaxed) && r.flags.ready.load(Ordering::Relaxed)
        });
    ContainerState {
        name: slot.spec.name.clone(),
        image,
        image_id: slot.image_id.clone(),
        id,
        phase,
        last,
        ready: ready || (slot.init && slot.succeeded()),
        restart_count: slot.restarts,
    }
}

/// An exit, from the runtime's view of a container.
fn finished(state: &RunState) -> Option<Finished> {
    match state {
        RunState::Exited {
            code,
            reason,
            started_at,
            finished_at,
            ..
        } => Some(Finished {
            code: *code,
            reason: reason.clone(),
            started_at: *started_at,
            finished_at: *finished_at,
        }),
        RunState::Unknown { reason } => Some(Finished {
            code: 255,
            reason: if reason.is_empty() {
                "Unknown".into()
            } else {
                reason.clone()
            },
            started_at: Utc::now(),
            finished_at: Utc::now(),
        }),
        _ => None,
    }
}

fn attempt_of(info: &crate::runtime::ContainerInfo) -> u32 {
    info.annotations
        .get(spec::ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// `imagePullPolicy`, defaulted as the API server does: Always for `:latest` or no tag.
pub fn pull_policy(container: &Container) -> String {
    if let Some(p) = container
        .image_pull_policy
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        return p.to_string();
    }
    let image = container.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if image.contains('@') {
        Some("digest")
    } else {
        last.split_once(':').map(|(_, t)| t)
    };
    match tag {
        None | Some("latest") => "Always".into(),
        _ => "IfNotPresent".into(),
    }
}

fn exec_file(dir: &std::path::Path, id: &str) -> PathBuf {
    dir.join("containers").join(id).join("exec.json")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ExecRecord {
    pid: i32,
    env: Vec<(String, String)>,
    uid: u32,
    gid: u32,
    gids: Vec<u32>,
    cwd: Option<PathBuf>,
    cgroup: PathBuf,
}

fn write_exec(dir: &std::path::Path, id: &str, exec: &ExecTarget) {
    let record = ExecRecord {
        pid: exec.pid,
        env: exec.env.clone(),
        uid: exec.user.uid,
        gid: exec.user.gid,
        gids: exec.user.additional_gids.clone(),
        cwd: exec.working_dir.clone(),
        cgroup: exec.cgroup_path.clone(),
    };
    let path = exec_file(dir, id);
    if let Ok(bytes) = serde_json::to_vec(&record) {
        let _ = std::fs::write(path, bytes);
    }
}

fn read_exec(dir: &std::path::Path, id: &str) -> Option<ExecTarget> {
    let bytes = std::fs::read(exec_file(dir, id)).ok()?;
    let r: ExecRecord = serde_json::from_slice(&bytes).ok()?;
    Some(ExecTarget {
        container_id: id.to_string(),
        pid: r.pid,
        env: r.env,
        user: crate::runtime::UserIds {
            uid: r.uid,
            gid: r.gid,
            additional_gids: r.gids,
        },
        working_dir: r.cwd,
        cgroup_path: r.cgroup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pull_policy_defaults_like_the_api_server() {
        let c = |image: &str| -> Container {
            serde_json::from_value(json!({"name": "c", "image": image})).unwrap()
        };
        assert_eq!(pull_policy(&c("my-flask-app:latest")), "Always");
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/busybox")), "Always");
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/busybox:1.36")),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&c("busybox@sha256:abc")), "IfNotPresent");
    }

    #[test]
    fn back_off_doubles_from_an_immediate_first_restart_to_five_minutes() {
        let mut slot = Slot::new(serde_json::from_value(json!({"name": "c"})).unwrap(), false);
        let delays: Vec<u64> = (0..8).map(|_| slot.next_backoff().as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
    }
}
