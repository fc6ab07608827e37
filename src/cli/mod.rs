//! The command line: `skiff server`, `skiff --version`. The only place `anyhow` is
//! used: errors reach the user here, worded to say what to do.

mod image;

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
    /// Manage the node's images: import archives, list, remove, pull
    Image(image::ImageArgs),
    /// Run one container (internal: the agent's runtime starts it)
    #[command(hide = true)]
    Shim(crate::runtime::ShimArgs),
    /// Run a process inside a running container (internal: exec and probes)
    #[command(hide = true)]
    Nsexec(crate::runtime::exec::ExecArgs),
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
    #[command(flatten)]
    node: NodeFlags,
}

/// How a real node runs containers (`skiff agent`, and `skiff server`'s own agent).
#[derive(clap::Args, Debug, Clone)]
pub struct NodeFlags {
    /// Port of the node's HTTPS API for logs and exec (like the kubelet's)
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Directories searched for CNI plugins, colon-separated
    #[arg(long, default_value = "/usr/lib/cni:/opt/cni/bin")]
    pub cni_bin_dir: String,
    /// A directory whose first .conflist replaces skiff's default bridge network
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Cluster DNS server written to pods' resolv.conf
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: std::net::IpAddr,
    /// Cluster domain
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Service IP range, routed to a local sink on this node
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Registry mirrors, credentials and TLS (k3s's registries.yaml format)
    #[arg(long, default_value = crate::image::DEFAULT_REGISTRIES_PATH)]
    pub private_registry: PathBuf,
    /// Pull only from the mirrors in the registries file, never from a mirrored
    /// registry itself
    #[arg(long)]
    pub disable_default_registry_endpoint: bool,
}

impl NodeFlags {
    pub fn runtime_config(
        &self,
        data_dir: &std::path::Path,
        node_ip: std::net::IpAddr,
    ) -> anyhow::Result<crate::agent::containers::RuntimeConfig> {
        use crate::agent::containers::{sandbox::Dns, RuntimeConfig};
        let mut registries = crate::image::RegistriesConfig::load(&self.private_registry)
            .with_context(|| format!("reading {}", self.private_registry.display()))?;
        registries.disable_default_endpoint = self.disable_default_registry_endpoint;
        Ok(RuntimeConfig {
            data_dir: data_dir.to_path_buf(),
            node_ip,
            dns: Dns {
                server: self.cluster_dns,
                domain: self.cluster_domain.clone(),
            },
            cni_bin_dirs: self.cni_bin_dir.split(':').map(PathBuf::from).collect(),
            cni_conf_dir: self.cni_conf_dir.clone(),
            registries,
            service_cidr: self.service_cidr.clone(),
        })
    }
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
        Command::Nsexec(args) => std::process::exit(crate::runtime::exec::exec_main(args)),
        Command::Image(args) => image::run(args),
    }
}

fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    use crate::agent::{self, AgentConfig, Capacity};
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
        capacity: if args.simulate {
            Capacity {
                cpu: args.simulate_cpu,
                memory: args.simulate_memory,
                pods: args.simulate_pods,
            }
        } else {
            agent::machine_capacity()
        },
        lease_interval: std::time::Duration::from_secs(args.lease_interval_seconds.max(1)),
        kubelet_port: if args.simulate {
            0
        } else {
            args.node.kubelet_port
        },
    };
    let delay = std::time::Duration::from_millis(args.simulate_start_delay_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.simulate {
        return runtime
            .block_on(agent::run_simulated(config, args.count, delay))
            .context("skiff agent failed (run with --log info for details)");
    }
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("skiff agent runs containers and must run as root (try: sudo skiff agent …)");
    }
    let runtime_config = args.node.runtime_config(&config.data_dir, config.node_ip)?;
    runtime
        .block_on(agent::run_containers(config, runtime_config))
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
