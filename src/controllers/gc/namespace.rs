//! Namespace deletion: a Terminating namespace holding the `kubernetes` finalizer is
//! emptied (every namespaced kind, deleted in the background), its status conditions
//! tell what remains, and once nothing is left it is finalized through
//! `PUT /api/v1/namespaces/<name>/finalize`, after which the API removes it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use super::graph::{Node, Uid};
use super::kinds::{self, KindId, KINDS};
use super::{is_gone, Gc};
use crate::controllers::{Error, Result};

/// The finalizer the API puts on every namespace; this controller owns it.
pub const KUBERNETES: &str = "kubernetes";
/// How often a namespace with content left is looked at again.
const RECHECK: Duration = Duration::from_secs(5);
/// Deletions in flight at once while emptying a namespace.
const PARALLEL_DELETES: usize = 16;

/// One object to delete.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub uid: Uid,
    pub kind: KindId,
    pub name: String,
}

/// What a namespace still holds, as the cache sees it.
#[derive(Debug, Default, PartialEq)]
pub struct Content {
    /// Objects not yet being deleted.
    pub to_delete: Vec<Target>,
    /// `pods.` → how many remain (being deleted or not).
    pub remaining: BTreeMap<String, usize>,
    /// finalizer → on how many remaining objects.
    pub finalizers: BTreeMap<String, usize>,
}

impl Content {
    pub fn is_empty(&self) -> bool {
        self.remaining.is_empty()
    }
}

pub fn content<'a>(objects: impl Iterator<Item = (&'a Uid, &'a Node)>) -> Content {
    let mut content = Content::default();
    for (uid, node) in objects {
        let Some(kind) = KINDS.get(node.kind) else {
            continue;
        };
        *content
            .remaining
            .entry(kind.qualified_plural())
            .or_default() += 1;
        for finalizer in &node.finalizers {
            *content.finalizers.entry(finalizer.clone()).or_default() += 1;
        }
        if !node.deleting {
            content.to_delete.push(Target {
                uid: uid.clone(),
                kind: node.kind,
                name: node.name.clone(),
            });
        }
    }
    content
}

/// Terminating, with this controller's finalizer still to remove.
pub fn awaits_emptying(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        && ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == KUBERNETES))
}

/// The namespace as `/finalize` takes it: without the `kubernetes` finalizer.
pub fn finalized(mut ns: Namespace) -> Namespace {
    if let Some(finalizers) = ns.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        finalizers.retain(|f| f != KUBERNETES);
    }
    ns
}

fn condition(type_: &str, failing: bool, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: if failing { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

/// The conditions upstream's namespace controller reports while deleting content.
pub fn conditions(content: &Content, failures: &[String]) -> Vec<NamespaceCondition> {
    let deletion = if failures.is_empty() {
        condition(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        )
    } else {
        condition(
            "NamespaceDeletionContentFailure",
            true,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                failures.len(),
                failures.join(", ")
            ),
        )
    };
    let remaining = if content.remaining.is_empty() {
        condition(
            "NamespaceContentRemaining",
            false,
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let counts: Vec<String> = content
            .remaining
            .iter()
            .map(|(resource, n)| format!("{resource} has {n} resource instances"))
            .collect();
        condition(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", counts.join(", ")),
        )
    };
    let finalizers = if content.finalizers.is_empty() {
        condition(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let counts: Vec<String> = content
            .finalizers
            .iter()
            .map(|(finalizer, n)| format!("{finalizer} in {n} resource instances"))
            .collect();
        condition(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                counts.join(", ")
            ),
        )
    };
    vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        deletion,
        remaining,
        finalizers,
    ]
}

/// `new` with transition times: kept from `old` where the status did not change.
pub fn with_transition_times(
    old: &[NamespaceCondition],
    new: Vec<NamespaceCondition>,
    now: &Time,
) -> Vec<NamespaceCondition> {
    new.into_iter()
        .map(|mut c| {
            let previous = old
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status);
            c.last_transition_time = previous
                .and_then(|o| o.last_transition_time.clone())
                .or_else(|| Some(now.clone()));
            c
        })
        .collect()
}

