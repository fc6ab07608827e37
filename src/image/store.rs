//! The content store on disk, under the root given to `ImageStore::open`:
//!
//! ```text
//! content/blobs/sha256/<hex>   content-addressed blobs (manifests, configs, layers)
//! content/ingest/              blobs being written (temp file, sha256 checked, rename)
//! content/images.json          image records: name → digests, layers, platform
//! content/lock                 flock: shared while writing content, exclusive for gc
//! snapshots/<diff_id hex>/     unpacked layers (overlay lowerdirs), read-only
//! import-state.json            archives already imported (see archive.rs)
//! *.tar, *.tar.gz, *.tar.zst    air-gap archives an operator copied here, imported
//!                              at the agent's start (`ImageStore::import_airgap`)
//! ```
//!
//! Blobs are written to a temp file, fsynced, checked against their digest and only
//! then renamed into place, so a blob under its name is always complete and correct.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::reference::{Digest, Reference};
use super::spec::Platform;
use super::ImageError;

const BLOBS_DIR: &str = "content/blobs/sha256";
const INGEST_DIR: &str = "content/ingest";
const IMAGES_FILE: &str = "content/images.json";
const IMAGES_LOCK: &str = "content/images.lock";
const GC_LOCK: &str = "content/lock";
const SNAPSHOTS_DIR: &str = "snapshots";
/// Prefix of snapshot directories still being unpacked.
pub const SNAPSHOT_TMP_PREFIX: &str = ".tmp-";

/// An image the store holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// The normalised reference (`docker.io/library/busybox:1.36`), or the image id
    /// (`sha256:…`) for an imported image that came without a name.
    pub name: String,
    /// The config blob's digest: the image id.
    pub id: Digest,
    /// What the name resolved to: the index digest for a multi-platform image, else
    /// the manifest's (`repository@digest` names this image at its registry).
    pub digest: Digest,
    /// The platform-specific manifest.
    pub manifest_digest: Digest,
    /// Bottom layer first.
    pub layers: Vec<Layer>,
    pub platform: Platform,
    /// Bytes of config and layer blobs (compressed, as stored).
    pub size: u64,
    /// Seconds since the Unix epoch when the image was stored.
    pub stored_at: u64,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// The blob as stored (compressed or not).
    pub digest: Digest,
    /// The digest of the uncompressed tar; names the layer's snapshot.
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

impl Image {
    /// `registry/repository@digest` for images that have a repository name.
    pub fn repo_digest(&self) -> Option<String> {
        let reference = Reference::parse(&self.name).ok()?;
        Some(format!("{}@{}", reference.name(), self.digest))
    }

