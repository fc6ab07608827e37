//! Writing image archives (`skiff image save`): one tarball holding several images,
//! both as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) and as
//! a `docker save` archive (`manifest.json` with `RepoTags` and `Layers` pointing at
//! the same blobs), so skiff, k3s/containerd (`ctr images import`), `docker load` and
//! `podman load` all read it. skiff's own importer prefers the OCI layout when both
//! are there (archive.rs): it keeps the registry's digests.
//!
//! Each image is an `index.json` entry for what its name resolved to at the registry
//! (the index of a multi-platform image, else its manifest), so `name@digest`
//! references still match after an import. The entry carries containerd's
//! `io.containerd.image.name` (the full reference) and
//! `org.opencontainers.image.ref.name` (the tag), as `ctr images export` writes
//! them. Only the blobs of the image's own platform are written: a multi-platform
//! index names platforms whose manifests are not in the archive (as with
//! `ctr images export --platform`).
//!
//! The archive is deterministic: members in a fixed order (`oci-layout`, the blobs
//! by digest, `index.json`, `manifest.json`), owner root, fixed modes, time 0, so the
//! same images give the same bytes. The compression follows the file name (`.tar`,
//! `.tar.gz`/`.tgz`, `.tar.zst`/`.tzst`); zstd is written as a sequence of
//! independent frames (any zstd reader reads them as one stream). A file is written
//! to a hidden temp file beside it, synced and renamed into place.
//!
//! May call: the content store (reading blobs), the filesystem.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::json;

use super::compress::Compression;
use super::reference::{Digest, Reference, DEFAULT_REGISTRY};
use super::spec::{self, ManifestKind};
use super::store::{io_err, ContentStore, Image};
use super::ImageError;

/// Uncompressed bytes per zstd frame.
const ZSTD_FRAME_BYTES: usize = 4 * 1024 * 1024;
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Where `ImageStore::save` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveTarget {
    /// A file, compressed as its name says, replaced atomically.
    File(PathBuf),
    /// An uncompressed tar on standard output.
    Stdout,
}

/// What `ImageStore::save` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveReport {
    pub images: usize,
    pub blobs: usize,
    /// Bytes of the (uncompressed) tar.
    pub tar_bytes: u64,
}

/// The compression a file name asks for, or an error naming what is supported.
pub fn compression_for(path: &Path) -> Result<Compression, ImageError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".tar") {
        Ok(Compression::None)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Ok(Compression::Gzip)
    } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
        Ok(Compression::Zstd)
    } else {
        Err(ImageError::Archive {
            path: path.to_path_buf(),
            reason: "the archive's name must end in .tar, .tar.gz or .tar.zst \
                     (that is its compression)"
                .to_string(),
        })
    }
}

/// Writes `images` (records of `store`) to `target`; stops with an error (and no
/// file) soon after `cancel` is set.
pub fn save(
    store: &ContentStore,
    images: &[Image],
    target: &SaveTarget,
    cancel: &AtomicBool,
) -> Result<SaveReport, ImageError> {
    let plan = Plan::new(store, images, cancel)?;
    match target {
        SaveTarget::Stdout => {
            let stdout = io::stdout().lock();
            let path = Path::new("standard output");
            write_compressed(store, &plan, stdout, Compression::None, path)
        }
        SaveTarget::File(path) => save_file(store, &plan, path),
    }
}

