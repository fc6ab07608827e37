//! A Pod's `status` from what the runtime observes: phase, conditions, container
//! statuses, IPs — as the kubelet reports them, so kubectl shows the familiar
//! `Running`, `1/1`, `CrashLoopBackOff`, `Completed`. A deleted pod's containers are
//! unready from the moment termination begins, and once they all stopped the pod
//! gets a terminal phase (Kubernetes 1.27+) before the agent deletes the object.

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::runtime::{ContainerPhase, ContainerState, PodState};

fn k8s_state(phase: &ContainerPhase) -> K8sState {
    match phase {
        ContainerPhase::Waiting { reason, message } => K8sState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: (!message.is_empty()).then(|| message.clone()),
            }),
            ..Default::default()
        },
        ContainerPhase::Running { started_at } => K8sState {
            running: Some(ContainerStateRunning {
                started_at: Some(seconds(*started_at)),
            }),
            ..Default::default()
        },
        ContainerPhase::Terminated {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => K8sState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                started_at: Some(seconds(*started_at)),
                finished_at: Some(seconds(*finished_at)),
                container_id: None,
                message: None,
                signal: None,
            }),
            ..Default::default()
        },
    }
}

/// A container's status. A terminating pod's containers keep the readiness their
/// probes give until they exit, as kubelet's (it stops only liveness and startup
/// probes): endpoints mark terminating pods themselves.
fn container_status(c: &ContainerState) -> ContainerStatus {
    let running = matches!(c.phase, ContainerPhase::Running { .. });
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: (!c.id.is_empty()).then(|| c.id.clone()),
        ready: c.ready,
        started: Some(running),
        restart_count: c.restart_count,
        state: Some(k8s_state(&c.phase)),
        last_state: Some(c.last.as_ref().map(k8s_state).unwrap_or_default()),
        ..Default::default()
    }
}

/// A timestamp as the API stores it (whole seconds), so a status read back compares
/// equal to the one that was written and is not written again.
fn seconds(time: DateTime<Utc>) -> Time {
    Time(time.trunc_subsecs(0))
}

/// Whether every init container has completed successfully.
fn initialized(state: &PodState) -> bool {
    state
        .init_containers
        .iter()
        .all(|c| matches!(c.phase, ContainerPhase::Terminated { exit_code: 0, .. }))
}

/// Pending, Running, Succeeded or Failed, from the containers and the restart policy.
fn phase(state: &PodState, restart_policy: &str) -> &'static str {
    if state.failed {
        return "Failed";
    }
    if !initialized(state) {
        return "Pending";
    }
    let terminated: Vec<i32> = state
        .containers
        .iter()
        .filter_map(|c| match c.phase {
            ContainerPhase::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        })
        .collect();
    let all_done = !state.containers.is_empty() && terminated.len() == state.containers.len();
    let started = state.containers.iter().any(|c| {
        matches!(
            c.phase,
            ContainerPhase::Running { .. } | ContainerPhase::Terminated { .. }
        ) || c.restart_count > 0
    });
    match (all_done, restart_policy) {
        (true, "Never") | (true, "OnFailure") if terminated.iter().all(|c| *c == 0) => "Succeeded",
        (true, "Never") => "Failed",
        _ if started => "Running",
        _ => "Pending",
    }
}

/// The phase of a deleted pod once none of its containers runs: terminal whatever
/// its restart policy, as Kubernetes 1.27+ reports it before the object goes —
/// `Succeeded` if every container exited 0, else `Failed` (a container that never
/// ran counts as failed). `None` while a container still runs.
fn terminal_phase(state: &PodState) -> Option<&'static str> {
    let running = |c: &ContainerState| matches!(c.phase, ContainerPhase::Running { .. });
    if state.containers.iter().any(running) || state.init_containers.iter().any(running) {
        return None;
    }
    let succeeded = !state.failed
        && !state.containers.is_empty()
        && state
            .containers
            .iter()
            .all(|c| matches!(c.phase, ContainerPhase::Terminated { exit_code: 0, .. }));
    Some(if succeeded { "Succeeded" } else { "Failed" })
}

