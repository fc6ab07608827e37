//! `/openapi/v2` in protobuf: the Swagger 2.0 JSON document re-encoded as gnostic's
//! `openapi.v2.Document` (github.com/google/gnostic, `openapiv2/OpenAPIv2.proto`),
//! the form kubectl asks for. Only what the JSON document holds is encoded: `swagger`,
//! `info`, `paths` (empty) and `definitions`, each schema with its keywords, its
//! `x-` vendor extensions and its `default`/`enum`/`example` values (gnostic's `Any`,
//! carried as JSON text in its `yaml` field: JSON is YAML).
//!
//! Owns: the wire encoding. May call: nothing else in skiff.

use serde_json::{Map, Value};

/// Encodes a Swagger 2.0 document (as `/openapi/v2` serves it in JSON).
pub fn document(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Vec::new();
    string(
        &mut info,
        1,
        doc["info"]["title"].as_str().unwrap_or_default(),
    );
    string(
        &mut info,
        2,
        doc["info"]["version"].as_str().unwrap_or_default(),
    );
    message(&mut out, 2, &info);
    message(&mut out, 8, &[]);
    if let Some(definitions) = doc["definitions"].as_object() {
        message(&mut out, 9, &named_schemas(definitions));
    }
    out
}

/// `Definitions` and `Properties` alike: repeated `NamedSchema { name = 1; value = 2 }`.
fn named_schemas(schemas: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in schemas {
        let mut named = Vec::new();
        string(&mut named, 1, name);
        message(&mut named, 2, &schema(value));
        message(&mut out, 1, &named);
    }
    out
}

/// One `Schema` message.
fn schema(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(fields) = value.as_object() else {
        return out;
    };
    for (key, field) in fields {
        match (key.as_str(), field) {
            ("$ref", Value::String(s)) => string(&mut out, 1, s),
            ("format", Value::String(s)) => string(&mut out, 2, s),
            ("title", Value::String(s)) => string(&mut out, 3, s),
            ("description", Value::String(s)) => string(&mut out, 4, s),
            ("default", v) => message(&mut out, 5, &any(v)),
            ("multipleOf", Value::Number(n)) => double(&mut out, 6, n.as_f64()),
            ("maximum", Value::Number(n)) => double(&mut out, 7, n.as_f64()),
            ("exclusiveMaximum", Value::Bool(b)) => boolean(&mut out, 8, *b),
            ("minimum", Value::Number(n)) => double(&mut out, 9, n.as_f64()),
            ("exclusiveMinimum", Value::Bool(b)) => boolean(&mut out, 10, *b),
            ("maxLength", Value::Number(n)) => int64(&mut out, 11, n.as_i64()),
            ("minLength", Value::Number(n)) => int64(&mut out, 12, n.as_i64()),
            ("pattern", Value::String(s)) => string(&mut out, 13, s),
            ("maxItems", Value::Number(n)) => int64(&mut out, 14, n.as_i64()),
            ("minItems", Value::Number(n)) => int64(&mut out, 15, n.as_i64()),
            ("uniqueItems", Value::Bool(b)) => boolean(&mut out, 16, *b),
            ("maxProperties", Value::Number(n)) => int64(&mut out, 17, n.as_i64()),
            ("minProperties", Value::Number(n)) => int64(&mut out, 18, n.as_i64()),
            ("required", Value::Array(names)) => {
                for name in names.iter().filter_map(Value::as_str) {
                    string(&mut out, 19, name);
                }
            }
            ("enum", Value::Array(values)) => {
                for v in values {
                    message(&mut out, 20, &any(v));
                }
            }
            ("additionalProperties", v) => message(&mut out, 21, &additional_properties(v)),
            ("type", v) => message(&mut out, 22, &type_item(v)),
            ("items", v) => message(&mut out, 23, &items(v)),
            ("allOf", Value::Array(schemas)) => {
                for s in schemas {
                    message(&mut out, 24, &schema(s));
                }
            }
            ("properties", Value::Object(properties)) => {
                message(&mut out, 25, &named_schemas(properties))
            }
            ("discriminator", Value::String(s)) => string(&mut out, 26, s),
            ("readOnly", Value::Bool(b)) => boolean(&mut out, 27, *b),
            ("example", v) => message(&mut out, 30, &any(v)),
            (extension, v) if extension.starts_with("x-") => {
                let mut named = Vec::new();
                string(&mut named, 1, extension);
                message(&mut named, 2, &any(v));
                message(&mut out, 31, &named);
            }
            _ => {}
        }
    }
    out
}

