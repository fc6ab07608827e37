//! Running a process inside a running container (`kubectl exec`, exec probes).
//!
//! Entering a container means `setns` into its namespaces, and `setns` into a mount
//! namespace fails in a multi-threaded process, so the agent never does it itself: it
//! runs its own binary as the hidden `skiff nsexec …` helper (single-threaded), which
//!
//! 1. joins the container's cgroup (its own pid into `cgroup.procs`: every v1
//!    controller directory that exists, or the one v2 directory);
//! 2. opens `/proc/<pid>/ns/{ipc,uts,net,pid,cgroup,mnt}` of the container's main
//!    process and `setns`es into each, the mount namespace last (which makes `/` and
//!    the working directory the container's root);
//! 3. forks, so that the child is inside the PID namespace; the child takes the
//!    user's groups, gid and uid, a new session (and the terminal, with `--tty`), the
//!    working directory and the environment, dies with the helper (parent-death
//!    signal) and `execve`s the command, looked up in the container's `PATH`;
//! 4. waits for the child and exits with its code (128 + signal if it was killed).
//!    SIGTERM, SIGINT or SIGHUP to the helper SIGKILL the command's whole process
//!    group (the command's children too); that is how `run` ends an exec that timed
//!    out. A helper killed outright takes only the command itself along.
//!
//! Exit codes of the helper itself, as runc has them: 127 when the command is not
//! found, 126 when it cannot be executed, 125 when the container cannot be entered;
//! the reason goes to stderr, which is the exec's stderr.
//!
//! The container's environment travels in the helper's own environment as
//! `SKIFF_EXEC_ENV_<n>=KEY=VALUE` (not on its command line, which every host user can
//! read); `--env` adds more. Nothing else of the helper's environment reaches the
//! command.
//!
//! Owns: the helper and the agent-side ways to start it (`run` to completion with
//! captured output, `spawn` with pipes or a pseudo-terminal).
//! May call: the kernel (`/proc`, `/sys/fs/cgroup`, `setns`, pty ioctls) and its own
//! binary re-executed as `skiff nsexec`.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::{openpty, Winsize};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Uid};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::cgroups::{detect_version, CgroupVersion, CGROUP_ROOT};
use super::{ShimCommand, UserIds};

/// The command was found but could not be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// The helper could not enter the container.
pub const EXIT_SETUP_FAILED: i32 = 125;
/// How much of an exec's output `run` keeps (like the kubelet's probe output limit).
pub const MAX_OUTPUT: usize = 10 * 1024;
/// The helper's environment variables that carry the command's environment.
pub const ENV_PREFIX: &str = "SKIFF_EXEC_ENV_";
/// `PATH` for looking up the command when the container's environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The namespaces entered, in order: the mount namespace must come last.
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];
/// How long output may still arrive after the helper exited (background processes
/// of the command may keep the pipes open for ever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

nix::ioctl_write_ptr_bad!(set_window_size, nix::libc::TIOCSWINSZ, Winsize);
nix::ioctl_write_int_bad!(set_controlling_tty, nix::libc::TIOCSCTTY);

/// Everything needed to enter a running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    pub container_id: String,
    /// The container's main process (its PID 1), whose namespaces are entered.
    pub pid: i32,
    /// The container's environment (as its config had it).
    pub env: Vec<(String, String)>,
    pub user: UserIds,
    pub working_dir: Option<PathBuf>,
    /// The container's cgroup (absolute, below the cgroup root), joined by the process.
    pub cgroup_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec in container {id}: {message}")]
    Failed { id: String, message: String },
    #[error("exec in container {id} timed out after {after:?}")]
    Timeout { id: String, after: Duration },
}

/// What a finished exec returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i32,
    /// stdout and stderr, interleaved, truncated to a few KiB.
    pub output: Vec<u8>,
}

