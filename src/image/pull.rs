//! Pulling one image: resolve the reference at each endpoint in turn (mirrors, then
//! the registry), pick this platform from an index, fetch config and layers (those
//! not stored yet, a few at a time, resuming interrupted downloads), verify every
//! digest and size, then record the image.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::config::ImageConfig;
use super::reference::{Digest, Reference};
use super::registries::Credentials;
use super::registry::{http_error, RegistryClient, Session};
use super::spec::{self, Descriptor, Index, Manifest, ManifestKind, Platform};
use super::store::{io_err, unix_now, ContentStore, Image, Layer};
use super::ImageError;

/// Layers downloaded at once.
const PARALLEL_LAYERS: usize = 3;
/// Attempts per blob when the connection drops (resuming with a Range request).
const BLOB_ATTEMPTS: u32 = 4;
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Config blobs larger than this are refused.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Called as layers download.
pub type ProgressFn = Arc<dyn Fn(&PullProgress) + Send + Sync>;

/// Options for one pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Credentials for the image's registry (a pod's pull secret); they win over
    /// `registries.yaml` for that host.
    pub credentials: Option<Credentials>,
    /// Progress reports, per layer.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("credentials", &self.credentials)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Where one layer's download stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    pub reference: String,
    pub layer: Digest,
    /// 1-based position of the layer, and the layer count.
    pub index: usize,
    pub count: usize,
    pub done: u64,
    pub total: u64,
    pub status: LayerStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerStatus {
    /// Stored before this pull; nothing to download.
    AlreadyExists,
    Downloading,
    /// Downloaded and verified.
    Complete,
}

/// Pulls `reference`, trying each endpoint until one succeeds.
pub async fn pull(
    store: &Arc<ContentStore>,
    registry: &Arc<RegistryClient>,
    platform: &Platform,
    reference: &Reference,
    options: &PullOptions,
) -> Result<Image, ImageError> {
    let mut failures = Vec::new();
    for endpoint in registry.config().endpoints(reference) {
        let api_root = endpoint.api_root.clone();
        let attempt = async {
            let session =
                registry.session(endpoint, &reference.registry, options.credentials.as_ref())?;
            let puller = Puller {
                store,
                session,
                platform,
                reference,
                options,
            };
            puller.pull().await
        };
        match attempt.await {
            Ok(image) => return Ok(image),
            // Local trouble (disk full, corrupt records): other endpoints won't help.
            Err(e @ (ImageError::Io { .. } | ImageError::Corrupt { .. })) => {
                failures.push((api_root, e));
                break;
            }
            Err(e) => {
                tracing::debug!(endpoint = %api_root, error = %e, "pull attempt failed");
                failures.push((api_root, e));
            }
        }
    }
    Err(ImageError::Pull {
        reference: reference.to_string(),
        failures,
    })
}

/// What a reference resolved to at the registry.
struct Resolved {
    /// Digest of what the reference named (an index or a manifest).
    top_digest: Digest,
    index_bytes: Option<Vec<u8>>,
    manifest_bytes: Vec<u8>,
    manifest_digest: Digest,
    manifest: Manifest,
}

struct Puller<'a> {
    store: &'a Arc<ContentStore>,
    session: Session,
    platform: &'a Platform,
    reference: &'a Reference,
    options: &'a PullOptions,
}

