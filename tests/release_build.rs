//! Release builds for the boards skiff targets: `scripts/build-release.sh arm64 armhf`
//! cross-builds (ADR 0015), then each binary runs under qemu-user: it prints its version
//! and the arm64 one serves the API to the real kubectl. Also checks what the installer
//! relies on: the checksum files, and that the binaries need nothing but glibc
//! (libseccomp linked statically). armhf is built with libcontainer patched for 32-bit
//! targets (scripts/patches/).
//!
//! Needs Debian's cross compilers and `qemu-user-static` (scripts/test.sh installs them;
//! the build script installs what it misses as root). The first run builds the target
//! from scratch with the release profile: about 15 minutes on 2 cores.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{eventually, KUBECTL};

/// One cross target: its name in dist/, its qemu and the sysroot of Debian's cross libc.
struct Arch {
    name: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
    /// `readelf -h` Machine.
    machine: &'static str,
}

const ARM64: Arch = Arch {
    name: "arm64",
    qemu: "qemu-aarch64-static",
    sysroot: "/usr/aarch64-linux-gnu",
    machine: "AArch64",
};

const ARMHF: Arch = Arch {
    name: "armhf",
    qemu: "qemu-arm-static",
    sysroot: "/usr/arm-linux-gnueabihf",
    machine: "ARM",
};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dist_dir() -> PathBuf {
    repo().join("dist")
}

/// Runs the build script once for every test in this file; returns dist/.
fn built() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let start = Instant::now();
        let mut script = Command::new(repo().join("scripts/build-release.sh"));
        // What `cargo test` sets for its tests only: the nested cargo would otherwise
        // see a different environment than a build from a shell and rebuild each time.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if cargo_test_only(&name) {
                script.env_remove(&*name);
            }
        }
        let out = script
            .args([ARM64.name, ARMHF.name])
            .current_dir(repo())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/build-release.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "scripts/build-release.sh arm64 armhf failed:\n{stdout}\n{}",
            tail(&stderr, 60)
        );
        // Timing and the sizes the script prints: the record of this run.
        for line in stdout.lines().filter(|l| {
            l.starts_with("built ") || l.contains("skiff-") || l.starts_with("release binaries")
        }) {
            eprintln!("{line}");
        }
        eprintln!(
            "build-release.sh arm64 armhf took {:.0} s",
            start.elapsed().as_secs_f64()
        );
    });
    dist_dir()
}

