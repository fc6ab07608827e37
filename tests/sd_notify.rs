//! systemd's readiness protocol (`Type=notify`): with `NOTIFY_SOCKET` set, `skiff
//! server` sends `READY=1` once its API answers /readyz and its own node is Ready (at
//! once with `--disable-agent`), `skiff agent` once its node is Ready, and both send
//! `STOPPING=1` on SIGTERM. The test is the service manager: it binds the datagram
//! socket (a file, or `@name` in the abstract namespace) and starts the real binary
//! with `NOTIFY_SOCKET` pointing at it. The agent joins with `--token-file`, one
//! server takes its token from `--token-file`.
//!
//! Each check is taken after the datagram arrived, so it can only fail when skiff sent
//! too early (readiness only grows during start-up): /readyz must already answer and
//! the node must already be Ready when `READY=1` is read.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{node, Server, KUBECTL};

const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The service manager's end: a datagram socket in a temp dir.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// A datagram if one is queued.
    fn try_recv(&self) -> Option<String> {
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("reading the notify socket: {e}"),
        }
    }

    /// The next datagram within `timeout`.
    fn recv_within(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(message) = self.try_recv() {
                return Some(message);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A `skiff server` or `skiff agent` this test started, killed by PID when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(mut command: Command, log: PathBuf) -> Process {
        let stderr = std::fs::File::create(&log).unwrap();
        let child = command
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start skiff");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("skiff exited early with {status}:\n{}", self.log());
        }
    }

    fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits for the process to exit after a stop signal.
    fn exits_within(&mut self, timeout: Duration) -> bool {
        common::eventually(timeout, || self.child.try_wait().unwrap().is_some())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server's files in one temp dir, as tests/common lays them out.
struct ServerDir {
    dir: tempfile::TempDir,
    port: u16,
}

impl ServerDir {
    fn new() -> ServerDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("config.yaml"), "").unwrap();
        ServerDir {
            dir,
            port: free_port(),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    fn server_command(&self, notify: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        command
            .args(["server", "--bind-address", "127.0.0.1"])
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.data())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .env("NOTIFY_SOCKET", notify);
        command
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path().join("home"))
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn readyz(&self) -> bool {
        self.kubeconfig().exists() && self.kubectl(&["get", "--raw", "/readyz"]).0
    }
}

/// `kubectl`'s view of `node`'s Ready condition ("True", "False", "Unknown", or empty).
fn node_ready(kubectl: impl Fn(&[&str]) -> (bool, String), node: &str) -> String {
    kubectl(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ])
    .1
}

