//! Unpacks one layer (gzip, zstd or plain tar) into its own snapshot directory,
//! ready to be an overlayfs lowerdir:
//!
//! - OCI whiteouts become what overlayfs understands: `.wh.<name>` a 0/0 character
//!   device at `<name>`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its
//!   directory. A whiteout for something this same layer created does not remove it
//!   (the OCI spec: whiteouts apply to lower layers only); for a directory it makes
//!   the directory opaque instead.
//! - Modes, ownership, times, xattrs, symlinks, hardlinks, devices and fifos are
//!   kept (needs root, as the agent is).
//! - Nothing is written outside the snapshot: `..` that climbs out is refused, and
//!   symlinks met on the way to an entry are resolved as if the snapshot were `/`.
//! - The uncompressed stream must hash to the layer's diff_id.
//!
//! The layer is unpacked into `snapshots/.tmp-<uuid>/`, synced, and renamed to
//! `snapshots/<diff_id hex>/`, so a snapshot directory is always complete.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};

use super::compress;
use super::reference::Digest;
use super::store::{remove_snapshot, SNAPSHOT_TMP_PREFIX};
use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
const MAX_SYMLINK_HOPS: usize = 40;

/// Unpacks the layer blob at `blob` into `snapshots/<diff_id hex>` unless it is
/// there already, and returns that directory. Blocking.
pub fn unpack_layer(
    blob: &Path,
    diff_id: &Digest,
    snapshots: &Path,
) -> Result<PathBuf, ImageError> {
    let target = snapshots.join(diff_id.hex());
    if target.is_dir() {
        return Ok(target);
    }
    let temp = snapshots.join(format!(
        "{SNAPSHOT_TMP_PREFIX}{}",
        uuid::Uuid::new_v4().simple()
    ));
    let result = unpack_into(blob, diff_id, &temp).and_then(|()| commit(&temp, &target));
    if result.is_err() {
        let _ = remove_snapshot(&temp);
    }
    result.map(|()| target)
}

/// Syncs the unpacked tree and renames it into place; losing a race to another
/// unpacker of the same layer is fine.
fn commit(temp: &Path, target: &Path) -> Result<(), ImageError> {
    let dir = File::open(temp).map_err(|source| ImageError::Io {
        action: "opening",
        path: temp.to_path_buf(),
        source,
    })?;
    nix::unistd::syncfs(&dir).map_err(|errno| ImageError::Io {
        action: "syncing",
        path: temp.to_path_buf(),
        source: io::Error::from(errno),
    })?;
    match fs::rename(temp, target) {
        Ok(()) => Ok(()),
        Err(_) if target.is_dir() => remove_snapshot(temp),
        Err(source) => Err(ImageError::Io {
            action: "renaming snapshot to",
            path: target.to_path_buf(),
            source,
        }),
    }
}

