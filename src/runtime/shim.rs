//! The per-container shim: the skiff binary re-executed as `skiff shim …` for each
//! container. libcontainer `clone()`s its caller and changes the working directory of
//! the whole process, which is unsafe in the multi-threaded agent, so containers are
//! made here, in a process that never starts a thread.
//!
//! Detaching: the agent runs `skiff shim` and waits for it. That process (stage 1)
//! forks; the child (stage 2, the shim proper) calls `setsid` and becomes a child
//! subreaper, creates and starts the container, and reports `started <pid>` (or
//! `error <message>`) through a pipe; stage 1 prints the report and exits, so the
//! agent learns the outcome and reaps stage 1 at once. Stage 2 is then an orphan in
//! its own session, adopted by init: an agent that restarts or dies leaves it and the
//! container running. The container's init is the shim's child (libcontainer clones
//! it as a sibling of its intermediate process), so the shim can wait for it.
//!
//! Stage 2 then copies the container's stdout and stderr (pipes) into a CRI log file
//! and to the clients attached through `attach.sock` (`runtime::attach`), passes their
//! input to the container's stdin (a pipe, for containers with `stdin: true`), reaps
//! the container, records its exit (code, or 128 + signal, and whether the
//! cgroup's OOM killer fired) in `status.json`, deletes the container (its cgroup and
//! libcontainer's state) and exits.
//!
//! A container with `tty: true` gets a terminal instead of pipes: the spec's
//! `process.terminal` is turned on, libcontainer opens the pty inside the container
//! and sends its master through a console socket in the state directory; the shim
//! reads output from the master (logged as stdout), writes input to it and resizes it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::error::LibcontainerError;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, setsid, ForkResult, Pid};
use oci_spec::runtime::Spec;

use super::attach::{self, Hub};
use super::cgroups::{Cgroups, HostCgroups};
use super::config::{LogConfig, DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES};
use super::host::{HostProcesses, ProcessId};
use super::logs::{Entry, LineSplitter, LogWriter, Stream, MAX_LINE_BYTES};
use super::status::{exit_record, write_record, Phase, StatusRecord, Termination};

/// The shim's own pid and start time, written first thing (JSON `ProcessId`).
pub const SHIM_FILE: &str = "shim.json";
/// The container's pid, as libcontainer writes it.
pub const CONTAINER_PID_FILE: &str = "container.pid";
/// libcontainer's state directory, inside the shim's state directory.
pub const LIBCONTAINER_DIR: &str = "libcontainer";
/// How long output may still arrive after the container's process exited (processes
/// in its PID namespace die with it, so the pipes close almost at once).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// The longest the shim sleeps without checking on its children, in milliseconds.
const POLL_INTERVAL_MS: u16 = 1000;
/// How often the shim looks for output while draining after the exit.
const DRAIN_POLL_MS: u16 = 100;

/// `skiff shim` (hidden): run one container. The agent builds these with
/// `Runtime::create`; `to_args` gives the command line.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ShimArgs {
    /// The container id
    #[arg(long)]
    pub id: String,
    /// The OCI bundle directory (holds config.json)
    #[arg(long)]
    pub bundle: PathBuf,
    /// The container's state directory (status.json, shim.json, libcontainer state)
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The container's log file (CRI format)
    #[arg(long)]
    pub log_path: PathBuf,
    /// Rotate the log file past this size
    #[arg(long, default_value_t = DEFAULT_LOG_MAX_BYTES)]
    pub log_max_bytes: u64,
    /// Log files kept, the live one included
    #[arg(long, default_value_t = DEFAULT_LOG_MAX_FILES)]
    pub log_max_files: u32,
}

