use clap::Parser;
use sup_health::{DEFAULTS, Settings, run};
use sup_runtime::{ServiceArgs, Telemetry, bind, shutdown_signal};

/// The SUP health service: probes every SUP server's WSUS web site and publishes transitions.
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
        .settings::<Settings>("health", DEFAULTS)?
    else {
        return Ok(());
    };
    let telemetry = Telemetry::init("sup-health", settings.log_format)?;
    let grpc = bind(settings.listen, "gRPC").await?;
    let admin = bind(settings.admin_listen, "admin").await?;
    let result = run(grpc, admin, settings, shutdown_signal()).await;
    telemetry.shutdown();
    result
}
