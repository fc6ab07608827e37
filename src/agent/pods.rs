//! The pod loop: watches the pods bound to this node and, level-triggered, makes the
//! runtime match them — starts what should run, stops what is deleted (then completes
//! the deletion), stops what the runtime holds but the API no longer knows — and
//! reports each pod's status when it changed.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::Notify;

use super::runtime::{NodeEnv, PodRuntime};
use super::status;
use super::AgentConfig;
use crate::api::alloc::Cidr;

/// How often every pod is looked at even without a change (probes, timers).
const RESYNC: Duration = Duration::from_secs(1);

/// Pod IPs from the node's pod CIDR, for runtimes that take one from the agent.
#[derive(Default)]
struct IpPool {
    cidr: Option<Cidr>,
    by_pod: HashMap<String, IpAddr>,
}

impl IpPool {
    fn ip_for(&mut self, uid: &str) -> Option<IpAddr> {
        if let Some(ip) = self.by_pod.get(uid) {
            return Some(*ip);
        }
        let cidr = self.cidr?;
        let used: BTreeSet<IpAddr> = self.by_pod.values().copied().collect();
        // .1 is the node's gateway; the last address is broadcast.
        let size = 1u32 << (32 - cidr.prefix);
        let ip = (2..size - 1)
            .map(|n| IpAddr::V4(cidr.nth(n)))
            .find(|ip| !used.contains(ip))?;
        self.by_pod.insert(uid.to_string(), ip);
        Some(ip)
    }

    fn release(&mut self, uid: &str) {
        self.by_pod.remove(uid);
    }
}

/// Runs the pod loop forever.
pub async fn sync_forever(
    client: kube::Client,
    config: Arc<AgentConfig>,
    runtime: Arc<dyn PodRuntime>,
) {
    let api: Api<Pod> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let changed = Arc::new(Notify::new());
    let selector = format!("spec.nodeName={}", config.node_name);
    let watch = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().fields(&selector)),
    )
    .default_backoff()
    .touched_objects();
    let notify = changed.clone();
    tokio::spawn(async move {
        futures::pin_mut!(watch);
        while let Some(event) = watch.next().await {
            if event.is_ok() {
                notify.notify_one();
            }
        }
    });
    let mut pool = IpPool::default();
    let deleting = Deleting::default();
    // Nothing is judged before the first full list: an empty cache would make every
    // pod the runtime holds look deleted.
    if reader.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        if pool.cidr.is_none() {
            let Some(cidr) = pod_cidr_text(&client, &config.node_name).await else {
                // Pods need addresses from the node's pod CIDR: wait for it.
                continue;
            };
            let env = NodeEnv {
                client: client.clone(),
                node_name: config.node_name.clone(),
                pod_cidr: cidr.clone(),
                changed: changed.clone(),
            };
            if let Err(e) = runtime.attach(env).await {
                tracing::warn!(error = %e, "the runtime could not set up the node; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            pool.cidr = cidr.parse().ok();
        }
        sync_once(&client, &config, &runtime, &reader, &mut pool, &deleting).await;
    }
}

/// Pods being stopped: each stop runs as its own task (a grace period must not hold
/// up the other pods), at most once per pod.
#[derive(Default, Clone)]
struct Deleting(Arc<std::sync::Mutex<BTreeSet<String>>>);

impl Deleting {
    /// Runs `stop` for `uid` unless a stop for it is already running.
    fn spawn<F>(&self, uid: &str, stop: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let Ok(mut set) = self.0.lock() else { return };
        if !set.insert(uid.to_string()) {
            return;
        }
        let this = self.clone();
        let uid = uid.to_string();
        tokio::spawn(async move {
            stop.await;
            if let Ok(mut set) = this.0.lock() {
                set.remove(&uid);
            }
        });
    }
}

async fn pod_cidr_text(client: &kube::Client, node: &str) -> Option<String> {
    let node: Node = Api::all(client.clone()).get(node).await.ok()?;
    let cidr = node.spec?.pod_cidr?;
    cidr.parse::<Cidr>().ok().map(|_| cidr)
}

