//! Writes and reads on one server: ConfigMap creates/s with 1 and 16 connections,
//! 10,000 pods created with 16 connections, then GET, paged and unpaged LIST and a
//! label-selector LIST over them, and the server's memory before and after.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::http::{Client, Conn, Request};
use crate::report::{fmt_mib, fmt_rate, ms, p50_p99, Report};
use crate::server::Server;
use crate::workload::{config_map, drive, namespace, pod, pod_name, pod_path, pods_path, APPS};

pub const NAMESPACE: &str = "bench";
pub const PODS: usize = 10_000;
const PARALLEL: usize = 16;
const SERIAL_CREATES: usize = 1_000;
const PARALLEL_CREATES: usize = 4_000;
const GETS: usize = 2_000;
const FULL_LISTS: usize = 20;
const SELECTOR_LISTS: usize = 50;
const PAGE: usize = 500;
/// Bounds a traversal: a server that never stops handing out tokens is an error.
const MAX_PAGES: usize = PODS / PAGE + 5;

pub fn memory_row(report: &mut Report, server: &Server, when: &str, goal: &str) -> Result<()> {
    let memory = server.memory()?;
    report.row(
        &format!("Server memory, {when}"),
        format!(
            "VmRSS {} (anon {}) · VmHWM {}",
            fmt_mib(memory.rss_kib * 1024),
            fmt_mib(memory.anon_kib * 1024),
            fmt_mib(memory.hwm_kib * 1024)
        ),
        goal,
    );
    Ok(())
}

pub async fn create_namespace(conn: &mut Conn, name: &str) -> Result<()> {
    conn.call(
        &Request::post_json("/api/v1/namespaces", &namespace(name)),
        201,
    )
    .await?;
    Ok(())
}

/// ConfigMap creates with one connection, then with 16.
pub async fn config_map_creates(report: &mut Report, client: &Client) -> Result<()> {
    for (connections, total) in [(1, SERIAL_CREATES), (PARALLEL, PARALLEL_CREATES)] {
        let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
        let make = Arc::new(move |i: usize| {
            let name = format!("cm-{connections}-{i:05}");
            Request::post_json(path.clone(), &config_map(NAMESPACE, &name))
        });
        let elapsed = drive(client, connections, total, 201, make).await?;
        report.row(
            &format!(
                "ConfigMap creates, {connections} connection{}",
                plural(connections)
            ),
            format!("{} ({total} creates)", fmt_rate(total, elapsed)),
            "",
        );
    }
    Ok(())
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// Creates the 10,000 pods with 16 connections; reports their rate and sizes.
pub async fn create_pods(report: &mut Report, client: &Client) -> Result<()> {
    let sent = pod(NAMESPACE, 0).to_string().len();
    let make = Arc::new(|i: usize| Request::post_json(pods_path(NAMESPACE), &pod(NAMESPACE, i)));
    let elapsed = drive(client, PARALLEL, PODS, 201, make).await?;
    let mut conn = client.connect().await?;
    let stored = conn
        .call(&Request::get(pod_path(NAMESPACE, &pod_name(0))), 200)
        .await?
        .body
        .len();
    report.row(
        &format!("Pod creates, {PARALLEL} connections"),
        format!(
            "{} ({PODS} pods; {sent} B sent, {stored} B as read back)",
            fmt_rate(PODS, elapsed)
        ),
        "",
    );
    Ok(())
}

/// Milliseconds of `runs` calls of `request`, each expected to answer 200.
async fn sample(conn: &mut Conn, request: &Request, runs: usize) -> Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        conn.call(request, 200).await?;
        samples.push(ms(started.elapsed()));
    }
    Ok(samples)
}