impl ShimArgs {
    /// The command-line arguments that parse back into these (after the subcommand).
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--state-dir".into(),
            self.state_dir.clone().into(),
            "--log-path".into(),
            self.log_path.clone().into(),
            "--log-max-bytes".into(),
            self.log_max_bytes.to_string().into(),
            "--log-max-files".into(),
            self.log_max_files.to_string().into(),
        ]
    }

    fn log_config(&self) -> LogConfig {
        LogConfig {
            path: self.log_path.clone(),
            max_bytes: self.log_max_bytes,
            max_files: self.log_max_files,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("container {id}: {action} {path}: {source}")]
    Io {
        id: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: {action}: {source}")]
    Sys {
        id: String,
        action: &'static str,
        #[source]
        source: Errno,
    },
    #[error("container {id}: {action}: {source}")]
    Libcontainer {
        id: String,
        action: &'static str,
        #[source]
        source: Box<LibcontainerError>,
    },
    #[error("container {id}: reading {path}: {source}")]
    Spec {
        id: String,
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("container {id}: the spec has no cgroups path")]
    NoCgroupPath { id: String },
    #[error("container {id}: libcontainer reported no pid")]
    NoPid { id: String },
}

/// Runs one container; returns the exit code for the process.
///
/// Call it before any async runtime or other thread starts: it forks first, and the
/// forked shim, which alone touches libcontainer, then has exactly one thread (a fork
/// of a multi-threaded process would copy locks other threads held).
///
/// Stage 1 returns 0 once the container is running (printing `started <pid>`), or 1
/// (printing `error <message>`). Stage 2 returns when the container is gone.
pub fn shim_main(args: ShimArgs) -> i32 {
    let (report_read, report_write) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(e) => {
            println!("error container {}: creating the report pipe: {e}", args.id);
            return 1;
        }
    };
    // SAFETY: called before the process starts threads (see above), so the child
    // starts with a consistent copy of it and may do anything.
    match unsafe { fork() } {
        Err(e) => {
            println!("error container {}: forking the shim: {e}", args.id);
            1
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(report_write);
            relay_report(report_read)
        }
        Ok(ForkResult::Child) => {
            drop(report_read);
            run_detached(&args, File::from(report_write))
        }
    }
}

/// Stage 1: print what stage 2 reported and exit accordingly.
fn relay_report(report: OwnedFd) -> i32 {
    let mut text = String::new();
    let _ = File::from(report).read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        println!("error the shim exited before reporting");
        return 1;
    }
    println!("{text}");
    if text.starts_with("started ") {
        0
    } else {
        1
    }
}

/// Stage 2: detach, start the container, report, then supervise it.
fn run_detached(args: &ShimArgs, mut report: File) -> i32 {
    // Stage 1's caller reads stdout to its end: keep no copy of it here.
    let _ = nix::unistd::dup2_stdout(std::io::stderr());
    close_inherited_fds(report.as_raw_fd());
    match Shim::start(args) {
        Err(e) => {
            eprintln!("{} skiff shim: {e}", Utc::now().to_rfc3339());
            let _ = writeln!(report, "error {e}");
            1
        }
        Ok(mut shim) => {
            let _ = writeln!(report, "started {}", shim.record.container.pid);
            drop(report);
            shim.supervise();
            0
        }
    }
}

/// Closes every descriptor above stderr but `keep`: the shim lives long and must not
/// pin what its caller left open (a listening socket, a pipe someone waits on).
fn close_inherited_fds(keep: RawFd) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && fd != keep)
        .collect();
    for fd in fds {
        // The directory's own descriptor is among them, already closed: EBADF.
        let _ = nix::unistd::close(fd);
    }
}

/// A started container and what the shim needs to follow it.
struct Shim {
    id: String,
    state_dir: PathBuf,
    container: Container,
    record: StatusRecord,
    log: Option<LogWriter>,
    stdout: Option<(OwnedFd, LineSplitter)>,
    stderr: Option<(OwnedFd, LineSplitter)>,
    children: SignalFd,
    cgroups: Option<HostCgroups>,
    hub: Option<Hub>,
}

/// What the bundle's annotations ask of the container's stdio.
#[derive(Debug, Clone, Copy, Default)]
struct Stdio {
    stdin: bool,
    stdin_once: bool,
    tty: bool,
}

/// The container's end of its streams, before it is made.
struct ContainerStdio {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    console_socket: Option<PathBuf>,
}

