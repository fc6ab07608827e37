//! Container runtime benchmark: `cargo bench --bench runtime`.
//!
//! One busybox rootfs, one container lifecycle per run: create → start → the
//! container's `/bin/true` exits → remove. Compared:
//!
//! - **skiff**: `skiff::runtime::Runtime` with the real `skiff` binary as its shim
//!   (`skiff shim …`, the path Cargo built for this bench, `CARGO_BIN_EXE_skiff`):
//!   `create` (bundle, shim, libcontainer create + start), waiting for the exit,
//!   `remove` (cgroups, bundle, state). Phases are timed too.
//! - **runc** and **crun**: `<tool> --root <tmp> run --bundle <bundle> <id>` (create,
//!   start, wait, delete in one command) on a `config.json` from `runc spec`, adjusted:
//!   absolute rootfs, `args ["/bin/true"]`, no terminal, rlimits not above this
//!   process's own, a `cgroupsPath`. A tool that is missing or fails its first run is
//!   reported as skipped with its error (crun refuses hybrid cgroup v1 hosts).
//! - **runc on skiff's config**: `runc run` on the very spec skiff's runtime writes
//!   for this container (`skiff::runtime::build_spec`: Kubernetes-style mounts,
//!   masked paths, capabilities), to tell the runtimes apart from their configs.
//!
//! `SKIFF_BENCH_RUNS` runs each (default 50), after 3 untimed warm-up runs, in rounds
//! (each runtime once per round) so that the load of a shared machine changing during
//! the run weighs on all of them alike. Prints a
//! Markdown table (nearest-rank percentiles) and writes it to
//! `<target-dir>/bench-runtime.md`. Needs root; without it, says so and exits 0.
//! Containers, cgroups (`/skiff-bench-<pid>/…`) and the temp dir are removed when
//! the bench ends, also on errors and panics.

use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use skiff::runtime::{
    build_spec, ContainerConfig, HostCgroups, HostFacts, HostProcesses, LogConfig, Runtime,
    ShimCommand,
};

const DEFAULT_RUNS: usize = 50;
const WARMUP_RUNS: usize = 3;
const BUSYBOX: &str = "/bin/busybox";
/// How often the bench looks for the end of skiff's shim.
const EXIT_POLL: Duration = Duration::from_micros(250);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        println!("runtime bench skipped: it needs root (containers, cgroups, mounts)");
        return Ok(());
    }
    if !Path::new(BUSYBOX).is_file() {
        println!("runtime bench skipped: {BUSYBOX} is missing (apt-get install busybox-static)");
        return Ok(());
    }
    let runs = runs_from_env()?;
    let load_before = load_average();
    let bench = Bench::prepare()?;
    eprintln!(
        "runtime bench: {runs} runs each, shim {}, work dir {}",
        skiff_binary().display(),
        bench.dir.path().display()
    );
    let phases = RefCell::new(Phases::default());
    let mut contenders = vec![skiff_contender(&bench, &phases)];
    for (tool, config) in [
        ("runc", OciConfig::RuncSpec),
        ("runc", OciConfig::Skiff),
        ("crun", OciConfig::RuncSpec),
    ] {
        contenders.push(oci_contender(&bench, tool, config));
    }
    run_round_robin(&mut contenders, runs);
    let mut rows: Vec<Row> = contenders.into_iter().map(Contender::into_row).collect();
    if rows[0].samples.is_ok() {
        rows.splice(1..1, phases.into_inner().rows());
    }
    let markdown = format!(
        "{}\nLoad average (1/5/15 min) at start: {load_before}; at end: {}.\n\n{}",
        machine(),
        load_average(),
        report(&rows, runs)
    );
    println!("\n{markdown}");
    let path = target_dir().join("bench-runtime.md");
    std::fs::write(&path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}