fn unpack_into(blob: &Path, diff_id: &Digest, root: &Path) -> Result<(), ImageError> {
    let layer_err = |path: &str, reason: String| ImageError::Unpack {
        layer: diff_id.to_string(),
        path: path.to_string(),
        reason,
    };
    DirBuilder::new()
        .mode(0o755)
        .create(root)
        .map_err(|e| layer_err("/", format!("creating snapshot directory: {e}")))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(|e| layer_err("/", e.to_string()))?;
    let file = File::open(blob).map_err(|source| ImageError::Io {
        action: "opening",
        path: blob.to_path_buf(),
        source,
    })?;
    let (reader, _) = compress::decompress(BufReader::with_capacity(256 * 1024, file))
        .map_err(|e| layer_err("", e.to_string()))?;
    let mut archive = tar::Archive::new(HashingReader::new(reader));
    let mut unpacker = Unpacker {
        root: root.to_path_buf(),
        dir_times: Vec::new(),
    };
    let entries = archive
        .entries()
        .map_err(|e| layer_err("", format!("reading tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| layer_err("", format!("reading tar: {e}")))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        unpacker
            .apply(&mut entry)
            .map_err(|reason| layer_err(&name, reason))?;
    }
    unpacker.finish().map_err(|reason| layer_err("", reason))?;
    let mut hashing = archive.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| layer_err("", e.to_string()))?;
    let actual = hashing.digest();
    if &actual != diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("uncompressed layer {}", blob.display()),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    pub fn digest(self) -> Digest {
        Digest::from_sha256(self.hasher.finalize().into())
    }

    pub fn bytes_read(&self) -> u64 {
        self.len
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// What an entry's name turned into.
enum EntryName {
    /// `.` or `/`: the snapshot root itself.
    Root,
    Path {
        parents: Vec<OsString>,
        name: OsString,
    },
}

/// Normalises a tar path: drops empty and `.` components and a leading `/`,
/// applies `..`, and refuses paths that climb above the root.
fn clean_path(raw: &[u8]) -> Result<EntryName, String> {
    let mut parts: Vec<OsString> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err("path escapes the layer root".to_string());
                }
            }
            other => parts.push(OsString::from_vec(other.to_vec())),
        }
    }
    match parts.pop() {
        None => Ok(EntryName::Root),
        Some(name) => Ok(EntryName::Path {
            parents: parts,
            name,
        }),
    }
}

/// Resolves `parts` below `root` the way the kernel would inside a chroot at
/// `root`: symlinks are followed, absolute targets restart at `root`, and `..`
/// stops at `root`. Missing components are taken literally.
fn resolve_in_root(root: &Path, parts: &[OsString]) -> Result<PathBuf, String> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = parts.iter().cloned().collect();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part.is_empty() || part == "." {
            continue;
        }
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join_all(root, &resolved).join(&part);
        let is_link = fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            resolved.push(part);
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err("too many levels of symbolic links".to_string());
        }
        let target = fs::read_link(&candidate).map_err(|e| e.to_string())?;
        if target.is_absolute() {
            resolved.clear();
        }
        for component in target.components().rev() {
            match component {
                Component::Normal(s) => pending.push_front(s.to_os_string()),
                Component::ParentDir => pending.push_front(OsString::from("..")),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    }
    Ok(join_all(root, &resolved))
}

fn join_all(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut path = root.to_path_buf();
    for part in parts {
        path.push(part);
    }
    path
}

struct Unpacker {
    root: PathBuf,
    /// Directories whose times are set at the end (creating children changes them).
    dir_times: Vec<(PathBuf, i64)>,
}

