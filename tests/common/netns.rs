//! Several nodes on one machine, each in a network namespace of its own, joined by a
//! test "underlay" (issue 13): [`TestNet`] makes the namespaces and links,
//! [`NetCluster`] runs a `skiff server` node and `skiff agent`s in them. Needs root.
//!
//! Layout of one [`TestNet`] (`<id>` = `skt<pid>x<counter>`, unique per test):
//!
//! ```text
//!  netns <id>b   bridge `br0` (198.18.<k>.254/24, the underlay), ports p0, p1, …
//!  netns <id>n0  eth0 198.18.<k>.1/24 ── veth ── p0     (node 0: the server)
//!  netns <id>n1  eth0 198.18.<k>.2/24 ── veth ── p1     (node 1: an agent)
//!  …
//! ```
//!
//! The underlay is a /24 of 198.18.0.0/15, the range RFC 2544 sets aside for
//! benchmarking test networks, which no real network here uses (the machine's own is
//! 192.0.2.0/24, pods 10.42/16, services 10.43/16, the bystander 10.142/10.143). No
//! namespace has a default route, so nothing a node does can leave its test net; and
//! the host namespace has no route into it: kubectl runs inside the server's
//! namespace ([`crate::common::Server::start_in_netns`]).
//!
//! Processes run in a namespace with `nsenter --net=/run/netns/NS`, which enters
//! only the network namespace: the mount namespace stays the host's, so each node's
//! mounts (pods' rootfs, netns files under its data dir) are visible to the
//! leftover checks, and the data dirs are what keeps nodes apart on disk. (`ip netns
//! exec` would also give a private mount namespace and hide them.)
//!
//! A multi-node test, in short:
//!
//! ```ignore
//! let mut cluster = NetCluster::start(
//!     ClusterSpec::agents(2).node_args(&["--flannel-backend", "host-gw"]),
//! ); // node-a = server (198.18.k.1), node-b, node-c; all Ready with pod CIDRs
//! cluster.apply(manifest);                       // kubectl in node-a's namespace
//! cluster.server().ok(&["get", "pods", "-o", "wide"]);
//! netns::ok_in(cluster.ns(1), &["ip", "route"]); // a command on node-b
//! netns::run_in(&cluster.net.bridge_ns, &["ping", "-c1", cluster.ip(2)]); // from the underlay
//! cluster.kill_agent(2);                         // node-c dies (restarted at teardown)
//! let found = cluster.teardown();                // delete workloads, check, stop, clean
//! assert!(found.is_empty(), "{found:#?}");
//! ```
//!
//! Every node has the busybox test image `busybox:e2e` in its air-gap directory and
//! a registries.yaml that sends docker.io nowhere; [`ClusterSpec::with_test_resolver`]
//! gives the nodes `--resolv-conf` naming the underlay's [`Resolver`].
//!
//! Drop kills the processes [`TestNet::spawn_in`] started (by PID), then whatever
//! still runs in its namespaces (only ever started there by this test), and deletes
//! the namespaces, which takes their links, addresses, routes and rules along;
//! failures are collected and fail the test unless it already panics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::node::{self, NodeScope};
use super::{eventually, Server};

static NETS: AtomicU32 = AtomicU32::new(0);

/// The underlay's bridge inside the bridge namespace.
pub const UNDERLAY_BRIDGE: &str = "br0";
/// A node's underlay link inside its namespace.
pub const NODE_LINK: &str = "eth0";

pub use super::node::command_in;

/// Runs `args` in `ns`; returns its output (a failure to start is a failed output).
pub fn run_in(ns: &str, args: &[&str]) -> Output {
    command_in(ns, args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?} in {ns}: {e}"))
}

