//! A DaemonSet's template history as upstream keeps it: one ControllerRevision per
//! distinct pod template (`<ds>-<hash>`, its `data` the patch that restores the
//! template, its `revision` a counter), which `kubectl rollout history|undo ds` read
//! and apply. The decisions here: which revision is current, which number it gets,
//! and which old ones go past `revisionHistoryLimit`.
//!
//! Pure functions over k8s-openapi types; calls nothing else in skiff.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;

use super::plan::HASH_LABEL;

/// The revision whose data is `data` (the highest-numbered one if several are), and
/// the highest revision number of all.
pub fn find_current(
    revisions: &[Arc<ControllerRevision>],
    data: &serde_json::Value,
) -> (Option<Arc<ControllerRevision>>, i64) {
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let current = revisions
        .iter()
        .filter(|r| r.data.as_ref().is_some_and(|d| d.0 == *data))
        .max_by_key(|r| r.revision)
        .cloned();
    (current, max)
}

/// The template hash a revision stands for: its label, else its name's last part.
pub fn hash_of(revision: &ControllerRevision) -> String {
    if let Some(hash) = revision
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
    {
        return hash.clone();
    }
    let name = revision.metadata.name.as_deref().unwrap_or_default();
    name.rsplit('-').next().unwrap_or(name).to_string()
}

/// The old revisions (not `current`) to delete so at most `limit` remain, oldest
/// first, sparing those whose pods still run (`cleanupHistory`).
pub fn to_delete(
    revisions: &[Arc<ControllerRevision>],
    current: Option<&str>,
    limit: i32,
    live_hashes: &HashSet<String>,
) -> Vec<Arc<ControllerRevision>> {
    let mut old: Vec<Arc<ControllerRevision>> = revisions
        .iter()
        .filter(|r| r.metadata.name.as_deref() != current)
        .cloned()
        .collect();
    let mut excess = old.len().saturating_sub(limit.max(0) as usize);
    old.sort_by_key(|r| r.revision);
    let mut victims = Vec::new();
    for revision in old {
        if excess == 0 {
            break;
        }
        if live_hashes.contains(&hash_of(&revision)) {
            continue;
        }
        victims.push(revision);
        excess -= 1;
    }
    victims
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn revision(name: &str, number: i64, image: &str) -> Arc<ControllerRevision> {
        let hash = name.rsplit('-').next().unwrap();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {HASH_LABEL: hash}},
                "data": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}, "$patch": "replace"}}},
                "revision": number
            }))
            .unwrap(),
        )
    }

    fn data(image: &str) -> serde_json::Value {
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}, "$patch": "replace"}}})
    }

    #[test]
    fn the_current_revision_is_the_one_with_the_template() {
        let all = vec![revision("ds-aaa", 1, "v1"), revision("ds-bbb", 2, "v2")];
        let (current, max) = find_current(&all, &data("v1"));
        assert_eq!(current.unwrap().metadata.name.as_deref(), Some("ds-aaa"));
        assert_eq!(max, 2);
        let (current, _) = find_current(&all, &data("v3"));
        assert!(current.is_none());
        assert_eq!(find_current(&[], &data("v1")).1, 0);
        assert_eq!(hash_of(&all[1]), "bbb");
    }

    #[test]
    fn old_revisions_past_the_limit_go_oldest_first_unless_pods_run_them() {
        let all = vec![
            revision("ds-aaa", 1, "v1"),
            revision("ds-bbb", 2, "v2"),
            revision("ds-ccc", 3, "v3"),
            revision("ds-ddd", 4, "v4"),
        ];
        let none = HashSet::new();
        let names = |v: Vec<Arc<ControllerRevision>>| -> Vec<String> {
            v.iter().map(|r| r.metadata.name.clone().unwrap()).collect()
        };
        assert_eq!(
            names(to_delete(&all, Some("ds-ddd"), 1, &none)),
            ["ds-aaa", "ds-bbb"]
        );
        assert!(to_delete(&all, Some("ds-ddd"), 10, &none).is_empty());
        let live: HashSet<String> = ["aaa".to_string()].into();
        assert_eq!(
            names(to_delete(&all, Some("ds-ddd"), 1, &live)),
            ["ds-bbb", "ds-ccc"]
        );
        assert_eq!(
            names(to_delete(&all, Some("ds-aaa"), 0, &none)),
            ["ds-bbb", "ds-ccc", "ds-ddd"]
        );
    }
}
