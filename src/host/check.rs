//! What `skiff check` looks at: whether this machine has what a skiff server and node
//! need, each item a [`Finding`] (ok, warn for what is optional or only slow, missing
//! for what stops skiff) with the fix to apply.
//!
//! The kernel is read through files only, under a root directory ([`Machine::root`],
//! `/` in use, a faked tree in tests and with `skiff check --root`): the release
//! (`/proc/sys/kernel/osrelease`), the mounts (`/proc/self/mountinfo`: cgroup v1,
//! hybrid or v2), the cgroup controllers (`/proc/cgroups`, v2's
//! `/sys/fs/cgroup/cgroup.controllers`), file systems (`/proc/filesystems`), namespaces
//! (`/proc/self/ns`), and the kernel's build configuration for netfilter, bridge, veth,
//! br_netfilter and VXLAN.
//!
//! Nothing is probed by changing the system (no link is created, no module loaded):
//! the configuration comes from `/proc/config.gz`, else `/boot/config-<release>`, else
//! the module lists under `/lib/modules/<release>` and `/sys/module`; when none exists
//! the item is a warning ("could not tell"). A module is enough: the kernel loads
//! overlay, nf_tables, bridge and vxlan on first use (br_netfilter it does not: its
//! own item). VXLAN is optional (a one-node cluster needs no overlay).
//!
//! The programs skiff runs (`ip`, `nft`, `conntrack`) are looked up in `$PATH` (and
//! the sbin directories) under the root. Ports are tried by binding them (one held by
//! a running skiff is a warning, by anything else missing), the data directory's disk
//! by timing a few small synchronous writes in it. Time sync is a warning only: the
//! flag systemd-timesyncd leaves when synchronised, else a running NTP daemon (the
//! kernel's own STA_UNSYNC would need `adjtimex` through the libc crate directly).
//!
//! Owns: [`run`], [`Finding`], [`Machine`]. Calls: nothing in skiff (std, nix, flate2).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The oldest kernel skiff supports: 4.15 brought cgroup v2's cpu controller; it is
/// also the kernel of the oldest distributions still in use at the edge (Ubuntu 18.04,
/// Debian 10 has 4.19) and has overlayfs and the nf_tables NAT, masquerade and fib
/// expressions skiff's rules use.
pub const MIN_KERNEL: (u32, u32) = (4, 15);
/// A median `fdatasync` slower than this makes SQLite (every API write) slow.
pub const SLOW_FSYNC: Duration = Duration::from_millis(10);
/// Less free space than this in the data directory is a warning (images, logs, state).
pub const LOW_SPACE_BYTES: u64 = 2 << 30;

const TIME_SYNC_FIX: &str = "install and enable systemd-timesyncd or chrony: certificates and node leases need the right time, and a Raspberry Pi has no clock of its own";
const MEMORY_CMDLINE_FIX: &str = "add `cgroup_memory=1 cgroup_enable=memory` to /boot/firmware/cmdline.txt (or /boot/cmdline.txt; elsewhere to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboot";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Optional, slow or only advisable: skiff runs, maybe not as well.
    Warn,
    /// Required: skiff (its server or its node) does not work without it.
    Missing,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "missing",
        }
    }
}

/// One checked item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub item: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn new(item: impl Into<String>, status: Status, detail: impl Into<String>) -> Finding {
        Finding {
            item: item.into(),
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    fn ok(item: impl Into<String>, detail: impl Into<String>) -> Finding {
        Self::new(item, Status::Ok, detail)
    }

    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `/proc`, `/sys`, `/boot`, `/lib/modules`, `/run` and the programs are read.
    pub root: PathBuf,
    /// skiff's data directory (need not exist yet: its nearest existing parent is
    /// measured).
    pub data_dir: PathBuf,
    /// Ports skiff listens on, with the flag that moves each.
    pub ports: Vec<(u16, &'static str)>,
    /// `$PATH`, where the programs are looked up.
    pub path_env: String,
}

/// Every check, in the order they are printed.
pub fn run(options: &Options) -> Vec<Finding> {
    let machine = Machine::new(&options.root);
    let mut findings = vec![machine.kernel_release()];
    findings.extend(machine.cgroups());
    findings.push(machine.overlayfs());
    findings.push(machine.namespaces());
    findings.extend(machine.network_features());
    findings.push(machine.bridge_netfilter());
    findings.push(machine.ip_forward());
    findings.extend(machine.programs(&options.path_env));
    for (port, flag) in &options.ports {
        findings.push(machine.port(*port, flag));
    }
    findings.extend(machine.data_dir(&options.data_dir));
    findings.push(machine.time_sync());
    findings.push(running_as_root());
    findings
}

/// The machine as seen under a root directory.
pub struct Machine {
    pub root: PathBuf,
    /// The kernel's build configuration, read once.
    config: std::cell::OnceCell<Option<BTreeMap<String, String>>>,
}

/// How the kernel offers a feature, from its build configuration or module lists.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Support {
    /// Built in or a module (with where that was read).
    Yes(String),
    /// Not built (the option or module named).
    No(String),
    /// Nothing to read it from.
    Unknown,
}