impl Shim {
    /// Detaches, makes the container and starts it.
    fn start(args: &ShimArgs) -> Result<Shim, ShimError> {
        let id = &args.id;
        let shim = detach(id)?;
        write_json(id, &args.state_dir.join(SHIM_FILE), &shim)?;
        let (cgroup_path, stdio) = read_bundle(id, &args.bundle)?;
        let log = LogWriter::open(&args.log_config()).map_err(|source| ShimError::Io {
            id: id.clone(),
            action: "opening log",
            path: args.log_path.clone(),
            source,
        })?;
        let sys = |action| {
            let id = id.clone();
            move |source| ShimError::Sys { id, action, source }
        };
        let (ours, theirs, console) = if stdio.tty {
            let console = ConsoleSocket::listen(&args.state_dir).map_err(sys("console socket"))?;
            let theirs = ContainerStdio {
                stdin: None,
                stdout: None,
                stderr: None,
                console_socket: Some(console.path.clone()),
            };
            ((None, None, None), theirs, Some(console))
        } else {
            let (stdout_read, stdout_write) = output_pipe(id)?;
            let (stderr_read, stderr_write) = output_pipe(id)?;
            let (stdin_read, stdin_write) = if stdio.stdin {
                let (read, write) = output_pipe(id)?;
                (Some(read), Some(write))
            } else {
                (None, None)
            };
            let theirs = ContainerStdio {
                stdin: stdin_read,
                stdout: Some(stdout_write),
                stderr: Some(stderr_write),
                console_socket: None,
            };
            (
                (Some(stdout_read), Some(stderr_read), stdin_write),
                theirs,
                None,
            )
        };
        // The container inherits signal dispositions and the mask: give it defaults.
        reset_signals();
        let mut container = build_container(args, theirs)?;
        let (stdout_read, stderr_read, stdin_write, terminal) = match console {
            None => (ours.0, ours.1, ours.2, None),
            Some(console) => match console.receive_master() {
                Ok(master) => {
                    let dup = |fd: &OwnedFd| fd.try_clone().ok();
                    let stdin = if stdio.stdin { dup(&master) } else { None };
                    (dup(&master), None, stdin, Some(master))
                }
                Err(source) => {
                    let _ = container.delete(true);
                    return Err(sys("receiving the terminal")(source));
                }
            },
        };
        let (record, children) = match launch(args, &mut container, shim, cgroup_path) {
            Ok(launched) => launched,
            Err(e) => {
                let _ = container.delete(true);
                return Err(e);
            }
        };
        let hub = match Hub::bind(&args.state_dir, stdin_write, stdio.stdin_once, terminal) {
            Ok(hub) => Some(hub),
            Err(e) => {
                eprintln!("skiff shim: container {id}: attach socket: {e}");
                None
            }
        };
        Ok(Shim {
            id: id.clone(),
            state_dir: args.state_dir.clone(),
            container,
            record,
            log: Some(log),
            stdout: stdout_read.map(|fd| (fd, LineSplitter::new(MAX_LINE_BYTES))),
            stderr: stderr_read.map(|fd| (fd, LineSplitter::new(MAX_LINE_BYTES))),
            children,
            cgroups: HostCgroups::detect().ok(),
            hub,
        })
    }

    /// Copies output and reaps children until the container has exited and its
    /// output is drained; then records the exit and deletes the container.
    fn supervise(&mut self) {
        let mut termination = None;
        let mut exited_at: Option<Instant> = None;
        loop {
            self.reap(&mut termination);
            if termination.is_some() && exited_at.is_none() {
                exited_at = Some(Instant::now());
            }
            let drained = self.stdout.is_none() && self.stderr.is_none();
            let overdue = exited_at.is_some_and(|t| t.elapsed() > DRAIN_AFTER_EXIT);
            if exited_at.is_some() && (drained || overdue) {
                break;
            }
            self.wait_and_copy(exited_at.is_some());
        }
        self.close_streams();
        if let Some(hub) = self.hub.as_mut() {
            hub.close();
        }
        let _ = std::fs::remove_file(self.state_dir.join(attach::SOCKET));
        self.finish(termination.unwrap_or(Termination::Code(255)));
    }

