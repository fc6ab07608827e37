//! The container runtime: runs pods' containers as real Linux containers through
//! youki's libcontainer, inside the skiff binary. This is the kernel-facing layer under
//! the agent's `PodRuntime`: it knows containers, not pods.
//!
//! Owns: OCI runtime specs (`spec`), the per-container shims (`shim`), libcontainer,
//! container cgroups (`cgroups`) and container logs (`logs`).
//! May call: nothing else in skiff; the kernel (through libcontainer, `/proc`,
//! `/sys/fs/cgroup`, signals) and its own binary re-executed as `skiff shim`.
//!
//! On disk, under the runtime's root (e.g. `/var/lib/skiff/containers`):
//!
//! ```text
//! <root>/<id>/bundle/config.json    the OCI spec; its root.path is the caller's rootfs
//! <root>/<id>/state/shim.json       the shim's pid and start time
//! <root>/<id>/state/status.json     created / running / exited, exit code and reason
//! <root>/<id>/state/container.pid   the container's pid (libcontainer writes it)
//! <root>/<id>/state/shim.log        the shim's own diagnostics
//! <root>/<id>/state/libcontainer/   libcontainer's state while the container lives
//! ```
//!
//! The container's output goes to the log file its config names, in the CRI format.
//! The state directory outlives the agent, so an agent that restarts finds every
//! container again with `list` (re-adoption) and reads exit codes recorded meanwhile.

pub mod attach;
pub mod cgroups;
pub mod config;
pub mod exec;
pub mod host;
pub mod logs;
pub mod shim;
pub mod spec;
pub mod status;

#[cfg(test)]
mod e2e_tests;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

pub use cgroups::{CgroupValues, CgroupVersion, Cgroups, HostCgroups};
pub use config::{
    BindMount, CapabilityChanges, ContainerConfig, Limits, LogConfig, SandboxNamespaces, UserIds,
};
pub use host::{HostFacts, HostProcesses, ProcessId, Processes};
pub use shim::{shim_main, ShimArgs};
pub use spec::build_spec;
pub use status::ContainerState;

use status::{derive_state, read_record, StatusRecord};

/// How long `create` waits for the shim to report.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a SIGKILLed container's shim to record the exit.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to look while waiting.
const POLL: Duration = Duration::from_millis(20);
/// Environment variables the shim keeps from the agent (everything else, such as a
/// join token, stays behind).
const SHIM_ENV: [&str; 4] = ["PATH", "SKIFF_LOG", "RUST_LOG", "RUST_BACKTRACE"];

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container id {id:?} is invalid: {reason}")]
    InvalidId { id: String, reason: String },
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error("container {id} already exists in {path}")]
    Exists { id: String, path: PathBuf },
    #[error("container {id} not found in {path}")]
    NotFound { id: String, path: PathBuf },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("container {id}: {action} {path}: {source}")]
    Io {
        id: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: writing {path}: {source}")]
    Bundle {
        id: String,
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("container {id}: starting the shim {program}: {source}")]
    Spawn {
        id: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: {message}")]
    Shim { id: String, message: String },
    #[error("container {id}: sending {signal}: {source}")]
    Signal {
        id: String,
        signal: Signal,
        #[source]
        source: nix::Error,
    },
    #[error("container {id} still runs {waited:?} after SIGKILL")]
    StopTimeout { id: String, waited: Duration },
    #[error("container {id}: {source}")]
    Cgroup {
        id: String,
        #[source]
        source: cgroups::CgroupError,
    },
    #[error("container runtime: probing the host: {0}")]
    Host(#[source] std::io::Error),
}

/// How the runtime starts a shim: a program, the arguments before the shim's own (the
/// subcommand), and environment variables to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub leading_args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl ShimCommand {
    /// This very binary, `<current exe> shim …`.
    pub fn current_exe() -> std::io::Result<ShimCommand> {
        Ok(ShimCommand {
            program: std::env::current_exe()?,
            leading_args: vec!["shim".into()],
            env: Vec::new(),
        })
    }
}

/// A container that `create` started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerHandle {
    pub id: String,
    pub pid: i32,
    pub shim_pid: i32,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    pub cgroup_path: PathBuf,
}

/// A container found on disk, for re-adoption after an agent restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub state: ContainerState,
    /// The config's annotations (from the bundle).
    pub annotations: BTreeMap<String, String>,
    pub log_path: Option<PathBuf>,
    pub cgroup_path: Option<PathBuf>,
}

