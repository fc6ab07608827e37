//! Start-up repair of stored objects that typed clients cannot decode.
//!
//! Writes now refuse `null` list items (`"command": [null]`, see
//! `validation::null_list_items`), but a store written by an older skiff may hold
//! them, and one such Pod stops every typed watcher (the scheduler, the ReplicaSet
//! controller) cluster-wide: a kube-rs list fails as a whole when one item does not
//! decode. Before the controllers start, every stored object is checked and its
//! `null` list items are dropped (what Kubernetes' own decoder would have done to
//! most of them: a null string or struct becomes its zero value), each repair logged
//! with the object's key and the fields. Nothing is written when nothing needs it,
//! so a start on a full disk still needs no space.
//!
//! May call: the store, `object`, `resources`, `validation`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{object, resources, validation};
use crate::store::{ListRequest, Store, StoreError, WriteOp};

/// Checks every stored object; returns how many were repaired.
pub async fn drop_null_list_items(store: &dyn Store) -> Result<usize, StoreError> {
    let roots: BTreeSet<String> = resources::RESOURCES
        .iter()
        .map(|r| r.prefix(None))
        .collect();
    let mut repaired = 0;
    for root in roots {
        let mut start_after = None;
        loop {
            let page = store
                .list(ListRequest {
                    prefix: root.clone(),
                    start_after: start_after.clone(),
                    limit: 500,
                    at_revision: None,
                })
                .await?;
            for entry in &page.entries {
                if repair_entry(store, entry).await? {
                    repaired += 1;
                }
            }
            match page.entries.last() {
                Some(last) if page.more => start_after = Some(last.key.clone()),
                _ => break,
            }
        }
    }
    Ok(repaired)
}

async fn repair_entry(store: &dyn Store, entry: &crate::store::Entry) -> Result<bool, StoreError> {
    let Ok(mut obj) = object::from_entry(entry) else {
        tracing::error!(key = %entry.key, "stored object is not JSON; left as it is");
        return Ok(false);
    };
    let nulls = validation::null_list_items(&obj);
    if nulls.is_empty() {
        return Ok(false);
    }
    let fields: Vec<&str> = nulls.iter().map(|e| e.field.as_str()).collect();
    tracing::warn!(key = %entry.key, ?fields, "dropping null list items typed clients cannot decode");
    strip(&mut obj);
    let written = store
        .transaction(vec![WriteOp::Update {
            key: entry.key.clone(),
            value: object::to_stored(&obj),
            expected_rev: Some(entry.mod_rev),
        }])
        .await;
    match written {
        Ok(_) => Ok(true),
        // Changed meanwhile: the new version went through validation.
        Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes `null` items from every list in `v`.
fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => m.values_mut().for_each(strip),
        Value::Array(items) => {
            items.retain(|i| !i.is_null());
            items.iter_mut().for_each(strip);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteOptions, SqliteStore};
    use serde_json::json;

    #[tokio::test]
    async fn null_list_items_are_dropped_and_nothing_else_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteOptions {
            path: dir.path().join("state.db"),
        })
        .unwrap();
        let pods = resources::find("", "v1", "pods").unwrap();
        let bad = json!({"kind": "Pod", "metadata": {"name": "bad", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "command": [null, "sh"], "ports": [null]}]}});
        let good = json!({"kind": "Pod", "metadata": {"name": "good", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}]}});
        for obj in [&bad, &good] {
            let key = pods.key(Some("default"), object::name(obj));
            store
                .transaction(vec![WriteOp::Create {
                    key,
                    value: object::to_stored(obj),
                }])
                .await
                .unwrap();
        }
        let good_key = pods.key(Some("default"), "good");
        let good_rev = store.get(&good_key).await.unwrap().unwrap().mod_rev;
        assert_eq!(drop_null_list_items(&store).await.unwrap(), 1);
        let entry = store
            .get(&pods.key(Some("default"), "bad"))
            .await
            .unwrap()
            .unwrap();
        let fixed: Value = serde_json::from_slice(&entry.value).unwrap();
        assert_eq!(fixed["spec"]["containers"][0]["command"], json!(["sh"]));
        assert_eq!(fixed["spec"]["containers"][0]["ports"], json!([]));
        assert_eq!(drop_null_list_items(&store).await.unwrap(), 0);
        for name in ["bad", "good"] {
            let key = pods.key(Some("default"), name);
            let now = store.get(&key).await.unwrap().unwrap();
            let expected = if name == "bad" {
                entry.mod_rev
            } else {
                good_rev
            };
            assert_eq!(now.mod_rev, expected, "{name} was not rewritten again");
        }
    }
}
