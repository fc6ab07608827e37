//! The collector's decisions, as pure functions of the graph and what live reads
//! confirmed: is a dependent orphaned, which references go, may a foreground owner
//! finish, what is left of an owner's references and finalizers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::graph::{Graph, Node, OwnerRef, Uid};
use super::kinds::{self, KINDS};

/// An owner as the collector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Exists, being deleted in the foreground.
    Waiting,
    /// Not in the cache: a live read must confirm it is gone.
    Missing,
    /// Confirmed gone (or a reference that can never resolve).
    Gone,
    /// A kind skiff does not serve: never collected on its account.
    Unresolvable,
}

/// Where an owner of a dependent in `dependent_namespace` must live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerPlace<'a> {
    Cluster,
    Namespace(&'a str),
    /// A namespaced owner of a cluster-scoped object: invalid, never found.
    Invalid,
}

pub fn owner_place<'a>(
    owner: &OwnerRef,
    dependent_namespace: Option<&'a str>,
) -> Option<OwnerPlace<'a>> {
    let kind = kinds::resolve(&owner.api_version, &owner.kind)?;
    Some(match (kinds::is_namespaced(kind), dependent_namespace) {
        (false, _) => OwnerPlace::Cluster,
        (true, Some(ns)) => OwnerPlace::Namespace(ns),
        (true, None) => OwnerPlace::Invalid,
    })
}

/// What the cache says of `owner`: present only with the same uid, kind and place.
pub fn cached_owner_state(
    graph: &Graph,
    dependent_namespace: Option<&str>,
    owner: &OwnerRef,
) -> OwnerState {
    let Some(kind) = kinds::resolve(&owner.api_version, &owner.kind) else {
        return OwnerState::Unresolvable;
    };
    let place = owner_place(owner, dependent_namespace);
    if place == Some(OwnerPlace::Invalid) {
        return OwnerState::Gone;
    }
    let expected_namespace = match place {
        Some(OwnerPlace::Namespace(ns)) => Some(ns),
        _ => None,
    };
    match graph.node(&owner.uid) {
        Some(n) if n.kind == kind && n.namespace.as_deref() == expected_namespace => {
            if n.waits_for_dependents() {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            }
        }
        _ => OwnerState::Missing,
    }
}

/// Whether the cache's view warrants live reads and maybe an action.
pub fn needs_check(states: &[OwnerState]) -> bool {
    states.iter().any(|s| {
        matches!(
            s,
            OwnerState::Missing | OwnerState::Gone | OwnerState::Waiting
        )
    })
}

/// How a dependent is to be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Still owned: drop the references to gone and foreground-deleting owners.
    DropOwners(Vec<Uid>),
    Delete(Propagation),
}

/// Upstream's rule: an object with a solid owner stays (minus references to gone and
/// waiting owners); otherwise it is deleted — in the foreground when a waiting owner
/// must wait for it and it has dependents of its own.
pub fn verdict(owners: &[(Uid, OwnerState)], has_dependents: bool) -> Verdict {
    if owners.is_empty() {
        return Verdict::Keep;
    }
    let held = owners.iter().any(|(_, s)| {
        matches!(
            s,
            OwnerState::Solid | OwnerState::Unresolvable | OwnerState::Missing
        )
    });
    let released: Vec<Uid> = owners
        .iter()
        .filter(|(_, s)| matches!(s, OwnerState::Gone | OwnerState::Waiting))
        .map(|(uid, _)| uid.clone())
        .collect();
    let waiting = owners.iter().any(|(_, s)| *s == OwnerState::Waiting);
    match (held, released.is_empty()) {
        (true, true) => Verdict::Keep,
        (true, false) => Verdict::DropOwners(released),
        (false, _) if waiting && has_dependents => Verdict::Delete(Propagation::Foreground),
        (false, _) => Verdict::Delete(Propagation::Background),
    }
}

/// A foreground-deleting owner's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForegroundStep {
    /// Dependents not yet being deleted: each decides its own deletion.
    pub collect: Vec<Uid>,
    /// No dependent blocks any more: the finalizer may go.
    pub finished: bool,
}