/// Ownership and mode of an entry, PAX overrides applied.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Unpacker {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), String> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let meta = read_meta(entry)?;
        let (parents, name) = match clean_path(&entry.path_bytes())? {
            EntryName::Root => {
                if kind.is_dir() {
                    set_meta(&self.root, &meta, false)?;
                    self.dir_times.push((self.root.clone(), meta.mtime));
                }
                return Ok(());
            }
            EntryName::Path { parents, name } => (parents, name),
        };
        let parent = resolve_in_root(&self.root, &parents)?;
        create_parents(&self.root, &parent)?;
        let name_bytes = name.as_bytes();
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&parent, name_bytes, hidden);
        }
        let target = parent.join(&name);
        match kind {
            tar::EntryType::Directory => self.directory(&target, &meta),
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                regular_file(entry, &target, &meta)
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or("symlink without a target")?
                    .into_owned();
                symlink(&target, &link, &meta)
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or("hardlink without a target")?
                    .into_owned();
                self.hardlink(&target, &link)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                special_file(&target, kind, major, minor, &meta)
            }
            other => {
                tracing::debug!(entry = ?target, kind = ?other, "skipping unsupported tar entry");
                Ok(())
            }
        }
    }

    /// `.wh..wh..opq` marks `parent` opaque; `.wh.<name>` hides `<name>` of lower
    /// layers.
    fn whiteout(&mut self, parent: &Path, marker: &[u8], hidden: &[u8]) -> Result<(), String> {
        if marker == OPAQUE_MARKER.as_bytes() {
            return set_opaque(parent);
        }
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || hidden.is_empty() {
            return Ok(()); // other aufs metadata (.wh..wh.plnk etc.)
        }
        let target = parent.join(OsStr::from_bytes(hidden));
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => set_opaque(&target),
            Ok(_) => Ok(()),
            Err(_) => mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| format!("creating whiteout: {e}")),
        }
    }

    fn directory(&mut self, target: &Path, meta: &Meta) -> Result<(), String> {
        let replaced_whiteout = match fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => false,
            Ok(m) => {
                let whiteout = is_whiteout(&m);
                fs::remove_file(target).map_err(|e| format!("replacing with directory: {e}"))?;
                whiteout
            }
            Err(_) => false,
        };
        if !target.is_dir() {
            mkdir(target, 0o700)?;
        }
        if replaced_whiteout {
            set_opaque(target)?;
        }
        set_meta(target, meta, false)?;
        self.dir_times.push((target.to_path_buf(), meta.mtime));
        Ok(())
    }

    fn hardlink(&self, target: &Path, link: &[u8]) -> Result<(), String> {
        let (parents, name) = match clean_path(link)? {
            EntryName::Root => return Err("hardlink to the layer root".to_string()),
            EntryName::Path { parents, name } => (parents, name),
        };
        let source = resolve_in_root(&self.root, &parents)?.join(name);
        match fs::symlink_metadata(&source) {
            Ok(m) if m.is_dir() => return Err("hardlink to a directory".to_string()),
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "hardlink target {} is not in this layer",
                    String::from_utf8_lossy(link)
                ))
            }
        }
        remove_existing(target)?;
        fs::hard_link(&source, target).map_err(|e| format!("creating hardlink: {e}"))
    }

    /// Sets directory times last, deepest first.
    fn finish(&mut self) -> Result<(), String> {
        self.dir_times.sort_by(|a, b| b.0.cmp(&a.0));
        for (dir, mtime) in &self.dir_times {
            set_mtime(dir, *mtime)?;
        }
        Ok(())
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta, String> {
    // Empty or garbled numeric fields read as 0, as Go's archive/tar (which built
    // most images) reads them; a mode falls back to the usual default.
    let header = entry.header();
    let default_mode = if header.entry_type().is_dir() {
        0o755
    } else {
        0o644
    };
    let mut meta = Meta {
        uid: header.uid().unwrap_or(0) as u32,
        gid: header.gid().unwrap_or(0) as u32,
        mode: header.mode().unwrap_or(default_mode) & 0o7777,
        mtime: header.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Some(extensions) = entry.pax_extensions().map_err(|e| e.to_string())? {
        for ext in extensions {
            let ext = ext.map_err(|e| e.to_string())?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let number = || std::str::from_utf8(value).ok()?.parse::<u32>().ok();
            if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                if !name.starts_with(OVERLAY_XATTR_PREFIX) {
                    meta.xattrs.push((name.to_string(), value.to_vec()));
                }
            } else if key == "uid" {
                meta.uid = number().unwrap_or(meta.uid);
            } else if key == "gid" {
                meta.gid = number().unwrap_or(meta.gid);
            }
        }
    }
    Ok(meta)
}

fn regular_file<R: Read>(
    entry: &mut tar::Entry<R>,
    target: &Path,
    meta: &Meta,
) -> Result<(), String> {
    remove_existing(target)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(|e| format!("creating file: {e}"))?;
    io::copy(entry, &mut file).map_err(|e| format!("writing file: {e}"))?;
    drop(file);
    set_meta(target, meta, false)?;
    set_mtime(target, meta.mtime)
}

fn symlink(target: &Path, link: &[u8], meta: &Meta) -> Result<(), String> {
    remove_existing(target)?;
    std::os::unix::fs::symlink(OsStr::from_bytes(link), target)
        .map_err(|e| format!("creating symlink: {e}"))?;
    set_meta(target, meta, true)?;
    set_mtime(target, meta.mtime)
}

fn special_file(
    target: &Path,
    kind: tar::EntryType,
    major: u32,
    minor: u32,
    meta: &Meta,
) -> Result<(), String> {
    remove_existing(target)?;
    let sflag = match kind {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    mknod(
        target,
        sflag,
        Mode::from_bits_truncate(0o600),
        makedev(major.into(), minor.into()),
    )
    .map_err(|e| format!("creating device or fifo: {e}"))?;
    set_meta(target, meta, false)?;
    set_mtime(target, meta.mtime)
}

/// Creates the missing directories from `root` down to `dir` (0755, like Docker).
/// A whiteout in the way becomes an opaque directory: the lower one stays hidden.
/// `dir` comes from `resolve_in_root`, so no component is a symlink.
fn create_parents(root: &Path, dir: &Path) -> Result<(), String> {
    let relative = dir
        .strip_prefix(root)
        .map_err(|_| "parent resolves outside the layer".to_string())?;
    let mut current = root.to_path_buf();
    for part in relative.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() => continue,
            Ok(m) if is_whiteout(&m) => {
                fs::remove_file(&current).map_err(|e| format!("replacing whiteout: {e}"))?;
                mkdir(&current, 0o755)?;
                set_opaque(&current)?;
            }
            Ok(_) => {
                return Err(format!(
                    "parent {} is not a directory",
                    current.strip_prefix(root).unwrap_or(&current).display()
                ))
            }
            Err(_) => mkdir(&current, 0o755)?,
        }
    }
    Ok(())
}

