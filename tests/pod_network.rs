//! Pod networking through skiff's CNI invoker and real plugins — skiff's built-in
//! ones (the skiff binary through links named after them, as the agent runs them) and
//! Debian's containernetworking-plugins: a network namespace gets an address from the
//! pod CIDR over a bridge, reachable from the host, and DEL plus namespace removal
//! leave no link, address or cache behind.
//! Needs root: `#[ignore = "needs root"]`, run with `--include-ignored` (CI does).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Map};
use skiff::network::cni::{first_ipv4, Attachment, Invoker};
use skiff::network::netns;

const DEBIAN: &str = "/usr/lib/cni";

fn run(cmd: &[&str]) -> (bool, String) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().expect(cmd[0]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Removes the test's bridge and namespace even when the test fails.
struct Cleanup {
    bridge: String,
    netns: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(path) = &self.netns {
            let _ = netns::remove(path);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_pod_namespace_gets_an_address_over_the_builtin_bridge_and_del_cleans_up() {
    let links = tempfile::tempdir().unwrap();
    for name in ["bridge", "host-local", "portmap", "loopback"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_skiff"), links.path().join(name)).unwrap();
    }
    address_over_the_bridge_and_del_cleans_up(links.path().to_path_buf(), 0).await;
}

#[tokio::test]
#[ignore = "needs root"]
async fn a_pod_namespace_gets_an_address_over_debians_bridge_and_del_cleans_up() {
    assert!(
        PathBuf::from(DEBIAN).join("bridge").exists(),
        "needs {DEBIAN} (containernetworking-plugins)"
    );
    address_over_the_bridge_and_del_cleans_up(DEBIAN.into(), 1).await;
}

/// The case for the plugins in `plugins`; `run_no` (0, 1) keeps names and subnets of
/// runs in parallel apart.
async fn address_over_the_bridge_and_del_cleans_up(plugins: PathBuf, run_no: u32) {
    let dir = tempfile::tempdir().unwrap();
    let bridge = format!("skt{run_no}{}", std::process::id() % 100_000);
    let mut cleanup = Cleanup {
        bridge: bridge.clone(),
        netns: None,
    };
    // A subnet only this test uses, inside the pod range the rules allow.
    let subnet = format!(
        "10.42.{}.0/24",
        200 + (std::process::id() % 25) * 2 + run_no
    );
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "skiff-test",
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": true, "hairpinMode": true,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                              "dataDir": dir.path().join("ipam")}}],
    });
    let invoker = Invoker::new(vec![plugins], dir.path().join("cache"), conflist).unwrap();
    let ns = netns::create(&dir.path().join("netns"), "pod1").unwrap();
    cleanup.netns = Some(ns.clone());
    let at = Attachment {
        container_id: "pod1".into(),
        netns: ns.clone(),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAMESPACE".into(), "default".into()),
            ("K8S_POD_NAME".into(), "pod1".into()),
        ],
        runtime_config: Map::new(),
    };
    let result = invoker.add(&at).await.unwrap();
    let ip = first_ipv4(&result).expect("an IPv4 address");
    assert!(
        subnet.starts_with(&format!(
            "{}.{}.{}.",
            ip.octets()[0],
            ip.octets()[1],
            ip.octets()[2]
        )),
        "{ip} not in {subnet}"
    );
    let ns_arg = format!("--net={}", ns.display());
    let (ok, addrs) = run(&["nsenter", &ns_arg, "ip", "-4", "addr", "show", "eth0"]);
    assert!(ok && addrs.contains(&ip.to_string()), "{addrs}");
    // The host reaches the pod over the bridge.
    let (ok, ping) = run(&["ping", "-c", "1", "-W", "2", &ip.to_string()]);
    assert!(ok, "{ping}");
    invoker.check(&at).await.unwrap();

    invoker.del(&at).await.unwrap();
    let (_, links) = run(&["nsenter", &ns_arg, "ip", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    assert!(
        std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .next()
            .is_none(),
        "cached result left behind"
    );
    netns::remove(&ns).unwrap();
    assert!(!ns.exists());
    cleanup.netns = None;
}
