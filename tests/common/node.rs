//! A real node agent for end-to-end tests and benchmarks: the `skiff agent` process,
//! what pods may leave behind on the node, and a forced clean-up of everything a node
//! makes (processes by their recorded PIDs, mounts, cgroups, links, CNI chains) for
//! when a test fails half-way. Needs root.
//!
//! Scoped: every node a test starts gets its own host names (`NodeScope`, derived from
//! its data dir: bridge `e2e<id>`, sink `e2e<id>-sink`, cgroup root `/skiff-e2e-<id>`),
//! and the leftover check and the clean-up look only at what that node could have
//! made. Other skiff nodes on the machine (a real cluster, another test) are never
//! touched.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `Command` running `program` in the network namespace `/run/netns/<ns>` only
/// (`nsenter --net`: mounts stay the host's; see `netns.rs`).
pub fn command_in(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}")).arg(program);
    cmd
}

/// The host names one node owns, derived from its data dir so that a test (and the
/// clean-up after a failed test) finds them from the data dir alone.
#[derive(Debug, Clone)]
pub struct NodeScope {
    pub data: PathBuf,
    /// `--cni-bridge`: at most 10 characters, so the sink name fits Linux's 15.
    pub bridge: String,
    /// `--cgroup-root`.
    pub cgroup_root: String,
    /// The network namespace the node runs in (`netns::TestNet`); None: the host's.
    /// Links and rules are looked at there.
    pub netns: Option<String>,
}

impl NodeScope {
    pub fn for_data(data: &Path) -> NodeScope {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut hasher);
        let id = format!("{:06x}", hasher.finish() & 0xff_ffff);
        NodeScope {
            data: data.to_path_buf(),
            bridge: format!("e2e{id}"),
            cgroup_root: format!("/skiff-e2e-{id}"),
            netns: None,
        }
    }

    /// The same names for a node in the network namespace `netns`.
    pub fn in_netns(mut self, netns: Option<&str>) -> NodeScope {
        self.netns = netns.map(str::to_string);
        self
    }

    /// `program` as a command in the node's network namespace.
    pub fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => command_in(ns, program),
            None => Command::new(program),
        }
    }

    /// The service sink link (skiff names it `<bridge>-sink`).
    pub fn sink(&self) -> String {
        format!("{}-sink", self.bridge)
    }

    /// The node flags that give an agent (or a server's node) these names.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cni-bridge".into(),
            self.bridge.clone(),
            "--cgroup-root".into(),
            self.cgroup_root.clone(),
        ]
    }

    /// The cgroup root's directories, on cgroup v1 (one per controller) or v2.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let relative = self.cgroup_root.trim_start_matches('/');
        let base = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![base.join(relative)];
        for controller in std::fs::read_dir(base).into_iter().flatten().flatten() {
            dirs.push(controller.path().join(relative));
        }
        dirs.into_iter().filter(|d| d.is_dir()).collect()
    }

    /// The bridge's subnet (`10.42.0.1/24` → network and prefix) while it exists.
    fn bridge_subnet(&self) -> Option<(u32, u32)> {
        let out = self
            .command("ip")
            .args(["-4", "-o", "addr", "show", "dev", &self.bridge])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let cidr = text
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)?
            .to_string();
        parse_cidr(&cidr)
    }
}

/// `a.b.c.d/n` → (address, prefix length).
fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (ip, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some((u32::from(ip), len.parse().ok()?))
}

fn in_subnet(cidr: &str, subnet: (u32, u32)) -> bool {
    let Some((ip, _)) = parse_cidr(cidr) else {
        return false;
    };
    let mask = if subnet.1 == 0 {
        0
    } else {
        u32::MAX << (32 - subnet.1)
    };
    ip & mask == subnet.0 & mask
}

/// A real `skiff agent` process named `e2e-node`, on 127.0.0.1, with its own bridge,
/// sink and cgroup root (`NodeScope::for_data` of its data dir); or, started with
/// [`Agent::start_at`], wherever a [`Place`] says.
pub struct Agent {
    skiff: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    server_port: u16,
    token: String,
    kubelet_port: u16,
    extra: Vec<String>,
    place: Place,
}

/// Where an agent runs and whom it joins.
#[derive(Debug, Clone)]
pub struct Place {
    /// `--node-name`.
    pub name: String,
    /// `--node-ip`.
    pub node_ip: String,
    /// `--server`.
    pub server_url: String,
    /// The network namespace to run in (`netns::TestNet`); None: the host's.
    pub netns: Option<String>,
}

