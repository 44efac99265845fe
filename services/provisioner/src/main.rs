use clap::Parser;
use sup_provisioner::{DEFAULTS, Settings, run};
use sup_runtime::{ServiceArgs, Telemetry, bind, shutdown_signal};

/// The SUP provisioner: installs, removes and configures software update point roles on site
/// systems through their agents.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(settings) = Cli::parse()
        .service
        .settings::<Settings>("provisioner", DEFAULTS)?
    else {
        return Ok(());
    };
    let telemetry = Telemetry::init("sup-provisioner", settings.log_format)?;
    let admin = bind(settings.admin_listen, "admin").await?;
    let result = run(admin, settings, shutdown_signal()).await;
    telemetry.shutdown();
    result
}
