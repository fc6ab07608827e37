//! Server settings: command-line flags merged over `/etc/skiff/config.yaml`
//! (YAML keys are the flag names, as in k3s), then defaults. Flags win over the
//! file, the file over defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::alloc::Cidr;

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
}

/// Every server setting; `None` means "not given here".
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
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
}

/// Reads the config file if it exists (a missing default file is fine; a missing
/// file named with `--config` is an error).
pub fn read_file(path: &Path, required: bool) -> Result<ServerFlags, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(ServerFlags::default())
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.into(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(ServerFlags::default());
    }
    serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
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

/// Flags over file over defaults.
pub fn merge(flags: ServerFlags, file: ServerFlags) -> Result<ServerConfig, ConfigError> {
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
    Ok(ServerConfig {
        data_dir: flags
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| "/var/lib/skiff".into()),
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
        token: flags.token.or(file.token),
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
        let config = merge(flags, file).unwrap();
        assert_eq!(config.https_listen_port, 9443);
        assert_eq!(config.cluster_domain, "edge.local");
        assert_eq!(config.tls_san, vec!["a.example"]);
        assert_eq!(config.service_cidr.to_string(), "10.43.0.0/16");
        assert_eq!(config.write_kubeconfig_mode, 0o600);
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
        assert!(merge(bad, ServerFlags::default()).is_err());
    }
}
