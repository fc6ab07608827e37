//! Namespaces as files (like `ip netns`): made by unsharing the namespace in a
//! short-lived thread and bind-mounting it, so no other thread of the agent ever
//! changes namespace. Network namespaces, and a pod sandbox's IPC and UTS ones.

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

/// The kinds of namespace a pod sandbox keeps as files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Net,
    Ipc,
    Uts,
}

impl Kind {
    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }

    fn proc_name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
        }
    }
}

/// Creates the namespace file `dir/name` holding a new network namespace.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf, NetnsError> {
    std::fs::create_dir_all(dir).map_err(|source| NetnsError::Io {
        action: "creating",
        path: dir.into(),
        source,
    })?;
    let path = dir.join(name);
    create_kind(&path, Kind::Net, None)?;
    Ok(path)
}

/// Creates the file `path` holding a new namespace of `kind` (a UTS namespace gets
/// `hostname`), from a short-lived thread that unshares it and bind-mounts it there.
pub fn create_kind(path: &Path, kind: Kind, hostname: Option<&str>) -> Result<(), NetnsError> {
    std::fs::File::create(path).map_err(|source| NetnsError::Io {
        action: "creating",
        path: path.into(),
        source,
    })?;
    let target = path.to_path_buf();
    let hostname = hostname.map(str::to_string);
    let made = std::thread::spawn(move || -> Result<(), NetnsError> {
        let sys = |action, errno| NetnsError::Sys {
            action,
            path: target.clone(),
            errno,
        };
        unshare(kind.flag()).map_err(|e| sys("unsharing a namespace for", e))?;
        if let Some(name) = hostname {
            nix::unistd::sethostname(name).map_err(|e| sys("setting the hostname for", e))?;
        }
        let source = format!("/proc/thread-self/ns/{}", kind.proc_name());
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| sys("bind-mounting the namespace onto", e))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetnsError::Io {
            action: "creating",
            path: path.to_path_buf(),
            source: std::io::Error::other("namespace thread panicked"),
        })
    });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
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
