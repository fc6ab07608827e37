//! What a node's credentials and the join token may do: a simulated node's own
//! certificate reads only the Secrets its pods use, reads every Node but cannot touch
//! other nodes or their leases or create pods; the join token registers new names
//! only (an existing name needs its node password) and never acts as an admin;
//! serving certificates name only addresses the server can check; and the database,
//! token, keys and agent credentials are owner-only whatever the umask.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, Agent, Server, KUBECTL};

/// A kubeconfig holding node `name`'s own credentials from its data dir.
fn node_kubeconfig(server: &Server, agent: &Agent, name: &str) -> PathBuf {
    let dir = agent.data_dir().join("agent/credentials");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("node credentials");
    let credentials = skiff::client::Credentials {
        server: format!("https://127.0.0.1:{}", server.port),
        ca_pem: read("ca.crt"),
        cert_pem: read(&format!("{name}.crt")),
        key_pem: read(&format!("{name}.key")),
    };
    let path = server.dir.path().join(format!("{name}.kubeconfig"));
    std::fs::write(&path, skiff::client::kubeconfig_yaml(&credentials)).unwrap();
    path
}

/// kubectl with `kubeconfig`; returns (success, stdout + stderr).
fn kubectl_as(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(KUBECTL)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap().join("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    let input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        let mut input = input;
        input.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn refused(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out) = kubectl_as(kubeconfig, args, stdin);
    assert!(!ok, "kubectl {args:?} as a node should be refused: {out}");
    assert!(
        out.to_lowercase().contains("forbidden"),
        "kubectl {args:?}: {out}"
    );
    out
}

fn allowed(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out) = kubectl_as(kubeconfig, args, None);
    assert!(ok, "kubectl {args:?} as a node should work: {out}");
    out
}

fn nodes_ready(server: &Server, names: &[&str]) -> bool {
    eventually(Duration::from_secs(30), || {
        let out = server.kubectl(&["get", "nodes", "--no-headers"]).1;
        names.iter().all(|n| {
            out.lines().any(|l| {
                let mut f = l.split_whitespace();
                f.next() == Some(n) && f.next() == Some("Ready")
            })
        })
    })
}

const POD_ON_N1: &str = "apiVersion: v1
kind: Pod
metadata:
  name: uses-secret
  namespace: default
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox
    env:
    - name: X
      valueFrom:
        secretKeyRef: {name: used, key: k}
";

#[test]
fn a_nodes_credentials_reach_only_what_its_pods_need() {
    let server = Server::start();
    let n1 = Agent::start(&server, "n1", 1, &[]);
    let _n2 = Agent::start(&server, "n2", 1, &[]);
    assert!(nodes_ready(&server, &["n1", "n2"]), "{}", n1.log());
    server.ok(&["create", "secret", "generic", "used", "--from-literal=k=v"]);
    server.ok(&[
        "create",
        "secret",
        "generic",
        "unused",
        "--from-literal=k=v",
    ]);
    let (ok, _, err) = server.with_stdin(&["apply", "-f", "-"], POD_ON_N1);
    assert!(ok, "{err}");
    let node = node_kubeconfig(&server, &n1, "n1");

    let secret = allowed(
        &node,
        &["get", "secret", "used", "-o", "jsonpath={.data.k}"],
    );
    assert_eq!(secret.trim(), "dg==");
    let out = refused(&node, &["get", "secret", "unused"], None);
    assert!(
        out.contains("User \"system:node:n1\" cannot get resource \"secrets\"")
            && out.contains("no relationship found between node 'n1' and this object"),
        "{out}"
    );
    refused(&node, &["get", "secrets"], None);
    refused(&node, &["get", "secret", "used", "-n", "kube-system"], None);

    // Every Node is readable (the agent is also flannel and kube-proxy), only its own
    // writable.
    let nodes = allowed(&node, &["get", "nodes", "-o", "name"]);
    assert!(nodes.contains("node/n2"), "{nodes}");
    allowed(&node, &["get", "node", "n2"]);
    let out = refused(&node, &["delete", "node", "n2"], None);
    assert!(out.contains("node 'n1' cannot modify node 'n2'"), "{out}");
    refused(&node, &["label", "node", "n2", "evil=yes"], None);
    let lease = r#"{"spec":{"holderIdentity":"n1"}}"#;
    let args = [
        "-n",
        "kube-node-lease",
        "patch",
        "lease",
        "n2",
        "--type=merge",
        "-p",
        lease,
    ];
    refused(&node, &args, None);
    let own = [
        "-n",
        "kube-node-lease",
        "patch",
        "lease",
        "n1",
        "--type=merge",
        "-p",
        lease,
    ];
    allowed(&node, &own);

    let pod = POD_ON_N1
        .replace("uses-secret", "sneaky")
        .replace("n1", "n2");
    refused(&node, &["create", "-f", "-"], Some(&pod));
    refused(&node, &["get", "pods", "-A"], None);
    let mine = allowed(
        &node,
        &["get", "pods", "-A", "--field-selector", "spec.nodeName=n1"],
    );
    assert!(mine.contains("uses-secret"), "{mine}");
    refused(&node, &["get", "deployments", "-A"], None);
    refused(&node, &["create", "namespace", "evil"], None);
    assert!(server.ok(&["get", "nodes"]).contains("n2"));
}

