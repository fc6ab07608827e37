//! The Service data plane's API side (skiff's kube-proxy), in every node's agent:
//! watches Services and EndpointSlices, turns them into the node's service ports
//! ([`service_ports`], pure) and programs them through `network::proxy`: the whole
//! table at start and after any error, else a diff against the in-memory mirror of
//! what was applied last. UDP flows to backends that went are flushed.
//!
//! The table stays when the agent stops (pods keep working across agent restarts, as
//! with kube-proxy); `skiff network cleanup` removes it.
//!
//! Owns: the watches and the sync loop. May call: the API (services, endpointslices:
//! get/list/watch, which the node authorizer allows), `network::proxy`, `network::nft`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::Notify;

use super::NetworkConfig;
use crate::network::nft;
use crate::network::proxy::ruleset::{self, Ruleset, TableConfig};
use crate::network::proxy::{
    conntrack, script, table_name, Endpoint, Family, Protocol, ServicePort,
};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// After a failed apply, the next (full) attempt waits this long, doubling up to
/// `RETRY_MAX` while failures go on (e.g. no `nft` on the node).
const RETRY: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A full resync this often anyway, in case something else changed the table.
const RESYNC: Duration = Duration::from_secs(300);

/// The table configuration of the node `config` describes.
pub fn table_config(config: &NetworkConfig) -> TableConfig {
    TableConfig {
        family: Family::Ipv4,
        table: table_name(&config.bridge),
        cluster_cidr: config.cluster_cidr.to_string(),
        service_cidr: config.service_cidr.to_string(),
        cluster_dns: match config.cluster_dns {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        },
    }
}

/// Starts the data plane's loop on its own task, once per table in a process (a
/// runtime that retries its set-up calls this again).
pub fn start(client: kube::Client, config: Arc<NetworkConfig>) {
    static STARTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let table = table_name(&config.bridge);
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if started.contains(&table) {
        return;
    }
    started.push(table);
    tokio::spawn(run(client, config));
}

async fn run(client: kube::Client, config: Arc<NetworkConfig>) {
    let changed = Arc::new(Notify::new());
    let services = watch(Api::<Service>::all(client.clone()), changed.clone());
    let slices = watch(Api::<EndpointSlice>::all(client), changed.clone());
    // Nothing is programmed before both lists are in: an empty cache would remove
    // every service a restarted agent's table still serves.
    if services.wait_until_ready().await.is_err() || slices.wait_until_ready().await.is_err() {
        return;
    }
    let table = table_config(&config);
    let mut mirror: Option<Ruleset> = None;
    let mut last_ports: Vec<ServicePort> = Vec::new();
    let mut last_full = Instant::now();
    let mut retry = RETRY;
    loop {
        let ports = service_ports(
            &services.state(),
            &slices.state(),
            &config.node_name,
            config.cluster_dns,
        );
        let desired = ruleset::build(&table, &ports);
        if last_full.elapsed() > RESYNC {
            mirror = None;
        }
        let (text, full) = match mirror
            .as_ref()
            .and_then(|m| script::diff(&table, m, &desired))
        {
            Some(text) => (text, false),
            None => (script::full(&table, &desired), true),
        };
        let started = Instant::now();
        let applied = if text.is_empty() {
            Ok(())
        } else {
            tokio::task::spawn_blocking(move || nft::apply(&text))
                .await
                .unwrap_or_else(|e| {
                    Err(nft::NftError::Refused {
                        message: e.to_string(),
                    })
                })
        };
        match applied {
            Ok(()) => {
                tracing::debug!(full, services = ports.len(), took = ?started.elapsed(), "services programmed");
                if full {
                    last_full = Instant::now();
                }
                mirror = Some(desired);
                retry = RETRY;
                let stale = conntrack::stale_udp_flows(&last_ports, &ports);
                if !stale.is_empty() {
                    let flushed =
                        tokio::task::spawn_blocking(move || conntrack::delete(&stale)).await;
                    if let Ok(Err(e)) = flushed {
                        tracing::warn!(error = %e, "flushing stale UDP flows failed");
                    }
                }
                last_ports = ports;
            }
            Err(e) => {
                tracing::warn!(error = %e, full, "programming services failed; resyncing the whole table");
                mirror = None;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        }
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// A cache of every `K`, fed by a lenient watch; `changed` is notified on each event.
fn watch<K>(api: Api<K>, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    crate::client::lenient::notifying_cache(api, watcher::Config::default(), changed)
}

/// The service ports `node` serves, from every Service and EndpointSlice: IPv4
/// ClusterIP, NodePort and LoadBalancer Services (not headless, not ExternalName, not
/// the cluster DNS address, which is served on the node), with the endpoints of
/// their slices; sorted, so equal inputs build equal rulesets.
pub fn service_ports(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    node: &str,
    cluster_dns: IpAddr,
) -> Vec<ServicePort> {
    let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
            continue;
        };
        if slice.address_type != "IPv4" {
            continue;
        }
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        by_service
            .entry((namespace, service.clone()))
            .or_default()
            .push(slice);
    }
    let mut ports = Vec::new();
    for service in services {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let slices = by_service
            .get(&(namespace.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        ports.extend(ports_of(
            service,
            &namespace,
            &name,
            slices,
            node,
            cluster_dns,
        ));
    }
    ports.sort_by_key(|p| p.id());
    ports
}

fn ports_of(
    service: &Service,
    namespace: &str,
    name: &str,
    slices: &[&EndpointSlice],
    node: &str,
    cluster_dns: IpAddr,
) -> Vec<ServicePort> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return Vec::new();
    }
    let cluster_ip: Option<Ipv4Addr> = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
    let Some(cluster_ip) = cluster_ip else {
        return Vec::new(); // headless or not yet allocated
    };
    if IpAddr::V4(cluster_ip) == cluster_dns {
        return Vec::new();
    }
    let mut external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if kind == "LoadBalancer" {
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
    }
    // Loopback is not served (no `route_localnet`, as kube-proxy's nftables mode).
    external_ips.retain(|ip| !ip.is_loopback());
    external_ips.sort();
    external_ips.dedup();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(10_800)
    });
    let has_node_ports = matches!(kind, "NodePort" | "LoadBalancer");
    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
            continue;
        };
        let port_name = port.name.clone().unwrap_or_default();
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        ports.push(ServicePort {
            namespace: namespace.to_string(),
            name: name.to_string(),
            port_name: port_name.clone(),
            protocol,
            cluster_ip: Some(cluster_ip),
            port: number,
            node_port: port
                .node_port
                .filter(|_| has_node_ports)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            external_ips: external_ips.clone(),
            affinity_timeout,
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            endpoints: endpoints_of(slices, &port_name, protocol, node),
        });
    }
    ports
}

