//! batch/v1 validation (`pkg/apis/batch/validation`): Jobs (counts, completion mode,
//! the template's restart policy, the selector and the generated labels, what an
//! update may change) and CronJobs (name length, schedule, time zone, concurrency
//! policy, the job template).
//!
//! Owns the Job and CronJob rules of the parent's rule table; calls
//! `crate::model::cron` and `crate::model::tz` for schedules and time zones.

use serde_json::Value;

use super::*;
use crate::model::{cron, tz};

const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// Upstream's limit on `parallelism` of Indexed Jobs.
const MAX_PARALLELISM_INDEXED: i64 = 100_000;
/// CronJob names leave room for the 11-character `-<minutes>` suffix of their Jobs.
const MAX_CRON_JOB_NAME: usize = 52;

pub(super) fn validate_job(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    validate_job_spec_common(e, spec, "spec");
    validate_job_selector(e, spec, "spec");
    let meta = meta_of(root).unwrap_or(&empty);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if spec.get("manualSelector").and_then(Value::as_bool) != Some(true) {
        let uid = meta.get("uid").and_then(Value::as_str).unwrap_or_default();
        validate_generated_selector(e, spec, name, uid);
    }
    let indexed = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed");
    let completions = spec.get("completions").and_then(Value::as_i64);
    if let (true, Some(n)) = (indexed, completions.filter(|n| *n > 0)) {
        let hostname = format!("{name}-{}", n - 1);
        if validate_dns1123_label(&hostname).is_err() {
            e.invalid(
                "metadata.name",
                Bad::Str(name),
                &format!("will not able to create pod with invalid DNS label: {hostname}"),
            );
        }
    }
}

/// validateJobSpec: what Jobs and job templates share.
fn validate_job_spec_common(e: &mut Errs, spec: &Obj, p: &str) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        validate_non_negative(e, spec, p, key);
    }
    let mode = opt_str_at(e, spec, p, "completionMode");
    match mode {
        None | Some("NonIndexed") => {
            if get(spec, "backoffLimitPerIndex").is_some() {
                e.forbidden(
                    &child(p, "backoffLimitPerIndex"),
                    "requires indexed completion mode",
                );
            }
        }
        Some("Indexed") => {
            if get(spec, "completions").is_none() {
                e.required(&child(p, "completions"), "when completion mode is Indexed");
            }
            if let Some(n) = spec.get("parallelism").and_then(Value::as_i64) {
                if n > MAX_PARALLELISM_INDEXED {
                    e.invalid(
                        &child(p, "parallelism"),
                        Bad::Int(n),
                        &format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                    );
                }
            }
        }
        Some(other) => e.not_supported(
            &child(p, "completionMode"),
            Bad::Str(other),
            &["NonIndexed", "Indexed"],
        ),
    }
    let replacement = opt_str_at(e, spec, p, "podReplacementPolicy");
    if let Some(policy) = replacement.filter(|p| !["Failed", "TerminatingOrFailed"].contains(p)) {
        e.not_supported(
            &child(p, "podReplacementPolicy"),
            Bad::Str(policy),
            &["Failed", "TerminatingOrFailed"],
        );
    }
    let template_path = child(p, "template");
    let empty = Obj::new();
    let template = match get(spec, "template") {
        Some(_) => obj_at(e, spec, p, "template").unwrap_or(&empty),
        None => {
            e.required(&template_path, "");
            return;
        }
    };
    validate_pod_template(e, template, &template_path);
    let restart = template
        .get("spec")
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let restart_path = child(&template_path, "spec.restartPolicy");
    match restart {
        "" | "Always" => e.required(&restart_path, "valid values: \"OnFailure\", \"Never\""),
        "OnFailure" if get(spec, "podFailurePolicy").is_some() => e.invalid(
            &restart_path,
            Bad::Str(restart),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ),
        "OnFailure" | "Never" => {}
        other => e.not_supported(&restart_path, Bad::Str(other), &["OnFailure", "Never"]),
    }
}

/// ValidateJobSpec's selector rules: required, valid, matching the template.
fn validate_job_selector(e: &mut Errs, spec: &Obj, p: &str) {
    let path = child(p, "selector");
    let Some(sel) = get(spec, "selector") else {
        e.required(&path, "");
        return;
    };
    validate_label_selector(e, sel, &path);
    let Ok(parsed) = LabelSelector::from_json(sel) else {
        return;
    };
    let meta = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(Value::as_object);
    let labels = meta.and_then(|m| m.get("labels"));
    if !parsed.matches(labels.and_then(Value::as_object)) {
        e.invalid(
            &child(p, "template.metadata.labels"),
            Bad::Go(go_string_map(labels)),
            "`selector` does not match template `labels`",
        );
    }
}