/// Environment `cargo test` gives a test (and `.cargo/config.toml`'s `[env]`), which a
/// shell running the build script does not have.
fn cargo_test_only(name: &str) -> bool {
    (name.starts_with("CARGO") && name != "CARGO_HOME")
        || name.starts_with("LIBSECCOMP_")
        || [
            "LD_LIBRARY_PATH",
            "RUST_RECURSION_COUNT",
            "RUSTUP_TOOLCHAIN_SOURCE",
        ]
        .contains(&name)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn binary(arch: &Arch) -> PathBuf {
    built().join(format!("skiff-{}", arch.name))
}

/// `binary args` under qemu-user with the cross toolchain's libc as sysroot.
fn emulated(arch: &Arch, args: &[&str]) -> Command {
    let mut cmd = Command::new(arch.qemu);
    cmd.arg("-L").arg(arch.sysroot).arg(binary(arch)).args(args);
    cmd
}

fn output(mut cmd: Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_of(cmd: Command) -> String {
    String::from_utf8_lossy(&output(cmd).stdout).into_owned()
}

fn assert_prints_version(arch: &Arch) {
    let version = stdout_of(emulated(arch, &["--version"]));
    assert_eq!(
        version.trim(),
        format!("skiff {}", env!("CARGO_PKG_VERSION")),
        "skiff-{} --version",
        arch.name
    );
}

#[test]
fn arm64_binary_prints_its_version_under_qemu() {
    assert_prints_version(&ARM64);
}

#[test]
fn armhf_binary_prints_its_version_under_qemu() {
    assert_prints_version(&ARMHF);
}

/// What the installer relies on: a binary for the right machine, stripped, linked
/// against glibc only, with a checksum file `sha256sum -c` accepts.
fn assert_shippable(arch: &Arch) {
    let path = binary(arch);
    let header = stdout_of({
        let mut cmd = Command::new("readelf");
        cmd.arg("-h").arg(&path);
        cmd
    });
    assert!(
        header.contains(arch.machine),
        "skiff-{} is not an {} binary:\n{header}",
        arch.name,
        arch.machine
    );

    let sections = stdout_of({
        let mut cmd = Command::new("readelf");
        cmd.arg("-S").arg("-W").arg(&path);
        cmd
    });
    assert!(
        !sections.contains(".symtab") && !sections.contains(".debug_"),
        "skiff-{} is not stripped:\n{sections}",
        arch.name
    );

    let dynamic = stdout_of({
        let mut cmd = Command::new("readelf");
        cmd.arg("-d").arg("-W").arg(&path);
        cmd
    });
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    let glibc = [
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "ld-linux",
        "libpthread.so",
        "libdl.so",
    ];
    for lib in &needed {
        assert!(
            glibc.iter().any(|g| lib.starts_with(g)),
            "skiff-{} needs {lib}, which is not part of glibc (all: {needed:?})",
            arch.name
        );
    }

    let sums = format!("sha256sum-{}.txt", arch.name);
    let listed = std::fs::read_to_string(built().join(&sums)).unwrap();
    let (sum, name) = listed
        .trim_end()
        .split_once("  ")
        .expect("<sha256>  <file>");
    assert_eq!(name, format!("skiff-{}", arch.name), "{sums}: {listed}");
    assert_eq!(sum.len(), 64, "{sums}: {listed}");
    let mut check = Command::new("sha256sum");
    check.arg("-c").arg(&sums).current_dir(built());
    output(check);

    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "skiff-{}: {size} bytes ({:.1} MB), needs {needed:?}",
        arch.name,
        size as f64 / 1e6
    );
}

#[test]
fn arm64_binary_is_stripped_needs_only_glibc_and_is_checksummed() {
    assert_shippable(&ARM64);
}

#[test]
fn armhf_binary_is_stripped_needs_only_glibc_and_is_checksummed() {
    assert_shippable(&ARMHF);
}

/// A `skiff server --disable-agent` run by the arm64 binary under qemu, on a free
/// loopback port with its own data dir; stopped by PID when dropped.
struct EmulatedServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl EmulatedServer {
    fn start(arch: &Arch) -> EmulatedServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("config.yaml"), "").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port")
            .to_string();
        let data = dir.path().join("data");
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let config = dir.path().join("config.yaml");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = emulated(
            arch,
            &[
                "server",
                "--disable-agent",
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                &port,
                "--data-dir",
                data.to_str().unwrap(),
                "--write-kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
        )
        .env("SKIFF_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the emulated skiff server");
        EmulatedServer { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig.yaml"))
            .env("HOME", self.dir.path().join("home"))
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl (emulation is slow: a long request timeout) and returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let mut all = vec!["--request-timeout=120s"];
        all.extend_from_slice(args);
        let (ok, stdout, stderr) = self.kubectl(&all);
        assert!(
            ok,
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}\nserver log:\n{}",
            tail(&self.log(), 40)
        );
        stdout
    }

    /// Waits for `/readyz`; emulation makes start-up far slower than native.
    fn wait_ready(&mut self, timeout: Duration) {
        let ready = eventually(timeout, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "emulated skiff server exited with {status}:\n{}",
                    self.log()
                );
            }
            self.kubectl(&["--request-timeout=20s", "get", "--raw", "/readyz"])
                .0
        });
        assert!(
            ready,
            "emulated skiff server not ready after {timeout:?}:\n{}",
            self.log()
        );
    }
}

impl Drop for EmulatedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn arm64_server_serves_kubectl_under_qemu() {
    let mut server = EmulatedServer::start(&ARM64);
    let start = Instant::now();
    server.wait_ready(Duration::from_secs(300));
    eprintln!(
        "arm64 server under qemu: /readyz after {:.1} s",
        start.elapsed().as_secs_f64()
    );

    assert_eq!(server.ok(&["get", "--raw", "/readyz"]).trim(), "ok");
    server.ok(&["create", "namespace", "from-arm64"]);
    let namespaces = server.ok(&["get", "ns", "-o", "name"]);
    for ns in ["namespace/default", "namespace/from-arm64"] {
        assert!(
            namespaces.lines().any(|l| l == ns),
            "{ns} missing from:\n{namespaces}"
        );
    }
    let version = server.ok(&["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(
        version["serverVersion"]["platform"], "linux/arm64",
        "the server is the arm64 build: {version}"
    );
}
