//! Deployment status as pure functions: the counts summed from the ReplicaSets, and
//! the `Available` and `Progressing` conditions with Kubernetes' reasons, messages and
//! `lastUpdateTime`/`lastTransitionTime` rules (pkg/controller/deployment/progress.go,
//! sync.go and util). `kubectl rollout status` and `kubectl wait` read these.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::rollout::{self, max_unavailable, progress_deadline, replicas};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// One of the Deployment's ReplicaSets was scaled as part of the rollout.
pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
/// The new ReplicaSet could not be created.
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
/// The new ReplicaSet was created.
pub const NEW_REPLICA_SET: &str = "NewReplicaSetCreated";
/// An existing ReplicaSet was found to be the new one.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// The new ReplicaSet is complete and available.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// No progress within progressDeadlineSeconds.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// Now, to the second: conditions are stored with second precision, and comparing a
/// computed status with the stored one must not see phantom differences.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

fn int(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Go's `omitempty`: zero counts are left out.
fn nonzero(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

/// A status in the form it is stored in: zero counts and no conditions left out.
pub fn normalize(mut status: DeploymentStatus) -> DeploymentStatus {
    for field in [
        &mut status.replicas,
        &mut status.updated_replicas,
        &mut status.ready_replicas,
        &mut status.available_replicas,
        &mut status.unavailable_replicas,
    ] {
        *field = field.and_then(nonzero);
    }
    status.observed_generation = status.observed_generation.filter(|&g| g != 0);
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
    status
}

/// The Deployment's current status, normalized.
pub fn current(d: &Deployment) -> DeploymentStatus {
    normalize(d.status.clone().unwrap_or_default())
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn reason(c: &DeploymentCondition) -> &str {
    c.reason.as_deref().unwrap_or("")
}

/// SetDeploymentCondition: adds or replaces the condition of its type, unless one
/// with the same status and reason is there already; keeps lastTransitionTime when
/// the status does not change. A replaced condition moves to the end.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(status, &condition.type_) {
        if current.status == condition.status && reason(current) == reason(&condition) {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_.clone());
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// calculateStatus: counts from the ReplicaSets (pods as they report them; updated =
/// the new ReplicaSet's), observedGeneration, and the Available condition: true while
/// at least `replicas - maxUnavailable` pods are available.
pub fn calculate(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let sum = |f: fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let available = sum(rollout::rs_available);
    let total = sum(rollout::rs_replicas);
    let unavailable = (total - available).max(0);
    let old = current(d);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(sum(rollout::rs_actual)),
        updated_replicas: nonzero(new_rs.map(rollout::rs_actual).unwrap_or(0)),
        ready_replicas: nonzero(sum(rollout::rs_ready)),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        collision_count: old.collision_count,
        conditions: old.conditions,
    };
    if available >= replicas(d) - max_unavailable(d) {
        let c = new_condition(
            AVAILABLE,
            "True",
            MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        );
        set_condition(&mut status, c);
    } else {
        let c = new_condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        );
        set_condition(&mut status, c);
    }
    normalize(status)
}

/// DeploymentComplete: every desired replica updated and available, no old pods, and
/// the current generation observed.
pub fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = replicas(d);
    int(status.updated_replicas) == desired
        && int(status.replicas) == desired
        && int(status.available_replicas) == desired
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// DeploymentProgressing: compared with the stored status, more updated, ready or
/// available pods, or fewer old ones.
pub fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = current(d);
    let old_old = int(old.replicas) - int(old.updated_replicas);
    let new_old = int(new.replicas) - int(new.updated_replicas);
    int(new.updated_replicas) > int(old.updated_replicas)
        || new_old < old_old
        || int(new.ready_replicas) > int(old.ready_replicas)
        || int(new.available_replicas) > int(old.available_replicas)
}

/// DeploymentTimedOut: the Progressing condition last moved more than
/// progressDeadlineSeconds ago (or already says so), unless it reports success.
pub fn timed_out(d: &Deployment, status: &DeploymentStatus, now: DateTime<Utc>) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(condition) = get_condition(status, PROGRESSING) else {
        return false;
    };
    match reason(condition) {
        NEW_RS_AVAILABLE => false,
        TIMED_OUT => true,
        _ => condition
            .last_update_time
            .as_ref()
            .is_some_and(|from| from.0 + chrono::Duration::seconds(i64::from(deadline)) < now),
    }
}

