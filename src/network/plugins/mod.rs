//! The built-in CNI plugins — `bridge`, `host-local`, `portmap` and `loopback` — in
//! the skiff binary itself: invoked through links named after them (the agent keeps
//! `<data-dir>/agent/cni/bin/<plugin>` pointing at its own executable), `main` runs
//! the plugin its file name asks for before anything else. They speak CNI 1.0
//! (`protocol`) and are the default, so a node needs no containernetworking-plugins;
//! `--cni-bin-dir` still points skiff at other plugins instead.
//!
//! Owns: the plugins and their links. Calls: `crate::network::nft`, `ip` (see `link`).

pub mod bridge;
pub mod host_local;
pub mod link;
pub mod loopback;
pub mod portmap;
pub mod protocol;
pub mod rules;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The names the binary answers to as a plugin.
pub const NAMES: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];

/// The plugin called `name`, if it is one of ours.
pub fn plugin(name: &str) -> Option<&'static dyn protocol::Plugin> {
    match name {
        "bridge" => Some(&bridge::Bridge),
        "host-local" => Some(&host_local::HostLocal),
        "portmap" => Some(&portmap::Portmap),
        "loopback" => Some(&loopback::Loopback),
        _ => None,
    }
}

/// When the process was started through a plugin's name (`argv[0]`), runs that
/// plugin and returns its exit code.
pub fn run_if_invoked_as_plugin() -> Option<ExitCode> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    plugin(&name).map(protocol::run)
}

#[derive(Debug, thiserror::Error)]
#[error("linking the cni plugin {link} to {target}: {source}")]
pub struct LinkError {
    link: PathBuf,
    target: PathBuf,
    source: std::io::Error,
}

/// Makes `dir/<plugin>` a symlink to `target` (the running executable) for every
/// built-in plugin, replacing links that point elsewhere.
pub fn install_links(dir: &Path, target: &Path) -> Result<(), LinkError> {
    let fail = |link: &Path, source| LinkError {
        link: link.to_path_buf(),
        target: target.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    for name in NAMES {
        let link = dir.join(name);
        if std::fs::read_link(&link).ok().as_deref() == Some(target) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(|e| fail(&tmp, e))?;
        std::fs::rename(&tmp, &link).map_err(|e| fail(&link, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_made_and_repointed() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        install_links(&bin, Path::new("/old/skiff")).unwrap();
        install_links(&bin, Path::new("/new/skiff")).unwrap();
        for name in NAMES {
            assert_eq!(
                std::fs::read_link(bin.join(name)).unwrap(),
                Path::new("/new/skiff")
            );
            assert!(plugin(name).is_some());
        }
        assert!(plugin("skiff").is_none());
    }
}
