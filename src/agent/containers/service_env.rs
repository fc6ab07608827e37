//! Service-link environment variables, as the kubelet sets them: for each Service
//! of the pod's namespace that has a cluster IP (with `enableServiceLinks`, the
//! default) and always for the `kubernetes` Service of the `default` namespace,
//! `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT`, `{NAME}_SERVICE_PORT_{PORTNAME}`
//! and the Docker-link style `{NAME}_PORT`, `{NAME}_PORT_{port}_{PROTO}` with
//! `_PROTO`, `_PORT`, `_ADDR` (names upper-cased, `-` → `_`). The container's own
//! variables win on conflicts (see `volumes::environment`).
//!
//! May call: the API (listing Services with the node's credentials).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::Api;

/// The namespace and name of the Service whose variables every pod gets.
const MASTER_NAMESPACE: &str = "default";
const MASTER_SERVICE: &str = "kubernetes";

/// `my-svc` → `MY_SVC`.
pub fn variable_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// Whether a Service has a cluster IP (not headless, not ExternalName).
fn has_cluster_ip(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// The variables of one Service, in the kubelet's order.
pub fn service_variables(service: &Service) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !has_cluster_ip(service) {
        return out;
    }
    let spec = service.spec.as_ref().expect("checked by has_cluster_ip");
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let prefix = variable_name(service.metadata.name.as_deref().unwrap_or_default());
    let ports = spec.ports.as_deref().unwrap_or_default();
    out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
    let Some(first) = ports.first() else {
        return out;
    };
    out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", variable_name(name)),
                port.port.to_string(),
            ));
        }
    }
    let host = match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => format!("[{ip}]"),
        _ => ip.clone(),
    };
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{host}:{}", port.port);
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.clone()));
    }
    out
}

/// Which Services a pod in `namespace` gets variables for, by name: the master
/// Service from `default`, then (with service links) the namespace's own, which
/// win over a same-named master Service as in the kubelet.
pub fn select<'a>(
    namespace: &str,
    links: bool,
    master: Option<&'a Service>,
    in_namespace: &'a [Service],
) -> BTreeMap<String, &'a Service> {
    let mut chosen = BTreeMap::new();
    if let Some(m) = master.filter(|m| has_cluster_ip(m)) {
        chosen.insert(MASTER_SERVICE.to_string(), m);
    }
    if links {
        for s in in_namespace.iter().filter(|s| has_cluster_ip(s)) {
            let name = s.metadata.name.clone().unwrap_or_default();
            let is_master = namespace == MASTER_NAMESPACE && name == MASTER_SERVICE;
            if !is_master || !chosen.contains_key(&name) {
                chosen.insert(name, s);
            }
        }
    }
    chosen
}

/// The service-link variables for a pod, sorted by Service name.
pub async fn for_pod(
    client: &kube::Client,
    pod: &Pod,
) -> Result<Vec<(String, String)>, kube::Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let master: Api<Service> = Api::namespaced(client.clone(), MASTER_NAMESPACE);
    let master = master.get_opt(MASTER_SERVICE).await?;
    let in_namespace = if links {
        let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
        crate::client::lenient::list(&api, &ListParams::default())
            .await?
            .items
    } else {
        Vec::new()
    };
    let chosen = select(&namespace, links, master.as_ref(), &in_namespace);
    Ok(chosen.values().flat_map(|s| service_variables(s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "ports": ports}}))
        .unwrap()
    }

    #[test]
    fn variables_have_the_kubelet_names_and_values() {
        let s = service(
            "ns",
            "my-web",
            "10.43.0.7",
            serde_json::json!([
                {"name": "http", "port": 80},
                {"name": "dns-udp", "port": 53, "protocol": "UDP"}]),
        );
        let vars = service_variables(&s);
        let expected = [
            ("MY_WEB_SERVICE_HOST", "10.43.0.7"),
            ("MY_WEB_SERVICE_PORT", "80"),
            ("MY_WEB_SERVICE_PORT_HTTP", "80"),
            ("MY_WEB_SERVICE_PORT_DNS_UDP", "53"),
            ("MY_WEB_PORT", "tcp://10.43.0.7:80"),
            ("MY_WEB_PORT_80_TCP", "tcp://10.43.0.7:80"),
            ("MY_WEB_PORT_80_TCP_PROTO", "tcp"),
            ("MY_WEB_PORT_80_TCP_PORT", "80"),
            ("MY_WEB_PORT_80_TCP_ADDR", "10.43.0.7"),
            ("MY_WEB_PORT_53_UDP", "udp://10.43.0.7:53"),
            ("MY_WEB_PORT_53_UDP_PROTO", "udp"),
            ("MY_WEB_PORT_53_UDP_PORT", "53"),
            ("MY_WEB_PORT_53_UDP_ADDR", "10.43.0.7"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn headless_and_external_services_give_nothing() {
        let headless = service("ns", "h", "None", serde_json::json!([{"port": 80}]));
        assert!(service_variables(&headless).is_empty());
        let external: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "x.example"}}))
        .unwrap();
        assert!(service_variables(&external).is_empty());
    }

    #[test]
    fn ipv6_addresses_are_bracketed_in_urls() {
        let s = service("ns", "v6", "fd00::10", serde_json::json!([{"port": 443}]));
        let vars: BTreeMap<_, _> = service_variables(&s).into_iter().collect();
        assert_eq!(vars["V6_PORT"], "tcp://[fd00::10]:443");
        assert_eq!(vars["V6_PORT_443_TCP_ADDR"], "fd00::10");
    }

    #[test]
    fn the_master_service_is_always_there_and_links_add_the_namespace() {
        let master = service(
            "default",
            "kubernetes",
            "10.43.0.1",
            serde_json::json!([{"name": "https", "port": 443}]),
        );
        let own = [
            service("ns", "a", "10.43.0.5", serde_json::json!([{"port": 1}])),
            service("ns", "b", "None", serde_json::json!([{"port": 1}])),
        ];
        let with = select("ns", true, Some(&master), &own);
        assert_eq!(with.keys().collect::<Vec<_>>(), ["a", "kubernetes"]);
        let without = select("ns", false, Some(&master), &own);
        assert_eq!(without.keys().collect::<Vec<_>>(), ["kubernetes"]);
        // A Service named kubernetes in the pod's namespace wins.
        let shadow = [service(
            "ns",
            "kubernetes",
            "10.43.0.9",
            serde_json::json!([{"port": 1}]),
        )];
        let chosen = select("ns", true, Some(&master), &shadow);
        assert_eq!(
            chosen["kubernetes"]
                .spec
                .as_ref()
                .unwrap()
                .cluster_ip
                .as_deref(),
            Some("10.43.0.9")
        );
    }
}
