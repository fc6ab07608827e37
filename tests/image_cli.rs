//! `skiff image import|ls|rm|pull`: the real binary on a temporary data dir, with
//! busybox test images (tests/common/images.rs) and a real `docker-registry` on
//! 127.0.0.1 fed by skopeo. Also checks that the test images themselves are
//! reproducible and that `my-flask-app:latest` serves `/health` on port 5000.
//!
//! Needs root (the flask test mounts overlayfs) and the Debian packages
//! busybox-static, docker-registry, skopeo and zstd.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::images::{
    self, archive_in, busybox_archive, busybox_image, busybox_layout, flask_app_image,
    multi_arch_layout, push_image, ArchiveFormat, ImageConfigSpec, Registry, FLASK_APP_IMAGE,
};
use skiff::image::{store_dir, ImageStore, StoreOptions};

/// `skiff image <args> --data-dir <data>`, with no terminal on stderr.
fn skiff(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--registries-config")
        .arg(data.join("no-registries.yaml"))
        .env_remove("SKIFF_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run skiff")
}

/// Runs `skiff image …`, expecting success; returns stdout.
fn ok(data: &Path, args: &[&str]) -> String {
    let out = skiff(data, args);
    assert!(
        out.status.success(),
        "skiff image {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `skiff image …`, expecting failure; returns stderr.
fn fails(data: &Path, args: &[&str]) -> String {
    let out = skiff(data, args);
    assert!(
        !out.status.success(),
        "skiff image {args:?} should fail:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn short(digest: &str) -> &str {
    &digest[..7 + 12]
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The `ls` row of `name`, split in columns (two or more spaces apart).
fn ls_row(data: &Path, name: &str) -> Option<Vec<String>> {
    ok(data, &["ls"])
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
}

#[test]
fn import_ls_and_rm_every_archive_format() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = ImageConfigSpec::cmd(&["/bin/sh", "-c", "echo hi"])
        .with_env("GREETING=hello")
        .with_working_dir("/tmp")
        .with_port("8080/tcp");
    let mut archives: Vec<(PathBuf, String)> = Vec::new();
    for (i, format) in ArchiveFormat::ALL.into_iter().enumerate() {
        let name = format!("busybox:f{i}");
        let path = busybox_archive(tmp.path(), &name, spec.clone(), format);
        archives.push((path, format!("docker.io/library/{name}")));
    }

    // Before anything: an empty table, and no store created by listing.
    assert_eq!(
        ok(&data, &["ls"]).trim(),
        "IMAGE   DIGEST   IMAGE ID   PLATFORM   SIZE"
    );
    assert!(!store_dir(&data).exists());

    let files: Vec<&str> = archives.iter().map(|(p, _)| path_str(p)).collect();
    let mut args = vec!["import"];
    args.extend(&files);
    let out = ok(&data, &args);
    for (path, name) in &archives {
        assert!(
            out.contains(&format!("imported {name} (sha256:")) && out.contains(path_str(path)),
            "{out}"
        );
    }

    let listed = ok(&data, &["ls"]);
    eprintln!("{listed}");
    let header = listed.lines().next().unwrap();
    for column in ["IMAGE", "DIGEST", "IMAGE ID", "PLATFORM", "SIZE"] {
        assert!(header.contains(column), "{header}");
    }
    let image = busybox_layout(&tmp.path().join("again"), "busybox:f0", &spec);
    let row = ls_row(&data, "docker.io/library/busybox:f0").expect("listed");
    assert_eq!(row[1], short(&image.manifest_digest), "{row:?}");
    assert_eq!(row[2], short(&image.config_digest), "{row:?}");
    assert_eq!(row[3], "linux/amd64");
    assert!(
        row[4].ends_with("KiB") || row[4].ends_with("MiB"),
        "busybox is about a megabyte compressed: {row:?}"
    );
    // Same content in every format: one image id.
    for (_, name) in &archives {
        assert_eq!(ls_row(&data, name).unwrap()[2], row[2], "{name}");
    }
    let quiet = ok(&data, &["ls", "-q"]);
    let names: Vec<&str> = quiet.lines().collect();
    let mut expected: Vec<&str> = archives.iter().map(|(_, n)| n.as_str()).collect();
    expected.sort();
    assert_eq!(names, expected);

    // rm by short name, by full name and by id (which removes every name it has).
    let out = ok(&data, &["rm", "busybox:f0", "docker.io/library/busybox:f1"]);
    assert!(
        out.contains("deleted docker.io/library/busybox:f0"),
        "{out}"
    );
    assert!(
        out.contains("deleted docker.io/library/busybox:f1"),
        "{out}"
    );
    assert!(ls_row(&data, "docker.io/library/busybox:f0").is_none());
    let out = ok(&data, &["rm", &image.config_digest]);
    assert_eq!(out.matches("deleted ").count(), 3, "{out}");
    assert!(
        out.contains("freed "),
        "the layers go with the last name: {out}"
    );
    assert_eq!(ok(&data, &["ls", "-q"]), "");
    let blobs = store_dir(&data).join("content/blobs/sha256");
    assert_eq!(std::fs::read_dir(blobs).unwrap().count(), 0);

    let err = fails(&data, &["rm", "busybox:gone"]);
    assert!(err.contains("image busybox:gone not found"), "{err}");
    assert!(err.contains("skiff image ls"), "{err}");
}

#[test]
fn import_errors_name_the_file_and_what_is_supported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let garbage = tmp.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not a tar file").unwrap();
    let good = busybox_image(tmp.path(), "good:1", ImageConfigSpec::default());
    let missing = tmp.path().join("missing.tar");

    let err = fails(
        &data,
        &[
            "import",
            path_str(&garbage),
            path_str(&good),
            path_str(&missing),
        ],
    );
    eprintln!("{err}");
    assert!(err.contains(path_str(&garbage)), "{err}");
    assert!(err.contains(path_str(&missing)), "{err}");
    assert!(err.contains("2 of 3 archives not imported"), "{err}");
    assert!(err.contains("docker-save or OCI-layout"), "{err}");
    // The good one in the middle was imported all the same.
    assert_eq!(ok(&data, &["ls", "-q"]).trim(), "docker.io/library/good:1");

    let err = fails(&data, &["import", path_str(tmp.path())]);
    assert!(err.contains("is a directory"), "{err}");

    let err = fails(&data, &["import"]);
    assert!(
        err.contains("FILE"),
        "clap names the missing argument: {err}"
    );
}

#[test]
fn test_images_are_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = images::flask_app_spec();
    let a = busybox_archive(
        &tmp.path().join("a"),
        "x:1",
        spec.clone(),
        ArchiveFormat::Oci,
    );
    let b = busybox_archive(&tmp.path().join("b"), "x:1", spec, ArchiveFormat::Oci);
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let one = busybox_layout(&tmp.path().join("c"), "x:1", &ImageConfigSpec::default());
    let two = busybox_layout(&tmp.path().join("d"), "x:1", &ImageConfigSpec::default());
    assert_eq!(one.manifest_digest, two.manifest_digest);
    assert_eq!(one.diff_ids.len(), 1, "no files: one layer");
}

#[tokio::test]
async fn archives_in_the_store_dir_are_imported_at_agent_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = store_dir(&data);
    std::fs::create_dir_all(&dir).unwrap();
    let flask = flask_app_image(tmp.path());
    std::fs::copy(&flask, dir.join("my-flask-app.tar")).unwrap();
    let multi = multi_arch_layout(tmp.path(), "multi:1", &ImageConfigSpec::default());
    let zst = archive_in(tmp.path(), &multi, ArchiveFormat::OciZstd);
    std::fs::copy(&zst, dir.join("multi.tar.zst")).unwrap();

    let store = ImageStore::open(&dir, StoreOptions::default()).unwrap();
    let report = store.import_airgap().await;
    assert_eq!(report.imported.len(), 2, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let again = store.import_airgap().await;
    assert_eq!(again.skipped.len(), 2, "{again:?}");
    assert!(again.imported.is_empty());

    // The CLI sees the agent's store.
    let names = ok(&data, &["ls", "-q"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["docker.io/library/multi:1", FLASK_APP_IMAGE]
    );
    let row = ls_row(&data, "docker.io/library/multi:1").unwrap();
    assert_eq!(row[1], short(&multi.digest), "the index digest: {row:?}");
}

#[test]
fn pull_from_a_local_registry_directly_and_through_a_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let registry = Registry::start(tmp.path());
    let multi = multi_arch_layout(tmp.path(), "multi:v1", &images::flask_app_spec());
    let reference = push_image(&multi, &registry, "team/multi:v1");

    let out = skiff(&data, &["pull", &reference]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stderr, "", "no progress without a terminal");
    assert_eq!(
        stdout.trim(),
        format!(
            "pulled {reference} ({}, 2 layers, {})",
            short(&multi.digest),
            ls_row(&data, &reference).unwrap()[4]
        )
    );
    let row = ls_row(&data, &reference).unwrap();
    assert_eq!(row[2], short(&multi.config_digest));
    assert_eq!(row[3], "linux/amd64");

    // Another platform from the same index (the arm64 entry only resolves).
    let arm = tmp.path().join("arm");
    ok(&arm, &["pull", "--platform", "linux/arm64", &reference]);
    assert_eq!(ls_row(&arm, &reference).unwrap()[3], "linux/arm64/v8");

    // docker.io names through a mirror from --registries-config.
    let busybox = busybox_layout(tmp.path(), "busybox:mirrored", &ImageConfigSpec::default());
    push_image(&busybox, &registry, "library/busybox:mirrored");
    let config = tmp.path().join("registries.yaml");
    std::fs::write(
        &config,
        format!(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n",
            registry.host()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "pull", "busybox:mirrored", "--registries-config"])
        .arg(&config)
        .env("SKIFF_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = ls_row(&data, "docker.io/library/busybox:mirrored").unwrap();
    assert_eq!(row[1], short(&busybox.manifest_digest));

    // Failures say what to check.
    let err = fails(
        &data,
        &["pull", &format!("{}/team/none:v1", registry.host())],
    );
    assert!(err.contains("check the name and tag"), "{err}");
    assert!(err.contains("manifest unknown"), "{err}");
    let closed = images::free_port();
    let err = fails(&data, &["pull", &format!("127.0.0.1:{closed}/x:1")]);
    assert!(err.contains("check the registry address"), "{err}");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "mirrors: [oops").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "pull", "x:1", "--registries-config"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(path_str(&bad)) && err.contains("fix "),
        "{err}"
    );
}

