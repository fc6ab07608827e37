//! The rollout arithmetic of the Deployment controller, as pure functions over the
//! Deployment and its ReplicaSets: surge and unavailability fenceposts, how far to
//! scale the new ReplicaSet up and the old ones down, proportional scaling, the
//! pod-template hash, revision bookkeeping and revision-history clean-up. Nothing here
//! talks to the API; `super` turns the answers into writes.
//!
//! The rules are Kubernetes' (pkg/controller/deployment and its util package), so that
//! kubectl's rollout commands see what they expect.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The label that ties a ReplicaSet (and its pods) to one pod template.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The rollout sequence number of a ReplicaSet, and the Deployment's current one.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions an old ReplicaSet served before a rollback brought it back.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when this ReplicaSet was last sized.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment when this ReplicaSet was last sized.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// Deployment annotations never copied onto its ReplicaSets.
const ANNOTATIONS_TO_SKIP: &[&str] = &[
    LAST_APPLIED,
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    DEPRECATED_ROLLBACK_TO,
];

/// How long `deployment.kubernetes.io/revision-history` may grow, in characters.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// `math.MaxInt32`: the "no limit" value of progressDeadlineSeconds and
/// revisionHistoryLimit.
const UNLIMITED: i32 = i32::MAX;

// ---------------------------------------------------------------------------
// Accessors with Kubernetes' defaults
// ---------------------------------------------------------------------------

/// `spec.replicas` of a Deployment (defaulted to 1 by the API).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `status.replicas` of a ReplicaSet: the pods it actually has.
pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

/// `status.readyReplicas` of a ReplicaSet.
pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// `status.availableReplicas` of a ReplicaSet.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or("")
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The strategy type, `RollingUpdate` unless it says `Recreate`.
pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// `progressDeadlineSeconds`, unless unset or "unlimited".
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|&s| s != UNLIMITED)
}

/// `revisionHistoryLimit`, unless unset or "unlimited".
pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .filter(|&l| l != UNLIMITED)
}

// ---------------------------------------------------------------------------
// Surge and unavailability
// ---------------------------------------------------------------------------

/// intstr.GetValueFromIntOrPercent: an integer as is, or `N%` of `total`, rounded up
/// or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let percent = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let product = percent * i64::from(total);
            let value = if round_up {
                product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(value)
                .map_err(|_| format!("invalid value for IntOrString: {s:?} is out of range"))
        }
    }
}

/// ResolveFenceposts: (maxSurge, maxUnavailable) for `desired` replicas. Surge rounds
/// up and unavailability down; if both come to zero, one pod may be unavailable
/// (validation forbids both being zero as written, but rounding can get there).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = rolling.map_or(Some(&default), |r| r.max_surge.as_ref());
    let unavailable = rolling.map_or(Some(&default), |r| r.max_unavailable.as_ref());
    // Validation rejects values this cannot resolve.
    resolve_fenceposts(surge, unavailable, replicas(d)).unwrap_or((0, 0))
}

/// MaxSurge: how many pods above `replicas` a rolling update may run (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

/// MaxUnavailable: how many of `replicas` may be unavailable during a rolling update
/// (0 for Recreate or zero replicas; never more than `replicas`).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = replicas(d);
    if !is_rolling_update(d) || desired == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired)
}

// ---------------------------------------------------------------------------
// Orders and filters over ReplicaSets
// ---------------------------------------------------------------------------

/// ReplicaSetsByCreationTimestamp: oldest first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ts = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ts(a).cmp(&ts(b)).then_with(|| name(a).cmp(name(b)))
}

/// ReplicaSetsBySizeOlder: larger first; among equals, older first.
fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// ReplicaSetsBySizeNewer: larger first; among equals, newer first.
fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// ReplicaSetsByRevision: lowest revision first, then oldest.
fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let rev = |rs: &ReplicaSet| revision(rs).unwrap_or(0);
    rev(a).cmp(&rev(b)).then_with(|| by_creation(a, b))
}

/// FilterActiveReplicaSets: those asked for at least one pod.
pub fn active<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> Vec<&'a ReplicaSet> {
    rss.into_iter().filter(|rs| rs_replicas(rs) > 0).collect()
}

fn sum<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>, f: fn(&ReplicaSet) -> i32) -> i32 {
    rss.into_iter().map(f).sum()
}

// ---------------------------------------------------------------------------
// The pod-template hash and template identity
// ---------------------------------------------------------------------------

/// The alphabet of rand.SafeEncodeString: no vowels (no words), no confusable
/// characters.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// rand.SafeEncodeString: each byte mapped into the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// 32-bit FNV-1a.
fn fnv32a(data: &[u8], mut hash: u32) -> u32 {
    for &b in data {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(16_777_619);
    }
    hash
}

