//! A CNI invoker per the CNI specification 1.0: runs the plugins of a network
//! configuration list for ADD, CHECK and DEL, injecting `name` and `cniVersion` into
//! each plugin's config, chaining `prevResult`, passing `runtimeConfig` only to plugins
//! that declare the capability, caching the ADD result for DEL, and running DEL in
//! reverse order collecting every error instead of stopping at the first.
//!
//! Any standard plugin works: the plugin directories and the configuration are the
//! caller's. No maintained Rust crate did this, hence this small one.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("cni plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("cni plugin {plugin} {command} failed (code {code}): {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        code: i64,
        message: String,
    },
    #[error("running cni plugin {plugin}: {source}")]
    Exec {
        plugin: String,
        source: std::io::Error,
    },
    #[error("invalid cni configuration: {0}")]
    Config(String),
    #[error("{action} {path}: {source}")]
    Cache {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which container and namespace a call is about.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS` pairs, e.g. K8S_POD_NAMESPACE, K8S_POD_NAME.
    pub args: Vec<(String, String)>,
    /// `runtimeConfig` values by capability name (e.g. `portMappings`).
    pub runtime_config: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Command {
    Add,
    Check,
    Del,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
        }
    }
}

pub struct Invoker {
    plugin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    /// The network configuration list (`{"cniVersion","name","plugins":[...]}`).
    conflist: Value,
}

impl Invoker {
    pub fn new(
        plugin_dirs: Vec<PathBuf>,
        cache_dir: PathBuf,
        conflist: Value,
    ) -> Result<Self, CniError> {
        let plugins = conflist["plugins"].as_array().filter(|p| !p.is_empty());
        if plugins.is_none() || conflist["name"].as_str().is_none() {
            return Err(CniError::Config(
                "a conflist needs a name and at least one plugin".into(),
            ));
        }
        Ok(Invoker {
            plugin_dirs,
            cache_dir,
            conflist,
        })
    }

    fn name(&self) -> &str {
        self.conflist["name"].as_str().unwrap_or("cni")
    }

    fn version(&self) -> &str {
        self.conflist["cniVersion"].as_str().unwrap_or("1.0.0")
    }

    fn plugins(&self) -> &[Value] {
        self.conflist["plugins"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn cache_path(&self, at: &Attachment) -> PathBuf {
        self.cache_dir.join(format!(
            "{}-{}-{}.json",
            self.name(),
            at.container_id,
            at.ifname
        ))
    }

    fn find_plugin(&self, kind: &str) -> Result<PathBuf, CniError> {
        self.plugin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: kind.into(),
                dirs: self
                    .plugin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })
    }

    /// One plugin's stdin: its config plus name, version, prevResult and the
    /// runtimeConfig of the capabilities it declares.
    fn plugin_config(&self, plugin: &Value, prev: Option<&Value>, at: &Attachment) -> Value {
        let mut config = plugin.clone();
        config["name"] = json!(self.name());
        config["cniVersion"] = json!(self.version());
        if let Some(prev) = prev {
            config["prevResult"] = prev.clone();
        }
        let declared: Vec<&String> = plugin["capabilities"]
            .as_object()
            .map(|caps| {
                caps.iter()
                    .filter(|(_, on)| on == &&json!(true))
                    .map(|(k, _)| k)
                    .collect()
            })
            .unwrap_or_default();
        let runtime: Map<String, Value> = at
            .runtime_config
            .iter()
            .filter(|(k, _)| declared.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(map) = config.as_object_mut() {
            map.remove("capabilities");
            if !runtime.is_empty() {
                map.insert("runtimeConfig".into(), Value::Object(runtime));
            }
        }
        config
    }

    async fn exec(
        &self,
        command: Command,
        plugin: &Value,
        config: &Value,
        at: &Attachment,
    ) -> Result<Option<Value>, CniError> {
        let kind = plugin["type"].as_str().unwrap_or("").to_string();
        let path = self.find_plugin(&kind)?;
        // IgnoreUnknown: plugins that don't know an argument (as bridge doesn't know
        // K8S_POD_NAME) must not fail on it.
        let cni_args = std::iter::once("IgnoreUnknown=1".to_string())
            .chain(at.args.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(";");
        let cni_path = std::env::join_paths(&self.plugin_dirs).unwrap_or_default();
        let mut child = tokio::process::Command::new(&path)
            .env_clear()
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &at.container_id)
            .env("CNI_NETNS", &at.netns)
            .env("CNI_IFNAME", &at.ifname)
            .env("CNI_ARGS", cni_args)
            .env("CNI_PATH", cni_path)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CniError::Exec {
                plugin: kind.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(config.to_string().as_bytes())
                .await
                .map_err(|source| CniError::Exec {
                    plugin: kind.clone(),
                    source,
                })?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|source| CniError::Exec {
                plugin: kind.clone(),
                source,
            })?;
        let stdout: Option<Value> = serde_json::from_slice(&output.stdout).ok();
        if !output.status.success() {
            let (code, message) = match &stdout {
                Some(e) => (
                    e["code"].as_i64().unwrap_or(-1),
                    format!(
                        "{} {}",
                        e["msg"].as_str().unwrap_or(""),
                        e["details"].as_str().unwrap_or("")
                    )
                    .trim()
                    .to_string(),
                ),
                None => (
                    -1,
                    String::from_utf8_lossy(&output.stderr).trim().to_string(),
                ),
            };
            return Err(CniError::Plugin {
                plugin: kind,
                command: command.as_str(),
                code,
                message,
            });
        }
        Ok(stdout)
    }

    /// ADD through every plugin in order; returns the final result (interfaces, ips).
    pub async fn add(&self, at: &Attachment) -> Result<Value, CniError> {
        let mut result: Option<Value> = None;
        for plugin in self.plugins() {
            let config = self.plugin_config(plugin, result.as_ref(), at);
            if let Some(out) = self.exec(Command::Add, plugin, &config, at).await? {
                result = Some(out);
            }
        }
        let result = result.unwrap_or_else(|| json!({"cniVersion": self.version()}));
        self.write_cache(at, &result)?;
        Ok(result)
    }

    /// CHECK against the cached ADD result.
    pub async fn check(&self, at: &Attachment) -> Result<(), CniError> {
        let cached = self.read_cache(at);
        for plugin in self.plugins() {
            let config = self.plugin_config(plugin, cached.as_ref(), at);
            self.exec(Command::Check, plugin, &config, at).await?;
        }
        Ok(())
    }

    /// DEL through every plugin in reverse order with the cached result; every
    /// plugin runs even if an earlier one failed, and all errors are returned.
    pub async fn del(&self, at: &Attachment) -> Result<(), Vec<CniError>> {
        let cached = self.read_cache(at);
        let mut errors = Vec::new();
        for plugin in self.plugins().iter().rev() {
            let config = self.plugin_config(plugin, cached.as_ref(), at);
            if let Err(e) = self.exec(Command::Del, plugin, &config, at).await {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            let path = self.cache_path(at);
            if let Err(source) = std::fs::remove_file(&path) {
                if source.kind() != std::io::ErrorKind::NotFound {
                    errors.push(CniError::Cache {
                        action: "removing",
                        path,
                        source,
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn write_cache(&self, at: &Attachment, result: &Value) -> Result<(), CniError> {
        let path = self.cache_path(at);
        let io = |action, source| CniError::Cache {
            action,
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(|e| io("creating the directory of", e))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, result.to_string()).map_err(|e| io("writing", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("renaming", e))
    }

    fn read_cache(&self, at: &Attachment) -> Option<Value> {
        let text = std::fs::read_to_string(self.cache_path(at)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The first IPv4 address of an ADD result (`ips[].address`, CIDR form).
pub fn first_ipv4(result: &Value) -> Option<std::net::Ipv4Addr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next())
        .find_map(|a| a.parse().ok())
}

/// skiff's default network: the node's bridge (`--cni-bridge`, `cni0` by default,
/// the pods' gateway) with host-local IPAM over the node's pod CIDR, hairpin, and
/// portmap for hostPorts. No masquerading here: pod traffic to other nodes keeps its
/// source, and egress masquerading belongs to the node's services data plane.
pub fn default_conflist(pod_cidr: &str, ipam_dir: &Path, bridge: &str, mtu: Option<u32>) -> Value {
    let mut conflist = json!({
        "cniVersion": "1.0.0",
        "name": "skiff",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam_dir}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    });
    // The pod network's MTU (the uplink's, less the overlay's header), so pods never
    // send what the tunnel must fragment.
    if let Some(mtu) = mtu {
        conflist["plugins"][0]["mtu"] = json!(mtu);
    }
    conflist
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        let mut runtime_config = Map::new();
        runtime_config.insert(
            "portMappings".into(),
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        runtime_config.insert("bandwidth".into(), json!({}));
        Attachment {
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![],
            runtime_config,
        }
    }

    #[test]
    fn plugin_configs_get_name_version_prev_result_and_only_declared_capabilities() {
        let conflist = default_conflist("10.42.0.0/24", Path::new("/tmp/ipam"), "cni0", Some(1450));
        let invoker = Invoker::new(vec![], "/tmp/cache".into(), conflist.clone()).unwrap();
        let prev = json!({"ips": [{"address": "10.42.0.5/24"}]});
        let bridge = invoker.plugin_config(&conflist["plugins"][0], None, &attachment());
        assert_eq!(bridge["name"], "skiff");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("runtimeConfig").is_none());
        assert_eq!(bridge["mtu"], 1450);
        let portmap = invoker.plugin_config(&conflist["plugins"][1], Some(&prev), &attachment());
        assert_eq!(portmap["prevResult"], prev);
        assert!(portmap["runtimeConfig"]["portMappings"].is_array());
        assert!(portmap["runtimeConfig"].get("bandwidth").is_none());
        assert!(portmap.get("capabilities").is_none());
        assert_eq!(first_ipv4(&prev), Some("10.42.0.5".parse().unwrap()));
    }

    #[test]
    fn bad_conflists_and_missing_plugins_are_clear_errors() {
        assert!(Invoker::new(vec![], "/tmp".into(), json!({"name": "x", "plugins": []})).is_err());
        let invoker = Invoker::new(
            vec!["/nonexistent".into()],
            "/tmp".into(),
            json!({"name": "x", "plugins": [{"type": "nope"}]}),
        )
        .unwrap();
        let err = invoker.find_plugin("nope").unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("/nonexistent"),
            "{err}"
        );
    }
}
