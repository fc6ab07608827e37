//! End-to-end tests of `install.sh` (issue 14): the installer runs for real, as root,
//! and downloads the built skiff over HTTP, but inside namespaces the test makes, so it
//! touches nothing on the machine:
//!
//! - a private mount namespace in which `/usr/local/bin`, `/etc/systemd/system`,
//!   `/etc/skiff` and `/var/lib/skiff` are empty tmpfs mounts (`/etc` and `/var/lib`
//!   get a tmpfs-backed overlay first, so `/etc/skiff` and `/var/lib/skiff` can be
//!   made there without creating them on the host);
//! - a new network namespace, where the "release server" (`python3 -m http.server`
//!   serving `skiff-<arch>` — the built binary — and a real `sha256sum-<arch>.txt`)
//!   listens on 127.0.0.1, and where `skiff network cleanup` (run by the killall
//!   script) finds only links this test made;
//! - a new PID namespace, so the killall script sees only processes started here
//!   (it must never see another test's or the machine's skiff).
//!
//! `/run` is a tmpfs there too. systemd can't run here (PID 1 is not systemd), so the
//! tests of the systemd branch (enable, restart only when something changed) make an
//! empty `/run/systemd/system`, which is how the installer (as k3s's) tells that systemd
//! runs, and put a recording `systemctl` stand-in first on PATH. The units themselves
//! are checked with the real `systemd-analyze verify`.
//!
//! Each scenario is one shell script run in those namespaces; what the assertions need
//! (small files, modes, command output) is copied to a directory of the host's
//! temporary space that the script gets as `$OUT`.
//!
//! Needs root, `unshare`, `curl`, `python3`, `systemd-analyze` and `shellcheck`; the
//! killall test also `kubectl`, busybox-static, `ip` and `nft` (scripts/test.sh
//! installs them all). No test needs the e2e lock: nothing is made in the host's
//! network namespace, and the only host state (the killall test's container cgroups)
//! is under a cgroup root named for the test process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");
/// Where the release server listens inside the scenario's network namespace.
const RELEASE_URL: &str = "http://127.0.0.1:8080";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The installer's name for this machine's architecture.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        other => panic!("no release architecture for {other}"),
    }
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

/// One scenario's directories on the host: the release to serve and `$OUT`.
struct Scenario {
    dir: tempfile::TempDir,
}

/// What a scenario's script left.
struct Outcome {
    output: Output,
    out: PathBuf,
}

impl Scenario {
    /// A release of the built binary, with a correct checksum file unless `bad_sum`.
    fn new(bad_sum: bool) -> Scenario {
        let dir = tempfile::tempdir().expect("tempdir");
        let release = dir.path().join("release");
        std::fs::create_dir_all(&release).expect("mkdir release");
        std::fs::create_dir_all(dir.path().join("out")).expect("mkdir out");
        std::fs::create_dir_all(dir.path().join("scratch")).expect("mkdir scratch");
        let binary = format!("skiff-{}", arch());
        std::os::unix::fs::symlink(SKIFF, release.join(&binary)).expect("link the binary");
        std::os::unix::fs::symlink(repo().join("install.sh"), release.join("install.sh"))
            .expect("link install.sh");
        let hash = if bad_sum {
            "0".repeat(64)
        } else {
            sha256(Path::new(SKIFF))
        };
        std::fs::write(
            release.join(format!("sha256sum-{}.txt", arch())),
            format!("{hash}  {binary}\n"),
        )
        .expect("write the checksum file");
        Scenario { dir }
    }