impl Agent {
    /// Starts `skiff agent` for the server on `server_port` with the token in
    /// `server_data/server/token`, keeping its data, log and registries.yaml in `dir`.
    pub fn start(
        skiff: &Path,
        server_port: u16,
        server_data: &Path,
        dir: &Path,
        extra: &[&str],
    ) -> Agent {
        let place = Place {
            name: "e2e-node".into(),
            node_ip: "127.0.0.1".into(),
            server_url: format!("https://127.0.0.1:{server_port}"),
            netns: None,
        };
        Self::start_at(skiff, &place, server_data, dir, extra)
    }

    /// Starts `skiff agent` at `place`, with the token in
    /// `server_data/server/token`, keeping its data, log and registries.yaml in `dir`.
    pub fn start_at(
        skiff: &Path,
        place: &Place,
        server_data: &Path,
        dir: &Path,
        extra: &[&str],
    ) -> Agent {
        let token = std::fs::read_to_string(server_data.join("server/token")).unwrap();
        let server_port = place
            .server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(6443);
        let mut agent = Agent {
            skiff: skiff.to_path_buf(),
            child: None,
            dir: dir.to_path_buf(),
            server_port,
            token: token.trim().to_string(),
            kubelet_port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            place: place.clone(),
        };
        agent.launch();
        agent
    }

    /// The node's host names (in its network namespace, if any).
    pub fn scope(&self) -> NodeScope {
        NodeScope::for_data(&self.data_dir()).in_netns(self.place.netns.as_deref())
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.place.name
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let skiff = self.skiff.display().to_string();
        let mut command = match &self.place.netns {
            Some(ns) => command_in(ns, &skiff),
            None => Command::new(&self.skiff),
        };
        let child = command
            .args(["agent", "--node-name", &self.place.name])
            .args(["--node-ip", &self.place.node_ip])
            .arg("--server")
            .arg(&self.place.server_url)
            .arg("--token")
            .arg(&self.token)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--kubelet-port")
            .arg(self.kubelet_port.to_string())
            .arg("--private-registry")
            .arg(self.dir.join("registries.yaml"))
            .args(NodeScope::for_data(&self.data_dir()).args())
            .args([
                "--lease-interval-seconds",
                "2",
                "--disable-default-registry-endpoint",
            ])
            .args(&self.extra)
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent");
        self.child = Some(child);
    }

    /// The agent process's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

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
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What pods left on the node whose data dir is `data`: container state, pod
/// directories, mounts, cgroups under its cgroup root, veths on its bridge, its CNI
/// masquerading rules, IP allocations. Looks at nothing another node owns.
pub fn leftovers(data: &Path) -> Vec<String> {
    leftovers_in(&NodeScope::for_data(data))
}

/// `leftovers` for an explicit scope.
pub fn leftovers_in(scope: &NodeScope) -> Vec<String> {
    let data = scope.data.as_path();
    let mut found = Vec::new();
    let entries = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| format!("{}", e.path().display()))
                    .collect()
            })
            .unwrap_or_default()
    };
    found.extend(entries(data.join("agent/containers")));
    found.extend(entries(data.join("agent/pods")));
    found.extend(entries(data.join("agent/logs")));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = data.display().to_string();
    found.extend(
        mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .map(|p| format!("mount {p}")),
    );
    for root in scope.cgroup_dirs() {
        found.extend(
            entries(root)
                .into_iter()
                .filter(|p| Path::new(p).is_dir())
                .map(|p| format!("cgroup {p}")),
        );
    }
    let veths = scope
        .command("ip")
        .args(["-o", "link", "show", "master", &scope.bridge])
        .output();
    if let Ok(out) = veths {
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| format!("link {l}")),
        );
    }
    if let Some(subnet) = scope.bridge_subnet() {
        found.extend(
            masquerade_rules(scope, subnet)
                .into_iter()
                .map(|l| format!("iptables {l}")),
        );
    }
    // Rules of the built-in CNI plugins (each carries its container id as comment).
    for table in ["skiff-portmap-", "skiff-masq-"] {
        let table = format!("{table}{}", scope.bridge);
        if let Ok(out) = Command::new("nft")
            .args(["list", "table", "ip", &table])
            .output()
        {
            found.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.contains("comment"))
                    .map(|l| format!("nft {table}: {}", l.trim())),
            );
        }
    }
    let ipam = data.join("agent/cni/ipam/skiff");
    found.extend(
        entries(ipam)
            .into_iter()
            .filter(|p| {
                p.rsplit('/')
                    .next()
                    .is_some_and(|f| f.parse::<std::net::IpAddr>().is_ok())
            })
            .map(|p| format!("ip {p}")),
    );
    found
}

