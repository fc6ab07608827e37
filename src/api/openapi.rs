//! The OpenAPI documents: `/openapi/v3` (a root listing one document per served
//! group/version) and `/openapi/v2`. Each v3 document carries the real schemas of its
//! kinds (`components.schemas`, from upstream's Kubernetes 1.32 definitions: see
//! [`schemas`]), so `kubectl explain` works, and a PATCH operation per kind that takes
//! `fieldValidation`, so kubectl leaves validation to the server (`--validate=strict`,
//! the default). No PATCH operation lists a request body: kubectl then computes
//! strategic merge patches from its compiled-in types, which is exact for built-in kinds.
//!
//! `/openapi/v2` is a Swagger 2.0 document with the definitions of every served kind,
//! in JSON or (the form kubectl asks for) protobuf. kubectl reads it for one case: a
//! `kind: List` file (what `kubectl get -o yaml` writes), whose kind no v3 operation
//! can carry, has its items validated on the client against these definitions, as
//! against kube-apiserver (kinds it finds none for are left to the server).
//!
//! Documents are built once, on first use, and kept serialized with their hashes (the
//! decoded definitions are dropped then: a few MB of JSON values a Pi need not hold).

mod schemas;
mod v2proto;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::resources::{in_group, Resource, GROUPS};
use schemas::Definitions;

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

