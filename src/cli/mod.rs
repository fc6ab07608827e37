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
    /// Join a server as a node
    Agent(AgentArgs),
    /// Run one container (internal: the agent's runtime starts it)
    #[command(hide = true)]
    Shim(crate::runtime::ShimArgs),
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The server to join, https://HOST:6443
    #[arg(long, env = "SKIFF_URL")]
    server: String,
    /// The join token (from the server's <data-dir>/server/token)
    #[arg(long, env = "SKIFF_TOKEN")]
    token: String,
    /// This node's name [default: the host name]
    #[arg(long)]
    node_name: Option<String>,
    /// This node's address [default: the address of the default route's interface]
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// Where the agent keeps its state
    #[arg(long, short = 'd', default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// A label for this node, key=value (repeatable)
    #[arg(long = "node-label")]
    node_labels: Vec<String>,
    /// A taint for this node, key=value:Effect (repeatable)
    #[arg(long = "node-taint")]
    node_taints: Vec<String>,
    /// Simulated nodes: the real agent loop with a runtime that only pretends to run
    /// containers (a test and scale tool, like Kubernetes' kubemark)
    #[arg(long)]
    simulate: bool,
    /// With --simulate: how many nodes to run in this process (named <node-name>-<i>)
    #[arg(long, default_value_t = 1, requires = "simulate")]
    count: usize,
    /// With --simulate: how long simulated containers take to start, in milliseconds
    #[arg(long, default_value_t = 500, requires = "simulate")]
    simulate_start_delay_ms: u64,
    /// With --simulate: CPU, memory and pod capacity each simulated node reports
    #[arg(long, default_value = "4", requires = "simulate")]
    simulate_cpu: String,
    #[arg(long, default_value = "8Gi", requires = "simulate")]
    simulate_memory: String,
    #[arg(long, default_value = "110", requires = "simulate")]
    simulate_pods: String,
    /// Seconds between lease renewals
    #[arg(long, default_value_t = 10)]
    lease_interval_seconds: u64,
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
        Command::Agent(args) => run_agent(args),
        // Single-threaded by design: libcontainer clones and chdirs process-wide.
        Command::Shim(args) => std::process::exit(crate::runtime::shim_main(args)),
    }
}

fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    use crate::agent::{self, AgentConfig, Capacity};
    if !args.simulate {
        anyhow::bail!(
            "skiff agent needs the bundled container runtime, which is not built yet; \
             use --simulate to run simulated nodes"
        );
    }
    let labels = args
        .node_labels
        .iter()
        .map(|l| agent::parse_label(l))
        .collect::<Result<_, _>>()?;
    let taints = args
        .node_taints
        .iter()
        .map(|t| agent::parse_taint(t))
        .collect::<Result<_, _>>()?;
    let config = AgentConfig {
        server: args.server.trim_end_matches('/').to_string(),
        token: args.token,
        node_name: args.node_name.unwrap_or_else(crate::server::hostname),
        node_ip: args.node_ip.unwrap_or_else(crate::server::default_address),
        data_dir: args.data_dir,
        labels,
        taints,
        control_plane: false,
        capacity: Capacity {
            cpu: args.simulate_cpu,
            memory: args.simulate_memory,
            pods: args.simulate_pods,
        },
        lease_interval: std::time::Duration::from_secs(args.lease_interval_seconds.max(1)),
    };
    let delay = std::time::Duration::from_millis(args.simulate_start_delay_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(agent::run_simulated(config, args.count, delay))
        .context("skiff agent failed (run with --log info for details)")
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
