//! `kubectl logs` and `kubectl exec` end to end, without the pod runtime: the API
//! (router, store, PKI, as `skiff server` has them) runs in this process; a node's
//! kubelet API, also in this process, serves one busybox container made by the real
//! runtime (real binary as shim), entered through the real binary as `skiff nsexec`.
//! The Node and Pod objects are made with kubectl; the real `/usr/bin/kubectl` talks
//! to the API, which proxies to the kubelet API over mutual TLS.
//!
//! Needs root (`#[ignore = "needs root"]`) and busybox-static's `/bin/busybox`. The
//! container is removed when the fixture drops, pass or fail.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;

use skiff::agent::kubelet::{self, ContainerAccess};
use skiff::api::auth::{PeerAddress, PeerIdentity};
use skiff::api::join::{CredentialIssuer, PkiIssuer};
use skiff::api::{ApiConfig, ApiState};
use skiff::pki::{CertOptions, Pki};
use skiff::runtime::exec::ExecTarget;
use skiff::runtime::{
    ContainerConfig, HostCgroups, HostFacts, HostProcesses, LogConfig, Runtime, ShimCommand,
    UserIds,
};
use skiff::store::{SqliteOptions, SqliteStore};

const KUBECTL: &str = "/usr/bin/kubectl";
const BUSYBOX: &str = "/bin/busybox";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn skiff(subcommand: &str) -> ShimCommand {
    ShimCommand {
        program: env!("CARGO_BIN_EXE_skiff").into(),
        leading_args: vec![subcommand.into()],
        env: Vec::new(),
    }
}

/// The node's one container, as the pod runtime would show it.
struct Access {
    runtime: Runtime,
    id: String,
    config: ContainerConfig,
    /// How often the log path was asked for (a follower asks every second).
    asked: AtomicUsize,
}

impl ContainerAccess for Access {
    fn log_path(&self, ns: &str, pod: &str, container: &str, previous: bool) -> Option<PathBuf> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let ours = (ns, pod, container) == ("default", "web", "main") && !previous;
        ours.then(|| self.config.log.path.clone())
    }

    fn exec_target(&self, ns: &str, pod: &str, container: &str) -> Option<ExecTarget> {
        if (ns, pod, container) != ("default", "web", "main") {
            return None;
        }
        match self.runtime.state(&self.id).ok()? {
            skiff::runtime::ContainerState::Running { pid, .. } => Some(ExecTarget {
                container_id: self.id.clone(),
                pid,
                env: self.config.env.clone(),
                user: UserIds::default(),
                working_dir: None,
                cgroup_path: self.config.cgroup_path.clone(),
            }),
            _ => None,
        }
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    access: Arc<Access>,
    tokio: tokio::runtime::Runtime,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.access.runtime.remove_blocking(&self.access.id) {
            eprintln!("cleanup of {} failed: {e}", self.access.id);
        }
    }
}

fn make_rootfs(rootfs: &Path) {
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("mkdir");
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "sleep", "echo", "cat", "hostname", "seq"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
}

