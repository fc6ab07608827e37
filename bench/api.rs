//! API benchmark: `cargo bench --bench api`.
//!
//! Starts the real `skiff` binary (the one Cargo builds for this bench with the
//! `bench` profile, which inherits `release`; its path comes from
//! `CARGO_BIN_EXE_skiff`, i.e. `<target-dir>/release/skiff`) on free 127.0.0.1 ports
//! with temporary data dirs, and talks HTTPS to it with the admin client
//! certificate from the kubeconfig it writes. It measures binary size, start-up
//! time, what RBAC costs a request, create rates, GET/LIST latency over 10,000 pods, watch fan-out, server
//! memory and DB file growth under churn, prints a Markdown table and writes it to
//! `<target-dir>/bench-api.md`. Every loop is bounded; every server is killed by
//! PID and its temp dir removed when its guard drops.

#[path = "api/authz.rs"]
mod authz;
#[path = "api/fanout.rs"]
mod fanout;
#[path = "api/history.rs"]
mod history;
#[path = "api/http.rs"]
mod http;
#[path = "api/load.rs"]
mod load;
#[path = "api/report.rs"]
mod report;
#[path = "api/server.rs"]
mod server;
#[path = "api/startup.rs"]
mod startup;
#[path = "api/workload.rs"]
mod workload;

use std::time::Duration;

use anyhow::Result;

use report::{fmt_mib, Report};
use server::{skiff_binary, target_dir, Server};

/// Lets the server settle before its idle memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(2);

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = Report::default();
    let load_before = load_average();
    eprintln!("skiff api bench, binary {}", skiff_binary().display());
    // Servers are started from this (the main) thread, inside block_on, so their
    // PR_SET_PDEATHSIG follows the benchmark process's lifetime.
    let outcome = runtime.block_on(run_all(&mut report));
    if let Err(error) = &outcome {
        report.note(format!("the run stopped early: {error:#}"));
    }
    let markdown = format!(
        "{}\nLoad average (1/5/15 min) at start: {load_before}; at end: {}. The benchmark's own client shares the CPUs with the server.\n\n{}",
        machine(),
        load_average(),
        report.markdown()
    );
    println!("\n{markdown}");
    let path = target_dir().join("bench-api.md");
    std::fs::write(&path, &markdown)?;
    eprintln!("written to {}", path.display());
    outcome
}

async fn run_all(report: &mut Report) -> Result<()> {
    // SKIFF_BENCH_ONLY=history runs only the history-growth part; =load only the
    // server with 10,000 pods (creates, reads, lists, watch fan-out, memory);
    // =startup only the binary size and the times to /readyz; =authz only what RBAC
    // costs a request.
    match std::env::var("SKIFF_BENCH_ONLY").as_deref() {
        Ok("authz") => {
            eprintln!("authorization cost…");
            return authz::run(report).await;
        }
        Ok("startup") => {
            startup::binary_size(report)?;
            eprintln!("start-up times…");
            return startup::ready_times(report).await;
        }
        Ok("history") => {
            eprintln!("history growth (default settings)…");
            return history::churn(report, &[], "--history-min-age 60, else defaults").await;
        }
        Ok("load") => {
            eprintln!("10,000 pods…");
            return loaded_server(report).await;
        }
        _ => {}
    }
    startup::binary_size(report)?;
    eprintln!("start-up times…");
    startup::ready_times(report).await?;
    eprintln!("authorization cost…");
    authz::run(report).await?;
    eprintln!("10,000 pods…");
    loaded_server(report).await?;
    eprintln!("one pod under concurrent patches…");
    history::contention(report).await?;
    eprintln!("history growth (default settings)…");
    history::churn(report, &[], "--history-min-age 60, else defaults").await?;
    eprintln!("history growth (--history-revisions 10000)…");
    let ten_thousand = ["--history-revisions", "10000"];
    history::churn(report, &ten_thousand, "--history-revisions 10000").await?;
    Ok(())
}

/// One server through creates, 10,000 pods, reads, watch fan-out and restarts.
async fn loaded_server(report: &mut Report) -> Result<()> {
    let (mut server, _) = Server::start(&[]).await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    load::memory_row(report, &server, "idle after start", "VmRSS < 25 MiB (goal)")?;

    let client = server.client()?;
    let mut conn = client.connect().await?;
    load::create_namespace(&mut conn, load::NAMESPACE).await?;
    load::config_map_creates(report, &client).await?;
    load::create_pods(report, &client).await?;
    load::memory_row(
        report,
        &server,
        "10k pods + 5k ConfigMaps stored",
        "k3s: 1596 M min RAM for a server with a workload (Kine/SQLite; k3s docs, whole k3s incl. containerd)",
    )?;
    let db = server.db_size();
    let live = history::live_bytes(&mut conn).await?;
    report.row(
        "DB size with 10k pods + 5k ConfigMaps",
        format!(
            "{} (db {} + wal {}); live data ≈ {}",
            fmt_mib(db.total()),
            fmt_mib(db.db),
            fmt_mib(db.wal),
            fmt_mib(live)
        ),
        "",
    );

    load::reads(report, &client, &server).await?;
    load::memory_row(report, &server, "after GETs and LISTs (VmHWM = peak)", "")?;
    fanout::prepare(&client).await?;
    fanout::baseline(report, &client).await?;
    fanout::run(report, &client, Some(fanout::PACE)).await?;
    fanout::run(report, &client, None).await?;
    load::memory_row(report, &server, "after watch fan-out", "")?;
    drop(conn);

    let restarts = startup::restart_times(&mut server, startup::RUNS).await?;
    report.row(
        "Start → /readyz 200, restart with 10k pods stored",
        startup::summary(&restarts),
        "< 300 ms (goal)",
    );
    Ok(())
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews results.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// CPU count and model, memory, kernel and date, for the results header.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {cpus} CPUs ({model}), {:.1} GiB RAM, Linux {}, {}",
        mem_kib as f64 / (1024.0 * 1024.0),
        kernel.trim(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    )
}