/// The runtime API for the agent. Cheap to clone; every method may be called from
/// async code (the blocking ones only read small files or send signals).
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    shim: ShimCommand,
    host: HostFacts,
    cgroups: Box<dyn Cgroups>,
    processes: Box<dyn Processes>,
}

impl Runtime {
    /// A runtime keeping its containers under `root`, probing the host, with shims
    /// started as `<this binary> shim`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Runtime, RuntimeError> {
        let shim = ShimCommand::current_exe().map_err(RuntimeError::Host)?;
        let host = HostFacts::probe().map_err(RuntimeError::Host)?;
        let cgroups = HostCgroups::detect().map_err(RuntimeError::Host)?;
        Ok(Runtime::with_parts(
            root,
            shim,
            host,
            cgroups,
            HostProcesses,
        ))
    }

    /// A runtime from explicit parts (tests, other binaries).
    pub fn with_parts(
        root: impl Into<PathBuf>,
        shim: ShimCommand,
        host: HostFacts,
        cgroups: impl Cgroups + 'static,
        processes: impl Processes + 'static,
    ) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                root: root.into(),
                shim,
                host,
                cgroups: Box::new(cgroups),
                processes: Box::new(processes),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn host(&self) -> &HostFacts {
        &self.inner.host
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.inner.root.join(id)
    }

    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("bundle")
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("state")
    }

    /// Writes the bundle and starts the container through a detached shim; returns
    /// once it runs (or with the shim's error, having cleaned up).
    pub async fn create(&self, config: &ContainerConfig) -> Result<ContainerHandle, RuntimeError> {
        let id = checked_id(&config.id)?;
        let spec = build_spec(config, &self.inner.host)?;
        if !config.log.path.is_absolute() {
            return Err(spec::SpecError::BadPath {
                id: id.to_string(),
                what: "log path",
                path: config.log.path.clone(),
            }
            .into());
        }
        let dir = self.container_dir(id);
        if dir.exists() {
            return Err(RuntimeError::Exists {
                id: id.to_string(),
                path: dir,
            });
        }
        let (bundle, state_dir) = (self.bundle_dir(id), self.state_dir(id));
        for path in [&bundle, &state_dir] {
            std::fs::create_dir_all(path).map_err(io_error(id, "creating", path))?;
        }
        let config_json = bundle.join("config.json");
        spec.save(&config_json)
            .map_err(|source| RuntimeError::Bundle {
                id: id.to_string(),
                path: config_json.clone(),
                source,
            })?;
        let args = ShimArgs {
            id: id.to_string(),
            bundle,
            state_dir,
            log_path: config.log.path.clone(),
            log_max_bytes: config.log.max_bytes,
            log_max_files: config.log.max_files,
        };
        match self.run_shim(&args).await {
            Ok(()) => self.handle(id),
            Err(e) => {
                let runtime = self.clone();
                let owned_id = id.to_string();
                let _ =
                    tokio::task::spawn_blocking(move || runtime.remove_blocking(&owned_id)).await;
                Err(e)
            }
        }
    }

    /// Runs stage 1 of the shim and waits for its report.
    async fn run_shim(&self, args: &ShimArgs) -> Result<(), RuntimeError> {
        let id = args.id.as_str();
        let shim_log = args.state_dir.join("shim.log");
        let log = std::fs::File::create(&shim_log).map_err(io_error(id, "creating", &shim_log))?;
        let shim = &self.inner.shim;
        let mut command = tokio::process::Command::new(&shim.program);
        command
            .args(&shim.leading_args)
            .args(args.to_args())
            .env_clear()
            .envs(
                SHIM_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .envs(shim.env.iter().cloned())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let spawn_error = |source| RuntimeError::Spawn {
            id: id.to_string(),
            program: shim.program.clone(),
            source,
        };
        let (status, stdout) = tokio::time::timeout(CREATE_TIMEOUT, report_of(command))
            .await
            .map_err(|_| RuntimeError::Shim {
                id: id.to_string(),
                message: format!("the shim did not report within {CREATE_TIMEOUT:?}"),
            })?
            .map_err(spawn_error)?;
        let report = String::from_utf8_lossy(&stdout);
        let report = report
            .lines()
            .rev()
            .find(|l| l.starts_with("started ") || l.starts_with("error "));
        match report {
            Some(line) if status.success() && line.starts_with("started ") => Ok(()),
            Some(line) => Err(RuntimeError::Shim {
                id: id.to_string(),
                message: shim_message(id, line),
            }),
            None => Err(RuntimeError::Shim {
                id: id.to_string(),
                message: format!(
                    "the shim exited with {} without reporting (see {})",
                    status,
                    shim_log.display()
                ),
            }),
        }
    }

    fn handle(&self, id: &str) -> Result<ContainerHandle, RuntimeError> {
        let record = self.record(id)?.ok_or_else(|| RuntimeError::Shim {
            id: id.to_string(),
            message: "the shim reported a start but recorded no status".to_string(),
        })?;
        Ok(ContainerHandle {
            id: id.to_string(),
            pid: record.container.pid,
            shim_pid: record.shim.pid,
            bundle: self.bundle_dir(id),
            state_dir: self.state_dir(id),
            log_path: record.log_path,
            cgroup_path: record.cgroup_path,
        })
    }

    /// The container's state from its shim's record and the live processes.
    pub fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let record = self.record(id)?;
        Ok(derive_state(record.as_ref(), self.inner.processes.as_ref()))
    }

    /// Sends `signal` to the container's main process (its PID 1: signals it does not
    /// handle are ignored, except SIGKILL).
    pub fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        let not_running = || RuntimeError::NotRunning { id: id.to_string() };
        let record = self.record(id)?.ok_or_else(not_running)?;
        let processes = self.inner.processes.as_ref();
        if record.exit.is_some() || !record.container.is_alive(processes) {
            return Err(not_running());
        }
        match processes.signal(record.container.pid, signal) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Err(not_running()),
            Err(source) => Err(RuntimeError::Signal {
                id: id.to_string(),
                signal,
                source,
            }),
        }
    }

    /// SIGTERM, then SIGKILL if the container still runs after `grace`; returns the
    /// final state (normally `Exited`). Stopping a stopped container is fine.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<ContainerState, RuntimeError> {
        if self.signal_if_running(id, Signal::SIGTERM)? && !self.wait_stopped(id, grace).await? {
            self.signal_if_running(id, Signal::SIGKILL)?;
            if !self.wait_stopped(id, KILL_TIMEOUT).await? {
                return Err(RuntimeError::StopTimeout {
                    id: id.to_string(),
                    waited: KILL_TIMEOUT,
                });
            }
        }
        self.state(id)
    }

    /// Sends a signal unless the container is not running; tells whether it ran.
    fn signal_if_running(&self, id: &str, signal: Signal) -> Result<bool, RuntimeError> {
        match self.kill(id, signal) {
            Ok(()) => Ok(true),
            Err(RuntimeError::NotRunning { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `limit` for the container to stop running; tells whether it did.
    async fn wait_stopped(&self, id: &str, limit: Duration) -> Result<bool, RuntimeError> {
        let deadline = Instant::now() + limit;
        loop {
            if !self.state(id)?.is_running() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills the container if it still runs, waits for its shim, and removes its
    /// cgroup, bundle and state directory (not the rootfs or the log). Idempotent.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let runtime = self.clone();
        let owned_id = id.to_string();
        match tokio::task::spawn_blocking(move || runtime.remove_blocking(&owned_id)).await {
            Ok(result) => result,
            Err(e) => Err(RuntimeError::Shim {
                id: id.to_string(),
                message: format!("the removal task failed: {e}"),
            }),
        }
    }

    /// `remove` for synchronous callers (it sleeps while the shim finishes).
    pub fn remove_blocking(&self, id: &str) -> Result<(), RuntimeError> {
        let id = checked_id(id)?;
        let dir = self.container_dir(id);
        if !dir.exists() {
            return Ok(());
        }
        let record = self.record(id).ok().flatten();
        self.end_processes(id, record.as_ref());
        let cgroup_path = record
            .as_ref()
            .map(|r| r.cgroup_path.clone())
            .or_else(|| self.spec_cgroup_path(id));
        if let Some(path) = cgroup_path {
            self.inner
                .cgroups
                .remove(&path)
                .map_err(|source| RuntimeError::Cgroup {
                    id: id.to_string(),
                    source,
                })?;
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error(id, "removing", &dir)(e))
            }
            _ => Ok(()),
        }
    }

    /// SIGKILLs the container if it lives, then waits for its shim to record the exit
    /// and clean up; a shim that does not finish in time is killed too.
    fn end_processes(&self, id: &str, record: Option<&StatusRecord>) {
        let processes = self.inner.processes.as_ref();
        if let Some(record) = record.filter(|r| r.exit.is_none()) {
            if record.container.is_alive(processes) {
                let _ = processes.signal(record.container.pid, Signal::SIGKILL);
            }
        }
        let Some(shim) = self.shim_process(id) else {
            return;
        };
        let deadline = Instant::now() + KILL_TIMEOUT;
        while shim.is_alive(processes) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if shim.is_alive(processes) {
            let _ = processes.signal(shim.pid, Signal::SIGKILL);
        }
    }

    /// Every container under the root, with its state: what an agent that restarted
    /// needs to adopt them again.
    pub fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let root = &self.inner.root;
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("*", "listing", root)(e)),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| config::invalid_id_reason(id).is_none())
            .collect();
        ids.sort();
        Ok(ids.into_iter().map(|id| self.info(id)).collect())
    }

    fn info(&self, id: String) -> ContainerInfo {
        let record = self.record(&id).ok().flatten();
        let state = derive_state(record.as_ref(), self.inner.processes.as_ref());
        let annotations = self
            .spec(&id)
            .and_then(|s| s.annotations().clone())
            .map(|a| a.into_iter().collect())
            .unwrap_or_default();
        ContainerInfo {
            id,
            state,
            annotations,
            log_path: record.as_ref().map(|r| r.log_path.clone()),
            cgroup_path: record.map(|r| r.cgroup_path),
        }
    }

    /// The limits in force in a running container's cgroup.
    pub fn cgroup_values(&self, id: &str) -> Result<CgroupValues, RuntimeError> {
        let path = self
            .record(id)?
            .map(|r| r.cgroup_path)
            .or_else(|| self.spec_cgroup_path(id))
            .ok_or_else(|| RuntimeError::NotRunning { id: id.to_string() })?;
        self.inner
            .cgroups
            .values(&path)
            .map_err(|source| RuntimeError::Cgroup {
                id: id.to_string(),
                source,
            })
    }

    /// The shim's record, `None` before it wrote one; `NotFound` for unknown ids.
    fn record(&self, id: &str) -> Result<Option<StatusRecord>, RuntimeError> {
        let id = checked_id(id)?;
        let dir = self.container_dir(id);
        if !dir.is_dir() {
            return Err(RuntimeError::NotFound {
                id: id.to_string(),
                path: self.inner.root.clone(),
            });
        }
        let state_dir = self.state_dir(id);
        read_record(&state_dir).map_err(io_error(id, "reading status in", &state_dir))
    }

    fn shim_process(&self, id: &str) -> Option<ProcessId> {
        let bytes = std::fs::read(self.state_dir(id).join(shim::SHIM_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn spec(&self, id: &str) -> Option<oci_spec::runtime::Spec> {
        oci_spec::runtime::Spec::load(self.bundle_dir(id).join("config.json")).ok()
    }

    fn spec_cgroup_path(&self, id: &str) -> Option<PathBuf> {
        self.spec(id)?.linux().as_ref()?.cgroups_path().clone()
    }
}

/// The message of a shim's `error …` report, without the container prefix the
/// runtime's own error adds again.
fn shim_message(id: &str, line: &str) -> String {
    let message = line.trim_start_matches("error ");
    message
        .strip_prefix(&format!("container {id}: "))
        .unwrap_or(message)
        .to_string()
}

/// Runs stage 1 of a shim to its end: its exit status and everything it printed.
/// (Not `Command::output`, which would also pipe stderr: the detached shim keeps its
/// stderr open for life.)
async fn report_of(
    mut command: tokio::process::Command,
) -> std::io::Result<(std::process::ExitStatus, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut child = command.spawn()?;
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut stdout).await?;
    }
    Ok((child.wait().await?, stdout))
}

