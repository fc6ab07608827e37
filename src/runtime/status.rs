//! What a shim records about its container (`<state-dir>/status.json`, replaced
//! atomically at each step: created, running, exited) and the state the runtime
//! derives from it and from which of the recorded processes are still alive.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::host::{ProcessId, Processes};

/// The status file in a container's state directory.
pub const STATUS_FILE: &str = "status.json";

/// Reason for an exit after the cgroup's OOM killer fired.
pub const REASON_OOM_KILLED: &str = "OOMKilled";
/// Reason for an exit with code 0.
pub const REASON_COMPLETED: &str = "Completed";
/// Reason for any other exit.
pub const REASON_ERROR: &str = "Error";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Created,
    Running,
    Exited,
}

/// The shim's record of its container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRecord {
    pub id: String,
    pub phase: Phase,
    pub shim: ProcessId,
    pub container: ProcessId,
    pub cgroup_path: PathBuf,
    pub log_path: PathBuf,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub exit: Option<ExitRecord>,
}

/// How the container's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The exit code, or 128 + the signal number.
    pub code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub oom_killed: bool,
    pub finished_at: DateTime<Utc>,
}

/// How a process ended, as `waitpid` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Code(i32),
    Signal(i32),
}

/// The exit record for a termination, given how many OOM kills the container's cgroup
/// saw: any makes the reason `OOMKilled` (as with containerd, even when the killed
/// process was not the main one), else `Completed` for 0 and `Error` for the rest.
pub fn exit_record(
    termination: Termination,
    oom_kills: u64,
    finished_at: DateTime<Utc>,
) -> ExitRecord {
    let (code, signal) = match termination {
        Termination::Code(code) => (code, None),
        Termination::Signal(signal) => (128 + signal, Some(signal)),
    };
    let oom_killed = oom_kills > 0;
    let reason = if oom_killed {
        REASON_OOM_KILLED
    } else if code == 0 {
        REASON_COMPLETED
    } else {
        REASON_ERROR
    };
    ExitRecord {
        code,
        signal,
        reason: reason.to_string(),
        oom_killed,
        finished_at,
    }
}

/// A container's state as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Made but not started yet (the shim starts it right away).
    Created {
        pid: i32,
    },
    Running {
        pid: i32,
        started_at: DateTime<Utc>,
    },
    Exited {
        code: i32,
        reason: String,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        oom_killed: bool,
    },
    /// No usable record: being created, or its shim died without recording an exit.
    Unknown {
        reason: String,
    },
}

impl ContainerState {
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            ContainerState::Created { .. } | ContainerState::Running { .. }
        )
    }

    pub fn is_exited(&self) -> bool {
        matches!(self, ContainerState::Exited { .. })
    }
}

/// The state a record describes, checked against the live processes: a container whose
/// process is gone counts as running while its shim lives (the shim is recording the
/// exit), and as unknown once the shim is gone too.
pub fn derive_state(record: Option<&StatusRecord>, processes: &dyn Processes) -> ContainerState {
    let Some(record) = record else {
        return ContainerState::Unknown {
            reason: "no status recorded yet".to_string(),
        };
    };
    if let Some(exit) = &record.exit {
        return ContainerState::Exited {
            code: exit.code,
            reason: exit.reason.clone(),
            started_at: record.started_at.unwrap_or(exit.finished_at),
            finished_at: exit.finished_at,
            oom_killed: exit.oom_killed,
        };
    }
    if !record.container.is_alive(processes) && !record.shim.is_alive(processes) {
        return ContainerState::Unknown {
            reason: format!(
                "shim {} and container process {} ended without recording an exit",
                record.shim.pid, record.container.pid
            ),
        };
    }
    let pid = record.container.pid;
    match (record.phase, record.started_at) {
        (Phase::Created, _) | (_, None) => ContainerState::Created { pid },
        (_, Some(started_at)) => ContainerState::Running { pid, started_at },
    }
}

