//! `skiff check`: the real binary on this machine (every required item present: exit
//! 0, and the cgroup layout the mount table shows), with a port taken (named, exit
//! non-zero) or held by a running skiff (a warning naming it), and against a faked Raspberry Pi tree on cgroup v2 without the memory
//! controller (`--root`, `SKIFF_CHECK_ROOT`): the cmdline fix is printed and it exits
//! non-zero.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// `skiff check` with `data` as data dir, `extra`, and free ports unless `extra` names
/// them.
fn check(data: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
    command
        .arg("check")
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("SKIFF_CHECK_ROOT");
    for flag in ["--https-listen-port", "--kubelet-port"] {
        if !extra.contains(&flag) {
            command.args([flag, &free_port().to_string()]);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run skiff check")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `item` in the printed report.
fn line<'a>(report: &'a str, item: &str) -> &'a str {
    report
        .lines()
        .find(|l| {
            l.split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
                .starts_with(item)
        })
        .unwrap_or_else(|| panic!("no {item} line in:\n{report}"))
}

/// What the mount table says about cgroups, read here independently of skiff.
fn cgroup_layout_from_mounts() -> &'static str {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounted = |point: &str, fs: &str| {
        mountinfo.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let dash = fields.iter().position(|f| *f == "-").unwrap();
            fields[4] == point && fields[dash + 1] == fs
        })
    };
    if mounted("/sys/fs/cgroup", "cgroup2") {
        "v2"
    } else if mounted("/sys/fs/cgroup/unified", "cgroup2") {
        "hybrid"
    } else {
        "v1"
    }
}

#[test]
fn this_machine_has_everything_required_and_its_cgroup_layout_is_named() {
    let data = tempfile::tempdir().unwrap();
    let out = check(data.path(), &[], &[]);
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(", 0 missing"), "{report}");
    let cgroups = line(&report, "cgroups");
    assert!(cgroups.starts_with("ok"), "{cgroups}");
    let layout = cgroup_layout_from_mounts();
    assert!(
        cgroups.split_whitespace().nth(2) == Some(layout),
        "expected {layout}: {cgroups}"
    );
    for item in [
        "kernel",
        "overlayfs",
        "namespaces",
        "nf_tables",
        "program ip",
        "program nft",
    ] {
        assert!(line(&report, item).starts_with("ok"), "{report}");
    }
    let latency = line(&report, "disk latency");
    assert!(latency.contains("ms per synchronous write"), "{latency}");
    assert!(line(&report, "data dir").contains(&data.path().display().to_string()));
    assert_eq!(
        std::fs::read_dir(data.path()).unwrap().count(),
        0,
        "the latency probe leaves nothing behind"
    );
}

#[test]
fn a_taken_port_is_named_with_the_flag_that_moves_it_and_fails_the_check() {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let data = tempfile::tempdir().unwrap();
    let out = check(data.path(), &["--kubelet-port", &port], &[]);
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    let taken = line(&report, &format!("port {port}"));
    assert!(
        taken.starts_with("missing") && taken.contains("in use by"),
        "{taken}"
    );
    assert!(
        report.contains("choose another port with --kubelet-port"),
        "{report}"
    );
}