    /// Runs `script` in fresh mount, network and PID namespaces prepared as the module
    /// doc says; `systemd`: with the `/run/systemd/system` marker and the recording
    /// `systemctl` (its calls go to `$OUT/systemctl.log`).
    fn run(&self, script: &str, systemd: bool) -> Outcome {
        let root = self.dir.path();
        let prelude = format!(
            r#"set -e
export INSTALL_SH='{install}' REPO='{repo}' BUILT_SKIFF='{skiff}' OUT='{out}' RELEASE_URL='{url}'
export RELEASE_DIR='{release}'
scratch='{scratch}'
mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/etc-up" "$scratch/etc-work" "$scratch/lib-up" "$scratch/lib-work" "$scratch/bin" "$scratch/tmp"
export TMPDIR="$scratch/tmp"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/etc-up,workdir=$scratch/etc-work" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$scratch/lib-up,workdir=$scratch/lib-work" /var/lib
mkdir -p /etc/skiff /var/lib/skiff
for dir in /usr/local/bin /etc/systemd/system /etc/skiff /var/lib/skiff; do
    mount -t tmpfs -o mode=0755 tmpfs "$dir"
done
mount -t tmpfs -o mode=0755 tmpfs /run
ip link set lo up
(cd "$RELEASE_DIR" && exec python3 -m http.server 8080 --bind 127.0.0.1 >"$OUT/http.log" 2>&1) &
tries=0
until curl -sf -o /dev/null "$RELEASE_URL/"; do
    tries=$((tries + 1)); [ $tries -lt 100 ] || {{ echo "the release server did not start" >&2; exit 1; }}
    sleep 0.1
done
if {systemd}; then
    mkdir -p /run/systemd/system
    printf '#!/bin/sh\necho "$*" >> "$OUT/systemctl.log"\n' > "$scratch/bin/systemctl"
    chmod +x "$scratch/bin/systemctl"
    export PATH="$scratch/bin:$PATH"
fi
# Copies what the assertions read: small files and their modes, under $OUT/<tag>.
snapshot() {{
    mkdir -p "$OUT/$1"
    for dir in /usr/local/bin /etc/systemd/system /etc/skiff /var/lib/skiff; do
        find "$dir" -mindepth 1 -printf '%p %m\n' >> "$OUT/$1/listing"
        find "$dir" -mindepth 1 -maxdepth 1 -type f -size -1000k -exec cp {{}} "$OUT/$1/" \;
    done
    touch "$OUT/$1/listing"
}}
"#,
            install = repo().join("install.sh").display(),
            repo = repo().display(),
            skiff = SKIFF,
            out = root.join("out").display(),
            url = RELEASE_URL,
            scratch = root.join("scratch").display(),
            release = root.join("release").display(),
        );
        let mut command = Command::new("unshare");
        // The installer writes every SKIFF_* variable into the env file: only the
        // scripts' own may be there.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("SKIFF_") || name.starts_with("INSTALL_SKIFF_") {
                command.env_remove(name.as_ref());
            }
        }
        let output = command
            .args([
                "--mount",
                "--propagation",
                "private",
                "--net",
                "--pid",
                "--fork",
                "--mount-proc",
                "sh",
                "-c",
            ])
            .arg(format!("{prelude}\n{script}"))
            .output()
            .expect("running unshare");
        Outcome {
            output,
            out: root.join("out"),
        }
    }
}

impl Outcome {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn assert_success(&self) -> &Self {
        assert!(
            self.output.status.success(),
            "scenario failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self
    }

    fn file(&self, rel: &str) -> String {
        let path = self.out.join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// `path mode` lines of a snapshot's listing.
    fn listing(&self, tag: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .file(&format!("{tag}/listing"))
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }
}

fn canonical_unit(name: &str) -> String {
    let path = repo().join("systemd").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `unit` with its ExecStart line replaced by `exec_start`.
fn with_exec_start(unit: &str, exec_start: &str) -> String {
    let lines: Vec<&str> = unit
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                exec_start
            } else {
                line
            }
        })
        .collect();
    format!("{}\n", lines.join("\n"))
}