/// controller.ComputeHash: FNV-32a of the pod template (here: its canonical JSON) and,
/// when set, the collision count as eight little-endian bytes; the decimal sum then
/// safe-encoded, as Kubernetes renders `pod-template-hash` (e.g. `5d9c4b7f8`).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv32a(&json, 2_166_136_261);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        // Go writes uint32(collisionCount) into the first four of eight bytes.
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash = fnv32a(&bytes, hash);
    }
    safe_encode(&hash.to_string())
}

/// A template as JSON with the hash label gone and empty values dropped, so that
/// nil and empty compare equal as in apimachinery's semantic equality.
fn comparable(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    prune(&mut value);
    value
}

/// Drops nulls, empty lists and empty label/annotation maps, recursively.
fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for v in map.values_mut() {
                prune(v);
            }
            map.retain(|key, v| match v {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => {
                    !(o.is_empty() && matches!(key.as_str(), "labels" | "annotations" | "metadata"))
                }
                _ => true,
            });
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

/// EqualIgnoreHash: the same pod template, whatever their `pod-template-hash` labels.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    comparable(a) == comparable(b)
}

fn template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

fn deployment_template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// FindNewReplicaSet: the oldest ReplicaSet whose template is the Deployment's.
pub fn find_new<'a>(d: &Deployment, rss: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let wanted = comparable(&deployment_template(d));
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted
        .into_iter()
        .find(|rs| comparable(&template(rs)) == wanted)
}

/// FindOldReplicaSets (all of them, with or without pods): every ReplicaSet but the
/// new one.
pub fn find_old<'a>(d: &Deployment, rss: &'a [ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let new_uid = find_new(d, rss).and_then(|rs| rs.metadata.uid.clone());
    rss.iter()
        .filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid)
        .collect()
}

// ---------------------------------------------------------------------------
// Revisions and annotations
// ---------------------------------------------------------------------------

/// The revision of a ReplicaSet: 0 without the annotation, an error if unparsable.
pub fn revision(rs: &ReplicaSet) -> Result<i64, String> {
    match annotation(rs, REVISION) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| format!("invalid revision {v:?}")),
    }
}

/// MaxRevision: the highest parsable revision among `rss`, 0 for none.
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter()
        .filter_map(|rs| revision(rs).ok())
        .max()
        .unwrap_or(0)
        .max(0)
}

/// SetReplicasAnnotations: desired-replicas and max-replicas; true if they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// ReplicasAnnotationsNeedUpdate for the Deployment's current size.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, d: &Deployment) -> bool {
    let desired = replicas(d).to_string();
    let max = (replicas(d) + max_surge(d)).to_string();
    annotation(rs, DESIRED_REPLICAS) != Some(desired.as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.as_str())
}

