//! RBAC's escalation prevention, as kube-apiserver enforces it on writes of RBAC
//! objects: a caller may create or change a Role or ClusterRole only with rules it
//! holds itself (or the `escalate` verb on it), and a RoleBinding or
//! ClusterRoleBinding only to a role whose rules it holds (or the `bind` verb on that
//! role). A ClusterRole that aggregates others needs `escalate` or every permission.
//! Masters hold everything.
//!
//! Owns: the coverage check. May call: [`super::rbac`].

use serde_json::Value;

use super::rbac::{self, Rule, User};
use super::{is_master, Attributes};
use crate::api::resources::{Resource, RBAC_GROUP};
use crate::api::status::ApiError;
use crate::api::SharedState;
use crate::pki::Identity;

/// Admits a new or changed RBAC object (`obj` after defaulting).
pub async fn admit(
    state: &SharedState,
    identity: Option<&Identity>,
    resource: &Resource,
    obj: &Value,
) -> Result<(), ApiError> {
    let Some(identity) = identity.filter(|i| !is_master(i)) else {
        return Ok(());
    };
    if resource.group != RBAC_GROUP {
        return Ok(());
    }
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let user = User::from_identity(identity);
    let may = |verb: &'static str, plural: &str, name: &str| Attributes {
        verb,
        group: RBAC_GROUP.into(),
        resource: plural.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    };
    let allowed = |attrs: Attributes| async move {
        let request = rbac::Request::Resource(&attrs);
        state.rbac.allows(&state.store, &user, &request).await
    };
    let policy = state.rbac.current(&state.store).await;
    let held: Vec<Rule> = policy
        .rules_for(&User::from_identity(identity), namespace)
        .into_iter()
        .cloned()
        .collect();
    let (wanted, what) = match resource.kind {
        "Role" | "ClusterRole" => {
            if allowed(may("escalate", resource.plural, name)).await {
                return Ok(());
            }
            let mut wanted: Vec<Rule> = rules(obj);
            if obj["aggregationRule"]["clusterRoleSelectors"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                wanted.push(Rule {
                    verbs: vec!["*".into()],
                    api_groups: vec!["*".into()],
                    resources: vec!["*".into()],
                    ..Default::default()
                });
            }
            (wanted, "grant")
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_kind = obj["roleRef"]["kind"].as_str().unwrap_or_default();
            let role_name = obj["roleRef"]["name"].as_str().unwrap_or_default();
            let plural = if role_kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if allowed(may("bind", plural, role_name)).await {
                return Ok(());
            }
            (policy.role_rules(role_kind, role_name, namespace), "grant")
        }
        _ => return Ok(()),
    };
    let missing: Vec<String> = wanted
        .iter()
        .flat_map(atoms)
        .filter(|atom| !held.iter().any(|h| holds(h, atom)))
        .map(|atom| atom.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let qualified = format!("{}.{RBAC_GROUP}", resource.plural);
    let groups: Vec<String> = identity.groups.iter().map(|g| format!("{g:?}")).collect();
    Err(ApiError::forbidden(format!(
        "{qualified} \"{name}\" is forbidden: user \"{}\" (groups=[{}]) is attempting to {what} RBAC permissions not currently held:\n{}",
        identity.user,
        groups.join(" "),
        missing.join("\n")
    )))
}

fn rules(obj: &Value) -> Vec<Rule> {
    serde_json::from_value(obj["rules"].clone()).unwrap_or_default()
}

/// One verb on one thing a rule grants.
#[derive(Debug, PartialEq)]
enum Atom {
    Resource {
        verb: String,
        group: String,
        resource: String,
        name: Option<String>,
    },
    Path {
        verb: String,
        url: String,
    },
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Atom::Resource {
                verb,
                group,
                resource,
                name,
            } => {
                write!(f, "{{APIGroups:[{group:?}], Resources:[{resource:?}]")?;
                if let Some(n) = name {
                    write!(f, ", ResourceNames:[{n:?}]")?;
                }
                write!(f, ", Verbs:[{verb:?}]}}")
            }
            Atom::Path { verb, url } => {
                write!(f, "{{NonResourceURLs:[{url:?}], Verbs:[{verb:?}]}}")
            }
        }
    }
}

/// A rule broken into single grants (upstream's BreakdownRule).
fn atoms(rule: &Rule) -> Vec<Atom> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for url in &rule.non_resource_urls {
            out.push(Atom::Path {
                verb: verb.clone(),
                url: url.clone(),
            });
        }
        for group in &rule.api_groups {
            for resource in &rule.resources {
                let names: Vec<Option<String>> = if rule.resource_names.is_empty() {
                    vec![None]
                } else {
                    rule.resource_names.iter().cloned().map(Some).collect()
                };
                for name in names {
                    out.push(Atom::Resource {
                        verb: verb.clone(),
                        group: group.clone(),
                        resource: resource.clone(),
                        name,
                    });
                }
            }
        }
    }
    out
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

fn holds_resource(held: &[String], wanted: &str) -> bool {
    held.iter().any(|h| {
        if h == "*" || h == wanted {
            return true;
        }
        let Some((resource, sub)) = wanted.split_once('/') else {
            return false;
        };
        *h == format!("{resource}/*") || *h == format!("*/{sub}")
    })
}

/// Whether the held rule grants the wanted atom (upstream's ruleCovers).
fn holds(held: &Rule, atom: &Atom) -> bool {
    match atom {
        Atom::Resource {
            verb,
            group,
            resource,
            name,
        } => {
            has(&held.verbs, verb)
                && has(&held.api_groups, group)
                && holds_resource(&held.resources, resource)
                && (held.resource_names.is_empty()
                    || name
                        .as_ref()
                        .is_some_and(|n| held.resource_names.contains(n)))
        }
        Atom::Path { verb, url } => {
            has(&held.verbs, verb)
                && held.non_resource_urls.iter().any(|h| {
                    h == "*" || h == url || h.strip_suffix('*').is_some_and(|p| url.starts_with(p))
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Rule {
        serde_json::from_value(v).unwrap()
    }

    fn covered(held: &[Rule], wanted: &Rule) -> bool {
        atoms(wanted)
            .iter()
            .all(|a| held.iter().any(|h| holds(h, a)))
    }

    #[test]
    fn a_rule_is_covered_only_by_rules_that_grant_all_of_it() {
        let held = vec![rule(
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/*"]}),
        )];
        assert!(covered(
            &held,
            &rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "pods/log"]}))
        ));
        assert!(!covered(
            &held,
            &rule(json!({"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}))
        ));
        assert!(!covered(
            &held,
            &rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}))
        ));
        // A wanted wildcard is covered only by a held wildcard.
        assert!(!covered(
            &held,
            &rule(json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}))
        ));
        let named = vec![rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
        )];
        assert!(covered(
            &named,
            &rule(
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]})
            )
        ));
        assert!(!covered(
            &named,
            &rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}))
        ));
        let admin = vec![rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
        )];
        assert!(covered(
            &admin,
            &rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}))
        ));
        assert!(!covered(
            &admin,
            &rule(json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}))
        ));
    }

    #[test]
    fn missing_grants_read_like_upstream() {
        let a = &atoms(&rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}),
        ))[0];
        assert_eq!(
            a.to_string(),
            r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#
        );
    }
}
