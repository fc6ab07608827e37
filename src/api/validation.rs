//! Server-side validation: the checks Kubernetes 1.32 runs on create and update
//! (`pkg/apis/core/validation`, `pkg/apis/apps/validation`, apimachinery's
//! ObjectMeta and name rules), reporting every problem as a [`FieldError`]
//! whose `message` is Kubernetes' own text (`Invalid value: -1: must be greater
//! than or equal to 0`, `Required value`, `Unsupported value: ...`).
//!
//! Owns: `validate`, the DNS name rules, `parse_quantity`, and the per-kind
//! rule table below. Runs after defaulting (see `defaults.rs`).
//! Calls: `crate::model::selector` (label key/value rules and label-selector matching),
//! and `super::defaults::volume_source_keys`.
//!
//! Never panics: a value of the wrong JSON type becomes a `FieldError`.
//!
//! Deliberate differences from Kubernetes: a Pod update may set `spec.nodeName`
//! once (skiff binds through the update path); Endpoints may point at loopback
//! and link-local addresses (skiff serves from the host); `Not found` errors
//! carry reason `FieldValueInvalid` (there is no NotFound reason here); env var
//! names use the strict (pre-relaxed) rule.

mod batch;

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::defaults::volume_source_keys;
pub use crate::model::quantity::parse_quantity;
use crate::model::quantity::QUANTITY_FORMAT_MSG;
use crate::model::quote::go_quote;
use crate::model::selector::{validate_label_key, validate_label_value, LabelSelector};

mod storage;

type Obj = Map<String, Value>;

/// One validation problem: `field` (e.g. `spec.replicas`) and the message that
/// follows `field: ` in Kubernetes' error text.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub reason: CauseReason,
    pub message: String,
}

/// The `reason` of a Status cause.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CauseReason {
    Invalid,
    Required,
    NotSupported,
    Duplicate,
    TooLong,
    Forbidden,
}

impl CauseReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            CauseReason::Invalid => "FieldValueInvalid",
            CauseReason::Required => "FieldValueRequired",
            CauseReason::NotSupported => "FieldValueNotSupported",
            CauseReason::Duplicate => "FieldValueDuplicate",
            CauseReason::TooLong => "FieldValueTooLong",
            CauseReason::Forbidden => "FieldValueForbidden",
        }
    }
}

/// Validates a create (old = None) or an update (old = Some(previous stored
/// object)), after defaulting. Whether `metadata.namespace` is expected follows
/// from the kind (Namespace and Node are cluster-scoped; unknown kinds may have
/// either). Returns every problem found, empty = valid.
pub fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut e = Errs::default();
    let Some(root) = obj.as_object() else {
        e.invalid("", Bad::Json(obj), "must be an object");
        return e.finish();
    };
    let rules = kind_rules(kind);
    validate_meta(&mut e, root, rules.name, rules.scope);
    (rules.spec)(&mut e, root);
    if let Some(old_root) = old.and_then(Value::as_object) {
        validate_meta_update(&mut e, root, old_root);
        (rules.update)(&mut e, root, old_root);
    }
    e.finish()
}

/// Every `null` list item anywhere in `obj` (`"command": [null]`): refused on
/// every write, since typed clients (the controllers' watches) cannot decode them.
/// Runs before defaulting, on any kind.
pub fn null_list_items(obj: &Value) -> Vec<FieldError> {
    fn walk(e: &mut Errs, v: &Value, path: &str) {
        match v {
            Value::Object(m) => {
                for (k, item) in m {
                    walk(e, item, &child(path, k));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = index(path, i);
                    if item.is_null() {
                        e.required(&at, "list items must not be null");
                    } else {
                        walk(e, item, &at);
                    }
                }
            }
            _ => {}
        }
    }
    let mut e = Errs::default();
    walk(&mut e, obj, "");
    e.finish()
}

// ---------------------------------------------------------------------------
// Per-kind rule table
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Namespaced,
    Cluster,
    Either,
}

type SpecRule = fn(&mut Errs, &Obj);
type UpdateRule = fn(&mut Errs, &Obj, &Obj);

struct KindRules {
    name: NameRule,
    scope: Scope,
    spec: SpecRule,
    update: UpdateRule,
}

fn kind_rules(kind: &str) -> KindRules {
    use NameRule::*;
    use Scope::*;
    let (name, scope, spec, update): (NameRule, Scope, SpecRule, UpdateRule) = match kind {
        "Pod" => (Subdomain, Namespaced, validate_pod, validate_pod_update),
        "Deployment" => (
            Subdomain,
            Namespaced,
            validate_deployment,
            validate_selector_update,
        ),
        "ReplicaSet" => (
            Subdomain,
            Namespaced,
            validate_replica_set,
            validate_selector_update,
        ),
        "Job" => (
            Subdomain,
            Namespaced,
            batch::validate_job,
            batch::validate_job_update,
        ),
        "CronJob" => (
            Subdomain,
            Namespaced,
            batch::validate_cron_job,
            no_update_rules,
        ),
        "DaemonSet" => (
            Subdomain,
            Namespaced,
            validate_daemon_set,
            validate_selector_update,
        ),
        "Service" => (
            Dns1035,
            Namespaced,
            validate_service,
            validate_service_update,
        ),
        "Namespace" => (Label, Cluster, validate_namespace, no_update_rules),
        "Node" => (Subdomain, Cluster, validate_node, validate_node_update),
        "ConfigMap" => (
            Subdomain,
            Namespaced,
            validate_config_map,
            validate_config_map_update,
        ),
        "Secret" => (
            Subdomain,
            Namespaced,
            validate_secret,
            validate_secret_update,
        ),
        "Event" => (Subdomain, Namespaced, validate_event, no_update_rules),
        "Endpoints" => (Subdomain, Namespaced, validate_endpoints, no_update_rules),
        "EndpointSlice" => (
            Subdomain,
            Namespaced,
            validate_endpoint_slice,
            validate_endpoint_slice_update,
        ),
        "ServiceAccount" => (
            Subdomain,
            Namespaced,
            validate_service_account,
            no_update_rules,
        ),
        "Lease" => (Subdomain, Namespaced, validate_lease, no_update_rules),
        "Role" => (PathSegment, Namespaced, validate_role, no_update_rules),
        "ClusterRole" => (PathSegment, Cluster, validate_cluster_role, no_update_rules),
        "RoleBinding" => (
            PathSegment,
            Namespaced,
            validate_role_binding,
            validate_role_ref_update,
        ),
        "ClusterRoleBinding" => (
            PathSegment,
            Cluster,
            validate_cluster_role_binding,
            validate_role_ref_update,
        ),
        "ControllerRevision" => (
            Subdomain,
            Namespaced,
            validate_controller_revision,
            validate_controller_revision_update,
        ),
        "PersistentVolumeClaim" => (
            Subdomain,
            Namespaced,
            storage::validate_pvc,
            storage::validate_pvc_update,
        ),
        "PersistentVolume" => (
            Subdomain,
            Cluster,
            storage::validate_pv,
            storage::validate_pv_update,
        ),
        "StorageClass" => (
            Subdomain,
            Cluster,
            storage::validate_storage_class,
            storage::validate_storage_class_update,
        ),
        _ => (PathSegment, Either, no_spec_rules, no_update_rules),
    };
    KindRules {
        name,
        scope,
        spec,
        update,
    }
}

fn no_spec_rules(_: &mut Errs, _: &Obj) {}

fn no_update_rules(_: &mut Errs, _: &Obj, _: &Obj) {}

// ---------------------------------------------------------------------------
// Error collection and Kubernetes' value printing
// ---------------------------------------------------------------------------

/// A bad value, printed as Kubernetes prints it after "Invalid value: ".
enum Bad<'a> {
    Str(&'a str),
    Int(i64),
    Json(&'a Value),
    /// Already in Go `%#v` syntax.
    Go(String),
    Null,
}

fn render(bad: &Bad) -> String {
    match bad {
        Bad::Str(s) => go_quote(s),
        Bad::Int(n) => n.to_string(),
        Bad::Json(v) => render_json(v),
        Bad::Go(s) => s.clone(),
        Bad::Null => "null".to_string(),
    }
}

fn render_json(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(m) if m.values().all(Value::is_string) => go_string_map(Some(v)),
        Value::Array(a) if a.iter().all(Value::is_string) => go_string_slice(a),
        other => other.to_string(),
    }
}

/// Go's `%#v` of a `map[string]string` (keys sorted, as fmt prints maps).
fn go_string_map(v: Option<&Value>) -> String {
    let Some(m) = v.and_then(Value::as_object) else {
        return "map[string]string(nil)".to_string();
    };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let items: Vec<String> = keys
        .iter()
        .map(|k| format!("{}:{}", go_quote(k), render_json(&m[k.as_str()])))
        .collect();
    format!("map[string]string{{{}}}", items.join(", "))
}

/// Go's `%#v` of a `[]string`.
fn go_string_slice(items: &[Value]) -> String {
    let items: Vec<String> = items.iter().map(render_json).collect();
    format!("[]string{{{}}}", items.join(", "))
}

fn go_opt_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        Some(a) => go_string_slice(a),
        None => "[]string(nil)".to_string(),
    }
}

/// Go's `%#v` of a `metav1.LabelSelector`.
fn go_label_selector(sel: Option<&Value>) -> String {
    let labels = go_string_map(sel.and_then(|s| s.get("matchLabels")));
    let exprs = match sel
        .and_then(|s| s.get("matchExpressions"))
        .and_then(Value::as_array)
    {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        render_json(r.get("key").unwrap_or(&Value::Null)),
                        render_json(r.get("operator").unwrap_or(&Value::Null)),
                        go_opt_string_slice(r.get("values")),
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// Go's `%#v` of an `intstr.IntOrString`.
fn go_int_or_string(v: &IntOrStr) -> String {
    match v {
        IntOrStr::Int(n) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        IntOrStr::Str(s) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
    }
}

/// Collects errors with Kubernetes' message shapes.
#[derive(Default)]
struct Errs(Vec<FieldError>);

impl Errs {
    fn add(&mut self, field: &str, reason: CauseReason, message: String) {
        self.0.push(FieldError {
            field: field.to_string(),
            reason,
            message,
        });
    }

    fn invalid(&mut self, field: &str, value: Bad, detail: &str) {
        let msg = body("Invalid value", Some(render(&value)), detail);
        self.add(field, CauseReason::Invalid, msg);
    }

    fn required(&mut self, field: &str, detail: &str) {
        self.add(
            field,
            CauseReason::Required,
            body("Required value", None, detail),
        );
    }

    fn not_supported(&mut self, field: &str, value: Bad, valid: &[&str]) {
        let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
        let detail = if valid.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        let msg = body("Unsupported value", Some(render(&value)), &detail);
        self.add(field, CauseReason::NotSupported, msg);
    }

    fn duplicate(&mut self, field: &str, value: Bad) {
        self.duplicate_with_detail(field, value, "");
    }

    fn duplicate_with_detail(&mut self, field: &str, value: Bad, detail: &str) {
        let msg = body("Duplicate value", Some(render(&value)), detail);
        self.add(field, CauseReason::Duplicate, msg);
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.add(
            field,
            CauseReason::Forbidden,
            body("Forbidden", None, detail),
        );
    }

    fn too_long(&mut self, field: &str, max: usize) {
        let detail = format!("must have at most {max} bytes");
        self.add(field, CauseReason::TooLong, body("Too long", None, &detail));
    }

    /// Kubernetes' `NotFound`; reported with reason Invalid (no NotFound reason here).
    fn not_found(&mut self, field: &str, value: Bad) {
        let msg = body("Not found", Some(render(&value)), "");
        self.add(field, CauseReason::Invalid, msg);
    }

    fn count(&self) -> usize {
        self.0.len()
    }

    /// The errors, without exact repeats (as Kubernetes' aggregate drops them).
    fn finish(self) -> Vec<FieldError> {
        let mut seen = HashSet::new();
        self.0
            .into_iter()
            .filter(|err| seen.insert((err.field.clone(), err.message.clone())))
            .collect()
    }
}

fn body(kind: &str, value: Option<String>, detail: &str) -> String {
    let mut s = kind.to_string();
    if let Some(v) = value {
        s.push_str(": ");
        s.push_str(&v);
    }
    if !detail.is_empty() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s
}

// ---------------------------------------------------------------------------
// Field paths and typed reads (a wrong type is reported, never a panic)
// ---------------------------------------------------------------------------

fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

fn key_path(parent: &str, key: &str) -> String {
    format!("{parent}[{key}]")
}

/// The field if present and not null.
fn get<'a>(m: &'a Obj, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn as_str<'a>(e: &mut Errs, v: &'a Value, path: &str) -> Option<&'a str> {
    match v {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => {
            e.invalid(path, Bad::Json(other), "must be a string");
            None
        }
    }
}

fn as_int(e: &mut Errs, v: &Value, path: &str) -> Option<i64> {
    match v.as_i64() {
        Some(n) => Some(n),
        None if v.is_null() => None,
        None => {
            e.invalid(path, Bad::Json(v), "must be an integer");
            None
        }
    }
}

fn as_obj<'a>(e: &mut Errs, v: &'a Value, path: &str) -> Option<&'a Obj> {
    match v {
        Value::Object(m) => Some(m),
        Value::Null => None,
        other => {
            e.invalid(path, Bad::Json(other), "must be an object");
            None
        }
    }
}

fn as_arr<'a>(e: &mut Errs, v: &'a Value, path: &str) -> &'a [Value] {
    match v {
        Value::Array(a) => a,
        Value::Null => &[],
        other => {
            e.invalid(path, Bad::Json(other), "must be a list");
            &[]
        }
    }
}

/// String field `key` of `m` ("" when absent; a wrong type is reported).
fn str_at<'a>(e: &mut Errs, m: &'a Obj, parent: &str, key: &str) -> &'a str {
    get(m, key)
        .and_then(|v| as_str(e, v, &child(parent, key)))
        .unwrap_or_default()
}

fn opt_str_at<'a>(e: &mut Errs, m: &'a Obj, parent: &str, key: &str) -> Option<&'a str> {
    get(m, key).and_then(|v| as_str(e, v, &child(parent, key)))
}

fn int_at(e: &mut Errs, m: &Obj, parent: &str, key: &str) -> Option<i64> {
    get(m, key).and_then(|v| as_int(e, v, &child(parent, key)))
}

fn obj_at<'a>(e: &mut Errs, m: &'a Obj, parent: &str, key: &str) -> Option<&'a Obj> {
    get(m, key).and_then(|v| as_obj(e, v, &child(parent, key)))
}

fn arr_at<'a>(e: &mut Errs, m: &'a Obj, parent: &str, key: &str) -> &'a [Value] {
    match get(m, key) {
        Some(v) => as_arr(e, v, &child(parent, key)),
        None => &[],
    }
}

fn bool_at(e: &mut Errs, m: &Obj, parent: &str, key: &str) -> Option<bool> {
    match get(m, key) {
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            e.invalid(&child(parent, key), Bad::Json(other), "must be a boolean");
            None
        }
        None => None,
    }
}

/// The object elements of the list at `key`, with their paths.
fn objs_at<'a>(e: &mut Errs, m: &'a Obj, parent: &str, key: &str) -> Vec<(String, &'a Obj)> {
    let path = child(parent, key);
    let mut out = Vec::new();
    for (i, item) in arr_at(e, m, parent, key).iter().enumerate() {
        let item_path = index(&path, i);
        if let Some(o) = as_obj(e, item, &item_path) {
            out.push((item_path, o));
        }
    }
    out
}

/// The string elements of the list at `key`, with their paths.
fn strs_at<'a>(e: &mut Errs, m: &'a Obj, parent: &str, key: &str) -> Vec<(String, &'a str)> {
    let path = child(parent, key);
    let mut out = Vec::new();
    for (i, item) in arr_at(e, m, parent, key).iter().enumerate() {
        let item_path = index(&path, i);
        if let Some(s) = as_str(e, item, &item_path) {
            out.push((item_path, s));
        }
    }
    out
}

/// A string-to-string map at `key` (non-string values are reported).
fn string_map_at<'a>(e: &mut Errs, m: &'a Obj, parent: &str, key: &str) -> Vec<(&'a str, &'a str)> {
    let path = child(parent, key);
    let Some(map) = obj_at(e, m, parent, key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        if let Some(s) = as_str(e, v, &key_path(&path, k)) {
            out.push((k.as_str(), s));
        }
    }
    out
}

/// A JSON int-or-string (ports, maxSurge, ...).
enum IntOrStr<'a> {
    Int(i64),
    Str(&'a str),
}

fn int_or_str<'a>(e: &mut Errs, v: &'a Value, path: &str) -> Option<IntOrStr<'a>> {
    match v {
        Value::String(s) => Some(IntOrStr::Str(s)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(IntOrStr::Int(i)),
            None => {
                e.invalid(path, Bad::Json(v), "must be an integer or a string");
                None
            }
        },
        Value::Null => None,
        other => {
            e.invalid(path, Bad::Json(other), "must be an integer or a string");
            None
        }
    }
}

/// Comparison form: nulls, empty lists and empty objects dropped, as Kubernetes'
/// semantic equality treats nil and empty alike.
fn normalized(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(a) => {
            let items: Vec<Value> = a
                .iter()
                .map(|x| normalized(x).unwrap_or(Value::Null))
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(m) => {
            let fields: Obj = m
                .iter()
                .filter_map(|(k, x)| normalized(x).map(|x| (k.clone(), x)))
                .collect();
            (!fields.is_empty()).then_some(Value::Object(fields))
        }
        other => Some(other.clone()),
    }
}

fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    a.and_then(normalized) == b.and_then(normalized)
}

