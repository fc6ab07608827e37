//! Test harness: starts the real `skiff` binary on a free loopback port with a
//! temporary data dir, and drives it with the real `/usr/bin/kubectl`. Everything a
//! test starts is stopped by PID and removed when the harness is dropped, even when
//! the test fails.
#![allow(dead_code)]

pub mod images;
pub mod netns;
pub mod node;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(path.exists(), "fixture {} is missing", path.display());
    path
}

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    extra_args: Vec<String>,
    /// Runs the server's own node agent (no `--disable-agent`; needs root).
    with_agent: bool,
    /// The network namespace it runs in (`netns::TestNet`), kubectl too; None: the
    /// host's.
    pub netns: Option<String>,
    /// `--bind-address` (and the kubeconfig's address).
    bind: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Server {
        Self::start_with_config("", extra_args)
    }

    /// Starts a server that is a node too (its in-process agent), with `data` laid out
    /// by `prepare` (e.g. air-gap archives) before it starts.
    pub fn start_with_agent(prepare: impl FnOnce(&Path), extra_args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("config.yaml"), "").unwrap();
        let mut server = Server {
            child: None,
            dir,
            port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            with_agent: true,
            netns: None,
            bind: "127.0.0.1".into(),
        };
        prepare(&server.data_dir());
        server.launch();
        server
    }

    /// Starts with `config_yaml` as the server's config file.
    pub fn start_with_config(config_yaml: &str, extra_args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("config.yaml"), config_yaml).unwrap();
        let mut server = Server {
            child: None,
            dir,
            port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            with_agent: false,
            netns: None,
            bind: "127.0.0.1".into(),
        };
        server.launch();
        server
    }

    /// Starts a server that is a node too inside the network namespace `ns`
    /// (`netns::TestNet`), on `ip` port 6443 as bind, advertise and node address,
    /// with `data` laid out by `prepare` first. kubectl runs in `ns` too.
    pub fn start_in_netns(
        ns: &str,
        ip: &str,
        prepare: impl FnOnce(&Path),
        extra_args: &[&str],
    ) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("config.yaml"), "").unwrap();
        let mut args = vec!["--advertise-address", ip, "--node-ip", ip];
        args.extend_from_slice(extra_args);
        let mut server = Server {
            child: None,
            dir,
            port: 6443,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            with_agent: true,
            netns: Some(ns.to_string()),
            bind: ip.to_string(),
        };
        prepare(&server.data_dir());
        server.launch();
        server
    }

    /// `program` as a command in the server's network namespace (if any).
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => netns::command_in(ns, program),
            None => Command::new(program),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// With the server's own node: its bridge, sink and cgroup root, named from the
    /// data dir (`node::NodeScope`) so it touches no other node's.
    pub fn node_scope(&self) -> node::NodeScope {
        node::NodeScope::for_data(&self.data_dir()).in_netns(self.netns.as_deref())
    }

    fn node_args(&self) -> Vec<String> {
        if self.with_agent {
            self.node_scope().args()
        } else {
            Vec::new()
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("server/db/state.db")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let mut command = self.command(env!("CARGO_BIN_EXE_skiff"));
        command.args(["server", "--bind-address", &self.bind]);
        if !self.with_agent {
            command.arg("--disable-agent");
        }
        let child = command
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .args(self.node_args())
            .args(&self.extra_args)
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("skiff server exited early with {status}:\n{}", self.log());
            }
            let out = self.kubectl_raw(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("skiff server not ready after 30s:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    fn kubectl_raw(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path().join("home"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.kubectl_raw(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl and panics with its output if it fails; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args);
        assert!(
            ok,
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args);
        assert!(
            !ok,
            "kubectl {args:?} should have failed:\nstdout: {stdout}"
        );
        stderr
    }

    /// kubectl with a manifest on stdin (`-f -`).
    pub fn with_stdin(&self, args: &[&str], manifest: &str) -> (bool, String, String) {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(manifest.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kubectl get -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl printed JSON")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl Server {
    /// A kubeconfig that authenticates with `token` only (no client certificate).
    pub fn token_kubeconfig(&self, token: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("token-{:08x}.kubeconfig", rand::random::<u32>()));
        let ca = self.data_dir().join("server/tls/ca.crt");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
            self.port,
            ca.display()
        );
        std::fs::write(&path, config).unwrap();
        path
    }

    /// kubectl with only `token` as credentials: (success, stdout, stderr).
    pub fn kubectl_with_token(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.token_kubeconfig(token))
            .env("HOME", self.dir.path().join("home"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `skiff agent --simulate` process joined to a test server.
pub struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub name: String,
}

impl Agent {
    /// Starts `count` simulated nodes named `<name>` (or `<name>-<i>` when count > 1).
    pub fn start(server: &Server, name: &str, count: usize, extra_args: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Self::spawn(server, name, count, extra_args, dir.path());
        Agent {
            child: Some(child),
            dir,
            name: name.to_string(),
        }
    }

    /// The agent's data dir (its credentials are under `agent/credentials`).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the agent and starts it again on the same data dir (one node).
    pub fn restart(&mut self, server: &Server) {
        self.kill();
        self.child = Some(Self::spawn(server, &self.name, 1, &[], self.dir.path()));
    }

    fn spawn(server: &Server, name: &str, count: usize, extra_args: &[&str], dir: &Path) -> Child {
        let token = std::fs::read_to_string(server.data_dir().join("server/token")).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "agent",
                "--simulate",
                "--node-ip",
                "127.0.0.1",
                "--simulate-start-delay-ms",
                "200",
            ])
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", server.port))
            .arg("--token")
            .arg(token.trim())
            .arg("--node-name")
            .arg(name)
            .arg("--count")
            .arg(count.to_string())
            .arg("--data-dir")
            .arg(dir)
            .args(["--lease-interval-seconds", "2"])
            .args(extra_args)
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// SIGKILL: the node dies without a word.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server with `nodes` simulated nodes (`node-0`, `node-1`, …), each its own
/// process, all Ready.
pub fn cluster(nodes: usize) -> (Server, Vec<Agent>) {
    let server = Server::start();
    let agents: Vec<Agent> = (0..nodes)
        .map(|i| Agent::start(&server, &format!("node-{i}"), 1, &[]))
        .collect();
    let ready = eventually(Duration::from_secs(30), || {
        let out = server.kubectl(&["get", "nodes", "--no-headers"]).1;
        out.lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count()
            == nodes
    });
    assert!(
        ready,
        "nodes not ready:\n{}\n{}",
        server.ok(&["get", "nodes"]),
        agents[0].log()
    );
    (server, agents)
}

/// The pods of `selector` as JSON items.
pub fn pods(server: &Server, selector: &str) -> Vec<serde_json::Value> {
    server.get_json(&["pods", "-l", selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn is_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

pub fn is_terminating(pod: &serde_json::Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// A server and one real agent (`node::Agent`, named `e2e-node`) kept in
/// `<work>/agent`, whose air-gap directory holds `archives` and whose registries.yaml
/// is `registries`; returns once the node is Ready. Needs root.
pub fn node_cluster(work: &Path, archives: &[PathBuf], registries: &str) -> (Server, node::Agent) {
    let agent_dir = work.join("agent");
    let images_dir = agent_dir.join("data/agent/images");
    std::fs::create_dir_all(&images_dir).unwrap();
    for archive in archives {
        std::fs::copy(archive, images_dir.join(archive.file_name().unwrap())).unwrap();
    }
    std::fs::write(agent_dir.join("registries.yaml"), registries).unwrap();
    let server = Server::start();
    let skiff = Path::new(env!("CARGO_BIN_EXE_skiff"));
    let agent = node::Agent::start(skiff, server.port, &server.data_dir(), &agent_dir, &[]);
    let ready = eventually(Duration::from_secs(30), || {
        server
            .kubectl(&["get", "node", "e2e-node", "--no-headers"])
            .1
            .contains(" Ready")
    });
    assert!(ready, "node not ready:\n{}", agent.log());
    (server, agent)
}

/// A registries.yaml sending docker.io to a loopback port where nothing listens:
/// no pull leaves the machine.
pub fn offline_registries() -> String {
    let dead = free_port();
    format!("mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:{dead}\"]\n")
}

/// The busybox test image `busybox:e2e` (command `sh`) as an archive under `work`.
pub fn busybox_e2e_archive(work: &Path) -> PathBuf {
    images::busybox_image(work, "busybox:e2e", images::ImageConfigSpec::cmd(&["sh"]))
}

/// A server that is a node too (`--advertise-address 127.0.0.1`, then `extra_args`),
/// whose air-gap directory holds the image `archive`. Needs root.
pub fn start_server_node(archive: &Path, extra_args: &[&str]) -> Server {
    let mut args = vec!["--advertise-address", "127.0.0.1"];
    args.extend_from_slice(extra_args);
    Server::start_with_agent(
        |data| {
            let images_dir = data.join("agent/images");
            std::fs::create_dir_all(&images_dir).unwrap();
            std::fs::copy(archive, images_dir.join("busybox.tar")).unwrap();
        },
        &args,
    )
}

/// Runs `body` against `server` (a node too), then removes its pods, stops it by PID
/// and cleans its node, also when `body` panics (the panic goes on afterwards).
pub fn run_then_clean_node(mut server: Server, body: impl FnOnce(&Server)) {
    let data = server.data_dir();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&server)));
    let _ = server.kubectl(&["delete", "pods", "--all", "--timeout=30s"]);
    server.kill9();
    node::force_clean(&data);
    drop(server);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
