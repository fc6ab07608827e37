//! Air-gap import of image archives: `docker save` tarballs (`manifest.json` with
//! `RepoTags`, layer tars) and OCI image layouts (`oci-layout`, `index.json`,
//! `blobs/sha256/…`, multi-platform indexes resolved to this node's platform), each
//! plain, gzip or zstd compressed (detected from the bytes). An archive with both
//! (`skiff image save`, docker 25+) is read as the OCI layout, which keeps the
//! registry's digests.
//!
//! The archive is read in one pass: every file goes straight into the content store
//! (OCI blobs are checked against their names), small ones are also kept in memory
//! for parsing. Blobs the archive brought that no image ends up using (other
//! platforms' layers) are removed afterwards.
//!
//! `import_dir` remembers what it imported in `import-state.json` (path, size,
//! mtime, sha256, image names) and skips unchanged archives whose images are still
//! stored. It looks only at regular files at the top of the directory whose names end
//! in one of [`IMPORT_EXTENSIONS`] and do not start with a dot, so it can scan the
//! store's own root (where `content/`, `snapshots/` and the state file live): that
//! root is the air-gap directory. Archives that disappeared are forgotten.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::compress::{self, Compression};
use super::config::ImageConfig;
use super::pull::build_image;
use super::reference::{Digest, Reference};
use super::spec::{self, Descriptor, Index, Manifest, ManifestKind, Platform};
use super::store::{io_err, write_atomic, BlobWriter, ContentStore, Image};
use super::unpack::HashingReader;
use super::ImageError;

/// File name endings `import_dir` picks up.
pub const IMPORT_EXTENSIONS: &[&str] = &[".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst"];
const STATE_FILE: &str = "import-state.json";
/// Files up to this size are kept in memory while reading the archive.
const SMALL_FILE: u64 = 4 * 1024 * 1024;
/// Archive members that are metadata, not blobs.
const METADATA_FILES: &[&str] = &["manifest.json", "index.json", "oci-layout", "repositories"];
const MAX_LINK_HOPS: usize = 8;
const MAX_INDEX_DEPTH: usize = 4;

/// What `import_dir` did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: Vec<(PathBuf, Vec<Image>)>,
    /// Unchanged since they were imported.
    pub skipped: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, ImageError)>,
}

/// A file of the archive, now a blob.
struct Member {
    digest: Digest,
    size: u64,
    bytes: Option<Vec<u8>>,
}

#[derive(Default)]
struct Contents {
    files: HashMap<String, Member>,
    /// Link name → target, both archive paths.
    links: HashMap<String, String>,
    /// Blobs that were not in the store before this import.
    new_blobs: HashSet<Digest>,
}

/// Imports one archive and returns its images.
pub fn import_archive(
    store: &ContentStore,
    platform: &Platform,
    path: &Path,
) -> Result<Vec<Image>, ImageError> {
    let archive_err = |reason: String| ImageError::Archive {
        path: path.to_path_buf(),
        reason,
    };
    let mut contents = Contents::default();
    if let Err(e) = read_archive(store, path, &mut contents) {
        drop_unused_new_blobs(store, &contents.new_blobs);
        return Err(e);
    }
    let result = build_images(store, platform, &contents).map_err(|e| match e {
        ImageError::Archive { reason, .. } => archive_err(reason),
        other => other,
    });
    let result = result.and_then(|images| {
        if images.is_empty() {
            return Err(archive_err("no images in archive".to_string()));
        }
        store.put_images(&images)?;
        Ok(images)
    });
    drop_unused_new_blobs(store, &contents.new_blobs);
    result
}

