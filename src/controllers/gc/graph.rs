//! The object graph the collector decides on: each watched object's identity,
//! ownerReferences and deletion state, indexed by uid, by owner uid and by namespace.
//! Fed by metadata watch events, it answers which work each change triggers. No I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::runtime::watcher;

use super::kinds::{self, KindId, KINDS};

pub type Uid = Arc<str>;

/// The finalizer that makes an owner wait for its blocking dependents.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that makes an owner release its dependents.
pub const ORPHAN: &str = "orphan";

/// One unit of the collector's work queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Work {
    /// Check an object's owners, or run its foreground/orphan finalizer.
    Object(Uid),
    /// Empty and finalize a terminating namespace.
    Namespace(String),
}

/// The parts of an ownerReference the collector needs.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerRef {
    pub uid: Uid,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub block: bool,
}

impl OwnerRef {
    pub fn from_api(r: &OwnerReference) -> Self {
        OwnerRef {
            uid: r.uid.as_str().into(),
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            block: r.block_owner_deletion == Some(true),
        }
    }
}

/// What the collector remembers of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: KindId,
    pub namespace: Option<String>,
    pub name: String,
    pub owners: Vec<OwnerRef>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn from_meta(kind: KindId, meta: &ObjectMeta) -> Option<(Uid, Node)> {
        let uid: Uid = meta.uid.as_deref()?.into();
        let node = Node {
            kind,
            namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
            name: meta.name.clone().unwrap_or_default(),
            owners: meta
                .owner_references
                .iter()
                .flatten()
                .map(OwnerRef::from_api)
                .collect(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        };
        Some((uid, node))
    }

    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: waits for its blocking dependents.
    pub fn waits_for_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Being deleted with orphan propagation: its dependents are to be released.
    pub fn orphans_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }

    /// Whether this object blocks the deletion of `owner`.
    pub fn blocks(&self, owner: &str) -> bool {
        self.owners.iter().any(|o| &*o.uid == owner && o.block)
    }

    fn needs_collector(&self) -> bool {
        !self.owners.is_empty() || self.waits_for_dependents() || self.orphans_dependents()
    }

    fn terminating_namespace(&self) -> Option<&str> {
        (kinds::is_namespace(self.kind) && self.deleting).then_some(self.name.as_str())
    }
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
    /// owner uid → uids of the objects naming it, whether or not the owner exists.
    dependents: HashMap<Uid, HashSet<Uid>>,
    by_namespace: HashMap<String, HashSet<Uid>>,
    terminating: HashSet<String>,
    /// Kinds being relisted, with the uids listed so far.
    relisting: HashMap<KindId, HashSet<Uid>>,
    synced: HashSet<KindId>,
}

impl Graph {
    /// Applies one watch event of `kind`; returns the work it triggers.
    pub fn observe(
        &mut self,
        kind: KindId,
        event: watcher::Event<PartialObjectMeta<DynamicObject>>,
    ) -> Vec<Work> {
        match event {
            watcher::Event::Apply(object) => self.upsert_meta(kind, &object.metadata),
            watcher::Event::Delete(object) => match object.metadata.uid.as_deref() {
                Some(uid) => self.remove(uid),
                None => Vec::new(),
            },
            watcher::Event::Init => {
                self.relisting.insert(kind, HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                if let (Some(uid), Some(seen)) =
                    (&object.metadata.uid, self.relisting.get_mut(&kind))
                {
                    seen.insert(uid.as_str().into());
                }
                self.upsert_meta(kind, &object.metadata)
            }
            watcher::Event::InitDone => self.finish_relist(kind),
        }
    }

    fn upsert_meta(&mut self, kind: KindId, meta: &ObjectMeta) -> Vec<Work> {
        match Node::from_meta(kind, meta) {
            Some((uid, node)) => self.upsert(uid, node),
            None => Vec::new(),
        }
    }

    /// Records an object's current state; returns the work the change triggers.
    pub fn upsert(&mut self, uid: Uid, mut node: Node) -> Vec<Work> {
        if self.nodes.get(&uid) == Some(&node) {
            return Vec::new();
        }
        let (uid, old) = match self.nodes.remove_entry(&uid) {
            Some((known, old)) => (known, Some(old)),
            None => (uid, None),
        };
        if let Some(old) = &old {
            self.unlink(&uid, old);
        }
        self.share_owner_uids(&mut node);
        self.link(&uid, &node);
        let mut work = Vec::new();
        if node.needs_collector() {
            work.push(Work::Object(uid.clone()));
        }
        let owners = old.iter().flat_map(|o| &o.owners).chain(&node.owners);
        work.extend(self.deleting_owners(owners));
        if let Some(name) = node.terminating_namespace() {
            self.terminating.insert(name.to_string());
            work.push(Work::Namespace(name.to_string()));
        }
        self.nodes.insert(uid, node);
        work
    }

    /// Forgets a deleted object; returns the work its absence triggers.
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some((uid, node)) = self.nodes.remove_entry(uid) else {
            return Vec::new();
        };
        self.unlink(&uid, &node);
        let mut work: Vec<Work> = self
            .dependents
            .get(&uid)
            .into_iter()
            .flatten()
            .map(|d| Work::Object(d.clone()))
            .collect();
        work.extend(self.deleting_owners(&node.owners));
        if kinds::is_namespace(node.kind) {
            self.terminating.remove(&node.name);
        }
        if let Some(ns) = &node.namespace {
            if self.terminating.contains(ns) && !self.by_namespace.contains_key(ns) {
                work.push(Work::Namespace(ns.clone()));
            }
        }
        work
    }