/// syncRolloutStatus: the status after a rollout step. Progressing becomes
/// NewReplicaSetAvailable when complete; ReplicaSetUpdated (lastUpdateTime bumped,
/// lastTransitionTime kept while true) on any progress; ProgressDeadlineExceeded when
/// nothing moved for the deadline. Without a deadline there is no Progressing
/// condition. ReplicaSet failure conditions are surfaced as ReplicaFailure.
pub fn rollout(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let mut status = calculate(all, new_rs, d, now);
    let has_deadline = progress_deadline(d).is_some();
    if !has_deadline {
        remove_condition(&mut status, PROGRESSING);
    }
    let stored = current(d);
    let current_cond = get_condition(&stored, PROGRESSING);
    let already_complete = int(status.replicas) == int(status.updated_replicas)
        && current_cond.is_some_and(|c| reason(c) == NEW_RS_AVAILABLE);
    let subject = |what: &str| match new_rs {
        Some(rs) => format!("ReplicaSet \"{}\" {what}", rollout::name(rs)),
        None => format!(
            "Deployment \"{}\" {what}",
            d.metadata.name.as_deref().unwrap_or("")
        ),
    };
    if has_deadline && !already_complete {
        if complete(d, &status) {
            let c = new_condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE,
                subject("has successfully progressed."),
                now,
            );
            set_condition(&mut status, c);
        } else if progressing(d, &status) {
            let mut c = new_condition(
                PROGRESSING,
                "True",
                REPLICA_SET_UPDATED,
                subject("is progressing."),
                now,
            );
            if let Some(current) = current_cond {
                if current.status == "True" {
                    c.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, c);
        } else if timed_out(d, &status, now) {
            let c = new_condition(
                PROGRESSING,
                "False",
                TIMED_OUT,
                subject("has timed out progressing."),
                now,
            );
            set_condition(&mut status, c);
        }
    }
    match replica_failure(all, new_rs) {
        Some(c) => set_condition(&mut status, c),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    normalize(status)
}

/// getReplicaFailures: the new ReplicaSet's ReplicaFailure condition, else any old
/// one's, as a Deployment condition.
fn replica_failure(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .map(|c| DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: c.last_transition_time.clone(),
                last_update_time: c.last_transition_time.clone(),
            })
    };
    new_rs
        .and_then(failure)
        .or_else(|| all.iter().find_map(|rs| failure(rs)))
}

/// checkPausedConditions: the status with Progressing set to DeploymentPaused or
/// DeploymentResumed (status Unknown) when pausing or resuming, if that changes
/// anything. A timed-out rollout keeps its ProgressDeadlineExceeded.
pub fn paused_update(d: &Deployment, now: DateTime<Utc>) -> Option<DeploymentStatus> {
    progress_deadline(d)?;
    let mut status = current(d);
    let cond = get_condition(&status, PROGRESSING);
    if cond.is_some_and(|c| reason(c) == TIMED_OUT) {
        return None;
    }
    let paused_cond = cond.is_some_and(|c| reason(c) == PAUSED);
    let paused = rollout::is_paused(d);
    let c = if paused && !paused_cond {
        new_condition(
            PROGRESSING,
            "Unknown",
            PAUSED,
            "Deployment is paused".into(),
            now,
        )
    } else if !paused && paused_cond {
        new_condition(
            PROGRESSING,
            "Unknown",
            RESUMED,
            "Deployment is resumed".into(),
            now,
        )
    } else {
        return None;
    };
    set_condition(&mut status, c);
    Some(normalize(status))
}

