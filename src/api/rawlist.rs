//! List items written straight from stored bytes: the stored JSON of each object is
//! copied into the response with its `apiVersion`, `kind` and `resourceVersion`
//! spliced in, instead of being decoded into a tree and encoded again. Selectors are
//! matched on a small view of the object (its name, namespace and labels, and the
//! values at the field paths a field selector names), so a list of 30,000 pods costs
//! about one pass over their bytes and one buffer of their size.
//!
//! Owns: the raw item encoding and the filter view. May call: nothing outside the API.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::request::Filter;
use crate::model::selector::{field_text, value_text, Selectable};
use crate::store::Revision;

/// An object's top-level fields, each still as its stored JSON text.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(TopLevel(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

impl TopLevel<'_> {
    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// How each item is written.
#[derive(Clone, Copy, Debug)]
pub(super) enum Shape<'a> {
    /// The whole object, with this apiVersion and kind.
    Full { api_version: &'a str, kind: &'a str },
    /// `PartialObjectMetadata`: metadata only.
    MetadataOnly,
}

#[derive(Debug, thiserror::Error)]
#[error("stored object is unreadable: {0}")]
pub(super) struct Unreadable(#[from] serde_json::Error);

/// Appends one stored object to `out` as the client sees it, if it passes `filter`;
/// returns whether it did.
pub(super) fn append_item(
    stored: &[u8],
    revision: Revision,
    filter: &Filter,
    shape: Shape,
    out: &mut Vec<u8>,
) -> Result<bool, Unreadable> {
    let top: TopLevel = serde_json::from_slice(stored)?;
    if !filter.is_empty()
        && !filter.matches(&view_from(
            &top,
            filter.reads_metadata(),
            filter.field_paths(),
        )?)
    {
        return Ok(false);
    }
    write_item(&top, revision, shape, out)?;
    Ok(true)
}

/// Appends one stored object to `out` as the client sees it.
pub(super) fn append(
    stored: &[u8],
    revision: Revision,
    shape: Shape,
    out: &mut Vec<u8>,
) -> Result<(), Unreadable> {
    let top: TopLevel = serde_json::from_slice(stored)?;
    write_item(&top, revision, shape, out)
}

fn write_item(
    top: &TopLevel,
    revision: Revision,
    shape: Shape,
    out: &mut Vec<u8>,
) -> Result<(), Unreadable> {
    let metadata = top.get("metadata").map(RawValue::get).unwrap_or("{}");
    match shape {
        Shape::Full { api_version, kind } => {
            out.extend_from_slice(b"{\"apiVersion\":");
            serde_json::to_writer(&mut *out, api_version)?;
            out.extend_from_slice(b",\"kind\":");
            serde_json::to_writer(&mut *out, kind)?;
            for (key, value) in &top.0 {
                if matches!(key.as_ref(), "apiVersion" | "kind") {
                    continue;
                }
                out.push(b',');
                serde_json::to_writer(&mut *out, key.as_ref())?;
                out.push(b':');
                if key == "metadata" {
                    splice_resource_version(value.get(), revision, out);
                } else {
                    out.extend_from_slice(value.get().as_bytes());
                }
            }
            if top.get("metadata").is_none() {
                out.extend_from_slice(b",\"metadata\":");
                splice_resource_version("{}", revision, out);
            }
            out.push(b'}');
        }
        Shape::MetadataOnly => {
            out.extend_from_slice(
                b"{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
            );
            splice_resource_version(metadata, revision, out);
            out.push(b'}');
        }
    }
    Ok(())
}

/// Writes a metadata object with `resourceVersion` added (stored objects never carry
/// one: the store assigns it).
fn splice_resource_version(metadata: &str, revision: Revision, out: &mut Vec<u8>) {
    let inner = metadata
        .trim()
        .strip_prefix('{')
        .and_then(|m| m.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    out.extend_from_slice(format!("{{\"resourceVersion\":\"{revision}\"").as_bytes());
    if !inner.is_empty() {
        out.push(b',');
        out.extend_from_slice(inner.as_bytes());
    }
    out.push(b'}');
}

/// What selectors read of a stored object, kept small: the watch cache holds one per
/// event and one for the version it replaced. Its name, namespace and labels, and the
/// text at each field path (dotted, such as `spec.nodeName`) the object has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View<'p> {
    /// (path, text) for `metadata.name`, `metadata.namespace` and each asked-for path
    /// that is present.
    fields: Box<[(&'p str, Box<str>)]>,
    /// Sorted by key.
    labels: Box<[Label]>,
}

/// A label's key and its value as text.
type Label = (Box<str>, Box<str>);

impl View<'_> {
    /// Roughly the heap the view holds (each allocation rounded up as malloc does).
    pub fn heap_bytes(&self) -> usize {
        let text = |s: &str| (s.len() + 8).max(24) + 8;
        let fields: usize = self.fields.iter().map(|(_, v)| 32 + text(v)).sum();
        let labels: usize = self
            .labels
            .iter()
            .map(|(k, v)| 32 + text(k) + text(v))
            .sum();
        fields + labels
    }
}

impl Selectable for View<'_> {
    fn label(&self, key: &str) -> Option<Cow<'_, str>> {
        let found = self.labels.binary_search_by(|(k, _)| k.as_ref().cmp(key));
        found.ok().map(|i| Cow::Borrowed(self.labels[i].1.as_ref()))
    }

    fn field(&self, path: &str) -> Cow<'_, str> {
        match self.fields.iter().find(|(p, _)| *p == path) {
            Some((_, text)) => Cow::Borrowed(text.as_ref()),
            None => field_text(path, None),
        }
    }
}

