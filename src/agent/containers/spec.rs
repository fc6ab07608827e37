//! From a pod's container to the runtime's `ContainerConfig`: the command as
//! Kubernetes combines `command`/`args` with the image's Entrypoint/Cmd, the
//! environment, user, working directory, mounts (volumes, `/etc/hosts`,
//! `/etc/resolv.conf`), security context, resources → cgroup limits, and the pod
//! sandbox's namespaces. Also each container's overlay root filesystem. Pure except
//! for the rootfs mounts and reading the image's `/etc/passwd` for user names.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::sandbox::Sandbox;
use super::volumes::expand;
use crate::image::ImageConfig;
use crate::runtime::{
    BindMount, CapabilityChanges, ContainerConfig, Limits, LogConfig, SandboxNamespaces, UserIds,
};

/// Annotations that tie a container to its pod, read back on re-adoption.
pub const POD_UID: &str = "dev.skiff.pod.uid";
pub const CONTAINER_NAME: &str = "dev.skiff.container.name";
pub const ATTEMPT: &str = "dev.skiff.container.attempt";
pub const IMAGE: &str = "dev.skiff.container.image";
pub const IMAGE_ID: &str = "dev.skiff.container.image-id";

/// Everything one container needs, gathered by the pod worker.
pub struct Input<'a> {
    pub id: &'a str,
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub attempt: u32,
    pub image: &'a ImageConfig,
    pub image_id: &'a str,
    pub rootfs: &'a Path,
    /// The pod spec's environment for this container, resolved.
    pub env: &'a [(String, String)],
    pub volumes: &'a HashMap<String, PathBuf>,
    pub sandbox: &'a Sandbox,
    pub log_path: PathBuf,
    /// The node's `--cgroup-root`.
    pub cgroup_root: &'a Path,
}

/// The process to run: Kubernetes' rules for command, args, Entrypoint and Cmd.
pub fn command(
    container: &Container,
    image: &ImageConfig,
    env: &[(String, String)],
) -> Vec<String> {
    let defaults = image.config.clone().unwrap_or_default();
    let entrypoint = defaults.entrypoint.unwrap_or_default();
    let cmd = defaults.cmd.unwrap_or_default();
    let expanded =
        |list: &[String]| -> Vec<String> { list.iter().map(|a| expand(a, env)).collect() };
    match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut all = expanded(command);
            all.extend(expanded(args.as_deref().unwrap_or_default()));
            all
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut all = entrypoint;
            all.extend(expanded(args));
            all
        }
        _ => {
            let mut all = entrypoint;
            all.extend(cmd);
            all
        }
    }
}

/// The image's environment, then the pod's (which wins), then HOSTNAME.
fn environment(
    image: &ImageConfig,
    pod_env: &[(String, String)],
    hostname: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = image
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let mut set = |k: &str, v: &str| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    };
    set("HOSTNAME", hostname);
    for (k, v) in pod_env {
        set(k, v);
    }
    env
}

/// The container's security context over the pod's.
fn security(pod: &Pod, container: &Container) -> (SecurityContext, Vec<u32>) {
    let pod_ctx = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let mut ctx = container.security_context.clone().unwrap_or_default();
    ctx.run_as_user = ctx.run_as_user.or(pod_ctx.run_as_user);
    ctx.run_as_group = ctx.run_as_group.or(pod_ctx.run_as_group);
    let mut groups: Vec<u32> = pod_ctx
        .supplemental_groups
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs_group) = pod_ctx.fs_group {
        groups.push(fs_group as u32);
    }
    (ctx, groups)
}

/// Looks a user or group name up in the image's `/etc/passwd` or `/etc/group`.
fn lookup(rootfs: &Path, file: &str, name: &str) -> Option<(u32, Option<u32>)> {
    let text = std::fs::read_to_string(rootfs.join("etc").join(file)).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) || fields.len() < 3 {
            return None;
        }
        let id = fields[2].parse().ok()?;
        let gid = fields.get(3).and_then(|g| g.parse().ok());
        Some((id, gid))
    })
}

/// uid and gid: the security context's, else the image's `User` (numeric or a name
/// from its `/etc/passwd`), else root.
fn user(
    ctx: &SecurityContext,
    image: &ImageConfig,
    rootfs: &Path,
    groups: Vec<u32>,
) -> Result<UserIds, String> {
    let image_user = image
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (image_user.clone(), None),
    };
    let (mut uid, mut gid) = (0u32, 0u32);
    if !user_part.is_empty() {
        match user_part.parse::<u32>() {
            Ok(n) => uid = n,
            Err(_) => {
                let (id, primary) = lookup(rootfs, "passwd", &user_part).ok_or_else(|| {
                    format!("unable to find user {user_part}: no matching entries in passwd file")
                })?;
                uid = id;
                gid = primary.unwrap_or(0);
            }
        }
    }
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(rootfs, "group", &g)
                .map(|(id, _)| id)
                .ok_or_else(|| format!("unable to find group {g}"))?,
        };
    }
    if let Some(u) = ctx.run_as_user {
        uid = u as u32;
    }
    if let Some(g) = ctx.run_as_group {
        gid = g as u32;
    }
    Ok(UserIds {
        uid,
        gid,
        additional_gids: groups,
    })
}