/// Waits for the first datagram of `process`, probing /readyz of `dir` meanwhile;
/// the datagram must be `READY=1` and /readyz must answer when it is read.
fn first_message_is_ready_after_readyz(
    socket: &NotifySocket,
    process: &mut Process,
    dir: &ServerDir,
) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no READY=1 within {START_TIMEOUT:?}:\n{}",
            process.log()
        );
        process.assert_running();
        let message = socket.try_recv();
        let ready = dir.readyz();
        if let Some(message) = message {
            assert_eq!(message, "READY=1", "{}", process.log());
            assert!(
                ready,
                "READY=1 arrived before /readyz answered:\n{}",
                process.log()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stops_with_stopping(socket: &NotifySocket, process: &mut Process) {
    process.sigterm();
    let message = socket.recv_within(Duration::from_secs(20));
    assert_eq!(
        message.as_deref(),
        Some("STOPPING=1"),
        "no STOPPING=1 after SIGTERM:\n{}",
        process.log()
    );
    assert!(
        process.exits_within(Duration::from_secs(30)),
        "skiff did not exit after SIGTERM:\n{}",
        process.log()
    );
}

#[test]
fn a_server_without_agent_is_ready_once_its_api_answers_and_stops_on_sigterm() {
    let socket = NotifySocket::bind();
    let dir = ServerDir::new();
    let mut command = dir.server_command(&socket.path);
    command.arg("--disable-agent");
    let mut server = Process::spawn(command, dir.dir.path().join("server.log"));
    first_message_is_ready_after_readyz(&socket, &mut server, &dir);
    assert_eq!(socket.try_recv(), None, "one READY=1 only");
    stops_with_stopping(&socket, &mut server);
}

#[test]
fn an_abstract_socket_is_told_too_and_the_server_takes_its_token_from_a_file() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("skiff-sd-notify-e2e-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    let dir = ServerDir::new();
    let token_file = dir.dir.path().join("token-file");
    std::fs::write(&token_file, "  e2e-file-secret\n").unwrap();
    let mut command = dir.server_command(Path::new(&format!("@{name}")));
    command
        .arg("--disable-agent")
        .arg("--token-file")
        .arg(&token_file)
        .env_remove("SKIFF_TOKEN");
    let mut server = Process::spawn(command, dir.dir.path().join("server.log"));
    socket.set_read_timeout(Some(START_TIMEOUT)).unwrap();
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1 on @{name}: {e}\n{}", server.log()));
    assert_eq!(&buf[..n], b"READY=1", "{}", server.log());
    assert!(dir.readyz(), "READY=1 before /readyz answered");
    let token = std::fs::read_to_string(dir.data().join("server/token")).unwrap();
    assert!(
        token.trim().ends_with("::server:e2e-file-secret"),
        "the cluster token is not made from the file's secret: {token}"
    );
    server.sigterm();
    assert!(
        server.exits_within(Duration::from_secs(30)),
        "{}",
        server.log()
    );
}

/// Runs `body`, then stops what it started and removes the node's host state (links,
/// cgroups, rules) under `data`, also when `body` panics.
fn then_clean_node(data: &Path, body: impl FnOnce()) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    node::force_clean(data);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
#[ignore = "needs root"]
fn a_server_with_its_node_is_ready_once_the_node_is_ready() {
    let socket = NotifySocket::bind();
    let dir = ServerDir::new();
    let data = dir.data();
    then_clean_node(&data, || {
        let name = "sd-notify-server";
        let mut command = dir.server_command(&socket.path);
        command
            .args(["--advertise-address", "127.0.0.1", "--node-name", name])
            .arg("--kubelet-port")
            .arg(free_port().to_string())
            .args(node::NodeScope::for_data(&data).args());
        let mut server = Process::spawn(command, dir.dir.path().join("server.log"));
        first_message_is_ready_after_readyz(&socket, &mut server, &dir);
        assert_eq!(
            node_ready(|a| dir.kubectl(a), name),
            "True",
            "READY=1 arrived before the node was Ready:\n{}",
            server.log()
        );
        stops_with_stopping(&socket, &mut server);
    });
}

#[test]
#[ignore = "needs root"]
fn an_agent_joined_with_a_token_file_is_ready_once_its_node_is_ready() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let token_file = work.path().join("token");
    // The server's token file, as an installer would hand it over: trailing newline.
    let token = std::fs::read_to_string(server.data_dir().join("server/token")).unwrap();
    std::fs::write(&token_file, format!("{}\n", token.trim())).unwrap();
    let socket = NotifySocket::bind();
    then_clean_node(&data, || {
        let name = "sd-notify-agent";
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        command
            .args(["agent", "--node-name", name, "--node-ip", "127.0.0.1"])
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", server.port))
            .arg("--token-file")
            .arg(&token_file)
            .arg("--data-dir")
            .arg(&data)
            .arg("--kubelet-port")
            .arg(free_port().to_string())
            .args(node::NodeScope::for_data(&data).args())
            .env_remove("SKIFF_TOKEN")
            .env("NOTIFY_SOCKET", &socket.path);
        let mut agent = Process::spawn(command, work.path().join("agent.log"));
        let deadline = Instant::now() + START_TIMEOUT;
        let message = loop {
            assert!(
                Instant::now() < deadline,
                "no READY=1 within {START_TIMEOUT:?}:\n{}",
                agent.log()
            );
            agent.assert_running();
            if let Some(message) = socket.try_recv() {
                break message;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(message, "READY=1", "{}", agent.log());
        let kubectl = |args: &[&str]| {
            let (ok, out, _) = server.kubectl(args);
            (ok, out)
        };
        let ready = node_ready(kubectl, name);
        assert_eq!(
            ready,
            "True",
            "READY=1 arrived before the node was Ready:\n{}",
            agent.log()
        );
        stops_with_stopping(&socket, &mut agent);
    });
}