async fn sync_once(
    client: &kube::Client,
    config: &AgentConfig,
    runtime: &Arc<dyn PodRuntime>,
    pods: &Store<Pod>,
    pool: &mut IpPool,
    deleting: &Deleting,
) {
    let desired = pods.state();
    let known: BTreeSet<String> = desired
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    for uid in runtime.pods() {
        if !known.contains(&uid) {
            let rt = runtime.clone();
            let id = uid.clone();
            deleting.spawn(&uid, async move {
                let _ = rt.kill_pod(&id, Duration::ZERO).await;
            });
            pool.release(&uid);
        }
    }
    for pod in desired {
        if pod.metadata.deletion_timestamp.is_some() {
            delete_pod(client, runtime, &pod, deleting);
            if let Some(uid) = pod.metadata.uid.as_deref() {
                pool.release(uid);
            }
            continue;
        }
        if let Err(e) = sync_pod(client, config, runtime.as_ref(), &pod, pool).await {
            tracing::debug!(pod = ?pod.metadata.name, error = %e, "pod sync failed; retrying");
        }
    }
}

/// How long a pod's containers get to stop: the deletion's grace period, else the
/// pod's `terminationGracePeriodSeconds`, else 30 s.
pub(crate) fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}

async fn sync_pod(
    client: &kube::Client,
    config: &AgentConfig,
    runtime: &dyn PodRuntime,
    pod: &Pod,
    pool: &mut IpPool,
) -> Result<(), kube::Error> {
    let (Some(uid), Some(name), Some(ns)) = (
        pod.metadata.uid.as_deref(),
        pod.metadata.name.as_deref(),
        pod.metadata.namespace.as_deref(),
    ) else {
        return Ok(());
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    if finished(pod) {
        return Ok(());
    }
    let ip = pool.ip_for(uid);
    if let Err(e) = runtime.sync_pod(pod, ip).await {
        tracing::warn!(pod = name, error = %e, "runtime failed to sync the pod");
        return Ok(());
    }
    let Some(state) = runtime.pod_state(uid) else {
        return Ok(());
    };
    let wanted = status::pod_status(
        pod,
        &state,
        &config.node_ip.to_string(),
        Utc::now().trunc_subsecs(0),
    );
    if status::differs(pod.status.as_ref(), &wanted) {
        let patch = json!({"status": wanted});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// Stops a deleted pod's containers (in its own task), then completes the deletion.
fn delete_pod(
    client: &kube::Client,
    runtime: &Arc<dyn PodRuntime>,
    pod: &Pod,
    deleting: &Deleting,
) {
    let (Some(uid), Some(name), Some(ns)) = (
        pod.metadata.uid.clone(),
        pod.metadata.name.clone(),
        pod.metadata.namespace.clone(),
    ) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let runtime = runtime.clone();
    let grace = grace_period(pod);
    deleting.spawn(&uid.clone(), async move {
        if let Err(e) = runtime.kill_pod(&uid, grace).await {
            tracing::warn!(pod = %name, error = %e, "stopping the pod failed");
            return;
        }
        // The containers are gone: complete the deletion (only this pod: a new pod
        // of the same name must not be deleted).
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::debug!(pod = %name, error = %e, "completing the deletion failed"),
        }
    });
}

/// Succeeded and Failed pods are done: nothing more runs for them.
fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_come_from_the_node_cidr_and_are_reused_after_release() {
        let mut pool = IpPool {
            cidr: Some("10.42.3.0/24".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(pool.ip_for("a"), Some("10.42.3.2".parse().unwrap()));
        assert_eq!(pool.ip_for("b"), Some("10.42.3.3".parse().unwrap()));
        assert_eq!(pool.ip_for("a"), Some("10.42.3.2".parse().unwrap()));
        pool.release("a");
        assert_eq!(pool.ip_for("c"), Some("10.42.3.2".parse().unwrap()));
        assert_eq!(IpPool::default().ip_for("x"), None);
    }
}
