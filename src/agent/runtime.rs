//! The seam between the node agent and whatever runs containers: the agent decides
//! which pods should run on this node; a `PodRuntime` makes it so and reports what it
//! observes. The simulated runtime (`--simulate`) is one implementation; the bundled
//! container runtime is the other.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("pod {pod}: {message}")]
    Pod { pod: String, message: String },
}

/// What a container is doing now.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerPhase {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: DateTime<Utc>,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    /// The image actually run (`repository@digest` or `sha256:…`), once known.
    pub image_id: String,
    pub id: String,
    pub phase: ContainerPhase,
    /// The previous run, after a restart.
    pub last: Option<ContainerPhase>,
    pub ready: bool,
    pub restart_count: i32,
}

impl Default for ContainerPhase {
    fn default() -> Self {
        ContainerPhase::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        }
    }
}

/// What the runtime observes of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodState {
    pub ip: Option<IpAddr>,
    pub started_at: DateTime<Utc>,
    /// Init containers, in order; the app containers start once all succeeded.
    pub init_containers: Vec<ContainerState>,
    pub containers: Vec<ContainerState>,
    /// Ephemeral containers (`kubectl debug`), outside the phase and readiness.
    pub ephemeral_containers: Vec<ContainerState>,
    /// Set when the pod failed as a whole (an init container failed under
    /// `restartPolicy: Never`): the pod's phase becomes Failed.
    pub failed: bool,
}

/// What a runtime learns about its node once the node is registered.
#[derive(Clone)]
pub struct NodeEnv {
    pub client: kube::Client,
    pub node_name: String,
    /// The node's `spec.podCIDR`.
    pub pod_cidr: String,
    /// Wakes the pod loop: a runtime that observes a change on its own (a container
    /// started or exited) calls `notify_one`, so the status is reported at once.
    pub changed: Arc<tokio::sync::Notify>,
}

#[async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    /// Called once the node is registered and has its pod CIDR, before any pod.
    async fn attach(&self, _env: NodeEnv) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// Makes the pod's containers run as its spec says (idempotent; called repeatedly).
    async fn sync_pod(&self, pod: &Pod, ip: Option<IpAddr>) -> Result<(), RuntimeError>;
    /// Stops the pod's containers (SIGTERM, then SIGKILL after `grace`) and releases
    /// everything it held; returns when they are gone. Idempotent: a call while the
    /// pod stops may bring its deadline forward, never push it back. Returns the pod's
    /// last observed state (its containers' exits), if the runtime knew the pod.
    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<Option<PodState>, RuntimeError>;
    /// The pod's observed state, if the runtime knows the pod.
    fn pod_state(&self, uid: &str) -> Option<PodState>;
    /// The uids of every pod the runtime holds.
    fn pods(&self) -> Vec<String>;
    /// `containerRuntimeVersion` as the Node reports it, e.g. `skiff://0.1.0`.
    fn version(&self) -> String;
}
