//! The OCI runtime spec (`config.json`) for a `ContainerConfig`: the mounts, masked
//! and read-only paths runc and containerd give every container, capabilities from the
//! Docker/containerd default set, rlimits from the host's own limits, the pod
//! sandbox's namespaces, and `linux.resources` for the cgroup. Pure: no I/O.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
    Process, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use oci_spec::OciSpecError;

use super::cgroups::CgroupVersion;
use super::config::{BindMount, ContainerConfig};
use super::host::HostFacts;

/// The CFS period every container gets; CPU limits become a quota per period.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses smaller quotas (and Kubernetes rounds up to it).
const MIN_CPU_QUOTA_US: i64 = 1_000;
const MIN_CPU_SHARES: u64 = 2;
const MAX_CPU_SHARES: u64 = 262_144;

/// `PATH` for images that set none (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's and containerd's default capabilities.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability Linux 6.x knows; privileged containers get them all.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Paths runc and containerd hide from unprivileged containers.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths runc and containerd make read-only in unprivileged containers.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("container {id}: unknown capability {name:?}")]
    UnknownCapability { id: String, name: String },
    #[error("container {id}: {what} must be an absolute path without '..', not {path:?}")]
    BadPath {
        id: String,
        what: &'static str,
        path: PathBuf,
    },
    #[error("container {id}: no command to run")]
    NoArgs { id: String },
    #[error("container {id}: building the OCI spec: {source}")]
    Build {
        id: String,
        #[source]
        source: OciSpecError,
    },
}

/// cpu.shares for a CPU request (Kubernetes' MilliCPUToShares).
pub fn cpu_shares(request_millis: u64) -> u64 {
    (request_millis.saturating_mul(1024) / 1000).clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
}

/// The CFS quota per `CPU_PERIOD_US` for a CPU limit (Kubernetes' MilliCPUToQuota).
pub fn cpu_quota_us(limit_millis: u64) -> i64 {
    let quota = limit_millis.saturating_mul(CPU_PERIOD_US) / 1000;
    i64::try_from(quota)
        .unwrap_or(i64::MAX)
        .max(MIN_CPU_QUOTA_US)
}

/// The OCI spec for `config` on a host described by `host`.
pub fn build_spec(config: &ContainerConfig, host: &HostFacts) -> Result<Spec, SpecError> {
    check_config(config)?;
    let id = &config.id;
    let build = |source| SpecError::Build {
        id: id.clone(),
        source,
    };
    let capabilities = capability_set(config)?;
    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_root(Some(
        RootBuilder::default()
            .path(config.rootfs.clone())
            .readonly(config.readonly_rootfs)
            .build()
            .map_err(build)?,
    ));
    let own_uts = config.namespaces.uts.is_none();
    spec.set_hostname(config.hostname.clone().filter(|_| own_uts));
    spec.set_mounts(Some(mounts(config).map_err(build)?));
    spec.set_process(Some(process(config, host, capabilities).map_err(build)?));
    spec.set_linux(Some(linux(config, host).map_err(build)?));
    spec.set_annotations((!config.annotations.is_empty()).then(|| {
        config
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>()
    }));
    Ok(spec)
}

fn check_config(config: &ContainerConfig) -> Result<(), SpecError> {
    let bad = |what, path: &Path| SpecError::BadPath {
        id: config.id.clone(),
        what,
        path: path.to_path_buf(),
    };
    if config.args.is_empty() {
        return Err(SpecError::NoArgs {
            id: config.id.clone(),
        });
    }
    let mut paths = vec![
        ("rootfs", config.rootfs.as_path()),
        ("cgroup path", config.cgroup_path.as_path()),
    ];
    paths.extend(config.working_dir.as_deref().map(|p| ("working dir", p)));
    paths.extend(config.shm.as_deref().map(|p| ("shm dir", p)));
    for mount in &config.mounts {
        paths.push(("mount source", &mount.source));
        paths.push(("mount destination", &mount.destination));
    }
    let namespaces = &config.namespaces;
    for path in [
        &namespaces.network,
        &namespaces.ipc,
        &namespaces.uts,
        &namespaces.pid,
    ]
    .into_iter()
    .flatten()
    {
        paths.push(("namespace path", path));
    }
    match paths.into_iter().find(|(_, p)| !is_clean_absolute(p)) {
        Some((what, path)) => Err(bad(what, path)),
        None => Ok(()),
    }
}

fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute() && !path.components().any(|c| c == Component::ParentDir)
}

/// The capability set after the config's drops and adds (or all, when privileged).
fn capability_set(config: &ContainerConfig) -> Result<Capabilities, SpecError> {
    let all = || parse_capabilities(&config.id, ALL_CAPABILITIES.iter().copied());
    if config.privileged {
        return all();
    }
    let changes = &config.capabilities;
    let is_all = |name: &String| name.eq_ignore_ascii_case("ALL");
    let mut set = if changes.add.iter().any(is_all) {
        all()?
    } else {
        parse_capabilities(&config.id, DEFAULT_CAPABILITIES.iter().copied())?
    };
    if changes.drop.iter().any(is_all) {
        set.clear();
    }
    let named = |names: &[String]| {
        let names = names.iter().filter(|n| !is_all(n)).map(String::as_str);
        parse_capabilities(&config.id, names)
    };
    for cap in named(&changes.drop)? {
        set.remove(&cap);
    }
    set.extend(named(&changes.add)?);
    Ok(set)
}

fn parse_capabilities<'a>(
    id: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<Capabilities, SpecError> {
    names.map(|name| parse_capability(id, name)).collect()
}

/// `NET_ADMIN`, `CAP_NET_ADMIN` or `net_admin`.
fn parse_capability(id: &str, name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| SpecError::UnknownCapability {
        id: id.to_string(),
        name: name.to_string(),
    })
}

fn process(
    config: &ContainerConfig,
    host: &HostFacts,
    capabilities: Capabilities,
) -> Result<Process, OciSpecError> {
    let user = UserBuilder::default()
        .uid(config.user.uid)
        .gid(config.user.gid)
        .additional_gids(config.user.additional_gids.clone())
        .build()?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(capabilities.clone())
        .effective(capabilities.clone())
        .permitted(capabilities)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?;
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(config.args.clone())
        .env(environment(config))
        .cwd(config.working_dir.clone().unwrap_or_else(|| "/".into()))
        .capabilities(capabilities)
        .rlimits(rlimits(config, host)?)
        .no_new_privileges(config.no_new_privileges)
        .build()?;
    process.set_oom_score_adj(config.oom_score_adj);
    Ok(process)
}

/// `NAME=value` strings, with a default `PATH` when the config has none.
fn environment(config: &ContainerConfig) -> Vec<String> {
    let mut env: Vec<String> = config
        .env
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if !config.env.iter().any(|(name, _)| name == "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env
}

/// Open files: the configured number or else the host's hard limit, never above the
/// host's hard limit (asking for more makes container creation fail). Processes: the
/// host's own values (RLIMIT_NPROC counts per user, across containers).
fn rlimits(config: &ContainerConfig, host: &HostFacts) -> Result<Vec<PosixRlimit>, OciSpecError> {
    let open_files = config
        .limits
        .open_files
        .unwrap_or(host.open_files.hard)
        .min(host.open_files.hard);
    Ok(vec![
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(open_files)
            .hard(open_files)
            .build()?,
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNproc)
            .soft(host.processes.soft)
            .hard(host.processes.hard)
            .build()?,
    ])
}

