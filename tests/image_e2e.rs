//! End-to-end tests of the image module against real tools on loopback: a tiny
//! busybox image built here (OCI layout, single and multi-platform), pushed with
//! skopeo to a real `docker-registry` (plain, htpasswd, and behind a bearer-token
//! gate), pulled, imported from archives, unpacked and mounted with overlayfs. The
//! registry and skopeo helpers are shared (tests/common/images.rs); the layout with
//! whiteouts and per-architecture base layers is this file's own.
//!
//! Needs the Debian packages docker-registry, skopeo, busybox-static, zstd and
//! apache2-utils (htpasswd); the tests that unpack layers (file owners) or mount
//! overlays need root too (`#[ignore = "needs root"]`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::images::{free_port, run, sha256_hex, Registry};
use serde_json::json;
use skiff::image::{
    Credentials, ImageError, ImageStore, LayerStatus, Platform, PullOptions, PullProgress,
    RegistriesConfig, StoreOptions,
};

// ---------------------------------------------------------------- helpers

fn amd64_store(root: &Path, registries: RegistriesConfig) -> ImageStore {
    ImageStore::open(
        root,
        StoreOptions {
            platform: Platform::parse("linux/amd64").unwrap(),
            registries,
        },
    )
    .unwrap()
}

fn collect_progress() -> (PullOptions, Arc<Mutex<Vec<PullProgress>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let options = PullOptions {
        progress: Some(Arc::new(move |p: &PullProgress| {
            sink.lock().unwrap().push(p.clone())
        })),
        ..PullOptions::default()
    };
    (options, events)
}

// ---------------------------------------------------------------- the image

/// A descriptor of a blob written into the layout.
#[derive(Clone)]
struct Blob {
    digest: String,
    size: u64,
}

impl Blob {
    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.size})
    }
}

struct Layout {
    dir: PathBuf,
    /// The multi-platform index (tag `multi`).
    index: Blob,
    /// The amd64 manifest (also tagged `single`).
    amd64_manifest: Blob,
    arm64_base_layer: Blob,
    /// diff_ids of the amd64 image, bottom first.
    amd64_diff_ids: Vec<String>,
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Blob {
    let hex = sha256_hex(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    Blob {
        digest: format!("sha256:{hex}"),
        size: bytes.len() as u64,
    }
}

/// Tars `rootfs` reproducibly and gzips it: (diff_id, blob).
fn make_layer(work: &Path, layout: &Path, name: &str, rootfs: &Path) -> (String, Blob) {
    let tar_path = work.join(format!("{name}.tar"));
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
        ])
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&tar_path)
        .arg("."));
    let tar = std::fs::read(&tar_path).unwrap();
    let gz = Command::new("gzip")
        .args(["-n", "-9", "-c"])
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(gz.status.success());
    (
        format!("sha256:{}", sha256_hex(&tar)),
        write_blob(layout, &gz.stdout),
    )
}

/// The base layer: busybox, a few applet links, files the next layer removes.
fn base_rootfs(work: &Path, arch: &str) -> PathBuf {
    let root = work.join(format!("base-{arch}"));
    for dir in ["bin", "etc", "var/cache", "tmp"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/arch"), arch).unwrap();
    std::fs::write(root.join("etc/gone.txt"), "removed by the upper layer").unwrap();
    std::fs::write(root.join("var/cache/old"), "hidden by an opaque dir").unwrap();
    root
}

/// The upper layer: a whiteout, an opaque directory, a new file.
fn whiteout_rootfs(work: &Path) -> PathBuf {
    let root = work.join("upper");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/cache")).unwrap();
    std::fs::write(root.join("etc/.wh.gone.txt"), "").unwrap();
    std::fs::write(root.join("var/cache/.wh..wh..opq"), "").unwrap();
    std::fs::write(root.join("var/cache/new"), "fresh").unwrap();
    root
}

fn image_manifest(
    layout: &Path,
    arch: &str,
    variant: Option<&str>,
    layers: &[(String, Blob)],
) -> Blob {
    let mut config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/tmp",
            "ExposedPorts": {"8080/tcp": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>()}
    });
    if let Some(v) = variant {
        config["variant"] = v.into();
    }
    let config = write_blob(layout, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor("application/vnd.oci.image.config.v1+json"),
        "layers": layers.iter().map(|l| l.1.descriptor("application/vnd.oci.image.layer.v1.tar+gzip")).collect::<Vec<_>>()
    });
    write_blob(layout, manifest.to_string().as_bytes())
}