    /// Reaps every exited child; notes the container's termination.
    fn reap(&mut self, termination: &mut Option<Termination>) {
        let container = Pid::from_raw(self.record.container.pid);
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == container => {
                    *termination = Some(Termination::Code(code));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == container => {
                    *termination = Some(Termination::Signal(signal as i32));
                }
                Ok(WaitStatus::StillAlive) => return,
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(_) => {
                    // No children left: if the container was not among them, it is
                    // gone without a status we could read.
                    if termination.is_none() && !self.record.container.is_alive(&HostProcesses) {
                        eprintln!("skiff shim: container {} vanished", self.id);
                        *termination = Some(Termination::Code(255));
                    }
                    return;
                }
            }
        }
    }

    /// Sleeps until output or a child's exit arrives, and copies the output.
    fn wait_and_copy(&mut self, exited: bool) {
        let timeout = PollTimeout::from(if exited {
            DRAIN_POLL_MS
        } else {
            POLL_INTERVAL_MS
        });
        let (stdout_ready, stderr_ready, hub_ready) = {
            let mut fds = vec![PollFd::new(self.children.as_fd(), PollFlags::POLLIN)];
            let streams = [&self.stdout, &self.stderr];
            let mut slots = [None, None];
            for (slot, stream) in slots.iter_mut().zip(streams) {
                if let Some((fd, _)) = stream {
                    *slot = Some(fds.len());
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
            }
            let hub_first = fds.len();
            if let Some(hub) = &self.hub {
                fds.extend(
                    hub.poll_fds()
                        .into_iter()
                        .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
                );
            }
            if poll(&mut fds, timeout).is_err() {
                return;
            }
            let ready = |slot: Option<usize>| {
                slot.and_then(|i| fds[i].revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let hub_ready: Vec<bool> = (hub_first..fds.len()).map(|i| ready(Some(i))).collect();
            (ready(slots[0]), ready(slots[1]), hub_ready)
        };
        while let Ok(Some(_)) = self.children.read_signal() {}
        if let Some(hub) = self.hub.as_mut() {
            hub.on_ready(&hub_ready);
        }
        if stdout_ready {
            self.copy(Stream::Stdout);
        }
        if stderr_ready {
            self.copy(Stream::Stderr);
        }
    }

    /// Reads what one stream has and logs its complete lines; closes it at EOF.
    fn copy(&mut self, stream: Stream) {
        let slot = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let Some((fd, splitter)) = slot else { return };
        let mut buffer = [0u8; 64 * 1024];
        let mut fresh: &[u8] = &[];
        let (entries, eof) = match nix::unistd::read(fd.as_fd(), &mut buffer) {
            // EIO: a terminal whose every slave side closed.
            Ok(0) | Err(Errno::EBADF) | Err(Errno::EIO) => {
                (splitter.finish().into_iter().collect(), true)
            }
            Ok(n) => {
                fresh = &buffer[..n];
                (splitter.push(&buffer[..n]), false)
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => (Vec::new(), false),
            Err(e) => {
                eprintln!(
                    "skiff shim: container {}: reading {}: {e}",
                    self.id,
                    stream.name()
                );
                (splitter.finish().into_iter().collect(), true)
            }
        };
        if eof {
            *slot = None;
        }
        if let Some(hub) = self.hub.as_mut() {
            let channel = match stream {
                Stream::Stdout => attach::STDOUT,
                Stream::Stderr => attach::STDERR,
            };
            hub.broadcast(channel, fresh);
        }
        self.log_entries(stream, &entries);
    }

    fn close_streams(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let slot = match stream {
                Stream::Stdout => self.stdout.take(),
                Stream::Stderr => self.stderr.take(),
            };
            if let Some((_, mut splitter)) = slot {
                let rest: Vec<Entry> = splitter.finish().into_iter().collect();
                self.log_entries(stream, &rest);
            }
        }
    }

    fn log_entries(&mut self, stream: Stream, entries: &[Entry]) {
        let Some(log) = self.log.as_mut() else { return };
        let now = Utc::now();
        for entry in entries {
            if let Err(e) = log.write(now, stream, entry) {
                eprintln!("skiff shim: container {}: writing its log: {e}", self.id);
                self.log = None;
                return;
            }
        }
    }

    /// Records the exit, then deletes the container (cgroup and libcontainer state).
    fn finish(&mut self, termination: Termination) {
        let oom_kills = self
            .cgroups
            .as_ref()
            .and_then(|c| c.oom_kills(&self.record.cgroup_path).ok())
            .unwrap_or(0);
        self.record.phase = Phase::Exited;
        self.record.exit = Some(exit_record(termination, oom_kills, Utc::now()));
        if let Err(e) = save_record(&self.id, &self.state_dir, &self.record) {
            eprintln!("skiff shim: {e}");
        }
        if let Err(e) = self.container.delete(true) {
            eprintln!("skiff shim: container {}: deleting: {e}", self.id);
        }
    }
}

/// A new session, child subreaper, `/` as working directory: the shim's identity.
fn detach(id: &str) -> Result<ProcessId, ShimError> {
    let sys = |action| {
        let id = id.to_string();
        move |source| ShimError::Sys { id, action, source }
    };
    setsid().map_err(sys("setsid"))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(sys("becoming a subreaper"))?;
    let _ = std::env::set_current_dir("/");
    ProcessId::of(&HostProcesses, std::process::id() as i32)
        .ok_or_else(|| ShimError::NoPid { id: id.to_string() })
}

/// A pipe for one of the container's output streams: (shim's end, container's end).
fn output_pipe(id: &str) -> Result<(OwnedFd, OwnedFd), ShimError> {
    pipe2(OFlag::O_CLOEXEC).map_err(|source| ShimError::Sys {
        id: id.to_string(),
        action: "making an output pipe",
        source,
    })
}

/// Records the made container, starts it and records that; returns the record and
/// the signalfd that reports its exit.
fn launch(
    args: &ShimArgs,
    container: &mut Container,
    shim: ProcessId,
    cgroup_path: PathBuf,
) -> Result<(StatusRecord, SignalFd), ShimError> {
    let id = &args.id;
    let pid = container
        .pid()
        .ok_or_else(|| ShimError::NoPid { id: id.clone() })?
        .as_raw();
    let children = watch_children().map_err(|source| ShimError::Sys {
        id: id.clone(),
        action: "watching children",
        source,
    })?;
    let mut record = StatusRecord {
        id: id.clone(),
        phase: Phase::Created,
        shim,
        container: ProcessId::of(&HostProcesses, pid).unwrap_or(ProcessId { pid, start_time: 0 }),
        cgroup_path,
        log_path: args.log_path.clone(),
        created_at: Utc::now(),
        started_at: None,
        exit: None,
    };
    save_record(id, &args.state_dir, &record)?;
    container
        .start()
        .map_err(|source| ShimError::Libcontainer {
            id: id.clone(),
            action: "starting",
            source: Box::new(source),
        })?;
    record.phase = Phase::Running;
    record.started_at = Some(Utc::now());
    save_record(id, &args.state_dir, &record)?;
    Ok((record, children))
}

fn build_container(args: &ShimArgs, stdio: ContainerStdio) -> Result<Container, ShimError> {
    let id = args.id.clone();
    let failed = |action| {
        let id = id.clone();
        move |source| ShimError::Libcontainer {
            id,
            action,
            source: Box::new(source),
        }
    };
    let root = args.state_dir.join(LIBCONTAINER_DIR);
    std::fs::create_dir_all(&root).map_err(|source| ShimError::Io {
        id: id.clone(),
        action: "creating",
        path: root.clone(),
        source,
    })?;
    let mut builder = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(&root)
        .map_err(failed("setting its state directory"))?
        .with_pid_file(Some(args.state_dir.join(CONTAINER_PID_FILE)))
        .map_err(failed("setting its pid file"))?
        .with_console_socket(stdio.console_socket);
    if let Some(stdin) = stdio.stdin {
        builder = builder.with_stdin(stdin);
    }
    if let Some(stdout) = stdio.stdout {
        builder = builder.with_stdout(stdout);
    }
    if let Some(stderr) = stdio.stderr {
        builder = builder.with_stderr(stderr);
    }
    builder
        .validate_id()
        .map_err(failed("checking its id"))?
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(failed("creating"))
}

/// From the bundle's spec: the cgroups path (the shim reads the OOM counter there)
/// and the stdio the annotations ask for. A terminal is turned on in the spec here.
fn read_bundle(id: &str, bundle: &Path) -> Result<(PathBuf, Stdio), ShimError> {
    let path = bundle.join("config.json");
    let spec_error = |path: &Path| {
        let (id, path) = (id.to_string(), path.to_path_buf());
        move |source| ShimError::Spec { id, path, source }
    };
    let mut spec = Spec::load(&path).map_err(spec_error(&path))?;
    let cgroup_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .ok_or_else(|| ShimError::NoCgroupPath { id: id.to_string() })?;
    let on = |key| {
        spec.annotations()
            .as_ref()
            .is_some_and(|a| attach::annotation_on(a, key))
    };
    let stdio = Stdio {
        stdin: on(attach::STDIN_ANNOTATION),
        stdin_once: on(attach::STDIN_ONCE_ANNOTATION),
        tty: on(attach::TTY_ANNOTATION),
    };
    if stdio.tty {
        if let Some(mut process) = spec.process().clone() {
            process.set_terminal(Some(true));
            spec.set_process(Some(process));
            spec.save(&path).map_err(spec_error(&path))?;
        }
    }
    Ok((cgroup_path, stdio))
}

/// Where libcontainer sends a terminal's master side.
struct ConsoleSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    _dir: File,
}

impl ConsoleSocket {
    fn listen(state_dir: &Path) -> nix::Result<ConsoleSocket> {
        let dir = File::open(state_dir).map_err(|e| io_errno(&e))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}/console.sock", dir.as_raw_fd()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).map_err(|e| io_errno(&e))?;
        // libcontainer links this path elsewhere: give it the real one.
        let path = state_dir.join("console.sock");
        Ok(ConsoleSocket {
            listener,
            path,
            _dir: dir,
        })
    }

    /// The master libcontainer sent while creating the container.
    fn receive_master(self) -> nix::Result<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::FromRawFd;
        self.listener
            .set_nonblocking(true)
            .map_err(|e| io_errno(&e))?;
        let (stream, _) = self.listener.accept().map_err(|e| io_errno(&e))?;
        let mut name = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just gave us this descriptor; we own it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(Errno::ENOMSG)
    }
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

