//! History growth: 100,000 updates of one pod, then the DB file size (`state.db` +
//! `state.db-wal`) once compaction has run, next to the live data size.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::http::{Client, Conn, Request};
use crate::report::{fmt_mib, fmt_rate, Report};
use crate::server::Server;
use crate::workload::{annotate, drive, pod, pod_name, pod_path, pods_path};

pub const UPDATES: usize = 100_000;
/// One writer: concurrent unconditional patches of one object can answer 409 (see
/// `contention`), and the point here is the file size, not the write rate.
const CONNECTIONS: usize = 1;
/// The contention probe: this many connections patch one pod at once.
const CONTENDERS: usize = 16;
const PATCHES_PER_CONTENDER: usize = 100;
/// The churn runs with `--history-min-age 60` (the default, 300 s, would make the wait
/// five minutes): compaction runs every 10 s and leaves the last 60 s of history alone,
/// so two ticks after that it has certainly run on the final revision.
const MIN_AGE_ARGS: [&str; 2] = ["--history-min-age", "60"];
const COMPACTION_WAIT: Duration = Duration::from_secs(82);

/// Every list the live-size estimate adds up (what a fresh server stores).
const LIVE_LISTS: &[&str] = &[
    "/api/v1/namespaces",
    "/api/v1/pods",
    "/api/v1/services",
    "/api/v1/endpoints",
    "/api/v1/configmaps",
    "/api/v1/secrets",
    "/api/v1/serviceaccounts",
    "/api/v1/events",
    "/api/v1/nodes",
    "/apis/apps/v1/deployments",
    "/apis/apps/v1/replicasets",
    "/apis/discovery.k8s.io/v1/endpointslices",
    "/apis/coordination.k8s.io/v1/leases",
];

/// Runs the churn on a fresh server started with `extra_args`
/// (e.g. `--history-revisions 1000`); `label` names the setting in the table.
pub async fn churn(report: &mut Report, extra_args: &[&str], label: &str) -> Result<()> {
    let args: Vec<&str> = MIN_AGE_ARGS.iter().chain(extra_args).copied().collect();
    let (server, _) = Server::start(&args).await?;
    let client = server.client()?;
    let mut conn = client.connect().await?;
    conn.call(
        &Request::post_json(pods_path("default"), &pod("default", 0)),
        201,
    )
    .await?;
    let first_revision = pod_revision(&mut conn).await?;

    let path = pod_path("default", &pod_name(0));
    let make =
        Arc::new(move |i: usize| Request::merge_patch(path.clone(), &annotate("bench/counter", i)));
    let elapsed = drive(&client, CONNECTIONS, UPDATES, 200, make).await?;
    let before = server.db_size();
    tokio::time::sleep(COMPACTION_WAIT).await;
    let after = server.db_size();
    let live = live_bytes(&mut conn).await?;
    let compacted = is_compacted(&mut conn, first_revision).await?;

    report.row(
        &format!("100k merge-patches of one pod, {CONNECTIONS} connection ({label})"),
        fmt_rate(UPDATES, elapsed),
        "",
    );
    report.row(
        &format!("DB size after 100k updates ({label})"),
        format!(
            "right after: {} (db {} + wal {}); after compaction: {} (db {} + wal {}); live data ≈ {} of JSON; compaction observed: {}",
            fmt_mib(before.total()),
            fmt_mib(before.db),
            fmt_mib(before.wal),
            fmt_mib(after.total()),
            fmt_mib(after.db),
            fmt_mib(after.wal),
            fmt_mib(live),
            if compacted { "yes" } else { "NO" },
        ),
        "stays bounded (k3s #1575, #3660: kine's state.db-wal grew to hundreds of GB)",
    );
    Ok(())
}

/// `CONTENDERS` connections send `PATCHES_PER_CONTENDER` merge patches (no
/// resourceVersion) each to one pod at the same time; counts 200s and 409s.
pub async fn contention(report: &mut Report) -> Result<()> {
    let (server, _) = Server::start(&[]).await?;
    let client = server.client()?;
    let mut conn = client.connect().await?;
    conn.call(
        &Request::post_json(pods_path("default"), &pod("default", 0)),
        201,
    )
    .await?;
    let contenders: Vec<_> = (0..CONTENDERS)
        .map(|c| tokio::spawn(contend(client.clone(), c)))
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for contender in contenders {
        let (c_ok, c_conflicts) = contender.await??;
        ok += c_ok;
        conflicts += c_conflicts;
    }
    report.row(
        &format!(
            "Concurrent merge-patches of one pod (no resourceVersion), {CONTENDERS} connections"
        ),
        format!(
            "{ok} × 200, {conflicts} × 409 Conflict of {}",
            CONTENDERS * PATCHES_PER_CONTENDER
        ),
        "kube-apiserver re-applies a patch without resourceVersion on conflict, so callers should not see 409",
    );
    Ok(())
}

async fn contend(client: Client, contender: usize) -> Result<(usize, usize)> {
    let mut conn = client.connect().await?;
    let path = pod_path("default", &pod_name(0));
    let (mut ok, mut conflicts) = (0, 0);
    for i in 0..PATCHES_PER_CONTENDER {
        let value = contender * PATCHES_PER_CONTENDER + i;
        let request = Request::merge_patch(path.clone(), &annotate("bench/contender", value));
        match conn.send(&request).await?.status {
            200 => ok += 1,
            409 => conflicts += 1,
            other => anyhow::bail!("PATCH {path} answered {other}"),
        }
    }
    Ok((ok, conflicts))
}

async fn pod_revision(conn: &mut Conn) -> Result<u64> {
    let path = pod_path("default", &pod_name(0));
    let body = conn.call(&Request::get(path), 200).await?.json()?;
    Ok(body["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0))
}

/// Whether reading at the pod's first revision answers 410 Expired.
async fn is_compacted(conn: &mut Conn, revision: u64) -> Result<bool> {
    let path = format!(
        "{}?resourceVersion={revision}&resourceVersionMatch=Exact",
        pods_path("default")
    );
    Ok(conn.send(&Request::get(path)).await?.status == 410)
}

/// The JSON size of every object the server holds (as the API returns them).
pub async fn live_bytes(conn: &mut Conn) -> Result<u64> {
    let mut total = 0;
    for path in LIVE_LISTS {
        let response = conn.send(&Request::get(*path)).await?;
        if response.status != 200 {
            continue;
        }
        let list = response.json()?;
        for item in list["items"].as_array().into_iter().flatten() {
            total += item.to_string().len() as u64;
        }
    }
    Ok(total)
}