/// The endpoints of the service port named `port_name`: every address of the slices
/// that carry a port of that name and protocol, on that port's number.
fn endpoints_of(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
    node: &str,
) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for slice in slices {
        let matching = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(number) = matching
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let conditions = ep.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            endpoints.push(Endpoint {
                ip,
                port: number,
                local: ep.node_name.as_deref() == Some(node),
                ready,
                serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
            });
        }
    }
    endpoints.sort();
    endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn slice(value: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn dns() -> IpAddr {
        "10.43.0.10".parse().unwrap()
    }

    #[test]
    fn ports_take_their_endpoints_from_slices_by_port_name_and_protocol() {
        let services = [service(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.5",
                     "ports": [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))];
        let slices = [slice(json!({
            "metadata": {"name": "web-abc", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.42.0.2"], "conditions": {"ready": true}, "nodeName": "n1"},
                {"addresses": ["10.42.1.2"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "n2"}
            ]
        }))];
        let ports = service_ports(&services, &slices, "n1", dns());
        assert_eq!(ports.len(), 2);
        let http = ports.iter().find(|p| p.port_name == "http").unwrap();
        assert_eq!(http.node_port, Some(30080));
        assert_eq!(http.endpoints[0].port, 8080);
        assert!(http.endpoints[0].local && http.endpoints[0].ready);
        assert!(!http.endpoints[1].local && http.endpoints[1].terminating);
        let udp = ports.iter().find(|p| p.port_name == "dns").unwrap();
        assert_eq!(udp.protocol, Protocol::Udp);
        assert_eq!(udp.endpoints[0].port, 5353);
    }

    #[test]
    fn headless_external_name_and_the_dns_service_are_left_out() {
        let services = [
            service(json!({"metadata": {"name": "h", "namespace": "ns"},
                           "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})),
            service(json!({"metadata": {"name": "x", "namespace": "ns"},
                           "spec": {"type": "ExternalName", "externalName": "example.org"}})),
            service(
                json!({"metadata": {"name": "kube-dns", "namespace": "kube-system"},
                           "spec": {"clusterIP": "10.43.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}}),
            ),
        ];
        assert!(service_ports(&services, &[], "n1", dns()).is_empty());
    }

    #[test]
    fn load_balancer_ingress_affinity_and_policies_are_read() {
        let services = [service(json!({
            "metadata": {"name": "lb", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.7",
                     "ports": [{"port": 80, "nodePort": 31000}],
                     "sessionAffinity": "ClientIP",
                     "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.5"}]}}
        }))];
        let ports = service_ports(&services, &[], "n1", dns());
        assert_eq!(
            ports[0].external_ips,
            ["192.168.1.5".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(ports[0].affinity_timeout, Some(10_800));
        assert!(ports[0].external_local && ports[0].internal_local);
        assert_eq!(ports[0].node_port, Some(31000));
        assert!(ports[0].endpoints.is_empty());
    }
}
