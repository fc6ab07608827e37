//! ClusterIP and NodePort allocation for Services. Each allocation is a key in the
//! store written in the same transaction as the Service, so a value is never handed
//! out twice, even across restarts or concurrent creates; deleting the Service (or
//! changing its type) releases it in the same way.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::Value;

use crate::store::WriteOp;

pub const IP_PREFIX: &str = "/registry/core/serviceips/";
pub const PORT_PREFIX: &str = "/registry/core/servicenodeports/";
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

pub use crate::model::cidr::Cidr;

/// The allocation rules on top of the model's [`Cidr`].
impl Cidr {
    /// Usable for services: not the network or broadcast address.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(u32::from(self.network));
        self.contains(ip) && offset != 0 && offset != self.size() - 1
    }

    /// A random free address, from the upper band first as Kubernetes does, so that
    /// statically chosen low addresses (like the DNS service's .10) stay free.
    fn random_free(&self, used: &BTreeSet<String>) -> Option<Ipv4Addr> {
        let size = self.size();
        let static_band = (size / 16).clamp(16, 256).min(size / 2);
        let mut rng = rand::rng();
        for _ in 0..64 {
            let ip = self.nth(rng.random_range(static_band..size - 1));
            if !used.contains(&ip.to_string()) {
                return Some(ip);
            }
        }
        (1..size - 1)
            .map(|n| self.nth(n))
            .find(|ip| !used.contains(&ip.to_string()))
    }
}

/// What a Service holds: its ClusterIP and node ports.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Allocations {
    pub cluster_ip: Option<Ipv4Addr>,
    pub node_ports: BTreeSet<u16>,
}

impl Allocations {
    pub fn of(service: &Value) -> Self {
        let spec = &service["spec"];
        let cluster_ip = spec["clusterIP"].as_str().and_then(|ip| ip.parse().ok());
        let node_ports = spec["ports"]
            .as_array()
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| p["nodePort"].as_u64())
                    .filter_map(|p| u16::try_from(p).ok())
                    .collect()
            })
            .unwrap_or_default();
        Allocations {
            cluster_ip,
            node_ports,
        }
    }

    /// Store writes that take what `self` has and `old` lacks, and free the reverse.
    pub fn changes_from(&self, old: &Allocations, owner: &str) -> Vec<WriteOp> {
        let owner = bytes::Bytes::from(serde_json::json!({ "service": owner }).to_string());
        let mut ops = Vec::new();
        if self.cluster_ip != old.cluster_ip {
            if let Some(ip) = self.cluster_ip {
                ops.push(WriteOp::Create {
                    key: format!("{IP_PREFIX}{ip}"),
                    value: owner.clone(),
                });
            }
            if let Some(ip) = old.cluster_ip {
                ops.push(WriteOp::Delete {
                    key: format!("{IP_PREFIX}{ip}"),
                    expected_rev: None,
                });
            }
        }
        for port in self.node_ports.difference(&old.node_ports) {
            ops.push(WriteOp::Create {
                key: format!("{PORT_PREFIX}{port}"),
                value: owner.clone(),
            });
        }
        for port in old.node_ports.difference(&self.node_ports) {
            ops.push(WriteOp::Delete {
                key: format!("{PORT_PREFIX}{port}"),
                expected_rev: None,
            });
        }
        ops
    }
}

/// Why an allocation could not be made; becomes a 422 on the named field.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocError {
    pub field: String,
    pub message: String,
}

fn needs_node_ports(service: &Value) -> bool {
    matches!(
        service["spec"]["type"].as_str(),
        Some("NodePort") | Some("LoadBalancer")
    )
}