/// Through a hidden temp file in the same directory, synced, then renamed.
fn save_file(store: &ContentStore, plan: &Plan<'_>, path: &Path) -> Result<SaveReport, ImageError> {
    let compression = compression_for(path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let file = File::create(&temp).map_err(io_err("creating", &temp))?;
        let report = write_compressed(store, plan, file, compression, &temp)?;
        fs::rename(&temp, path).map_err(io_err("renaming to", path))?;
        Ok(report)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// The tar through the compression into `out`; files are synced at the end.
fn write_compressed<W: Write + MaybeSync>(
    store: &ContentStore,
    plan: &Plan<'_>,
    out: W,
    compression: Compression,
    path: &Path,
) -> Result<SaveReport, ImageError> {
    let buffered = BufWriter::with_capacity(256 * 1024, out);
    let werr = io_err("writing", path);
    let buffered = match compression {
        Compression::None => write_tar(store, plan, buffered, path)?,
        Compression::Gzip => {
            let gz = flate2::GzBuilder::new().write(buffered, flate2::Compression::default());
            let gz = write_tar(store, plan, gz, path)?;
            gz.finish().map_err(io_err("writing", path))?
        }
        Compression::Zstd => {
            let zstd = ZstdFrames::new(buffered);
            let zstd = write_tar(store, plan, zstd, path)?;
            zstd.finish().map_err(io_err("writing", path))?
        }
    };
    let out = buffered.into_inner().map_err(|e| werr(e.into_error()))?;
    out.sync().map_err(io_err("syncing", path))?;
    Ok(SaveReport {
        images: plan.images,
        blobs: plan.blobs.len(),
        tar_bytes: plan.tar_bytes(),
    })
}

/// Files are synced before the rename; standard output is only flushed.
trait MaybeSync {
    fn sync(self) -> io::Result<()>;
}

impl MaybeSync for File {
    fn sync(self) -> io::Result<()> {
        self.sync_all()
    }
}

impl MaybeSync for io::StdoutLock<'_> {
    fn sync(mut self) -> io::Result<()> {
        self.flush()
    }
}

/// What goes into the archive, worked out before anything is written.
struct Plan<'a> {
    /// Digest → size, sorted by digest.
    blobs: BTreeMap<Digest, u64>,
    index_json: Vec<u8>,
    manifest_json: Vec<u8>,
    images: usize,
    cancel: &'a AtomicBool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

impl<'a> Plan<'a> {
    fn new(
        store: &ContentStore,
        images: &[Image],
        cancel: &'a AtomicBool,
    ) -> Result<Plan<'a>, ImageError> {
        let mut blobs = BTreeMap::new();
        let mut index_entries = Vec::new();
        let mut docker: Vec<(Digest, DockerEntry)> = Vec::new();
        let mut seen = BTreeSet::new();
        for image in images.iter().filter(|i| seen.insert(i.name.clone())) {
            let top = top_descriptor(store, image)?;
            for digest in [&top.0, &image.manifest_digest, &image.id]
                .into_iter()
                .chain(image.layers.iter().map(|l| &l.digest))
            {
                let size = blob_size(store, digest)?;
                blobs.insert(digest.clone(), size);
            }
            index_entries.push(json!({
                "mediaType": top.1,
                "digest": top.0,
                "size": blobs[&top.0],
                "annotations": name_annotations(&image.name),
            }));
            let tag = docker_tag(&image.name);
            match docker.iter_mut().find(|(m, _)| *m == image.manifest_digest) {
                Some((_, entry)) => entry.repo_tags.extend(tag),
                None => docker.push((
                    image.manifest_digest.clone(),
                    DockerEntry {
                        config: blob_member(&image.id),
                        repo_tags: tag.into_iter().collect(),
                        layers: image
                            .layers
                            .iter()
                            .map(|l| blob_member(&l.digest))
                            .collect(),
                    },
                )),
            }
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": spec::OCI_INDEX,
            "manifests": index_entries,
        });
        let docker: Vec<DockerEntry> = docker.into_iter().map(|(_, e)| e).collect();
        Ok(Plan {
            blobs,
            index_json: to_json(&index)?,
            manifest_json: to_json(&docker)?,
            images: seen.len(),
            cancel,
        })
    }

    /// The tar's size: headers, contents padded to 512 bytes, two end blocks.
    fn tar_bytes(&self) -> u64 {
        let member = |size: u64| 512 + size.div_ceil(512) * 512;
        let dirs = 2 * member(0);
        let meta = member(OCI_LAYOUT.len() as u64)
            + member(self.index_json.len() as u64)
            + member(self.manifest_json.len() as u64);
        dirs + meta + self.blobs.values().map(|s| member(*s)).sum::<u64>() + 1024
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|e| ImageError::Archive {
        path: PathBuf::new(),
        reason: format!("encoding json: {e}"),
    })
}

