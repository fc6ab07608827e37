//! The `portmap` plugin: `runtimeConfig.portMappings` (hostPort → containerPort,
//! `protocol`, optional `hostIP`) as DNAT to the container's first IPv4 address from
//! `prevResult`, for traffic to any of the node's addresses (`fib daddr type local`,
//! so also 127.0.0.1 with `route_localnet` on the bridge) or to `hostIP`; with `snat`
//! (default true) masquerading of mapped traffic from localhost and of a container
//! reaching itself through its own mapping (hairpin).
//!
//! nftables, through `crate::network::nft`: one table per bridge (the prevResult's
//! host interface), `ip skiff-portmap-<bridge>`, so nodes sharing a namespace with
//! their own bridges never touch each other's; every rule carries the container id as
//! its comment, and DEL deletes the rules with that comment in every
//! `skiff-portmap-*` table (`rules`; so it needs no prevResult, and a second DEL is
//! a no-op).
//! The result is the prevResult, passed through.
//!
//! Owns: the `skiff-portmap-*` tables. Calls: `crate::network::nft`, `link`.

use serde::Deserialize;
use serde_json::Value;

use super::link;
use super::protocol::{Call, Plugin, PluginError};
use super::rules::{self, comment};
use crate::network::nft;

pub struct Portmap;

pub const TABLE_PREFIX: &str = "skiff-portmap-";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, rename = "hostIP")]
    pub host_ip: String,
}

fn tcp() -> String {
    "tcp".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortmapConf {
    #[serde(default)]
    snat: Option<bool>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<Mapping>,
}

fn parse(call: &Call) -> Result<(PortmapConf, Vec<Mapping>), PluginError> {
    let conf: PortmapConf = serde_json::from_value(call.config.clone())
        .map_err(|e| PluginError::config(format!("invalid portmap config: {e}")))?;
    let mut mappings = conf.runtime_config.port_mappings.clone();
    for m in &mut mappings {
        m.protocol = m.protocol.to_ascii_lowercase();
        if !["tcp", "udp", "sctp"].contains(&m.protocol.as_str()) {
            return Err(PluginError::config(format!(
                "invalid protocol {:?}",
                m.protocol
            )));
        }
        if m.host_port == 0 || m.container_port == 0 {
            return Err(PluginError::config(
                "port mappings need hostPort and containerPort",
            ));
        }
        if !m.host_ip.is_empty() && m.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(PluginError::config(format!(
                "invalid hostIP {:?}",
                m.host_ip
            )));
        }
    }
    // IPv6 host addresses are for an IPv6 container address, which skiff has not.
    mappings.retain(|m| !m.host_ip.contains(':'));
    Ok((conf, mappings))
}