fn millis(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<u64> {
    crate::model::quantity::parse_quantity(&q.0)
        .ok()
        .map(|v| (v * 1000.0).ceil() as u64)
}

/// Resource limits and requests → cgroup limits (a CPU limit without a request
/// requests the limit, as the API server defaults it).
pub fn limits(container: &Container) -> Limits {
    let resources = container.resources.clone().unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let cpu_limit = limits.get("cpu").and_then(millis);
    Limits {
        cpu_quota_millis: cpu_limit,
        cpu_request_millis: requests.get("cpu").and_then(millis).or(cpu_limit),
        memory_bytes: limits
            .get("memory")
            .and_then(|q| crate::model::quantity::parse_quantity(&q.0).ok())
            .map(|b| b as i64),
        pids: None,
        open_files: None,
    }
}

/// Whether the pod's volume source itself is read-only (`persistentVolumeClaim`
/// with `readOnly: true`): every mount of it is then read-only.
fn source_read_only(pod: &Pod, volume: &str) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .find(|v| v.name == volume)
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .and_then(|c| c.read_only)
        .unwrap_or(false)
}

/// Volume mounts, then the kubelet-managed files.
fn mounts(input: &Input) -> Result<Vec<BindMount>, String> {
    let mut mounts = Vec::new();
    for m in input.container.volume_mounts.iter().flatten() {
        let source = input
            .volumes
            .get(&m.name)
            .ok_or_else(|| format!("volume {:?} is not defined in the pod", m.name))?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let sub = expand(sub, input.env);
                if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                    return Err(format!("invalid subPath {sub:?}"));
                }
                let path = source.join(sub);
                if !path.exists() {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                path
            }
            None => source.clone(),
        };
        mounts.push(BindMount {
            source,
            destination: PathBuf::from(&m.mount_path),
            read_only: m.read_only.unwrap_or(false) || source_read_only(input.pod, &m.name),
        });
    }
    let taken = |dest: &str| mounts.iter().any(|m| m.destination == Path::new(dest));
    let mut managed = Vec::new();
    for file in ["hosts", "resolv.conf", "hostname"] {
        let dest = format!("/etc/{file}");
        if !taken(&dest) {
            managed.push(BindMount {
                source: input.sandbox.etc(file),
                destination: dest.into(),
                read_only: false,
            });
        }
    }
    mounts.extend(managed);
    Ok(mounts)
}

/// A namespace of the agent process itself, for hostNetwork pods: by the agent's
/// pid, so the path means the agent's namespace whichever process opens it (the
/// runtime's shim is a separate process), and never `/proc/1`, which a process in
/// a container or on a restricted host may not open.
fn agent_namespace(kind: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/{kind}", std::process::id()))
}

/// The runtime config for one container.
pub fn container_config(input: &Input) -> Result<ContainerConfig, String> {
    let (ctx, groups) = security(input.pod, input.container);
    let hostname = super::sandbox::pod_hostname(input.pod);
    let env = environment(input.image, input.env, &hostname);
    let args = command(input.container, input.image, &env);
    if args.is_empty() {
        return Err(
            "no command specified: the image has no Entrypoint or Cmd and the pod gives no command"
                .into(),
        );
    }
    let image_dir = input
        .image
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone());
    let working_dir = input
        .container
        .working_dir
        .clone()
        .or(image_dir)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let capabilities = ctx.capabilities.clone().unwrap_or_default();
    let host_network = input.sandbox.record.host_network;
    let ns = |kind: &str| Some(input.sandbox.ns_path(kind));
    let namespaces = SandboxNamespaces {
        network: if host_network {
            Some(agent_namespace("net"))
        } else {
            ns("net")
        },
        ipc: ns("ipc"),
        uts: if host_network {
            Some(agent_namespace("uts"))
        } else {
            ns("uts")
        },
        pid: None,
    };
    let mut annotations = BTreeMap::new();
    annotations.insert(POD_UID.to_string(), input.sandbox.record.uid.clone());
    annotations.insert(CONTAINER_NAME.to_string(), input.container.name.clone());
    annotations.insert(ATTEMPT.to_string(), input.attempt.to_string());
    annotations.insert(
        IMAGE.to_string(),
        input.container.image.clone().unwrap_or_default(),
    );
    annotations.insert(IMAGE_ID.to_string(), input.image_id.to_string());
    let c = input.container;
    annotations.extend(crate::runtime::attach::stdio_annotations(
        c.stdin.unwrap_or(false),
        c.stdin_once.unwrap_or(false),
        c.tty.unwrap_or(false),
    ));
    Ok(ContainerConfig {
        id: input.id.to_string(),
        rootfs: input.rootfs.to_path_buf(),
        args,
        env,
        working_dir,
        user: user(&ctx, input.image, input.rootfs, groups)?,
        hostname: None,
        mounts: mounts(input)?,
        shm: Some(input.sandbox.shm()),
        readonly_rootfs: ctx.read_only_root_filesystem.unwrap_or(false),
        privileged: ctx.privileged.unwrap_or(false),
        capabilities: CapabilityChanges {
            add: capabilities.add.unwrap_or_default(),
            drop: capabilities.drop.unwrap_or_default(),
        },
        no_new_privileges: ctx.allow_privilege_escalation == Some(false),
        oom_score_adj: None,
        limits: limits(input.container),
        cgroup_path: input.cgroup_root.join(input.id),
        namespaces,
        log: LogConfig {
            path: input.log_path.clone(),
            ..LogConfig::default()
        },
        annotations,
    })
}

