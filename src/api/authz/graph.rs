//! Which objects each node may read, as the Kubernetes node authorizer's graph: every
//! pod bound to a node (`spec.nodeName`) links the node to the Secrets, ConfigMaps,
//! PersistentVolumeClaims and ServiceAccount the pod names. A node may read an object
//! only while some pod bound to it names the object.
//!
//! The graph is kept from the store, not per request: one list of the pods, then one
//! watch of the whole key space (every event's key is checked, only pods are decoded),
//! so a check is a hash lookup whatever the cluster's size, and the graph knows which
//! revision it has reached. A check that misses first waits (briefly) until the graph
//! has caught up with the revision the store had when the request came, so a pod the
//! scheduler just bound is never refused to its node for being too new.
//!
//! May call: the store (read only).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

use crate::store::{EventKind, ListRequest, Revision, Store, StoreError};

const POD_PREFIX: &str = "/registry/core/pods/";
/// Longest a refused check waits for the graph to catch up with the store.
const CATCH_UP: Duration = Duration::from_secs(2);

/// The kinds of object a pod can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
}

/// An object a pod names, in the pod's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ref {
    pub kind: RefKind,
    pub namespace: String,
    pub name: String,
}

#[derive(Default)]
struct Edges {
    /// pod key → (node, what it names).
    pods: HashMap<String, (String, Vec<Ref>)>,
    /// object → node → how many of the node's pods name it.
    users: HashMap<Ref, HashMap<String, u32>>,
}

impl Edges {
    fn remove_pod(&mut self, key: &str) {
        let Some((node, refs)) = self.pods.remove(key) else {
            return;
        };
        for r in refs {
            if let Some(nodes) = self.users.get_mut(&r) {
                if let Some(count) = nodes.get_mut(&node) {
                    *count -= 1;
                    if *count == 0 {
                        nodes.remove(&node);
                    }
                }
                if nodes.is_empty() {
                    self.users.remove(&r);
                }
            }
        }
    }

    /// Records (or replaces) a pod; unbound pods link nothing.
    fn put_pod(&mut self, key: &str, pod: &Value) {
        self.remove_pod(key);
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
        if node.is_empty() {
            return;
        }
        let refs = pod_references(pod);
        for r in &refs {
            *self
                .users
                .entry(r.clone())
                .or_default()
                .entry(node.to_string())
                .or_default() += 1;
        }
        self.pods.insert(key.to_string(), (node.to_string(), refs));
    }
}

/// The node graph; cheap to share, started on first use.
#[derive(Default)]
pub struct NodeGraph {
    edges: Mutex<Edges>,
    /// The store revision the graph reflects (-1: not loaded yet).
    applied: AtomicI64,
    changed: Notify,
    started: AtomicBool,
}

impl NodeGraph {
    pub fn new() -> Arc<Self> {
        Arc::new(NodeGraph {
            applied: AtomicI64::new(-1),
            ..Default::default()
        })
    }

    /// The node `pod` (namespace/name) is bound to, if any.
    pub async fn pod_node(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        ns: &str,
        name: &str,
    ) -> Option<String> {
        let key = format!("{POD_PREFIX}{ns}/{name}");
        self.check(store, |e| e.pods.get(&key).map(|(n, _)| n.clone()))
            .await
    }

    /// Whether a pod bound to `node` names `r`.
    pub async fn node_uses(self: &Arc<Self>, store: &Arc<dyn Store>, node: &str, r: &Ref) -> bool {
        self.check(store, |e| {
            e.users
                .get(r)
                .is_some_and(|nodes| nodes.contains_key(node))
                .then_some(())
        })
        .await
        .is_some()
    }