/// Arguments of the hidden `skiff nsexec` helper process.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ExecArgs {
    /// The container's main process, whose namespaces are entered
    #[arg(long)]
    pub pid: i32,
    /// The container's id (for messages)
    #[arg(long = "id")]
    pub container_id: String,
    /// The container's cgroup, below the cgroup root
    #[arg(long)]
    pub cgroup: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub uid: u32,
    #[arg(long, default_value_t = 0)]
    pub gid: u32,
    /// Supplementary group (repeatable)
    #[arg(long = "group")]
    pub groups: Vec<u32>,
    /// Working directory inside the container (default /)
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// KEY=VALUE for the command's environment (repeatable; after SKIFF_EXEC_ENV_<n>)
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// Standard input is a terminal: make it the command's controlling terminal
    #[arg(long)]
    pub tty: bool,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

impl ExecArgs {
    /// The helper's arguments for running `argv` in `target` (its environment goes
    /// separately, see [`helper_env`]).
    pub fn for_target(target: &ExecTarget, argv: &[String], tty: bool) -> ExecArgs {
        ExecArgs {
            pid: target.pid,
            container_id: target.container_id.clone(),
            cgroup: target.cgroup_path.clone(),
            uid: target.user.uid,
            gid: target.user.gid,
            groups: target.user.additional_gids.clone(),
            cwd: target.working_dir.clone(),
            env: Vec::new(),
            tty,
            argv: argv.to_vec(),
        }
    }

    /// The command line that `ExecArgs` parses back from.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--pid".into(),
            self.pid.to_string().into(),
            "--id".into(),
            self.container_id.clone().into(),
            "--cgroup".into(),
            self.cgroup.clone().into(),
            "--uid".into(),
            self.uid.to_string().into(),
            "--gid".into(),
            self.gid.to_string().into(),
        ];
        for group in &self.groups {
            args.extend(["--group".into(), group.to_string().into()]);
        }
        if let Some(cwd) = &self.cwd {
            args.extend(["--cwd".into(), cwd.clone().into()]);
        }
        for env in &self.env {
            args.extend(["--env".into(), env.into()]);
        }
        if self.tty {
            args.push("--tty".into());
        }
        args.push("--".into());
        args.extend(self.argv.iter().map(OsString::from));
        args
    }
}

/// The helper's environment carrying `env` (see the module docs).
pub fn helper_env(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .enumerate()
        .map(|(i, (k, v))| (format!("{ENV_PREFIX}{i}"), format!("{k}={v}")))
        .collect()
}

/// `<current exe> nsexec`: how the agent starts the helper.
pub fn helper_command() -> std::io::Result<ShimCommand> {
    Ok(ShimCommand {
        program: std::env::current_exe()?,
        leading_args: vec!["nsexec".into()],
        env: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------
// The helper process.

/// Entry point of `skiff nsexec` (single-threaded process).
pub fn exec_main(args: ExecArgs) -> i32 {
    let env = command_env(&args.env, std::env::vars_os());
    // Read before entering: the container's /proc numbers its processes differently.
    let privileges = match Privileges::of(args.pid) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("skiff nsexec: container {}: {message}", args.container_id);
            return EXIT_SETUP_FAILED;
        }
    };
    if let Err(message) = enter(&args) {
        eprintln!("skiff nsexec: container {}: {message}", args.container_id);
        return EXIT_SETUP_FAILED;
    }
    // SAFETY: the helper is single-threaded; the child only runs its own code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let (code, message) = become_command(&args, &env, &privileges);
            let _ = writeln!(std::io::stderr(), "{message}");
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { child }) => {
            forward_termination(child);
            wait_child(child)
        }
        Err(e) => {
            eprintln!("skiff nsexec: container {}: fork: {e}", args.container_id);
            EXIT_SETUP_FAILED
        }
    }
}

