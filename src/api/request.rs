//! One API request, parsed ([`Ctx`]): its resource, namespace, query, headers and
//! caller, how it wants objects shaped (metadata only, a Table, the events.k8s.io
//! view), its label and field selectors ([`Filter`]) and reading one object. The
//! object handlers, list, watch and the subresources build on it.
//!
//! May call: `resources`, `object`, `status`, `table`, `events`, `auth` and the shared
//! model's selectors; never the handlers above it.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::auth::Identity;
use super::resources::Resource;
use super::status::ApiError;
use super::{events, json_response, object, table, SharedState};
use crate::model::selector::{FieldSelector, LabelSelector, Selectable};
use crate::store::Entry;

/// One API request, parsed.
pub(super) struct Ctx {
    pub state: SharedState,
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub identity: Option<Identity>,
}

impl Ctx {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub(super) fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true") | Some("1"))
    }

    pub(super) fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `Accept: …;as=PartialObjectMetadata` (metadata-only clients such as a
    /// garbage collector): answer with metadata alone.
    pub fn wants_metadata_only(&self) -> bool {
        self.header(header::ACCEPT)
            .contains("as=PartialObjectMetadata")
    }

    /// The object in the shape the client asked for.
    pub fn shape(&self, obj: Value) -> Value {
        if !self.wants_metadata_only() {
            return obj;
        }
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })
    }

    pub fn wants_table(&self) -> bool {
        self.header(header::ACCEPT).contains("as=Table")
    }

    pub(super) fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    pub(super) fn key(&self, name: &str) -> String {
        self.resource.key(self.namespace.as_deref(), name)
    }

    /// The object as this API version shows it (events.k8s.io converts).
    pub fn present(&self, mut obj: Value) -> Value {
        if self.resource.group == "events.k8s.io" {
            obj = events::from_core(&obj);
        }
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "apiVersion".into(),
                Value::String(self.resource.api_version()),
            );
            map.insert("kind".into(), Value::String(self.resource.kind.into()));
        }
        obj
    }

    pub(super) fn respond(&self, code: StatusCode, obj: &Value) -> Response {
        if self.wants_table() {
            let now = chrono::Utc::now();
            let rv = object::meta_str(obj, "resourceVersion")
                .unwrap_or("")
                .to_string();
            return json_response(
                code,
                &table::table(
                    self.resource.kind,
                    std::slice::from_ref(obj),
                    &rv,
                    None,
                    now,
                ),
            );
        }
        json_response(code, &self.shape(obj.clone()))
    }
}

/// Reads one stored object.
pub(super) async fn read(ctx: &Ctx, name: &str) -> Result<(Entry, Value), ApiError> {
    let entry = ctx
        .state
        .store
        .get(&ctx.key(name))
        .await
        .map_err(|e| ApiError::from_store(e, ctx.resource, name))?
        .ok_or_else(|| ApiError::not_found(ctx.resource, name))?;
    let obj = object::from_entry(&entry)
        .map_err(|e| ApiError::internal(format!("stored object {name} is unreadable: {e}")))?;
    Ok((entry, obj))
}

/// The label and field selectors of a list or watch.
#[derive(Clone)]
pub(super) struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub fn from_query(ctx: &Ctx) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(ctx.param("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
        let fields = FieldSelector::parse(ctx.param("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        fields
            .validate(&ctx.resource.supported_fields())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Filter { labels, fields })
    }

    #[cfg(test)]
    pub fn new(labels: LabelSelector, fields: FieldSelector) -> Self {
        Filter { labels, fields }
    }

    pub fn matches<S: Selectable + ?Sized>(&self, obj: &S) -> bool {
        (self.labels.is_empty() || self.labels.matches_object(obj))
            && (self.fields.is_empty() || self.fields.matches(obj))
    }

    /// Selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The field paths (`spec.nodeName` …) the field selector reads.
    pub fn field_paths(&self) -> impl Iterator<Item = &str> {
        self.fields.fields()
    }

    /// Whether matching reads metadata (labels, or a `metadata.*` field).
    pub fn reads_metadata(&self) -> bool {
        !self.labels.is_empty() || self.fields.fields().any(|f| f.starts_with("metadata."))
    }

    /// The value an `=`/`==` field term pins `field` to, if any.
    pub fn exact_field(&self, field: &str) -> Option<&str> {
        self.fields.exact_value(field)
    }

    /// The one name a `metadata.name=` selector pins, to read a single key.
    pub fn exact_name(&self) -> Option<&str> {
        self.fields.exact_value("metadata.name")
    }
}