// ---------------------------------------------------------------------------
// Name rules and other string formats (apimachinery util/validation)
// ---------------------------------------------------------------------------

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const ENV_VAR_NAME_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const CONFIG_MAP_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const PERCENT_MSG: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";
const HTTP_HEADER_MSG: &str = "a valid HTTP header must consist of alphanumeric characters or '-'";
const IS_NEGATIVE_MSG: &str = "must be greater than or equal to 0";
const IMMUTABLE_MSG: &str = "field is immutable";
const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";
const INVALID_IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// apimachinery's RegexError: message, examples, and the regex.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{example}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns_label(s) {
        errs.push(regex_error(
            DNS1123_LABEL_MSG,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !s.split('.').all(matches_dns_label) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn dns1035_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    let starts_alpha = s.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !(starts_alpha && matches_dns_label(s)) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn path_segment_errors(s: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix && (s == "." || s == "..") {
        errs.push(format!("may not be '{s}'"));
    }
    for bad in ['/', '%'] {
        if s.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// Name errors for a kind's rule; `prefix` validates a generateName.
fn name_errors(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    // A generateName may end in '-': validate it as if a suffix followed.
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => dns1123_subdomain_errors(name),
        NameRule::Label => dns1123_label_errors(name),
        NameRule::Dns1035 => dns1035_label_errors(name),
        NameRule::PathSegment => path_segment_errors(name, prefix),
    }
}

/// DNS-1123 subdomain (most object names), with Kubernetes' exact messages.
pub fn validate_dns1123_subdomain(s: &str) -> Result<(), String> {
    joined(dns1123_subdomain_errors(s))
}

/// DNS-1123 label (Namespace names, container, volume and port names).
pub fn validate_dns1123_label(s: &str) -> Result<(), String> {
    joined(dns1123_label_errors(s))
}

/// DNS-1035 label (Service names: must start with a letter).
pub fn validate_dns1035_label(s: &str) -> Result<(), String> {
    joined(dns1035_label_errors(s))
}

fn joined(errs: Vec<String>) -> Result<(), String> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// IANA_SVC_NAME (container port names, named target ports).
fn port_name_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len_error(15));
    }
    if s.is_empty() || !s.bytes().all(|b| is_lower_alnum(b) || b == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

fn env_var_name_errors(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'-' | b'.' | b'_'));
    let rest_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    let mut errs = Vec::new();
    if !(first_ok && rest_ok) {
        errs.push(regex_error(
            ENV_VAR_NAME_MSG,
            ENV_VAR_NAME_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errs.extend(chdir_prefix_errors(s));
    errs
}

fn chdir_prefix_errors(s: &str) -> Vec<String> {
    match s {
        "." => vec!["must not be '.'".into()],
        ".." => vec!["must not be '..'".into()],
        _ if s.starts_with("..") => vec!["must not start with '..'".into()],
        _ => Vec::new(),
    }
}

fn config_map_key_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !ok {
        errs.push(regex_error(
            CONFIG_MAP_KEY_MSG,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(chdir_prefix_errors(s));
    errs
}

/// `[0-9]+%`; returns the number when valid.
fn parse_percent(s: &str) -> Option<i64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<i64>().unwrap_or(i64::MAX))
}

fn percent_error() -> String {
    regex_error(PERCENT_MSG, "[0-9]+%", &["1%", "93%"])
}

fn valid_port(n: i64) -> bool {
    (1..=65535).contains(&n)
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

fn cidr_ok(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Some(ip) = parse_ip(ip) else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|n| n <= max)
}

// ---------------------------------------------------------------------------
// Quantities
// ---------------------------------------------------------------------------

/// A quantity field value: a JSON string, or a JSON number as Kubernetes accepts.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses the quantity at `path`, reporting bad values; returns (text, value).
fn quantity_at(e: &mut Errs, v: &Value, path: &str) -> Option<(String, f64)> {
    let Some(text) = quantity_text(v) else {
        e.invalid(path, Bad::Json(v), QUANTITY_FORMAT_MSG);
        return None;
    };
    match parse_quantity(&text) {
        Ok(value) => Some((text, value)),
        Err(msg) => {
            e.invalid(path, Bad::Str(&text), &msg);
            None
        }
    }
}

// ---------------------------------------------------------------------------
// ObjectMeta
// ---------------------------------------------------------------------------

fn validate_meta(e: &mut Errs, root: &Obj, rule: NameRule, scope: Scope) {
    let empty = Obj::new();
    let meta = obj_at(e, root, "", "metadata").unwrap_or(&empty);
    let p = "metadata";
    let generate_name = str_at(e, meta, p, "generateName");
    if !generate_name.is_empty() {
        for msg in name_errors(rule, generate_name, true) {
            e.invalid("metadata.generateName", Bad::Str(generate_name), &msg);
        }
    }
    let name = str_at(e, meta, p, "name");
    if name.is_empty() {
        e.required("metadata.name", "name or generateName is required");
    } else {
        for msg in name_errors(rule, name, false) {
            e.invalid("metadata.name", Bad::Str(name), &msg);
        }
    }
    let namespace = str_at(e, meta, p, "namespace");
    match scope {
        Scope::Namespaced if namespace.is_empty() => e.required("metadata.namespace", ""),
        Scope::Cluster if !namespace.is_empty() => {
            e.forbidden("metadata.namespace", "not allowed on this type")
        }
        _ => validate_optional_name(e, meta, p, "namespace", dns1123_label_errors),
    }
    if let Some(generation) = int_at(e, meta, p, "generation") {
        if generation < 0 {
            e.invalid("metadata.generation", Bad::Int(generation), IS_NEGATIVE_MSG);
        }
    }
    validate_labels(e, meta, p, "labels");
    validate_annotations(e, meta, p, "annotations");
    validate_owner_references(e, meta);
    for (_, finalizer) in strs_at(e, meta, p, "finalizers") {
        if let Err(msg) = validate_label_key(finalizer) {
            e.invalid("metadata.finalizers", Bad::Str(finalizer), &msg);
        }
    }
}

/// Label keys and values (errors are reported on the map's path, as Kubernetes does).
fn validate_labels(e: &mut Errs, m: &Obj, parent: &str, key: &str) {
    let path = child(parent, key);
    for (k, v) in string_map_at(e, m, parent, key) {
        if let Err(msg) = validate_label_key(k) {
            e.invalid(&path, Bad::Str(k), &msg);
        }
        if let Err(msg) = validate_label_value(v) {
            e.invalid(&path, Bad::Str(v), &msg);
        }
    }
}

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

fn validate_annotations(e: &mut Errs, m: &Obj, parent: &str, key: &str) {
    let path = child(parent, key);
    let mut total = 0;
    for (k, v) in string_map_at(e, m, parent, key) {
        if let Err(msg) = validate_label_key(&k.to_lowercase()) {
            e.invalid(&path, Bad::Str(k), &msg);
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        e.too_long(&path, TOTAL_ANNOTATION_SIZE_LIMIT);
    }
}

fn validate_owner_references(e: &mut Errs, meta: &Obj) {
    let p = "metadata.ownerReferences";
    for (item_path, owner) in objs_at(e, meta, "metadata", "ownerReferences") {
        let api_version = str_at(e, owner, &item_path, "apiVersion");
        let version = match api_version.split_once('/') {
            Some((_, v)) if !v.contains('/') => v,
            Some(_) => "",
            None => api_version,
        };
        if version.is_empty() {
            e.invalid(
                &child(p, "apiVersion"),
                Bad::Str(api_version),
                "version must not be empty",
            );
        }
        for field in ["kind", "name", "uid"] {
            let value = str_at(e, owner, &item_path, field);
            if value.is_empty() {
                let msg = format!("{field} must not be empty");
                e.invalid(&child(p, field), Bad::Str(value), &msg);
            }
        }
    }
}

fn meta_of(root: &Obj) -> Option<&Obj> {
    root.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(root: &'a Obj, key: &str) -> &'a str {
    meta_of(root)
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// ObjectMeta update rules: name and namespace (and uid, when sent) are immutable.
fn validate_meta_update(e: &mut Errs, new: &Obj, old: &Obj) {
    for field in ["name", "namespace", "uid"] {
        let (now, before) = (meta_str(new, field), meta_str(old, field));
        let sent = !now.is_empty() || field != "uid";
        if sent && now != before {
            e.invalid(&child("metadata", field), Bad::Str(now), IMMUTABLE_MSG);
        }
    }
}

// ---------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------

fn validate_pod(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    validate_pod_spec(e, spec, "spec", true);
}

/// Where a container sits in the pod spec.
#[derive(Clone, Copy, PartialEq)]
enum ContainerKind {
    Regular,
    Init,
    Ephemeral,
}

/// Pod-wide facts container validation needs.
struct PodCtx<'a> {
    volumes: HashSet<&'a str>,
    grace_period: Option<i64>,
    is_pod: bool,
}

/// ValidatePodSpec, for a Pod (`is_pod`) or a pod template.
fn validate_pod_spec(e: &mut Errs, spec: &Obj, p: &str, is_pod: bool) {
    let ctx = PodCtx {
        volumes: validate_volumes(e, spec, p),
        grace_period: int_at(e, spec, p, "terminationGracePeriodSeconds"),
        is_pod,
    };
    validate_pod_containers(e, spec, p, &ctx);
    validate_pod_fields(e, spec, p, ctx.grace_period);
    validate_tolerations(e, spec, p);
}

/// Containers, init containers and ephemeral containers; names unique across all.
fn validate_pod_containers(e: &mut Errs, spec: &Obj, p: &str, ctx: &PodCtx) {
    let containers = objs_at(e, spec, p, "containers");
    if containers.is_empty() {
        e.required(&child(p, "containers"), "");
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (path, c) in &containers {
        validate_container(e, c, path, ContainerKind::Regular, ctx, &mut names);
    }
    for (path, c) in objs_at(e, spec, p, "initContainers") {
        validate_container(e, c, &path, ContainerKind::Init, ctx, &mut names);
    }
    for (path, c) in objs_at(e, spec, p, "ephemeralContainers") {
        if !ctx.is_pod {
            let msg = "ephemeral containers not allowed in pod template";
            e.forbidden(&child(p, "ephemeralContainers"), msg);
            break;
        }
        validate_container(e, c, &path, ContainerKind::Ephemeral, ctx, &mut names);
    }
}

/// The pod-level scalar fields.
fn validate_pod_fields(e: &mut Errs, spec: &Obj, p: &str, grace_period: Option<i64>) {
    validate_enum(
        e,
        spec,
        p,
        "restartPolicy",
        &["Always", "OnFailure", "Never"],
    );
    validate_dns_policy(e, spec, p);
    validate_labels(e, spec, p, "nodeSelector");
    for key in ["serviceAccountName", "nodeName", "priorityClassName"] {
        validate_optional_name(e, spec, p, key, dns1123_subdomain_errors);
    }
    for key in ["hostname", "subdomain"] {
        validate_optional_name(e, spec, p, key, dns1123_label_errors);
    }
    if let Some(deadline) = int_at(e, spec, p, "activeDeadlineSeconds") {
        if !(1..=i64::from(u32::MAX)).contains(&deadline) {
            let msg = format!("must be between 1 and {}, inclusive", u32::MAX);
            e.invalid(&child(p, "activeDeadlineSeconds"), Bad::Int(deadline), &msg);
        }
    }
    if let Some(grace) = grace_period.filter(|g| *g < 0) {
        let path = child(p, "terminationGracePeriodSeconds");
        e.invalid(&path, Bad::Int(grace), IS_NEGATIVE_MSG);
    }
}

/// An optional string field that must follow a name rule when set.
fn validate_optional_name(
    e: &mut Errs,
    m: &Obj,
    p: &str,
    key: &str,
    rule: fn(&str) -> Vec<String>,
) {
    let value = str_at(e, m, p, key);
    if value.is_empty() {
        return;
    }
    for msg in rule(value) {
        e.invalid(&child(p, key), Bad::Str(value), &msg);
    }
}

/// A required enumerated string: `Required value` when empty, else `Unsupported value`.
fn validate_enum(e: &mut Errs, m: &Obj, p: &str, key: &str, valid: &[&str]) {
    let value = str_at(e, m, p, key);
    if value.is_empty() {
        e.required(&child(p, key), "");
    } else if !valid.contains(&value) {
        e.not_supported(&child(p, key), Bad::Str(value), valid);
    }
}

fn validate_dns_policy(e: &mut Errs, spec: &Obj, p: &str) {
    let valid = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
    validate_enum(e, spec, p, "dnsPolicy", &valid);
    if str_at(e, spec, p, "dnsPolicy") != "None" {
        return;
    }
    let path = child(p, "dnsConfig");
    match obj_at(e, spec, p, "dnsConfig") {
        None => e.required(&path, "must provide `dnsConfig` when `dnsPolicy` is None"),
        Some(config) => {
            if arr_at(e, config, &path, "nameservers").is_empty() {
                e.required(
                    &child(&path, "nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                );
            }
        }
    }
}

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn validate_tolerations(e: &mut Errs, spec: &Obj, p: &str) {
    for (path, t) in objs_at(e, spec, p, "tolerations") {
        let key = str_at(e, t, &path, "key");
        let operator = str_at(e, t, &path, "operator");
        let value = str_at(e, t, &path, "value");
        let effect = str_at(e, t, &path, "effect");
        if !key.is_empty() {
            if let Err(msg) = validate_label_key(key) {
                e.invalid(&child(&path, "key"), Bad::Str(key), &msg);
            }
        }
        if key.is_empty() && operator != "Exists" {
            e.invalid(
                &child(&path, "operator"),
                Bad::Str(operator),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if int_at(e, t, &path, "tolerationSeconds").is_some() && effect != "NoExecute" {
            e.invalid(
                &child(&path, "effect"),
                Bad::Str(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        match operator {
            "" | "Equal" => {
                if let Err(msg) = validate_label_value(value) {
                    e.invalid(&child(&path, "operator"), Bad::Str(value), &msg);
                }
            }
            "Exists" if !value.is_empty() => e.invalid(
                &child(&path, "operator"),
                Bad::Str(value),
                "value must be empty when `operator` is 'Exists'",
            ),
            "Exists" => {}
            other => e.not_supported(
                &child(&path, "operator"),
                Bad::Str(other),
                &["Equal", "Exists"],
            ),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            e.not_supported(&child(&path, "effect"), Bad::Str(effect), &TAINT_EFFECTS);
        }
    }
}

// --- volumes ---------------------------------------------------------------

/// Validates `volumes`; returns the names of the valid ones (mount targets).
fn validate_volumes<'a>(e: &mut Errs, spec: &'a Obj, p: &str) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (path, volume) in objs_at(e, spec, p, "volumes") {
        let before = e.count();
        validate_volume_source(e, volume, &path);
        let name = str_at(e, volume, &path, "name");
        let name_path = child(&path, "name");
        if name.is_empty() {
            e.required(&name_path, "");
        } else {
            for msg in dns1123_label_errors(name) {
                e.invalid(&name_path, Bad::Str(name), &msg);
            }
        }
        if names.contains(name) {
            e.duplicate(&name_path, Bad::Str(name));
        }
        if e.count() == before {
            names.insert(name);
        }
    }
    names
}

/// Exactly one source, and the rules of the common sources.
fn validate_volume_source(e: &mut Errs, volume: &Obj, path: &str) {
    let mut count = 0;
    for key in volume_source_keys() {
        let Some(src) = get(volume, key) else {
            continue;
        };
        let src_path = child(path, key);
        if count > 0 {
            e.forbidden(&src_path, "may not specify more than 1 volume type");
            continue;
        }
        count += 1;
        if let Some(src) = as_obj(e, src, &src_path) {
            validate_one_source(e, key, src, &src_path);
        }
    }
    if count == 0 {
        e.required(path, "must specify a volume type");
    }
}

const HOST_PATH_TYPES: [&str; 8] = [
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

fn validate_one_source(e: &mut Errs, key: &str, src: &Obj, p: &str) {
    let required = |e: &mut Errs, field: &str| {
        if str_at(e, src, p, field).is_empty() {
            e.required(&child(p, field), "");
        }
    };
    match key {
        "hostPath" => {
            required(e, "path");
            if let Some(t) = opt_str_at(e, src, p, "type") {
                if !HOST_PATH_TYPES.contains(&t) {
                    e.not_supported(&child(p, "type"), Bad::Str(t), &HOST_PATH_TYPES);
                }
            }
        }
        "emptyDir" => {
            if let Some(limit) = get(src, "sizeLimit") {
                quantity_at(e, limit, &child(p, "sizeLimit"));
            }
        }
        "secret" => {
            required(e, "secretName");
            validate_file_modes(e, src, p);
        }
        "configMap" => {
            required(e, "name");
            validate_file_modes(e, src, p);
        }
        "downwardAPI" | "projected" => validate_file_modes(e, src, p),
        "persistentVolumeClaim" => required(e, "claimName"),
        "nfs" => {
            required(e, "server");
            let path = str_at(e, src, p, "path");
            if path.is_empty() {
                e.required(&child(p, "path"), "");
            } else if !path.starts_with('/') {
                e.invalid(
                    &child(p, "path"),
                    Bad::Str(path),
                    "must be an absolute path",
                );
            }
        }
        _ => {}
    }
}

/// defaultMode and items[].{key,path,mode} of configMap/secret/downwardAPI/projected.
fn validate_file_modes(e: &mut Errs, src: &Obj, p: &str) {
    if let Some(mode) = int_at(e, src, p, "defaultMode") {
        if !(0..=0o777).contains(&mode) {
            e.invalid(&child(p, "defaultMode"), Bad::Int(mode), FILE_MODE_MSG);
        }
    }
    for (item_path, item) in objs_at(e, src, p, "items") {
        if item.contains_key("key") && str_at(e, item, &item_path, "key").is_empty() {
            e.required(&child(&item_path, "key"), "");
        }
        let path = str_at(e, item, &item_path, "path");
        if path.is_empty() {
            e.required(&child(&item_path, "path"), "");
        } else {
            validate_relative_path(e, path, &child(&item_path, "path"));
            if path.starts_with("..") {
                e.invalid(
                    &child(&item_path, "path"),
                    Bad::Str(path),
                    "must not start with '..'",
                );
            }
        }
        if let Some(mode) = int_at(e, item, &item_path, "mode") {
            if !(0..=0o777).contains(&mode) {
                e.invalid(&child(&item_path, "mode"), Bad::Int(mode), FILE_MODE_MSG);
            }
        }
    }
}

/// validateLocalDescendingPath: relative, without `..` elements.
fn validate_relative_path(e: &mut Errs, path: &str, field: &str) {
    if path.starts_with('/') {
        e.invalid(field, Bad::Str(path), "must be a relative path");
    }
    if path.split('/').any(|part| part == "..") {
        e.invalid(field, Bad::Str(path), "must not contain '..'");
    }
}

// --- containers ------------------------------------------------------------

fn validate_container<'a>(
    e: &mut Errs,
    c: &'a Obj,
    p: &str,
    kind: ContainerKind,
    ctx: &PodCtx,
    names: &mut HashSet<&'a str>,
) {
    let name = str_at(e, c, p, "name");
    let name_path = child(p, "name");
    if name.is_empty() {
        e.required(&name_path, "");
    } else {
        for msg in dns1123_label_errors(name) {
            e.invalid(&name_path, Bad::Str(name), &msg);
        }
    }
    if !name.is_empty() && !names.insert(name) {
        e.duplicate(&name_path, Bad::Str(name));
    }
    let image = str_at(e, c, p, "image");
    if image.is_empty() {
        e.required(&child(p, "image"), "");
    } else if ctx.is_pod && image.trim() != image {
        e.invalid(
            &child(p, "image"),
            Bad::Str(image),
            "must not have leading or trailing whitespace",
        );
    }
    validate_enum(
        e,
        c,
        p,
        "terminationMessagePolicy",
        &["File", "FallbackToLogsOnError"],
    );
    validate_container_ports(e, c, p);
    validate_env(e, c, p);
    validate_env_from(e, c, p);
    validate_enum(
        e,
        c,
        p,
        "imagePullPolicy",
        &["Always", "IfNotPresent", "Never"],
    );
    if let Some(resources) = obj_at(e, c, p, "resources") {
        validate_resources(e, resources, &child(p, "resources"));
    }
    validate_volume_mounts(e, c, p, &ctx.volumes);
    validate_container_restart_policy(e, c, p, kind);
    validate_container_hooks(e, c, p, kind, ctx.grace_period);
}

fn validate_container_restart_policy(e: &mut Errs, c: &Obj, p: &str, kind: ContainerKind) {
    let Some(policy) = opt_str_at(e, c, p, "restartPolicy") else {
        return;
    };
    let path = child(p, "restartPolicy");
    match kind {
        ContainerKind::Init if policy != "Always" => {
            e.not_supported(&path, Bad::Str(policy), &["Always"]);
        }
        ContainerKind::Init => {}
        _ => e.forbidden(&path, "may not be set for non-init containers"),
    }
}

/// Probes and lifecycle hooks, which only some container kinds may have.
fn validate_container_hooks(
    e: &mut Errs,
    c: &Obj,
    p: &str,
    kind: ContainerKind,
    grace: Option<i64>,
) {
    let sidecar = kind == ContainerKind::Init
        && get(c, "restartPolicy").and_then(Value::as_str) == Some("Always");
    let forbidden_msg = match kind {
        ContainerKind::Ephemeral => Some("cannot be set for an Ephemeral Container"),
        ContainerKind::Init if !sidecar => {
            Some("may not be set for init containers without restartPolicy=Always")
        }
        _ => None,
    };
    for probe in [
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
    ] {
        let Some(value) = get(c, probe) else {
            continue;
        };
        let path = child(p, probe);
        if let Some(msg) = forbidden_msg {
            e.forbidden(&path, msg);
            continue;
        }
        let Some(obj) = as_obj(e, value, &path) else {
            continue;
        };
        if probe == "lifecycle" {
            for hook in ["postStart", "preStop"] {
                if let Some(h) = obj_at(e, obj, &path, hook) {
                    validate_handler(e, h, &child(&path, hook), LIFECYCLE_HANDLERS, grace);
                }
            }
        } else {
            validate_probe(e, obj, &path, probe != "readinessProbe");
        }
    }
    if kind == ContainerKind::Ephemeral {
        for field in ["ports", "resources"] {
            let set = get(c, field).and_then(normalized).is_some();
            if set {
                e.forbidden(&child(p, field), "cannot be set for an Ephemeral Container");
            }
        }
    }
}

fn validate_container_ports(e: &mut Errs, c: &Obj, p: &str) {
    let mut names = HashSet::new();
    for (path, port) in objs_at(e, c, p, "ports") {
        let name = str_at(e, port, &path, "name");
        if !name.is_empty() {
            let errs = port_name_errors(name);
            for msg in &errs {
                e.invalid(&child(&path, "name"), Bad::Str(name), msg);
            }
            if errs.is_empty() && !names.insert(name) {
                e.duplicate(&child(&path, "name"), Bad::Str(name));
            }
        }
        match int_at(e, port, &path, "containerPort") {
            None | Some(0) => e.required(&child(&path, "containerPort"), ""),
            Some(n) if !valid_port(n) => {
                e.invalid(&child(&path, "containerPort"), Bad::Int(n), PORT_RANGE_MSG)
            }
            Some(_) => {}
        }
        if let Some(host_port) = int_at(e, port, &path, "hostPort").filter(|n| *n != 0) {
            if !valid_port(host_port) {
                e.invalid(
                    &child(&path, "hostPort"),
                    Bad::Int(host_port),
                    PORT_RANGE_MSG,
                );
            }
        }
        validate_enum(e, port, &path, "protocol", &PROTOCOLS);
    }
}

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn validate_env(e: &mut Errs, c: &Obj, p: &str) {
    for (path, var) in objs_at(e, c, p, "env") {
        let name = str_at(e, var, &path, "name");
        if name.is_empty() {
            e.required(&child(&path, "name"), "");
        } else {
            for msg in env_var_name_errors(name) {
                e.invalid(&child(&path, "name"), Bad::Str(name), &msg);
            }
        }
        let value = str_at(e, var, &path, "value");
        if let Some(from) = obj_at(e, var, &path, "valueFrom") {
            validate_env_value_from(e, from, &child(&path, "valueFrom"), !value.is_empty());
        }
    }
}

fn validate_env_value_from(e: &mut Errs, from: &Obj, p: &str, has_value: bool) {
    let mut sources = 0;
    if let Some(field_ref) = obj_at(e, from, p, "fieldRef") {
        sources += 1;
        validate_field_ref(e, field_ref, &child(p, "fieldRef"));
    }
    if let Some(resource_ref) = obj_at(e, from, p, "resourceFieldRef") {
        sources += 1;
        let path = child(p, "resourceFieldRef");
        if str_at(e, resource_ref, &path, "resource").is_empty() {
            e.required(&child(&path, "resource"), "");
        }
    }
    for key in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(selector) = obj_at(e, from, p, key) {
            sources += 1;
            validate_key_selector(e, selector, &child(p, key));
        }
    }
    let msg = match sources {
        0 => "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        _ if has_value => "may not be specified when `value` is not empty",
        1 => return,
        _ => "may not have more than one field specified at a time",
    };
    e.invalid(p, Bad::Str(""), msg);
}

fn validate_field_ref(e: &mut Errs, field_ref: &Obj, p: &str) {
    if str_at(e, field_ref, p, "apiVersion").is_empty() {
        e.required(&child(p, "apiVersion"), "");
    }
    let field_path = str_at(e, field_ref, p, "fieldPath");
    let subscripted = ["metadata.labels['", "metadata.annotations['"]
        .iter()
        .any(|prefix| field_path.starts_with(prefix) && field_path.ends_with("']"));
    if field_path.is_empty() {
        e.required(&child(p, "fieldPath"), "");
    } else if !subscripted && !ENV_FIELD_PATHS.contains(&field_path) {
        e.not_supported(
            &child(p, "fieldPath"),
            Bad::Str(field_path),
            &ENV_FIELD_PATHS,
        );
    }
}

fn validate_key_selector(e: &mut Errs, selector: &Obj, p: &str) {
    let name = str_at(e, selector, p, "name");
    for msg in dns1123_subdomain_errors(name) {
        e.invalid(&child(p, "name"), Bad::Str(name), &msg);
    }
    let key = str_at(e, selector, p, "key");
    if key.is_empty() {
        e.required(&child(p, "key"), "");
    } else {
        for msg in config_map_key_errors(key) {
            e.invalid(&child(p, "key"), Bad::Str(key), &msg);
        }
    }
}

fn validate_env_from(e: &mut Errs, c: &Obj, p: &str) {
    let list_path = child(p, "envFrom");
    for (path, source) in objs_at(e, c, p, "envFrom") {
        let prefix = str_at(e, source, &path, "prefix");
        if !prefix.is_empty() {
            for msg in env_var_name_errors(prefix) {
                e.invalid(&child(&path, "prefix"), Bad::Str(prefix), &msg);
            }
        }
        let mut sources = 0;
        for key in ["configMapRef", "secretRef"] {
            let Some(reference) = obj_at(e, source, &path, key) else {
                continue;
            };
            sources += 1;
            let ref_path = child(&path, key);
            let name = str_at(e, reference, &ref_path, "name");
            if name.is_empty() {
                e.required(&child(&ref_path, "name"), "");
            } else {
                for msg in dns1123_subdomain_errors(name) {
                    e.invalid(&child(&ref_path, "name"), Bad::Str(name), &msg);
                }
            }
        }
        match sources {
            0 => e.invalid(
                &list_path,
                Bad::Str(""),
                "must specify one of: `configMapRef` or `secretRef`",
            ),
            1 => {}
            _ => e.invalid(
                &list_path,
                Bad::Str(""),
                "may not have more than one field specified at a time",
            ),
        }
    }
}

fn validate_volume_mounts(e: &mut Errs, c: &Obj, p: &str, volumes: &HashSet<&str>) {
    let mut mount_points = HashSet::new();
    for (path, mount) in objs_at(e, c, p, "volumeMounts") {
        let name = str_at(e, mount, &path, "name");
        if name.is_empty() {
            e.required(&child(&path, "name"), "");
        }
        if !volumes.contains(name) {
            e.not_found(&child(&path, "name"), Bad::Str(name));
        }
        let mount_path = str_at(e, mount, &path, "mountPath");
        if mount_path.is_empty() {
            e.required(&child(&path, "mountPath"), "");
        }
        if !mount_points.insert(mount_path) {
            e.invalid(
                &child(&path, "mountPath"),
                Bad::Str(mount_path),
                "must be unique",
            );
        }
        let sub_path = str_at(e, mount, &path, "subPath");
        if !sub_path.is_empty() {
            validate_relative_path(e, sub_path, &child(&path, "subPath"));
        }
    }
}

// --- probes and handlers -----------------------------------------------------

const PROBE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];
const LIFECYCLE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "sleep"];

/// validateProbe; `single_success` for liveness and startup probes.
fn validate_probe(e: &mut Errs, probe: &Obj, p: &str, single_success: bool) {
    validate_handler(e, probe, p, PROBE_HANDLERS, None);
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(n) = int_at(e, probe, p, key).filter(|n| *n < 0) {
            e.invalid(&child(p, key), Bad::Int(n), IS_NEGATIVE_MSG);
        }
    }
    if let Some(n) = int_at(e, probe, p, "terminationGracePeriodSeconds").filter(|n| *n <= 0) {
        e.invalid(
            &child(p, "terminationGracePeriodSeconds"),
            Bad::Int(n),
            "must be greater than 0",
        );
    }
    if single_success {
        if let Some(n) = int_at(e, probe, p, "successThreshold").filter(|n| *n != 1) {
            e.invalid(&child(p, "successThreshold"), Bad::Int(n), "must be 1");
        }
    }
}

/// Exactly one handler among `allowed`, each checked.
fn validate_handler(e: &mut Errs, h: &Obj, p: &str, allowed: &[&str], grace: Option<i64>) {
    let mut count = 0;
    for key in allowed {
        let Some(value) = get(h, key) else {
            continue;
        };
        let path = child(p, key);
        if count > 0 {
            e.forbidden(&path, "may not specify more than 1 handler type");
            continue;
        }
        count += 1;
        let Some(action) = as_obj(e, value, &path) else {
            continue;
        };
        match *key {
            "exec" => validate_exec(e, action, &path),
            "httpGet" => validate_http_get(e, action, &path),
            "tcpSocket" => validate_port_num_or_name(e, action, &path, "port"),
            "grpc" => match int_at(e, action, &path, "port") {
                Some(n) if !valid_port(n) => {
                    e.invalid(&child(&path, "port"), Bad::Int(n), PORT_RANGE_MSG)
                }
                Some(_) => {}
                None => e.invalid(&child(&path, "port"), Bad::Int(0), PORT_RANGE_MSG),
            },
            "sleep" => validate_sleep(e, action, &path, grace),
            _ => {}
        }
    }
    if count == 0 {
        e.required(p, "must specify a handler type");
    }
}

fn validate_exec(e: &mut Errs, action: &Obj, p: &str) {
    if arr_at(e, action, p, "command").is_empty() {
        e.required(&child(p, "command"), "");
    }
}

fn validate_http_get(e: &mut Errs, action: &Obj, p: &str) {
    if str_at(e, action, p, "path").is_empty() {
        e.required(&child(p, "path"), "");
    }
    validate_port_num_or_name(e, action, p, "port");
    let scheme = str_at(e, action, p, "scheme");
    if scheme != "HTTP" && scheme != "HTTPS" {
        e.not_supported(&child(p, "scheme"), Bad::Str(scheme), &["HTTP", "HTTPS"]);
    }
    for (path, header) in objs_at(e, action, p, "httpHeaders") {
        let name = str_at(e, header, &path, "name");
        let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            let msg = regex_error(HTTP_HEADER_MSG, "[-A-Za-z0-9]+", &["X-Header-Name"]);
            e.invalid(&child(&path, "name"), Bad::Str(name), &msg);
        }
    }
}

fn validate_sleep(e: &mut Errs, action: &Obj, p: &str, grace: Option<i64>) {
    let seconds = int_at(e, action, p, "seconds").unwrap_or(0);
    if let Some(grace) = grace {
        if seconds <= 0 || seconds > grace {
            let msg = format!(
                "must be greater than 0 and less than terminationGracePeriodSeconds ({grace}). Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep."
            );
            e.invalid(p, Bad::Int(seconds), &msg);
        }
    }
}

/// A port given by number (1-65535) or by IANA service name.
fn validate_port_num_or_name(e: &mut Errs, m: &Obj, p: &str, key: &str) {
    let path = child(p, key);
    match get(m, key).and_then(|v| int_or_str(e, v, &path)) {
        Some(IntOrStr::Int(n)) if !valid_port(n) => e.invalid(&path, Bad::Int(n), PORT_RANGE_MSG),
        Some(IntOrStr::Int(_)) => {}
        Some(IntOrStr::Str(s)) => {
            for msg in port_name_errors(s) {
                e.invalid(&path, Bad::Str(s), &msg);
            }
        }
        None => e.invalid(&path, Bad::Int(0), PORT_RANGE_MSG),
    }
}

// --- resources ---------------------------------------------------------------

const STANDARD_CONTAINER_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
const OTHER_STANDARD_RESOURCES: [&str; 17] = [
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "services.loadbalancers",
    "services.nodeports",
];

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Resource names allowed in a container's limits and requests.
fn validate_container_resource_name(e: &mut Errs, name: &str, path: &str) -> bool {
    if let Err(msg) = validate_label_key(name) {
        e.invalid(path, Bad::Str(name), &msg);
        return false;
    }
    if name.contains('/') {
        return true;
    }
    if STANDARD_CONTAINER_RESOURCES.contains(&name) || is_hugepages(name) {
        return true;
    }
    let msg = if OTHER_STANDARD_RESOURCES.contains(&name) {
        "must be a standard resource for containers"
    } else {
        "must be a standard resource type or fully qualified"
    };
    e.invalid(path, Bad::Str(name), msg);
    false
}

/// Quantities parse, are non-negative, extended resources are whole numbers,
/// and each request is at most its limit (equal for non-overcommittable ones).
fn validate_resources(e: &mut Errs, resources: &Obj, p: &str) {
    let limits = validate_resource_list(e, resources, p, "limits");
    let requests = validate_resource_list(e, resources, p, "requests");
    let requests_path = child(p, "requests");
    for (name, (text, value)) in &requests {
        let Some((limit_text, limit)) = limits.iter().find(|(n, _)| n == name).map(|(_, l)| l)
        else {
            continue;
        };
        let overcommit = is_native_resource(name) && !is_hugepages(name);
        if !overcommit && value != limit {
            let msg = format!("must be equal to {name} limit of {limit_text}");
            e.invalid(&requests_path, Bad::Str(text), &msg);
        } else if value > limit {
            let msg = format!("must be less than or equal to {name} limit of {limit_text}");
            e.invalid(&requests_path, Bad::Str(text), &msg);
        }
    }
}

type ResourceList = Vec<(String, (String, f64))>;

fn validate_resource_list(e: &mut Errs, resources: &Obj, p: &str, key: &str) -> ResourceList {
    let path = child(p, key);
    let mut out = Vec::new();
    let Some(list) = obj_at(e, resources, p, key) else {
        return out;
    };
    for (name, quantity) in list {
        let item_path = key_path(&path, name);
        let name_ok = validate_container_resource_name(e, name, &item_path);
        let Some((text, value)) = quantity_at(e, quantity, &item_path) else {
            continue;
        };
        if value < 0.0 {
            e.invalid(&item_path, Bad::Str(&text), IS_NEGATIVE_MSG);
            continue;
        }
        if !is_native_resource(name) && value.fract() != 0.0 {
            e.invalid(&item_path, Bad::Str(&text), "must be an integer");
        }
        if name_ok {
            out.push((name.clone(), (text, value)));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Pod updates
// ---------------------------------------------------------------------------

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// ValidatePodUpdate: the spec is immutable except for container images,
/// activeDeadlineSeconds (set or lowered), added tolerations, a negative
/// grace period raised to 1, and `nodeName` set once (binding).
fn validate_pod_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let empty = Obj::new();
    let new_spec = new.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    let old_spec = old.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    for key in ["containers", "initContainers"] {
        let new_list = list_of(new_spec, key);
        if new_list.len() != list_of(old_spec, key).len() {
            e.forbidden(
                &child("spec", key),
                "pod updates may not add or remove containers",
            );
            return;
        }
        for (i, c) in new_list.iter().enumerate() {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let path = child(&index(&child("spec", key), i), "image");
            if image.is_empty() {
                e.required(&path, "");
            } else if image.trim() != image {
                e.invalid(
                    &path,
                    Bad::Str(image),
                    "must not have leading or trailing whitespace",
                );
            }
        }
    }
    if !validate_deadline_update(e, new_spec, old_spec) {
        return;
    }
    validate_tolerations_update(e, new_spec, old_spec);
    if !same(
        Some(&Value::Object(mutable_fields_reset(new_spec, old_spec))),
        Some(&Value::Object(old_spec.clone())),
    ) {
        e.forbidden("spec", POD_UPDATE_MSG);
    }
}

fn list_of<'a>(spec: &'a Obj, key: &str) -> &'a [Value] {
    spec.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// activeDeadlineSeconds may be added or lowered, never raised or removed.
/// Returns false when validation should stop (as Kubernetes does).
fn validate_deadline_update(e: &mut Errs, new_spec: &Obj, old_spec: &Obj) -> bool {
    let path = "spec.activeDeadlineSeconds";
    let new_deadline = new_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    let old_deadline = old_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    match (new_deadline, old_deadline) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            let msg = format!("must be between 0 and {}, inclusive", i32::MAX);
            e.invalid(path, Bad::Int(n), &msg);
            false
        }
        (Some(n), Some(o)) if n > o => {
            e.invalid(
                path,
                Bad::Int(n),
                "must be less than or equal to previous value",
            );
            false
        }
        (None, Some(_)) => {
            e.invalid(
                path,
                Bad::Null,
                "must not update from a positive integer to nil value",
            );
            true
        }
        _ => true,
    }
}

/// Every old toleration must still be there (tolerationSeconds may change).
fn validate_tolerations_update(e: &mut Errs, new_spec: &Obj, old_spec: &Obj) {
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(o) = t.as_object_mut() {
            o.shift_remove("tolerationSeconds");
        }
        normalized(&t)
    };
    let new_list: Vec<_> = list_of(new_spec, "tolerations")
        .iter()
        .map(without_seconds)
        .collect();
    let all_kept = list_of(old_spec, "tolerations")
        .iter()
        .all(|t| new_list.contains(&without_seconds(t)));
    if !all_kept {
        e.forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        );
    }
}

/// The new spec with every field that may change put back to its old value.
fn mutable_fields_reset(new_spec: &Obj, old_spec: &Obj) -> Obj {
    let mut spec = new_spec.clone();
    for key in ["containers", "initContainers"] {
        let old_list = list_of(old_spec, key);
        if let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) {
            for (c, old_c) in list.iter_mut().zip(old_list) {
                if let (Some(c), Some(image)) = (c.as_object_mut(), old_c.get("image")) {
                    c.insert("image".into(), image.clone());
                }
            }
        }
    }
    // Ephemeral containers change through their own subresource (`ephemeral`).
    for key in [
        "activeDeadlineSeconds",
        "tolerations",
        "ephemeralContainers",
    ] {
        match old_spec.get(key) {
            Some(v) => spec.insert(key.to_string(), v.clone()),
            None => spec.shift_remove(key),
        };
    }
    // Binding a pending pod to a node (skiff's binding subresource writes
    // through this same path, where Kubernetes has a separate one).
    let old_node = old_spec
        .get("nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if old_node.is_empty() {
        match old_spec.get("nodeName") {
            Some(v) => spec.insert("nodeName".into(), v.clone()),
            None => spec.shift_remove("nodeName"),
        };
    }
    let old_grace = old_spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let new_grace = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if let (Some(o), Some(1)) = (old_grace, new_grace) {
        if o < 0 {
            spec.insert("terminationGracePeriodSeconds".into(), Value::from(o));
        }
    }
    spec
}

// ---------------------------------------------------------------------------
// Deployments and ReplicaSets
// ---------------------------------------------------------------------------

fn validate_deployment(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    let p = "spec";
    validate_non_negative(e, spec, p, "replicas");
    validate_workload_selector(e, spec, p);
    if let Some(strategy) = obj_at(e, spec, p, "strategy") {
        validate_strategy(e, strategy, &child(p, "strategy"));
    } else {
        e.not_supported(
            &child(p, "strategy"),
            Bad::Go(go_strategy("", None)),
            &["Recreate", "RollingUpdate"],
        );
    }
    let min_ready = validate_non_negative(e, spec, p, "minReadySeconds").unwrap_or(0);
    validate_non_negative(e, spec, p, "revisionHistoryLimit");
    if let Some(deadline) = validate_non_negative(e, spec, p, "progressDeadlineSeconds") {
        if deadline <= min_ready {
            e.invalid(
                &child(p, "progressDeadlineSeconds"),
                Bad::Int(deadline),
                "must be greater than minReadySeconds",
            );
        }
    }
}

fn validate_replica_set(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    let p = "spec";
    validate_non_negative(e, spec, p, "replicas");
    validate_non_negative(e, spec, p, "minReadySeconds");
    validate_workload_selector(e, spec, p);
}

/// ValidateDaemonSetSpec: selector and template as other workloads, then the update
/// strategy (RollingUpdate needs exactly one of maxUnavailable and maxSurge non-zero,
/// neither over 100%; or OnDelete).
fn validate_daemon_set(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    let p = "spec";
    let state = validate_selector_field(e, spec, p, "daemonset");
    if !matches!(state, SelectorState::Invalid) {
        validate_workload_template(e, spec, p, &state, "DaemonSet");
    }
    validate_non_negative(e, spec, p, "minReadySeconds");
    let strategy_path = child(p, "updateStrategy");
    let strategy = obj_at(e, spec, p, "updateStrategy").unwrap_or(&empty);
    let strategy_type = str_at(e, strategy, &strategy_path, "type");
    match strategy_type {
        "OnDelete" => {}
        "RollingUpdate" => match obj_at(e, strategy, &strategy_path, "rollingUpdate") {
            None => e.required(&child(&strategy_path, "rollingUpdate"), ""),
            Some(rolling) => {
                validate_daemon_set_rolling_update(e, rolling, &child(&strategy_path, "rollingUpdate"))
            }
        },
        other => e.not_supported(
            &strategy_path,
            Bad::Go(format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                go_quote(other)
            )),
            &["RollingUpdate", "OnDelete"],
        ),
    }
    validate_non_negative(e, spec, p, "revisionHistoryLimit");
}

/// ValidateRollingUpdateDaemonSet.
fn validate_daemon_set_rolling_update(e: &mut Errs, rolling: &Obj, p: &str) {
    let unavailable = validate_int_or_percent(e, rolling, p, "maxUnavailable");
    let surge = validate_int_or_percent(e, rolling, p, "maxSurge");
    let value_of = |v: &Option<IntOrStr>| match v {
        Some(IntOrStr::Int(n)) => *n,
        Some(IntOrStr::Str(s)) => parse_percent(s).unwrap_or(0),
        None => 0,
    };
    for (key, value) in [("maxUnavailable", &unavailable), ("maxSurge", &surge)] {
        if let Some(IntOrStr::Str(s)) = value {
            if parse_percent(s).is_some_and(|n| n > 100) {
                let rendered = go_int_or_string(value.as_ref().unwrap_or(&IntOrStr::Int(0)));
                e.invalid(
                    &child(p, key),
                    Bad::Go(rendered),
                    "must not be greater than 100%",
                );
            }
        }
    }
    match (value_of(&unavailable) != 0, value_of(&surge) != 0) {
        (true, true) => e.invalid(
            &child(p, "maxSurge"),
            Bad::Go(go_int_or_string(
                surge.as_ref().unwrap_or(&IntOrStr::Int(0)),
            )),
            "may not be set when maxUnavailable is non-zero",
        ),
        (false, false) => e.required(
            &child(p, "maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        ),
        _ => {}
    }
}

/// An integer field that must be >= 0; returns it.
fn validate_non_negative(e: &mut Errs, m: &Obj, p: &str, key: &str) -> Option<i64> {
    let n = int_at(e, m, p, key)?;
    if n < 0 {
        e.invalid(&child(p, key), Bad::Int(n), IS_NEGATIVE_MSG);
    }
    Some(n)
}

/// What the selector check leaves for the template check.
enum SelectorState {
    /// No selector: it matches nothing.
    Missing,
    /// Parsed; `false` when empty (matches everything, not checked).
    Parsed(LabelSelector, bool),
    /// Unparseable: Kubernetes skips the template checks.
    Invalid,
}

/// Selector required, valid and non-empty; the template matches it and
/// restarts Always (ValidatePodTemplateSpecForReplicaSet).
fn validate_workload_selector(e: &mut Errs, spec: &Obj, p: &str) {
    let state = validate_selector_field(e, spec, p, "deployment");
    if !matches!(state, SelectorState::Invalid) {
        validate_workload_template(e, spec, p, &state, "ReplicaSet");
    }
}

/// `workload` names the kind in the empty-selector message, as upstream words it.
fn validate_selector_field(e: &mut Errs, spec: &Obj, p: &str, workload: &str) -> SelectorState {
    let path = child(p, "selector");
    let Some(sel) = get(spec, "selector") else {
        e.required(&path, "");
        return SelectorState::Missing;
    };
    validate_label_selector(e, sel, &path);
    let non_empty = ["matchLabels", "matchExpressions"].iter().any(|k| {
        sel.get(k).is_some_and(|v| {
            v.as_object().is_some_and(|o| !o.is_empty())
                || v.as_array().is_some_and(|a| !a.is_empty())
        })
    });
    let rendered = go_label_selector(Some(sel));
    if !non_empty {
        e.invalid(
            &path,
            Bad::Go(rendered.clone()),
            &format!("empty selector is invalid for {workload}"),
        );
    }
    match LabelSelector::from_json(sel) {
        Ok(parsed) => SelectorState::Parsed(parsed, non_empty),
        Err(_) => {
            e.invalid(&path, Bad::Go(rendered), "invalid label selector");
            SelectorState::Invalid
        }
    }
}

/// `kind` names the workload in the activeDeadlineSeconds message.
fn validate_workload_template(
    e: &mut Errs,
    spec: &Obj,
    p: &str,
    selector: &SelectorState,
    kind: &str,
) {
    let template_path = child(p, "template");
    let Some(template) = obj_at(e, spec, p, "template") else {
        e.required(&template_path, "");
        return;
    };
    let empty = Obj::new();
    let meta = obj_at(e, template, &template_path, "metadata").unwrap_or(&empty);
    let labels = meta.get("labels").and_then(Value::as_object);
    let matches = match selector {
        SelectorState::Parsed(sel, true) => sel.matches(labels),
        SelectorState::Parsed(_, false) | SelectorState::Invalid => true,
        SelectorState::Missing => false,
    };
    if !matches {
        let labels_path = child(&template_path, "metadata.labels");
        let rendered = go_string_map(meta.get("labels"));
        let msg = "`selector` does not match template `labels`";
        e.invalid(&labels_path, Bad::Go(rendered), msg);
    }
    validate_pod_template(e, template, &template_path);
    let pod_spec = template
        .get("spec")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let spec_path = child(&template_path, "spec");
    let restart = pod_spec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if restart != "Always" {
        e.not_supported(
            &child(&spec_path, "restartPolicy"),
            Bad::Str(restart),
            &["Always"],
        );
    }
    if let Some(deadline) = get(pod_spec, "activeDeadlineSeconds") {
        let path = child(&spec_path, "activeDeadlineSeconds");
        let msg = format!("activeDeadlineSeconds in {kind} is not Supported");
        if kind == "DaemonSet" {
            e.invalid(&path, Bad::Json(deadline), &msg);
        } else {
            e.forbidden(&path, &msg);
        }
    }
}

/// ValidatePodTemplateSpec (labels and annotations are reported on
/// `<template>.labels` / `<template>.annotations`, as Kubernetes does).
fn validate_pod_template(e: &mut Errs, template: &Obj, p: &str) {
    let empty = Obj::new();
    let meta = obj_at(e, template, p, "metadata").unwrap_or(&empty);
    validate_labels(e, meta, p, "labels");
    validate_annotations(e, meta, p, "annotations");
    let spec = obj_at(e, template, p, "spec").unwrap_or(&empty);
    validate_pod_spec(e, spec, &child(p, "spec"), false);
}

/// ValidateLabelSelector: matchLabels and each requirement.
fn validate_label_selector(e: &mut Errs, sel: &Value, p: &str) {
    let Some(sel) = as_obj(e, sel, p) else {
        return;
    };
    validate_labels(e, sel, p, "matchLabels");
    for (path, req) in objs_at(e, sel, p, "matchExpressions") {
        let operator = str_at(e, req, &path, "operator");
        let values = strs_at(e, req, &path, "values");
        match operator {
            "In" | "NotIn" if values.is_empty() => e.required(
                &child(&path, "values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => e.forbidden(
                &child(&path, "values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => e.invalid(
                &child(&path, "operator"),
                Bad::Str(other),
                "not a valid selector operator",
            ),
        }
        let key = str_at(e, req, &path, "key");
        if let Err(msg) = validate_label_key(key) {
            e.invalid(&child(&path, "key"), Bad::Str(key), &msg);
        }
        for (value_path, value) in values {
            if let Err(msg) = validate_label_value(value) {
                e.invalid(&value_path, Bad::Str(value), &msg);
            }
        }
    }
}

fn go_strategy(strategy_type: &str, rolling: Option<&Obj>) -> String {
    let rolling = match rolling {
        None => "(*apps.RollingUpdateDeployment)(nil)".to_string(),
        Some(r) => format!(
            "&apps.RollingUpdateDeployment{{MaxUnavailable:{}, MaxSurge:{}}}",
            r.get("maxUnavailable")
                .map(render_json)
                .unwrap_or_else(|| "null".into()),
            r.get("maxSurge")
                .map(render_json)
                .unwrap_or_else(|| "null".into()),
        ),
    };
    format!(
        "apps.DeploymentStrategy{{Type:{}, RollingUpdate:{rolling}}}",
        go_quote(strategy_type)
    )
}

fn validate_strategy(e: &mut Errs, strategy: &Obj, p: &str) {
    let strategy_type = str_at(e, strategy, p, "type");
    let rolling = obj_at(e, strategy, p, "rollingUpdate");
    match (strategy_type, rolling) {
        ("Recreate", Some(_)) => e.forbidden(
            &child(p, "rollingUpdate"),
            "may not be specified when strategy `type` is 'Recreate'",
        ),
        ("Recreate", None) => {}
        ("RollingUpdate", None) => e.required(
            &child(p, "rollingUpdate"),
            "this should be defaulted and never be nil",
        ),
        ("RollingUpdate", Some(r)) => validate_rolling_update(e, r, &child(p, "rollingUpdate")),
        (other, r) => e.not_supported(
            p,
            Bad::Go(go_strategy(other, r)),
            &["Recreate", "RollingUpdate"],
        ),
    }
}

fn validate_rolling_update(e: &mut Errs, rolling: &Obj, p: &str) {
    let unavailable = validate_int_or_percent(e, rolling, p, "maxUnavailable");
    let surge = validate_int_or_percent(e, rolling, p, "maxSurge");
    let value_of = |v: &Option<IntOrStr>| match v {
        Some(IntOrStr::Int(n)) => *n,
        Some(IntOrStr::Str(s)) => parse_percent(s).unwrap_or_else(|| s.parse().unwrap_or(0)),
        None => 0,
    };
    let unavailable_path = child(p, "maxUnavailable");
    let rendered = go_int_or_string(unavailable.as_ref().unwrap_or(&IntOrStr::Int(0)));
    if value_of(&unavailable) == 0 && value_of(&surge) == 0 {
        e.invalid(
            &unavailable_path,
            Bad::Go(rendered.clone()),
            "may not be 0 when `maxSurge` is 0",
        );
    }
    if let Some(IntOrStr::Str(s)) = &unavailable {
        if parse_percent(s).is_some_and(|n| n > 100) {
            e.invalid(
                &unavailable_path,
                Bad::Go(rendered),
                "must not be greater than 100%",
            );
        }
    }
}

/// ValidatePositiveIntOrPercent; returns the parsed value.
fn validate_int_or_percent<'a>(
    e: &mut Errs,
    m: &'a Obj,
    p: &str,
    key: &str,
) -> Option<IntOrStr<'a>> {
    let path = child(p, key);
    let value = get(m, key).and_then(|v| int_or_str(e, v, &path))?;
    match &value {
        IntOrStr::Int(n) if *n < 0 => e.invalid(&path, Bad::Int(*n), IS_NEGATIVE_MSG),
        IntOrStr::Str(s) if parse_percent(s).is_none() => {
            e.invalid(&path, Bad::Go(go_int_or_string(&value)), &percent_error())
        }
        _ => {}
    }
    Some(value)
}

/// Deployment and ReplicaSet updates: `spec.selector` is immutable.
fn validate_selector_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let new_sel = new.get("spec").and_then(|s| s.get("selector"));
    let old_sel = old.get("spec").and_then(|s| s.get("selector"));
    if !same(new_sel, old_sel) {
        e.invalid(
            "spec.selector",
            Bad::Go(go_label_selector(new_sel)),
            IMMUTABLE_MSG,
        );
    }
}

// ---------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);
const KUBELET_PORT: i64 = 10250;

/// The service's clusterIPs (falling back to clusterIP when not synced).
fn service_cluster_ips<'a>(e: &mut Errs, spec: &'a Obj) -> Vec<(String, &'a str)> {
    let ips = strs_at(e, spec, "spec", "clusterIPs");
    if !ips.is_empty() {
        return ips;
    }
    match spec.get("clusterIP").and_then(Value::as_str) {
        Some(ip) if !ip.is_empty() => vec![("spec.clusterIPs[0]".to_string(), ip)],
        _ => Vec::new(),
    }
}

fn validate_service(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    let p = "spec";
    let svc_type = str_at(e, spec, p, "type");
    let cluster_ips = service_cluster_ips(e, spec);
    let headless = cluster_ips.len() == 1 && cluster_ips[0].1 == "None";
    let ports = objs_at(e, spec, p, "ports");
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        e.required("spec.ports", "");
    }
    validate_service_type_rules(e, spec, svc_type, headless, &ports);
    let mut names = HashSet::new();
    for (path, port) in &ports {
        validate_service_port(e, port, path, ports.len() > 1, &mut names);
    }
    validate_labels(e, spec, p, "selector");
    validate_session_affinity(e, spec);
    if svc_type != "ExternalName" {
        validate_cluster_ips(e, spec);
    }
    for (path, ip) in strs_at(e, spec, p, "externalIPs") {
        if parse_ip(ip).is_none() {
            e.invalid(&path, Bad::Str(ip), INVALID_IP_MSG);
        }
    }
    if svc_type.is_empty() {
        e.required("spec.type", "");
    } else if !SERVICE_TYPES.contains(&svc_type) {
        e.not_supported("spec.type", Bad::Str(svc_type), &SERVICE_TYPES);
    }
    validate_service_node_ports(e, svc_type, &ports);
    validate_duplicate_service_ports(e, &ports);
    validate_traffic_policies(e, spec, svc_type);
}

fn validate_service_type_rules(
    e: &mut Errs,
    spec: &Obj,
    svc_type: &str,
    headless: bool,
    ports: &[(String, &Obj)],
) {
    match svc_type {
        "LoadBalancer" | "NodePort" if headless => {
            let msg = format!("may not be set to 'None' for {svc_type} services");
            e.invalid("spec.clusterIPs[0]", Bad::Str("None"), &msg);
        }
        "ExternalName" => validate_external_name(e, spec),
        _ => {}
    }
    if svc_type == "LoadBalancer" {
        for (path, port) in ports {
            if port.get("port").and_then(Value::as_i64) == Some(KUBELET_PORT) {
                let msg = format!(
                    "may not expose port {KUBELET_PORT} externally since it is used by kubelet"
                );
                e.invalid(path, Bad::Int(KUBELET_PORT), &msg);
            }
        }
    }
}

/// ExternalName services: a DNS name and no cluster IP fields.
fn validate_external_name(e: &mut Errs, spec: &Obj) {
    let msg = "may not be set for ExternalName services";
    let has_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .is_some_and(|ip| !ip.is_empty());
    if has_ip || !list_of(spec, "clusterIPs").is_empty() {
        e.forbidden("spec.clusterIPs", msg);
    }
    if !list_of(spec, "ipFamilies").is_empty() {
        e.forbidden("spec.ipFamilies", msg);
    }
    if get(spec, "ipFamilyPolicy").is_some() {
        e.forbidden("spec.ipFamilyPolicy", msg);
    }
    // The CNAME may end with a dot.
    let name = str_at(e, spec, "spec", "externalName");
    let cname = name.strip_suffix('.').unwrap_or(name);
    if cname.is_empty() {
        e.required("spec.externalName", "");
    } else {
        for msg in dns1123_subdomain_errors(cname) {
            e.invalid("spec.externalName", Bad::Str(cname), &msg);
        }
    }
}

fn validate_service_port<'a>(
    e: &mut Errs,
    port: &'a Obj,
    p: &str,
    require_name: bool,
    names: &mut HashSet<&'a str>,
) {
    let name = str_at(e, port, p, "name");
    let name_path = child(p, "name");
    if require_name && name.is_empty() {
        e.required(&name_path, "");
    } else if !name.is_empty() {
        for msg in dns1123_label_errors(name) {
            e.invalid(&name_path, Bad::Str(name), &msg);
        }
        if !names.insert(name) {
            e.duplicate(&name_path, Bad::Str(name));
        }
    }
    let number = int_at(e, port, p, "port").unwrap_or(0);
    if !valid_port(number) {
        e.invalid(&child(p, "port"), Bad::Int(number), PORT_RANGE_MSG);
    }
    validate_enum(e, port, p, "protocol", &PROTOCOLS);
    validate_port_num_or_name(e, port, p, "targetPort");
    if let Some(app_protocol) = opt_str_at(e, port, p, "appProtocol") {
        if let Err(msg) = validate_label_key(app_protocol) {
            e.invalid(&child(p, "appProtocol"), Bad::Str(app_protocol), &msg);
        }
    }
}