/// The command's environment: `SKIFF_EXEC_ENV_<n>` in order of n, then `--env`.
fn command_env(extra: &[String], vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<CString> {
    let mut numbered: Vec<(u64, OsString)> = vars
        .filter_map(|(key, value)| {
            let n = key.to_str()?.strip_prefix(ENV_PREFIX)?.parse().ok()?;
            Some((n, value))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    numbered
        .into_iter()
        .map(|(_, v)| v.as_bytes().to_vec())
        .chain(extra.iter().map(|e| e.as_bytes().to_vec()))
        .filter(|e| e.contains(&b'='))
        .filter_map(|e| CString::new(e).ok())
        .collect()
}

/// Joins the container's cgroup and namespaces.
fn enter(args: &ExecArgs) -> Result<(), String> {
    join_cgroup(Path::new(CGROUP_ROOT), &args.cgroup, std::process::id())?;
    let mut opened = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{}/ns/{name}", args.pid);
        match File::open(&path) {
            Ok(file) => opened.push((path, file, flag)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "cgroup" => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("process {} is gone ({path})", args.pid))
            }
            Err(e) => return Err(format!("opening {path}: {e}")),
        }
    }
    for (path, file, flag) in opened {
        setns(file.as_fd(), flag).map_err(|e| format!("entering {path}: {e}"))?;
    }
    Ok(())
}

/// The directories whose `cgroup.procs` a process joins to be in `cgroup` (absolute,
/// below `root`): every v1 controller hierarchy where it exists, or the v2 one.
pub fn cgroup_dirs(
    root: &Path,
    version: CgroupVersion,
    cgroup: &Path,
) -> Result<Vec<PathBuf>, String> {
    let relative = cgroup.strip_prefix("/").unwrap_or(cgroup);
    if relative
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "cgroup path {} must be absolute and free of '..'",
            cgroup.display()
        ));
    }
    if version == CgroupVersion::V2 {
        return Ok(vec![root.join(relative)]);
    }
    let entries =
        std::fs::read_dir(root).map_err(|e| format!("listing {}: {e}", root.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path().join(relative))
        .filter(|dir| dir.join("cgroup.procs").exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn join_cgroup(root: &Path, cgroup: &Path, pid: u32) -> Result<(), String> {
    let version = detect_version(root).map_err(|e| format!("probing {}: {e}", root.display()))?;
    let dirs = cgroup_dirs(root, version, cgroup)?;
    if dirs.is_empty() {
        return Err(format!("cgroup {} not found", cgroup.display()));
    }
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| format!("joining the cgroup, writing {}: {e}", procs.display()))?;
    }
    Ok(())
}

/// In the forked child: becomes the command. Returns only on failure, with the exit
/// code and message.
fn become_command(args: &ExecArgs, env: &[CString], privileges: &Privileges) -> (i32, String) {
    let setup = |what: &str, e: Errno| (EXIT_SETUP_FAILED, format!("skiff nsexec: {what}: {e}"));
    if args.tty {
        if let Err(e) = nix::unistd::setsid() {
            return setup("setsid", e);
        }
        // SAFETY: fd 0 is the terminal the agent opened for this exec.
        if let Err(e) = unsafe { set_controlling_tty(0, 0) } {
            return setup("taking the terminal", e);
        }
    } else if let Err(e) = nix::unistd::setsid() {
        return setup("setsid", e);
    }
    let groups: Vec<Gid> = args.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    if let Err(e) = nix::unistd::setgroups(&groups) {
        return setup("setgroups", e);
    }
    if let Err(e) = nix::unistd::setgid(Gid::from_raw(args.gid)) {
        return setup("setgid", e);
    }
    if let Err(message) = privileges.limit_bounding_set() {
        return (EXIT_SETUP_FAILED, format!("skiff nsexec: {message}"));
    }
    if let Err(e) = nix::unistd::setuid(Uid::from_raw(args.uid)) {
        return setup("setuid", e);
    }
    if let Err(message) = privileges.apply() {
        return (EXIT_SETUP_FAILED, format!("skiff nsexec: {message}"));
    }
    // After the credential changes, which clear it.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let cwd = args.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));
    if let Err(e) = nix::unistd::chdir(&cwd) {
        return (
            EXIT_SETUP_FAILED,
            format!("skiff nsexec: chdir to {}: {e}", cwd.display()),
        );
    }
    exec_command(&args.argv, env)
}

