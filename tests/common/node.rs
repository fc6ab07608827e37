//! A real node agent for end-to-end tests and benchmarks: the `skiff agent` process,
//! what pods may leave behind on the node, and a forced clean-up of everything a node
//! makes (processes by their recorded PIDs, mounts, cgroups, links, CNI chains) for
//! when a test fails half-way. Needs root.
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

/// A real `skiff agent` process named `e2e-node`, on 127.0.0.1.
pub struct Agent {
    skiff: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    server_port: u16,
    token: String,
    kubelet_port: u16,
    extra: Vec<String>,
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
        let token = std::fs::read_to_string(server_data.join("server/token")).unwrap();
        let mut agent = Agent {
            skiff: skiff.to_path_buf(),
            child: None,
            dir: dir.to_path_buf(),
            server_port,
            token: token.trim().to_string(),
            kubelet_port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        agent.launch();
        agent
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
        let child = Command::new(&self.skiff)
            .args(["agent", "--node-name", "e2e-node", "--node-ip", "127.0.0.1"])
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", self.server_port))
            .arg("--token")
            .arg(&self.token)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--kubelet-port")
            .arg(self.kubelet_port.to_string())
            .arg("--private-registry")
            .arg(self.dir.join("registries.yaml"))
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

/// What pods left on the node: container state, pod directories, mounts, cgroups,
/// network namespaces, veths on cni0, IP allocations.
pub fn leftovers(data: &Path) -> Vec<String> {
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
    for controller in ["memory", "cpu", "pids", "unified"] {
        found.extend(
            entries(PathBuf::from(format!("/sys/fs/cgroup/{controller}/skiff")))
                .into_iter()
                .filter(|p| Path::new(p).is_dir())
                .map(|p| format!("cgroup {p}")),
        );
    }
    let veths = Command::new("ip")
        .args(["-o", "link", "show", "master", "cni0"])
        .output();
    if let Ok(out) = veths {
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| format!("link {l}")),
        );
    }
    let chains = Command::new("iptables").args(["-t", "nat", "-S"]).output();
    if let Ok(out) = chains {
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("-A POSTROUTING") && l.contains("-j CNI-"))
                .map(|l| format!("iptables {l}")),
        );
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

/// Removes whatever the agent did not: processes by their recorded PIDs, mounts,
/// cgroups, the bridge, the sink link, CNI iptables chains.
pub fn force_clean(data: &Path) {
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
    for controller in [
        "memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "unified",
    ] {
        let root = PathBuf::from(format!("/sys/fs/cgroup/{controller}/skiff"));
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(entry.path());
        }
        let _ = std::fs::remove_dir(&root);
    }
    for link in ["cni0", "skiff-sink"] {
        let _ = Command::new("ip").args(["link", "del", link]).output();
    }
    remove_cni_chains();
}

/// Deletes the nat-table chains CNI plugins made (`CNI-…`) and the rules that jump
/// to them.
fn remove_cni_chains() {
    let Ok(out) = Command::new("iptables").args(["-t", "nat", "-S"]).output() else {
        return;
    };
    let rules = String::from_utf8_lossy(&out.stdout).into_owned();
    for rule in rules
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains("-j CNI-"))
    {
        let chain = rule.split_whitespace().nth(1).unwrap_or_default();
        if chain.starts_with("CNI-") {
            continue;
        }
        let mut args = vec!["-t".to_string(), "nat".to_string(), "-D".to_string()];
        args.extend(shell_words(&rule[3..]));
        let _ = Command::new("iptables").args(&args).output();
    }
    let chains: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.strip_prefix("-N "))
        .filter(|c| c.starts_with("CNI-"))
        .collect();
    for chain in &chains {
        let _ = Command::new("iptables")
            .args(["-t", "nat", "-F", chain])
            .output();
    }
    for chain in &chains {
        let _ = Command::new("iptables")
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