/// An operation on a kind; `returns` is the definition its 200 answer carries.
fn operation(r: &Resource, action: &str, returns: Option<&str>) -> Value {
    let mut op = json!({
        "operationId": format!("{action}{}", r.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [parameter("dryRun"), parameter("fieldManager"), parameter("fieldValidation")],
        "responses": {"200": {"description": "OK"}},
    });
    if let Some(name) = returns {
        op["responses"]["200"]["content"] =
            json!({"application/json": {"schema": schemas::v3_ref(name)}});
    }
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

/// The definitions a group/version's document carries: its kinds, their lists, what
/// their subresources return, the metadata types, and everything those refer to.
fn definitions_of(defs: &Definitions, group: &str, version: &str) -> BTreeSet<String> {
    let mut roots: Vec<&str> = schemas::META.to_vec();
    for r in in_group(group).filter(|r| r.version == version) {
        roots.extend(defs.name_of(r.group, r.version, r.kind));
        roots.extend(defs.name_of(r.group, r.version, &r.list_kind()));
        for sub in r.subresources {
            roots.extend(defs.name_of(sub.group, sub.version, sub.kind));
        }
    }
    defs.closure(roots)
}

fn build_document(defs: &Definitions, group: &str, version: &str, prefix: &str) -> Value {
    let mut paths = Map::new();
    for r in in_group(group).filter(|r| r.version == version) {
        let kind = defs.name_of(r.group, r.version, r.kind);
        let list = defs.name_of(r.group, r.version, &r.list_kind());
        paths.insert(
            item_path(r, prefix),
            json!({"get": operation(r, "get", kind), "put": operation(r, "put", kind),
                   "patch": operation(r, "patch", kind), "delete": operation(r, "delete", None)}),
        );
        paths.insert(
            collection_path(r, prefix),
            json!({"post": operation(r, "post", kind), "get": operation(r, "list", list)}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": V2_VERSION},
        "paths": paths,
        "components": {"schemas": defs.v3_schemas(&definitions_of(defs, group, version))},
    })
}

/// A served document: its JSON text and the hash its URL carries.
pub struct Document {
    pub json: Vec<u8>,
    pub hash: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        let json = value.to_string().into_bytes();
        let digest = Sha256::digest(&json);
        let hash = hex::encode(&digest[..16]).to_uppercase();
        Document { json, hash }
    }
}

struct Documents {
    /// Every served group/version's v3 document by its path (`apis/apps/v1`).
    v3: BTreeMap<String, Document>,
    v2: Document,
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(|| {
    let defs = schemas::load();
    let mut v2_names = BTreeSet::new();
    let mut v3 = BTreeMap::new();
    for (group, version, path) in group_versions() {
        v2_names.extend(definitions_of(&defs, group, version));
        let doc = Document::new(&build_document(&defs, group, version, &path));
        v3.insert(path, doc);
    }
    let v2 = json!({"swagger": "2.0", "info": {"title": V2_TITLE, "version": V2_VERSION},
                    "paths": {}, "definitions": defs.v2_definitions(&v2_names)});
    Documents {
        v3,
        v2: Document::new(&v2),
    }
});

/// The v3 document for one group/version, or None if it is not served.
pub fn group_version_document(path: &str) -> Option<&'static Document> {
    DOCUMENTS.v3.get(path)
}

/// `GET /openapi/v3`: where each group/version document lives.
pub fn root() -> Value {
    let paths: Map<String, Value> = DOCUMENTS
        .v3
        .iter()
        .map(|(path, doc)| {
            let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
            (path.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// The content type of `/openapi/v2` in protobuf (gnostic's `openapi_v2.Document`).
/// kubectl asks for `…spec.v2@v1.0+protobuf`, but Go's media-type parser rejects the
/// `@` in a response, so the answer uses the form kube-apiserver answers with.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const V2_TITLE: &str = "Kubernetes";
const V2_VERSION: &str = "v1.32.4";

/// `GET /openapi/v2` as JSON.
pub fn v2_json() -> &'static Document {
    &DOCUMENTS.v2
}

/// `GET /openapi/v2` as protobuf: the JSON document re-encoded (see [`v2proto`]).
/// Built on each request and not kept: kubectl reads it rarely (for `kind: List`
/// files), and a Pi need not hold a second copy of every definition.
pub fn v2_protobuf() -> Vec<u8> {
    let doc: Value = serde_json::from_slice(&DOCUMENTS.v2.json).unwrap_or_default();
    v2proto::document(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_patch_declares_field_validation() {
        let doc = parsed("apis/apps/v1");
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

    fn parsed(path: &str) -> Value {
        serde_json::from_slice(&group_version_document(path).unwrap().json).unwrap()
    }

    /// Every `$ref` in a document names one of its own `components.schemas`.
    fn dangling_refs(doc: &Value) -> Vec<String> {
        fn walk(v: &Value, schemas: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    for (k, v) in map {
                        match (k.as_str(), v.as_str()) {
                            ("$ref", Some(r)) => {
                                let name = r.trim_start_matches("#/components/schemas/");
                                if schemas.get(name).is_none() {
                                    out.push(r.to_string());
                                }
                            }
                            _ => walk(v, schemas, out),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, schemas, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(doc, &doc["components"]["schemas"], &mut out);
        out
    }

    #[test]
    fn each_document_carries_the_schemas_of_its_kinds_and_all_they_refer_to() {
        for path in ["api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1"] {
            let doc = parsed(path);
            assert_eq!(dangling_refs(&doc), Vec::<String>::new(), "{path}");
        }
        let apps = parsed("apis/apps/v1");
        let schemas = &apps["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert_eq!(
            deployment["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(schemas["io.k8s.api.apps.v1.DeploymentList"].is_object());
        assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Status"].is_object());
        let rolling = &schemas["io.k8s.api.apps.v1.RollingUpdateDeployment"];
        assert!(rolling["properties"]["maxSurge"]["description"]
            .as_str()
            .unwrap()
            .contains("maximum number of pods"));
        let get = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["get"];
        assert_eq!(
            get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.Deployment"
        );
        // The core document does not carry apps types it never refers to.
        let core = parsed("api/v1");
        assert!(core["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_null());
        assert!(core["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object());
    }

    #[test]
    fn patch_operations_list_no_request_body_so_kubectl_uses_its_own_types() {
        for doc in DOCUMENTS.v3.values() {
            let doc: Value = serde_json::from_slice(&doc.json).unwrap();
            for item in doc["paths"].as_object().unwrap().values() {
                if let Some(patch) = item.get("patch") {
                    assert!(patch.get("requestBody").is_none());
                }
            }
        }
    }

    #[test]
    fn every_served_kind_has_its_upstream_schema() {
        let defs = schemas::load();
        for r in super::super::resources::RESOURCES {
            assert!(
                defs.name_of(r.group, r.version, r.kind).is_some(),
                "no schema for {} {}",
                r.api_version(),
                r.kind
            );
        }
    }

    #[test]
    fn the_root_hash_changes_with_the_document() {
        let root = root();
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.ends_with(&DOCUMENTS.v3["apis/apps/v1"].hash));
        assert_ne!(
            DOCUMENTS.v3["apis/apps/v1"].hash,
            DOCUMENTS.v3["api/v1"].hash
        );
    }

    #[test]
    fn v2_protobuf_carries_the_json_documents_definitions() {
        let v2: Value = serde_json::from_slice(&v2_json().json).unwrap();
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
        let doc = v2_protobuf();
        // swagger = "2.0" first, then info.
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        let text = String::from_utf8_lossy(&doc);
        assert!(text.contains("io.k8s.api.apps.v1.Deployment"));
        assert!(text.contains("x-kubernetes-group-version-kind"));
    }
}