/// Reads every member of the archive into the store.
fn read_archive(
    store: &ContentStore,
    path: &Path,
    contents: &mut Contents,
) -> Result<(), ImageError> {
    let archive_err = |reason: String| ImageError::Archive {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(io_err("opening", path))?;
    let (reader, _) = compress::decompress(BufReader::with_capacity(256 * 1024, file))
        .map_err(|e| archive_err(e.to_string()))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| archive_err(format!("reading tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_err(format!("reading tar: {e}")))?;
        let name = member_name(&entry.path_bytes());
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = if kind.is_symlink() {
                    join_relative(&name, &member_name(&target))
                } else {
                    member_name(&target)
                };
                contents.links.insert(name, target);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let member = store_member(store, &name, &mut entry, &mut contents.new_blobs).map_err(
            |e| match e {
                ImageError::Archive { reason, .. } => archive_err(format!("{name}: {reason}")),
                other => other,
            },
        )?;
        contents.files.insert(name, member);
    }
    Ok(())
}

/// Stores one regular file as a blob (metadata files only in memory).
fn store_member(
    store: &ContentStore,
    name: &str,
    entry: &mut impl Read,
    new_blobs: &mut HashSet<Digest>,
) -> Result<Member, ImageError> {
    let expected = blob_name_digest(name);
    let is_metadata = METADATA_FILES.contains(&name);
    let mut writer = if is_metadata {
        None
    } else {
        Some(BlobWriter::create(store)?)
    };
    let mut hashing = HashingReader::new(entry);
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = hashing.read(&mut buf).map_err(|e| ImageError::Archive {
            path: PathBuf::new(),
            reason: format!("reading: {e}"),
        })?;
        if n == 0 {
            break;
        }
        if (kept.len() as u64) < SMALL_FILE {
            kept.extend_from_slice(&buf[..n]);
        }
        if let Some(w) = writer.as_mut() {
            io::Write::write_all(w, &buf[..n]).map_err(io_err("writing", &w.path))?;
        }
    }
    let size = hashing.bytes_read();
    let digest = hashing.digest();
    if let Some(expected) = &expected {
        if expected != &digest {
            return Err(ImageError::DigestMismatch {
                what: format!("archive member {name}"),
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    if let Some(w) = writer {
        if store.has_blob(&digest) {
            w.discard();
        } else {
            w.commit(store, Some(&digest), Some(size))?;
            new_blobs.insert(digest.clone());
        }
    }
    let bytes = (size <= SMALL_FILE).then_some(kept);
    Ok(Member {
        digest,
        size,
        bytes,
    })
}

/// `blobs/sha256/<hex>` → that digest.
fn blob_name_digest(name: &str) -> Option<Digest> {
    let hex = name.strip_prefix("blobs/sha256/")?;
    Digest::from_hex(hex).ok()
}

/// Archive paths without `./` or a leading `/`.
fn member_name(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// A symlink target relative to the link's directory, as an archive path.
fn join_relative(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

impl Contents {
    fn member(&self, name: &str) -> Option<&Member> {
        let mut name = member_name(name.as_bytes());
        for _ in 0..MAX_LINK_HOPS {
            if let Some(member) = self.files.get(&name) {
                return Some(member);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn member_bytes(
        &self,
        store: &ContentStore,
        name: &str,
    ) -> Result<(Vec<u8>, &Member), ImageError> {
        let member = self
            .member(name)
            .ok_or_else(|| archive_reason(format!("{name} is missing from the archive")))?;
        let bytes = match &member.bytes {
            Some(bytes) => bytes.clone(),
            None => store.read_blob(&member.digest)?,
        };
        Ok((bytes, member))
    }
}

fn archive_reason(reason: String) -> ImageError {
    ImageError::Archive {
        path: PathBuf::new(),
        reason,
    }
}

fn build_images(
    store: &ContentStore,
    platform: &Platform,
    contents: &Contents,
) -> Result<Vec<Image>, ImageError> {
    // Both (`skiff image save`, docker 25+): the OCI layout keeps the registry's
    // digests, as containerd's import prefers it too.
    if contents.member("index.json").is_some() {
        oci_images(store, platform, contents)
    } else if contents.member("manifest.json").is_some() {
        docker_images(store, contents)
    } else {
        Err(archive_reason(
            "neither manifest.json (docker save) nor index.json (OCI layout) found".to_string(),
        ))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// `docker save`: each manifest.json entry is an image; layers may be plain tars.
fn docker_images(store: &ContentStore, contents: &Contents) -> Result<Vec<Image>, ImageError> {
    let (bytes, _) = contents.member_bytes(store, "manifest.json")?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| archive_reason(format!("manifest.json: {e}")))?;
    let mut images = Vec::new();
    for entry in entries {
        let (config_bytes, config_member) = contents.member_bytes(store, &entry.config)?;
        let config = ImageConfig::from_json(&config_bytes, &entry.config)?;
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let member = contents
                .member(layer)
                .ok_or_else(|| archive_reason(format!("layer {layer} is missing")))?;
            layers.push(Descriptor {
                media_type: layer_media_type(store, &member.digest)?.to_string(),
                digest: member.digest.clone(),
                size: member.size,
                platform: None,
                annotations: BTreeMap::new(),
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(spec::OCI_MANIFEST.to_string()),
            config: Descriptor {
                media_type: spec::OCI_CONFIG.to_string(),
                digest: config_member.digest.clone(),
                size: config_member.size,
                platform: None,
                annotations: BTreeMap::new(),
            },
            layers,
            annotations: BTreeMap::new(),
        };
        check_layer_count(&manifest, &config, &entry.config)?;
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| archive_reason(format!("encoding manifest: {e}")))?;
        let manifest_digest = store.write_blob(&manifest_bytes, None)?;
        let names = docker_names(entry.repo_tags.as_deref().unwrap_or_default());
        images.extend(named_images(
            names,
            &manifest,
            &config,
            &manifest_digest,
            &manifest_digest,
        ));
    }
    Ok(images)
}

fn docker_names(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|tag| match Reference::parse(tag) {
            Ok(r) => Some(r.to_string()),
            Err(e) => {
                tracing::warn!(tag = %tag, error = %e, "ignoring invalid RepoTag");
                None
            }
        })
        .collect()
}

/// OCI layout: each index.json entry is an image (an index → this platform).
fn oci_images(
    store: &ContentStore,
    platform: &Platform,
    contents: &Contents,
) -> Result<Vec<Image>, ImageError> {
    let (bytes, _) = contents.member_bytes(store, "index.json")?;
    let index: Index =
        serde_json::from_slice(&bytes).map_err(|e| archive_reason(format!("index.json: {e}")))?;
    let mut images = Vec::new();
    for top in &index.manifests {
        let manifest_desc = resolve_to_manifest(store, platform, top, 0)?;
        let manifest_bytes = store.read_blob(&manifest_desc.digest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| archive_reason(format!("manifest {}: {e}", manifest_desc.digest)))?;
        let config_bytes = store
            .read_blob(&manifest.config.digest)
            .map_err(|e| missing(e, &manifest.config))?;
        let config = ImageConfig::from_json(&config_bytes, &manifest.config.digest.to_string())?;
        for layer in &manifest.layers {
            if !store.has_blob(&layer.digest) {
                return Err(archive_reason(format!("layer {} is missing", layer.digest)));
            }
        }
        check_layer_count(&manifest, &config, &manifest_desc.digest.to_string())?;
        let names = oci_names(&top.annotations);
        images.extend(named_images(
            names,
            &manifest,
            &config,
            &top.digest,
            &manifest_desc.digest,
        ));
    }
    Ok(images)
}

fn missing(e: ImageError, descriptor: &Descriptor) -> ImageError {
    match e {
        ImageError::Io { .. } => archive_reason(format!("blob {} is missing", descriptor.digest)),
        other => other,
    }
}

/// Follows indexes down to the manifest for `platform`.
fn resolve_to_manifest(
    store: &ContentStore,
    platform: &Platform,
    descriptor: &Descriptor,
    depth: usize,
) -> Result<Descriptor, ImageError> {
    if depth > MAX_INDEX_DEPTH {
        return Err(archive_reason("indexes nested too deeply".to_string()));
    }
    let bytes = store
        .read_blob(&descriptor.digest)
        .map_err(|e| missing(e, descriptor))?;
    match spec::manifest_kind(Some(&descriptor.media_type), &bytes).map_err(archive_reason)? {
        ManifestKind::Manifest => Ok(descriptor.clone()),
        ManifestKind::Index => {
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| archive_reason(format!("index {}: {e}", descriptor.digest)))?;
            let chosen = spec::select_platform(&index, platform).ok_or_else(|| {
                archive_reason(format!(
                    "no image for {platform} in index {} (it has: {})",
                    descriptor.digest,
                    spec::offered_platforms(&index)
                ))
            })?;
            if !store.has_blob(&chosen.digest) {
                return Err(archive_reason(format!(
                    "the archive lacks the {platform} image of index {} (saved for \
                     another platform? see `skiff image import --platform`)",
                    descriptor.digest
                )));
            }
            resolve_to_manifest(store, platform, chosen, depth + 1)
        }
    }
}

/// Names from an index.json entry: containerd's full-name annotation, else
/// `org.opencontainers.image.ref.name` when it is a full reference (a bare tag
/// like `1.36` names no repository, so the image stays unnamed).
fn oci_names(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let full = annotations
        .get(spec::ANNOTATION_CONTAINERD_NAME)
        .or_else(|| {
            annotations
                .get(spec::ANNOTATION_REF_NAME)
                .filter(|n| n.contains(['/', ':', '@']))
        });
    match full.map(|n| Reference::parse(n)) {
        Some(Ok(r)) => vec![r.to_string()],
        Some(Err(e)) => {
            tracing::warn!(error = %e, "ignoring invalid image name annotation");
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn check_layer_count(
    manifest: &Manifest,
    config: &ImageConfig,
    what: &str,
) -> Result<(), ImageError> {
    if manifest.layers.len() != config.diff_ids().len() {
        return Err(archive_reason(format!(
            "{what}: {} layers but {} diff_ids in the config",
            manifest.layers.len(),
            config.diff_ids().len()
        )));
    }
    Ok(())
}

/// One record per name, or one unnamed record (named by its id).
fn named_images(
    names: Vec<String>,
    manifest: &Manifest,
    config: &ImageConfig,
    digest: &Digest,
    manifest_digest: &Digest,
) -> Vec<Image> {
    let names = if names.is_empty() {
        vec![manifest.config.digest.to_string()]
    } else {
        names
    };
    names
        .into_iter()
        .map(|name| {
            build_image(
                name,
                manifest,
                config,
                digest.clone(),
                manifest_digest.clone(),
            )
        })
        .collect()
}

/// The OCI media type matching a stored layer's actual compression.
fn layer_media_type(store: &ContentStore, digest: &Digest) -> Result<&'static str, ImageError> {
    let path = store.blob_path(digest);
    let mut head = [0u8; 6];
    let mut file = File::open(&path).map_err(io_err("opening", &path))?;
    let n = read_up_to(&mut file, &mut head).map_err(io_err("reading", &path))?;
    match compress::detect(&head[..n]).map_err(archive_reason)? {
        Compression::None => Ok(spec::OCI_LAYER),
        Compression::Gzip => Ok(spec::OCI_LAYER_GZIP),
        Compression::Zstd => Ok(spec::OCI_LAYER_ZSTD),
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Removes blobs this import added that no image record uses.
fn drop_unused_new_blobs(store: &ContentStore, new_blobs: &HashSet<Digest>) {
    if new_blobs.is_empty() {
        return;
    }
    let Ok(images) = store.images() else { return };
    let used: HashSet<&Digest> = images
        .iter()
        .flat_map(|i| {
            [&i.id, &i.digest, &i.manifest_digest]
                .into_iter()
                .chain(i.layers.iter().map(|l| &l.digest))
        })
        .collect();
    for digest in new_blobs.iter().filter(|d| !used.contains(d)) {
        let _ = fs::remove_file(store.blob_path(digest));
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ImportState {
    archives: BTreeMap<String, ArchiveState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ArchiveState {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    sha256: Digest,
    images: Vec<String>,
}

/// Imports every archive of `dir` not imported before (see the module docs).
pub fn import_dir(
    store: &ContentStore,
    platform: &Platform,
    dir: &Path,
) -> Result<ImportReport, ImageError> {
    let state_path = store.root().join(STATE_FILE);
    let previous = load_state(&state_path)?;
    let mut state = ImportState::default();
    let stored: HashSet<String> = store.images()?.into_iter().map(|i| i.name).collect();
    let mut report = ImportReport::default();
    for path in archives_in(dir)? {
        let key = path.to_string_lossy().into_owned();
        match import_if_changed(store, platform, &path, previous.archives.get(&key), &stored) {
            Ok(Outcome::Unchanged(entry)) => {
                state.archives.insert(key, entry);
                report.skipped.push(path);
            }
            Ok(Outcome::Imported(entry, images)) => {
                state.archives.insert(key, entry);
                report.imported.push((path, images));
            }
            Err(e) => {
                tracing::debug!(archive = %path.display(), error = %e, "image import failed");
                report.failed.push((path, e));
            }
        }
    }
    // Entries of other directories are kept; those of vanished archives dropped.
    for (key, entry) in previous.archives {
        if Path::new(&key).parent() != Some(dir) {
            state.archives.entry(key).or_insert(entry);
        }
    }
    save_state(&state_path, &state)?;
    Ok(report)
}

enum Outcome {
    Unchanged(ArchiveState),
    Imported(ArchiveState, Vec<Image>),
}

/// Skips an archive whose images are all still stored and whose size and mtime,
/// or else content hash, match the last import; imports it otherwise.
fn import_if_changed(
    store: &ContentStore,
    platform: &Platform,
    path: &Path,
    previous: Option<&ArchiveState>,
    stored: &HashSet<String>,
) -> Result<Outcome, ImageError> {
    let meta = fs::metadata(path).map_err(io_err("reading", path))?;
    let previous = previous.filter(|p| p.images.iter().all(|n| stored.contains(n)));
    if let Some(p) = previous {
        let same_stat =
            p.size == meta.len() && p.mtime == meta.mtime() && p.mtime_nsec == meta.mtime_nsec();
        if same_stat {
            return Ok(Outcome::Unchanged(p.clone()));
        }
    }
    let mut entry = ArchiveState {
        size: meta.len(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        sha256: hash_file(path)?,
        images: Vec::new(),
    };
    if let Some(p) = previous.filter(|p| p.sha256 == entry.sha256) {
        entry.images = p.images.clone();
        return Ok(Outcome::Unchanged(entry));
    }
    let images = import_archive(store, platform, path)?;
    entry.images = images.iter().map(|i| i.name.clone()).collect();
    Ok(Outcome::Imported(entry, images))
}

/// Regular files (or links to them) of `dir` with an archive extension and no
/// leading dot, sorted; none when `dir` is missing.
fn archives_in(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
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
        let path = entry.map_err(io_err("listing", dir))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if is_archive_name(&name) && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// A (lowercased) file name `import_dir` picks up: hidden files (editors' and
/// copy tools' temp files) are not.
fn is_archive_name(name: &str) -> bool {
    !name.starts_with('.') && IMPORT_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

fn hash_file(path: &Path) -> Result<Digest, ImageError> {
    let file = File::open(path).map_err(io_err("opening", path))?;
    let mut hashing = HashingReader::new(BufReader::with_capacity(256 * 1024, file));
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err("reading", path))?;
    Ok(hashing.digest())
}

fn load_state(path: &Path) -> Result<ImportState, ImageError> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable import state");
            ImportState::default()
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ImportState::default()),
        Err(source) => Err(ImageError::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn save_state(path: &Path, state: &ImportState) -> Result<(), ImageError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| ImageError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    /// A tar archive built in memory.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Self {
            Tar(tar::Builder::new(Vec::new()))
        }

        fn add(&mut self, path: &str, body: &[u8]) {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            self.0.append_data(&mut h, path, body).unwrap();
        }

        fn finish(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn layer_tar() -> Vec<u8> {
        let mut t = Tar::new();
        t.add("hello.txt", b"hello");
        t.finish()
    }

    fn config_for(layer: &[u8], arch: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(layer).to_string()]}
        }))
        .unwrap()
    }

    fn docker_archive() -> Vec<u8> {
        let layer = layer_tar();
        let config = config_for(&layer, "amd64");
        let config_name = format!("{}.json", Digest::of(&config).hex());
        let mut t = Tar::new();
        t.add(&config_name, &config);
        t.add("abc/layer.tar", &layer);
        let manifest = json!([{
            "Config": config_name,
            "RepoTags": ["hello:1", "example.com/team/hello:1"],
            "Layers": ["abc/layer.tar"]
        }]);
        t.add("manifest.json", manifest.to_string().as_bytes());
        t.finish()
    }

    fn platform() -> Platform {
        Platform::parse("linux/amd64").unwrap()
    }

    #[test]
    fn imports_a_gzipped_docker_save_archive() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let path = dir.path().join("hello.tar.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&docker_archive()).unwrap();
        fs::write(&path, gz.finish().unwrap()).unwrap();

        let images = import_archive(&store, &platform(), &path).unwrap();
        let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            ["docker.io/library/hello:1", "example.com/team/hello:1"]
        );
        let image = &images[0];
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.layers[0].media_type, spec::OCI_LAYER);
        assert_eq!(image.layers[0].digest, image.layers[0].diff_id);
        assert!(store.has_blob(&image.manifest_digest));
        assert_eq!(store.images().unwrap().len(), 2);
    }

    #[test]
    fn import_dir_skips_unchanged_archives() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let images = dir.path().join("images");
        fs::create_dir(&images).unwrap();
        fs::write(images.join("a.tar"), docker_archive()).unwrap();
        fs::write(images.join("notes.txt"), b"not an archive").unwrap();
        fs::write(images.join("broken.tar"), b"garbage").unwrap();

        let first = import_dir(&store, &platform(), &images).unwrap();
        assert_eq!(first.imported.len(), 1);
        assert_eq!(first.failed.len(), 1, "broken.tar fails alone");
        let second = import_dir(&store, &platform(), &images).unwrap();
        assert_eq!(second.imported.len(), 0);
        assert_eq!(second.skipped, vec![images.join("a.tar")]);

        // Same content, new mtime: hashed, still skipped.
        let f = File::options()
            .append(true)
            .open(images.join("a.tar"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let third = import_dir(&store, &platform(), &images).unwrap();
        assert_eq!(third.skipped.len(), 1);
        assert!(third.imported.is_empty());

        // Images removed since: imported again.
        store
            .update_images(|i| {
                i.clear();
                Ok(())
            })
            .unwrap();
        let fourth = import_dir(&store, &platform(), &images).unwrap();
        assert_eq!(fourth.imported.len(), 1);
    }

    #[test]
    fn import_dir_scans_the_stores_own_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("agent/images");
        let store = ContentStore::open(&root).unwrap();
        fs::write(root.join("a.tar"), docker_archive()).unwrap();
        fs::write(root.join(".a.tar"), b"a copy tool's temp file").unwrap();
        fs::create_dir(root.join("dir.tar")).unwrap();

        let first = import_dir(&store, &platform(), &root).unwrap();
        assert_eq!(first.imported.len(), 1, "{first:?}");
        assert!(first.failed.is_empty(), "{first:?}");
        assert!(root.join(STATE_FILE).is_file());
        assert!(root.join("content").is_dir() && root.join("snapshots").is_dir());
        let second = import_dir(&store, &platform(), &root).unwrap();
        assert_eq!(second.skipped, vec![root.join("a.tar")]);
        assert!(second.imported.is_empty() && second.failed.is_empty());
    }

    #[test]
    fn import_dir_forgets_vanished_archives_only_of_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        for d in [&one, &two] {
            fs::create_dir(d).unwrap();
            fs::write(d.join("a.tar"), docker_archive()).unwrap();
        }
        import_dir(&store, &platform(), &one).unwrap();
        import_dir(&store, &platform(), &two).unwrap();
        fs::remove_file(one.join("a.tar")).unwrap();
        import_dir(&store, &platform(), &one).unwrap();
        let state = load_state(&store.root().join(STATE_FILE)).unwrap();
        let keys: Vec<&String> = state.archives.keys().collect();
        assert_eq!(keys, [&two.join("a.tar").to_string_lossy().into_owned()]);
    }

    #[test]
    fn archive_names() {
        assert!(is_archive_name("busybox.tar"));
        assert!(is_archive_name("app.tar.zst"));
        assert!(is_archive_name("app.tgz"));
        assert!(!is_archive_name(".app.tar"));
        assert!(!is_archive_name("import-state.json"));
        assert!(!is_archive_name("app.tar.part"));
    }

    #[test]
    fn a_truncated_archive_fails_and_leaves_no_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&docker_archive()).unwrap();
        let whole = gz.finish().unwrap();
        let path = dir.path().join("cut.tar.gz");
        fs::write(&path, &whole[..whole.len() * 3 / 4]).unwrap();
        let err = import_archive(&store, &platform(), &path).err().unwrap();
        assert!(err.to_string().contains("cut.tar.gz"), "{err}");
        let blobs = fs::read_dir(dir.path().join("store/content/blobs/sha256")).unwrap();
        assert_eq!(blobs.count(), 0);
        let temps = fs::read_dir(dir.path().join("store/content/ingest")).unwrap();
        assert_eq!(temps.count(), 0, "no half-written member left behind");
        assert!(store.images().unwrap().is_empty());
    }

    #[test]
    fn oci_blob_with_wrong_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let mut t = Tar::new();
        t.add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        t.add(&format!("blobs/sha256/{}", "0".repeat(64)), b"tampered");
        t.add("index.json", br#"{"schemaVersion":2,"manifests":[]}"#);
        let path = dir.path().join("bad.tar");
        fs::write(&path, t.finish()).unwrap();
        let err = import_archive(&store, &platform(), &path).err().unwrap();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn oci_names_need_a_repository() {
        let mut a = BTreeMap::new();
        a.insert(spec::ANNOTATION_REF_NAME.to_string(), "1.36".to_string());
        assert!(oci_names(&a).is_empty());
        a.insert(
            spec::ANNOTATION_REF_NAME.to_string(),
            "busybox:1.36".to_string(),
        );
        assert_eq!(oci_names(&a), ["docker.io/library/busybox:1.36"]);
        a.insert(
            spec::ANNOTATION_CONTAINERD_NAME.to_string(),
            "ghcr.io/x/y:2".to_string(),
        );
        assert_eq!(oci_names(&a), ["ghcr.io/x/y:2"]);
    }

    #[test]
    fn links_and_paths_resolve() {
        assert_eq!(member_name(b"./a//b/"), "a/b");
        assert_eq!(
            join_relative("x/layer.tar", "../y/layer.tar"),
            "y/layer.tar"
        );
    }
}