/// The container process's privileges, which an exec'd process gets too (never
/// more): its capability sets and `no_new_privs`. (Its seccomp filter is not copied:
/// the kernel offers no way to read it back without CAP_SYS_ADMIN tricks.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Privileges {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    no_new_privs: bool,
}

impl Privileges {
    fn of(pid: i32) -> Result<Privileges, String> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        Privileges::parse(&text).ok_or_else(|| format!("no capability sets in {path}"))
    }

    fn parse(status: &str) -> Option<Privileges> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let mask = |name: &str| u64::from_str_radix(&field(name)?, 16).ok();
        Some(Privileges {
            bounding: mask("CapBnd:")?,
            effective: mask("CapEff:")?,
            permitted: mask("CapPrm:")?,
            inheritable: mask("CapInh:")?,
            no_new_privs: field("NoNewPrivs:").is_some_and(|v| v == "1"),
        })
    }

    fn set_of(mask: u64) -> caps::CapsHashSet {
        caps::all()
            .into_iter()
            .filter(|c| c.index() < 64 && mask & (1u64 << c.index()) != 0)
            .collect()
    }

    /// Drops from the bounding set what the container lacks (needs CAP_SETPCAP, so
    /// before the user changes).
    fn limit_bounding_set(&self) -> Result<(), String> {
        for cap in caps::all() {
            if cap.index() < 64 && self.bounding & (1u64 << cap.index()) == 0 {
                match caps::drop(None, caps::CapSet::Bounding, cap) {
                    Ok(()) => {}
                    // Capabilities this kernel does not know are not in any set.
                    Err(_)
                        if !caps::has_cap(None, caps::CapSet::Bounding, cap).unwrap_or(false) => {}
                    Err(e) => return Err(format!("dropping {cap} from the bounding set: {e}")),
                }
            }
        }
        Ok(())
    }

    /// Sets the capability sets (after the user change: a non-root user has none
    /// left to narrow) and `no_new_privs`.
    fn apply(&self) -> Result<(), String> {
        let _ = caps::clear(None, caps::CapSet::Ambient);
        let permitted = caps::read(None, caps::CapSet::Permitted).unwrap_or_default();
        let wanted = |mask| -> caps::CapsHashSet {
            Privileges::set_of(mask)
                .intersection(&permitted)
                .copied()
                .collect()
        };
        for (set, mask) in [
            (caps::CapSet::Inheritable, self.inheritable),
            (caps::CapSet::Effective, self.effective),
            (caps::CapSet::Permitted, self.permitted),
        ] {
            // Effective must stay within permitted: narrow it first.
            caps::set(None, set, &wanted(mask))
                .map_err(|e| format!("setting capabilities: {e}"))?;
        }
        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| format!("setting no_new_privs: {e}"))?;
        }
        Ok(())
    }
}

/// `execve`s `argv[0]`, looked up in the environment's `PATH` when it has no slash.
fn exec_command(argv: &[String], env: &[CString]) -> (i32, String) {
    let Some(name) = argv.first() else {
        return (EXIT_NOT_FOUND, "exec: no command given".to_string());
    };
    let path = match resolve(name, &search_path(env)) {
        Some(path) => path,
        None => {
            return (
                EXIT_NOT_FOUND,
                format!("exec: {name:?}: executable file not found in $PATH"),
            )
        }
    };
    let c_args: Result<Vec<CString>, _> = argv.iter().map(|a| CString::new(a.as_str())).collect();
    let (Ok(c_path), Ok(c_args)) = (CString::new(path.as_os_str().as_bytes()), c_args) else {
        return (
            EXIT_NOT_FOUND,
            format!("exec: {name:?}: contains a NUL byte"),
        );
    };
    let Err(e) = nix::unistd::execve(&c_path, &c_args, env);
    let code = match e {
        Errno::ENOENT | Errno::ENOTDIR => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXECUTE,
    };
    (code, format!("exec: {}: {}", path.display(), e.desc()))
}

