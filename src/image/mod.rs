//! Container images for the node agent: pulling from OCI registries, importing
//! air-gap archives, the content store, and unpacked layer snapshots.
//!
//! Owns: everything under the root passed to [`ImageStore::open`] (normally
//! [`store_dir`]`(data_dir)`, i.e. `<data-dir>/agent/images/`): content-addressed
//! blobs, image records, snapshots and the import state; see `store.rs` for the
//! layout. The same directory is the air-gap directory: archives copied to its top
//! level are imported by [`ImageStore::import_airgap`] when the agent starts (and
//! by `skiff image import`).
//! May call: nothing else in skiff; registries over HTTP(S), the filesystem.
//!
//! - [`Reference`] parses and normalises image names as Docker does.
//! - [`ImageStore::pull`] fetches an image (index → this node's platform, config,
//!   layers) through the mirrors of `registries.yaml` ([`RegistriesConfig`]),
//!   verifying every digest; concurrent pulls of one reference share one download.
//! - [`ImageStore::import_archive`] / [`ImageStore::import_dir`] load docker-save and
//!   OCI-layout tarballs (plain, gzip or zstd); [`ImageStore::import_airgap`] is
//!   `import_dir` of the store's own root, with logs, for the agent's start.
//! - [`ImageStore::save`] writes images as one archive (OCI layout plus docker-save
//!   `manifest.json`) for air-gapped nodes (`skiff image save`, export.rs).
//! - [`ImageStore::rootfs_layers`] unpacks layers once into read-only snapshots and
//!   returns them as overlayfs lowerdirs; [`ImageStore::config`] gives the image
//!   configuration (entrypoint, cmd, env, ...).
//! - [`ImageStore::remove`] and [`ImageStore::gc`] drop images and what only they used.

mod archive;
mod compress;
mod config;
mod export;
mod pull;
mod reference;
mod registries;
mod registry;
mod spec;
mod store;
mod unpack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

pub use archive::{ImportReport, IMPORT_EXTENSIONS};
pub use config::{ContainerConfig, ExposedPort, ImageConfig, RootFs};
pub use export::{SaveReport, SaveTarget};
pub use pull::{LayerStatus, ProgressFn, PullOptions, PullProgress};
pub use reference::{Digest, Reference, DEFAULT_REGISTRY};
pub use registries::{
    AuthConfig, Credentials, Endpoint, HostConfig, MirrorConfig, RegistriesConfig, TlsConfig,
    DEFAULT_REGISTRIES_PATH,
};
pub use spec::Platform;
pub use store::{GcReport, Image, Layer};

use registry::RegistryClient;
use store::ContentStore;

/// Where the node's image store (and air-gap directory) is, below a data dir.
pub const STORE_SUBDIR: &str = "agent/images";

/// Checks that `path` names an archive `ImageStore::save` can write (`.tar`,
/// `.tar.gz`, `.tar.zst`), before anything is pulled.
pub fn check_save_name(path: &Path) -> Result<(), ImageError> {
    export::compression_for(path).map(|_| ())
}

/// The image store's root for `data_dir`: `<data-dir>/agent/images`. The agent and
/// `skiff image` both use it.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(STORE_SUBDIR)
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {0:?}: want sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    #[error("invalid platform {0:?}: want os/arch[/variant]")]
    InvalidPlatform(String),
    #[error("{path}: {reason}")]
    RegistriesConfig { path: PathBuf, reason: String },
    #[error("pulling {reference}{}", pull_failures(.failures))]
    Pull {
        reference: String,
        /// Each endpoint tried (API root) and why it failed.
        failures: Vec<(String, ImageError)>,
    },
    /// The registry answered with an error; `message` is its own text.
    #[error("{message}")]
    Registry { status: u16, message: String },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("tls settings for {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("no image for {platform} in {reference} (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("{what}: {reason}")]
    InvalidManifest { what: String, reason: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("image {reference} not found")]
    NotFound { reference: String },
    #[error("importing {path}: {reason}")]
    Archive { path: PathBuf, reason: String },
    #[error("unpacking layer {layer} entry {path:?}: {reason}")]
    Unpack {
        layer: String,
        path: String,
        reason: String,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("image task failed: {0}")]
    Task(String),
    /// The error of a pull another caller started (pulls are shared).
    #[error(transparent)]
    Shared(Arc<ImageError>),
}