/// Runs `args` in `ns`, panicking with its stderr when it fails; returns stdout.
pub fn ok_in(ns: &str, args: &[&str]) -> String {
    let out = run_in(ns, args);
    assert!(
        out.status.success(),
        "{args:?} in {ns} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One node's place on the test net.
#[derive(Debug, Clone)]
pub struct NetNode {
    /// The network namespace (`/run/netns/<ns>`).
    pub ns: String,
    /// The node's underlay address (without prefix length).
    pub ip: String,
}

/// Namespaces and an underlay bridge for `nodes` nodes; removed on drop.
pub struct TestNet {
    pub id: String,
    /// The namespace holding the underlay bridge.
    pub bridge_ns: String,
    /// The third octet of the underlay 198.18.<k>.0/24.
    k: u8,
    pub nodes: Vec<NetNode>,
    children: Vec<Child>,
    namespaces: Vec<String>,
}

impl TestNet {
    /// Makes the bridge namespace and `nodes` node namespaces; panics (after undoing
    /// what it made) when the kernel refuses.
    pub fn new(nodes: usize) -> TestNet {
        assert!(nodes < 250, "at most 249 nodes on one test net");
        sweep_dead_runs();
        let n = NETS.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let id = format!("skt{pid}x{n}");
        let k = ((pid as u64 * 7 + n as u64) % 256) as u8;
        let mut net = TestNet {
            bridge_ns: format!("{id}b"),
            id,
            k,
            nodes: Vec::new(),
            children: Vec::new(),
            namespaces: Vec::new(),
        };
        if let Err(e) = net.build(nodes) {
            panic!("making the test net {}: {e}", net.id);
        }
        net
    }

    fn build(&mut self, nodes: usize) -> Result<(), String> {
        let br = self.bridge_ns.clone();
        self.add_namespace(&br)?;
        ip(&["-n", &br, "link", "add", UNDERLAY_BRIDGE, "type", "bridge"])?;
        ip(&[
            "-n",
            &br,
            "addr",
            "add",
            &format!("{}/24", self.bridge_ip()),
            "dev",
            UNDERLAY_BRIDGE,
        ])?;
        ip(&["-n", &br, "link", "set", UNDERLAY_BRIDGE, "up"])?;
        for i in 0..nodes {
            let ns = format!("{}n{i}", self.id);
            self.add_namespace(&ns)?;
            let port = format!("p{i}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", NODE_LINK,
                "netns", &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", UNDERLAY_BRIDGE])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            let node_ip = format!("198.18.{}.{}", self.k, i + 1);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{node_ip}/24"),
                "dev",
                NODE_LINK,
            ])?;
            ip(&["-n", &ns, "link", "set", NODE_LINK, "up"])?;
            self.nodes.push(NetNode { ns, ip: node_ip });
        }
        Ok(())
    }

    fn add_namespace(&mut self, ns: &str) -> Result<(), String> {
        ip(&["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    /// The underlay, `198.18.<k>.0/24`.
    pub fn subnet(&self) -> String {
        format!("198.18.{}.0/24", self.k)
    }

    /// The bridge's own address on the underlay (for test services such as an
    /// upstream resolver, and captures).
    pub fn bridge_ip(&self) -> String {
        format!("198.18.{}.254", self.k)
    }

    pub fn node(&self, i: usize) -> &NetNode {
        &self.nodes[i]
    }

    /// Starts `args` in `ns` with stdout and stderr to `log`; killed (by PID) on drop.
    /// Returns its PID.
    pub fn spawn_in(&mut self, ns: &str, args: &[&str], log: &Path) -> u32 {
        let out = std::fs::File::create(log).expect("log file");
        let child = command_in(ns, args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?} in {ns}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Stops a process [`TestNet::spawn_in`] started (SIGTERM, so captures flush).
    pub fn stop(&mut self, pid: u32) {
        if let Some(at) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.remove(at);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let stopped = eventually(Duration::from_secs(5), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Where the nodes on this net are recorded for [`sweep_dead_runs`].
    fn record_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}.skiff-testnet", self.id))
    }

    /// Records that a node with data dir `data` runs in `ns`, so that a later test
    /// run can clean it up should this process be killed before its drop.
    pub fn record_node(&self, ns: &str, data: &Path) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.record_path())
            .expect("the test net's record");
        writeln!(file, "{ns} {}", data.display()).unwrap();
    }

    /// Tears everything down now; returns what could not be removed.
    pub fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        let _ = std::fs::remove_file(self.record_path());
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            kill_all_in(&ns);
            if let Err(e) = ip(&["netns", "del", &ns]) {
                errors.push(e);
            }
            if Path::new("/run/netns").join(&ns).exists() {
                errors.push(format!("namespace {ns} still exists"));
            }
        }
        errors
    }
}