    fn finish_relist(&mut self, kind: KindId) -> Vec<Work> {
        let seen = self.relisting.remove(&kind).unwrap_or_default();
        let vanished: Vec<Uid> = self
            .nodes
            .iter()
            .filter(|(uid, node)| node.kind == kind && !seen.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        self.synced.insert(kind);
        vanished.iter().flat_map(|uid| self.remove(uid)).collect()
    }

    /// Many dependents name one owner: let them share its uid.
    fn share_owner_uids(&self, node: &mut Node) {
        for owner in &mut node.owners {
            if let Some((shared, _)) = self.dependents.get_key_value(&owner.uid) {
                owner.uid = shared.clone();
            }
        }
    }

    fn link(&mut self, uid: &Uid, node: &Node) {
        for owner in &node.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        if let Some(ns) = &node.namespace {
            self.by_namespace
                .entry(ns.clone())
                .or_default()
                .insert(uid.clone());
        }
    }

    fn unlink(&mut self, uid: &Uid, node: &Node) {
        for owner in &node.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
        if let Some(ns) = &node.namespace {
            if let Some(set) = self.by_namespace.get_mut(ns) {
                set.remove(uid);
                if set.is_empty() {
                    self.by_namespace.remove(ns);
                }
            }
        }
    }

    /// Owners being deleted: a change of their dependents may let them finish.
    fn deleting_owners<'a>(&self, owners: impl IntoIterator<Item = &'a OwnerRef>) -> Vec<Work> {
        owners
            .into_iter()
            .filter(|o| self.nodes.get(&o.uid).is_some_and(|n| n.deleting))
            .map(|o| Work::Object(o.uid.clone()))
            .collect()
    }