/// SetNewReplicaSetAnnotations: copies the Deployment's annotations (except the
/// controller's own and kubectl's last-applied), raises the revision to
/// `new_revision` when it is lower (remembering the old one in revision-history, as
/// after `rollout undo`), and on a ReplicaSet about to be created sets the replica
/// annotations. True if anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if let Some(from) = d.metadata.annotations.as_ref() {
        for (key, value) in from {
            if ANNOTATIONS_TO_SKIP.contains(&key.as_str()) || annotations.get(key) == Some(value) {
                continue;
            }
            annotations.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            // Brought back by a rollback: keep the revisions it served before.
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_CHARS && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_CHARS {
                    revisions = revisions.split_off(start);
                    revisions.push(&old);
                    let joined = revisions.join(",");
                    annotations.insert(REVISION_HISTORY.into(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// The value the Deployment's own revision annotation should take, if it differs.
pub fn deployment_revision_update(d: &Deployment, revision: &str) -> Option<String> {
    let current = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .map(String::as_str);
    (current != Some(revision)).then(|| revision.to_string())
}

// ---------------------------------------------------------------------------
// The new ReplicaSet
// ---------------------------------------------------------------------------

/// A scale of one ReplicaSet to `to` replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub name: String,
    pub to: i32,
}

impl Scale {
    fn new(rs: &ReplicaSet, to: i32) -> Self {
        Scale {
            name: name(rs).to_string(),
            to,
        }
    }
}

/// NewRSNewReplicas: the size the new ReplicaSet may have now. RollingUpdate: grow
/// within `replicas + maxSurge` pods in all, never past `replicas`; Recreate: all of
/// `replicas` at once.
pub fn new_rs_new_replicas<'a>(
    d: &Deployment,
    all: impl IntoIterator<Item = &'a ReplicaSet>,
    new_rs: &ReplicaSet,
) -> i32 {
    let desired = replicas(d);
    if !is_rolling_update(d) {
        return desired;
    }
    let current = sum(all, rs_replicas);
    let max_total = desired + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(desired - rs_replicas(new_rs));
    rs_replicas(new_rs) + up
}

/// reconcileNewReplicaSet: where a rolling update takes the new ReplicaSet next, if
/// anywhere (down to `replicas` if it is above, else up within the surge).
pub fn reconcile_new_rs(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> Option<Scale> {
    let desired = replicas(d);
    let current = rs_replicas(new_rs);
    match current.cmp(&desired) {
        Ordering::Equal => None,
        Ordering::Greater => Some(Scale::new(new_rs, desired)),
        Ordering::Less => {
            let to = new_rs_new_replicas(d, all.iter().copied(), new_rs);
            (to != current).then(|| Scale::new(new_rs, to))
        }
    }
}

// ---------------------------------------------------------------------------
// Old ReplicaSets in a rolling update
// ---------------------------------------------------------------------------

/// reconcileOldReplicaSets: the scale-downs of old ReplicaSets a rolling update may
/// make now, in order. First the unhealthy pods of old ReplicaSets (oldest first),
/// which cost no availability; then available old pods, as long as at least
/// `replicas - maxUnavailable` pods stay available. `all` is every ReplicaSet (old ones
/// with or without pods, and the new one).
pub fn reconcile_old_rss(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> Vec<Scale> {
    let new_uid = &new_rs.metadata.uid;
    let mut old: Vec<ReplicaSet> = all
        .iter()
        .filter(|rs| &rs.metadata.uid != new_uid)
        .map(|rs| (*rs).clone())
        .collect();
    let old_pods = sum(active(&old), rs_replicas);
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods = sum(all.iter().copied(), rs_replicas);
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    old.sort_by(by_creation);
    let mut steps = Vec::new();

    // Unhealthy replicas first: removing them does not lower availability.
    let mut cleaned = 0;
    for rs in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let size = rs_replicas(rs);
        let unhealthy = size - rs_available(rs);
        if size == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        set_rs_replicas(rs, size - down);
        steps.push(Scale::new(rs, size - down));
        cleaned += down;
    }

    // Then available ones, down to the minimum availability.
    let available = sum(&old, rs_available) + rs_available(new_rs);
    if available <= min_available {
        return steps;
    }
    let budget = available - min_available;
    let mut scaled = 0;
    for rs in old.iter_mut() {
        if scaled >= budget {
            break;
        }
        let size = rs_replicas(rs);
        if size == 0 {
            continue;
        }
        let down = size.min(budget - scaled);
        set_rs_replicas(rs, size - down);
        steps.push(Scale::new(rs, size - down));
        scaled += down;
    }
    steps
}

fn set_rs_replicas(rs: &mut ReplicaSet, to: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(to);
}

// ---------------------------------------------------------------------------
// Recreate
// ---------------------------------------------------------------------------

/// oldPodsRunning: whether old ReplicaSets still report pods, or any pod of theirs
/// (`pods` are the Deployment's pods) is not yet finished or gone. Recreate waits for
/// this to be false before it starts the new ReplicaSet.
pub fn old_pods_running(new_rs: Option<&ReplicaSet>, old: &[&ReplicaSet], pods: &[Pod]) -> bool {
    if sum(old.iter().copied(), rs_actual) > 0 {
        return true;
    }
    let old_uids: Vec<&str> = old
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    let new_uid = new_rs.and_then(|rs| rs.metadata.uid.as_deref());
    pods.iter().any(|pod| {
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.as_str());
        let Some(owner) = owner else {
            return false;
        };
        if Some(owner) == new_uid || !old_uids.contains(&owner) {
            return false;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        !matches!(phase, Some("Failed") | Some("Succeeded"))
    })
}

// ---------------------------------------------------------------------------
// Scaling events and proportional scaling
// ---------------------------------------------------------------------------

/// isScalingEvent: an active ReplicaSet was last sized for a different `replicas`.
pub fn is_scaling_event<'a>(d: &Deployment, all: impl IntoIterator<Item = &'a ReplicaSet>) -> bool {
    let desired = replicas(d);
    active(all).into_iter().any(|rs| {
        annotation(rs, DESIRED_REPLICAS)
            .and_then(|v| v.parse::<i32>().ok())
            .is_some_and(|v| v != desired)
    })
}

/// IsSaturated: the new ReplicaSet holds, and has available, all of `replicas`.
pub fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let desired = replicas(d);
    let annotated = annotation(rs, DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok());
    rs_replicas(rs) == desired && annotated == Some(desired) && rs_available(rs) == desired
}

/// FindActiveOrLatest: the only active ReplicaSet, or the newest one when none is
/// active; None when several are active.
fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut old = old.to_vec();
    old.sort_by(|a, b| by_creation(b, a));
    let all = active(old.iter().copied().chain(new_rs));
    match all.len() {
        0 => new_rs.or_else(|| old.first().copied()),
        1 => Some(all[0]),
        _ => None,
    }
}