impl Machine {
    pub fn new(root: &Path) -> Machine {
        Machine {
            root: root.into(),
            config: Default::default(),
        }
    }

    /// `absolute` (e.g. `/proc/filesystems`) under the root.
    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn read(&self, absolute: &str) -> Option<String> {
        std::fs::read_to_string(self.path(absolute)).ok()
    }

    fn release(&self) -> Option<String> {
        self.read("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn kernel_release(&self) -> Finding {
        let needed = format!("{}.{} or newer needed", MIN_KERNEL.0, MIN_KERNEL.1);
        let Some(release) = self.release() else {
            return Finding::new("kernel", Status::Warn, "could not read the kernel release");
        };
        match parse_version(&release) {
            Some(version) if version >= MIN_KERNEL => {
                Finding::ok("kernel", format!("{release} ({needed})"))
            }
            Some(_) => Finding::new("kernel", Status::Missing, format!("{release}: {needed}"))
                .fix("upgrade the kernel (the distribution's current release)"),
            None => Finding::new(
                "kernel",
                Status::Warn,
                format!("could not read a version in {release:?}"),
            ),
        }
    }

    /// The mounts: (mount point, file system type).
    fn mounts(&self) -> Vec<(String, String)> {
        self.read("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(parse_mountinfo_line)
            .collect()
    }

    pub fn cgroups(&self) -> Vec<Finding> {
        let mounts = self.mounts();
        let layout = cgroup_layout(&mounts);
        match layout {
            CgroupLayout::None => vec![Finding::new(
                "cgroups",
                Status::Missing,
                "no cgroup file system is mounted at /sys/fs/cgroup",
            )
            .fix("mount cgroup2 at /sys/fs/cgroup (systemd and OpenRC do when the kernel has CONFIG_CGROUPS)")],
            CgroupLayout::Unified => {
                let mut findings = vec![Finding::ok(
                    "cgroups",
                    "v2 (unified hierarchy at /sys/fs/cgroup)",
                )];
                let controllers: Vec<String> = self
                    .read("/sys/fs/cgroup/cgroup.controllers")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                for (name, required) in V2_CONTROLLERS {
                    let present = controllers.iter().any(|c| c == name);
                    findings.push(self.controller(name, *required, present, "cgroup.controllers"));
                }
                findings
            }
            CgroupLayout::Legacy | CgroupLayout::Hybrid => {
                let detail = if layout == CgroupLayout::Hybrid {
                    "hybrid (v1 controllers, the v2 tree at /sys/fs/cgroup/unified); containers use v1"
                } else {
                    "v1 (one hierarchy per controller under /sys/fs/cgroup)"
                };
                let mut findings = vec![Finding::ok("cgroups", detail)];
                let controllers = self.v1_controllers();
                for (name, required) in V1_CONTROLLERS {
                    let finding = match controllers.get(*name) {
                        Some(V1Controller::OnV2) => self.controller_on_v2(name, *required),
                        state => self.controller(
                            name,
                            *required,
                            state == Some(&V1Controller::Mounted),
                            "/proc/cgroups",
                        ),
                    };
                    findings.push(finding);
                }
                findings
            }
        }
    }

    /// A controller a hybrid host bound to its v2 tree: enabled, but containers (in
    /// v1 cgroups) cannot use it.
    fn controller_on_v2(&self, name: &str, required: bool) -> Finding {
        let detail = "enabled, but bound to the v2 tree (/sys/fs/cgroup/unified), which containers on a hybrid host do not use";
        if required {
            Finding::new(format!("cgroup {name}"), Status::Missing, detail).fix(format!(
                "mount it as a v1 hierarchy (mount -t cgroup -o {name} cgroup /sys/fs/cgroup/{name}), or boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2 everywhere"
            ))
        } else {
            Finding::new(format!("cgroup {name}"), Status::Warn, detail)
        }
    }

    /// v1 controllers from `/proc/cgroups`: where each is.
    fn v1_controllers(&self) -> BTreeMap<String, V1Controller> {
        self.read("/proc/cgroups")
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let [name, hierarchy, _, enabled] = fields[..] else {
                    return None;
                };
                let state = match (enabled, hierarchy) {
                    ("1", "0") => V1Controller::OnV2,
                    ("1", _) => V1Controller::Mounted,
                    _ => V1Controller::Disabled,
                };
                Some((name.to_string(), state))
            })
            .collect()
    }

