//! The pod loop: watches the pods bound to this node and, level-triggered, makes the
//! runtime match them — starts what should run, stops what is deleted (then completes
//! the deletion), stops what the runtime holds but the API no longer knows — and
//! reports each pod's status when it changed, also while a pod terminates.
//!
//! Graceful deletion, as the kubelet does it: the API marks a deleted pod with
//! `deletionTimestamp` (when the grace period ends) and `deletionGracePeriodSeconds`;
//! the agent stops its containers (preStop hooks, SIGTERM, SIGKILL at the deadline)
//! and only then completes the deletion (`gracePeriodSeconds=0`, uid precondition).
//! The deadline is the deletion's, not the agent's: a resync or an agent restart does
//! not start the grace period again, and a later delete with a shorter grace period
//! (the API moves `deletionTimestamp` earlier) shortens the wait. Pods the API no
//! longer knows (force-deleted) get a short grace period, as on Kubernetes.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::Notify;

use super::runtime::{NodeEnv, PodRuntime, PodState};
use super::status;
use super::AgentConfig;
use crate::model::cidr::Cidr;

/// How often every pod is looked at even without a change (probes, timers).
const RESYNC: Duration = Duration::from_secs(1);
/// The grace period of pods stopped because the API no longer knows them (forced
/// deletions): the kubelet's minimum.
const UNKNOWN_POD_GRACE: Duration = Duration::from_secs(2);
/// Deadlines closer than this count as the same (they come from whole seconds).
const DEADLINE_SLACK: Duration = Duration::from_millis(500);

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
    let changed = Arc::new(Notify::new());
    let selector = format!("spec.nodeName={}", config.node_name);
    let reader = crate::client::lenient::notifying_cache(
        api,
        watcher::Config::default().fields(&selector),
        changed.clone(),
    );
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

/// Pods being stopped, with the deadline each stop was given: each stop runs as its
/// own task (a grace period must not hold up the other pods), at most once per pod;
/// a stop only ever gets an earlier deadline.
#[derive(Default, Clone)]
struct Deleting(Arc<std::sync::Mutex<HashMap<String, Instant>>>);

/// What to do about a pod that should stop by some deadline.
#[derive(Debug, PartialEq, Eq)]
enum StopRequest {
    /// Nothing stops it yet: start.
    Start,
    /// It is stopping with a later deadline: bring the deadline forward.
    Shorten,
    /// It is stopping already, by that deadline or earlier.
    Running,
}

impl Deleting {
    /// Records that `uid` should stop by `deadline`; says what that takes.
    fn request(&self, uid: &str, deadline: Instant) -> StopRequest {
        let Ok(mut set) = self.0.lock() else {
            return StopRequest::Running;
        };
        match set.get_mut(uid) {
            None => {
                set.insert(uid.to_string(), deadline);
                StopRequest::Start
            }
            Some(current) if deadline + DEADLINE_SLACK < *current => {
                *current = deadline;
                StopRequest::Shorten
            }
            Some(_) => StopRequest::Running,
        }
    }

    fn is_stopping(&self, uid: &str) -> bool {
        self.0
            .lock()
            .map(|set| set.contains_key(uid))
            .unwrap_or(true)
    }

