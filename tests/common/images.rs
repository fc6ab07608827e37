//! Test images and a test registry, usable from any integration test.
//!
//! Images are built from Debian busybox-static's `/bin/busybox`: a base layer with
//! busybox, its applets as symlinks, `/etc/passwd` and the usual directories, and
//! (when the spec has files) a second layer with them. Everything is written by this
//! code with fixed timestamps, owners and order, so the same inputs give the same
//! bytes and digests. The result is an OCI image layout ([`BuiltImage`]), which
//! [`write_archive`] turns into an OCI-layout or docker-save archive (plain, gzip or
//! zstd) whose annotations or `RepoTags` name the image on import.
//!
//! [`Registry`] runs a real `docker-registry` on a free 127.0.0.1 port and
//! [`push_image`] copies a layout into it with skopeo.
//!
//! Needs the Debian packages busybox-static, docker-registry, skopeo and zstd.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked into `/bin` when a spec names none: enough for shells, probes,
/// servers and DNS checks (busybox 1.35's `wget` segfaults here: use `nc`).
pub const DEFAULT_APPLETS: &[&str] = &[
    "[", "cat", "cp", "date", "echo", "env", "false", "grep", "head", "hostname", "httpd", "id",
    "kill", "ln", "ls", "mkdir", "mv", "nc", "nslookup", "printf", "ps", "pwd", "rm", "sh",
    "sleep", "tail", "test", "touch", "tr", "true", "wc",
];

/// `PATH` of an image whose spec sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image `tests/fixtures/deployment.yaml` runs, as imported (its short
/// name `my-flask-app:latest` normalises to this).
pub const FLASK_APP_IMAGE: &str = "docker.io/library/my-flask-app:latest";
/// The name the fixture uses.
pub const FLASK_APP_SHORT_NAME: &str = "my-flask-app:latest";
pub const FLASK_APP_PORT: u16 = 5000;
/// The body of `GET /health`.
pub const FLASK_APP_HEALTH_BODY: &str = "ok\n";
/// The first line the app prints (so `kubectl logs` shows something at once).
pub const FLASK_APP_STARTUP_LINE: &str = "my-flask-app: serving /www on port 5000";

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

// ---------------------------------------------------------------- specs

