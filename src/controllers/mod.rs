//! Controllers: level-triggered, idempotent reconcile loops over watched state (the
//! kube-runtime pattern: caches fed by watches, a work queue, one object never
//! reconciled concurrently with itself, requeue with back-off on error).
//!
//! Owns: ReplicaSets' pods, Jobs' pods, CronJobs' Jobs, Deployments' ReplicaSets and
//! rollouts, DaemonSets' pods, node lifecycle
//! (leases, taints, pod CIDRs), taint eviction, Endpoints and EndpointSlices, garbage
//! collection and namespace deletion, event expiry, load-balancer ingress (ServiceLB),
//! persistent volumes (binding, local-path provisioning, protection finalizers),
//! aggregated ClusterRoles' rules.
//! Built on `component` (Context, Settings, supervise and the event recorder, shared
//! with the scheduler and agents) and `model`; never `api`, `scheduler` or `agent`.
//! May call: the API only, through a kube-rs client (`crate::client`) — the same
//! validation, resourceVersion checks and status subresources every client gets.
//! Controllers never call each other; they meet in API objects.
//! Watches and typed lists go through `crate::client::lenient`: a stored object that
//! no longer decodes is logged once and skipped, never stalls a watch.

pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod job;
pub mod nodes;
pub mod replicaset;
pub mod rootca;
pub mod serviceaccounts;
pub mod servicelb;
pub mod storage;
pub mod taint_eviction;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use crate::component::{supervise, Context, Settings};
pub use events::Recorder;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Starts every controller, each with its own client named after it (see
/// `client::user_agent`); each restarts after a pause if it ever stops.
pub async fn start_all(
    credentials: &crate::client::Credentials,
    settings: Settings,
) -> Result<(), crate::client::ClientError> {
    type Run = fn(Arc<Context>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
    let controllers: [(&'static str, Run); 15] = [
        ("replicaset", |ctx| Box::pin(replicaset::run(ctx))),
        ("deployment", |ctx| Box::pin(deployment::run(ctx))),
        ("daemonset", |ctx| Box::pin(daemonset::run(ctx))),
        ("endpoints", |ctx| Box::pin(endpoints::run(ctx))),
        ("node-lifecycle", |ctx| Box::pin(nodes::run(ctx))),
        ("garbage-collector", |ctx| Box::pin(gc::run(ctx))),
        ("event-expiry", |ctx| Box::pin(events::expire_forever(ctx))),
        ("taint-eviction", |ctx| Box::pin(taint_eviction::run(ctx))),
        ("service-lb", |ctx| Box::pin(servicelb::run(ctx))),
        ("clusterrole-aggregation", |ctx| {
            Box::pin(clusterrole_aggregation::run(ctx))
        }),
        ("job", |ctx| Box::pin(job::run(ctx))),
        ("cronjob", |ctx| Box::pin(cronjob::run(ctx))),
        ("persistentvolume-binder", |ctx| {
            Box::pin(storage::binder::run(ctx))
        }),
        ("local-path-provisioner", |ctx| {
            Box::pin(storage::provisioner::run(ctx))
        }),
        ("volume-protection", |ctx| {
            Box::pin(storage::protection::run(ctx))
        }),
    ];
    for (name, run) in controllers {
        let client = crate::client::connect(credentials, &crate::client::user_agent(name)).await?;
        let ctx = Arc::new(Context {
            recorder: Recorder::new(client.clone(), "skiff-controller-manager"),
            client,
            settings: settings.clone(),
        });
        supervise(name, ctx, run);
    }
    Ok(())
}

/// Starts the serviceaccounts controller and the root CA publisher (which puts
/// `root_ca_pem` in every namespace's `kube-root-ca.crt`).
pub async fn start_service_account_controllers(
    credentials: &crate::client::Credentials,
    settings: Settings,
    root_ca_pem: &str,
) -> Result<(), crate::client::ClientError> {
    let ca: Arc<str> = Arc::from(root_ca_pem);
    for name in ["serviceaccount", "root-ca-cert-publisher"] {
        let client = crate::client::connect(credentials, &crate::client::user_agent(name)).await?;
        let ctx = Arc::new(Context {
            recorder: Recorder::new(client.clone(), "skiff-controller-manager"),
            client,
            settings: settings.clone(),
        });
        match name {
            "serviceaccount" => supervise(name, ctx, serviceaccounts::run),
            _ => {
                let ca = ca.clone();
                supervise(name, ctx, move |ctx| rootca::run(ctx, ca.clone()))
            }
        }
    }
    Ok(())
}

/// Runs a reconcile on its own task. kube-runtime polls a controller's reconciles
/// from one task; spawned, they use every core.
pub async fn spawned<F>(reconcile: F) -> Result<kube::runtime::controller::Action>
where
    F: Future<Output = Result<kube::runtime::controller::Action>> + Send + 'static,
{
    tokio::spawn(reconcile)
        .await
        .map_err(|e| Error::Invalid(format!("reconcile task failed: {e}")))?
}

/// The error policy every controller shares: log, and retry with a delay.
pub fn requeue_after_error(name: &str, error: &Error) -> kube::runtime::controller::Action {
    tracing::debug!(controller = name, %error, "reconcile failed; retrying");
    kube::runtime::controller::Action::requeue(Duration::from_secs(2))
}

/// Deletes `pod` only if it is still the same object (uid precondition) with the given
/// grace period (`None`: the pod's own), then records `reason`/`message` as a Normal
/// event on it. A pod already gone or replaced by a namesake (404/409) is done.
pub async fn delete_pod_and_record(
    ctx: &Context,
    pod: &k8s_openapi::api::core::v1::Pod,
    grace_period_seconds: Option<u32>,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    use kube::{Resource, ResourceExt};
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let params = kube::api::DeleteParams {
        grace_period_seconds,
        preconditions: pod.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => {
            ctx.recorder
                .publish(
                    &pod.object_ref(&()),
                    events::EventType::Normal,
                    reason,
                    message,
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A cache of every `K`, fed by a lenient watch in its own task (objects that do not
/// decode are logged and skipped).
pub(crate) fn cache<K>(api: kube::Api<K>) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    use futures::StreamExt;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        crate::client::lenient::watcher(api, watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    tokio::spawn(stream);
    reader
}
