//! The `host-local` IPAM plugin: IPv4 addresses from `ranges` (range sets of
//! `{subnet, rangeStart, rangeEnd, gateway}`, or the older single `subnet`), one per
//! range set, with its state laid out as containernetworking's host-local does, so
//! either can take over the other's directory: `<dataDir>/<network>/<ip>` holding
//! `<container id>\r\n<ifname>`, `last_reserved_ip.<set>`, and `lock` (flock).
//! skiff's default dataDir is `<data-dir>/agent/cni/ipam`. IPv6 ranges and
//! `resolvConf` are not supported (skiff's pod network is IPv4); `dns` passes through.
//!
//! Owns: the IPAM state directory. Calls: nothing in skiff.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::protocol::{Call, Plugin, PluginError};

pub struct HostLocal;

const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangeConf {
    subnet: String,
    range_start: Option<Ipv4Addr>,
    range_end: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpamConf {
    #[serde(default)]
    ranges: Vec<Vec<RangeConf>>,
    subnet: Option<String>,
    range_start: Option<Ipv4Addr>,
    range_end: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    #[serde(default)]
    routes: Vec<Value>,
    data_dir: Option<PathBuf>,
    dns: Option<Value>,
}

/// One usable range: addresses `start..=end` of `network/prefix`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    network: u32,
    prefix: u8,
    start: u32,
    end: u32,
    gateway: u32,
}

impl Range {
    fn parse(conf: &RangeConf) -> Result<Range, PluginError> {
        let bad =
            |why: &str| PluginError::config(format!("invalid range {:?}: {why}", conf.subnet));
        let (addr, prefix) = conf
            .subnet
            .split_once('/')
            .ok_or_else(|| bad("not in CIDR form"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("only IPv4 subnets are supported"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 30)
            .ok_or_else(|| bad("prefix must be at most 30"))?;
        let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
        let network = u32::from(addr) & mask;
        let broadcast = network | !mask;
        let inside = |ip: Option<Ipv4Addr>, default: u32, what: &str| match ip {
            None => Ok(default),
            Some(ip) if (u32::from(ip) & mask) == network => Ok(u32::from(ip)),
            Some(ip) => Err(bad(&format!("{what} {ip} is outside the subnet"))),
        };
        let range = Range {
            network,
            prefix,
            start: inside(conf.range_start, network + 1, "rangeStart")?,
            end: inside(conf.range_end, broadcast - 1, "rangeEnd")?,
            gateway: inside(conf.gateway, network + 1, "gateway")?,
        };
        if range.start > range.end {
            return Err(bad("rangeStart is after rangeEnd"));
        }
        Ok(range)
    }

    fn contains(&self, ip: u32) -> bool {
        (self.start..=self.end).contains(&ip)
    }

    fn cidr(&self, ip: u32) -> String {
        format!("{}/{}", Ipv4Addr::from(ip), self.prefix)
    }
}

type RangeSet = Vec<Range>;

fn range_sets(conf: &IpamConf) -> Result<Vec<RangeSet>, PluginError> {
    let mut sets = conf.ranges.clone();
    if let Some(subnet) = &conf.subnet {
        sets.push(vec![RangeConf {
            subnet: subnet.clone(),
            range_start: conf.range_start,
            range_end: conf.range_end,
            gateway: conf.gateway,
        }]);
    }
    if sets.is_empty() || sets.iter().any(Vec::is_empty) {
        return Err(PluginError::config("host-local needs at least one range"));
    }
    sets.iter()
        .map(|set| set.iter().map(Range::parse).collect())
        .collect()
}

fn ipam_conf(call: &Call) -> Result<IpamConf, PluginError> {
    let ipam = call.config.get("ipam").cloned().unwrap_or_default();
    serde_json::from_value(ipam)
        .map_err(|e| PluginError::config(format!("invalid ipam config: {e}")))
}

/// The state directory of one network, locked while it is alive.
pub struct Store {
    dir: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Store {
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, PluginError> {
        if network.is_empty() || network.contains('/') || network.starts_with('.') {
            return Err(PluginError::config(format!(
                "invalid network name {network:?}"
            )));
        }
        let dir = data_dir.join(network);
        let io = |what: &str, e: std::io::Error| {
            PluginError::internal(format!("{what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", e))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(|e| io("opening the lock in", e))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io("locking", e.into()))?;
        Ok(Store { dir, _lock: lock })
    }

    /// Reserves `ip` for the container; false if it is taken.
    fn reserve(&self, ip: u32, id: &str, ifname: &str, set: usize) -> Result<bool, PluginError> {
        let path = self.dir.join(Ipv4Addr::from(ip).to_string());
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => {
                return Err(PluginError::internal(format!(
                    "creating {}: {e}",
                    path.display()
                )))
            }
        };
        file.write_all(format!("{}\r\n{ifname}", id.trim()).as_bytes())
            .map_err(|e| PluginError::internal(format!("writing {}: {e}", path.display())))?;
        let last = self.dir.join(format!("last_reserved_ip.{set}"));
        std::fs::write(&last, Ipv4Addr::from(ip).to_string())
            .map_err(|e| PluginError::internal(format!("writing {}: {e}", last.display())))?;
        Ok(true)
    }

    fn last_reserved(&self, set: usize) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.dir.join(format!("last_reserved_ip.{set}"))).ok()?;
        text.trim().parse::<Ipv4Addr>().ok().map(u32::from)
    }