    fn controller(&self, name: &str, required: bool, present: bool, source: &str) -> Finding {
        let item = format!("cgroup {name}");
        if present {
            return Finding::ok(item, format!("enabled ({source})"));
        }
        let status = if required {
            Status::Missing
        } else {
            Status::Warn
        };
        let use_ = match name {
            "memory" => "memory limits and requests",
            "cpu" | "cpuacct" => "CPU limits and shares",
            "cpuset" => "CPU sets",
            "pids" => "pod PID limits",
            "devices" => "containers' device access",
            "freezer" => "stopping containers",
            "io" | "blkio" => "I/O accounting",
            _ => "huge pages",
        };
        let fix = match (name, self.config_option(controller_option(name))) {
            ("memory", _) => MEMORY_CMDLINE_FIX.to_string(),
            (_, Some(true)) => format!(
                "the kernel has it but it is off: add `cgroup_enable={name}` to the kernel command line (/boot/firmware/cmdline.txt on a Raspberry Pi) and reboot"
            ),
            _ => format!(
                "a kernel built with CONFIG_{} (the distribution's standard kernel)",
                controller_option(name)
            ),
        };
        Finding::new(
            item,
            status,
            format!("not enabled ({source}); used for {use_}"),
        )
        .fix(fix)
    }

    /// The kernel's build configuration (`/proc/config.gz`, else
    /// `/boot/config-<release>`): option name (without `CONFIG_`) to value.
    fn kernel_config(&self) -> Option<&BTreeMap<String, String>> {
        self.config
            .get_or_init(|| self.read_kernel_config())
            .as_ref()
    }