/// A kubeconfig presenting only the join token.
fn token_kubeconfig(server: &Server) -> PathBuf {
    use base64::Engine;
    let token = std::fs::read_to_string(server.data_dir().join("server/token")).unwrap();
    let ca = std::fs::read(server.data_dir().join("server/tls/ca.crt")).unwrap();
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        server.port,
        base64::engine::general_purpose::STANDARD.encode(ca),
        token.trim()
    );
    let path = server.dir.path().join("token.kubeconfig");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn san_ips(cert_pem: &str) -> Vec<std::net::IpAddr> {
    use x509_parser::extensions::GeneralName;
    let der = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .unwrap()
        .1;
    let cert = der.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::IPAddress(b) if b.len() == 4 => {
                Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_join_token_registers_new_names_only() {
    let server = Server::start();
    let mut n1 = Agent::start(&server, "n1", 1, &[]);
    assert!(nodes_ready(&server, &["n1"]), "{}", n1.log());
    let url = format!("https://127.0.0.1:{}", server.port);
    let token = std::fs::read_to_string(server.data_dir().join("server/token")).unwrap();
    let token = token.trim();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let join = |node: &str, dir: &Path| {
        runtime.block_on(skiff::agent::join::node_credentials(&url, token, node, dir))
    };

    // Another machine claiming n1 with the token alone is refused, clearly.
    let thief = tempfile::tempdir().unwrap();
    let err = join("n1", thief.path())
        .expect_err("n1 is taken")
        .to_string();
    assert!(
        err.contains("n1")
            && err.contains("node password")
            && err.contains("kubectl delete node n1"),
        "{err}"
    );
    // With n1's password (its proof) the same name is fine.
    let owner_dir = n1.data_dir().join("agent/credentials");
    let proof = tempfile::tempdir().unwrap();
    std::fs::copy(
        owner_dir.join("n1.password"),
        proof.path().join("n1.password"),
    )
    .unwrap();
    let creds = join("n1", proof.path()).expect("n1 with its password");
    assert!(creds.cert_pem.contains("CERTIFICATE"));
    // A new name registers, and its password is recorded for admins to see.
    let fresh = tempfile::tempdir().unwrap();
    join("n9", fresh.path()).expect("a new name joins");
    server.ok(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        "n9.node-password.skiff",
    ]);

    // The same agent restarting (its certificate gone, so it joins again) is fine.
    std::fs::remove_file(owner_dir.join("n1.crt")).unwrap();
    n1.restart(&server);
    assert!(
        eventually(Duration::from_secs(30), || owner_dir
            .join("n1.crt")
            .exists()),
        "{}",
        n1.log()
    );
    assert!(nodes_ready(&server, &["n1"]), "{}", n1.log());
    assert!(!n1.log().contains("refused"), "{}", n1.log());

    // The token is no admin: it cannot read Secrets or list nodes.
    let bootstrap = token_kubeconfig(&server);
    refused(&bootstrap, &["get", "secrets", "-A"], None);
    refused(&bootstrap, &["get", "nodes"], None);

    // Serving certificates name the node's checkable addresses only.
    let foreign: std::net::IpAddr = "203.0.113.77".parse().unwrap();
    let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let serving = runtime
        .block_on(skiff::agent::join::serving_credentials(
            &url,
            token,
            "n9",
            &[local, foreign],
            fresh.path(),
        ))
        .expect("serving certificate");
    let ips = san_ips(&serving.cert_pem);
    assert!(ips.contains(&local), "{ips:?}");
    assert!(!ips.contains(&foreign), "{ips:?}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn assert_private(server: &Server, agent: &Agent) {
    let data = server.data_dir();
    for dir in [
        data.clone(),
        data.join("server"),
        data.join("server/db"),
        data.join("server/tls"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let mut files = vec![
        data.join("server/db/state.db"),
        data.join("server/db/state.db-wal"),
        data.join("server/db/state.db-shm"),
        data.join("server/token"),
    ];
    for entry in std::fs::read_dir(data.join("server/tls"))
        .unwrap()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "key") {
            files.push(entry.path());
        }
    }
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let credentials = agent.data_dir().join("agent/credentials");
    assert_eq!(mode(&agent.data_dir().join("agent")), 0o700);
    assert_eq!(mode(&credentials), 0o700);
    for name in ["n1.key", "n1.crt", "n1.password", "ca.crt"] {
        assert_eq!(mode(&credentials.join(name)), 0o600, "{name}");
    }
}

#[test]
fn secrets_on_disk_are_owner_only_whatever_the_umask() {
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o022));
    let mut server = Server::start();
    let mut n1 = Agent::start(&server, "n1", 1, &[]);
    assert!(nodes_ready(&server, &["n1"]), "{}", n1.log());
    assert_private(&server, &n1);

    // Files left wide open (older versions, a careless copy) are narrowed at start-up.
    let data = server.data_dir();
    let widen = |p: PathBuf, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    widen(data.clone(), 0o755);
    widen(data.join("server"), 0o755);
    widen(data.join("server/db"), 0o755);
    widen(data.join("server/db/state.db"), 0o644);
    widen(data.join("server/token"), 0o644);
    widen(data.join("server/tls/ca.key"), 0o644);
    let credentials = n1.data_dir().join("agent/credentials");
    widen(credentials.clone(), 0o755);
    widen(credentials.join("n1.key"), 0o644);
    widen(credentials.join("n1.password"), 0o644);
    server.restart();
    n1.restart(&server);
    assert!(
        eventually(Duration::from_secs(30), || mode(&credentials) == 0o700),
        "{}",
        n1.log()
    );
    assert!(nodes_ready(&server, &["n1"]), "{}", n1.log());
    assert_private(&server, &n1);
}

