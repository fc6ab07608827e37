//! `skiff check`: prints what this machine offers skiff, item by item (ok, warn,
//! missing) with the fix for each problem, and fails when something required is
//! missing. The probes are `host::check`'s; this only words and prints them.

use std::path::PathBuf;

use crate::host::check::{self, Finding, Status};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The data directory skiff will use (its file system, free space and write latency)
    #[arg(long, short = 'd', default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// The API port to check is free (the server's --https-listen-port)
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// The node API port to check is free (--kubelet-port)
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Print the findings as JSON
    #[arg(long)]
    json: bool,
    /// Read /proc, /sys, /boot, /lib/modules and the programs under DIR instead of /
    /// (a testing and diagnosis aid: check a copied or faked tree; ports, the data
    /// directory and root are this machine's)
    #[arg(
        long,
        env = "SKIFF_CHECK_ROOT",
        value_name = "DIR",
        default_value = "/"
    )]
    root: PathBuf,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let options = check::Options {
        root: args.root,
        data_dir: args.data_dir,
        ports: vec![
            (args.https_listen_port, "--https-listen-port"),
            (args.kubelet_port, "--kubelet-port"),
        ],
        path_env: std::env::var("PATH").unwrap_or_default(),
    };
    let findings = check::run(&options);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print!("{}", render(&findings));
    }
    let missing = findings
        .iter()
        .filter(|f| f.status == Status::Missing)
        .count();
    if missing > 0 {
        anyhow::bail!(
            "{missing} required item(s) missing: skiff's server or node will fail here until they are fixed (see each fix above)"
        );
    }
    Ok(())
}

/// One line per finding (`status  item  detail`), its fix indented below, then a
/// summary line.
fn render(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.item.len()).max().unwrap_or(0);
    let mut out = String::new();
    for finding in findings {
        out.push_str(&format!(
            "{:<8} {:<width$}  {}\n",
            finding.status.label(),
            finding.item,
            finding.detail
        ));
        if let Some(fix) = &finding.fix {
            out.push_str(&format!("{:<8} {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let count = |status| findings.iter().filter(|f| f.status == status).count();
    out.push_str(&format!(
        "\n{} ok, {} warnings, {} missing\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Missing)
    ));
    out
}