/// Reads the record, `None` when there is none yet.
pub fn read_record(state_dir: &Path) -> std::io::Result<Option<StatusRecord>> {
    let path = state_dir.join(STATUS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the record atomically (write a temporary file, rename it over).
pub fn write_record(state_dir: &Path, record: &StatusRecord) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let temporary = state_dir.join(format!("{STATUS_FILE}.tmp"));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, state_dir.join(STATUS_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::host::fake::FakeProcesses;

    fn record(phase: Phase) -> StatusRecord {
        let now = Utc::now();
        StatusRecord {
            id: "c1".into(),
            phase,
            shim: ProcessId {
                pid: 10,
                start_time: 100,
            },
            container: ProcessId {
                pid: 11,
                start_time: 110,
            },
            cgroup_path: "/skiff/c1".into(),
            log_path: "/var/log/c1.log".into(),
            created_at: now,
            started_at: (phase != Phase::Created).then_some(now),
            exit: None,
        }
    }

    #[test]
    fn exits_become_codes_and_reasons() {
        let now = Utc::now();
        let exit = exit_record(Termination::Code(3), 0, now);
        assert_eq!(
            (exit.code, exit.reason.as_str(), exit.oom_killed),
            (3, "Error", false)
        );
        let exit = exit_record(Termination::Code(0), 0, now);
        assert_eq!(exit.reason, "Completed");
        let exit = exit_record(Termination::Signal(9), 0, now);
        assert_eq!((exit.code, exit.signal), (137, Some(9)));
        assert_eq!(exit.reason, "Error");
        let exit = exit_record(Termination::Signal(9), 1, now);
        assert_eq!(
            (exit.code, exit.reason.as_str(), exit.oom_killed),
            (137, "OOMKilled", true)
        );
        let exit = exit_record(Termination::Code(0), 2, now);
        assert_eq!(exit.reason, "OOMKilled");
    }

    #[test]
    fn running_while_the_container_lives() {
        let record = record(Phase::Running);
        let live = FakeProcesses::with(&[(10, 100), (11, 110)]);
        assert!(matches!(
            derive_state(Some(&record), &live),
            ContainerState::Running { pid: 11, .. }
        ));
        let shim_gone = FakeProcesses::with(&[(11, 110)]);
        assert!(derive_state(Some(&record), &shim_gone).is_running());
        let container_gone = FakeProcesses::with(&[(10, 100)]);
        assert!(
            derive_state(Some(&record), &container_gone).is_running(),
            "the shim is recording the exit"
        );
    }

    #[test]
    fn unknown_when_everything_is_gone_or_recycled() {
        let record = record(Phase::Running);
        let recycled = FakeProcesses::with(&[(10, 999), (11, 998)]);
        assert!(matches!(
            derive_state(Some(&record), &recycled),
            ContainerState::Unknown { .. }
        ));
        assert!(matches!(
            derive_state(None, &recycled),
            ContainerState::Unknown { .. }
        ));
    }

    #[test]
    fn created_and_exited() {
        let live = FakeProcesses::with(&[(10, 100), (11, 110)]);
        assert_eq!(
            derive_state(Some(&record(Phase::Created)), &live),
            ContainerState::Created { pid: 11 }
        );
        let mut exited = record(Phase::Exited);
        let finished_at = Utc::now();
        exited.exit = Some(exit_record(Termination::Code(3), 0, finished_at));
        let state = derive_state(Some(&exited), &FakeProcesses::default());
        assert_eq!(
            state,
            ContainerState::Exited {
                code: 3,
                reason: "Error".into(),
                started_at: exited.started_at.expect("started"),
                finished_at,
                oom_killed: false,
            }
        );
    }

    #[test]
    fn records_round_trip_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_record(dir.path()).expect("read"), None);
        let mut record = record(Phase::Exited);
        record.exit = Some(exit_record(Termination::Signal(15), 0, Utc::now()));
        write_record(dir.path(), &record).expect("write");
        assert_eq!(read_record(dir.path()).expect("read"), Some(record));
        assert!(!dir.path().join("status.json.tmp").exists());
        std::fs::write(dir.path().join(STATUS_FILE), "{").expect("write");
        assert!(read_record(dir.path()).is_err());
    }
}
