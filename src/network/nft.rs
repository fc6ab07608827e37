//! nftables through the `nft` program: a script goes in on stdin as one atomic
//! transaction (`nft -f -`), so a ruleset is replaced or changed all at once or not
//! at all. Why the program and not netlink from the binary: docs/adr/0011-nftables.md.
//!
//! Owns: running `nft`. Calls: nothing in skiff.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft (install the nftables package): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the ruleset: {message}")]
    Refused { message: String },
}

/// Applies `script` as one transaction.
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(NftError::Spawn)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NftError::Refused {
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Whether `family` has a table named `table`.
pub fn table_exists(family: &str, table: &str) -> Result<bool, NftError> {
    let output = Command::new("nft")
        .args(["list", "table", family, table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(NftError::Spawn)?;
    Ok(output.success())
}

/// Deletes a table and everything in it; a missing table is not an error.
pub fn delete_table(family: &str, table: &str) -> Result<(), NftError> {
    if !table_exists(family, table)? {
        return Ok(());
    }
    apply(&format!("delete table {family} {table}\n"))
}
