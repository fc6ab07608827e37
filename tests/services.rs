//! Services on a real node, through the node's service data plane (nftables, issue
//! 13): a ClusterIP spreads requests over a Deployment's pods (targetPort by name),
//! a pod reaches its own Service (hairpin), ClientIP affinity sticks, UDP is
//! served, a NodePort
//! answers on the node's addresses, a ClusterIP without endpoints and an unknown port
//! are refused at once, a LoadBalancer gets an EXTERNAL-IP, deleted Services leave
//! the table, the table outlives the stopped node and `skiff network cleanup`
//! removes it.
//!
//! Needs root, nft and the Debian packages containernetworking-plugins and
//! busybox-static; run with `flock /tmp/skiff-e2e.lock cargo test --test services --
//! --include-ignored`. The node has its own bridge (`common::node::NodeScope`) and
//! table (`ip skiff-<bridge>`); it cleans up even when it fails.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::{eventually, Server};

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:e2e
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: busybox:e2e
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 8081, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: udp}
spec:
  ports: [{name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing}
  ports: [{port: 80}]
"#;

fn nft_table(bridge: &str) -> Option<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", &format!("skiff-{bridge}")])
        .output()
        .expect("nft");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cluster_ip(server: &Server, service: &str) -> String {
    server.ok(&["get", "svc", service, "-o", "jsonpath={.spec.clusterIP}"])
}

/// What `pod` gets for an HTTP GET of `ip:port` (the serving pod's name), with
/// busybox nc (busybox's static wget crashes resolving names).
fn fetch(server: &Server, pod: &str, ip: &str, port: &str) -> Result<String, String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {ip} {port}");
    let (ok, out, err) = server.kubectl(&["exec", pod, "--", "sh", "-c", &script]);
    let body = out.lines().last().unwrap_or_default().trim().to_string();
    if ok && !body.is_empty() {
        Ok(body)
    } else {
        Err(format!("{out}{err}"))
    }
}

/// An HTTP GET from the host to `addr`; the body.
fn host_fetch(addr: &str) -> std::io::Result<String> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string())
}

fn web_pods(server: &Server) -> BTreeSet<String> {
    common::pods(server, "app=web")
        .iter()
        .filter(|p| common::is_ready(p))
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The node's address on its pod bridge (the first of its pod CIDR).
fn gateway_of(server: &Server) -> std::net::Ipv4Addr {
    let pod_cidr = server.ok(&["get", "node", "-o", "jsonpath={.items[0].spec.podCIDR}"]);
    let network: std::net::Ipv4Addr = pod_cidr.split('/').next().unwrap().parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(network) + 1)
}

/// A UDP echo on `addr` answering `name` to every datagram, until `stop`.
fn udp_echo(
    addr: std::net::SocketAddr,
    name: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u16, std::thread::JoinHandle<()>) {
    let socket = std::net::UdpSocket::bind(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(name.as_bytes(), peer);
            }
        }
    });
    (port, handle)
}

