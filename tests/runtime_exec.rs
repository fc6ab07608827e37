//! `skiff nsexec` against real containers: a busybox container made by the runtime
//! (with the real binary as shim), then commands run inside it through the real
//! binary as exec helper. Needs root (`#[ignore = "needs root"]`) and busybox-static's
//! `/bin/busybox`. Every container is removed when the fixture drops, pass or fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff::runtime::exec::{self, ExecStdio, ExecTarget};
use skiff::runtime::{
    ContainerConfig, ContainerHandle, HostCgroups, HostFacts, HostProcesses, LogConfig, Runtime,
    ShimCommand, UserIds,
};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 10] = [
    "sh", "sleep", "echo", "cat", "hostname", "id", "readlink", "pwd", "env", "ls",
];

fn skiff(subcommand: &str) -> ShimCommand {
    ShimCommand {
        program: env!("CARGO_BIN_EXE_skiff").into(),
        leading_args: vec![subcommand.into()],
        env: Vec::new(),
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    runtime: Runtime,
    ids: Vec<String>,
    tokio: tokio::runtime::Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            Path::new(BUSYBOX).exists(),
            "the tests need {BUSYBOX}: apt-get install busybox-static"
        );
        let dir = tempfile::Builder::new()
            .prefix("skiff-exec-e2e-")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for sub in ["bin", "proc", "dev", "sys", "tmp", "etc", "work"] {
            std::fs::create_dir_all(rootfs.join(sub)).expect("mkdir");
        }
        std::fs::write(rootfs.join("etc/marker"), "inside\n").expect("marker");
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("symlink");
        }
        let runtime = Runtime::with_parts(
            dir.path().join("containers"),
            skiff("shim"),
            HostFacts::probe().expect("host facts"),
            HostCgroups::detect().expect("cgroups"),
            HostProcesses,
        );
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        Fixture {
            dir,
            runtime,
            ids: Vec::new(),
            tokio,
        }
    }

    fn create(&mut self, name: &str) -> (ContainerConfig, ContainerHandle) {
        let id = format!("exec-{}-{name}", std::process::id());
        self.ids.push(id.clone());
        let config = ContainerConfig {
            id: id.clone(),
            rootfs: self.dir.path().join("rootfs"),
            args: vec!["/bin/sleep".into(), "1000".into()],
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("FOO".into(), "from-the-container".into()),
            ],
            hostname: Some("exec-e2e".into()),
            cgroup_path: format!("/skiff-{id}").into(),
            log: LogConfig {
                path: self.dir.path().join("logs").join(format!("{id}.log")),
                ..LogConfig::default()
            },
            ..ContainerConfig::default()
        };
        let handle = self
            .tokio
            .block_on(self.runtime.create(&config))
            .expect("create");
        (config, handle)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            if let Err(e) = self.runtime.remove_blocking(&id) {
                eprintln!("cleanup of {id} failed: {e}");
            }
        }
    }
}

fn target(config: &ContainerConfig, handle: &ContainerHandle) -> ExecTarget {
    ExecTarget {
        container_id: config.id.clone(),
        pid: handle.pid,
        env: config.env.clone(),
        user: UserIds::default(),
        working_dir: None,
        cgroup_path: handle.cgroup_path.clone(),
    }
}

/// The processes in a cgroup that are not zombies.
fn living_processes(cgroup: &Path) -> Vec<i32> {
    let root = Path::new("/sys/fs/cgroup");
    let version = if root.join("cgroup.controllers").exists() {
        skiff::runtime::CgroupVersion::V2
    } else {
        skiff::runtime::CgroupVersion::V1
    };
    let dirs = exec::cgroup_dirs(root, version, cgroup).expect("cgroup dirs");
    let procs = std::fs::read_to_string(dirs[0].join("cgroup.procs")).expect("cgroup.procs");
    procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|pid: &i32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            state.is_some_and(|s| !s.starts_with('Z'))
        })
        .collect()
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn text(output: &[u8]) -> String {
    String::from_utf8_lossy(output).into_owned()
}

/// The namespace link (`net:[4026…]`) of a process.
fn namespace(pid: i32, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("namespace link")
}

