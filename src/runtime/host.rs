//! What the runtime needs to know about the host, and the process touchpoints (is this
//! pid still the process we started? send it a signal) behind a trait so state logic
//! can be tested without real processes.

use std::path::Path;

use nix::sys::resource::{getrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroups::{detect_version, CgroupVersion, CGROUP_ROOT};

/// A soft and hard resource limit pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub soft: u64,
    pub hard: u64,
}

/// Facts about the host that shape every spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// This process's RLIMIT_NOFILE: containers never ask for more (an OCI spec above
    /// the host's hard limit makes container creation fail).
    pub open_files: Rlimit,
    /// This process's RLIMIT_NPROC.
    pub processes: Rlimit,
    pub cgroup: CgroupVersion,
    /// Swap is on and the kernel can limit it per cgroup, so memory limits also cap
    /// memory+swap (asking for a swap limit where the kernel cannot set one makes
    /// container creation fail; without swap there is nothing to limit).
    pub swap_limits: bool,
}

impl HostFacts {
    /// Reads the facts from this process and the host.
    pub fn probe() -> std::io::Result<HostFacts> {
        let root = Path::new(CGROUP_ROOT);
        let cgroup = detect_version(root)?;
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Ok(HostFacts {
            open_files: own_rlimit(Resource::RLIMIT_NOFILE)?,
            processes: own_rlimit(Resource::RLIMIT_NPROC)?,
            cgroup,
            swap_limits: swap_enabled(Path::new("/proc/swaps"))
                && swap_accounting(root, cgroup, &own),
        })
    }
}

fn own_rlimit(resource: Resource) -> std::io::Result<Rlimit> {
    let (soft, hard) = getrlimit(resource).map_err(std::io::Error::from)?;
    Ok(Rlimit {
        soft: rlimit_to_u64(soft),
        hard: rlimit_to_u64(hard),
    })
}

/// A limit as u64: `rlim_t` is 32 bits on armv7 glibc, where unlimited is `u32::MAX`.
#[allow(clippy::useless_conversion)] // u64 to u64 on 64-bit targets
fn rlimit_to_u64(limit: nix::sys::resource::rlim_t) -> u64 {
    if limit == nix::libc::RLIM_INFINITY {
        u64::MAX
    } else {
        u64::from(limit)
    }
}

/// Whether `/proc/swaps` lists any swap area (it always has a header line). When it
/// cannot be read, assumes swap so that limits stay strict.
fn swap_enabled(proc_swaps: &Path) -> bool {
    match std::fs::read_to_string(proc_swaps) {
        Ok(text) => text.lines().skip(1).any(|l| !l.trim().is_empty()),
        Err(_) => true,
    }
}

/// Whether the kernel accounts swap per cgroup: v1 has `memory.memsw.*` files; on v2,
/// `memory.swap.max` exists in non-root cgroups (this process's own, from the
/// `/proc/self/cgroup` text `own`, or else any top-level one).
fn swap_accounting(root: &Path, version: CgroupVersion, own: &str) -> bool {
    if version == CgroupVersion::V1 {
        return root.join("memory/memory.memsw.limit_in_bytes").exists();
    }
    let own_dir = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| root.join(p.trim().trim_start_matches('/')));
    let children = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    own_dir
        .into_iter()
        .chain(children)
        .filter(|dir| dir != root)
        .any(|dir| dir.join("memory.swap.max").exists())
}

/// The process touchpoints of the runtime.
pub trait Processes: Send + Sync {
    /// The start time (clock ticks since boot) of `pid` when it is alive and not a
    /// zombie; `None` otherwise. With the start time recorded at creation this tells a
    /// live container from a recycled pid.
    fn start_time(&self, pid: i32) -> Option<u64>;
    /// Sends `signal` to `pid`.
    fn signal(&self, pid: i32, signal: Signal) -> nix::Result<()>;
}

/// The real processes, through `/proc` and `kill(2)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostProcesses;