/// Cleans up after test processes that were killed before their drop ran (a
/// timeout, SIGKILL): test nets `skt<pid>x…` whose `<pid>` is gone. What still runs
/// in their namespaces is killed by PID, the nodes recorded for them
/// ([`TestNet::record_node`]) are cleaned (`node::force_clean_in`: container
/// processes by recorded PID, mounts, cgroups), then the namespaces are deleted.
fn sweep_dead_runs() {
    let dead = |name: &str| -> bool {
        name.strip_prefix("skt")
            .and_then(|rest| rest.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|ns| dead(ns))
        .collect();
    for ns in &namespaces {
        kill_all_in(ns);
    }
    let records: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "skiff-testnet"))
        .filter(|p| p.file_stem().is_some_and(|s| dead(&s.to_string_lossy())))
        .collect();
    let scopes: Vec<NodeScope> = records
        .iter()
        .flat_map(|r| {
            std::fs::read_to_string(r)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| {
            let (ns, data) = line.split_once(' ')?;
            Some(NodeScope::for_data(Path::new(data)).in_netns(Some(ns)))
        })
        .collect();
    // Twice: cgroups of just-killed containers go only once they have exited.
    for _ in 0..2 {
        for scope in &scopes {
            node::force_clean_in(scope);
        }
        if !scopes.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    for ns in &namespaces {
        let _ = ip(&["netns", "del", ns]);
    }
    for record in records {
        let _ = std::fs::remove_file(record);
    }
}

/// SIGKILLs what still runs in the test's own namespace `ns` (by PID).
fn kill_all_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| *p > 1 && *p != std::process::id() as i32)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let errors = self.teardown();
        if !errors.is_empty() {
            eprintln!("test net {} not fully removed: {errors:?}", self.id);
            if !std::thread::panicking() {
                panic!("test net {} not fully removed: {errors:?}", self.id);
            }
        }
    }
}

// ---------------------------------------------------------------- clusters

/// How a [`NetCluster`] is started.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    /// Agents besides the server's own node.
    pub agents: usize,
    /// Flags for every node (server and agents), e.g. `--flannel-backend host-gw`.
    pub node_args: Vec<String>,
    /// Flags for the server only.
    pub server_args: Vec<String>,
    /// Air-gap archives put in every node's `agent/images` (the busybox test image
    /// `busybox:e2e` is always there).
    pub archives: Vec<PathBuf>,
    /// Gives every node `--resolv-conf` naming the underlay's bridge address, where
    /// a test runs its [`Resolver`] as the cluster's upstream DNS.
    pub test_resolver: bool,
}

impl ClusterSpec {
    pub fn agents(agents: usize) -> ClusterSpec {
        ClusterSpec {
            agents,
            ..ClusterSpec::default()
        }
    }

