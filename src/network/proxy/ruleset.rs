//! The node's service ports as an nftables ruleset: the whole table as data (chains
//! with their rules, sets, maps with their elements), so the last applied ruleset can
//! be kept in memory as a mirror and the next one diffed against it (`script`).
//!
//! Owns: [`TableConfig`], [`Ruleset`], [`build`]. Calls: nothing (pure).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{usable, Endpoint, Family, ServicePort};

/// The packet mark asking `nat-postrouting` to masquerade (kube-proxy's bit).
pub const MASQUERADE_MARK: &str = "0x4000";
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// The set of `endpoint . endpoint` pairs: a packet from an endpoint DNATed to
/// itself (hairpin) is masqueraded, so the reply comes back through the node.
pub const HAIRPIN: &str = "hairpin";
const MARK_CHAIN: &str = "mark-for-masquerade";
const SERVICES_CHAIN: &str = "services";

/// What the fixed part of the table depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct TableConfig {
    pub family: Family,
    pub table: String,
    /// The pod range of the whole cluster, e.g. `10.42.0.0/16`.
    pub cluster_cidr: String,
    /// The service range, e.g. `10.43.0.0/16`.
    pub service_cidr: String,
    /// The cluster DNS address: served on the node by another component; never
    /// DNATed nor rejected here.
    pub cluster_dns: Option<Ipv4Addr>,
}

/// A chain: its base-chain spec (`type … hook … priority …; policy …;`) when it is
/// one, and its rules in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    pub spec: Option<String>,
    pub rules: Vec<String>,
}

/// A map: its spec (`type …;`) and its elements, key → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    pub spec: String,
    pub elements: BTreeMap<String, String>,
}

/// One table's whole content.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    /// Set name → spec (the affinity sets; their members are the kernel's own).
    pub sets: BTreeMap<String, String>,
    pub maps: BTreeMap<String, Map>,
}

/// The ruleset serving `ports` on a node configured by `config`.
pub fn build(config: &TableConfig, ports: &[ServicePort]) -> Ruleset {
    let mut rs = skeleton(config);
    for port in ports {
        add_service_port(&mut rs, config, port);
    }
    rs
}