fn mounts(config: &ContainerConfig) -> Result<Vec<Mount>, OciSpecError> {
    let sys_access = if config.privileged { "rw" } else { "ro" };
    let shm = match &config.shm {
        Some(dir) => bind(
            dir,
            "/dev/shm",
            &["rbind", "rprivate", "nosuid", "nodev", "noexec"],
        )?,
        None => special(
            "shm",
            "tmpfs",
            "/dev/shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    };
    let standard = vec![
        special("proc", "proc", "/proc", &["nosuid", "noexec", "nodev"])?,
        special(
            "tmpfs",
            "tmpfs",
            "/dev",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        special(
            "devpts",
            "devpts",
            "/dev/pts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        shm,
        special(
            "mqueue",
            "mqueue",
            "/dev/mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        special(
            "sysfs",
            "sysfs",
            "/sys",
            &["nosuid", "noexec", "nodev", sys_access],
        )?,
        special(
            "cgroup",
            "cgroup",
            "/sys/fs/cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_access],
        )?,
    ];
    let overridden = |m: &Mount| {
        config
            .mounts
            .iter()
            .any(|b| &b.destination == m.destination())
    };
    let mut mounts: Vec<Mount> = standard.into_iter().filter(|m| !overridden(m)).collect();
    for mount in &config.mounts {
        mounts.push(bind_mount(mount)?);
    }
    Ok(mounts)
}

fn special(
    source: &str,
    typ: &str,
    destination: &str,
    options: &[&str],
) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .source(source)
        .typ(typ)
        .destination(destination)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
}

fn bind(source: &Path, destination: &str, options: &[&str]) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .source(source)
        .typ("bind")
        .destination(destination)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
}

fn bind_mount(mount: &BindMount) -> Result<Mount, OciSpecError> {
    let access = if mount.read_only { "ro" } else { "rw" };
    MountBuilder::default()
        .source(mount.source.clone())
        .typ("bind")
        .destination(mount.destination.clone())
        .options(vec![
            "rbind".to_string(),
            "rprivate".to_string(),
            access.to_string(),
        ])
        .build()
}

fn linux(
    config: &ContainerConfig,
    host: &HostFacts,
) -> Result<oci_spec::runtime::Linux, OciSpecError> {
    let (masked, readonly): (Vec<String>, Vec<String>) = if config.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        )
    };
    let mut linux = LinuxBuilder::default()
        .cgroups_path(config.cgroup_path.clone())
        .namespaces(namespaces(config, host)?)
        .resources(resources(config, host)?)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()?;
    linux.set_seccomp(None);
    Ok(linux)
}

/// A new mount namespace; the given network, IPC, UTS and PID namespaces (else new
/// ones); a cgroup namespace on cgroup v2 (as containerd does).
fn namespaces(
    config: &ContainerConfig,
    host: &HostFacts,
) -> Result<Vec<LinuxNamespace>, OciSpecError> {
    let sandbox = &config.namespaces;
    let mut wanted: Vec<(LinuxNamespaceType, Option<&PathBuf>)> = vec![
        (LinuxNamespaceType::Pid, sandbox.pid.as_ref()),
        (LinuxNamespaceType::Mount, None),
        (LinuxNamespaceType::Network, sandbox.network.as_ref()),
        (LinuxNamespaceType::Ipc, sandbox.ipc.as_ref()),
        (LinuxNamespaceType::Uts, sandbox.uts.as_ref()),
    ];
    if host.cgroup == CgroupVersion::V2 {
        wanted.push((LinuxNamespaceType::Cgroup, None));
    }
    wanted
        .into_iter()
        .map(|(typ, path)| {
            let builder = LinuxNamespaceBuilder::default().typ(typ);
            match path {
                Some(path) => builder.path(path.clone()).build(),
                None => builder.build(),
            }
        })
        .collect()
}

fn resources(config: &ContainerConfig, host: &HostFacts) -> Result<LinuxResources, OciSpecError> {
    let limits = &config.limits;
    let device_rule = LinuxDeviceCgroupBuilder::default()
        .allow(config.privileged)
        .typ(LinuxDeviceType::A)
        .access("rwm")
        .build()?;
    let mut resources = LinuxResourcesBuilder::default()
        .devices(vec![device_rule])
        .build()?;
    if limits.cpu_quota_millis.is_some() || limits.cpu_request_millis.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(request) = limits.cpu_request_millis {
            cpu = cpu.shares(cpu_shares(request));
        }
        if let Some(limit) = limits.cpu_quota_millis {
            cpu = cpu.quota(cpu_quota_us(limit)).period(CPU_PERIOD_US);
        }
        resources.set_cpu(Some(cpu.build()?));
    }
    if let Some(bytes) = limits.memory_bytes {
        let mut memory = LinuxMemoryBuilder::default().limit(bytes);
        if host.swap_limits {
            // OCI swap is memory+swap: equal to the limit means no swap at all.
            memory = memory.swap(bytes);
        }
        resources.set_memory(Some(memory.build()?));
    }
    if let Some(pids) = limits.pids {
        resources.set_pids(Some(LinuxPidsBuilder::default().limit(pids).build()?));
    }
    Ok(resources)
}

