//! A pod's sandbox: what its containers share. Its network namespace (attached to
//! the node's pod network through CNI), IPC and UTS namespaces (kept alive as bind
//! mounts, so no pause container is needed), `/etc/hosts`, `/etc/resolv.conf`, a
//! shared `/dev/shm`, and the directory everything else of the pod lives in.
//!
//! On disk, under `<data-dir>/agent/pods/<uid>/`:
//!
//! ```text
//! sandbox.json        namespace, name, ip, start time (re-adoption after a restart)
//! ns/{net,ipc,uts}    the namespaces, bind-mounted
//! etc/                hosts, resolv.conf, hostname
//! shm/                the pod's /dev/shm (tmpfs)
//! volumes/<name>/     emptyDir, configMap and secret volumes
//! containers/<id>/    each container's overlay rootfs (upper, work, rootfs)
//! ```
//!
//! Teardown runs every step even if one fails and returns every error.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::network::cni::{self, Attachment, Invoker};
use crate::network::netns::{self, Kind};

/// The pod network's interface inside the sandbox.
const POD_IFNAME: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{action} {path}: {errno}")]
    Sys {
        action: &'static str,
        path: PathBuf,
        errno: nix::Error,
    },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Cni(#[from] cni::CniError),
    #[error("the pod network gave pod {pod} no IPv4 address")]
    NoAddress { pod: String },
}

/// The pod network: CNI invokers for the pod interface and the loopback.
pub struct Network {
    pub pod: Invoker,
    pub loopback: Invoker,
}

impl Network {
    /// skiff's default network over `pod_cidr`, with its state under `state_dir`.
    pub fn new(
        plugin_dirs: Vec<PathBuf>,
        state_dir: &Path,
        conflist: Value,
    ) -> Result<Self, SandboxError> {
        let cache = state_dir.join("cache");
        let loopback =
            json!({"cniVersion": "1.0.0", "name": "skiff-lo", "plugins": [{"type": "loopback"}]});
        Ok(Network {
            pod: Invoker::new(plugin_dirs.clone(), cache.clone(), conflist)?,
            loopback: Invoker::new(plugin_dirs, cache, loopback)?,
        })
    }
}

/// What is remembered of a sandbox across agent restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub ip: Option<IpAddr>,
    pub started_at: DateTime<Utc>,
    pub host_network: bool,
    /// The CNI `runtimeConfig` the pod interface was added with (its port
    /// mappings): DEL passes it again, as plugins such as portmap need it to find
    /// what they made.
    #[serde(default)]
    pub runtime_config: Map<String, Value>,
}

/// A pod's sandbox on disk.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub dir: PathBuf,
    pub record: SandboxRecord,
}

/// Files of a sandbox directory.
pub fn record_path(dir: &Path) -> PathBuf {
    dir.join("sandbox.json")
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
    let path = path.to_path_buf();
    move |source| SandboxError::Io {
        action,
        path,
        source,
    }
}

/// Reads a sandbox left by an earlier run of the agent.
pub fn load(dir: &Path) -> Option<Sandbox> {
    let bytes = std::fs::read(record_path(dir)).ok()?;
    let record = serde_json::from_slice(&bytes).ok()?;
    Some(Sandbox {
        dir: dir.to_path_buf(),
        record,
    })
}

/// The DNS settings containers get.
#[derive(Debug, Clone)]
pub struct Dns {
    pub server: IpAddr,
    pub domain: String,
}

impl Sandbox {
    pub fn ns_path(&self, kind: &str) -> PathBuf {
        self.dir.join("ns").join(kind)
    }

