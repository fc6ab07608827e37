//! The node agent: joins the cluster with a token, registers its Node, renews its
//! Lease, runs the pods bound to it through a `PodRuntime`, and reports their status.
//!
//! Owns: this node's Node object and Lease, and the status of the pods bound to it.
//! May call: the API (kube-rs client with the node's own credentials, `client`), a
//! `PodRuntime` (`runtime`, `image`, `network`), `component` (the event recorder),
//! `model`, `pki`, `host` and `serve` (the kubelet API's TLS loop); never `api`,
//! `store`, `controllers`, `scheduler` or `server` (docs/adr/0010-layering.md).
//! `skiff agent --simulate` runs this same loop over the simulated runtime, many nodes
//! in one process if asked (`--count`).

pub mod containers;
pub mod join;
pub mod kubelet;
pub mod local_volumes;
pub mod network;
mod node;
mod pods;
pub mod runtime;
pub mod simulated;
pub mod status;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use runtime::PodRuntime;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("joining the cluster: {0}")]
    Join(#[from] join::JoinError),
    #[error("{0}")]
    Client(#[from] crate::client::ClientError),
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        source: Box<kube::Error>,
    },
    #[error("{0}")]
    Runtime(String),
    #[error("invalid {flag} {value:?}: {message}")]
    Invalid {
        flag: &'static str,
        value: String,
        message: String,
    },
}

/// What a node offers, as reported in its capacity.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: String,
    pub token: String,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub data_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// The server's own node; its role and restricted labels are the server's to set.
    pub control_plane: bool,
    pub capacity: Capacity,
    /// How often the lease is renewed.
    pub lease_interval: Duration,
    /// The port of the agent's HTTPS API (logs, exec); 0 serves none.
    pub kubelet_port: u16,
    /// Told `READY=1` once this node is Ready (systemd's `NOTIFY_SOCKET`).
    pub notify: Option<crate::host::notify::Notifier>,
}

/// Parses `key=value:Effect` (or `key:Effect`) as `--node-taint` takes it.
pub fn parse_taint(s: &str) -> Result<Taint, AgentError> {
    let invalid = |message: &str| AgentError::Invalid {
        flag: "--node-taint",
        value: s.into(),
        message: message.into(),
    };
    let (rest, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(invalid(
            "effect must be NoSchedule, PreferNoSchedule or NoExecute",
        ));
    }
    let (key, value) = match rest.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (rest, None),
    };
    if key.is_empty() {
        return Err(invalid("the key is empty"));
    }
    Ok(Taint {
        key: key.into(),
        value,
        effect: effect.into(),
        time_added: None,
    })
}

/// Parses `key=value` as `--node-label` takes it.
pub fn parse_label(s: &str) -> Result<(String, String), AgentError> {
    let (k, v) = s.split_once('=').ok_or_else(|| AgentError::Invalid {
        flag: "--node-label",
        value: s.into(),
        message: "expected key=value".into(),
    })?;
    crate::model::selector::validate_label_key(k)
        .and_then(|_| crate::model::selector::validate_label_value(v))
        .map_err(|message| AgentError::Invalid {
            flag: "--node-label",
            value: s.into(),
            message,
        })?;
    Ok((k.into(), v.into()))
}

/// Joins, registers the node and runs it until the process stops.
pub async fn run(config: AgentConfig, runtime: Arc<dyn PodRuntime>) -> Result<(), AgentError> {
    run_with_access(config, runtime, None).await
}

/// A real node: the bundled container runtime, and the kubelet API for logs and exec.
pub async fn run_containers(
    config: AgentConfig,
    runtime_config: containers::RuntimeConfig,
) -> Result<(), AgentError> {
    let runtime = containers::ContainerRuntime::new(runtime_config)
        .map_err(|e| AgentError::Runtime(e.to_string()))?;
    let access: Arc<dyn kubelet::ContainerAccess> = Arc::new(runtime.clone());
    run_with_access(config, Arc::new(runtime), Some(access)).await
}

/// The machine's CPUs and memory, and the kubelet's default of 110 pods.
pub fn machine_capacity() -> Capacity {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "0".into());
    Capacity {
        cpu: cpus.to_string(),
        memory: format!("{memory_kib}Ki"),
        pods: "110".into(),
    }
}

async fn run_with_access(
    config: AgentConfig,
    runtime: Arc<dyn PodRuntime>,
    access: Option<Arc<dyn kubelet::ContainerAccess>>,
) -> Result<(), AgentError> {
    node::check_labels(&config)?;
    let credentials_dir = config.data_dir.join("agent").join("credentials");
    let credentials = join::node_credentials(
        &config.server,
        &config.token,
        &config.node_name,
        &credentials_dir,
    )
    .await?;
    let user_agent = crate::client::user_agent(&format!("agent {}", config.node_name));
    let client = crate::client::connect(&credentials, &user_agent).await?;
    if let Some(access) = access {
        kubelet::start(&config, access)
            .await
            .map_err(|e| AgentError::Runtime(e.to_string()))?;
    }
    let config = Arc::new(config);
    let node = node::register(&client, &config, runtime.as_ref()).await?;
    tracing::info!(node = %config.node_name, "node registered");
    if let Some(notifier) = config.notify.clone() {
        tokio::spawn(node::notify_when_ready(
            client.clone(),
            config.node_name.clone(),
            node.clone(),
            notifier,
        ));
    }
    tokio::spawn(node::heartbeat_forever(
        client.clone(),
        config.clone(),
        node,
    ));
    tokio::spawn(local_volumes::clean_forever(
        client.clone(),
        config.node_name.clone(),
    ));
    pods::sync_forever(client, config, runtime).await;
    Ok(())
}

/// `--simulate --count N`: N nodes named `<base>-<i>` in this process, each with its
/// own credentials, connection, lease and pod loop.
pub async fn run_simulated(
    base: AgentConfig,
    count: usize,
    start_delay: Duration,
) -> Result<(), AgentError> {
    node::check_labels(&base)?;
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let mut config = base.clone();
        if count > 1 {
            config.node_name = format!("{}-{i}", base.node_name);
        }
        let runtime: Arc<dyn PodRuntime> = Arc::new(simulated::SimulatedRuntime::new(start_delay));
        tasks.push(tokio::spawn(async move {
            loop {
                let name = config.node_name.clone();
                match run(config.clone(), runtime.clone()).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "simulated node failed; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        }));
        // Spread the joins a little so a thousand nodes don't arrive in one burst.
        if count > 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_and_labels_parse_like_k3s_flags() {
        let t = parse_taint("dedicated=edge:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("edge"), "NoSchedule")
        );
        assert!(parse_taint("gpu:NoExecute").unwrap().value.is_none());
        assert!(parse_taint("x=y:Sometimes").is_err());
        assert_eq!(parse_label("zone=a").unwrap(), ("zone".into(), "a".into()));
        assert!(parse_label("zone").is_err());
        assert!(parse_label("bad key=a").is_err());
    }
}
