//! Cluster DNS benchmark: `cargo bench --bench dns`.
//!
//! skiff's DNS server (`skiff::dns::server`, the handler every agent runs) on
//! 127.0.0.1:<free port>, on a single-threaded Tokio runtime (one core), with a
//! zone of `SKIFF_BENCH_DNS_SERVICES` Services (default 1000: ClusterIP ones with a
//! named port, every tenth headless with three endpoints). Debian's `dnsperf` asks
//! for `SKIFF_BENCH_SECONDS` (default 10) a mix from the cluster zone only (A of
//! Services and headless Services, SRV, PTR, pod names, NXDOMAIN; nothing is
//! forwarded, no traffic leaves loopback). Prints dnsperf's summary and a Markdown
//! line with queries/s, and writes it to `<target-dir>/bench-dns.md`. Without
//! dnsperf (apt-get install dnsperf), says so and exits 0.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use skiff::dns::forward::Forwarder;
use skiff::dns::server::{self, ClusterDns};
use skiff::dns::snapshot::{Endpoint, Service, ServiceKind, ServicePort, Snapshot};
use skiff::dns::zone::Zone;

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(text) => text.parse().with_context(|| format!("{name}={text}")),
        Err(_) => Ok(default),
    }
}

fn snapshot(services: u64) -> Snapshot {
    let services = (0..services)
        .map(|i| {
            let (hi, lo) = ((i / 250) as u8, (i % 250) as u8 + 1);
            let headless = i % 10 == 9;
            Service {
                name: format!("svc-{i}"),
                namespace: format!("ns-{}", i % 20),
                kind: if headless {
                    ServiceKind::Headless
                } else {
                    ServiceKind::ClusterIp(vec![IpAddr::from([10, 43, 10 + hi, lo])])
                },
                ports: vec![ServicePort {
                    name: "http".into(),
                    protocol: "TCP".into(),
                    port: 80,
                }],
                endpoints: if headless {
                    (1..=3)
                        .map(|e| Endpoint {
                            addresses: vec![IpAddr::from([10, 42, hi, lo.wrapping_add(e)])],
                            hostname: None,
                        })
                        .collect()
                } else {
                    vec![]
                },
            }
        })
        .collect();
    Snapshot { services }
}

/// dnsperf's input: one question per line, cycling through the zone.
fn queries(services: u64) -> String {
    let mut text = String::new();
    for i in 0..services {
        let name = format!("svc-{i}.ns-{}.svc.cluster.local", i % 20);
        let (hi, lo) = (i / 250, i % 250 + 1);
        writeln!(text, "{name} A").unwrap();
        writeln!(text, "_http._tcp.{name} SRV").unwrap();
        if i % 10 != 9 {
            writeln!(text, "{lo}.{}.43.10.in-addr.arpa PTR", 10 + hi).unwrap();
        }
        writeln!(text, "10-42-{hi}-{lo}.ns-1.pod.cluster.local A").unwrap();
        writeln!(text, "missing-{i}.ns-1.svc.cluster.local A").unwrap();
    }
    text
}

fn main() -> Result<()> {
    if Command::new("dnsperf").arg("-h").output().is_err() {
        println!("dns bench skipped: dnsperf is missing (apt-get install dnsperf)");
        return Ok(());
    }
    let services = env_number("SKIFF_BENCH_DNS_SERVICES", 1000)?;
    let seconds = env_number("SKIFF_BENCH_SECONDS", 10)?;
    let zone = Zone::build(
        "cluster.local",
        "10.43.0.10".parse()?,
        &snapshot(services),
        1,
    )?;
    let dns = ClusterDns::new("cluster.local", Forwarder::new(vec![]))?;
    dns.set_zone(zone);
    let (udp, tcp) = server::bind("127.0.0.1:0".parse()?)?;
    let port = udp.local_addr()?.port();
    // The server on one thread: the one core the goal is stated for.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let mut server = server::serve(dns, udp, tcp).expect("serving");
            let _ = server.block_until_done().await;
        });
    });
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("queries.txt");
    std::fs::write(&input, queries(services))?;
    let output = Command::new("dnsperf")
        .args([
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-l",
            &seconds.to_string(),
        ])
        .args(["-c", "4", "-q", "200", "-d"])
        .arg(&input)
        .output()
        .context("running dnsperf")?;
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    let qps = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .map(|v| v.trim().to_string());
    let lost = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries lost:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let Some(qps) = qps else {
        bail!(
            "no result from dnsperf: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let table = format!(
        "| server | services | seconds | queries/s | lost |\n|---|---|---|---|---|\n\
         | skiff cluster dns (one thread) | {services} | {seconds} | {qps} | {lost} |\n"
    );
    println!("{table}");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let _ = std::fs::write(target.join("bench-dns.md"), table);
    Ok(())
}