/// What the image's name resolved to (index or manifest) and its media type; the
/// manifest when the index is not stored.
fn top_descriptor(store: &ContentStore, image: &Image) -> Result<(Digest, String), ImageError> {
    let top = if store.has_blob(&image.digest) {
        &image.digest
    } else {
        &image.manifest_digest
    };
    let bytes = store.read_blob(top)?;
    let kind = spec::manifest_kind(None, &bytes).map_err(|reason| ImageError::InvalidManifest {
        what: format!("{top} of {}", image.name),
        reason,
    })?;
    let declared = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string));
    let media_type = declared.unwrap_or_else(|| {
        match kind {
            ManifestKind::Index => spec::OCI_INDEX,
            ManifestKind::Manifest => spec::OCI_MANIFEST,
        }
        .to_string()
    });
    Ok((top.clone(), media_type))
}

fn blob_size(store: &ContentStore, digest: &Digest) -> Result<u64, ImageError> {
    let path = store.blob_path(digest);
    Ok(fs::metadata(&path).map_err(io_err("reading", &path))?.len())
}

fn blob_member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// containerd's annotations: the full name, and the tag as the OCI ref name.
fn name_annotations(name: &str) -> BTreeMap<&'static str, String> {
    let mut annotations = BTreeMap::new();
    let Ok(reference) = Reference::parse(name) else {
        return annotations;
    };
    annotations.insert(spec::ANNOTATION_CONTAINERD_NAME, reference.to_string());
    if let Some(tag) = &reference.tag {
        annotations.insert(spec::ANNOTATION_REF_NAME, tag.clone());
    }
    annotations
}

/// The name as `docker save` writes it in `RepoTags` (`nginx:1.27`,
/// `ghcr.io/x/y:2`); none for a reference without a tag or with a digest.
fn docker_tag(name: &str) -> Option<String> {
    let reference = Reference::parse(name).ok()?;
    if reference.digest.is_some() {
        return None;
    }
    let tag = reference.tag.as_ref()?;
    let repository = if reference.registry == DEFAULT_REGISTRY {
        reference
            .repository
            .strip_prefix("library/")
            .unwrap_or(&reference.repository)
            .to_string()
    } else {
        reference.name()
    };
    Some(format!("{repository}:{tag}"))
}

/// Writes the tar members in their fixed order; returns the writer.
fn write_tar<W: Write>(
    store: &ContentStore,
    plan: &Plan<'_>,
    out: W,
    path: &Path,
) -> Result<W, ImageError> {
    let werr = || io_err("writing", path);
    let mut tar = tar::Builder::new(out);
    append_bytes(&mut tar, "oci-layout", OCI_LAYOUT).map_err(werr())?;
    append_dir(&mut tar, "blobs").map_err(werr())?;
    append_dir(&mut tar, "blobs/sha256").map_err(werr())?;
    for (digest, size) in &plan.blobs {
        let blob = store.blob_path(digest);
        let file = File::open(&blob).map_err(io_err("opening", &blob))?;
        let mut header = file_header(*size);
        let file = Cancellable {
            inner: file,
            cancel: plan.cancel,
        };
        // A blob that changed size under us would make a corrupt member.
        let mut limited = io::Read::take(file, *size);
        tar.append_data(&mut header, blob_member(digest), &mut limited)
            .map_err(werr())?;
        if limited.limit() != 0 {
            return Err(ImageError::Corrupt {
                path: blob,
                reason: format!("shorter than its {size} bytes"),
            });
        }
    }
    append_bytes(&mut tar, "index.json", &plan.index_json).map_err(werr())?;
    append_bytes(&mut tar, "manifest.json", &plan.manifest_json).map_err(werr())?;
    tar.into_inner().map_err(werr())
}

/// A reader that fails once `cancel` is set (not with `Interrupted`: copy loops
/// retry that).
struct Cancellable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R: io::Read> io::Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("interrupted"));
        }
        self.inner.read(buf)
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = file_header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_mtime(0);
    tar.append_data(&mut header, format!("{name}/"), io::empty())
}

