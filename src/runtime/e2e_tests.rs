//! End-to-end tests with real containers. They need root (`#[ignore = "needs root"]`;
//! run with `--include-ignored`) and
//! busybox-static's `/bin/busybox`, from which each test builds a tiny rootfs.
//!
//! The test binary doubles as the shim and as a stand-in agent: `shim_entry` and
//! `agent_entry` are tests that do nothing in a normal run, and run `shim_main` (or
//! create a container and wait to be killed) when the binary is re-executed with
//! their marker variable set and `--exact <their name>`.
//!
//! Every test removes its containers (processes, cgroups, directories) when its
//! fixture drops, pass or fail.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::Signal;

use super::cgroups::shares_to_weight;
use super::*;

const SHIM_MARK: &str = "SKIFF_RUNTIME_E2E_SHIM";
const AGENT_MARK: &str = "SKIFF_RUNTIME_E2E_AGENT";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 16] = [
    "sh", "sleep", "echo", "cat", "head", "tr", "true", "id", "hostname", "ls", "touch", "grep",
    "readlink", "mkdir", "wc", "dd",
];
const WAIT: Duration = Duration::from_secs(20);

/// The libtest arguments that run exactly one of this module's tests.
fn libtest_args(entry: &str) -> Vec<OsString> {
    let module = module_path!();
    let path = module.split_once("::").map_or(module, |(_, rest)| rest);
    vec![
        format!("{path}::{entry}").into(),
        "--exact".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}

fn test_binary() -> PathBuf {
    std::env::current_exe().expect("current exe")
}

fn shim_command() -> ShimCommand {
    let mut leading_args = libtest_args("shim_entry");
    leading_args.push("--".into());
    ShimCommand {
        program: test_binary(),
        leading_args,
        env: vec![(SHIM_MARK.into(), "1".into())],
    }
}

#[derive(Parser)]
struct ShimCli {
    #[command(flatten)]
    shim: ShimArgs,
}

/// The shim, when the runtime under test starts one.
#[test]
fn shim_entry() {
    if std::env::var_os(SHIM_MARK).is_none() {
        return;
    }
    let argv: Vec<String> = std::env::args().collect();
    let start = argv
        .iter()
        .position(|a| a == "--")
        .map_or(argv.len(), |i| i + 1);
    let argv = std::iter::once("shim".to_string()).chain(argv[start..].iter().cloned());
    // libtest has printed "test … " without a newline: the report needs its own line.
    println!();
    match ShimCli::try_parse_from(argv) {
        Ok(cli) => std::process::exit(shim_main(cli.shim)),
        Err(e) => {
            println!("error {e}");
            std::process::exit(2)
        }
    }
}

/// A stand-in agent: creates one container, says so, and waits to be killed.
#[test]
fn agent_entry() {
    let Some(task) = std::env::var(AGENT_MARK).ok() else {
        return;
    };
    let Some((dir, id)) = task.split_once('|') else {
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    let runtime = runtime_in(&dir);
    let config = container_config(&dir, id, "sleep 1000");
    let tokio = current_thread();
    println!();
    match tokio.block_on(runtime.create(&config)) {
        Ok(handle) => println!("created {}", handle.pid),
        Err(e) => println!("failed {e}"),
    }
    std::thread::sleep(Duration::from_secs(600));
    std::process::exit(0);
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
}

fn runtime_in(dir: &Path) -> Runtime {
    Runtime::with_parts(
        dir.join("containers"),
        shim_command(),
        HostFacts::probe().expect("host facts"),
        HostCgroups::detect().expect("cgroups"),
        HostProcesses,
    )
}

fn container_config(dir: &Path, id: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        id: id.to_string(),
        rootfs: dir.join("rootfs"),
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        cgroup_path: format!("/skiff-{id}").into(),
        log: LogConfig {
            path: dir.join("logs").join(format!("{id}.log")),
            ..LogConfig::default()
        },
        ..ContainerConfig::default()
    }
}

/// A rootfs of busybox and its applets, plus a world-writable /scratch.
fn make_rootfs(rootfs: &Path) {
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc", "data"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("mkdir");
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
    let scratch = rootfs.join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    set_mode(&scratch, 0o777);
}

/// Whether a 64-bit little-endian ELF file names a dynamic loader (PT_INTERP), i.e.
/// would not run alone in a bare rootfs. Other files count as static.
fn has_interpreter(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        let bytes: [u8; 8] = elf.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(offset), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..usize::from(count)).any(|i| {
        let at = offset as usize + i * usize::from(size);
        u32_at(at) == Some(PT_INTERP)
    })
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// One test's runtime, rootfs and containers; removes them all when dropped.
struct Fixture {
    dir: tempfile::TempDir,
    runtime: Runtime,
    cgroups: HostCgroups,
    ids: Mutex<Vec<String>>,
    tokio: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            Path::new(BUSYBOX).exists() && !has_interpreter(Path::new(BUSYBOX)),
            "the tests need a static {BUSYBOX}: apt-get install busybox-static"
        );
        let dir = tempfile::Builder::new()
            .prefix("skiff-runtime-e2e-")
            .tempdir()
            .expect("tempdir");
        make_rootfs(&dir.path().join("rootfs"));
        Fixture {
            runtime: runtime_in(dir.path()),
            cgroups: HostCgroups::detect().expect("cgroups"),
            dir,
            ids: Mutex::new(Vec::new()),
            tokio: current_thread(),
        }
    }

    fn id(&self, name: &str) -> String {
        let id = format!("e2e-{}-{name}", std::process::id());
        self.ids.lock().expect("ids").push(id.clone());
        id
    }

    fn config(&self, name: &str, script: &str) -> ContainerConfig {
        container_config(self.dir.path(), &self.id(name), script)
    }

    fn create(&self, config: &ContainerConfig) -> ContainerHandle {
        self.tokio
            .block_on(self.runtime.create(config))
            .expect("create")
    }

    fn stop(&self, id: &str, grace: Duration) -> ContainerState {
        self.tokio
            .block_on(self.runtime.stop(id, grace))
            .expect("stop")
    }

    fn state(&self, id: &str) -> ContainerState {
        self.runtime.state(id).expect("state")
    }

    fn wait_exited(&self, id: &str) -> ContainerState {
        let deadline = Instant::now() + WAIT;
        loop {
            let state = self.state(id);
            if state.is_exited() || Instant::now() > deadline {
                return state;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, config: &ContainerConfig) -> String {
        std::fs::read_to_string(&config.log.path).unwrap_or_default()
    }

    fn wait_for_log(&self, config: &ContainerConfig, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log(config).contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in {}",
                self.log(config)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the container and checks nothing of it is left.
    fn remove_and_check(&self, config: &ContainerConfig, pids: &[i32]) {
        self.tokio
            .block_on(self.runtime.remove(&config.id))
            .expect("remove");
        assert!(!self.runtime.container_dir(&config.id).exists());
        assert!(!self.cgroups.exists(&config.cgroup_path).expect("cgroup"));
        for &pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
                "pid {pid}"
            );
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            if let Err(e) = self.runtime.remove_blocking(&id) {
                eprintln!("cleanup of {id} failed: {e}");
            }
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    HostProcesses.start_time(pid).is_none()
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `(stream, tag, text)` of each CRI line, checking the timestamps.
fn cri_entries(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let time = parts.next().expect("time");
            assert!(
                chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.len() == 30,
                "bad timestamp in {line:?}"
            );
            let stream = parts.next().expect("stream").to_string();
            let tag = parts.next().expect("tag").to_string();
            (stream, tag, parts.next().unwrap_or("").to_string())
        })
        .collect()
}

fn entry(stream: &str, text: &str) -> (String, String, String) {
    (stream.to_string(), "F".to_string(), text.to_string())
}

#[test]
fn elf_interpreters_are_detected() {
    assert!(
        has_interpreter(&test_binary()),
        "the test binary is dynamic"
    );
    if Path::new(BUSYBOX).exists() {
        let dynamic = has_interpreter(Path::new(BUSYBOX));
        eprintln!(
            "{BUSYBOX} is {}",
            if dynamic { "dynamic" } else { "static" }
        );
    }
}

#[test]
#[ignore = "needs root"]
fn exit_code_state_and_cri_logs() {
    let f = Fixture::new();
    let mut config = f.config("echo", "echo hello; echo oops >&2; exit 3");
    config.annotations = BTreeMap::from([("skiff.dev/container".into(), "echo".into())]);
    let handle = f.create(&config);
    assert!(handle.pid > 0 && handle.shim_pid > 0);
    let state = f.wait_exited(&config.id);
    let ContainerState::Exited {
        code,
        reason,
        started_at,
        finished_at,
        oom_killed,
    } = state
    else {
        panic!("not exited: {state:?}");
    };
    assert_eq!((code, reason.as_str(), oom_killed), (3, "Error", false));
    assert!(finished_at >= started_at);
    let entries = cri_entries(&f.log(&config));
    assert!(entries.contains(&entry("stdout", "hello")), "{entries:?}");
    assert!(entries.contains(&entry("stderr", "oops")), "{entries:?}");
    let listed = f.runtime.list().expect("list");
    let info = listed.iter().find(|c| c.id == config.id).expect("listed");
    assert!(info.state.is_exited());
    assert_eq!(
        info.annotations
            .get("skiff.dev/container")
            .map(String::as_str),
        Some("echo")
    );
    assert_eq!(info.log_path.as_deref(), Some(config.log.path.as_path()));
    f.remove_and_check(&config, &[handle.pid, handle.shim_pid]);
}

#[test]
#[ignore = "needs root"]
fn long_lines_are_split_and_logs_rotate() {
    let f = Fixture::new();
    let long = f.config(
        "long",
        "head -c 20000 /dev/zero | tr '\\000' x; echo; printf unterminated",
    );
    let long_handle = f.create(&long);
    assert!(f.wait_exited(&long.id).is_exited());
    let entries = cri_entries(&f.log(&long));
    let shape: Vec<(&str, &str, usize)> = entries
        .iter()
        .map(|(stream, tag, text)| (stream.as_str(), tag.as_str(), text.len()))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("stdout", "P", logs::MAX_LINE_BYTES),
            ("stdout", "F", 20_000 - logs::MAX_LINE_BYTES),
            ("stdout", "F", "unterminated".len()),
        ]
    );
    f.remove_and_check(&long, &[long_handle.pid, long_handle.shim_pid]);

    let script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done";
    let mut rotating = f.config("rotating", script);
    rotating.log.max_bytes = 4096;
    rotating.log.max_files = 3;
    let handle = f.create(&rotating);
    assert!(f.wait_exited(&rotating.id).is_exited());
    let path = &rotating.log.path;
    let sizes: Vec<u64> = [path.clone(), logs::rotated(path, 1), logs::rotated(path, 2)]
        .iter()
        .map(|p| std::fs::metadata(p).expect("log file").len())
        .collect();
    assert!(sizes.iter().all(|&s| s <= 4096), "{sizes:?}");
    assert!(!logs::rotated(path, 3).exists());
    assert!(f.log(&rotating).ends_with(" stdout F line-299\n"));
    let older = std::fs::read_to_string(logs::rotated(path, 1)).expect("rotated");
    let last_older = cri_entries(&older).pop().expect("entries").2;
    let first_newer = cri_entries(&f.log(&rotating)).remove(0).2;
    let number = |line: &str| line.trim_start_matches("line-").parse::<u32>().expect("n");
    assert_eq!(
        number(&last_older) + 1,
        number(&first_newer),
        "no line lost"
    );
    f.remove_and_check(&rotating, &[handle.pid, handle.shim_pid]);
}

