//! The seam between the node agent and whatever runs containers: the agent decides
//! which pods should run on this node; a `PodRuntime` makes it so and reports what it
//! observes. The simulated runtime (`--simulate`) is one implementation; the bundled
//! container runtime is the other.

use std::net::IpAddr;
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

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    pub name: String,
    pub image: String,
    pub id: String,
    pub phase: ContainerPhase,
    /// The previous run, after a restart.
    pub last: Option<ContainerPhase>,
    pub ready: bool,
    pub restart_count: i32,
}

/// What the runtime observes of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodState {
    pub ip: Option<IpAddr>,
    pub started_at: DateTime<Utc>,
    pub containers: Vec<ContainerState>,
}

#[async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    /// Makes the pod's containers run as its spec says (idempotent; called repeatedly).
    async fn sync_pod(&self, pod: &Pod, ip: Option<IpAddr>) -> Result<(), RuntimeError>;
    /// Stops the pod's containers (SIGTERM, then SIGKILL after `grace`) and releases
    /// everything it held. Idempotent.
    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// The pod's observed state, if the runtime knows the pod.
    fn pod_state(&self, uid: &str) -> Option<PodState>;
    /// The uids of every pod the runtime holds.
    fn pods(&self) -> Vec<String>;
    /// `containerRuntimeVersion` as the Node reports it, e.g. `skiff://0.1.0`.
    fn version(&self) -> String;
}
