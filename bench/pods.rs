//! Pod start latency and node agent memory, beside `podman run` of the same image.
//!
//! `cargo bench --bench pods` (as root; needs busybox-static, containernetworking-plugins,
//! zstd; podman optional). Starts a server and one real agent on loopback, with a
//! busybox image imported from an air-gap archive, then measures:
//! - one pod at a time: create → `Running` (observed through a watch), N times;
//! - 30 pods created at once: each one's create → `Running`;
//! - the agent's RSS idle and with 30 pods, and the shims' RSS;
//! - `podman run --rm` of the same image (docker archive loaded into podman), N times.
//!
//! Env: SKIFF_BENCH_RUNS (default 20), SKIFF_BENCH_BATCH (default 30).

#[path = "../tests/common/images.rs"]
#[allow(dead_code)]
mod images;
#[path = "../tests/common/node.rs"]
mod node;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;

const IMAGE: &str = "bench:v1";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Proportional set size: shared pages (the binary's text) split among sharers.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// (RSS, PSS) of every running shim of the agent, from their recorded PIDs.
fn shim_memory_kib(containers: &Path) -> Vec<(u64, u64)> {
    std::fs::read_dir(containers)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("state/shim.json")).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter_map(|v| v["pid"].as_u64())
        .map(|pid| (rss_kib(pid as u32), pss_kib(pid as u32)))
        .filter(|(r, _)| *r > 0)
        .collect()
}

struct ServerProcess {
    child: Child,
    port: u16,
    data: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(skiff: &Path, dir: &Path) -> ServerProcess {
    let port = images::free_port();
    let data = dir.join("server");
    let kubeconfig = dir.join("kubeconfig.yaml");
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    std::fs::write(dir.join("none.yaml"), "").unwrap();
    let child = Command::new(skiff)
        .args(["server", "--bind-address", "127.0.0.1", "--disable-agent"])
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(&data)
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .arg("--config")
        .arg(dir.join("none.yaml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start skiff server");
    images::wait_for_port(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    ServerProcess {
        child,
        port,
        data,
        kubeconfig,
    }
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
            "command": ["sleep", "3600"]}]}
    }))
    .unwrap()
}