fn checked_id(id: &str) -> Result<&str, RuntimeError> {
    match config::invalid_id_reason(id) {
        None => Ok(id),
        Some(reason) => Err(RuntimeError::InvalidId {
            id: id.to_string(),
            reason,
        }),
    }
}

fn io_error<'a>(
    id: &'a str,
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Io {
        id: id.to_string(),
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::host::fake::FakeProcesses;
    use crate::runtime::host::Rlimit;
    use crate::runtime::status::{exit_record, write_record, Phase, Termination};

    fn runtime(root: &Path, processes: FakeProcesses) -> Runtime {
        let host = HostFacts {
            open_files: Rlimit {
                soft: 1024,
                hard: 1024,
            },
            processes: Rlimit {
                soft: 100,
                hard: 100,
            },
            cgroup: CgroupVersion::V1,
            swap_limits: false,
        };
        let shim = ShimCommand {
            program: "/bin/false".into(),
            leading_args: Vec::new(),
            env: Vec::new(),
        };
        let cgroups = HostCgroups::new(root.join("cgroupfs"), CgroupVersion::V1);
        Runtime::with_parts(root.join("containers"), shim, host, cgroups, processes)
    }

    fn record(id: &str) -> StatusRecord {
        StatusRecord {
            id: id.into(),
            phase: Phase::Running,
            shim: ProcessId {
                pid: 10,
                start_time: 1,
            },
            container: ProcessId {
                pid: 11,
                start_time: 2,
            },
            cgroup_path: format!("/skiff/{id}").into(),
            log_path: "/logs/c.log".into(),
            created_at: chrono::Utc::now(),
            started_at: Some(chrono::Utc::now()),
            exit: None,
        }
    }

    fn install(runtime: &Runtime, record: &StatusRecord) {
        let state_dir = runtime.state_dir(&record.id);
        std::fs::create_dir_all(&state_dir).expect("mkdir");
        write_record(&state_dir, record).expect("write");
    }

    #[test]
    fn kill_signals_only_live_containers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime(dir.path(), FakeProcesses::with(&[(10, 1), (11, 2)]));
        install(&runtime, &record("c1"));
        runtime.kill("c1", Signal::SIGTERM).expect("kill");
        let mut exited = record("c2");
        exited.exit = Some(exit_record(Termination::Code(0), 0, chrono::Utc::now()));
        install(&runtime, &exited);
        assert!(matches!(
            runtime.kill("c2", Signal::SIGTERM),
            Err(RuntimeError::NotRunning { .. })
        ));
        assert!(matches!(
            runtime.kill("nope", Signal::SIGTERM),
            Err(RuntimeError::NotFound { .. })
        ));
        assert!(matches!(
            runtime.kill("../x", Signal::SIGTERM),
            Err(RuntimeError::InvalidId { .. })
        ));
    }

    #[test]
    fn recycled_pids_are_never_signalled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let processes = FakeProcesses::with(&[(10, 1), (11, 999)]);
        let runtime = runtime(dir.path(), processes);
        install(&runtime, &record("c1"));
        assert!(matches!(
            runtime.kill("c1", Signal::SIGKILL),
            Err(RuntimeError::NotRunning { .. })
        ));
    }

    #[test]
    fn list_reports_every_container() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime(dir.path(), FakeProcesses::with(&[(10, 1), (11, 2)]));
        assert_eq!(runtime.list().expect("empty"), vec![]);
        install(&runtime, &record("b"));
        let mut exited = record("a");
        exited.exit = Some(exit_record(Termination::Code(3), 0, chrono::Utc::now()));
        install(&runtime, &exited);
        std::fs::create_dir_all(runtime.container_dir("c")).expect("mkdir");
        let listed = runtime.list().expect("list");
        let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        assert!(listed[0].state.is_exited());
        assert!(listed[1].state.is_running());
        assert!(matches!(listed[2].state, ContainerState::Unknown { .. }));
        assert_eq!(
            listed[1].cgroup_path.as_deref(),
            Some(Path::new("/skiff/b"))
        );
    }

    #[test]
    fn remove_cleans_an_exited_container() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime(dir.path(), FakeProcesses::default());
        let mut exited = record("c1");
        exited.exit = Some(exit_record(Termination::Code(0), 0, chrono::Utc::now()));
        install(&runtime, &exited);
        let cgroup = dir.path().join("cgroupfs/memory/skiff/c1");
        std::fs::create_dir_all(&cgroup).expect("mkdir");
        runtime.remove_blocking("c1").expect("remove");
        assert!(!runtime.container_dir("c1").exists());
        assert!(!cgroup.exists());
        runtime.remove_blocking("c1").expect("idempotent");
    }

    #[test]
    fn failed_shims_are_reported_and_cleaned_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = runtime(dir.path(), FakeProcesses::default());
        let config = ContainerConfig {
            id: "c1".into(),
            rootfs: dir.path().join("rootfs"),
            args: vec!["/bin/true".into()],
            cgroup_path: "/skiff/c1".into(),
            log: LogConfig {
                path: dir.path().join("c1.log"),
                ..LogConfig::default()
            },
            ..ContainerConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let err = rt
            .block_on(runtime.create(&config))
            .expect_err("/bin/false");
        assert!(
            err.to_string().starts_with("container c1: the shim exited"),
            "{err}"
        );
        assert!(!runtime.container_dir("c1").exists());
    }
}