pub fn foreground_step(owner: &str, dependents: &[(Uid, Node)]) -> ForegroundStep {
    ForegroundStep {
        collect: dependents
            .iter()
            .filter(|(_, d)| !d.deleting)
            .map(|(uid, _)| uid.clone())
            .collect(),
        finished: !dependents.iter().any(|(_, d)| d.blocks(owner)),
    }
}

/// The references left once those to `owners` go; `None` when none of them is there.
pub fn without_owners(refs: &[OwnerReference], owners: &[Uid]) -> Option<Vec<OwnerReference>> {
    let kept: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !owners.iter().any(|o| **o == *r.uid))
        .cloned()
        .collect();
    (kept.len() != refs.len()).then_some(kept)
}

/// The finalizers left once `finalizer` goes; `None` when it is not there.
pub fn without_finalizer(finalizers: &[String], finalizer: &str) -> Option<Vec<String>> {
    let kept: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    (kept.len() != finalizers.len()).then_some(kept)
}

/// The kind of `node`, for messages.
pub fn kind_name(node: &Node) -> &str {
    KINDS
        .get(node.kind)
        .map_or("object", |k| k.resource.kind.as_str())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::graph::tests::{deployment, kind, node, owner, pod, replicaset};
    use super::super::graph::{FOREGROUND, ORPHAN};
    use super::*;

    /// The dependents whose owners are all gone, given the uids still alive.
    fn orphaned(dependents: &[(Uid, Node)], live: &HashSet<&str>) -> Vec<Uid> {
        dependents
            .iter()
            .filter(|(_, d)| {
                let states: Vec<(Uid, OwnerState)> = d
                    .owners
                    .iter()
                    .map(|o| {
                        let state = if live.contains(&*o.uid) {
                            OwnerState::Solid
                        } else {
                            OwnerState::Gone
                        };
                        (o.uid.clone(), state)
                    })
                    .collect();
                matches!(verdict(&states, false), Verdict::Delete(_))
            })
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    #[test]
    fn dependents_whose_owners_are_all_gone_are_orphaned() {
        let mut two_owners = pod("shared", "r1");
        two_owners
            .owners
            .push(owner("r2", "apps/v1", "ReplicaSet", false));
        let dependents = vec![
            (Uid::from("p1"), pod("a", "r1")),
            (Uid::from("p2"), pod("b", "r2")),
            (Uid::from("p3"), two_owners),
            (Uid::from("d1"), deployment("unowned")),
        ];
        let live: HashSet<&str> = ["r2"].into();
        assert_eq!(orphaned(&dependents, &live), vec![Uid::from("p1")]);
        assert_eq!(orphaned(&dependents, &HashSet::new()).len(), 3);
    }

    #[test]
    fn a_solid_owner_keeps_a_dependent_but_gone_references_are_dropped() {
        let solid = (Uid::from("a"), OwnerState::Solid);
        let gone = (Uid::from("b"), OwnerState::Gone);
        let waiting = (Uid::from("c"), OwnerState::Waiting);
        assert_eq!(verdict(std::slice::from_ref(&solid), false), Verdict::Keep);
        assert_eq!(
            verdict(&[solid.clone(), gone, waiting], true),
            Verdict::DropOwners(vec!["b".into(), "c".into()])
        );
        let unknown = (Uid::from("d"), OwnerState::Unresolvable);
        assert_eq!(verdict(&[unknown], false), Verdict::Keep);
        assert_eq!(verdict(&[], false), Verdict::Keep);
    }

    #[test]
    fn waiting_owners_propagate_foreground_to_dependents_with_dependents() {
        let waiting = (Uid::from("c"), OwnerState::Waiting);
        let gone = (Uid::from("b"), OwnerState::Gone);
        assert_eq!(
            verdict(&[waiting.clone(), gone.clone()], true),
            Verdict::Delete(Propagation::Foreground)
        );
        assert_eq!(
            verdict(&[waiting], false),
            Verdict::Delete(Propagation::Background)
        );
        assert_eq!(
            verdict(&[gone], true),
            Verdict::Delete(Propagation::Background)
        );
    }

    #[test]
    fn the_cache_classifies_owners_by_uid_kind_and_place() {
        let mut g = Graph::default();
        g.upsert("d1".into(), deployment("web"));
        let mut waiting = deployment("old");
        waiting.deleting = true;
        waiting.finalizers = vec![FOREGROUND.into()];
        g.upsert("d2".into(), waiting);
        let mut orphaning = deployment("kept");
        orphaning.deleting = true;
        orphaning.finalizers = vec![ORPHAN.into()];
        g.upsert("d3".into(), orphaning);
        let state = |uid: &str, ns: Option<&str>, k: &str| {
            cached_owner_state(&g, ns, &owner(uid, "apps/v1", k, true))
        };
        assert_eq!(
            state("d1", Some("default"), "Deployment"),
            OwnerState::Solid
        );
        assert_eq!(
            state("d2", Some("default"), "Deployment"),
            OwnerState::Waiting
        );
        assert_eq!(
            state("d3", Some("default"), "Deployment"),
            OwnerState::Solid
        );
        assert_eq!(
            state("d9", Some("default"), "Deployment"),
            OwnerState::Missing
        );
        // Same uid, wrong kind or namespace: not this owner.
        assert_eq!(
            state("d1", Some("default"), "ReplicaSet"),
            OwnerState::Missing
        );
        assert_eq!(
            state("d1", Some("other"), "Deployment"),
            OwnerState::Missing
        );
        // A cluster-scoped dependent cannot have a namespaced owner.
        assert_eq!(state("d1", None, "Deployment"), OwnerState::Gone);
        assert_eq!(state("d1", None, "Job"), OwnerState::Unresolvable);
        let node_owner = owner("n1", "v1", "Node", false);
        assert_eq!(
            owner_place(&node_owner, Some("kube-node-lease")),
            Some(OwnerPlace::Cluster)
        );
        assert!(needs_check(&[OwnerState::Solid, OwnerState::Missing]));
        assert!(!needs_check(&[OwnerState::Solid, OwnerState::Unresolvable]));
    }

    #[test]
    fn a_foreground_owner_finishes_when_no_dependent_blocks() {
        let mut non_blocking = pod("b", "r1");
        non_blocking.owners[0].block = false;
        let mut terminating = pod("c", "r1");
        terminating.deleting = true;
        let deps = vec![
            (Uid::from("p1"), non_blocking.clone()),
            (Uid::from("p2"), terminating),
        ];
        let step = foreground_step("r1", &deps);
        assert_eq!(step.collect, vec![Uid::from("p1")]);
        assert!(!step.finished);
        let step = foreground_step("r1", &[(Uid::from("p1"), non_blocking)]);
        assert!(step.finished);
        assert!(foreground_step("r1", &[]).finished);
        let rs = replicaset("web-1", "d1");
        assert!(!foreground_step("d1", &[(Uid::from("r1"), rs)]).finished);
    }

    #[test]
    fn orphaning_drops_only_the_owners_reference() {
        let reference = |uid: &str| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: uid.into(),
            uid: uid.into(),
            ..Default::default()
        };
        let refs = vec![reference("d1"), reference("d2")];
        let kept = without_owners(&refs, &["d1".into()]).unwrap();
        assert_eq!(kept, vec![reference("d2")]);
        assert_eq!(without_owners(&refs, &["d3".into()]), None);
        let finalizers = vec![ORPHAN.to_string(), "example.com/keep".to_string()];
        assert_eq!(
            without_finalizer(&finalizers, ORPHAN),
            Some(vec!["example.com/keep".to_string()])
        );
        assert_eq!(without_finalizer(&finalizers, FOREGROUND), None);
        let n = node(kind("v1", "Pod"), Some("default"), "p", vec![]);
        assert_eq!(kind_name(&n), "Pod");
    }
}
