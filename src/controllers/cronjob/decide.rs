//! The CronJob controller's decisions, as pure functions of a CronJob, the Jobs it
//! controls and the time (upstream's syncCronJob and cleanupFinishedJobs, 1.32): the
//! active list kept true, the most recent missed schedule time started unless too late
//! (`startingDeadlineSeconds`), suspended or held back by `concurrencyPolicy`
//! (Forbid skips, Replace deletes the running Jobs first), Jobs named
//! `<cronjob>-<scheduled Unix minutes>`, and finished Jobs beyond the history limits
//! deleted, oldest start first. No I/O here.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Offset, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::model::cron::{self, Schedule};
use crate::model::tz::{self, Zone};

pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this get a warning (upstream's limit).
const MISSED_WARNING: usize = 100;

#[derive(Debug, Default)]
pub struct Plan {
    pub active: Vec<ObjectReference>,
    pub last_schedule_time: Option<DateTime<Utc>>,
    pub last_successful_time: Option<DateTime<Utc>>,
    /// The Job to create.
    pub create: Option<Job>,
    /// Names of Jobs to delete (Replace, history limits), each with its event message.
    pub delete: Vec<String>,
    /// (warning?, reason, message) events on the CronJob.
    pub events: Vec<(bool, &'static str, String)>,
    /// Look again after this long (the next schedule time).
    pub requeue: Option<Duration>,
}

fn job_condition(status: Option<&JobStatus>) -> Option<&'static str> {
    let conditions = status?.conditions.as_ref()?;
    ["Complete", "Failed"].into_iter().find(|kind| {
        conditions
            .iter()
            .any(|c| c.type_ == *kind && c.status == "True")
    })
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The time zone of a CronJob (UTC when unset), or the event that says why not.
pub fn zone_of(cj: &CronJob) -> Result<Zone, String> {
    let name = cj.spec.as_ref().and_then(|s| s.time_zone.clone());
    match name {
        None => Ok(Zone::utc()),
        Some(name) => tz::load(&name).map_err(|e| format!("invalid timeZone: {name:?}: {e}")),
    }
}

/// `<cronjob>-<scheduled time in Unix minutes>`.
pub fn job_name(cj_name: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cj_name}-{}", scheduled.timestamp().div_euclid(60))
}

/// Go's RFC 3339 of `t` in `zone` (`Z` for UTC).
fn rfc3339_in(t: DateTime<Utc>, zone: &Zone) -> String {
    if zone.name == "UTC" {
        return t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    }
    let offset = FixedOffset::east_opt(zone.offset_at(t.timestamp())).unwrap_or_else(|| Utc.fix());
    t.with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The Job a CronJob starts for `scheduled`.
pub fn job_from_template(cj: &CronJob, scheduled: DateTime<Utc>, zone: &Zone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        rfc3339_in(scheduled, zone),
    );
    let name = cj.metadata.name.clone().unwrap_or_default();
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name,
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

fn format_go_rfc1123z(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// Decides one sync of a CronJob. `jobs` are the Jobs it controls.
pub fn sync(cj: &CronJob, jobs: &[Job], now: DateTime<Utc>) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let mut plan = Plan {
        active: status.active.clone().unwrap_or_default(),
        last_schedule_time: status.last_schedule_time.as_ref().map(|t| t.0),
        last_successful_time: status.last_successful_time.as_ref().map(|t| t.0),
        ..Plan::default()
    };

    // The active list follows the Jobs: finished ones leave, vanished ones too.
    for job in jobs {
        let uid = job.metadata.uid.as_deref();
        let listed = plan.active.iter().any(|r| r.uid.as_deref() == uid);
        let Some(condition) = job_condition(job.status.as_ref()) else {
            continue;
        };
        if listed {
            plan.active.retain(|r| r.uid.as_deref() != uid);
            let name = job.metadata.name.clone().unwrap_or_default();
            plan.events.push((
                false,
                "SawCompletedJob",
                format!("Saw completed job: {name}, condition: {condition}"),
            ));
        }
        if condition == "Complete" {
            let done = job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0);
            if done.is_some_and(|d| plan.last_successful_time.is_none_or(|l| d > l)) {
                plan.last_successful_time = done;
            }
        }
    }
    let missing: Vec<String> = plan
        .active
        .iter()
        .filter(|r| !jobs.iter().any(|j| j.metadata.uid == r.uid))
        .map(|r| r.name.clone().unwrap_or_default())
        .collect();
    for name in &missing {
        plan.events.push((
            false,
            "MissingJob",
            format!("Active job went missing: {name}"),
        ));
    }
    plan.active
        .retain(|r| !missing.contains(&r.name.clone().unwrap_or_default()));

    cleanup_history(&mut plan, &spec, jobs);

    if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        return plan;
    }
    let zone = match zone_of(cj) {
        Ok(zone) => zone,
        Err(message) => {
            plan.events.push((true, "UnknownTimeZone", message));
            return plan;
        }
    };
    let schedule: Schedule = match cron::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            plan.events.push((
                true,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return plan;
        }
    };
    plan.requeue = schedule
        .next_after(now, &zone)
        .and_then(|next| (next - now).to_std().ok())
        .map(|d| d + Duration::from_millis(100));

    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = plan.last_schedule_time.unwrap_or(created);
    let deadline = spec.starting_deadline_seconds;
    if let Some(secs) = deadline {
        let window_start = now - chrono::Duration::seconds(secs);
        if window_start > earliest {
            earliest = window_start;
        }
    }
    let (scheduled, missed) = schedule.most_recent(earliest, now, &zone, MISSED_WARNING + 1);
    if missed > MISSED_WARNING {
        plan.events.push((true, "TooManyMissedTimes", format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew")));
    }
    let Some(scheduled) = scheduled else {
        return plan;
    };
    if deadline.is_some_and(|secs| scheduled + chrono::Duration::seconds(secs) < now) {
        plan.events.push((
            true,
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                format_go_rfc1123z(scheduled)
            ),
        ));
        return plan;
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or_default(), scheduled);
    if plan
        .active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
    {
        return plan;
    }
    if let Some(job) = jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
    {
        // Started before (its status write may have been lost): this time is done,
        // and the Job is active while it runs.
        if job_condition(job.status.as_ref()).is_none() {
            plan.active.push(job_ref(job));
        }
        plan.last_schedule_time = Some(scheduled);
        return plan;
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !plan.active.is_empty() => {
            plan.events.push((
                false,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return plan;
        }
        Some("Replace") => {
            for r in plan.active.drain(..) {
                plan.delete.push(r.name.unwrap_or_default());
            }
        }
        _ => {}
    }
    let job = job_from_template(cj, scheduled, &zone);
    plan.active.push(job_ref(&job));
    plan.last_schedule_time = Some(scheduled);
    plan.create = Some(job);
    plan
}

/// Deletes the oldest finished Jobs beyond `successfulJobsHistoryLimit` and
/// `failedJobsHistoryLimit`.
fn cleanup_history(plan: &mut Plan, spec: &k8s_openapi::api::batch::v1::CronJobSpec, jobs: &[Job]) {
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Job> = jobs
            .iter()
            .filter(|j| job_condition(j.status.as_ref()) == Some(kind))
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            continue;
        }
        // Oldest start first; Jobs never started last; then by name.
        finished.sort_by_key(|j| {
            let start = j
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            (start.is_none(), start, j.metadata.name.clone())
        });
        for job in finished.into_iter().take(excess) {
            plan.delete
                .push(job.metadata.name.clone().unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron_job(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
        let mut full = json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow", "suspend": false,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"app": "x"}}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        serde_json::from_value(
            json!({"metadata": {"name": "tick", "namespace": "d", "uid": "cj",
            "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": full, "status": status}),
        )
        .unwrap()
    }

    fn job(name: &str, uid: &str, condition: Option<&str>, start: &str) -> Job {
        let conditions: Vec<_> = condition
            .map(|c| json!({"type": c, "status": "True"}))
            .into_iter()
            .collect();
        serde_json::from_value(json!({"metadata": {"name": name, "uid": uid},
            "status": {"conditions": conditions, "startTime": start, "completionTime": if condition == Some("Complete") { json!(start) } else { json!(null) }}}))
        .unwrap()
    }

    #[test]
    fn the_most_recent_missed_time_starts_a_named_job() {
        let cj = cron_job(json!({"timeZone": null}), json!({}));
        let plan = sync(&cj, &[], t("2026-01-01T00:12:30Z"));
        let started = plan.create.unwrap();
        let scheduled = t("2026-01-01T00:10:00Z");
        assert_eq!(
            started.metadata.name.as_deref(),
            Some(format!("tick-{}", scheduled.timestamp() / 60).as_str())
        );
        assert_eq!(
            started.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2026-01-01T00:10:00Z"
        );
        assert_eq!(started.metadata.labels.unwrap()["app"], "x");
        let owner = &started.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "cj", Some(true))
        );
        assert_eq!(plan.last_schedule_time, Some(scheduled));
        assert_eq!(plan.active.len(), 1);
        assert_eq!(plan.requeue, Some(Duration::from_millis(150_100)));
        // Created before, but the status never said so: active again, not created twice.
        let created = job(
            &format!("tick-{}", scheduled.timestamp() / 60),
            "j",
            None,
            "2026-01-01T00:10:01Z",
        );
        let plan = sync(&cj, &[created], t("2026-01-01T00:12:30Z"));
        assert!(plan.create.is_none());
        assert_eq!(plan.active.len(), 1);
        assert_eq!(plan.last_schedule_time, Some(scheduled));
        // Nothing due yet.
        let plan = sync(&cj, &[], t("2026-01-01T00:04:59Z"));
        assert!(plan.create.is_none());
    }

    #[test]
    fn deadlines_suspend_and_concurrency_policies() {
        let now = t("2026-01-01T00:12:30Z");
        let late = cron_job(json!({"startingDeadlineSeconds": 60}), json!({}));
        let plan = sync(&late, &[], now);
        assert!(plan.create.is_none());
        assert!(plan.events.is_empty(), "{:?}", plan.events);
        let plan = sync(&late, &[], t("2026-01-01T00:10:50Z"));
        assert!(plan.create.is_some());
        let suspended = cron_job(json!({"suspend": true}), json!({}));
        assert!(sync(&suspended, &[], now).create.is_none());
        let running = job("tick-1", "j1", None, "2026-01-01T00:05:00Z");
        let active = json!({"active": [{"kind": "Job", "name": "tick-1", "uid": "j1"}],
            "lastScheduleTime": "2026-01-01T00:05:00Z"});
        let forbid = cron_job(json!({"concurrencyPolicy": "Forbid"}), active.clone());
        let plan = sync(&forbid, std::slice::from_ref(&running), now);
        assert!(plan.create.is_none());
        assert_eq!(plan.events[0].1, "JobAlreadyActive");
        let replace = cron_job(json!({"concurrencyPolicy": "Replace"}), active.clone());
        let plan = sync(&replace, std::slice::from_ref(&running), now);
        assert_eq!(plan.delete, vec!["tick-1".to_string()]);
        assert!(plan.create.is_some());
        assert_eq!(plan.active.len(), 1);
        let allow = cron_job(json!({}), active);
        let plan = sync(&allow, &[running], now);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.active.len(), 2);
    }

    #[test]
    fn finished_jobs_leave_the_active_list_and_old_ones_go() {
        let now = t("2026-01-01T00:03:00Z");
        let cj = cron_job(
            json!({"successfulJobsHistoryLimit": 1}),
            json!({"active": [{"name": "a", "uid": "a"}, {"name": "gone", "uid": "gone"}],
                   "lastScheduleTime": "2026-01-01T00:00:00Z"}),
        );
        let jobs = [
            job("a", "a", Some("Complete"), "2026-01-01T00:02:00Z"),
            job("b", "b", Some("Complete"), "2026-01-01T00:01:00Z"),
            job("c", "c", Some("Failed"), "2026-01-01T00:01:30Z"),
        ];
        let plan = sync(&cj, &jobs, now);
        assert!(plan.active.is_empty());
        assert_eq!(plan.last_successful_time, Some(t("2026-01-01T00:02:00Z")));
        assert_eq!(plan.delete, vec!["b".to_string()]);
        let reasons: Vec<&str> = plan.events.iter().map(|e| e.1).collect();
        assert_eq!(reasons, ["SawCompletedJob", "MissingJob"]);
    }

    #[test]
    fn time_zones_and_bad_schedules() {
        let bad = cron_job(json!({"schedule": "nope"}), json!({}));
        let plan = sync(&bad, &[], t("2026-01-01T00:12:30Z"));
        assert_eq!(plan.events[0].1, "UnparseableSchedule");
        let unknown = cron_job(json!({"timeZone": "Mars/Olympus"}), json!({}));
        let plan = sync(&unknown, &[], t("2026-01-01T00:12:30Z"));
        assert_eq!(plan.events[0].1, "UnknownTimeZone");
        if tz::load("Europe/Berlin").is_ok() {
            let berlin = cron_job(
                json!({"schedule": "0 9 * * *", "timeZone": "Europe/Berlin"}),
                json!({}),
            );
            let plan = sync(&berlin, &[], t("2026-01-01T08:00:30Z"));
            let job = plan.create.unwrap();
            assert_eq!(
                job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
                "2026-01-01T09:00:00+01:00"
            );
        }
    }
}