fn env_lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
#[ignore = "needs root"]
fn server_install_writes_the_binary_unit_env_file_and_scripts_and_uninstalls() {
    let scenario = Scenario::new(false);
    let outcome = scenario.run(
        r#"
export SKIFF_TOKEN=s3cret
export INSTALL_SKIFF_BINARY_URL="$RELEASE_URL"
# As users run it: piped from the release server, flags after `sh -s -`.
curl -sfL "$RELEASE_URL/install.sh" | sh -s - --tls-san skiff.example --cgroup-root /skiff-install-test \
    > "$OUT/first.log" 2>&1
sha256sum /usr/local/bin/skiff | cut -d' ' -f1 > "$OUT/installed.sha256"
systemd-analyze verify /etc/systemd/system/skiff.service > "$OUT/verify.log" 2>&1 || true
shellcheck -s sh /usr/local/bin/skiff-killall.sh /usr/local/bin/skiff-uninstall.sh > "$OUT/shellcheck.log" 2>&1 || true
snapshot installed
sh "$INSTALL_SH" --tls-san skiff.example --cgroup-root /skiff-install-test > "$OUT/second.log" 2>&1
# Data and configuration the uninstall must remove too.
mkdir -p /var/lib/skiff/server && echo token > /var/lib/skiff/server/token
echo 'node-name: n1' > /etc/skiff/config.yaml
/usr/local/bin/skiff-uninstall.sh > "$OUT/uninstall.log" 2>&1
snapshot uninstalled
"#,
        false,
    );
    outcome.assert_success();

    assert_eq!(
        outcome.file("installed.sha256").trim(),
        sha256(Path::new(SKIFF)),
        "the installed binary is the downloaded one"
    );
    let unit = outcome.file("installed/skiff.service");
    assert_eq!(
        unit,
        with_exec_start(
            &canonical_unit("skiff.service"),
            r#"ExecStart=/usr/local/bin/skiff server "--tls-san" "skiff.example" "--cgroup-root" "/skiff-install-test""#
        ),
        "the written unit is systemd/skiff.service with the flags on ExecStart"
    );
    assert_eq!(outcome.file("verify.log"), "", "systemd-analyze verify");
    assert_eq!(
        outcome.file("shellcheck.log"),
        "",
        "shellcheck of the written scripts"
    );
    assert_eq!(
        env_lines(&outcome.file("installed/skiff.service.env")),
        ["SKIFF_TOKEN=s3cret"]
    );
    assert_eq!(
        outcome.listing("installed"),
        [
            "/etc/systemd/system/skiff.service 644",
            "/etc/systemd/system/skiff.service.env 600",
            "/usr/local/bin/skiff 755",
            "/usr/local/bin/skiff-killall.sh 755",
            "/usr/local/bin/skiff-uninstall.sh 755",
        ]
    );

    let first = outcome.file("first.log");
    assert!(first.contains("installing /usr/local/bin/skiff"), "{first}");
    assert!(first.contains("systemd is not running"), "{first}");
    assert!(!first.contains("no change"), "{first}");
    let second = outcome.file("second.log");
    assert!(second.contains("is already this release"), "{second}");
    assert!(
        second.contains("no change to /usr/local/bin/skiff"),
        "the same inputs again change nothing: {second}"
    );

    assert_eq!(
        outcome.listing("uninstalled"),
        Vec::<String>::new(),
        "the uninstall removes everything: {}",
        outcome.file("uninstall.log")
    );
}

#[test]
#[ignore = "needs root"]
fn a_bad_checksum_fails_and_installs_nothing() {
    let scenario = Scenario::new(true);
    let outcome = scenario.run(
        r#"
status=0
INSTALL_SKIFF_BINARY_URL="$RELEASE_URL" sh "$INSTALL_SH" > "$OUT/install.log" 2>&1 || status=$?
echo "$status" > "$OUT/status"
snapshot after
"#,
        false,
    );
    outcome.assert_success();
    assert_ne!(outcome.file("status").trim(), "0", "the install must fail");
    assert!(
        outcome.file("install.log").contains("checksum mismatch"),
        "{}",
        outcome.file("install.log")
    );
    assert_eq!(outcome.listing("after"), Vec::<String>::new());
}

#[test]
#[ignore = "needs root"]
fn an_agent_install_writes_the_agent_unit_and_its_env_file_and_uninstalls() {
    let cgroup_root = format!("/skiff-install-agent-{}", std::process::id());
    let scenario = Scenario::new(false);
    let outcome = scenario.run(
        &r#"
status=0
SKIFF_URL=https://192.0.2.1:6443 sh "$INSTALL_SH" > "$OUT/no-token.log" 2>&1 || status=$?
echo "$status" > "$OUT/no-token.status"
snapshot no-token
export INSTALL_SKIFF_BINARY_URL="$RELEASE_URL"
SKIFF_URL=https://192.0.2.1:6443 SKIFF_TOKEN=K10abc::server:xyz sh "$INSTALL_SH" > "$OUT/install.log" 2>&1
systemd-analyze verify /etc/systemd/system/skiff-agent.service > "$OUT/verify.log" 2>&1 || true
shellcheck -s sh /usr/local/bin/skiff-agent-uninstall.sh > "$OUT/shellcheck.log" 2>&1 || true
snapshot installed
# The killall run by the uninstall takes the node's cgroup root from config.yaml: an
# empty cgroup left there (in the first mounted hierarchy) is removed.
echo 'cgroup-root: "@CGROUP_ROOT@"  # this test'"'"'s' > /etc/skiff/config.yaml
hierarchy=$(awk '/ - cgroup2? / {print $5; exit}' /proc/self/mountinfo)
mkdir -p "$hierarchy@CGROUP_ROOT@/leftover"
/usr/local/bin/skiff-agent-uninstall.sh > "$OUT/uninstall.log" 2>&1
if [ -e "$hierarchy@CGROUP_ROOT@" ]; then echo present; else echo removed; fi > "$OUT/cgroup"
snapshot uninstalled
"#
        .replace("@CGROUP_ROOT@", &cgroup_root),
        false,
    );
    remove_cgroups(&cgroup_root);
    outcome.assert_success();
    assert_ne!(outcome.file("no-token.status").trim(), "0");
    assert!(outcome
        .file("no-token.log")
        .contains("an agent needs SKIFF_TOKEN or SKIFF_TOKEN_FILE"));
    assert_eq!(outcome.listing("no-token"), Vec::<String>::new());

    assert_eq!(
        outcome.file("installed/skiff-agent.service"),
        canonical_unit("skiff-agent.service"),
        "the written unit is systemd/skiff-agent.service, byte for byte"
    );
    assert_eq!(outcome.file("verify.log"), "", "systemd-analyze verify");
    assert_eq!(outcome.file("shellcheck.log"), "", "shellcheck");
    assert_eq!(
        env_lines(&outcome.file("installed/skiff-agent.service.env")),
        [
            "SKIFF_TOKEN=K10abc::server:xyz",
            "SKIFF_URL=https://192.0.2.1:6443"
        ]
    );
    assert_eq!(
        outcome.listing("installed"),
        [
            "/etc/systemd/system/skiff-agent.service 644",
            "/etc/systemd/system/skiff-agent.service.env 600",
            "/usr/local/bin/skiff 755",
            "/usr/local/bin/skiff-agent-uninstall.sh 755",
            "/usr/local/bin/skiff-killall.sh 755",
        ]
    );
    assert_eq!(
        outcome.file("cgroup"),
        "removed\n",
        "{}",
        outcome.file("uninstall.log")
    );
    assert_eq!(outcome.listing("uninstalled"), Vec::<String>::new());
}