/// The view of a stored object with its metadata and the values at `paths`.
pub(super) fn view<'p>(
    stored: &[u8],
    paths: impl Iterator<Item = &'p str>,
) -> Result<View<'p>, Unreadable> {
    let top: TopLevel = serde_json::from_slice(stored)?;
    view_from(&top, true, paths)
}

/// The view, with the metadata only when `with_metadata` (label selectors and
/// `metadata.*` fields read it; parsing it is most of a view's cost).
fn view_from<'p>(
    top: &TopLevel,
    with_metadata: bool,
    paths: impl Iterator<Item = &'p str>,
) -> Result<View<'p>, Unreadable> {
    let mut fields = Vec::new();
    let mut labels = Vec::new();
    let metadata = match top.get("metadata").filter(|_| with_metadata) {
        Some(raw) if raw.get().trim_start().starts_with('{') => {
            Some(serde_json::from_str::<TopLevel>(raw.get())?)
        }
        _ => None,
    };
    if let Some(metadata) = &metadata {
        for (path, key) in [
            ("metadata.name", "name"),
            ("metadata.namespace", "namespace"),
        ] {
            if let Some(text) = text_at(path, metadata.get(key), &[])? {
                fields.push((path, text));
            }
        }
        labels = label_texts(metadata.get("labels"))?;
    }
    for path in paths {
        let mut segments = path.split('.');
        let first = segments.next().unwrap_or_default();
        let rest: Vec<&str> = segments.collect();
        let found = match (first, &metadata) {
            ("metadata", Some(_)) if fields.iter().any(|(p, _)| *p == path) => continue,
            ("metadata", Some(metadata)) => match rest.split_first() {
                Some((key, deeper)) => text_at(path, metadata.get(key), deeper)?,
                None => continue,
            },
            ("metadata", None) => continue,
            _ => text_at(path, top.get(first), &rest)?,
        };
        if let Some(text) = found {
            fields.push((path, text));
        }
    }
    Ok(View {
        fields: fields.into_boxed_slice(),
        labels: labels.into_boxed_slice(),
    })
}

/// The text `path` compares as, found under `raw` at `rest`; None when missing.
fn text_at(
    path: &str,
    raw: Option<&RawValue>,
    rest: &[&str],
) -> Result<Option<Box<str>>, Unreadable> {
    let leaf = find(raw, rest)?;
    Ok(leaf
        .as_ref()
        .filter(|v| !v.is_null())
        .map(|v| field_text(path, Some(v)).into()))
}

/// The labels as (key, text) pairs sorted by key.
fn label_texts(raw: Option<&RawValue>) -> Result<Vec<Label>, Unreadable> {
    let Some(raw) = raw.filter(|r| r.get().trim_start().starts_with('{')) else {
        return Ok(Vec::new());
    };
    let pairs: TopLevel = serde_json::from_str(raw.get())?;
    let mut labels = pairs
        .0
        .iter()
        .map(|(key, value)| {
            let value: Value = serde_json::from_str(value.get())?;
            Ok((key.as_ref().into(), value_text(&value).into()))
        })
        .collect::<Result<Vec<_>, Unreadable>>()?;
    labels.sort_unstable();
    Ok(labels)
}

