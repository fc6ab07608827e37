//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! Owns: applying a strategic merge patch to a stored object the way the
//! Kubernetes API server does (sigs.k8s.io strategic merge patch, v2: the
//! `$patch`, `$setElementOrder/<field>`, `$retainKeys` and
//! `$deleteFromPrimitiveList/<field>` directives), plus the small table that
//! says which list fields merge element-wise instead of being replaced.
//!
//! May call: nothing but `serde_json` (and `thiserror` for the error type).
//! Inputs are never mutated, a malformed patch is reported as a
//! [`StrategicMergeError`] naming the field path, and no directive key is ever
//! left in the result.

use serde_json::{Map, Value};
use std::fmt;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Applies a strategic merge patch to `original` for an object of `kind`
/// (the object's top-level kind, e.g. "Deployment", "Pod", "Node").
///
/// Maps merge recursively and `null` deletes a key. Lists merge element-wise
/// by their merge key, or as a union of values, when the field is listed in
/// the schema table below; every other list is replaced. Unknown kinds only
/// get the `metadata` rules.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    kind: &str,
) -> Result<Value, StrategicMergeError> {
    let patch = patch
        .as_object()
        .ok_or(StrategicMergeError::PatchNotObject {
            found: json_type(patch),
        })?;
    let original = original
        .as_object()
        .ok_or(StrategicMergeError::OriginalNotObject {
            found: json_type(original),
        })?;
    Merger::for_kind(kind)
        .merge_map(original.clone(), patch, &FieldPath::default())?
        .map(Value::Object)
        .ok_or(StrategicMergeError::DeleteWholeObject)
}

/// Why a strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategicMergeError {
    #[error("patch must be a json object, got {found}")]
    PatchNotObject { found: &'static str },
    #[error("original object must be a json object, got {found}")]
    OriginalNotObject { found: &'static str },
    #[error("$patch: delete cannot remove the whole object")]
    DeleteWholeObject,
    #[error(
        "{path}: invalid $patch directive {value}, expected \"replace\", \"delete\" or \"merge\""
    )]
    InvalidPatchDirective { path: String, value: String },
    #[error("{path}: malformed directive key \"{key}\"")]
    MalformedDirectiveKey { path: String, key: String },
    #[error("{path}: {directive} must be a list, got {found}")]
    DirectiveNotList {
        path: String,
        directive: String,
        found: &'static str,
    },
    #[error("{path}: $retainKeys entries must be field names (strings)")]
    RetainKeysNotStrings { path: String },
    #[error("{path}: field \"{field}\" is patched but missing from $retainKeys")]
    FieldNotRetained { path: String, field: String },
    #[error("{path}: $patch delete entry lacks merge key \"{key}\"")]
    DeleteLacksMergeKey { path: String, key: String },
    #[error("{path}: list entry lacks merge key \"{key}\"")]
    EntryLacksMergeKey { path: String, key: String },
    #[error("{path}: $setElementOrder entry lacks merge key \"{key}\"")]
    OrderEntryLacksMergeKey { path: String, key: String },
    #[error("{path}: $patch delete needs a merge key, but this list merges plain values")]
    DeleteInValueList { path: String },
    #[error("{path}: list entries do not follow the order given by $setElementOrder")]
    OrderMismatch { path: String },
    #[error("{path}: expected a list next to its $setElementOrder directive, got {found}")]
    OrderedFieldNotList { path: String, found: &'static str },
    #[error("{path}: list mixes {first} and {second} entries")]
    MixedListEntries {
        path: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("{path}: lists of lists cannot be merged")]
    NestedList { path: String },
    #[error("{path}: a list of objects cannot be merged without a merge key")]
    ObjectsWithoutMergeKey { path: String },
}

type MergeResult<T> = Result<T, StrategicMergeError>;

// ---------------------------------------------------------------------------
// Schema: which list fields merge, and how. Paths are dotted field names
// relative to the schema they sit in; list entries add no path segment.
// Source: `patchStrategy` / `patchMergeKey` tags of k8s.io/api (v1.32).
// ---------------------------------------------------------------------------

/// How a list field is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// The patch list replaces the original (default for unlisted fields).
    Replace,
    /// Object entries merge by this key (`patchStrategy:"merge"`, `patchMergeKey`).
    MergeByKey(&'static str),
    /// Plain values form a union (`patchStrategy:"merge"` without a key).
    MergeValues,
}

use ListStrategy::{MergeByKey, MergeValues};

/// A typed region of an object: its merge lists, and nested typed regions.
struct Schema {
    lists: &'static [(&'static str, ListStrategy)],
    nested: &'static [(&'static str, &'static Schema)],
}

static OBJECT_META: Schema = Schema {
    lists: &[
        ("finalizers", MergeValues),
        ("ownerReferences", MergeByKey("uid")),
    ],
    nested: &[],
};

static CONTAINER: Schema = Schema {
    lists: &[
        ("ports", MergeByKey("containerPort")),
        ("env", MergeByKey("name")),
        ("volumeMounts", MergeByKey("mountPath")),
        ("volumeDevices", MergeByKey("devicePath")),
    ],
    nested: &[],
};

static POD_SPEC: Schema = Schema {
    lists: &[
        ("containers", MergeByKey("name")),
        ("initContainers", MergeByKey("name")),
        ("ephemeralContainers", MergeByKey("name")),
        ("volumes", MergeByKey("name")),
        ("imagePullSecrets", MergeByKey("name")),
        ("hostAliases", MergeByKey("ip")),
        ("topologySpreadConstraints", MergeByKey("topologyKey")),
        ("resourceClaims", MergeByKey("name")),
        ("schedulingGates", MergeByKey("name")),
    ],
    nested: &[
        ("containers", &CONTAINER),
        ("initContainers", &CONTAINER),
        ("ephemeralContainers", &CONTAINER),
    ],
};

static POD_TEMPLATE_SPEC: Schema = Schema {
    lists: &[],
    nested: &[("metadata", &OBJECT_META), ("spec", &POD_SPEC)],
};

static POD: Schema = Schema {
    lists: &[
        ("status.conditions", MergeByKey("type")),
        ("status.podIPs", MergeByKey("ip")),
        ("status.hostIPs", MergeByKey("ip")),
        ("status.resourceClaimStatuses", MergeByKey("name")),
    ],
    nested: &[("spec", &POD_SPEC)],
};

static POD_TEMPLATE: Schema = Schema {
    lists: &[],
    nested: &[("template", &POD_TEMPLATE_SPEC)],
};

/// Deployment, ReplicaSet, StatefulSet, DaemonSet, ReplicationController, Job.
static WORKLOAD: Schema = Schema {
    lists: &[("status.conditions", MergeByKey("type"))],
    nested: &[("spec.template", &POD_TEMPLATE_SPEC)],
};

static CRON_JOB: Schema = Schema {
    lists: &[],
    nested: &[
        ("spec.jobTemplate.metadata", &OBJECT_META),
        ("spec.jobTemplate.spec.template", &POD_TEMPLATE_SPEC),
    ],
};