fn mkdir(path: &Path, mode: u32) -> Result<(), String> {
    DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| format!("creating directory {}: {e}", path.display()))
}

/// Makes room for a non-directory entry (a later entry replaces an earlier one).
fn remove_existing(target: &Path) -> Result<(), String> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(target),
        Ok(_) => fs::remove_file(target),
        Err(_) => Ok(()),
    }
    .map_err(|e| format!("replacing existing entry: {e}"))
}

/// Owner, then mode (chown clears setuid bits), then xattrs. `target` is never a
/// symlink we could be tricked through: it was just created by us.
fn set_meta(target: &Path, meta: &Meta, is_symlink: bool) -> Result<(), String> {
    std::os::unix::fs::lchown(target, Some(meta.uid), Some(meta.gid))
        .map_err(|e| format!("setting owner: {e}"))?;
    if !is_symlink {
        fs::set_permissions(target, fs::Permissions::from_mode(meta.mode))
            .map_err(|e| format!("setting mode: {e}"))?;
    }
    for (name, value) in &meta.xattrs {
        if let Err(e) = xattr::set(target, name, value) {
            tracing::warn!(path = %target.display(), xattr = %name, error = %e, "could not set xattr");
        }
    }
    Ok(())
}

fn set_mtime(target: &Path, mtime: i64) -> Result<(), String> {
    let time = TimeSpec::new(to_time_t(mtime), 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        target,
        &time,
        &time,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| format!("setting times: {e}"))
}

/// `time_t` is 32 bits on some 32-bit targets (armv7 glibc): clamp, never wrap.
/// (The casts are no-ops on 64-bit targets only.)
#[allow(clippy::unnecessary_cast)]
fn to_time_t(secs: i64) -> nix::libc::time_t {
    let (min, max) = (nix::libc::time_t::MIN as i64, nix::libc::time_t::MAX as i64);
    secs.clamp(min, max) as nix::libc::time_t
}