/// Equal but for transition times.
pub fn same_conditions(old: &[NamespaceCondition], new: &[NamespaceCondition]) -> bool {
    let strip = |c: &NamespaceCondition| NamespaceCondition {
        last_transition_time: None,
        ..c.clone()
    };
    old.len() == new.len() && old.iter().zip(new).all(|(o, n)| strip(o) == strip(n))
}

impl Gc {
    /// Empties a terminating namespace and finalizes it; `Some(delay)` to look again.
    pub(super) async fn finish_namespace(&self, name: &str) -> Result<Option<Duration>> {
        let api: Api<Namespace> = Api::all(self.ctx.client.clone());
        let Some(ns) = api.get_opt(name).await? else {
            return Ok(None);
        };
        if !awaits_emptying(&ns) {
            return Ok(None);
        }
        let content = content(self.graph().in_namespace(name));
        tracing::debug!(
            namespace = name,
            remaining = ?content.remaining,
            deleting = content.to_delete.len(),
            "emptying a terminating namespace"
        );
        let failures = self.delete_content(name, &content.to_delete).await;
        let ns = self
            .report(&api, ns, conditions(&content, &failures))
            .await?;
        if !content.is_empty() || !failures.is_empty() {
            return Ok(Some(RECHECK));
        }
        if let Some(kind) = self.first_kind_left(name).await? {
            tracing::debug!(
                namespace = name,
                kind,
                "namespace content not yet in the cache"
            );
            return Ok(Some(RECHECK));
        }
        let body = serde_json::to_vec(&finalized(ns))
            .map_err(|e| Error::Invalid(format!("encoding namespace {name}: {e}")))?;
        match api
            .replace_subresource("finalize", name, &PostParams::default(), body)
            .await
        {
            Err(e) if !is_gone(&e) => Err(e.into()),
            _ => Ok(None),
        }
    }

    /// Deletes `targets` in `namespace`; returns what failed.
    async fn delete_content(&self, namespace: &str, targets: &[Target]) -> Vec<String> {
        let mut failures = Vec::new();
        for batch in targets.chunks(PARALLEL_DELETES) {
            let deletes = batch.iter().map(|t| self.delete_target(namespace, t));
            failures.extend(
                futures::future::join_all(deletes)
                    .await
                    .into_iter()
                    .flatten(),
            );
        }
        failures
    }

    async fn delete_target(&self, namespace: &str, target: &Target) -> Option<String> {
        let params = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: Some(target.uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let api = self.api(target.kind, Some(namespace));
        match api.delete(&target.name, &params).await {
            Err(e) if !is_gone(&e) && !super::is_conflict(&e) => {
                let plural = KINDS.get(target.kind).map_or("", |k| &k.resource.plural);
                Some(format!("{plural} {:?}: {e}", target.name))
            }
            _ => None,
        }
    }

    /// Writes the conditions when they changed; returns the namespace as stored.
    async fn report(
        &self,
        api: &Api<Namespace>,
        ns: Namespace,
        conditions: Vec<NamespaceCondition>,
    ) -> Result<Namespace> {
        let old = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let now = Time(chrono::Utc::now());
        let new = with_transition_times(&old, conditions, &now);
        if same_conditions(&old, &new) {
            return Ok(ns);
        }
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({"status": {"conditions": new}});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(stored) => Ok(stored),
            Err(e) if is_gone(&e) => Ok(ns),
            Err(e) => Err(e.into()),
        }
    }