/// Builds an OCI layout with tags `single` (amd64) and `multi` (amd64 + arm64/v8).
fn build_layout(work: &Path) -> Layout {
    let dir = work.join("layout");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let upper = make_layer(work, &dir, "upper", &whiteout_rootfs(work));
    let amd64_base = make_layer(work, &dir, "base-amd64", &base_rootfs(work, "amd64"));
    let arm64_base = make_layer(work, &dir, "base-arm64", &base_rootfs(work, "arm64"));
    let amd64 = image_manifest(&dir, "amd64", None, &[amd64_base.clone(), upper.clone()]);
    let arm64 = image_manifest(
        &dir,
        "arm64",
        Some("v8"),
        &[arm64_base.clone(), upper.clone()],
    );
    let mut amd64_entry = amd64.descriptor("application/vnd.oci.image.manifest.v1+json");
    amd64_entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut arm64_entry = arm64.descriptor("application/vnd.oci.image.manifest.v1+json");
    arm64_entry["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [amd64_entry, arm64_entry]
    });
    let index_blob = write_blob(&dir, index.to_string().as_bytes());
    let mut multi = index_blob.descriptor("application/vnd.oci.image.index.v1+json");
    multi["annotations"] = json!({"org.opencontainers.image.ref.name": "multi"});
    let mut single = amd64.descriptor("application/vnd.oci.image.manifest.v1+json");
    single["annotations"] = json!({"org.opencontainers.image.ref.name": "single"});
    let top = json!({"schemaVersion": 2, "manifests": [multi, single]});
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap();
    Layout {
        dir,
        index: index_blob,
        amd64_manifest: amd64,
        arm64_base_layer: arm64_base.1,
        amd64_diff_ids: vec![amd64_base.0, upper.0],
    }
}

/// `skopeo copy` from the layout to a registry.
fn push(layout: &Layout, tag: &str, dest: &str, creds: Option<&str>) {
    common::images::push(&layout.dir, tag, dest, creds);
}

// ---------------------------------------------------------------- processes