fn validate_session_affinity(e: &mut Errs, spec: &Obj) {
    let affinity = str_at(e, spec, "spec", "sessionAffinity");
    let config_path = "spec.sessionAffinityConfig";
    match affinity {
        "" => e.required("spec.sessionAffinity", ""),
        "None" => {
            if get(spec, "sessionAffinityConfig").is_some() {
                e.forbidden(config_path, "must not be set when session affinity is None");
            }
        }
        "ClientIP" => {
            let timeout_path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"));
            match timeout.and_then(|t| as_int(e, t, timeout_path)) {
                Some(n) if n > 0 && n <= 86400 => {}
                Some(n) => e.invalid(
                    timeout_path,
                    Bad::Int(n),
                    "must be greater than 0 and less than 86400",
                ),
                None => e.required(config_path, ""),
            }
        }
        other => e.not_supported(
            "spec.sessionAffinity",
            Bad::Str(other),
            &["ClientIP", "None"],
        ),
    }
}

/// ValidateServiceClusterIPsRelatedFields (single- and dual-stack shapes).
fn validate_cluster_ips(e: &mut Errs, spec: &Obj) {
    let cluster_ip = str_at(e, spec, "spec", "clusterIP");
    let ips_value = spec.get("clusterIPs").cloned().unwrap_or(Value::Null);
    let ips = strs_at(e, spec, "spec", "clusterIPs");
    if !cluster_ip.is_empty() && !ips.is_empty() && ips[0].1 != cluster_ip {
        e.invalid(
            "spec.clusterIPs",
            Bad::Json(&ips_value),
            "first value must match `clusterIP`",
        );
    } else if cluster_ip.is_empty() && !ips.is_empty() {
        e.invalid(
            "spec.clusterIPs",
            Bad::Json(&ips_value),
            "must be empty when `clusterIP` is not specified",
        );
    }
    let mut seen = HashSet::new();
    for (path, family) in strs_at(e, spec, "spec", "ipFamilies") {
        if family != "IPv4" && family != "IPv6" {
            e.not_supported(&path, Bad::Str(family), &["IPv4", "IPv6"]);
        }
        if !seen.insert(family) {
            e.duplicate(&path, Bad::Str(family));
        }
    }
    if let Some(policy) = opt_str_at(e, spec, "spec", "ipFamilyPolicy") {
        let valid = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !valid.contains(&policy) {
            e.not_supported("spec.ipFamilyPolicy", Bad::Str(policy), &valid);
        }
    }
    // With no clusterIPs list, check clusterIP itself.
    let to_check = if ips.is_empty() && !cluster_ip.is_empty() {
        vec![("spec.clusterIPs[0]".to_string(), cluster_ip)]
    } else {
        ips
    };
    for (i, (path, ip)) in to_check.iter().enumerate() {
        if *ip == "None" && i == 0 {
            if to_check.len() > 1 {
                e.invalid(
                    "spec.clusterIPs",
                    Bad::Json(&ips_value),
                    "'None' must be the first and only value",
                );
            }
            continue;
        }
        if parse_ip(ip).is_none() {
            e.invalid(path, Bad::Str(ip), INVALID_IP_MSG);
        }
    }
    if to_check.len() > 2 {
        e.invalid(
            "spec.clusterIPs",
            Bad::Json(&ips_value),
            "may only hold up to 2 values",
        );
    }
}

