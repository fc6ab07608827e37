//! The Job controller's decisions, as pure functions of a Job, its pods and the time:
//! which pods to create (and with which completion index) or delete, the status to
//! report, the events to record and when to look again. No I/O here.
//!
//! Follows upstream's syncJob (Kubernetes 1.32): succeeded and failed pods are counted
//! (never fewer than the status already says: pods deleted later stay counted);
//! `backoffLimit` (failed pods, or container restarts with `OnFailure`) and
//! `activeDeadlineSeconds` fail the Job (`FailureTarget`, then `Failed` once no pod
//! runs); enough successes complete it (`SuccessCriteriaMet`, then `Complete` and
//! `completionTime` once no pod runs); a replacement for a failed pod waits
//! 10 s × 2^(failures since the last success − 1), at most six minutes; `suspend`
//! deletes the running pods; Indexed Jobs keep one pod per pending index.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// The first replacement after a failure waits this long; each further failure doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest wait before a replacement.
pub const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// What one sync decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create: their completion index for Indexed Jobs, else `None`.
    pub create: Vec<Option<i32>>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    pub status: JobStatus,
    /// (warning?, reason, message) events on the Job.
    pub events: Vec<(bool, &'static str, String)>,
    /// Look again after this long (deadline, back-off).
    pub requeue: Option<Duration>,
}

/// A pod as the decisions see it.
struct Seen<'a> {
    pod: &'a Pod,
    phase: &'a str,
    deleting: bool,
    index: Option<i32>,
}

impl Seen<'_> {
    fn active(&self) -> bool {
        !self.deleting && !matches!(self.phase, "Succeeded" | "Failed")
    }
    fn terminating(&self) -> bool {
        self.deleting && !matches!(self.phase, "Succeeded" | "Failed")
    }
    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }
}

pub fn has_condition(status: &JobStatus, kind: &str) -> bool {
    condition(status, kind).is_some_and(|c| c.status == "True")
}

fn condition<'a>(status: &'a JobStatus, kind: &str) -> Option<&'a JobCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == kind)
}

/// Whether the Job has ended (`Complete` or `Failed`).
pub fn is_finished(status: &JobStatus) -> bool {
    has_condition(status, "Complete") || has_condition(status, "Failed")
}

/// When the Job ended: its completion time, else when it got its final condition.
pub fn finish_time(status: &JobStatus) -> Option<DateTime<Utc>> {
    if let Some(t) = &status.completion_time {
        return Some(t.0);
    }
    ["Complete", "Failed"]
        .iter()
        .filter_map(|k| condition(status, k))
        .find(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Sets `kind` to True with reason and message, keeping the transition time when it
/// was already True.
fn set_condition(
    status: &mut JobStatus,
    kind: &str,
    state: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let value = if state { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == kind) {
        if c.status != value {
            c.status = value.into();
            c.last_transition_time = Some(Time(now));
        }
        c.last_probe_time = Some(Time(now));
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        return;
    }
    conditions.push(JobCondition {
        type_: kind.into(),
        status: value.into(),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
        reason: Some(reason.into()),
        message: Some(message.into()),
    });
}

fn pod_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX_ANNOTATION)?
        .parse()
        .ok()
}

/// When a pod ended: its containers' latest finish, else its creation.
pub fn pod_finish_time(pod: &Pod) -> Option<DateTime<Utc>> {
    let status = pod.status.as_ref();
    let finished = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    finished.or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn restarts(pod: &Pod) -> i64 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| i64::from(c.restart_count))
        .sum()
}

