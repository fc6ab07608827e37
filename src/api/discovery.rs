//! Discovery: the aggregated documents (`apidiscovery.k8s.io/v2` and `v2beta1`) kubectl
//! asks for first, and the legacy `APIVersions` / `APIGroupList` / `APIResourceList` forms.
//!
//! `GET /api` and `GET /apis` answer in the form the `Accept` header picks
//! ([`negotiate`]): kubectl 1.27–1.29 accept only `v2beta1` (then plain JSON), 1.30+
//! list `v2` first, then `v2beta1`. The two aggregated versions have the same JSON
//! shape and differ only in `apiVersion` and the Content-Type profile. Protobuf
//! discovery is never served: a protobuf media range is skipped, so the client gets
//! the best JSON form it also listed (kubectl itself never asks for protobuf here).

use serde_json::{json, Value};

use super::resources::{in_group, Resource, GROUPS, VERBS};

/// The aggregated discovery versions skiff serves, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatedVersion {
    V2,
    V2beta1,
}

impl AggregatedVersion {
    fn from_param(v: &str) -> Option<Self> {
        match v {
            "v2" => Some(Self::V2),
            "v2beta1" => Some(Self::V2beta1),
            _ => None,
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::V2 => "apidiscovery.k8s.io/v2",
            Self::V2beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    /// The response Content-Type: kubectl reads the document as aggregated only when
    /// these profile parameters name a version it knows.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            Self::V2beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// What `GET /api` and `GET /apis` can answer in, for the 406 message.
pub const SERVED_MEDIA_TYPES: [&str; 3] = [
    "application/json",
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
];

/// Which document `GET /api` or `GET /apis` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryForm {
    Aggregated(AggregatedVersion),
    /// `APIVersions` / `APIGroupList` as plain `application/json`.
    Legacy,
}

/// Picks the discovery form from an `Accept` header: the servable media range with
/// the highest q wins, ties going to the one listed first; q=0 excludes a range.
/// `None` when the client listed nothing skiff can serve (answer 406). A missing or
/// empty header means legacy JSON, as on kube-apiserver.
pub fn negotiate(accept: &str) -> Option<DiscoveryForm> {
    if accept.trim().is_empty() {
        return Some(DiscoveryForm::Legacy);
    }
    let mut best: Option<(f32, DiscoveryForm)> = None;
    for range in accept.split(',') {
        let Some((q, form)) = servable_range(range) else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, form));
        }
    }
    best.map(|(_, form)| form)
}

/// One media range (`type/subtype;k=v;...;q=0.5`): its q and the form it asks for,
/// or `None` when skiff cannot serve it (protobuf, YAML, an unknown profile).
fn servable_range(range: &str) -> Option<(f32, DiscoveryForm)> {
    let mut parts = range.split(';');
    let media_type = parts.next()?.trim().to_ascii_lowercase();
    let (mut q, mut group, mut version, mut as_kind) = (1.0_f32, None, None, None);
    for param in parts {
        let (key, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "q" => {
                q = value
                    .parse()
                    .ok()
                    .filter(|q: &f32| (0.0..=1.0).contains(q))?
            }
            "g" => group = Some(value),
            "v" => version = Some(value),
            "as" => as_kind = Some(value),
            _ => {}
        }
    }
    let json = matches!(
        media_type.as_str(),
        "application/json" | "application/*" | "*/*"
    );
    if !json {
        return None;
    }
    let form = match (group, version, as_kind) {
        (None, None, None) => DiscoveryForm::Legacy,
        (Some("apidiscovery.k8s.io"), Some(v), Some("APIGroupDiscoveryList")) => {
            DiscoveryForm::Aggregated(AggregatedVersion::from_param(v)?)
        }
        _ => return None,
    };
    Some((q, form))
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

fn discovery_list(version: AggregatedVersion, items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": version.api_version(),
        "metadata": {},
        "items": items,
    })
}

/// `GET /api` in the aggregated form.
pub fn aggregated_core(version: AggregatedVersion) -> Value {
    discovery_list(version, vec![aggregated_group("", "v1")])
}