fn pull_failures(failures: &[(String, ImageError)]) -> String {
    match failures {
        [] => String::new(),
        [(endpoint, error)] => format!(" from {endpoint}: {error}"),
        many => {
            let parts: Vec<String> = many.iter().map(|(ep, e)| format!("{ep}: {e}")).collect();
            format!(": {}", parts.join("; "))
        }
    }
}

impl ImageError {
    /// True when the registry said the image or tag does not exist (every endpoint
    /// answered 404), as opposed to being unreachable or refusing access.
    pub fn is_not_found(&self) -> bool {
        match self {
            ImageError::Registry { status, .. } => *status == 404,
            ImageError::Pull { failures, .. } => {
                !failures.is_empty() && failures.iter().all(|(_, e)| e.is_not_found())
            }
            ImageError::Shared(inner) => inner.is_not_found(),
            ImageError::NotFound { .. } => true,
            _ => false,
        }
    }
}

/// How to open an [`ImageStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The platform to pick from multi-platform images; [`Platform::current`] by
    /// default.
    pub platform: Platform,
    /// Mirrors, credentials and TLS ([`RegistriesConfig::load`] reads the file).
    pub registries: RegistriesConfig,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            platform: Platform::current(),
            registries: RegistriesConfig::default(),
        }
    }
}

/// Result of [`ImageStore::remove`].
#[derive(Debug, Clone, Default)]
pub struct RemoveReport {
    pub removed: Vec<Image>,
    pub gc: GcReport,
}

type SharedPull = Shared<BoxFuture<'static, Result<Image, Arc<ImageError>>>>;

/// A pull in progress that later callers of the same reference wait for.
struct InFlight {
    id: u64,
    shared: SharedPull,
}

