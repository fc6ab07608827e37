//! Ephemeral containers (`kubectl debug`): the containers a Pod gains through its
//! `ephemeralcontainers` subresource while it runs. The worker runs each like an app
//! container of the pod (same sandbox: network, IPC and UTS namespaces, volumes),
//! starts it once and never restarts it; their states go to
//! `status.ephemeralContainerStatuses`, not into the pod's phase or readiness. A
//! spec change that only adds ephemeral containers restarts nothing.
//!
//! With `targetContainerName`, the container joins the PID namespace of that
//! container's running process (it sees the target's processes, as `kubectl debug
//! --target` expects); without one, or when the target is not running, it gets a
//! PID namespace of its own (pods have no shared one).
//!
//! Owns: turning a Pod's ephemeral containers into containers the worker runs.
//! May call: nothing but its inputs.

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};

/// The restart policy ephemeral containers live under: never restarted.
pub const RESTART_POLICY: &str = "Never";

/// The pod's ephemeral containers not in `known`, as containers.
pub fn added(pod: &Pod, known: &[&str]) -> Vec<Container> {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| !known.contains(&c.name.as_str()))
        .filter_map(as_container)
        .collect()
}

/// The `targetContainerName` of the ephemeral container `name`.
pub fn target_of(pod: &Pod, name: &str) -> Option<String> {
    pod.spec
        .as_ref()?
        .ephemeral_containers
        .as_ref()?
        .iter()
        .find(|c| c.name == name)?
        .target_container_name
        .clone()
        .filter(|t| !t.is_empty())
}

/// The PID namespace of a container's main process, while it exists.
pub fn pid_namespace(pid: i32) -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(format!("/proc/{pid}/ns/pid"));
    (pid > 0 && path.exists()).then_some(path)
}

/// The same fields, as a `Container` (only `targetContainerName` has no place there).
pub fn as_container(ephemeral: &EphemeralContainer) -> Option<Container> {
    let mut value = serde_json::to_value(ephemeral).ok()?;
    value.as_object_mut()?.remove("targetContainerName");
    serde_json::from_value(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_ephemeral_containers_are_added() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "app", "image": "busybox"}],
                "ephemeralContainers": [
                    {"name": "debugger-1", "image": "busybox", "stdin": true, "tty": true,
                     "targetContainerName": "app", "command": ["sh"]},
                    {"name": "debugger-2", "image": "busybox"},
                ],
            },
        }))
        .expect("pod");
        let added = added(&pod, &["app", "debugger-1"]);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].name, "debugger-2");
        let first = &super::added(&pod, &[])[0];
        assert_eq!(first.command, Some(vec!["sh".to_string()]));
        assert_eq!((first.stdin, first.tty), (Some(true), Some(true)));
        assert_eq!(target_of(&pod, "debugger-1").as_deref(), Some("app"));
        assert_eq!(target_of(&pod, "debugger-2"), None);
        let own = std::process::id() as i32;
        assert!(pid_namespace(own).is_some());
        assert_eq!(pid_namespace(0), None);
    }
}
