//! Watch streams: a chunked `application/json` stream of `{"type","object"}` lines
//! that stays open until the client leaves or `timeoutSeconds` passes. Objects that
//! stop or start matching the selectors arrive as DELETED or ADDED, as on Kubernetes;
//! Tables are sent when the client asked for them (`kubectl get -w`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::list::list_objects;
use super::request::{Ctx, Filter};
use super::status::ApiError;
use super::table;
use super::watchcache::{self, Decoded};
use super::{rawlist, resources};
use crate::store::{EventKind, Revision, StoreError};

/// Often enough that a watcher resuming from its last bookmark usually finds the
/// watch cache still holding what follows (see `watchcache::RING_BYTES`).
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

type Lines = mpsc::Sender<Result<Bytes, Infallible>>;

pub(super) async fn serve(ctx: Ctx) -> Result<Response, ApiError> {
    let filter = Filter::from_query(&ctx)?;
    let from = match ctx.param("resourceVersion").unwrap_or("") {
        "" | "0" => None,
        rv => Some(
            rv.parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = ctx
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (tx, rx) = mpsc::channel(64);
    // Whose watch this is, for the watch cache's logs (a watcher that falls behind).
    let span = tracing::debug_span!(
        "watch",
        resource = ctx.resource.kind,
        client = ctx.header(header::USER_AGENT)
    );
    let watch = async move {
        let run = stream_events(&ctx, &filter, from, &tx);
        let ended = match timeout {
            Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or(Ok(())),
            None => run.await,
        };
        if let Err(error) = ended {
            let _ = send(&tx, &json!({"type": "ERROR", "object": error.to_status()})).await;
        }
    };
    tokio::spawn(watch.instrument(span));
    let mut response = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response.into_response())
}

async fn send(tx: &Lines, line: &Value) -> bool {
    let mut text = line.to_string();
    text.push('\n');
    tx.send(Ok(Bytes::from(text))).await.is_ok()
}

/// Per-watch state: the selectors, and whether the Table header went out yet.
struct Emitter<'a> {
    ctx: &'a Ctx,
    filter: &'a Filter,
    tx: &'a Lines,
    table: bool,
    sent_columns: bool,
}

impl Emitter<'_> {
    async fn emit(&mut self, kind: &str, obj: Value) -> bool {
        let shown = if self.table {
            let with_columns = !self.sent_columns;
            self.sent_columns = true;
            table::table_for_event(
                self.ctx.resource.kind,
                &obj,
                with_columns,
                chrono::Utc::now(),
            )
        } else {
            self.ctx.shape(obj)
        };
        send(self.tx, &json!({"type": kind, "object": shown})).await
    }

    /// Turns one change into what this watcher should see, if anything.
    async fn event(&mut self, event: &Decoded) -> bool {
        let now_matches = self.filter.matches(&event.view);
        let before = event
            .prev_view
            .as_ref()
            .map(|prev| self.filter.matches(prev));
        let kind = match (&event.kind, before.unwrap_or(now_matches), now_matches) {
            (EventKind::Created, _, true) => "ADDED",
            (EventKind::Deleted, _, true) => "DELETED",
            (EventKind::Updated, true, true) => "MODIFIED",
            (EventKind::Updated, false, true) => "ADDED",
            (EventKind::Updated, true, false) => "DELETED",
            _ => return true,
        };
        if self.table || self.ctx.resource.group == "events.k8s.io" {
            let Some(obj) = event.object() else {
                return true;
            };
            return self.emit(kind, self.ctx.present(obj.clone())).await;
        }
        self.emit_raw(kind, event).await
    }

    /// Writes the event's object from its stored bytes (see `rawlist`).
    async fn emit_raw(&mut self, kind: &str, event: &Decoded) -> bool {
        let api_version = self.ctx.resource.api_version();
        let shape = if self.ctx.wants_metadata_only() {
            rawlist::Shape::MetadataOnly
        } else {
            rawlist::Shape::Full {
                api_version: &api_version,
                kind: self.ctx.resource.kind,
            }
        };
        let mut line = Vec::with_capacity(event.raw.len() + 96);
        line.extend_from_slice(format!("{{\"type\":\"{kind}\",\"object\":").as_bytes());
        if let Err(error) = rawlist::append(&event.raw, event.revision, shape, &mut line) {
            tracing::warn!(key = %event.key, %error, "skipping an unreadable stored object");
            return true;
        }
        line.extend_from_slice(b"}\n");
        self.tx.send(Ok(Bytes::from(line))).await.is_ok()
    }
}

async fn stream_events(
    ctx: &Ctx,
    filter: &Filter,
    from: Option<Revision>,
    tx: &Lines,
) -> Result<(), ApiError> {
    let mut emitter = Emitter {
        ctx,
        filter,
        tx,
        table: ctx.wants_table(),
        sent_columns: false,
    };
    // Without a resourceVersion a watch starts with the current state as ADDED events.
    let start = match from {
        Some(rv) => rv,
        None => {
            let listed = list_objects(ctx, filter, 0).await?;
            for obj in listed.items {
                if !emitter.emit("ADDED", obj).await {
                    return Ok(());
                }
            }
            listed.revision
        }
    };
    let prefix = ctx.resource.prefix(ctx.namespace.as_deref());
    let root = ctx.resource.prefix(None);
    let paths = resources::field_paths(&root);
    let watchcache::Watch {
        mut events,
        progress,
    } = ctx
        .state
        .watch_cache
        .watch(&root, &prefix, start, &paths, interest(filter))
        .await
        .map_err(watch_error)?;
    let bookmarks = ctx.param("allowWatchBookmarks") == Some("true");
    let mut last = start;
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = ticker.tick(), if bookmarks => {
                // Everything this watcher could see up to the cache's last event has
                // reached it: resuming from there skips nothing.
                last = progress.settled().map_or(last, |settled| settled.max(last));
                let bookmark = json!({"type": "BOOKMARK", "object": {
                    "kind": ctx.resource.kind, "apiVersion": ctx.resource.api_version(),
                    "metadata": {"resourceVersion": last.to_string()}}});
                if !send(tx, &bookmark).await {
                    return Ok(());
                }
            }
            next = events.next() => match next {
                None => return Ok(()),
                Some(Err(e)) => return Err(watch_error(e)),
                Some(Ok(event)) => {
                    last = event.revision;
                    if !emitter.event(&event).await {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// What the watch cache offers this watcher (the Emitter decides the event type).
fn interest(filter: &Filter) -> watchcache::Interest {
    if filter.is_empty() {
        return watchcache::Interest::everything();
    }
    let pin = watchcache::INDEXED_FIELDS
        .iter()
        .find_map(|path| Some((*path, filter.exact_field(path)?.to_string())));
    let filter = filter.clone();
    watchcache::Interest {
        pin,
        concerns: std::sync::Arc::new(move |event| {
            filter.matches(&event.view)
                || event.prev_view.as_ref().is_some_and(|p| filter.matches(p))
        }),
    }
}

fn watch_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted { requested, oldest } => {
            ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
        }
        other => ApiError::internal(other.to_string()),
    }
}