/// The node's images. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<ContentStore>,
    registry: Arc<RegistryClient>,
    platform: Platform,
    /// Pulls in flight by reference, so a second caller waits for the first.
    pulls: Mutex<HashMap<String, InFlight>>,
    next_pull: AtomicU64,
    /// One unpack at a time per layer.
    unpacks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`, e.g. `<data-dir>/agent`.
    pub fn open(root: impl AsRef<Path>, options: StoreOptions) -> Result<ImageStore, ImageError> {
        let store = ContentStore::open(root.as_ref())?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                registry: Arc::new(RegistryClient::new(options.registries)),
                platform: options.platform.normalized(),
                pulls: Mutex::new(HashMap::new()),
                next_pull: AtomicU64::new(0),
                unpacks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.inner.store.root()
    }

    /// The platform images are selected for.
    pub fn platform(&self) -> &Platform {
        &self.inner.platform
    }

    /// Pulls `reference` (always asking the registry, like `imagePullPolicy:
    /// Always`; use [`ImageStore::get`] first for `IfNotPresent`). A pull of a
    /// reference already being pulled waits for that pull and shares its result
    /// (the progress callback is then not called).
    pub async fn pull(&self, reference: &str, options: PullOptions) -> Result<Image, ImageError> {
        let reference = Reference::parse(reference)?;
        let key = reference.to_string();
        let shared = {
            let mut pulls = self.inner.pulls.lock().unwrap_or_else(|p| p.into_inner());
            match pulls.get(&key) {
                Some(existing) => existing.shared.clone(),
                None => {
                    let started = self.start_pull(key.clone(), reference, options);
                    let shared = started.shared.clone();
                    pulls.insert(key, started);
                    shared
                }
            }
        };
        shared
            .await
            .map_err(|e| Arc::try_unwrap(e).unwrap_or_else(ImageError::Shared))
    }

    /// Starts a pull task. Called with the `pulls` lock held, so the task (which
    /// takes that lock to forget itself when done) cannot finish before its entry
    /// is inserted.
    fn start_pull(&self, key: String, reference: Reference, options: PullOptions) -> InFlight {
        let id = self.inner.next_pull.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        let task = tokio::spawn(async move {
            let result = async {
                let _lease = this.lease_shared().await?;
                pull::pull(
                    &this.inner.store,
                    &this.inner.registry,
                    &this.inner.platform,
                    &reference,
                    &options,
                )
                .await
            }
            .await;
            this.forget_pull(&key, id);
            result.map_err(Arc::new)
        });
        let shared = async move {
            match task.await {
                Ok(result) => result,
                Err(e) => Err(Arc::new(ImageError::Task(e.to_string()))),
            }
        }
        .boxed()
        .shared();
        InFlight { id, shared }
    }

    fn forget_pull(&self, key: &str, id: u64) {
        let mut pulls = self.inner.pulls.lock().unwrap_or_else(|p| p.into_inner());
        if pulls.get(key).is_some_and(|p| p.id == id) {
            pulls.remove(key);
        }
    }

    /// Imports a docker-save or OCI-layout archive (plain, gzip or zstd) and
    /// returns the images it held.
    pub async fn import_archive(&self, path: impl AsRef<Path>) -> Result<Vec<Image>, ImageError> {
        let path = path.as_ref().to_path_buf();
        let _lease = self.lease_shared().await?;
        let store = Arc::clone(&self.inner.store);
        let platform = self.inner.platform.clone();
        blocking(move || archive::import_archive(&store, &platform, &path)).await
    }

    /// Imports every archive in `dir` (by extension, see [`IMPORT_EXTENSIONS`]),
    /// skipping those imported before and unchanged whose images are still here.
    /// One bad archive does not stop the others.
    pub async fn import_dir(&self, dir: impl AsRef<Path>) -> Result<ImportReport, ImageError> {
        let dir = dir.as_ref().to_path_buf();
        let _lease = self.lease_shared().await?;
        let store = Arc::clone(&self.inner.store);
        let platform = self.inner.platform.clone();
        blocking(move || archive::import_dir(&store, &platform, &dir)).await
    }

    /// Imports the archives dropped at the top level of the store's root (the
    /// air-gap directory, see [`store_dir`]): what the agent calls when it starts.
    /// Unchanged archives imported before are skipped; a bad archive is logged and
    /// reported, not fatal. Never fails as a whole: trouble with the directory
    /// itself is reported as a failure of the root.
    pub async fn import_airgap(&self) -> ImportReport {
        let root = self.root().to_path_buf();
        let report = match self.import_dir(&root).await {
            Ok(report) => report,
            Err(e) => ImportReport {
                failed: vec![(root.clone(), e)],
                ..ImportReport::default()
            },
        };
        log_import(&root, &report);
        report
    }

    /// Writes `images` (records of this store, e.g. what [`ImageStore::pull`]
    /// returned) as one archive: an OCI layout with a docker-save `manifest.json`,
    /// compressed as the file name says (see export.rs). Setting `cancel` stops the
    /// writing soon, with an error and no file.
    pub async fn save(
        &self,
        images: Vec<Image>,
        target: SaveTarget,
        cancel: Arc<AtomicBool>,
    ) -> Result<SaveReport, ImageError> {
        let _lease = self.lease_shared().await?;
        let store = Arc::clone(&self.inner.store);
        blocking(move || export::save(&store, &images, &target, &cancel)).await
    }

    /// Every image, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        self.inner.store.images()
    }

    /// The image `reference` names (a reference, `name@digest` of a stored image, or
    /// an image id `sha256:…`), if stored.
    pub fn get(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let wanted = lookup_key(reference);
        let images = self.inner.store.images()?;
        let exact = images.iter().find(|i| i.name == wanted);
        Ok(exact
            .or_else(|| images.iter().find(|i| i.is_named_by(&wanted)))
            .cloned())
    }

    /// The image's configuration (entrypoint, cmd, env, user, ports, ...).
    pub fn config(&self, image: &Image) -> Result<ImageConfig, ImageError> {
        let bytes = self.inner.store.read_blob(&image.id)?;
        ImageConfig::from_json(&bytes, &format!("config of {}", image.name))
    }

    /// The image's layers as overlayfs lowerdirs, **top layer first** (the order
    /// `lowerdir=` wants), unpacking each layer the first time it is needed. Empty
    /// for an image without layers. The caller must not remove the image while a
    /// container uses these directories.
    pub async fn rootfs_layers(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        let _lease = self.lease_shared().await?;
        let mut dirs = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            dirs.push(self.unpack_layer(layer).await?);
        }
        dirs.reverse();
        Ok(dirs)
    }

    async fn unpack_layer(&self, layer: &Layer) -> Result<PathBuf, ImageError> {
        let lock = {
            let mut unpacks = self.inner.unpacks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(unpacks.entry(layer.diff_id.clone()).or_default())
        };
        let result = {
            let _guard = lock.lock().await;
            let store = Arc::clone(&self.inner.store);
            let layer = layer.clone();
            blocking(move || {
                unpack::unpack_layer(
                    &store.blob_path(&layer.digest),
                    &layer.diff_id,
                    &store.snapshots_dir(),
                )
            })
            .await
        };
        let mut unpacks = self.inner.unpacks.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&lock) <= 2 {
            unpacks.remove(&layer.diff_id);
        }
        result
    }

    /// Removes every record `reference` names, then collects garbage.
    pub async fn remove(&self, reference: &str) -> Result<RemoveReport, ImageError> {
        let wanted = lookup_key(reference);
        let removed = self.inner.store.update_images(|images| {
            let (gone, kept): (Vec<Image>, Vec<Image>) =
                images.drain(..).partition(|i| i.is_named_by(&wanted));
            *images = kept;
            Ok(gone)
        })?;
        if removed.is_empty() {
            return Err(ImageError::NotFound { reference: wanted });
        }
        let gc = self.gc().await?;
        Ok(RemoveReport { removed, gc })
    }

    /// Removes blobs and snapshots no image refers to. Waits for pulls, imports and
    /// unpacks in progress (in this and other processes) to finish first.
    pub async fn gc(&self) -> Result<GcReport, ImageError> {
        let store = Arc::clone(&self.inner.store);
        blocking(move || {
            let lease = store.lease_exclusive()?;
            store.collect_garbage(&lease)
        })
        .await
    }

    async fn lease_shared(&self) -> Result<store::Lease, ImageError> {
        let store = Arc::clone(&self.inner.store);
        blocking(move || store.lease_shared()).await
    }
}

