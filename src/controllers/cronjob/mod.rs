//! The CronJob controller (batch/v1): starts each CronJob's Jobs on its schedule, in
//! its time zone, keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`,
//! and deletes finished Jobs beyond the history limits (`decide` holds the
//! decisions). Each sync lists the CronJob's Jobs from the API; Job events wake the
//! CronJob that owns them, and each sync asks to be woken at the next schedule time.
//!
//! May call: the API (cronjobs, cronjobs/status, jobs, events).

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::events::EventType;
use super::{requeue_after_error, Context, Result};

const NAME: &str = "cronjob";
/// Every CronJob is looked at again at least this often.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let (triggers, woken) = futures::channel::mpsc::unbounded();
    let jobs = crate::client::lenient::watcher(
        Api::<Job>::all(client.clone()),
        watcher::Config::default(),
    )
    .for_each(move |event| {
        if let Ok(event) = event {
            let jobs = match event {
                watcher::Event::Apply(j)
                | watcher::Event::InitApply(j)
                | watcher::Event::Delete(j) => vec![j],
                watcher::Event::Init | watcher::Event::InitDone => vec![],
            };
            for cj in jobs.iter().filter_map(owner_of) {
                let _ = triggers.unbounded_send(cj);
            }
        }
        futures::future::ready(())
    });
    let feed = tokio::spawn(jobs);
    crate::client::lenient::controller(Api::<CronJob>::all(client), watcher::Config::default())
        .reconcile_on(woken)
        .run(
            |cj, ctx| super::spawned(reconcile(cj, ctx)),
            |_, e, _| requeue_after_error(NAME, e),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    feed.abort();
}

fn owner_of(job: &Job) -> Option<ObjectRef<CronJob>> {
    let owner = job.metadata.owner_references.as_ref()?.iter().find(|o| {
        o.controller == Some(true) && o.kind == "CronJob" && o.api_version == "batch/v1"
    })?;
    Some(ObjectRef::new(&owner.name).within(&job.namespace()?))
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action> {
    let ns = cj.namespace().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = cj.uid().unwrap_or_default();
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .collect();
    let now = Utc::now();
    let mut plan = decide::sync(&cj, &jobs, now);
    let cj_ref = cj.object_ref(&());
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for name in &plan.delete {
        match jobs_api.delete(name, &background).await {
            Ok(_) => {
                let msg = format!("Deleted job {name}");
                ctx.recorder
                    .publish(&cj_ref, EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(job) = plan.create.take() {
        let name = job.name_any();
        match jobs_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                // The reference carries the uid the server gave.
                if let Some(r) = plan
                    .active
                    .iter_mut()
                    .find(|r| r.name.as_deref() == Some(&name))
                {
                    r.uid = created.metadata.uid.clone();
                    r.resource_version = created.metadata.resource_version.clone();
                }
                let msg = format!("Created job {name}");
                ctx.recorder
                    .publish(&cj_ref, EventType::Normal, "SuccessfulCreate", &msg)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Someone else started it: this schedule time is done.
                plan.active.retain(|r| r.name.as_deref() != Some(&name));
            }
            Err(e) => {
                let msg = format!("Error creating job: {e}");
                ctx.recorder
                    .publish(&cj_ref, EventType::Warning, "FailedCreate", &msg)
                    .await;
                return Err(e.into());
            }
        }
    }
    let old = cj.status.clone().unwrap_or_default();
    let active = (!plan.active.is_empty()).then(|| plan.active.clone());
    let last_schedule = plan.last_schedule_time.map(Time);
    let last_success = plan.last_successful_time.map(Time);
    if old.active.as_ref().filter(|a| !a.is_empty()) != active.as_ref()
        || old.last_schedule_time != last_schedule
        || old.last_successful_time != last_success
    {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({"status": {"active": active, "lastScheduleTime": last_schedule,
            "lastSuccessfulTime": last_success}});
        api.patch_status(
            &cj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    for (warning, reason, message) in &plan.events {
        let kind = if *warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.recorder.publish(&cj_ref, kind, reason, message).await;
    }
    Ok(Action::requeue(plan.requeue.unwrap_or(RESYNC).min(RESYNC)))
}
