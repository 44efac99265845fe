use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use sup_health::{DEFAULTS, Settings, run};
use sup_runtime::{Telemetry, load_config, shutdown_signal};

/// The SUP health service: probes every SUP server's WSUS web site and publishes transitions.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; SUP_HEALTH__<KEY> variables override it.
    #[arg(long, env = "SUP_HEALTH_CONFIG")]
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
    let settings: Settings = load_config("health", DEFAULTS, cli.config.as_deref())?;
    let telemetry = Telemetry::init("sup-health", settings.log_format)?;
    let grpc = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding gRPC {}", settings.listen))?;
    let admin = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding admin {}", settings.admin_listen))?;
    let result = run(grpc, admin, settings, shutdown_signal()).await;
    telemetry.shutdown();
    result
}
