use clap::Parser;
use sup_coordinator::{DEFAULTS, Settings, run};
use sup_runtime::{ServiceArgs, Telemetry, bind, shutdown_signal};

/// The SUP coordinator: declared sites, role lifecycle, and the one-active-SUP invariant.
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
        .settings::<Settings>("coordinator", DEFAULTS)?
    else {
        return Ok(());
    };
    let telemetry = Telemetry::init("sup-coordinator", settings.log_format)?;
    let grpc = bind(settings.listen, "gRPC").await?;
    let admin = bind(settings.admin_listen, "admin").await?;
    let result = run(grpc, admin, settings, shutdown_signal()).await;
    telemetry.shutdown();
    result
}
