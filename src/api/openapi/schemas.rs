//! The schemas of the Kubernetes API types, as upstream's OpenAPI documents carry them:
//! the definitions of Kubernetes 1.32 (data, Apache-2.0), shipped gzip-compressed in
//! the binary (`definitions.json.gz`, made by `scripts/openapi-definitions.py`, which
//! records where they come from), decoded when the documents are built and then dropped.
//!
//! Owns: finding a kind's definition by its group/version/kind, the set of definitions
//! a document must carry (a kind and everything it refers to), and rewriting them into
//! the OpenAPI v3 (`#/components/schemas/`) or Swagger 2.0 (`#/definitions/`) form.
//! May call: nothing but serde_json and flate2.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use serde_json::{Map, Value};

const COMPRESSED: &[u8] = include_bytes!("definitions.json.gz");
const V2_REF: &str = "#/definitions/";
const V3_REF: &str = "#/components/schemas/";

/// Metadata types every group/version document carries, as upstream's do: the
/// answers to errors, deletes and watches.
pub const META: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
];

pub struct Definitions {
    /// Definition name (`io.k8s.api.apps.v1.Deployment`) → Swagger 2.0 schema.
    by_name: Map<String, Value>,
    /// (group, version, kind) → definition name.
    by_kind: HashMap<(String, String, String), String>,
}

/// The shipped definitions. Decoding them cannot fail on data that passed the unit
/// tests; a corrupt build panics rather than serving wrong schemas.
pub fn load() -> Definitions {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(COMPRESSED)
        .read_to_end(&mut json)
        .expect("the shipped OpenAPI definitions are gzip data");
    let mut doc: Value =
        serde_json::from_slice(&json).expect("the shipped OpenAPI definitions are JSON");
    let by_name = match doc["definitions"].take() {
        Value::Object(map) => map,
        _ => panic!("the shipped OpenAPI definitions lack `definitions`"),
    };
    Definitions::new(by_name)
}

impl Definitions {
    fn new(by_name: Map<String, Value>) -> Definitions {
        let mut by_kind = HashMap::new();
        for (name, schema) in &by_name {
            let gvks = schema["x-kubernetes-group-version-kind"].as_array();
            for gvk in gvks.into_iter().flatten() {
                let field = |f: &str| gvk[f].as_str().unwrap_or_default().to_string();
                by_kind
                    .entry((field("group"), field("version"), field("kind")))
                    .or_insert_with(|| name.clone());
            }
        }
        Definitions { by_name, by_kind }
    }

    /// The definition name of a kind, if upstream has one.
    pub fn name_of(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.by_kind
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .map(String::as_str)
    }

    /// `roots` and every definition they refer to, directly or not.
    pub fn closure<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = roots.into_iter().map(str::to_string).collect();
        while let Some(name) = todo.pop() {
            let Some(schema) = self.by_name.get(&name) else {
                continue;
            };
            if seen.insert(name) {
                collect_refs(schema, &mut todo);
            }
        }
        seen
    }

    /// The named definitions in OpenAPI v3 form, for `components.schemas`.
    pub fn v3_schemas(&self, names: &BTreeSet<String>) -> BTreeMap<String, Value> {
        names
            .iter()
            .filter_map(|n| Some((n.clone(), to_v3(self.by_name.get(n)?))))
            .collect()
    }

    /// Every definition in Swagger 2.0 form (as stored), for `/openapi/v2`.
    pub fn v2_definitions(&self, names: &BTreeSet<String>) -> BTreeMap<String, Value> {
        names
            .iter()
            .filter_map(|n| Some((n.clone(), self.by_name.get(n)?.clone())))
            .collect()
    }
}

/// The reference a v3 document uses for a definition.
pub fn v3_ref(name: &str) -> Value {
    serde_json::json!({ "$ref": format!("{V3_REF}{name}") })
}

fn collect_refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(V2_REF) {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Swagger 2.0 → OpenAPI v3, as kube-apiserver writes its v3 documents: refs point
/// into `components.schemas`, and a ref with siblings (a field's description) is
/// wrapped in `allOf`, since v3.0 ignores a `$ref`'s siblings.
fn to_v3(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let value = match (key.as_str(), value) {
                    ("$ref", Value::String(r)) => Value::String(r.replacen(V2_REF, V3_REF, 1)),
                    _ => to_v3(value),
                };
                out.insert(key.clone(), value);
            }
            match out.remove("$ref") {
                Some(reference) if !out.is_empty() => {
                    out.insert(
                        "allOf".into(),
                        Value::Array(vec![serde_json::json!({ "$ref": reference })]),
                    );
                    Value::Object(out)
                }
                Some(reference) => serde_json::json!({ "$ref": reference }),
                None => Value::Object(out),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static DEFINITIONS: std::sync::LazyLock<Definitions> = std::sync::LazyLock::new(load);

    #[test]
    fn every_upstream_kind_is_found_by_its_group_version_kind() {
        let defs = &*DEFINITIONS;
        assert_eq!(
            defs.name_of("apps", "v1", "Deployment"),
            Some("io.k8s.api.apps.v1.Deployment")
        );
        assert_eq!(
            defs.name_of("", "v1", "Pod"),
            Some("io.k8s.api.core.v1.Pod")
        );
        assert_eq!(
            defs.name_of("batch", "v1", "CronJob"),
            Some("io.k8s.api.batch.v1.CronJob")
        );
        assert_eq!(defs.name_of("apps", "v1", "Nothing"), None);
        assert!(defs.by_name.len() > 600, "{}", defs.by_name.len());
    }

    #[test]
    fn a_closure_follows_refs_through_fields_items_and_maps() {
        let names = DEFINITIONS.closure(["io.k8s.api.apps.v1.Deployment"]);
        for needed in [
            "io.k8s.api.apps.v1.DeploymentSpec",
            "io.k8s.api.apps.v1.RollingUpdateDeployment",
            "io.k8s.api.core.v1.Container",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            "io.k8s.apimachinery.pkg.api.resource.Quantity",
        ] {
            assert!(names.contains(needed), "{needed} missing");
        }
        assert!(!names.contains("io.k8s.api.batch.v1.Job"));
        // Every ref in the closure resolves inside it.
        let mut refs = Vec::new();
        for n in &names {
            collect_refs(&DEFINITIONS.by_name[n], &mut refs);
        }
        assert!(refs.iter().all(|r| names.contains(r)));
    }

    #[test]
    fn shipped_definitions_are_in_upstream_swagger_form() {
        let defs = &DEFINITIONS.by_name;
        let deployment = &defs["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(deployment["type"], "object");
        assert_eq!(deployment["properties"]["kind"]["type"], "string");
        assert!(deployment["properties"]["kind"].get("enum").is_none());
        assert_eq!(
            deployment["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let int_or_string = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(int_or_string["format"], "int-or-string");
        let ports = &defs["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(ports["type"], "array");
    }

    #[test]
    fn v3_form_wraps_described_refs_in_all_of() {
        let v2 = json!({"type": "object", "properties": {
            "spec": {"$ref": "#/definitions/a.Spec", "description": "the spec"},
            "items": {"type": "array", "items": {"$ref": "#/definitions/a.Item"}},
        }});
        let v3 = to_v3(&v2);
        assert_eq!(
            v3["properties"]["spec"],
            json!({"allOf": [{"$ref": "#/components/schemas/a.Spec"}], "description": "the spec"})
        );
        assert_eq!(
            v3["properties"]["items"]["items"],
            json!({"$ref": "#/components/schemas/a.Item"})
        );
    }
}
