//! Server and node settings: command-line flags merged over `/etc/skiff/config.yaml`
//! (YAML keys are the flag names, as in k3s), then defaults. Flags win over the
//! file, the file over defaults.
//!
//! A node's settings (`NodeFlags`: name, address, labels, taints, kubelet port, CNI,
//! bridge, cgroup root, registries, lease) are defined once and flattened into both
//! `skiff agent` and `skiff server` (whose own node takes them); `NodeConfig` turns
//! them into the agent's and the container runtime's configuration for both.
//!
//! May call: `model` (CIDRs), `host` (the default node name), and the `agent` and
//! `image` types it assembles; it sits above the agent and below `server` and `cli`.
//! Everything a node makes on the host is named from this configuration (bridge
//! `--cni-bridge`, sink link `<bridge>-sink`, cgroups under `--cgroup-root`, state
//! under the data dir), so agents with different settings share a machine.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use serde::Deserialize;

use crate::model::cidr::Cidr;

pub const DEFAULT_CONFIG: &str = "/etc/skiff/config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {flag} {value:?}: {message}")]
    Invalid {
        flag: &'static str,
        value: String,
        message: String,
    },
    #[error("{path}: unknown key {key:?} (the keys are the flag names without dashes in front)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("reading the registries file: {0}")]
    Registries(String),
}

/// Every server setting; `None` means "not given here".
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "kebab-case")]
pub struct ServerFlags {
    /// Where state, certificates and the token live [default: /var/lib/skiff]
    #[arg(long, short = 'd')]
    pub data_dir: Option<PathBuf>,
    /// Address the API listens on [default: 0.0.0.0]
    #[arg(long)]
    pub bind_address: Option<IpAddr>,
    /// Port the API listens on [default: 6443]
    #[arg(long)]
    pub https_listen_port: Option<u16>,
    /// Address other nodes and the `kubernetes` Service use to reach this server
    /// [default: the address of the interface with the default route]
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Extra host name or IP in the serving certificate (repeatable)
    #[arg(long = "tls-san")]
    #[serde(default)]
    pub tls_san: Vec<String>,
    /// Where to write the admin kubeconfig [default: /etc/skiff/skiff.yaml]
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// File mode of the kubeconfig, octal [default: 0600]
    #[arg(long)]
    pub write_kubeconfig_mode: Option<String>,
    /// Join token or its secret [default: generated on first start]
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: Option<String>,
    /// File holding the join token or its secret (trimmed), instead of --token
    #[arg(long, env = "SKIFF_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Service ClusterIP range [default: 10.43.0.0/16]
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// Pod IP range [default: 10.42.0.0/16]
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Cluster DNS service IP [default: 10.43.0.10]
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    /// Cluster domain [default: cluster.local]
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// Run no node agent in the server (by default the server is a node too; needs root)
    #[arg(long)]
    #[serde(default)]
    pub disable_agent: bool,
    /// Revisions of history kept for watches before compaction [default: 1000]
    #[arg(long)]
    pub history_revisions: Option<i64>,
    /// Seconds of history never compacted, so paged lists and reconnecting watches
    /// keep working under churn [default: 300, as etcd's compaction under Kubernetes]
    #[arg(long)]
    pub history_min_age: Option<u64>,
    /// Where the local-path provisioner puts volumes on each node, as k3s's flag
    /// [default: <data-dir>/storage]
    #[arg(long)]
    pub default_local_storage_path: Option<PathBuf>,
}

