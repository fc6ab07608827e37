//! What the caller asks for: one container, described in Kubernetes terms rather than
//! OCI ones. `spec.rs` turns it into an OCI runtime spec.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Default size at which the shim rotates a container's log file (kubelet's default).
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of log files kept per container, the live one included.
pub const DEFAULT_LOG_MAX_FILES: u32 = 5;

/// One container to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerConfig {
    /// Unique on this node; letters, digits and `_ + - .` (it names directories).
    pub id: String,
    /// The root filesystem, already prepared: an overlay mount or a plain directory.
    /// The runtime never deletes it.
    pub rootfs: PathBuf,
    /// Entrypoint followed by command, already resolved against the image.
    pub args: Vec<String>,
    /// `(name, value)` pairs; a default `PATH` is added when there is none.
    pub env: Vec<(String, String)>,
    /// Defaults to `/`.
    pub working_dir: Option<PathBuf>,
    pub user: UserIds,
    /// Applied only when the container has a UTS namespace of its own (no
    /// `namespaces.uts`); a pod's hostname belongs to its sandbox.
    pub hostname: Option<String>,
    /// Bind mounts, applied after the standard ones (so they may cover e.g. /etc/hosts).
    pub mounts: Vec<BindMount>,
    /// The sandbox's shared `/dev/shm` directory; without it the container gets a
    /// private 64 MiB tmpfs.
    pub shm: Option<PathBuf>,
    pub readonly_rootfs: bool,
    /// All capabilities, no masked or read-only paths, writable /sys, every device
    /// allowed in the device cgroup.
    pub privileged: bool,
    pub capabilities: CapabilityChanges,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    pub limits: Limits,
    /// The container's cgroup, absolute and below the cgroup root, e.g.
    /// `/skiff/pod<uid>/<id>`: `/sys/fs/cgroup/<controller>/…` on cgroup v1,
    /// `/sys/fs/cgroup/…` on v2. Always set (no systemd-style paths).
    pub cgroup_path: PathBuf,
    pub namespaces: SandboxNamespaces,
    pub log: LogConfig,
    /// Stored in the bundle and returned by `Runtime::list`, so an agent that restarts
    /// can tell which pod and container each id belongs to.
    pub annotations: BTreeMap<String, String>,
}

/// The user the container's process runs as (numeric: names are the image's business).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

/// Capability names as Kubernetes writes them (`NET_ADMIN`, `CAP_NET_ADMIN`, or `ALL`),
/// applied to the default Docker/containerd set: drops first, then adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityChanges {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// Resource limits, written to the container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU limit in millicores: a CFS quota per 100 ms period.
    pub cpu_quota_millis: Option<u64>,
    /// CPU request in millicores: cpu.shares on v1, the matching cpu.weight on v2.
    pub cpu_request_millis: Option<u64>,
    /// Memory limit; swap is kept out of reach when the host has swap.
    pub memory_bytes: Option<i64>,
    /// Maximum number of tasks.
    pub pids: Option<i64>,
    /// RLIMIT_NOFILE; never above the host's own hard limit, which is the default.
    pub open_files: Option<u64>,
}

/// The pod sandbox's namespaces to join, as paths (`/proc/<pid>/ns/net` or a bind
/// mount of one). `None` gives the container a new namespace of that kind. The mount
/// namespace is always new.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxNamespaces {
    pub network: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// Another container's PID namespace (an ephemeral container's target); `None`:
    /// a new one.
    pub pid: Option<PathBuf>,
}

/// Where the shim writes the container's stdout and stderr, in the CRI log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Rotate when the live file would grow past this many bytes.
    pub max_bytes: u64,
    /// Files kept, the live one included: `<path>`, `<path>.1`, … `<path>.<n-1>`.
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            path: PathBuf::new(),
            max_bytes: DEFAULT_LOG_MAX_BYTES,
            max_files: DEFAULT_LOG_MAX_FILES,
        }
    }
}

/// Why an id is unusable, or `None` when it is fine: the rules of libcontainer (and
/// runc), since ids name directories.
pub fn invalid_id_reason(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("it is empty".to_string());
    }
    if id == "." || id == ".." {
        return Some("it is not a file name".to_string());
    }
    if id.len() > 128 {
        return Some("it is longer than 128 characters".to_string());
    }
    id.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
        .map(|c| format!("it contains {c:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_libcontainer_rules() {
        assert_eq!(invalid_id_reason("abc-1_2+3.4"), None);
        assert!(invalid_id_reason("").is_some());
        assert!(invalid_id_reason("..").is_some());
        assert!(invalid_id_reason("a/b").is_some());
        assert!(invalid_id_reason("a b").is_some());
        assert!(invalid_id_reason(&"x".repeat(129)).is_some());
    }
}