#[test]
#[ignore = "needs root"]
fn running_container_limits_and_graceful_stop() {
    let f = Fixture::new();
    let script = "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let mut config = f.config("trap", script);
    config.limits = Limits {
        cpu_quota_millis: Some(500),
        cpu_request_millis: Some(250),
        memory_bytes: Some(64 << 20),
        pids: Some(100),
        open_files: None,
    };
    let handle = f.create(&config);
    let state = f.state(&config.id);
    assert!(
        matches!(state, ContainerState::Running { pid, .. } if pid == handle.pid),
        "{state:?}"
    );
    assert!(HostProcesses.start_time(handle.pid).is_some());

    let values = f.runtime.cgroup_values(&config.id).expect("cgroup values");
    assert_eq!(values.cpu_quota_us, Some(50_000));
    assert_eq!(values.cpu_period_us, Some(100_000));
    assert_eq!(values.memory_bytes, Some(64 << 20));
    assert_eq!(values.pids, Some(100));
    match f.cgroups.version() {
        CgroupVersion::V1 => {
            assert_eq!(values.cpu_shares, Some(256));
            let quota = f.cgroups.dir("cpu", &config.cgroup_path).expect("dir");
            let quota = std::fs::read_to_string(quota.join("cpu.cfs_quota_us")).expect("read");
            assert_eq!(quota.trim(), "50000");
            let memory = f.cgroups.dir("memory", &config.cgroup_path).expect("dir");
            let memory =
                std::fs::read_to_string(memory.join("memory.limit_in_bytes")).expect("read");
            assert_eq!(memory.trim(), (64u64 << 20).to_string());
        }
        CgroupVersion::V2 => {
            assert_eq!(values.cpu_weight, Some(shares_to_weight(256)));
            let dir = f.cgroups.dir("", &config.cgroup_path).expect("dir");
            let cpu_max = std::fs::read_to_string(dir.join("cpu.max")).expect("read");
            assert_eq!(cpu_max.trim(), "50000 100000");
            let memory = std::fs::read_to_string(dir.join("memory.max")).expect("read");
            assert_eq!(memory.trim(), (64u64 << 20).to_string());
        }
    }

    f.wait_for_log(&config, "ready");
    let asked = Instant::now();
    let state = f.stop(&config.id, Duration::from_secs(2));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "SIGTERM was enough"
    );
    assert!(
        matches!(&state, ContainerState::Exited { code: 0, reason, .. } if reason == "Completed"),
        "{state:?}"
    );
    assert!(f.log(&config).contains("stdout F got TERM"));
    f.remove_and_check(&config, &[handle.pid, handle.shim_pid]);
}

