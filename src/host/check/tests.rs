//! Each probe against a faked /proc, /sys, /boot and /lib/modules tree.

use super::*;

/// A faked machine: files written under a temp dir used as the root.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, absolute: &str, text: &str) -> &Fake {
        let path = self.dir.path().join(absolute.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn executable(&self, absolute: &str) -> &Fake {
        use std::os::unix::fs::PermissionsExt;
        self.file(absolute, "#!/bin/sh\n");
        let path = self.dir.path().join(absolute.trim_start_matches('/'));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    fn config_gz(&self, text: &str) -> &Fake {
        let path = self.dir.path().join("proc/config.gz");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::default(),
        );
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap();
        self
    }

    fn machine(&self) -> Machine {
        Machine::new(self.dir.path())
    }
}

fn find<'a>(findings: &'a [Finding], item: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.item == item)
        .unwrap_or_else(|| panic!("no {item} in {findings:#?}"))
}

const HYBRID_MOUNTINFO: &str = "\
24 1 0:22 / / rw,relatime - ext4 /dev/vda rw
30 24 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
40 24 0:40 / /var/lib/skiff\\040data rw,relatime - tmpfs tmpfs rw
";

const PROC_CGROUPS: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t10\t1
cpuacct\t2\t1\t1
blkio\t7\t1\t1
memory\t4\t60\t1
devices\t5\t40\t1
freezer\t6\t1\t1
pids\t8\t40\t1
";

#[test]
fn a_raspberry_pi_on_cgroup_v2_without_memory_gets_the_cmdline_fix() {
    let fake = Fake::new();
    fake.file(
        "/proc/self/mountinfo",
        "24 1 179:2 / / rw - ext4 /dev/mmcblk0p2 rw\n30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
    )
    .file("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n")
    .config_gz("CONFIG_MEMCG=y\nCONFIG_CPUSETS=y\n");
    let findings = fake.machine().cgroups();
    assert_eq!(find(&findings, "cgroups").status, Status::Ok);
    assert!(find(&findings, "cgroups").detail.starts_with("v2"));
    assert_eq!(find(&findings, "cgroup cpu").status, Status::Ok);
    let memory = find(&findings, "cgroup memory");
    assert_eq!(memory.status, Status::Missing);
    let fix = memory.fix.as_deref().unwrap();
    assert!(
        fix.contains("cgroup_memory=1 cgroup_enable=memory"),
        "{fix}"
    );
    assert!(fix.contains("/boot/firmware/cmdline.txt"), "{fix}");
    assert_eq!(find(&findings, "cgroup hugetlb").status, Status::Warn);
}

#[test]
fn a_hybrid_host_is_reported_hybrid_and_checked_by_its_v1_controllers() {
    let fake = Fake::new();
    fake.file("/proc/self/mountinfo", HYBRID_MOUNTINFO)
        .file("/proc/cgroups", PROC_CGROUPS);
    let findings = fake.machine().cgroups();
    assert!(find(&findings, "cgroups").detail.starts_with("hybrid"));
    assert!(
        findings.iter().all(|f| f.status != Status::Missing),
        "{findings:#?}"
    );
    assert_eq!(find(&findings, "cgroup hugetlb").status, Status::Warn);

    // A controller on the v2 tree of a hybrid host is of no use to v1 containers.
    fake.file(
        "/proc/cgroups",
        &PROC_CGROUPS.replace("cpuset\t3\t1\t1", "cpuset\t0\t1\t1"),
    );
    let cpuset = find(&fake.machine().cgroups(), "cgroup cpuset").clone();
    assert_eq!(cpuset.status, Status::Missing);
    assert!(cpuset.detail.contains("v2 tree"), "{cpuset:?}");

    // Memory compiled in but switched off at boot (enabled 0), pids not in the kernel.
    let off = PROC_CGROUPS
        .replace("memory\t4\t60\t1", "memory\t0\t60\t0")
        .replace("pids\t8\t40\t1\n", "");
    fake.file("/proc/cgroups", &off)
        .config_gz("CONFIG_MEMCG=y\n# CONFIG_CGROUP_PIDS is not set\n");
    let findings = fake.machine().cgroups();
    assert_eq!(find(&findings, "cgroup memory").status, Status::Missing);
    let pids = find(&findings, "cgroup pids");
    assert_eq!(pids.status, Status::Missing);
    assert!(pids.fix.as_deref().unwrap().contains("CONFIG_CGROUP_PIDS"));
}