/// Serves the API router over TLS with client identities, as `skiff server` does.
async fn serve_api(listener: tokio::net::TcpListener, pki: Arc<Pki>, router: axum::Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_tls_config().expect("tls"));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| skiff::pki::client_identity(c.as_ref()).ok());
            let service = TowerToHyperService::new(
                router
                    .layer(axum::Extension(PeerIdentity(identity)))
                    .layer(axum::Extension(PeerAddress(peer))),
            );
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            Path::new(BUSYBOX).exists(),
            "apt-get install busybox-static"
        );
        let dir = tempfile::Builder::new()
            .prefix("skiff-logs-exec-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        make_rootfs(&dir.path().join("rootfs"));
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");

        let runtime = Runtime::with_parts(
            dir.path().join("containers"),
            skiff("shim"),
            HostFacts::probe().expect("host facts"),
            HostCgroups::detect().expect("cgroups"),
            HostProcesses,
        );
        let id = format!("logs-exec-{}", std::process::id());
        let config = ContainerConfig {
            id: id.clone(),
            rootfs: dir.path().join("rootfs"),
            args: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo started; echo to-stderr >&2; i=0; \
                 while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
                    .into(),
            ],
            env: vec![("PATH".into(), "/bin".into()), ("FOO".into(), "bar".into())],
            hostname: Some("web".into()),
            cgroup_path: format!("/skiff-{id}").into(),
            log: LogConfig {
                path: dir.path().join("logs/main/0.log"),
                ..LogConfig::default()
            },
            ..ContainerConfig::default()
        };
        tokio
            .block_on(runtime.create(&config))
            .expect("create the container");
        let access = Arc::new(Access {
            runtime,
            id,
            config,
            asked: AtomicUsize::new(0),
        });
        let cluster = Cluster { dir, access, tokio };
        let kubelet_port = cluster.start_servers();
        cluster.make_objects(kubelet_port);
        cluster
    }

    /// Starts the API and the kubelet API; writes the kubeconfig; returns the
    /// kubelet port.
    fn start_servers(&self) -> u16 {
        let options = CertOptions {
            hostname: "server".into(),
            sans: Vec::new(),
            cluster_domain: "cluster.local".into(),
            first_service_ip: "10.43.0.1".parse().expect("ip"),
            node_addresses: vec![LOCALHOST],
        };
        let pki =
            Arc::new(Pki::load_or_create(&self.dir.path().join("tls"), &options).expect("pki"));
        let issuer = PkiIssuer(pki.clone());
        let access: Arc<dyn ContainerAccess> = self.access.clone();
        let dir = self.dir.path().to_path_buf();
        self.tokio.block_on(async move {
            let store = SqliteStore::open(SqliteOptions {
                path: dir.join("state.db"),
            })
            .expect("store");
            let api_listener = tokio::net::TcpListener::bind((LOCALHOST, 0))
                .await
                .expect("bind");
            let api_port = api_listener.local_addr().expect("addr").port();
            let state = ApiState::new(
                Arc::new(store),
                ApiConfig {
                    service_cidr: "10.43.0.0/16".parse().expect("cidr"),
                    advertise_address: SocketAddr::new(LOCALHOST, api_port).to_string(),
                    join_secret: "join-secret".into(),
                },
                Some(Arc::new(PkiIssuer(pki.clone()))),
            );
            let router = skiff::api::router(state.clone());
            let endpoint = skiff::api::bootstrap::ApiEndpoint {
                service_ip: "10.43.0.1".parse().expect("ip"),
                address: LOCALHOST,
                port: api_port,
            };
            skiff::api::bootstrap::ensure_defaults(&router, &endpoint)
                .await
                .expect("defaults");
            state.set_ready();
            tokio::spawn(serve_api(api_listener, pki.clone(), router));
            let (cert, key) = pki.admin_credentials();
            skiff::pki::write_kubeconfig(
                &dir.join("kubeconfig"),
                0o600,
                &format!("https://127.0.0.1:{api_port}"),
                pki.ca_pem(),
                &cert,
                &key,
            )
            .expect("kubeconfig");

            // The node's serving certificate, the way an agent gets it: the join.
            let token = skiff::pki::join_token(pki.ca_pem(), "join-secret");
            let credentials = skiff::agent::join::serving_credentials(
                &format!("https://127.0.0.1:{api_port}"),
                &token,
                "node1",
                &[LOCALHOST],
                &dir.join("agent-credentials"),
            )
            .await
            .expect("serving credentials from the join");
            assert_eq!(credentials.ca_pem, issuer.ca_pem());
            let resolver = Arc::new(kubelet::CertResolver::new(&credentials).expect("resolver"));
            let tls = kubelet::tls_config(&credentials.ca_pem, resolver).expect("tls");
            let listener = tokio::net::TcpListener::bind((LOCALHOST, 0))
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            tokio::spawn(kubelet::serve(
                listener,
                tls,
                kubelet::router(access, skiff("nsexec")),
            ));
            port
        })
    }

    fn make_objects(&self, kubelet_port: u16) {
        self.ok(&["create", "-f", "-"], Some(NODE), &[]);
        let status = format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"node1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{kubelet_port}}}}}}}}}"#
        );
        self.ok(
            &[
                "patch",
                "node",
                "node1",
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ],
            None,
            &[],
        );
        self.ok(&["create", "-f", "-"], Some(POD), &[]);
        self.ok(&["create", "-f", "-"], Some(UNSCHEDULED), &[]);
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KUBECTL);
        command
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path().join("home"));
        command
    }

    /// Runs kubectl with `stdin`; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut child = self
            .kubectl(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>, _env: &[(&str, &str)]) -> String {
        let (code, stdout, stderr) = self.run(args, stdin);
        assert_eq!(code, 0, "kubectl {args:?}:\n{stdout}\n{stderr}");
        stdout
    }
}