    pub fn node_args(mut self, args: &[&str]) -> ClusterSpec {
        self.node_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn with_test_resolver(mut self) -> ClusterSpec {
        self.test_resolver = true;
        self
    }

    pub fn server_args(mut self, args: &[&str]) -> ClusterSpec {
        self.server_args.extend(args.iter().map(|s| s.to_string()));
        self
    }
}

/// Node names: the server's node is `node-a`, the agents `node-b`, `node-c`, …
pub fn node_name(i: usize) -> String {
    format!("node-{}", (b'a' + i as u8) as char)
}

/// A cluster on a [`TestNet`]: node 0 is `skiff server` (a node too), nodes 1.. are
/// `skiff agent`s joined over the underlay, each with its own data dir, bridge, sink
/// and cgroup root ([`NodeScope`]). Drop deletes the workloads, stops every node by
/// PID, cleans what their pods left ([`node::force_clean_in`]) and removes the net.
pub struct NetCluster {
    server: Option<Server>,
    pub agents: Vec<Option<node::Agent>>,
    pub net: TestNet,
    /// Registries, image builds, agents' dirs.
    pub work: tempfile::TempDir,
    scopes: Vec<NodeScope>,
    torn_down: bool,
}

impl NetCluster {
    /// Starts the cluster and waits until every node is Ready.
    pub fn start(spec: ClusterSpec) -> NetCluster {
        let work = tempfile::tempdir().expect("temp dir");
        let net = TestNet::new(spec.agents + 1);
        let mut archives = vec![super::busybox_e2e_archive(work.path())];
        archives.extend(spec.archives.iter().cloned());
        let registries = work.path().join("registries.yaml");
        std::fs::write(&registries, offline_registries()).unwrap();
        let mut spec = spec;
        if spec.test_resolver {
            let resolv = work.path().join("resolv.conf");
            std::fs::write(&resolv, format!("nameserver {}\n", net.bridge_ip())).unwrap();
            spec.node_args
                .extend(["--resolv-conf".to_string(), resolv.display().to_string()]);
        }
        let mut cluster = NetCluster {
            server: None,
            agents: Vec::new(),
            net,
            work,
            scopes: Vec::new(),
            torn_down: false,
        };
        let server_node = cluster.net.node(0).clone();
        let mut server_args: Vec<String> = vec![
            "--node-name".into(),
            node_name(0),
            "--private-registry".into(),
            registries.display().to_string(),
            "--disable-default-registry-endpoint".into(),
            "--lease-interval-seconds".into(),
            "2".into(),
        ];
        server_args.extend(spec.node_args.iter().cloned());
        server_args.extend(spec.server_args.iter().cloned());
        let args: Vec<&str> = server_args.iter().map(String::as_str).collect();
        let server = Server::start_in_netns(
            &server_node.ns,
            &server_node.ip,
            |data| {
                cluster.net.record_node(&server_node.ns, data);
                copy_archives(data, &archives)
            },
            &args,
        );
        cluster.scopes.push(server.node_scope());
        let server_url = format!("https://{}:{}", server_node.ip, server.port);
        let server_data = server.data_dir();
        cluster.server = Some(server);
        let skiff = Path::new(env!("CARGO_BIN_EXE_skiff"));
        for i in 1..=spec.agents {
            let place = node::Place {
                name: node_name(i),
                node_ip: cluster.net.node(i).ip.clone(),
                server_url: server_url.clone(),
                netns: Some(cluster.net.node(i).ns.clone()),
            };
            let dir = cluster.work.path().join(node_name(i));
            cluster
                .net
                .record_node(&place.netns.clone().unwrap(), &dir.join("data"));
            copy_archives(&dir.join("data"), &archives);
            std::fs::copy(&registries, dir.join("registries.yaml")).unwrap();
            let args: Vec<&str> = spec.node_args.iter().map(String::as_str).collect();
            let agent = node::Agent::start_at(skiff, &place, &server_data, &dir, &args);
            cluster.scopes.push(agent.scope());
            cluster.agents.push(Some(agent));
        }
        cluster.wait_nodes_ready(spec.agents + 1);
        cluster
    }

