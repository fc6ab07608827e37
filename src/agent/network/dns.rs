//! The node-local cluster DNS: every agent serves the `--cluster-dns` address on
//! its own sink link, port 53 (UDP and TCP), so a pod's lookup never leaves the
//! node and reaches the server with the pod's own source address.
//!
//! Owns: the address on the sink link (added at start, removed by
//! [`remove_dns_address`]), watching Services and EndpointSlices with the node's
//! client, turning them into a [`Snapshot`] (ready endpoints only) and the zone the
//! server answers from. While the API is unreachable the watches keep their last
//! state, so DNS keeps answering from the last snapshot.
//! May call: `dns` (zone, forwarder, server), the API with the node's credentials.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::Notify;

use super::NetworkConfig;
use crate::dns::forward::Forwarder;
use crate::dns::server::ClusterDns;
use crate::dns::snapshot::{self, Snapshot};
use crate::dns::zone::Zone;

/// Changes arriving within this window are folded into one rebuild.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long to wait before retrying a failed start (address or port taken).
const RETRY: Duration = Duration::from_secs(5);
/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The pre-`publishNotReadyAddresses` way to publish unready endpoints.
const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// Starts cluster DNS in the background: it retries until it serves, logging why
/// it cannot yet. Once per address and link in a process (the runtime may set the
/// node up again after a failed attempt).
pub fn start(client: kube::Client, config: Arc<NetworkConfig>) {
    static STARTED: std::sync::Mutex<BTreeSet<(IpAddr, String)>> =
        std::sync::Mutex::new(BTreeSet::new());
    let key = (config.cluster_dns, config.sink_link.clone());
    if !STARTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key)
    {
        return;
    }
    tokio::spawn(async move {
        loop {
            match serve(client.clone(), &config).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster dns cannot start yet; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

/// Binds the address, then serves and follows the API forever.
async fn serve(client: kube::Client, config: &NetworkConfig) -> Result<(), String> {
    let upstreams =
        crate::dns::upstreams::upstreams(config.resolv_conf.as_deref(), config.cluster_dns)
            .map_err(|e| e.to_string())?;
    if upstreams.is_empty() {
        tracing::warn!("no upstream resolvers: names outside the cluster get SERVFAIL");
    }
    let (link, ip) = (config.sink_link.clone(), config.cluster_dns);
    tokio::task::spawn_blocking(move || add_dns_address(&link, ip))
        .await
        .map_err(|e| e.to_string())??;
    let (udp, tcp) = crate::dns::server::bind(SocketAddr::new(config.cluster_dns, 53))
        .map_err(|e| e.to_string())?;
    let dns = ClusterDns::new(&config.cluster_domain, Forwarder::new(upstreams.clone()))
        .map_err(|e| e.to_string())?;
    let mut server = crate::dns::server::serve(dns.clone(), udp, tcp).map_err(|e| e.to_string())?;
    tracing::info!(address = %config.cluster_dns, ?upstreams, "cluster dns serving");
    tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!(error = %e, "cluster dns server stopped");
        }
    });
    tokio::spawn(follow(client, config.clone(), dns));
    Ok(())
}

