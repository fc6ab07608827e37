//! The OpenAPI documents carry upstream's schemas of every served kind, so
//! `kubectl explain` works as against kube-apiserver: a kind, a nested field, list and
//! map types, `--recursive`, and a clear error for a field that does not exist. The
//! documents are checked on the wire too: every `$ref` resolves inside its document,
//! and `/openapi/v2` as JSON carries the definitions.
//! (The versioned kubectl binaries explain a Deployment field in kubectl_versions.rs.)

mod common;

use common::Server;
use serde_json::Value;

#[test]
fn kubectl_explain_shows_kinds_and_fields_from_upstream_schemas() {
    let server = Server::start();

    let pod = server.ok(&["explain", "pod"]);
    for expected in [
        "KIND:       Pod",
        "VERSION:    v1",
        "Pod is a collection of containers that can run on a host.",
        "spec\t<PodSpec>",
        "status\t<PodStatus>",
    ] {
        assert!(pod.contains(expected), "no {expected:?} in:\n{pod}");
    }

    let containers = server.ok(&["explain", "pods.spec.containers"]);
    for expected in [
        "FIELD: containers <[]Container>",
        "image\t<string>",
        "ports\t<[]ContainerPort>",
        "resources\t<ResourceRequirements>",
        "name\t<string> -required-",
    ] {
        assert!(
            containers.contains(expected),
            "no {expected:?} in:\n{containers}"
        );
    }

    let labels = server.ok(&["explain", "deployment.metadata.labels"]);
    assert!(
        labels.contains("FIELD: labels <map[string]string>"),
        "{labels}"
    );

    let recursive = server.ok(&["explain", "deployment.spec", "--recursive"]);
    for expected in [
        "strategy\t<DeploymentStrategy>",
        "rollingUpdate\t<RollingUpdateDeployment>",
        "maxSurge\t<string>",
    ] {
        assert!(
            recursive.contains(expected),
            "no {expected:?} in:\n{recursive}"
        );
    }

    let service_type = server.ok(&["explain", "service.spec.type"]);
    assert!(
        service_type.contains("ClusterIP") && service_type.contains("LoadBalancer"),
        "{service_type}"
    );

    let slice = server.ok(&["explain", "endpointslices.endpoints.conditions"]);
    assert!(slice.contains("ready\t<boolean>"), "{slice}");

    let missing = server.fails(&["explain", "deployment.spec.nothing"]);
    assert!(
        missing.contains("field \"nothing\" does not exist"),
        "{missing}"
    );
}

/// Every `$ref` in `doc` that does not name one of its `components.schemas`.
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
fn every_served_document_is_self_contained() {
    let server = Server::start();
    let root: Value = serde_json::from_str(&server.ok(&["get", "--raw", "/openapi/v3"])).unwrap();
    let paths = root["paths"].as_object().unwrap();
    assert!(paths.contains_key("api/v1") && paths.contains_key("apis/apps/v1"));
    for (path, entry) in paths {
        let url = entry["serverRelativeURL"].as_str().unwrap();
        let doc: Value = serde_json::from_str(&server.ok(&["get", "--raw", url])).unwrap();
        assert_eq!(doc["openapi"], "3.0.0", "{path}");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(!schemas.is_empty(), "{path} has no schemas");
        assert_eq!(dangling_refs(&doc), Vec::<String>::new(), "{path}");
    }

    let v2: Value = serde_json::from_str(&server.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    let deployment = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
}