/// Logs what an air-gap import did: one line per archive, and a summary.
fn log_import(dir: &Path, report: &ImportReport) {
    for (archive, images) in &report.imported {
        let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        tracing::info!(archive = %archive.display(), images = ?names, "imported image archive");
    }
    for archive in &report.skipped {
        tracing::debug!(archive = %archive.display(), "image archive unchanged since its import");
    }
    for (archive, error) in &report.failed {
        tracing::warn!(archive = %archive.display(), error = %error, "image archive import failed");
    }
    tracing::info!(
        dir = %dir.display(),
        imported = report.imported.len(),
        skipped = report.skipped.len(),
        failed = report.failed.len(),
        "air-gap image import done"
    );
}

/// What a stored record is looked up by: a normalised reference, or an id as given.
fn lookup_key(reference: &str) -> String {
    if reference.starts_with("sha256:") {
        return reference.to_string();
    }
    Reference::parse(reference)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| reference.to_string())
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_below_the_agent_dir() {
        assert_eq!(
            store_dir(Path::new("/var/lib/skiff")),
            Path::new("/var/lib/skiff/agent/images")
        );
    }

    #[tokio::test]
    async fn import_airgap_reports_bad_archives_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(store_dir(dir.path()), StoreOptions::default()).unwrap();
        std::fs::write(store.root().join("broken.tar.gz"), b"not gzip").unwrap();
        let report = store.import_airgap().await;
        assert!(report.imported.is_empty() && report.skipped.is_empty());
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, store.root().join("broken.tar.gz"));
        // Not recorded: tried again next time.
        assert_eq!(store.import_airgap().await.failed.len(), 1);
    }
}
