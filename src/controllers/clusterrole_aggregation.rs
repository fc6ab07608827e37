//! ClusterRole aggregation, as upstream's clusterrole-aggregation controller: a
//! ClusterRole with an `aggregationRule` gets as its `rules` the union of the rules of
//! every other ClusterRole that one of its `clusterRoleSelectors` matches, in the
//! order of those roles' names, without repeats. So a chart that adds a ClusterRole
//! labelled `rbac.authorization.k8s.io/aggregate-to-view: "true"` extends `view`.
//! Level-triggered: each pass recomputes every aggregated role and patches those that
//! differ.
//!
//! May call: the API (clusterroles: watch, patch).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Map, Value};

use super::{cache, Context};
use crate::model::selector::LabelSelector;

const TICK: Duration = Duration::from_millis(500);

pub async fn run(ctx: Arc<Context>) {
    let api = Api::<ClusterRole>::all(ctx.client.clone());
    let roles = cache(api.clone());
    let _ = roles.wait_until_ready().await;
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let all = roles.state();
        for role in &all {
            let Some(wanted) = aggregated_rules(role, &all) else {
                continue;
            };
            if role.rules.clone().unwrap_or_default() == wanted {
                continue;
            }
            let patch = json!({"rules": wanted});
            let result = api
                .patch(
                    &role.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
            if let Err(e) = result {
                tracing::debug!(role = %role.name_any(), error = %e, "aggregating a cluster role failed");
            }
        }
    }
}

fn labels_of(role: &ClusterRole) -> Map<String, Value> {
    role.labels()
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect()
}

/// The rules `role` should have, or `None` when it aggregates nothing.
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .as_ref()?;
    let selectors: Vec<LabelSelector> = selectors
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .filter_map(|s| LabelSelector::from_json(&s).ok())
        .collect();
    let mut sources: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|other| other.name_any() != role.name_any())
        .filter(|other| {
            let labels = labels_of(other);
            selectors.iter().any(|s| s.matches(Some(&labels)))
        })
        .collect();
    sources.sort_by_key(|r| r.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for source in sources {
        for rule in source.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(v: Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn an_aggregated_role_takes_the_rules_of_every_role_its_selectors_match() {
        let view = role(json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}}));
        let base = role(json!({"metadata": {"name": "system:aggregate-to-view",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}));
        let chart = role(json!({"metadata": {"name": "crontabs-view",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"verbs": ["get"], "apiGroups": ["stable.example.com"], "resources": ["crontabs"]},
                      {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}));
        let other = role(json!({"metadata": {"name": "other"},
            "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}));
        let all = vec![view.clone(), base, chart, other.clone()];
        let rules = aggregated_rules(&view, &all).unwrap();
        let resources: Vec<String> = rules
            .iter()
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect();
        // crontabs-view sorts before system:aggregate-to-view; the repeated rule once.
        assert_eq!(resources, ["crontabs", "pods"]);
        assert_eq!(aggregated_rules(&other, &all), None);
    }
}
