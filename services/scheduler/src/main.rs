use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use sup_runtime::{Telemetry, load_config, shutdown_signal};
use sup_scheduler::{DEFAULTS, Settings, SystemClock, run};

/// The SUP scheduler: synchronization on a schedule and on demand, parents before children.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; SUP_SCHEDULER__<KEY> variables override it.
    #[arg(long, env = "SUP_SCHEDULER_CONFIG")]
    config: Option<PathBuf>,
    /// Print the built-in defaults and exit.
    #[arg(long)]
    print_defaults: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_defaults {
        print!("{DEFAULTS}");
        return Ok(());
    }
    let settings: Settings = load_config("scheduler", DEFAULTS, cli.config.as_deref())?;
    let telemetry = Telemetry::init("sup-scheduler", settings.log_format)?;
    let grpc = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding gRPC {}", settings.listen))?;
    let admin = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding admin {}", settings.admin_listen))?;
    let result = run(grpc, admin, settings, SystemClock, shutdown_signal()).await;
    telemetry.shutdown();
    result
}