/// `AdditionalPropertiesItem { oneof { Schema schema = 1; bool boolean = 2; } }`.
fn additional_properties(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::Bool(b) => boolean(&mut out, 2, *b),
        other => message(&mut out, 1, &schema(other)),
    }
    out
}

/// `TypeItem { repeated string value = 1; }`: `type` is a name or a list of names.
fn type_item(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::String(s) => string(&mut out, 1, s),
        Value::Array(names) => {
            for name in names.iter().filter_map(Value::as_str) {
                string(&mut out, 1, name);
            }
        }
        _ => {}
    }
    out
}

/// `ItemsItem { repeated Schema schema = 1; }`: one schema or a tuple of them.
fn items(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::Array(schemas) => {
            for s in schemas {
                message(&mut out, 1, &schema(s));
            }
        }
        other => message(&mut out, 1, &schema(other)),
    }
    out
}

/// gnostic's `Any { google.protobuf.Any value = 1; string yaml = 2; }`, as YAML text.
fn any(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 2, &value.to_string());
    out
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;

fn tag(out: &mut Vec<u8>, field: u32, wire_type: u64) {
    varint(out, (u64::from(field) << 3) | wire_type);
}

fn message(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, LENGTH_DELIMITED);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn string(out: &mut Vec<u8>, field: u32, text: &str) {
    message(out, field, text.as_bytes());
}

fn boolean(out: &mut Vec<u8>, field: u32, value: bool) {
    tag(out, field, VARINT);
    varint(out, u64::from(value));
}

fn int64(out: &mut Vec<u8>, field: u32, value: Option<i64>) {
    if let Some(v) = value {
        tag(out, field, VARINT);
        // Two's complement, as protobuf encodes a negative int64.
        varint(out, v as u64);
    }
}

