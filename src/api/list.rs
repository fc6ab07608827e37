//! Reading a list: the stored objects under a resource's prefix, page by page at one
//! revision, filtered, with `continue` tokens and `resourceVersionMatch=Exact`. The
//! list handler and watch's initial list share it.
//!
//! May call: the store, `request` (the parsed request and its filter), `object` and
//! `status`.

use base64::Engine;
use serde_json::Value;

use super::object;
use super::request::{Ctx, Filter};
use super::status::ApiError;
use crate::store::{Entry, ListRequest, Revision, StoreError};

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, start: &str) -> String {
    let token = ContinueToken {
        rv,
        start: start.to_string(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::bad_request(format!("invalid continue token {token:?}")))
}

/// The items a list returns, the revision it was read at, and where to continue.
pub(super) struct Listed<T = Value> {
    pub items: Vec<T>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// The objects of a list, decoded, filtered and presented.
pub(super) async fn list_objects(
    ctx: &Ctx,
    filter: &Filter,
    limit: usize,
) -> Result<Listed, ApiError> {
    scan(ctx, filter, limit, |entry| {
        let obj = object::from_entry(entry).map_err(|e| {
            ApiError::internal(format!("stored object {} is unreadable: {e}", entry.key))
        })?;
        Ok(filter.matches(&obj).then(|| ctx.present(obj)))
    })
    .await
}

/// Walks the stored objects a list covers, page by page at one revision, and keeps
/// what `accept` makes of them (`None`: filtered out) until `limit` items are kept.
pub(super) async fn scan<T>(
    ctx: &Ctx,
    filter: &Filter,
    limit: usize,
    mut accept: impl FnMut(&Entry) -> Result<Option<T>, ApiError>,
) -> Result<Listed<T>, ApiError> {
    let store = &ctx.state.store;
    let (mut start_after, mut at_revision) = match ctx.param("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let token = decode_continue(token)?;
            (Some(token.start), Some(token.rv))
        }
        None => (None, exact_revision(ctx)?),
    };
    // One key holds the name only within one namespace (or for cluster-scoped
    // kinds); across namespaces (`-A`) the name is matched on every object.
    let one_key = ctx.namespace.is_some() || !ctx.resource.namespaced;
    if let (Some(name), None, true) = (filter.exact_name(), &start_after, one_key) {
        return scan_one(ctx, name, at_revision, accept).await;
    }
    let prefix = ctx.resource.prefix(ctx.namespace.as_deref());
    let page_size = if limit == 0 { 0 } else { limit.max(500) };
    let mut items = Vec::new();
    loop {
        let page = store
            .list(ListRequest {
                prefix: prefix.clone(),
                start_after: start_after.clone(),
                limit: page_size,
                at_revision,
            })
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => ApiError::from_store(other, ctx.resource, ""),
            })?;
        at_revision = Some(page.revision);
        let count = page.entries.len();
        for (i, entry) in page.entries.iter().enumerate() {
            if let Some(item) = accept(entry)? {
                items.push(item);
            }
            if limit > 0 && items.len() == limit {
                let more = i + 1 < count || page.more;
                let token = more.then(|| encode_continue(page.revision, &entry.key));
                return Ok(Listed {
                    items,
                    revision: page.revision,
                    continue_token: token,
                });
            }
        }
        match page.entries.last() {
            Some(last) if page.more => start_after = Some(last.key.clone()),
            _ => {
                return Ok(Listed {
                    items,
                    revision: page.revision,
                    continue_token: None,
                })
            }
        }
    }
}

/// A list narrowed to one name by `fieldSelector=metadata.name=X` (kubectl's waits).
async fn scan_one<T>(
    ctx: &Ctx,
    name: &str,
    at: Option<Revision>,
    mut accept: impl FnMut(&Entry) -> Result<Option<T>, ApiError>,
) -> Result<Listed<T>, ApiError> {
    let store = &ctx.state.store;
    let page = store
        .list(ListRequest {
            prefix: ctx.key(name),
            start_after: None,
            limit: 0,
            at_revision: at,
        })
        .await
        .map_err(|e| ApiError::from_store(e, ctx.resource, name))?;
    let mut items = Vec::new();
    let key = ctx.key(name);
    for entry in page.entries.iter().filter(|e| e.key == key) {
        if let Some(item) = accept(entry)? {
            items.push(item);
        }
    }
    Ok(Listed {
        items,
        revision: page.revision,
        continue_token: None,
    })
}

/// `resourceVersion=N&resourceVersionMatch=Exact` reads at N; anything else the newest.
fn exact_revision(ctx: &Ctx) -> Result<Option<Revision>, ApiError> {
    if ctx.param("resourceVersionMatch") != Some("Exact") {
        return Ok(None);
    }
    let rv = ctx.param("resourceVersion").unwrap_or("");
    rv.parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(42, "/registry/core/pods/default/a");
        let back = decode_continue(&token).unwrap();
        assert_eq!(
            (back.rv, back.start.as_str()),
            (42, "/registry/core/pods/default/a")
        );
        assert!(decode_continue("!!").is_err());
    }
}