/// `GET /apis` in the aggregated form.
pub fn aggregated_groups(version: AggregatedVersion) -> Value {
    discovery_list(
        version,
        GROUPS.iter().map(|(g, v)| aggregated_group(g, v)).collect(),
    )
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
        let core = aggregated_core(AggregatedVersion::V2);
        let pods = &core["items"][0]["versions"][0]["resources"][0];
        assert_eq!(pods["resource"], "pods");
        assert_eq!(pods["responseKind"]["kind"], "Pod");
        assert_eq!(pods["shortNames"][0], "po");
        let apps = aggregated_groups(AggregatedVersion::V2);
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

    #[test]
    fn v2beta1_document_differs_from_v2_only_in_api_version() {
        let mut v2 = aggregated_groups(AggregatedVersion::V2);
        let mut beta = aggregated_groups(AggregatedVersion::V2beta1);
        assert_eq!(v2["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(beta["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        v2["apiVersion"] = Value::Null;
        beta["apiVersion"] = Value::Null;
        assert_eq!(v2, beta);
        assert_eq!(
            aggregated_core(AggregatedVersion::V2beta1)["apiVersion"],
            "apidiscovery.k8s.io/v2beta1"
        );
    }

    /// Sent by kubectl 1.27.16, 1.28.15 and 1.29.14 on `GET /api` and `GET /apis`.
    const KUBECTL_1_27_TO_1_29: &str =
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    /// Sent by kubectl 1.30.13, 1.31.9, 1.32.5 and 1.33.1.
    const KUBECTL_1_30_ON: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    const V2: Option<DiscoveryForm> = Some(DiscoveryForm::Aggregated(AggregatedVersion::V2));
    const V2BETA1: Option<DiscoveryForm> =
        Some(DiscoveryForm::Aggregated(AggregatedVersion::V2beta1));
    const LEGACY: Option<DiscoveryForm> = Some(DiscoveryForm::Legacy);

    #[test]
    fn kubectl_1_27_to_1_29_get_v2beta1() {
        assert_eq!(negotiate(KUBECTL_1_27_TO_1_29), V2BETA1);
    }

    #[test]
    fn kubectl_1_30_and_later_get_v2() {
        assert_eq!(negotiate(KUBECTL_1_30_ON), V2);
    }

    #[test]
    fn plain_json_wildcards_and_no_header_get_legacy() {
        assert_eq!(negotiate("application/json"), LEGACY);
        assert_eq!(negotiate("*/*"), LEGACY);
        assert_eq!(negotiate("application/*"), LEGACY);
        assert_eq!(negotiate(""), LEGACY);
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf, */*"),
            LEGACY
        );
        assert_eq!(
            negotiate("text/html,application/xhtml+xml,*/*;q=0.8"),
            LEGACY
        );
    }

    #[test]
    fn highest_q_wins_and_ties_go_to_the_first_listed() {
        let beta_preferred = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5, application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList;q=0.9";
        assert_eq!(negotiate(beta_preferred), V2BETA1);
        let legacy_preferred =
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5, application/json";
        assert_eq!(negotiate(legacy_preferred), LEGACY);
        let tie = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList;q=0.7, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.7";
        assert_eq!(negotiate(tie), V2BETA1);
    }

    #[test]
    fn q_zero_excludes_a_range() {
        let excluded =
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0,application/json";
        assert_eq!(negotiate(excluded), LEGACY);
        assert_eq!(negotiate("application/json;q=0"), None);
    }

    #[test]
    fn protobuf_ranges_are_skipped_for_the_next_json_one() {
        let proto_first = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(proto_first), V2BETA1);
        let proto_only =
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        assert_eq!(negotiate(proto_only), None);
    }

    #[test]
    fn spaces_case_and_quotes_are_tolerated() {
        let spaced = " Application/JSON ; g=apidiscovery.k8s.io ; v=\"v2beta1\" ; as=APIGroupDiscoveryList , application/json";
        assert_eq!(negotiate(spaced), V2BETA1);
    }

    #[test]
    fn unknown_profiles_and_types_are_not_servable() {
        let v1 = "application/json;g=apidiscovery.k8s.io;v=v1;as=APIGroupDiscoveryList";
        assert_eq!(negotiate(v1), None);
        assert_eq!(
            negotiate("application/json;as=Table;g=meta.k8s.io;v=v1"),
            None
        );
        assert_eq!(negotiate("application/yaml"), None);
        assert_eq!(negotiate("application/json;q=abc"), None);
    }
}