/// What goes into an image: its configuration and its files.
#[derive(Debug, Clone, Default)]
pub struct ImageConfigSpec {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value`; [`DEFAULT_PATH`] is added when no `PATH=` is given.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `5000/tcp`, `53/udp`.
    pub exposed_ports: Vec<String>,
    pub user: Option<String>,
    pub labels: Vec<(String, String)>,
    /// Applets linked to `/bin/busybox` in `/bin`; [`DEFAULT_APPLETS`] when empty.
    pub applets: Vec<String>,
    /// Extra files, in a second layer.
    pub files: Vec<ImageFile>,
}

/// A regular file in the image.
#[derive(Debug, Clone)]
pub struct ImageFile {
    /// Absolute or relative to `/`; parent directories are created.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl ImageConfigSpec {
    /// A spec whose `Cmd` is `args`.
    pub fn cmd(args: &[&str]) -> ImageConfigSpec {
        ImageConfigSpec {
            cmd: strings(args),
            ..ImageConfigSpec::default()
        }
    }

    pub fn with_entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = strings(args);
        self
    }

    pub fn with_env(mut self, entry: &str) -> Self {
        self.env.push(entry.to_string());
        self
    }

    pub fn with_working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_string());
        self
    }

    pub fn with_port(mut self, port: &str) -> Self {
        self.exposed_ports.push(port.to_string());
        self
    }

    pub fn with_file(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push(ImageFile {
            path: path.to_string(),
            contents: contents.into(),
            mode,
        });
        self
    }

    fn applets(&self) -> Vec<String> {
        if self.applets.is_empty() {
            strings(DEFAULT_APPLETS)
        } else {
            self.applets.clone()
        }
    }

    fn env(&self) -> Vec<String> {
        let mut env = self.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        env
    }

    /// The image config's `config` object (only the fields that are set).
    fn container_config(&self) -> Value {
        let mut config = json!({"Env": self.env()});
        if !self.entrypoint.is_empty() {
            config["Entrypoint"] = json!(self.entrypoint);
        }
        if !self.cmd.is_empty() {
            config["Cmd"] = json!(self.cmd);
        }
        if let Some(dir) = &self.working_dir {
            config["WorkingDir"] = json!(dir);
        }
        if let Some(user) = &self.user {
            config["User"] = json!(user);
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), json!({})))
                .collect();
            config["ExposedPorts"] = Value::Object(ports);
        }
        if !self.labels.is_empty() {
            let labels: serde_json::Map<String, Value> = self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            config["Labels"] = Value::Object(labels);
        }
        config
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The spec of `my-flask-app:latest`: busybox httpd serving `/www` (with
/// `/www/health` = [`FLASK_APP_HEALTH_BODY`]) on port 5000 in the foreground, logging
/// requests to stderr, after printing [`FLASK_APP_STARTUP_LINE`]. The start script
/// stays PID 1 and stops httpd on SIGTERM (a PID 1 without a handler ignores it, and
/// httpd has none), so pods stop at once rather than after their grace period.
pub fn flask_app_spec() -> ImageConfigSpec {
    let start = format!(
        "#!/bin/sh
\
         echo \"{FLASK_APP_STARTUP_LINE}\"\n\
         httpd -f -v -p {FLASK_APP_PORT} -h /www &\n\
         pid=$!\n\
         trap 'kill -TERM $pid; wait $pid; exit 0' TERM INT\n\
         wait $pid\n"
    );
    ImageConfigSpec::cmd(&["/bin/sh", "/app/start.sh"])
        .with_working_dir("/app")
        .with_port("5000/tcp")
        .with_file("/app/start.sh", start, 0o755)
        .with_file("/www/health", FLASK_APP_HEALTH_BODY, 0o644)
        .with_file("/www/index.html", "my-flask-app\n", 0o644)
}

// ---------------------------------------------------------------- layouts

/// An image written as an OCI layout directory.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The OCI layout directory.
    pub layout: PathBuf,
    /// The name as given (`busybox:test`): the layout's `ref.name` (a skopeo
    /// `oci:<layout>:<name>` reference) and the docker archive's `RepoTags`.
    pub name: String,
    /// The name once imported (`docker.io/library/busybox:test`).
    pub full_name: String,
    /// What the name points at: the index (multi-arch) or the manifest.
    pub digest: String,
    /// The linux/amd64 manifest.
    pub manifest_digest: String,
    /// The linux/amd64 config: the image id.
    pub config_digest: String,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
    /// Layer blob digests (gzip), bottom first.
    pub layer_digests: Vec<String>,
    /// The arm64 manifest of a multi-arch image.
    pub arm64_manifest_digest: Option<String>,
}

impl BuiltImage {
    pub fn is_multi_arch(&self) -> bool {
        self.arm64_manifest_digest.is_some()
    }
}

/// A blob in a layout.
#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: u64,
}

impl Blob {
    fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.size})
    }

    fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `busybox:test` → `busybox-test`, for file names.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn full_name(name: &str) -> String {
    skiff::image::Reference::parse(name)
        .unwrap_or_else(|e| panic!("test image name {name:?}: {e}"))
        .to_string()
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Blob {
    let hex = sha256_hex(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    Blob {
        digest: format!("sha256:{hex}"),
        size: bytes.len() as u64,
    }
}

/// A reproducible tar: sorted entries, mtime 0, owner 0:0.
struct TarWriter(tar::Builder<Vec<u8>>);

impl TarWriter {
    fn new() -> Self {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        TarWriter(builder)
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0
            .append_data(&mut h, format!("{path}/"), std::io::empty())
            .unwrap();
    }

    fn file(&mut self, path: &str, contents: &[u8], mode: u32) {
        let mut h = Self::header(tar::EntryType::Regular, mode, contents.len() as u64);
        self.0.append_data(&mut h, path, contents).unwrap();
    }

    fn symlink(&mut self, path: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// The base layer's tar: directories, busybox, applet links, passwd and group.
fn base_layer_tar(spec: &ImageConfigSpec) -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("{BUSYBOX}: {e} (install Debian's busybox-static)"));
    let mut tar = TarWriter::new();
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
    ] {
        tar.dir(dir, mode);
    }
    tar.file("bin/busybox", &busybox, 0o755);
    let mut applets = spec.applets();
    applets.sort();
    applets.dedup();
    for applet in applets.iter().filter(|a| *a != "busybox") {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    tar.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644);
    tar.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    );
    tar.finish()
}

/// The spec's files (and their parent directories) as a layer tar.
fn files_layer_tar(files: &[ImageFile]) -> Vec<u8> {
    let mut entries: Vec<(String, Option<&ImageFile>)> = Vec::new();
    for file in files {
        let path = file.path.trim_start_matches('/').to_string();
        let mut parent = String::new();
        for part in path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .iter()
            .rev()
        {
            parent = if parent.is_empty() {
                part.to_string()
            } else {
                format!("{parent}/{part}")
            };
            entries.push((parent.clone(), None));
        }
        entries.push((path, Some(file)));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    let mut tar = TarWriter::new();
    for (path, file) in entries {
        match file {
            Some(f) => tar.file(&path, &f.contents, f.mode),
            None => tar.dir(&path, 0o755),
        }
    }
    tar.finish()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The layers of `spec`: (diff_id, gzip blob), bottom first.
fn write_layers(layout: &Path, spec: &ImageConfigSpec) -> Vec<(String, Blob)> {
    let mut tars = vec![base_layer_tar(spec)];
    if !spec.files.is_empty() {
        tars.push(files_layer_tar(&spec.files));
    }
    tars.iter()
        .map(|tar| {
            (
                format!("sha256:{}", sha256_hex(tar)),
                write_blob(layout, &gzip(tar)),
            )
        })
        .collect()
}

/// Writes config and manifest for one platform; returns (manifest, config).
fn write_manifest(
    layout: &Path,
    spec: &ImageConfigSpec,
    layers: &[(String, Blob)],
    arch: &str,
    variant: Option<&str>,
) -> (Blob, Blob) {
    let mut config = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": spec.container_config(),
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>()
        },
        "history": layers.iter().map(|_| json!({"created": "1970-01-01T00:00:00Z", "created_by": "skiff tests"})).collect::<Vec<_>>()
    });
    if let Some(variant) = variant {
        config["variant"] = json!(variant);
    }
    let config = write_blob(layout, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(OCI_CONFIG),
        "layers": layers.iter().map(|l| l.1.descriptor(OCI_LAYER_GZIP)).collect::<Vec<_>>()
    });
    (write_blob(layout, manifest.to_string().as_bytes()), config)
}

fn new_layout(work: &Path, name: &str, suffix: &str) -> PathBuf {
    let dir = work.join(format!("{}{suffix}-layout", slug(name)));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir
}

/// `index.json` with one entry, `top`, named `name`.
fn write_top_index(layout: &Path, mut top: Value, name: &str) {
    top["annotations"] = json!({REF_NAME: name, CONTAINERD_NAME: full_name(name)});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

/// A linux/amd64 busybox image `name` as an OCI layout under `work`.
pub fn busybox_layout(work: &Path, name: &str, spec: &ImageConfigSpec) -> BuiltImage {
    let layout = new_layout(work, name, "");
    let layers = write_layers(&layout, spec);
    let (manifest, config) = write_manifest(&layout, spec, &layers, "amd64", None);
    write_top_index(&layout, manifest.descriptor(OCI_MANIFEST), name);
    BuiltImage {
        layout,
        name: name.to_string(),
        full_name: full_name(name),
        digest: manifest.digest.clone(),
        manifest_digest: manifest.digest,
        config_digest: config.digest,
        diff_ids: layers.iter().map(|l| l.0.clone()).collect(),
        layer_digests: layers.iter().map(|l| l.1.digest.clone()).collect(),
        arm64_manifest_digest: None,
    }
}

/// A multi-arch image `name`: an index with linux/amd64 and linux/arm64/v8 entries.
/// Both use the same (amd64) busybox layers; only their configs differ, so the arm64
/// image resolves and pulls but does not run.
pub fn multi_arch_layout(work: &Path, name: &str, spec: &ImageConfigSpec) -> BuiltImage {
    let layout = new_layout(work, name, "-multi");
    let layers = write_layers(&layout, spec);
    let (amd64, config) = write_manifest(&layout, spec, &layers, "amd64", None);
    let (arm64, _) = write_manifest(&layout, spec, &layers, "arm64", Some("v8"));
    let mut amd64_entry = amd64.descriptor(OCI_MANIFEST);
    amd64_entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut arm64_entry = arm64.descriptor(OCI_MANIFEST);
    arm64_entry["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [amd64_entry, arm64_entry]
    });
    let index = write_blob(&layout, index.to_string().as_bytes());
    write_top_index(&layout, index.descriptor(OCI_INDEX), name);
    BuiltImage {
        layout,
        name: name.to_string(),
        full_name: full_name(name),
        digest: index.digest,
        manifest_digest: amd64.digest,
        config_digest: config.digest,
        diff_ids: layers.iter().map(|l| l.0.clone()).collect(),
        layer_digests: layers.iter().map(|l| l.1.digest.clone()).collect(),
        arm64_manifest_digest: Some(arm64.digest),
    }
}

/// The `my-flask-app:latest` image ([`flask_app_spec`]) as an OCI layout.
pub fn flask_app_layout(work: &Path) -> BuiltImage {
    busybox_layout(work, FLASK_APP_SHORT_NAME, &flask_app_spec())
}

// ---------------------------------------------------------------- archives

/// How [`write_archive`] packs an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// OCI image layout tarball (`skopeo copy … oci-archive:`), `.tar`.
    Oci,
    /// The same, gzip-compressed, `.tar.gz`.
    OciGzip,
    /// The same, zstd-compressed (by the `zstd` tool), `.tar.zst`.
    OciZstd,
    /// `docker save` format (`manifest.json`, `RepoTags`, plain layer tars), `.tar`;
    /// the amd64 image of a multi-arch one.
    Docker,
    /// The same, zstd-compressed, `.tar.zst`.
    DockerZstd,
}

impl ArchiveFormat {
    pub const ALL: [ArchiveFormat; 5] = [
        ArchiveFormat::Oci,
        ArchiveFormat::OciGzip,
        ArchiveFormat::OciZstd,
        ArchiveFormat::Docker,
        ArchiveFormat::DockerZstd,
    ];

    /// The file name ending, e.g. `-docker.tar.zst`.
    pub fn suffix(self) -> &'static str {
        match self {
            ArchiveFormat::Oci => "-oci.tar",
            ArchiveFormat::OciGzip => "-oci.tar.gz",
            ArchiveFormat::OciZstd => "-oci.tar.zst",
            ArchiveFormat::Docker => "-docker.tar",
            ArchiveFormat::DockerZstd => "-docker.tar.zst",
        }
    }
}

/// Writes `image` as an archive at `dest`.
pub fn write_archive(image: &BuiltImage, format: ArchiveFormat, dest: &Path) {
    let tar = match format {
        ArchiveFormat::Oci | ArchiveFormat::OciGzip | ArchiveFormat::OciZstd => oci_tar(image),
        ArchiveFormat::Docker | ArchiveFormat::DockerZstd => docker_tar(image),
    };
    let bytes = match format {
        ArchiveFormat::OciGzip => gzip(&tar),
        ArchiveFormat::OciZstd | ArchiveFormat::DockerZstd => zstd(&tar),
        ArchiveFormat::Oci | ArchiveFormat::Docker => tar,
    };
    std::fs::write(dest, bytes).unwrap();
}

/// Writes `image` as an archive in `work`, named after the image; returns its path.
pub fn archive_in(work: &Path, image: &BuiltImage, format: ArchiveFormat) -> PathBuf {
    let multi = if image.is_multi_arch() { "-multi" } else { "" };
    let dest = work.join(format!("{}{multi}{}", slug(&image.name), format.suffix()));
    write_archive(image, format, &dest);
    dest
}

/// The layout directory as a tar: `oci-layout`, `index.json`, then the blobs.
fn oci_tar(image: &BuiltImage) -> Vec<u8> {
    let mut tar = TarWriter::new();
    let read = |p: &str| std::fs::read(image.layout.join(p)).unwrap();
    tar.file("oci-layout", &read("oci-layout"), 0o644);
    tar.file("index.json", &read("index.json"), 0o644);
    tar.dir("blobs", 0o755);
    tar.dir("blobs/sha256", 0o755);
    let mut blobs: Vec<String> = std::fs::read_dir(image.layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    for hex in blobs {
        let path = format!("blobs/sha256/{hex}");
        tar.file(&path, &read(&path), 0o644);
    }
    tar.finish()
}

/// `docker save` format of the amd64 image: `<config hex>.json`, one directory per
/// layer with an uncompressed `layer.tar`, `manifest.json` with `RepoTags`.
fn docker_tar(image: &BuiltImage) -> Vec<u8> {
    let blob = |digest: &str| {
        std::fs::read(
            image
                .layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let config_hex = image.config_digest.trim_start_matches("sha256:");
    let mut tar = TarWriter::new();
    let mut layer_paths = Vec::new();
    for (diff_id, digest) in image.diff_ids.iter().zip(&image.layer_digests) {
        let dir = diff_id.trim_start_matches("sha256:");
        let plain = gunzip(&blob(digest));
        tar.dir(dir, 0o755);
        tar.file(&format!("{dir}/layer.tar"), &plain, 0o644);
        layer_paths.push(format!("{dir}/layer.tar"));
    }
    tar.file(
        &format!("{config_hex}.json"),
        &blob(&image.config_digest),
        0o644,
    );
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [image.name],
        "Layers": layer_paths,
    }]);
    tar.file("manifest.json", manifest.to_string().as_bytes(), 0o644);
    tar.finish()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Compresses with the real `zstd` tool (so imports meet its output, not ours).
fn zstd(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd (Debian package zstd) must be installed");
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "zstd failed");
    out.stdout
}

/// A busybox image `name` with `config`, as an OCI-layout archive (`.tar`) in
/// `work`; importing it gives the image `name` (normalised).
pub fn busybox_image(work: &Path, name: &str, config: ImageConfigSpec) -> PathBuf {
    busybox_archive(work, name, config, ArchiveFormat::Oci)
}

/// [`busybox_image`] in any [`ArchiveFormat`].
pub fn busybox_archive(
    work: &Path,
    name: &str,
    config: ImageConfigSpec,
    format: ArchiveFormat,
) -> PathBuf {
    let image = busybox_layout(work, name, &config);
    archive_in(work, &image, format)
}

/// A multi-arch (amd64 + arm64/v8) image `name` as an OCI-layout archive.
pub fn multi_arch_image(work: &Path, name: &str, config: ImageConfigSpec) -> PathBuf {
    let image = multi_arch_layout(work, name, &config);
    archive_in(work, &image, ArchiveFormat::Oci)
}

/// `my-flask-app:latest` as an OCI-layout archive in `work`
/// (`my-flask-app-latest-oci.tar`); it imports as [`FLASK_APP_IMAGE`].
pub fn flask_app_image(work: &Path) -> PathBuf {
    archive_in(work, &flask_app_layout(work), ArchiveFormat::Oci)
}

// ---------------------------------------------------------------- processes

/// Runs `cmd`, panicking with its stderr when it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (is the package installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `docker-registry serve` on a free 127.0.0.1 port, storing under `dir`; killed
/// by its PID on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, None, None)
    }

    /// `htpasswd`: a bcrypt htpasswd file for basic auth; `tls`: (certificate, key)
    /// PEM files.
    pub fn start_with(
        dir: &Path,
        htpasswd: Option<&Path>,
        tls: Option<(&Path, &Path)>,
    ) -> Registry {
        let port = free_port();
        let root = dir.join(format!("registry-{port}"));
        std::fs::create_dir_all(&root).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.join("data").display()
        );
        if let Some((cert, key)) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(file) = htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = root.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let registry = Registry { child, port };
        wait_for_port(port);
        registry
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo copy --all oci:<layout>:<tag> docker://<dest>` over plain HTTP;
/// `creds` is `user:password`.
pub fn push(layout: &Path, tag: &str, dest: &str, creds: Option<&str>) {
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
    ]);
    if let Some(creds) = creds {
        cmd.arg(format!("--dest-creds={creds}"));
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"));
    run(&mut cmd);
}

/// Pushes `image` to `registry` as `repo_tag` (`team/app:v1`); returns the
/// reference to pull (`127.0.0.1:<port>/team/app:v1`).
pub fn push_image(image: &BuiltImage, registry: &Registry, repo_tag: &str) -> String {
    let reference = format!("{}/{repo_tag}", registry.host());
    push(&image.layout, &image.name, &reference, None);
    reference
}
