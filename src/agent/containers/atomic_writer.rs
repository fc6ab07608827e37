//! Writes a volume's files the way the kubelet's atomic writer does, so a reader in
//! the container never sees a half-updated set: the files go into a fresh
//! timestamped directory `..2026_12_07_12_00_00.123456789`, the symlink `..data`
//! is pointed at it with one `rename`, and each user-visible top-level name is a
//! symlink into `..data` (`key -> ..data/key`). The previous timestamped directory
//! and names no longer wanted go afterwards. A payload equal to what is on disk
//! changes nothing.
//!
//! Pure file-system code: may call nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The symlink that names the current timestamped directory.
const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    pub bytes: Vec<u8>,
    /// Permission bits (`0o644`); only the low nine bits are used.
    pub mode: u32,
}

/// Relative path → contents.
pub type Payload = BTreeMap<String, FileData>;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid path {0:?}: must be relative, without '..' and not start with '..'")]
    InvalidPath(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io {
        action,
        path,
        source,
    }
}

/// Checks a payload path as the kubelet does: relative, no `..` element, not
/// starting with `..`, not empty.
pub fn validate_path(path: &str) -> Result<(), WriteError> {
    let invalid = || WriteError::InvalidPath(path.to_string());
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || path.starts_with("..") {
        return Err(invalid());
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(invalid());
    }
    Ok(())
}

/// The first element of a payload path: what the user sees in the volume's root.
fn top_level(path: &str) -> &str {
    path.split('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// Makes `dir` hold exactly `payload`; returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let data_link = dir.join(DATA);
    let old = std::fs::read_link(&data_link).ok();
    let unchanged = old
        .as_ref()
        .is_some_and(|o| same_contents(&dir.join(o), payload));
    if !unchanged {
        let new_dir = write_timestamped(dir, payload)?;
        swap_data_link(dir, &new_dir)?;
    }
    let user_changed = link_user_visible(dir, payload)?;
    if !unchanged {
        if let Some(old) = old {
            let old = dir.join(old);
            if old.is_dir() {
                std::fs::remove_dir_all(&old).map_err(io("removing", &old))?;
            }
        }
    }
    Ok(!unchanged || user_changed)
}

/// Whether the directory holds exactly the payload's files, contents and modes.
fn same_contents(dir: &Path, payload: &Payload) -> bool {
    let mut on_disk = BTreeSet::new();
    if collect_files(dir, dir, &mut on_disk).is_err() {
        return false;
    }
    let wanted: BTreeSet<String> = payload.keys().cloned().collect();
    on_disk == wanted
        && payload.iter().all(|(path, file)| {
            let p = dir.join(path);
            let mode = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o777);
            std::fs::read(&p).is_ok_and(|b| b == file.bytes) && mode.is_ok_and(|m| m == file.mode)
        })
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.insert(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Writes the payload into a new `..<timestamp>` directory; returns its name.
fn write_timestamped(dir: &Path, payload: &Payload) -> Result<String, WriteError> {
    let stamp = chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S%.9f");
    let mut name = format!("..{stamp}");
    let mut n = 0;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("..{stamp}.{n}");
    }
    let target = dir.join(&name);
    std::fs::create_dir(&target).map_err(io("creating", &target))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(io("setting the mode of", &target))?;
    for (path, file) in payload {
        let p = target.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::write(&p, &file.bytes).map_err(io("writing", &p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(file.mode & 0o777))
            .map_err(io("setting the mode of", &p))?;
    }
    Ok(name)
}

/// Points `..data` at `target` with one rename.
fn swap_data_link(dir: &Path, target: &str) -> Result<(), WriteError> {
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(target, &tmp).map_err(io("linking", &tmp))?;
    let data = dir.join(DATA);
    std::fs::rename(&tmp, &data).map_err(io("renaming", &tmp))
}

/// Makes each top-level name a symlink into `..data`; removes other names
/// (including plain files left by an older layout). Returns whether any changed.
fn link_user_visible(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    let wanted: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    let mut changed = false;
    for entry in std::fs::read_dir(dir).map_err(io("reading", dir))? {
        let entry = entry.map_err(io("reading", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        let path = entry.path();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if wanted.contains(name.as_str()) && is_link {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path).map_err(io("removing", &path))?;
        } else {
            std::fs::remove_file(&path).map_err(io("removing", &path))?;
        }
        changed = true;
    }
    for name in wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(name), &link).map_err(io("linking", &link))?;
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, b, m)| {
                (
                    p.to_string(),
                    FileData {
                        bytes: b.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn timestamped_dirs(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect()
    }

    #[test]
    fn files_are_symlinks_into_the_data_link() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(write(dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)])).unwrap());
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(
            std::fs::read_link(dir.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        let target = std::fs::read_link(dir.join(DATA)).unwrap();
        assert!(target.to_string_lossy().starts_with("..20"), "{target:?}");
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(timestamped_dirs(dir).len(), 1);
    }

    #[test]
    fn an_update_swaps_the_directory_and_drops_stale_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, &payload(&[("a", "1", 0o644), ("b", "2", 0o644)])).unwrap();
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        assert!(write(dir, &payload(&[("a", "changed", 0o644)])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "changed");
        assert!(std::fs::symlink_metadata(dir.join("b")).is_err());
        assert_ne!(std::fs::read_link(dir.join(DATA)).unwrap(), first);
        assert!(!dir.join(first).exists());
        assert_eq!(timestamped_dirs(dir).len(), 1);
    }

    #[test]
    fn an_equal_payload_changes_nothing_but_a_mode_change_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let p = payload(&[("a", "1", 0o644)]);
        write(dir, &p).unwrap();
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        assert!(!write(dir, &p).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA)).unwrap(), first);
        assert!(write(dir, &payload(&[("a", "1", 0o400)])).unwrap());
        assert_ne!(std::fs::read_link(dir.join(DATA)).unwrap(), first);
    }

    #[test]
    fn plain_files_of_an_older_layout_are_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("a"), "old").unwrap();
        std::fs::write(dir.join("gone"), "old").unwrap();
        write(dir, &payload(&[("a", "new", 0o644)])).unwrap();
        assert!(std::fs::symlink_metadata(dir.join("a"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "new");
        assert!(!dir.join("gone").exists());
    }

    #[test]
    fn paths_that_escape_or_hide_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/x", "a/../../x", "..data", "", "..x"] {
            let err = write(tmp.path(), &payload(&[(bad, "1", 0o644)]));
            assert!(matches!(err, Err(WriteError::InvalidPath(_))), "{bad}");
        }
        validate_path("a/b/c").unwrap();
        validate_path("a..b").unwrap();
    }

    #[test]
    fn an_empty_payload_leaves_an_empty_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, &payload(&[("a", "1", 0o644)])).unwrap();
        write(dir, &Payload::new()).unwrap();
        assert!(std::fs::symlink_metadata(dir.join("a")).is_err());
        assert!(dir.join(DATA).is_dir());
    }
}