/// Default dispositions for the signals Rust and the shim change, and an empty mask,
/// so the container's processes start as if from a fresh exec.
fn reset_signals() {
    for sig in [
        Signal::SIGPIPE,
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGINT,
    ] {
        // SAFETY: installing the default disposition runs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// After the container is made: ignore signals that would kill the shim by accident,
/// and receive SIGCHLD through a signalfd (blocked, so it only wakes `poll`).
fn watch_children() -> nix::Result<SignalFd> {
    for sig in [Signal::SIGPIPE, Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: ignoring a signal runs no handler code.
        unsafe { signal(sig, SigHandler::SigIgn) }?;
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

fn save_record(id: &str, state_dir: &Path, record: &StatusRecord) -> Result<(), ShimError> {
    write_record(state_dir, record).map_err(|source| ShimError::Io {
        id: id.to_string(),
        action: "writing status in",
        path: state_dir.to_path_buf(),
        source,
    })
}

fn write_json<T: serde::Serialize>(id: &str, path: &Path, value: &T) -> Result<(), ShimError> {
    let io = |source| ShimError::Io {
        id: id.to_string(),
        action: "writing",
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec(value).map_err(|e| io(std::io::Error::other(e)))?;
    std::fs::write(path, bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        shim: ShimArgs,
    }

    #[test]
    fn args_round_trip_through_the_command_line() {
        let args = ShimArgs {
            id: "c1".into(),
            bundle: "/var/lib/skiff/containers/c1/bundle".into(),
            state_dir: "/var/lib/skiff/containers/c1/state".into(),
            log_path: "/var/log/pods/ns_p_u/c/0.log".into(),
            log_max_bytes: 1234,
            log_max_files: 2,
        };
        let mut argv: Vec<OsString> = vec!["shim".into()];
        argv.extend(args.to_args());
        let parsed = Cli::try_parse_from(argv).expect("parse");
        assert_eq!(parsed.shim, args);
    }

    #[test]
    fn log_rotation_has_defaults() {
        let parsed = Cli::try_parse_from([
            "shim",
            "--id",
            "c",
            "--bundle",
            "/b",
            "--state-dir",
            "/s",
            "--log-path",
            "/l",
        ])
        .expect("parse");
        assert_eq!(parsed.shim.log_max_bytes, DEFAULT_LOG_MAX_BYTES);
        assert_eq!(parsed.shim.log_max_files, DEFAULT_LOG_MAX_FILES);
    }
}