    /// The addresses held by the container's interface (older files hold only the id).
    fn held_by(&self, id: &str, ifname: &str) -> Vec<(u32, PathBuf)> {
        let wanted = format!("{}\r\n{ifname}", id.trim());
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let ip: Ipv4Addr = entry.file_name().to_str()?.parse().ok()?;
                let text = std::fs::read_to_string(entry.path()).ok()?;
                (text.trim() == wanted || text.trim() == id.trim())
                    .then(|| (u32::from(ip), entry.path()))
            })
            .collect()
    }

    /// Reserves the next free address of `set` after the last one reserved.
    fn allocate(
        &self,
        ranges: &RangeSet,
        set: usize,
        id: &str,
        ifname: &str,
    ) -> Result<(Range, u32), PluginError> {
        let candidates: Vec<(Range, u32)> = ranges
            .iter()
            .flat_map(|r| (r.start..=r.end).map(move |ip| (*r, ip)))
            .collect();
        let after = self
            .last_reserved(set)
            .and_then(|last| candidates.iter().position(|(_, ip)| *ip == last))
            .map(|i| i + 1)
            .unwrap_or(0);
        for i in 0..candidates.len() {
            let (range, ip) = candidates[(after + i) % candidates.len()];
            if ip != range.gateway && self.reserve(ip, id, ifname, set)? {
                return Ok((range, ip));
            }
        }
        let first = ranges
            .first()
            .map(|r| Ipv4Addr::from(r.start).to_string())
            .unwrap_or_default();
        let last = ranges
            .last()
            .map(|r| Ipv4Addr::from(r.end).to_string())
            .unwrap_or_default();
        Err(PluginError::internal(format!(
            "no IP addresses available in range set: {first}-{last}"
        )))
    }
}

fn data_dir(conf: &IpamConf) -> PathBuf {
    conf.data_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into())
}

