//! The image configuration (OCI image config / Docker image JSON): what the runtime
//! needs to start a container from an image.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::reference::Digest;
use super::spec::Platform;
use super::ImageError;

/// An image's configuration blob. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
}

/// The defaults for containers run from the image (the `config` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// The layers' uncompressed digests, bottom first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// A port the image declares (`EXPOSE 80/tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExposedPort {
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
}

impl ImageConfig {
    /// Parses a configuration blob; `what` names it in errors.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<ImageConfig, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidManifest {
            what: what.to_string(),
            reason: format!("invalid image config: {e}"),
        })
    }

    /// The platform the image was built for.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }

    fn container(&self) -> Option<&ContainerConfig> {
        self.config.as_ref()
    }

    /// `ENTRYPOINT`, empty when unset.
    pub fn entrypoint(&self) -> &[String] {
        self.container()
            .and_then(|c| c.entrypoint.as_deref())
            .unwrap_or(&[])
    }

    /// `CMD`, empty when unset.
    pub fn cmd(&self) -> &[String] {
        self.container()
            .and_then(|c| c.cmd.as_deref())
            .unwrap_or(&[])
    }

    /// `ENV` as `NAME=value` strings.
    pub fn env(&self) -> &[String] {
        self.container()
            .and_then(|c| c.env.as_deref())
            .unwrap_or(&[])
    }

    /// `WORKDIR`, `None` when unset or empty.
    pub fn working_dir(&self) -> Option<&str> {
        self.container()
            .and_then(|c| c.working_dir.as_deref())
            .filter(|w| !w.is_empty())
    }

    /// `USER` (`name`, `uid`, `uid:gid`, `name:group`), `None` when unset or empty.
    pub fn user(&self) -> Option<&str> {
        self.container()
            .and_then(|c| c.user.as_deref())
            .filter(|u| !u.is_empty())
    }

    /// `EXPOSE`d ports, sorted; malformed entries are skipped.
    pub fn exposed_ports(&self) -> Vec<ExposedPort> {
        let Some(ports) = self.container().and_then(|c| c.exposed_ports.as_ref()) else {
            return Vec::new();
        };
        let mut out: Vec<ExposedPort> = ports.keys().filter_map(|k| parse_port(k)).collect();
        out.sort();
        out
    }

    /// `VOLUME` paths.
    pub fn volumes(&self) -> Vec<&str> {
        self.container()
            .and_then(|c| c.volumes.as_ref())
            .map(|v| v.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// `LABEL`s.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.container()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }

    /// `STOPSIGNAL`, e.g. `SIGQUIT`.
    pub fn stop_signal(&self) -> Option<&str> {
        self.container()
            .and_then(|c| c.stop_signal.as_deref())
            .filter(|s| !s.is_empty())
    }

    /// The layers' uncompressed digests, bottom first.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.rootfs.diff_ids
    }
}

/// `80`, `80/tcp`, `53/udp`.
fn parse_port(spec: &str) -> Option<ExposedPort> {
    let (port, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => "tcp",
        "udp" => "udp",
        "sctp" => "sctp",
        _ => return None,
    };
    Some(ExposedPort {
        port: port.parse().ok()?,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_style_config() {
        let json = br#"{
            "architecture": "amd64", "os": "linux",
            "config": {
                "User": "1000:1000",
                "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "bad/xx": {}},
                "Env": ["PATH=/usr/bin:/bin"],
                "Entrypoint": null,
                "Cmd": ["sh"],
                "WorkingDir": "",
                "Labels": {"a": "b"},
                "Volumes": {"/data": {}}
            },
            "rootfs": {"type": "layers", "diff_ids": [
                "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ]},
            "history": [{"created_by": "x"}]
        }"#;
        let c = ImageConfig::from_json(json, "test").unwrap();
        assert_eq!(c.user(), Some("1000:1000"));
        assert_eq!(c.entrypoint(), &[] as &[String]);
        assert_eq!(c.cmd(), &["sh".to_string()]);
        assert_eq!(c.env(), &["PATH=/usr/bin:/bin".to_string()]);
        assert_eq!(c.working_dir(), None);
        assert_eq!(
            c.exposed_ports(),
            vec![
                ExposedPort {
                    port: 53,
                    protocol: "udp"
                },
                ExposedPort {
                    port: 80,
                    protocol: "tcp"
                }
            ]
        );
        assert_eq!(c.volumes(), vec!["/data"]);
        assert_eq!(c.diff_ids().len(), 1);
        assert_eq!(c.platform().to_string(), "linux/amd64");
    }

    #[test]
    fn tolerates_missing_config() {
        let c = ImageConfig::from_json(br#"{"config": null}"#, "test").unwrap();
        assert!(c.cmd().is_empty());
        assert!(c.exposed_ports().is_empty());
        assert!(ImageConfig::from_json(b"\"text\"", "test").is_err());
    }
}