    pub fn etc(&self, file: &str) -> PathBuf {
        self.dir.join("etc").join(file)
    }

    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }

    pub fn volumes_dir(&self) -> PathBuf {
        self.dir.join("volumes")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.dir.join("containers")
    }

    /// Creates the sandbox: directories, namespaces, network, files.
    pub async fn create(
        dir: &Path,
        pod: &Pod,
        network: &Arc<Network>,
        dns: &Dns,
    ) -> Result<Sandbox, SandboxError> {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let mut sandbox = Sandbox {
            dir: dir.to_path_buf(),
            record: SandboxRecord {
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
                ip: None,
                started_at: Utc::now(),
                host_network,
                runtime_config: port_mappings(pod),
            },
        };
        for sub in ["ns", "etc", "shm", "volumes", "containers"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
        }
        // Record first, so a crash half-way still leaves something to tear down.
        sandbox.save()?;
        let shm = sandbox.shm();
        mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )
        .map_err(|errno| SandboxError::Sys {
            action: "mounting tmpfs on",
            path: shm.clone(),
            errno,
        })?;
        let hostname = pod_hostname(pod);
        let ns_dir = dir.join("ns");
        let dir_for_ns = ns_dir.clone();
        let name = hostname.clone();
        tokio::task::spawn_blocking(move || -> Result<(), SandboxError> {
            netns::create_kind(&dir_for_ns.join("ipc"), Kind::Ipc, None)?;
            if !host_network {
                netns::create_kind(&dir_for_ns.join("uts"), Kind::Uts, Some(&name))?;
                netns::create_kind(&dir_for_ns.join("net"), Kind::Net, None)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| SandboxError::Io {
            action: "creating namespaces in",
            path: ns_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
        if !host_network {
            network
                .loopback
                .add(&sandbox.attachment("lo", Map::new()))
                .await?;
            let result = network
                .pod
                .add(&sandbox.attachment(POD_IFNAME, sandbox.record.runtime_config.clone()))
                .await?;
            let ip = cni::first_ipv4(&result).ok_or_else(|| SandboxError::NoAddress {
                pod: sandbox.record.name.clone(),
            })?;
            sandbox.record.ip = Some(IpAddr::V4(ip));
        }
        sandbox.write_etc(&hostname, dns, &spec)?;
        sandbox.save()?;
        Ok(sandbox)
    }

    fn save(&self) -> Result<(), SandboxError> {
        let path = record_path(&self.dir);
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&self.record).unwrap_or_default();
        std::fs::write(&tmp, bytes).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))
    }

    fn attachment(&self, ifname: &str, runtime_config: Map<String, Value>) -> Attachment {
        Attachment {
            container_id: self.record.uid.clone(),
            netns: self.ns_path("net"),
            ifname: ifname.into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), self.record.namespace.clone()),
                ("K8S_POD_NAME".into(), self.record.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), self.record.uid.clone()),
                ("K8S_POD_UID".into(), self.record.uid.clone()),
            ],
            runtime_config,
        }
    }

    fn write_etc(
        &self,
        hostname: &str,
        dns: &Dns,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) -> Result<(), SandboxError> {
        let write = |file: &str, text: String| {
            let path = self.etc(file);
            std::fs::write(&path, text).map_err(io("writing", &path))
        };
        let host_network = self.record.host_network;
        let hostname = if host_network {
            crate::host::hostname()
        } else {
            hostname.to_string()
        };
        write("hostname", format!("{hostname}\n"))?;
        write("hosts", hosts_file(&hostname, self.record.ip, spec))?;
        let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
        let cluster_dns =
            policy == "ClusterFirst" && !host_network || policy == "ClusterFirstWithHostNet";
        let resolv = if cluster_dns {
            resolv_conf(&self.record.namespace, dns)
        } else {
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        };
        write("resolv.conf", resolv)
    }

    /// Tears the sandbox down: network, namespaces, shm, the directory. Every step
    /// runs; every error is returned.
    pub async fn teardown(&self, network: Option<&Arc<Network>>) -> Vec<SandboxError> {
        let mut errors = Vec::new();
        if !self.record.host_network && self.ns_path("net").exists() {
            if let Some(network) = network {
                let pod = network
                    .pod
                    .del(&self.attachment(POD_IFNAME, self.record.runtime_config.clone()))
                    .await;
                errors.extend(
                    pod.err()
                        .unwrap_or_default()
                        .into_iter()
                        .map(SandboxError::Cni),
                );
                let lo = network
                    .loopback
                    .del(&self.attachment("lo", Map::new()))
                    .await;
                errors.extend(
                    lo.err()
                        .unwrap_or_default()
                        .into_iter()
                        .map(SandboxError::Cni),
                );
            }
        }
        for kind in ["net", "ipc", "uts"] {
            if let Err(e) = netns::remove(&self.ns_path(kind)) {
                errors.push(e.into());
            }
        }
        errors.extend(unmount_all_below(&self.dir));
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(io("removing", &self.dir)(e));
            }
        }
        errors
    }
}

