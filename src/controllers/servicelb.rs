//! ServiceLB, as k3s's: a `LoadBalancer` Service is served on every node (each
//! node's service data plane answers its ports on the node's addresses), so its
//! `status.loadBalancer.ingress` lists the Ready nodes' addresses (ExternalIP where a
//! node has one, else InternalIP) and `kubectl get svc` shows an EXTERNAL-IP.
//!
//! - Services with a `spec.loadBalancerClass` belong to another implementation and
//!   are left alone, as are nodes labelled
//!   `node.kubernetes.io/exclude-from-external-load-balancers`.
//! - A Service that is no longer a LoadBalancer has its ingress cleared.
//! - Level-triggered: each pass compares every Service's ingress with the one wanted
//!   and patches the status subresource where they differ.
//!
//! May call: the API (services, nodes: watch; services/status: patch).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::{cache, Context};

const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
const TICK: Duration = Duration::from_millis(500);

pub async fn run(ctx: Arc<Context>) {
    let nodes = cache(Api::<Node>::all(ctx.client.clone()));
    let services = cache(Api::<Service>::all(ctx.client.clone()));
    let _ = nodes.wait_until_ready().await;
    let _ = services.wait_until_ready().await;
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let addresses = ingress_addresses(&nodes.state());
        for service in services.state() {
            let Some(wanted) = wanted_ingress(&service, &addresses) else {
                continue;
            };
            if current_ingress(&service) == wanted {
                continue;
            }
            if let Err(e) = set_ingress(&ctx, &service, &wanted).await {
                tracing::debug!(service = %service.name_any(), error = %e, "setting load-balancer ingress failed");
            }
        }
    }
}

/// The address each Ready, not excluded node serves load balancers on, sorted.
pub fn ingress_addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut addresses: Vec<String> = nodes
        .iter()
        .filter(|n| is_ready(n) && !n.labels().contains_key(EXCLUDE_LABEL))
        .filter_map(|n| node_address(n))
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_address(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    let of = |kind: &str| {
        addresses
            .iter()
            .find(|a| a.type_ == kind)
            .map(|a| a.address.clone())
    };
    of("ExternalIP").or_else(|| of("InternalIP"))
}

/// The ingress `service` should have, or `None` when it is not this controller's.
pub fn wanted_ingress(service: &Service, addresses: &[String]) -> Option<Vec<String>> {
    let spec = service.spec.as_ref()?;
    if spec.load_balancer_class.is_some() {
        return None;
    }
    if spec.type_.as_deref() == Some("LoadBalancer") {
        Some(addresses.to_vec())
    } else if current_ingress(service).is_empty() {
        None
    } else {
        Some(Vec::new())
    }
}

fn current_ingress(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

async fn set_ingress(ctx: &Context, service: &Service, ips: &[String]) -> kube::Result<()> {
    let api: Api<Service> =
        Api::namespaced(ctx.client.clone(), &service.namespace().unwrap_or_default());
    let ingress: Vec<_> = ips
        .iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect();
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    match api
        .patch_status(
            &service.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, internal: &str, external: Option<&str>) -> Arc<Node> {
        let mut addresses = vec![json!({"type": "InternalIP", "address": internal})];
        if let Some(e) = external {
            addresses.push(json!({"type": "ExternalIP", "address": e}));
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"addresses": addresses,
                           "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn ready_nodes_serve_on_their_external_ip_else_their_internal_ip() {
        let nodes = [
            node("a", true, "192.168.0.2", None),
            node("b", true, "192.168.0.3", Some("203.0.113.3")),
            node("c", false, "192.168.0.4", None),
        ];
        assert_eq!(ingress_addresses(&nodes), ["192.168.0.2", "203.0.113.3"]);
    }

    #[test]
    fn load_balancers_get_the_addresses_others_lose_them_and_classes_are_skipped() {
        let addresses = vec!["192.168.0.2".to_string()];
        let lb: Service = serde_json::from_value(json!({
            "metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}}))
        .unwrap();
        assert_eq!(wanted_ingress(&lb, &addresses), Some(addresses.clone()));
        let was_lb: Service = serde_json::from_value(json!({
            "metadata": {"name": "x"}, "spec": {"type": "ClusterIP"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.0.2"}]}}}))
        .unwrap();
        assert_eq!(wanted_ingress(&was_lb, &addresses), Some(vec![]));
        let plain: Service = serde_json::from_value(json!({
            "metadata": {"name": "y"}, "spec": {"type": "ClusterIP"}}))
        .unwrap();
        assert_eq!(wanted_ingress(&plain, &addresses), None);
        let classed: Service = serde_json::from_value(json!({
            "metadata": {"name": "z"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}}))
        .unwrap();
        assert_eq!(wanted_ingress(&classed, &addresses), None);
    }
}
