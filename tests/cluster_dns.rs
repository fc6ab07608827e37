//! Cluster DNS end to end: the server is its own node, its agent serves the cluster
//! DNS address (10.43.0.10) on the node's sink link. From a busybox pod `nslookup`
//! resolves `kubernetes` (through the search path) to 10.43.0.1, a headless Service to every ready
//! pod, an unknown name to NXDOMAIN and an outside name through the upstream the
//! test runs on a loopback address (given with `--resolv-conf`); from the host
//! `dig` asks for A, SRV, PTR and CNAME records over UDP and TCP.
//!
//! Needs root, busybox-static, the CNI plugins and dig (dnsutils); run under the
//! e2e lock: `flock /tmp/skiff-e2e.lock cargo test --test cluster_dns -- --include-ignored`.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Server};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};

const CLUSTER_DNS: &str = "10.43.0.10";
/// What the test's upstream answers for `www.example.com`.
const OUTSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// A resolver on a loopback address of its own, port 53: `www.example.com` A, and
/// NXDOMAIN for everything else. Stops when dropped.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let ip = Ipv4Addr::new(127, 53, (std::process::id() % 250) as u8, 1);
        let socket = UdpSocket::bind((ip, 53)).expect("binding the test upstream");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while !stopping.load(Ordering::SeqCst) {
                let Ok((len, peer)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                let Ok(request) = Message::from_vec(&buffer[..len]) else {
                    continue;
                };
                let mut response = Message::new();
                response
                    .set_id(request.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_available(true);
                for query in request.queries() {
                    response.add_query(query.clone());
                }
                let query = &request.queries()[0];
                if query
                    .name()
                    .to_ascii()
                    .eq_ignore_ascii_case("www.example.com.")
                {
                    if query.query_type() == hickory_proto::rr::RecordType::A {
                        response.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            RData::A(A(OUTSIDE_ADDRESS)),
                        ));
                    }
                } else {
                    response.set_response_code(ResponseCode::NXDomain);
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), peer);
            }
        });
        Upstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `dig @10.43.0.10 +short <args>` from the host.
