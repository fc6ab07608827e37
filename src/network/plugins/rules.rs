//! nftables rules owned per container: every rule a plugin adds for a container
//! carries the container id as its comment, so DEL finds and deletes exactly that
//! container's rules by listing the plugin's tables (`nft -j`), with no state of its
//! own and nothing to do the second time.
//!
//! Owns: finding and deleting rules by comment. Calls: `crate::network::nft`.

use std::process::Command as Process;

use serde_json::Value;

use super::protocol::PluginError;
use crate::network::nft;

/// The container id as an nftables comment (ids are `[A-Za-z0-9_.-]`; others dropped).
pub fn comment(container_id: &str) -> String {
    container_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
        .take(120)
        .collect()
}

pub fn nft_error(e: nft::NftError) -> PluginError {
    PluginError::internal(e.to_string())
}

/// `nft -j …` as JSON.
fn nft_json(args: &[&str]) -> Result<Value, PluginError> {
    let output = Process::new("nft")
        .arg("-j")
        .args(args)
        .output()
        .map_err(|e| PluginError::internal(format!("running nft: {e}")))?;
    if !output.status.success() {
        return Err(PluginError::internal(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| PluginError::internal(format!("reading nft's json: {e}")))
}

/// The `(table, chain, handle)` of every rule commented with `id` in the `ip`
/// tables whose names start with `prefix`.
pub fn rules_of(prefix: &str, id: &str) -> Result<Vec<(String, String, u64)>, PluginError> {
    let tables = nft_json(&["list", "tables", "ip"])?;
    let names: Vec<String> = tables["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["table"]["name"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    let mut rules = Vec::new();
    for name in names {
        let Ok(listing) = nft_json(&["list", "table", "ip", &name]) else {
            continue; // gone meanwhile
        };
        for rule in listing["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("rule"))
        {
            if rule["comment"].as_str() == Some(id) {
                if let (Some(chain), Some(handle)) =
                    (rule["chain"].as_str(), rule["handle"].as_u64())
                {
                    rules.push((name.clone(), chain.to_string(), handle));
                }
            }
        }
    }
    Ok(rules)
}

pub fn delete_rules(prefix: &str, id: &str) -> Result<(), PluginError> {
    let rules = rules_of(prefix, id)?;
    if rules.is_empty() {
        return Ok(());
    }
    let script: String = rules
        .iter()
        .map(|(table, chain, handle)| format!("delete rule ip {table} {chain} handle {handle}\n"))
        .collect();
    nft::apply(&script).map_err(nft_error)
}