    /// Waits until `count` nodes are Ready and have their pod CIDRs.
    fn wait_nodes_ready(&self, count: usize) {
        let ready = eventually(Duration::from_secs(60), || {
            let (ok, out, _) = self.server().kubectl(&["get", "nodes", "-o", "json"]);
            let nodes: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let ready = nodes["items"].as_array().into_iter().flatten().filter(|n| {
                let ready = n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                ready && n["spec"]["podCIDR"].is_string()
            });
            ok && ready.count() == count
        });
        assert!(
            ready,
            "nodes not ready:\n{}\nserver log:\n{}\n{}",
            self.server().kubectl(&["get", "nodes", "-o", "wide"]).1,
            tail(&self.server().log(), 30),
            self.agents
                .iter()
                .flatten()
                .map(|a| format!("agent log:\n{}", tail(&a.log(), 30)))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("the server runs")
    }

    pub fn server_mut(&mut self) -> &mut Server {
        self.server.as_mut().expect("the server runs")
    }

    /// The number of nodes (server included).
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Node `i`'s name (`node-a` is the server).
    pub fn name(&self, i: usize) -> String {
        node_name(i)
    }

    /// Node `i`'s underlay address.
    pub fn ip(&self, i: usize) -> &str {
        &self.net.node(i).ip
    }

    /// Node `i`'s network namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.net.node(i).ns
    }

    /// Node `i`'s host names, in its namespace.
    pub fn scope(&self, i: usize) -> &NodeScope {
        &self.scopes[i]
    }

    /// Runs `args` in node `i`'s namespace.
    pub fn run_on(&self, i: usize, args: &[&str]) -> Output {
        run_in(self.ns(i), args)
    }

    /// The agent of node `i` (`i` ≥ 1).
    pub fn agent(&self, i: usize) -> &node::Agent {
        self.agents[i - 1].as_ref().expect("the agent runs")
    }