/// getReplicaSetFraction: the share of a size change one ReplicaSet takes, from the
/// max-replicas it was last sized for.
fn rs_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = annotation(rs, MAX_REPLICAS)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}

/// GetProportion: the change for one ReplicaSet, bounded by what is left to add or
/// remove.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = rs_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// scale: sizes for a scaling event or a paused Deployment. One active ReplicaSet
/// (or none) takes all of `replicas`; a saturated new ReplicaSet sends the old ones to
/// zero; otherwise, in a rolling update, the change is spread over the active
/// ReplicaSets in proportion to their sizes (leftovers to the largest). Every
/// ReplicaSet listed is also brought to the current replica annotations.
pub fn proportional_scale(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> Vec<Scale> {
    let desired = replicas(d);
    if let Some(rs) = find_active_or_latest(new_rs, old) {
        if rs_replicas(rs) == desired && !replicas_annotations_need_update(rs, d) {
            return Vec::new();
        }
        return vec![Scale::new(rs, desired)];
    }
    if new_rs.is_some_and(|rs| is_saturated(d, rs)) {
        return active(old.iter().copied())
            .into_iter()
            .map(|rs| Scale::new(rs, 0))
            .collect();
    }
    let mut all = active(old.iter().copied().chain(new_rs));
    if !is_rolling_update(d) {
        // Recreate does not scale several ReplicaSets at once; only their annotations
        // are brought up to date, so the next pass is no longer a scaling event and
        // the rollout goes on.
        return all
            .into_iter()
            .map(|rs| Scale::new(rs, rs_replicas(rs)))
            .collect();
    }
    let all_replicas = sum(all.iter().copied(), rs_replicas);
    let allowed = if desired > 0 {
        desired + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - all_replicas;
    match to_add.cmp(&0) {
        Ordering::Greater => all.sort_by(|a, b| by_size_newer(a, b)),
        Ordering::Less => all.sort_by(|a, b| by_size_older(a, b)),
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
    for rs in &all {
        if to_add != 0 {
            let p = proportion(rs, d, to_add, added);
            sizes.push(rs_replicas(rs) + p);
            added += p;
        } else {
            sizes.push(rs_replicas(rs));
        }
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
    }
    all.iter()
        .zip(sizes)
        .map(|(rs, to)| Scale::new(rs, to))
        .collect()
}

// ---------------------------------------------------------------------------
// Revision history
// ---------------------------------------------------------------------------

/// cleanupDeployment: the old ReplicaSets to delete so that at most
/// `revisionHistoryLimit` remain: the lowest revisions first, and only those scaled to
/// zero, without pods, observed by their controller and not already being deleted.
pub fn history_to_delete(d: &Deployment, old: &[&ReplicaSet]) -> Vec<String> {
    let Some(limit) = revision_history_limit(d) else {
        return Vec::new();
    };
    let mut cleanable: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = cleanable.len() as i64 - i64::from(limit);
    if excess <= 0 {
        return Vec::new();
    }
    cleanable.sort_by(|a, b| by_revision(a, b));
    cleanable
        .into_iter()
        .take(excess as usize)
        .filter(|rs| {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            rs_actual(rs) == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= observed
        })
        .map(|rs| name(rs).to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// The ScalingReplicaSet event message, as Kubernetes words it.
pub fn scaling_message(rs_name: &str, from: i32, to: i32) -> String {
    let direction = if to > from { "up" } else { "down" };
    format!("Scaled {direction} replica set {rs_name} to {to} from {from}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus,
        RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, ObjectMeta, OwnerReference, Time,
    };

    pub fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    /// The user's fixture: 3 replicas, default strategy (25%/25%).
    pub fn deployment(replicas: i32, image: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                    ..Default::default()
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::String("25%".into())),
                        max_unavailable: Some(IntOrString::String("25%".into())),
                    }),
                }),
                revision_history_limit: Some(10),
                progress_deadline_seconds: Some(600),
                template: template(image),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn with_strategy(
        mut d: Deployment,
        surge: IntOrString,
        unavailable: IntOrString,
    ) -> Deployment {
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        });
        d
    }

    pub fn recreate(mut d: Deployment) -> Deployment {
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        d
    }

    /// A ReplicaSet `name` of image `image`, created at second `age`, asked for
    /// `spec` pods of which `available` are available.
    pub fn rs(name: &str, image: &str, age: i64, spec: i32, available: i32) -> ReplicaSet {
        let mut t = template(image);
        let hash = compute_hash(&t, None);
        t.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), hash);
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                creation_timestamp: Some(Time(Utc.timestamp_opt(1_700_000_000 + age, 0).unwrap())),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(spec),
                template: Some(t),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas: spec,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                observed_generation: Some(1),
                ..Default::default()
            }),
        }
    }

    pub fn annotate(mut rs: ReplicaSet, key: &str, value: &str) -> ReplicaSet {
        rs.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        rs
    }

    fn int(i: i32) -> IntOrString {
        IntOrString::Int(i)
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn fixture_resolves_to_surge_one_unavailable_zero() {
        let d = deployment(3, "my-flask-app:latest");
        assert_eq!(max_surge(&d), 1);
        assert_eq!(max_unavailable(&d), 0);
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        let cases = [
            // (desired, surge, unavailable) → (surge, unavailable)
            (10, "25%", "25%", (3, 2)),
            (4, "25%", "25%", (1, 1)),
            (1, "25%", "25%", (1, 0)),
            (5, "10%", "10%", (1, 0)), // 0.5 up → 1, 0.5 down → 0
            (7, "50%", "50%", (4, 3)),
            (100, "1%", "1%", (1, 1)),
            (0, "25%", "25%", (0, 1)), // both round to zero → one may be unavailable
            (3, "0%", "34%", (0, 1)),
        ];
        for (desired, s, u, expected) in cases {
            assert_eq!(
                resolve_fenceposts(Some(&pct(s)), Some(&pct(u)), desired).unwrap(),
                expected,
                "{desired} replicas, {s}/{u}"
            );
        }
        assert_eq!(
            resolve_fenceposts(Some(&int(2)), Some(&int(0)), 3).unwrap(),
            (2, 0)
        );
        assert_eq!(
            resolve_fenceposts(Some(&int(0)), Some(&int(0)), 3).unwrap(),
            (0, 1)
        );
        assert!(resolve_fenceposts(Some(&pct("x")), None, 3).is_err());
        // Missing rollingUpdate block: Kubernetes defaults both to 25%.
        let mut d = deployment(8, "a");
        d.spec
            .as_mut()
            .unwrap()
            .strategy
            .as_mut()
            .unwrap()
            .rolling_update = None;
        assert_eq!((max_surge(&d), max_unavailable(&d)), (2, 2));
    }

    #[test]
    fn max_unavailable_is_capped_and_zero_for_recreate() {
        let d = with_strategy(deployment(2, "a"), int(1), int(5));
        assert_eq!(max_unavailable(&d), 2);
        let d = recreate(deployment(3, "a"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
        let d = deployment(0, "a");
        assert_eq!(max_unavailable(&d), 0);
    }

    #[test]
    fn hash_is_short_safe_and_stable() {
        let t = template("nginx:1.25");
        let h = compute_hash(&t, None);
        assert!(!h.is_empty() && h.len() <= 10, "{h}");
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
        assert_eq!(h, compute_hash(&template("nginx:1.25"), None));
        assert_ne!(h, compute_hash(&template("nginx:1.26"), None));
        assert_ne!(h, compute_hash(&t, Some(1)));
        assert_ne!(compute_hash(&t, Some(1)), compute_hash(&t, Some(2)));
        // Digits map as Kubernetes maps them: '0'..'9' → "456789bcdf".
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn templates_compare_ignoring_the_hash_label() {
        let d = deployment(3, "a");
        let old = rs("web-old", "a", 0, 3, 3);
        assert!(equal_ignore_hash(
            &deployment_template(&d),
            &template_of(&old)
        ));
        let other = rs("web-b", "b", 1, 0, 0);
        assert!(!equal_ignore_hash(
            &deployment_template(&d),
            &template_of(&other)
        ));
        // Empty and missing are the same.
        let mut t = deployment_template(&d);
        t.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
        t.spec.as_mut().unwrap().volumes = Some(vec![]);
        assert!(equal_ignore_hash(&t, &deployment_template(&d)));
    }

    fn template_of(rs: &ReplicaSet) -> PodTemplateSpec {
        super::template(rs)
    }

    #[test]
    fn fixture_rollout_steps() {
        // 3 replicas, surge 1, unavailable 0: create the new RS at 1, then replace
        // old pods one at a time as new ones become available.
        let d = deployment(3, "v2");
        let old = rs("web-v1", "v1", 0, 3, 3);
        let mut new = rs("web-v2", "v2", 10, 0, 0);
        new.status.as_mut().unwrap().replicas = 0;
        assert_eq!(new_rs_new_replicas(&d, [&old, &new], &new), 1);

        // New at 1, not available yet: nothing else may move.
        let new = rs("web-v2", "v2", 10, 1, 0);
        let all = [&old, &new];
        assert_eq!(reconcile_new_rs(&d, &all, &new), None);
        assert!(reconcile_old_rss(&d, &all, &new).is_empty());

        // New pod available: one old pod goes.
        let new = rs("web-v2", "v2", 10, 1, 1);
        let all = [&old, &new];
        assert_eq!(
            reconcile_old_rss(&d, &all, &new),
            vec![Scale {
                name: "web-v1".into(),
                to: 2
            }]
        );
        // ... which lets the new RS grow by one.
        let old = rs("web-v1", "v1", 0, 2, 2);
        let all = [&old, &new];
        assert_eq!(
            reconcile_new_rs(&d, &all, &new),
            Some(Scale {
                name: "web-v2".into(),
                to: 2
            })
        );
        // New RS above replicas comes down.
        let big = rs("web-v2", "v2", 10, 4, 4);
        assert_eq!(reconcile_new_rs(&d, &[&big], &big).unwrap().to, 3);
    }

    #[test]
    fn unhealthy_old_replicas_are_scaled_down_first() {
        // 10 replicas, surge 3, unavailable 2 (Kubernetes' own example).
        let d = with_strategy(deployment(10, "v3"), int(3), int(2));
        // Two old RSes: the older one has 2 unhealthy pods, the newer one is healthy.
        let older = rs("web-v1", "v1", 0, 5, 3);
        let newer = rs("web-v2", "v2", 5, 5, 5);
        let new = rs("web-v3", "v3", 10, 3, 0);
        let all = [&older, &newer, &new];
        // all 13, min available 8, new unavailable 3 → may scale down 2: exactly the
        // unhealthy ones; available 8 leaves nothing more.
        let steps = reconcile_old_rss(&d, &all, &new);
        assert_eq!(
            steps,
            vec![Scale {
                name: "web-v1".into(),
                to: 3
            }]
        );

        // Unhealthy pods in the newer old RS are cleaned before healthy pods of the older.
        let older = rs("web-v1", "v1", 0, 4, 4);
        let newer = rs("web-v2", "v2", 5, 4, 1);
        let new = rs("web-v3", "v3", 10, 5, 5);
        let all = [&older, &newer, &new];
        // all 13, min 8, new unavailable 0 → up to 5: 3 unhealthy from web-v2, then
        // available 10 - 8 = 2 from the oldest.
        assert_eq!(
            reconcile_old_rss(&d, &all, &new),
            vec![
                Scale {
                    name: "web-v2".into(),
                    to: 1
                },
                Scale {
                    name: "web-v1".into(),
                    to: 2
                },
            ]
        );
    }

    #[test]
    fn crashlooping_new_pods_block_further_scale_down() {
        let d = with_strategy(deployment(10, "v2"), int(3), int(2));
        let old = rs("web-v1", "v1", 0, 8, 8);
        let new = rs("web-v2", "v2", 10, 5, 0);
        // 13 - 8 - 5 = 0
        assert!(reconcile_old_rss(&d, &[&old, &new], &new).is_empty());
    }

    #[test]
    fn recreate_waits_for_old_pods() {
        let d = recreate(deployment(3, "v2"));
        let old = rs("web-v1", "v1", 0, 0, 0);
        let new = rs("web-v2", "v2", 10, 0, 0);
        // Recreate creates the new RS at full size.
        assert_eq!(new_rs_new_replicas(&d, [&old], &new), 3);

        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-v1-abcde".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "web-v1".into(),
                    uid: "web-v1-uid".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        };
        assert!(old_pods_running(
            Some(&new),
            &[&old],
            std::slice::from_ref(&pod)
        ));
        pod.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!old_pods_running(
            Some(&new),
            &[&old],
            std::slice::from_ref(&pod)
        ));
        assert!(!old_pods_running(None, &[&old], &[]));
        // An old RS that still reports pods counts even before its pods are listed.
        let mut reporting = rs("web-v1", "v1", 0, 0, 0);
        reporting.status.as_mut().unwrap().replicas = 1;
        assert!(old_pods_running(Some(&new), &[&reporting], &[]));
    }

    #[test]
    fn scaling_events_are_detected_from_annotations() {
        let d = deployment(5, "v1");
        let current = annotate(rs("web-v1", "v1", 0, 3, 3), DESIRED_REPLICAS, "3");
        assert!(is_scaling_event(&d, [&current]));
        let current = annotate(rs("web-v1", "v1", 0, 5, 5), DESIRED_REPLICAS, "5");
        assert!(!is_scaling_event(&d, [&current]));
        // Inactive or unannotated ReplicaSets don't count.
        let idle = annotate(rs("web-v0", "v0", 0, 0, 0), DESIRED_REPLICAS, "3");
        assert!(!is_scaling_event(&d, [&idle, &rs("x", "v1", 0, 3, 3)]));
    }

    #[test]
    fn paused_scaling_of_the_only_active_rs() {
        let d = deployment(5, "v1");
        let current = annotate(
            annotate(rs("web-v1", "v1", 0, 3, 3), DESIRED_REPLICAS, "3"),
            MAX_REPLICAS,
            "4",
        );
        let old = rs("web-v0", "v0", -10, 0, 0);
        assert_eq!(
            proportional_scale(&d, Some(&current), &[&old]),
            vec![Scale {
                name: "web-v1".into(),
                to: 5
            }]
        );
        // Nothing to do when sized and annotated for the current spec.
        let d = deployment(3, "v1");
        assert!(proportional_scale(&d, Some(&current), &[&old]).is_empty());
    }

    #[test]
    fn paused_mid_rollout_scales_proportionally() {
        // Paused while rolling 10 → new template: old 8, new 5 (surge 3). Scale to 20.
        let mut d = with_strategy(deployment(20, "v2"), int(3), int(2));
        d.spec.as_mut().unwrap().paused = Some(true);
        let old = annotate(
            annotate(rs("web-v1", "v1", 0, 8, 8), DESIRED_REPLICAS, "10"),
            MAX_REPLICAS,
            "13",
        );
        let new = annotate(
            annotate(rs("web-v2", "v2", 10, 5, 5), DESIRED_REPLICAS, "10"),
            MAX_REPLICAS,
            "13",
        );
        let steps = proportional_scale(&d, Some(&new), &[&old]);
        // allowed 23, have 13 → add 10: old 8*23/13 ≈ 14 (+6), new 5*23/13 ≈ 9 (+4).
        let total: i32 = steps.iter().map(|s| s.to).sum();
        assert_eq!(total, 23);
        let size = |n: &str| steps.iter().find(|s| s.name == n).unwrap().to;
        assert_eq!(size("web-v1"), 14);
        assert_eq!(size("web-v2"), 9);

        // Scaling down to zero empties everything.
        let d = with_strategy(deployment(0, "v2"), int(3), int(2));
        let steps = proportional_scale(&d, Some(&new), &[&old]);
        assert!(steps.iter().all(|s| s.to == 0), "{steps:?}");
    }

    #[test]
    fn recreate_scaling_event_with_two_active_only_refreshes_annotations() {
        // Switched to Recreate mid-rollout and rescaled: nothing is resized here (the
        // Recreate rollout does that), but the annotations catch up so that the next
        // pass is not a scaling event again.
        let d = recreate(deployment(5, "v2"));
        let old = annotate(rs("web-v1", "v1", 0, 2, 2), DESIRED_REPLICAS, "3");
        let new = annotate(rs("web-v2", "v2", 10, 2, 2), DESIRED_REPLICAS, "3");
        assert!(is_scaling_event(&d, [&old, &new]));
        let steps = proportional_scale(&d, Some(&new), &[&old]);
        assert_eq!(steps.len(), 2);
        assert!(steps.iter().all(|s| s.to == 2), "{steps:?}");
    }

    #[test]
    fn saturated_new_rs_sends_old_ones_to_zero() {
        let d = deployment(3, "v2");
        let new = annotate(rs("web-v2", "v2", 10, 3, 3), DESIRED_REPLICAS, "3");
        let old = rs("web-v1", "v1", 0, 1, 1);
        assert_eq!(
            proportional_scale(&d, Some(&new), &[&old]),
            vec![Scale {
                name: "web-v1".into(),
                to: 0
            }]
        );
    }

    #[test]
    fn revision_history_cleanup_deletes_lowest_revisions_first() {
        let mut d = deployment(3, "v5");
        d.spec.as_mut().unwrap().revision_history_limit = Some(2);
        // Revisions deliberately out of creation order (an undo re-numbered one).
        let r1 = annotate(rs("web-a", "a", 0, 0, 0), REVISION, "4");
        let r2 = annotate(rs("web-b", "b", 1, 0, 0), REVISION, "1");
        let r3 = annotate(rs("web-c", "c", 2, 0, 0), REVISION, "2");
        let r4 = annotate(rs("web-d", "d", 3, 0, 0), REVISION, "3");
        let old = [&r1, &r2, &r3, &r4];
        assert_eq!(history_to_delete(&d, &old), vec!["web-b", "web-c"]);

        // Those still holding pods, or not yet observed, are kept (not replaced).
        let busy = annotate(rs("web-b", "b", 1, 1, 1), REVISION, "1");
        let mut unobserved = annotate(rs("web-c", "c", 2, 0, 0), REVISION, "2");
        unobserved.metadata.generation = Some(2);
        assert!(history_to_delete(&d, &[&r1, &busy, &unobserved, &r4]).is_empty());

        // Limit 0 removes every idle old RS; no limit keeps them all.
        d.spec.as_mut().unwrap().revision_history_limit = Some(0);
        assert_eq!(history_to_delete(&d, &old).len(), 4);
        d.spec.as_mut().unwrap().revision_history_limit = None;
        assert!(history_to_delete(&d, &old).is_empty());
    }

    #[test]
    fn new_template_gets_max_plus_one() {
        let d = deployment(3, "v3");
        let a = annotate(rs("web-a", "v1", 0, 0, 0), REVISION, "1");
        let b = annotate(rs("web-b", "v2", 1, 3, 3), REVISION, "2");
        let rss = vec![a, b];
        assert!(find_new(&d, &rss).is_none());
        let old = find_old(&d, &rss);
        assert_eq!(old.len(), 2);
        assert_eq!(max_revision(old), 2);
        let mut new = rs("web-c", "v3", 2, 0, 0);
        assert!(set_new_rs_annotations(&d, &mut new, 3, false));
        let a = new.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[DESIRED_REPLICAS], "3");
        assert_eq!(a[MAX_REPLICAS], "4");
        assert!(!a.contains_key(REVISION_HISTORY));
    }

    #[test]
    fn undo_to_an_old_template_renumbers_the_old_rs() {
        // Revisions 1 (v1) and 2 (v2); `rollout undo` puts v1's template back.
        let mut d = deployment(3, "v1");
        d.metadata.annotations = Some(BTreeMap::from([
            (REVISION.to_string(), "2".to_string()),
            (
                "kubernetes.io/change-cause".to_string(),
                "rollback".to_string(),
            ),
            (LAST_APPLIED.to_string(), "{}".to_string()),
        ]));
        let v1 = annotate(rs("web-v1", "v1", 0, 0, 0), REVISION, "1");
        let v2 = annotate(rs("web-v2", "v2", 10, 3, 3), REVISION, "2");
        let rss = vec![v1, v2];
        let new = find_new(&d, &rss).expect("the old RS is the new one again");
        assert_eq!(name(new), "web-v1");
        let old = find_old(&d, &rss);
        assert_eq!(
            old.iter().map(|rs| name(rs)).collect::<Vec<_>>(),
            ["web-v2"]
        );
        let next = max_revision(old) + 1;
        assert_eq!(next, 3);
        let mut updated = new.clone();
        assert!(set_new_rs_annotations(&d, &mut updated, next, true));
        let a = updated.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert_eq!(a["kubernetes.io/change-cause"], "rollback");
        assert!(!a.contains_key(LAST_APPLIED));
        assert_eq!(deployment_revision_update(&d, "3"), Some("3".into()));
        // A second pass changes nothing.
        assert!(!set_new_rs_annotations(&d, &mut updated, next, true));
        // And a later undo back to it appends to the history.
        let mut again = updated.clone();
        assert!(set_new_rs_annotations(&d, &mut again, 5, true));
        assert_eq!(
            again.metadata.annotations.as_ref().unwrap()[REVISION_HISTORY],
            "1,3"
        );
    }

    #[test]
    fn oldest_matching_rs_is_the_new_one() {
        let d = deployment(3, "v1");
        let later = rs("web-dup", "v1", 5, 0, 0);
        let earlier = rs("web-v1", "v1", 0, 3, 3);
        let rss = vec![later, earlier];
        assert_eq!(name(find_new(&d, &rss).unwrap()), "web-v1");
        assert_eq!(find_old(&d, &rss).len(), 1);
    }

    #[test]
    fn scaling_messages_match_kubernetes() {
        assert_eq!(
            scaling_message("web-5d9c", 0, 3),
            "Scaled up replica set web-5d9c to 3 from 0"
        );
        assert_eq!(
            scaling_message("web-5d9c", 2, 1),
            "Scaled down replica set web-5d9c to 1 from 2"
        );
    }
}