/// The host-side interface of the prevResult (the bridge), if any.
fn host_interface(prev: &Value) -> Option<String> {
    prev["interfaces"]
        .as_array()?
        .iter()
        .find(|i| {
            i.get("sandbox")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .and_then(|i| i["name"].as_str())
        .map(str::to_string)
}

fn table_for(call: &Call, prev: &Value) -> String {
    let base = host_interface(prev).unwrap_or_else(|| call.name().to_string());
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{TABLE_PREFIX}{base}")
}

/// The nftables script adding the container's rules to `table`.
pub fn add_script(table: &str, id: &str, ip: &str, mappings: &[Mapping], snat: bool) -> String {
    let mut script = format!(
        "table ip {table} {{\n  chain prerouting {{ type nat hook prerouting priority -100; policy accept; }}\n  chain output {{ type nat hook output priority -100; policy accept; }}\n  chain postrouting {{ type nat hook postrouting priority 100; policy accept; }}\n}}\n"
    );
    for m in mappings {
        let to = if m.host_ip.is_empty() || m.host_ip == "0.0.0.0" {
            "fib daddr type local".to_string()
        } else {
            format!("ip daddr {}", m.host_ip)
        };
        let (proto, hp, cp) = (&m.protocol, m.host_port, m.container_port);
        for chain in ["prerouting", "output"] {
            script += &format!(
                "add rule ip {table} {chain} {to} {proto} dport {hp} dnat to {ip}:{cp} comment \"{id}\"\n"
            );
        }
        if snat {
            for from in ["127.0.0.0/8", ip] {
                script += &format!(
                    "add rule ip {table} postrouting ip saddr {from} ip daddr {ip} {proto} dport {cp} ct status dnat masquerade comment \"{id}\"\n"
                );
            }
        }
    }
    script
}

fn first_ipv4(prev: &Value) -> Option<String> {
    prev["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next())
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

impl Plugin for Portmap {
    fn add(&self, call: &Call) -> Result<Value, PluginError> {
        let (conf, mappings) = parse(call)?;
        let prev = call.prev_result().cloned().ok_or_else(|| {
            PluginError::config("portmap must be called as a chained plugin (no prevResult)")
        })?;
        if mappings.is_empty() {
            return Ok(prev);
        }
        let ip = first_ipv4(&prev)
            .ok_or_else(|| PluginError::internal("portmap: the prevResult has no IPv4 address"))?;
        let id = comment(&call.container_id);
        let snat = conf.snat.unwrap_or(true);
        if snat {
            if let Some(host) = host_interface(&prev) {
                link::sysctl(&format!("net/ipv4/conf/{host}/route_localnet"), "1")?;
            }
        }
        rules::delete_rules(TABLE_PREFIX, &id)?;
        nft::apply(&add_script(
            &table_for(call, &prev),
            &id,
            &ip,
            &mappings,
            snat,
        ))
        .map_err(rules::nft_error)?;
        Ok(prev)
    }

    fn check(&self, call: &Call) -> Result<(), PluginError> {
        let (_, mappings) = parse(call)?;
        if mappings.is_empty() {
            return Ok(());
        }
        let dnat = rules::rules_of(TABLE_PREFIX, &comment(&call.container_id))?
            .iter()
            .filter(|(_, chain, _)| chain == "prerouting")
            .count();
        if dnat < mappings.len() {
            return Err(PluginError::internal(format!(
                "portmap: {dnat} of {} port mappings of {} are in place",
                mappings.len(),
                call.container_id
            )));
        }
        Ok(())
    }

    fn del(&self, call: &Call) -> Result<(), PluginError> {
        rules::delete_rules(TABLE_PREFIX, &comment(&call.container_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mappings_become_dnat_on_local_addresses_and_hairpin_localhost_snat() {
        let mappings = vec![
            Mapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            },
            Mapping {
                host_port: 5353,
                container_port: 53,
                protocol: "udp".into(),
                host_ip: "192.0.2.1".into(),
            },
        ];
        let script = add_script("skiff-portmap-cni0", "c1", "10.42.0.5", &mappings, true);
        assert!(script.contains("add rule ip skiff-portmap-cni0 prerouting fib daddr type local tcp dport 8080 dnat to 10.42.0.5:80 comment \"c1\""), "{script}");
        assert!(script.contains("add rule ip skiff-portmap-cni0 output fib daddr type local tcp dport 8080 dnat to 10.42.0.5:80"), "{script}");
        assert!(
            script.contains("prerouting ip daddr 192.0.2.1 udp dport 5353 dnat to 10.42.0.5:53"),
            "{script}"
        );
        assert!(script.contains("postrouting ip saddr 127.0.0.0/8 ip daddr 10.42.0.5 tcp dport 80 ct status dnat masquerade"), "{script}");
        assert!(script.contains("postrouting ip saddr 10.42.0.5 ip daddr 10.42.0.5 tcp dport 80 ct status dnat masquerade"), "{script}");
        let no_snat = add_script("t", "c1", "10.42.0.5", &mappings, false);
        assert!(!no_snat.contains("masquerade"));
    }

    #[test]
    fn the_table_is_the_bridges_and_configs_are_checked() {
        let prev = json!({"interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}],
                          "ips": [{"address": "10.42.0.5/24", "interface": 2}]});
        let mut call = crate::network::plugins::protocol::tests::call(
            json!({"name": "net", "cniVersion": "1.0.0"}),
        );
        assert_eq!(table_for(&call, &prev), "skiff-portmap-cni0");
        assert_eq!(table_for(&call, &json!({})), "skiff-portmap-net");
        assert_eq!(first_ipv4(&prev).as_deref(), Some("10.42.0.5"));
        assert_eq!(comment("abc\"; drop"), "abcdrop");
        call.config["runtimeConfig"] =
            json!({"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "icmp"}]});
        assert_eq!(parse(&call).unwrap_err().code, 7);
        call.config["runtimeConfig"] =
            json!({"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "UDP"}]});
        assert_eq!(parse(&call).unwrap().1[0].protocol, "udp");
    }
}