/// validateGeneratedSelector: the generated labels are there and the selector is
/// exactly the generated one.
fn validate_generated_selector(e: &mut Errs, spec: &Obj, name: &str, uid: &str) {
    let meta_path = "spec.template.metadata";
    let labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"));
    if labels.is_none() {
        e.required(&child(meta_path, "labels"), "");
    }
    if uid.is_empty() {
        e.required("metadata.uid", "");
    }
    for (key, expected) in [
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
        (CONTROLLER_UID_LABEL, uid),
        (JOB_NAME_LABEL, name),
    ] {
        let path = key_path(&child(meta_path, "labels"), key);
        match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
            None => e.required(&path, expected),
            Some(actual) if actual != expected => e.invalid(
                &path,
                Bad::Go(go_string_map(labels)),
                &format!("must be '{expected}'"),
            ),
            Some(_) => {}
        }
    }
    let expected = serde_json::json!({"matchLabels": {CONTROLLER_UID_LABEL: uid}});
    let selector = spec.get("selector");
    if selector.is_some_and(|s| normalized(s) != normalized(&expected)) {
        e.invalid(
            "spec.selector",
            Bad::Go(go_label_selector(selector)),
            "`selector` not auto-generated",
        );
    }
}

pub(super) fn validate_job_update(e: &mut Errs, new: &Obj, old: &Obj) {
    let spec = |o: &Obj| o.get("spec").and_then(Value::as_object).cloned();
    let (Some(new_spec), Some(old_spec)) = (spec(new), spec(old)) else {
        return;
    };
    let immutable = |e: &mut Errs, key: &str| {
        if !same(new_spec.get(key), old_spec.get(key)) {
            let path = child("spec", key);
            let value = new_spec.get(key).unwrap_or(&Value::Null);
            e.invalid(&path, Bad::Json(value), IMMUTABLE_MSG);
        }
    };
    immutable(e, "selector");
    immutable(e, "completionMode");
    immutable(e, "podFailurePolicy");
    immutable(e, "backoffLimitPerIndex");
    // Completions change only with parallelism on Indexed Jobs (elastic Indexed Jobs).
    let indexed = new_spec.get("completionMode").and_then(Value::as_str) == Some("Indexed");
    let elastic = indexed && new_spec.get("completions") == new_spec.get("parallelism");
    if !elastic {
        immutable(e, "completions");
    }
    // The template may change only while the Job is suspended (its pods are gone).
    let suspended = old_spec.get("suspend").and_then(Value::as_bool) == Some(true);
    if !suspended {
        immutable(e, "template");
    }
}

pub(super) fn validate_cron_job(e: &mut Errs, root: &Obj) {
    let empty = Obj::new();
    let meta = meta_of(root).unwrap_or(&empty);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.len() > MAX_CRON_JOB_NAME {
        e.invalid(
            "metadata.name",
            Bad::Str(name),
            &format!("must be no more than {MAX_CRON_JOB_NAME} characters"),
        );
    }
    let spec = obj_at(e, root, "", "spec").unwrap_or(&empty);
    let p = "spec";
    let time_zone = opt_str_at(e, spec, p, "timeZone");
    let schedule = str_at(e, spec, p, "schedule");
    let schedule_path = child(p, "schedule");
    if schedule.is_empty() {
        e.required(&schedule_path, "");
    } else if schedule.contains("TZ") {
        e.invalid(
            &schedule_path,
            Bad::Str(schedule),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        );
    } else if let Err(msg) = cron::parse(schedule) {
        e.invalid(&schedule_path, Bad::Str(schedule), &msg);
    }
    if let Some(zone) = time_zone {
        validate_time_zone(e, zone, &child(p, "timeZone"));
    }
    validate_non_negative(e, spec, p, "startingDeadlineSeconds");
    validate_non_negative(e, spec, p, "successfulJobsHistoryLimit");
    validate_non_negative(e, spec, p, "failedJobsHistoryLimit");
    match opt_str_at(e, spec, p, "concurrencyPolicy") {
        Some("Allow" | "Forbid" | "Replace") => {}
        None | Some("") => e.required(&child(p, "concurrencyPolicy"), ""),
        Some(other) => e.not_supported(
            &child(p, "concurrencyPolicy"),
            Bad::Str(other),
            &["Allow", "Forbid", "Replace"],
        ),
    }
    let template_path = child(p, "jobTemplate");
    let Some(template) = obj_at(e, spec, p, "jobTemplate") else {
        e.required(&template_path, "");
        return;
    };
    let tmeta_path = child(&template_path, "metadata");
    if let Some(tmeta) = obj_at(e, template, &template_path, "metadata") {
        validate_labels(e, tmeta, &tmeta_path, "labels");
        validate_annotations(e, tmeta, &tmeta_path, "annotations");
    }
    let job_spec_path = child(&template_path, "spec");
    let job_spec = obj_at(e, template, &template_path, "spec").unwrap_or(&empty);
    validate_job_spec_common(e, job_spec, &job_spec_path);
    if let Some(sel) = get(job_spec, "selector") {
        e.invalid(
            &child(&job_spec_path, "selector"),
            Bad::Go(go_label_selector(Some(sel))),
            "`selector` will be auto-generated",
        );
    }
    if job_spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        e.not_supported(
            &child(&job_spec_path, "manualSelector"),
            Bad::Go("true".into()),
            &["nil", "false"],
        );
    }
}

