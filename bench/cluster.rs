//! Cluster scale benchmark: `cargo bench --bench cluster`.
//!
//! Starts the real `skiff server` and one `skiff agent --simulate --count N` process
//! on loopback, creates D Deployments of R replicas each, and measures the time until
//! every Deployment is fully available, the server's RSS and CPU while it works, list
//! and watch latency (p50/p99) during the run, and the DB file size afterwards.
//! Defaults are the goal's scale (1,000 nodes, 1,000 × 30 pods); set
//! `SKIFF_BENCH_NODES`, `SKIFF_BENCH_DEPLOYMENTS`, `SKIFF_BENCH_REPLICAS` for a smaller
//! run. Results are printed as Markdown and written to `<target>/bench-cluster.md`.
//! Every loop is bounded; processes are killed by PID and temp dirs removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;

const RUN_LIMIT: Duration = Duration::from_secs(20 * 60);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A child process killed (by PID) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_server(dir: &Path, port: u16) -> Result<Proc> {
    std::fs::write(dir.join("config.yaml"), "")?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--bind-address", "127.0.0.1", "--disable-agent"])
        // A /24 per node: 10.42.0.0/16 holds only 256 nodes, so give 1,000 room.
        .args(["--cluster-cidr", "10.40.0.0/14"])
        .args(["--https-listen-port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting skiff server")?;
    Ok(Proc(child))
}

fn start_agents(dir: &Path, port: u16, nodes: usize) -> Result<Proc> {
    let token = std::fs::read_to_string(dir.join("data/server/token"))?;
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "agent",
            "--simulate",
            "--node-name",
            "sim",
            "--node-ip",
            "127.0.0.1",
        ])
        .args(["--server", &format!("https://127.0.0.1:{port}")])
        .args(["--token", token.trim(), "--count", &nodes.to_string()])
        .args(["--simulate-cpu", "32", "--simulate-memory", "64Gi"])
        .arg("--data-dir")
        .arg(dir.join("agent"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting skiff agent")?;
    Ok(Proc(child))
}

async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn wait_for_file(path: &Path) -> Result<()> {
    for _ in 0..300 {
        if path.exists() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} never appeared", path.display())
}

fn deployment(name: &str, replicas: i32) -> Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                "name": "app", "image": "registry.local/app:1",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}},
        },
    }))?)
}

/// Resident and peak memory (KiB) and CPU seconds of a process.
fn usage(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/pid/stat (11 and 12 after the name).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    (field("VmRSS:"), field("VmHWM:"), cpu)
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

async fn wait_nodes_ready(nodes: &Api<Node>, count: usize) -> Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < RUN_LIMIT {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= count {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("nodes not ready within {RUN_LIMIT:?}")
}

/// One paged list of every pod: each page's latency, and how far the pods had come
/// (None when the list expired and the deadline passed before a complete one).
struct Traversal {
    latencies: Vec<f64>,
    stages: Option<Stages>,
}

/// How many pods exist, are bound to a node, and are Running: which stage lags.
#[derive(Default, Clone, Copy)]
struct Stages {
    created: usize,
    bound: usize,
    running: usize,
}

impl Stages {
    fn count(&mut self, pod: &Pod) {
        self.created += 1;
        if pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
            self.bound += 1;
        }
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            self.running += 1;
        }
    }
}

/// Lists every pod 500 at a time, timing each page; a list whose continue token
/// expired (410) counts in `expired` and starts again, until `deadline`.
async fn list_pods_timed(
    pods: &Api<Pod>,
    expired: &mut u32,
    deadline: Instant,
) -> Result<Traversal> {
    let mut latencies = Vec::new();
    let mut stages = Stages::default();
    let mut params = ListParams::default().limit(500);
    loop {
        let started = Instant::now();
        let page = match pods.list(&params).await {
            Err(kube::Error::Api(e)) if e.code == 410 => {
                *expired += 1;
                eprintln!("a paged list expired (410)");
                if Instant::now() > deadline {
                    return Ok(Traversal {
                        latencies,
                        stages: None,
                    });
                }
                params = ListParams::default().limit(500);
                stages = Stages::default();
                continue;
            }
            other => other?,
        };
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        page.items.iter().for_each(|pod| stages.count(pod));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => {
                return Ok(Traversal {
                    latencies,
                    stages: Some(stages),
                })
            }
        }
    }
}

/// Watch latency: time from creating a ConfigMap to a watcher seeing it.
async fn watch_latency(
    client: kube::Client,
    samples: Arc<Mutex<Vec<f64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut events = watcher(
        api.clone(),
        watcher::Config::default().labels("bench=watch"),
    )
    .boxed();
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 10_000 {
        let name = format!("probe-{i}");
        let cm: ConfigMap = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "labels": {"bench": "watch"}}}),
        )?;
        let started = Instant::now();
        api.create(&PostParams::default(), &cm).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), events.try_next()).await {
                // The watch stream is lazy: its first poll lists, so the first probe
                // can arrive in the initial list rather than as a live event.
                Ok(Ok(Some(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj))))
                    if obj.metadata.name.as_deref() == Some(&name) =>
                {
                    break
                }
                Ok(Ok(Some(_))) => continue,
                _ => bail!("watch for {name} failed or timed out"),
            }
        }
        samples
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(started.elapsed().as_secs_f64() * 1000.0);
        i += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