/// Creates `names` at once; returns each pod's create → Running time in ms.
async fn start_pods(client: &kube::Client, names: &[String]) -> Vec<f64> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events = watcher(api.clone(), watcher::Config::default().labels("bench=pods"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn(async move {
        futures::pin_mut!(events);
        while let Some(Ok(event)) = events.next().await {
            let pods: Vec<Pod> = match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => vec![p],
                _ => vec![],
            };
            for p in pods {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if running {
                    let _ = tx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut created = HashMap::new();
    let creates = names.iter().map(|name| {
        let api = api.clone();
        let name = name.clone();
        async move {
            let at = Instant::now();
            api.create(&PostParams::default(), &pod(&name))
                .await
                .expect("create pod");
            (name, at)
        }
    });
    for (name, at) in futures::future::join_all(creates).await {
        created.insert(name, at);
    }
    let mut times = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while times.len() < names.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((name, at))) => {
                if let Some(start) = created.get(&name) {
                    times
                        .entry(name)
                        .or_insert_with(|| at.duration_since(*start).as_secs_f64() * 1000.0);
                }
            }
            _ => panic!(
                "only {} of {} pods became Running",
                times.len(),
                names.len()
            ),
        }
    }
    watch.abort();
    times.into_values().collect()
}

async fn delete_all(client: &kube::Client) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _ = api
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &kube::api::ListParams::default().labels("bench=pods"),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let left = api
            .list(&kube::api::ListParams::default().labels("bench=pods"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(1);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pods not deleted within 120 s");
}

async fn wait_node_ready(client: &kube::Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(node) = nodes.get("e2e-node").await {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the node did not become Ready");
}

/// `podman run --rm` of the same image, N times: wall-clock ms, or why it was skipped.
fn podman_runs(archive: &Path, runs: usize) -> Result<Vec<f64>, String> {
    let load = Command::new("podman")
        .args(["load", "-q", "-i"])
        .arg(archive)
        .output();
    let load = load.map_err(|e| format!("podman not available ({e}); apt-get install podman"))?;
    if !load.status.success() {
        return Err(format!(
            "podman load failed: {}",
            String::from_utf8_lossy(&load.stderr).trim()
        ));
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let out = Command::new("podman")
            .args([
                "run",
                "--rm",
                "--runtime",
                "runc",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .arg(format!("localhost/{IMAGE}"))
            .arg("true")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "podman run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = Command::new("podman")
        .args(["rmi", "-f"])
        .arg(format!("localhost/{IMAGE}"))
        .output();
    Ok(times)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the pods benchmark runs containers and needs root");
        return;
    }
    let runs = env_usize("SKIFF_BENCH_RUNS", 20);
    let batch = env_usize("SKIFF_BENCH_BATCH", 30);
    let skiff = PathBuf::from(env!("CARGO_BIN_EXE_skiff"));
    let work = tempfile::tempdir().unwrap();
    let image = images::busybox_layout(work.path(), IMAGE, &images::ImageConfigSpec::cmd(&["sh"]));
    let oci = images::archive_in(work.path(), &image, images::ArchiveFormat::Oci);
    let docker = images::archive_in(work.path(), &image, images::ArchiveFormat::Docker);

    let server = start_server(&skiff, work.path());
    let agent_dir = work.path().join("agent");
    std::fs::create_dir_all(agent_dir.join("data/agent/images")).unwrap();
    std::fs::copy(&oci, agent_dir.join("data/agent/images/bench.tar")).unwrap();
    let dead = images::free_port();
    std::fs::write(
        agent_dir.join("registries.yaml"),
        format!("mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:{dead}\"]\n"),
    )
    .unwrap();
    let mut agent = node::Agent::start(&skiff, server.port, &server.data, &agent_dir, &[]);
    let containers = agent.data_dir().join("agent/containers");
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let result = tokio.block_on(async {
        let client = client(&server.kubeconfig).await;
        wait_node_ready(&client).await;
        // Warm-up: the image is imported and its layer unpacked.
        start_pods(&client, &["warm-up".to_string()]).await;
        delete_all(&client).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let agent_pid = agent_pid(&agent);
        let idle = rss_kib(agent_pid);
        let mut single = Vec::new();
        for i in 0..runs {
            single.extend(start_pods(&client, &[format!("one-{i}")]).await);
            delete_all(&client).await;
        }
        let names: Vec<String> = (0..batch).map(|i| format!("many-{i}")).collect();
        let began = Instant::now();
        let many = start_pods(&client, &names).await;
        let all_running = began.elapsed().as_secs_f64() * 1000.0;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let busy = rss_kib(agent_pid);
        let shims = shim_memory_kib(&containers);
        delete_all(&client).await;
        (idle, single, many, all_running, busy, shims)
    });
    let (idle, single, many, all_running, busy, shims) = result;
    let podman = podman_runs(&docker, runs.min(10));
    let data = agent.data_dir();
    agent.kill9();
    node::force_clean(&data);

    let (s50, s99, smax) = summary(single);
    let (m50, m99, mmax) = summary(many);
    println!("\n## Pod start (busybox `sleep`, local image, one node on loopback)\n");
    println!("| measurement | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    println!("| skiff: 1 pod, create → Running ({runs} runs) | {s50:.0} | {s99:.0} | {smax:.0} |");
    println!(
        "| skiff: {batch} pods at once, each create → Running | {m50:.0} | {m99:.0} | {mmax:.0} |"
    );
    println!("| skiff: {batch} pods at once, all Running | {all_running:.0} | | |");
    match podman {
        Ok(times) => {
            let n = times.len();
            let (p50, p99, max) = summary(times);
            println!("| podman run --rm (runc) of the same image, `true` ({n} runs) | {p50:.0} | {p99:.0} | {max:.0} |");
        }
        Err(why) => println!("| podman run --rm | skipped: {why} | | |"),
    }
    let n = shims.len().max(1) as u64;
    let shim_rss = shims.iter().map(|s| s.0).sum::<u64>() / n;
    let shim_pss = shims.iter().map(|s| s.1).sum::<u64>() / n;
    println!("\n| agent memory | RSS |");
    println!("|---|---|");
    println!(
        "| agent idle (node registered, no pods) | {:.1} MiB |",
        idle as f64 / 1024.0
    );
    println!(
        "| agent with {batch} pods running | {:.1} MiB |",
        busy as f64 / 1024.0
    );
    println!(
        "| one shim, RSS (mean of {}) | {:.1} MiB |",
        shims.len(),
        shim_rss as f64 / 1024.0
    );
    println!(
        "| one shim, PSS: shared binary pages divided among the shims (mean) | {:.1} MiB |",
        shim_pss as f64 / 1024.0
    );
}

fn agent_pid(agent: &node::Agent) -> u32 {
    agent.pid().expect("the agent runs")
}