/// CPUs, CPU model, memory, kernel and the date, as one Markdown line.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .map_or("?".to_string(), |kb| format!("{:.1}", kb / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Machine: {cpus} CPUs ({model}), {mem_gib} GiB RAM, kernel {}; run at {} UTC.\n",
        kernel.trim(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M")
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

fn runs_from_env() -> Result<usize> {
    match std::env::var("SKIFF_BENCH_RUNS") {
        Ok(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("SKIFF_BENCH_RUNS={text:?}: want a positive number of runs"),
        },
        Err(_) => Ok(DEFAULT_RUNS),
    }
}

/// The skiff binary Cargo built for this bench.
fn skiff_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

/// `<target-dir>`, from the binary's `<target-dir>/<profile>/skiff`.
fn target_dir() -> PathBuf {
    let binary = skiff_binary();
    binary
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

// ---------------------------------------------------------------- set-up

/// The shared rootfs and bundle; removes every container and cgroup it knows of
/// when dropped.
struct Bench {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    /// Top of every cgroup the bench makes, e.g. `/skiff-bench-1234`.
    cgroup_parent: String,
    /// (tool, --root dir, container id) of OCI CLI containers that may exist.
    cli_containers: RefCell<Vec<(String, PathBuf, String)>>,
    skiff_runtime: RefCell<Option<Runtime>>,
}

impl Bench {
    fn prepare() -> Result<Bench> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-runtime-bench-")
            .tempdir()
            .context("creating the work dir")?;
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs)?;
        Ok(Bench {
            dir,
            rootfs,
            cgroup_parent: format!("/skiff-bench-{}", std::process::id()),
            cli_containers: Default::default(),
            skiff_runtime: Default::default(),
        })
    }

    fn cgroup(&self, name: &str) -> String {
        format!("{}/{name}", self.cgroup_parent)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for (tool, root, id) in self.cli_containers.borrow().iter() {
            let _ = Command::new(tool)
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(runtime) = self.skiff_runtime.borrow().as_ref() {
            for info in runtime.list().unwrap_or_default() {
                let _ = runtime.remove_blocking(&info.id);
            }
        }
        remove_cgroup_tree(&self.cgroup_parent);
    }
}

/// `/bin/busybox` and the few links a container of `/bin/true` needs.
fn busybox_rootfs(rootfs: &Path) -> Result<()> {
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir))
            .with_context(|| format!("creating {}", rootfs.join(dir).display()))?;
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
        .with_context(|| format!("copying {BUSYBOX}"))?;
    for applet in ["true", "sh"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .with_context(|| format!("linking /bin/{applet}"))?;
    }
    Ok(())
}

/// Removes `/sys/fs/cgroup/<each hierarchy>/<path>` and everything below it
/// (deepest first; cgroup directories only go with rmdir).
fn remove_cgroup_tree(path: &str) {
    let relative = path.trim_start_matches('/');
    let mut tops = vec![PathBuf::from("/sys/fs/cgroup").join(relative)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        tops.extend(entries.flatten().map(|e| e.path().join(relative)));
    }
    for top in tops {
        if !top.is_dir() {
            continue;
        }
        let mut dirs = vec![top.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                        .map(|e| e.path()),
                );
            }
            i += 1;
        }
        for dir in dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

// ---------------------------------------------------------------- measuring

/// One line of the table: a runtime and what each run took, or why it was skipped.
struct Row {
    name: String,
    samples: Result<Vec<Duration>, String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn report(rows: &[Row], runs: usize) -> String {
    let mut text = format!(
        "Container lifecycle of `/bin/true` on one busybox rootfs, {runs} runs each \
         after {WARMUP_RUNS} warm-up runs, in rounds (ms):\n\n\
         | runtime | p50 | p90 | p99 | mean |\n|---|---:|---:|---:|---:|\n"
    );
    for row in rows {
        match &row.samples {
            Ok(samples) => {
                let mut sorted = samples.clone();
                sorted.sort();
                let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
                let _ = writeln!(
                    text,
                    "| {} | {} | {} | {} | {} |",
                    row.name,
                    ms(percentile(&sorted, 50.0)),
                    ms(percentile(&sorted, 90.0)),
                    ms(percentile(&sorted, 99.0)),
                    ms(mean)
                );
            }
            Err(reason) => {
                let _ = writeln!(text, "| {} | skipped: {} | | | |", row.name, reason);
            }
        }
    }
    text
}

/// One lifecycle of a runtime under test, given the run's number; how long it took.
type Once<'a> = Box<dyn FnMut(usize) -> Result<Duration> + 'a>;

/// A runtime under test, its samples, or why it dropped out.
struct Contender<'a> {
    name: String,
    once: Option<Once<'a>>,
    samples: Vec<Duration>,
    skipped: Option<String>,
}

impl<'a> Contender<'a> {
    fn new(name: String, once: Once<'a>) -> Self {
        Contender {
            name,
            once: Some(once),
            samples: Vec::new(),
            skipped: None,
        }
    }

    fn skipped(name: String, reason: String) -> Self {
        Contender {
            name,
            once: None,
            samples: Vec::new(),
            skipped: Some(reason),
        }
    }

