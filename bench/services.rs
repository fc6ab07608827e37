//! Service data plane benchmark: `cargo bench --bench services` (needs root and nft).
//!
//! Builds 10,000 ClusterIP services of 2 endpoints each with skiff's generator
//! (`skiff::network::proxy`) and loads them into a fresh network namespace it creates
//! (`ip netns add skiff-bench-<pid>`, removed at the end, also on failure), timing:
//! the whole-table load, a one-service change (an endpoint goes) as a diff, and a
//! one-service addition. Then the same services in a kube-proxy-shaped ruleset (one
//! `ip daddr … dport … goto` rule per service in the dispatch chain instead of the
//! verdict map), loaded and changed the same way. Set `SKIFF_BENCH_SERVICES` for
//! another count, `SKIFF_BENCH_DUMP=DIR` to keep the scripts. Prints a Markdown table.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff::network::proxy::ruleset::{build, Ruleset, TableConfig, SERVICE_IPS};
use skiff::network::proxy::{script, Endpoint, Family, Protocol, ServicePort};

/// The namespace, removed when dropped.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("skiff-bench-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed (needs root)");
        Netns(name)
    }

    fn apply(&self, text: &str) -> Duration {
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "nft refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn config(table: &str) -> TableConfig {
    TableConfig {
        family: Family::Ipv4,
        table: table.into(),
        cluster_cidr: "10.42.0.0/16".into(),
        service_cidr: "10.43.0.0/16".into(),
        cluster_dns: Some(Ipv4Addr::new(10, 43, 0, 10)),
    }
}

fn services(n: u32) -> Vec<ServicePort> {
    (0..n)
        .map(|i| ServicePort {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Some(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 43, 1, 0)) + i)),
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_timeout: None,
            external_local: false,
            internal_local: false,
            endpoints: (0..2)
                .map(|j| Endpoint {
                    ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 2)) + 2 * i + j),
                    port: 8080,
                    local: true,
                    ready: true,
                    serving: true,
                    terminating: false,
                })
                .collect(),
        })
        .collect()
}

/// The kube-proxy-shaped (iptables-like) ruleset: the map's elements become one rule
/// each in the dispatch chain.
fn linear(mut rs: Ruleset) -> Ruleset {
    let elements = std::mem::take(&mut rs.maps.get_mut(SERVICE_IPS).unwrap().elements);
    let services = rs.chains.get_mut("services").unwrap();
    services.rules.remove(0);
    let rules: Vec<String> = elements
        .iter()
        .map(|(key, verdict)| {
            let mut parts = key.split(" . ");
            let (ip, proto, port) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            format!("ip daddr {ip} {proto} dport {port} {verdict}")
        })
        .collect();
    services.rules.splice(0..0, rules);
    rs
}

struct Row {
    shape: &'static str,
    generate: Duration,
    load: Duration,
    change: Duration,
    add: Duration,
    script_lines: usize,
}

fn measure(
    ns: &Netns,
    shape: &'static str,
    table: &str,
    n: u32,
    shape_fn: fn(Ruleset) -> Ruleset,
) -> Row {
    let cfg = config(table);
    let mut ports = services(n);
    let started = Instant::now();
    let rs = shape_fn(build(&cfg, &ports));
    let full = script::full(&cfg, &rs);
    let generate = started.elapsed();
    if let Ok(dir) = std::env::var("SKIFF_BENCH_DUMP") {
        std::fs::write(format!("{dir}/{table}-full.nft"), &full).unwrap();
    }
    let load = ns.apply(&full);
    ports[n as usize / 2].endpoints.pop();
    let changed = shape_fn(build(&cfg, &ports));
    let diff = script::diff(&cfg, &rs, &changed).expect("a diff");
    if let Ok(dir) = std::env::var("SKIFF_BENCH_DUMP") {
        std::fs::write(format!("{dir}/{table}-diff.nft"), &diff).unwrap();
    }
    let change = ns.apply(&diff);
    let mut more = ports.clone();
    more.extend(services(n + 1).pop());
    more.last_mut().unwrap().name = "extra".into();
    more.last_mut().unwrap().cluster_ip = Some(Ipv4Addr::new(10, 43, 250, 1));
    let added = shape_fn(build(&cfg, &more));
    let add = ns.apply(&script::diff(&cfg, &changed, &added).expect("a diff"));
    Row {
        shape,
        generate,
        load,
        change,
        add,
        script_lines: full.lines().count(),
    }
}

fn main() {
    let n: u32 = std::env::var("SKIFF_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ns = Netns::create();
    let rows = [
        measure(&ns, "skiff (verdict maps)", "skiff-bench", n, |rs| rs),
        measure(
            &ns,
            "kube-proxy-shaped (rule per service)",
            "skiff-bench-linear",
            n,
            linear,
        ),
    ];
    println!("\n{n} services × 2 endpoints, nft {}\n", nft_version());
    println!(
        "| ruleset | generate | full load | one-service change | one-service add | script lines |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.1} ms | {:.1} ms | {} |",
            r.shape,
            r.generate.as_secs_f64() * 1e3,
            r.load.as_secs_f64() * 1e3,
            r.change.as_secs_f64() * 1e3,
            r.add.as_secs_f64() * 1e3,
            r.script_lines
        );
    }
}

fn nft_version() -> String {
    Command::new("nft")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
