//! Watch fan-out: 100 watchers on one namespace's pods, then N updates of one pod by
//! a single writer. For every (watcher, update) pair: the delay from the writer
//! receiving its ack to the watcher receiving the MODIFIED event (negative when the
//! event beat the ack), the delay from sending the write, and whether all 100 × N
//! events arrived.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use crate::http::{Client, Conn, Request, WatchStream};
use crate::load::create_namespace;
use crate::report::{fmt_ms, ms, p50_p99, percentile, Report};
use crate::workload::{annotate, pod, pod_name, pod_path, pods_path};

pub const WATCHERS: usize = 100;
pub const UPDATES: usize = 200;
/// The paced run writes one update per 50 ms (20/s).
pub const PACE: Duration = Duration::from_millis(50);
const NAMESPACE: &str = "watch";
/// The annotation each update sets to its number.
const ANNOTATION: &str = "bench/fanout";
/// Bounds the whole scenario, even if events never arrive.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// One acknowledged write.
struct Write {
    revision: u64,
    sent: Instant,
    acked: Instant,
}

/// The events one watcher received: (revision, when).
type Received = Vec<(u64, Instant)>;

/// Creates the namespace and the pod the fan-out scenarios update.
pub async fn prepare(client: &Client) -> Result<()> {
    let mut conn = client.connect().await?;
    create_namespace(&mut conn, NAMESPACE).await?;
    conn.call(
        &Request::post_json(pods_path(NAMESPACE), &pod(NAMESPACE, 0)),
        201,
    )
    .await?;
    Ok(())
}

/// The same updates with nobody watching: the write latency the fan-out adds to.
pub async fn baseline(report: &mut Report, client: &Client) -> Result<()> {
    let mut writer = client.connect().await?;
    let writes = write_updates(&mut writer, None).await?;
    let write_ms: Vec<f64> = writes.iter().map(|w| signed_ms(w.sent, w.acked)).collect();
    report.row(
        &format!("PATCH one pod, no watchers ({UPDATES} sequential)"),
        p50_p99(&write_ms),
        "",
    );
    Ok(())
}

/// One run: `pace` None writes back to back (each write waits for the previous ack).
pub async fn run(report: &mut Report, client: &Client, pace: Option<Duration>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SCENARIO_TIMEOUT;
    let mut writer = client.connect().await?;
    let from = current_revision(&mut writer).await?;
    let mut watchers = Vec::with_capacity(WATCHERS);
    for _ in 0..WATCHERS {
        let stream = client.connect().await?.watch(watch_path(from)).await?;
        watchers.push(tokio::spawn(receive(stream, deadline)));
    }
    let writes = write_updates(&mut writer, pace).await?;
    let received = join_all(watchers).await?;
    summarize(report, pace, &writes, &received);
    Ok(())
}

fn watch_path(from: u64) -> String {
    format!(
        "{}?watch=true&resourceVersion={from}&allowWatchBookmarks=true&timeoutSeconds={}",
        pods_path(NAMESPACE),
        SCENARIO_TIMEOUT.as_secs()
    )
}

async fn current_revision(conn: &mut Conn) -> Result<u64> {
    let request = Request::get(pod_path(NAMESPACE, &pod_name(0)));
    revision_of(&conn.call(&request, 200).await?.json()?)
}

fn revision_of(object: &Value) -> Result<u64> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .context("object without a numeric resourceVersion")
}

/// Records every MODIFIED event until the one carrying the last update arrives, the
/// stream ends or the deadline passes. Other writers (the scheduler, controllers)
/// may modify the pod too; their events are recorded but match no write.
async fn receive(mut stream: WatchStream, deadline: tokio::time::Instant) -> Result<Received> {
    let last = (UPDATES - 1).to_string();
    let mut received = Vec::with_capacity(UPDATES);
    loop {
        let Ok(line) = timeout_at(deadline, stream.next_line()).await else {
            return Ok(received);
        };
        let Some(line) = line? else {
            return Ok(received);
        };
        let at = Instant::now();
        let event: Value = serde_json::from_slice(&line).context("watch event is not JSON")?;
        if event["type"] != "MODIFIED" {
            continue;
        }
        received.push((revision_of(&event["object"])?, at));
        if event["object"]["metadata"]["annotations"][ANNOTATION] == last.as_str() {
            return Ok(received);
        }
    }
}

async fn write_updates(conn: &mut Conn, pace: Option<Duration>) -> Result<Vec<Write>> {
    let path = pod_path(NAMESPACE, &pod_name(0));
    let start = tokio::time::Instant::now();
    let mut writes = Vec::with_capacity(UPDATES);
    for i in 0..UPDATES {
        if let Some(pace) = pace {
            tokio::time::sleep_until(start + pace * i as u32).await;
        }
        let request = Request::merge_patch(path.clone(), &annotate(ANNOTATION, i));
        let sent = Instant::now();
        let response = conn.call(&request, 200).await?;
        let acked = Instant::now();
        let revision = revision_of(&response.json()?)?;
        writes.push(Write {
            revision,
            sent,
            acked,
        });
    }
    Ok(writes)
}

async fn join_all(watchers: Vec<JoinHandle<Result<Received>>>) -> Result<Vec<Received>> {
    let mut all = Vec::with_capacity(watchers.len());
    for watcher in watchers {
        all.push(watcher.await??);
    }
    Ok(all)
}

/// Signed milliseconds from `from` to `to`.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(after) => ms(after),
        None => -ms(from.duration_since(to)),
    }
}

fn summarize(report: &mut Report, pace: Option<Duration>, writes: &[Write], received: &[Received]) {
    let by_revision: HashMap<u64, &Write> = writes.iter().map(|w| (w.revision, w)).collect();
    let (mut after_ack, mut after_send, mut duplicates) = (Vec::new(), Vec::new(), 0);
    for events in received {
        let mut seen = HashSet::new();
        for (revision, at) in events {
            if !seen.insert(revision) {
                duplicates += 1;
            } else if let Some(write) = by_revision.get(revision) {
                after_ack.push(signed_ms(write.acked, *at));
                after_send.push(signed_ms(write.sent, *at));
            }
        }
    }
    let write_ms: Vec<f64> = writes.iter().map(|w| signed_ms(w.sent, w.acked)).collect();
    let mode = match pace {
        Some(pace) => format!("paced, 1 update / {} ms", pace.as_millis()),
        None => "back to back".to_string(),
    };
    let expected = WATCHERS * writes.len();
    report.row(
        &format!("Watch fan-out, {WATCHERS} watchers × {UPDATES} updates ({mode})"),
        format!(
            "delivered {}/{expected} (duplicates: {duplicates}); ack → event p50 {} · p99 {}; sent → event p50 {} · p99 {}; write p50 {} · p99 {}",
            after_ack.len(),
            fmt_ms(percentile(&after_ack, 50.0)),
            fmt_ms(percentile(&after_ack, 99.0)),
            fmt_ms(percentile(&after_send, 50.0)),
            fmt_ms(percentile(&after_send, 99.0)),
            fmt_ms(percentile(&write_ms, 50.0)),
            fmt_ms(percentile(&write_ms, 99.0)),
        ),
        "all 100 × N delivered",
    );
}