    /// Answers from the graph; a miss is retried once the graph has caught up with
    /// the store as it was when the question came.
    async fn check<T>(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        look: impl Fn(&Edges) -> Option<T>,
    ) -> Option<T> {
        let wanted = store.current_revision();
        self.start(store);
        let found = self.edges.lock().ok().and_then(|e| look(&e));
        if found.is_some() || self.applied.load(Ordering::SeqCst) >= wanted {
            return found;
        }
        let caught_up = async {
            loop {
                let notified = self.changed.notified();
                if self.applied.load(Ordering::SeqCst) >= wanted {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(CATCH_UP, caught_up).await;
        self.edges.lock().ok().and_then(|e| look(&e))
    }

    fn start(self: &Arc<Self>, store: &Arc<dyn Store>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let graph = Arc::downgrade(self);
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let Some(graph) = graph.upgrade() else { return };
                if let Err(e) = graph.follow(&store).await {
                    tracing::debug!(error = %e, "node graph: relisting");
                }
                drop(graph);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// Lists the pods, then applies every change after; returns when the watch ends.
    async fn follow(&self, store: &Arc<dyn Store>) -> Result<(), StoreError> {
        let revision = self.load(store).await?;
        let mut events = store.watch("/", revision).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            let key = &event.entry.key;
            if key.starts_with(POD_PREFIX) {
                let pod: Value = serde_json::from_slice(&event.entry.value).unwrap_or(Value::Null);
                if let Ok(mut edges) = self.edges.lock() {
                    match event.kind {
                        EventKind::Deleted => edges.remove_pod(key),
                        _ => edges.put_pod(key, &pod),
                    }
                }
            }
            self.applied.store(event.entry.mod_rev, Ordering::SeqCst);
            self.changed.notify_waiters();
        }
        Ok(())
    }

    async fn load(&self, store: &Arc<dyn Store>) -> Result<Revision, StoreError> {
        let mut edges = Edges::default();
        let mut request = ListRequest {
            prefix: POD_PREFIX.into(),
            limit: 1000,
            ..Default::default()
        };
        let revision = loop {
            let page = store.list(request.clone()).await?;
            for entry in &page.entries {
                if let Ok(pod) = serde_json::from_slice::<Value>(&entry.value) {
                    edges.put_pod(&entry.key, &pod);
                }
            }
            request.at_revision = Some(page.revision);
            match page.entries.last() {
                Some(last) if page.more => request.start_after = Some(last.key.clone()),
                _ => break page.revision,
            }
        };
        if let Ok(mut current) = self.edges.lock() {
            *current = edges;
        }
        self.applied.store(revision, Ordering::SeqCst);
        self.changed.notify_waiters();
        Ok(revision)
    }
}

/// Everything a pod names, as the kubelet would read it: volumes (secret, configMap,
/// projected sources, persistentVolumeClaim, ephemeral claims and any volume plugin's
/// `secretRef`), each container's `env` and `envFrom`, `imagePullSecrets` and the
/// service account.
pub fn pod_references(pod: &Value) -> Vec<Ref> {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let spec = &pod["spec"];
    let mut refs = Vec::new();
    let mut add = |kind: RefKind, name: Option<&str>| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            let r = Ref {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
    };
    let sa = spec["serviceAccountName"]
        .as_str()
        .or(spec["serviceAccount"].as_str());
    add(RefKind::ServiceAccount, Some(sa.unwrap_or("default")));
    for secret in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add(RefKind::Secret, secret["name"].as_str());
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        add(RefKind::Secret, volume["secret"]["secretName"].as_str());
        add(RefKind::ConfigMap, volume["configMap"]["name"].as_str());
        add(
            RefKind::PersistentVolumeClaim,
            volume["persistentVolumeClaim"]["claimName"].as_str(),
        );
        if volume.get("ephemeral").is_some() {
            let volume_name = volume["name"].as_str().unwrap_or("");
            let claim = format!("{pod_name}-{volume_name}");
            add(RefKind::PersistentVolumeClaim, Some(&claim));
        }
        for source in volume["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            add(RefKind::Secret, source["secret"]["name"].as_str());
            add(RefKind::ConfigMap, source["configMap"]["name"].as_str());
        }
        // Volume plugins' credentials (csi, cephfs, rbd, iscsi, flexVolume, …).
        if let Some(plugins) = volume.as_object() {
            for plugin in plugins.values() {
                for field in ["secretRef", "nodePublishSecretRef"] {
                    add(RefKind::Secret, plugin[field]["name"].as_str());
                }
                if plugin.get("shareName").is_some() {
                    add(RefKind::Secret, plugin["secretName"].as_str()); // azureFile
                }
            }
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in spec[list].as_array().into_iter().flatten() {
            for from in container["envFrom"].as_array().into_iter().flatten() {
                add(RefKind::Secret, from["secretRef"]["name"].as_str());
                add(RefKind::ConfigMap, from["configMapRef"]["name"].as_str());
            }
            for var in container["env"].as_array().into_iter().flatten() {
                let from = &var["valueFrom"];
                add(RefKind::Secret, from["secretKeyRef"]["name"].as_str());
                add(RefKind::ConfigMap, from["configMapKeyRef"]["name"].as_str());
            }
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(kind: RefKind, name: &str) -> Ref {
        Ref {
            kind,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn pod(node: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "nodeName": node, "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "a", "secret": {"secretName": "vol"}},
                        {"name": "b", "configMap": {"name": "cm"}},
                        {"name": "c", "persistentVolumeClaim": {"claimName": "claim"}},
                        {"name": "d", "projected": {"sources": [{"secret": {"name": "proj"}}, {"configMap": {"name": "projcm"}}]}},
                        {"name": "e", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi"}}}],
            "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "envfrom"}}],
                            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "envkey", "key": "k"}}},
                                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "envcm", "key": "k"}}}]}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "initcm"}}]}]}})
    }

    #[test]
    fn a_pod_names_what_the_kubelet_reads() {
        let refs = pod_references(&pod("n1"));
        for name in ["pull", "vol", "proj", "csi", "envfrom", "envkey"] {
            assert!(refs.contains(&r(RefKind::Secret, name)), "{name}");
        }
        for name in ["cm", "projcm", "envcm", "initcm"] {
            assert!(refs.contains(&r(RefKind::ConfigMap, name)), "{name}");
        }
        assert!(refs.contains(&r(RefKind::PersistentVolumeClaim, "claim")));
        assert!(refs.contains(&r(RefKind::ServiceAccount, "robot")));
        assert!(!refs.contains(&r(RefKind::Secret, "other")));
    }

    #[test]
    fn edges_follow_binding_and_deletion() {
        let mut edges = Edges::default();
        let uses = |e: &Edges, node: &str, name: &str| {
            e.users
                .get(&r(RefKind::Secret, name))
                .is_some_and(|n| n.contains_key(node))
        };
        edges.put_pod("k1", &pod(""));
        assert!(!uses(&edges, "n1", "vol"), "unbound pods link nothing");
        edges.put_pod("k1", &pod("n1"));
        edges.put_pod("k2", &pod("n1"));
        assert!(uses(&edges, "n1", "vol"));
        assert!(!uses(&edges, "n2", "vol"));
        edges.remove_pod("k1");
        assert!(uses(&edges, "n1", "vol"), "the other pod still names it");
        edges.remove_pod("k2");
        assert!(!uses(&edges, "n1", "vol"));
        assert!(edges.users.is_empty());
    }

    #[tokio::test]
    async fn the_graph_follows_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::SqliteStore::open(crate::store::SqliteOptions {
                path: dir.path().join("db"),
            })
            .unwrap(),
        );
        let put = |key: &str, value: Value| crate::store::WriteOp::Create {
            key: key.into(),
            value: value.to_string().into(),
        };
        let written = store
            .write(put("/registry/core/pods/ns/a", pod("n1")))
            .await
            .unwrap();
        while store.current_revision() < written.mod_rev {
            tokio::task::yield_now().await;
        }
        let graph = NodeGraph::new();
        assert_eq!(
            graph.pod_node(&store, "ns", "a").await.as_deref(),
            Some("n1")
        );
        let mut later = pod("n2");
        later["metadata"]["name"] = json!("b");
        later["spec"]["volumes"] = json!([{"name": "x", "secret": {"secretName": "late"}}]);
        let written = store
            .write(put("/registry/core/pods/ns/b", later))
            .await
            .unwrap();
        // (The store publishes its new revision just after answering the write.)
        while store.current_revision() < written.mod_rev {
            tokio::task::yield_now().await;
        }
        // Asked right after the write: the check waits for the graph to catch up.
        assert!(
            graph
                .node_uses(&store, "n2", &r(RefKind::Secret, "late"))
                .await
        );
        assert!(
            !graph
                .node_uses(&store, "n1", &r(RefKind::Secret, "late"))
                .await
        );
        assert_eq!(graph.pod_node(&store, "ns", "missing").await, None);
    }
}