#[test]
#[ignore = "needs root"]
fn stop_escalates_to_sigkill() {
    let f = Fixture::new();
    let config = f.config("stubborn", "sleep 1000");
    let handle = f.create(&config);
    let asked = Instant::now();
    let state = f.stop(&config.id, Duration::from_secs(1));
    assert!(asked.elapsed() >= Duration::from_secs(1));
    assert!(
        matches!(&state, ContainerState::Exited { code: 137, reason, oom_killed: false, .. } if reason == "Error"),
        "{state:?}"
    );
    assert!(matches!(
        f.runtime.kill(&config.id, Signal::SIGTERM),
        Err(RuntimeError::NotRunning { .. })
    ));
    assert!(
        f.stop(&config.id, Duration::from_secs(1)).is_exited(),
        "stopping again is fine"
    );
    f.remove_and_check(&config, &[handle.pid, handle.shim_pid]);
}

#[test]
#[ignore = "needs root"]
fn memory_limit_oom_kills() {
    let f = Fixture::new();
    let mut config = f.config(
        "oom",
        "x=$(head -c 64000000 /dev/zero | tr '\\000' a); echo done ${#x}",
    );
    config.limits.memory_bytes = Some(32 << 20);
    let handle = f.create(&config);
    let state = f.wait_exited(&config.id);
    assert!(
        matches!(&state, ContainerState::Exited { oom_killed: true, reason, .. } if reason == "OOMKilled"),
        "{state:?}; log: {}",
        f.log(&config)
    );
    f.remove_and_check(&config, &[handle.pid, handle.shim_pid]);
}