/// The delay before the next replacement pod: none without failures since the last
/// success, else 10 s doubling per further failure, capped, counted from the last
/// failure. Returns the time left.
pub fn backoff_remaining(
    failed_finishes: &[DateTime<Utc>],
    last_success: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let failures: Vec<&DateTime<Utc>> = failed_finishes
        .iter()
        .filter(|t| last_success.is_none_or(|s| **t > s))
        .collect();
    let last = **failures.iter().max()?;
    let exponent = (failures.len() - 1).min(16) as u32;
    let delay = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(BACKOFF_MAX);
    let ready_at = last + chrono::Duration::from_std(delay).ok()?;
    (ready_at > now).then(|| (ready_at - now).to_std().unwrap_or_default())
}

/// Formats a set of indexes as upstream's `completedIndexes` ("1,3-5,7").
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// Parses `completedIndexes`, keeping indexes below `completions`.
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            out.extend((a..=b.min(completions - 1)).filter(|i| *i >= 0));
        }
    }
    out
}

/// Decides one sync of an unfinished Job.
pub fn sync(job: &Job, pods: &[Pod], now: DateTime<Utc>) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut plan = Plan::default();
    let suspended = spec.suspend == Some(true);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = i64::from(spec.backoff_limit.unwrap_or(6));
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let replace_terminating = spec.pod_replacement_policy.as_deref() != Some("Failed");

    let seen: Vec<Seen> = pods
        .iter()
        .map(|pod| Seen {
            pod,
            phase: pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending"),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            index: pod_index(pod),
        })
        .collect();
    let mut active: Vec<&Seen> = seen.iter().filter(|p| p.active()).collect();
    let terminating = seen.iter().filter(|p| p.terminating()).count() as i32;
    let succeeded_pods: Vec<&Seen> = seen.iter().filter(|p| p.phase == "Succeeded").collect();
    let failed_pods: Vec<&Seen> = seen.iter().filter(|p| p.phase == "Failed").collect();

    // Counts never go down: pods deleted since were counted when seen.
    let mut failed = i64::from(old.failed.unwrap_or(0)).max(failed_pods.len() as i64);
    let mut completed = BTreeSet::new();
    let succeeded = if indexed {
        let n = completions.unwrap_or(0);
        completed = parse_indexes(old.completed_indexes.as_deref().unwrap_or(""), n);
        completed.extend(
            succeeded_pods
                .iter()
                .filter_map(|p| p.index)
                .filter(|i| (0..n).contains(i)),
        );
        completed.len() as i64
    } else {
        i64::from(old.succeeded.unwrap_or(0)).max(succeeded_pods.len() as i64)
    };

    // Started: now, or again on resume (the deadline restarts).
    let was_suspended = has_condition(&old, "Suspended");
    if !suspended && (status.start_time.is_none() || was_suspended) {
        status.start_time = Some(Time(now));
    }

    let failure_target = condition(&old, "FailureTarget")
        .filter(|c| c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        });
    // With `OnFailure` containers restart in place: their restarts count as failures.
    let restarts_total: i64 = active.iter().map(|p| restarts(p.pod)).sum();
    let past_restart_limit = on_failure
        && if backoff_limit == 0 {
            restarts_total > 0
        } else {
            restarts_total >= backoff_limit
        };
    let deadline = spec
        .active_deadline_seconds
        .zip(status.start_time.as_ref())
        .filter(|_| !suspended)
        .map(|(secs, start)| start.0 + chrono::Duration::seconds(secs));
    let failure = if let Some(target) = failure_target {
        Some(target)
    } else if failed > backoff_limit || past_restart_limit {
        Some((
            "BackoffLimitExceeded".to_string(),
            "Job has reached the specified backoff limit".to_string(),
        ))
    } else if deadline.is_some_and(|d| d <= now) {
        Some((
            "DeadlineExceeded".to_string(),
            "Job was active longer than specified deadline".to_string(),
        ))
    } else {
        None
    };

    let complete = !indexed
        && match completions {
            Some(n) => succeeded >= i64::from(n),
            None => succeeded > 0 && active.is_empty(),
        }
        || indexed && completions.is_some_and(|n| succeeded >= i64::from(n));

    if let Some((reason, message)) = failure {
        if !has_condition(&old, "FailureTarget") {
            plan.events
                .push((true, failure_reason(&reason), message.clone()));
        }
        set_condition(&mut status, "FailureTarget", true, &reason, &message, now);
        // The running pods are deleted and count as failed.
        failed += active.len() as i64;
        plan.delete.extend(active.iter().map(|p| p.name()));
        active.clear();
        if terminating == 0 && plan.delete.is_empty() {
            set_condition(&mut status, "Failed", true, &reason, &message, now);
        } else {
            plan.requeue = Some(Duration::from_secs(1));
        }
    } else if complete {
        let reason = "CompletionsReached";
        let message = "Reached expected number of succeeded pods";
        set_condition(
            &mut status,
            "SuccessCriteriaMet",
            true,
            reason,
            message,
            now,
        );
        plan.delete.extend(active.iter().map(|p| p.name()));
        active.clear();
        if terminating == 0 && plan.delete.is_empty() {
            set_condition(&mut status, "Complete", true, reason, message, now);
            status.completion_time = Some(Time(now));
            plan.events
                .push((false, "Completed", "Job completed".into()));
        } else {
            plan.requeue = Some(Duration::from_secs(1));
        }
    } else {
        manage_pods(
            &mut plan,
            &mut active,
            terminating,
            replace_terminating,
            suspended,
            indexed,
            completions,
            parallelism,
            succeeded,
            &completed,
            &failed_pods,
            &succeeded_pods,
            now,
        );
        if suspended && !was_suspended {
            set_condition(
                &mut status,
                "Suspended",
                true,
                "JobSuspended",
                "Job suspended",
                now,
            );
            plan.events
                .push((false, "Suspended", "Job suspended".into()));
        } else if !suspended && was_suspended {
            set_condition(
                &mut status,
                "Suspended",
                false,
                "JobResumed",
                "Job resumed",
                now,
            );
            plan.events.push((false, "Resumed", "Job resumed".into()));
        }
        if let Some(d) = deadline {
            let left = (d - now).to_std().unwrap_or_default() + Duration::from_millis(100);
            plan.requeue = Some(plan.requeue.map_or(left, |r| r.min(left)));
        }
    }

    let deleted: BTreeSet<&str> = plan.delete.iter().map(String::as_str).collect();
    status.active = Some(
        active
            .iter()
            .filter(|p| !deleted.contains(p.name().as_str()))
            .count() as i32
            + plan.create.len() as i32,
    );
    status.ready = Some(
        active
            .iter()
            .filter(|p| !deleted.contains(p.name().as_str()) && is_ready(p.pod))
            .count() as i32,
    );
    status.terminating = Some(terminating + plan.delete.len() as i32);
    status.succeeded = Some(succeeded as i32);
    status.failed = Some(failed as i32);
    if indexed {
        status.completed_indexes = Some(format_indexes(&completed));
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    // Upstream omits these three when zero (`omitempty`); `ready` and `terminating` stay.
    for count in [
        &mut status.active,
        &mut status.succeeded,
        &mut status.failed,
    ] {
        if *count == Some(0) {
            *count = None;
        }
    }
    plan.status = status;
    plan
}

