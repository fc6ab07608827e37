//! `skiff image import|ls|rm|pull|save`: the node's image store from the command line.
//!
//! The store is the agent's own, `<data-dir>/agent/images` (see
//! [`crate::image::store_dir`]); it is safe to use while the agent runs (the store
//! locks its files). Archives copied into that directory are imported by the agent
//! when it starts; `skiff image import` imports them (or any others) right away.
//! Pulls go through the mirrors and credentials of `registries.yaml`.
//!
//! `skiff image save` pulls into a temporary store of its own (a hidden directory
//! beside the output file, removed afterwards), never into the node's: the store
//! keeps one record per name, so saving `nginx:1.27` for arm64 on an amd64 node
//! would replace the node's own amd64 image. It needs neither root nor a node.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::image::{
    self, Digest, Image, ImageStore, LayerStatus, Platform, PullOptions, PullProgress,
    RegistriesConfig, SaveTarget, StoreOptions, DEFAULT_REGISTRIES_PATH,
};

#[derive(clap::Args)]
pub struct ImageArgs {
    /// Where skiff keeps its state; the images are in <data-dir>/agent/images
    #[arg(
        long,
        short = 'd',
        global = true,
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    data_dir: PathBuf,
    /// Mirrors, credentials and TLS for registries (k3s format; a missing file means
    /// none)
    #[arg(long, global = true, default_value = DEFAULT_REGISTRIES_PATH)]
    registries_config: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(clap::Subcommand)]
