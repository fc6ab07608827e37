//! The `skiff server` processes the benchmark runs: started on a free loopback port
//! with a temporary data dir, probed until `/readyz` answers 200, measured through
//! `/proc`, and killed by PID (and their temp dir removed) when dropped, panics
//! included. Each child also gets `PR_SET_PDEATHSIG`, so it dies with the benchmark
//! even if the benchmark itself is killed.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::http::{Client, Credentials, Request};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const PROBE_INTERVAL: Duration = Duration::from_millis(1);

/// The binary Cargo built for this benchmark: `cargo bench` builds the `skiff` bin
/// target with the `bench` profile (which inherits `release`) and passes its path
/// as `CARGO_BIN_EXE_skiff`, i.e. `<target-dir>/release/skiff`.
pub fn skiff_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

/// The target dir the binary lives in (`<target-dir>/release/skiff` → `<target-dir>`).
pub fn target_dir() -> PathBuf {
    let binary = skiff_binary();
    binary
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// VmRSS (and its anonymous part) and VmHWM of a process, in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub hwm_kib: u64,
}

/// `state.db` and `state.db-wal` sizes in bytes.
#[derive(Clone, Copy, Debug)]
pub struct DbSize {
    pub db: u64,
    pub wal: u64,
}

impl DbSize {
    pub fn total(&self) -> u64 {
        self.db + self.wal
    }
}

pub struct Server {
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
    // Declared last so it is removed after the child is killed.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on a fresh data dir; returns it and the time from spawning
    /// the process to the first `/readyz` 200.
    pub async fn start(extra_args: &[&str]) -> Result<(Server, Duration)> {
        let dir = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
        std::fs::write(dir.path().join("config.yaml"), "")?;
        let mut server = Server {
            child: None,
            port: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            dir,
        };
        let startup = server.launch().await?;
        Ok((server, startup))
    }

    /// Stops the server gracefully and starts it again on the same data dir;
    /// returns the time to ready.
    pub async fn restart(&mut self) -> Result<Duration> {
        self.stop().await?;
        self.launch().await
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn pid(&self) -> Result<u32> {
        Ok(self.child.as_ref().context("server not running")?.id())
    }

    /// An authenticated client using the admin credentials from the kubeconfig.
    pub fn client(&self) -> Result<Client> {
        let credentials = Credentials::from_kubeconfig(&self.kubeconfig())?;
        Client::authenticated(self.address(), &credentials)
    }

    /// A client that trusts the cluster CA and presents no certificate (bearer tokens).
    pub fn token_client(&self) -> Result<Client> {
        let credentials = Credentials::from_kubeconfig(&self.kubeconfig())?;
        Client::token_only(self.address(), &credentials)
    }

    pub fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .with_context(|| format!("no {name} in /proc status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }

    pub fn db_size(&self) -> DbSize {
        let db = self.data_dir().join("server/db/state.db");
        let wal = self.data_dir().join("server/db/state.db-wal");
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        DbSize {
            db: size(&db),
            wal: size(&wal),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn launch(&mut self) -> Result<Duration> {
        self.port = free_port()?;
        let mut command = self.command()?;
        let started = Instant::now();
        self.child = Some(command.spawn().context("starting skiff server")?);
        self.wait_ready(started).await
    }

    fn command(&self) -> Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(skiff_binary());
        command
            .args(["server", "--bind-address", "127.0.0.1", "--disable-agent"])
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: the closure only makes one async-signal-safe syscall (prctl) in the
        // forked child before exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        Ok(command)
    }

    /// Polls `/readyz` over one kept-alive connection (reconnecting while the port is
    /// closed) every millisecond until it answers 200.
    async fn wait_ready(&mut self, started: Instant) -> Result<Duration> {
        let probe = Client::unverified(self.address())?;
        let readyz = Request::get("/readyz");
        while started.elapsed() < READY_TIMEOUT {
            self.fail_if_exited()?;
            let Ok(mut conn) = probe.connect().await else {
                tokio::time::sleep(PROBE_INTERVAL).await;
                continue;
            };
            while let Ok(response) = conn.send(&readyz).await {
                if response.status == 200 {
                    return Ok(started.elapsed());
                }
                self.fail_if_exited()?;
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        }
        bail!(
            "skiff server not ready after {READY_TIMEOUT:?}:\n{}",
            self.log_tail()
        )
    }

    fn fail_if_exited(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "skiff server exited early with {status}:\n{}",
                    self.log_tail()
                );
            }
        }
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL if it takes too long).
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        signal::kill(pid, Signal::SIGTERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill()?;
        child.wait()?;
        bail!("skiff server ignored SIGTERM for {STOP_TIMEOUT:?}; killed it")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
