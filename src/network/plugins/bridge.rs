//! The `bridge` plugin: the node's bridge (`bridge`, made if missing, with `mtu`;
//! with `isGateway` it holds each range's gateway address and IPv4 forwarding is on),
//! one veth pair per container — the host end `veth<hash of id and ifname>` on the
//! bridge (`hairpinMode` on its port), the other end created straight in the
//! namespace as `CNI_IFNAME` with the IPAM plugin's addresses and routes (via the
//! gateway; `isDefaultGateway` adds the default route) — and, with `ipMasq`,
//! masquerading of the container's traffic leaving the subnet, in the nftables table
//! `ip skiff-masq-<bridge>` (rules commented with the container id, see `rules`).
//! DEL releases the addresses and deletes the container's end (the pair goes with
//! it); a namespace already gone is fine, and a second DEL finds nothing to do.
//!
//! Owns: the bridge, veth pairs, the masquerade table. Calls: `link`, the IPAM plugin
//! through `protocol::delegate`, `crate::network::nft`.

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::link;
use super::protocol::{delegate, Call, Command, Plugin, PluginError};
use super::rules;

pub struct Bridge;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConf {
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default)]
    pub is_gateway: bool,
    #[serde(default)]
    pub is_default_gateway: bool,
    #[serde(default)]
    pub ip_masq: bool,
    #[serde(default)]
    pub hairpin_mode: bool,
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ipam: Value,
}

fn default_bridge() -> String {
    "cni0".into()
}

impl BridgeConf {
    pub fn parse(config: &Value) -> Result<BridgeConf, PluginError> {
        let conf: BridgeConf = serde_json::from_value(config.clone())
            .map_err(|e| PluginError::config(format!("invalid bridge config: {e}")))?;
        valid_link_name(&conf.bridge)?;
        if conf.ipam["type"].as_str().unwrap_or_default().is_empty() {
            return Err(PluginError::config(
                "bridge needs an ipam plugin (ipam.type)",
            ));
        }
        Ok(conf)
    }

    fn ipam_type(&self) -> &str {
        self.ipam["type"].as_str().unwrap_or_default()
    }
}

fn valid_link_name(name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(PluginError::config(format!("invalid link name {name:?}")))
    }
}

/// The host end of a container's pair: stable for (container, interface), so a
/// retried ADD finds the one a failed ADD left.
pub fn host_veth(container_id: &str, ifname: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        hash = (hash ^ byte as u32).wrapping_mul(0x0100_0193);
    }
    format!("veth{hash:08x}")
}

/// An address of the IPAM result.
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    pub cidr: String,
    pub gateway: Option<String>,
}

pub fn addresses(result: &Value) -> Vec<Address> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| {
            Some(Address {
                cidr: ip["address"].as_str()?.to_string(),
                gateway: ip["gateway"].as_str().map(str::to_string),
            })
        })
        .filter(|a| !a.cidr.contains(':'))
        .collect()
}

fn ensure_bridge(conf: &BridgeConf) -> Result<(), PluginError> {
    if link::link(&conf.bridge)?.is_none() {
        let mut args = vec!["link", "add", "name", &conf.bridge];
        let mtu = conf.mtu.map(|m| m.to_string());
        if let Some(mtu) = &mtu {
            args.extend(["mtu", mtu]);
        }
        args.extend(["type", "bridge"]);
        if let Err(e) = link::ip(&args) {
            // Another ADD may have made it meanwhile.
            if link::link(&conf.bridge)?.is_none() {
                return Err(e);
            }
        }
    }
    link::ip(&["link", "set", &conf.bridge, "up"]).map(drop)
}

/// Gives the bridge each gateway address it lacks.
fn ensure_gateways(conf: &BridgeConf, addrs: &[Address]) -> Result<(), PluginError> {
    let have = link::addresses(&conf.bridge)?;
    for addr in addrs {
        let (Some(gw), Some((_, prefix))) = (&addr.gateway, addr.cidr.split_once('/')) else {
            continue;
        };
        let cidr = format!("{gw}/{prefix}");
        if !have.contains(&cidr) {
            if let Err(e) = link::ip(&["addr", "add", &cidr, "dev", &conf.bridge]) {
                // A concurrent ADD may have given it meanwhile.
                if !link::addresses(&conf.bridge)?.contains(&cidr) {
                    return Err(e);
                }
            }
        }
    }
    link::sysctl("net/ipv4/ip_forward", "1")
}

fn create_pair(
    call: &Call,
    conf: &BridgeConf,
    netns: &Path,
    host: &str,
) -> Result<(), PluginError> {
    if link::link(host)?.is_some() {
        link::ip(&["link", "del", host])?;
    }
    let netns = netns.to_string_lossy();
    let mtu = conf.mtu.map(|m| m.to_string());
    let mut args = vec!["link", "add", host];
    if let Some(mtu) = &mtu {
        args.extend(["mtu", mtu]);
    }
    args.extend(["type", "veth", "peer", "name", &call.ifname]);
    if let Some(mtu) = &mtu {
        args.extend(["mtu", mtu]);
    }
    args.extend(["netns", &netns]);
    link::ip(&args)?;
    link::ip(&["link", "set", host, "master", &conf.bridge, "up"])?;
    if conf.hairpin_mode {
        // Through netlink, not /sys/class/net: sysfs shows the network namespace it
        // was mounted in, which need not be the node's.
        link::ip(&["link", "set", host, "type", "bridge_slave", "hairpin", "on"])?;
    }
    Ok(())
}