    /// Runs once; a failure takes the contender out with its error.
    fn run(&mut self, i: usize) {
        let Some(once) = self.once.as_mut() else {
            return;
        };
        match once(i) {
            Ok(took) if i >= WARMUP_RUNS => self.samples.push(took),
            Ok(_) => {}
            Err(e) => {
                self.skipped = Some(format!("{e:#}"));
                self.once = None;
            }
        }
    }

    fn into_row(self) -> Row {
        Row {
            name: self.name,
            samples: match self.skipped {
                Some(reason) => Err(reason),
                None => Ok(self.samples),
            },
        }
    }
}

/// Warm-up runs, then `runs` rounds in which every contender runs once, so that
/// changes in the machine's load touch them all alike.
fn run_round_robin(contenders: &mut [Contender], runs: usize) {
    for i in 0..WARMUP_RUNS + runs {
        for contender in contenders.iter_mut() {
            contender.run(i);
        }
    }
}

// ---------------------------------------------------------------- skiff

/// The phases of one skiff run.
#[derive(Default, Clone)]
struct Phases {
    create: Vec<Duration>,
    exit: Vec<Duration>,
    remove: Vec<Duration>,
}

impl Phases {
    fn rows(self) -> Vec<Row> {
        let phase = |name: &str, samples: Vec<Duration>| Row {
            name: format!("&nbsp;&nbsp;skiff phase: {name}"),
            samples: Ok(samples),
        };
        vec![
            phase("`create` (bundle, shim, create + start)", self.create),
            phase("container runs and exits, shim ends", self.exit),
            phase("`remove` (cgroups, bundle, state)", self.remove),
        ]
    }
}

/// skiff's runtime; the phases of measured runs go to `phases`.
fn skiff_contender<'a>(bench: &'a Bench, phases: &'a RefCell<Phases>) -> Contender<'a> {
    let name = "skiff (Runtime + `skiff shim`): create → exit → remove".to_string();
    let setup = || -> Result<(Runtime, tokio::runtime::Runtime)> {
        let shim = ShimCommand {
            program: skiff_binary(),
            leading_args: vec![OsString::from("shim")],
            env: Vec::new(),
        };
        let runtime = Runtime::with_parts(
            bench.dir.path().join("skiff"),
            shim,
            HostFacts::probe().context("probing the host")?,
            HostCgroups::detect().context("finding the cgroup filesystems")?,
            HostProcesses,
        );
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok((runtime, tokio))
    };
    let (runtime, tokio) = match setup() {
        Ok(parts) => parts,
        Err(e) => return Contender::skipped(name, format!("{e:#}")),
    };
    *bench.skiff_runtime.borrow_mut() = Some(runtime.clone());
    let once = move |i: usize| {
        let config = skiff_config(bench, i);
        let (took, phase) = tokio.block_on(skiff_once(&runtime, &config))?;
        if i >= WARMUP_RUNS {
            let mut phases = phases.borrow_mut();
            phases.create.push(phase[0]);
            phases.exit.push(phase[1]);
            phases.remove.push(phase[2]);
        }
        Ok(took)
    };
    Contender::new(name, Box::new(once))
}

fn skiff_config(bench: &Bench, i: usize) -> ContainerConfig {
    let id = format!("skiff-{i}");
    ContainerConfig {
        rootfs: bench.rootfs.clone(),
        args: vec!["/bin/true".to_string()],
        cgroup_path: bench.cgroup(&id).into(),
        log: LogConfig {
            path: bench.dir.path().join("logs").join(format!("{id}.log")),
            ..LogConfig::default()
        },
        id,
        ..ContainerConfig::default()
    }
}

/// One lifecycle: the total, and (create, exit, remove).
async fn skiff_once(
    runtime: &Runtime,
    config: &ContainerConfig,
) -> Result<(Duration, [Duration; 3])> {
    let start = Instant::now();
    let handle = runtime
        .create(config)
        .await
        .with_context(|| format!("creating {}", config.id))?;
    let created = Instant::now();
    wait_gone(handle.shim_pid).with_context(|| format!("waiting for {}", config.id))?;
    let state = runtime.state(&config.id)?;
    if !state.is_exited() {
        bail!("container {} ended as {state:?}, not exited", config.id);
    }
    let exited = Instant::now();
    runtime
        .remove(&config.id)
        .await
        .with_context(|| format!("removing {}", config.id))?;
    let removed = Instant::now();
    let _ = std::fs::remove_file(&config.log.path);
    Ok((
        removed - start,
        [created - start, exited - created, removed - exited],
    ))
}