fn search_path(env: &[CString]) -> String {
    env.iter()
        .rev()
        .find_map(|e| e.to_str().ok()?.strip_prefix("PATH=").map(str::to_string))
        .unwrap_or_else(|| DEFAULT_PATH.to_string())
}

/// The file to execute for `name`: itself if it names a path, else the first
/// executable regular file called `name` in a `PATH` directory.
fn resolve(name: &str, path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    if name.is_empty() {
        return None;
    }
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The command's pid (and process group), for the signal handler.
static COMMAND: AtomicI32 = AtomicI32::new(0);

extern "C" fn kill_command(_signal: nix::libc::c_int) {
    let pid = COMMAND.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            nix::libc::kill(-pid, nix::libc::SIGKILL);
            nix::libc::kill(pid, nix::libc::SIGKILL);
        }
    }
}

/// Makes SIGTERM, SIGINT and SIGHUP kill the command's process group.
fn forward_termination(child: nix::unistd::Pid) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    COMMAND.store(child.as_raw(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(kill_command),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only calls kill.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// Waits for the command and turns its end into the helper's exit code.
fn wait_child(child: nix::unistd::Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("skiff nsexec: waiting for the command: {e}");
                return EXIT_SETUP_FAILED;
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The agent's side.

/// Runs `argv` in the container and waits for it (at most `timeout`; then it is killed).
pub async fn run(
    target: &ExecTarget,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    let helper = helper_command().map_err(|e| failed(target, format!("finding skiff: {e}")))?;
    run_with(&helper, target, argv, timeout).await
}

/// [`run`] with an explicit helper command (tests, other binaries).
pub async fn run_with(
    helper: &ShimCommand,
    target: &ExecTarget,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| failed(target, format!("making a pipe: {e}")))?;
    let write_too = write
        .try_clone()
        .map_err(|e| failed(target, format!("making a pipe: {e}")))?;
    let mut command = helper_process(helper, target, argv, false);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write_too));
    let mut child = command.spawn().map_err(|e| {
        failed(
            target,
            format!("starting {}: {e}", helper.program.display()),
        )
    })?;
    drop(command);
    let mut reader = pipe_reader(read).map_err(|e| failed(target, format!("reading: {e}")))?;
    let mut output = Vec::new();
    let finished = tokio::time::timeout(timeout, async {
        let status = read_while_running(&mut child, &mut reader, &mut output).await;
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, read_capped(&mut reader, &mut output)).await;
        status
    })
    .await;
    match finished {
        Ok(Ok(status)) => Ok(ExecOutput {
            code: exit_code(status),
            output,
        }),
        Ok(Err(e)) => Err(failed(target, format!("waiting for the helper: {e}"))),
        Err(_) => {
            terminate(&mut child).await;
            Err(ExecError::Timeout {
                id: target.container_id.clone(),
                after: timeout,
            })
        }
    }
}

/// Ends a helper: SIGTERM (it then kills the command's process group), and SIGKILL
/// if it is still there after a moment.
pub async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

fn failed(target: &ExecTarget, message: String) -> ExecError {
    ExecError::Failed {
        id: target.container_id.clone(),
        message,
    }
}

/// The helper's command for `argv` in `target`, stdio not yet chosen.
fn helper_process(
    helper: &ShimCommand,
    target: &ExecTarget,
    argv: &[String],
    tty: bool,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&helper.program);
    command
        .args(&helper.leading_args)
        .args(ExecArgs::for_target(target, argv, tty).to_args())
        .env_clear()
        .envs(helper.env.iter().cloned())
        .envs(helper_env(&target.env))
        .current_dir("/")
        .kill_on_drop(true);
    command
}

fn pipe_reader(fd: OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
}