    /// SIGKILLs node `i`'s agent (`i` ≥ 1): the node dies without a word; its pods'
    /// containers keep running until the teardown.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(agent) = self.agents[i - 1].as_mut() {
            agent.kill9();
        }
    }

    /// Starts node `i`'s agent again (same data dir, name and namespace).
    pub fn restart_agent(&mut self, i: usize) {
        if let Some(agent) = self.agents[i - 1].as_mut() {
            agent.restart();
        }
    }

    /// Logs of every node, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut text = format!("server log:\n{}\n", tail(&self.server().log(), lines));
        for (i, agent) in self.agents.iter().enumerate() {
            if let Some(agent) = agent {
                text += &format!("{} log:\n{}\n", node_name(i + 1), tail(&agent.log(), lines));
            }
        }
        text
    }

    /// Applies `manifest` with kubectl (in the server's namespace).
    pub fn apply(&self, manifest: &str) {
        let (ok, out, err) = self.server().with_stdin(&["apply", "-f", "-"], manifest);
        assert!(ok, "apply failed: {out}{err}");
    }

    /// Deletes the workloads and Services the test made (the `kubernetes` Service
    /// stays) and waits until no pod is left, then checks every node: what its pods
    /// left (`node::leftovers_in`, in its namespace). Returns the findings.
    pub fn delete_workloads(&self) -> Vec<String> {
        let server = self.server();
        let mut found = Vec::new();
        let (ok, _, err) = server.kubectl(&[
            "delete",
            "deployments,replicasets,pods",
            "--all",
            "--all-namespaces",
            "--timeout=90s",
        ]);
        if !ok {
            found.push(format!("deleting the workloads: {err}"));
        }
        let services = server.get_json(&["services", "--all-namespaces"]);
        for svc in services["items"].as_array().into_iter().flatten() {
            let (ns, name) = (
                svc["metadata"]["namespace"].as_str().unwrap_or("default"),
                svc["metadata"]["name"].as_str().unwrap_or_default(),
            );
            if ns == "default" && name == "kubernetes" {
                continue;
            }
            let _ = server.kubectl(&["delete", "service", name, "-n", ns]);
        }
        let gone = eventually(Duration::from_secs(60), || {
            server
                .kubectl(&["get", "pods", "-A", "--no-headers"])
                .1
                .trim()
                .is_empty()
        });
        if !gone {
            found.push(format!(
                "pods not gone: {}",
                server.kubectl(&["get", "pods", "-A", "-o", "wide"]).1
            ));
        }
        let scopes: Vec<NodeScope> = self
            .scopes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i == 0 || self.agents[i - 1].is_some())
            .map(|(_, s)| s.clone())
            .collect();
        let clean = eventually(Duration::from_secs(30), || {
            scopes.iter().all(|s| node::leftovers_in(s).is_empty())
        });
        if !clean {
            for scope in &scopes {
                found.extend(node::leftovers_in(scope));
            }
        }
        found
    }

    /// Stops every node by PID (SIGKILL, as the other harnesses do).
    pub fn stop_nodes(&mut self) {
        for agent in self.agents.iter_mut().flatten() {
            agent.kill9();
        }
        if let Some(server) = self.server.as_mut() {
            server.kill9();
        }
    }

    /// Stops every node as a service manager would: SIGTERM, up to 30 s to finish,
    /// SIGKILL after that.
    pub fn stop_nodes_gracefully(&mut self) {
        let mut pids: Vec<u32> = self
            .agents
            .iter()
            .flatten()
            .filter_map(|a| a.pid())
            .collect();
        pids.extend(self.server.as_ref().map(|s| s.pid()));
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        eventually(Duration::from_secs(30), || pids.iter().all(|p| exited(*p)));
        self.stop_nodes();
    }

    /// What is left in node `i`'s namespace besides its underlay: links other than
    /// `lo` and `eth0`, routes other than the underlay's, nftables tables and
    /// iptables rules. For after [`NetCluster::stop_nodes`].
    pub fn namespace_leftovers(&self, i: usize) -> Vec<String> {
        let ns = self.ns(i);
        let text = |args: &[&str]| String::from_utf8_lossy(&run_in(ns, args).stdout).into_owned();
        let mut found = Vec::new();
        for line in text(&["ip", "-o", "link", "show"]).lines() {
            let name = line.split(": ").nth(1).unwrap_or("").split('@').next();
            if !matches!(name, Some("lo") | Some(NODE_LINK)) {
                found.push(format!("link {line}"));
            }
        }
        let underlay = self.net.subnet();
        for line in text(&["ip", "-4", "route", "show", "table", "all"]).lines() {
            let local = line.starts_with("local ") || line.starts_with("broadcast ");
            if !local && !line.starts_with(&underlay) {
                found.push(format!("route {line}"));
            }
        }
        // Tables of iptables-nft (ip nat, ip filter, …) stay once made, empty; their
        // rules are in iptables -S below. Any other table is a leftover.
        let iptables_tables = ["nat", "filter", "mangle", "raw", "security"];
        for line in text(&["nft", "list", "tables"]).lines() {
            let mut words = line.split_whitespace().skip(1);
            let (family, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let iptables = matches!(family, "ip" | "ip6") && iptables_tables.contains(&name);
            if !iptables {
                found.push(format!("nft {line}"));
            }
        }
        for table in ["nat", "filter", "mangle"] {
            for line in text(&["iptables", "-t", table, "-S"]).lines() {
                if !line.starts_with("-P ") {
                    found.push(format!("iptables -t {table} {line}"));
                }
            }
        }
        found
    }

    /// The whole teardown, checked: deletes the workloads, checks what pods left,
    /// stops the nodes, cleans by force whatever is left, then removes the net.
    /// Returns every finding (empty: clean). Drop does the same without checking.
    pub fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        // A stopped server and killed agents come back, so that pods can be deleted
        // and cleaned through the API.
        if let Some(server) = self.server.as_mut() {
            if server.child.is_none() {
                server.restart();
            }
        }
        for agent in self.agents.iter_mut().flatten() {
            if agent.pid().is_none() {
                agent.restart();
            }
        }
        let mut found = if self.server.is_some() {
            self.delete_workloads()
        } else {
            Vec::new()
        };
        self.stop_nodes();
        for scope in &self.scopes {
            node::force_clean_in(scope);
        }
        self.torn_down = true;
        // What would outlive the test on the host (files go with the temp dirs).
        for scope in &self.scopes {
            found.extend(
                node::leftovers_in(scope)
                    .into_iter()
                    .filter(|l| l.starts_with("mount ") || l.starts_with("cgroup "))
                    .map(|l| format!("after forced clean-up: {l}")),
            );
        }
        found.extend(self.net.teardown());
        for ns in self.net.nodes.iter().map(|n| &n.ns) {
            if Path::new("/run/netns").join(ns).exists() {
                found.push(format!("namespace {ns} left"));
            }
        }
        found
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        let found = self.teardown();
        if !found.is_empty() {
            eprintln!("cluster teardown found: {found:?}");
        }
    }
}