    fn read_kernel_config(&self) -> Option<BTreeMap<String, String>> {
        let text = self.read_config_gz().or_else(|| {
            let release = self.release()?;
            self.read(&format!("/boot/config-{release}"))
        })?;
        Some(
            text.lines()
                .filter_map(|l| l.strip_prefix("CONFIG_")?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn read_config_gz(&self) -> Option<String> {
        let file = std::fs::File::open(self.path("/proc/config.gz")).ok()?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }

    /// Whether the configuration has `option` built in or as a module (None: no
    /// configuration to read).
    fn config_option(&self, option: &str) -> Option<bool> {
        let config = self.kernel_config()?;
        Some(matches!(
            config.get(option).map(String::as_str),
            Some("y" | "m")
        ))
    }

    /// Whether the kernel offers `options` (all of them), else the module `module`.
    fn support(&self, options: &[&str], module: &str) -> Support {
        if let Some(config) = self.kernel_config() {
            let missing: Vec<&str> = options
                .iter()
                .filter(|o| !matches!(config.get(**o).map(String::as_str), Some("y" | "m")))
                .copied()
                .collect();
            return if missing.is_empty() {
                Support::Yes("kernel config".into())
            } else {
                Support::No(config_names(&missing))
            };
        }
        if self.path(&format!("/sys/module/{module}")).exists() {
            return Support::Yes("loaded".into());
        }
        let Some(release) = self.release() else {
            return Support::Unknown;
        };
        let modules = format!("/lib/modules/{release}");
        if !self.path(&modules).is_dir() {
            return Support::Unknown;
        }
        let listed = |file: &str| {
            self.read(&format!("{modules}/{file}"))
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    let path = l.split(':').next().unwrap_or_default();
                    let name = path.rsplit('/').next().unwrap_or_default();
                    name.split('.').next() == Some(module)
                })
        };
        if listed("modules.builtin") {
            Support::Yes("built in".into())
        } else if listed("modules.dep") {
            Support::Yes("module".into())
        } else {
            Support::No(format!("module {module}"))
        }
    }

    fn feature(
        &self,
        item: &str,
        options: &[&str],
        module: &str,
        required: bool,
        used_for: &str,
    ) -> Finding {
        let failed = if required {
            Status::Missing
        } else {
            Status::Warn
        };
        match self.support(options, module) {
            Support::Yes(how) => Finding::ok(item, format!("{how}; {used_for}")),
            Support::No(what) => Finding::new(item, failed, format!("no {what}; {used_for}"))
                .fix(format!("a kernel built with {}", config_names(options))),
            Support::Unknown => Finding::new(
                item,
                Status::Warn,
                format!("could not tell (no /proc/config.gz, /boot/config-<release> or /lib/modules/<release>); {used_for}"),
            ),
        }
    }

    pub fn overlayfs(&self) -> Finding {
        let listed = self
            .read("/proc/filesystems")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"));
        if listed {
            return Finding::ok(
                "overlayfs",
                "in /proc/filesystems; containers' root file systems",
            );
        }
        self.feature(
            "overlayfs",
            &["OVERLAY_FS"],
            "overlay",
            true,
            "containers' root file systems",
        )
    }

    pub fn namespaces(&self) -> Finding {
        let has = |ns: &str| self.path(&format!("/proc/self/ns/{ns}")).exists();
        let missing: Vec<&str> = ["ipc", "mnt", "net", "pid", "uts"]
            .into_iter()
            .filter(|ns| !has(ns))
            .collect();
        if !missing.is_empty() {
            return Finding::new(
                "namespaces",
                Status::Missing,
                format!("no {} namespace (/proc/self/ns)", missing.join(", ")),
            )
            .fix("a kernel built with CONFIG_NAMESPACES and its IPC, PID, UTS and NET namespaces");
        }
        let optional: Vec<&str> = ["cgroup", "user"]
            .into_iter()
            .filter(|ns| !has(ns))
            .collect();
        if optional.is_empty() {
            Finding::ok("namespaces", "ipc, mnt, net, pid, uts, cgroup, user")
        } else {
            Finding::new(
                "namespaces",
                Status::Warn,
                format!(
                    "ipc, mnt, net, pid, uts; no {} namespace",
                    optional.join(", ")
                ),
            )
        }
    }

    pub fn network_features(&self) -> Vec<Finding> {
        vec![
            self.feature(
                "nf_tables",
                &[
                    "NF_TABLES",
                    "NF_TABLES_INET",
                    "NF_CONNTRACK",
                    "NF_NAT",
                    "NFT_NAT",
                    "NFT_CT",
                    "NFT_MASQ",
                    "NFT_REJECT",
                    "NFT_FIB_INET",
                    "NFT_NUMGEN",
                ],
                "nf_tables",
                true,
                "service load balancing, masquerading and policies (nft)",
            ),
            self.feature(
                "bridge",
                &["BRIDGE", "VETH"],
                "bridge",
                true,
                "the pod bridge and the pods' veth links",
            ),
            self.feature(
                "vxlan",
                &["VXLAN"],
                "vxlan",
                false,
                "the overlay between nodes (--flannel-backend vxlan, the default); one node needs none",
            ),
        ]
    }

    /// br_netfilter: the one module skiff needs that the kernel does not load on
    /// demand (overlay, nf_tables, bridge and vxlan load when first used).
    pub fn bridge_netfilter(&self) -> Finding {
        let item = "br_netfilter";
        let used_for = "replies between pods of one node through a service";
        if self
            .path("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .exists()
        {
            return Finding::ok(item, format!("loaded; {used_for}"));
        }
        match self.support(&["BRIDGE_NETFILTER"], "br_netfilter") {
            Support::Yes(how) => Finding::new(
                item,
                Status::Warn,
                format!("{how}, not loaded; {used_for}"),
            )
            .fix("modprobe br_netfilter, and list it in /etc/modules-load.d/ (skiff's systemd units load it at start)"),
            Support::No(what) => Finding::new(item, Status::Missing, format!("no {what}; {used_for}"))
                .fix("a kernel built with CONFIG_BRIDGE_NETFILTER"),
            Support::Unknown => Finding::new(
                item,
                Status::Warn,
                format!("not loaded, and could not tell whether the kernel has it; {used_for}"),
            )
            .fix("modprobe br_netfilter"),
        }
    }

    pub fn ip_forward(&self) -> Finding {
        match self.read("/proc/sys/net/ipv4/ip_forward").as_deref().map(str::trim) {
            Some("1") => Finding::ok("ip_forward", "on"),
            Some(_) => Finding::new(
                "ip_forward",
                Status::Warn,
                "off: skiff's node turns it on when it starts (net.ipv4.ip_forward=1), which routes between all of this machine's interfaces",
            ),
            None => Finding::new("ip_forward", Status::Warn, "could not read /proc/sys/net/ipv4/ip_forward"),
        }
    }

    pub fn programs(&self, path_env: &str) -> Vec<Finding> {
        let mut dirs: Vec<&str> = path_env.split(':').filter(|d| !d.is_empty()).collect();
        for sbin in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
            if !dirs.contains(&sbin) {
                dirs.push(sbin);
            }
        }
        let find = |program: &str| {
            dirs.iter()
                .map(|d| self.path(d).join(program))
                .find(|p| is_executable(p))
        };
        PROGRAMS
            .iter()
            .map(|(program, package, required, used_for)| {
                let item = format!("program {program}");
                match find(program) {
                    Some(path) => Finding::ok(item, format!("{}; {used_for}", path.display())),
                    None => {
                        let status = if *required { Status::Missing } else { Status::Warn };
                        Finding::new(item, status, format!("not found in $PATH; {used_for}"))
                            .fix(format!("install {package} (apt-get install {package}, apk add {package}, dnf install {package})"))
                    }
                }
            })
            .collect()
    }

    /// Whether `port` is free on every address (by binding it), else who listens.
    pub fn port(&self, port: u16, flag: &str) -> Finding {
        let item = format!("port {port}");
        match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(_) => Finding::ok(item, format!("free ({flag})")),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match self.listener_of(port) {
                Some((pid, name)) if name == "skiff" => Finding::new(
                    item,
                    Status::Warn,
                    format!("in use by a running skiff (pid {pid}): fine if that is this machine's skiff"),
                )
                .fix(format!("for another skiff here, choose another port with {flag}")),
                owner => {
                    let by = owner.map_or_else(
                        || "another program".to_string(),
                        |(pid, name)| format!("{name} (pid {pid})"),
                    );
                    Finding::new(item, Status::Missing, format!("in use by {by}"))
                        .fix(format!("stop it, or choose another port with {flag}"))
                }
            },
            Err(e) => Finding::new(item, Status::Warn, format!("could not try it: {e}")),
        }
    }