enum ImageCommand {
    /// Import docker-save or OCI-layout archives (.tar, .tar.gz, .tar.zst)
    Import {
        /// Archive files
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Platform to take from multi-platform archives [default: this node's]
        #[arg(long)]
        platform: Option<String>,
    },
    /// List the images
    #[command(visible_alias = "list")]
    Ls {
        /// Only print image names
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Show whole digests
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove images (by name, name@digest or image id) and what only they used
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
        /// Remove even when a mounted container root filesystem uses the image
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Pull images into one archive for air-gapped nodes (an OCI layout with a
    /// docker-save manifest.json; see airgap/README.md)
    Save {
        /// Images to save (pulled through the mirrors of registries.yaml)
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
        /// The archive to write: .tar, .tar.gz or .tar.zst (`-`: a tar on stdout)
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
        /// Platform of the images, e.g. linux/arm64 or linux/arm/v7 [default: this
        /// node's]
        #[arg(long)]
        platform: Option<String>,
    },
    /// Pull an image from its registry (or the mirrors of registries.yaml)
    Pull {
        #[arg(value_name = "REF")]
        reference: String,
        /// Platform to pull from multi-platform images [default: this node's]
        #[arg(long)]
        platform: Option<String>,
    },
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let root = image::store_dir(&args.data_dir);
    match args.command {
        ImageCommand::Ls { quiet, no_trunc } => list(&root, quiet, no_trunc),
        ImageCommand::Import { files, platform } => {
            let store = open(&root, platform.as_deref(), None)?;
            block_on(import(&store, &files))
        }
        ImageCommand::Rm { references, force } => {
            let store = open(&root, None, None)?;
            block_on(remove(&store, &references, force))
        }
        ImageCommand::Pull {
            reference,
            platform,
        } => {
            let store = open(&root, platform.as_deref(), Some(&args.registries_config))?;
            block_on(pull(&store, &reference))
        }
        ImageCommand::Save {
            references,
            output,
            platform,
        } => block_on(save(
            &references,
            &output,
            platform.as_deref(),
            &args.registries_config,
        )),
    }
}

/// Opens (creating) the store; `registries` is read when given.
fn open(
    root: &Path,
    platform: Option<&str>,
    registries: Option<&Path>,
) -> anyhow::Result<ImageStore> {
    let mut options = StoreOptions::default();
    if let Some(platform) = platform {
        options.platform = Platform::parse(platform).map_err(plain)?;
    }
    if let Some(path) = registries {
        options.registries = RegistriesConfig::load(path)
            .map_err(plain)
            .with_context(|| {
                format!(
                    "fix {} or pass another file with --registries-config",
                    path.display()
                )
            })?;
    }
    ImageStore::open(root, options)
        .map_err(plain)
        .with_context(|| {
            format!(
                "cannot open the image store {} (run as root, or pass --data-dir)",
                root.display()
            )
        })
}

/// The error as one message: `ImageError`s print their cause in their own text, so
/// chaining it too would say it twice.
fn plain(e: image::ImageError) -> anyhow::Error {
    anyhow::Error::msg(e.to_string())
}

fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work)
}

// ---------------------------------------------------------------- import

async fn import(store: &ImageStore, files: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        if file.is_dir() {
            eprintln!(
                "error: {} is a directory: pass archive files (the agent imports archives \
                 copied into {} when it starts)",
                file.display(),
                store.root().display()
            );
            failed += 1;
            continue;
        }
        match store.import_archive(file).await {
            Ok(images) => {
                for image in &images {
                    println!(
                        "imported {} ({})  from {}",
                        image.name,
                        short_digest(&image.digest),
                        file.display()
                    );
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} archives not imported: docker-save or OCI-layout tarballs \
             (plain, gzip or zstd) are supported",
            files.len()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- ls

fn list(root: &Path, quiet: bool, no_trunc: bool) -> anyhow::Result<()> {
    // Listing never creates the store: a node without images has an empty list.
    let images = if root.join("content").is_dir() {
        open(root, None, None)?.list().map_err(plain)?
    } else {
        Vec::new()
    };
    let mut out = std::io::stdout().lock();
    if quiet {
        for image in &images {
            writeln!(out, "{}", image.name)?;
        }
        return Ok(());
    }
    write!(out, "{}", table(&images, no_trunc))?;
    Ok(())
}

/// The `ls` table: IMAGE, DIGEST, IMAGE ID, PLATFORM, SIZE, aligned.
fn table(images: &[Image], no_trunc: bool) -> String {
    let digest = |d: &Digest| {
        if no_trunc {
            d.to_string()
        } else {
            short_digest(d)
        }
    };
    let mut rows = vec![[
        "IMAGE".to_string(),
        "DIGEST".to_string(),
        "IMAGE ID".to_string(),
        "PLATFORM".to_string(),
        "SIZE".to_string(),
    ]];
    rows.extend(images.iter().map(|i| {
        [
            i.name.clone(),
            digest(&i.digest),
            digest(&i.id),
            i.platform.to_string(),
            human_size(i.size),
        ]
    }));
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `sha256:` and the first 12 hex digits, as `docker images` shows ids.
fn short_digest(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

/// Bytes in binary units with one decimal: `812 B`, `1.2 MiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

// ---------------------------------------------------------------- rm

async fn remove(store: &ImageStore, references: &[String], force: bool) -> anyhow::Result<()> {
    let mounted = if force {
        String::new()
    } else {
        std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
    };
    if let [reference] = references {
        return remove_one(store, reference, &mounted).await;
    }
    let mut failed = 0;
    for reference in references {
        if let Err(e) = remove_one(store, reference, &mounted).await {
            eprintln!("error: {e:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images not removed", references.len());
    }
    Ok(())
}

async fn remove_one(store: &ImageStore, reference: &str, mountinfo: &str) -> anyhow::Result<()> {
    let Some(image) = store.get(reference).map_err(plain)? else {
        bail!("image {reference} not found (see `skiff image ls`)");
    };
    if let Some(layer) = layer_in_use(store, &image, mountinfo) {
        bail!(
            "image {} is in use: a mounted root filesystem uses its layer {} \
             (stop its pods first, or pass --force)",
            image.name,
            short_digest(&layer)
        );
    }
    let report = store.remove(reference).await.map_err(plain)?;
    for removed in &report.removed {
        println!(
            "deleted {} ({})",
            removed.name,
            short_digest(&removed.digest)
        );
    }
    if report.gc.blobs_removed > 0 || report.gc.snapshots_removed > 0 {
        println!(
            "freed {} ({} blobs, {} unpacked layers)",
            human_size(report.gc.bytes_freed),
            report.gc.blobs_removed,
            report.gc.snapshots_removed
        );
    }
    Ok(())
}

/// A layer of `image` whose unpacked snapshot is part of a mount (a container's
/// overlay root filesystem), from `/proc/self/mountinfo`'s text.
fn layer_in_use(store: &ImageStore, image: &Image, mountinfo: &str) -> Option<Digest> {
    let root = std::fs::canonicalize(store.root()).unwrap_or_else(|_| store.root().into());
    let snapshots = root.join("snapshots");
    image.layers.iter().find_map(|layer| {
        let dir = snapshots.join(layer.diff_id.hex());
        let dir = dir.to_string_lossy();
        mountinfo
            .lines()
            .any(|line| mentions_path(line, &dir))
            .then(|| layer.diff_id.clone())
    })
}

/// True when `line` names `path` as a whole path (followed by a separator).
fn mentions_path(line: &str, path: &str) -> bool {
    line.match_indices(path).any(|(at, _)| {
        let rest = &line[at + path.len()..];
        rest.is_empty() || rest.starts_with([':', ',', ' ', '/'])
    })
}

// ---------------------------------------------------------------- pull

async fn pull(store: &ImageStore, reference: &str) -> anyhow::Result<()> {
    let image = pull_with_bars(store, reference).await?;
    println!("{}", pulled_line(&image));
    Ok(())
}

/// `pulled NAME (DIGEST, N layers, SIZE)`.
fn pulled_line(image: &Image) -> String {
    let layers = match image.layers.len() {
        1 => "1 layer".to_string(),
        n => format!("{n} layers"),
    };
    format!(
        "pulled {} ({}, {layers}, {})",
        image.name,
        short_digest(&image.digest),
        human_size(image.size)
    )
}

/// Pulls `reference` with progress bars on stderr (when it is a terminal).
async fn pull_with_bars(store: &ImageStore, reference: &str) -> anyhow::Result<Image> {
    let bars = Arc::new(Bars::new(std::io::stderr().is_terminal()));
    let sink = Arc::clone(&bars);
    let options = PullOptions {
        progress: Some(Arc::new(move |p: &PullProgress| sink.update(p))),
        ..PullOptions::default()
    };
    let result = store.pull(reference, options).await;
    bars.finish();
    let image = result.map_err(|e| {
        let hint = if e.is_not_found() {
            "check the name and tag"
        } else {
            "check the registry address, network and the credentials in --registries-config"
        };
        plain(e).context(format!("cannot pull {reference}: {hint}"))
    })?;
    Ok(image)
}

// ---------------------------------------------------------------- save

async fn save(
    references: &[String],
    output: &Path,
    platform: Option<&str>,
    registries: &Path,
) -> anyhow::Result<()> {
    let to_stdout = output == Path::new("-");
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("refusing to write an archive to a terminal: redirect stdout or pass -o FILE");
    }
    let target = if to_stdout {
        SaveTarget::Stdout
    } else {
        image::check_save_name(output).map_err(plain)?;
        SaveTarget::File(output.to_path_buf())
    };
    let work = TempStoreDir::create(output, to_stdout)?;
    let store = open(work.path(), platform, Some(registries))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let writing = Arc::new(AtomicBool::new(false));
    let saving = pull_and_save(
        &store,
        references,
        (target, output),
        Arc::clone(&writing),
        Arc::clone(&cancel),
    );
    tokio::pin!(saving);
    // Ctrl-C: stop, and leave neither the temporary store nor a partial archive
    // (pulls are dropped; the writer stops at its next read and removes its file).
    let report = tokio::select! {
        report = &mut saving => report?,
        _ = tokio::signal::ctrl_c() => {
            cancel.store(true, Ordering::Relaxed);
            if writing.load(Ordering::Relaxed) {
                let _ = saving.await;
            }
            bail!("interrupted: nothing written");
        }
    };
    if !to_stdout {
        let size = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
        let images = match report.images {
            1 => "1 image".to_string(),
            n => format!("{n} images"),
        };
        println!(
            "saved {images} for {} to {} ({})",
            store.platform(),
            output.display(),
            human_size(size)
        );
    }
    Ok(())
}

/// Pulls every reference (one after the other, layers in parallel), then writes
/// them all to `target` (setting `writing` first).
async fn pull_and_save(
    store: &ImageStore,
    references: &[String],
    (target, output): (SaveTarget, &Path),
    writing: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<image::SaveReport> {
    let mut images = Vec::new();
    for reference in references {
        let image = pull_with_bars(store, reference).await?;
        eprintln!("{}", pulled_line(&image));
        images.push(image);
    }
    writing.store(true, Ordering::Relaxed);
    store
        .save(images, target, cancel)
        .await
        .map_err(plain)
        .with_context(|| format!("cannot write {}", output.display()))
}

/// The temporary store `save` pulls into: a hidden directory beside the output
/// file (or in the temp dir for stdout), removed when dropped.
struct TempStoreDir(PathBuf);

impl TempStoreDir {
    fn create(output: &Path, to_stdout: bool) -> anyhow::Result<TempStoreDir> {
        let parent = match output.parent() {
            _ if to_stdout => std::env::temp_dir(),
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            bail!(
                "cannot write {}: {} is not a directory",
                output.display(),
                parent.display()
            );
        }
        let dir = parent.join(format!(".skiff-save-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the temporary store {}", dir.display()))?;
        Ok(TempStoreDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempStoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One progress bar per layer on stderr, when it is a terminal.
struct Bars {
    multi: MultiProgress,
    enabled: bool,
    layers: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn new(enabled: bool) -> Bars {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            enabled,
            layers: Mutex::new(HashMap::new()),
        }
    }

    fn update(&self, p: &PullProgress) {
        if !self.enabled {
            return;
        }
        let mut layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        let bar = layers
            .entry(p.layer.clone())
            .or_insert_with(|| self.add_bar(p));
        bar.set_length(p.total.max(p.done));
        bar.set_position(p.done);
        match p.status {
            LayerStatus::AlreadyExists => {
                bar.finish_with_message("already exists");
            }
            LayerStatus::Complete => bar.finish_with_message("done"),
            LayerStatus::Downloading => {}
        }
    }

    fn add_bar(&self, p: &PullProgress) -> ProgressBar {
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(p.total).with_style(style));
        bar.set_prefix(format!(
            "layer {}/{} {}",
            p.index,
            p.count,
            short_digest(&p.layer)
        ));
        bar
    }

    fn finish(&self) {
        let layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        for bar in layers.values().filter(|b| !b.is_finished()) {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Layer;

    fn image(name: &str, size: u64) -> Image {
        Image {
            name: name.to_string(),
            id: Digest::of(b"config"),
            digest: Digest::of(b"manifest"),
            manifest_digest: Digest::of(b"manifest"),
            layers: vec![Layer {
                digest: Digest::of(b"layer"),
                diff_id: Digest::of(b"tar"),
                size,
                media_type: "application/vnd.oci.image.layer.v1.tar".to_string(),
            }],
            platform: Platform::parse("linux/amd64").unwrap(),
            size,
            stored_at: 0,
        }
    }

    #[test]
    fn sizes_read_like_ctr() {
        assert_eq!(human_size(812), "812 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1_258_291), "1.2 MiB");
    }

    #[test]
    fn table_aligns_columns_and_shortens_digests() {
        let images = [
            image("docker.io/library/busybox:test", 1_258_291),
            image("example.com/a:1", 10),
        ];
        let text = table(&images, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("IMAGE "), "{text}");
        let digest_col = lines[0].find("DIGEST").unwrap();
        assert_eq!(&lines[1][digest_col..digest_col + 7], "sha256:");
        assert_eq!(&lines[2][digest_col..digest_col + 7], "sha256:");
        let short = short_digest(&Digest::of(b"manifest"));
        assert_eq!(short.len(), "sha256:".len() + 12);
        assert!(lines[1].contains(&short) && lines[1].ends_with("1.2 MiB"));
        assert!(table(&images, true).contains(&Digest::of(b"manifest").to_string()));
    }

    #[test]
    fn mounted_snapshots_are_found_by_whole_path() {
        let line = "88 30 0:50 / /run/c1/rootfs rw - overlay overlay \
                    rw,lowerdir=/d/snapshots/abc:/d/snapshots/def,upperdir=/u";
        assert!(mentions_path(line, "/d/snapshots/abc"));
        assert!(mentions_path(line, "/d/snapshots/def"));
        assert!(!mentions_path(line, "/d/snapshots/ab"));
        assert!(!mentions_path(line, "/d/snapshots/xyz"));
    }
}
