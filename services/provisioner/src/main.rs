use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use sup_provisioner::{DEFAULTS, Settings, run};
use sup_runtime::{Telemetry, load_config, shutdown_signal};

/// The SUP provisioner: installs, removes and configures software update point roles on site
/// systems through their agents.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; SUP_PROVISIONER__<KEY> variables override it.
    #[arg(long, env = "SUP_PROVISIONER_CONFIG")]
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
    let settings: Settings = load_config("provisioner", DEFAULTS, cli.config.as_deref())?;
    let telemetry = Telemetry::init("sup-provisioner", settings.log_format)?;
    let admin = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding admin {}", settings.admin_listen))?;
    let result = run(admin, settings, shutdown_signal()).await;
    telemetry.shutdown();
    result
}