/// Watches Services and EndpointSlices and rebuilds the zone on every change.
async fn follow(client: kube::Client, config: NetworkConfig, dns: Arc<ClusterDns>) {
    let changed = Arc::new(Notify::new());
    let services = watch::<Service>(client.clone(), changed.clone());
    let slices = watch::<EndpointSlice>(client, changed.clone());
    if services.wait_until_ready().await.is_err() || slices.wait_until_ready().await.is_err() {
        return;
    }
    let mut serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1);
    loop {
        let snapshot = snapshot_of(&services.state(), &slices.state());
        match Zone::build(
            &config.cluster_domain,
            config.cluster_dns,
            &snapshot,
            serial,
        ) {
            Ok(zone) => dns.set_zone(zone),
            Err(e) => tracing::error!(error = %e, "building the cluster dns zone failed"),
        }
        serial = serial.wrapping_add(1);
        changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// A cluster-wide reflector of `K` that wakes `changed` on every event.
fn watch<K>(client: kube::Client, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    crate::client::lenient::notifying_cache(
        Api::<K>::all(client),
        watcher::Config::default(),
        changed,
    )
}

/// What DNS needs of the Services and EndpointSlices: every Service with an
/// address (or an external name), headless ones with their ready endpoints.
pub fn snapshot_of(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Snapshot {
    let services = services
        .iter()
        .filter_map(|service| snapshot_service(service, slices))
        .collect();
    Snapshot { services }
}

fn snapshot_service(service: &Service, slices: &[Arc<EndpointSlice>]) -> Option<snapshot::Service> {
    let name = service.metadata.name.clone()?;
    let namespace = service.metadata.namespace.clone()?;
    let spec = service.spec.as_ref()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(snapshot::ServicePort {
                name: p.name.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    let mut endpoints = vec![];
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        snapshot::ServiceKind::ExternalName(spec.external_name.clone()?)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        let publish_unready = spec.publish_not_ready_addresses == Some(true)
            || service
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TOLERATE_UNREADY))
                .is_some_and(|v| v == "true");
        endpoints = ready_endpoints(&name, &namespace, slices, publish_unready);
        snapshot::ServiceKind::Headless
    } else {
        let ips: Vec<IpAddr> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
            _ => spec
                .cluster_ip
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect(),
        };
        if ips.is_empty() {
            // Not allocated yet: no records rather than wrong ones.
            return None;
        }
        snapshot::ServiceKind::ClusterIp(ips)
    };
    Some(snapshot::Service {
        name,
        namespace,
        kind,
        ports,
        endpoints,
    })
}

/// The ready endpoints of Service `name` over all its slices (one address once).
fn ready_endpoints(
    name: &str,
    namespace: &str,
    slices: &[Arc<EndpointSlice>],
    publish_unready: bool,
) -> Vec<snapshot::Endpoint> {
    let mut seen = BTreeSet::new();
    let mut endpoints = vec![];
    let owned = slices.iter().filter(|slice| {
        slice.metadata.namespace.as_deref() == Some(namespace)
            && slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_some_and(|s| s == name)
    });
    for slice in owned {
        for endpoint in &slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready && !publish_unready {
                continue;
            }
            let addresses: Vec<IpAddr> = endpoint
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .filter(|ip| seen.insert(*ip))
                .collect();
            if !addresses.is_empty() {
                endpoints.push(snapshot::Endpoint {
                    addresses,
                    hostname: endpoint.hostname.clone(),
                });
            }
        }
    }
    endpoints
}

