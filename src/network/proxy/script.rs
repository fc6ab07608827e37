//! nftables scripts from rulesets: the whole table ([`full`], which replaces the table
//! in one transaction, used at start and after any error) and the change from the
//! last applied ruleset to the next ([`diff`], so a one-service change is a handful
//! of commands whatever the number of services).
//!
//! Owns: script text. Calls: nothing (pure).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::ruleset::{Chain, Ruleset, TableConfig};

/// The script replacing the table with `rs` (creating it if needed).
pub fn full(config: &TableConfig, rs: &Ruleset) -> String {
    let t = target(config);
    let mut out = String::with_capacity(256 * (rs.chains.len() + 8));
    let _ = writeln!(out, "add table {t}");
    let _ = writeln!(out, "delete table {t}");
    let _ = writeln!(out, "add table {t}");
    for (name, map) in &rs.maps {
        // A type without values (`:`) is an element set (the hairpin pairs).
        let kind = if map.spec.contains(':') { "map" } else { "set" };
        let _ = writeln!(out, "add {kind} {t} {name} {{ {} }}", map.spec);
    }
    for (name, spec) in &rs.sets {
        let _ = writeln!(out, "add set {t} {name} {{ {spec} }}");
    }
    for (name, chain) in &rs.chains {
        add_chain(&mut out, &t, name, chain);
    }
    for (name, chain) in &rs.chains {
        add_rules(&mut out, &t, name, chain);
    }
    for (name, map) in &rs.maps {
        add_elements(&mut out, &t, name, map.elements.iter());
    }
    out
}

/// The script turning the applied `old` into `new`; `None` when only a full load can
/// (the fixed part changed: a map's or set's type, a hook).
pub fn diff(config: &TableConfig, old: &Ruleset, new: &Ruleset) -> Option<String> {
    let t = target(config);
    if old.maps.len() != new.maps.len()
        || old
            .maps
            .iter()
            .any(|(n, m)| new.maps.get(n).map(|x| &x.spec) != Some(&m.spec))
    {
        return None;
    }
    let spec_changed =
        |name: &String, chain: &Chain| new.chains.get(name).is_some_and(|c| c.spec != chain.spec);
    if old.chains.iter().any(|(n, c)| spec_changed(n, c))
        || old
            .sets
            .iter()
            .any(|(n, s)| new.sets.get(n).is_some_and(|x| x != s))
    {
        return None;
    }
    let mut out = String::new();
    for (name, spec) in &new.sets {
        if !old.sets.contains_key(name) {
            let _ = writeln!(out, "add set {t} {name} {{ {spec} }}");
        }
    }
    for (name, chain) in &new.chains {
        if !old.chains.contains_key(name) {
            add_chain(&mut out, &t, name, chain);
        }
    }
    let mut added: Vec<(&String, BTreeMap<&String, &String>)> = Vec::new();
    for (name, map) in &new.maps {
        let before = &old.maps[name].elements;
        let gone = before
            .iter()
            .filter(|(k, v)| map.elements.get(*k) != Some(v))
            .map(|(k, _)| k);
        delete_elements(&mut out, &t, name, gone);
        let fresh = map
            .elements
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .collect();
        added.push((name, fresh));
    }
    for (name, chain) in &new.chains {
        match old.chains.get(name) {
            None => add_rules(&mut out, &t, name, chain),
            Some(before) if before.rules != chain.rules => {
                let _ = writeln!(out, "flush chain {t} {name}");
                add_rules(&mut out, &t, name, chain);
            }
            Some(_) => {}
        }
    }
    let removed: Vec<&String> = old
        .chains
        .keys()
        .filter(|n| !new.chains.contains_key(*n))
        .collect();
    for name in &removed {
        let _ = writeln!(out, "flush chain {t} {name}");
    }
    for name in &removed {
        let _ = writeln!(out, "delete chain {t} {name}");
    }
    for name in old.sets.keys() {
        if !new.sets.contains_key(name) {
            let _ = writeln!(out, "delete set {t} {name}");
        }
    }
    for (name, fresh) in added {
        add_elements(&mut out, &t, name, fresh.into_iter());
    }
    Some(out)
}