/// How a node runs: `skiff agent`'s node flags, and `skiff server`'s for its own
/// node. `None` means "not given here".
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "kebab-case")]
pub struct NodeFlags {
    /// This node's name [default: the host name]
    #[arg(long)]
    pub node_name: Option<String>,
    /// This node's address [default: the agent's default-route address, else its
    /// first global address; the server's advertise address]
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// A label for this node, key=value (repeatable)
    #[arg(long = "node-label")]
    #[serde(default)]
    pub node_label: Vec<String>,
    /// A taint for this node, key=value:Effect (repeatable)
    #[arg(long = "node-taint")]
    #[serde(default)]
    pub node_taint: Vec<String>,
    /// Port of the node's HTTPS API for logs and exec, like the kubelet's [default: 10250]
    #[arg(long)]
    pub kubelet_port: Option<u16>,
    /// Directories searched for CNI plugins, colon-separated, instead of skiff's
    /// built-in plugins [default: <data-dir>/agent/cni/bin, links to skiff itself]
    #[arg(long)]
    pub cni_bin_dir: Option<String>,
    /// A directory whose first .conflist replaces skiff's default bridge network
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// The bridge of skiff's default pod network (at most 10 characters; the service
    /// sink link is `<bridge>-sink`) [default: cni0]
    #[arg(long)]
    pub cni_bridge: Option<String>,
    /// The cgroup pods' containers run under, like the kubelet's [default: /skiff]
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// Registry mirrors, credentials and TLS, k3s's registries.yaml format
    /// [default: /etc/skiff/registries.yaml]
    #[arg(long)]
    pub private_registry: Option<PathBuf>,
    /// Pull only from the mirrors in the registries file, never from a mirrored
    /// registry itself
    #[arg(long)]
    #[serde(default)]
    pub disable_default_registry_endpoint: bool,
    /// Seconds between node lease renewals [default: 10]
    #[arg(long)]
    pub lease_interval_seconds: Option<u64>,
    /// How pods on different nodes reach each other: vxlan, host-gw,
    /// wireguard-native or none [default: vxlan]
    #[arg(long)]
    pub flannel_backend: Option<String>,
    /// The interface whose address carries the pod network between nodes
    /// [default: the node IP's interface]
    #[arg(long)]
    pub flannel_iface: Option<String>,
    /// The resolv.conf whose nameservers cluster DNS forwards to [default:
    /// /etc/resolv.conf, or systemd-resolved's upstreams when it names only the stub]
    #[arg(long)]
    pub resolv_conf: Option<PathBuf>,
}

/// The settings a node runs with (see `NodeFlags`).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_name: String,
    /// `None`: the caller's default (the agent's route address, the server's
    /// advertise address).
    pub node_ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub kubelet_port: u16,
    /// `--cni-bin-dir`; empty: the built-in plugins' links.
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bridge: String,
    pub cgroup_root: PathBuf,
    pub private_registry: PathBuf,
    pub disable_default_registry_endpoint: bool,
    pub lease_interval: Duration,
    pub flannel_backend: crate::agent::network::FlannelBackend,
    pub flannel_iface: Option<String>,
    pub resolv_conf: Option<PathBuf>,
}

/// The cluster-wide network settings a node needs (the server's flags; an agent's
/// own flags, which must match the server's).
#[derive(Debug, Clone)]
pub struct ClusterNetwork {
    pub cluster_cidr: Cidr,
    pub service_cidr: Cidr,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
}

/// The longest `--cni-bridge`: Linux link names have at most 15 bytes, and the
/// sink link appends `-sink`.
pub const MAX_BRIDGE_NAME: usize = 10;