/// GET and LIST latencies; each LIST row also shows the server's VmHWM (peak RSS so
/// far) after it, to tell which kind of read raised the peak.
pub async fn reads(report: &mut Report, client: &Client, server: &Server) -> Result<()> {
    let mut conn = client.connect().await?;
    let get = Request::get(pod_path(NAMESPACE, &pod_name(PODS / 2)));
    report.row(
        "GET one pod (of 10k)",
        p50_p99(&sample(&mut conn, &get, GETS).await?),
        "",
    );

    let all = Request::get(pods_path(NAMESPACE));
    check_count(&mut conn, &all, PODS).await?;
    let (traversals, pages) = paged_lists(&mut conn).await?;
    let peak = peak_after(server)?;
    report.row(
        &format!("LIST 10k pods, limit={PAGE} paged (whole traversal)"),
        p50_p99(&traversals),
        "",
    );
    report.row(
        &format!("LIST 10k pods, limit={PAGE} paged (per page)"),
        format!("{}{peak}", p50_p99(&pages)),
        "",
    );

    let unpaged = sample(&mut conn, &all, FULL_LISTS).await?;
    let peak = peak_after(server)?;
    report.row(
        "LIST 10k pods, unpaged",
        format!("{}{peak}", p50_p99(&unpaged)),
        "",
    );

    let selected = Request::get(format!(
        "{}?labelSelector=app%3Dweb-7",
        pods_path(NAMESPACE)
    ));
    check_count(&mut conn, &selected, PODS / APPS).await?;
    let selector = sample(&mut conn, &selected, SELECTOR_LISTS).await?;
    report.row(
        &format!(
            "LIST labelSelector app=web-7 ({} of 10k match)",
            PODS / APPS
        ),
        p50_p99(&selector),
        "",
    );
    Ok(())
}

fn peak_after(server: &Server) -> Result<String> {
    Ok(format!(
        "; server VmHWM after: {}",
        fmt_mib(server.memory()?.hwm_kib * 1024)
    ))
}

async fn check_count(conn: &mut Conn, request: &Request, expected: usize) -> Result<()> {
    let list = conn.call(request, 200).await?.json()?;
    let count = list["items"].as_array().map_or(0, Vec::len);
    ensure!(
        count == expected,
        "{} listed {count} items, expected {expected}",
        request.path
    );
    Ok(())
}

/// Walks all pods `limit=500` at a time, as kubectl does: once untimed to check
/// that every pod comes back, then `FULL_LISTS` timed times. Returns
/// whole-traversal and per-page milliseconds.
async fn paged_lists(conn: &mut Conn) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut items = 0;
    walk_pages(conn, |body, _| items += count_items(body).unwrap_or(0)).await?;
    ensure!(
        items == PODS,
        "paged list returned {items} pods, expected {PODS}"
    );
    let (mut traversals, mut pages) = (Vec::new(), Vec::new());
    for _ in 0..FULL_LISTS {
        let started = Instant::now();
        walk_pages(conn, |_, page_ms| pages.push(page_ms)).await?;
        traversals.push(ms(started.elapsed()));
    }
    Ok((traversals, pages))
}

/// One paged traversal; `on_page` gets each page's body and milliseconds.
async fn walk_pages(conn: &mut Conn, mut on_page: impl FnMut(&[u8], f64)) -> Result<()> {
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut path = format!("{}?limit={PAGE}", pods_path(NAMESPACE));
        if let Some(token) = &token {
            path.push_str(&format!("&continue={token}"));
        }
        let started = Instant::now();
        let body = conn.call(&Request::get(path), 200).await?.body;
        on_page(&body, ms(started.elapsed()));
        token = continue_token(&body);
        if token.is_none() {
            return Ok(());
        }
    }
    bail!("paged list did not end after {MAX_PAGES} pages")
}

fn count_items(body: &[u8]) -> Result<usize> {
    let list: serde_json::Value = serde_json::from_slice(body).context("list is not JSON")?;
    Ok(list["items"].as_array().map_or(0, Vec::len))
}

/// The `metadata.continue` token, found without parsing the page: the server writes
/// `metadata` before `items`. Tokens are URL-safe as sent (checked by percent-encoding
/// any other byte).
fn continue_token(body: &[u8]) -> Option<String> {
    let head_end = find(body, b"\"items\"").unwrap_or(body.len());
    let head = &body[..head_end];
    let start = find(head, b"\"continue\":\"")? + b"\"continue\":\"".len();
    let length = head[start..].iter().position(|&b| b == b'"')?;
    let token = &head[start..start + length];
    (!token.is_empty()).then(|| percent_encode(token))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