    /// The process listening on TCP `port`: its pid and name (needs root to see
    /// other users' sockets).
    fn listener_of(&self, port: u16) -> Option<(u32, String)> {
        let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .flat_map(|f| {
                self.read(f)
                    .unwrap_or_default()
                    .lines()
                    .skip(1)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local = fields.get(1)?;
                let state = fields.get(3)?;
                let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
                (local_port == port && *state == "0A")
                    .then(|| fields.get(9).map(|s| s.to_string()))?
            })
            .collect();
        if inodes.is_empty() {
            return None;
        }
        let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
        for (pid, dir) in self.processes() {
            let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                let Ok(link) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                if targets.iter().any(|t| Path::new(t) == link) {
                    return Some((pid, process_name(&dir)));
                }
            }
        }
        None
    }

    /// Every process directory under `/proc`.
    fn processes(&self) -> Vec<(u32, PathBuf)> {
        std::fs::read_dir(self.path("/proc"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse().ok()?;
                Some((pid, e.path()))
            })
            .collect()
    }

    /// The data directory: its file system, free space and write latency.
    pub fn data_dir(&self, data_dir: &Path) -> Vec<Finding> {
        let Some(existing) = data_dir.ancestors().find(|p| p.is_dir()) else {
            return vec![Finding::new(
                "data dir",
                Status::Missing,
                format!("no directory on the way to {}", data_dir.display()),
            )];
        };
        let shown = if existing == data_dir {
            data_dir.display().to_string()
        } else {
            format!(
                "{} (not made yet; measured at {})",
                data_dir.display(),
                existing.display()
            )
        };
        let mut findings = vec![self.data_filesystem(existing, &shown)];
        findings.push(free_space(existing));
        findings.push(fsync_latency(existing));
        findings
    }

    fn data_filesystem(&self, existing: &Path, shown: &str) -> Finding {
        let canonical = existing.canonicalize().unwrap_or_else(|_| existing.into());
        let fs_type = self
            .mounts()
            .into_iter()
            .filter(|(point, _)| canonical.starts_with(point))
            .max_by_key(|(point, _)| point.len())
            .map(|(_, fs_type)| fs_type);
        let Some(fs_type) = fs_type else {
            return Finding::new(
                "data dir",
                Status::Warn,
                format!("{shown}: could not tell its file system"),
            );
        };
        let detail = format!("{shown} on {fs_type}");
        let problem = match fs_type.as_str() {
            "tmpfs" | "ramfs" => Some((
                "the cluster's state is lost at reboot",
                "use a directory on a disk (--data-dir)",
            )),
            "overlay" => Some((
                "containers' root file systems cannot be overlays on an overlay, and the state may not persist",
                "use a directory on a disk (--data-dir), e.g. a volume when skiff runs in a container",
            )),
            "nfs" | "nfs4" | "cifs" | "smb3" | "fuse.sshfs" => Some((
                "SQLite's locking is unreliable on network file systems",
                "use a local disk (--data-dir)",
            )),
            _ => None,
        };
        match problem {
            Some((why, fix)) => {
                Finding::new("data dir", Status::Warn, format!("{detail}: {why}")).fix(fix)
            }
            None => Finding::ok("data dir", detail),
        }
    }

    /// Whether the clock is kept in time: timesyncd says synchronised, or an NTP
    /// daemon runs.
    pub fn time_sync(&self) -> Finding {
        if self.path("/run/systemd/timesync/synchronized").exists() {
            return Finding::ok("time sync", "systemd-timesyncd has synchronised the clock");
        }
        let daemons = [
            "chronyd",
            "ntpd",
            "systemd-timesyn",
            "openntpd",
            "timesyncd",
            "ntpdate",
        ];
        if let Some(name) = self
            .processes()
            .into_iter()
            .map(|(_, dir)| process_name(&dir))
            .find(|name| daemons.contains(&name.as_str()))
        {
            return Finding::ok("time sync", format!("{name} runs"));
        }
        Finding::new(
            "time sync",
            Status::Warn,
            "no time synchronisation running (chronyd, ntpd, systemd-timesyncd)",
        )
        .fix(TIME_SYNC_FIX)
    }
}