/// Puts the cluster DNS address on the sink link (idempotent).
fn add_dns_address(link: &str, ip: IpAddr) -> Result<(), String> {
    let output = ip_command(&["addr", "replace", &host_prefix(ip), "dev", link])?;
    if !output.status.success() {
        return Err(format!(
            "adding {ip} to {link}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Takes the cluster DNS address off the sink link (for `skiff network cleanup`);
/// an address or link already gone is no error.
pub fn remove_dns_address(link: &str, ip: IpAddr) -> Result<(), String> {
    let output = ip_command(&["addr", "del", &host_prefix(ip), "dev", link])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let gone = stderr.contains("Cannot assign") || stderr.contains("Cannot find device");
    if output.status.success() || gone {
        Ok(())
    } else {
        Err(format!("removing {ip} from {link}: {}", stderr.trim()))
    }
}

fn host_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

fn ip_command(args: &[&str]) -> Result<std::process::Output, String> {
    std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::snapshot::{Endpoint, ServiceKind, ServicePort};
    use serde_json::json;

    fn service(value: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn slice(value: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cluster_ip_services_with_their_ports() {
        let services = [service(json!({
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7", "fd00::7"],
                     "ports": [{"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]},
        }))];
        let snapshot = snapshot_of(&services, &[]);
        assert_eq!(snapshot.services.len(), 1);
        let web = &snapshot.services[0];
        assert_eq!(
            web.kind,
            ServiceKind::ClusterIp(vec![ip("10.43.0.7"), ip("fd00::7")])
        );
        assert_eq!(
            web.ports,
            [
                ServicePort {
                    name: "http".into(),
                    protocol: "TCP".into(),
                    port: 80
                },
                ServicePort {
                    name: "".into(),
                    protocol: "UDP".into(),
                    port: 53
                },
            ]
        );
    }

    #[test]
    fn services_without_an_address_yet_are_left_out() {
        let services = [service(json!({
            "metadata": {"name": "web", "namespace": "prod"}, "spec": {},
        }))];
        assert!(snapshot_of(&services, &[]).services.is_empty());
    }

    #[test]
    fn external_names() {
        let services = [service(json!({
            "metadata": {"name": "ext", "namespace": "prod"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"},
        }))];
        let snapshot = snapshot_of(&services, &[]);
        assert_eq!(
            snapshot.services[0].kind,
            ServiceKind::ExternalName("db.example.com".into())
        );
    }

    fn headless_slices() -> Vec<Arc<EndpointSlice>> {
        vec![
            slice(json!({
                "metadata": {"name": "db-abc", "namespace": "prod",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                    {"addresses": ["10.42.0.6"], "conditions": {"ready": false}},
                    {"addresses": ["10.42.0.7"]},
                ],
            })),
            // Another Service's slice, and one of a same-named Service elsewhere.
            slice(json!({
                "metadata": {"name": "other", "namespace": "prod",
                             "labels": {"kubernetes.io/service-name": "other"}},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.9"]}],
            })),
            slice(json!({
                "metadata": {"name": "db-x", "namespace": "dev",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.10"]}],
            })),
        ]
    }

    #[test]
    fn headless_services_get_their_ready_endpoints_with_hostnames() {
        let services = [service(json!({
            "metadata": {"name": "db", "namespace": "prod"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
        }))];
        let snapshot = snapshot_of(&services, &headless_slices());
        let db = &snapshot.services[0];
        assert_eq!(db.kind, ServiceKind::Headless);
        assert_eq!(
            db.endpoints,
            [
                Endpoint {
                    addresses: vec![ip("10.42.0.5")],
                    hostname: Some("db-0".into())
                },
                Endpoint {
                    addresses: vec![ip("10.42.0.7")],
                    hostname: None
                },
            ]
        );
    }

    #[test]
    fn publish_not_ready_addresses_includes_unready_endpoints() {
        for marker in [
            json!({"metadata": {"name": "db", "namespace": "prod"},
                   "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}}),
            json!({"metadata": {"name": "db", "namespace": "prod",
                                "annotations": {TOLERATE_UNREADY: "true"}},
                   "spec": {"clusterIP": "None"}}),
        ] {
            let snapshot = snapshot_of(&[service(marker)], &headless_slices());
            assert_eq!(snapshot.services[0].endpoints.len(), 3);
        }
    }

    #[test]
    fn the_snapshot_answers_through_the_zone() {
        let services = [service(json!({
            "metadata": {"name": "db", "namespace": "prod"},
            "spec": {"clusterIP": "None"},
        }))];
        let snapshot = snapshot_of(&services, &headless_slices());
        let zone = Zone::build("cluster.local", ip("10.43.0.10"), &snapshot, 1).unwrap();
        let name = hickory_proto::rr::Name::from_ascii("db.prod.svc.cluster.local.").unwrap();
        let answer = zone
            .lookup(&name, hickory_proto::rr::RecordType::A)
            .unwrap();
        let mut ips: Vec<String> = answer
            .answers
            .iter()
            .map(|r| r.data().to_string())
            .collect();
        ips.sort();
        assert_eq!(ips, ["10.42.0.5", "10.42.0.7"]);
    }

    #[test]
    fn host_prefixes() {
        assert_eq!(host_prefix(ip("10.43.0.10")), "10.43.0.10/32");
        assert_eq!(host_prefix(ip("fd00::a")), "fd00::a/128");
    }
}