/// The fixed part: maps, the dispatch chain, the hooks, masquerading and rejecting.
fn skeleton(config: &TableConfig) -> Ruleset {
    let addr = config.family.addr_type();
    let ip = config.family.nft();
    let cluster = &config.cluster_cidr;
    let mut rs = Ruleset::default();
    rs.maps.insert(
        SERVICE_IPS.into(),
        Map {
            spec: format!("type {addr} . inet_proto . inet_service : verdict;"),
            elements: BTreeMap::new(),
        },
    );
    rs.maps.insert(
        HAIRPIN.into(),
        Map {
            spec: format!("type {addr} . {addr};"),
            elements: BTreeMap::new(),
        },
    );
    rs.maps.insert(
        SERVICE_NODEPORTS.into(),
        Map {
            spec: "type inet_proto . inet_service : verdict;".into(),
            elements: BTreeMap::new(),
        },
    );
    let chain = |spec: Option<&str>, rules: Vec<String>| Chain {
        spec: spec.map(str::to_string),
        rules,
    };
    rs.chains.insert(
        MARK_CHAIN.into(),
        chain(
            None,
            vec![format!("meta mark set meta mark | {MASQUERADE_MARK}")],
        ),
    );
    rs.chains.insert(
        SERVICES_CHAIN.into(),
        chain(
            None,
            vec![
                format!("{ip} daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
                format!(
                    "{ip} daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"
                ),
            ],
        ),
    );
    for (name, hook) in [("nat-prerouting", "prerouting"), ("nat-output", "output")] {
        rs.chains.insert(
            name.into(),
            chain(
                Some(&format!(
                    "type nat hook {hook} priority -100; policy accept;"
                )),
                vec![format!("jump {SERVICES_CHAIN}")],
            ),
        );
    }
    rs.chains.insert(
        "nat-postrouting".into(),
        chain(
            Some("type nat hook postrouting priority 100; policy accept;"),
            vec![
                // Local to local (through `lo`) needs no SNAT, and masquerading there
                // would take another interface's address (lo's are host-scoped) and
                // break the node's own connections, e.g. to an API server endpoint.
                "oifname \"lo\" return".to_string(),
                format!(
                    "meta mark & {MASQUERADE_MARK} == {MASQUERADE_MARK} meta mark set meta mark ^ {MASQUERADE_MARK} masquerade fully-random"
                ),
                // Only connections a service chain DNATed: an endpoint's own direct
                // connections to itself are not hairpin.
                format!("ct status dnat {ip} saddr . {ip} daddr @{HAIRPIN} masquerade fully-random"),
                // Pod egress, as flannel: pods keep their address inside the cluster.
                format!(
                    "{ip} saddr {cluster} {ip} daddr != {cluster} {ip} daddr != 224.0.0.0/4 masquerade fully-random"
                ),
            ],
        ),
    );
    let mut reject = Vec::new();
    if let Some(dns) = config.cluster_dns {
        reject.push(format!("{ip} daddr {dns} return"));
    }
    reject.push(format!(
        "{ip} daddr {} meta l4proto tcp reject with tcp reset",
        config.service_cidr
    ));
    reject.push(format!("{ip} daddr {} reject", config.service_cidr));
    rs.chains
        .insert("reject-unserved".into(), chain(None, reject));
    // After DNAT (priority dstnat), before the default filter chains.
    for (name, hook) in [("filter-forward", "forward"), ("filter-output", "output")] {
        rs.chains.insert(
            name.into(),
            chain(
                Some(&format!(
                    "type filter hook {hook} priority -1; policy accept;"
                )),
                vec!["jump reject-unserved".into()],
            ),
        );
    }
    rs
}

fn sep_chain(port: &ServicePort, ep: &Endpoint) -> String {
    format!("sep-{}/{}/{}", port.id(), ep.ip, ep.port)
}

fn affinity_set(port: &ServicePort, ep: &Endpoint) -> String {
    format!("aff-{}/{}/{}", port.id(), ep.ip, ep.port)
}

fn add_service_port(rs: &mut Ruleset, config: &TableConfig, port: &ServicePort) {
    let ip = config.family.nft();
    let id = port.id();
    let proto = port.protocol.nft();
    let cluster = &config.cluster_cidr;
    let all = usable(&port.endpoints, |_| true);
    let internal = usable(&port.endpoints, |e| !port.internal_local || e.local);
    let local = usable(&port.endpoints, |e| e.local);
    // Every endpoint any chain may pick: hairpin pair; with affinity, its own chain
    // (affinity set update, DNAT), else the service chains DNAT directly.
    let mut picked: Vec<&Endpoint> = all.iter().chain(&internal).chain(&local).copied().collect();
    picked.sort();
    picked.dedup();
    for ep in &picked {
        if let Some(map) = rs.maps.get_mut(HAIRPIN) {
            map.elements
                .insert(format!("{} . {}", ep.ip, ep.ip), String::new());
        }
        let Some(timeout) = port.affinity_timeout else {
            continue;
        };
        let set = affinity_set(port, ep);
        rs.sets.insert(
            set.clone(),
            format!(
                "type {}; flags dynamic,timeout; timeout {timeout}s;",
                config.family.addr_type()
            ),
        );
        let rules = vec![
            format!("update @{set} {{ {ip} saddr }}"),
            format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port),
        ];
        rs.chains
            .insert(sep_chain(port, ep), Chain { spec: None, rules });
    }
    let mut ip_keys = Vec::new();
    if let Some(cluster_ip) = port.cluster_ip.filter(|a| Some(*a) != config.cluster_dns) {
        let chain = format!("svc-{id}");
        let mut rules = vec![format!("{ip} saddr != {cluster} jump {MARK_CHAIN}")];
        rules.extend(select(port, "", &internal));
        rs.chains.insert(chain.clone(), Chain { spec: None, rules });
        ip_keys.push((format!("{cluster_ip} . {proto} . {}", port.port), chain));
    }
    if port.is_external() {
        let chain = format!("ext-{id}");
        let rules = if port.external_local {
            let mut rules = select(port, &format!("{ip} saddr {cluster} "), &all);
            rules.push(format!("fib saddr type local jump {MARK_CHAIN}"));
            rules.extend(select(port, "fib saddr type local ", &all));
            let chosen = select(port, "", &local);
            if chosen.is_empty() {
                rules.push("drop".into());
            }
            rules.extend(chosen);
            rules
        } else {
            let mut rules = vec![format!("jump {MARK_CHAIN}")];
            rules.extend(select(port, "", &all));
            rules
        };
        rs.chains.insert(chain.clone(), Chain { spec: None, rules });
        for external in &port.external_ips {
            ip_keys.push((
                format!("{external} . {proto} . {}", port.port),
                chain.clone(),
            ));
        }
        if let Some(node_port) = port.node_port {
            if let Some(map) = rs.maps.get_mut(SERVICE_NODEPORTS) {
                map.elements
                    .entry(format!("{proto} . {node_port}"))
                    .or_insert(format!("goto {chain}"));
            }
        }
    }
    if let Some(map) = rs.maps.get_mut(SERVICE_IPS) {
        for (key, chain) in ip_keys {
            map.elements.entry(key).or_insert(format!("goto {chain}"));
        }
    }
}