/// Mounts the image's layers (read-only overlay) and runs its start script in a
/// network namespace of its own; `GET /health` on port 5000 answers `ok`.
#[tokio::test]
#[ignore = "needs root"]
async fn the_flask_app_image_serves_health_on_port_5000() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let archive = flask_app_image(tmp.path());
    ok(&data, &["import", path_str(&archive)]);
    let store = ImageStore::open(store_dir(&data), StoreOptions::default()).unwrap();
    let image = store.get("my-flask-app:latest").unwrap().expect("imported");
    assert_eq!(image.name, FLASK_APP_IMAGE);
    let config = store.config(&image).unwrap();
    assert_eq!(config.cmd(), ["/bin/sh", "/app/start.sh"]);
    assert_eq!(config.exposed_ports()[0].port, 5000);
    let lowers = store.rootfs_layers(&image).await.unwrap();

    let merged = tmp.path().join("merged");
    std::fs::create_dir_all(&merged).unwrap();
    let lower: Vec<String> = lowers.iter().map(|d| d.display().to_string()).collect();
    images::run(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lower.join(":")))
            .arg(&merged),
    );
    let unmount = Unmount(merged.clone());
    let err = fails(&data, &["rm", "my-flask-app"]);
    assert!(err.contains("is in use"), "{err}");
    // In namespaces of its own (network, mount, and PID with the app as PID 1), as
    // in a pod: /dev bound in for the shell's background job; SIGTERM must stop it.
    let script = format!(
        "ip link set lo up\n\
         mount --bind /dev {root}/dev\n\
         unshare --pid --fork chroot {root} /bin/sh -c 'cd /app && exec /bin/sh /app/start.sh' >{out} 2>{err} &\n\
         for i in $(seq 50); do busybox nc -z 127.0.0.1 5000 && break; sleep 0.1; done\n\
         printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | busybox nc 127.0.0.1 5000\n\
         app=$(cat /proc/$!/task/$!/children)\n\
         [ -n \"$app\" ] || echo 'NO APP PID'\n\
         kill -TERM $app\n\
         for i in $(seq 30); do kill -0 $app 2>/dev/null || break; sleep 0.1; done\n\
         if kill -0 $app 2>/dev/null; then echo 'IGNORED SIGTERM'; kill -KILL $app; fi\n\
         wait\n",
        root = merged.display(),
        out = tmp.path().join("app.out").display(),
        err = tmp.path().join("app.err").display(),
    );
    let response =
        images::run(Command::new("unshare").args(["--net", "--mount", "sh", "-c", &script]));
    assert!(!response.contains("IGNORED SIGTERM"), "{response}");
    assert!(!response.contains("NO APP PID"), "{response}");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response:?}");
    let out = std::fs::read_to_string(tmp.path().join("app.out")).unwrap();
    assert_eq!(out.trim(), images::FLASK_APP_STARTUP_LINE);
    let err = std::fs::read_to_string(tmp.path().join("app.err")).unwrap();
    assert!(
        err.contains("response:200"),
        "httpd -v logs requests: {err}"
    );
    drop(unmount);
    ok(&data, &["rm", "my-flask-app"]);
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
