//! The labels the server sets on its own node: the control-plane role and those of
//! the server's `--node-label`s that NodeRestriction keeps a node from setting on
//! itself (`node-role.kubernetes.io/…`, other `kubernetes.io`/`k8s.io` labels outside
//! kubelet's set). As on k3s, they come from the server side: the in-process agent
//! registers the node with the labels a kubelet may set, and the server, as an API
//! client with admin rights, patches in the rest once the Node exists (at every
//! start; an admin removing them later is not undone until the next start).
//!
//! May call: the API (as a client), `api::authz::restriction` for the label rule.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::api::authz::restriction::kubelet_may_set_label;

pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// Splits the server's node labels into (the agent's, the server's): the agent keeps
/// what a node may set on itself; the server adds the control-plane role.
pub fn split_labels(
    labels: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (agent, mut server): (BTreeMap<_, _>, BTreeMap<_, _>) = labels
        .clone()
        .into_iter()
        .partition(|(k, _)| kubelet_may_set_label(k));
    server
        .entry(CONTROL_PLANE_LABEL.to_string())
        .or_insert_with(|| "true".to_string());
    (agent, server)
}

fn has_labels(node: &Node, wanted: &BTreeMap<String, String>) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Waits for the node to register, then sets `labels` on it; retries until done.
pub async fn label_when_registered(
    client: kube::Client,
    node: String,
    labels: BTreeMap<String, String>,
) {
    let api: Api<Node> = Api::all(client);
    let mut delay = Duration::from_millis(200);
    loop {
        match api.get_opt(&node).await {
            Ok(Some(current)) if has_labels(&current, &labels) => return,
            Ok(Some(_)) => {
                let patch = json!({"metadata": {"labels": labels}});
                match api
                    .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(%node, "labelled the server's node");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%node, error = %e, "labelling the server's node failed")
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%node, error = %e, "reading the server's node failed"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_sets_the_role_and_the_restricted_labels() {
        let given = BTreeMap::from([
            ("zone".to_string(), "a".to_string()),
            ("topology.kubernetes.io/zone".to_string(), "z1".to_string()),
            ("node-role.kubernetes.io/edge".to_string(), "".to_string()),
        ]);
        let (agent, server) = split_labels(&given);
        assert_eq!(
            agent.keys().collect::<Vec<_>>(),
            ["topology.kubernetes.io/zone", "zone"]
        );
        assert_eq!(
            server,
            BTreeMap::from([
                (CONTROL_PLANE_LABEL.to_string(), "true".to_string()),
                ("node-role.kubernetes.io/edge".to_string(), "".to_string()),
            ])
        );
    }
}