#[test]
fn legacy_v1_and_no_cgroups_at_all() {
    let fake = Fake::new();
    let legacy: String = HYBRID_MOUNTINFO
        .lines()
        .filter(|l| !l.contains("cgroup2"))
        .map(|l| format!("{l}\n"))
        .collect();
    fake.file("/proc/self/mountinfo", &legacy);
    assert!(find(&fake.machine().cgroups(), "cgroups")
        .detail
        .starts_with("v1"));
    fake.file(
        "/proc/self/mountinfo",
        "24 1 0:22 / / rw - ext4 /dev/vda rw\n",
    );
    assert_eq!(
        find(&fake.machine().cgroups(), "cgroups").status,
        Status::Missing
    );
}

#[test]
fn the_kernel_must_be_4_15_or_newer() {
    let fake = Fake::new();
    let status = |release: &str| {
        fake.file("/proc/sys/kernel/osrelease", release);
        fake.machine().kernel_release().status
    };
    assert_eq!(status("4.14.336\n"), Status::Missing);
    assert_eq!(status("4.15.0-213-generic\n"), Status::Ok);
    assert_eq!(status("6.1.0-rpi7-rpi-v8\n"), Status::Ok);
    assert_eq!(status("garbage\n"), Status::Warn);
    assert_eq!(parse_version("5.10.0-28-arm64"), Some((5, 10)));
}

#[test]
fn kernel_features_come_from_the_config_else_the_module_lists() {
    let fake = Fake::new();
    fake.file("/proc/sys/kernel/osrelease", "6.1.0\n");
    // No configuration, no module lists: cannot tell, a warning.
    let vxlan = |fake: &Fake| {
        fake.machine()
            .network_features()
            .into_iter()
            .find(|f| f.item == "vxlan")
            .unwrap()
    };
    assert_eq!(vxlan(&fake).status, Status::Warn);
    assert!(vxlan(&fake).detail.contains("could not tell"));
    // Module lists: vxlan loadable.
    fake.file(
        "/lib/modules/6.1.0/modules.dep",
        "kernel/drivers/net/vxlan/vxlan.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz\n",
    )
    .file(
        "/lib/modules/6.1.0/modules.builtin",
        "kernel/net/bridge/bridge.ko\n",
    );
    assert_eq!(vxlan(&fake).status, Status::Ok);
    assert!(vxlan(&fake).detail.starts_with("module"));
    // /boot/config-<release> wins over module lists; vxlan is optional: a warning.
    fake.file(
        "/boot/config-6.1.0",
        "# CONFIG_VXLAN is not set\nCONFIG_BRIDGE=m\nCONFIG_VETH=m\n",
    );
    assert_eq!(vxlan(&fake).status, Status::Warn);
    let features = fake.machine().network_features();
    assert_eq!(find(&features, "bridge").status, Status::Ok);
    let nft = find(&features, "nf_tables");
    assert_eq!(nft.status, Status::Missing);
    assert!(nft.detail.contains("CONFIG_NF_TABLES"), "{}", nft.detail);
    // /proc/config.gz wins over /boot.
    fake.config_gz("CONFIG_VXLAN=y\n");
    assert_eq!(vxlan(&fake).status, Status::Ok);
}

#[test]
fn overlayfs_from_proc_filesystems_or_the_config() {
    let fake = Fake::new();
    fake.file("/proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n");
    assert_eq!(fake.machine().overlayfs().status, Status::Ok);
    fake.file("/proc/filesystems", "nodev\tsysfs\n")
        .config_gz("CONFIG_OVERLAY_FS=m\n");
    assert_eq!(fake.machine().overlayfs().status, Status::Ok);
    fake.config_gz("# CONFIG_OVERLAY_FS is not set\n");
    assert_eq!(fake.machine().overlayfs().status, Status::Missing);
}

#[test]
fn namespaces_pid_is_required_cgroup_and_user_optional() {
    let fake = Fake::new();
    for ns in ["ipc", "mnt", "net", "uts"] {
        fake.file(&format!("/proc/self/ns/{ns}"), "");
    }
    let missing = fake.machine().namespaces();
    assert_eq!(missing.status, Status::Missing);
    assert!(missing.detail.contains("pid"), "{}", missing.detail);
    fake.file("/proc/self/ns/pid", "");
    assert_eq!(fake.machine().namespaces().status, Status::Warn);
    fake.file("/proc/self/ns/cgroup", "")
        .file("/proc/self/ns/user", "");
    assert_eq!(fake.machine().namespaces().status, Status::Ok);
}

