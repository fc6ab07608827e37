//! A minimal OpenAPI v3 document per group/version: enough for kubectl to find a PATCH
//! operation per kind that takes `fieldValidation`, so it leaves validation to the
//! server (`--validate=strict`, the default). Full schemas are not served; kubectl then
//! computes strategic merge patches from its compiled-in types, as it does for
//! built-in kinds anyway.
//!
//! `/openapi/v2` is a Swagger 2.0 document without definitions. kubectl reads it for
//! one case: a `kind: List` file (what `kubectl get -o yaml` writes), whose kind no
//! v3 operation can carry, is validated on the client against v2 definitions; with none,
//! each item is left to the server, which gets it with `fieldValidation=Strict`.

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

/// The content type of `/openapi/v2` in protobuf (gnostic's `openapi_v2.Document`).
/// kubectl asks for `…spec.v2@v1.0+protobuf`, but Go's media-type parser rejects the
/// `@` in a response, so the answer uses the form kube-apiserver answers with.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const V2_TITLE: &str = "Kubernetes";
const V2_VERSION: &str = "v1.32.4";

/// `GET /openapi/v2` as JSON.
pub fn v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": V2_TITLE, "version": V2_VERSION}, "paths": {}})
}

/// `GET /openapi/v2` as protobuf: `swagger` (1), `info` (2: `title` 1, `version` 2) and
/// an empty `paths` (8).
pub fn v2_protobuf() -> Vec<u8> {
    let mut info = Vec::new();
    length_delimited(&mut info, 1, V2_TITLE.as_bytes());
    length_delimited(&mut info, 2, V2_VERSION.as_bytes());
    let mut doc = Vec::new();
    length_delimited(&mut doc, 1, b"2.0");
    length_delimited(&mut doc, 2, &info);
    length_delimited(&mut doc, 8, &[]);
    doc
}

fn length_delimited(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
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

    #[test]
    fn v2_protobuf_is_an_empty_swagger_document() {
        let doc = v2_protobuf();
        // swagger = "2.0"
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        // info { title, version }, then an empty paths message
        let info_len = 2 + V2_TITLE.len() + 2 + V2_VERSION.len();
        assert_eq!(&doc[5..7], &[0x12, info_len as u8]);
        assert_eq!(&doc[7..9], &[0x0a, V2_TITLE.len() as u8]);
        assert_eq!(&doc[doc.len() - 2..], &[0x42, 0]);
        assert_eq!(doc.len(), 5 + 2 + info_len + 2);
        assert_eq!(v2_json()["swagger"], "2.0");
    }

    #[test]
    fn varints_use_seven_bits_per_byte() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
