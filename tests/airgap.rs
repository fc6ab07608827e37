//! Air-gapped sites (issue 14): `skiff image save` on a connected machine pulls from
//! a real `docker-registry` on 127.0.0.1 (fed by skopeo with the busybox test
//! images, tests/common/images.rs) and writes one archive; skopeo reads it back as
//! a docker-save and as an OCI archive; `skiff image import` loads it; a node in a
//! network namespace of its own, with no registry and no default route, runs the
//! seed `deployment.yaml` from the archive dropped into its air-gap directory and
//! does not import it again when it restarts.
//!
//! The save tests need no root; the node test does (`#[ignore = "needs root"]`, run
//! under `flock /tmp/skiff-e2e.lock`). Needs the Debian packages busybox-static,
//! docker-registry, skopeo and zstd.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::images::{
    self, flask_app_layout, multi_arch_layout, push_image, sha256_hex, BuiltImage, ImageConfigSpec,
    Registry, FLASK_APP_IMAGE, FLASK_APP_SHORT_NAME,
};
use common::netns::{self, ClusterSpec, NetCluster};
use common::{eventually, is_ready};
use serde_json::Value;

/// `skiff image <args>` with `--data-dir data` and `--registries-config registries`.
fn skiff_image(data: &Path, registries: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--registries-config")
        .arg(registries)
        .env_remove("SKIFF_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run skiff")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A connected machine: a registry holding the seed app (as
/// `library/my-flask-app:latest`, reached through a docker.io mirror) and a
/// multi-arch image, and a registries.yaml with that mirror.
struct Connected {
    work: tempfile::TempDir,
    registry: Option<Registry>,
    registries: PathBuf,
    flask: BuiltImage,
    multi: BuiltImage,
    /// The multi-arch image's reference at the registry.
    multi_ref: String,
}

impl Connected {
    fn new() -> Connected {
        let work = tempfile::tempdir().unwrap();
        let registry = Registry::start(work.path());
        let flask = flask_app_layout(work.path());
        push_image(&flask, &registry, "library/my-flask-app:latest");
        let multi = multi_arch_layout(work.path(), "multi:1", &ImageConfigSpec::cmd(&["sh"]));
        let multi_ref = push_image(&multi, &registry, "team/multi:1");
        let registries = work.path().join("registries.yaml");
        std::fs::write(
            &registries,
            format!(
                "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n",
                registry.host()
            ),
        )
        .unwrap();
        Connected {
            work,
            registry: Some(registry),
            registries,
            flask,
            multi,
            multi_ref,
        }
    }

    fn path(&self) -> &Path {
        self.work.path()
    }

    /// `skiff image save <args>` with a data dir that must stay untouched.
    fn save(&self, args: &[&str]) -> Output {
        let mut all = vec!["save"];
        all.extend_from_slice(args);
        skiff_image(&self.path().join("untouched"), &self.registries, &all)
    }
}

/// Member names and bodies of a tar archive (any compression, read by the real
/// `tar` and `zstd`/`gzip` tools through `tar -xa`).
fn unpack(archive: &Path, into: &Path) -> Vec<String> {
    std::fs::create_dir_all(into).unwrap();
    images::run(
        Command::new("tar")
            .arg("-xaf")
            .arg(archive)
            .arg("-C")
            .arg(into),
    );
    let listed = images::run(Command::new("tar").arg("-taf").arg(archive));
    listed.lines().map(str::to_string).collect()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn save_writes_one_archive_that_skiff_and_skopeo_read() {
    let site = Connected::new();
    let archive = site.path().join("out/app-images.tar.zst");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let out = site.save(&[
        "-o",
        archive.to_str().unwrap(),
        FLASK_APP_SHORT_NAME,
        &site.multi_ref,
    ]);
    let stdout = ok(out, "image save");
    assert!(
        stdout.starts_with(&format!(
            "saved 2 images for linux/amd64 to {}",
            archive.display()
        )),
        "{stdout}"
    );
    assert!(
        !site.path().join("untouched").exists(),
        "save does not touch the node's store"
    );
    let out_dir: Vec<_> = std::fs::read_dir(archive.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(out_dir, ["app-images.tar.zst"], "no temporary store left");

    // The layout: both images named, with their registry digests.
    let dir = site.path().join("unpacked");
    let members = unpack(&archive, &dir);
    assert_eq!(members[0], "oci-layout");
    assert_eq!(members[members.len() - 1], "manifest.json");
    let index = json_file(&dir.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["digest"], site.flask.manifest_digest);
    assert_eq!(
        entries[0]["annotations"]["io.containerd.image.name"],
        FLASK_APP_IMAGE
    );
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(entries[1]["digest"], site.multi.digest, "the index");
    assert_eq!(
        entries[1]["annotations"]["io.containerd.image.name"],
        site.multi_ref
    );
    assert!(blob(&dir, &site.multi.manifest_digest).is_file());
    assert!(!blob(&dir, site.multi.arm64_manifest_digest.as_ref().unwrap()).exists());
    for digest in [&site.flask.config_digest, &site.multi.config_digest]
        .into_iter()
        .chain(&site.flask.layer_digests)
    {
        let bytes = std::fs::read(blob(&dir, digest)).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), *digest);
    }
    let docker = json_file(&dir.join("manifest.json"));
    assert_eq!(docker[0]["RepoTags"][0], FLASK_APP_SHORT_NAME);

    // skopeo reads it as `docker load` would (manifest.json) and as an OCI archive.
    let config = images::run(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--config"])
            .arg(format!(
                "docker-archive:{}:{FLASK_APP_SHORT_NAME}",
                archive.display()
            )),
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(config.as_bytes())),
        site.flask.config_digest
    );
    let plain = site.path().join("app-images.tar");
    let out = site.save(&["-o", plain.to_str().unwrap(), FLASK_APP_SHORT_NAME]);
    ok(out, "image save to .tar");
    let manifest = images::run(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}:latest", plain.display())),
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(manifest.as_bytes())),
        site.flask.manifest_digest
    );

    // `-o -`: the same tar on stdout, byte for byte (saving is deterministic).
    let out = site.save(&["-o", "-", FLASK_APP_SHORT_NAME]);
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&plain).unwrap());

    // skiff imports every image under its name and registry digest.
    let node = site.path().join("node");
    let none = site.path().join("no-registries.yaml");
    let out = skiff_image(&node, &none, &["import", archive.to_str().unwrap()]);
    let imported = ok(out, "image import");
    assert!(imported.contains(FLASK_APP_IMAGE), "{imported}");
    let out = skiff_image(&node, &none, &["ls", "--no-trunc"]);
    let ls = ok(out, "image ls");
    let row = |name: &str| {
        ls.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in:\n{ls}"))
            .to_string()
    };
    assert!(row(FLASK_APP_IMAGE).contains(&site.flask.manifest_digest));
    assert!(row(&site.multi_ref).contains(&site.multi.digest));
    assert!(row(&site.multi_ref).contains("linux/amd64"));
}

