//! Discovery: the aggregated documents (`apidiscovery.k8s.io/v2`) kubectl asks for
//! first, and the legacy `APIVersions` / `APIGroupList` / `APIResourceList` forms.

use serde_json::{json, Value};

use super::resources::{in_group, Resource, GROUPS, VERBS};

pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts the aggregated form (kubectl always lists it first).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2")
}

fn aggregated_resource(r: &Resource) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                "verbs": s.verbs,
            })
        })
        .collect();
    let mut resource = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        resource["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        resource["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        resource["subresources"] = Value::Array(subresources);
    }
    resource
}

fn aggregated_group(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = in_group(group).map(aggregated_resource).collect();
    json!({
        "metadata": {"name": group},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

fn discovery_list(items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `GET /api` in the aggregated form.
pub fn aggregated_core() -> Value {
    discovery_list(vec![aggregated_group("", "v1")])
}

/// `GET /apis` in the aggregated form.
pub fn aggregated_groups() -> Value {
    discovery_list(GROUPS.iter().map(|(g, v)| aggregated_group(g, v)).collect())
}

/// `GET /api` in the legacy form.
pub fn legacy_core(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_version(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

/// `GET /apis` in the legacy form.
pub fn legacy_groups() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(g, v)| {
            json!({"name": g, "versions": [group_version(g, v)], "preferredVersion": group_version(g, v)})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>` in the legacy form.
pub fn legacy_group(group: &str) -> Option<Value> {
    let (g, v) = GROUPS.iter().find(|(g, _)| *g == group)?;
    Some(json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": g,
        "versions": [group_version(g, v)], "preferredVersion": group_version(g, v),
    }))
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let known = group.is_empty() && version == "v1"
        || GROUPS.iter().any(|(g, v)| *g == group && *v == version);
    if !known {
        return None;
    }
    let mut resources = Vec::new();
    for r in in_group(group) {
        let mut entry = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name), "singularName": "",
                "namespaced": r.namespaced, "kind": s.kind, "verbs": s.verbs,
            });
            if s.group != r.group {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            resources.push(sub);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": group_version, "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_lists_pods_with_short_names_and_scale() {
        let core = aggregated_core();
        let pods = &core["items"][0]["versions"][0]["resources"][0];
        assert_eq!(pods["resource"], "pods");
        assert_eq!(pods["responseKind"]["kind"], "Pod");
        assert_eq!(pods["shortNames"][0], "po");
        let apps = aggregated_groups();
        let deployments = &apps["items"][0]["versions"][0]["resources"][0];
        assert_eq!(deployments["resource"], "deployments");
        let subs = deployments["subresources"].as_array().unwrap();
        assert!(subs
            .iter()
            .any(|s| s["subresource"] == "scale" && s["responseKind"]["group"] == "autoscaling"));
    }

    #[test]
    fn legacy_lists_cover_every_group() {
        assert!(resource_list("apps", "v1").is_some());
        assert!(resource_list("apps", "v2").is_none());
        assert_eq!(
            legacy_groups()["groups"].as_array().unwrap().len(),
            GROUPS.len()
        );
    }
}