impl Puller<'_> {
    async fn pull(&self) -> Result<Image, ImageError> {
        let resolved = self.resolve().await?;
        let manifest = &resolved.manifest;
        let config_bytes = self.fetch_config(&manifest.config).await?;
        let config =
            ImageConfig::from_json(&config_bytes, &format!("config of {}", self.reference))?;
        if config.diff_ids().len() != manifest.layers.len() {
            return Err(self.invalid(format!(
                "{} layers but {} diff_ids in the config",
                manifest.layers.len(),
                config.diff_ids().len()
            )));
        }
        self.fetch_layers(&manifest.layers).await?;
        self.record(resolved, &config_bytes, &config)
    }

    /// Fetches what the reference names and, for an index, this platform's
    /// manifest; checks it describes a container image.
    async fn resolve(&self) -> Result<Resolved, ImageError> {
        let (body, content_type) = self
            .session
            .manifest(&self.reference.manifest_reference())
            .await?;
        let top_digest = Digest::of(&body);
        if let Some(wanted) = &self.reference.digest {
            if wanted != &top_digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("manifest of {}", self.reference),
                    expected: wanted.to_string(),
                    actual: top_digest.to_string(),
                });
            }
        }
        let kind = spec::manifest_kind(content_type.as_deref(), &body)
            .map_err(|reason| self.invalid(reason))?;
        let (manifest_bytes, manifest_digest, index_bytes) = match kind {
            ManifestKind::Manifest => (body, top_digest.clone(), None),
            ManifestKind::Index => {
                let (bytes, digest) = self.resolve_index(&body).await?;
                (bytes, digest, Some(body))
            }
        };
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| self.invalid(e.to_string()))?;
        check_image_manifest(&manifest).map_err(|reason| self.invalid(reason))?;
        Ok(Resolved {
            top_digest,
            index_bytes,
            manifest_bytes,
            manifest_digest,
            manifest,
        })
    }

    /// Stores config, manifest and index (layers are stored already) and the record.
    fn record(
        &self,
        resolved: Resolved,
        config_bytes: &[u8],
        config: &ImageConfig,
    ) -> Result<Image, ImageError> {
        let manifest = &resolved.manifest;
        self.store
            .write_blob(config_bytes, Some(&manifest.config.digest))?;
        self.store
            .write_blob(&resolved.manifest_bytes, Some(&resolved.manifest_digest))?;
        if let Some(index) = &resolved.index_bytes {
            self.store.write_blob(index, Some(&resolved.top_digest))?;
        }
        let image = build_image(
            self.reference.to_string(),
            manifest,
            config,
            resolved.top_digest,
            resolved.manifest_digest,
        );
        self.store.put_images(std::slice::from_ref(&image))?;
        Ok(image)
    }

    fn invalid(&self, reason: String) -> ImageError {
        ImageError::InvalidManifest {
            what: format!("manifest of {}", self.reference),
            reason,
        }
    }

    /// Picks this platform's manifest from an index and fetches it.
    async fn resolve_index(&self, body: &[u8]) -> Result<(Vec<u8>, Digest), ImageError> {
        let index: Index = serde_json::from_slice(body).map_err(|e| self.invalid(e.to_string()))?;
        let chosen = spec::select_platform(&index, self.platform).ok_or_else(|| {
            ImageError::NoMatchingPlatform {
                reference: self.reference.to_string(),
                platform: self.platform.to_string(),
                available: spec::offered_platforms(&index),
            }
        })?;
        let (bytes, content_type) = self.session.manifest(&chosen.digest.to_string()).await?;
        let actual = Digest::of(&bytes);
        if actual != chosen.digest {
            return Err(ImageError::DigestMismatch {
                what: format!("{} manifest of {}", self.platform, self.reference),
                expected: chosen.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let media_type = content_type.as_deref().or(Some(chosen.media_type.as_str()));
        match spec::manifest_kind(media_type, &bytes) {
            Ok(ManifestKind::Manifest) => Ok((bytes, actual)),
            Ok(ManifestKind::Index) => Err(self.invalid("nested indexes are not supported".into())),
            Err(reason) => Err(self.invalid(reason)),
        }
    }

    async fn fetch_config(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
        if self.store.has_blob(&descriptor.digest) {
            return self.store.read_blob(&descriptor.digest);
        }
        if descriptor.size > MAX_CONFIG_BYTES {
            return Err(self.invalid(format!("config of {} bytes is too large", descriptor.size)));
        }
        let mut response = self.session.blob(&descriptor.digest, 0).await?;
        let mut bytes = Vec::with_capacity(descriptor.size as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http_error(&descriptor.digest.to_string(), e))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > descriptor.size {
                break;
            }
        }
        verify_bytes(&bytes, descriptor, "image config")?;
        Ok(bytes)
    }

    async fn fetch_layers(&self, layers: &[Descriptor]) -> Result<(), ImageError> {
        let count = layers.len();
        let downloads: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(i, layer)| self.fetch_layer(layer, i + 1, count))
            .collect();
        futures::stream::iter(downloads)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    fn report(
        &self,
        layer: &Descriptor,
        index: usize,
        count: usize,
        done: u64,
        status: LayerStatus,
    ) {
        if let Some(progress) = &self.options.progress {
            progress(&PullProgress {
                reference: self.reference.to_string(),
                layer: layer.digest.clone(),
                index,
                count,
                done,
                total: layer.size,
                status,
            });
        }
    }

    /// Downloads one layer unless stored, retrying dropped connections.
    async fn fetch_layer(
        &self,
        layer: &Descriptor,
        index: usize,
        count: usize,
    ) -> Result<(), ImageError> {
        if self.store.has_blob(&layer.digest) {
            self.report(layer, index, count, layer.size, LayerStatus::AlreadyExists);
            return Ok(());
        }
        let mut download = Download::create(self.store).await?;
        let mut attempt = 1;
        loop {
            match self.stream_layer(layer, index, count, &mut download).await {
                Ok(()) => break,
                Err(e) if attempt < BLOB_ATTEMPTS && is_transient(&e) => {
                    tracing::warn!(layer = %layer.digest, attempt, error = %e, "layer download interrupted, retrying");
                    tokio::time::sleep(RETRY_PAUSE * attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        download.commit(self.store, layer).await?;
        self.report(layer, index, count, layer.size, LayerStatus::Complete);
        Ok(())
    }

    async fn stream_layer(
        &self,
        layer: &Descriptor,
        index: usize,
        count: usize,
        download: &mut Download,
    ) -> Result<(), ImageError> {
        let mut response = self.session.blob(&layer.digest, download.len).await?;
        if response.status() != reqwest::StatusCode::PARTIAL_CONTENT && download.len > 0 {
            download.restart().await?;
        }
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http_error(&layer.digest.to_string(), e))?
        {
            if download.len + chunk.len() as u64 > layer.size {
                return Err(ImageError::SizeMismatch {
                    what: layer.digest.to_string(),
                    expected: layer.size,
                    actual: download.len + chunk.len() as u64,
                });
            }
            download.write(&chunk).await?;
            self.report(layer, index, count, download.len, LayerStatus::Downloading);
        }
        Ok(())
    }
}

/// Network trouble worth another try (not a wrong digest or a 404).
fn is_transient(e: &ImageError) -> bool {
    match e {
        ImageError::Http { .. } => true,
        ImageError::Registry { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

/// A manifest must describe a container image: a config we know and layers we can
/// unpack (not a Helm chart or another artifact).
fn check_image_manifest(manifest: &Manifest) -> Result<(), String> {
    if !spec::is_config_type(&manifest.config.media_type) {
        return Err(format!(
            "not a container image (config media type {})",
            manifest.config.media_type
        ));
    }
    match manifest
        .layers
        .iter()
        .find(|l| !spec::is_layer_type(&l.media_type))
    {
        Some(layer) => Err(format!("unsupported layer media type {}", layer.media_type)),
        None => Ok(()),
    }
}

fn verify_bytes(bytes: &[u8], descriptor: &Descriptor, what: &str) -> Result<(), ImageError> {
    if bytes.len() as u64 != descriptor.size {
        return Err(ImageError::SizeMismatch {
            what: format!("{what} {}", descriptor.digest),
            expected: descriptor.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(bytes);
    if actual != descriptor.digest {
        return Err(ImageError::DigestMismatch {
            what: what.to_string(),
            expected: descriptor.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// The record for an image whose blobs are all stored.
pub fn build_image(
    name: String,
    manifest: &Manifest,
    config: &ImageConfig,
    digest: Digest,
    manifest_digest: Digest,
) -> Image {
    let layers: Vec<Layer> = manifest
        .layers
        .iter()
        .zip(config.diff_ids())
        .map(|(layer, diff_id)| Layer {
            digest: layer.digest.clone(),
            diff_id: diff_id.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        })
        .collect();
    let size = manifest.config.size + layers.iter().map(|l| l.size).sum::<u64>();
    Image {
        name,
        id: manifest.config.digest.clone(),
        digest,
        manifest_digest,
        layers,
        platform: config.platform().normalized(),
        size,
        stored_at: unix_now(),
    }
}

/// A layer being downloaded into the ingest directory; dropped without a commit
/// (an error, or the pull cancelled), its temp file is removed.
struct Download {
    file: tokio::fs::File,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
    committed: bool,
}

impl Download {
    async fn create(store: &ContentStore) -> Result<Download, ImageError> {
        let path = store.ingest_path();
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io_err("creating", &path))?;
        Ok(Download {
            file,
            path,
            hasher: Sha256::new(),
            len: 0,
            committed: false,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        self.file
            .write_all(chunk)
            .await
            .map_err(io_err("writing", &self.path))?;
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Starts over (the server ignored our Range request).
    async fn restart(&mut self) -> Result<(), ImageError> {
        self.file
            .set_len(0)
            .await
            .map_err(io_err("truncating", &self.path))?;
        tokio::io::AsyncSeekExt::rewind(&mut self.file)
            .await
            .map_err(io_err("truncating", &self.path))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    async fn commit(
        mut self,
        store: &ContentStore,
        layer: &Descriptor,
    ) -> Result<Digest, ImageError> {
        self.file
            .flush()
            .await
            .map_err(io_err("writing", &self.path))?;
        self.file
            .sync_all()
            .await
            .map_err(io_err("syncing", &self.path))?;
        // From here on commit_ingest decides what happens to the temp file.
        self.committed = true;
        let actual = Digest::from_sha256(std::mem::take(&mut self.hasher).finalize().into());
        store.commit_ingest(
            &self.path,
            actual,
            self.len,
            Some(&layer.digest),
            Some(layer.size),
        )
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