/// A Raspberry Pi OS machine on cgroup v2 whose kernel command line lacks
/// `cgroup_enable=memory`: everything else present.
fn fake_pi(root: &Path) {
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let release = "6.6.31+rpt-rpi-v8";
    write("proc/sys/kernel/osrelease", &format!("{release}\n"));
    write(
        "proc/self/mountinfo",
        "22 1 179:2 / / rw,noatime - ext4 /dev/mmcblk0p2 rw\n\
         28 22 0:24 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
    );
    write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n");
    write(
        "proc/filesystems",
        "nodev\tsysfs\nnodev\tcgroup2\nnodev\toverlay\n",
    );
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"] {
        write(&format!("proc/self/ns/{ns}"), "");
    }
    write(
        &format!("boot/config-{release}"),
        "CONFIG_MEMCG=y\nCONFIG_NF_TABLES=m\nCONFIG_NF_TABLES_INET=y\nCONFIG_NF_CONNTRACK=m\n\
         CONFIG_NF_NAT=m\nCONFIG_NFT_NAT=m\nCONFIG_NFT_CT=m\nCONFIG_NFT_MASQ=m\nCONFIG_NFT_REJECT=m\n\
         CONFIG_NFT_FIB_INET=m\nCONFIG_NFT_NUMGEN=m\nCONFIG_BRIDGE=m\nCONFIG_VETH=m\nCONFIG_VXLAN=m\n\
         CONFIG_OVERLAY_FS=m\nCONFIG_BRIDGE_NETFILTER=m\n",
    );
    write("proc/sys/net/ipv4/ip_forward", "0\n");
    write(
        "boot/firmware/cmdline.txt",
        "console=serial0,115200 root=PARTUUID=1 rootwait\n",
    );
    for program in ["ip", "nft", "conntrack"] {
        use std::os::unix::fs::PermissionsExt;
        write(&format!("usr/sbin/{program}"), "#!/bin/sh\n");
        std::fs::set_permissions(
            root.join("usr/sbin").join(program),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    write("run/systemd/timesync/synchronized", "");
}

#[test]
fn a_pi_without_the_memory_controller_is_told_the_cmdline_fix_and_fails() {
    let root = tempfile::tempdir().unwrap();
    fake_pi(root.path());
    let data = tempfile::tempdir().unwrap();
    let out = check(
        data.path(),
        &["--root", &root.path().display().to_string()],
        &[],
    );
    let report = stdout(&out);
    assert!(!out.status.success(), "{report}");
    assert!(line(&report, "cgroups").contains("v2"), "{report}");
    let memory = line(&report, "cgroup memory");
    assert!(memory.starts_with("missing"), "{memory}");
    assert!(
        report.contains("fix: add `cgroup_memory=1 cgroup_enable=memory` to /boot/firmware/cmdline.txt (or /boot/cmdline.txt"),
        "{report}"
    );
    assert!(line(&report, "cgroup cpu").starts_with("ok"), "{report}");
    assert!(line(&report, "nf_tables").starts_with("ok"), "{report}");
    assert!(line(&report, "ip_forward").starts_with("warn"), "{report}");
    assert!(line(&report, "time sync").starts_with("ok"), "{report}");
    assert!(
        report.contains(", 1 missing"),
        "only memory is missing:\n{report}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 required item(s) missing"), "{stderr}");
}

#[test]
fn the_fake_root_comes_from_the_environment_too_and_json_says_the_same() {
    let root = tempfile::tempdir().unwrap();
    fake_pi(root.path());
    let data = tempfile::tempdir().unwrap();
    let out = check(
        data.path(),
        &["--json"],
        &[("SKIFF_CHECK_ROOT", root.path())],
    );
    assert!(!out.status.success());
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let memory = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["item"] == "cgroup memory")
        .expect("a cgroup memory finding");
    assert_eq!(memory["status"], "missing");
    assert!(memory["fix"]
        .as_str()
        .unwrap()
        .contains("cgroup_enable=memory"));
}

#[test]
fn a_port_held_by_a_running_skiff_is_reported_as_that_skiff() {
    let server = common::Server::start();
    let data = tempfile::tempdir().unwrap();
    let port = server.port.to_string();
    let out = check(data.path(), &["--https-listen-port", &port], &[]);
    let report = stdout(&out);
    let held = line(&report, &format!("port {port}"));
    assert!(
        held.starts_with("warn")
            && held.contains(&format!("in use by a running skiff (pid {})", server.pid())),
        "{report}"
    );
    assert!(
        out.status.success(),
        "a running skiff is no missing item:\n{report}"
    );
}