    /// Whether every kind has been listed once: before that, absence proves nothing.
    pub fn synced(&self) -> bool {
        self.synced.len() == KINDS.len()
    }

    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The objects naming `owner` in their ownerReferences.
    pub fn dependents(&self, owner: &str) -> Vec<(Uid, Node)> {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|uid| Some((uid.clone(), self.nodes.get(uid)?.clone())))
            .collect()
    }

    pub fn has_dependents(&self, owner: &str) -> bool {
        self.dependents.contains_key(owner)
    }

    /// Everything known to live in namespace `ns`.
    pub fn in_namespace<'a>(&'a self, ns: &str) -> impl Iterator<Item = (&'a Uid, &'a Node)> {
        self.by_namespace
            .get(ns)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nodes.get_key_value(uid))
    }

    /// All work a periodic resync revisits.
    pub fn resync(&self) -> Vec<Work> {
        let objects = self
            .nodes
            .iter()
            .filter(|(_, node)| node.needs_collector())
            .map(|(uid, _)| Work::Object(uid.clone()));
        let namespaces = self.terminating.iter().map(|n| Work::Namespace(n.clone()));
        objects.chain(namespaces).collect()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn kind(api_version: &str, kind: &str) -> KindId {
        kinds::resolve(api_version, kind).unwrap()
    }

    pub fn owner(uid: &str, api_version: &str, kind: &str, block: bool) -> OwnerRef {
        OwnerRef {
            uid: uid.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            name: format!("{}-name", uid),
            block,
        }
    }

    pub fn node(k: KindId, ns: Option<&str>, name: &str, owners: Vec<OwnerRef>) -> Node {
        Node {
            kind: k,
            namespace: ns.map(String::from),
            name: name.into(),
            owners,
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    pub fn deployment(name: &str) -> Node {
        node(kind("apps/v1", "Deployment"), Some("default"), name, vec![])
    }

    pub fn replicaset(name: &str, owner_uid: &str) -> Node {
        let o = owner(owner_uid, "apps/v1", "Deployment", true);
        node(
            kind("apps/v1", "ReplicaSet"),
            Some("default"),
            name,
            vec![o],
        )
    }

    pub fn pod(name: &str, owner_uid: &str) -> Node {
        let o = owner(owner_uid, "apps/v1", "ReplicaSet", true);
        node(kind("v1", "Pod"), Some("default"), name, vec![o])
    }

    fn deleting(mut n: Node, finalizer: &str) -> Node {
        n.deleting = true;
        n.finalizers.push(finalizer.into());
        n
    }

    #[test]
    fn indexes_dependents_by_owner_uid() {
        let mut g = Graph::default();
        g.upsert("d1".into(), deployment("web"));
        g.upsert("r1".into(), replicaset("web-1", "d1"));
        g.upsert("r2".into(), replicaset("web-2", "d1"));
        let mut deps: Vec<_> = g.dependents("d1").into_iter().map(|(u, _)| u).collect();
        deps.sort();
        assert_eq!(deps, vec![Uid::from("r1"), Uid::from("r2")]);
        assert!(g.has_dependents("d1"));
        // Re-owning moves the dependent.
        g.upsert("r2".into(), replicaset("web-2", "d2"));
        assert_eq!(g.dependents("d1").len(), 1);
        assert_eq!(g.dependents("d2").len(), 1);
    }

    #[test]
    fn dependents_share_their_owners_uid() {
        let mut g = Graph::default();
        g.upsert("p1".into(), pod("a", "r1"));
        g.upsert("p2".into(), pod("b", "r1"));
        let uid = |p: &str| g.node(p).unwrap().owners[0].uid.clone();
        assert!(Arc::ptr_eq(&uid("p1"), &uid("p2")));
    }

    #[test]
    fn an_owners_deletion_triggers_its_dependents() {
        let mut g = Graph::default();
        g.upsert("d1".into(), deployment("web"));
        g.upsert("r1".into(), replicaset("web-1", "d1"));
        assert_eq!(g.remove("d1"), vec![Work::Object("r1".into())]);
        assert!(g.remove("d1").is_empty());
    }

    #[test]
    fn a_dependents_deletion_triggers_its_deleting_owner() {
        let mut g = Graph::default();
        g.upsert("d1".into(), deleting(deployment("web"), FOREGROUND));
        g.upsert("r1".into(), replicaset("web-1", "d1"));
        assert!(g.remove("r1").contains(&Work::Object("d1".into())));
    }

    #[test]
    fn unchanged_objects_trigger_nothing() {
        let mut g = Graph::default();
        assert_eq!(
            g.upsert("r1".into(), replicaset("web-1", "d1")),
            vec![Work::Object("r1".into())]
        );
        assert!(g.upsert("r1".into(), replicaset("web-1", "d1")).is_empty());
        // Objects without owners or collector finalizers need no work.
        assert!(g.upsert("d1".into(), deployment("web")).is_empty());
        assert_eq!(
            g.upsert("d1".into(), deleting(deployment("web"), ORPHAN)),
            vec![Work::Object("d1".into())]
        );
    }

    #[test]
    fn a_terminating_namespace_is_finished_when_its_last_object_goes() {
        let ns_kind = kind("v1", "Namespace");
        let mut g = Graph::default();
        let mut ns = node(ns_kind, None, "default", vec![]);
        g.upsert("n1".into(), ns.clone());
        g.upsert("d1".into(), deployment("web"));
        g.upsert("d2".into(), deployment("api"));
        assert_eq!(g.in_namespace("default").count(), 2);
        ns.deleting = true;
        assert_eq!(
            g.upsert("n1".into(), ns),
            vec![Work::Namespace("default".into())]
        );
        assert!(g.remove("d1").is_empty());
        assert_eq!(g.remove("d2"), vec![Work::Namespace("default".into())]);
        assert_eq!(g.in_namespace("default").count(), 0);
        assert!(g.resync().contains(&Work::Namespace("default".into())));
    }

    #[test]
    fn a_relist_forgets_what_vanished_meanwhile() {
        let rs = kind("apps/v1", "ReplicaSet");
        let mut g = Graph::default();
        g.upsert("r1".into(), replicaset("web-1", "d1"));
        g.upsert("p1".into(), pod("web-1-a", "r1"));
        g.observe(rs, watcher::Event::Init);
        let work = g.observe(rs, watcher::Event::InitDone);
        assert!(g.node("r1").is_none());
        assert!(g.node("p1").is_some());
        assert_eq!(work, vec![Work::Object("p1".into())]);
    }

    #[test]
    fn is_synced_once_every_kind_was_listed() {
        let mut g = Graph::default();
        for k in 0..KINDS.len() {
            assert!(!g.synced());
            g.observe(k, watcher::Event::Init);
            g.observe(k, watcher::Event::InitDone);
        }
        assert!(g.synced());
    }

    #[test]
    fn reads_metadata() {
        let meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "web-1", "namespace": "default", "uid": "r1",
            "deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["orphan"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                "name": "web", "uid": "d1", "blockOwnerDeletion": true, "controller": true}]
        }))
        .unwrap();
        let (uid, n) = Node::from_meta(kind("apps/v1", "ReplicaSet"), &meta).unwrap();
        assert_eq!(&*uid, "r1");
        assert!(n.orphans_dependents() && !n.waits_for_dependents());
        assert!(n.blocks("d1") && !n.blocks("d2"));
        assert_eq!(n.owners[0].name, "web");
        assert!(Node::from_meta(0, &ObjectMeta::default()).is_none());
    }
}