/// The nat POSTROUTING rules CNI's bridge plugin made for pod addresses in `subnet`.
fn masquerade_rules(scope: &NodeScope, subnet: (u32, u32)) -> Vec<String> {
    let Ok(out) = scope.command("iptables").args(["-t", "nat", "-S"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A POSTROUTING") && l.contains("-j CNI-"))
        .filter(|l| rule_source(l).is_some_and(|s| in_subnet(s, subnet)))
        .map(str::to_string)
        .collect()
}

fn rule_source(rule: &str) -> Option<&str> {
    let mut words = rule.split_whitespace();
    words.find(|w| *w == "-s")?;
    words.next()
}

/// Removes whatever the node whose data dir is `data` did not: processes by their
/// recorded PIDs, mounts under the data dir, cgroups under its cgroup root, its
/// bridge and sink link, the CNI chains for its pod addresses.
pub fn force_clean(data: &Path) {
    force_clean_in(&NodeScope::for_data(data))
}

/// `force_clean` for an explicit scope.
pub fn force_clean_in(scope: &NodeScope) {
    let data = scope.data.as_path();
    let containers = data.join("agent/containers");
    for entry in std::fs::read_dir(&containers)
        .into_iter()
        .flatten()
        .flatten()
    {
        for file in ["state/container.pid", "state/shim.json"] {
            let text = std::fs::read_to_string(entry.path().join(file)).unwrap_or_default();
            let pid = text.trim().parse::<i32>().ok().or_else(|| {
                serde_json::from_str::<Value>(&text).ok()?["pid"]
                    .as_i64()
                    .map(|p| p as i32)
            });
            if let Some(pid) = pid.filter(|p| *p > 1) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let prefix = data.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
    for root in scope.cgroup_dirs() {
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(entry.path());
        }
        let _ = std::fs::remove_dir(&root);
    }
    if let Some(subnet) = scope.bridge_subnet() {
        remove_cni_chains(scope, subnet);
    }
    for link in [scope.bridge.clone(), scope.sink()] {
        let _ = scope.command("ip").args(["link", "del", &link]).output();
    }
    // The built-in CNI plugins' nftables tables of this node's bridge.
    for table in ["skiff-portmap-", "skiff-masq-"] {
        let table = format!("{table}{}", scope.bridge);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .output();
    }
    // The node's services table (`skiff network cleanup` does the same).
    let table = format!("skiff-{}", scope.bridge);
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .output();
}

/// Deletes the nat-table rules CNI plugins made for pod addresses in `subnet`
/// (masquerading from them, hostPort DNAT to them) and the `CNI-…` chains those
/// rules jump to. Chains of other nodes' pods stay.
fn remove_cni_chains(scope: &NodeScope, subnet: (u32, u32)) {
    let Ok(out) = scope.command("iptables").args(["-t", "nat", "-S"]).output() else {
        return;
    };
    let rules = String::from_utf8_lossy(&out.stdout).into_owned();
    // Chains whose own rules DNAT into the subnet (portmap's CNI-DN-…).
    let dnat_chains: Vec<&str> = rules
        .lines()
        .filter(|l| l.starts_with("-A CNI-DN-"))
        .filter(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "--to-destination").is_some()
                && words
                    .next()
                    .is_some_and(|d| in_subnet(d.split(':').next().unwrap_or(d), subnet))
        })
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let mut chains: Vec<String> = dnat_chains.iter().map(|c| c.to_string()).collect();
    for rule in rules
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains("-j CNI-"))
    {
        let target = rule
            .split_whitespace()
            .skip_while(|w| *w != "-j")
            .nth(1)
            .unwrap_or_default();
        let masquerade = rule.starts_with("-A POSTROUTING")
            && rule_source(rule).is_some_and(|s| in_subnet(s, subnet));
        if !masquerade && !dnat_chains.contains(&target) {
            continue;
        }
        if masquerade {
            chains.push(target.to_string());
        }
        let mut args = vec!["-t".to_string(), "nat".to_string(), "-D".to_string()];
        args.extend(shell_words(&rule[3..]));
        let _ = scope.command("iptables").args(&args).output();
    }
    for chain in &chains {
        let _ = scope
            .command("iptables")
            .args(["-t", "nat", "-F", chain])
            .output();
    }
    for chain in &chains {
        let _ = scope
            .command("iptables")
            .args(["-t", "nat", "-X", chain])
            .output();
    }
}

/// Splits an iptables-save rule, keeping quoted comments whole.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}
