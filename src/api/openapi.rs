//! A minimal OpenAPI v3 document per group/version: enough for kubectl to find a PATCH
//! operation per kind that takes `fieldValidation`, so it leaves validation to the
//! server (`--validate=strict`, the default). Full schemas are not served; kubectl then
//! computes strategic merge patches from its compiled-in types, as it does for
//! built-in kinds anyway.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::resources::{in_group, Resource, GROUPS};

/// Every served group/version as OpenAPI names it: `api/v1`, `apis/apps/v1`.
fn group_versions() -> Vec<(&'static str, &'static str, String)> {
    let mut all = vec![("", "v1", "api/v1".to_string())];
    for (g, v) in GROUPS {
        all.push((g, v, format!("apis/{g}/{v}")));
    }
    all
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, action: &str) -> Value {
    let mut op = json!({
        "operationId": format!("{action}{}", r.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [parameter("dryRun"), parameter("fieldManager"), parameter("fieldValidation")],
        "responses": {"200": {"description": "OK"}},
    });
    if action == "patch" {
        op["parameters"]
            .as_array_mut()
            .expect("parameters is a list")
            .push(parameter("force"));
    }
    op
}

fn item_path(r: &Resource, prefix: &str) -> String {
    if r.namespaced {
        format!("/{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
    } else {
        format!("/{prefix}/{}/{{name}}", r.plural)
    }
}

fn collection_path(r: &Resource, prefix: &str) -> String {
    if r.namespaced {
        format!("/{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("/{prefix}/{}", r.plural)
    }
}

/// The document for one group/version, or None if it is not served.
pub fn group_version_document(path: &str) -> Option<Value> {
    let (group, version, prefix) = group_versions().into_iter().find(|(_, _, p)| p == path)?;
    let mut paths = Map::new();
    for r in in_group(group).filter(|r| r.version == version) {
        paths.insert(
            item_path(r, &prefix),
            json!({"get": operation(r, "get"), "put": operation(r, "put"),
                   "patch": operation(r, "patch"), "delete": operation(r, "delete")}),
        );
        paths.insert(
            collection_path(r, &prefix),
            json!({"post": operation(r, "post"), "get": operation(r, "list")}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.4"},
        "paths": paths,
    }))
}

fn hash_of(doc: &Value) -> String {
    let digest = Sha256::digest(doc.to_string().as_bytes());
    hex::encode(&digest[..16]).to_uppercase()
}

/// `GET /openapi/v3`: where each group/version document lives.
pub fn root() -> Value {
    let mut paths = Map::new();
    for (_, _, path) in group_versions() {
        if let Some(doc) = group_version_document(&path) {
            let url = format!("/openapi/v3/{path}?hash={}", hash_of(&doc));
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_patch_declares_field_validation() {
        let doc = group_version_document("apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(root()["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash="));
    }
}