#[test]
#[ignore = "needs root"]
fn container_survives_its_agent() {
    let f = Fixture::new();
    let id = f.id("orphan");
    let mut agent = Command::new(test_binary())
        .args(libtest_args("agent_entry"))
        .env(AGENT_MARK, format!("{}|{id}", f.dir.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent");
    let agent_pid = agent.id() as i32;
    let stdout = agent.stdout.take().expect("stdout");
    let report = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("created ") || l.starts_with("failed "))
        .unwrap_or_default();
    let pid: i32 = match report.strip_prefix("created ").map(str::parse) {
        Some(Ok(pid)) => pid,
        _ => {
            let _ = agent.kill();
            let _ = agent.wait();
            panic!("agent: {report:?}");
        }
    };
    agent.kill().expect("kill -9 the agent");
    agent.wait().expect("reap the agent");

    // The container outlives its agent: watch it for a while.
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut state = f.state(&id);
    while matches!(state, ContainerState::Running { pid: p, .. } if p == pid)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        state = f.state(&id);
    }
    assert!(
        matches!(state, ContainerState::Running { pid: p, .. } if p == pid),
        "{state:?}"
    );
    let handle = f
        .runtime
        .list()
        .expect("list")
        .into_iter()
        .find(|c| c.id == id)
        .expect("re-adopted");
    assert!(handle.state.is_running());
    let shim: ProcessId = serde_json::from_slice(
        &std::fs::read(f.runtime.state_dir(&id).join(shim::SHIM_FILE)).expect("shim.json"),
    )
    .expect("parse");
    assert!(shim.is_alive(&HostProcesses));
    assert_ne!(ppid(shim.pid), Some(agent_pid), "the shim is detached");
    let state = f.stop(&id, Duration::from_millis(200));
    assert!(
        matches!(state, ContainerState::Exited { code: 137, .. }),
        "{state:?}"
    );
    let config = container_config(f.dir.path(), &id, "");
    f.remove_and_check(&config, &[pid, shim.pid]);
}