/// A zstd writer: every [`ZSTD_FRAME_BYTES`] of input become one frame (ruzstd's
/// encoder compresses from a whole buffer; frames one after another are one zstd
/// stream to every reader).
struct ZstdFrames<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> ZstdFrames<W> {
    fn new(inner: W) -> Self {
        ZstdFrames {
            inner,
            pending: Vec::with_capacity(ZSTD_FRAME_BYTES),
        }
    }

    fn write_frame(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frame = ruzstd::encoding::compress_to_vec(
            self.pending.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        self.pending.clear();
        self.inner.write_all(&frame)
    }

    fn finish(mut self) -> io::Result<W> {
        self.write_frame()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ZstdFrames<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = ZSTD_FRAME_BYTES - self.pending.len();
        let n = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == ZSTD_FRAME_BYTES {
            self.write_frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::archive::import_archive;
    use crate::image::config::ImageConfig;
    use crate::image::pull::build_image;
    use crate::image::spec::{Manifest, Platform};
    use io::Read;

    /// A cancel flag that is never set.
    static GO: AtomicBool = AtomicBool::new(false);

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A layer holding one file, as (gzip blob, uncompressed tar).
    fn layer(path: &str, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, path, body).unwrap();
        let plain = t.into_inner().unwrap();
        (gzip(&plain), plain)
    }

    /// Stores config and manifest for `arch` over `layers`; returns the manifest
    /// (bytes, digest) and the parsed pieces.
    fn store_manifest(
        store: &ContentStore,
        arch: &str,
        layers: &[(Vec<u8>, Vec<u8>)],
        keep: bool,
    ) -> (Vec<u8>, Digest, Manifest, ImageConfig) {
        let (os_arch, variant) = match arch {
            "arm64" => ("arm64", Some("v8")),
            other => (other, None),
        };
        let mut config = json!({
            "architecture": os_arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids":
                layers.iter().map(|l| Digest::of(&l.1).to_string()).collect::<Vec<_>>()}
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": spec::OCI_MANIFEST,
            "config": {"mediaType": spec::OCI_CONFIG, "digest": Digest::of(&config_bytes),
                       "size": config_bytes.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": spec::OCI_LAYER_GZIP, "digest": Digest::of(&l.0), "size": l.0.len()
            })).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
        if keep {
            store.write_blob(&config_bytes, None).unwrap();
            store.write_blob(&manifest_bytes, None).unwrap();
            for l in layers {
                store.write_blob(&l.0, None).unwrap();
            }
        }
        let digest = Digest::of(&manifest_bytes);
        let parsed: Manifest = serde_json::from_slice(&manifest_bytes).unwrap();
        let config = ImageConfig::from_json(&config_bytes, "config").unwrap();
        (manifest_bytes, digest, parsed, config)
    }

    /// A single-platform amd64 image `name`, as a pull records it.
    fn simple_image(store: &ContentStore, name: &str, file: &str) -> Image {
        let layers = [layer("bin/sh", b"shell"), layer(file, file.as_bytes())];
        let (_, digest, manifest, config) = store_manifest(store, "amd64", &layers, true);
        let image = build_image(name.into(), &manifest, &config, digest.clone(), digest);
        store.put_images(std::slice::from_ref(&image)).unwrap();
        image
    }

    /// A multi-platform image pulled for arm64: the index, and only the arm64
    /// manifest, config and layers.
    fn arm64_of_multi(store: &ContentStore, name: &str) -> Image {
        let layers = [layer("bin/sh", b"shell")];
        let (amd, amd_digest, _, _) = store_manifest(store, "amd64", &layers, false);
        let (arm, arm_digest, manifest, config) = store_manifest(store, "arm64", &layers, true);
        let index = json!({
            "schemaVersion": 2,
            "mediaType": spec::OCI_INDEX,
            "manifests": [
                {"mediaType": spec::OCI_MANIFEST, "digest": amd_digest, "size": amd.len(),
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": spec::OCI_MANIFEST, "digest": arm_digest, "size": arm.len(),
                 "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            ],
        });
        let index_digest = store
            .write_blob(&serde_json::to_vec(&index).unwrap(), None)
            .unwrap();
        let image = build_image(name.into(), &manifest, &config, index_digest, arm_digest);
        store.put_images(std::slice::from_ref(&image)).unwrap();
        image
    }

    /// The members of an archive (any compression), in order.
    fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
        let file = io::BufReader::new(File::open(path).unwrap());
        let (reader, _) = crate::image::compress::decompress(file).unwrap();
        let mut archive = tar::Archive::new(reader);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (name, body)
            })
            .collect()
    }

