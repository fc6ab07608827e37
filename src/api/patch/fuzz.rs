//! Fuzz-style test: many generated patches of every type (JSON patch, merge,
//! strategic merge, apply) against every served kind, through the real router and a
//! real SQLite store. No handler may panic; every answer is a success or a Status.
//! Deterministic (seeded), a few seconds in CI.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::api::alloc::Cidr;
use crate::api::auth::{Identity, PeerIdentity};
use crate::api::resources::{Resource, RESOURCES};
use crate::api::{bootstrap, router, ApiConfig, ApiState};
use crate::store::{SqliteOptions, SqliteStore, Store};

const PATCHES_PER_TYPE: usize = 30;

struct Api {
    router: Router,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(SqliteOptions {
                path: dir.path().join("state.db"),
            })
            .unwrap(),
        );
        let state = ApiState::new(
            store,
            ApiConfig {
                service_cidr: Cidr {
                    network: [10, 43, 0, 0].into(),
                    prefix: 16,
                },
                advertise_address: "127.0.0.1:6443".into(),
                join_secret: "secret".into(),
            },
            None,
        );
        let router = router(state.clone());
        let endpoint = bootstrap::ApiEndpoint {
            service_ip: [10, 43, 0, 1].into(),
            address: [127, 0, 0, 1].into(),
            port: 6443,
        };
        bootstrap::ensure_defaults(&router, &endpoint)
            .await
            .unwrap();
        state.set_ready();
        Api { router, _dir: dir }
    }

    async fn call(&self, method: Method, uri: &str, content_type: &str, body: String) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        request.extensions_mut().insert(PeerIdentity(Some(Identity {
            user: "fuzz".into(),
            groups: vec!["system:masters".into()],
        })));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let code = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap();
        Answer {
            code,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

struct Answer {
    code: u16,
    body: Value,
}

fn item_uri(resource: &Resource, name: &str) -> String {
    let root = if resource.group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    if resource.namespaced {
        format!("{root}/namespaces/default/{}/{name}", resource.plural)
    } else {
        format!("{root}/{}/{name}", resource.plural)
    }
}

fn collection_uri(resource: &Resource) -> String {
    let item = item_uri(resource, "");
    item.trim_end_matches('/').to_string()
}

/// A valid object of each kind skiff serves (others get a bare one).
fn seed(resource: &Resource, name: &str) -> Value {
    let template = json!({"metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh"],
            "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]}]}});
    let mut obj = match resource.kind {
        "Pod" => json!({"spec": template["spec"]}),
        "Deployment" | "ReplicaSet" => json!({"spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": name}}, "template": template}}),
        "Job" => json!({"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": template["spec"]["containers"]}}}}),
        "CronJob" => json!({"spec": {"schedule": "0 0 1 1 *", "suspend": true,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": template["spec"]["containers"]}}}}}}),
        "DaemonSet" => json!({"spec": {"selector": {"matchLabels": {"app": name}},
            "template": template}}),
        "ControllerRevision" => json!({"data": {"spec": {"template": template}}, "revision": 1}),
        "Service" => json!({"spec": {"ports": [{"port": 80}], "selector": {"app": name}}}),
        "ConfigMap" | "Secret" => json!({"data": {"a": "YQ=="}}),
        "Node" => json!({"spec": {"podCIDR": "10.42.9.0/24"}}),
        "Lease" => json!({"spec": {"holderIdentity": "x", "leaseDurationSeconds": 40}}),
        "Event" => json!({"involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "R", "message": "m", "type": "Normal",
            "reportingController": "c", "action": "a", "regarding": {"kind": "Pod", "name": "p"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingInstance": "i", "note": "n"}),
        "Endpoints" => {
            json!({"subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80}]}]})
        }
        "EndpointSlice" => {
            json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.5"]}]})
        }
        _ => json!({}),
    };
    obj["apiVersion"] = json!(resource.api_version());
    obj["kind"] = json!(resource.kind);
    obj["metadata"]["name"] = json!(name);
    obj["metadata"]["labels"] = json!({"app": name});
    obj
}

/// Every JSON pointer into `v` (the root included).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
            out.push(format!("{at}/-"));
        }
        _ => {}
    }
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    let choice = if depth > 2 {
        rng.random_range(0..5)
    } else {
        rng.random_range(0..8)
    };
    match choice {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-5i64..100_000)),
        3 => json!(
            [
                "",
                "x",
                "busybox",
                "-1",
                "$patch",
                "replace",
                "delete",
                "10.42.0.1"
            ][rng.random_range(0..8)]
        ),
        4 => json!(1.5),
        5 | 6 => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(0..4) {
                let key = [
                    "name",
                    "image",
                    "$patch",
                    "metadata",
                    "spec",
                    "command",
                    "ports",
                    "resourceVersion",
                    "nodeName",
                    "containers",
                    "$retainKeys",
                    "labels",
                ][rng.random_range(0..12)];
                m.insert(key.into(), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
        _ => Value::Array(
            (0..rng.random_range(0..3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
    }
}

/// A patch shaped like the object: existing paths with random values.
fn random_shaped(rng: &mut StdRng, obj: &Value, depth: u32) -> Value {
    match obj {
        Value::Object(m) if depth < 6 && rng.random_bool(0.8) => {
            let mut patch = serde_json::Map::new();
            for (k, v) in m {
                if rng.random_bool(0.4) {
                    patch.insert(k.clone(), random_shaped(rng, v, depth + 1));
                }
            }
            if rng.random_bool(0.2) {
                patch.insert("$patch".into(), random_value(rng, 3));
            }
            Value::Object(patch)
        }
        Value::Array(items) if depth < 6 && rng.random_bool(0.7) => {
            let mut patch: Vec<Value> = items
                .iter()
                .map(|i| random_shaped(rng, i, depth + 1))
                .collect();
            if rng.random_bool(0.3) {
                patch.push(random_value(rng, 2));
            }
            Value::Array(patch)
        }
        _ => random_value(rng, depth),
    }
}

fn random_json_patch(rng: &mut StdRng, obj: &Value) -> Value {
    let mut paths = Vec::new();
    pointers(obj, String::new(), &mut paths);
    paths.push("/nope/deeper".into());
    paths.push("/metadata/annotations/x".into());
    let ops = ["add", "remove", "replace", "move", "copy", "test", "bogus"];
    let count = rng.random_range(1..5);
    let operations: Vec<Value> = (0..count)
        .map(|_| {
            let op = ops[rng.random_range(0..ops.len())];
            let path = &paths[rng.random_range(0..paths.len())];
            let from = &paths[rng.random_range(0..paths.len())];
            json!({"op": op, "path": path, "from": from, "value": random_value(rng, 0)})
        })
        .collect();
    if rng.random_bool(0.05) {
        return random_value(rng, 0);
    }
    Value::Array(operations)
}

fn assert_proper(answer: &Answer, what: &str) {
    assert!(
        answer.code != 500,
        "{what}: 500 (a handler failed): {}",
        answer.body
    );
    if answer.code >= 400 {
        assert_eq!(answer.body["kind"], "Status", "{what}: {}", answer.body);
        assert_eq!(answer.body["code"], answer.code, "{what}: {}", answer.body);
    } else {
        assert!(answer.body.is_object(), "{what}: {}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_patch_of_any_type_panics_or_fails_without_a_status() {
    let api = Api::start().await;
    let mut rng = StdRng::seed_from_u64(0x5eed_f022);
    let content_types = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    let mut seeded = 0;
    for resource in RESOURCES.iter() {
        let name = "fuzz";
        let created = api
            .call(
                Method::POST,
                &collection_uri(resource),
                "application/json",
                seed(resource, name).to_string(),
            )
            .await;
        assert_proper(&created, &format!("create {}", resource.plural));
        if created.code == 201 {
            seeded += 1;
        } else {
            eprintln!(
                "seed of {} refused: {}",
                resource.plural, created.body["message"]
            );
        }
        let uri = item_uri(resource, name);
        let current = api.call(Method::GET, &uri, "", String::new()).await;
        let object = if current.code == 200 {
            current.body
        } else {
            seed(resource, name)
        };
        for content_type in content_types {
            for i in 0..PATCHES_PER_TYPE {
                let body = match content_type {
                    "application/json-patch+json" => random_json_patch(&mut rng, &object),
                    "application/apply-patch+yaml" => {
                        let mut applied = random_shaped(&mut rng, &object, 0);
                        if applied.is_object() && rng.random_bool(0.8) {
                            applied["apiVersion"] = object["apiVersion"].clone();
                            applied["kind"] = object["kind"].clone();
                            applied["metadata"] = json!({"name": name});
                        }
                        applied
                    }
                    _ if rng.random_bool(0.05) => random_value(&mut rng, 0),
                    _ => random_shaped(&mut rng, &object, 0),
                };
                let dry_run = if i % 2 == 0 { "&dryRun=All" } else { "" };
                let target = format!("{uri}?fieldManager=fuzz{dry_run}");
                let answer = api
                    .call(Method::PATCH, &target, content_type, body.to_string())
                    .await;
                assert_proper(
                    &answer,
                    &format!("{content_type} of {} with {body}", resource.plural),
                );
                *codes.entry(answer.code).or_default() += 1;
            }
        }
    }
    eprintln!(
        "{seeded} of {} kinds seeded; answers by code: {codes:?}",
        RESOURCES.len()
    );
    assert!(
        seeded * 4 >= RESOURCES.len() * 3,
        "most kinds are patched, not 404"
    );
    let ok = codes.get(&200).copied().unwrap_or(0);
    let refused: usize = codes.range(400..).map(|(_, n)| n).sum();
    assert!(ok > 50 && refused > 50, "{codes:?}");
}

#[tokio::test]
async fn bodies_and_patches_over_the_limits_are_413() {
    let api = Api::start().await;
    let big = json!({"metadata": {"name": "big"}, "data": {"a": "x".repeat(4 << 20)}});
    let answer = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            big.to_string(),
        )
        .await;
    assert_eq!(answer.code, 413, "{}", answer.body);
    assert_eq!(answer.body["reason"], "RequestEntityTooLarge");
    let seeded = json!({"metadata": {"name": "cm"}, "data": {"a": "b"}});
    let created = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            seeded.to_string(),
        )
        .await;
    assert_eq!(created.code, 201);
    let ops: Vec<Value> = (0..=crate::api::patch::MAX_JSON_PATCH_OPERATIONS)
        .map(|_| json!({"op": "test", "path": "/data/a", "value": "b"}))
        .collect();
    let answer = api
        .call(
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/cm",
            "application/json-patch+json",
            Value::Array(ops).to_string(),
        )
        .await;
    assert_eq!(answer.code, 413, "{}", answer.body);
}
