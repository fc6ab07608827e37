//! What the benchmark sends: realistic manifests, and a bounded load driver that
//! spreads a fixed number of requests over N concurrent connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use crate::http::{Client, Request};

/// Distinct `app` label values; `app=web-7` selects 1 % of the pods.
pub const APPS: usize = 100;

pub fn pod_name(i: usize) -> String {
    format!("web-{i:05}")
}

/// A Deployment-style pod of about 2 KB: two containers with env, probes,
/// resources, mounts, plus labels, annotations and tolerations. No ownerReferences:
/// the server's garbage collector would delete pods whose owner does not exist.
pub fn pod(namespace: &str, i: usize) -> Value {
    let app = format!("web-{}", i % APPS);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(i),
            "namespace": namespace,
            "labels": {
                "app": app,
                "tier": "frontend",
                "release": "stable",
                "pod-template-hash": "7d9f8c6b5d"
            },
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "kubectl.kubernetes.io/restartedAt": "2025-06-01T12:00:00Z"
            }
        },
        "spec": {
            "containers": [web_container(), log_shipper()],
            "volumes": [
                {"name": "config", "configMap": {"name": "web-config"}},
                {"name": "cache", "emptyDir": {"sizeLimit": "256Mi"}},
                {"name": "varlog", "emptyDir": {}}
            ],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "terminationGracePeriodSeconds": 30
        }
    })
}

fn web_container() -> Value {
    json!({
        "name": "web",
        "image": "registry.example.com/team/web:1.27.3",
        "args": ["--listen=:8080", "--metrics=:9090", "--config=/etc/web/config.yaml"],
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
        ],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "CACHE_DIR", "value": "/var/cache/web"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"}
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/web", "readOnly": true},
            {"name": "cache", "mountPath": "/var/cache/web"},
            {"name": "varlog", "mountPath": "/var/log/web"}
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 10, "periodSeconds": 10},
        "imagePullPolicy": "IfNotPresent"
    })
}

fn log_shipper() -> Value {
    json!({
        "name": "log-shipper",
        "image": "registry.example.com/infra/fluent-bit:3.1.4",
        "resources": {
            "requests": {"cpu": "20m", "memory": "32Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"}
        },
        "volumeMounts": [{"name": "varlog", "mountPath": "/var/log/web", "readOnly": true}]
    })
}

/// A small ConfigMap (about 400 bytes).
pub fn config_map(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
        "data": {
            "config.yaml": "listen: :8080\nmetrics: :9090\ncache:\n  dir: /var/cache/web\n  size: 256Mi\n",
            "LOG_LEVEL": "info",
            "FEATURE_FLAGS": "search,checkout,recommendations"
        }
    })
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// An annotation change, so every patch makes a new revision.
pub fn annotate(key: &str, value: usize) -> Value {
    json!({"metadata": {"annotations": {key: value.to_string()}}})
}

pub fn pods_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods")
}

pub fn pod_path(namespace: &str, name: &str) -> String {
    format!("{}/{name}", pods_path(namespace))
}

/// Builds request number `i` of a batch.
pub type MakeRequest = Arc<dyn Fn(usize) -> Request + Send + Sync>;

/// Sends requests `0..total` over `connections` keep-alive connections, each
/// connection taking the next number when its previous request was answered.
/// Every answer must have status `expected`. Returns the wall time.
pub async fn drive(
    client: &Client,
    connections: usize,
    total: usize,
    expected: u16,
    make: MakeRequest,
) -> Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, next, make) = (client.clone(), next.clone(), make.clone());
            tokio::spawn(async move {
                let mut conn = client.connect().await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return anyhow::Ok(());
                    }
                    conn.call(&make(i), expected).await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed())
}