#[test]
fn ip_forward_off_is_a_warning() {
    let fake = Fake::new();
    fake.file("/proc/sys/net/ipv4/ip_forward", "0\n");
    assert_eq!(fake.machine().ip_forward().status, Status::Warn);
    fake.file("/proc/sys/net/ipv4/ip_forward", "1\n");
    assert_eq!(fake.machine().ip_forward().status, Status::Ok);
}

#[test]
fn programs_are_looked_up_in_the_path_and_the_sbin_directories() {
    let fake = Fake::new();
    fake.executable("/sbin/ip")
        .file("/usr/bin/nft", "not executable");
    let findings = fake.machine().programs("/usr/bin:/bin");
    assert_eq!(find(&findings, "program ip").status, Status::Ok);
    let nft = find(&findings, "program nft");
    assert_eq!(nft.status, Status::Missing);
    assert!(nft.fix.as_deref().unwrap().contains("nftables"));
    assert_eq!(find(&findings, "program conntrack").status, Status::Warn);
}

#[test]
fn a_port_in_use_names_its_listener() {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let machine = Machine::new(Path::new("/"));
    let taken = machine.port(port, "--kubelet-port");
    assert_eq!(taken.status, Status::Missing, "{taken:?}");
    assert!(taken.fix.as_deref().unwrap().contains("--kubelet-port"));
    if nix::unistd::geteuid().is_root() || taken.detail.contains("pid") {
        let pid = std::process::id();
        assert!(taken.detail.contains(&format!("pid {pid}")), "{taken:?}");
    }
    drop(listener);
    assert_eq!(machine.port(port, "--kubelet-port").status, Status::Ok);
}

#[test]
fn the_data_dir_file_system_comes_from_mountinfo() {
    let fake = Fake::new();
    fake.file("/proc/self/mountinfo", HYBRID_MOUNTINFO);
    let machine = fake.machine();
    let shown = "x";
    let on_tmpfs = machine.data_filesystem(Path::new("/var/lib/skiff data/sub"), shown);
    assert_eq!(on_tmpfs.status, Status::Warn, "{on_tmpfs:?}");
    assert!(on_tmpfs.detail.contains("tmpfs"));
    let on_ext4 = machine.data_filesystem(Path::new("/var/lib/other"), shown);
    assert_eq!(on_ext4.status, Status::Ok, "{on_ext4:?}");
    assert!(on_ext4.detail.ends_with("ext4"));
}

#[test]
fn the_data_dir_is_measured_where_it_would_be_made() {
    let dir = tempfile::tempdir().unwrap();
    let findings = Machine::new(Path::new("/")).data_dir(&dir.path().join("not/yet"));
    assert!(find(&findings, "data dir").detail.contains("not made yet"));
    let latency = find(&findings, "disk latency");
    assert!(
        latency.detail.contains("ms per synchronous write"),
        "{latency:?}"
    );
    assert_ne!(latency.status, Status::Missing);
    assert!(measure_fsync(dir.path(), 3).is_ok());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the test file is removed"
    );
}

#[test]
fn time_sync_by_timesyncd_or_a_running_ntp_daemon() {
    let fake = Fake::new();
    fake.file("/proc/1/comm", "init\n");
    assert_eq!(fake.machine().time_sync().status, Status::Warn);
    fake.file("/proc/812/comm", "chronyd\n");
    assert_eq!(fake.machine().time_sync().status, Status::Ok);
    let fake = Fake::new();
    fake.file("/run/systemd/timesync/synchronized", "");
    assert_eq!(fake.machine().time_sync().status, Status::Ok);
}

#[test]
fn findings_serialize_with_lowercase_status_and_no_empty_fix() {
    let finding = Finding::new("kernel", Status::Missing, "old").fix("upgrade");
    let json = serde_json::to_value(&finding).unwrap();
    assert_eq!(json["status"], "missing");
    let ok = serde_json::to_value(Finding::ok("x", "y")).unwrap();
    assert!(ok.get("fix").is_none());
}

#[test]
fn br_netfilter_loaded_available_or_absent() {
    let fake = Fake::new();
    fake.config_gz("CONFIG_BRIDGE_NETFILTER=m\n");
    let available = fake.machine().bridge_netfilter();
    assert_eq!(available.status, Status::Warn);
    assert!(available
        .fix
        .as_deref()
        .unwrap()
        .contains("modprobe br_netfilter"));
    fake.file("/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n");
    assert_eq!(fake.machine().bridge_netfilter().status, Status::Ok);
    let fake = Fake::new();
    fake.config_gz("# CONFIG_BRIDGE_NETFILTER is not set\n");
    assert_eq!(fake.machine().bridge_netfilter().status, Status::Missing);
}
