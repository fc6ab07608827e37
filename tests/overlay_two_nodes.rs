//! Two real nodes, each in its own network namespace joined by a veth pair (the
//! server with its node in one, `skiff agent` in the other): both announce themselves
//! with flannel's annotations, each programs a `flannel.1` with the other's route,
//! neighbour and fdb entry, the two VTEP addresses ping each other across the VXLAN,
//! and deleting a Node removes what the other had for it. Needs root
//! (`#[ignore = "needs root"]`); the namespaces, processes, cgroups and data go at the
//! end, also on failure.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::eventually;

const SERVER_IP: &str = "192.168.93.1";
const AGENT_IP: &str = "192.168.93.2";

/// What the test made, removed on drop.
struct Scene {
    namespaces: [String; 2],
    children: Vec<Child>,
    cgroups: [String; 2],
    dir: tempfile::TempDir,
}

impl Drop for Scene {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for root in &self.cgroups {
            let base = Path::new("/sys/fs/cgroup");
            let mut dirs = vec![base.join(root)];
            for controller in std::fs::read_dir(base).into_iter().flatten().flatten() {
                dirs.push(controller.path().join(root));
            }
            for dir in dirs.into_iter().filter(|d| d.is_dir()) {
                let _ = Command::new("find")
                    .arg(&dir)
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .status();
            }
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn must(args: &[&str]) -> String {
    let (ok, out) = run(args);
    assert!(ok, "{args:?}: {out}");
    out
}

fn in_ns(ns: &str, args: &[&str]) -> (bool, String) {
    run(&[&["ip", "netns", "exec", ns], args].concat())
}

fn spawn_in(ns: &str, log: &Path, args: &[&str]) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_skiff")])
        .args(args)
        .env("SKIFF_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn flannel_address(ns: &str) -> Option<String> {
    let (_, out) = in_ns(ns, &["ip", "-4", "-o", "addr", "show", "dev", "flannel.1"]);
    let word = out.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    Some(word.split('/').next()?.to_string())
}

#[test]
#[ignore = "needs root"]
fn two_nodes_in_two_namespaces_reach_each_other_over_vxlan() {
    let id = std::process::id();
    let mut scene = Scene {
        namespaces: [format!("skiff-ovs-{id}"), format!("skiff-ova-{id}")],
        children: Vec::new(),
        cgroups: [format!("skiff-ovs-{id}"), format!("skiff-ova-{id}")],
        dir: tempfile::tempdir().unwrap(),
    };
    let [server_ns, agent_ns] = scene.namespaces.clone();
    for ns in &scene.namespaces {
        must(&["ip", "netns", "add", ns]);
    }
    must(&[
        "ip", "link", "add", "ovl0", "netns", &server_ns, "type", "veth", "peer", "name", "ovl0",
        "netns", &agent_ns,
    ]);
    for (ns, ip) in [(&server_ns, SERVER_IP), (&agent_ns, AGENT_IP)] {
        must(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "ovl0",
        ]);
        must(&["ip", "-n", ns, "link", "set", "ovl0", "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let dir = scene.dir.path().to_path_buf();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::write(dir.join("config.yaml"), "").unwrap();
    let common_args = |bridge: &str, cgroup: &str| {
        vec![
            "--cni-bridge".to_string(),
            bridge.to_string(),
            "--cgroup-root".into(),
            format!("/{cgroup}"),
            "--private-registry".into(),
            path("registries.yaml"),
            "--disable-default-registry-endpoint".into(),
            "--lease-interval-seconds".into(),
            "2".into(),
        ]
    };
    let mut server_args: Vec<String> = [
        "server",
        "--config",
        &path("config.yaml"),
        "--bind-address",
        SERVER_IP,
        "--advertise-address",
        SERVER_IP,
        "--https-listen-port",
        "6443",
        "--data-dir",
        &path("server"),
        "--write-kubeconfig",
        &path("kubeconfig"),
        "--node-name",
        "ovl-s",
    ]
    .map(String::from)
    .to_vec();
    server_args.extend(common_args("ovls", &scene.cgroups[0]));
    let args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let child = spawn_in(&server_ns, &dir.join("server.log"), &args);
    scene.children.push(child);
    let token_file = dir.join("server/server/token");
    let started = eventually(Duration::from_secs(60), || {
        token_file.exists() && dir.join("kubeconfig").exists()
    });
    let log = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert!(started, "{}", log("server.log"));
    let token = std::fs::read_to_string(&token_file).unwrap();
    let mut agent_args: Vec<String> = [
        "agent",
        "--server",
        &format!("https://{SERVER_IP}:6443"),
        "--token",
        token.trim(),
        "--data-dir",
        &path("agent"),
        "--node-name",
        "ovl-a",
        "--node-ip",
        AGENT_IP,
    ]
    .map(String::from)
    .to_vec();
    agent_args.extend(common_args("ovla", &scene.cgroups[1]));
    let args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    let child = spawn_in(&agent_ns, &dir.join("agent.log"), &args);
    scene.children.push(child);

    let kubeconfig = path("kubeconfig");
    let kubectl = |args: &[&str]| {
        in_ns(
            &server_ns,
            &[&["kubectl", "--kubeconfig", kubeconfig.as_str()], args].concat(),
        )
    };
    let both = eventually(Duration::from_secs(90), || {
        flannel_address(&server_ns).is_some() && flannel_address(&agent_ns).is_some()
    });
    assert!(
        both,
        "{}\n{}\n{}",
        kubectl(&["get", "nodes", "-o", "yaml"]).1,
        log("server.log"),
        log("agent.log")
    );
    let (_, public) = kubectl(&[
        "get",
        "node",
        "ovl-a",
        "-o",
        "jsonpath={.metadata.annotations.flannel\\.alpha\\.coreos\\.com/public-ip}",
    ]);
    assert_eq!(public.trim(), AGENT_IP);
    let (_, link) = in_ns(&server_ns, &["ip", "-d", "link", "show", "flannel.1"]);
    assert!(
        link.contains("vxlan id 1") && link.contains("dstport 8472") && link.contains("mtu 1450"),
        "{link}"
    );

    let server_vtep = flannel_address(&server_ns).unwrap();
    let agent_vtep = flannel_address(&agent_ns).unwrap();
    let pinged = eventually(Duration::from_secs(20), || {
        in_ns(
            &server_ns,
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                &server_vtep,
                &agent_vtep,
            ],
        )
        .0
    });
    assert!(pinged, "{server_vtep} → {agent_vtep}");
    assert!(
        in_ns(
            &agent_ns,
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                &agent_vtep,
                &server_vtep
            ]
        )
        .0
    );

    // The agent's Node goes: the server's node drops its device with its last peer.
    let (ok, out) = kubectl(&["delete", "node", "ovl-a"]);
    assert!(ok, "{out}");
    let gone = eventually(Duration::from_secs(20), || {
        flannel_address(&server_ns).is_none()
    });
    assert!(gone, "{}", log("server.log"));
}