/// v2 controllers: name, required.
const V2_CONTROLLERS: &[(&str, bool)] = &[
    ("cpu", true),
    ("cpuset", true),
    ("memory", true),
    ("pids", true),
    ("io", false),
    ("hugetlb", false),
];

/// v1 controllers libcontainer's v1 manager uses: name, required.
const V1_CONTROLLERS: &[(&str, bool)] = &[
    ("cpu", true),
    ("cpuacct", true),
    ("cpuset", true),
    ("memory", true),
    ("pids", true),
    ("devices", true),
    ("freezer", true),
    ("blkio", false),
    ("hugetlb", false),
];

/// Programs skiff runs: name, package, required, what for.
const PROGRAMS: &[(&str, &str, bool, &str)] = &[
    (
        "ip",
        "iproute2",
        true,
        "the node's links, addresses and routes",
    ),
    (
        "nft",
        "nftables",
        true,
        "services, masquerading and network policies",
    ),
    (
        "conntrack",
        "conntrack",
        false,
        "flushing stale UDP flows when a service's backends change",
    ),
];

/// `CONFIG_A, CONFIG_B` for options `A`, `B`.
fn config_names(options: &[&str]) -> String {
    options
        .iter()
        .map(|o| format!("CONFIG_{o}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kernel option behind a cgroup controller.
fn controller_option(name: &str) -> &'static str {
    match name {
        "memory" => "MEMCG",
        "cpu" => "CGROUP_SCHED",
        "cpuacct" => "CGROUP_CPUACCT",
        "cpuset" => "CPUSETS",
        "pids" => "CGROUP_PIDS",
        "devices" => "CGROUP_DEVICE",
        "freezer" => "CGROUP_FREEZER",
        "io" | "blkio" => "BLK_CGROUP",
        _ => "CGROUP_HUGETLB",
    }
}

/// A v1 controller as `/proc/cgroups` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V1Controller {
    /// Enabled, on a v1 hierarchy.
    Mounted,
    /// Enabled, on the v2 tree (hierarchy 0).
    OnV2,
    /// Switched off at boot (`cgroup_disable=`, or not `cgroup_enable=` on a Pi).
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupLayout {
    None,
    /// v1 only.
    Legacy,
    /// v1 controllers and the v2 tree at /sys/fs/cgroup/unified.
    Hybrid,
    /// v2 at /sys/fs/cgroup.
    Unified,
}

fn cgroup_layout(mounts: &[(String, String)]) -> CgroupLayout {
    let at = |point: &str, fs: &str| mounts.iter().any(|(p, t)| p == point && t == fs);
    if at("/sys/fs/cgroup", "cgroup2") {
        return CgroupLayout::Unified;
    }
    let v1 = mounts
        .iter()
        .any(|(p, t)| t == "cgroup" && p.starts_with("/sys/fs/cgroup/"));
    match (v1, at("/sys/fs/cgroup/unified", "cgroup2")) {
        (true, true) => CgroupLayout::Hybrid,
        (true, false) => CgroupLayout::Legacy,
        (false, _) => CgroupLayout::None,
    }
}

/// `major.minor` of a kernel release such as `6.1.0-rpi7-rpi-v8`.
fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// (mount point, file system type) of a `/proc/self/mountinfo` line.
fn parse_mountinfo_line(line: &str) -> Option<(String, String)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let point = fields.get(4)?;
    let separator = fields.iter().position(|f| *f == "-")?;
    let fs_type = fields.get(separator + 1)?;
    Some((unescape_octal(point), fs_type.to_string()))
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let digit = |j: usize| u32::from(bytes[i + j] - b'0');
            out.push((digit(1) * 64 + digit(2) * 8 + digit(3)) as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn process_name(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

// The statvfs field types differ between targets (u32 on some 32-bit ones).
#[allow(clippy::unnecessary_cast)]
fn free_space(dir: &Path) -> Finding {
    let Ok(stat) = nix::sys::statvfs::statvfs(dir) else {
        return Finding::new(
            "free space",
            Status::Warn,
            format!("could not read the free space of {}", dir.display()),
        );
    };
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    let detail = format!("{} free", human_bytes(free));
    if free < LOW_SPACE_BYTES {
        Finding::new(
            "free space",
            Status::Warn,
            format!("{detail}: images, logs and the database need room (2 GiB or more)"),
        )
        .fix("free space or use a bigger disk (--data-dir)")
    } else {
        Finding::ok("free space", detail)
    }
}

fn human_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if bytes as f64 >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB)
    } else {
        format!("{:.0} MiB", bytes as f64 / MIB)
    }
}

/// The median time of a 4 KiB write plus `fdatasync` in `dir`, as SQLite commits.
pub fn measure_fsync(dir: &Path, samples: usize) -> std::io::Result<Duration> {
    let path = dir.join(format!(".skiff-check-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let block = [0x5au8; 4096];
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples.max(1) {
            let started = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            times.push(started.elapsed());
        }
        times.sort();
        Ok(times[times.len() / 2])
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn fsync_latency(dir: &Path) -> Finding {
    match measure_fsync(dir, 9) {
        Ok(median) if median > SLOW_FSYNC => Finding::new(
            "disk latency",
            Status::Warn,
            format!("{:.1} ms per synchronous write (median of 9): SQLite on a slow SD card or disk makes every API write wait", median.as_secs_f64() * 1000.0),
        )
        .fix("put the data directory on an SSD (USB 3 on a Raspberry Pi) or an A1/A2-rated card"),
        Ok(median) => Finding::ok("disk latency", format!("{:.1} ms per synchronous write (median of 9)", median.as_secs_f64() * 1000.0)),
        Err(e) => Finding::new("disk latency", Status::Warn, format!("could not write a test file in {}: {e}", dir.display())),
    }
}

fn running_as_root() -> Finding {
    if nix::unistd::geteuid().is_root() {
        Finding::ok("root", "running as root")
    } else {
        Finding::new(
            "root",
            Status::Warn,
            "not root: a node runs containers as root, and some checks see less",
        )
        .fix("run skiff (and this check) as root")
    }
}

#[cfg(test)]
mod tests;