fn validate_time_zone(e: &mut Errs, zone: &str, path: &str) {
    if zone.is_empty() {
        e.invalid(
            path,
            Bad::Str(zone),
            "timeZone must be nil or non-empty string",
        );
        return;
    }
    if !tz::valid_name(zone) {
        e.invalid(path, Bad::Str(zone), &format!("unknown time zone {zone}"));
        return;
    }
    if zone.eq_ignore_ascii_case("local") {
        e.invalid(
            path,
            Bad::Str(zone),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        );
        return;
    }
    if let Err(err) = tz::load(zone) {
        e.invalid(path, Bad::Str(zone), &err.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use crate::api::defaults::apply_defaults;
    use serde_json::{json, Value};

    fn job(f: impl FnOnce(&mut Value)) -> Value {
        let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}});
        crate::api::batch::generate_job_selector(&mut job);
        f(&mut job);
        apply_defaults("Job", &mut job);
        job
    }

    fn messages(kind: &str, obj: &Value) -> Vec<String> {
        validate(kind, obj, None)
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    #[test]
    fn a_defaulted_job_is_valid() {
        let j = job(|_| {});
        assert_eq!(messages("Job", &j), Vec::<String>::new());
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["metadata"]["labels"]["job-name"], "pi");
    }

    #[test]
    fn job_rules() {
        let always = job(|j| j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always"));
        assert_eq!(
            messages("Job", &always),
            ["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
        let negative = job(|j| j["spec"]["backoffLimit"] = json!(-1));
        assert_eq!(
            messages("Job", &negative),
            ["spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"]
        );
        let indexed = job(|j| {
            j["spec"]["completionMode"] = json!("Indexed");
            j["spec"]["parallelism"] = json!(2);
        });
        assert_eq!(
            messages("Job", &indexed),
            ["spec.completions: Required value: when completion mode is Indexed"]
        );
        let wrong_uid = job(|j| {
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"] = json!("x")
        });
        let errs = messages("Job", &wrong_uid);
        assert!(
            errs.iter()
                .any(|m| m.contains("`selector` not auto-generated")),
            "{errs:?}"
        );
        let mut manual = job(|j| {
            j["spec"]["manualSelector"] = json!(true);
            j["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        });
        manual["spec"]["template"]["metadata"]["labels"] = json!({"app": "x"});
        assert_eq!(
            messages("Job", &manual),
            ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"]
        );
    }

    #[test]
    fn job_updates_keep_selector_and_template() {
        let old = job(|_| {});
        let mut new = old.clone();
        new["spec"]["parallelism"] = json!(3);
        assert!(validate("Job", &new, Some(&old)).is_empty());
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx");
        let errs = validate("Job", &new, Some(&old));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template");
        let mut suspended = old.clone();
        suspended["spec"]["suspend"] = json!(true);
        let mut changed = suspended.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx");
        assert!(validate("Job", &changed, Some(&suspended)).is_empty());
    }

    fn cron_job(f: impl FnOnce(&mut Value)) -> Value {
        let mut cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        f(&mut cj);
        apply_defaults("CronJob", &mut cj);
        cj
    }

    #[test]
    fn cron_job_rules() {
        let cj = cron_job(|_| {});
        assert_eq!(messages("CronJob", &cj), Vec::<String>::new());
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(cj["spec"]["suspend"], false);
        let bad = cron_job(|c| c["spec"]["schedule"] = json!("61 * * * *"));
        assert_eq!(
            messages("CronJob", &bad),
            ["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]
        );
        let tz = cron_job(|c| c["spec"]["schedule"] = json!("TZ=UTC * * * * *"));
        assert_eq!(
            messages("CronJob", &tz),
            ["spec.schedule: Invalid value: \"TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        let zone = cron_job(|c| c["spec"]["timeZone"] = json!("Mars/Olympus"));
        assert_eq!(
            messages("CronJob", &zone),
            ["spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"]
        );
        let policy = cron_job(|c| c["spec"]["concurrencyPolicy"] = json!("Sometimes"));
        assert_eq!(
            messages("CronJob", &policy),
            ["spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""]
        );
        let selector = cron_job(|c| {
            c["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}})
        });
        let errs = messages("CronJob", &selector);
        assert!(
            errs[0].contains("`selector` will be auto-generated"),
            "{errs:?}"
        );
        let long = cron_job(|c| c["metadata"]["name"] = json!("a".repeat(53)));
        assert!(messages("CronJob", &long)[0].ends_with("must be no more than 52 characters"));
        let always = cron_job(|c| {
            c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always")
        });
        assert_eq!(
            messages("CronJob", &always),
            ["spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
    }
}