/// `family table`, as commands name the table.
fn target(config: &TableConfig) -> String {
    format!("{} {}", config.family.nft(), config.table)
}

fn add_chain(out: &mut String, t: &str, name: &str, chain: &Chain) {
    match &chain.spec {
        Some(spec) => {
            let _ = writeln!(out, "add chain {t} {name} {{ {spec} }}");
        }
        None => {
            let _ = writeln!(out, "add chain {t} {name}");
        }
    }
}

fn add_rules(out: &mut String, t: &str, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        let _ = writeln!(out, "add rule {t} {name} {rule}");
    }
}

/// Elements per command: keeps each line a reasonable size.
const ELEMENTS_PER_COMMAND: usize = 1000;

fn add_elements<'a>(
    out: &mut String,
    t: &str,
    map: &str,
    elements: impl Iterator<Item = (&'a String, &'a String)>,
) {
    // A set's elements are keys without values.
    let items: Vec<String> = elements
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k} : {v}")
            }
        })
        .collect();
    for chunk in items.chunks(ELEMENTS_PER_COMMAND) {
        let _ = writeln!(out, "add element {t} {map} {{ {} }}", chunk.join(", "));
    }
}

fn delete_elements<'a>(
    out: &mut String,
    t: &str,
    map: &str,
    keys: impl Iterator<Item = &'a String>,
) {
    let keys: Vec<&String> = keys.collect();
    for chunk in keys.chunks(ELEMENTS_PER_COMMAND) {
        let list: Vec<&str> = chunk.iter().map(|k| k.as_str()).collect();
        let _ = writeln!(out, "delete element {t} {map} {{ {} }}", list.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::super::ruleset::{build, SERVICE_IPS};
    use super::super::tests::{endpoint, service};
    use super::super::{Family, ServicePort};
    use super::*;

    fn config() -> TableConfig {
        TableConfig {
            family: Family::Ipv4,
            table: "skiff-cni0".into(),
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            cluster_dns: Some("10.43.0.10".parse().unwrap()),
        }
    }

    fn many(n: u32) -> Vec<ServicePort> {
        (0..n)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(u32::from_be_bytes([10, 43, 0, 0]) + 100 + i);
                let eps = (0..2)
                    .map(|j| {
                        let ep = std::net::Ipv4Addr::from(
                            u32::from_be_bytes([10, 42, 0, 0]) + 2 + 2 * i + j,
                        );
                        endpoint(&ep.to_string(), true, false)
                    })
                    .collect();
                service(&format!("svc-{i}"), &ip.to_string(), eps)
            })
            .collect()
    }

    #[test]
    fn a_full_load_replaces_the_table_and_declares_before_it_uses() {
        let rs = build(&config(), &many(2));
        let script = full(&config(), &rs);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "add table ip skiff-cni0");
        assert_eq!(lines[1], "delete table ip skiff-cni0");
        let first_rule = lines
            .iter()
            .position(|l| l.starts_with("add rule"))
            .unwrap();
        let last_chain = lines
            .iter()
            .rposition(|l| l.starts_with("add chain"))
            .unwrap();
        assert!(last_chain < first_rule);
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("add element ip skiff-cni0 service-nodeports")
                || lines
                    .last()
                    .unwrap()
                    .starts_with("add element ip skiff-cni0 service-ips")
        );
        assert!(script.contains("add chain ip skiff-cni0 nat-prerouting { type nat hook prerouting priority -100; policy accept; }"));
    }

    #[test]
    fn an_unchanged_ruleset_diffs_to_nothing() {
        let rs = build(&config(), &many(3));
        assert_eq!(diff(&config(), &rs, &rs.clone()).unwrap(), "");
    }

    #[test]
    fn adding_a_service_adds_its_chains_rules_and_map_element_only() {
        let old = build(&config(), &many(3));
        let new = build(&config(), &many(4));
        let script = diff(&config(), &old, &new).unwrap();
        assert!(
            script
                .lines()
                .all(|l| l.contains("svc-3") || l.starts_with("add element ip skiff-cni0 hairpin")),
            "{script}"
        );
        assert!(script.contains("add chain ip skiff-cni0 svc-default/svc-3/tcp/p80\n"));
        assert!(script.ends_with(
            "add element ip skiff-cni0 service-ips { 10.43.0.103 . tcp . 80 : goto svc-default/svc-3/tcp/p80 }\n"
        ));
    }

    #[test]
    fn removing_a_service_drops_its_element_before_its_chains() {
        let old = build(&config(), &many(4));
        let new = build(&config(), &many(3));
        let script = diff(&config(), &old, &new).unwrap();
        let lines: Vec<&str> = script.lines().collect();
        let element = lines
            .iter()
            .position(|l| {
                *l == "delete element ip skiff-cni0 service-ips { 10.43.0.103 . tcp . 80 }"
            })
            .unwrap();
        let flush = lines
            .iter()
            .position(|l| l.starts_with("flush chain"))
            .unwrap();
        let delete = lines
            .iter()
            .position(|l| l.starts_with("delete chain"))
            .unwrap();
        assert!(element < flush && flush < delete);
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("delete chain"))
                .count(),
            1,
            "{script}"
        );
    }

    #[test]
    fn an_endpoint_going_rewrites_the_service_chain_and_drops_its_hairpin_pair() {
        let mut services = many(2);
        let old = build(&config(), &services);
        services[1].endpoints.pop();
        let new = build(&config(), &services);
        let script = diff(&config(), &old, &new).unwrap();
        assert!(script.contains("flush chain ip skiff-cni0 svc-default/svc-1/tcp/p80\n"));
        assert!(script.contains("delete element ip skiff-cni0 hairpin { 10.42.0.5 . 10.42.0.5 }\n"));
        assert!(!script.contains("svc-0"));
        assert!(!script.contains(SERVICE_IPS));
    }

    #[test]
    fn a_moved_cluster_ip_replaces_the_map_element() {
        let mut services = many(1);
        let old = build(&config(), &services);
        services[0].cluster_ip = Some("10.43.1.1".parse().unwrap());
        let new = build(&config(), &services);
        let script = diff(&config(), &old, &new).unwrap();
        assert_eq!(
            script,
            "delete element ip skiff-cni0 service-ips { 10.43.0.100 . tcp . 80 }\n\
             add element ip skiff-cni0 service-ips { 10.43.1.1 . tcp . 80 : goto svc-default/svc-0/tcp/p80 }\n"
        );
    }

    #[test]
    fn a_changed_affinity_timeout_needs_a_full_load() {
        let mut services = many(1);
        services[0].affinity_timeout = Some(10);
        let old = build(&config(), &services);
        services[0].affinity_timeout = Some(20);
        let new = build(&config(), &services);
        assert!(diff(&config(), &old, &new).is_none());
    }

    #[test]
    fn ten_thousand_services_build_and_diff() {
        let services = many(10_000);
        let rs = build(&config(), &services);
        assert_eq!(rs.maps[SERVICE_IPS].elements.len(), 10_000);
        let script = full(&config(), &rs);
        // 10,000 service IPs and 20,000 hairpin pairs, 1,000 a command.
        assert_eq!(script.matches("add element").count(), 30);
        let mut changed = services.clone();
        changed[5000].endpoints.pop();
        let script = diff(&config(), &rs, &build(&config(), &changed)).unwrap();
        assert_eq!(script.lines().count(), 4, "{script}");
    }
}