/// Waits for a process that is not this one's child to be gone.
fn wait_gone(pid: i32) -> Result<()> {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while is_alive(pid) {
        if Instant::now() > deadline {
            bail!("process {pid} still runs after {EXIT_TIMEOUT:?}");
        }
        std::thread::sleep(EXIT_POLL);
    }
    Ok(())
}

/// Exists and is not a zombie.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------- runc, crun

/// Where the OCI CLIs' `config.json` comes from.
#[derive(Clone, Copy)]
enum OciConfig {
    /// `runc spec`, adjusted (see the module docs).
    RuncSpec,
    /// The spec skiff's runtime writes for the same container (`build_spec`).
    Skiff,
}

impl OciConfig {
    fn label(self) -> &'static str {
        match self {
            OciConfig::RuncSpec => "`runc spec` config",
            OciConfig::Skiff => "skiff's config",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            OciConfig::RuncSpec => "runc-spec",
            OciConfig::Skiff => "skiff-spec",
        }
    }
}

fn oci_contender<'a>(bench: &'a Bench, tool: &'a str, config: OciConfig) -> Contender<'a> {
    let Some(version) = find_tool(tool) else {
        return Contender::skipped(
            format!("{tool}: `{tool} run`, {}", config.label()),
            format!("`{tool}` not installed (apt-get install {tool})"),
        );
    };
    let name = format!("{tool} {version}: `{tool} run`, {}", config.label());
    match prepare_oci_cli(bench, tool, config) {
        Ok(once) => Contender::new(name, once),
        Err(e) => Contender::skipped(name, format!("{e:#}")),
    }
}

/// The tool's version number, if it runs.
fn find_tool(tool: &str) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?;
    Some(first.split_whitespace().last().unwrap_or("").to_string())
}

/// Writes the bundle; returns the lifecycle to time.
fn prepare_oci_cli<'a>(bench: &'a Bench, tool: &'a str, config: OciConfig) -> Result<Once<'a>> {
    let name = format!("{tool}-{}", config.slug());
    let bundle = bench.dir.path().join(format!("{name}-bundle"));
    let state_root = bench.dir.path().join(format!("{name}-state"));
    std::fs::create_dir_all(&bundle)?;
    std::fs::create_dir_all(&state_root)?;
    match config {
        OciConfig::RuncSpec => write_oci_config(bench, &bundle, &bench.cgroup(&name))?,
        OciConfig::Skiff => write_skiff_config(bench, &bundle, &name)?,
    }
    Ok(Box::new(move |i: usize| {
        let id = format!("{name}-{i}");
        bench
            .cli_containers
            .borrow_mut()
            .push((tool.to_string(), state_root.clone(), id.clone()));
        oci_cli_once(tool, &state_root, &bundle, &id)
    }))
}

/// `runc spec`, then the adjustments in the module docs.
fn write_oci_config(bench: &Bench, bundle: &Path, cgroup: &str) -> Result<()> {
    let out = Command::new("runc")
        .arg("spec")
        .current_dir(bundle)
        .output()
        .context("running `runc spec` (apt-get install runc)")?;
    if !out.status.success() {
        bail!("runc spec: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["root"] = json!({"path": bench.rootfs, "readonly": false});
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/bin/true"]);
    spec["process"]["rlimits"] = json!([host_rlimit(
        "RLIMIT_NOFILE",
        nix::sys::resource::Resource::RLIMIT_NOFILE
    )?]);
    spec["linux"]["cgroupsPath"] = json!(cgroup);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(())
}

/// The spec skiff's runtime would write for this container, as `config.json`.
fn write_skiff_config(bench: &Bench, bundle: &Path, name: &str) -> Result<()> {
    let mut config = skiff_config(bench, 0);
    config.id = name.to_string();
    config.cgroup_path = bench.cgroup(name).into();
    let host = HostFacts::probe().context("probing the host")?;
    let spec = build_spec(&config, &host).context("building skiff's spec")?;
    let path = bundle.join("config.json");
    spec.save(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// An rlimit entry with this process's own values, capped at 1024 (runc's default).
fn host_rlimit(name: &str, resource: nix::sys::resource::Resource) -> Result<Value> {
    let (soft, hard) = nix::sys::resource::getrlimit(resource)?;
    Ok(json!({"type": name, "soft": soft.min(1024), "hard": hard.min(1024)}))
}

fn oci_cli_once(tool: &str, root: &Path, bundle: &Path, id: &str) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(tool)
        .arg("--root")
        .arg(root)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {tool}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.lines().last().unwrap_or("").trim().to_string();
        bail!("`{tool} run` failed with {}: {line}", out.status);
    }
    Ok(took)
}