fn double(out: &mut Vec<u8>, field: u32, value: Option<f64>) {
    if let Some(v) = value {
        tag(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One decoded field: its number and either a varint, 8 fixed bytes or a payload.
    #[derive(Debug, PartialEq)]
    enum Field {
        Varint(u64),
        Fixed64([u8; 8]),
        Bytes(Vec<u8>),
    }

    fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0;
        let mut shift = 0;
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    /// Decodes one message into (field number, value) pairs; panics on bad input.
    fn decode(bytes: &[u8]) -> Vec<(u64, Field)> {
        let mut at = 0;
        let mut fields = Vec::new();
        while at < bytes.len() {
            let key = read_varint(bytes, &mut at);
            let field = match key & 7 {
                VARINT => Field::Varint(read_varint(bytes, &mut at)),
                FIXED64 => {
                    let raw: [u8; 8] = bytes[at..at + 8].try_into().unwrap();
                    at += 8;
                    Field::Fixed64(raw)
                }
                LENGTH_DELIMITED => {
                    let len = read_varint(bytes, &mut at) as usize;
                    at += len;
                    Field::Bytes(bytes[at - len..at].to_vec())
                }
                other => panic!("unexpected wire type {other}"),
            };
            fields.push((key >> 3, field));
        }
        fields
    }

    fn bytes_of(fields: &[(u64, Field)], number: u64) -> Vec<Vec<u8>> {
        fields
            .iter()
            .filter_map(|(n, f)| match f {
                Field::Bytes(b) if *n == number => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// The `NamedSchema`s of a `Definitions`/`Properties` message, by name.
    fn named(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        bytes_of(&decode(bytes), 1)
            .iter()
            .map(|entry| {
                let fields = decode(entry);
                (
                    text(&bytes_of(&fields, 1)[0]),
                    bytes_of(&fields, 2)[0].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_document_holds_swagger_info_paths_and_definitions() {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
            "paths": {}, "definitions": {"a.B": {"type": "object"}, "a.C": {"type": "string"}}});
        let fields = decode(&document(&doc));
        assert_eq!(text(&bytes_of(&fields, 1)[0]), "2.0");
        let info = decode(&bytes_of(&fields, 2)[0]);
        assert_eq!(text(&bytes_of(&info, 1)[0]), "Kubernetes");
        assert_eq!(text(&bytes_of(&info, 2)[0]), "v1.32.4");
        assert_eq!(bytes_of(&fields, 8), [Vec::<u8>::new()]);
        let definitions = named(&bytes_of(&fields, 9)[0]);
        let names: Vec<&str> = definitions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.B", "a.C"]);
        let type_item = decode(&bytes_of(&decode(&definitions[1].1), 22)[0]);
        assert_eq!(text(&bytes_of(&type_item, 1)[0]), "string");
    }

    #[test]
    fn schemas_keep_refs_properties_items_maps_and_extensions() {
        let s = json!({
            "description": "a thing",
            "required": ["spec", "kind"],
            "properties": {
                "spec": {"$ref": "#/definitions/a.Spec"},
                "ports": {"type": "array", "items": {"type": "integer", "format": "int32"},
                          "x-kubernetes-list-type": "map"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "minimum": 1.5, "maxLength": 63, "enum": ["A", 2],
            "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}],
            "additionalProperties": false,
        });
        let fields = decode(&schema(&s));
        assert_eq!(text(&bytes_of(&fields, 4)[0]), "a thing");
        let required: Vec<String> = bytes_of(&fields, 19).iter().map(|b| text(b)).collect();
        assert_eq!(required, ["spec", "kind"]);
        assert!(fields.contains(&(9, Field::Fixed64(1.5f64.to_le_bytes()))));
        assert!(fields.contains(&(11, Field::Varint(63))));
        // enum values and extensions are gnostic `Any`s holding JSON (YAML) text.
        let enums: Vec<String> = bytes_of(&fields, 20)
            .iter()
            .map(|any| text(&bytes_of(&decode(any), 2)[0]))
            .collect();
        assert_eq!(enums, ["\"A\"", "2"]);
        let extension = decode(&bytes_of(&fields, 31)[0]);
        assert_eq!(
            text(&bytes_of(&extension, 1)[0]),
            "x-kubernetes-group-version-kind"
        );
        let yaml = text(&bytes_of(&decode(&bytes_of(&extension, 2)[0]), 2)[0]);
        let parsed: Value = serde_json::from_str(&yaml).unwrap();
        assert_eq!(parsed[0]["kind"], "Deployment");
        // additionalProperties: false is the oneof's bool.
        assert_eq!(decode(&bytes_of(&fields, 21)[0]), [(2, Field::Varint(0))]);

        let properties = named(&bytes_of(&fields, 25)[0]);
        let by_name = |n: &str| decode(&properties.iter().find(|(k, _)| k == n).unwrap().1);
        assert_eq!(
            text(&bytes_of(&by_name("spec"), 1)[0]),
            "#/definitions/a.Spec"
        );
        let items = decode(&bytes_of(&by_name("ports"), 23)[0]);
        let item = decode(&bytes_of(&items, 1)[0]);
        assert_eq!(text(&bytes_of(&item, 2)[0]), "int32");
        let map_values = decode(&bytes_of(&by_name("labels"), 21)[0]);
        let value_schema = decode(&bytes_of(&map_values, 1)[0]);
        let value_type = decode(&bytes_of(&value_schema, 22)[0]);
        assert_eq!(text(&bytes_of(&value_type, 1)[0]), "string");
    }

    #[test]
    fn varints_use_seven_bits_per_byte_and_negatives_take_ten() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut negative = Vec::new();
        int64(&mut negative, 1, Some(-1));
        assert_eq!(negative.len(), 1 + 10);
    }
}