    /// Stops `uid` by `deadline`: runs `stop` unless a stop for it already runs (then
    /// runs `shorten` if the deadline is earlier than that stop's).
    fn spawn<F, G>(&self, uid: &str, deadline: Instant, stop: F, shorten: G)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
        G: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.request(uid, deadline) {
            StopRequest::Start => {
                let this = self.clone();
                let uid = uid.to_string();
                tokio::spawn(async move {
                    stop.await;
                    if let Ok(mut set) = this.0.lock() {
                        set.remove(&uid);
                    }
                });
            }
            StopRequest::Shorten => {
                tokio::spawn(shorten);
            }
            StopRequest::Running => {}
        }
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
            let (rt, id) = (runtime.clone(), uid.clone());
            let stop = async move {
                let _ = rt.kill_pod(&id, UNKNOWN_POD_GRACE).await;
            };
            let deadline = Instant::now() + UNKNOWN_POD_GRACE;
            deleting.spawn(&uid, deadline, stop, async {});
            pool.release(&uid);
        }
    }
    for pod in desired {
        if pod.metadata.deletion_timestamp.is_some() {
            delete_pod(client, config, runtime, &pod, deleting).await;
            if let Some(uid) = pod.metadata.uid.as_deref() {
                pool.release(uid);
            }
            if let Err(e) = report_status(client, config, runtime.as_ref(), &pod).await {
                tracing::debug!(pod = ?pod.metadata.name, error = %e, "status report failed");
            }
            continue;
        }
        if let Err(e) = sync_pod(client, config, runtime.as_ref(), &pod, pool).await {
            tracing::debug!(pod = ?pod.metadata.name, error = %e, "pod sync failed; retrying");
        }
    }
}

/// How long a deleting pod's containers still get at `now`: until the deletion's
/// deadline (`deletionTimestamp`, which the API sets to when the deletion began plus
/// its grace period), never longer than the grace period itself (a node clock
/// behind the server's), never less than nothing.
pub(crate) fn grace_left(pod: &Pod, now: DateTime<Utc>) -> Duration {
    let grace = grace_period(pod);
    match &pod.metadata.deletion_timestamp {
        Some(deadline) => (deadline.0 - now).to_std().unwrap_or_default().min(grace),
        None => grace,
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
    let (Some(uid), Some(name)) = (pod.metadata.uid.as_deref(), pod.metadata.name.as_deref())
    else {
        return Ok(());
    };
    if finished(pod) {
        return Ok(());
    }
    let ip = pool.ip_for(uid);
    if let Err(e) = runtime.sync_pod(pod, ip).await {
        tracing::warn!(pod = name, error = %e, "runtime failed to sync the pod");
        return Ok(());
    }
    report_status(client, config, runtime, pod).await
}

/// Writes the pod's status from the runtime's view, when it changed.
async fn report_status(
    client: &kube::Client,
    config: &AgentConfig,
    runtime: &dyn PodRuntime,
    pod: &Pod,
) -> Result<(), kube::Error> {
    let (Some(uid), Some(name), Some(ns)) = (
        pod.metadata.uid.as_deref(),
        pod.metadata.name.as_deref(),
        pod.metadata.namespace.as_deref(),
    ) else {
        return Ok(());
    };
    let Some(state) = runtime.pod_state(uid) else {
        return Ok(());
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
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

/// Stops a deleted pod's containers by the deletion's deadline (in its own task),
/// reports the pod's terminal status, then completes the deletion; a deadline brought
/// forward reaches the stop too.
async fn delete_pod(
    client: &kube::Client,
    config: &AgentConfig,
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
    let grace = grace_left(pod, Utc::now());
    let deadline = Instant::now() + grace;
    if !deleting.is_stopping(&uid) && runtime.pods().contains(&uid) {
        // Containers adopted after an agent restart stop under the pod's worker, so
        // preStop hooks run and the grace period holds (the container runtime only
        // stops a deleting pod it takes over).
        if let Err(e) = runtime.sync_pod(pod, None).await {
            tracing::warn!(pod = %name, error = %e, "runtime failed to take over the pod");
        }
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (rt, id) = (runtime.clone(), uid.clone());
    let shorten = async move {
        let _ = rt.kill_pod(&id, grace).await;
    };
    let (rt, id) = (runtime.clone(), uid.clone());
    let (pod, host_ip) = (pod.clone(), config.node_ip.to_string());
    let stop = async move {
        match rt.kill_pod(&id, grace).await {
            Ok(Some(last)) => report_terminal_status(&api, &pod, &last, &host_ip).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "stopping the pod failed");
                return;
            }
        }
        complete_deletion(&api, &name, &id).await;
    };
    deleting.spawn(&uid, deadline, stop, shorten);
}

/// The containers stopped: the pod's last status, with its terminal phase, as kubelet
/// writes it before the object goes.
async fn report_terminal_status(api: &Api<Pod>, pod: &Pod, last: &PodState, host_ip: &str) {
    let Some(name) = pod.metadata.name.as_deref() else {
        return;
    };
    let wanted = status::pod_status(pod, last, host_ip, Utc::now().trunc_subsecs(0));
    if !status::differs(pod.status.as_ref(), &wanted) {
        return;
    }
    let patch = json!({"status": wanted});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "reporting the terminal status failed");
    }
}