impl Processes for HostProcesses {
    fn start_time(&self, pid: i32) -> Option<u64> {
        if pid <= 0 {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_live_start_time(&stat)
    }

    fn signal(&self, pid: i32, signal: Signal) -> nix::Result<()> {
        kill(Pid::from_raw(pid), signal)
    }
}

/// The start time from a `/proc/<pid>/stat` line, or `None` for a zombie (or a line
/// that does not parse). The command name may hold spaces and parentheses, so fields
/// are counted from the last `)`: state is field 3, starttime field 22.
pub fn parse_live_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    if state == "Z" || state == "X" || state == "x" {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// A process identity: a pid and the start time it had when recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    /// Records `pid` as it is now, if it is alive.
    pub fn of(processes: &dyn Processes, pid: i32) -> Option<ProcessId> {
        processes
            .start_time(pid)
            .map(|start_time| ProcessId { pid, start_time })
    }

    /// Whether the recorded process is still alive (and not a zombie).
    pub fn is_alive(&self, processes: &dyn Processes) -> bool {
        processes.start_time(self.pid) == Some(self.start_time)
    }
}

#[cfg(test)]
pub mod fake {
    //! A process table for tests.
    use std::collections::HashMap;
    use std::sync::Mutex;

    use nix::sys::signal::Signal;

    use super::Processes;

    #[derive(Default)]
    pub struct FakeProcesses {
        pub alive: Mutex<HashMap<i32, u64>>,
        pub signals: Mutex<Vec<(i32, Signal)>>,
    }

    impl FakeProcesses {
        pub fn with(alive: &[(i32, u64)]) -> FakeProcesses {
            let fake = FakeProcesses::default();
            if let Ok(mut table) = fake.alive.lock() {
                table.extend(alive.iter().copied());
            }
            fake
        }
    }

    impl Processes for FakeProcesses {
        fn start_time(&self, pid: i32) -> Option<u64> {
            self.alive.lock().ok()?.get(&pid).copied()
        }

        fn signal(&self, pid: i32, signal: Signal) -> nix::Result<()> {
            if self.start_time(pid).is_none() {
                return Err(nix::errno::Errno::ESRCH);
            }
            if let Ok(mut sent) = self.signals.lock() {
                sent.push((pid, signal));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_tricky_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_live_start_time(stat), Some(123456));
    }

    #[test]
    fn zombies_are_not_alive() {
        let stat = "42 (sh) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 0 0";
        assert_eq!(parse_live_start_time(stat), None);
    }

    #[test]
    fn this_process_is_alive_and_recycled_pids_are_not() {
        let me = std::process::id() as i32;
        let id = ProcessId::of(&HostProcesses, me).expect("own start time");
        assert!(id.is_alive(&HostProcesses));
        let recycled = ProcessId {
            pid: me,
            start_time: id.start_time + 1,
        };
        assert!(!recycled.is_alive(&HostProcesses));
    }

    #[test]
    fn swap_is_read_from_proc_swaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("swaps");
        std::fs::write(&path, "Filename\tType\tSize\tUsed\tPriority\n").expect("write");
        assert!(!swap_enabled(&path));
        std::fs::write(
            &path,
            "Filename\tType\tSize\tUsed\tPriority\n/swap file 1024 0 -2\n",
        )
        .expect("write");
        assert!(swap_enabled(&path));
        assert!(swap_enabled(&dir.path().join("missing")));
    }

    #[test]
    fn swap_accounting_follows_the_cgroup_files() {
        let root = tempfile::tempdir().expect("tempdir");
        let root = root.path();
        assert!(!swap_accounting(root, CgroupVersion::V1, ""));
        std::fs::create_dir_all(root.join("memory")).expect("mkdir");
        std::fs::write(root.join("memory/memory.memsw.limit_in_bytes"), "").expect("write");
        assert!(swap_accounting(root, CgroupVersion::V1, ""));
        assert!(!swap_accounting(root, CgroupVersion::V2, "0::/\n"));
        std::fs::create_dir_all(root.join("system.slice/skiff.service")).expect("mkdir");
        std::fs::write(
            root.join("system.slice/skiff.service/memory.swap.max"),
            "max",
        )
        .expect("write");
        assert!(swap_accounting(
            root,
            CgroupVersion::V2,
            "0::/system.slice/skiff.service\n"
        ));
    }

    #[test]
    fn probe_reads_own_limits() {
        let facts = HostFacts::probe().expect("probe");
        assert!(facts.open_files.soft <= facts.open_files.hard);
    }
}