impl NodeFlags {
    /// Flags over file over defaults.
    pub fn merge(self, file: NodeFlags) -> Result<NodeConfig, ConfigError> {
        let pick_list = |flags: Vec<String>, file: Vec<String>| {
            if flags.is_empty() {
                file
            } else {
                flags
            }
        };
        let labels = pick_list(self.node_label, file.node_label)
            .iter()
            .map(|l| crate::agent::parse_label(l).map_err(invalid_node_flag))
            .collect::<Result<_, _>>()?;
        let taints = pick_list(self.node_taint, file.node_taint)
            .iter()
            .map(|t| crate::agent::parse_taint(t).map_err(invalid_node_flag))
            .collect::<Result<_, _>>()?;
        let cni_bridge = self
            .cni_bridge
            .or(file.cni_bridge)
            .unwrap_or_else(|| "cni0".into());
        validate_bridge(&cni_bridge)?;
        let cgroup_root = self
            .cgroup_root
            .or(file.cgroup_root)
            .unwrap_or_else(|| "/skiff".into());
        validate_cgroup_root(&cgroup_root)?;
        let node_name = self
            .node_name
            .or(file.node_name)
            .unwrap_or_else(crate::host::hostname);
        Ok(NodeConfig {
            node_name,
            node_ip: self.node_ip.or(file.node_ip),
            labels,
            taints,
            kubelet_port: self.kubelet_port.or(file.kubelet_port).unwrap_or(10250),
            cni_bin_dirs: self
                .cni_bin_dir
                .or(file.cni_bin_dir)
                .unwrap_or_default()
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect(),
            cni_conf_dir: self.cni_conf_dir.or(file.cni_conf_dir),
            cni_bridge,
            cgroup_root,
            private_registry: self
                .private_registry
                .or(file.private_registry)
                .unwrap_or_else(|| crate::image::DEFAULT_REGISTRIES_PATH.into()),
            disable_default_registry_endpoint: self.disable_default_registry_endpoint
                || file.disable_default_registry_endpoint,
            lease_interval: Duration::from_secs(
                self.lease_interval_seconds
                    .or(file.lease_interval_seconds)
                    .unwrap_or(10)
                    .max(1),
            ),
            flannel_backend: match self.flannel_backend.or(file.flannel_backend) {
                Some(value) => value.parse().map_err(|message| ConfigError::Invalid {
                    flag: "--flannel-backend",
                    value,
                    message,
                })?,
                None => Default::default(),
            },
            flannel_iface: self.flannel_iface.or(file.flannel_iface),
            resolv_conf: self.resolv_conf.or(file.resolv_conf),
        })
    }
}

fn invalid_node_flag(e: crate::agent::AgentError) -> ConfigError {
    match e {
        crate::agent::AgentError::Invalid {
            flag,
            value,
            message,
        } => ConfigError::Invalid {
            flag,
            value,
            message,
        },
        other => ConfigError::Invalid {
            flag: "--node-label",
            value: String::new(),
            message: other.to_string(),
        },
    }
}

fn validate_bridge(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_BRIDGE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        flag: "--cni-bridge",
        value: name.into(),
        message: format!(
            "expected 1 to {MAX_BRIDGE_NAME} letters, digits, '-', '_' or '.' (a Linux link name with room for the -sink suffix)"
        ),
    })
}

fn validate_cgroup_root(path: &Path) -> Result<(), ConfigError> {
    use std::path::Component;
    let ok = path.is_absolute()
        && path.components().count() > 1
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if ok {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        flag: "--cgroup-root",
        value: path.display().to_string(),
        message: "expected an absolute cgroup path below the root, such as /skiff".into(),
    })
}

impl NodeConfig {
    /// The link the service CIDR is routed to: named from the bridge, so each node's
    /// configuration names its own.
    pub fn sink_link(&self) -> String {
        sink_link_for(&self.cni_bridge)
    }

    /// The agent loop's configuration for this node.
    pub fn agent_config(
        &self,
        server: String,
        token: String,
        data_dir: PathBuf,
        node_ip: IpAddr,
        control_plane: bool,
        capacity: crate::agent::Capacity,
    ) -> crate::agent::AgentConfig {
        crate::agent::AgentConfig {
            server: server.trim_end_matches('/').to_string(),
            token,
            node_name: self.node_name.clone(),
            node_ip,
            data_dir,
            labels: self.labels.clone(),
            taints: self.taints.clone(),
            control_plane,
            capacity,
            lease_interval: self.lease_interval,
            kubelet_port: self.kubelet_port,
            notify: None,
        }
    }