struct Results {
    lines: Vec<(String, String)>,
}

impl Results {
    fn add(&mut self, what: &str, value: String) {
        println!("{what}: {value}");
        self.lines.push((what.into(), value));
    }

    fn markdown(&self) -> String {
        let mut out = String::from("| measure | result |\n|---|---|\n");
        for (what, value) in &self.lines {
            out.push_str(&format!("| {what} | {value} |\n"));
        }
        out
    }
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
        .parent()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let node_count = env_or("SKIFF_BENCH_NODES", 1000);
    let deployments = env_or("SKIFF_BENCH_DEPLOYMENTS", 1000);
    let replicas = env_or("SKIFF_BENCH_REPLICAS", 30);
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let server = start_server(dir.path(), port)?;
    let server_pid = server.0.id();
    wait_for_file(&dir.path().join("kubeconfig")).await?;
    let client = client(&dir.path().join("kubeconfig")).await?;
    let mut results = Results { lines: vec![] };
    results.add(
        "scale",
        format!("{node_count} simulated nodes, {deployments} Deployments × {replicas} replicas = {} pods", deployments * replicas),
    );
    let (rss, _, _) = usage(server_pid);
    results.add("server RSS idle", format!("{:.1} MiB", rss as f64 / 1024.0));

    let _agents = start_agents(dir.path(), port, node_count)?;
    let joined = wait_nodes_ready(&Api::all(client.clone()), node_count).await?;
    results.add(
        "all nodes Ready after",
        format!("{:.1} s", joined.as_secs_f64()),
    );

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_samples = Arc::new(Mutex::new(Vec::new()));
    let watcher_task = tokio::spawn(watch_latency(
        client.clone(),
        watch_samples.clone(),
        stop.clone(),
    ));

    let started = Instant::now();
    let (_, _, cpu_before) = usage(server_pid);
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..deployments)
        .map(|i| {
            let api = api.clone();
            async move {
                let d = deployment(&format!("app-{i}"), replicas as i32)?;
                api.create(&PostParams::default(), &d).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    results.add(
        "Deployments created in",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );

    let pods: Api<Pod> = Api::all(client.clone());
    let mut list_samples = Vec::new();
    let mut peak_rss = 0u64;
    let total = deployments * replicas;
    let mut done = None;
    let mut expired_lists = 0;
    while started.elapsed() < RUN_LIMIT {
        let traversal = list_pods_timed(&pods, &mut expired_lists, started + RUN_LIMIT).await?;
        list_samples.extend(traversal.latencies);
        let (rss, _, _) = usage(server_pid);
        peak_rss = peak_rss.max(rss);
        // Counted from the timed list itself: a second list of every pod per round
        // would double the load the benchmark puts on the server.
        let Some(Stages {
            created,
            bound,
            running,
        }) = traversal.stages
        else {
            continue;
        };
        println!(
            "{:>5.0} s: {running}/{total} pods Running ({created} created, {bound} bound), server RSS {:.0} MiB",
            started.elapsed().as_secs_f64(),
            rss as f64 / 1024.0
        );
        if running >= total {
            done = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    match watcher_task.await {
        Ok(Err(e)) => eprintln!("watch latency sampling stopped: {e:#}"),
        Err(e) => eprintln!("watch latency sampling panicked: {e}"),
        Ok(Ok(())) => {}
    }
    let (rss, hwm, cpu_after) = usage(server_pid);
    results.add("paged lists expired (410)", expired_lists.to_string());
    match done {
        Some(d) => results.add(
            "all pods Running after",
            format!("{:.1} s", d.as_secs_f64()),
        ),
        None => results.add(
            "all pods Running after",
            format!("not within {} s", RUN_LIMIT.as_secs()),
        ),
    }
    results.add(
        "server RSS at the end / peak sampled / VmHWM",
        format!(
            "{:.0} / {:.0} / {:.0} MiB",
            rss as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
    );
    let cpu = cpu_after - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    results.add(
        "server CPU during the run",
        format!(
            "{cpu:.0} s CPU over {wall:.0} s wall ({:.0}% of one core)",
            cpu / wall * 100.0
        ),
    );
    results.add(
        "list pods (pages of 500) p50 / p99",
        format!(
            "{:.0} / {:.0} ms ({} pages)",
            percentile(&mut list_samples, 0.5),
            percentile(&mut list_samples, 0.99),
            list_samples.len()
        ),
    );
    let mut watch = watch_samples
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    results.add(
        "watch latency p50 / p99",
        format!(
            "{:.1} / {:.1} ms ({} samples)",
            percentile(&mut watch, 0.5),
            percentile(&mut watch, 0.99),
            watch.len()
        ),
    );
    let db = dir.path().join("data/server/db/state.db");
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let db_bytes = size(db.clone()) + size(db.with_extension("db-wal"));
    results.add(
        "DB file size afterwards (db + wal)",
        format!("{:.1} MiB", db_bytes as f64 / 1048576.0),
    );
    drop(server);
    let report = results.markdown();
    println!("\n{report}");
    std::fs::write(target_dir().join("bench-cluster.md"), report)?;
    Ok(())
}