/// Addresses, link state and routes inside the namespace; returns the MAC.
fn configure_container(
    call: &Call,
    conf: &BridgeConf,
    ipam: &Value,
    addrs: &[Address],
) -> Result<String, PluginError> {
    let ifname = call.ifname.as_str();
    for addr in addrs {
        link::ip(&["addr", "add", &addr.cidr, "dev", ifname])?;
    }
    link::ip(&["link", "set", ifname, "up"])?;
    let gateway = addrs.iter().find_map(|a| a.gateway.clone());
    let mut routes: Vec<(String, Option<String>)> = ipam["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["dst"].as_str()?.to_string(),
                r["gw"].as_str().map(str::to_string),
            ))
        })
        .filter(|(dst, _)| !dst.contains(':'))
        .collect();
    if conf.is_default_gateway && !routes.iter().any(|(dst, _)| dst == "0.0.0.0/0") {
        routes.push(("0.0.0.0/0".into(), None));
    }
    for (dst, gw) in routes {
        let via = gw.or_else(|| gateway.clone());
        let mut args = vec!["route", "replace", dst.as_str()];
        if let Some(via) = &via {
            args.extend(["via", via]);
        }
        args.extend(["dev", ifname]);
        link::ip(&args)?;
    }
    link::mac(ifname)
}

fn add(call: &Call, conf: &BridgeConf, ipam: &Value) -> Result<Value, PluginError> {
    let netns = call.netns()?;
    let addrs = addresses(ipam);
    if addrs.is_empty() {
        return Err(PluginError::internal(
            "the IPAM plugin returned no IPv4 address",
        ));
    }
    ensure_bridge(conf)?;
    if conf.is_gateway {
        ensure_gateways(conf, &addrs)?;
    }
    let host = host_veth(&call.container_id, &call.ifname);
    create_pair(call, conf, netns, &host)?;
    let container_mac = link::in_netns(netns, || configure_container(call, conf, ipam, &addrs))?
        .ok_or_else(|| {
            PluginError::internal(format!("netns {} does not exist", netns.display()))
        })?;
    if conf.ip_masq {
        masquerade(conf, &call.container_id, &addrs)?;
    }
    let ips: Vec<Value> = addrs
        .iter()
        .map(|a| {
            let mut ip = json!({"interface": 2, "address": a.cidr});
            if let Some(gw) = &a.gateway {
                ip["gateway"] = json!(gw);
            }
            ip
        })
        .collect();
    let mut result = json!({
        "cniVersion": call.version,
        "interfaces": [
            {"name": conf.bridge, "mac": link::mac(&conf.bridge)?},
            {"name": host, "mac": link::mac(&host)?},
            {"name": call.ifname, "mac": container_mac, "sandbox": netns},
        ],
        "ips": ips,
        "dns": ipam.get("dns").cloned().unwrap_or_else(|| json!({})),
    });
    if let Some(routes) = ipam.get("routes") {
        result["routes"] = routes.clone();
    }
    Ok(result)
}

pub const MASQ_TABLE_PREFIX: &str = "skiff-masq-";

/// The script masquerading the container's traffic that leaves its subnet (and is
/// not multicast), one rule per address commented with the container id, in the
/// bridge's table `ip skiff-masq-<bridge>`.
pub fn masquerade_script(bridge: &str, id: &str, addrs: &[Address]) -> String {
    let table = format!("{MASQ_TABLE_PREFIX}{bridge}");
    let mut script = format!(
        "table ip {table} {{\n  chain postrouting {{ type nat hook postrouting priority 100; policy accept; }}\n}}\n"
    );
    for addr in addrs {
        let ip = addr.cidr.split('/').next().unwrap_or_default();
        let subnet = network_of(&addr.cidr);
        script += &format!(
            "add rule ip {table} postrouting ip saddr {ip} ip daddr != {subnet} ip daddr != 224.0.0.0/4 masquerade comment \"{id}\"\n"
        );
    }
    script
}

fn masquerade(conf: &BridgeConf, id: &str, addrs: &[Address]) -> Result<(), PluginError> {
    let id = rules::comment(id);
    rules::delete_rules(MASQ_TABLE_PREFIX, &id)?;
    crate::network::nft::apply(&masquerade_script(&conf.bridge, &id, addrs))
        .map_err(rules::nft_error)
}

/// `10.42.0.5/24` → `10.42.0.0/24`.
fn network_of(cidr: &str) -> String {
    let (ip, prefix) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let prefix: u32 = prefix.parse().unwrap_or(32).min(32);
    let ip: u32 = ip.parse::<std::net::Ipv4Addr>().map(u32::from).unwrap_or(0);
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    format!("{}/{prefix}", std::net::Ipv4Addr::from(ip & mask))
}