/// The rules sending a connection to one of `endpoints`, each after `prefix` (a
/// match): the affinity look-ups first, then a random pick.
fn select(port: &ServicePort, prefix: &str, endpoints: &[&Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if endpoints.is_empty() {
        return rules;
    }
    if port.affinity_timeout.is_some() {
        for ep in endpoints {
            rules.push(format!(
                "{prefix}ip saddr @{} goto {}",
                affinity_set(port, ep),
                sep_chain(port, ep)
            ));
        }
    }
    // iptables-style: endpoint i of n is taken with probability 1/(n-i), which is a
    // uniform pick. (A `numgen … vmap { … }` is an anonymous set per service, and
    // the kernel names those by scanning all sets: loading 10,000 is quadratic.)
    let n = endpoints.len();
    let proto = port.protocol.nft();
    for (i, ep) in endpoints.iter().enumerate() {
        let action = if port.affinity_timeout.is_some() {
            format!("goto {}", sep_chain(port, ep))
        } else {
            format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port)
        };
        if i + 1 < n {
            rules.push(format!("{prefix}numgen random mod {} 0 {action}", n - i));
        } else {
            rules.push(format!("{prefix}{action}"));
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::super::tests::{endpoint, service};
    use super::*;

    pub fn config() -> TableConfig {
        TableConfig {
            family: Family::Ipv4,
            table: "skiff-cni0".into(),
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            cluster_dns: Some("10.43.0.10".parse().unwrap()),
        }
    }

    fn rules<'a>(rs: &'a Ruleset, chain: &str) -> &'a [String] {
        &rs.chains
            .get(chain)
            .unwrap_or_else(|| panic!("no chain {chain}: {rs:#?}"))
            .rules
    }

    #[test]
    fn a_cluster_ip_maps_to_its_chain_which_picks_among_ready_endpoints() {
        let svc = service(
            "web",
            "10.43.0.5",
            vec![
                endpoint("10.42.0.2", true, false),
                endpoint("10.42.0.3", true, false),
                endpoint("10.42.0.4", false, true),
            ],
        );
        let rs = build(&config(), &[svc]);
        assert_eq!(
            rs.maps[SERVICE_IPS].elements["10.43.0.5 . tcp . 80"],
            "goto svc-default/web/tcp/p80"
        );
        let svc_rules = rules(&rs, "svc-default/web/tcp/p80");
        assert_eq!(
            svc_rules[0],
            "ip saddr != 10.42.0.0/16 jump mark-for-masquerade"
        );
        assert_eq!(
            svc_rules[1..],
            [
                "numgen random mod 2 0 meta l4proto tcp dnat to 10.42.0.2:8080",
                "meta l4proto tcp dnat to 10.42.0.3:8080"
            ]
        );
        // Hairpin pairs for the picked endpoints only; no per-endpoint chains.
        let hairpin: Vec<&String> = rs.maps[HAIRPIN].elements.keys().collect();
        assert_eq!(hairpin, ["10.42.0.2 . 10.42.0.2", "10.42.0.3 . 10.42.0.3"]);
        assert!(!rs.chains.keys().any(|c| c.starts_with("sep-")));
        assert!(rules(&rs, "nat-postrouting").contains(
            &"ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random".to_string()
        ));
    }

    #[test]
    fn no_endpoints_leaves_the_service_unserved_so_the_filter_rejects_it() {
        let rs = build(&config(), &[service("empty", "10.43.0.6", vec![])]);
        assert_eq!(
            rules(&rs, "svc-default/empty/tcp/p80"),
            ["ip saddr != 10.42.0.0/16 jump mark-for-masquerade"]
        );
        assert!(rules(&rs, "reject-unserved")
            .contains(&"ip daddr 10.43.0.0/16 meta l4proto tcp reject with tcp reset".to_string()));
    }

    #[test]
    fn the_cluster_dns_address_is_neither_mapped_nor_rejected() {
        let rs = build(&config(), &[service("kube-dns", "10.43.0.10", vec![])]);
        assert!(rs.maps[SERVICE_IPS].elements.is_empty());
        assert_eq!(
            rules(&rs, "reject-unserved")[0],
            "ip daddr 10.43.0.10 return"
        );
    }

    #[test]
    fn node_ports_and_load_balancer_ips_go_to_the_external_chain_which_masquerades() {
        let mut svc = service("lb", "10.43.0.7", vec![endpoint("10.42.0.2", true, false)]);
        svc.node_port = Some(30080);
        svc.external_ips = vec!["192.168.1.5".parse().unwrap()];
        let rs = build(&config(), &[svc]);
        assert_eq!(
            rs.maps[SERVICE_NODEPORTS].elements["tcp . 30080"],
            "goto ext-default/lb/tcp/p80"
        );
        assert_eq!(
            rs.maps[SERVICE_IPS].elements["192.168.1.5 . tcp . 80"],
            "goto ext-default/lb/tcp/p80"
        );
        assert_eq!(
            rules(&rs, "ext-default/lb/tcp/p80"),
            [
                "jump mark-for-masquerade",
                "meta l4proto tcp dnat to 10.42.0.2:8080"
            ]
        );
    }

    #[test]
    fn external_traffic_policy_local_keeps_the_source_and_drops_without_a_local_endpoint() {
        let mut remote = endpoint("10.42.1.2", true, false);
        remote.local = false;
        let mut svc = service("loc", "10.43.0.8", vec![remote]);
        svc.node_port = Some(30081);
        svc.external_local = true;
        let rs = build(&config(), &[svc]);
        let ext = rules(&rs, "ext-default/loc/tcp/p80");
        assert_eq!(
            ext[0],
            "ip saddr 10.42.0.0/16 meta l4proto tcp dnat to 10.42.1.2:8080"
        );
        assert_eq!(ext[1], "fib saddr type local jump mark-for-masquerade");
        assert_eq!(ext.last().unwrap(), "drop");
        assert!(!ext.iter().any(|r| r == "jump mark-for-masquerade"));
    }

    #[test]
    fn internal_traffic_policy_local_picks_only_local_endpoints() {
        let mut remote = endpoint("10.42.1.2", true, false);
        remote.local = false;
        let mut svc = service(
            "itp",
            "10.43.0.9",
            vec![remote, endpoint("10.42.0.3", true, false)],
        );
        svc.internal_local = true;
        let rs = build(&config(), &[svc]);
        assert_eq!(
            rules(&rs, "svc-default/itp/tcp/p80")[1],
            "meta l4proto tcp dnat to 10.42.0.3:8080"
        );
    }

    #[test]
    fn client_ip_affinity_remembers_the_source_per_endpoint() {
        let mut svc = service(
            "aff",
            "10.43.0.11",
            vec![endpoint("10.42.0.2", true, false)],
        );
        svc.affinity_timeout = Some(600);
        let rs = build(&config(), &[svc]);
        let set = "aff-default/aff/tcp/p80/10.42.0.2/8080";
        assert_eq!(
            rs.sets[set],
            "type ipv4_addr; flags dynamic,timeout; timeout 600s;"
        );
        assert_eq!(
            rules(&rs, "svc-default/aff/tcp/p80")[1],
            format!("ip saddr @{set} goto sep-default/aff/tcp/p80/10.42.0.2/8080")
        );
        assert!(rules(&rs, "sep-default/aff/tcp/p80/10.42.0.2/8080")
            .contains(&format!("update @{set} {{ ip saddr }}")));
    }

    #[test]
    fn udp_ports_dnat_udp() {
        let mut svc = service(
            "dns",
            "10.43.0.12",
            vec![endpoint("10.42.0.2", true, false)],
        );
        svc.protocol = super::super::Protocol::Udp;
        let rs = build(&config(), &[svc]);
        assert_eq!(
            rules(&rs, "svc-default/dns/udp/p80")[1],
            "meta l4proto udp dnat to 10.42.0.2:8080"
        );
    }
}
