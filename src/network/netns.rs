//! Named network namespaces as files under a directory (like `ip netns`): made by
//! unsharing the network namespace in a short-lived thread and bind-mounting it, so
//! no other thread of the agent ever changes namespace.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
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
}

/// Creates the namespace file `dir/name` holding a new network namespace.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf, NetnsError> {
    let path = dir.join(name);
    std::fs::create_dir_all(dir).map_err(|source| NetnsError::Io {
        action: "creating",
        path: dir.into(),
        source,
    })?;
    std::fs::File::create(&path).map_err(|source| NetnsError::Io {
        action: "creating",
        path: path.clone(),
        source,
    })?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), NetnsError> {
        let sys = |action, errno| NetnsError::Sys {
            action,
            path: target.clone(),
            errno,
        };
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| sys("unsharing a network namespace for", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| sys("bind-mounting the network namespace onto", e))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetnsError::Io {
            action: "creating",
            path: path.clone(),
            source: std::io::Error::other("namespace thread panicked"),
        })
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Unmounts and removes a namespace file; a missing one is fine.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    if !path.exists() {
        return Ok(());
    }
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) => {}
        Err(errno) => {
            return Err(NetnsError::Sys {
                action: "unmounting",
                path: path.into(),
                errno,
            })
        }
    }
    std::fs::remove_file(path).map_err(|source| NetnsError::Io {
        action: "removing",
        path: path.into(),
        source,
    })
}