#[allow(clippy::too_many_arguments)]
fn manage_pods(
    plan: &mut Plan,
    active: &mut Vec<&Seen>,
    terminating: i32,
    replace_terminating: bool,
    suspended: bool,
    indexed: bool,
    completions: Option<i32>,
    parallelism: i32,
    succeeded: i64,
    completed: &BTreeSet<i32>,
    failed_pods: &[&Seen],
    succeeded_pods: &[&Seen],
    now: DateTime<Utc>,
) {
    let want = if suspended {
        0
    } else {
        match completions {
            Some(n) => (i64::from(n) - succeeded).clamp(0, i64::from(parallelism)),
            None if succeeded > 0 => active.len() as i64,
            None => i64::from(parallelism),
        }
    };
    if indexed {
        // One pod per pending index: duplicates and finished or out-of-range ones go.
        let n = completions.unwrap_or(0);
        let mut holders: HashMap<i32, usize> = HashMap::new();
        let mut keep = Vec::new();
        for pod in active.drain(..) {
            let useful = pod
                .index
                .filter(|i| (0..n).contains(i) && !completed.contains(i))
                .is_some_and(|i| {
                    let count = holders.entry(i).or_default();
                    *count += 1;
                    *count == 1
                });
            if useful {
                keep.push(pod);
            } else {
                plan.delete.push(pod.name());
            }
        }
        *active = keep;
    }
    let busy = active.len() as i64
        + if replace_terminating {
            0
        } else {
            i64::from(terminating)
        };
    if (active.len() as i64) > want {
        // Fewest losses first: not yet running, not ready, then the newest.
        let mut victims: Vec<&Seen> = active.clone();
        victims.sort_by_key(|p| {
            (
                p.phase == "Running",
                is_ready(p.pod),
                std::cmp::Reverse(p.pod.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
        });
        let excess = active.len() - want as usize;
        let names: Vec<String> = victims.iter().take(excess).map(|p| p.name()).collect();
        active.retain(|p| !names.contains(&p.name()));
        plan.delete.extend(names);
        return;
    }
    let missing = (want - busy).max(0);
    if missing == 0 {
        return;
    }
    let failed_finishes: Vec<DateTime<Utc>> = failed_pods
        .iter()
        .filter_map(|p| pod_finish_time(p.pod))
        .collect();
    let last_success = succeeded_pods
        .iter()
        .filter_map(|p| pod_finish_time(p.pod))
        .max();
    if let Some(wait) = backoff_remaining(&failed_finishes, last_success, now) {
        plan.requeue = Some(wait + Duration::from_millis(100));
        return;
    }
    if indexed {
        let n = completions.unwrap_or(0);
        let held: BTreeSet<i32> = active.iter().filter_map(|p| p.index).collect();
        let pending = (0..n).filter(|i| !completed.contains(i) && !held.contains(i));
        plan.create.extend(pending.take(missing as usize).map(Some));
    } else {
        plan.create.extend((0..missing).map(|_| None));
    }
}

/// The event reason for a failure reason (a fixed set).
fn failure_reason(reason: &str) -> &'static str {
    match reason {
        "BackoffLimitExceeded" => "BackoffLimitExceeded",
        "DeadlineExceeded" => "DeadlineExceeded",
        _ => "JobFailed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
        let mut full =
            json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]});
        if let Some(policy) = spec.get("restartPolicy") {
            full["restartPolicy"] = policy.clone();
        }
        let mut job_spec = json!({"completions": 1, "parallelism": 1, "backoffLimit": 6,
            "completionMode": "NonIndexed", "suspend": false, "template": {"spec": full}});
        for (k, v) in spec.as_object().unwrap() {
            if k != "restartPolicy" {
                job_spec[k] = v.clone();
            }
        }
        serde_json::from_value(
            json!({"metadata": {"name": "pi", "namespace": "d", "uid": "u"},
            "spec": job_spec, "status": status}),
        )
        .unwrap()
    }

    fn pod(name: &str, phase: &str, finished: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": phase, "containerStatuses": [{"name": "c", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "finishedAt": finished}}}]}}))
        .unwrap()
    }

    fn running(name: &str) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running"}}),
        )
        .unwrap()
    }

    fn indexed_pod(name: &str, phase: &str, index: i32) -> Pod {
        let mut p = if phase == "Running" {
            running(name)
        } else {
            pod(name, phase, "2026-01-01T00:00:05Z")
        };
        p.metadata.annotations =
            Some([(COMPLETION_INDEX_ANNOTATION.to_string(), index.to_string())].into());
        p
    }

    const NOW: &str = "2026-01-01T00:01:00Z";

    #[test]
    fn a_new_job_starts_one_pod() {
        let plan = sync(&job(json!({}), json!({})), &[], t(NOW));
        assert_eq!(plan.create, vec![None]);
        assert_eq!(plan.status.active, Some(1));
        assert_eq!(plan.status.start_time, Some(Time(t(NOW))));
    }

    #[test]
    fn success_completes_the_job() {
        let plan = sync(
            &job(json!({}), json!({"startTime": "2026-01-01T00:00:00Z"})),
            &[pod("a", "Succeeded", "2026-01-01T00:00:10Z")],
            t(NOW),
        );
        assert!(plan.create.is_empty());
        assert!(has_condition(&plan.status, "SuccessCriteriaMet"));
        assert!(has_condition(&plan.status, "Complete"));
        assert_eq!(plan.status.succeeded, Some(1));
        assert_eq!(plan.status.completion_time, Some(Time(t(NOW))));
        assert!(is_finished(&plan.status));
    }

    #[test]
    fn failures_back_off_then_exceed_the_limit() {
        let j = job(
            json!({"backoffLimit": 1}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        // One failure 5 s ago: the replacement waits for the rest of 10 s.
        let plan = sync(&j, &[pod("a", "Failed", "2026-01-01T00:00:55Z")], t(NOW));
        assert!(plan.create.is_empty());
        assert_eq!(plan.requeue, Some(Duration::from_millis(5100)));
        assert_eq!(plan.status.failed, Some(1));
        assert_eq!(plan.status.active, None);
        assert_eq!(plan.status.ready, Some(0));
        // Once it has passed, one replacement.
        let plan = sync(&j, &[pod("a", "Failed", "2026-01-01T00:00:40Z")], t(NOW));
        assert_eq!(plan.create, vec![None]);
        // Two failures with backoffLimit 1: Failed, no third pod.
        let pods = [
            pod("a", "Failed", "2026-01-01T00:00:20Z"),
            pod("b", "Failed", "2026-01-01T00:00:50Z"),
        ];
        let plan = sync(&j, &pods, t(NOW));
        assert!(plan.create.is_empty());
        assert!(has_condition(&plan.status, "FailureTarget"));
        assert!(has_condition(&plan.status, "Failed"));
        let failed = condition(&plan.status, "Failed").unwrap();
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(plan.status.failed, Some(2));
        assert!(plan.status.completion_time.is_none());
    }

    #[test]
    fn back_off_doubles_and_is_capped() {
        let now = t(NOW);
        let at = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(backoff_remaining(&[], None, now), None);
        assert_eq!(
            backoff_remaining(&[at(4)], None, now),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            backoff_remaining(&[at(100), at(4)], None, now),
            Some(Duration::from_secs(16))
        );
        assert_eq!(
            backoff_remaining(&[at(100), at(90), at(4)], None, now),
            Some(Duration::from_secs(36))
        );
        let many: Vec<_> = (0..12).map(|i| at(1000 + i)).chain([at(0)]).collect();
        assert_eq!(backoff_remaining(&many, None, now), Some(BACKOFF_MAX));
        // Failures before the last success do not count.
        assert_eq!(
            backoff_remaining(&[at(100), at(4)], Some(at(50)), now),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn the_deadline_fails_a_running_job_and_deletes_its_pods() {
        let j = job(
            json!({"activeDeadlineSeconds": 30}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let plan = sync(&j, &[running("a")], t(NOW));
        assert_eq!(plan.delete, vec!["a".to_string()]);
        let target = condition(&plan.status, "FailureTarget").unwrap();
        assert_eq!(target.reason.as_deref(), Some("DeadlineExceeded"));
        // Failed only once no pod runs.
        assert!(!has_condition(&plan.status, "Failed"));
        assert_eq!(plan.status.failed, Some(1));
        let before = job(
            json!({"activeDeadlineSeconds": 90}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let plan = sync(&before, &[running("a")], t(NOW));
        assert!(plan.delete.is_empty());
        assert_eq!(plan.requeue, Some(Duration::from_millis(30_100)));
    }

    #[test]
    fn parallelism_and_completions_bound_the_pods() {
        let j = job(
            json!({"completions": 5, "parallelism": 2}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let plan = sync(&j, &[running("a")], t(NOW));
        assert_eq!(plan.create, vec![None]);
        let pods: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("s{i}"), "Succeeded", "2026-01-01T00:00:30Z"))
            .chain([running("a"), running("b")])
            .collect();
        let plan = sync(&j, &pods, t(NOW));
        assert_eq!(plan.delete.len(), 1, "only one completion left");
        // Work queue: once one succeeded, no new pods; done when none runs.
        let queue = job(
            json!({"completions": null, "parallelism": 3}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let plan = sync(
            &queue,
            &[pod("s", "Succeeded", "2026-01-01T00:00:30Z"), running("a")],
            t(NOW),
        );
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        let plan = sync(
            &queue,
            &[pod("s", "Succeeded", "2026-01-01T00:00:30Z")],
            t(NOW),
        );
        assert!(has_condition(&plan.status, "Complete"));
    }

    #[test]
    fn indexed_jobs_run_one_pod_per_pending_index() {
        let j = job(
            json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let plan = sync(&j, &[], t(NOW));
        assert_eq!(plan.create, vec![Some(0), Some(1)]);
        let pods = [
            indexed_pod("a", "Succeeded", 0),
            indexed_pod("b", "Running", 1),
            indexed_pod("c", "Running", 1),
        ];
        let plan = sync(&j, &pods, t(NOW));
        assert_eq!(plan.delete, vec!["c".to_string()]);
        assert_eq!(plan.create, vec![Some(2)]);
        assert_eq!(plan.status.completed_indexes.as_deref(), Some("0"));
        let done: Vec<Pod> = (0..4)
            .map(|i| indexed_pod(&format!("p{i}"), "Succeeded", i))
            .collect();
        let plan = sync(&j, &done, t(NOW));
        assert!(has_condition(&plan.status, "Complete"));
        assert_eq!(plan.status.completed_indexes.as_deref(), Some("0-3"));
        assert_eq!(format_indexes(&[1, 3, 4, 5, 7].into()), "1,3-5,7");
        assert_eq!(parse_indexes("1,3-5,7", 6), [1, 3, 4, 5].into());
    }

    #[test]
    fn suspend_deletes_pods_and_resume_restarts_the_clock() {
        let j = job(
            json!({"suspend": true}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let plan = sync(&j, &[running("a")], t(NOW));
        assert_eq!(plan.delete, vec!["a".to_string()]);
        assert!(has_condition(&plan.status, "Suspended"));
        let resumed = job(json!({}), serde_json::to_value(&plan.status).unwrap());
        let later = t("2026-01-01T00:05:00Z");
        let plan = sync(&resumed, &[], later);
        assert!(!has_condition(&plan.status, "Suspended"));
        assert_eq!(plan.status.start_time, Some(Time(later)));
        assert_eq!(plan.create, vec![None]);
    }

    #[test]
    fn on_failure_restarts_count_against_the_limit() {
        let j = job(
            json!({"backoffLimit": 2, "restartPolicy": "OnFailure"}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let mut p = running("a");
        p.status.as_mut().unwrap().container_statuses = Some(vec![serde_json::from_value(json!(
            {"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 2}))
        .unwrap()]);
        let plan = sync(&j, &[p], t(NOW));
        assert_eq!(
            condition(&plan.status, "FailureTarget")
                .unwrap()
                .reason
                .as_deref(),
            Some("BackoffLimitExceeded")
        );
        assert_eq!(plan.delete, vec!["a".to_string()]);
    }
}
