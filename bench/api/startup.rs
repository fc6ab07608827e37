//! Start-up: binary size, and the time from spawning `skiff server` to the first
//! `/readyz` 200 on a fresh data dir and on restarts with existing data.

use anyhow::Result;

use crate::report::{fmt_mib, fmt_ms, median, ms, percentile, Report};
use crate::server::{skiff_binary, Server};

pub const RUNS: usize = 10;

pub fn binary_size(report: &mut Report) -> Result<()> {
    let binary = skiff_binary();
    let bytes = std::fs::metadata(&binary)?.len();
    report.row(
        "Binary size (stripped, bench/release profile)",
        format!("{} ({bytes} bytes)", fmt_mib(bytes)),
        "k3s: \"a binary less than 100 MB\" (k3s README)",
    );
    Ok(())
}

/// Ten servers on ten fresh data dirs (each creates its CA, certificates and
/// default objects), then ten graceful restarts of one of them.
pub async fn ready_times(report: &mut Report) -> Result<()> {
    let mut fresh = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let (server, startup) = Server::start(&[]).await?;
        fresh.push(ms(startup));
        last = Some(server);
    }
    report.row(
        "Start → /readyz 200, fresh data dir",
        summary(&fresh),
        "< 300 ms (goal)",
    );
    if let Some(mut server) = last {
        let restarts = restart_times(&mut server, RUNS).await?;
        report.row(
            "Start → /readyz 200, restart (defaults only)",
            summary(&restarts),
            "< 300 ms (goal)",
        );
    }
    Ok(())
}

/// Stops (SIGTERM) and restarts `server` `runs` times; milliseconds to ready.
pub async fn restart_times(server: &mut Server, runs: usize) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for _ in 0..runs {
        times.push(ms(server.restart().await?));
    }
    Ok(times)
}

pub fn summary(times: &[f64]) -> String {
    format!(
        "median {} (min {}, max {}, n={})",
        fmt_ms(median(times)),
        fmt_ms(percentile(times, 0.0)),
        fmt_ms(percentile(times, 100.0)),
        times.len()
    )
}