impl Plugin for Bridge {
    fn add(&self, call: &Call) -> Result<Value, PluginError> {
        let conf = BridgeConf::parse(&call.config)?;
        let ipam = delegate(call, conf.ipam_type(), Command::Add)?
            .ok_or_else(|| PluginError::internal("the IPAM plugin returned no result"))?;
        add(call, &conf, &ipam).inspect_err(|_| {
            let _ = delegate(call, conf.ipam_type(), Command::Del);
            let _ = link::ip(&["link", "del", &host_veth(&call.container_id, &call.ifname)]);
        })
    }

    fn check(&self, call: &Call) -> Result<(), PluginError> {
        let conf = BridgeConf::parse(&call.config)?;
        let prev = call
            .prev_result()
            .ok_or_else(|| PluginError::config("bridge CHECK needs prevResult"))?;
        delegate(call, conf.ipam_type(), Command::Check)?;
        let netns = call.netns()?;
        if link::link(&conf.bridge)?.is_none() {
            return Err(PluginError::internal(format!(
                "bridge {} does not exist",
                conf.bridge
            )));
        }
        let host = host_veth(&call.container_id, &call.ifname);
        let master = link::link(&host)?.and_then(|l| l["master"].as_str().map(str::to_string));
        if master.as_deref() != Some(conf.bridge.as_str()) {
            return Err(PluginError::internal(format!(
                "{host} is not a port of {}",
                conf.bridge
            )));
        }
        let wanted = addresses(prev);
        let ifname = call.ifname.clone();
        let have = link::in_netns(netns, move || {
            if !link::is_up(&ifname)? {
                return Err(PluginError::internal(format!(
                    "{ifname} is missing or down"
                )));
            }
            link::addresses(&ifname)
        })?
        .ok_or_else(|| {
            PluginError::internal(format!("netns {} does not exist", netns.display()))
        })?;
        match wanted.iter().find(|a| !have.contains(&a.cidr)) {
            Some(a) => Err(PluginError::internal(format!(
                "{} lacks address {}",
                call.ifname, a.cidr
            ))),
            None => Ok(()),
        }
    }

    fn del(&self, call: &Call) -> Result<(), PluginError> {
        let conf = BridgeConf::parse(&call.config)?;
        delegate(call, conf.ipam_type(), Command::Del)?;
        if let Some(netns) = &call.netns {
            let ifname = call.ifname.clone();
            link::in_netns(netns, move || match link::link(&ifname)? {
                Some(_) => link::ip(&["link", "del", &ifname]).map(drop),
                None => Ok(()),
            })?;
        }
        if conf.ip_masq {
            rules::delete_rules(MASQ_TABLE_PREFIX, &rules::comment(&call.container_id))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let conf =
            BridgeConf::parse(&json!({"name": "n", "ipam": {"type": "host-local"}})).unwrap();
        assert_eq!(conf.bridge, "cni0");
        assert!(!conf.is_gateway && !conf.ip_masq && !conf.hairpin_mode);
        let conf = BridgeConf::parse(&json!({"bridge": "br1", "isGateway": true, "hairpinMode": true, "mtu": 1400, "ipam": {"type": "x"}})).unwrap();
        assert!(conf.is_gateway && conf.hairpin_mode);
        assert_eq!(conf.mtu, Some(1400));
        for bad in [
            json!({"ipam": {}}),
            json!({"bridge": "much-too-long-name", "ipam": {"type": "x"}}),
            json!({"bridge": "a b", "ipam": {"type": "x"}}),
            json!({"isGateway": "yes", "ipam": {"type": "x"}}),
        ] {
            assert_eq!(BridgeConf::parse(&bad).unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn host_veth_names_are_stable_short_and_distinct() {
        let a = host_veth("abc", "eth0");
        assert_eq!(a, host_veth("abc", "eth0"));
        assert_ne!(a, host_veth("abc", "eth1"));
        assert_ne!(a, host_veth("abd", "eth0"));
        assert!(a.len() <= 15 && a.starts_with("veth"));
    }

    #[test]
    fn addresses_of_a_result_and_their_networks() {
        let result = json!({"ips": [{"address": "10.42.0.5/24", "gateway": "10.42.0.1"}, {"address": "fd00::5/64"}]});
        assert_eq!(
            addresses(&result),
            vec![Address {
                cidr: "10.42.0.5/24".into(),
                gateway: Some("10.42.0.1".into())
            }]
        );
        assert_eq!(network_of("10.42.0.5/24"), "10.42.0.0/24");
        assert_eq!(network_of("10.42.7.5/16"), "10.42.0.0/16");
        let script = masquerade_script("cni0", "c1", &addresses(&result));
        assert!(script.contains("add rule ip skiff-masq-cni0 postrouting ip saddr 10.42.0.5 ip daddr != 10.42.0.0/24 ip daddr != 224.0.0.0/4 masquerade comment \"c1\""), "{script}");
    }
}