fn validate_service_node_ports(e: &mut Errs, svc_type: &str, ports: &[(String, &Obj)]) {
    let mut seen = HashSet::new();
    for (path, port) in ports {
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port == 0 {
            continue;
        }
        let node_port_path = child(path, "nodePort");
        match svc_type {
            "ClusterIP" => e.forbidden(
                &node_port_path,
                "may not be used when `type` is 'ClusterIP'",
            ),
            "NodePort" | "LoadBalancer"
                if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port) =>
            {
                let msg = format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                );
                e.invalid(&node_port_path, Bad::Int(node_port), &msg);
            }
            _ => {}
        }
        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !seen.insert((protocol, node_port)) {
            e.duplicate(&node_port_path, Bad::Int(node_port));
        }
    }
}

/// Two ports with the same (protocol, port) pair.
fn validate_duplicate_service_ports(e: &mut Errs, ports: &[(String, &Obj)]) {
    let mut seen = HashSet::new();
    for (path, port) in ports {
        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !seen.insert((protocol, number)) {
            let key = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                go_quote(protocol)
            );
            e.duplicate(path, Bad::Go(key));
        }
    }
}

fn validate_traffic_policies(e: &mut Errs, spec: &Obj, svc_type: &str) {
    let has_external_ips = !list_of(spec, "externalIPs").is_empty();
    let external = matches!(svc_type, "NodePort" | "LoadBalancer")
        || (svc_type == "ClusterIP" && has_external_ips);
    let policy = str_at(e, spec, "spec", "externalTrafficPolicy");
    let path = "spec.externalTrafficPolicy";
    if !external && !policy.is_empty() {
        e.invalid(
            path,
            Bad::Str(policy),
            "may only be set for externally-accessible services",
        );
    } else if external && policy.is_empty() {
        e.required(path, "");
    } else if external && policy != "Cluster" && policy != "Local" {
        e.not_supported(path, Bad::Str(policy), &["Cluster", "Local"]);
    }
    let internal = opt_str_at(e, spec, "spec", "internalTrafficPolicy");
    let path = "spec.internalTrafficPolicy";
    match internal {
        None if matches!(svc_type, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            e.required(path, "must be specified")
        }
        Some(p) if p != "Cluster" && p != "Local" => {
            e.not_supported(path, Bad::Str(p), &["Cluster", "Local"])
        }
        _ => {}
    }
}