static SERVICE: Schema = Schema {
    lists: &[
        ("spec.ports", MergeByKey("port")),
        ("status.conditions", MergeByKey("type")),
    ],
    nested: &[],
};

static NODE: Schema = Schema {
    lists: &[
        ("spec.podCIDRs", MergeValues),
        ("status.conditions", MergeByKey("type")),
        ("status.addresses", MergeByKey("type")),
    ],
    nested: &[],
};

/// Kinds whose only merge list is `status.conditions` (by `type`).
static STATUS_CONDITIONS: Schema = Schema {
    lists: &[("status.conditions", MergeByKey("type"))],
    nested: &[],
};

/// Rules every object shares, whatever its kind.
static ANY_OBJECT: Schema = Schema {
    lists: &[],
    nested: &[("metadata", &OBJECT_META)],
};

static KIND_SCHEMAS: &[(&str, &Schema)] = &[
    ("Pod", &POD),
    ("PodTemplate", &POD_TEMPLATE),
    ("Deployment", &WORKLOAD),
    ("ReplicaSet", &WORKLOAD),
    ("StatefulSet", &WORKLOAD),
    ("DaemonSet", &WORKLOAD),
    ("ReplicationController", &WORKLOAD),
    ("Job", &WORKLOAD),
    ("CronJob", &CRON_JOB),
    ("Service", &SERVICE),
    ("Node", &NODE),
    ("Namespace", &STATUS_CONDITIONS),
    ("PersistentVolumeClaim", &STATUS_CONDITIONS),
    ("PodDisruptionBudget", &STATUS_CONDITIONS),
    ("HorizontalPodAutoscaler", &STATUS_CONDITIONS),
];

impl Schema {
    fn for_kind(kind: &str) -> &'static Schema {
        KIND_SCHEMAS
            .iter()
            .find(|(name, _)| *name == kind)
            .map_or(&ANY_OBJECT, |(_, schema)| *schema)
    }

    fn list_strategy(&self, fields: &[&str]) -> Option<ListStrategy> {
        let own = self
            .lists
            .iter()
            .find(|(pattern, _)| strip_pattern(pattern, fields).is_some_and(<[_]>::is_empty))
            .map(|(_, strategy)| *strategy);
        own.or_else(|| {
            self.nested.iter().find_map(|(prefix, inner)| {
                strip_pattern(prefix, fields).and_then(|rest| inner.list_strategy(rest))
            })
        })
    }
}

/// Strips the dotted `pattern` from the front of `fields`.
fn strip_pattern<'a, 'b>(pattern: &str, fields: &'a [&'b str]) -> Option<&'a [&'b str]> {
    pattern.split('.').try_fold(fields, |rest, part| {
        let (first, tail) = rest.split_first()?;
        (*first == part).then_some(tail)
    })
}

// ---------------------------------------------------------------------------
// Field paths, for schema lookups and error messages.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Segment {
    Field(String),
    Entry(String),
}

/// Where in the object we are, e.g. `spec.template.spec.containers[name=nginx]`.
#[derive(Clone, Debug, Default)]
struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    fn field(&self, name: &str) -> FieldPath {
        self.with(Segment::Field(name.to_owned()))
    }

    fn entry(&self, label: String) -> FieldPath {
        self.with(Segment::Entry(label))
    }

    fn with(&self, segment: Segment) -> FieldPath {
        let mut segments = self.segments.clone();
        segments.push(segment);
        FieldPath { segments }
    }

    /// The field names only: list entries do not count for schema lookups.
    fn field_names(&self) -> Vec<&str> {
        self.segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Field(name) => Some(name.as_str()),
                Segment::Entry(_) => None,
            })
            .collect()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("(root)");
        }
        for (index, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Field(name) if index == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Entry(label) => write!(f, "[{label}]")?,
            }
        }
        Ok(())
    }
}

/// Names a list entry by its merge key when it has one, else by its index.
fn entry_label(merge_key: Option<&str>, entry: &Value, index: usize) -> String {
    let key_value = merge_key.and_then(|key| Some((key, entry.as_object()?.get(key)?)));
    match key_value {
        Some((key, Value::String(text))) => format!("{key}={text}"),
        Some((key, other)) => format!("{key}={other}"),
        None => index.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Directives.
// ---------------------------------------------------------------------------

/// The value of a `$patch` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directive {
    Replace,
    Delete,
    Merge,
}

fn parse_directive(value: &Value, path: &FieldPath) -> MergeResult<Directive> {
    match value.as_str() {
        Some("replace") => Ok(Directive::Replace),
        Some("delete") => Ok(Directive::Delete),
        Some("merge") => Ok(Directive::Merge),
        _ => Err(StrategicMergeError::InvalidPatchDirective {
            path: path.to_string(),
            value: value.to_string(),
        }),
    }
}

/// What a key of a patch map stands for.
enum PatchKey<'a> {
    /// `$patch` or `$retainKeys`: handled before the fields.
    MapDirective,
    SetElementOrder(&'a str),
    DeleteFromPrimitiveList(&'a str),
    Field(&'a str),
}

fn classify_key<'a>(key: &'a str, path: &FieldPath) -> MergeResult<PatchKey<'a>> {
    if key == PATCH || key == RETAIN_KEYS {
        return Ok(PatchKey::MapDirective);
    }
    if let Some(rest) = key.strip_prefix(SET_ELEMENT_ORDER) {
        return parallel_field(rest, key, path).map(PatchKey::SetElementOrder);
    }
    if let Some(rest) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
        return parallel_field(rest, key, path).map(PatchKey::DeleteFromPrimitiveList);
    }
    Ok(PatchKey::Field(key))
}

/// The field named after the `/` of a parallel-list directive key.
fn parallel_field<'a>(rest: &'a str, key: &str, path: &FieldPath) -> MergeResult<&'a str> {
    rest.strip_prefix('/')
        .filter(|field| !field.is_empty())
        .ok_or_else(|| StrategicMergeError::MalformedDirectiveKey {
            path: path.to_string(),
            key: key.to_owned(),
        })
}

fn directive_list<'v>(
    value: &'v Value,
    directive: &str,
    path: &FieldPath,
) -> MergeResult<&'v [Value]> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| StrategicMergeError::DirectiveNotList {
            path: path.to_string(),
            directive: directive.to_owned(),
            found: json_type(value),
        })
}

/// A patch list split into its directive entries and its regular entries.
struct ListPatch<'p> {
    /// A `{"$patch": "replace"}` entry was present.
    replace: bool,
    /// `{"$patch": "delete", <key>: ...}` entries.
    deletes: Vec<&'p Map<String, Value>>,
    /// Everything else, with any `$patch: merge` marker removed.
    entries: Vec<Value>,
}