const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\n";
const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: node1\n  containers:\n  - name: main\n    image: busybox\n";
const UNSCHEDULED: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pending\nspec:\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    image: busybox\n";

fn wait_for_log(cluster: &Cluster, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&cluster.access.config.log.path)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the container's log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root"]
fn kubectl_logs_and_exec_reach_the_container() {
    let cluster = Cluster::start();
    wait_for_log(&cluster, "tick 2");

    // Logs: stdout and stderr, --tail, --timestamps, --limit-bytes.
    let logs = cluster.ok(&["logs", "web"], None, &[]);
    assert!(logs.starts_with("started\n"), "{logs}");
    for line in ["to-stderr", "tick 0", "tick 1", "tick 2"] {
        assert!(logs.lines().any(|l| l == line), "no {line:?} in {logs}");
    }
    let tail = cluster.ok(&["logs", "web", "--tail=1"], None, &[]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("tick "), "{tail}");
    let stamped = cluster.ok(
        &["logs", "web", "--timestamps", "--limit-bytes=200"],
        None,
        &[],
    );
    let first = stamped.lines().next().unwrap_or_default();
    assert!(first.ends_with("Z started"), "{stamped}");
    assert!(stamped.len() <= 200);

    // Exec: output, environment, exit codes, stdin.
    let out = cluster.ok(
        &["exec", "web", "--", "sh", "-c", "echo $FOO; hostname"],
        None,
        &[],
    );
    assert_eq!(out, "bar\nweb\n");
    let (code, _, stderr) = cluster.run(&["exec", "web", "--", "sh", "-c", "exit 3"], None);
    assert_eq!(code, 3, "{stderr}");
    let out = cluster.ok(
        &["exec", "-i", "web", "--", "cat"],
        Some("hi\nthere\n"),
        &[],
    );
    assert_eq!(out, "hi\nthere\n");
    let (code, _, stderr) = cluster.run(
        &["exec", "web", "--", "sh", "-c", "echo oops >&2; exit 1"],
        None,
    );
    assert_eq!((code, stderr.contains("oops")), (1, true), "{stderr}");
    let (code, _, stderr) = cluster.run(&["exec", "web", "--", "no-such-tool"], None);
    assert_eq!(code, 127, "{stderr}");
    assert!(stderr.contains("executable file not found"), "{stderr}");

    // Errors as Kubernetes words them.
    let (code, _, stderr) = cluster.run(&["logs", "pending", "-c", "a"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("does not have a host assigned"), "{stderr}");
    let (code, _, stderr) = cluster.run(&["logs", "web", "-c", "nope"], None);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("container nope is not valid for pod web"),
        "{stderr}"
    );

    let (code, _, stderr) = cluster.run(&["exec", "pending", "-c", "a", "--", "true"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("does not have a host assigned"), "{stderr}");

    // A follower whose client goes away stops following.
    let mut quitter = cluster
        .kubectl(&["logs", "-f", "web"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = BufReader::new(quitter.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("a line").expect("read"), "started");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = quitter.kill();
    let _ = quitter.wait();
    // The kubelet notices the client left and stops asking for more: once the count
    // holds for a second, it must hold for the next 2.5 s.
    let settle = Instant::now() + Duration::from_secs(10);
    let mut asked = cluster.access.asked.load(Ordering::SeqCst);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = cluster.access.asked.load(Ordering::SeqCst);
        if now == asked || Instant::now() > settle {
            break;
        }
        asked = now;
    }
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        assert_eq!(
            cluster.access.asked.load(Ordering::SeqCst),
            asked,
            "the kubelet still follows for a client that left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Follow: streams until the container stops.
    let mut follower = cluster
        .kubectl(&["logs", "-f", "web", "--tail=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    let first: i64 = tick(&lines.next().expect("a line").expect("read"));
    let mut last = first;
    while last < first + 3 {
        last = tick(&lines.next().expect("a line").expect("read"));
    }
    cluster
        .tokio
        .block_on(
            cluster
                .access
                .runtime
                .stop(&cluster.access.id, Duration::from_secs(1)),
        )
        .expect("stop");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = follower.try_wait().expect("wait") {
            assert!(status.success(), "kubectl logs -f ended with {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = follower.kill();
            let _ = follower.wait();
            panic!("kubectl logs -f did not end after the container stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, stderr) = cluster.run(&["exec", "web", "--", "true"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("is not running"), "{stderr}");
}

fn tick(line: &str) -> i64 {
    line.strip_prefix("tick ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a tick: {line:?}"))
}
