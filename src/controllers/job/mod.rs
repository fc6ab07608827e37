//! The Job controller (batch/v1): runs each Job's pods to completion — creates them
//! from the template (`<job>-<5 chars>`, or `<job>-<index>-<5 chars>` for Indexed
//! Jobs, with the completion index annotation, label, `JOB_COMPLETION_INDEX` and the
//! hostname `<job>-<index>`), deletes extra, suspended or no longer needed ones, and
//! reports status and conditions (`decide` holds the decisions). Finished Jobs with
//! `ttlSecondsAfterFinished` are deleted when it runs out (foreground, as upstream's
//! TTL-after-finished controller).
//!
//! Each sync lists the Job's pods from the API (a consistent read), so a pod just
//! created is never created twice. Pod events wake the Job that owns them.
//!
//! May call: the API (jobs, jobs/status, pods, events).

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::events::EventType;
use super::{requeue_after_error, Context, Result};
use crate::model::selector::LabelSelector;
use decide::COMPLETION_INDEX_ANNOTATION;

const NAME: &str = "job";
/// Every Job is looked at again this often even without a change.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let (triggers, woken) = futures::channel::mpsc::unbounded();
    // Pod events wake the Job that controls the pod; no pod cache is kept.
    let pods = crate::client::lenient::watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
    )
    .for_each(move |event| {
        if let Ok(event) = event {
            let pods = match event {
                watcher::Event::Apply(p)
                | watcher::Event::InitApply(p)
                | watcher::Event::Delete(p) => vec![p],
                watcher::Event::Init | watcher::Event::InitDone => vec![],
            };
            for job in pods.iter().filter_map(owner_of) {
                let _ = triggers.unbounded_send(job);
            }
        }
        futures::future::ready(())
    });
    let feed = tokio::spawn(pods);
    crate::client::lenient::controller(Api::<Job>::all(client), watcher::Config::default())
        .reconcile_on(woken)
        .run(
            |job, ctx| super::spawned(reconcile(job, ctx)),
            |_, e, _| requeue_after_error(NAME, e),
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
    feed.abort();
}

fn owner_of(pod: &Pod) -> Option<ObjectRef<Job>> {
    let owner =
        pod.metadata.owner_references.as_ref()?.iter().find(|o| {
            o.controller == Some(true) && o.kind == "Job" && o.api_version == "batch/v1"
        })?;
    Some(ObjectRef::new(&owner.name).within(&pod.namespace()?))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let status = job.status.clone().unwrap_or_default();
    if decide::is_finished(&status) {
        return expire(&job, &status, &ctx).await;
    }
    let ns = job.namespace().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = owned_pods(&job, &pods_api).await?;
    let now = Utc::now();
    let plan = decide::sync(&job, &pods, now);
    let job_ref = job.object_ref(&());
    for name in &plan.delete {
        match pods_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.recorder
                    .publish(
                        &job_ref,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for index in &plan.create {
        let pod = new_pod(&job, *index);
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let msg = format!("Created pod: {}", created.name_any());
                ctx.recorder
                    .publish(&job_ref, EventType::Normal, "SuccessfulCreate", &msg)
                    .await;
            }
            Err(e) => {
                let msg = format!("Error creating: {e}");
                ctx.recorder
                    .publish(&job_ref, EventType::Warning, "FailedCreate", &msg)
                    .await;
                return Err(e.into());
            }
        }
    }
    if job.status.as_ref() != Some(&plan.status) {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let mut status = serde_json::to_value(&plan.status).unwrap_or_default();
        // Counts gone to zero are removed (merge patch: null).
        for key in ["active", "succeeded", "failed"] {
            if status.get(key).is_none() {
                status[key] = serde_json::Value::Null;
            }
        }
        let patch = json!({ "status": status });
        api.patch_status(
            &job.name_any(),
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
        ctx.recorder.publish(&job_ref, kind, reason, message).await;
    }
    Ok(Action::requeue(plan.requeue.unwrap_or(RESYNC)))
}

/// A finished Job with `ttlSecondsAfterFinished`: deleted (foreground, only this very
/// Job) once the time is up, else looked at again then.
async fn expire(
    job: &Job,
    status: &k8s_openapi::api::batch::v1::JobStatus,
    ctx: &Context,
) -> Result<Action> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let Some(finished) = decide::finish_time(status) else {
        return Ok(Action::await_change());
    };
    let expires = finished + chrono::Duration::seconds(ttl.into());
    let now = Utc::now();
    if expires > now {
        let wait = (expires - now).to_std().unwrap_or_default() + Duration::from_millis(100);
        return Ok(Action::requeue(wait));
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: job.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// The pods the Job controls that its selector still matches.
async fn owned_pods(job: &Job, api: &Api<Pod>) -> Result<Vec<Pod>> {
    let spec = job.spec.as_ref();
    let selector_json = spec
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(json!({}));
    let selector = LabelSelector::from_json(&selector_json).map_err(|e| {
        super::Error::Invalid(format!("job {} has a bad selector: {e}", job.name_any()))
    })?;
    // The server narrows by matchLabels; the whole selector is checked here.
    let match_labels: Vec<String> = spec
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.match_labels.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut params = ListParams::default();
    if !match_labels.is_empty() {
        params = params.labels(&match_labels.join(","));
    }
    let uid = job.uid().unwrap_or_default();
    let pods = api.list(&params).await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref().map(|l| {
                l.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect::<serde_json::Map<_, _>>()
            });
            let controlled = p
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid);
            controlled && !selector.is_empty() && selector.matches(labels.as_ref())
        })
        .collect())
}

fn owner_reference(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.name_any(),
        uid: job.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod from the Job's template; Indexed Jobs' pods carry their index.
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels;
    let mut annotations = meta.annotations;
    let mut spec = template.spec;
    let mut generate_name = format!("{}-", job.name_any());
    if let Some(i) = index {
        let value = i.to_string();
        generate_name = format!("{}-{i}-", job.name_any());
        annotations
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX_ANNOTATION.into(), value.clone());
        labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX_ANNOTATION.into(), value);
        if let Some(spec) = spec.as_mut() {
            if spec.hostname.is_none() {
                spec.hostname = Some(format!("{}-{i}", job.name_any()));
            }
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: format!(
                            "metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
                        ),
                    }),
                    ..EnvVarSource::default()
                }),
            };
            let containers = spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten());
            for c in containers {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == env.name) {
                    vars.push(env.clone());
                }
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels,
            annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner_reference(job)]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}