#[test]
#[ignore = "needs root"]
fn skip_download_uses_the_binary_in_place_and_the_canonical_units_verify() {
    let scenario = Scenario::new(false);
    let outcome = scenario.run(
        r#"
cp "$BUILT_SKIFF" /usr/local/bin/skiff
sha256sum /usr/local/bin/skiff | cut -d' ' -f1 > "$OUT/before.sha256"
# Nothing listens there: a download would fail.
INSTALL_SKIFF_SKIP_DOWNLOAD=true INSTALL_SKIFF_BINARY_URL=http://127.0.0.1:1 \
    sh "$INSTALL_SH" > "$OUT/install.log" 2>&1
sha256sum /usr/local/bin/skiff | cut -d' ' -f1 > "$OUT/after.sha256"
systemd-analyze verify "$REPO/systemd/skiff.service" "$REPO/systemd/skiff-agent.service" \
    > "$OUT/verify.log" 2>&1 || true
snapshot installed
# INSTALL_SKIFF_EXEC's words come first, then the arguments after `sh -s -`.
INSTALL_SKIFF_SKIP_DOWNLOAD=true INSTALL_SKIFF_EXEC='server --node-label edge=yes' \
    sh -s - --tls-san z < "$INSTALL_SH" > "$OUT/exec.log" 2>&1
grep '^ExecStart=' /etc/systemd/system/skiff.service > "$OUT/exec-start"
"#,
        false,
    );
    outcome.assert_success();
    let log = outcome.file("install.log");
    assert!(log.contains("using /usr/local/bin/skiff in place"), "{log}");
    assert!(!log.contains("downloading"), "{log}");
    assert_eq!(outcome.file("before.sha256"), outcome.file("after.sha256"));
    assert_eq!(
        outcome.file("installed/skiff.service"),
        canonical_unit("skiff.service"),
        "the written unit is systemd/skiff.service, byte for byte"
    );
    assert_eq!(
        outcome.file("verify.log"),
        "",
        "systemd-analyze verify of systemd/*.service"
    );
    assert_eq!(
        outcome.file("exec-start"),
        "ExecStart=/usr/local/bin/skiff server \"--node-label\" \"edge=yes\" \"--tls-san\" \"z\"\n"
    );
}

