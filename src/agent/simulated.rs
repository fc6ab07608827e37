//! The simulated runtime behind `skiff agent --simulate`: a test and scale tool, like
//! Kubernetes' kubemark "hollow nodes". It runs the real agent loop but only pretends
//! to run containers: they become Running (and Ready) after a configurable delay.
//!
//! A pod can ask for misbehaviour through annotations, for tests:
//! - `sim.skiff.dev/unready: "true"` — containers run but never become ready;
//! - `sim.skiff.dev/exit-code: "N"` — containers exit with code N once started
//!   (then restart per `restartPolicy`, with Kubernetes' back-off reported as
//!   `CrashLoopBackOff`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;

use super::runtime::{ContainerPhase, ContainerState, PodRuntime, PodState, RuntimeError};

pub const UNREADY_ANNOTATION: &str = "sim.skiff.dev/unready";
pub const EXIT_CODE_ANNOTATION: &str = "sim.skiff.dev/exit-code";

pub struct SimulatedRuntime {
    start_delay: Duration,
    pods: Mutex<HashMap<String, PodState>>,
}

impl SimulatedRuntime {
    pub fn new(start_delay: Duration) -> Self {
        SimulatedRuntime {
            start_delay,
            pods: Mutex::new(HashMap::new()),
        }
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The next state of one simulated container, given the pod's wishes and time.
fn advance(
    container: &mut ContainerState,
    pod: &Pod,
    since_start: Duration,
    start_delay: Duration,
) {
    let exit_code = annotation(pod, EXIT_CODE_ANNOTATION).and_then(|c| c.parse::<i32>().ok());
    let unready = annotation(pod, UNREADY_ANNOTATION) == Some("true");
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let now = Utc::now();
    match &container.phase {
        ContainerPhase::Waiting { reason, .. }
            if reason == "ContainerCreating" && since_start >= start_delay =>
        {
            container.phase = ContainerPhase::Running { started_at: now };
            container.ready = !unready && exit_code.is_none();
        }
        ContainerPhase::Running { started_at } => match exit_code {
            Some(code) => {
                let ended = ContainerPhase::Terminated {
                    exit_code: code,
                    reason: if code == 0 { "Completed" } else { "Error" }.into(),
                    started_at: *started_at,
                    finished_at: now,
                };
                container.ready = false;
                let restarts =
                    restart_policy == "Always" || (restart_policy == "OnFailure" && code != 0);
                if restarts {
                    container.last = Some(ended);
                    container.restart_count += 1;
                    container.phase = ContainerPhase::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!(
                            "back-off {}s restarting failed container={}",
                            backoff_seconds(container.restart_count),
                            container.name
                        ),
                    };
                } else {
                    container.phase = ended;
                }
            }
            None => container.ready = !unready,
        },
        ContainerPhase::Waiting { reason, .. } if reason == "CrashLoopBackOff" => {
            let finished = match &container.last {
                Some(ContainerPhase::Terminated { finished_at, .. }) => *finished_at,
                _ => now,
            };
            let wait = chrono::Duration::seconds(backoff_seconds(container.restart_count));
            if now - finished >= wait {
                container.phase = ContainerPhase::Running { started_at: now };
            }
        }
        _ => {}
    }
}

/// Kubernetes' restart back-off: 10 s doubling to 5 min.
pub fn backoff_seconds(restarts: i32) -> i64 {
    let exponent = (restarts - 1).clamp(0, 5) as u32;
    (10i64 << exponent).min(300)
}

fn new_state(pod: &Pod, ip: Option<IpAddr>) -> PodState {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| ContainerState {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            id: format!("skiff-sim://{uid}-{}", c.name),
            phase: ContainerPhase::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last: None,
            ready: false,
            restart_count: 0,
        })
        .collect();
    PodState {
        ip,
        started_at: Utc::now(),
        init_containers: Vec::new(),
        containers,
        ephemeral_containers: Vec::new(),
        failed: false,
    }
}

#[async_trait]
impl PodRuntime for SimulatedRuntime {
    async fn sync_pod(&self, pod: &Pod, ip: Option<IpAddr>) -> Result<(), RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut pods = self.pods.lock().map_err(|_| RuntimeError::Pod {
            pod: uid.clone(),
            message: "runtime state lock poisoned".into(),
        })?;
        let state = pods.entry(uid).or_insert_with(|| new_state(pod, ip));
        if state.ip.is_none() {
            state.ip = ip;
        }
        let since_start = (Utc::now() - state.started_at).to_std().unwrap_or_default();
        for container in &mut state.containers {
            advance(container, pod, since_start, self.start_delay);
        }
        Ok(())
    }

    /// The simulated containers stop at once, exiting 0.
    async fn kill_pod(
        &self,
        uid: &str,
        _grace: Duration,
    ) -> Result<Option<PodState>, RuntimeError> {
        let removed = self.pods.lock().ok().and_then(|mut pods| pods.remove(uid));
        Ok(removed.map(|mut state| {
            let now = Utc::now();
            for c in &mut state.containers {
                if let ContainerPhase::Running { started_at } = c.phase {
                    c.phase = ContainerPhase::Terminated {
                        exit_code: 0,
                        reason: "Completed".into(),
                        started_at,
                        finished_at: now,
                    };
                    c.ready = false;
                }
            }
            state
        }))
    }

    fn pod_state(&self, uid: &str) -> Option<PodState> {
        self.pods.lock().ok()?.get(uid).cloned()
    }

    fn pods(&self) -> Vec<String> {
        self.pods
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn version(&self) -> String {
        format!("skiff-sim://{}", env!("CARGO_PKG_VERSION"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u1", "annotations": annotations.iter().cloned().collect::<HashMap<_, _>>()},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn pods_start_after_the_delay_and_become_ready() {
        let runtime = SimulatedRuntime::new(Duration::ZERO);
        let p = pod(&[]);
        runtime.sync_pod(&p, None).await.unwrap();
        let state = runtime.pod_state("u1").unwrap();
        assert!(matches!(
            state.containers[0].phase,
            ContainerPhase::Running { .. }
        ));
        assert!(state.containers[0].ready);
        runtime.kill_pod("u1", Duration::ZERO).await.unwrap();
        assert!(runtime.pods().is_empty());
    }

    #[tokio::test]
    async fn failing_pods_crash_loop_and_unready_pods_stay_unready() {
        let runtime = SimulatedRuntime::new(Duration::ZERO);
        let p = pod(&[(EXIT_CODE_ANNOTATION, "3")]);
        runtime.sync_pod(&p, None).await.unwrap();
        runtime.sync_pod(&p, None).await.unwrap();
        let c = &runtime.pod_state("u1").unwrap().containers[0];
        assert_eq!(c.restart_count, 1);
        assert!(
            matches!(&c.phase, ContainerPhase::Waiting { reason, .. } if reason == "CrashLoopBackOff")
        );
        assert!(matches!(
            c.last,
            Some(ContainerPhase::Terminated { exit_code: 3, .. })
        ));

        let runtime = SimulatedRuntime::new(Duration::ZERO);
        runtime
            .sync_pod(&pod(&[(UNREADY_ANNOTATION, "true")]), None)
            .await
            .unwrap();
        assert!(!runtime.pod_state("u1").unwrap().containers[0].ready);
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff_seconds(1), 10);
        assert_eq!(backoff_seconds(2), 20);
        assert_eq!(backoff_seconds(6), 300);
        assert_eq!(backoff_seconds(60), 300);
    }
}