/// Reads into `output` (keeping at most `MAX_OUTPUT` bytes) until the child exits.
async fn read_while_running(
    child: &mut tokio::process::Child,
    reader: &mut tokio::net::unix::pipe::Receiver,
    output: &mut Vec<u8>,
) -> std::io::Result<std::process::ExitStatus> {
    let mut open = true;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            status = child.wait() => return status,
            read = reader.read(&mut buf), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => keep(output, &buf[..n]),
            },
        }
    }
}

async fn read_capped(reader: &mut tokio::net::unix::pipe::Receiver, output: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            return;
        }
        keep(output, &buf[..n]);
    }
}

fn keep(output: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(output.len());
    output.extend_from_slice(&data[..data.len().min(room)]);
}

/// The exit code of a finished process: its code, or 128 + the signal that killed it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(EXIT_SETUP_FAILED)
}

/// Which standard streams an interactive exec has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStdio {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// One terminal for all three (stderr goes to it too).
    pub tty: bool,
}

/// A started interactive exec. Dropping it kills the helper (and so the command).
pub struct ExecProcess {
    pub child: tokio::process::Child,
    /// Without a terminal: the pipes asked for.
    pub stdin: Option<tokio::process::ChildStdin>,
    pub stdout: Option<tokio::process::ChildStdout>,
    pub stderr: Option<tokio::process::ChildStderr>,
    /// With a terminal: its master side, for input and output.
    pub pty: Option<PtyMaster>,
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess")
            .field("pid", &self.child.id())
            .field("tty", &self.pty.is_some())
            .finish_non_exhaustive()
    }
}

/// Starts `argv` in the container with the given streams (pipes, or a terminal).
pub fn spawn(
    helper: &ShimCommand,
    target: &ExecTarget,
    argv: &[String],
    stdio: ExecStdio,
) -> Result<ExecProcess, ExecError> {
    let mut command = helper_process(helper, target, argv, stdio.tty);
    let pty = if stdio.tty {
        let pty = openpty(None, None).map_err(|e| failed(target, format!("openpty: {e}")))?;
        let clone = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| failed(target, format!("duplicating the terminal: {e}")))
        };
        command
            .stdin(Stdio::from(clone(&pty.slave)?))
            .stdout(Stdio::from(clone(&pty.slave)?))
            .stderr(Stdio::from(pty.slave));
        Some(PtyMaster::new(pty.master).map_err(|e| failed(target, format!("terminal: {e}")))?)
    } else {
        let pipe_or_null = |wanted: bool| {
            if wanted {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        command
            .stdin(pipe_or_null(stdio.stdin))
            .stdout(pipe_or_null(stdio.stdout))
            .stderr(pipe_or_null(stdio.stderr));
        None
    };
    let mut child = command.spawn().map_err(|e| {
        failed(
            target,
            format!("starting {}: {e}", helper.program.display()),
        )
    })?;
    // The command holds the terminal's slave side now; ours must go so that reads of
    // the master end when the command's side closes.
    drop(command);
    Ok(ExecProcess {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        pty,
    })
}

/// The master side of an exec's terminal: non-blocking, readable and writable from
/// async code, resizable.
#[derive(Debug)]
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    fn new(fd: OwnedFd) -> std::io::Result<PtyMaster> {
        let flags = fcntl(&fd, FcntlArg::F_GETFL)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        fcntl(&fd, FcntlArg::F_SETFL(flags))?;
        // SAFETY: an OwnedFd always returns the descriptor it owns, open until dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(PtyMaster { fd })
    }

    /// A second descriptor of the master, to resize it while this one is split into
    /// reading and writing halves.
    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.get_ref().try_clone()
    }

    /// Sets the terminal's size (columns, rows), as `kubectl exec -t` reports it.
    pub fn resize(&self, width: u16, height: u16) -> std::io::Result<()> {
        resize(self.fd.get_ref(), width, height)
    }
}

/// TIOCSWINSZ on a terminal (master or slave side).
pub fn resize(fd: &impl AsRawFd, width: u16, height: u16) -> std::io::Result<()> {
    let size = Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the fd is a terminal we own; the pointer is to a live Winsize.
    unsafe { set_window_size(fd.as_raw_fd(), &size) }?;
    Ok(())
}