/// The containers are gone: deletes the pod object (only this pod: a new pod of the
/// same name must not be deleted).
async fn complete_deletion(api: &Api<Pod>, name: &str, uid: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::debug!(pod = %name, error = %e, "completing the deletion failed"),
    }
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

    fn deleting_pod(deadline: &str, grace: i64) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "p", "uid": "u",
                "deletionTimestamp": deadline,
                "deletionGracePeriodSeconds": grace,
            },
            "spec": {"terminationGracePeriodSeconds": 60, "containers": []},
        }))
        .unwrap()
    }

    fn at(time: &str) -> DateTime<Utc> {
        time.parse().unwrap()
    }

    #[test]
    fn the_grace_period_counts_from_when_the_deletion_began() {
        // Deleted at 12:00:00 with 30 s: the deadline is 12:00:30.
        let pod = deleting_pod("2026-01-01T12:00:30Z", 30);
        let left = |now| grace_left(&pod, at(now)).as_secs();
        assert_eq!(left("2026-01-01T12:00:00Z"), 30);
        assert_eq!(left("2026-01-01T12:00:20Z"), 10);
        assert_eq!(left("2026-01-01T12:00:30Z"), 0);
        assert_eq!(left("2026-01-01T12:05:00Z"), 0);
        // A node clock behind the server's never gets more than the grace period.
        assert_eq!(left("2026-01-01T11:00:00Z"), 30);
        // A shortened deletion (the API moved the deadline to start + 5 s).
        let shortened = deleting_pod("2026-01-01T12:00:05Z", 5);
        assert_eq!(
            grace_left(&shortened, at("2026-01-01T12:00:02Z")).as_secs(),
            3
        );
    }

    #[test]
    fn the_grace_period_falls_back_to_the_pods_then_30_seconds() {
        let mut pod = deleting_pod("2026-01-01T12:00:30Z", 30);
        pod.metadata.deletion_timestamp = None;
        pod.metadata.deletion_grace_period_seconds = None;
        assert_eq!(grace_period(&pod), Duration::from_secs(60));
        assert_eq!(grace_left(&pod, Utc::now()), Duration::from_secs(60));
        pod.spec.as_mut().unwrap().termination_grace_period_seconds = None;
        assert_eq!(grace_period(&pod), Duration::from_secs(30));
        pod.metadata.deletion_grace_period_seconds = Some(-4);
        assert_eq!(grace_period(&pod), Duration::ZERO);
    }

    #[test]
    fn a_stop_starts_once_and_only_ever_gets_an_earlier_deadline() {
        let deleting = Deleting::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        assert!(!deleting.is_stopping("u"));
        assert_eq!(deleting.request("u", later), StopRequest::Start);
        assert!(deleting.is_stopping("u"));
        // The same deadline again (each resync), or a later one: nothing to do.
        assert_eq!(deleting.request("u", later), StopRequest::Running);
        assert_eq!(
            deleting.request("u", later + Duration::from_millis(200)),
            StopRequest::Running
        );
        assert_eq!(
            deleting.request("u", later + Duration::from_secs(60)),
            StopRequest::Running
        );
        // Earlier by less than the slack of whole-second timestamps: the same.
        assert_eq!(
            deleting.request("u", later - Duration::from_millis(200)),
            StopRequest::Running
        );
        assert_eq!(deleting.request("u", now), StopRequest::Shorten);
        assert_eq!(deleting.request("u", later), StopRequest::Running);
        assert_eq!(deleting.request("other", later), StopRequest::Start);
    }

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