/// The phase to report: a terminating pod's once its containers stopped; never out of
/// a terminal phase once reported.
fn reported_phase(pod: &Pod, state: &PodState, restart_policy: &str) -> &'static str {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => return "Succeeded",
        Some("Failed") => return "Failed",
        _ => {}
    }
    let terminal = pod
        .metadata
        .deletion_timestamp
        .is_some()
        .then(|| terminal_phase(state))
        .flatten();
    terminal.unwrap_or_else(|| phase(state, restart_policy))
}

/// Keeps a condition's transition time while its status is unchanged.
fn condition(
    previous: Option<&PodStatus>,
    kind: &str,
    status: bool,
    now: DateTime<Utc>,
) -> PodCondition {
    let value = if status { "True" } else { "False" };
    let kept = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == value)
        .and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: kind.to_string(),
        status: value.to_string(),
        last_transition_time: Some(kept.unwrap_or(seconds(now))),
        ..Default::default()
    }
}

/// The status to report for `pod` given the runtime's view and the node's IP.
pub fn pod_status(pod: &Pod, state: &PodState, host_ip: &str, now: DateTime<Utc>) -> PodStatus {
    let previous = pod.status.as_ref();
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let phase = reported_phase(pod, state, restart_policy);
    let containers_ready = !state.containers.is_empty() && state.containers.iter().all(|c| c.ready);
    let statuses = |cs: &[ContainerState]| cs.iter().map(container_status).collect::<Vec<_>>();
    let ip = state.ip.map(|ip| ip.to_string());
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(vec![
            condition(previous, "PodReadyToStartContainers", true, now),
            condition(previous, "Initialized", initialized(state), now),
            condition(
                previous,
                "Ready",
                containers_ready && phase == "Running",
                now,
            ),
            condition(previous, "ContainersReady", containers_ready, now),
            condition(previous, "PodScheduled", true, now),
        ]),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: ip.clone(),
        pod_ips: ip.map(|ip| vec![PodIP { ip }]),
        start_time: Some(seconds(state.started_at)),
        container_statuses: Some(statuses(&state.containers)),
        init_container_statuses: (!state.init_containers.is_empty())
            .then(|| statuses(&state.init_containers)),
        ephemeral_container_statuses: (!state.ephemeral_containers.is_empty())
            .then(|| statuses(&state.ephemeral_containers)),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        ..Default::default()
    }
}