/// Fills in the ClusterIP and node ports a Service needs, given what is in use.
/// `old` is the stored Service on update: what it had stays.
pub fn assign(
    service: &mut Value,
    old: Option<&Value>,
    range: &Cidr,
    used_ips: &BTreeSet<String>,
    used_ports: &BTreeSet<String>,
) -> Result<(), AllocError> {
    let kind = service["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if kind == "ExternalName" {
        return Ok(());
    }
    assign_cluster_ip(service, old, range, used_ips)?;
    if needs_node_ports(service) {
        assign_node_ports(service, old, used_ports)?;
    } else if let Some(ports) = service["spec"]["ports"].as_array_mut() {
        for port in ports {
            if let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
    Ok(())
}

fn assign_cluster_ip(
    service: &mut Value,
    old: Option<&Value>,
    range: &Cidr,
    used: &BTreeSet<String>,
) -> Result<(), AllocError> {
    let requested = service["spec"]["clusterIP"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let old_ip = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .unwrap_or("");
    let ip = match requested.as_str() {
        "None" => "None".to_string(),
        "" if !old_ip.is_empty() => old_ip.to_string(),
        "" => range
            .random_free(used)
            .ok_or_else(|| AllocError {
                field: "spec.clusterIPs".into(),
                message: format!(
                    "Internal error: failed to allocate a serviceIP: range {range} is full"
                ),
            })?
            .to_string(),
        ip if ip == old_ip => ip.to_string(),
        ip => check_requested_ip(ip, range, used)?,
    };
    service["spec"]["clusterIP"] = Value::String(ip.clone());
    service["spec"]["clusterIPs"] = serde_json::json!([ip]);
    Ok(())
}

fn check_requested_ip(
    ip: &str,
    range: &Cidr,
    used: &BTreeSet<String>,
) -> Result<String, AllocError> {
    let invalid = |message: String| AllocError {
        field: "spec.clusterIPs".into(),
        message: format!("Invalid value: [\"{ip}\"]: {message}"),
    };
    let parsed: Ipv4Addr = ip
        .parse()
        .map_err(|_| invalid("must be a valid IP address".into()))?;
    if !range.usable(parsed) {
        return Err(invalid(format!(
            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}"
        )));
    }
    if used.contains(ip) {
        return Err(invalid(format!(
            "failed to allocate IP {ip}: provided IP is already allocated"
        )));
    }
    Ok(ip.to_string())
}

fn assign_node_ports(
    service: &mut Value,
    old: Option<&Value>,
    used: &BTreeSet<String>,
) -> Result<(), AllocError> {
    let kept = old.map(Allocations::of).unwrap_or_default().node_ports;
    let service_type = service["spec"]["type"].as_str().unwrap_or("").to_string();
    let allocate_lb = service["spec"]["allocateLoadBalancerNodePorts"].as_bool();
    let Some(ports) = service["spec"]["ports"].as_array_mut() else {
        return Ok(());
    };
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        if let Some(p) = port["nodePort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
        {
            let (lo, hi) = NODE_PORT_RANGE;
            let field = format!("spec.ports[{i}].nodePort");
            if !(lo..=hi).contains(&p) {
                return Err(AllocError {
                    field,
                    message: format!("Invalid value: {p}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
                });
            }
            if (used.contains(&p.to_string()) && !kept.contains(&p)) || !taken.insert(p) {
                return Err(AllocError {
                    field,
                    message: format!("Invalid value: {p}: provided port is already allocated"),
                });
            }
        }
    }
    if !allocates_node_ports(&service_type, allocate_lb) {
        return Ok(());
    }
    let mut rng = rand::rng();
    for port in ports.iter_mut() {
        if port.get("nodePort").and_then(Value::as_u64).is_some() {
            continue;
        }
        let (lo, hi) = NODE_PORT_RANGE;
        let free = |p: &u16| !used.contains(&p.to_string()) && !taken.contains(p);
        let pick = (0..64)
            .map(|_| rng.random_range(lo..=hi))
            .find(free)
            .or_else(|| (lo..=hi).find(free))
            .ok_or_else(|| AllocError {
                field: "spec.ports".into(),
                message: "Internal error: failed to allocate a nodePort: range is full".into(),
            })?;
        taken.insert(pick);
        port["nodePort"] = Value::from(pick);
    }
    Ok(())
}

/// Whether ports without a nodePort get one: always for NodePort, for LoadBalancer
/// unless `allocateLoadBalancerNodePorts: false` (then only the ones asked for stay).
fn allocates_node_ports(service_type: &str, allocate_lb: Option<bool>) -> bool {
    service_type != "LoadBalancer" || allocate_lb != Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn load_balancers_get_node_ports_unless_told_not_to() {
        let mut lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        assign(&mut lb, None, &range(), &BTreeSet::new(), &BTreeSet::new()).unwrap();
        assert!(lb["spec"]["ports"][0]["nodePort"].as_u64().is_some());
        let mut lb = json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                                     "ports": [{"port": 80}, {"port": 81, "nodePort": 30081}]}});
        assign(&mut lb, None, &range(), &BTreeSet::new(), &BTreeSet::new()).unwrap();
        assert!(lb["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(lb["spec"]["ports"][1]["nodePort"], 30081);
    }

    fn range() -> Cidr {
        "10.43.0.0/16".parse().unwrap()
    }

    #[test]
    fn allocates_a_free_ip_in_range_and_node_ports() {
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 30443}]}});
        assign(&mut svc, None, &range(), &BTreeSet::new(), &BTreeSet::new()).unwrap();
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(range().contains(ip));
        let port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&port));
        assert_eq!(svc["spec"]["ports"][1]["nodePort"], 30443);
    }

    #[test]
    fn refuses_taken_or_foreign_addresses() {
        let used: BTreeSet<String> = ["10.43.0.10".to_string()].into();
        let mut svc = json!({"spec": {"clusterIP": "10.43.0.10", "ports": [{"port": 53}]}});
        let err = assign(&mut svc, None, &range(), &used, &BTreeSet::new()).unwrap_err();
        assert!(err.message.contains("already allocated"));
        let mut svc = json!({"spec": {"clusterIP": "192.168.1.1", "ports": [{"port": 53}]}});
        assert!(assign(&mut svc, None, &range(), &used, &BTreeSet::new()).is_err());
    }

    #[test]
    fn changes_release_what_is_dropped() {
        let old = json!({"spec": {"clusterIP": "10.43.0.5", "ports": [{"nodePort": 30001}]}});
        let new = json!({"spec": {"clusterIP": "10.43.0.5", "ports": [{"port": 1}]}});
        let ops = Allocations::of(&new).changes_from(&Allocations::of(&old), "default/a");
        assert_eq!(ops.len(), 1);
        assert!(matches!(&ops[0], WriteOp::Delete { key, .. } if key.ends_with("/30001")));
    }
}
