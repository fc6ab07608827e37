//! The pod network across nodes on a real node: the server's own node announces itself
//! with flannel's annotations (backend type, VTEP MAC, public IP, kube subnet
//! manager), and a node sharing its network namespace is no remote peer (no VXLAN
//! device for it). The two-namespace data path is tested in
//! `network::overlay::kernel_tests`. Needs root (`#[ignore = "needs root"]`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{eventually, Server};

fn annotation(server: &Server, node: &str, key: &str) -> String {
    let (ok, out, _) = server.kubectl(&["get", "node", node, "-o", "json"]);
    if !ok {
        return String::new();
    }
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Whether this machine's namespace has a `flannel.1` made by node `node`.
fn device_of(node: &str) -> bool {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "flannel.1"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("alias skiff node {node}"))
}

#[test]
#[ignore = "needs root"]
fn a_node_announces_itself_like_flannel_and_same_namespace_nodes_are_no_peers() {
    let server = Server::start_with_agent(|_| {}, &["--node-name", "ovl-server"]);
    common::run_then_clean_node(server, |server| {
        let backend = "flannel.alpha.coreos.com/backend-type";
        let announced = eventually(Duration::from_secs(30), || {
            annotation(server, "ovl-server", backend) == "vxlan"
        });
        assert!(announced, "{}", server.log());
        let data: serde_json::Value = serde_json::from_str(&annotation(
            server,
            "ovl-server",
            "flannel.alpha.coreos.com/backend-data",
        ))
        .unwrap();
        assert_eq!(data["VNI"], 1);
        let mac = data["VtepMAC"].as_str().unwrap();
        assert_eq!(mac.len(), 17, "{mac}");
        // The public IP is the node IP.
        let node = server.get_json(&["node", "ovl-server"]);
        let internal = node["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .and_then(|a| a["address"].as_str())
            .unwrap()
            .to_string();
        let public = annotation(server, "ovl-server", "flannel.alpha.coreos.com/public-ip");
        assert_eq!(public, internal);
        assert_eq!(
            annotation(
                server,
                "ovl-server",
                "flannel.alpha.coreos.com/kube-subnet-manager"
            ),
            "true"
        );

        // A node announcing an address of this namespace shares its routing table:
        // it gets no device, no route.
        let twin = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"ovl-twin","annotations":{
            "flannel.alpha.coreos.com/backend-type":"vxlan",
            "flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"0a:00:00:00:00:01\"}",
            "flannel.alpha.coreos.com/public-ip":"PUBLIC",
            "flannel.alpha.coreos.com/kube-subnet-manager":"true"}},
            "spec":{"podCIDR":"10.42.250.0/24","podCIDRs":["10.42.250.0/24"]}}"#;
        let twin = twin.replace("PUBLIC", &public);
        let (ok, out, err) = server.with_stdin(&["create", "-f", "-"], &twin);
        assert!(ok, "{out}{err}");
        let appeared = eventually(Duration::from_secs(3), || device_of("ovl-server"));
        assert!(!appeared, "a vxlan device for a same-namespace node");
        assert!(
            !server
                .log()
                .contains("pod network across nodes is not in place"),
            "{}",
            server.log()
        );
        server.ok(&["delete", "node", "ovl-twin"]);
    });
    assert!(!device_of("ovl-server"));
}