/// The air-gap path through the real installer: airgap/install-bundle.sh from a bundle
/// laid out as airgap/make-bundle.sh writes it (tests/airgap.rs makes one from a real
/// registry and checks the node imports its archive; here the archive is only carried).
#[test]
#[ignore = "needs root"]
fn an_air_gap_bundle_installs_through_the_real_installer_without_a_download() {
    let scenario = Scenario::new(false);
    let outcome = scenario.run(
        &format!(
            r#"
bundle="$scratch/bundle"
mkdir -p "$bundle/images"
cp "$BUILT_SKIFF" "$bundle/skiff"
cp "$INSTALL_SH" "$bundle/install.sh"
cp "$REPO/airgap/install-bundle.sh" "$bundle/install-bundle.sh"
echo 'carried, not read, by the installer' > "$bundle/images/images.tar.zst"
echo {arch} > "$bundle/arch"
(cd "$bundle" && sha256sum arch images/images.tar.zst install-bundle.sh install.sh skiff > sha256sums)
# Nothing listens there: a download would fail.
INSTALL_SKIFF_BINARY_URL=http://127.0.0.1:1 sh "$bundle/install-bundle.sh" --tls-san edge-1     > "$OUT/install.log" 2>&1
sha256sum /usr/local/bin/skiff | cut -d' ' -f1 > "$OUT/installed.sha256"
grep '^ExecStart=' /etc/systemd/system/skiff.service > "$OUT/exec-start"
snapshot installed
"#,
            arch = arch()
        ),
        false,
    );
    outcome.assert_success();
    let log = outcome.file("install.log");
    assert!(log.contains("using /usr/local/bin/skiff in place"), "{log}");
    assert!(!log.contains("downloading"), "{log}");
    assert_eq!(
        outcome.file("installed.sha256").trim(),
        sha256(Path::new(SKIFF))
    );
    assert_eq!(
        outcome.file("exec-start"),
        "ExecStart=/usr/local/bin/skiff server \"--tls-san\" \"edge-1\"\n"
    );
    let listing = outcome.listing("installed");
    for path in [
        "/etc/systemd/system/skiff.service 644",
        "/usr/local/bin/skiff 755",
        "/usr/local/bin/skiff-killall.sh 755",
        "/var/lib/skiff/agent/images/images.tar.zst 644",
    ] {
        assert!(listing.iter().any(|l| l == path), "{path} in {listing:?}");
    }
}

#[test]
#[ignore = "needs root"]
fn under_systemd_it_enables_and_restarts_only_when_something_changed() {
    let scenario = Scenario::new(false);
    let outcome = scenario.run(
        r#"
export INSTALL_SKIFF_BINARY_URL="$RELEASE_URL"
sh "$INSTALL_SH" > "$OUT/first.log" 2>&1
echo --- >> "$OUT/systemctl.log"
sh "$INSTALL_SH" > "$OUT/same.log" 2>&1
echo --- >> "$OUT/systemctl.log"
sh "$INSTALL_SH" --node-label edge=true > "$OUT/changed-flags.log" 2>&1
echo --- >> "$OUT/systemctl.log"
SKIFF_LOG=info sh "$INSTALL_SH" --node-label edge=true > "$OUT/changed-env.log" 2>&1
echo --- >> "$OUT/systemctl.log"
INSTALL_SKIFF_SKIP_ENABLE=true INSTALL_SKIFF_SKIP_START=true sh "$INSTALL_SH" > "$OUT/skip.log" 2>&1
echo --- >> "$OUT/systemctl.log"

# A new release (the same binary with a byte more: another checksum) while the old
# binary runs: it is replaced by rename (no "text file busy"), and skiff restarts.
: > "$scratch/empty.yaml"
/usr/local/bin/skiff server --disable-agent --config "$scratch/empty.yaml" --data-dir "$scratch/old" \
    --bind-address 127.0.0.1 --https-listen-port 7443 --write-kubeconfig "$scratch/old.yaml" \
    > "$OUT/old.log" 2>&1 &
old=$!
mkdir "$scratch/new"
arch=$(ls "$RELEASE_DIR" | sed -n 's/^skiff-//p')
cp "$BUILT_SKIFF" "$scratch/new/skiff-$arch"
printf '\n' >> "$scratch/new/skiff-$arch"
(cd "$scratch/new" && sha256sum "skiff-$arch" > "sha256sum-$arch.txt")
(cd "$scratch/new" && exec python3 -m http.server 8081 --bind 127.0.0.1 > "$OUT/http-new.log" 2>&1) &
tries=0
until curl -sf -o /dev/null "http://127.0.0.1:8081/sha256sum-$arch.txt"; do
    tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "the new release server did not start" >&2; exit 1; }
    sleep 0.1
done
INSTALL_SKIFF_BINARY_URL=http://127.0.0.1:8081 sh "$INSTALL_SH" > "$OUT/upgrade.log" 2>&1
cut -d' ' -f1 "$scratch/new/sha256sum-$arch.txt" > "$OUT/new.sha256"
sha256sum /usr/local/bin/skiff | cut -d' ' -f1 > "$OUT/installed.sha256"
readlink "/proc/$old/exe" > "$OUT/old-exe"
kill "$old"
"#,
        true,
    );
    outcome.assert_success();
    let calls = outcome.file("systemctl.log");
    let runs: Vec<Vec<&str>> = calls
        .split("---\n")
        .map(|run| run.lines().collect())
        .collect();
    assert_eq!(
        runs,
        [
            vec![
                "daemon-reload",
                "enable skiff.service",
                "restart skiff.service"
            ],
            vec![
                "daemon-reload",
                "enable skiff.service",
                "start skiff.service"
            ],
            vec![
                "daemon-reload",
                "enable skiff.service",
                "restart skiff.service"
            ],
            vec![
                "daemon-reload",
                "enable skiff.service",
                "restart skiff.service"
            ],
            // The unit changed back (no flags): written, but neither enabled nor started.
            vec!["daemon-reload"],
            // The upgrade.
            vec![
                "daemon-reload",
                "enable skiff.service",
                "restart skiff.service"
            ],
        ],
        "systemctl calls per run"
    );
    let upgrade = outcome.file("upgrade.log");
    assert!(
        upgrade.contains("installing /usr/local/bin/skiff"),
        "{upgrade}"
    );
    assert_eq!(outcome.file("installed.sha256"), outcome.file("new.sha256"));
    assert_eq!(
        outcome.file("old-exe").trim(),
        "/usr/local/bin/skiff (deleted)",
        "the running skiff keeps the old file"
    );
    let same = outcome.file("same.log");
    assert!(same.contains("skiff unchanged, not restarting"), "{same}");
    assert!(outcome
        .file("first.log")
        .contains("restarting skiff.service"));
    assert!(outcome
        .file("skip.log")
        .contains("INSTALL_SKIFF_SKIP_START=true"));
}