    fn member_json(members: &[(String, Vec<u8>)], name: &str) -> serde_json::Value {
        let (_, body) = members.iter().find(|(n, _)| n == name).unwrap();
        serde_json::from_slice(body).unwrap()
    }

    fn amd64() -> Platform {
        Platform::parse("linux/amd64").unwrap()
    }

    /// Everything an import must reproduce, by name.
    fn identity(images: &[Image]) -> Vec<(String, Digest, Digest, Digest, Vec<Digest>)> {
        let mut out: Vec<_> = images
            .iter()
            .map(|i| {
                let layers = i.layers.iter().map(|l| l.digest.clone()).collect();
                let ids = (i.id.clone(), i.digest.clone(), i.manifest_digest.clone());
                (i.name.clone(), ids.0, ids.1, ids.2, layers)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn saved_archives_import_with_the_same_digests_in_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("src")).unwrap();
        let saved = vec![
            simple_image(&store, "docker.io/library/app:1.0", "app"),
            simple_image(&store, "registry.example:5000/team/tool:2", "tool"),
        ];
        for name in ["all.tar", "all.tar.gz", "all.tar.zst", "all.tgz"] {
            let path = dir.path().join(name);
            let report = save(&store, &saved, &SaveTarget::File(path.clone()), &GO).unwrap();
            assert_eq!(report.images, 2);
            let target = ContentStore::open(&dir.path().join(format!("dst-{name}"))).unwrap();
            let imported = import_archive(&target, &amd64(), &path).unwrap();
            assert_eq!(identity(&imported), identity(&saved), "{name}");
            for layer in &imported[0].layers {
                assert_eq!(
                    target.read_blob(&layer.digest).unwrap(),
                    store.read_blob(&layer.digest).unwrap()
                );
            }
        }
        let tar_len = fs::metadata(dir.path().join("all.tar")).unwrap().len();
        let report = save(
            &store,
            &saved,
            &SaveTarget::File(dir.path().join("x.tar")),
            &GO,
        )
        .unwrap();
        assert_eq!(
            report.tar_bytes, tar_len,
            "the size is known before writing"
        );
    }

    #[test]
    fn index_json_and_manifest_json_name_every_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("src")).unwrap();
        let app = simple_image(&store, "docker.io/library/app:1.0", "app");
        let tool = simple_image(&store, "registry.example:5000/team/tool:2", "tool");
        let path = dir.path().join("images.tar");
        save(
            &store,
            &[app.clone(), tool.clone()],
            &SaveTarget::File(path.clone()),
            &GO,
        )
        .unwrap();
        let members = members(&path);
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["oci-layout", "blobs/", "blobs/sha256/"]);
        assert_eq!(names[names.len() - 2..], ["index.json", "manifest.json"]);
        let blobs: Vec<&str> = names[3..names.len() - 2].to_vec();
        let mut sorted = blobs.clone();
        sorted.sort();
        assert_eq!(blobs, sorted, "blobs in digest order");
        // Shared base layer once: 2 manifests, 2 configs, 3 distinct layers.
        assert_eq!(blobs.len(), 7);

        let index = member_json(&members, "index.json");
        assert_eq!(index["mediaType"], spec::OCI_INDEX);
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["digest"], app.digest.to_string());
        assert_eq!(entries[0]["mediaType"], spec::OCI_MANIFEST);
        let a = &entries[0]["annotations"];
        assert_eq!(
            a[spec::ANNOTATION_CONTAINERD_NAME],
            "docker.io/library/app:1.0"
        );
        assert_eq!(a[spec::ANNOTATION_REF_NAME], "1.0");
        let a = &entries[1]["annotations"];
        assert_eq!(
            a[spec::ANNOTATION_CONTAINERD_NAME],
            "registry.example:5000/team/tool:2"
        );

        let docker = member_json(&members, "manifest.json");
        let docker = docker.as_array().unwrap();
        assert_eq!(docker.len(), 2);
        assert_eq!(docker[0]["RepoTags"], json!(["app:1.0"]));
        assert_eq!(
            docker[1]["RepoTags"],
            json!(["registry.example:5000/team/tool:2"])
        );
        assert_eq!(
            docker[0]["Config"],
            format!("blobs/sha256/{}", app.id.hex())
        );
        let layers: Vec<String> = app
            .layers
            .iter()
            .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
            .collect();
        assert_eq!(docker[0]["Layers"], json!(layers));
        assert_eq!(
            member_json(&members, "oci-layout"),
            json!({"imageLayoutVersion": "1.0.0"})
        );
    }

    #[test]
    fn the_docker_manifest_alone_imports_the_same_images() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("src")).unwrap();
        let app = simple_image(&store, "docker.io/library/app:1.0", "app");
        let path = dir.path().join("images.tar");
        save(
            &store,
            std::slice::from_ref(&app),
            &SaveTarget::File(path.clone()),
            &GO,
        )
        .unwrap();
        // What `docker load` reads: manifest.json and the blobs it names.
        let mut t = tar::Builder::new(Vec::new());
        for (name, body) in members(&path) {
            if name == "index.json" || name == "oci-layout" || name.ends_with('/') {
                continue;
            }
            let mut h = file_header(body.len() as u64);
            t.append_data(&mut h, &name, body.as_slice()).unwrap();
        }
        let docker_only = dir.path().join("docker.tar");
        fs::write(&docker_only, t.into_inner().unwrap()).unwrap();
        let target = ContentStore::open(&dir.path().join("dst")).unwrap();
        let imported = import_archive(&target, &amd64(), &docker_only).unwrap();
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].name, app.name);
        assert_eq!(imported[0].id, app.id);
        let layers = |i: &Image| {
            i.layers
                .iter()
                .map(|l| l.digest.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(layers(&imported[0]), layers(&app));
    }

    #[test]
    fn a_multi_platform_image_keeps_its_index_with_one_platforms_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("src")).unwrap();
        let multi = arm64_of_multi(&store, "docker.io/library/multi:1");
        let path = dir.path().join("arm64.tar.zst");
        save(
            &store,
            std::slice::from_ref(&multi),
            &SaveTarget::File(path.clone()),
            &GO,
        )
        .unwrap();
        let members = members(&path);
        let index = member_json(&members, "index.json");
        assert_eq!(index["manifests"][0]["digest"], multi.digest.to_string());
        assert_eq!(index["manifests"][0]["mediaType"], spec::OCI_INDEX);
        let has = |d: &Digest| members.iter().any(|(n, _)| *n == blob_member(d));
        assert!(has(&multi.digest) && has(&multi.manifest_digest) && has(&multi.id));
        // index, arm64 manifest, config, layer: not the amd64 manifest.
        assert_eq!(
            members
                .iter()
                .filter(|(n, _)| n.starts_with("blobs/sha256/") && n.len() > 13)
                .count(),
            4
        );

        let arm = ContentStore::open(&dir.path().join("arm")).unwrap();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let imported = import_archive(&arm, &arm64, &path).unwrap();
        assert_eq!(identity(&imported), identity(std::slice::from_ref(&multi)));
        assert_eq!(imported[0].platform.to_string(), "linux/arm64/v8");

        let amd = ContentStore::open(&dir.path().join("amd")).unwrap();
        let err = import_archive(&amd, &amd64(), &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks the linux/amd64 image"), "{err}");
        assert!(amd.images().unwrap().is_empty());
    }

    #[test]
    fn saving_is_deterministic_and_deduplicates_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("src")).unwrap();
        let app = simple_image(&store, "docker.io/library/app:1.0", "app");
        let mut latest = app.clone();
        latest.name = "docker.io/library/app:latest".into();
        let images = [app.clone(), latest, app];
        let (a, b) = (dir.path().join("a.tar.zst"), dir.path().join("b.tar.zst"));
        let report = save(&store, &images, &SaveTarget::File(a.clone()), &GO).unwrap();
        save(&store, &images, &SaveTarget::File(b.clone()), &GO).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        assert_eq!(report.images, 2);
        let members = members(&a);
        assert_eq!(
            member_json(&members, "index.json")["manifests"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let docker = member_json(&members, "manifest.json");
        assert_eq!(docker[0]["RepoTags"], json!(["app:1.0", "app:latest"]));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_failed_save_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("src")).unwrap();
        let app = simple_image(&store, "docker.io/library/app:1.0", "app");
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let path = out.join("app.tar.gz");
        fs::write(&path, b"the previous archive").unwrap();
        // A blob that shrinks while the archive is written.
        let plan = Plan::new(&store, std::slice::from_ref(&app), &GO).unwrap();
        let layer = store.blob_path(&app.layers[1].digest);
        let bytes = fs::read(&layer).unwrap();
        fs::write(&layer, &bytes[..bytes.len() / 2]).unwrap();
        let err = save_file(&store, &plan, &path).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"the previous archive");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1, "no temp file left");
        // A missing blob is found before anything is written.
        fs::remove_file(&layer).unwrap();
        let err = save(&store, &[app], &SaveTarget::File(path.clone()), &GO).unwrap_err();
        assert!(matches!(err, ImageError::Io { .. }), "{err}");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    }

    #[test]
    fn a_cancelled_save_stops_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("src")).unwrap();
        let app = simple_image(&store, "docker.io/library/app:1.0", "app");
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let stop = AtomicBool::new(true);
        let err = save(
            &store,
            &[app],
            &SaveTarget::File(out.join("a.tar.zst")),
            &stop,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("interrupted"), "{err}");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn the_file_name_picks_the_compression() {
        let c = |n: &str| compression_for(Path::new(n));
        assert_eq!(c("a.tar").unwrap(), Compression::None);
        assert_eq!(c("dir/A.TAR.GZ").unwrap(), Compression::Gzip);
        assert_eq!(c("a.tgz").unwrap(), Compression::Gzip);
        assert_eq!(c("a.tar.zst").unwrap(), Compression::Zstd);
        assert_eq!(c("a.tzst").unwrap(), Compression::Zstd);
        let err = c("a.zip").unwrap_err().to_string();
        assert!(err.contains("a.zip") && err.contains(".tar.zst"), "{err}");
    }

    #[test]
    fn zstd_frames_read_back_as_one_stream() {
        let data: Vec<u8> = (0..ZSTD_FRAME_BYTES * 2 + 12345)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let mut w = ZstdFrames::new(Vec::new());
        for chunk in data.chunks(100_000) {
            w.write_all(chunk).unwrap();
        }
        let compressed = w.finish().unwrap();
        assert!(compressed.len() < data.len());
        let (mut r, c) =
            crate::image::compress::decompress(io::BufReader::new(&compressed[..])).unwrap();
        assert_eq!(c, Compression::Zstd);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn docker_tags_are_familiar_names() {
        assert_eq!(
            docker_tag("docker.io/library/nginx:1.27").unwrap(),
            "nginx:1.27"
        );
        assert_eq!(docker_tag("docker.io/me/app:1").unwrap(), "me/app:1");
        assert_eq!(docker_tag("ghcr.io/x/y:2").unwrap(), "ghcr.io/x/y:2");
        let pinned = format!("docker.io/library/nginx@{}", Digest::of(b"x"));
        assert_eq!(docker_tag(&pinned), None);
        let a = name_annotations(&pinned);
        assert_eq!(a[spec::ANNOTATION_CONTAINERD_NAME], pinned);
        assert!(!a.contains_key(spec::ANNOTATION_REF_NAME));
    }
}