impl<'p> ListPatch<'p> {
    fn split(patch: &'p [Value], path: &FieldPath) -> MergeResult<ListPatch<'p>> {
        let mut split = ListPatch {
            replace: false,
            deletes: Vec::new(),
            entries: Vec::new(),
        };
        for item in patch {
            let directive = item
                .as_object()
                .and_then(|map| map.get(PATCH).map(|d| (map, d)));
            let Some((map, directive)) = directive else {
                split.entries.push(item.clone());
                continue;
            };
            match parse_directive(directive, path)? {
                Directive::Replace => split.replace = true,
                Directive::Delete => split.deletes.push(map),
                Directive::Merge => split.entries.push(Value::Object(without_patch_key(map))),
            }
        }
        Ok(split)
    }

    /// Every delete entry and every object entry must carry the merge key.
    fn check_merge_keys(&self, key: &str, path: &FieldPath) -> MergeResult<()> {
        if self.deletes.iter().any(|entry| !entry.contains_key(key)) {
            return Err(StrategicMergeError::DeleteLacksMergeKey {
                path: path.to_string(),
                key: key.to_owned(),
            });
        }
        let keyless = self
            .entries
            .iter()
            .position(|entry| entry.as_object().is_some_and(|map| !map.contains_key(key)));
        match keyless {
            Some(index) => Err(StrategicMergeError::EntryLacksMergeKey {
                path: path.entry(index.to_string()).to_string(),
                key: key.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

fn without_patch_key(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(key, _)| key.as_str() != PATCH)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

// ---------------------------------------------------------------------------
// The merge itself.
// ---------------------------------------------------------------------------

struct Merger {
    schema: &'static Schema,
}

impl Merger {
    fn for_kind(kind: &str) -> Merger {
        Merger {
            schema: Schema::for_kind(kind),
        }
    }

    fn list_strategy(&self, path: &FieldPath) -> ListStrategy {
        let fields = path.field_names();
        self.schema
            .list_strategy(&fields)
            .or_else(|| ANY_OBJECT.list_strategy(&fields))
            .unwrap_or(ListStrategy::Replace)
    }

    /// Merges a patch map; `None` means the map is deleted (`$patch: delete`).
    fn merge_map(
        &self,
        original: Map<String, Value>,
        patch: &Map<String, Value>,
        path: &FieldPath,
    ) -> MergeResult<Option<Map<String, Value>>> {
        let directive = patch
            .get(PATCH)
            .map(|value| parse_directive(value, path))
            .transpose()?;
        match directive {
            Some(Directive::Delete) => Ok(None),
            Some(Directive::Replace) => self.merge_fields(Map::new(), patch, path).map(Some),
            Some(Directive::Merge) | None => self.merge_fields(original, patch, path).map(Some),
        }
    }

    /// Merges every field of `patch` into `original`, honouring the map-level
    /// directives (`$retainKeys`, `$setElementOrder/*`, `$deleteFromPrimitiveList/*`).
    fn merge_fields(
        &self,
        mut original: Map<String, Value>,
        patch: &Map<String, Value>,
        path: &FieldPath,
    ) -> MergeResult<Map<String, Value>> {
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            apply_retain_keys(&mut original, retain, patch, path)?;
        }
        let ordered_fields = self.apply_element_orders(&mut original, patch, path)?;
        for (key, value) in patch {
            match classify_key(key, path)? {
                PatchKey::MapDirective | PatchKey::SetElementOrder(_) => {}
                PatchKey::DeleteFromPrimitiveList(field) => {
                    delete_from_list(&mut original, field, value, key, path)?
                }
                PatchKey::Field(field) if ordered_fields.contains(&field) => {}
                PatchKey::Field(field) => self.merge_field(&mut original, field, value, path)?,
            }
        }
        Ok(original)
    }

    fn merge_field(
        &self,
        target: &mut Map<String, Value>,
        field: &str,
        patch: &Value,
        path: &FieldPath,
    ) -> MergeResult<()> {
        let current = target.get_mut(field).map(Value::take);
        match self.merge_value(current, patch, &path.field(field))? {
            Some(value) => {
                target.insert(field.to_owned(), value);
            }
            None => {
                target.shift_remove(field);
            }
        }
        Ok(())
    }

    /// Merges one value; `None` means the field goes away.
    fn merge_value(
        &self,
        current: Option<Value>,
        patch: &Value,
        path: &FieldPath,
    ) -> MergeResult<Option<Value>> {
        let merged = match (current, patch) {
            (_, Value::Null) => None,
            (Some(Value::Object(base)), Value::Object(fields)) => {
                self.merge_map(base, fields, path)?.map(Value::Object)
            }
            (Some(Value::Array(base)), Value::Array(items)) => {
                Some(Value::Array(self.merge_list(Some(base), items, path)?))
            }
            // Absent or of another type: the patch value is taken, directives applied.
            (_, Value::Object(fields)) => {
                self.merge_map(Map::new(), fields, path)?.map(Value::Object)
            }
            (_, Value::Array(items)) => Some(Value::Array(self.merge_list(None, items, path)?)),
            (_, scalar) => Some(scalar.clone()),
        };
        Ok(merged)
    }

    /// Merges a patch list into `original` (absent when the field is new).
    fn merge_list(
        &self,
        original: Option<Vec<Value>>,
        patch: &[Value],
        path: &FieldPath,
    ) -> MergeResult<Vec<Value>> {
        let strategy = self.list_strategy(path);
        let split = ListPatch::split(patch, path)?;
        let merge_key = match strategy {
            MergeByKey(key) => {
                split.check_merge_keys(key, path)?;
                Some(key)
            }
            MergeValues if !split.deletes.is_empty() => {
                return Err(StrategicMergeError::DeleteInValueList {
                    path: path.to_string(),
                });
            }
            _ => None,
        };
        match original {
            Some(base) if strategy != ListStrategy::Replace && !split.replace => {
                self.merge_existing_list(base, &split, merge_key, path)
            }
            _ => self.fresh_entries(&split.entries, merge_key, path),
        }
    }

    /// Builds list entries that have nothing to merge into.
    fn fresh_entries(
        &self,
        entries: &[Value],
        merge_key: Option<&str>,
        path: &FieldPath,
    ) -> MergeResult<Vec<Value>> {
        let fresh_entry = |(index, entry): (usize, &Value)| {
            let entry_path = path.entry(entry_label(merge_key, entry, index));
            match entry {
                Value::Object(fields) => self
                    .merge_fields(Map::new(), fields, &entry_path)
                    .map(Value::Object),
                Value::Array(items) => self.merge_list(None, items, &entry_path).map(Value::Array),
                other => Ok(other.clone()),
            }
        };
        entries.iter().enumerate().map(fresh_entry).collect()
    }

    fn merge_existing_list(
        &self,
        base: Vec<Value>,
        split: &ListPatch<'_>,
        merge_key: Option<&str>,
        path: &FieldPath,
    ) -> MergeResult<Vec<Value>> {
        match entry_kind(base.iter().chain(&split.entries), path)? {
            EntryKind::Empty => Ok(base),
            EntryKind::Values => Ok(union_values(base, &split.entries)),
            EntryKind::Objects => match merge_key {
                Some(key) => self.merge_by_key(base, split, key, path),
                None => Err(StrategicMergeError::ObjectsWithoutMergeKey {
                    path: path.to_string(),
                }),
            },
        }
    }

    /// Element-wise merge of a list of objects by `key`.
    fn merge_by_key(
        &self,
        base: Vec<Value>,
        split: &ListPatch<'_>,
        key: &str,
        path: &FieldPath,
    ) -> MergeResult<Vec<Value>> {
        let identity = Identity::Key(key);
        let doomed: Vec<&Value> = split
            .deletes
            .iter()
            .filter_map(|entry| entry.get(key))
            .collect();
        let mut merged: Vec<Value> = base
            .into_iter()
            .filter(|entry| !identity.of(entry).is_some_and(|id| doomed.contains(&id)))
            .collect();
        let server_order = identities(&merged, identity);
        for (index, entry) in split.entries.iter().enumerate() {
            let Some(fields) = entry.as_object() else {
                continue;
            };
            let entry_path = path.entry(entry_label(Some(key), entry, index));
            match merged
                .iter()
                .position(|item| same_identity(item, entry, identity))
            {
                Some(at) => {
                    let base_fields = take_object(&mut merged[at]);
                    merged[at] =
                        Value::Object(self.merge_fields(base_fields, fields, &entry_path)?);
                }
                None => merged.push(Value::Object(self.merge_fields(
                    Map::new(),
                    fields,
                    &entry_path,
                )?)),
            }
        }
        let patch_order = identities(&split.entries, identity);
        Ok(order_merged(merged, &patch_order, &server_order, identity))
    }

    /// Applies every `$setElementOrder/<field>` of `patch`; returns the fields
    /// whose patch list was consumed on the way.
    fn apply_element_orders<'p>(
        &self,
        original: &mut Map<String, Value>,
        patch: &'p Map<String, Value>,
        path: &FieldPath,
    ) -> MergeResult<Vec<&'p str>> {
        let mut consumed = Vec::new();
        for (key, order) in patch {
            let PatchKey::SetElementOrder(field) = classify_key(key, path)? else {
                continue;
            };
            let order = directive_list(order, key, path)?;
            if self.apply_element_order(original, field, order, patch.get(field), path)? {
                consumed.push(field);
            }
        }
        Ok(consumed)
    }

    /// Merges `field` (when patched) and puts its entries in the order given:
    /// listed entries first in that order, the others interleaved by their
    /// original position. Returns whether the field's patch was consumed.
    fn apply_element_order(
        &self,
        original: &mut Map<String, Value>,
        field: &str,
        order: &[Value],
        patch: Option<&Value>,
        path: &FieldPath,
    ) -> MergeResult<bool> {
        let field_path = path.field(field);
        let identity = match self.list_strategy(&field_path) {
            ListStrategy::Replace => return Ok(false),
            MergeByKey(key) => Identity::Key(key),
            MergeValues => Identity::Value,
        };
        let patch = match patch {
            None => None,
            Some(Value::Null) => return Ok(false),
            Some(Value::Array(items)) => Some(items.as_slice()),
            Some(other) => {
                return Err(StrategicMergeError::OrderedFieldNotList {
                    path: field_path.to_string(),
                    found: json_type(other),
                });
            }
        };
        let wanted_order = order_identities(order, identity, &field_path)?;
        if let Some(items) = patch {
            check_follows_order(items, &wanted_order, identity, &field_path)?;
        }
        // Taken out rather than cloned; it is written back below.
        let base = match original.get_mut(field) {
            Some(Value::Array(items)) => Some(std::mem::take(items)),
            _ => None,
        };
        let server_order = base
            .as_deref()
            .map(|items| identities(items, identity))
            .unwrap_or_default();
        let merged = match (base, patch) {
            (None, None) => return Ok(true),
            (Some(items), None) => items,
            (base, Some(items)) => self.merge_list(base, items, &field_path)?,
        };
        let ordered = order_merged(merged, &wanted_order, &server_order, identity);
        original.insert(field.to_owned(), Value::Array(ordered));
        Ok(true)
    }
}

/// `$retainKeys`: drops every original key not listed, after checking that
/// the patch only sets listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    directive: &Value,
    patch: &Map<String, Value>,
    path: &FieldPath,
) -> MergeResult<()> {
    let keep: Vec<&str> = directive_list(directive, RETAIN_KEYS, path)?
        .iter()
        .map(Value::as_str)
        .collect::<Option<_>>()
        .ok_or_else(|| StrategicMergeError::RetainKeysNotStrings {
            path: path.to_string(),
        })?;
    for (key, value) in patch {
        let is_field = matches!(classify_key(key, path)?, PatchKey::Field(_));
        if is_field && !value.is_null() && !keep.contains(&key.as_str()) {
            return Err(StrategicMergeError::FieldNotRetained {
                path: path.to_string(),
                field: key.clone(),
            });
        }
    }
    original.retain(|key, _| keep.contains(&key.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: removes those values from the list.
fn delete_from_list(
    original: &mut Map<String, Value>,
    field: &str,
    values: &Value,
    directive: &str,
    path: &FieldPath,
) -> MergeResult<()> {
    let values = directive_list(values, directive, path)?;
    if let Some(Value::Array(items)) = original.get_mut(field) {
        items.retain(|item| !values.contains(item));
    }
    Ok(())
}

fn take_object(value: &mut Value) -> Map<String, Value> {
    match value.take() {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------
// List entry kinds, union and ordering (mirrors upstream's order rules).
// ---------------------------------------------------------------------------

enum EntryKind {
    Empty,
    Objects,
    Values,
}

/// All entries must be objects, or all plain values of one JSON type.
fn entry_kind<'v>(
    entries: impl Iterator<Item = &'v Value>,
    path: &FieldPath,
) -> MergeResult<EntryKind> {
    let mut first: Option<&'static str> = None;
    for entry in entries {
        let kind = json_type(entry);
        if kind == "array" {
            return Err(StrategicMergeError::NestedList {
                path: path.to_string(),
            });
        }
        match first {
            None => first = Some(kind),
            Some(seen) if seen != kind => {
                return Err(StrategicMergeError::MixedListEntries {
                    path: path.to_string(),
                    first: seen,
                    second: kind,
                });
            }
            Some(_) => {}
        }
    }
    Ok(match first {
        None => EntryKind::Empty,
        Some("object") => EntryKind::Objects,
        Some(_) => EntryKind::Values,
    })
}

/// Union of two lists of plain values, ordered like upstream does.
fn union_values(base: Vec<Value>, additions: &[Value]) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(base.len() + additions.len());
    for value in base.iter().chain(additions) {
        if !merged.contains(value) {
            merged.push(value.clone());
        }
    }
    order_merged(merged, additions, &base, Identity::Value)
}

/// What identifies a list entry: its merge key value, or the value itself.
#[derive(Clone, Copy)]
enum Identity<'k> {
    Key(&'k str),
    Value,
}

impl<'k> Identity<'k> {
    fn of(self, entry: &Value) -> Option<&Value> {
        match self {
            Identity::Key(key) => entry.as_object()?.get(key),
            Identity::Value => Some(entry),
        }
    }

    /// The merge key, or "" when entries are plain values.
    fn key_name(self) -> &'k str {
        match self {
            Identity::Key(key) => key,
            Identity::Value => "",
        }
    }
}

fn same_identity(left: &Value, right: &Value, identity: Identity<'_>) -> bool {
    matches!((identity.of(left), identity.of(right)), (Some(a), Some(b)) if a == b)
}

fn identities(entries: &[Value], identity: Identity<'_>) -> Vec<Value> {
    entries
        .iter()
        .filter_map(|entry| identity.of(entry).cloned())
        .collect()
}

fn order_identities(
    order: &[Value],
    identity: Identity<'_>,
    path: &FieldPath,
) -> MergeResult<Vec<Value>> {
    order
        .iter()
        .map(|entry| {
            identity.of(entry).cloned().ok_or_else(|| {
                StrategicMergeError::OrderEntryLacksMergeKey {
                    path: path.to_string(),
                    key: identity.key_name().to_owned(),
                }
            })
        })
        .collect()
}

/// The patch's regular entries must appear in `$setElementOrder` in the same
/// relative order (directive entries do not count).
fn check_follows_order(
    items: &[Value],
    order: &[Value],
    identity: Identity<'_>,
    path: &FieldPath,
) -> MergeResult<()> {
    if order.is_empty() {
        return Ok(());
    }
    let mut remaining = order.iter();
    for item in items {
        if item.as_object().is_some_and(|map| map.contains_key(PATCH)) {
            continue;
        }
        // A keyless entry is reported by the list merge itself.
        let Some(id) = identity.of(item) else {
            continue;
        };
        if !remaining.any(|wanted| wanted == id) {
            return Err(StrategicMergeError::OrderMismatch {
                path: path.to_string(),
            });
        }
    }
    Ok(())
}

fn rank(order: &[Value], entry: &Value, identity: Identity<'_>) -> Option<usize> {
    let id = identity.of(entry)?;
    order.iter().position(|candidate| candidate == id)
}

fn sort_by_rank(mut entries: Vec<Value>, order: &[Value], identity: Identity<'_>) -> Vec<Value> {
    entries.sort_by_key(|entry| rank(order, entry, identity).unwrap_or(usize::MAX));
    entries
}

/// Orders a merged list: entries named in `preferred` follow that order; the
/// rest keep their `server` order and are interleaved where the server order
/// puts them before a preferred entry (upstream's normalizeElementOrder).
fn order_merged(
    merged: Vec<Value>,
    preferred: &[Value],
    server: &[Value],
    identity: Identity<'_>,
) -> Vec<Value> {
    let (listed, rest): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|entry| rank(preferred, entry, identity).is_some());
    let listed = sort_by_rank(listed, preferred, identity);
    let rest = sort_by_rank(rest, server, identity);
    interleave(rest, listed, server, identity)
}

/// Upstream's mergeSortedSlice: a server-only entry goes first only when both
/// it and the next patched entry have a server position and it comes earlier.
fn interleave(
    server_only: Vec<Value>,
    patched: Vec<Value>,
    server: &[Value],
    identity: Identity<'_>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(server_only.len() + patched.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patched.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (rank(server, l, identity), rank(server, r, identity)),
                (Some(a), Some(b)) if a < b
            ),
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("test json parses")
    }

    fn apply(original: &Value, patch: &str, kind: &str) -> Value {
        let result = strategic_merge(original, &parse(patch), kind).expect("patch applies");
        assert_no_directives(&result);
        result
    }

    fn apply_err(original: &Value, patch: &str, kind: &str) -> StrategicMergeError {
        strategic_merge(original, &parse(patch), kind).expect_err("patch must fail")
    }

    fn assert_no_directives(value: &Value) {
        match value {
            Value::Object(fields) => {
                for (key, inner) in fields {
                    assert!(!key.starts_with("$patch"), "directive {key} left");
                    assert!(!key.starts_with(RETAIN_KEYS), "directive {key} left");
                    assert!(!key.starts_with(SET_ELEMENT_ORDER), "directive {key} left");
                    assert!(
                        !key.starts_with(DELETE_FROM_PRIMITIVE_LIST),
                        "directive {key} left"
                    );
                    assert_no_directives(inner);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "finalizers": ["a.example.com/one", "b.example.com/two"]
            },
            "spec": {
                "replicas": 1,
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "Exists"}]
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "livenessProbe": {"httpGet": {"path": "/", "port": 80}},
                            "resources": {}
                        }],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                        "tolerations": [{"key": "a", "operator": "Exists"}]
                    }
                }
            }
        })
    }

    fn pod_spec(object: &Value) -> &Value {
        &object["spec"]["template"]["spec"]
    }

    #[test]
    fn kubectl_edit_patch_removes_probe_changes_port_adds_env_and_sidecar() {
        let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"sidecar"}],"containers":[{"$setElementOrder/ports":[{"containerPort":8080}],"env":[{"name":"A","value":"1"}],"livenessProbe":null,"name":"nginx","ports":[{"containerPort":8080,"name":"alt"},{"$patch":"delete","containerPort":80}]},{"image":"busybox","name":"sidecar"}]}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        let containers = &pod_spec(&result)["containers"];
        assert_eq!(
            containers,
            &json!([
                {
                    "name": "nginx",
                    "image": "nginx:1.27",
                    "ports": [{"containerPort": 8080, "name": "alt"}],
                    "resources": {},
                    "env": [{"name": "A", "value": "1"}]
                },
                {"image": "busybox", "name": "sidecar"}
            ])
        );
        assert_eq!(
            pod_spec(&result)["volumes"],
            pod_spec(&deployment())["volumes"]
        );
        assert_eq!(result["spec"]["replicas"], json!(1));
    }

    #[test]
    fn kubectl_edit_patch_applied_twice_is_stable() {
        let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"sidecar"}],"containers":[{"$setElementOrder/ports":[{"containerPort":8080}],"env":[{"name":"A","value":"1"}],"livenessProbe":null,"name":"nginx","ports":[{"containerPort":8080,"name":"alt"},{"$patch":"delete","containerPort":80}]},{"image":"busybox","name":"sidecar"}]}}}}"#;
        let once = apply(&deployment(), patch, "Deployment");
        assert_eq!(apply(&once, patch, "Deployment"), once);
    }

    #[test]
    fn original_is_not_mutated() {
        let original = deployment();
        let before = original.clone();
        let patch = r#"{"metadata":{"labels":{"app":null}},"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"x"}]}}}}"#;
        let _ = apply(&original, patch, "Deployment");
        assert_eq!(original, before);
    }

    #[test]
    fn labels_and_annotations_add_change_and_remove() {
        let patch = r#"{"metadata":{"labels":{"tier":null,"team":"blue"},"annotations":{"deployment.kubernetes.io/revision":"2","note":"hi"}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            result["metadata"]["labels"],
            json!({"app": "web", "team": "blue"})
        );
        assert_eq!(
            result["metadata"]["annotations"],
            json!({"deployment.kubernetes.io/revision": "2", "note": "hi"})
        );
    }

    #[test]
    fn null_for_absent_key_is_ignored_and_key_order_is_kept() {
        let original = json!({"kind": "ConfigMap", "data": {"a": "1", "b": "2", "c": "3"}});
        let result = apply(
            &original,
            r#"{"data":{"a":"9","b":null,"zz":null,"d":"4"}}"#,
            "ConfigMap",
        );
        let keys: Vec<&String> = result["data"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["a", "c", "d"]);
        assert_eq!(result["data"], json!({"a": "9", "c": "3", "d": "4"}));
    }

    #[test]
    fn rollout_restart_annotation_patch() {
        let patch = r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-01T00:00:00Z"}}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            result["spec"]["template"]["metadata"],
            json!({
                "labels": {"app": "web"},
                "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
            })
        );
        assert_eq!(pod_spec(&result), pod_spec(&deployment()));
    }

    #[test]
    fn set_image_patch_keeps_the_rest_of_the_container() {
        let patch =
            r#"{"spec":{"template":{"spec":{"containers":[{"image":"nginx:2","name":"nginx"}]}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        let mut expected = pod_spec(&deployment())["containers"].clone();
        expected[0]["image"] = json!("nginx:2");
        assert_eq!(pod_spec(&result)["containers"], expected);
    }

    #[test]
    fn cordon_node() {
        let node = json!({
            "kind": "Node",
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24"]}
        });
        let result = apply(&node, r#"{"spec":{"unschedulable":true}}"#, "Node");
        assert_eq!(
            result["spec"],
            json!({"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24"], "unschedulable": true})
        );
        let uncordoned = apply(&result, r#"{"spec":{"unschedulable":null}}"#, "Node");
        assert_eq!(uncordoned, node);
    }

    #[test]
    fn node_status_conditions_and_addresses_merge_by_type() {
        let node = json!({
            "kind": "Node",
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "False", "reason": "Booting"}
                ],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]
            }
        });
        let patch = r#"{"status":{"$setElementOrder/conditions":[{"type":"MemoryPressure"},{"type":"Ready"}],"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}],"addresses":[{"type":"Hostname","address":"n1"}]}}"#;
        let result = apply(&node, patch, "Node");
        assert_eq!(
            result["status"]["conditions"],
            json!([
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady"}
            ])
        );
        let addresses = result["status"]["addresses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(addresses.len(), 2);
    }

    #[test]
    fn node_taints_are_replaced() {
        let node =
            json!({"kind": "Node", "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
        let result = apply(
            &node,
            r#"{"spec":{"taints":[{"key":"b","effect":"NoExecute"}]}}"#,
            "Node",
        );
        assert_eq!(
            result["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
    }

    #[test]
    fn pod_status_conditions_merge_by_type() {
        let pod = json!({
            "kind": "Pod",
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": false}]
            }
        });
        let patch = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"},{"type":"PodScheduled","status":"True","lastTransitionTime":"t"}],"containerStatuses":[{"name":"c","ready":true}]}}"#;
        let result = apply(&pod, patch, "Pod");
        assert_eq!(
            result["status"]["conditions"],
            json!([
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t"}
            ])
        );
        assert_eq!(
            result["status"]["containerStatuses"],
            json!([{"name": "c", "ready": true}])
        );
        assert_eq!(result["status"]["phase"], json!("Running"));
    }

    /// Wraps `inner` in the fields of a dotted `prefix`.
    fn nest(prefix: &str, inner: Value) -> Value {
        prefix.rsplit('.').fold(inner, |value, field| {
            Value::Object(Map::from_iter([(field.to_owned(), value)]))
        })
    }

    fn dig<'v>(value: &'v Value, prefix: &str) -> &'v Value {
        prefix.split('.').fold(value, |value, field| &value[field])
    }

    #[test]
    fn pod_spec_location_depends_on_kind() {
        let cases = [
            ("Pod", "spec"),
            ("PodTemplate", "template.spec"),
            ("ReplicaSet", "spec.template.spec"),
            ("StatefulSet", "spec.template.spec"),
            ("DaemonSet", "spec.template.spec"),
            ("Job", "spec.template.spec"),
            ("CronJob", "spec.jobTemplate.spec.template.spec"),
        ];
        for (kind, prefix) in cases {
            let original = nest(
                prefix,
                json!({"containers": [{"name": "c", "image": "old", "args": ["x"]}]}),
            );
            let patch = nest(
                prefix,
                json!({"containers": [{"name": "c", "image": "new"}]}),
            );
            let result = strategic_merge(&original, &patch, kind).expect("applies");
            assert_eq!(
                dig(&result, prefix)["containers"],
                json!([{"name": "c", "image": "new", "args": ["x"]}]),
                "{kind}"
            );
        }
    }

    #[test]
    fn unknown_kind_replaces_lists_but_merges_maps() {
        let original = json!({
            "kind": "Widget",
            "metadata": {"finalizers": ["a"]},
            "spec": {
                "size": 1,
                "template": {"spec": {"containers": [{"name": "c", "image": "old", "args": ["x"]}]}}
            }
        });
        let patch = r#"{"metadata":{"finalizers":["b"]},"spec":{"color":"red","template":{"spec":{"containers":[{"name":"c","image":"new"}]}}}}"#;
        let result = apply(&original, patch, "Widget");
        assert_eq!(result["spec"]["size"], json!(1));
        assert_eq!(result["spec"]["color"], json!("red"));
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "new"}])
        );
        assert_eq!(result["metadata"]["finalizers"], json!(["b", "a"]));
    }

    #[test]
    fn tolerations_and_args_are_replaced() {
        let patch = r#"{"spec":{"template":{"spec":{"tolerations":[{"key":"b","operator":"Exists"}],"containers":[{"name":"nginx","args":["--x"]}]}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
        assert_eq!(pod_spec(&result)["containers"][0]["args"], json!(["--x"]));
    }

    #[test]
    fn retain_keys_on_volume_switches_its_source() {
        let patch = r#"{"spec":{"template":{"spec":{"volumes":[{"$retainKeys":["configMap","name"],"configMap":{"name":"cfg"},"name":"data"}]}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["volumes"],
            json!([{"name": "data", "configMap": {"name": "cfg"}}])
        );
    }

    #[test]
    fn retain_keys_rejects_patched_field_it_does_not_list() {
        let patch = r#"{"spec":{"template":{"spec":{"volumes":[{"$retainKeys":["name"],"configMap":{"name":"cfg"},"name":"data"}]}}}}"#;
        let err = apply_err(&deployment(), patch, "Deployment");
        assert_eq!(
            err.to_string(),
            "spec.template.spec.volumes[name=data]: field \"configMap\" is patched but missing from $retainKeys"
        );
    }

    #[test]
    fn retain_keys_must_be_a_list_of_strings() {
        let not_list = apply_err(
            &deployment(),
            r#"{"spec":{"$retainKeys":"replicas"}}"#,
            "Deployment",
        );
        assert!(matches!(
            not_list,
            StrategicMergeError::DirectiveNotList { .. }
        ));
        let not_strings = apply_err(
            &deployment(),
            r#"{"spec":{"$retainKeys":[1]}}"#,
            "Deployment",
        );
        assert!(matches!(
            not_strings,
            StrategicMergeError::RetainKeysNotStrings { .. }
        ));
    }

    #[test]
    fn retain_keys_on_deployment_strategy_drops_rolling_update() {
        let mut original = deployment();
        original["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
        let patch = r#"{"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"}}}"#;
        let result = apply(&original, patch, "Deployment");
        assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn kubectl_apply_removes_env_entry() {
        let mut original = deployment();
        original["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
        let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"$setElementOrder/env":[{"name":"A"}],"env":[{"$patch":"delete","name":"B"}],"name":"nginx"}]}}}}"#;
        let result = apply(&original, patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}])
        );
    }

    #[test]
    fn directive_entries_vanish_from_replaced_lists() {
        let patch = r#"{"spec":{"template":{"spec":{"tolerations":[{"key":"x","operator":"Exists"},{"$patch":"replace"},{"$patch":"delete","key":"a"}]}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["tolerations"],
            json!([{"key": "x", "operator": "Exists"}])
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_finalizer() {
        let patch = r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["a.example.com/one"]}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            result["metadata"]["finalizers"],
            json!(["b.example.com/two"])
        );
    }

    #[test]
    fn finalizers_merge_as_a_union() {
        let result = apply(
            &deployment(),
            r#"{"metadata":{"finalizers":["b.example.com/two","c.example.com/three"]}}"#,
            "Deployment",
        );
        assert_eq!(
            result["metadata"]["finalizers"],
            json!([
                "a.example.com/one",
                "b.example.com/two",
                "c.example.com/three"
            ])
        );
    }

    #[test]
    fn new_entries_without_order_go_first_like_upstream() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let result = apply(
            &original,
            r#"{"metadata":{"finalizers":["c"]}}"#,
            "ConfigMap",
        );
        assert_eq!(result["metadata"]["finalizers"], json!(["c", "a", "b"]));
    }

    #[test]
    fn set_element_order_on_primitive_list_matches_upstream_case() {
        let original = json!({"spec": {"podCIDRs": ["1", "2", "4"]}});
        let patch = r#"{"spec":{"$setElementOrder/podCIDRs":["1","2","3"],"podCIDRs":["3"]}}"#;
        let result = apply(&original, patch, "Node");
        assert_eq!(result["spec"]["podCIDRs"], json!(["1", "2", "3", "4"]));
    }

    #[test]
    fn set_element_order_with_deletion_of_primitive() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = r#"{"metadata":{"$setElementOrder/finalizers":["c","a"],"$deleteFromPrimitiveList/finalizers":["b"],"finalizers":["c"]}}"#;
        let result = apply(&original, patch, "ConfigMap");
        assert_eq!(result["metadata"]["finalizers"], json!(["c", "a"]));
    }

    #[test]
    fn set_element_order_alone_reorders_the_list() {
        let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"c"},{"name":"b"},{"name":"a"}]}}}}"#;
        let mut original = deployment();
        original["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
        let result = apply(&original, patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["containers"],
            json!([{"name": "c"}, {"name": "b"}, {"name": "a"}])
        );
    }

    #[test]
    fn set_element_order_keeps_unlisted_entries_in_server_order() {
        let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"d"}],"containers":[{"name":"d","image":"d"}]}}}}"#;
        let mut original = deployment();
        original["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
        let result = apply(&original, patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["containers"],
            json!([{"name": "a"}, {"name": "d", "image": "d"}, {"name": "b"}, {"name": "c"}])
        );
    }

    #[test]
    fn set_element_order_on_field_absent_everywhere_vanishes() {
        let patch =
            r#"{"spec":{"template":{"spec":{"$setElementOrder/initContainers":[{"name":"x"}]}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(pod_spec(&result), pod_spec(&deployment()));
    }

    #[test]
    fn patch_replace_on_a_list() {
        let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"x"},{"$patch":"replace"}]}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["containers"],
            json!([{"name": "only", "image": "x"}])
        );
    }

    #[test]
    fn patch_replace_on_a_map() {
        let patch = r#"{"spec":{"selector":{"$patch":"replace","matchLabels":{"app":"v2"}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            result["spec"]["selector"],
            json!({"matchLabels": {"app": "v2"}})
        );
    }

    #[test]
    fn patch_delete_on_a_map_removes_it() {
        let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","livenessProbe":{"$patch":"delete"}}]}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert!(pod_spec(&result)["containers"][0]
            .get("livenessProbe")
            .is_none());
    }

    #[test]
    fn patch_merge_directive_is_the_default() {
        let patch = r#"{"metadata":{"labels":{"$patch":"merge","team":"x"}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            result["metadata"]["labels"],
            json!({"app": "web", "tier": "front", "team": "x"})
        );
    }

    #[test]
    fn delete_entry_removes_container() {
        let mut original = deployment();
        original["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        let patch =
            r#"{"spec":{"template":{"spec":{"containers":[{"$patch":"delete","name":"a"}]}}}}"#;
        let result = apply(&original, patch, "Deployment");
        assert_eq!(pod_spec(&result)["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn directives_in_new_values_are_applied_not_copied() {
        let patch = r#"{"spec":{"template":{"spec":{"initContainers":[{"name":"init","$setElementOrder/ports":[{"containerPort":1}],"ports":[{"containerPort":1},{"$patch":"delete","containerPort":2}],"securityContext":{"$patch":"replace","runAsUser":0}},{"$patch":"delete","name":"gone"}],"affinity":{"$patch":"delete"}}}}}"#;
        let result = apply(&deployment(), patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["initContainers"],
            json!([{"name": "init", "ports": [{"containerPort": 1}], "securityContext": {"runAsUser": 0}}])
        );
        assert!(pod_spec(&result).get("affinity").is_none());
    }

    #[test]
    fn service_ports_merge_by_port() {
        let service = json!({
            "kind": "Service",
            "spec": {
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                "externalIPs": ["1.1.1.1"]
            }
        });
        let patch = r#"{"spec":{"$setElementOrder/ports":[{"port":80},{"port":443}],"ports":[{"port":80,"targetPort":9090},{"name":"https","port":443}],"externalIPs":["2.2.2.2"]}}"#;
        let result = apply(&service, patch, "Service");
        assert_eq!(
            result["spec"],
            json!({
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 9090},
                    {"name": "https", "port": 443}
                ],
                "externalIPs": ["2.2.2.2"]
            })
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let original = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
        let patch = r#"{"metadata":{"ownerReferences":[{"uid":"1","controller":true},{"uid":"2","name":"b"}]}}"#;
        let result = apply(&original, patch, "ReplicaSet");
        assert_eq!(
            result["metadata"]["ownerReferences"],
            json!([{"uid": "1", "name": "a", "controller": true}, {"uid": "2", "name": "b"}])
        );
    }

    #[test]
    fn env_merges_by_name_and_keeps_others() {
        let mut original = deployment();
        original["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
        let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"B","value":"3"}]}]}}}}"#;
        let result = apply(&original, patch, "Deployment");
        assert_eq!(
            pod_spec(&result)["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
        );
    }

    #[test]
    fn top_level_replace_swaps_the_whole_object() {
        let result = apply(
            &deployment(),
            r#"{"$patch":"replace","kind":"Deployment"}"#,
            "Deployment",
        );
        assert_eq!(result, json!({"kind": "Deployment"}));
    }

    #[test]
    fn dollar_fields_that_are_not_directives_are_plain_fields() {
        let original = json!({"spec": {"schema": {"type": "object"}}});
        let result = apply(
            &original,
            r##"{"spec":{"schema":{"$ref":"#/x"}}}"##,
            "CustomResourceDefinition",
        );
        assert_eq!(
            result["spec"]["schema"],
            json!({"type": "object", "$ref": "#/x"})
        );
    }

    #[test]
    fn error_patch_must_be_an_object() {
        let err = apply_err(&deployment(), "[1]", "Deployment");
        assert_eq!(err, StrategicMergeError::PatchNotObject { found: "array" });
        assert_eq!(err.to_string(), "patch must be a json object, got array");
    }

    #[test]
    fn error_original_must_be_an_object() {
        let err = strategic_merge(&json!("x"), &json!({}), "Pod").expect_err("fails");
        assert_eq!(
            err,
            StrategicMergeError::OriginalNotObject { found: "string" }
        );
    }

    #[test]
    fn error_delete_entry_without_merge_key() {
        let patch = r#"{"spec":{"template":{"spec":{"containers":[{"$patch":"delete"}]}}}}"#;
        let err = apply_err(&deployment(), patch, "Deployment");
        assert_eq!(
            err.to_string(),
            "spec.template.spec.containers: $patch delete entry lacks merge key \"name\""
        );
    }

    #[test]
    fn error_entry_without_merge_key() {
        let patch =
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx"},{"image":"x"}]}}}}"#;
        let err = apply_err(&deployment(), patch, "Deployment");
        assert_eq!(
            err.to_string(),
            "spec.template.spec.containers[1]: list entry lacks merge key \"name\""
        );
    }

    #[test]
    fn error_nested_entry_without_merge_key_names_the_container() {
        let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","ports":[{"name":"x"}]}]}}}}"#;
        let err = apply_err(&deployment(), patch, "Deployment");
        assert_eq!(
            err.to_string(),
            "spec.template.spec.containers[name=nginx].ports[0]: list entry lacks merge key \"containerPort\""
        );
    }

    #[test]
    fn error_invalid_patch_directive() {
        let err = apply_err(
            &deployment(),
            r#"{"metadata":{"labels":{"$patch":"explode"}}}"#,
            "Deployment",
        );
        assert_eq!(
            err.to_string(),
            "metadata.labels: invalid $patch directive \"explode\", expected \"replace\", \"delete\" or \"merge\""
        );
        let err = apply_err(
            &deployment(),
            r#"{"metadata":{"finalizers":[{"$patch":1}]}}"#,
            "Deployment",
        );
        assert!(matches!(
            err,
            StrategicMergeError::InvalidPatchDirective { .. }
        ));
    }

    #[test]
    fn error_set_element_order_not_a_list() {
        let patch =
            r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":{"name":"nginx"}}}}}"#;
        let err = apply_err(&deployment(), patch, "Deployment");
        assert_eq!(
            err.to_string(),
            "spec.template.spec: $setElementOrder/containers must be a list, got object"
        );
    }

    #[test]
    fn error_set_element_order_entry_without_key() {
        let patch =
            r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"image":"x"}]}}}}"#;
        let err = apply_err(&deployment(), patch, "Deployment");
        assert!(matches!(
            err,
            StrategicMergeError::OrderEntryLacksMergeKey { .. }
        ));
    }

    #[test]
    fn error_patch_list_disagrees_with_set_element_order() {
        let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}],"containers":[{"name":"a"},{"name":"b"}]}}}}"#;
        let err = apply_err(&deployment(), patch, "Deployment");
        assert_eq!(
            err.to_string(),
            "spec.template.spec.containers: list entries do not follow the order given by $setElementOrder"
        );
        let missing = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"a"}],"containers":[{"name":"z"}]}}}}"#;
        let err = apply_err(&deployment(), missing, "Deployment");
        assert!(matches!(err, StrategicMergeError::OrderMismatch { .. }));
    }

    #[test]
    fn error_ordered_field_not_a_list() {
        let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"a"}],"containers":{"name":"a"}}}}}"#;
        let err = apply_err(&deployment(), patch, "Deployment");
        assert!(matches!(
            err,
            StrategicMergeError::OrderedFieldNotList { .. }
        ));
    }

    #[test]
    fn error_delete_from_primitive_list_not_a_list() {
        let err = apply_err(
            &deployment(),
            r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}}"#,
            "Deployment",
        );
        assert!(matches!(err, StrategicMergeError::DirectiveNotList { .. }));
    }

    #[test]
    fn error_malformed_directive_keys() {
        for key in [
            "$setElementOrder/",
            "$setElementOrderX",
            "$deleteFromPrimitiveList",
        ] {
            let patch = json!({"metadata": {key: []}});
            let err = strategic_merge(&deployment(), &patch, "Deployment").expect_err("fails");
            assert!(
                matches!(err, StrategicMergeError::MalformedDirectiveKey { .. }),
                "{key}"
            );
        }
    }

    #[test]
    fn error_deleting_the_whole_object() {
        let err = apply_err(&deployment(), r#"{"$patch":"delete"}"#, "Deployment");
        assert_eq!(err, StrategicMergeError::DeleteWholeObject);
    }

    #[test]
    fn error_mixed_and_nested_entries() {
        let err = apply_err(
            &deployment(),
            r#"{"metadata":{"finalizers":[1]}}"#,
            "Deployment",
        );
        assert_eq!(
            err.to_string(),
            "metadata.finalizers: list mixes string and number entries"
        );
        let err = apply_err(
            &deployment(),
            r#"{"metadata":{"finalizers":[["a"]]}}"#,
            "Deployment",
        );
        assert!(matches!(err, StrategicMergeError::NestedList { .. }));
    }

    #[test]
    fn error_delete_entry_in_value_list() {
        let err = apply_err(
            &deployment(),
            r#"{"metadata":{"finalizers":[{"$patch":"delete","name":"a"}]}}"#,
            "Deployment",
        );
        assert!(matches!(err, StrategicMergeError::DeleteInValueList { .. }));
    }

    #[test]
    fn error_objects_in_value_list() {
        let original = json!({"metadata": {"finalizers": [{"a": 1}]}});
        let err = apply_err(&original, r#"{"metadata":{"finalizers":[{"b":2}]}}"#, "Pod");
        assert!(matches!(
            err,
            StrategicMergeError::ObjectsWithoutMergeKey { .. }
        ));
    }
}