#[test]
fn save_for_another_platform_takes_its_blobs_and_leaves_the_nodes_store_alone() {
    let site = Connected::new();
    let node = site.path().join("node");
    // The node (amd64 here) has the image for itself.
    let out = skiff_image(&node, &site.registries, &["pull", &site.multi_ref]);
    ok(out, "image pull");

    let archive = site.path().join("arm64.tar.gz");
    let out = skiff_image(
        &node,
        &site.registries,
        &[
            "save",
            "--platform",
            "linux/arm64",
            "-o",
            archive.to_str().unwrap(),
            &site.multi_ref,
        ],
    );
    let stdout = ok(out, "image save --platform linux/arm64");
    assert!(stdout.contains("for linux/arm64/v8"), "{stdout}");
    let ls = ok(skiff_image(&node, &site.registries, &["ls"]), "image ls");
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&site.multi_ref) && l.contains("linux/amd64")),
        "the node keeps its own platform's image:\n{ls}"
    );

    let dir = site.path().join("unpacked");
    unpack(&archive, &dir);
    let index = json_file(&dir.join("index.json"));
    assert_eq!(index["manifests"][0]["digest"], site.multi.digest);
    let arm64 = site.multi.arm64_manifest_digest.clone().unwrap();
    let manifest = json_file(&blob(&dir, &arm64));
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config = json_file(&blob(&dir, config_digest));
    assert_eq!(config["architecture"], "arm64");
    assert!(
        !blob(&dir, &site.multi.manifest_digest).exists(),
        "no amd64"
    );

    // An amd64 node refuses it; an import for arm64 takes it.
    let none = site.path().join("no-registries.yaml");
    let other = site.path().join("other");
    let out = skiff_image(&other, &none, &["import", archive.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lacks the linux/amd64 image"), "{err}");
    let out = skiff_image(
        &other,
        &none,
        &[
            "import",
            "--platform",
            "linux/arm64",
            archive.to_str().unwrap(),
        ],
    );
    ok(out, "image import --platform linux/arm64");
    let ls = ok(skiff_image(&other, &none, &["ls"]), "image ls");
    assert!(ls.contains("linux/arm64/v8"), "{ls}");

    // A platform the image lacks: the error names what it has; no file.
    let armhf = site.path().join("armhf.tar.zst");
    let out = site.save(&[
        "--platform",
        "linux/arm/v7",
        "-o",
        armhf.to_str().unwrap(),
        &site.multi_ref,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no image for linux/arm/v7") && err.contains("linux/arm64/v8"),
        "{err}"
    );
    assert!(!armhf.exists());

    // Names that say nothing about the format are refused before any pull.
    let out = site.save(&["-o", "images.zip", &site.multi_ref]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".tar.zst"), "{err}");
}

#[test]
fn an_interrupted_save_leaves_nothing_behind() {
    // A "registry" that accepts connections and never answers: the pull hangs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "save", "-o"])
        .arg(out.join("x.tar.zst"))
        .arg(format!("127.0.0.1:{port}/x:1"))
        .arg("--registries-config")
        .arg(work.path().join("none.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pulling = eventually(Duration::from_secs(10), || {
        std::fs::read_dir(&out).unwrap().count() == 1
    });
    assert!(pulling, "the temporary store appears while pulling");
    std::thread::sleep(Duration::from_millis(200)); // the Ctrl-C handler is in place
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(!done.status.success());
    assert!(err.contains("interrupted: nothing written"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The `air-gap image import done` lines of a log, without colours.
fn import_summaries(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("air-gap image import done"))
        .map(strip_colours)
        .collect()
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn ready_replicas(cluster: &NetCluster) -> i64 {
    let (_, out, _) = cluster.server().kubectl(&[
        "get",
        "deployment",
        "my-flask-app",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    out.trim().parse().unwrap_or(0)
}

#[test]
#[ignore = "needs root"]
fn an_air_gapped_node_runs_the_seed_deployment_from_a_saved_archive() {
    // Connected machine: save the seed app's image.
    let mut site = Connected::new();
    let archive = site.path().join("app-images.tar.zst");
    let out = site.save(&["-o", archive.to_str().unwrap(), FLASK_APP_SHORT_NAME]);
    ok(out, "image save");
    drop(site.registry.take());

    // The site: a node in its own network namespace, the archive in its air-gap
    // directory, a registries.yaml whose mirror is unreachable, no default route.
    let mut cluster = NetCluster::start(ClusterSpec {
        archives: vec![archive.clone()],
        ..ClusterSpec::agents(0)
    });
    let routes = netns::ok_in(cluster.ns(0), &["ip", "route", "show", "default"]);
    assert_eq!(routes.trim(), "", "no default route");
    let images_dir = cluster.server().data_dir().join("agent/images");

    cluster.server().ok(&[
        "apply",
        "-f",
        common::fixture("deployment.yaml").to_str().unwrap(),
    ]);
    let available = eventually(Duration::from_secs(90), || ready_replicas(&cluster) == 3);
    assert!(
        available,
        "3 ready replicas expected:\n{}\n{}",
        cluster.server().kubectl(&["get", "pods", "-o", "wide"]).1,
        cluster.logs(40)
    );
    let (ok_, _, err) = cluster.server().kubectl(&[
        "rollout",
        "status",
        "deployment/my-flask-app",
        "--timeout=30s",
    ]);
    assert!(ok_, "{err}");
    // The pull was tried (`:latest` is Always), failed, and the archive's image ran.
    let events = cluster.server().ok(&["get", "events", "-o", "json"]);
    assert!(
        events.contains("using the image present on the node"),
        "{events}"
    );

    // What the first start recorded.
    let log = cluster.server().log();
    let first = import_summaries(&log);
    assert_eq!(first.len(), 1, "{log}");
    assert!(
        first[0].contains("imported=2") && first[0].contains("skipped=0"),
        "{}",
        first[0]
    );
    let state_before = json_file(&images_dir.join("import-state.json"));
    let key = images_dir.join("app-images.tar.zst").display().to_string();
    assert_eq!(
        state_before["archives"][&key]["images"],
        serde_json::json!([FLASK_APP_IMAGE])
    );
    let stored_before = json_file(&images_dir.join("content/images.json"));

    // Restart the node: nothing is imported again.
    let log_len = log.len();
    cluster.server_mut().restart();
    let restarted = eventually(Duration::from_secs(60), || {
        !import_summaries(&cluster.server().log()[log_len..]).is_empty()
    });
    assert!(restarted, "{}", cluster.logs(40));
    let after = cluster.server().log()[log_len..].to_string();
    let summary = &import_summaries(&after)[0];
    assert!(
        summary.contains("imported=0") && summary.contains("skipped=2"),
        "{summary}"
    );
    assert!(!after.contains("imported image archive"), "{after}");
    assert_eq!(
        json_file(&images_dir.join("import-state.json")),
        state_before
    );
    assert_eq!(
        json_file(&images_dir.join("content/images.json")),
        stored_before,
        "the image records (their stored_at too) are as before"
    );
    let still = eventually(Duration::from_secs(60), || {
        let pods = common::pods(cluster.server(), "app=my-flask-app");
        pods.len() == 3 && pods.iter().all(is_ready)
    });
    assert!(still, "{}", cluster.logs(40));

    let found = cluster.teardown();
    assert!(found.is_empty(), "{found:#?}");
}

// ---------------------------------------------------------------- bundles

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The release name of this machine's architecture.
fn release_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        other => panic!("no release architecture for {other}"),
    }
}

fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

fn script(path: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg(path).stdin(Stdio::null());
    cmd
}

/// A stand-in for the real install.sh (which tests/install.rs runs in namespaces of
/// its own): it records how install-bundle.sh ran it and what was in place then.
const RECORDING_INSTALLER: &str = r#"#!/bin/sh
set -eu
{
    echo "skip_download=${INSTALL_SKIFF_SKIP_DOWNLOAD:-}"
    echo "bin_dir=${INSTALL_SKIFF_BIN_DIR:-}"
    echo "args=$*"
    echo "binary=$(sha256sum "$INSTALL_SKIFF_BIN_DIR/skiff" | cut -d' ' -f1)"
    echo "images=$(ls "$TEST_DATA_DIR/agent/images")"
} >>"$TEST_RECORD"
"#;

#[test]
fn the_bundle_scripts_are_posix_sh_and_shellcheck_clean() {
    let out = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(repo_file("airgap/make-bundle.sh"))
        .arg(repo_file("airgap/install-bundle.sh"))
        .output()
        .expect("shellcheck (Debian package shellcheck) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
#[ignore = "needs root"]
fn a_bundle_installs_offline_with_its_images_in_place_before_the_installer_runs() {
    let site = Connected::new();
    let arch = release_arch();
    let dist = site.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let release = dist.join(format!("skiff-{arch}"));
    std::fs::copy(env!("CARGO_BIN_EXE_skiff"), &release).unwrap();
    std::fs::write(
        dist.join(format!("sha256sum-{arch}.txt")),
        format!("{}  skiff-{arch}\n", sha256_file(&release)),
    )
    .unwrap();
    std::fs::write(dist.join("install.sh"), RECORDING_INSTALLER).unwrap();

    // Connected machine: the bundle.
    let bundle = site.path().join("bundle");
    let out = script(&repo_file("airgap/make-bundle.sh"))
        .arg("-d")
        .arg(&dist)
        .arg("-o")
        .arg(&bundle)
        .arg("-r")
        .arg(&site.registries)
        .arg(FLASK_APP_SHORT_NAME)
        .env("SKIFF", env!("CARGO_BIN_EXE_skiff"))
        .output()
        .unwrap();
    ok(out, "make-bundle.sh");
    let mut files: Vec<String> =
        images::run(Command::new("find").arg(&bundle).args(["-mindepth", "1"]))
            .lines()
            .map(|l| l.trim_start_matches(bundle.to_str().unwrap()).to_string())
            .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/arch",
            "/images",
            "/images/images.tar.zst",
            "/install-bundle.sh",
            "/install.sh",
            "/sha256sums",
            "/skiff"
        ]
    );
    images::run(
        Command::new("sha256sum")
            .args(["-c", "sha256sums"])
            .current_dir(&bundle),
    );

    // The site: install from the bundle alone.
    let target = site.path().join("target");
    let (bin, data, record) = (
        target.join("bin"),
        target.join("data"),
        target.join("record"),
    );
    let install = |bundle: &Path, bin: &Path| {
        script(&bundle.join("install-bundle.sh"))
            .args(["server", "--data-dir"])
            .arg(&data)
            .env("INSTALL_SKIFF_BIN_DIR", bin)
            .env("TEST_DATA_DIR", &data)
            .env("TEST_RECORD", &record)
            .output()
            .unwrap()
    };
    ok(install(&bundle, &bin), "install-bundle.sh");
    let recorded = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        recorded,
        format!(
            "skip_download=true\nbin_dir={}\nargs=server --data-dir {}\nbinary={}\nimages=images.tar.zst\n",
            bin.display(),
            data.display(),
            sha256_file(&release)
        )
    );
    let archive = data.join("agent/images/images.tar.zst");
    assert_eq!(
        sha256_file(&archive),
        sha256_file(&bundle.join("images/images.tar.zst"))
    );

    // What the node does at start: imports it once, then remembers it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = skiff::image::ImageStore::open(
        skiff::image::store_dir(&data),
        skiff::image::StoreOptions::default(),
    )
    .unwrap();
    let first = runtime.block_on(store.import_airgap());
    assert_eq!(first.imported.len(), 1, "{first:?}");
    assert_eq!(first.imported[0].1[0].name, FLASK_APP_IMAGE);
    let mtime = std::fs::metadata(&archive).unwrap().modified().unwrap();

    // Again: unchanged files are left alone, so the archive stays imported.
    let out = install(&bundle, &bin);
    let said = ok(out, "install-bundle.sh again");
    assert!(
        said.contains(&format!("{} is up to date", archive.display())),
        "{said}"
    );
    assert_eq!(
        std::fs::metadata(&archive).unwrap().modified().unwrap(),
        mtime
    );
    let second = runtime.block_on(store.import_airgap());
    assert!(
        second.imported.is_empty() && second.skipped.len() == 1,
        "{second:?}"
    );

    // A damaged bundle installs nothing.
    let mut bytes = std::fs::read(bundle.join("images/images.tar.zst")).unwrap();
    bytes[100] ^= 1;
    std::fs::write(bundle.join("images/images.tar.zst"), &bytes).unwrap();
    let other_bin = target.join("other-bin");
    let out = install(&bundle, &other_bin);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("damaged") && err.contains("images.tar.zst"),
        "{err}"
    );
    assert!(!other_bin.exists());

    // A bundle for another architecture is refused.
    let foreign = if arch == "amd64" { "arm64" } else { "amd64" };
    let out = script(&repo_file("airgap/make-bundle.sh"))
        .arg("-a")
        .arg(foreign)
        .arg("-d")
        .arg(&dist)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("skiff-{foreign} is missing")),
        "{err}"
    );
    std::fs::write(bundle.join("images/images.tar.zst"), {
        bytes[100] ^= 1;
        &bytes
    })
    .unwrap();
    std::fs::write(bundle.join("arch"), format!("{foreign}\n")).unwrap();
    let sums = images::run(
        Command::new("sh")
            .args([
                "-c",
                "sha256sum arch images/images.tar.zst install-bundle.sh install.sh skiff",
            ])
            .current_dir(&bundle),
    );
    std::fs::write(bundle.join("sha256sums"), sums).unwrap();
    let out = install(&bundle, &other_bin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("the bundle is for {foreign}")),
        "{err}"
    );
    assert!(!other_bin.exists());
}