    /// A live check that the namespace is empty: the first kind still holding objects.
    async fn first_kind_left(&self, namespace: &str) -> Result<Option<&'static str>> {
        for kind in 0..KINDS.len() {
            if !kinds::is_namespaced(kind) {
                continue;
            }
            let listed = self
                .api(kind, Some(namespace))
                .list_metadata(&ListParams::default().limit(1))
                .await?;
            if !listed.items.is_empty() {
                return Ok(Some(KINDS[kind].resource.plural.as_str()));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::graph::tests::{deployment, pod};
    use super::super::graph::FOREGROUND;
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceSpec;

    fn terminating(finalizers: &[&str]) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some("x".into());
        ns.metadata.deletion_timestamp = Some(Time(chrono::Utc::now()));
        ns.spec = Some(NamespaceSpec {
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
        });
        ns
    }

    #[test]
    fn counts_what_remains_and_picks_what_to_delete() {
        let mut terminating_pod = pod("b", "r1");
        terminating_pod.deleting = true;
        let mut finalized_deploy = deployment("web");
        finalized_deploy.deleting = true;
        finalized_deploy.finalizers = vec![FOREGROUND.into(), "example.com/keep".into()];
        let objects = [
            (Uid::from("p1"), pod("a", "r1")),
            (Uid::from("p2"), terminating_pod),
            (Uid::from("d1"), finalized_deploy),
        ];
        let c = content(objects.iter().map(|(u, n)| (u, n)));
        assert_eq!(c.to_delete.len(), 1);
        assert_eq!(c.to_delete[0].name, "a");
        assert_eq!(c.remaining["pods."], 2);
        assert_eq!(c.remaining["deployments.apps"], 1);
        assert_eq!(c.finalizers["example.com/keep"], 1);
        assert!(!c.is_empty());
        assert!(content(std::iter::empty()).is_empty());
    }

    #[test]
    fn conditions_read_like_upstreams() {
        let empty = conditions(&Content::default(), &[]);
        assert_eq!(empty.len(), 5);
        assert!(empty.iter().all(|c| c.status == "False"));
        let mut c = Content::default();
        c.remaining.insert("pods.".into(), 3);
        c.remaining.insert("deployments.apps".into(), 1);
        c.finalizers.insert("example.com/keep".into(), 1);
        let busy = conditions(&c, &["pods \"a\": boom".into()]);
        let message = |t: &str| {
            busy.iter()
                .find(|c| c.type_ == t)
                .and_then(|c| c.message.clone())
                .unwrap()
        };
        assert_eq!(
            message("NamespaceContentRemaining"),
            "Some resources are remaining: deployments.apps has 1 resource instances, pods. has 3 resource instances"
        );
        assert_eq!(
            message("NamespaceFinalizersRemaining"),
            "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
        );
        assert_eq!(
            message("NamespaceDeletionContentFailure"),
            "Failed to delete all resource types, 1 remaining: pods \"a\": boom"
        );
    }

    #[test]
    fn transition_times_move_only_with_the_status() {
        let then = Time(chrono::Utc::now() - chrono::Duration::minutes(5));
        let now = Time(chrono::Utc::now());
        let old = with_transition_times(&[], conditions(&Content::default(), &[]), &then);
        assert!(same_conditions(&old, &conditions(&Content::default(), &[])));
        let mut c = Content::default();
        c.remaining.insert("pods.".into(), 1);
        let new = with_transition_times(&old, conditions(&c, &[]), &now);
        assert!(!same_conditions(&old, &new));
        let time = |cs: &[NamespaceCondition], t: &str| {
            cs.iter()
                .find(|c| c.type_ == t)
                .and_then(|c| c.last_transition_time.clone())
        };
        assert_eq!(time(&new, "NamespaceDeletionContentFailure"), Some(then));
        assert_eq!(time(&new, "NamespaceContentRemaining"), Some(now));
    }

    #[test]
    fn finalizing_removes_only_the_kubernetes_finalizer() {
        let ns = terminating(&[KUBERNETES, "example.com/other"]);
        assert!(awaits_emptying(&ns));
        let done = finalized(ns);
        assert!(!awaits_emptying(&done));
        let left = done.spec.and_then(|s| s.finalizers).unwrap();
        assert_eq!(left, vec!["example.com/other".to_string()]);
        let mut active = terminating(&[KUBERNETES]);
        active.metadata.deletion_timestamp = None;
        assert!(!awaits_emptying(&active));
    }
}