#[test]
#[ignore = "needs root"]
fn exec_enters_namespaces_cgroup_and_environment() {
    let mut f = Fixture::new();
    let (config, handle) = f.create("main");
    let target = target(&config, &handle);
    let helper = skiff("nsexec");
    let run = |f: &Fixture, target: &ExecTarget, script: &str| {
        f.tokio
            .block_on(exec::run_with(
                &helper,
                target,
                &sh(script),
                Duration::from_secs(20),
            ))
            .expect("exec")
    };

    let out = run(
        &f,
        &target,
        "echo $FOO; hostname; cat /etc/marker; pwd; echo $$; exit 3",
    );
    assert_eq!(out.code, 3, "{}", text(&out.output));
    let lines: Vec<String> = text(&out.output).lines().map(str::to_string).collect();
    assert_eq!(
        lines[..4],
        ["from-the-container", "exec-e2e", "inside", "/"]
    );
    let pid_inside: i32 = lines[4].parse().expect("a pid");
    assert!(
        pid_inside > 1,
        "a new process of the container's pid namespace"
    );

    let script = "for ns in net pid mnt; do readlink /proc/self/ns/$ns; done; \
        cat /proc/self/cgroup; env";
    let out = run(&f, &target, script);
    assert_eq!(out.code, 0, "{}", text(&out.output));
    let output = text(&out.output);
    for kind in ["net", "pid", "mnt"] {
        let link = namespace(handle.pid, kind).display().to_string();
        assert!(output.contains(&link), "{kind} {link} not in {output}");
    }
    // The helper's process joined the container's cgroup; the command inherited it.
    let cgroup = handle.cgroup_path.display().to_string();
    let own_cgroups: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("memory") || l.starts_with("0::"))
        .collect();
    assert!(
        own_cgroups
            .iter()
            .all(|l| l.ends_with(&cgroup) || l.ends_with('/')),
        "{own_cgroups:?} vs {cgroup}"
    );
    // Nothing of the helper's own environment leaks.
    assert!(!output.contains("SKIFF_EXEC_ENV"), "{output}");

    // Never more privileged than the container: the same capability sets.
    let out = run(
        &f,
        &target,
        "grep -E '^(CapBnd|CapEff|CapPrm)' /proc/self/status",
    );
    let container = std::fs::read_to_string(format!("/proc/{}/status", handle.pid)).unwrap();
    for line in text(&out.output).lines() {
        assert!(
            container.lines().any(|l| l == line),
            "{line} differs from the container's"
        );
    }
    assert_eq!(
        text(&out.output).lines().count(),
        3,
        "{}",
        text(&out.output)
    );

    let mut user = target.clone();
    user.user = UserIds {
        uid: 1000,
        gid: 1001,
        additional_gids: vec![2000],
    };
    user.working_dir = Some("/work".into());
    let out = run(&f, &user, "id -u; id -G; pwd");
    assert_eq!(text(&out.output), "1000\n1001 2000\n/work\n");

    let missing = f
        .tokio
        .block_on(exec::run_with(
            &helper,
            &target,
            &["no-such-tool".to_string()],
            Duration::from_secs(20),
        ))
        .expect("exec");
    assert_eq!(missing.code, exec::EXIT_NOT_FOUND);
    assert!(
        text(&missing.output).contains("executable file not found in $PATH"),
        "{}",
        text(&missing.output)
    );
}

#[test]
#[ignore = "needs root"]
fn exec_timeouts_kill_the_command_and_gone_containers_fail() {
    let mut f = Fixture::new();
    let (config, handle) = f.create("timeout");
    let target = target(&config, &handle);
    let helper = skiff("nsexec");
    let err = f
        .tokio
        .block_on(exec::run_with(
            &helper,
            &target,
            &sh("echo $$ > /tmp/pid; sleep 100"),
            Duration::from_millis(1500),
        ))
        .expect_err("timeout");
    assert!(matches!(err, exec::ExecError::Timeout { .. }), "{err}");
    // The shell and its sleep were killed (they stay zombies: the container's PID 1,
    // busybox sleep, does not reap the orphans it inherits).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut living = living_processes(&handle.cgroup_path);
    while living != vec![handle.pid] && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        living = living_processes(&handle.cgroup_path);
    }
    assert_eq!(
        living,
        vec![handle.pid],
        "only the container's own process lives"
    );

    let mut gone = target.clone();
    gone.pid = i32::MAX - 1;
    let out = f
        .tokio
        .block_on(exec::run_with(
            &helper,
            &gone,
            &sh("true"),
            Duration::from_secs(20),
        ))
        .expect("exec");
    assert_eq!(out.code, exec::EXIT_SETUP_FAILED, "{}", text(&out.output));
}

#[test]
#[ignore = "needs root"]
fn interactive_exec_with_a_terminal() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut f = Fixture::new();
    let (config, handle) = f.create("tty");
    let target = target(&config, &handle);
    let stdio = ExecStdio {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    f.tokio.block_on(async {
        let mut process =
            exec::spawn(&skiff("nsexec"), &target, &sh("exec sh"), stdio).expect("spawn");
        let mut pty = process.pty.take().expect("a terminal");
        pty.resize(120, 40).expect("resize");
        pty.write_all(b"hostname; readlink /proc/$$/fd/0; exit 5\n")
            .await
            .expect("write");
        let mut output = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), pty.read_to_end(&mut output))
            .await
            .expect("in time")
            .expect("read");
        let status = process.child.wait().await.expect("wait");
        assert_eq!(exec::exit_code(status), 5, "{}", text(&output));
        assert!(text(&output).contains("exec-e2e"), "{}", text(&output));
    });
}