    /// The container runtime's configuration for this node; reads the registries file.
    pub fn runtime_config(
        &self,
        data_dir: PathBuf,
        node_ip: IpAddr,
        cluster: ClusterNetwork,
    ) -> Result<crate::agent::containers::RuntimeConfig, ConfigError> {
        let mut registries = crate::image::RegistriesConfig::load(&self.private_registry)
            .map_err(|e| ConfigError::Registries(e.to_string()))?;
        registries.disable_default_endpoint = self.disable_default_registry_endpoint;
        let network = crate::agent::network::NetworkConfig {
            node_name: self.node_name.clone(),
            node_ip,
            cluster_cidr: cluster.cluster_cidr,
            service_cidr: cluster.service_cidr,
            cluster_dns: cluster.cluster_dns,
            cluster_domain: cluster.cluster_domain.clone(),
            bridge: self.cni_bridge.clone(),
            sink_link: self.sink_link(),
            state_dir: data_dir.join("agent"),
            backend: self.flannel_backend,
            iface: self.flannel_iface.clone(),
            resolv_conf: self.resolv_conf.clone(),
        };
        let cni_bin_dirs = if self.cni_bin_dirs.is_empty() {
            vec![crate::agent::containers::builtin_cni_dir(&data_dir)]
        } else {
            self.cni_bin_dirs.clone()
        };
        Ok(crate::agent::containers::RuntimeConfig {
            data_dir,
            node_ip,
            dns: crate::agent::containers::sandbox::Dns {
                server: cluster.cluster_dns,
                domain: cluster.cluster_domain,
            },
            cni_bin_dirs,
            cni_conf_dir: self.cni_conf_dir.clone(),
            cni_bridge: self.cni_bridge.clone(),
            cgroup_root: self.cgroup_root.clone(),
            registries,
            network: std::sync::Arc::new(network),
        })
    }
}

/// `<bridge>-sink`: the service sink link of the node whose bridge is `bridge`.
pub fn sink_link_for(bridge: &str) -> String {
    format!("{bridge}-sink")
}

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_listen_port: u16,
    pub advertise_address: Option<IpAddr>,
    pub tls_san: Vec<String>,
    pub write_kubeconfig: PathBuf,
    pub write_kubeconfig_mode: u32,
    pub token: Option<String>,
    pub service_cidr: Cidr,
    pub cluster_cidr: Cidr,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub disable_agent: bool,
    pub history_revisions: i64,
    pub history_min_age: std::time::Duration,
    /// The local-path provisioner's directory on every node.
    pub default_local_storage_path: PathBuf,
    /// The server's own node (unless `disable_agent`).
    pub node: NodeConfig,
}

/// A config file: the server's keys and the node's.
#[derive(Debug, Default, Clone)]
pub struct FileConfig {
    pub server: ServerFlags,
    pub node: NodeFlags,
}

/// The long flag names of a clap `Args` struct: the config file's keys.
fn keys_of<A: clap::Args>() -> Vec<String> {
    A::augment_args(clap::Command::new("keys"))
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// Reads the config file if it exists (a missing default file is fine; a missing
/// file named with `--config` is an error).
pub fn read_file(path: &Path, required: bool) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(FileConfig::default())
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.into(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let keys: BTreeMap<String, serde::de::IgnoredAny> = parse(path, &text)?;
    let known: Vec<String> = keys_of::<ServerFlags>()
        .into_iter()
        .chain(keys_of::<NodeFlags>())
        .collect();
    if let Some(key) = keys.keys().find(|k| !known.contains(k)) {
        return Err(ConfigError::UnknownKey {
            path: path.into(),
            key: key.clone(),
        });
    }
    Ok(FileConfig {
        server: parse(path, &text)?,
        node: parse(path, &text)?,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

fn parse_cidr(
    flag: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<Cidr, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_string());
    value.parse().map_err(|message| ConfigError::Invalid {
        flag,
        value,
        message,
    })
}

fn parse_mode(value: Option<String>) -> Result<u32, ConfigError> {
    let value = value.unwrap_or_else(|| "0600".into());
    u32::from_str_radix(value.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| ConfigError::Invalid {
            flag: "--write-kubeconfig-mode",
            value,
            message: "expected an octal file mode such as 0600 or 0644".into(),
        })
}

/// The token in `path` (`--token-file`, `SKIFF_TOKEN_FILE`), surrounding whitespace
/// trimmed; an empty file is an error.
pub fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Invalid {
            flag: "--token-file",
            value: path.display().to_string(),
            message: "the file is empty".into(),
        });
    }
    Ok(token.to_string())
}