/// An overlay mount of lowerdirs only; unmounted on drop.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(lowerdirs: &[PathBuf], target: &Path) -> Overlay {
        std::fs::create_dir_all(target).unwrap();
        let lower: Vec<String> = lowerdirs.iter().map(|d| d.display().to_string()).collect();
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lower.join(":")))
            .arg(target));
        Overlay(target.to_path_buf())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn pulls_the_platform_image_from_an_index_and_runs_its_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let registry = Registry::start(tmp.path());
    push(
        &layout,
        "multi",
        &format!("{}/multi:v1", registry.host()),
        None,
    );

    let store = amd64_store(&tmp.path().join("agent"), RegistriesConfig::default());
    let (options, events) = collect_progress();
    let reference = format!("{}/multi:v1", registry.host());
    let image = store.pull(&reference, options).await.unwrap();

    assert_eq!(image.name, reference);
    assert_eq!(
        image.digest.to_string(),
        layout.index.digest,
        "index digest kept"
    );
    assert_eq!(
        image.manifest_digest.to_string(),
        layout.amd64_manifest.digest
    );
    assert_eq!(image.platform.to_string(), "linux/amd64");
    let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(diff_ids, layout.amd64_diff_ids);
    {
        let events = events.lock().unwrap();
        for layer in &image.layers {
            let last = events
                .iter()
                .rev()
                .find(|e| e.layer == layer.digest)
                .unwrap();
            assert_eq!(last.status, LayerStatus::Complete);
            assert_eq!((last.done, last.total), (layer.size, layer.size));
            assert_eq!(last.count, 2);
        }
    }
    assert_eq!(
        image.repo_digest().unwrap(),
        format!("{}/multi@{}", registry.host(), layout.index.digest)
    );
    // Found again by name, by repo@digest and by id.
    assert_eq!(store.get("127.0.0.1:5/none:v1").unwrap(), None);
    assert_eq!(store.get(&reference).unwrap().as_ref(), Some(&image));
    assert!(store.get(&image.repo_digest().unwrap()).unwrap().is_some());
    assert!(store.get(&image.id.to_string()).unwrap().is_some());

    let config = store.config(&image).unwrap();
    assert_eq!(config.cmd(), ["/bin/sh"]);
    assert_eq!(config.env(), ["PATH=/bin"]);
    assert_eq!(config.working_dir(), Some("/tmp"));
    assert_eq!(config.exposed_ports()[0].port, 8080);

    // A second pull finds every layer stored.
    let (options, events) = collect_progress();
    store.pull(&reference, options).await.unwrap();
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .all(|e| e.status == LayerStatus::AlreadyExists));

    // Unpack (two callers at once: each layer is unpacked once): lowerdirs top
    // first; whiteouts in overlay's form.
    let (lowers, again) = tokio::join!(store.rootfs_layers(&image), store.rootfs_layers(&image));
    let lowers = lowers.unwrap();
    assert_eq!(again.unwrap(), lowers);
    let snapshots: Vec<String> = std::fs::read_dir(store.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(snapshots.len(), 2, "no temp dirs left: {snapshots:?}");
    assert_eq!(lowers.len(), 2);
    assert!(lowers[1].join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(lowers[1].join("etc/arch")).unwrap(),
        "amd64"
    );
    let whiteout = std::fs::symlink_metadata(lowers[0].join("etc/gone.txt")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);

    // Mounted, the whiteouts hide the lower files and busybox runs.
    let merged = tmp.path().join("merged");
    let mount = Overlay::mount(&lowers, &merged);
    assert!(merged.join("bin/busybox").is_file());
    assert!(
        !merged.join("etc/gone.txt").exists(),
        "whiteout hides the file"
    );
    assert!(
        !merged.join("var/cache/old").exists(),
        "opaque dir hides old content"
    );
    assert_eq!(
        std::fs::read_to_string(merged.join("var/cache/new")).unwrap(),
        "fresh"
    );
    let out = run(Command::new("chroot").arg(&merged).args([
        "/bin/sh",
        "-c",
        "echo hello from $(cat /etc/arch)",
    ]));
    assert_eq!(out.trim(), "hello from amd64");
    drop(mount);

    // Unpacking again is a no-op and gives the same directories.
    assert_eq!(store.rootfs_layers(&image).await.unwrap(), lowers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_reference_share_one_download() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let registry = Registry::start(tmp.path());
    push(
        &layout,
        "single",
        &format!("{}/app:v1", registry.host()),
        None,
    );
    let store = amd64_store(&tmp.path().join("agent"), RegistriesConfig::default());
    let reference = format!("{}/app:v1", registry.host());
    let (first, first_events) = collect_progress();
    let (second, second_events) = collect_progress();
    let (a, b) = tokio::join!(
        store.pull(&reference, first),
        store.pull(&reference, second)
    );
    assert_eq!(a.unwrap(), b.unwrap());
    let (a, b) = (
        first_events.lock().unwrap().len(),
        second_events.lock().unwrap().len(),
    );
    assert!(a > 0 && b == 0, "one download only ({a} and {b} events)");

    // A caller that gives up does not leave a stale pull behind: once the
    // abandoned pull is done, the next pull asks the registry again.
    let other = format!("{}/app:v2", registry.host());
    push(&layout, "single", &other, None);
    // A zero timeout polls the pull once (it can only have started) and gives up.
    let abandoned =
        tokio::time::timeout(Duration::ZERO, store.pull(&other, PullOptions::default())).await;
    assert!(abandoned.is_err(), "the pull should still be running");
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get(&other).unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the abandoned pull never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (options, events) = collect_progress();
    store.pull(&other, options).await.unwrap();
    assert!(
        !events.lock().unwrap().is_empty(),
        "a fresh pull reports progress"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_errors_carry_the_registrys_message() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let registry = Registry::start(tmp.path());
    push(
        &layout,
        "single",
        &format!("{}/app:v1", registry.host()),
        None,
    );
    let store = amd64_store(&tmp.path().join("agent"), RegistriesConfig::default());

    let err = store
        .pull(
            &format!("{}/app:nope", registry.host()),
            PullOptions::default(),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("missing tag: {text}");
    assert!(text.contains("manifest unknown"), "{text}");
    assert!(
        text.contains(&format!("{}/app:nope", registry.host())),
        "{text}"
    );
    assert!(err.is_not_found(), "{text}");

    let closed = free_port();
    let err = store
        .pull(
            &format!("127.0.0.1:{closed}/app:v1"),
            PullOptions::default(),
        )
        .await
        .unwrap_err();
    eprintln!("closed port: {err}");
    assert!(err.to_string().contains("onnection refused"), "{err}");
    assert!(!err.is_not_found());

    let err = store
        .pull("Bad/Name", PullOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::InvalidReference { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_mirrors_come_from_registries_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let htpasswd = tmp.path().join("htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", "alice", "wonderland"]));
    std::fs::write(&htpasswd, line.trim()).unwrap();
    let private = Registry::start_with(tmp.path(), Some(&htpasswd), None);
    let open = Registry::start(tmp.path());
    push(
        &layout,
        "single",
        &format!("{}/team/app:v1", private.host()),
        Some("alice:wonderland"),
    );
    push(
        &layout,
        "single",
        &format!("{}/library/busybox:1.36", open.host()),
        None,
    );
    push(
        &layout,
        "single",
        &format!("{}/mirrored/pause:3.9", open.host()),
        None,
    );

    // Without credentials: the registry's refusal.
    let anonymous = amd64_store(&tmp.path().join("anon"), RegistriesConfig::default());
    let reference = format!("{}/team/app:v1", private.host());
    let err = anonymous
        .pull(&reference, PullOptions::default())
        .await
        .unwrap_err();
    eprintln!("no credentials: {err}");
    assert!(err.to_string().contains("authentication required"), "{err}");

    // Explicit credentials (a pull secret) work too.
    let explicit = PullOptions {
        credentials: Some(Credentials::Basic {
            username: "alice".into(),
            password: "wonderland".into(),
        }),
        ..PullOptions::default()
    };
    anonymous.pull(&reference, explicit).await.unwrap();

    let yaml = format!(
        r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:{closed}"
      - "http://{open}"
  registry.k8s.io:
    endpoint: ["http://{open}"]
    rewrite:
      "^(.*)$": "mirrored/$1"
configs:
  "{private}":
    auth:
      username: alice
      password: wonderland
"#,
        closed = free_port(),
        open = open.host(),
        private = private.host()
    );
    let path = tmp.path().join("registries.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = RegistriesConfig::load(&path).unwrap();
    let store = amd64_store(&tmp.path().join("agent"), config);
    let image = store
        .pull(&reference, PullOptions::default())
        .await
        .unwrap();
    assert_eq!(image.layers.len(), 2);

    // docker.io through the mirror (the first, dead endpoint is skipped).
    let hub = store
        .pull("busybox:1.36", PullOptions::default())
        .await
        .unwrap();
    assert_eq!(hub.name, "docker.io/library/busybox:1.36");
    assert_eq!(hub.id, image.id);
    // A rewrite maps registry.k8s.io/pause to mirrored/pause on the mirror.
    let pause = store
        .pull("registry.k8s.io/pause:3.9", PullOptions::default())
        .await
        .unwrap();
    assert_eq!(pause.name, "registry.k8s.io/pause:3.9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_from_the_challenge_realm() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let registry = Registry::start(tmp.path());
    push(
        &layout,
        "single",
        &format!("{}/team/app:v1", registry.host()),
        None,
    );
    let gate = token_gate::start(registry.port).await;

    let yaml = format!(
        "configs:\n  \"127.0.0.1:{}\":\n    auth:\n      username: alice\n      password: wonderland\n",
        gate.port
    );
    let store = amd64_store(
        &tmp.path().join("agent"),
        RegistriesConfig::parse(&yaml).unwrap(),
    );
    let image = store
        .pull(
            &format!("127.0.0.1:{}/team/app:v1", gate.port),
            PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(image.layers.len(), 2);
    let requests = gate.token_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "the token is cached: {requests:?}");
    assert!(
        requests[0].contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{requests:?}"
    );
    assert!(requests[0].contains("service=gate"), "{requests:?}");

    // Wrong password: the token server's message comes through.
    let bad = format!(
        "configs:\n  \"127.0.0.1:{}\":\n    auth:\n      auth: {}\n",
        gate.port,
        base64_encode("alice:wrong")
    );
    let store = amd64_store(
        &tmp.path().join("bad"),
        RegistriesConfig::parse(&bad).unwrap(),
    );
    let err = store
        .pull(
            &format!("127.0.0.1:{}/team/app:v1", gate.port),
            PullOptions::default(),
        )
        .await
        .unwrap_err();
    eprintln!("wrong password: {err}");
    assert!(
        err.to_string().contains("incorrect username or password"),
        "{err}"
    );
    gate.stop();
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn imports_docker_and_oci_archives_compressed() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let archives = tmp.path().join("images");
    std::fs::create_dir(&archives).unwrap();

    // docker-archive, zstd-compressed.
    let docker_tar = tmp.path().join("busybox.tar");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(format!("oci:{}:single", layout.dir.display()))
        .arg(format!(
            "docker-archive:{}:busybox:1.36",
            docker_tar.display()
        )));
    run(Command::new("zstd")
        .args(["-q", "-f"])
        .arg(&docker_tar)
        .arg("-o")
        .arg(archives.join("busybox.tar.zst")));
    // Multi-platform OCI archive, gzip-compressed.
    let oci_tar = tmp.path().join("multi.tar");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--all"])
        .arg(format!("oci:{}:multi", layout.dir.display()))
        .arg(format!(
            "oci-archive:{}:example.com/multi:v1",
            oci_tar.display()
        )));
    let gz = Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&oci_tar)
        .output()
        .unwrap();
    std::fs::write(archives.join("multi.tar.gz"), gz.stdout).unwrap();

    let store = amd64_store(&tmp.path().join("agent"), RegistriesConfig::default());
    let images = store
        .import_archive(archives.join("busybox.tar.zst"))
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    let busybox = &images[0];
    assert_eq!(busybox.name, "docker.io/library/busybox:1.36");
    let diff_ids: Vec<String> = busybox
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    assert_eq!(diff_ids, layout.amd64_diff_ids);
    let lowers = store.rootfs_layers(busybox).await.unwrap();
    assert!(lowers[1].join("bin/busybox").is_file());
    assert_eq!(store.config(busybox).unwrap().cmd(), ["/bin/sh"]);

    let multi = store
        .import_archive(archives.join("multi.tar.gz"))
        .await
        .unwrap();
    assert_eq!(multi.len(), 1);
    assert_eq!(multi[0].name, "example.com/multi:v1");
    assert_eq!(multi[0].platform.to_string(), "linux/amd64");
    assert_eq!(multi[0].digest.to_string(), layout.index.digest);
    let arm64_layer = store
        .root()
        .join("content/blobs/sha256")
        .join(layout.arm64_base_layer.digest.trim_start_matches("sha256:"));
    assert!(
        !arm64_layer.exists(),
        "other platforms' layers are not kept"
    );

    // import_dir: a fresh store imports both, then skips both.
    let fresh = amd64_store(&tmp.path().join("fresh"), RegistriesConfig::default());
    let report = fresh.import_dir(&archives).await.unwrap();
    assert_eq!(report.imported.len(), 2, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let again = fresh.import_dir(&archives).await.unwrap();
    assert!(again.imported.is_empty());
    assert_eq!(again.skipped.len(), 2);
    let names: Vec<String> = fresh.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        ["docker.io/library/busybox:1.36", "example.com/multi:v1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn remove_collects_only_unshared_content() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let registry = Registry::start(tmp.path());
    push(
        &layout,
        "multi",
        &format!("{}/multi:v1", registry.host()),
        None,
    );
    push(
        &layout,
        "single",
        &format!("{}/single:v1", registry.host()),
        None,
    );
    // An arm64 node: the index resolves to arm64; `single` is amd64-only (no index).
    let store = ImageStore::open(
        tmp.path().join("agent"),
        StoreOptions {
            platform: Platform::parse("linux/arm64/v8").unwrap(),
            registries: RegistriesConfig::default(),
        },
    )
    .unwrap();
    let arm = store
        .pull(
            &format!("{}/multi:v1", registry.host()),
            PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(arm.platform.to_string(), "linux/arm64/v8");
    assert_eq!(
        arm.layers[0].digest.to_string(),
        layout.arm64_base_layer.digest
    );
    let amd = store
        .pull(
            &format!("{}/single:v1", registry.host()),
            PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(arm.layers[1], amd.layers[1], "the whiteout layer is shared");
    let arm_dirs = store.rootfs_layers(&arm).await.unwrap();
    let amd_dirs = store.rootfs_layers(&amd).await.unwrap();
    assert_eq!(
        arm_dirs[0], amd_dirs[0],
        "one snapshot for the shared layer"
    );

    let report = store
        .remove(&format!("{}/single:v1", registry.host()))
        .await
        .unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.gc.snapshots_removed, 1);
    assert_eq!(
        report.gc.blobs_removed, 3,
        "amd64 manifest, config and base layer"
    );
    assert!(arm_dirs.iter().all(|d| d.is_dir()));
    assert!(!amd_dirs[1].exists());

    let report = store.remove(&arm.id.to_string()).await.unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(store.list().unwrap().is_empty());
    let blobs = std::fs::read_dir(store.root().join("content/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
    assert_eq!(
        std::fs::read_dir(store.root().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
    assert!(store
        .remove("nothing:here")
        .await
        .unwrap_err()
        .is_not_found());
}

/// A CA and a server certificate for 127.0.0.1, made with openssl:
/// (ca.pem, server.pem, server.key).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("server.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca)
        .args(["-days", "2", "-subj", "/CN=skiff test ca"]));
    run(Command::new("openssl")
        .arg("req")
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=127.0.0.1"]));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-out")
        .arg(&cert)
        .arg("-extfile")
        .arg(&ext));
    (ca, cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_registries_use_the_configured_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let (ca, cert, key) = make_certificates(tmp.path());
    let registry = Registry::start_with(tmp.path(), None, Some((&cert, &key)));
    push(
        &layout,
        "single",
        &format!("{}/app:v1", registry.host()),
        None,
    );

    // An HTTPS mirror for a registry that does not exist (127.0.0.2:1 refuses
    // connections, so the fallback to the registry itself fails without DNS).
    let yaml = |tls: &str| {
        format!(
            "mirrors:\n  \"127.0.0.2:1\":\n    endpoint: [\"https://{host}\"]\nconfigs:\n  \"{host}\":\n    tls:\n      {tls}\n",
            host = registry.host()
        )
    };
    let untrusted = amd64_store(
        &tmp.path().join("untrusted"),
        RegistriesConfig::parse(&yaml("insecure_skip_verify: false")).unwrap(),
    );
    let err = untrusted
        .pull("127.0.0.2:1/app:v1", PullOptions::default())
        .await
        .unwrap_err();
    eprintln!("unknown ca: {err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    let trusted = amd64_store(
        &tmp.path().join("trusted"),
        RegistriesConfig::parse(&yaml(&format!("ca_file: {}", ca.display()))).unwrap(),
    );
    let image = trusted
        .pull("127.0.0.2:1/app:v1", PullOptions::default())
        .await
        .unwrap();
    assert_eq!(image.name, "127.0.0.2:1/app:v1");

    let insecure = amd64_store(
        &tmp.path().join("insecure"),
        RegistriesConfig::parse(&yaml("insecure_skip_verify: true")).unwrap(),
    );
    insecure
        .pull("127.0.0.2:1/app:v1", PullOptions::default())
        .await
        .unwrap();
}

/// A bearer-token gate in front of a registry: 401 with a Bearer challenge unless
/// the request carries the token that `/token` hands out for alice's password.
mod token_gate {
    use super::*;
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::Router;

    const TOKEN: &str = "tok-123";

    pub struct Gate {
        pub port: u16,
        pub token_requests: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Gate {
        pub fn stop(self) {
            self.task.abort();
        }
    }

    #[derive(Clone)]
    struct Shared {
        port: u16,
        upstream: u16,
        requests: Arc<Mutex<Vec<String>>>,
        http: reqwest::Client,
    }

    pub async fn start(upstream: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Shared {
            port,
            upstream,
            requests: Arc::clone(&requests),
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .build()
                .unwrap(),
        };
        let app = Router::new()
            .route("/token", get(token))
            .fallback(proxy)
            .with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Gate {
            port,
            token_requests: requests,
            task,
        }
    }

    async fn token(State(state): State<Shared>, request: Request) -> Response {
        let query = request.uri().query().unwrap_or_default().to_string();
        state.requests.lock().unwrap().push(query);
        let expected = format!("Basic {}", base64_encode("alice:wonderland"));
        let given = request.headers().get(header::AUTHORIZATION);
        if given.and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"details":"incorrect username or password"}"#,
            )
                .into_response();
        }
        (
            [(header::CONTENT_TYPE, "application/json")],
            json!({"token": TOKEN, "expires_in": 300}).to_string(),
        )
            .into_response()
    }

    async fn proxy(State(state): State<Shared>, request: Request) -> Response {
        let authorized = request
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v == format!("Bearer {TOKEN}").as_str());
        let path = request.uri().path().to_string();
        if !authorized {
            let repo = path
                .strip_prefix("/v2/")
                .and_then(|p| p.split("/manifests/").next())
                .and_then(|p| p.split("/blobs/").next())
                .unwrap_or("");
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{}/token",service="gate",scope="repository:{repo}:pull""#,
                state.port
            );
            let mut response = (
                StatusCode::UNAUTHORIZED,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge).unwrap(),
            );
            return response;
        }
        let mut upstream = state
            .http
            .get(format!("http://127.0.0.1:{}{}", state.upstream, path));
        if let Some(accept) = request.headers().get(header::ACCEPT) {
            upstream = upstream.header(header::ACCEPT, accept);
        }
        let answer = upstream.send().await.unwrap();
        let mut response = Response::builder().status(answer.status().as_u16());
        for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
            if let Some(value) = answer.headers().get(&name) {
                response = response.header(name, value.as_bytes());
            }
        }
        let body = answer.bytes().await.unwrap();
        response.body(Body::from(body)).unwrap()
    }
}
