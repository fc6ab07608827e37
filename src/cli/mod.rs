//! The command line: `skiff server`, `skiff --version`. The only place `anyhow` is
//! used: errors reach the user here, worded to say what to do.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, ServerFlags};

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "One binary that is a whole Kubernetes-compatible edge cluster"
)]
struct Cli {
    /// Log filter, e.g. info or skiff=debug [env: SKIFF_LOG]
    #[arg(long, global = true, env = "SKIFF_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (and, later, its in-process agent)
    Server {
        /// Config file (YAML keys are the flag names; flags win)
        #[arg(long, short = 'c', default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        flags: ServerFlags,
    },
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log);
    match cli.command {
        Command::Server { config, flags } => {
            let required = config != std::path::Path::new(config::DEFAULT_CONFIG);
            let file = config::read_file(&config, required)?;
            let config = config::merge(flags, file)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime
                .block_on(crate::server::run(config))
                .context("skiff server failed (run with --log info for details)")
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