impl Plugin for HostLocal {
    fn add(&self, call: &Call) -> Result<Value, PluginError> {
        let conf = ipam_conf(call)?;
        let sets = range_sets(&conf)?;
        let store = Store::open(&data_dir(&conf), call.name())?;
        let held = store.held_by(&call.container_id, &call.ifname);
        if let Some((ip, _)) = held
            .iter()
            .find(|(ip, _)| sets.iter().flatten().any(|r| r.contains(*ip)))
        {
            return Err(PluginError::internal(format!(
                "{} has been allocated to {}, duplicate allocation is not allowed",
                Ipv4Addr::from(*ip),
                call.container_id
            )));
        }
        let mut ips = Vec::new();
        let mut taken = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            match store.allocate(set, i, &call.container_id, &call.ifname) {
                Ok((range, ip)) => {
                    taken.push(ip);
                    ips.push(json!({"address": range.cidr(ip), "gateway": Ipv4Addr::from(range.gateway).to_string()}));
                }
                Err(e) => {
                    for ip in taken {
                        let _ =
                            std::fs::remove_file(store.dir.join(Ipv4Addr::from(ip).to_string()));
                    }
                    return Err(e);
                }
            }
        }
        let mut result = json!({"cniVersion": call.version, "ips": ips, "dns": conf.dns.unwrap_or_else(|| json!({}))});
        if !conf.routes.is_empty() {
            result["routes"] = json!(conf.routes);
        }
        Ok(result)
    }

    fn check(&self, call: &Call) -> Result<(), PluginError> {
        let conf = ipam_conf(call)?;
        let store = Store::open(&data_dir(&conf), call.name())?;
        if store.held_by(&call.container_id, &call.ifname).is_empty() {
            return Err(PluginError::internal(format!(
                "host-local: failed to find an address of container {}",
                call.container_id
            )));
        }
        Ok(())
    }

    fn del(&self, call: &Call) -> Result<(), PluginError> {
        let conf = ipam_conf(call)?;
        let store = Store::open(&data_dir(&conf), call.name())?;
        for (_, path) in store.held_by(&call.container_id, &call.ifname) {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(PluginError::internal(format!(
                        "removing {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::plugins::protocol::Command;

    fn call(dir: &Path, id: &str, ipam: Value) -> Call {
        let mut ipam = ipam;
        ipam["dataDir"] = json!(dir);
        let config = json!({"cniVersion": "1.0.0", "name": "net", "ipam": ipam});
        Call {
            command: Command::Add,
            container_id: id.into(),
            netns: None,
            ifname: "eth0".into(),
            args: vec![],
            path: vec![],
            stdin: config.to_string().into_bytes(),
            config,
            version: "1.0.0".into(),
        }
    }

    #[test]
    fn ranges_default_to_the_subnet_without_network_gateway_and_broadcast() {
        let r = Range::parse(&RangeConf {
            subnet: "10.42.3.7/24".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(Ipv4Addr::from(r.start), Ipv4Addr::new(10, 42, 3, 1));
        assert_eq!(Ipv4Addr::from(r.end), Ipv4Addr::new(10, 42, 3, 254));
        assert_eq!(Ipv4Addr::from(r.gateway), Ipv4Addr::new(10, 42, 3, 1));
        for subnet in ["10.42.3.0", "fd00::/64", "10.0.0.0/31"] {
            let err = Range::parse(&RangeConf {
                subnet: subnet.into(),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(err.code, 7, "{subnet}");
        }
        let outside = RangeConf {
            subnet: "10.42.3.0/24".into(),
            range_start: Some(Ipv4Addr::new(10, 1, 0, 1)),
            ..Default::default()
        };
        assert_eq!(Range::parse(&outside).unwrap_err().code, 7);
    }

    #[test]
    fn allocation_skips_the_gateway_goes_round_robin_frees_on_del_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = json!({"type": "host-local", "ranges": [[{"subnet": "10.9.0.0/29"}]], "routes": [{"dst": "0.0.0.0/0"}]});
        let first = HostLocal.add(&call(dir.path(), "a", ipam.clone())).unwrap();
        assert_eq!(first["ips"][0]["address"], "10.9.0.2/29");
        assert_eq!(first["ips"][0]["gateway"], "10.9.0.1");
        assert_eq!(first["routes"][0]["dst"], "0.0.0.0/0");
        let text = std::fs::read_to_string(dir.path().join("net/10.9.0.2")).unwrap();
        assert_eq!(text, "a\r\neth0");
        assert_eq!(
            HostLocal
                .add(&call(dir.path(), "a", ipam.clone()))
                .unwrap_err()
                .code,
            999
        );
        let second = HostLocal.add(&call(dir.path(), "b", ipam.clone())).unwrap();
        assert_eq!(second["ips"][0]["address"], "10.9.0.3/29");
        HostLocal.del(&call(dir.path(), "a", ipam.clone())).unwrap();
        HostLocal.del(&call(dir.path(), "a", ipam.clone())).unwrap();
        assert!(HostLocal
            .check(&call(dir.path(), "a", ipam.clone()))
            .is_err());
        HostLocal
            .check(&call(dir.path(), "b", ipam.clone()))
            .unwrap();
        // Round robin: after .3 come .4 .5 .6, then .2 again (freed), never .1 or .7.
        let next: Vec<Value> = ["c", "d", "e", "f"]
            .iter()
            .map(|id| {
                HostLocal.add(&call(dir.path(), id, ipam.clone())).unwrap()["ips"][0]["address"]
                    .clone()
            })
            .collect();
        assert_eq!(
            next,
            vec![
                json!("10.9.0.4/29"),
                json!("10.9.0.5/29"),
                json!("10.9.0.6/29"),
                json!("10.9.0.2/29")
            ]
        );
        let full = HostLocal.add(&call(dir.path(), "g", ipam)).unwrap_err();
        assert!(full.msg.contains("no IP addresses available"), "{full:?}");
    }

    #[test]
    fn explicit_range_bounds_and_the_legacy_subnet_field_are_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = json!({"subnet": "10.9.1.0/24", "rangeStart": "10.9.1.50", "rangeEnd": "10.9.1.60", "gateway": "10.9.1.254"});
        let got = HostLocal.add(&call(dir.path(), "a", ipam)).unwrap();
        assert_eq!(got["ips"][0]["address"], "10.9.1.50/24");
        assert_eq!(got["ips"][0]["gateway"], "10.9.1.254");
        assert!(HostLocal
            .add(&call(dir.path(), "b", json!({"ranges": []})))
            .is_err());
    }
}