/// Whether process `pid` (our child) has exited: gone or a zombie.
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

fn copy_archives(data: &Path, archives: &[PathBuf]) {
    let images = data.join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    for archive in archives {
        std::fs::copy(archive, images.join(archive.file_name().unwrap())).unwrap();
    }
}

/// registries.yaml sending docker.io to a dead loopback port: pulls fail at once
/// (and a namespace has no route out anyway).
fn offline_registries() -> String {
    "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:9\"]\n".to_string()
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------- a test resolver

/// A DNS resolver on the underlay (the bridge namespace's `bridge_ip():53/udp`) that
/// answers A queries for its `records` and NXDOMAIN for anything else: the
/// "upstream" a cluster's DNS forwards external names to. Stops on drop.
pub struct Resolver {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The names asked, lowercase, without the final dot.
    pub asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Resolver {
    pub fn start(net: &TestNet, records: &[(&str, &str)]) -> Resolver {
        let ns = PathBuf::from("/run/netns").join(&net.bridge_ns);
        let addr = format!("{}:53", net.bridge_ip());
        let records: Vec<(String, std::net::Ipv4Addr)> = records
            .iter()
            .map(|(n, ip)| (n.to_lowercase(), ip.parse().expect("an IPv4 address")))
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, asked) = (stop.clone(), asked.clone());
            std::thread::spawn(move || {
                // Only this thread enters the namespace.
                let file = std::fs::File::open(&ns).expect("the bridge namespace");
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("entering the bridge namespace");
                let socket = std::net::UdpSocket::bind(&addr).expect("binding the resolver");
                socket
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some((name, reply)) = dns_reply(&buf[..len], &records) {
                        asked.lock().unwrap().push(name);
                        let _ = socket.send_to(&reply, from);
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the resolver did not start");
        Resolver {
            stop,
            asked,
            thread: Some(thread),
        }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The answer to one DNS query (RFC 1035): A records from `records`, NXDOMAIN for
/// unknown names; None for what is not a query.
fn dns_reply(query: &[u8], records: &[(String, std::net::Ipv4Addr)]) -> Option<(String, Vec<u8>)> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = &query[12..at + 4];
    let name = labels.join(".");
    let known: Vec<_> = records.iter().filter(|(n, _)| *n == name).collect();
    let answers: Vec<_> = if qtype == 1 {
        known.clone()
    } else {
        Vec::new()
    };
    let rcode = if known.is_empty() { 3 } else { 0 };
    let mut reply = Vec::new();
    reply.extend_from_slice(&query[..2]);
    reply.extend_from_slice(&[0x80 | (query[2] & 0x01), 0x80 | rcode]);
    reply.extend_from_slice(&[0, 1]);
    reply.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(question);
    for (_, ip) in answers {
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some((name, reply))
}