/// Service updates: a set cluster IP may not change (an update that omits it
/// keeps the stored one, so only a different non-empty value is an error).
fn validate_service_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let spec_of = |o: &Obj| {
        o.get("spec")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (new_spec, old_spec) = (spec_of(new), spec_of(old));
    let svc_type = |s: &Obj| {
        s.get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if svc_type(&new_spec) == "ExternalName" || svc_type(&old_spec) == "ExternalName" {
        return;
    }
    let ips = |s: &Obj| -> Vec<String> {
        let list: Vec<String> = list_of(s, "clusterIPs")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if !list.is_empty() {
            return list;
        }
        s.get("clusterIP")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
            .map(|ip| vec![ip.to_string()])
            .unwrap_or_default()
    };
    let (new_ips, old_ips) = (ips(&new_spec), ips(&old_spec));
    let headless = |v: &[String]| v.len() == 1 && v[0] == "None";
    if new_ips.is_empty() || (headless(&new_ips) && headless(&old_ips)) {
        return;
    }
    if let (Some(new_first), Some(old_first)) = (new_ips.first(), old_ips.first()) {
        if new_first != old_first {
            let rendered = go_string_slice(
                &new_ips
                    .iter()
                    .map(|s| Value::from(s.as_str()))
                    .collect::<Vec<_>>(),
            );
            e.invalid(
                "spec.clusterIPs[0]",
                Bad::Go(rendered),
                "may not change once set",
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Namespaces, Nodes, ConfigMaps, Secrets, ServiceAccounts, Leases
// ---------------------------------------------------------------------------

fn validate_namespace(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    for (_, finalizer) in strs_at(e, spec, "spec", "finalizers") {
        validate_finalizer_name(e, finalizer, "spec.finalizers");
    }
}

fn validate_finalizer_name(e: &mut Errs, name: &str, path: &str) {
    if let Err(msg) = validate_label_key(name) {
        e.invalid(path, Bad::Str(name), &msg);
    } else if !name.contains('/') && name != "kubernetes" {
        e.invalid(
            path,
            Bad::Str(name),
            "name is neither a standard finalizer name nor is it fully qualified",
        );
    }
}

fn validate_node(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    validate_node_taints(e, spec);
    validate_pod_cidrs(e, spec);
    if let Some(status) = obj_at(e, root, "", "status") {
        validate_node_resources(e, status);
    }
}

/// Valid keys, values and effects; unique by (key, effect). Kubernetes reports
/// these under `metadata.taints`.
fn validate_node_taints(e: &mut Errs, spec: &Obj) {
    let mut seen = HashSet::new();
    for (i, (_, taint)) in objs_at(e, spec, "spec", "taints").into_iter().enumerate() {
        let path = index("metadata.taints", i);
        let key = str_at(e, taint, &path, "key");
        if let Err(msg) = validate_label_key(key) {
            e.invalid(&child(&path, "key"), Bad::Str(key), &msg);
        }
        let value = str_at(e, taint, &path, "value");
        if let Err(msg) = validate_label_value(value) {
            e.invalid(&child(&path, "value"), Bad::Str(value), &msg);
        }
        let effect = str_at(e, taint, &path, "effect");
        if effect.is_empty() {
            e.required(&child(&path, "effect"), "");
        } else if !TAINT_EFFECTS.contains(&effect) {
            e.not_supported(&child(&path, "effect"), Bad::Str(effect), &TAINT_EFFECTS);
        }
        if !seen.insert((key, effect)) {
            let rendered = format!(
                "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:(*v1.Time)(nil)}}",
                go_quote(key),
                go_quote(value),
                go_quote(effect)
            );
            let detail = "taints must be unique by key and effect pair";
            e.duplicate_with_detail(&path, Bad::Go(rendered), detail);
        }
    }
}

/// Valid CIDRs, at most one per IP family.
fn validate_pod_cidrs(e: &mut Errs, spec: &Obj) {
    let cidrs = strs_at(e, spec, "spec", "podCIDRs");
    for (path, cidr) in &cidrs {
        if !cidr_ok(cidr) {
            e.invalid(
                path,
                Bad::Str(cidr),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            );
        }
    }
    let families: HashSet<bool> = cidrs
        .iter()
        .filter_map(|(_, c)| {
            c.split_once('/')
                .and_then(|(ip, _)| parse_ip(ip))
                .map(|ip| ip.is_ipv4())
        })
        .collect();
    if cidrs.len() > 2 || (cidrs.len() == 2 && families.len() != 2) {
        let value = spec.get("podCIDRs").cloned().unwrap_or(Value::Null);
        e.invalid(
            "spec.podCIDRs",
            Bad::Json(&value),
            "may specify no more than one CIDR for each IP family",
        );
    }
}

/// Capacity and allocatable quantities parse and are non-negative.
fn validate_node_resources(e: &mut Errs, status: &Obj) {
    for key in ["capacity", "allocatable"] {
        let path = child("status", key);
        for (name, quantity) in obj_at(e, status, "status", key).into_iter().flatten() {
            let item_path = key_path(&path, name);
            if let Some((text, value)) = quantity_at(e, quantity, &item_path) {
                if value < 0.0 {
                    e.invalid(&item_path, Bad::Str(&text), IS_NEGATIVE_MSG);
                }
            }
        }
    }
}

fn validate_node_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let spec_field = |o: &Obj, key: &str| o.get("spec").and_then(|s| s.get(key)).cloned();
    let old_cidrs = spec_field(old, "podCIDRs");
    if old_cidrs.as_ref().and_then(normalized).is_some()
        && !same(spec_field(new, "podCIDRs").as_ref(), old_cidrs.as_ref())
    {
        e.forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        );
    }
    let old_provider = spec_field(old, "providerID");
    let old_provider = old_provider
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_default();
    let new_provider = spec_field(new, "providerID");
    let new_provider = new_provider
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !old_provider.is_empty() && old_provider != new_provider {
        e.forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        );
    }
}

const MAX_DATA_SIZE: usize = 1024 * 1024;

fn validate_config_map(e: &mut Errs, root: &Obj) {
    let mut total = 0;
    let binary_keys: HashSet<&str> = root
        .get("binaryData")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for (key, value) in string_map_at(e, root, "", "data") {
        let path = key_path("data", key);
        for msg in config_map_key_errors(key) {
            e.invalid(&path, Bad::Str(key), &msg);
        }
        if binary_keys.contains(key) {
            e.invalid(
                &path,
                Bad::Str(key),
                "duplicate of key present in binaryData",
            );
        }
        total += value.len();
    }
    for (key, value) in string_map_at(e, root, "", "binaryData") {
        let path = key_path("binaryData", key);
        for msg in config_map_key_errors(key) {
            e.invalid(&path, Bad::Str(key), &msg);
        }
        match base64_decoded_len(value) {
            Ok(n) => total += n,
            Err(at) => e.invalid(
                &path,
                Bad::Str("<binary data>"),
                &format!("illegal base64 data at input byte {at}"),
            ),
        }
    }
    if total > MAX_DATA_SIZE {
        e.too_long("", MAX_DATA_SIZE);
    }
    bool_at(e, root, "", "immutable"); // type check only
}

fn validate_secret(e: &mut Errs, root: &Obj) {
    let mut total = 0;
    let data = string_map_at(e, root, "", "data");
    for (key, value) in &data {
        let path = key_path("data", key);
        for msg in config_map_key_errors(key) {
            e.invalid(&path, Bad::Str(key), &msg);
        }
        match base64_decoded_len(value) {
            Ok(n) => total += n,
            Err(at) => e.invalid(
                &path,
                Bad::Str("<secret contents redacted>"),
                &format!("illegal base64 data at input byte {at}"),
            ),
        }
    }
    for (key, _) in string_map_at(e, root, "", "stringData") {
        for msg in config_map_key_errors(key) {
            e.invalid(&key_path("stringData", key), Bad::Str(key), &msg);
        }
    }
    if total > MAX_DATA_SIZE {
        e.too_long("data", MAX_DATA_SIZE);
    }
    let has = |key: &str| data.iter().any(|(k, _)| *k == key);
    let secret_type = str_at(e, root, "", "type");
    let required_keys: &[&str] = match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            &["username", "password"]
        }
        _ => &[],
    };
    for key in required_keys {
        if !has(key) {
            e.required(&key_path("data", key), "");
        }
    }
    if secret_type == "kubernetes.io/service-account-token" {
        let annotation = meta_of(root)
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("kubernetes.io/service-account.name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if annotation.is_empty() {
            e.required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            );
        }
    }
    bool_at(e, root, "", "immutable");
}

