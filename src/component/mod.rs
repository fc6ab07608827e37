//! What every cluster component (each controller, the scheduler, node agents) is
//! built from, so they share it without depending on each other: the [`Context`]
//! a loop runs with, its [`Settings`], the [`supervise`] loop that restarts it, and the
//! event recorder ([`events::Recorder`]).
//!
//! May call: `client` (kube clients) and `model`; never a component itself
//! (docs/adr/0010-layering.md).

pub mod events;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::model::cidr::Cidr;
pub use events::Recorder;

/// Tunables, with skiff's defaults (faster than Kubernetes': edge sites want dead nodes'
/// pods moved in seconds, not five minutes).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A node whose lease is older than this is NotReady/Unknown.
    pub node_monitor_grace_period: Duration,
    /// Pods of an unreachable node are deleted after this (their own NoExecute
    /// tolerations win).
    pub pod_eviction_timeout: Duration,
    /// Events older than this are deleted.
    pub event_ttl: Duration,
    /// Pod CIDRs handed to nodes, one /`node_cidr_prefix` each.
    pub cluster_cidr: Cidr,
    pub node_cidr_prefix: u8,
    /// Where the local-path provisioner puts volumes (`--default-local-storage-path`).
    pub local_storage_path: std::path::PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_monitor_grace_period: Duration::from_secs(20),
            pod_eviction_timeout: Duration::from_secs(30),
            event_ttl: Duration::from_secs(3600),
            cluster_cidr: "10.42.0.0/16".parse().expect("valid default CIDR"),
            node_cidr_prefix: 24,
            local_storage_path: "/var/lib/skiff/storage".into(),
        }
    }
}

/// What every controller gets.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub settings: Settings,
}

/// Runs `run` forever, restarting it (after a pause) when it returns.
pub fn supervise<F, Fut>(name: &'static str, ctx: Arc<Context>, run: F)
where
    F: Fn(Arc<Context>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            run(ctx.clone()).await;
            tracing::warn!(controller = name, "controller stopped; restarting");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