/// Whether two statuses differ in what we report (so unchanged ones are not written).
pub fn differs(current: Option<&PodStatus>, wanted: &PodStatus) -> bool {
    current != Some(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_read_back_from_the_api_is_not_written_again() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c0", "image": "busybox"}]}}))
        .unwrap();
        let mut running = state(vec![(
            ContainerPhase::Running {
                started_at: Utc::now(),
            },
            true,
        )]);
        running.started_at = Utc::now();
        let written = pod_status(&pod, &running, "10.0.0.1", Utc::now());
        // The API keeps whole seconds.
        let stored: PodStatus =
            serde_json::from_value(serde_json::to_value(&written).unwrap()).unwrap();
        let pod = Pod {
            status: Some(stored.clone()),
            ..pod
        };
        let again = pod_status(&pod, &running, "10.0.0.1", Utc::now());
        assert!(!differs(Some(&stored), &again), "{stored:?}\n{again:?}");
    }

    fn state(phases: Vec<(ContainerPhase, bool)>) -> PodState {
        PodState {
            ip: Some("10.42.0.5".parse().unwrap()),
            started_at: Utc::now(),
            init_containers: Vec::new(),
            ephemeral_containers: Vec::new(),
            failed: false,
            containers: phases
                .into_iter()
                .enumerate()
                .map(|(i, (phase, ready))| ContainerState {
                    name: format!("c{i}"),
                    image: "busybox".into(),
                    image_id: String::new(),
                    id: format!("id{i}"),
                    phase,
                    last: None,
                    ready,
                    restart_count: 0,
                })
                .collect(),
        }
    }

    fn pod(restart_policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [], "restartPolicy": restart_policy}})).unwrap()
    }

    #[test]
    fn running_ready_pods_are_ready() {
        let now = Utc::now();
        let s = state(vec![(ContainerPhase::Running { started_at: now }, true)]);
        let status = pod_status(&pod("Always"), &s, "192.0.2.1", now);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(status.pod_ip.as_deref(), Some("10.42.0.5"));
    }

    #[test]
    fn finished_pods_succeed_or_fail_by_exit_code() {
        let now = Utc::now();
        let done = |code| ContainerPhase::Terminated {
            exit_code: code,
            reason: "x".into(),
            started_at: now,
            finished_at: now,
        };
        assert_eq!(phase(&state(vec![(done(0), false)]), "Never"), "Succeeded");
        assert_eq!(phase(&state(vec![(done(3), false)]), "Never"), "Failed");
        let waiting = ContainerPhase::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        };
        assert_eq!(phase(&state(vec![(waiting, false)]), "Always"), "Pending");
    }

    fn deleting(pod: Pod) -> Pod {
        let mut pod = pod;
        pod.metadata.deletion_timestamp = Some(Time(Utc::now()));
        pod
    }

    fn ready_condition(status: &PodStatus) -> String {
        let conditions = status.conditions.as_ref().unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        ready.status.clone()
    }

    #[test]
    fn a_terminating_pods_containers_keep_their_probed_readiness_until_they_exit() {
        let now = Utc::now();
        let s = state(vec![(ContainerPhase::Running { started_at: now }, true)]);
        let status = pod_status(&deleting(pod("Always")), &s, "h", now);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(ready_condition(&status), "True");
        assert!(status.container_statuses.unwrap()[0].ready);
        let s = state(vec![(ContainerPhase::Running { started_at: now }, false)]);
        let status = pod_status(&deleting(pod("Always")), &s, "h", now);
        assert_eq!(ready_condition(&status), "False");
    }

    #[test]
    fn a_deleted_pod_whose_containers_stopped_is_terminal_whatever_its_restart_policy() {
        let now = Utc::now();
        let exited = |code| ContainerPhase::Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            started_at: now,
            finished_at: now,
        };
        let clean = state(vec![(exited(0), false), (exited(0), false)]);
        let killed = state(vec![(exited(0), false), (exited(143), false)]);
        for policy in ["Always", "OnFailure", "Never"] {
            let p = deleting(pod(policy));
            let status = pod_status(&p, &clean, "h", now);
            assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{policy}");
            assert_eq!(ready_condition(&status), "False");
            let status = pod_status(&p, &killed, "h", now);
            assert_eq!(status.phase.as_deref(), Some("Failed"), "{policy}");
        }
        // A container that never ran makes it Failed; one still running keeps it Running.
        let never_ran = ContainerPhase::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        };
        let s = state(vec![(exited(0), false), (never_ran, false)]);
        let status = pod_status(&deleting(pod("Always")), &s, "h", now);
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let s = state(vec![
            (exited(0), false),
            (ContainerPhase::Running { started_at: now }, true),
        ]);
        let status = pod_status(&deleting(pod("Always")), &s, "h", now);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        // Without a deletion, an Always pod whose containers exited is restarting.
        assert_eq!(
            pod_status(&pod("Always"), &clean, "h", now)
                .phase
                .as_deref(),
            Some("Running")
        );
    }

    #[test]
    fn a_terminal_phase_is_never_left() {
        let now = Utc::now();
        let mut p = deleting(pod("Never"));
        p.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let waiting = ContainerPhase::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        };
        let status = pod_status(&p, &state(vec![(waiting, false)]), "h", now);
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let then = Utc::now() - chrono::Duration::hours(1);
        let now = Utc::now();
        let s = state(vec![(ContainerPhase::Running { started_at: then }, true)]);
        let first = pod_status(&pod("Always"), &s, "h", then);
        let mut p = pod("Always");
        p.status = Some(first.clone());
        let second = pod_status(&p, &s, "h", now);
        assert!(!differs(Some(&first), &second));
    }
}