impl AsyncRead for PtyMaster {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref(), unfilled).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: every slave side is closed, the terminal's end of file.
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EIO as i32) => {
                    return Poll::Ready(Ok(()))
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(Into::into)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        exec: ExecArgs,
    }

    fn target() -> ExecTarget {
        ExecTarget {
            container_id: "c1".into(),
            pid: 42,
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("FOO".into(), "a=b c".into()),
            ],
            user: UserIds {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![5, 6],
            },
            working_dir: Some("/work".into()),
            cgroup_path: "/skiff/c1".into(),
        }
    }

    #[test]
    fn arguments_round_trip_through_the_command_line() {
        let argv = vec!["sh".to_string(), "-c".into(), "echo --pid".into()];
        let mut args = ExecArgs::for_target(&target(), &argv, true);
        args.env = vec!["X=1".into()];
        let line = std::iter::once(OsString::from("nsexec")).chain(args.to_args());
        let parsed = Cli::try_parse_from(line).expect("parse").exec;
        assert_eq!(parsed, args);
        assert_eq!(parsed.groups, vec![5, 6]);
        assert!(parsed.tty);
    }

    #[test]
    fn environment_travels_outside_the_command_line() {
        let env = helper_env(&target().env);
        assert_eq!(env[1], ("SKIFF_EXEC_ENV_1".into(), "FOO=a=b c".into()));
        let mut vars: Vec<(OsString, OsString)> = env
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .rev()
            .collect();
        vars.push(("SKIFF_LOG".into(), "debug".into()));
        vars.push(("SKIFF_EXEC_ENV_10".into(), "LAST=1".into()));
        let built = command_env(&["EXTRA=2".into(), "junk".into()], vars.into_iter());
        let built: Vec<&str> = built.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(built, vec!["PATH=/bin", "FOO=a=b c", "LAST=1", "EXTRA=2"]);
    }

    #[test]
    fn privileges_parse_from_proc_status() {
        let status = "Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\n\
                      CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\n";
        let p = Privileges::parse(status).unwrap();
        assert_eq!(p.bounding, 0xa80425fb);
        assert!(p.no_new_privs);
        assert!(Privileges::set_of(p.effective).contains(&caps::Capability::CAP_CHOWN));
        assert!(!Privileges::set_of(p.effective).contains(&caps::Capability::CAP_SYS_ADMIN));
        assert_eq!(Privileges::parse("Name: x\n"), None);
        let own = Privileges::of(std::process::id() as i32).unwrap();
        assert!(own.bounding != 0);
    }

    #[test]
    fn commands_are_looked_up_in_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").expect("write");
        std::fs::write(bin.join("data"), "").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = format!("/nonexistent:{}", bin.display());
        assert_eq!(resolve("tool", &path), Some(bin.join("tool")));
        assert_eq!(resolve("data", &path), None);
        assert_eq!(resolve("./x", &path), Some(PathBuf::from("./x")));
        assert_eq!(resolve("", &path), None);
        let env = vec![CString::new("PATH=/a:/b").unwrap()];
        assert_eq!(search_path(&env), "/a:/b");
        assert_eq!(search_path(&[]), DEFAULT_PATH);
    }

    #[test]
    fn missing_commands_fail_like_runc() {
        let (code, message) = exec_command(&["no-such-tool".into()], &[]);
        assert_eq!(code, EXIT_NOT_FOUND);
        assert_eq!(
            message,
            "exec: \"no-such-tool\": executable file not found in $PATH"
        );
        let (code, message) = exec_command(&["/no/such/file".into()], &[]);
        assert_eq!(code, EXIT_NOT_FOUND);
        assert!(message.contains("/no/such/file"), "{message}");
        let dir = tempfile::tempdir().expect("tempdir");
        let (code, _) = exec_command(&[dir.path().display().to_string()], &[]);
        assert_eq!(code, EXIT_CANNOT_EXECUTE);
    }

    #[test]
    fn cgroup_directories_per_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for controller in ["cpu,cpuacct", "memory", "pids"] {
            std::fs::create_dir_all(root.join(controller).join("skiff/c1")).expect("mkdir");
        }
        std::fs::write(root.join("memory/skiff/c1/cgroup.procs"), "").expect("write");
        std::fs::write(root.join("cpu,cpuacct/skiff/c1/cgroup.procs"), "").expect("write");
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).expect("symlink");
        let dirs = cgroup_dirs(root, CgroupVersion::V1, Path::new("/skiff/c1")).expect("dirs");
        assert_eq!(
            dirs,
            vec![
                root.join("cpu,cpuacct/skiff/c1"),
                root.join("memory/skiff/c1")
            ]
        );
        let v2 = cgroup_dirs(root, CgroupVersion::V2, Path::new("/skiff/c1")).expect("v2");
        assert_eq!(v2, vec![root.join("skiff/c1")]);
        assert!(cgroup_dirs(root, CgroupVersion::V2, Path::new("/a/../b")).is_err());
    }

    /// The agent side without a container: a stand-in helper that runs the command
    /// on the host.
    pub(crate) fn host_helper() -> ShimCommand {
        ShimCommand {
            program: "/bin/sh".into(),
            leading_args: vec![
                "-c".into(),
                "while [ \"$1\" != -- ]; do shift; done; shift; exec \"$@\"".into(),
                "fake-nsexec".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        }
    }

    fn tokio() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio")
    }

    fn argv(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn run_captures_capped_output_and_the_exit_code() {
        let rt = tokio();
        let helper = host_helper();
        let out = rt
            .block_on(run_with(
                &helper,
                &target(),
                &argv("echo out; echo err >&2; echo $SKIFF_EXEC_ENV_1; exit 3"),
                Duration::from_secs(10),
            ))
            .expect("run");
        assert_eq!(out.code, 3);
        assert_eq!(
            String::from_utf8_lossy(&out.output),
            "out\nerr\nFOO=a=b c\n"
        );
        let big = rt
            .block_on(run_with(
                &helper,
                &target(),
                &argv("head -c 100000 /dev/zero; kill -9 $$"),
                Duration::from_secs(10),
            ))
            .expect("run");
        assert_eq!((big.code, big.output.len()), (137, MAX_OUTPUT));
    }

    #[test]
    fn run_kills_on_timeout_and_ignores_lingering_children() {
        let rt = tokio();
        let helper = host_helper();
        let err = rt
            .block_on(run_with(
                &helper,
                &target(),
                &argv("sleep 30"),
                Duration::from_millis(300),
            ))
            .expect_err("timeout");
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        let out = rt
            .block_on(run_with(
                &helper,
                &target(),
                &argv("(sleep 30 &); echo done"),
                Duration::from_secs(10),
            ))
            .expect("the command returns without waiting for its orphan (else: timeout)");
        assert_eq!((out.code, out.output.as_slice()), (0, &b"done\n"[..]));
    }

    #[test]
    fn spawn_with_a_terminal() {
        use tokio::io::AsyncWriteExt;
        let rt = tokio();
        let stdio = ExecStdio {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        rt.block_on(async {
            let mut process = spawn(
                &host_helper(),
                &target(),
                &argv("read line; stty size; echo got $line; exit 4"),
                stdio,
            )
            .expect("spawn");
            let mut pty = process.pty.take().expect("pty");
            pty.resize(100, 30).expect("resize");
            pty.write_all(b"hello\n").await.expect("write");
            let mut output = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), pty.read_to_end(&mut output));
            read.await.expect("in time").expect("read");
            let status = process.child.wait().await.expect("wait");
            let text = String::from_utf8_lossy(&output);
            assert!(text.contains("30 100"), "{text:?}");
            assert!(text.contains("got hello"), "{text:?}");
            assert_eq!(exit_code(status), 4);
        });
    }
}