/// requeueStuckDeployment: when to look again for the progress deadline, if a rollout
/// is under way and has not timed out yet.
pub fn progress_check_after(
    d: &Deployment,
    new: &DeploymentStatus,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let stored = current(d);
    let cond = get_condition(&stored, PROGRESSING)?;
    if complete(d, new) || reason(cond) == TIMED_OUT {
        return None;
    }
    let from = cond.last_update_time.as_ref()?.0;
    let after = from + chrono::Duration::seconds(i64::from(deadline)) - now;
    let after = after.to_std().unwrap_or_default();
    if after < Duration::from_secs(1) {
        return Some(Duration::from_secs(1));
    }
    // A second more, so the check lands after the deadline.
    Some(after + Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::deployment::rollout::tests::{deployment, recreate, rs};
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn with_status(mut d: Deployment, status: DeploymentStatus) -> Deployment {
        d.status = Some(status);
        d
    }

    fn cond<'a>(s: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
        get_condition(s, type_).unwrap_or_else(|| panic!("no {type_} in {s:?}"))
    }

    #[test]
    fn fixture_status_counts_and_availability() {
        // Mid-rollout of the fixture: old 3 (3 available), new 1 (0 available).
        let d = deployment(3, "v2");
        let old = rs("web-v1", "v1", 0, 3, 3);
        let new = rs("web-v2", "v2", 10, 1, 0);
        let s = calculate(&[&old, &new], Some(&new), &d, t(0));
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.replicas, Some(4));
        assert_eq!(s.updated_replicas, Some(1));
        assert_eq!(s.ready_replicas, Some(3));
        assert_eq!(s.available_replicas, Some(3));
        assert_eq!(s.unavailable_replicas, Some(1));
        let a = cond(&s, AVAILABLE);
        assert_eq!((a.status.as_str(), reason(a)), ("True", MIN_AVAILABLE));

        // Nothing available: 0 < 3 - 0.
        let none = rs("web-v2", "v2", 10, 3, 0);
        let s = calculate(&[&none], Some(&none), &d, t(0));
        let a = cond(&s, AVAILABLE);
        assert_eq!((a.status.as_str(), reason(a)), ("False", MIN_UNAVAILABLE));
        assert_eq!(
            a.message.as_deref(),
            Some("Deployment does not have minimum availability.")
        );
        // Zero counts are omitted, as Kubernetes stores them.
        assert_eq!(s.available_replicas, None);
        assert_eq!(s.ready_replicas, None);
    }

    #[test]
    fn progressing_goes_updated_then_available() {
        let d = deployment(3, "v2");
        let old = rs("web-v1", "v1", 0, 3, 3);
        let new = rs("web-v2", "v2", 10, 1, 0);
        // The controller just created the RS: NewReplicaSetCreated at t0.
        let mut stored = calculate(&[&old, &new], Some(&new), &d, t(0));
        set_condition(
            &mut stored,
            new_condition(
                PROGRESSING,
                "True",
                NEW_REPLICA_SET,
                "Created new replica set \"web-v2\"".into(),
                t(0),
            ),
        );
        let d = with_status(d, stored);

        // The new pod becomes available at t5: progress.
        let new = rs("web-v2", "v2", 10, 1, 1);
        let s = rollout(&[&old, &new], Some(&new), &d, t(5));
        let p = cond(&s, PROGRESSING);
        assert_eq!(reason(p), REPLICA_SET_UPDATED);
        assert_eq!(
            p.message.as_deref(),
            Some("ReplicaSet \"web-v2\" is progressing.")
        );
        assert_eq!(p.last_update_time, Some(Time(t(5))));
        assert_eq!(
            p.last_transition_time,
            Some(Time(t(0))),
            "status stayed True"
        );

        // Done: all 3 new available, old gone.
        let d = with_status(d, s);
        let old = rs("web-v1", "v1", 0, 0, 0);
        let new = rs("web-v2", "v2", 10, 3, 3);
        let s = rollout(&[&old, &new], Some(&new), &d, t(9));
        let p = cond(&s, PROGRESSING);
        assert_eq!(reason(p), NEW_RS_AVAILABLE);
        assert_eq!(
            p.message.as_deref(),
            Some("ReplicaSet \"web-v2\" has successfully progressed.")
        );
        assert!(complete(&d, &s));
        assert_eq!(progress_check_after(&d, &s, t(9)), None);
    }

    #[test]
    fn no_progress_past_the_deadline_times_out() {
        let mut d = deployment(3, "v2");
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
        let old = rs("web-v1", "v1", 0, 3, 3);
        let new = rs("web-v2", "v2", 10, 1, 0);
        let mut stored = calculate(&[&old, &new], Some(&new), &d, t(0));
        set_condition(
            &mut stored,
            new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, "x".into(), t(0)),
        );
        let d = with_status(d, stored);
        // Not yet: look again just after the deadline.
        let s = rollout(&[&old, &new], Some(&new), &d, t(10));
        assert_eq!(reason(cond(&s, PROGRESSING)), REPLICA_SET_UPDATED);
        assert_eq!(
            progress_check_after(&d, &s, t(10)),
            Some(Duration::from_secs(21))
        );
        // Past it.
        let s = rollout(&[&old, &new], Some(&new), &d, t(31));
        let p = cond(&s, PROGRESSING);
        assert_eq!((p.status.as_str(), reason(p)), ("False", TIMED_OUT));
        assert_eq!(
            p.message.as_deref(),
            Some("ReplicaSet \"web-v2\" has timed out progressing.")
        );
        assert_eq!(p.last_transition_time, Some(Time(t(31))));
        let d = with_status(d, s.clone());
        assert_eq!(progress_check_after(&d, &s, t(40)), None);
        // A timed-out rollout is not marked paused.
        let mut paused = d.clone();
        paused.spec.as_mut().unwrap().paused = Some(true);
        assert!(paused_update(&paused, t(50)).is_none());
    }

    #[test]
    fn pause_and_resume_conditions() {
        let mut d = deployment(3, "v1");
        d.spec.as_mut().unwrap().paused = Some(true);
        let s = paused_update(&d, t(0)).expect("paused condition added");
        let p = cond(&s, PROGRESSING);
        assert_eq!((p.status.as_str(), reason(p)), ("Unknown", PAUSED));
        assert_eq!(p.message.as_deref(), Some("Deployment is paused"));
        let mut d = with_status(d, s);
        assert!(paused_update(&d, t(1)).is_none(), "already marked");

        d.spec.as_mut().unwrap().paused = Some(false);
        let s = paused_update(&d, t(2)).expect("resumed condition");
        let p = cond(&s, PROGRESSING);
        assert_eq!((p.status.as_str(), reason(p)), ("Unknown", RESUMED));
        assert_eq!(p.message.as_deref(), Some("Deployment is resumed"));

        // No deadline, no Progressing bookkeeping.
        let mut d = deployment(3, "v1");
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(i32::MAX);
        d.spec.as_mut().unwrap().paused = Some(true);
        assert!(paused_update(&d, t(0)).is_none());
        let only = rs("web-v1", "v1", 0, 3, 3);
        assert!(get_condition(&rollout(&[&only], Some(&only), &d, t(0)), PROGRESSING).is_none());
    }

    #[test]
    fn set_condition_keeps_transition_time_for_same_status() {
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", NEW_REPLICA_SET, "a".into(), t(0)),
        );
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", NEW_REPLICA_SET, "b".into(), t(5)),
        );
        assert_eq!(
            cond(&s, PROGRESSING).message.as_deref(),
            Some("a"),
            "same status and reason: unchanged"
        );
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", FOUND_NEW_RS, "c".into(), t(7)),
        );
        let p = cond(&s, PROGRESSING);
        assert_eq!(p.last_update_time, Some(Time(t(7))));
        assert_eq!(p.last_transition_time, Some(Time(t(0))));
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "False", TIMED_OUT, "d".into(), t(9)),
        );
        assert_eq!(cond(&s, PROGRESSING).last_transition_time, Some(Time(t(9))));
    }

    #[test]
    fn recreate_availability_needs_all_replicas() {
        // Recreate has no maxUnavailable: Available needs every replica.
        let d = recreate(deployment(3, "v1"));
        let only = rs("web-v1", "v1", 0, 3, 2);
        let s = calculate(&[&only], Some(&only), &d, t(0));
        assert_eq!(cond(&s, AVAILABLE).status, "False");
    }

    #[test]
    fn status_matches_stored_form() {
        let d = deployment(3, "v1");
        let only = rs("web-v1", "v1", 0, 3, 3);
        let s = rollout(&[&only], Some(&only), &d, t(0));
        // Round trip through JSON (as the API stores it) compares equal.
        let stored: DeploymentStatus =
            serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(normalize(stored), s);
        let d = with_status(d, s.clone());
        assert_eq!(
            rollout(&[&only], Some(&only), &d, t(60)),
            s,
            "a resync changes nothing"
        );
    }
}
