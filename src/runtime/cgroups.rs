//! The container cgroups as the runtime sees them after libcontainer made them: read
//! the limits and the OOM-kill counter back, and remove what a dead container left.
//! libcontainer chooses the cgroup manager itself (v1 for legacy and hybrid hosts, v2
//! for unified ones); this module follows the same rule.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use nix::unistd::Pid;

/// Where the cgroup filesystems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A v1 value at or above this means "no limit" (the kernel reports a page-rounded
/// `i64::MAX`).
const V1_UNLIMITED: i64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller under `/sys/fs/cgroup/<controller>` (legacy and
    /// hybrid hosts).
    V1,
    /// The unified hierarchy at `/sys/fs/cgroup`.
    V2,
}

/// Which cgroup layout the host has, the way libcontainer decides it.
pub fn detect_version(root: &Path) -> std::io::Result<CgroupVersion> {
    let stat = statfs(root).map_err(std::io::Error::from)?;
    if stat.filesystem_type() == CGROUP2_SUPER_MAGIC {
        Ok(CgroupVersion::V2)
    } else {
        Ok(CgroupVersion::V1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup path {path} must be absolute and free of '..'")]
    InvalidPath { path: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {path} still busy after killing its processes")]
    Busy { path: PathBuf },
}

/// Limits read back from a container's cgroup; `None` means unlimited (or, for the
/// CPU weight fields, not applicable to this cgroup version).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupValues {
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    /// v1 only.
    pub cpu_shares: Option<u64>,
    /// v2 only.
    pub cpu_weight: Option<u64>,
    pub memory_bytes: Option<i64>,
    pub pids: Option<i64>,
}

/// The cgroup touchpoints of the runtime.
pub trait Cgroups: Send + Sync {
    fn version(&self) -> CgroupVersion;
    /// Whether any directory of the cgroup exists.
    fn exists(&self, cgroup_path: &Path) -> Result<bool, CgroupError>;
    /// How many times the kernel's OOM killer killed a process in the cgroup.
    fn oom_kills(&self, cgroup_path: &Path) -> Result<u64, CgroupError>;
    /// The CPU, memory and pids limits in force.
    fn values(&self, cgroup_path: &Path) -> Result<CgroupValues, CgroupError>;
    /// Kills whatever still runs in the cgroup and removes its directories (and any
    /// sub-cgroups). Succeeds when nothing was there.
    fn remove(&self, cgroup_path: &Path) -> Result<(), CgroupError>;
}

/// The host's cgroup filesystems (or a directory laid out like them, in tests).
#[derive(Debug, Clone)]
pub struct HostCgroups {
    root: PathBuf,
    version: CgroupVersion,
}

impl HostCgroups {
    /// The cgroups under `/sys/fs/cgroup`, version detected.
    pub fn detect() -> std::io::Result<HostCgroups> {
        let root = PathBuf::from(CGROUP_ROOT);
        let version = detect_version(&root)?;
        Ok(HostCgroups { root, version })
    }

    pub fn new(root: impl Into<PathBuf>, version: CgroupVersion) -> HostCgroups {
        HostCgroups {
            root: root.into(),
            version,
        }
    }

    /// The directory of `cgroup_path` in one controller's hierarchy (v1) or in the
    /// unified hierarchy (v2, where `controller` is ignored).
    pub fn dir(&self, controller: &str, cgroup_path: &Path) -> Result<PathBuf, CgroupError> {
        let relative = relative(cgroup_path)?;
        Ok(match self.version {
            CgroupVersion::V1 => self.root.join(controller).join(relative),
            CgroupVersion::V2 => self.root.join(relative),
        })
    }

    /// Every directory the cgroup may have: one per v1 hierarchy (real directories
    /// only, so co-mounted controllers reached through symlinks count once), or one.
    fn all_dirs(&self, cgroup_path: &Path) -> Result<Vec<PathBuf>, CgroupError> {
        let relative = relative(cgroup_path)?;
        if self.version == CgroupVersion::V2 {
            return Ok(vec![self.root.join(relative)]);
        }
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CgroupError::Io {
                    action: "listing",
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut dirs = Vec::new();
        for entry in entries.flatten() {
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && entry.file_name() != "unified" {
                dirs.push(entry.path().join(&relative));
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    fn read(
        &self,
        controller: &str,
        cgroup_path: &Path,
        file: &str,
    ) -> Result<String, CgroupError> {
        let path = self.dir(controller, cgroup_path)?.join(file);
        std::fs::read_to_string(&path)
            .map(|text| text.trim().to_string())
            .map_err(|source| CgroupError::Io {
                action: "reading",
                path,
                source,
            })
    }

    fn values_v1(&self, cgroup_path: &Path) -> Result<CgroupValues, CgroupError> {
        let quota: i64 = parse_number(self.read("cpu", cgroup_path, "cpu.cfs_quota_us")?);
        let memory: i64 =
            parse_number(self.read("memory", cgroup_path, "memory.limit_in_bytes")?);
        Ok(CgroupValues {
            cpu_quota_us: (quota >= 0).then_some(quota),
            cpu_period_us: Some(parse_number(self.read(
                "cpu",
                cgroup_path,
                "cpu.cfs_period_us",
            )?)),
            cpu_shares: Some(parse_number(self.read("cpu", cgroup_path, "cpu.shares")?)),
            cpu_weight: None,
            memory_bytes: (memory < V1_UNLIMITED).then_some(memory),
            pids: parse_max(&self.read("pids", cgroup_path, "pids.max")?),
        })
    }

    fn values_v2(&self, cgroup_path: &Path) -> Result<CgroupValues, CgroupError> {
        let cpu_max = self.read("", cgroup_path, "cpu.max")?;
        let mut cpu_max = cpu_max.split_whitespace();
        Ok(CgroupValues {
            cpu_quota_us: cpu_max.next().and_then(parse_max),
            cpu_period_us: cpu_max.next().and_then(|p| p.parse().ok()),
            cpu_shares: None,
            cpu_weight: Some(parse_number(self.read("", cgroup_path, "cpu.weight")?)),
            memory_bytes: parse_max(&self.read("", cgroup_path, "memory.max")?),
            pids: parse_max(&self.read("", cgroup_path, "pids.max")?),
        })
    }
}

impl Cgroups for HostCgroups {
    fn version(&self) -> CgroupVersion {
        self.version
    }

    fn exists(&self, cgroup_path: &Path) -> Result<bool, CgroupError> {
        Ok(self.all_dirs(cgroup_path)?.iter().any(|d| d.is_dir()))
    }

    fn oom_kills(&self, cgroup_path: &Path) -> Result<u64, CgroupError> {
        let text = match self.version {
            CgroupVersion::V1 => self.read("memory", cgroup_path, "memory.oom_control")?,
            CgroupVersion::V2 => self.read("", cgroup_path, "memory.events")?,
        };
        Ok(flat_keyed_value(&text, "oom_kill").unwrap_or(0))
    }

    fn values(&self, cgroup_path: &Path) -> Result<CgroupValues, CgroupError> {
        match self.version {
            CgroupVersion::V1 => self.values_v1(cgroup_path),
            CgroupVersion::V2 => self.values_v2(cgroup_path),
        }
    }

    fn remove(&self, cgroup_path: &Path) -> Result<(), CgroupError> {
        for dir in self.all_dirs(cgroup_path)? {
            remove_tree(&dir)?;
        }
        Ok(())
    }
}

/// The cgroup path below the root, refusing anything that could leave it.
fn relative(cgroup_path: &Path) -> Result<PathBuf, CgroupError> {
    let invalid = || CgroupError::InvalidPath {
        path: cgroup_path.to_path_buf(),
    };
    if !cgroup_path.is_absolute() {
        return Err(invalid());
    }
    let mut relative = PathBuf::new();
    for component in cgroup_path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => relative.push(part),
            Component::ParentDir | Component::Prefix(_) => return Err(invalid()),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(invalid());
    }
    Ok(relative)
}

/// Removes a cgroup directory and its sub-cgroups, deepest first, killing the
/// processes still in each.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Io {
                action: "listing",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    remove_one(dir)
}

fn remove_one(dir: &Path) -> Result<(), CgroupError> {
    for _ in 0..50 {
        kill_members(dir);
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    action: "removing",
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(CgroupError::Busy {
        path: dir.to_path_buf(),
    })
}

/// SIGKILLs every process listed in the cgroup (best effort: they may be gone).
fn kill_members(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The value of `key` in a flat-keyed file (`key value` lines), e.g. `oom_kill 3`.
pub fn flat_keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A number, or zero when the kernel wrote something unexpected.
fn parse_number<T: std::str::FromStr + Default>(text: String) -> T {
    text.trim().parse().unwrap_or_default()
}

/// `max` (no limit) or a number.
fn parse_max(text: &str) -> Option<i64> {
    match text.trim() {
        "max" => None,
        n => n.parse().ok(),
    }
}

/// The cgroup v2 `cpu.weight` that libcontainer writes for OCI `cpu.shares` (the
/// quadratic mapping crun and recent runc use too: 2 → 1, 1024 → 100, 262144 → 10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(root: &Path, dir: &str, files: &[(&str, &str)]) {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write");
        }
    }

    #[test]
    fn paths_stay_below_the_root() {
        assert!(relative(Path::new("skiff/x")).is_err());
        assert!(relative(Path::new("/skiff/../x")).is_err());
        assert!(relative(Path::new("/")).is_err());
        assert_eq!(
            relative(Path::new("/skiff/pod/x")).expect("ok"),
            PathBuf::from("skiff/pod/x")
        );
    }

    #[test]
    fn v1_values_and_oom_kills() {
        let root = tempfile::tempdir().expect("tempdir");
        let cg = "skiff/c1";
        fixture(
            root.path(),
            &format!("cpu/{cg}"),
            &[
                ("cpu.cfs_quota_us", "50000\n"),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.shares", "256\n"),
            ],
        );
        fixture(
            root.path(),
            &format!("memory/{cg}"),
            &[
                ("memory.limit_in_bytes", "33554432\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        fixture(root.path(), &format!("pids/{cg}"), &[("pids.max", "max\n")]);
        let cgroups = HostCgroups::new(root.path(), CgroupVersion::V1);
        let path = Path::new("/skiff/c1");
        let values = cgroups.values(path).expect("values");
        assert_eq!(values.cpu_quota_us, Some(50000));
        assert_eq!(values.cpu_period_us, Some(100000));
        assert_eq!(values.cpu_shares, Some(256));
        assert_eq!(values.memory_bytes, Some(32 << 20));
        assert_eq!(values.pids, None);
        assert_eq!(cgroups.oom_kills(path).expect("oom"), 2);
        assert!(cgroups.exists(path).expect("exists"));
    }

    #[test]
    fn v1_unlimited_values() {
        let root = tempfile::tempdir().expect("tempdir");
        fixture(
            root.path(),
            "cpu/c",
            &[
                ("cpu.cfs_quota_us", "-1"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.shares", "1024"),
            ],
        );
        fixture(
            root.path(),
            "memory/c",
            &[("memory.limit_in_bytes", "9223372036854771712")],
        );
        fixture(root.path(), "pids/c", &[("pids.max", "100")]);
        let values = HostCgroups::new(root.path(), CgroupVersion::V1)
            .values(Path::new("/c"))
            .expect("values");
        assert_eq!(values.cpu_quota_us, None);
        assert_eq!(values.memory_bytes, None);
        assert_eq!(values.pids, Some(100));
    }

    #[test]
    fn v2_values_and_oom_kills() {
        let root = tempfile::tempdir().expect("tempdir");
        fixture(
            root.path(),
            "skiff/c2",
            &[
                ("cpu.max", "25000 100000\n"),
                ("cpu.weight", "10\n"),
                ("memory.max", "max\n"),
                ("pids.max", "64\n"),
                ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
            ],
        );
        let cgroups = HostCgroups::new(root.path(), CgroupVersion::V2);
        let path = Path::new("/skiff/c2");
        let values = cgroups.values(path).expect("values");
        assert_eq!(values.cpu_quota_us, Some(25000));
        assert_eq!(values.cpu_period_us, Some(100000));
        assert_eq!(values.cpu_weight, Some(10));
        assert_eq!(values.memory_bytes, None);
        assert_eq!(values.pids, Some(64));
        assert_eq!(cgroups.oom_kills(path).expect("oom"), 1);
    }

    #[test]
    fn remove_takes_every_hierarchy_and_sub_cgroups() {
        let root = tempfile::tempdir().expect("tempdir");
        // Empty directories stand in for cgroups (real cgroup directories hold only
        // kernel files, which rmdir ignores).
        for dir in ["cpu/skiff/c/sub", "memory/skiff/c", "unified/skiff/c"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        let cgroups = HostCgroups::new(root.path(), CgroupVersion::V1);
        let path = Path::new("/skiff/c");
        cgroups.remove(path).expect("remove");
        assert!(!cgroups.exists(path).expect("exists"));
        assert!(root.path().join("cpu/skiff").is_dir(), "parents stay");
        assert!(
            root.path().join("unified/skiff/c").is_dir(),
            "v2 of hybrid untouched"
        );
        cgroups.remove(path).expect("removing twice is fine");
    }

    #[test]
    fn shares_map_to_weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert!(shares_to_weight(512) < 100 && shares_to_weight(2048) > 100);
    }

    #[test]
    fn this_host_has_a_cgroup_layout() {
        assert!(detect_version(Path::new(CGROUP_ROOT)).is_ok());
    }
}