fn dig(args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{CLUSTER_DNS}"))
        .args(["+short", "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("dig (dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status line of a full `dig` answer (`status: NXDOMAIN`).
fn dig_status(name: &str) -> String {
    let out = Command::new("dig")
        .arg(format!("@{CLUSTER_DNS}"))
        .args(["+time=2", "+tries=2", name])
        .output()
        .expect("dig (dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or(text)
}

fn nslookup(server: &Server, name: &str) -> String {
    let (_, out, err) = server.kubectl(&["exec", "client", "--", "nslookup", name]);
    out + &err
}

/// Whether busybox nslookup's output has an `Address:` line with `ip`.
fn has_address(out: &str, ip: &str) -> bool {
    out.lines()
        .any(|l| l.starts_with("Address") && l.split_whitespace().last() == Some(ip))
}

fn pod_ip(server: &Server, pod: &str) -> String {
    server.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - {name: sh, image: "busybox:e2e", imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers:
  - {name: sh, image: "busybox:e2e", imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, labels: {app: db}}
spec:
  containers:
  - {name: sh, image: "busybox:e2e", imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: www.example.com
"#;

#[test]
#[ignore = "needs root"]
fn pods_and_the_host_resolve_cluster_names_and_outside_names() {
    let build = tempfile::tempdir().unwrap();
    let archive = common::busybox_e2e_archive(build.path());
    let upstream = Upstream::start();
    let resolv = build.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", upstream.addr.ip())).unwrap();
    let server = common::start_server_node(&archive, &["--resolv-conf", resolv.to_str().unwrap()]);
    common::run_then_clean_node(server, |server| {
        // The kube-dns Service, as in k3s.
        let ip = eventually(Duration::from_secs(20), || {
            server
                .kubectl(&[
                    "get",
                    "svc",
                    "-n",
                    "kube-system",
                    "kube-dns",
                    "-o",
                    "jsonpath={.spec.clusterIP}",
                ])
                .1
                == CLUSTER_DNS
        });
        assert!(ip, "{}", server.kubectl(&["get", "svc", "-A"]).1);

        let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], MANIFEST);
        assert!(ok, "{out}{err}");
        for pod in ["client", "db-0", "db-1"] {
            let ready = eventually(Duration::from_secs(90), || {
                common::is_ready(&server.get_json(&["pod", pod]))
            });
            assert!(ready, "{}", server.kubectl(&["describe", "pod", pod]).1);
        }
        let (db0, db1) = (pod_ip(server, "db-0"), pod_ip(server, "db-1"));

        // From the pod: the API's Service by its full name and through the search
        // path. (busybox's nslookup applies the search path to dotless names only,
        // so `kubernetes.default` is asked as is there, with any cluster DNS;
        // libc resolvers with `ndots:5` expand it like `kubernetes`.)
        let mut last = String::new();
        let resolved = eventually(Duration::from_secs(30), || {
            last = nslookup(server, "kubernetes.default.svc.cluster.local");
            has_address(&last, "10.43.0.1")
        });
        assert!(resolved, "{last}\n{}", server.log());
        let out = nslookup(server, "kubernetes");
        assert!(has_address(&out, "10.43.0.1"), "{out}");

        // The headless Service: both ready pods.
        let resolved = eventually(Duration::from_secs(30), || {
            last = nslookup(server, "db.default.svc.cluster.local");
            has_address(&last, &db0) && has_address(&last, &db1)
        });
        assert!(resolved, "{last}");

        // An unknown name: NXDOMAIN.
        let out = nslookup(server, "nope.default.svc.cluster.local");
        assert!(out.contains("NXDOMAIN"), "{out}");

        // An outside name, through the test's upstream.
        let out = nslookup(server, "www.example.com");
        assert!(has_address(&out, &OUTSIDE_ADDRESS.to_string()), "{out}");

        // From the host with dig: every record type, over UDP and TCP.
        assert_eq!(
            dig(&["kubernetes.default.svc.cluster.local", "A"]).trim(),
            "10.43.0.1"
        );
        assert_eq!(
            dig(&["+tcp", "kubernetes.default.svc.cluster.local", "A"]).trim(),
            "10.43.0.1"
        );
        assert_eq!(
            dig(&["_https._tcp.kubernetes.default.svc.cluster.local", "SRV"]).trim(),
            "0 100 443 kubernetes.default.svc.cluster.local."
        );
        assert_eq!(
            dig(&["-x", "10.43.0.1"]).trim(),
            "kubernetes.default.svc.cluster.local."
        );
        assert_eq!(
            dig(&["-x", CLUSTER_DNS]).trim(),
            "kube-dns.kube-system.svc.cluster.local."
        );
        let cname = dig(&["ext.default.svc.cluster.local", "A"]);
        assert_eq!(
            cname.lines().collect::<Vec<_>>(),
            ["www.example.com.", &OUTSIDE_ADDRESS.to_string()],
            "{cname}"
        );
        assert_eq!(dig(&["db-0.db.default.svc.cluster.local", "A"]).trim(), db0);
        let srv = dig(&["_pg._tcp.db.default.svc.cluster.local", "SRV"]);
        assert!(
            srv.contains("5432 db-0.db.default.svc.cluster.local."),
            "{srv}"
        );
        assert_eq!(srv.lines().count(), 2, "{srv}");
        assert_eq!(
            dig(&["10-42-0-9.default.pod.cluster.local", "A"]).trim(),
            "10.42.0.9"
        );
        assert_eq!(dig_status("nope.default.svc.cluster.local"), "NXDOMAIN");
        assert_eq!(dig_status("default.svc.cluster.local"), "NOERROR");
        // For the record (no assertion on it): the server-and-node's memory now.
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or("");
        eprintln!("server with its node and cluster dns: {rss}");
    });
    drop(upstream);
}

#[test]
fn the_kube_dns_service_holds_the_cluster_dns_address() {
    let server = Server::start();
    let service = server.get_json(&["svc", "-n", "kube-system", "kube-dns"]);
    assert_eq!(service["spec"]["clusterIP"], CLUSTER_DNS);
    assert_eq!(service["metadata"]["labels"]["k8s-app"], "kube-dns");
    assert_eq!(
        service["metadata"]["labels"]["kubernetes.io/name"],
        "CoreDNS"
    );
    let ports: Vec<String> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}",
                p["name"].as_str().unwrap(),
                p["port"],
                p["protocol"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(ports, ["dns/53/UDP", "dns-tcp/53/TCP", "metrics/9153/TCP"]);
    // The address is taken: no other Service gets it.
    let err = server.fails(&[
        "create",
        "service",
        "clusterip",
        "thief",
        "--clusterip",
        CLUSTER_DNS,
        "--tcp",
        "53",
    ]);
    assert!(err.contains("already allocated"), "{err}");
}