/// The value under `raw` at `path`, parsing only the objects on the way.
fn find(raw: Option<&RawValue>, path: &[&str]) -> Result<Option<Value>, Unreadable> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let Some((next, rest)) = path.split_first() else {
        return Ok(Some(serde_json::from_str(raw.get())?));
    };
    if !raw.get().trim_start().starts_with('{') {
        return Ok(None);
    }
    let fields: TopLevel = serde_json::from_str(raw.get())?;
    find(fields.get(next), rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::selector::{FieldSelector, LabelSelector};
    use serde_json::json;

    fn filter(labels: &str, fields: &str) -> Filter {
        Filter::new(
            LabelSelector::parse(labels).unwrap(),
            FieldSelector::parse(fields).unwrap(),
        )
    }

    fn item(stored: &Value, filter: &Filter, shape: Shape) -> Option<Value> {
        let mut out = Vec::new();
        let bytes = serde_json::to_vec(stored).unwrap();
        append_item(&bytes, 42, filter, shape, &mut out)
            .unwrap()
            .then(|| serde_json::from_slice(&out).unwrap())
    }

    const POD: Shape = Shape::Full {
        api_version: "v1",
        kind: "Pod",
    };

    #[test]
    fn items_equal_the_decoded_object_with_its_resource_version() {
        let stored = json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "a", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        });
        let mut expected = stored.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(item(&stored, &filter("", ""), POD), Some(expected));
    }

    #[test]
    fn kind_and_version_are_added_when_missing_and_metadata_may_be_empty() {
        let got = item(
            &json!({"metadata": {}, "data": {"k": "v"}}),
            &filter("", ""),
            POD,
        );
        assert_eq!(
            got,
            Some(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"resourceVersion": "42"}, "data": {"k": "v"}}))
        );
        let got = item(&json!({"data": {}}), &filter("", ""), POD).unwrap();
        assert_eq!(got["metadata"], json!({"resourceVersion": "42"}));
    }

    #[test]
    fn selectors_see_labels_and_named_fields() {
        let stored = json!({"metadata": {"name": "a", "namespace": "x", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}});
        assert!(item(&stored, &filter("app=web", ""), POD).is_some());
        assert!(item(&stored, &filter("app!=web", ""), POD).is_none());
        assert!(item(&stored, &filter("", "spec.nodeName=n1"), POD).is_some());
        assert!(item(&stored, &filter("", "spec.nodeName=n2"), POD).is_none());
        assert!(item(&stored, &filter("app", "status.phase!=Running"), POD).is_some());
        assert!(item(&stored, &filter("", "metadata.namespace=x"), POD).is_some());
    }

    #[test]
    fn views_hold_selectable_metadata_and_the_named_leaves_only() {
        let stored = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "web"},
                "uid": "u", "ownerReferences": [{"uid": "o"}]},
            "spec": {"nodeName": "n1", "containers": [1]},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}, "source": {"component": "c"}});
        let bytes = serde_json::to_vec(&stored).unwrap();
        let paths = [
            "spec.nodeName",
            "status.phase",
            "source",
            "spec.missing.deeper",
            "metadata.name",
        ];
        let view = view(&bytes, paths.into_iter()).unwrap();
        assert_eq!(view.fields.len(), 5, "{view:?}");
        for (path, text) in [
            ("metadata.name", "a"),
            ("metadata.namespace", "ns"),
            ("spec.nodeName", "n1"),
            ("status.phase", "Running"),
            ("source", "c"),
            ("spec.missing.deeper", ""),
            ("status.podIP", ""),
        ] {
            assert_eq!(view.field(path), text, "{path}");
        }
        assert_eq!(view.label("app").as_deref(), Some("web"));
        assert_eq!(view.label("uid"), None);
    }

    #[test]
    fn metadata_only_items_are_partial_object_metadata() {
        let stored = json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"x": 1}});
        assert_eq!(
            item(&stored, &filter("", ""), Shape::MetadataOnly),
            Some(
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": "42", "name": "a", "uid": "u"}})
            )
        );
    }

    #[test]
    fn escaped_keys_and_strings_survive() {
        let stored = json!({"metadata": {"name": "a", "annotations": {"q\"k": "line\nnext \u{e9}"}},
            "we\"ird": "}{"});
        let got = item(&stored, &filter("", ""), POD).unwrap();
        assert_eq!(got["we\"ird"], json!("}{"));
        assert_eq!(
            got["metadata"]["annotations"]["q\"k"],
            json!("line\nnext \u{e9}")
        );
    }

    #[test]
    fn unreadable_bytes_are_an_error() {
        let mut out = Vec::new();
        assert!(append_item(b"{\"metadata\":", 1, &filter("", ""), POD, &mut out).is_err());
        assert!(append_item(b"[1]", 1, &filter("", ""), POD, &mut out).is_err());
    }
}