/// Decoded length of standard padded base64 (newlines ignored, as Go does),
/// or the input byte offset of the first problem.
fn base64_decoded_len(s: &str) -> Result<usize, usize> {
    let chars: Vec<(usize, u8)> = s
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b != b'\n' && *b != b'\r')
        .collect();
    let is_alpha = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut len = 0;
    for (q, quad) in chars.chunks(4).enumerate() {
        let last = (q + 1) * 4 >= chars.len();
        let pads = quad.iter().filter(|(_, b)| *b == b'=').count();
        for (j, (at, b)) in quad.iter().enumerate() {
            let pad_ok = *b == b'=' && last && j >= 2 && quad[j..].iter().all(|(_, c)| *c == b'=');
            if !is_alpha(*b) && !pad_ok {
                return Err(*at);
            }
        }
        if quad.len() < 4 {
            return Err(s.len());
        }
        len += 3 - pads;
    }
    Ok(len)
}

fn data_of(o: &Obj, key: &str) -> Option<Value> {
    o.get(key).cloned()
}

fn is_immutable(o: &Obj) -> bool {
    o.get("immutable").and_then(Value::as_bool) == Some(true)
}

/// An immutable ConfigMap/Secret keeps its data and its `immutable` flag.
fn validate_immutable_data(e: &mut Errs, new: &Obj, old: &Obj, keys: &[&str]) {
    if !is_immutable(old) {
        return;
    }
    let msg = "field is immutable when `immutable` is set";
    if !is_immutable(new) {
        e.forbidden("immutable", msg);
    }
    for key in keys {
        if !same(data_of(new, key).as_ref(), data_of(old, key).as_ref()) {
            e.forbidden(key, msg);
        }
    }
}

fn validate_config_map_update(e: &mut Errs, new: &Obj, old: &Obj) {
    validate_immutable_data(e, new, old, &["data", "binaryData"]);
}

fn validate_secret_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let type_of = |o: &Obj| {
        o.get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let new_type = type_of(new);
    if new_type != type_of(old) {
        e.invalid("type", Bad::Str(&new_type), IMMUTABLE_MSG);
    }
    validate_immutable_data(e, new, old, &["data"]);
}

fn validate_service_account(e: &mut Errs, root: &Obj) {
    bool_at(e, root, "", "automountServiceAccountToken");
    for (path, secret) in objs_at(e, root, "", "secrets") {
        str_at(e, secret, &path, "name");
    }
    for (path, secret) in objs_at(e, root, "", "imagePullSecrets") {
        str_at(e, secret, &path, "name");
    }
}

/// ValidateControllerRevision: `data` is mandatory, `revision` not negative.
fn validate_controller_revision(e: &mut Errs, root: &Obj) {
    if get(root, "data").is_none() {
        e.required("data", "data is mandatory");
    }
    validate_non_negative(e, root, "", "revision");
}

/// ValidateControllerRevisionUpdate: `data` is immutable.
fn validate_controller_revision_update(e: &mut Errs, new: &Obj, old: &Obj) {
    if !same(new.get("data"), old.get("data")) {
        let value = new.get("data").cloned().unwrap_or(Value::Null);
        e.invalid("data", Bad::Json(&value), IMMUTABLE_MSG);
    }
}

fn validate_lease(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    str_at(e, spec, "spec", "holderIdentity");
    if let Some(n) = int_at(e, spec, "spec", "leaseDurationSeconds").filter(|n| *n <= 0) {
        e.invalid(
            "spec.leaseDurationSeconds",
            Bad::Int(n),
            "must be greater than 0",
        );
    }
    if let Some(n) = int_at(e, spec, "spec", "leaseTransitions").filter(|n| *n < 0) {
        e.invalid("spec.leaseTransitions", Bad::Int(n), IS_NEGATIVE_MSG);
    }
}