fn set_opaque(dir: &Path) -> Result<(), String> {
    xattr::set(dir, OVERLAY_OPAQUE_XATTR, b"y")
        .map_err(|e| format!("marking directory opaque ({OVERLAY_OPAQUE_XATTR}): {e}"))
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tar built entry by entry.
    struct TarBuilder(tar::Builder<Vec<u8>>);

    impl TarBuilder {
        fn new() -> Self {
            TarBuilder(tar::Builder::new(Vec::new()))
        }

        fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_000_000);
            h.set_size(0);
            h
        }

        fn dir(mut self, path: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, 0o755);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }

        fn file(mut self, path: &str, body: &[u8], mode: u32) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, mode);
            h.set_size(body.len() as u64);
            self.0.append_data(&mut h, path, body).unwrap();
            self
        }

        fn owned_file(mut self, path: &str, uid: u64, gid: u64) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, 0o4755);
            h.set_uid(uid);
            h.set_gid(gid);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }

        fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
            let mut h = Self::header(kind, 0o777);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }

        fn device(mut self, path: &str, major: u32, minor: u32) -> Self {
            let mut h = Self::header(tar::EntryType::Char, 0o666);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }

        /// Writes a raw path (the builder refuses `..`) with a hand-made header.
        fn raw_file(mut self, path: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, 0o644);
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            self.0.append(&h, io::empty()).unwrap();
            self
        }

        fn finish(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("snapshots")).unwrap();
            Fixture { dir }
        }

        /// Writes `tar` as a gzip blob and unpacks it.
        fn unpack(&self, tar: &[u8]) -> Result<PathBuf, ImageError> {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).unwrap();
            let blob = self
                .dir
                .path()
                .join(format!("blob-{}", Digest::of(tar).hex()));
            fs::write(&blob, gz.finish().unwrap()).unwrap();
            unpack_layer(&blob, &Digest::of(tar), &self.dir.path().join("snapshots"))
        }

        fn leftovers(&self) -> usize {
            fs::read_dir(self.dir.path().join("snapshots"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(SNAPSHOT_TMP_PREFIX)
                })
                .count()
        }
    }

    #[test]
    fn unpacks_files_links_devices_and_metadata() {
        let fx = Fixture::new();
        let tar = TarBuilder::new()
            .dir("./")
            .dir("bin/")
            .file("bin/busybox", b"#!binary", 0o755)
            .link(tar::EntryType::Symlink, "bin/sh", "busybox")
            .link(tar::EntryType::Symlink, "bin/abs", "/bin/busybox")
            .link(tar::EntryType::Link, "bin/hard", "bin/busybox")
            .owned_file("usr/bin/suid", 1000, 2000)
            .device("dev/null", 1, 3)
            .finish();
        let snap = fx.unpack(&tar).unwrap();
        assert_eq!(fs::read(snap.join("bin/busybox")).unwrap(), b"#!binary");
        let meta = fs::metadata(snap.join("bin/busybox")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert_eq!(meta.mtime(), 1_000_000);
        assert_eq!(
            fs::read_link(snap.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::read_link(snap.join("bin/abs")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!(
            fs::metadata(snap.join("bin/hard")).unwrap().ino(),
            meta.ino()
        );
        let suid = fs::metadata(snap.join("usr/bin/suid")).unwrap();
        assert_eq!((suid.uid(), suid.gid()), (1000, 2000));
        assert_eq!(suid.mode() & 0o7777, 0o4755, "setuid survives chown");
        let null = fs::symlink_metadata(snap.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        assert_eq!(fs::metadata(snap.join("bin")).unwrap().mtime(), 1_000_000);
        assert_eq!(fx.leftovers(), 0);
        // A second unpack of the same layer is a no-op.
        assert_eq!(fx.unpack(&tar).unwrap(), snap);
    }

    #[test]
    fn converts_whiteouts_for_overlayfs() {
        let fx = Fixture::new();
        let tar = TarBuilder::new()
            .file("etc/.wh.passwd", b"", 0o644)
            .file("var/cache/.wh..wh..opq", b"", 0o644)
            .file("var/cache/new", b"n", 0o644)
            .file("keep", b"k", 0o644)
            .file(".wh.keep", b"", 0o644)
            .file(".wh.gone-dir", b"", 0o644)
            .file("gone-dir/fresh", b"f", 0o644)
            .file(".wh..wh.plnk", b"", 0o644)
            .finish();
        let snap = fx.unpack(&tar).unwrap();
        let wh = fs::symlink_metadata(snap.join("etc/passwd")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert!(!snap.join("etc/.wh.passwd").exists());
        assert_eq!(
            xattr::get(snap.join("var/cache"), OVERLAY_OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        assert!(snap.join("var/cache/new").is_file());
        assert!(!snap.join("var/cache/.wh..wh..opq").exists());
        assert_eq!(
            fs::read(snap.join("keep")).unwrap(),
            b"k",
            "same-layer file wins"
        );
        assert!(snap.join("gone-dir").is_dir());
        assert_eq!(
            xattr::get(snap.join("gone-dir"), OVERLAY_OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec()),
            "a directory replacing a whited-out one hides the lower one"
        );
        assert!(!snap.join(".wh..wh.plnk").exists());
    }

    #[test]
    fn refuses_paths_that_escape() {
        let fx = Fixture::new();
        let tar = TarBuilder::new().raw_file("../escape").finish();
        let err = fx.unpack(&tar).unwrap_err();
        assert!(err.to_string().contains("escapes"), "{err}");
        assert!(!fx.dir.path().join("escape").exists());
        assert_eq!(fx.leftovers(), 0, "failed unpack leaves nothing behind");
    }

    #[test]
    fn symlinks_cannot_lead_outside() {
        let fx = Fixture::new();
        let outside = fx.dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let tar = TarBuilder::new()
            .link(tar::EntryType::Symlink, "evil", outside.to_str().unwrap())
            .file("evil/pwned", b"x", 0o644)
            .link(tar::EntryType::Symlink, "up", "../../../..")
            .file("up/pwned2", b"x", 0o644)
            .finish();
        let snap = fx.unpack(&tar).unwrap();
        assert!(!outside.join("pwned").exists());
        assert!(!fx.dir.path().join("pwned2").exists());
        // The absolute link resolved inside the snapshot; `..` stopped at its root.
        assert!(snap
            .join(outside.strip_prefix("/").unwrap())
            .join("pwned")
            .is_file());
        assert!(snap.join("pwned2").is_file());
    }

    #[test]
    fn hardlinks_must_stay_inside() {
        let fx = Fixture::new();
        let tar = TarBuilder::new()
            .link(tar::EntryType::Link, "passwd", "/etc/passwd")
            .finish();
        let err = fx.unpack(&tar).unwrap_err();
        assert!(err.to_string().contains("not in this layer"), "{err}");
    }

    #[test]
    fn wrong_diff_id_is_refused() {
        let fx = Fixture::new();
        let tar = TarBuilder::new().file("a", b"a", 0o644).finish();
        let blob = fx.dir.path().join("blob");
        fs::write(&blob, &tar).unwrap();
        let wrong = Digest::of(b"not the tar");
        let err = unpack_layer(&blob, &wrong, &fx.dir.path().join("snapshots")).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!fx.dir.path().join("snapshots").join(wrong.hex()).exists());
        assert_eq!(fx.leftovers(), 0);
    }

    #[test]
    fn clean_path_normalises() {
        let parts = |p: &str| match clean_path(p.as_bytes()).unwrap() {
            EntryName::Root => vec![],
            EntryName::Path { mut parents, name } => {
                parents.push(name);
                parents
                    .into_iter()
                    .map(|s| s.into_string().unwrap())
                    .collect()
            }
        };
        assert_eq!(parts("./a//b/./c"), ["a", "b", "c"]);
        assert_eq!(parts("/abs/x"), ["abs", "x"]);
        assert_eq!(parts("a/../b"), ["b"]);
        assert!(parts("./").is_empty());
        assert!(clean_path(b"a/../../b").is_err());
    }
}