fn udp_slice(gateway: std::net::Ipv4Addr, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: udp-1, labels: {{kubernetes.io/service-name: udp}}}}\naddressType: IPv4\nendpoints: [{{addresses: [\"{gateway}\"], conditions: {{ready: true}}}}]\nports: [{{name: dns, port: {port}, protocol: UDP}}]\n"
    )
}

/// UDP through a ClusterIP (from the node, to two echo servers on the node's bridge
/// address standing in for backends): a client's flow keeps going to its backend
/// while it sends, until that backend leaves the EndpointSlice: then its conntrack
/// entries are flushed and the same flow reaches the new backend.
fn check_udp(server: &Server, gateway: &std::net::Ipv4Addr) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (one, h1) = udp_echo((*gateway, 0).into(), "one", stop.clone());
    let (two, h2) = udp_echo((*gateway, 0).into(), "two", stop.clone());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], &udp_slice(*gateway, one));
        assert!(ok, "{out}{err}");
        let udp = cluster_ip(server, "udp");
        let client = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        client.connect(format!("{udp}:53")).unwrap();
        let ask = || {
            let _ = client.send(b"hi");
            let mut buf = [0u8; 16];
            client
                .recv(&mut buf)
                .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
                .unwrap_or_default()
        };
        let mut got = String::new();
        let first = eventually(Duration::from_secs(20), || {
            got = ask();
            got == "one"
        });
        assert!(first, "UDP to {udp}:53 got {got:?}");
        let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], &udp_slice(*gateway, two));
        assert!(ok, "{out}{err}");
        let moved = eventually(Duration::from_secs(20), || {
            got = ask();
            got == "two"
        });
        assert!(moved, "the UDP flow stayed on the old backend: {got:?}");
    }));
    stop.store(true, Ordering::Relaxed);
    let _ = h1.join();
    let _ = h2.join();
    let _ = server.kubectl(&["delete", "endpointslice", "udp-1"]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn check_services(server: &Server) {
    let (ok, out, err) = server.with_stdin(&["apply", "-f", "-"], MANIFEST);
    assert!(ok, "apply failed: {out}{err}");
    let ready = eventually(Duration::from_secs(90), || {
        web_pods(server).len() == 2
            && common::pods(server, "!app")
                .iter()
                .any(|p| p["metadata"]["name"] == "client" && common::is_ready(p))
    });
    assert!(
        ready,
        "pods not ready:\n{}",
        server.ok(&["get", "pods", "-o", "wide"])
    );
    let backends = web_pods(server);
    let bridge = server.node_scope().bridge;

    // ClusterIP, targetPort by name: several requests reach both backends.
    let web = cluster_ip(server, "web");
    let mut seen = BTreeSet::new();
    let spread = eventually(Duration::from_secs(60), || {
        if let Ok(name) = fetch(server, "client", &web, "80") {
            seen.insert(name);
        }
        seen == backends
    });
    assert!(
        spread,
        "ClusterIP {web} reached {seen:?} of {backends:?}\ntable:\n{}",
        nft_table(&bridge).unwrap_or_default()
    );

    // Hairpin: a backend reaches its own Service, and so itself.
    let first = backends.iter().next().unwrap().clone();
    let mut answers = Vec::new();
    let itself = eventually(Duration::from_secs(60), || {
        answers.push(fetch(server, &first, &web, "80"));
        answers.last().unwrap().as_ref().is_ok_and(|n| *n == first)
    });
    assert!(
        itself
            && answers
                .iter()
                .all(|a| a.as_ref().is_ok_and(|n| backends.contains(n))),
        "hairpin from {first}: {answers:?}"
    );

    // ClientIP affinity: one client, one backend.
    let sticky = cluster_ip(server, "sticky");
    let answers: BTreeSet<String> = (0..8)
        .map(|_| fetch(server, "client", &sticky, "80").unwrap())
        .collect();
    assert_eq!(answers.len(), 1, "affinity broken: {answers:?}");

    check_udp(server, &gateway_of(server));

    // An unknown port of a served ClusterIP, and a ClusterIP without endpoints, are
    // refused (TCP reset), not left to time out.
    let empty = cluster_ip(server, "empty");
    for (ip, port) in [(web.as_str(), "81"), (empty.as_str(), "80")] {
        let (ok, out, err) = server.kubectl(&["exec", "client", "--", "nc", "-w", "10", ip, port]);
        assert!(!ok, "nc to {ip}:{port} succeeded: {out}");
        assert!(err.contains("refused"), "nc to {ip}:{port}: {out}{err}");
    }

    // NodePort on the node's addresses (here its bridge address), from the host and
    // from a pod.
    let node_port = server.ok(&[
        "get",
        "svc",
        "web-np",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let gateway = gateway_of(server);
    let mut from_host = Err(std::io::Error::other("not tried"));
    let answered = eventually(Duration::from_secs(20), || {
        from_host = host_fetch(&format!("{gateway}:{node_port}"));
        from_host.as_ref().is_ok_and(|n| backends.contains(n))
    });
    assert!(
        answered,
        "NodePort {gateway}:{node_port} from the host: {from_host:?}"
    );
    let from_pod = fetch(server, "client", &gateway.to_string(), &node_port);
    assert!(
        from_pod.as_ref().is_ok_and(|n| backends.contains(n)),
        "NodePort from a pod: {from_pod:?}"
    );

    // LoadBalancer: an EXTERNAL-IP (the node's address) and a node port.
    let mut line = String::new();
    let external = eventually(Duration::from_secs(20), || {
        line = server.ok(&["get", "svc", "web-lb", "--no-headers"]);
        line.split_whitespace()
            .nth(3)
            .is_some_and(|ip| ip == "127.0.0.1")
    });
    assert!(external, "no EXTERNAL-IP: {line}");
    assert!(line.contains("8081:3"), "no node port: {line}");

    // Deleted Services leave the table.
    server.ok(&[
        "delete", "svc", "web", "sticky", "web-np", "web-lb", "empty", "udp",
    ]);
    let mut table = String::new();
    let gone = eventually(Duration::from_secs(20), || {
        table = nft_table(&bridge).unwrap_or_default();
        let left = [
            "default/web",
            "default/sticky",
            "default/empty",
            "default/udp",
        ];
        table.contains("service-ips") && !left.iter().any(|s| table.contains(s))
    });
    assert!(gone, "services left in the table:\n{table}");
}

#[test]
#[ignore = "needs root"]
fn services_are_served_by_the_node_and_cleanup_removes_the_table() {
    let work = tempfile::tempdir().unwrap();
    let archive = common::busybox_e2e_archive(work.path());
    let mut server = common::start_server_node(&archive, &[]);
    let scope = server.node_scope();
    let data = server.data_dir();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_services(&server)));
    let _ = server.kubectl(&["delete", "pods", "--all", "--timeout=30s"]);
    server.kill9();
    let table_after_stop = nft_table(&scope.bridge).is_some();
    let cleanup = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "network",
            "cleanup",
            "--cni-bridge",
            &scope.bridge,
            "--cluster-cidr",
            "10.42.0.0/16",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .expect("skiff network cleanup");
    let table_after_cleanup = nft_table(&scope.bridge).is_some();
    let sink_after_cleanup = Command::new("ip")
        .args(["link", "show", &scope.sink()])
        .output()
        .is_ok_and(|o| o.status.success());
    let bridge_after_cleanup = Command::new("ip")
        .args(["link", "show", &scope.bridge])
        .output()
        .is_ok_and(|o| o.status.success());
    common::node::force_clean(&data);
    drop(server);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(
        table_after_stop,
        "the table went with the node (it should stay)"
    );
    assert!(
        cleanup.status.success(),
        "cleanup failed: {}",
        String::from_utf8_lossy(&cleanup.stderr)
    );
    assert!(!table_after_cleanup, "cleanup left the table");
    assert!(!sink_after_cleanup, "cleanup left the sink link");
    assert!(!bridge_after_cleanup, "cleanup left the pod bridge");
}