    /// True when `reference` (already normalised) names this image: equal names, or
    /// the same repository and a digest this image has, or its id.
    pub fn is_named_by(&self, wanted: &str) -> bool {
        if self.name == wanted || self.id.to_string() == wanted {
            return true;
        }
        let (Ok(want), Ok(mine)) = (Reference::parse(wanted), Reference::parse(&self.name)) else {
            return false;
        };
        want.digest.as_ref().is_some_and(|d| {
            want.name() == mine.name() && (*d == self.digest || *d == self.manifest_digest)
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ImagesFile {
    images: Vec<Image>,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub snapshots_removed: usize,
}

/// Held while content is being written (shared) or collected (exclusive).
pub struct Lease {
    _lock: Flock<File>,
}

pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Creates the directory layout under `root` if needed.
    pub fn open(root: &Path) -> Result<ContentStore, ImageError> {
        let store = ContentStore {
            root: root.to_path_buf(),
        };
        for dir in [BLOBS_DIR, INGEST_DIR, SNAPSHOTS_DIR] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_err("creating", &path))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(BLOBS_DIR).join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join(SNAPSHOTS_DIR)
    }

    #[cfg(test)]
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.snapshots_dir().join(diff_id.hex())
    }

    /// Reads a (small) blob and checks its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes`, checking them against `expected` when given.
    pub fn write_blob(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, ImageError> {
        let actual = Digest::of(bytes);
        if let Some(expected) = expected {
            if expected != &actual {
                return Err(ImageError::DigestMismatch {
                    what: "blob".to_string(),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        if self.has_blob(&actual) {
            return Ok(actual);
        }
        let mut writer = BlobWriter::create(self)?;
        writer
            .write_all(bytes)
            .map_err(io_err("writing", &writer.path))?;
        writer.commit(self, Some(&actual), None)
    }

    /// A fresh path in the ingest directory.
    pub fn ingest_path(&self) -> PathBuf {
        self.root
            .join(INGEST_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Moves a fully written and synced temp file into place as `actual`, after
    /// checking it against `expected` digest and size. The temp file is removed on
    /// any failure.
    pub fn commit_ingest(
        &self,
        temp: &Path,
        actual: Digest,
        actual_size: u64,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, ImageError> {
        let check = || -> Result<(), ImageError> {
            if let Some(size) = expected_size {
                if size != actual_size {
                    return Err(ImageError::SizeMismatch {
                        what: expected.map_or_else(|| actual.to_string(), Digest::to_string),
                        expected: size,
                        actual: actual_size,
                    });
                }
            }
            if let Some(expected) = expected {
                if expected != &actual {
                    return Err(ImageError::DigestMismatch {
                        what: "blob".to_string(),
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
            }
            Ok(())
        };
        if let Err(e) = check() {
            let _ = fs::remove_file(temp);
            return Err(e);
        }
        let target = self.blob_path(&actual);
        if target.is_file() {
            let _ = fs::remove_file(temp);
            return Ok(actual);
        }
        fs::rename(temp, &target).map_err(|source| {
            let _ = fs::remove_file(temp);
            ImageError::Io {
                action: "storing",
                path: target.clone(),
                source,
            }
        })?;
        Ok(actual)
    }

    /// Shared lease: content may be added, gc waits.
    pub fn lease_shared(&self) -> Result<Lease, ImageError> {
        self.lease(FlockArg::LockShared)
    }

    /// Exclusive lease: no one is adding content.
    pub fn lease_exclusive(&self) -> Result<Lease, ImageError> {
        self.lease(FlockArg::LockExclusive)
    }

    fn lease(&self, arg: FlockArg) -> Result<Lease, ImageError> {
        let path = self.root.join(GC_LOCK);
        let lock = lock_file(&path, arg)?;
        Ok(Lease { _lock: lock })
    }

    /// Every image record, sorted by name.
    pub fn images(&self) -> Result<Vec<Image>, ImageError> {
        let path = self.root.join(IMAGES_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let file: ImagesFile =
                    serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(file.images)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(ImageError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// Read-modify-write of the image records under a file lock (safe against other
    /// processes using the same root), written atomically.
    pub fn update_images<T>(
        &self,
        change: impl FnOnce(&mut Vec<Image>) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let _lock = lock_file(&self.root.join(IMAGES_LOCK), FlockArg::LockExclusive)?;
        let mut images = self.images()?;
        let out = change(&mut images)?;
        images.sort_by(|a, b| a.name.cmp(&b.name));
        let bytes =
            serde_json::to_vec_pretty(&ImagesFile { images }).map_err(|e| ImageError::Corrupt {
                path: self.root.join(IMAGES_FILE),
                reason: e.to_string(),
            })?;
        write_atomic(&self.root.join(IMAGES_FILE), &bytes)?;
        Ok(out)
    }

    /// Adds or replaces records by name.
    pub fn put_images(&self, new: &[Image]) -> Result<(), ImageError> {
        self.update_images(|images| {
            images.retain(|old| !new.iter().any(|n| n.name == old.name));
            images.extend(new.iter().cloned());
            Ok(())
        })
    }

    /// Removes blobs and snapshots no image refers to, and leftovers of interrupted
    /// writes. The caller holds an exclusive lease.
    pub fn collect_garbage(&self, _lease: &Lease) -> Result<GcReport, ImageError> {
        let images = self.images()?;
        let mut blobs: HashSet<String> = HashSet::new();
        let mut snapshots: HashSet<String> = HashSet::new();
        for image in &images {
            blobs.insert(image.id.hex().to_string());
            blobs.insert(image.digest.hex().to_string());
            blobs.insert(image.manifest_digest.hex().to_string());
            for layer in &image.layers {
                blobs.insert(layer.digest.hex().to_string());
                snapshots.insert(layer.diff_id.hex().to_string());
            }
        }
        let mut report = GcReport::default();
        let blob_dir = self.root.join(BLOBS_DIR);
        for (name, path) in list_dir(&blob_dir)? {
            if blobs.contains(&name) {
                continue;
            }
            let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
        for (name, path) in list_dir(&self.snapshots_dir())? {
            if snapshots.contains(&name) {
                continue;
            }
            remove_snapshot(&path)?;
            if !name.starts_with(SNAPSHOT_TMP_PREFIX) {
                report.snapshots_removed += 1;
            }
        }
        for (_, path) in list_dir(&self.root.join(INGEST_DIR))? {
            let _ = fs::remove_file(&path);
        }
        Ok(report)
    }
}

/// Removes a snapshot directory (files in it may be read-only; we are root).
pub fn remove_snapshot(path: &Path) -> Result<(), ImageError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ImageError::Io {
            action: "removing",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A blob being written: hashes and counts as it goes. Dropped without a commit,
/// its temp file is removed.
pub struct BlobWriter {
    file: File,
    pub path: PathBuf,
    hasher: Sha256,
    len: u64,
    committed: bool,
}

impl BlobWriter {
    pub fn create(store: &ContentStore) -> Result<BlobWriter, ImageError> {
        let path = store.ingest_path();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("creating", &path))?;
        Ok(BlobWriter {
            file,
            path,
            hasher: Sha256::new(),
            len: 0,
            committed: false,
        })
    }

    /// Syncs the file and hands it to the store under its digest.
    pub fn commit(
        mut self,
        store: &ContentStore,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, ImageError> {
        self.file
            .sync_all()
            .map_err(io_err("syncing", &self.path))?;
        // From here on commit_ingest decides what happens to the temp file.
        self.committed = true;
        let actual = Digest::from_sha256(std::mem::take(&mut self.hasher).finalize().into());
        store.commit_ingest(&self.path, actual, self.len, expected, expected_size)
    }

    /// Drops the temp file.
    pub fn discard(self) {}
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes `bytes` to `path` through a synced temp file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let temp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let write = || -> io::Result<()> {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&temp);
        ImageError::Io {
            action: "writing",
            path: path.to_path_buf(),
            source,
        }
    })
}

fn lock_file(path: &Path, arg: FlockArg) -> Result<Flock<File>, ImageError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("opening", path))?;
    Flock::lock(file, arg).map_err(|(_, errno)| ImageError::Io {
        action: "locking",
        path: path.to_path_buf(),
        source: io::Error::from(errno),
    })
}

/// (file name, path) of every entry of `dir`; empty when it does not exist.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, ImageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ImageError::Io {
                action: "listing",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("listing", dir))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    Ok(out)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Maps an io::Error to `ImageError::Io` for `path`.
pub fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, layer_fill: char) -> Image {
        let d = |c: char| Digest::from_hex(&c.to_string().repeat(64)).unwrap();
        Image {
            name: name.to_string(),
            id: d('1'),
            digest: d('2'),
            manifest_digest: d('3'),
            layers: vec![Layer {
                digest: d(layer_fill),
                diff_id: d(layer_fill),
                size: 1,
                media_type: super::super::spec::OCI_LAYER.to_string(),
            }],
            platform: Platform::current(),
            size: 1,
            stored_at: 0,
        }
    }

    #[test]
    fn blobs_are_verified_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = store.write_blob(b"hello", None).unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        let err = store.write_blob(b"hello!", Some(&wrong)).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&wrong.to_string()));
        assert!(!store.has_blob(&wrong));

        let mut w = BlobWriter::create(&store).unwrap();
        w.write_all(b"streamed").unwrap();
        let temp = w.path.clone();
        let err = w.commit(&store, Some(&wrong), None).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }));
        assert!(!temp.exists(), "temp file is removed after a mismatch");

        let mut w = BlobWriter::create(&store).unwrap();
        w.write_all(b"streamed").unwrap();
        let err = w.commit(&store, None, Some(99)).unwrap_err();
        assert!(matches!(err, ImageError::SizeMismatch { .. }));
    }

    #[test]
    fn corrupted_blob_is_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = store.write_blob(b"{}", None).unwrap();
        fs::write(store.blob_path(&digest), b"{\"x\":1}").unwrap();
        assert!(matches!(
            store.read_blob(&digest),
            Err(ImageError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn records_replace_by_name_and_match_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        store
            .put_images(&[image("docker.io/library/a:1", 'a')])
            .unwrap();
        store
            .put_images(&[image("docker.io/library/a:1", 'b')])
            .unwrap();
        let all = store.images().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].layers[0].digest.hex(), "b".repeat(64));
        let by_digest = format!("docker.io/library/a@sha256:{}", "2".repeat(64));
        assert!(all[0].is_named_by(&by_digest));
        assert!(all[0].is_named_by(&format!("sha256:{}", "1".repeat(64))));
        assert!(!all[0].is_named_by("docker.io/library/b:1"));
        assert_eq!(
            all[0].repo_digest().unwrap(),
            format!("docker.io/library/a@sha256:{}", "2".repeat(64))
        );
    }

    #[test]
    fn gc_keeps_referenced_content_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let kept = store.write_blob(b"kept layer", None).unwrap();
        let dropped = store.write_blob(b"dropped layer", None).unwrap();
        let mut img = image("docker.io/library/a:1", 'a');
        img.layers[0].digest = kept.clone();
        img.layers[0].diff_id = kept.clone();
        store.put_images(&[img]).unwrap();
        fs::create_dir_all(store.snapshot_path(&kept)).unwrap();
        fs::create_dir_all(store.snapshot_path(&dropped).join("x/y")).unwrap();
        fs::create_dir_all(store.snapshots_dir().join(".tmp-123")).unwrap();

        let lease = store.lease_exclusive().unwrap();
        let report = store.collect_garbage(&lease).unwrap();
        assert_eq!(report.blobs_removed, 1);
        assert_eq!(report.snapshots_removed, 1);
        assert!(store.has_blob(&kept) && !store.has_blob(&dropped));
        assert!(store.snapshot_path(&kept).is_dir());
        assert!(!store.snapshot_path(&dropped).exists());
        assert!(!store.snapshots_dir().join(".tmp-123").exists());
    }
}