/// Flags over file over defaults.
pub fn merge(
    flags: ServerFlags,
    node: NodeFlags,
    file: FileConfig,
) -> Result<ServerConfig, ConfigError> {
    let FileConfig {
        server: file,
        node: file_node,
    } = file;
    let node = node.merge(file_node)?;
    let tls_san = if flags.tls_san.is_empty() {
        file.tls_san
    } else {
        flags.tls_san
    };
    let history_revisions = flags
        .history_revisions
        .or(file.history_revisions)
        .unwrap_or(1_000);
    if history_revisions < 100 {
        return Err(ConfigError::Invalid {
            flag: "--history-revisions",
            value: history_revisions.to_string(),
            message: "keep at least 100 revisions".into(),
        });
    }
    let data_dir: PathBuf = flags
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| "/var/lib/skiff".into());
    let default_local_storage_path = flags
        .default_local_storage_path
        .or(file.default_local_storage_path)
        .unwrap_or_else(|| data_dir.join("storage"));
    Ok(ServerConfig {
        data_dir,
        default_local_storage_path,
        bind_address: flags
            .bind_address
            .or(file.bind_address)
            .unwrap_or([0, 0, 0, 0].into()),
        https_listen_port: flags
            .https_listen_port
            .or(file.https_listen_port)
            .unwrap_or(6443),
        advertise_address: flags.advertise_address.or(file.advertise_address),
        tls_san,
        write_kubeconfig: flags
            .write_kubeconfig
            .or(file.write_kubeconfig)
            .unwrap_or_else(|| "/etc/skiff/skiff.yaml".into()),
        write_kubeconfig_mode: parse_mode(
            flags.write_kubeconfig_mode.or(file.write_kubeconfig_mode),
        )?,
        token: match (flags.token, flags.token_file) {
            (Some(token), _) => Some(token),
            (None, Some(path)) => Some(read_token_file(&path)?),
            (None, None) => match (file.token, file.token_file) {
                (Some(token), _) => Some(token),
                (None, Some(path)) => Some(read_token_file(&path)?),
                (None, None) => None,
            },
        },
        service_cidr: parse_cidr(
            "--service-cidr",
            flags.service_cidr.or(file.service_cidr),
            "10.43.0.0/16",
        )?,
        cluster_cidr: parse_cidr(
            "--cluster-cidr",
            flags.cluster_cidr.or(file.cluster_cidr),
            "10.42.0.0/16",
        )?,
        cluster_dns: flags
            .cluster_dns
            .or(file.cluster_dns)
            .unwrap_or([10, 43, 0, 10].into()),
        cluster_domain: flags
            .cluster_domain
            .or(file.cluster_domain)
            .unwrap_or_else(|| "cluster.local".into()),
        disable_agent: flags.disable_agent || file.disable_agent,
        history_revisions,
        history_min_age: std::time::Duration::from_secs(
            flags
                .history_min_age
                .or(file.history_min_age)
                .unwrap_or(300),
        ),
        node,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "https-listen-port: 7443\ncluster-domain: edge.local\ntls-san:\n  - a.example\n",
        )
        .unwrap();
        let file = read_file(&path, true).unwrap();
        let flags = ServerFlags {
            https_listen_port: Some(9443),
            ..Default::default()
        };
        let config = merge(flags, NodeFlags::default(), file).unwrap();
        assert_eq!(config.https_listen_port, 9443);
        assert_eq!(config.cluster_domain, "edge.local");
        assert_eq!(config.tls_san, vec!["a.example"]);
        assert_eq!(config.service_cidr.to_string(), "10.43.0.0/16");
        assert_eq!(config.write_kubeconfig_mode, 0o600);
    }

    #[test]
    fn the_token_file_is_read_trimmed_and_the_token_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let token_path = dir.path().join("token");
        std::fs::write(&token_path, "  s3cret\n").unwrap();
        let flags = ServerFlags {
            token_file: Some(token_path.clone()),
            ..Default::default()
        };
        let config = merge(flags, NodeFlags::default(), FileConfig::default()).unwrap();
        assert_eq!(config.token.as_deref(), Some("s3cret"));
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, format!("token-file: {}\n", token_path.display())).unwrap();
        let file = read_file(&path, true).unwrap();
        let config = merge(ServerFlags::default(), NodeFlags::default(), file.clone()).unwrap();
        assert_eq!(config.token.as_deref(), Some("s3cret"));
        let flags = ServerFlags {
            token: Some("given".into()),
            ..Default::default()
        };
        let config = merge(flags, NodeFlags::default(), file).unwrap();
        assert_eq!(config.token.as_deref(), Some("given"));
        std::fs::write(&token_path, "\n").unwrap();
        assert!(read_token_file(&token_path).is_err());
        assert!(read_token_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "no-such-flag: 1\n").unwrap();
        assert!(read_file(&path, true).is_err());
        assert!(read_file(&dir.path().join("missing.yaml"), false).is_ok());
        assert!(read_file(&dir.path().join("missing.yaml"), true).is_err());
        let bad = ServerFlags {
            service_cidr: Some("10.43.0.0".into()),
            ..Default::default()
        };
        assert!(merge(bad, NodeFlags::default(), FileConfig::default()).is_err());
    }

    #[test]
    fn node_keys_in_the_file_configure_the_servers_node_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "node-label:\n  - zone=a\nkubelet-port: 11250\ncni-bridge: edge0\ncgroup-root: /edge\nhttps-listen-port: 7443\n",
        )
        .unwrap();
        let file = read_file(&path, true).unwrap();
        let flags = NodeFlags {
            node_taint: vec!["dedicated=edge:NoSchedule".into()],
            kubelet_port: Some(12250),
            ..Default::default()
        };
        let config = merge(ServerFlags::default(), flags, file).unwrap();
        assert_eq!(config.https_listen_port, 7443);
        let node = &config.node;
        assert_eq!(node.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(node.taints[0].key, "dedicated");
        assert_eq!(node.kubelet_port, 12250);
        assert_eq!(node.cni_bridge, "edge0");
        assert_eq!(node.sink_link(), "edge0-sink");
        assert_eq!(node.cgroup_root, Path::new("/edge"));
        assert_eq!(node.lease_interval, Duration::from_secs(10));
    }

    #[test]
    fn node_defaults_are_cni0_and_skiff_and_bad_names_are_refused() {
        let node = NodeFlags::default().merge(NodeFlags::default()).unwrap();
        assert_eq!(node.cni_bridge, "cni0");
        assert_eq!(node.sink_link(), "cni0-sink");
        assert_eq!(node.cgroup_root, Path::new("/skiff"));
        assert_eq!(node.kubelet_port, 10250);
        assert!(node.cni_bin_dirs.is_empty(), "the built-in plugins");
        for bridge in ["", "much-too-long", "a b"] {
            let flags = NodeFlags {
                cni_bridge: Some(bridge.into()),
                ..Default::default()
            };
            assert!(flags.merge(NodeFlags::default()).is_err(), "{bridge:?}");
        }
        for root in ["skiff", "/", "/a/../b"] {
            let flags = NodeFlags {
                cgroup_root: Some(root.into()),
                ..Default::default()
            };
            assert!(flags.merge(NodeFlags::default()).is_err(), "{root:?}");
        }
        let bad_label = NodeFlags {
            node_label: vec!["nolabel".into()],
            ..Default::default()
        };
        let err = bad_label.merge(NodeFlags::default()).unwrap_err();
        assert!(err.to_string().contains("--node-label"), "{err}");
    }
}