#[test]
#[ignore = "needs root"]
fn sandbox_namespaces_mounts_user_and_rlimits() {
    let f = Fixture::new();
    let mut sandbox = f.config("sandbox", "sleep 1000");
    sandbox.hostname = Some("sandbox-e2e".into());
    let sandbox_handle = f.create(&sandbox);
    let ns = |kind: &str| {
        Some(PathBuf::from(format!(
            "/proc/{}/ns/{kind}",
            sandbox_handle.pid
        )))
    };

    let data = f.dir.path().join("volume");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("data.txt"), "hello-data\n").expect("write");
    set_mode(&data, 0o777);
    let script = "hostname; id -u; id -G; cat /data/data.txt; \
        touch /data/x 2>/dev/null && echo rw-data || echo ro-data; \
        touch /scratch/x 2>/dev/null && echo rw-root || echo ro-root; \
        echo nofile $(ulimit -n); readlink /proc/self/ns/net";
    let mut member = f.config("member", script);
    member.namespaces = SandboxNamespaces {
        network: ns("net"),
        ipc: ns("ipc"),
        uts: ns("uts"),
        ..SandboxNamespaces::default()
    };
    member.user = UserIds {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![2000],
    };
    member.readonly_rootfs = true;
    member.mounts = vec![BindMount {
        source: data,
        destination: "/data".into(),
        read_only: true,
    }];
    let handle = f.create(&member);
    let state = f.wait_exited(&member.id);
    let log = f.log(&member);
    assert!(
        matches!(state, ContainerState::Exited { code: 0, .. }),
        "{state:?}; log: {log}"
    );
    let lines: Vec<String> = cri_entries(&log)
        .into_iter()
        .map(|(_, _, text)| text)
        .collect();
    let sandbox_net =
        std::fs::read_link(format!("/proc/{}/ns/net", sandbox_handle.pid)).expect("sandbox netns");
    let nofile = f.runtime.host().open_files.hard.to_string();
    let expected = [
        "sandbox-e2e",
        "1000",
        "1000 2000",
        "hello-data",
        "ro-data",
        "ro-root",
        &format!("nofile {nofile}"),
        &sandbox_net.display().to_string(),
    ];
    assert_eq!(lines, expected, "log: {log}");
    f.remove_and_check(&member, &[handle.pid, handle.shim_pid]);
    f.remove_and_check(&sandbox, &[sandbox_handle.pid, sandbox_handle.shim_pid]);
}

#[test]
#[ignore = "needs root"]
fn create_failures_are_reported_and_cleaned_up() {
    let f = Fixture::new();
    let mut config = f.config("missing", "");
    config.args = vec!["/bin/does-not-exist".into()];
    let err = f
        .tokio
        .block_on(f.runtime.create(&config))
        .expect_err("no such executable");
    let prefix = format!("container {}: ", config.id);
    let message = err.to_string();
    assert!(message.starts_with(&prefix), "{message}");
    assert!(!message[prefix.len()..].contains(&prefix), "{message}");
    assert!(message.contains("/bin/does-not-exist"), "{message}");
    assert!(!f.runtime.container_dir(&config.id).exists());
    assert!(!f.cgroups.exists(&config.cgroup_path).expect("cgroup"));
    let existing = f.config("twice", "sleep 1000");
    let handle = f.create(&existing);
    let again = f.tokio.block_on(f.runtime.create(&existing));
    assert!(
        matches!(again, Err(RuntimeError::Exists { .. })),
        "{again:?}"
    );
    f.remove_and_check(&existing, &[handle.pid, handle.shim_pid]);
}