/// Mounts an overlay of `layers` (top first) with a fresh writable layer at
/// `dir/rootfs`; returns the mount point. An image without layers gets an empty
/// writable directory.
pub fn mount_rootfs(dir: &Path, layers: &[PathBuf]) -> Result<PathBuf, String> {
    let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &rootfs] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    if layers.is_empty() {
        return Ok(upper);
    }
    let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("mounting the overlay rootfs on {}: {e}", rootfs.display()))?;
    Ok(rootfs)
}

/// Unmounts a container's rootfs and removes its directory.
pub fn remove_rootfs(dir: &Path) -> Result<(), String> {
    let rootfs = dir.join("rootfs");
    match umount2(&rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(format!("unmounting {}: {e}", rootfs.display())),
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        serde_json::from_value(json!({"config": {"Entrypoint": entrypoint, "Cmd": cmd,
            "Env": ["PATH=/bin", "A=image"], "User": "1000:1000"}}))
        .unwrap()
    }

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn command_and_args_combine_with_the_image_as_in_kubernetes() {
        let img = image(&["/ep"], &["cmd"]);
        let env = vec![("X".to_string(), "1".to_string())];
        let c = |j| container(j);
        assert_eq!(
            command(&c(json!({"name": "c"})), &img, &env),
            ["/ep", "cmd"]
        );
        assert_eq!(
            command(&c(json!({"name": "c", "args": ["a$(X)"]})), &img, &env),
            ["/ep", "a1"]
        );
        assert_eq!(
            command(&c(json!({"name": "c", "command": ["/c"]})), &img, &env),
            ["/c"]
        );
        assert_eq!(
            command(
                &c(json!({"name": "c", "command": ["/c"], "args": ["b"]})),
                &img,
                &env
            ),
            ["/c", "b"]
        );
    }

    #[test]
    fn pod_environment_wins_over_the_image() {
        let env = environment(&image(&[], &[]), &[("A".into(), "pod".into())], "h");
        assert!(env.contains(&("A".into(), "pod".into())));
        assert!(env.contains(&("PATH".into(), "/bin".into())));
        assert!(env.contains(&("HOSTNAME".into(), "h".into())));
    }

    #[test]
    fn host_network_uses_the_agents_own_namespaces() {
        let net = agent_namespace("net");
        assert_eq!(
            net,
            PathBuf::from(format!("/proc/{}/ns/net", std::process::id()))
        );
        // The same namespace as the agent's, readable without touching pid 1.
        assert_eq!(
            std::fs::read_link(&net).unwrap(),
            std::fs::read_link("/proc/self/ns/net").unwrap()
        );
    }

    #[test]
    fn users_come_from_the_context_then_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(&[], &[]);
        let ctx = SecurityContext::default();
        let ids = user(&ctx, &img, dir.path(), vec![]).unwrap();
        assert_eq!((ids.uid, ids.gid), (1000, 1000));
        let ctx = SecurityContext {
            run_as_user: Some(5),
            ..Default::default()
        };
        assert_eq!(user(&ctx, &img, dir.path(), vec![]).unwrap().uid, 5);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "www:x:33:34::/:/bin/sh\n").unwrap();
        let named: ImageConfig =
            serde_json::from_value(json!({"config": {"User": "www"}})).unwrap();
        let ids = user(&SecurityContext::default(), &named, dir.path(), vec![]).unwrap();
        assert_eq!((ids.uid, ids.gid), (33, 34));
        let missing: ImageConfig =
            serde_json::from_value(json!({"config": {"User": "nobody"}})).unwrap();
        assert!(user(&SecurityContext::default(), &missing, dir.path(), vec![]).is_err());
    }

    #[test]
    fn limits_come_from_resources() {
        let c = container(
            json!({"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}}),
        );
        let l = limits(&c);
        assert_eq!(l.cpu_quota_millis, Some(500));
        assert_eq!(l.cpu_request_millis, Some(500));
        assert_eq!(l.memory_bytes, Some(256 * 1024 * 1024));
    }
}