// ---------------------------------------------------------------------------
// RBAC (rbac.authorization.k8s.io/v1), as upstream's rbac validation
// ---------------------------------------------------------------------------

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn validate_policy_rules(e: &mut Errs, root: &Obj, namespaced: bool) {
    for (path, rule) in objs_at(e, root, "", "rules") {
        if strs_at(e, rule, &path, "verbs").is_empty() {
            e.required(
                &child(&path, "verbs"),
                "verbs must contain at least one value",
            );
        }
        let urls = strs_at(e, rule, &path, "nonResourceURLs");
        let groups = strs_at(e, rule, &path, "apiGroups");
        let resources = strs_at(e, rule, &path, "resources");
        strs_at(e, rule, &path, "resourceNames");
        if !urls.is_empty() {
            if namespaced {
                let url = child(&path, "nonResourceURLs");
                e.invalid(
                    &url,
                    Bad::Go(go_strings(&urls)),
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if !groups.is_empty() || !resources.is_empty() {
                e.invalid(
                    &child(&path, "nonResourceURLs"),
                    Bad::Go(go_strings(&urls)),
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if groups.is_empty() {
            e.required(
                &child(&path, "apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if resources.is_empty() {
            e.required(
                &child(&path, "resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

fn go_strings(items: &[(String, &str)]) -> String {
    let quoted: Vec<String> = items.iter().map(|(_, s)| go_quote(s)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

fn validate_role(e: &mut Errs, root: &Obj) {
    validate_policy_rules(e, root, true);
}

fn validate_cluster_role(e: &mut Errs, root: &Obj) {
    validate_policy_rules(e, root, false);
    if let Some(rule) = obj_at(e, root, "", "aggregationRule") {
        for (path, selector) in objs_at(e, rule, "aggregationRule", "clusterRoleSelectors") {
            obj_at(e, selector, &path, "matchLabels");
            objs_at(e, selector, &path, "matchExpressions");
        }
    }
}

fn validate_role_binding(e: &mut Errs, root: &Obj) {
    validate_binding(e, root, &["Role", "ClusterRole"], false);
}

fn validate_cluster_role_binding(e: &mut Errs, root: &Obj) {
    validate_binding(e, root, &["ClusterRole"], true);
}

fn validate_binding(e: &mut Errs, root: &Obj, role_kinds: &[&str], cluster: bool) {
    let empty = Obj::new();
    let Some(role_ref) = obj_at(e, root, "", "roleRef") else {
        e.required("roleRef", "");
        return;
    };
    let group = str_at(e, role_ref, "roleRef", "apiGroup");
    if group != RBAC_GROUP {
        e.not_supported("roleRef.apiGroup", Bad::Str(group), &[RBAC_GROUP]);
    }
    let kind = str_at(e, role_ref, "roleRef", "kind");
    if !role_kinds.contains(&kind) {
        e.not_supported("roleRef.kind", Bad::Str(kind), role_kinds);
    }
    if str_at(e, role_ref, "roleRef", "name").is_empty() {
        e.required("roleRef.name", "");
    }
    for (path, subject) in objs_at(e, root, "", "subjects") {
        let subject = if subject.is_empty() { &empty } else { subject };
        let name = str_at(e, subject, &path, "name");
        if name.is_empty() {
            e.required(&child(&path, "name"), "");
        }
        let group = str_at(e, subject, &path, "apiGroup");
        match str_at(e, subject, &path, "kind") {
            "ServiceAccount" => {
                if !group.is_empty() {
                    e.not_supported(&child(&path, "apiGroup"), Bad::Str(group), &[""]);
                }
                if cluster && str_at(e, subject, &path, "namespace").is_empty() {
                    e.required(&child(&path, "namespace"), "");
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    e.not_supported(&child(&path, "apiGroup"), Bad::Str(group), &[RBAC_GROUP]);
                }
            }
            other => e.not_supported(
                &child(&path, "kind"),
                Bad::Str(other),
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
}

fn validate_role_ref_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let new_ref = new.get("roleRef");
    if !same(new_ref, old.get("roleRef")) {
        let shown = new_ref.unwrap_or(&Value::Null);
        e.invalid("roleRef", Bad::Json(shown), "cannot change roleRef");
    }
}

// ---------------------------------------------------------------------------
// Events, Endpoints, EndpointSlices
// ---------------------------------------------------------------------------

fn validate_event(e: &mut Errs, root: &Obj) {
    let namespace = meta_str(root, "namespace");
    let Some(involved) = obj_at(e, root, "", "involvedObject") else {
        e.required("involvedObject", "");
        return;
    };
    let involved_ns = str_at(e, involved, "involvedObject", "namespace");
    let legacy = get(root, "eventTime").is_none();
    let ns_ok = if involved_ns.is_empty() {
        !legacy || namespace.is_empty() || namespace == "default"
    } else {
        namespace == involved_ns
    };
    if !ns_ok {
        e.invalid(
            "involvedObject.namespace",
            Bad::Str(involved_ns),
            "does not match event.namespace",
        );
    }
    let event_type = str_at(e, root, "", "type");
    if !legacy && event_type != "Normal" && event_type != "Warning" {
        e.invalid(
            "type",
            Bad::Str(""),
            &format!("has invalid value: {event_type}"),
        );
    }
    int_at(e, root, "", "count");
}

fn validate_endpoints(e: &mut Errs, root: &Obj) {
    for (path, subset) in objs_at(e, root, "", "subsets") {
        let addresses = objs_at(e, subset, &path, "addresses");
        let not_ready = objs_at(e, subset, &path, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            e.required(&path, "must specify `addresses` or `notReadyAddresses`");
        }
        for (addr_path, addr) in addresses.iter().chain(not_ready.iter()) {
            validate_endpoint_address(e, addr, addr_path);
        }
        let ports = objs_at(e, subset, &path, "ports");
        for (port_path, port) in &ports {
            let name = str_at(e, port, port_path, "name");
            if ports.len() > 1 && name.is_empty() {
                e.required(&child(port_path, "name"), "");
            }
            validate_optional_name(e, port, port_path, "name", dns1123_label_errors);
            let number = int_at(e, port, port_path, "port").unwrap_or(0);
            if !valid_port(number) {
                e.invalid(&child(port_path, "port"), Bad::Int(number), PORT_RANGE_MSG);
            }
            validate_enum(e, port, port_path, "protocol", &PROTOCOLS);
        }
    }
}

/// IP valid and not unspecified; hostname a label; nodeName a subdomain.
/// (Kubernetes also rejects loopback and link-local endpoint IPs; skiff runs
/// workloads on the host, so those are accepted here.)
fn validate_endpoint_address(e: &mut Errs, addr: &Obj, p: &str) {
    let ip = str_at(e, addr, p, "ip");
    match parse_ip(ip) {
        None => e.invalid(&child(p, "ip"), Bad::Str(ip), INVALID_IP_MSG),
        Some(parsed) if parsed.is_unspecified() => e.invalid(
            &child(p, "ip"),
            Bad::Str(ip),
            &format!("may not be unspecified ({ip})"),
        ),
        Some(_) => {}
    }
    validate_optional_name(e, addr, p, "hostname", dns1123_label_errors);
    if let Some(node) = opt_str_at(e, addr, p, "nodeName") {
        for msg in dns1123_subdomain_errors(node) {
            e.invalid(&child(p, "nodeName"), Bad::Str(node), &msg);
        }
    }
}

const ADDRESS_TYPES: [&str; 3] = ["FQDN", "IPv4", "IPv6"];

fn validate_endpoint_slice(e: &mut Errs, root: &Obj) {
    let address_type = str_at(e, root, "", "addressType");
    if address_type.is_empty() {
        e.required("addressType", "");
    } else if !ADDRESS_TYPES.contains(&address_type) {
        e.not_supported("addressType", Bad::Str(address_type), &ADDRESS_TYPES);
    }
    for (path, endpoint) in objs_at(e, root, "", "endpoints") {
        let addresses = strs_at(e, endpoint, &path, "addresses");
        if addresses.is_empty() {
            e.required(
                &child(&path, "addresses"),
                "must contain at least 1 address",
            );
        }
        for (addr_path, addr) in addresses {
            let msg = match (address_type, parse_ip(addr)) {
                ("IPv4", Some(IpAddr::V4(_))) | ("IPv6", Some(IpAddr::V6(_))) => continue,
                ("IPv4", _) => "must be a valid IPv4 address".to_string(),
                ("IPv6", _) => "must be a valid IPv6 address".to_string(),
                ("FQDN", _) => match dns1123_subdomain_errors(addr).into_iter().next() {
                    Some(msg) => msg,
                    None => continue,
                },
                _ => continue,
            };
            e.invalid(&addr_path, Bad::Str(addr), &msg);
        }
        validate_optional_name(e, endpoint, &path, "hostname", dns1123_label_errors);
        if let Some(node) = opt_str_at(e, endpoint, &path, "nodeName") {
            for msg in dns1123_subdomain_errors(node) {
                e.invalid(&child(&path, "nodeName"), Bad::Str(node), &msg);
            }
        }
    }
    let mut names = HashSet::new();
    for (path, port) in objs_at(e, root, "", "ports") {
        let name = str_at(e, port, &path, "name");
        if !name.is_empty() {
            for msg in dns1123_label_errors(name) {
                e.invalid(&child(&path, "name"), Bad::Str(name), &msg);
            }
        }
        if !names.insert(name) {
            e.duplicate(&child(&path, "name"), Bad::Str(name));
        }
        validate_enum(e, port, &path, "protocol", &PROTOCOLS);
        if let Some(n) = int_at(e, port, &path, "port").filter(|n| !valid_port(*n)) {
            e.invalid(&child(&path, "port"), Bad::Int(n), PORT_RANGE_MSG);
        }
    }
}

fn validate_endpoint_slice_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let new_type = new
        .get("addressType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let old_type = old
        .get("addressType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if new_type != old_type {
        e.invalid("addressType", Bad::Str(new_type), IMMUTABLE_MSG);
    }
}

#[cfg(test)]
mod tests {
    use super::super::defaults::apply_defaults;
    use super::*;
    use serde_json::json;

    /// Defaults then validates a create, with the namespace the server would fill in.
    fn check(kind: &str, mut obj: Value) -> Vec<FieldError> {
        apply_defaults(kind, &mut obj);
        validate(kind, &obj, None)
    }

    fn check_update(kind: &str, mut old: Value, mut new: Value) -> Vec<FieldError> {
        apply_defaults(kind, &mut old);
        apply_defaults(kind, &mut new);
        validate(kind, &new, Some(&old))
    }

    fn find<'a>(errs: &'a [FieldError], field: &str) -> &'a FieldError {
        match errs.iter().find(|e| e.field == field) {
            Some(err) => err,
            None => panic!("no error for {field} in {errs:#?}"),
        }
    }

    fn has(errs: &[FieldError], field: &str, message: &str) -> bool {
        errs.iter()
            .any(|e| e.field == field && e.message == message)
    }

    fn assert_has(errs: &[FieldError], field: &str, message: &str) {
        assert!(
            has(errs, field, message),
            "missing {field}: {message}\nin {errs:#?}"
        );
    }

    /// The user's fixture (/work/shared/fixtures/deployment.yaml) as JSON,
    /// in the namespace the request URL would give it.
    fn fixture_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "my-flask-app", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "my-flask-app"}},
                "template": {
                    "metadata": {"labels": {"app": "my-flask-app"}},
                    "spec": {
                        "containers": [{
                            "name": "flask",
                            "image": "my-flask-app:latest",
                            "ports": [{"containerPort": 5000}],
                            "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 5000},
                                "initialDelaySeconds": 5,
                                "periodSeconds": 10
                            }
                        }]
                    }
                }
            }
        })
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn deployment_with(f: impl FnOnce(&mut Value)) -> Value {
        let mut d = fixture_deployment();
        f(&mut d);
        d
    }

    #[test]
    fn fixture_deployment_is_valid_after_defaulting() {
        let mut d = fixture_deployment();
        apply_defaults("Deployment", &mut d);
        let spec = &d["spec"];
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &spec["template"]["spec"]["containers"][0];
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["livenessProbe"]["timeoutSeconds"], 1);
        assert_eq!(c["livenessProbe"]["failureThreshold"], 3);
        assert_eq!(validate("Deployment", &d, None), vec![]);
    }

    fn daemon_set_with(f: impl FnOnce(&mut Value)) -> Value {
        let mut ds = json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }
            }
        });
        f(&mut ds);
        ds
    }

    #[test]
    fn controller_revisions_need_data_and_keep_it() {
        let revision = json!({"metadata": {"name": "agent-7f9c", "namespace": "default"},
            "data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 1});
        assert_eq!(check("ControllerRevision", revision.clone()), vec![]);
        let errs = check(
            "ControllerRevision",
            json!({"metadata": {"name": "r", "namespace": "default"}, "revision": -1}),
        );
        assert_eq!(
            find(&errs, "data").message,
            "Required value: data is mandatory"
        );
        assert!(find(&errs, "revision")
            .message
            .contains("must be greater than or equal to 0"));
        let mut changed = revision.clone();
        changed["data"] = json!({"spec": {}});
        changed["revision"] = json!(2);
        let errs = check_update("ControllerRevision", revision, changed);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(find(&errs, "data").message.ends_with(IMMUTABLE_MSG));
    }

    #[test]
    fn daemon_sets_are_validated_as_upstream() {
        assert_eq!(check("DaemonSet", daemon_set_with(|_| {})), vec![]);
        let errs = check(
            "DaemonSet",
            daemon_set_with(|d| d["spec"]["template"]["metadata"]["labels"] = json!({"app": "x"})),
        );
        assert_has(
            &errs,
            "spec.template.metadata.labels",
            "Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
        );
        let errs = check(
            "DaemonSet",
            daemon_set_with(|d| d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never")),
        );
        assert_has(
            &errs,
            "spec.template.spec.restartPolicy",
            "Unsupported value: \"Never\": supported values: \"Always\"",
        );
        let errs = check(
            "DaemonSet",
            daemon_set_with(|d| d["spec"]["selector"] = json!({"matchLabels": {}})),
        );
        assert!(find(&errs, "spec.selector")
            .message
            .ends_with("empty selector is invalid for daemonset"));
        let errs = check(
            "DaemonSet",
            daemon_set_with(
                |d| d["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}),
            ),
        );
        assert_eq!(
            find(&errs, "spec.updateStrategy.rollingUpdate.maxSurge").message,
            "Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero"
        );
        let errs = check(
            "DaemonSet",
            daemon_set_with(
                |d| d["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "0%", "maxSurge": 0}}),
            ),
        );
        assert_eq!(
            find(&errs, "spec.updateStrategy.rollingUpdate.maxUnavailable").message,
            "Required value: cannot be 0 when maxSurge is 0"
        );
        let errs = check(
            "DaemonSet",
            daemon_set_with(
                |d| d["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "120%"}}),
            ),
        );
        assert!(find(&errs, "spec.updateStrategy.rollingUpdate.maxSurge")
            .message
            .ends_with("must not be greater than 100%"));
        let surge = check(
            "DaemonSet",
            daemon_set_with(
                |d| d["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"}}),
            ),
        );
        assert_eq!(surge, vec![]);
        let errs = check(
            "DaemonSet",
            daemon_set_with(|d| d["spec"]["updateStrategy"] = json!({"type": "Sideways"})),
        );
        assert_eq!(
            find(&errs, "spec.updateStrategy").reason,
            CauseReason::NotSupported
        );
        let on_delete = check(
            "DaemonSet",
            daemon_set_with(|d| d["spec"]["updateStrategy"] = json!({"type": "OnDelete"})),
        );
        assert_eq!(on_delete, vec![]);
        let errs = check_update(
            "DaemonSet",
            daemon_set_with(|_| {}),
            daemon_set_with(|d| {
                d["spec"]["selector"] = json!({"matchLabels": {"app": "agent", "x": "y"}});
                d["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
            }),
        );
        assert!(find(&errs, "spec.selector")
            .message
            .ends_with(IMMUTABLE_MSG));
    }

    #[test]
    fn undefaulted_objects_report_missing_defaults() {
        let errs = validate("Deployment", &fixture_deployment(), None);
        assert_has(
            &errs,
            "spec.template.spec.restartPolicy",
            "Unsupported value: \"\": supported values: \"Always\"",
        );
        assert_has(
            &errs,
            "spec.template.spec.containers[0].imagePullPolicy",
            "Required value",
        );
        assert_has(
            &errs,
            "spec.template.spec.containers[0].ports[0].protocol",
            "Required value",
        );
    }

    #[test]
    fn negative_replicas() {
        let errs = check(
            "Deployment",
            deployment_with(|d| d["spec"]["replicas"] = json!(-1)),
        );
        let err = find(&errs, "spec.replicas");
        assert_eq!(
            err.message,
            "Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(err.reason, CauseReason::Invalid);
        assert_eq!(err.reason.as_str(), "FieldValueInvalid");
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn bad_names() {
        let errs = check(
            "Deployment",
            deployment_with(|d| d["metadata"]["name"] = json!("Bad_Name")),
        );
        assert_eq!(
            find(&errs, "metadata.name").message,
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| d["metadata"]["name"] = json!("")),
        );
        assert_has(
            &errs,
            "metadata.name",
            "Required value: name or generateName is required",
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| d["metadata"]["namespace"] = json!(null)),
        );
        assert_has(&errs, "metadata.namespace", "Required value");
        let errs = check("Namespace", json!({"metadata": {"name": "a.b"}}));
        assert_eq!(
            find(&errs, "metadata.name").message,
            "Invalid value: \"a.b\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        let errs = check(
            "Namespace",
            json!({"metadata": {"name": "ok", "namespace": "x"}}),
        );
        assert_has(
            &errs,
            "metadata.namespace",
            "Forbidden: not allowed on this type",
        );
        let errs = check(
            "Service",
            json!({"metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}}),
        );
        assert!(find(&errs, "metadata.name").message.contains("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"));
        let long = "a".repeat(254);
        let errs = check(
            "ConfigMap",
            json!({"metadata": {"name": long, "namespace": "d"}}),
        );
        assert!(find(&errs, "metadata.name")
            .message
            .contains("must be no more than 253 characters"));
        // generateName may end with '-'.
        let errs = check(
            "ConfigMap",
            json!({"metadata": {"name": "web-x7k2p", "generateName": "web-", "namespace": "d"}}),
        );
        assert_eq!(errs, vec![]);
        // Unknown kinds get the lenient path-segment rule.
        assert_eq!(
            validate(
                "ClusterRole",
                &json!({"metadata": {"name": "system:admin"}}),
                None
            ),
            vec![]
        );
        assert_has(
            &validate("ClusterRole", &json!({"metadata": {"name": "a/b"}}), None),
            "metadata.name",
            "Invalid value: \"a/b\": may not contain '/'",
        );
    }

    #[test]
    fn name_helpers() {
        assert!(validate_dns1123_label("my-name").is_ok());
        assert!(validate_dns1123_label("-x").is_err());
        assert!(validate_dns1123_label(&"a".repeat(64))
            .is_err_and(|m| m.starts_with("must be no more than 63 characters")));
        assert!(validate_dns1123_subdomain("example.com").is_ok());
        assert!(validate_dns1123_subdomain("example..com").is_err());
        assert!(validate_dns1123_subdomain("Example.com").is_err());
        assert!(validate_dns1123_subdomain("").is_err());
        assert!(validate_dns1035_label("a-1").is_ok());
        assert!(validate_dns1035_label("1-a").is_err());
    }

    #[test]
    fn labels_and_annotations() {
        let errs = check(
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d", "labels": {"bad key": "v", "k": "-bad"}}}),
        );
        assert_eq!(
            errs.iter().filter(|e| e.field == "metadata.labels").count(),
            2
        );
        let big = "x".repeat(300 * 1024);
        let errs = check(
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d", "annotations": {"a": big}}}),
        );
        let err = find(&errs, "metadata.annotations");
        assert_eq!(err.message, "Too long: must have at most 262144 bytes");
        assert_eq!(err.reason, CauseReason::TooLong);
        let errs = check(
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r"}]}}),
        );
        assert_has(
            &errs,
            "metadata.ownerReferences.uid",
            "Invalid value: \"\": uid must not be empty",
        );
    }

    #[test]
    fn selector_mismatch_and_selector_rules() {
        let errs = check(
            "Deployment",
            deployment_with(|d| {
                d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other", "tier": "web"})
            }),
        );
        assert_has(
            &errs,
            "spec.template.metadata.labels",
            "Invalid value: map[string]string{\"app\":\"other\", \"tier\":\"web\"}: `selector` does not match template `labels`",
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| d["spec"]["selector"] = json!({})),
        );
        assert_has(
            &errs,
            "spec.selector",
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| {
                d["spec"].as_object_mut().map(|s| s.remove("selector"));
            }),
        );
        assert_has(&errs, "spec.selector", "Required value");
        let errs = check(
            "ReplicaSet",
            deployment_with(|d| {
                d["spec"]["selector"] =
                    json!({"matchExpressions": [{"key": "app", "operator": "In", "values": []}]});
            }),
        );
        assert_has(
            &errs,
            "spec.selector.matchExpressions[0].values",
            "Required value: must be specified when `operator` is 'In' or 'NotIn'",
        );
    }

    #[test]
    fn template_restart_policy_and_strategy() {
        let errs = check(
            "Deployment",
            deployment_with(|d| d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never")),
        );
        assert_has(
            &errs,
            "spec.template.spec.restartPolicy",
            "Unsupported value: \"Never\": supported values: \"Always\"",
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| {
                d["spec"]["strategy"] =
                    json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
            }),
        );
        assert_has(
            &errs,
            "spec.strategy.rollingUpdate",
            "Forbidden: may not be specified when strategy `type` is 'Recreate'",
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| d["spec"]["strategy"] = json!({"type": "Foo"})),
        );
        assert_has(
            &errs,
            "spec.strategy",
            "Unsupported value: apps.DeploymentStrategy{Type:\"Foo\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\"",
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| {
                d["spec"]["strategy"] =
                    json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
            }),
        );
        assert_has(
            &errs,
            "spec.strategy.rollingUpdate.maxUnavailable",
            "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0",
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| {
                d["spec"]["strategy"] =
                    json!({"rollingUpdate": {"maxUnavailable": "150%", "maxSurge": "abc"}})
            }),
        );
        assert_has(&errs, "spec.strategy.rollingUpdate.maxUnavailable", "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%");
        assert_has(
            &errs,
            "spec.strategy.rollingUpdate.maxSurge",
            "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"abc\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        );
        let errs = check(
            "Deployment",
            deployment_with(|d| {
                d["spec"]["minReadySeconds"] = json!(700);
                d["spec"]["revisionHistoryLimit"] = json!(-2);
            }),
        );
        assert_has(
            &errs,
            "spec.progressDeadlineSeconds",
            "Invalid value: 600: must be greater than minReadySeconds",
        );
        assert_has(
            &errs,
            "spec.revisionHistoryLimit",
            "Invalid value: -2: must be greater than or equal to 0",
        );
    }

    #[test]
    fn duplicate_container_names() {
        let errs = check(
            "Deployment",
            deployment_with(|d| {
                let c = d["spec"]["template"]["spec"]["containers"][0].clone();
                d["spec"]["template"]["spec"]["containers"] = json!([c.clone(), c.clone()]);
                d["spec"]["template"]["spec"]["initContainers"] =
                    json!([{"name": "flask", "image": "busybox"}]);
            }),
        );
        let err = find(&errs, "spec.template.spec.containers[1].name");
        assert_eq!(err.message, "Duplicate value: \"flask\"");
        assert_eq!(err.reason, CauseReason::Duplicate);
        assert_has(
            &errs,
            "spec.template.spec.initContainers[0].name",
            "Duplicate value: \"flask\"",
        );
    }

    #[test]
    fn container_rules() {
        let errs = check(
            "Pod",
            pod(
                json!({"containers": [{"name": "Web_1", "imagePullPolicy": "Foo",
            "ports": [{"containerPort": 0}, {"containerPort": 70000, "protocol": "ICMP", "name": "HTTP"}, {"containerPort": 80, "name": "web--x", "hostPort": 99999}],
            "env": [{"name": "1ABC"}, {"value": "x"}]}]}),
            ),
        );
        assert!(find(&errs, "spec.containers[0].name")
            .message
            .contains("RFC 1123 label"));
        assert_has(&errs, "spec.containers[0].image", "Required value");
        assert_has(
            &errs,
            "spec.containers[0].imagePullPolicy",
            "Unsupported value: \"Foo\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[0].containerPort",
            "Required value",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[1].containerPort",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[1].protocol",
            "Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        );
        assert_has(&errs, "spec.containers[0].ports[1].name", "Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
        assert_has(
            &errs,
            "spec.containers[0].ports[2].name",
            "Invalid value: \"web--x\": must not contain consecutive hyphens",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[2].hostPort",
            "Invalid value: 99999: must be between 1 and 65535, inclusive",
        );
        assert_has(
            &errs,
            "spec.containers[0].env[0].name",
            "Invalid value: \"1ABC\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
        );
        assert_has(&errs, "spec.containers[0].env[1].name", "Required value");

        let errs = check(
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]}]}),
            ),
        );
        assert_has(
            &errs,
            "spec.containers[0].ports[1].name",
            "Duplicate value: \"http\"",
        );
        let errs = check(
            "Pod",
            pod(json!({"containers": [{"name": "a", "image": " x"}]})),
        );
        assert_has(
            &errs,
            "spec.containers[0].image",
            "Invalid value: \" x\": must not have leading or trailing whitespace",
        );
        let errs = check("Pod", pod(json!({"containers": []})));
        assert_has(&errs, "spec.containers", "Required value");
        let errs = check(
            "Pod",
            pod(
                json!({"restartPolicy": "Sometimes", "dnsPolicy": "Weird", "containers": [{"name": "a", "image": "x"}], "terminationGracePeriodSeconds": -5}),
            ),
        );
        assert_has(&errs, "spec.restartPolicy", "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"");
        assert_has(&errs, "spec.dnsPolicy", "Unsupported value: \"Weird\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\"");
        assert_has(
            &errs,
            "spec.terminationGracePeriodSeconds",
            "Invalid value: -5: must be greater than or equal to 0",
        );
    }

    #[test]
    fn env_sources() {
        let errs = check(
            "Pod",
            pod(json!({"containers": [{"name": "a", "image": "x", "env": [
            {"name": "A", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "B", "valueFrom": {}},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}},
            {"name": "D", "valueFrom": {"secretKeyRef": {"name": "s", "key": ""}}},
            {"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}
        ], "envFrom": [{"configMapRef": {"name": "cm"}, "secretRef": {"name": "s"}}]}]})),
        );
        assert_has(
            &errs,
            "spec.containers[0].env[0].valueFrom",
            "Invalid value: \"\": may not be specified when `value` is not empty",
        );
        assert_has(&errs, "spec.containers[0].env[1].valueFrom", "Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`");
        assert!(find(
            &errs,
            "spec.containers[0].env[2].valueFrom.fieldRef.fieldPath"
        )
        .message
        .starts_with("Unsupported value: \"spec.bogus\""));
        assert_has(
            &errs,
            "spec.containers[0].env[3].valueFrom.secretKeyRef.key",
            "Required value",
        );
        assert_has(
            &errs,
            "spec.containers[0].envFrom",
            "Invalid value: \"\": may not have more than one field specified at a time",
        );
        assert!(!errs.iter().any(|e| e.field.contains("env[4]")));
    }

    #[test]
    fn probes() {
        let errs = check(
            "Pod",
            pod(json!({"containers": [{"name": "a", "image": "x",
            "livenessProbe": {"httpGet": {"port": 80}, "tcpSocket": {"port": 80}, "successThreshold": 2, "periodSeconds": -1},
            "readinessProbe": {"initialDelaySeconds": 1},
            "startupProbe": {"exec": {"command": []}, "timeoutSeconds": 0}}]})),
        );
        assert_has(
            &errs,
            "spec.containers[0].livenessProbe.tcpSocket",
            "Forbidden: may not specify more than 1 handler type",
        );
        assert_has(
            &errs,
            "spec.containers[0].livenessProbe.successThreshold",
            "Invalid value: 2: must be 1",
        );
        assert_has(
            &errs,
            "spec.containers[0].livenessProbe.periodSeconds",
            "Invalid value: -1: must be greater than or equal to 0",
        );
        assert_has(
            &errs,
            "spec.containers[0].readinessProbe",
            "Required value: must specify a handler type",
        );
        assert_has(
            &errs,
            "spec.containers[0].startupProbe.exec.command",
            "Required value",
        );
        let errs = check(
            "Pod",
            pod(json!({"containers": [{"name": "a", "image": "x",
            "readinessProbe": {"httpGet": {"port": "8080", "scheme": "FTP"}}}]})),
        );
        assert_has(
            &errs,
            "spec.containers[0].readinessProbe.httpGet.port",
            "Invalid value: \"8080\": must contain at least one letter (a-z)",
        );
        assert_has(
            &errs,
            "spec.containers[0].readinessProbe.httpGet.scheme",
            "Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
        );
        let errs = check(
            "Pod",
            pod(
                json!({"initContainers": [{"name": "i", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}}}],
            "containers": [{"name": "a", "image": "x", "restartPolicy": "Always", "lifecycle": {"preStop": {"sleep": {"seconds": 60}}}}]}),
            ),
        );
        assert_has(
            &errs,
            "spec.initContainers[0].livenessProbe",
            "Forbidden: may not be set for init containers without restartPolicy=Always",
        );
        assert_has(
            &errs,
            "spec.containers[0].restartPolicy",
            "Forbidden: may not be set for non-init containers",
        );
        assert!(find(&errs, "spec.containers[0].lifecycle.preStop.sleep").message.starts_with("Invalid value: 60: must be greater than 0 and less than terminationGracePeriodSeconds (30)"));
    }

    #[test]
    fn volumes_and_mounts() {
        let errs = check(
            "Pod",
            pod(json!({
            "volumes": [{"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}}, {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "cfg", "secret": {}}, {"name": "hp", "hostPath": {"path": "/x", "type": "Dir"}},
                {"name": "mode", "configMap": {"name": "c", "defaultMode": 1000}}],
            "containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "missing", "mountPath": "/d"}, {"name": "hp", "mountPath": "/h", "subPath": "../etc"}]}]})),
        );
        assert_has(
            &errs,
            "spec.volumes[0].hostPath",
            "Forbidden: may not specify more than 1 volume type",
        );
        assert_has(
            &errs,
            "spec.volumes[4].configMap.defaultMode",
            "Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive",
        );
        assert_has(&errs, "spec.volumes[2].name", "Duplicate value: \"cfg\"");
        assert_has(&errs, "spec.volumes[2].secret.secretName", "Required value");
        assert!(find(&errs, "spec.volumes[3].hostPath.type")
            .message
            .starts_with("Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\""));
        // Invalid volumes cannot be mounted.
        assert_has(
            &errs,
            "spec.containers[0].volumeMounts[0].name",
            "Not found: \"data\"",
        );
        assert_has(
            &errs,
            "spec.containers[0].volumeMounts[1].name",
            "Not found: \"missing\"",
        );
        assert_has(
            &errs,
            "spec.containers[0].volumeMounts[1].mountPath",
            "Invalid value: \"/d\": must be unique",
        );
        assert_has(
            &errs,
            "spec.containers[0].volumeMounts[2].subPath",
            "Invalid value: \"../etc\": must not contain '..'",
        );
    }

    #[test]
    fn resources() {
        let errs = check(
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "x", "resources": {
            "limits": {"cpu": "1", "memory": "12XB", "gpu": "1", "example.com/dongle": "1"},
            "requests": {"cpu": "2", "memory": "-1", "example.com/dongle": "0.5"}}}]}),
            ),
        );
        assert_has(
            &errs,
            "spec.containers[0].resources.requests",
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        );
        assert_has(
            &errs,
            "spec.containers[0].resources.limits[memory]",
            &format!("Invalid value: \"12XB\": {QUANTITY_FORMAT_MSG}"),
        );
        assert_has(
            &errs,
            "spec.containers[0].resources.limits[gpu]",
            "Invalid value: \"gpu\": must be a standard resource type or fully qualified",
        );
        assert_has(
            &errs,
            "spec.containers[0].resources.requests[memory]",
            "Invalid value: \"-1\": must be greater than or equal to 0",
        );
        assert_has(
            &errs,
            "spec.containers[0].resources.requests[example.com/dongle]",
            "Invalid value: \"0.5\": must be an integer",
        );
        assert_has(
            &errs,
            "spec.containers[0].resources.requests",
            "Invalid value: \"0.5\": must be equal to example.com/dongle limit of 1",
        );
        // Requests defaulted from limits on Pods are valid; numbers are accepted as quantities.
        let errs = check(
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": 2, "memory": "1Gi"}}}]}),
            ),
        );
        assert_eq!(errs, vec![]);
    }

    #[test]
    fn quantity_parsing() {
        let cases: [(&str, f64); 16] = [
            ("500m", 0.5),
            ("256Mi", 256.0 * 1024.0 * 1024.0),
            ("1.5", 1.5),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("2Gi", 2.0 * 1024.0 * 1024.0 * 1024.0),
            ("100k", 100_000.0),
            ("0", 0.0),
            ("+1", 1.0),
            ("-2", -2.0),
            ("1M", 1e6),
            ("5n", 5e-9),
            (".5", 0.5),
            ("1.", 1.0),
            ("1E", 1e18),
            ("2e-3", 0.002),
        ];
        for (text, want) in cases {
            let got = parse_quantity(text).unwrap_or(f64::NAN);
            assert!(
                (got - want).abs() <= want.abs() * 1e-12,
                "{text}: {got} != {want}"
            );
        }
        for bad in [
            "", "abc", "1.5.3", "12XB", "1 ", " 1", "1Mb", "1e", "--1", "1k3",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad} should not parse");
        }
        assert_eq!(parse_quantity("1Mb"), Err(QUANTITY_FORMAT_MSG.to_string()));
        assert_eq!(
            parse_quantity("1ki"),
            Err("unable to parse quantity's suffix".to_string())
        );
    }

    #[test]
    fn pod_update_rules() {
        let old = pod(
            json!({"containers": [{"name": "a", "image": "nginx:1.0"}], "activeDeadlineSeconds": 100,
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]}),
        );
        // Image, lower deadline, toleration seconds and an added toleration: allowed; labels too.
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.1");
        new["spec"]["activeDeadlineSeconds"] = json!(50);
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}, {"operator": "Exists"}]);
        new["metadata"]["labels"] = json!({"a": "b"});
        assert_eq!(check_update("Pod", old.clone(), new), vec![]);
        // Anything else in spec is forbidden.
        let mut new = old.clone();
        new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        let errs = check_update("Pod", old.clone(), new);
        let err = find(&errs, "spec");
        assert_eq!(err.reason, CauseReason::Forbidden);
        assert_eq!(err.message, format!("Forbidden: {POD_UPDATE_MSG}"));
        // Containers may not be added.
        let mut new = old.clone();
        new["spec"]["containers"] =
            json!([{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx"}]);
        assert_has(
            &check_update("Pod", old.clone(), new),
            "spec.containers",
            "Forbidden: pod updates may not add or remove containers",
        );
        // The deadline may not grow or disappear.
        let mut new = old.clone();
        new["spec"]["activeDeadlineSeconds"] = json!(200);
        assert_has(
            &check_update("Pod", old.clone(), new),
            "spec.activeDeadlineSeconds",
            "Invalid value: 200: must be less than or equal to previous value",
        );
        let mut new = old.clone();
        new["spec"]
            .as_object_mut()
            .map(|s| s.remove("activeDeadlineSeconds"));
        assert_has(
            &check_update("Pod", old.clone(), new),
            "spec.activeDeadlineSeconds",
            "Invalid value: null: must not update from a positive integer to nil value",
        );
        // Existing tolerations may not be removed.
        let mut new = old.clone();
        new["spec"]["tolerations"] = json!([]);
        assert_has(
            &check_update("Pod", old.clone(), new),
            "spec.tolerations",
            "Forbidden: existing toleration can not be modified except its tolerationSeconds",
        );
        // Binding sets nodeName once; moving a bound pod is forbidden.
        let mut bound = old.clone();
        bound["spec"]["nodeName"] = json!("node-1");
        assert_eq!(check_update("Pod", old.clone(), bound.clone()), vec![]);
        let mut moved = bound.clone();
        moved["spec"]["nodeName"] = json!("node-2");
        assert_has(
            &check_update("Pod", bound, moved),
            "spec",
            &format!("Forbidden: {POD_UPDATE_MSG}"),
        );
        // The name is immutable.
        let mut new = old.clone();
        new["metadata"]["name"] = json!("q");
        assert_has(
            &check_update("Pod", old, new),
            "metadata.name",
            "Invalid value: \"q\": field is immutable",
        );
    }

    #[test]
    fn workload_update_rules() {
        let old = fixture_deployment();
        let new = deployment_with(|d| {
            d["spec"]["replicas"] = json!(5);
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("my-flask-app:v2");
        });
        assert_eq!(check_update("Deployment", old.clone(), new), vec![]);
        let new = deployment_with(|d| {
            d["spec"]["selector"] = json!({"matchLabels": {"app": "my-flask-app", "v": "2"}});
            d["spec"]["template"]["metadata"]["labels"]["v"] = json!("2");
        });
        let errs = check_update("Deployment", old.clone(), new.clone());
        assert_eq!(
            find(&errs, "spec.selector").message,
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"my-flask-app\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
        assert_eq!(errs.len(), 1);
        let errs = check_update("ReplicaSet", old, new);
        assert_has(
            &errs,
            "spec.selector",
            &find(&errs, "spec.selector").message.clone(),
        );
    }

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn service_rules() {
        assert_eq!(
            check(
                "Service",
                service(
                    json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]})
                )
            ),
            vec![]
        );
        assert_eq!(
            check(
                "Service",
                service(json!({"clusterIP": "None", "selector": {"app": "web"}}))
            ),
            vec![]
        );
        assert_eq!(
            check(
                "Service",
                service(json!({"type": "ExternalName", "externalName": "example.com."}))
            ),
            vec![]
        );
        assert_eq!(
            check(
                "Service",
                service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))
            ),
            vec![]
        );
        let errs = check("Service", service(json!({})));
        assert_has(&errs, "spec.ports", "Required value");
        let errs = check(
            "Service",
            service(json!({"type": "Foo", "clusterIP": "10.0.0.300", "ports": [
            {"port": 80, "name": "http"}, {"port": 0, "name": "http", "protocol": "TCP", "targetPort": 70000}, {"port": 81}, {"port": 80, "name": "x"}]})),
        );
        assert_has(&errs, "spec.type", "Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"");
        assert_has(&errs, "spec.clusterIPs[0]", "Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)");
        assert_has(&errs, "spec.ports[1].name", "Duplicate value: \"http\"");
        assert_has(
            &errs,
            "spec.ports[1].port",
            "Invalid value: 0: must be between 1 and 65535, inclusive",
        );
        assert_has(
            &errs,
            "spec.ports[1].targetPort",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        );
        assert_has(&errs, "spec.ports[2].name", "Required value");
        assert_has(
            &errs,
            "spec.ports[3]",
            "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
        );
        let errs = check(
            "Service",
            service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]})),
        );
        assert_has(&errs, "spec.ports[0].nodePort", "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767");
        let errs = check(
            "Service",
            service(json!({"ports": [{"port": 80, "nodePort": 30001}]})),
        );
        assert_has(
            &errs,
            "spec.ports[0].nodePort",
            "Forbidden: may not be used when `type` is 'ClusterIP'",
        );
        let errs = check(
            "Service",
            service(json!({"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 80}]})),
        );
        assert_has(
            &errs,
            "spec.clusterIPs[0]",
            "Invalid value: \"None\": may not be set to 'None' for LoadBalancer services",
        );
        let errs = check("Service", service(json!({"type": "ExternalName"})));
        assert_has(&errs, "spec.externalName", "Required value");
    }

    #[test]
    fn service_update_rules() {
        let old = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
        // Omitting the allocated IP keeps it; changing it is rejected.
        assert_eq!(
            check_update(
                "Service",
                old.clone(),
                service(json!({"ports": [{"port": 81}]}))
            ),
            vec![]
        );
        let errs = check_update(
            "Service",
            old,
            service(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]})),
        );
        assert_has(
            &errs,
            "spec.clusterIPs[0]",
            "Invalid value: []string{\"10.96.0.11\"}: may not change once set",
        );
    }

    #[test]
    fn config_maps_and_secrets() {
        let errs = check(
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"bad key": "v", "..x": "y", "ok.key": 5}}),
        );
        assert!(find(&errs, "data[bad key]").message.starts_with("Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
        assert_has(
            &errs,
            "data[..x]",
            "Invalid value: \"..x\": must not start with '..'",
        );
        assert_has(&errs, "data[ok.key]", "Invalid value: 5: must be a string");
        let errs = check(
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x".repeat(MAX_DATA_SIZE + 1)}}),
        );
        assert_has(&errs, "", "Too long: must have at most 1048576 bytes");

        assert_eq!(
            check(
                "Secret",
                json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"a": "aGk=", "b": "aGkh"}, "stringData": {"c": "plain"}})
            ),
            vec![]
        );
        let errs = check(
            "Secret",
            json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"a": "not base64!"}}),
        );
        assert_has(
            &errs,
            "data[a]",
            "Invalid value: \"<secret contents redacted>\": illegal base64 data at input byte 3",
        );
        let errs = check(
            "Secret",
            json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
        );
        assert_has(&errs, "data[tls.key]", "Required value");

        let old = json!({"metadata": {"name": "s", "namespace": "d"}, "immutable": true, "data": {"a": "eA=="}});
        let new = json!({"metadata": {"name": "s", "namespace": "d"}, "immutable": true, "data": {"a": "eQ=="}, "type": "kubernetes.io/tls"});
        let errs = check_update("Secret", old, new);
        assert_has(
            &errs,
            "data",
            "Forbidden: field is immutable when `immutable` is set",
        );
        assert_has(
            &errs,
            "type",
            "Invalid value: \"kubernetes.io/tls\": field is immutable",
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            check("Namespace", json!({"metadata": {"name": "team-a"}})),
            vec![]
        );
        assert_eq!(
            check(
                "Node",
                json!({"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.0.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]}, "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})
            ),
            vec![]
        );
        let errs = check(
            "Node",
            json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0/33"], "taints": [{"key": "k", "effect": "Sometimes"}]}}),
        );
        assert_has(&errs, "spec.podCIDRs[0]", "Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)");
        assert_has(&errs, "metadata.taints[0].effect", "Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"");
        assert_eq!(
            check(
                "ServiceAccount",
                json!({"metadata": {"name": "default", "namespace": "d"}})
            ),
            vec![]
        );
        assert_eq!(
            check(
                "Lease",
                json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15}})
            ),
            vec![]
        );
        let errs = check(
            "Lease",
            json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}),
        );
        assert_has(
            &errs,
            "spec.leaseDurationSeconds",
            "Invalid value: 0: must be greater than 0",
        );
        assert_has(
            &errs,
            "spec.leaseTransitions",
            "Invalid value: -1: must be greater than or equal to 0",
        );
        let event = json!({"metadata": {"name": "web.1", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "d"}, "reason": "Started", "type": "Normal"});
        assert_eq!(check("Event", event), vec![]);
        let errs = check(
            "Event",
            json!({"metadata": {"name": "e", "namespace": "d"}}),
        );
        assert_has(&errs, "involvedObject", "Required value");
        let errs = check(
            "Event",
            json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"namespace": "other"}}),
        );
        assert_has(
            &errs,
            "involvedObject.namespace",
            "Invalid value: \"other\": does not match event.namespace",
        );
        assert_eq!(
            check(
                "Endpoints",
                json!({"metadata": {"name": "web", "namespace": "d"}, "subsets": [{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 80}]}]})
            ),
            vec![]
        );
        let errs = check(
            "Endpoints",
            json!({"metadata": {"name": "web", "namespace": "d"}, "subsets": [{"addresses": [{"ip": "nope"}], "ports": [{"port": 80}, {"port": 81}]}, {}]}),
        );
        assert_has(&errs, "subsets[0].addresses[0].ip", "Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)");
        assert_has(&errs, "subsets[0].ports[0].name", "Required value");
        assert_has(
            &errs,
            "subsets[1]",
            "Required value: must specify `addresses` or `notReadyAddresses`",
        );
        let slice = json!({"metadata": {"name": "web-abc", "namespace": "d"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.5"]}], "ports": [{"port": 80, "name": "http"}]});
        assert_eq!(check("EndpointSlice", slice.clone()), vec![]);
        let errs = check(
            "EndpointSlice",
            json!({"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv4", "endpoints": [{"addresses": ["fe80::1"]}]}),
        );
        assert_has(
            &errs,
            "endpoints[0].addresses[0]",
            "Invalid value: \"fe80::1\": must be a valid IPv4 address",
        );
        let mut changed = slice.clone();
        changed["addressType"] = json!("IPv6");
        changed["endpoints"] = json!([{"addresses": ["fd00::5"]}]);
        assert_has(
            &check_update("EndpointSlice", slice, changed),
            "addressType",
            "Invalid value: \"IPv6\": field is immutable",
        );
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        let errs = check(
            "Deployment",
            deployment_with(|d| d["spec"]["replicas"] = json!("3")),
        );
        assert_has(
            &errs,
            "spec.replicas",
            "Invalid value: \"3\": must be an integer",
        );
        let errs = check(
            "Pod",
            pod(json!({"containers": [{"name": 5, "image": ["x"], "ports": "80"}]})),
        );
        assert_has(
            &errs,
            "spec.containers[0].name",
            "Invalid value: 5: must be a string",
        );
        assert_has(
            &errs,
            "spec.containers[0].ports",
            "Invalid value: \"80\": must be a list",
        );
        assert_eq!(
            validate("Pod", &json!("x"), None)[0].message,
            "Invalid value: \"x\": must be an object"
        );
        let garbage = [
            json!(null),
            json!([]),
            json!({"metadata": "x", "spec": 1}),
            json!({"metadata": {"name": 1, "labels": [], "annotations": {"a": 1}, "ownerReferences": {}}, "spec": {"containers": {}, "selector": "x", "template": 3, "ports": [1, null, {"port": "x"}], "strategy": {"type": 4, "rollingUpdate": {"maxSurge": [], "maxUnavailable": 1.5}}}}),
            json!({"spec": {"template": {"metadata": [], "spec": {"containers": [{"resources": {"limits": {"cpu": []}, "requests": 3}, "livenessProbe": {"httpGet": 1, "exec": {"command": "ls"}}, "env": [{"valueFrom": []}], "volumeMounts": [[]]}], "volumes": [{"name": [], "secret": 1}]}}}}),
            json!({"data": [], "binaryData": {"a": "%%%"}, "subsets": [{"addresses": "x", "ports": [{"port": -1}]}], "endpoints": [{"addresses": [1]}], "addressType": 3, "involvedObject": "x"}),
            json!({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": "x"}}, "clusterIPs": [1, "None", "1.2.3.4"], "ipFamilies": [1], "externalIPs": {}}}),
        ];
        let kinds = [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "Service",
            "Namespace",
            "Node",
            "ConfigMap",
            "Secret",
            "Event",
            "Endpoints",
            "EndpointSlice",
            "ServiceAccount",
            "Lease",
            "Unknown",
        ];
        for kind in kinds {
            for obj in &garbage {
                let _ = validate(kind, obj, None);
                let _ = validate(kind, obj, Some(obj));
                let _ = validate(
                    kind,
                    obj,
                    Some(&json!({"spec": {"containers": [1], "clusterIPs": "x"}})),
                );
                let mut defaulted = obj.clone();
                apply_defaults(kind, &mut defaulted);
                let _ = validate(kind, &defaulted, Some(obj));
            }
        }
    }

    #[test]
    fn reasons_and_go_quoting() {
        assert_eq!(CauseReason::Required.as_str(), "FieldValueRequired");
        assert_eq!(CauseReason::NotSupported.as_str(), "FieldValueNotSupported");
        assert_eq!(CauseReason::Duplicate.as_str(), "FieldValueDuplicate");
        assert_eq!(CauseReason::TooLong.as_str(), "FieldValueTooLong");
        assert_eq!(CauseReason::Forbidden.as_str(), "FieldValueForbidden");
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
        assert_eq!(base64_decoded_len("aGk="), Ok(2));
        assert_eq!(base64_decoded_len("aGkh\n"), Ok(3));
        assert_eq!(base64_decoded_len("aGk"), Err(3));
        assert_eq!(base64_decoded_len("a=Gk"), Err(1));
    }
}

#[cfg(test)]
mod robustness_tests {
    use super::*;
    use serde_json::json;

    fn pod(node: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    }

    #[test]
    fn a_bound_pod_keeps_its_node() {
        let errors = validate("Pod", &pod("n2"), Some(&pod("n1")));
        assert!(
            errors.iter().any(|e| e.field == "spec"),
            "changing nodeName must be refused: {errors:?}"
        );
        let mut unbound = pod("");
        unbound["spec"].as_object_mut().unwrap().remove("nodeName");
        let binding = validate("Pod", &pod("n1"), Some(&unbound));
        assert!(!binding.iter().any(|e| e.field == "spec"), "{binding:?}");
    }

    #[test]
    fn null_list_items_are_named_by_path() {
        let obj = json!({"spec": {"containers": [{"command": [null], "env": [{"name": "a"}, null]}]},
            "metadata": {"finalizers": null}});
        let fields: Vec<String> = null_list_items(&obj).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["spec.containers[0].command[0]", "spec.containers[0].env[1]"]
        );
        assert!(null_list_items(&json!({"spec": {"a": [[1], {"b": null}]}})).is_empty());
    }
}