/// NodeRestriction on a node's own Node: it registers with its `--node-taint`s and
/// allowed labels, may later change labels outside the restricted namespaces only,
/// never its taints; an agent given a restricted `--node-label` stops at start.
#[test]
fn a_node_may_not_give_itself_roles_or_change_its_taints() {
    let server = Server::start();
    let n1 = Agent::start(
        &server,
        "n1",
        1,
        &[
            "--node-taint",
            "dedicated=edge:NoSchedule",
            "--node-label",
            "zone=a",
            "--node-label",
            "topology.kubernetes.io/zone=z1",
        ],
    );
    assert!(nodes_ready(&server, &["n1"]), "{}", n1.log());
    let node = node_kubeconfig(&server, &n1, "n1");
    let taint_keys = || server.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.taints[*].key}"]);
    assert_eq!(taint_keys().trim(), "dedicated");
    let labels = server.ok(&["get", "node", "n1", "--show-labels"]);
    assert!(
        labels.contains("zone=a") && labels.contains("topology.kubernetes.io/zone=z1"),
        "{labels}"
    );

    let out = refused(
        &node,
        &["label", "node", "n1", "node-role.kubernetes.io/x="],
        None,
    );
    assert!(
        out.contains(
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify labels: node-role.kubernetes.io/x"
        ),
        "{out}"
    );
    refused(
        &node,
        &[
            "label",
            "node",
            "n1",
            "node-restriction.kubernetes.io/pci=yes",
        ],
        None,
    );
    refused(
        &node,
        &["label", "node", "n1", "kubernetes.io/role=master"],
        None,
    );
    let out = refused(&node, &["taint", "node", "n1", "dedicated-"], None);
    assert!(
        out.contains("node \"n1\" is not allowed to modify taints"),
        "{out}"
    );
    refused(&node, &["taint", "node", "n1", "extra=1:NoExecute"], None);
    assert_eq!(taint_keys().trim(), "dedicated");

    // Labels outside the restricted namespaces, and kubelet's own, are the node's.
    allowed(&node, &["label", "node", "n1", "zone=b", "--overwrite"]);
    allowed(
        &node,
        &["label", "node", "n1", "node.kubernetes.io/pool=edge"],
    );
    allowed(
        &node,
        &[
            "label",
            "node",
            "n1",
            "topology.kubernetes.io/zone=z2",
            "--overwrite",
        ],
    );
    // An admin gives it a role; the node keeps working around it but cannot drop it.
    server.ok(&["label", "node", "n1", "node-role.kubernetes.io/edge="]);
    allowed(&node, &["label", "node", "n1", "zone=c", "--overwrite"]);
    refused(
        &node,
        &["label", "node", "n1", "node-role.kubernetes.io/edge-"],
        None,
    );
    server.ok(&["taint", "node", "n1", "dedicated-"]);
    assert_eq!(taint_keys().trim(), "");
    let out = server.ok(&["get", "nodes", "n1", "--no-headers"]);
    assert!(out.contains(" Ready ") && out.contains("edge"), "{out}");

    // An agent asked to set a restricted label on itself refuses to start, as kubelet.
    let n2 = Agent::start(
        &server,
        "n2",
        1,
        &["--node-label", "node-role.kubernetes.io/worker=true"],
    );
    let refused_at_start = eventually(Duration::from_secs(20), || {
        n2.log()
            .contains("invalid --node-label \"node-role.kubernetes.io/worker\"")
    });
    assert!(refused_at_start, "{}", n2.log());
    assert!(n2.log().contains("kubectl label node n2"), "{}", n2.log());
    let nodes = server.ok(&["get", "nodes", "-o", "name"]);
    assert!(!nodes.contains("node/n2"), "{nodes}");
}
