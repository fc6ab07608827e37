//! The `loopback` plugin: brings `lo` up in the container's namespace (and down on
//! DEL; a namespace already gone is fine).
//!
//! Owns: nothing but `lo`. Calls: `link`.

use serde_json::{json, Value};

use super::link;
use super::protocol::{Call, Plugin, PluginError};

pub struct Loopback;

impl Plugin for Loopback {
    fn add(&self, call: &Call) -> Result<Value, PluginError> {
        let netns = call.netns()?;
        link::in_netns(netns, || link::ip(&["link", "set", "lo", "up"]).map(drop))?
            .ok_or_else(|| missing(netns))?;
        Ok(json!({
            "cniVersion": call.version,
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": netns}],
            "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}],
            "dns": {},
        }))
    }

    fn check(&self, call: &Call) -> Result<(), PluginError> {
        let netns = call.netns()?;
        let up = link::in_netns(netns, || link::is_up("lo"))?.ok_or_else(|| missing(netns))?;
        if up {
            Ok(())
        } else {
            Err(PluginError::internal("lo is down"))
        }
    }

    fn del(&self, call: &Call) -> Result<(), PluginError> {
        if let Some(netns) = &call.netns {
            link::in_netns(netns, || link::ip(&["link", "set", "lo", "down"]).map(drop))?;
        }
        Ok(())
    }
}

fn missing(netns: &std::path::Path) -> PluginError {
    PluginError::internal(format!("netns {} does not exist", netns.display()))
}
