//! Small helpers over objects held as JSON: metadata fields, timestamps, names.

use rand::Rng;
use serde_json::{Map, Value};

use crate::store::{Entry, Revision};

/// Kubernetes' RFC 3339 timestamp with second precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Five characters as `generateName` and ReplicaSets use (no vowels, so no words).
pub fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// The metadata map, created if missing or not a map.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("just made an object");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    metadata(obj).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|t| !t.is_null()))
}

/// Parses a stored entry into the object clients see, resourceVersion included.
pub fn from_entry(entry: &Entry) -> Result<Value, serde_json::Error> {
    let mut obj: Value = serde_json::from_slice(&entry.value)?;
    set_resource_version(&mut obj, entry.mod_rev);
    Ok(obj)
}

pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    metadata_mut(obj).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
}

/// The bytes stored for an object: it without its resourceVersion, which the store
/// assigns.
pub fn to_stored(obj: &Value) -> bytes::Bytes {
    let mut obj = obj.clone();
    metadata_mut(&mut obj).remove("resourceVersion");
    bytes::Bytes::from(obj.to_string())
}

/// The resourceVersion a client sent, if any: empty means "unconditional".
pub fn client_resource_version(obj: &Value) -> Result<Option<Revision>, String> {
    match meta_str(obj, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(rv) => rv
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid resourceVersion {rv:?}: must be a number")),
    }
}

/// Everything of an object except metadata and status: what `generation` tracks.
pub fn spec_of(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(map) = copy.as_object_mut() {
        for field in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(field);
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_form_drops_the_resource_version() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let stored: Value = serde_json::from_slice(&to_stored(&obj)).unwrap();
        assert_eq!(stored, json!({"metadata": {"name": "a"}}));
        assert_eq!(client_resource_version(&obj), Ok(Some(7)));
    }

    #[test]
    fn suffixes_have_the_asked_length() {
        assert_eq!(random_suffix(5).len(), 5);
        assert!(now_rfc3339().ends_with('Z'));
    }
}
