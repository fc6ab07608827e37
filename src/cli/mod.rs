//! The command line: `skiff server`, `skiff agent`, `skiff image`, `skiff check`,
//! `skiff --version`. The only place `anyhow` is
//! used: errors reach the user here, worded to say what to do.

mod check;
mod image;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, NodeFlags, ServerFlags};

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "One binary that is a whole Kubernetes-compatible edge cluster"
)]
struct Cli {
    /// Log filter, e.g. info or skiff=debug
    #[arg(long, global = true, env = "SKIFF_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server, the controllers and the server's own node agent
    Server {
        /// Config file (YAML keys are the flag names; flags win)
        #[arg(long, short = 'c', default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        flags: ServerFlags,
        #[command(flatten)]
        node: NodeFlags,
    },
    /// Join a server as a node
    Agent(AgentArgs),
    /// Manage the node's images: import archives, list, remove, pull
    Image(image::ImageArgs),
    /// The node's network: `cleanup` removes skiff's rules and links
    Network(NetworkArgs),
    /// Check this machine for what skiff needs (kernel, cgroups, tools, ports, disk)
    Check(check::CheckArgs),
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
    #[arg(long, env = "SKIFF_TOKEN", required_unless_present = "token_file")]
    token: Option<String>,
    /// File holding the join token (trimmed), instead of --token
    #[arg(long, env = "SKIFF_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Where the agent keeps its state
    #[arg(long, short = 'd', default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Cluster DNS server written to pods' resolv.conf
    #[arg(long, default_value = "10.43.0.10")]
    cluster_dns: std::net::IpAddr,
    /// Cluster domain
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Service IP range, routed to a local sink on this node (the server's
    /// --service-cidr)
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: crate::model::cidr::Cidr,
    /// Pod IP range of the whole cluster (the server's --cluster-cidr)
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: crate::model::cidr::Cidr,
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
    #[command(flatten)]
    node: NodeFlags,
}

#[derive(clap::Args)]
struct NetworkArgs {
    #[command(subcommand)]
    command: NetworkCommand,
}

#[derive(Subcommand)]
enum NetworkCommand {
    /// Remove skiff's nftables rules and links of a node (run after stopping it)
    Cleanup {
        /// The node's pod bridge (its --cni-bridge)
        #[arg(long, default_value = "cni0")]
        cni_bridge: String,
        /// The node's data directory (its --data-dir)
        #[arg(long, short = 'd', default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
        /// The cluster's pod range: only overlay routes inside it are removed
        /// [default: every route skiff's overlay made here]
        #[arg(long)]
        cluster_cidr: Option<crate::model::cidr::Cidr>,
    },
}

pub fn run() -> anyhow::Result<()> {
    // Out of the environment before any thread starts, so no child inherits it.
    let notifier = crate::host::notify::Notifier::from_env();
    let cli = Cli::parse();
    init_logging(&cli.log);
    match cli.command {
        Command::Server {
            config,
            flags,
            node,
        } => {
            let required = config != std::path::Path::new(config::DEFAULT_CONFIG);
            let file = config::read_file(&config, required)?;
            let config = config::merge(flags, node, file)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime
                .block_on(crate::server::run(config, notifier))
                .context("skiff server failed (run with --log info for details)")
        }
        Command::Agent(args) => run_agent(args, notifier),
        // Single-threaded by design: libcontainer clones and chdirs process-wide.
        Command::Shim(args) => std::process::exit(crate::runtime::shim_main(args)),
        Command::Nsexec(args) => std::process::exit(crate::runtime::exec::exec_main(args)),
        Command::Image(args) => image::run(args),
        Command::Network(args) => run_network(args),
        Command::Check(args) => check::run(args),
    }
}

fn run_agent(
    args: AgentArgs,
    notifier: Option<crate::host::notify::Notifier>,
) -> anyhow::Result<()> {
    use crate::agent::{self, Capacity};
    let node = args.node.merge(NodeFlags::default())?;
    let node_ip = node.node_ip.unwrap_or_else(crate::host::default_address);
    let capacity = if args.simulate {
        Capacity {
            cpu: args.simulate_cpu,
            memory: args.simulate_memory,
            pods: args.simulate_pods,
        }
    } else {
        agent::machine_capacity()
    };
    let token = match (args.token, &args.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => config::read_token_file(path)?,
        (None, None) => anyhow::bail!("give the join token with --token or --token-file"),
    };
    let mut config = node.agent_config(
        args.server,
        token,
        args.data_dir.clone(),
        node_ip,
        false,
        capacity,
    );
    let delay = std::time::Duration::from_millis(args.simulate_start_delay_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.simulate {
        config.kubelet_port = 0;
        return runtime
            .block_on(agent::run_simulated(config, args.count, delay))
            .context("skiff agent failed (run with --log info for details)");
    }
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("skiff agent runs containers and must run as root (try: sudo skiff agent …)");
    }
    let cluster = config::ClusterNetwork {
        cluster_cidr: args.cluster_cidr,
        service_cidr: args.service_cidr,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
    };
    let runtime_config = node.runtime_config(args.data_dir, node_ip, cluster)?;
    config.notify = notifier.clone();
    let result = runtime.block_on(async {
        tokio::select! {
            result = agent::run_containers(config, runtime_config) => {
                result.context("skiff agent failed (run with --log info for details)")
            }
            () = crate::host::notify::stop_requested() => {
                tracing::info!("skiff agent stopping");
                if let Some(notifier) = &notifier {
                    notifier.stopping();
                }
                Ok(())
            }
        }
    });
    // Pods' containers run on in their shims; don't wait long for loops mid-call.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

fn run_network(args: NetworkArgs) -> anyhow::Result<()> {
    let NetworkCommand::Cleanup {
        cni_bridge,
        data_dir,
        cluster_cidr,
    } = args.command;
    let target = crate::agent::network::CleanupTarget {
        sink_link: config::sink_link_for(&cni_bridge),
        bridge: cni_bridge,
        data_dir,
        cluster_cidr,
    };
    let errors = crate::agent::network::cleanup(&target);
    for error in &errors {
        eprintln!("skiff network cleanup: {error}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} cleanup step(s) failed (run as root?)", errors.len())
    }
}

fn init_logging(filter: &str) {
    // hickory-server (cluster DNS) logs every query at info: only its warnings,
    // unless the filter names it.
    let filter = if filter.contains("hickory") {
        filter.to_string()
    } else {
        format!("{filter},hickory_server=warn,hickory_proto=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_server_takes_every_node_flag_for_its_own_node() {
        let cli = Cli::try_parse_from([
            "skiff",
            "server",
            "--node-label",
            "a=b",
            "--node-taint",
            "k=v:NoSchedule",
            "--kubelet-port",
            "11250",
            "--cni-bridge",
            "edge0",
            "--cgroup-root",
            "/edge",
            "--node-name",
            "n1",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Server { node, .. } = cli.command else {
            panic!("not the server command");
        };
        let node = node.merge(NodeFlags::default()).unwrap();
        assert_eq!(node.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(node.kubelet_port, 11250);
        assert_eq!(node.cni_bridge, "edge0");
        assert_eq!(node.node_name, "n1");
        let agent = Cli::try_parse_from([
            "skiff",
            "agent",
            "--server",
            "https://x:6443",
            "--token",
            "t",
            "--node-label",
            "a=b",
            "--cni-bridge",
            "edge0",
        ]);
        assert!(agent.is_ok());
    }

    #[test]
    fn the_agent_takes_its_token_from_a_flag_or_a_file_but_not_both() {
        let agent = |extra: &[&str]| {
            let mut args = vec!["skiff", "agent", "--server", "https://x:6443"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let Ok(Cli {
            command: Command::Agent(args),
            ..
        }) = agent(&["--token-file", "/run/token"])
        else {
            panic!("--token-file alone is refused");
        };
        assert_eq!(args.token_file, Some(PathBuf::from("/run/token")));
        assert!(args.token.is_none());
        assert!(agent(&["--token", "t", "--token-file", "/run/token"]).is_err());
        if std::env::var_os("SKIFF_TOKEN").is_none() {
            assert!(agent(&[]).is_err(), "no token at all is refused");
        }
    }

    #[test]
    fn network_cleanup_takes_the_node_bridge_and_data_dir() {
        let cli = Cli::try_parse_from(["skiff", "network", "cleanup", "--cni-bridge", "edge0"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Command::Network(NetworkArgs {
            command:
                NetworkCommand::Cleanup {
                    cni_bridge,
                    data_dir,
                    ..
                },
        }) = cli.command
        else {
            panic!("not the network command");
        };
        assert_eq!(cni_bridge, "edge0");
        assert_eq!(data_dir, PathBuf::from("/var/lib/skiff"));
    }

    #[test]
    fn help_names_the_log_variable_once_and_promises_nothing() {
        let help = Cli::command().render_long_help().to_string();
        assert_eq!(help.matches("SKIFF_LOG").count(), 1, "{help}");
        let mut command = Cli::command();
        let server = command.find_subcommand_mut("server").unwrap();
        let server_help = server.render_long_help().to_string();
        assert!(
            !help.contains("later") && !server_help.contains("later"),
            "{help}"
        );
        assert!(server_help.contains("--node-label"), "{server_help}");
    }
}