/// Unmounts every mount at or below `dir` (deepest first), per /proc/self/mountinfo.
pub fn unmount_all_below(dir: &Path) -> Vec<SandboxError> {
    let mut errors = Vec::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for point in points {
        match umount2(&point, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(errno) => errors.push(SandboxError::Sys {
                action: "unmounting",
                path: point,
                errno,
            }),
        }
    }
    errors
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal.
fn unescape_mount_path(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(n) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// The pod's hostname: `spec.hostname` or the pod name, at most 63 characters.
pub fn pod_hostname(pod: &Pod) -> String {
    let spec_name = pod.spec.as_ref().and_then(|s| s.hostname.clone());
    let name = spec_name
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut name: String = name.chars().take(63).collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

/// `/etc/hosts` as the kubelet writes it.
fn hosts_file(
    hostname: &str,
    ip: Option<IpAddr>,
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        let fqdn = spec
            .subdomain
            .as_ref()
            .map(|s| format!("{hostname}.{s}\t"))
            .unwrap_or_default();
        text.push_str(&format!("{ip}\t{fqdn}{hostname}\n"));
    }
    for alias in spec.host_aliases.iter().flatten() {
        if let Some(names) = alias.hostnames.as_ref().filter(|n| !n.is_empty()) {
            text.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
        }
    }
    text
}

/// `/etc/resolv.conf` for cluster DNS: the search path `<ns>.svc.<domain>
/// svc.<domain> <domain>`.
pub fn resolv_conf(namespace: &str, dns: &Dns) -> String {
    let domain = &dns.domain;
    format!(
        "search {namespace}.svc.{domain} svc.{domain} {domain}\nnameserver {}\noptions ndots:5\n",
        dns.server
    )
}

/// CNI `portMappings` for the containers' `hostPort`s.
fn port_mappings(pod: &Pod) -> Map<String, Value> {
    let mappings: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|h| *h > 0)?;
            Some(json!({
                "hostPort": host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                "hostIP": p.host_ip.clone().unwrap_or_default(),
            }))
        })
        .collect();
    let mut map = Map::new();
    if !mappings.is_empty() {
        map.insert("portMappings".into(), Value::Array(mappings));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn resolv_conf_searches_the_namespace_then_the_cluster() {
        let dns = Dns {
            server: "10.43.0.10".parse().unwrap(),
            domain: "cluster.local".into(),
        };
        assert_eq!(
            resolv_conf("web", &dns),
            "search web.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_name_the_pod_and_its_aliases() {
        let p = pod(
            json!({"metadata": {"name": "web-1"}, "spec": {"containers": [],
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["db", "db.local"]}]}}),
        );
        let text = hosts_file(
            "web-1",
            Some("10.42.0.7".parse().unwrap()),
            p.spec.as_ref().unwrap(),
        );
        assert!(text.contains("10.42.0.7\tweb-1\n"), "{text}");
        assert!(text.contains("10.1.2.3\tdb\tdb.local\n"), "{text}");
        assert_eq!(pod_hostname(&p), "web-1");
    }

    #[test]
    fn host_ports_become_cni_port_mappings() {
        let p = pod(
            json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c",
            "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]}}),
        );
        let map = port_mappings(&p);
        let list = map["portMappings"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["hostPort"], 8080);
        assert_eq!(list[0]["protocol"], "tcp");
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