/// The installed server, started as its unit would start it, with a pod running, in
/// the scenario's own namespaces; a bystander skiff (the built binary at its own path,
/// an API-only server with its own data dir) runs beside it. The killall script must
/// stop the server, the pod's container and its shim, unmount the pod's mounts,
/// remove the bridge, the sink link and skiff's nftables tables, keep the data, and
/// leave the bystander running. The containers' cgroups are the only thing made
/// outside the namespaces: under a cgroup root named for this test, removed by the
/// killall (and by the test if it fails before).
#[test]
#[ignore = "needs root"]
fn killall_stops_the_installed_skiff_and_its_containers_and_keeps_the_data() {
    let cgroup_root = format!("/skiff-install-killall-{}", std::process::id());
    let scenario = Scenario::new(false);
    let script = r#"
CG=@CGROUP_ROOT@
kc() { kubectl --kubeconfig /etc/skiff/skiff.yaml "$@"; }
export INSTALL_SKIFF_BINARY_URL="$RELEASE_URL"
sh "$INSTALL_SH" --cgroup-root "$CG" --cni-bridge skt0 --advertise-address 127.0.0.1 \
    --private-registry /etc/skiff/registries.yaml --disable-default-registry-endpoint \
    > "$OUT/install.log" 2>&1

# A busybox image in the node's air-gap directory; docker.io points nowhere.
img="$scratch/img"
mkdir -p "$img/rootfs/bin" "$img/image" /var/lib/skiff/agent/images
cp /bin/busybox "$img/rootfs/bin/busybox"
for applet in sh sleep; do ln -s busybox "$img/rootfs/bin/$applet"; done
tar --owner=0 --group=0 --numeric-owner -C "$img/rootfs" -cf "$img/image/layer.tar" .
diff_id=$(sha256sum "$img/image/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"%s","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(dpkg --print-architecture 2>/dev/null || echo amd64)" "$diff_id" > "$img/image/config.json"
echo '[{"Config":"config.json","RepoTags":["killall:1"],"Layers":["layer.tar"]}]' > "$img/image/manifest.json"
tar -C "$img/image" -cf /var/lib/skiff/agent/images/killall.tar manifest.json config.json layer.tar
printf 'mirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:9"]\n' > /etc/skiff/registries.yaml

# The bystander: another skiff, the built binary, its own data dir and port.
: > "$scratch/bystander.yaml"
"$BUILT_SKIFF" server --disable-agent --config "$scratch/bystander.yaml" \
    --data-dir "$scratch/bystander" --bind-address 127.0.0.1 --https-listen-port 7443 \
    --write-kubeconfig "$scratch/bystander.kubeconfig" > "$OUT/bystander.log" 2>&1 &
bystander=$!

# The installed server, with the unit's command line and environment.
exec_start=$(sed -n 's/^ExecStart=//p' /etc/systemd/system/skiff.service)
(set -a; . /etc/systemd/system/skiff.service.env; set +a; eval "exec $exec_start") \
    > "$OUT/server.log" 2>&1 &
tries=0
until kc get --raw /readyz > /dev/null 2>&1; do
    tries=$((tries + 1)); [ $tries -lt 300 ] || { echo "the server did not come up" >&2; exit 1; }
    sleep 0.2
done
kc apply -f - > /dev/null <<'POD'
apiVersion: v1
kind: Pod
metadata: {name: victim}
spec:
  containers:
  - {name: c, image: "killall:1", imagePullPolicy: Never, command: ["sleep", "1000000"]}
POD
if ! kc wait --for=condition=Ready pod/victim --timeout=180s > /dev/null; then
    kc describe pod victim >&2 || true
    tail -n 40 "$OUT/server.log" >&2
    exit 1
fi

# What skiff's processes, the pod's container, mounts, links and tables are now.
state() {
    mkdir -p "$OUT/$1"
    for dir in /proc/[0-9]*; do
        exe=$(readlink "$dir/exe" 2>/dev/null) || continue
        echo "${dir#/proc/} $exe $(tr '\0' ' ' < "$dir/cmdline")"
    done > "$OUT/$1/processes"
    find /sys/fs/cgroup -path "*$CG/*" -name cgroup.procs -exec cat {} + > "$OUT/$1/container-pids" 2>/dev/null || true
    find /sys/fs/cgroup -maxdepth 3 -type d -path "*$CG" > "$OUT/$1/cgroups" 2>/dev/null || true
    awk '{print $5}' /proc/self/mountinfo | grep '^/var/lib/skiff/' > "$OUT/$1/mounts" || true
    ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 > "$OUT/$1/links"
    nft list tables > "$OUT/$1/tables"
    find /var/lib/skiff -maxdepth 2 > "$OUT/$1/data"
}
state before
status=0
/usr/local/bin/skiff-killall.sh > "$OUT/killall.log" 2>&1 || status=$?
echo "$status" > "$OUT/killall.status"
state after
kill -0 "$bystander" && echo alive > "$OUT/bystander.status"
kill "$bystander"
"#
    .replace("@CGROUP_ROOT@", &cgroup_root);
    let outcome = scenario.run(&script, false);
    remove_cgroups(&cgroup_root);
    outcome.assert_success();
    let lines =
        |path: &str| -> Vec<String> { outcome.file(path).lines().map(str::to_string).collect() };

    let skiff_processes = |tag: &str| -> Vec<String> {
        lines(&format!("{tag}/processes"))
            .into_iter()
            .filter(|l| l.split(' ').nth(1) == Some("/usr/local/bin/skiff"))
            .collect()
    };
    let before = skiff_processes("before");
    assert!(
        before.iter().any(|p| p.contains(" server "))
            && before.iter().any(|p| p.contains(" shim ")),
        "the installed server and a container shim ran: {before:#?}"
    );
    assert!(
        !lines("before/container-pids").is_empty(),
        "the pod's container ran"
    );
    assert!(!lines("before/cgroups").is_empty());
    assert!(!lines("before/mounts").is_empty(), "the pod's mounts");
    let links_before = lines("before/links");
    assert!(
        links_before.iter().any(|l| l == "skt0") && links_before.iter().any(|l| l == "skt0-sink"),
        "{links_before:?}"
    );
    assert!(outcome.file("before/tables").contains("skiff-skt0"));

    assert_eq!(
        outcome.file("killall.status").trim(),
        "0",
        "{}",
        outcome.file("killall.log")
    );
    assert_eq!(skiff_processes("after"), Vec::<String>::new());
    assert_eq!(lines("after/container-pids"), Vec::<String>::new());
    assert_eq!(
        lines("after/cgroups"),
        Vec::<String>::new(),
        "cgroups removed"
    );
    assert_eq!(
        lines("after/mounts"),
        Vec::<String>::new(),
        "mounts removed"
    );
    let links_after = lines("after/links");
    assert!(
        !links_after
            .iter()
            .any(|l| l.starts_with("skt0") || l.starts_with("veth") || l == "flannel.1"),
        "skiff's links removed: {links_after:?}"
    );
    assert!(
        !outcome.file("after/tables").contains("skiff-"),
        "skiff's nftables tables removed: {}",
        outcome.file("after/tables")
    );
    assert_eq!(
        outcome.file("before/data"),
        outcome.file("after/data"),
        "the data is kept"
    );
    assert!(outcome.file("after/data").contains("/var/lib/skiff/server"));
    assert_eq!(
        outcome.file("bystander.status").trim(),
        "alive",
        "the bystander skiff runs on"
    );
    assert!(
        lines("after/processes")
            .iter()
            .any(|l| l.split(' ').nth(1) == Some(SKIFF)),
        "the bystander's process is still there"
    );
}

/// Removes the (empty) cgroups a failed killall scenario left under `root`.
fn remove_cgroups(root: &str) {
    let Ok(found) = Command::new("find")
        .args(["/sys/fs/cgroup", "-maxdepth", "3", "-type", "d", "-path"])
        .arg(format!("*{root}"))
        .output()
    else {
        return;
    };
    for dir in String::from_utf8_lossy(&found.stdout).lines() {
        let _ = Command::new("find")
            .args([dir, "-depth", "-type", "d", "-exec", "rmdir", "{}", "+"])
            .status();
    }
}

/// On OpenRC (no systemd, `/sbin/openrc-run` present) the installer writes an
/// init script running the same command line and starts it with `rc-service`. OpenRC
/// can't run here either: `/usr/sbin` gets an overlay holding an `openrc-run`
/// stand-in, and recording `rc-update` and `rc-service` stand-ins come first on PATH.
#[test]
#[ignore = "needs root"]
fn on_openrc_it_writes_an_init_script_with_the_same_command_line() {
    let scenario = Scenario::new(false);
    let outcome = scenario.run(
        r#"
mkdir "$scratch/sbin-up" "$scratch/sbin-work"
mount -t overlay overlay -o "lowerdir=/usr/sbin,upperdir=$scratch/sbin-up,workdir=$scratch/sbin-work" /usr/sbin
printf '#!/bin/sh\nexit 0\n' > /sbin/openrc-run
chmod +x /sbin/openrc-run
for tool in rc-update rc-service; do
    printf '#!/bin/sh\necho "%s $*" >> "$OUT/openrc.log"\n' "$tool" > "$scratch/bin/$tool"
    chmod +x "$scratch/bin/$tool"
done
export PATH="$scratch/bin:$PATH"
export INSTALL_SKIFF_BINARY_URL="$RELEASE_URL"
SKIFF_TOKEN=t0ken sh "$INSTALL_SH" --tls-san 'a b' --node-label "x=it's" > "$OUT/first.log" 2>&1
SKIFF_TOKEN=t0ken sh "$INSTALL_SH" --tls-san 'a b' --node-label "x=it's" > "$OUT/second.log" 2>&1
# What OpenRC would run: the script's command and arguments, and its environment.
(. /etc/init.d/skiff; eval "set -- $command_args"; echo "$command"; printf '%s\n' "$@"; echo "$SKIFF_TOKEN") \
    > "$OUT/command"
snapshot installed
"#,
        false,
    );
    outcome.assert_success();
    assert_eq!(
        outcome.file("openrc.log"),
        "rc-update add skiff default\nrc-service skiff restart\n\
         rc-update add skiff default\nrc-service skiff start\n"
    );
    assert_eq!(
        outcome.file("command"),
        "/usr/local/bin/skiff\nserver\n--tls-san\na b\n--node-label\nx=it's\nt0ken\n"
    );
    assert!(outcome
        .listing("installed")
        .contains(&"/etc/systemd/system/skiff.service 644".to_string()));
}

/// Where `/usr/local/bin` is read-only, everything goes to `/opt/bin`, and the unit
/// and scripts name it.
#[test]
#[ignore = "needs root"]
fn a_read_only_usr_local_bin_installs_into_opt_bin() {
    let scenario = Scenario::new(false);
    let outcome = scenario.run(
        r#"
mount -o remount,ro /usr/local/bin
mount -t tmpfs -o mode=0755 tmpfs /opt
INSTALL_SKIFF_BINARY_URL="$RELEASE_URL" sh "$INSTALL_SH" > "$OUT/install.log" 2>&1
find /opt -mindepth 1 -printf '%p %m\n' | sort > "$OUT/opt"
grep -h '/opt/bin' /etc/systemd/system/skiff.service /opt/bin/skiff-uninstall.sh > "$OUT/mentions"
snapshot installed
"#,
        false,
    );
    outcome.assert_success();
    assert_eq!(
        outcome.file("opt"),
        "/opt/bin 755\n/opt/bin/skiff 755\n/opt/bin/skiff-killall.sh 755\n/opt/bin/skiff-uninstall.sh 755\n"
    );
    assert_eq!(
        outcome.file("mentions"),
        "ExecStart=/opt/bin/skiff server\nBIN_DIR='/opt/bin'\n"
    );
    assert!(outcome
        .file("install.log")
        .contains("/usr/local/bin is read-only"));
}