/// The capability names in a set as the OCI spec writes them (`CAP_…`), sorted.
pub fn capability_names(set: &HashSet<Capability>) -> Vec<String> {
    let mut names: Vec<String> = set.iter().map(|c| format!("CAP_{c}")).collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use oci_spec::runtime::LinuxNamespaceType as Ns;

    use super::*;
    use crate::runtime::config::{CapabilityChanges, Limits, SandboxNamespaces, UserIds};
    use crate::runtime::host::Rlimit;

    fn host(cgroup: CgroupVersion) -> HostFacts {
        HostFacts {
            open_files: Rlimit {
                soft: 1024,
                hard: 20_000,
            },
            processes: Rlimit {
                soft: 96_365,
                hard: 96_365,
            },
            cgroup,
            swap_limits: false,
        }
    }

    fn config() -> ContainerConfig {
        ContainerConfig {
            id: "c1".into(),
            rootfs: "/var/lib/skiff/rootfs/c1".into(),
            args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            cgroup_path: "/skiff/pod1/c1".into(),
            ..Default::default()
        }
    }

    fn spec(config: &ContainerConfig) -> Spec {
        build_spec(config, &host(CgroupVersion::V1)).expect("spec")
    }

    fn process(spec: &Spec) -> &Process {
        spec.process().as_ref().expect("process")
    }

    fn linux(spec: &Spec) -> &oci_spec::runtime::Linux {
        spec.linux().as_ref().expect("linux")
    }

    fn caps(spec: &Spec) -> Vec<String> {
        let caps = process(spec).capabilities().as_ref().expect("capabilities");
        let effective = caps.effective().as_ref().expect("effective");
        assert_eq!(caps.bounding().as_ref(), Some(effective));
        assert_eq!(caps.permitted().as_ref(), Some(effective));
        assert_eq!(caps.inheritable().as_ref().map(|c| c.len()), Some(0));
        assert_eq!(caps.ambient().as_ref().map(|c| c.len()), Some(0));
        capability_names(effective)
    }

    fn mount_destinations(spec: &Spec) -> Vec<String> {
        spec.mounts()
            .as_ref()
            .expect("mounts")
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect()
    }

    #[test]
    fn process_basics() {
        let mut config = config();
        config.env = vec![("A".into(), "1".into())];
        config.working_dir = Some("/work".into());
        config.user = UserIds {
            uid: 1000,
            gid: 2000,
            additional_gids: vec![3000],
        };
        config.no_new_privileges = true;
        config.oom_score_adj = Some(500);
        let spec = spec(&config);
        let p = process(&spec);
        assert_eq!(p.args().as_ref(), Some(&config.args));
        assert_eq!(
            p.env().as_ref().expect("env"),
            &vec![format!("PATH={DEFAULT_PATH}"), "A=1".to_string()]
        );
        assert_eq!(p.cwd(), Path::new("/work"));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().gid(), 2000);
        assert_eq!(p.user().additional_gids().as_ref(), Some(&vec![3000]));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.oom_score_adj(), Some(500));
        assert_eq!(p.terminal(), Some(false));
        assert!(spec.version().starts_with("1."));
        let root = spec.root().as_ref().expect("root");
        assert_eq!(root.path(), &config.rootfs);
        assert_eq!(root.readonly(), Some(false));
    }

    #[test]
    fn image_path_wins_and_escalation_is_allowed_by_default() {
        let mut config = config();
        config.env = vec![("PATH".into(), "/opt/bin".into())];
        let spec = spec(&config);
        assert_eq!(
            process(&spec).env().as_ref().expect("env"),
            &vec!["PATH=/opt/bin".to_string()]
        );
        assert_eq!(process(&spec).no_new_privileges(), Some(false));
    }

    #[test]
    fn readonly_rootfs() {
        let mut config = config();
        config.readonly_rootfs = true;
        assert_eq!(
            spec(&config).root().as_ref().and_then(|r| r.readonly()),
            Some(true)
        );
    }

    #[test]
    fn default_capabilities_are_dockers() {
        let mut expected: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect();
        expected.sort();
        assert_eq!(caps(&spec(&config())), expected);
    }

    #[test]
    fn capabilities_drop_then_add() {
        let mut config = config();
        config.capabilities = CapabilityChanges {
            add: vec!["NET_ADMIN".into(), "cap_sys_time".into()],
            drop: vec!["CAP_MKNOD".into(), "NET_RAW".into()],
        };
        let caps = caps(&spec(&config));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_SYS_TIME".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn drop_all_keeps_only_the_added() {
        let mut config = config();
        config.capabilities = CapabilityChanges {
            add: vec!["NET_BIND_SERVICE".into()],
            drop: vec!["ALL".into()],
        };
        assert_eq!(
            caps(&spec(&config)),
            vec!["CAP_NET_BIND_SERVICE".to_string()]
        );
    }

    #[test]
    fn add_all_and_privileged_give_every_capability() {
        let mut config = config();
        config.capabilities.add = vec!["all".into()];
        assert_eq!(caps(&spec(&config)).len(), ALL_CAPABILITIES.len());
        let mut config = self::config();
        config.privileged = true;
        config.capabilities.drop = vec!["ALL".into()];
        assert_eq!(caps(&spec(&config)).len(), ALL_CAPABILITIES.len());
    }

    #[test]
    fn unknown_capabilities_are_errors_naming_the_container() {
        let mut config = config();
        config.capabilities.add = vec!["FLY".into()];
        let err = build_spec(&config, &host(CgroupVersion::V1)).expect_err("unknown");
        assert_eq!(err.to_string(), "container c1: unknown capability \"FLY\"");
    }

    #[test]
    fn rlimits_come_from_the_host() {
        let spec = spec(&config());
        let rlimits = process(&spec).rlimits().as_ref().expect("rlimits");
        let nofile = rlimits
            .iter()
            .find(|r| r.typ() == PosixRlimitType::RlimitNofile)
            .expect("nofile");
        assert_eq!((nofile.soft(), nofile.hard()), (20_000, 20_000));
        let nproc = rlimits
            .iter()
            .find(|r| r.typ() == PosixRlimitType::RlimitNproc)
            .expect("nproc");
        assert_eq!((nproc.soft(), nproc.hard()), (96_365, 96_365));
        assert!(rlimits.iter().all(|r| r.hard() != 1_048_576));
    }

    #[test]
    fn configured_open_files_never_exceed_the_host() {
        let mut config = config();
        config.limits.open_files = Some(1_048_576);
        let spec1 = spec(&config);
        let nofile = process(&spec1).rlimits().as_ref().expect("rlimits")[0];
        assert_eq!(nofile.hard(), 20_000);
        config.limits.open_files = Some(4096);
        let spec2 = spec(&config);
        let nofile = process(&spec2).rlimits().as_ref().expect("rlimits")[0];
        assert_eq!((nofile.soft(), nofile.hard()), (4096, 4096));
    }

    #[test]
    fn standard_mounts_then_binds() {
        let mut config = config();
        config.mounts = vec![
            BindMount {
                source: "/var/lib/skiff/pods/p/hosts".into(),
                destination: "/etc/hosts".into(),
                read_only: false,
            },
            BindMount {
                source: "/var/lib/skiff/pods/p/volumes/data".into(),
                destination: "/data".into(),
                read_only: true,
            },
        ];
        let spec = spec(&config);
        assert_eq!(
            mount_destinations(&spec),
            vec![
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/etc/hosts",
                "/data"
            ]
        );
        let mounts = spec.mounts().as_ref().expect("mounts");
        let data = &mounts[8];
        assert_eq!(data.typ().as_deref(), Some("bind"));
        assert_eq!(
            data.source().as_deref(),
            Some(Path::new("/var/lib/skiff/pods/p/volumes/data"))
        );
        assert!(data
            .options()
            .as_ref()
            .expect("options")
            .contains(&"ro".to_string()));
        assert!(mounts[7]
            .options()
            .as_ref()
            .expect("options")
            .contains(&"rw".to_string()));
        let sys = &mounts[5];
        assert!(sys
            .options()
            .as_ref()
            .expect("options")
            .contains(&"ro".to_string()));
        assert_eq!(mounts[3].typ().as_deref(), Some("tmpfs"));
    }

    #[test]
    fn sandbox_shm_is_bound_and_binds_override_standard_mounts() {
        let mut config = config();
        config.shm = Some("/run/skiff/pods/p/shm".into());
        let spec1 = spec(&config);
        let shm = &spec1.mounts().as_ref().expect("mounts")[3];
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            shm.source().as_deref(),
            Some(Path::new("/run/skiff/pods/p/shm"))
        );
        config.shm = None;
        config.mounts = vec![BindMount {
            source: "/x".into(),
            destination: "/dev/mqueue".into(),
            read_only: true,
        }];
        let destinations = mount_destinations(&spec(&config));
        assert_eq!(
            destinations.iter().filter(|d| *d == "/dev/mqueue").count(),
            1
        );
        assert_eq!(destinations.last().map(String::as_str), Some("/dev/mqueue"));
    }

    #[test]
    fn masked_and_readonly_paths_unless_privileged() {
        let spec1 = spec(&config());
        assert_eq!(
            linux(&spec1).masked_paths().as_ref().map(|p| p.len()),
            Some(MASKED_PATHS.len())
        );
        assert!(linux(&spec1)
            .readonly_paths()
            .as_ref()
            .expect("readonly")
            .contains(&"/proc/sys".to_string()));
        let mut config = config();
        config.privileged = true;
        let spec2 = spec(&config);
        assert_eq!(
            linux(&spec2).masked_paths().as_ref().map(|p| p.len()),
            Some(0)
        );
        assert_eq!(
            linux(&spec2).readonly_paths().as_ref().map(|p| p.len()),
            Some(0)
        );
        let sys = &spec2.mounts().as_ref().expect("mounts")[5];
        assert!(sys
            .options()
            .as_ref()
            .expect("options")
            .contains(&"rw".to_string()));
        let devices = linux(&spec2)
            .resources()
            .as_ref()
            .expect("resources")
            .devices();
        assert_eq!(devices.as_ref().map(|d| d[0].allow()), Some(true));
    }

    #[test]
    fn namespaces_join_the_sandbox() {
        let mut config = config();
        config.hostname = Some("web-0".into());
        config.namespaces = SandboxNamespaces {
            network: Some("/run/skiff/netns/p".into()),
            ipc: Some("/proc/42/ns/ipc".into()),
            uts: Some("/proc/42/ns/uts".into()),
            ..SandboxNamespaces::default()
        };
        let spec = spec(&config);
        let namespaces = linux(&spec).namespaces().as_ref().expect("namespaces");
        let path = |typ: Ns| {
            namespaces
                .iter()
                .find(|n| n.typ() == typ)
                .map(|n| n.path().clone())
        };
        assert_eq!(path(Ns::Pid), Some(None));
        assert_eq!(path(Ns::Mount), Some(None));
        assert_eq!(path(Ns::Network), Some(Some("/run/skiff/netns/p".into())));
        assert_eq!(path(Ns::Ipc), Some(Some("/proc/42/ns/ipc".into())));
        assert_eq!(path(Ns::Uts), Some(Some("/proc/42/ns/uts".into())));
        assert_eq!(path(Ns::Cgroup), None, "no cgroup namespace on v1");
        assert_eq!(path(Ns::User), None);
        assert_eq!(spec.hostname(), &None, "the sandbox owns the hostname");
    }

    #[test]
    fn own_namespaces_get_the_hostname_and_v2_a_cgroup_namespace() {
        let mut config = config();
        config.hostname = Some("web-0".into());
        let spec = build_spec(&config, &host(CgroupVersion::V2)).expect("spec");
        assert_eq!(spec.hostname().as_deref(), Some("web-0"));
        let namespaces = linux(&spec).namespaces().as_ref().expect("namespaces");
        assert!(namespaces.iter().all(|n| n.path().is_none()));
        assert!(namespaces.iter().any(|n| n.typ() == Ns::Cgroup));
        assert_eq!(namespaces.len(), 6);
    }

    #[test]
    fn limits_become_cgroup_resources() {
        let mut config = config();
        config.limits = Limits {
            cpu_quota_millis: Some(500),
            cpu_request_millis: Some(250),
            memory_bytes: Some(32 << 20),
            pids: Some(100),
            open_files: None,
        };
        let spec = spec(&config);
        let linux = linux(&spec);
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/skiff/pod1/c1"))
        );
        let resources = linux.resources().as_ref().expect("resources");
        let cpu = resources.cpu().as_ref().expect("cpu");
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.shares(), Some(256));
        let memory = resources.memory().as_ref().expect("memory");
        assert_eq!(memory.limit(), Some(32 << 20));
        assert_eq!(memory.swap(), None, "no swap on this host");
        assert_eq!(resources.pids().as_ref().map(|p| p.limit()), Some(100));
        let devices = resources.devices().as_ref().expect("devices");
        assert_eq!(devices.len(), 1);
        assert!(
            !devices[0].allow(),
            "deny all; libcontainer allows the defaults"
        );
    }

    #[test]
    fn no_limits_leave_resources_empty_and_swap_follows_memory() {
        let spec1 = spec(&config());
        let resources = linux(&spec1).resources().as_ref().expect("resources");
        assert!(resources.cpu().is_none());
        assert!(resources.memory().is_none());
        assert!(resources.pids().is_none());
        let mut config = config();
        config.limits.memory_bytes = Some(1 << 30);
        let mut swapping = host(CgroupVersion::V2);
        swapping.swap_limits = true;
        let spec2 = build_spec(&config, &swapping).expect("spec");
        let memory = linux(&spec2)
            .resources()
            .as_ref()
            .and_then(|r| *r.memory())
            .expect("memory");
        assert_eq!(memory.swap(), Some(1 << 30));
    }

    #[test]
    fn cpu_conversions_match_kubernetes() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(100), 102);
        assert_eq!(cpu_shares(10_000_000), 262_144);
        assert_eq!(cpu_quota_us(1000), 100_000);
        assert_eq!(cpu_quota_us(1), 1_000);
        assert_eq!(cpu_quota_us(2500), 250_000);
    }

    #[test]
    fn paths_must_be_absolute() {
        let mut config = config();
        config.mounts = vec![BindMount {
            source: "relative".into(),
            destination: "/x".into(),
            read_only: false,
        }];
        let err = build_spec(&config, &host(CgroupVersion::V1)).expect_err("relative");
        assert!(err.to_string().contains("mount source"), "{err}");
        let mut config = self::config();
        config.cgroup_path = "/skiff/../etc".into();
        assert!(build_spec(&config, &host(CgroupVersion::V1)).is_err());
        let mut config = self::config();
        config.args.clear();
        assert!(matches!(
            build_spec(&config, &host(CgroupVersion::V1)),
            Err(SpecError::NoArgs { .. })
        ));
    }

    #[test]
    fn annotations_and_json_round_trip() {
        let mut config = config();
        config.annotations = BTreeMap::from([("skiff.dev/pod-uid".to_string(), "u1".to_string())]);
        let spec = spec(&config);
        let json = serde_json::to_string(&spec).expect("json");
        let back: Spec = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, spec);
        assert_eq!(
            back.annotations()
                .as_ref()
                .and_then(|a| a.get("skiff.dev/pod-uid")),
            Some(&"u1".to_string())
        );
        assert!(json.contains("\"cgroupsPath\":\"/skiff/pod1/c1\""));
    }
}
