//! Links, addresses and routes for the built-in plugins, through iproute2's `ip`
//! (with `-j` for reading), run either in the node's namespace or, from a thread
//! that entered it, in a container's network namespace.
//!
//! Why `ip` and not rtnetlink from the binary: veth pairs created straight into a
//! namespace, bridge ports, addresses and routes are a handful of `ip` lines, while
//! netlink-packet-route's messages (already in Cargo.lock through libcontainer) need
//! a request/ack layer of our own; `ip` is on every node that has `nft`, which skiff
//! needs anyway. The calls are all in this file, so moving to netlink later touches
//! nothing else.
//!
//! Owns: running `ip`, entering a namespace, writing sysctls. Calls: nothing in skiff.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::protocol::PluginError;

/// Runs `ip args…` in the current thread's network namespace; returns stdout.
pub fn ip(args: &[&str]) -> Result<String, PluginError> {
    let output = Command::new("ip")
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|e| PluginError::internal(format!("running ip (install iproute2): {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(PluginError::internal(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// A link's JSON from `ip -j link show`, or `None` when there is no such link.
pub fn link(name: &str) -> Result<Option<Value>, PluginError> {
    match ip(&["-j", "link", "show", "dev", name]) {
        Ok(text) => Ok(serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get(0).cloned())),
        Err(e) if e.msg.contains("does not exist") || e.msg.contains("Cannot find") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The MAC address of `name`.
pub fn mac(name: &str) -> Result<String, PluginError> {
    link(name)?
        .and_then(|l| l["address"].as_str().map(str::to_string))
        .ok_or_else(|| PluginError::internal(format!("link {name} has no address")))
}

/// Whether `name` is administratively up.
pub fn is_up(name: &str) -> Result<bool, PluginError> {
    Ok(link(name)?.is_some_and(|l| {
        l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP"))
    }))
}

/// The IPv4 addresses of `name` in CIDR form.
pub fn addresses(name: &str) -> Result<Vec<String>, PluginError> {
    let text = ip(&["-j", "-4", "addr", "show", "dev", name])?;
    let parsed: Value = serde_json::from_str(&text).unwrap_or_default();
    Ok(parsed
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect())
}

/// Runs `f` in the network namespace at `netns`, on a thread of its own (so no
/// other thread changes namespace). A missing namespace file is `Ok(None)`.
pub fn in_netns<T: Send>(
    netns: &Path,
    f: impl FnOnce() -> Result<T, PluginError> + Send,
) -> Result<Option<T>, PluginError> {
    let file = match std::fs::File::open(netns) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(PluginError::internal(format!(
                "opening netns {}: {e}",
                netns.display()
            )))
        }
    };
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    PluginError::internal(format!("entering netns {}: {e}", netns.display()))
                })?;
                f().map(Some)
            })
            .join()
            .unwrap_or_else(|_| Err(PluginError::internal("netns thread panicked")))
    })
}

/// Writes `value` to a sysctl under `/proc/sys` (e.g. `net/ipv4/ip_forward`).
pub fn sysctl(key: &str, value: &str) -> Result<(), PluginError> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value)
        .map_err(|e| PluginError::internal(format!("writing {}: {e}", path.display())))
}

/// Writes `value` to a file under `/sys` or `/proc` (a bridge port's hairpin mode).
pub fn sysctl_path(path: &str, value: &str) -> Result<(), PluginError> {
    std::fs::write(path, value).map_err(|e| PluginError::internal(format!("writing {path}: {e}")))
}
