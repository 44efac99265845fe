use clap::Parser;
use sup_runtime::{ServiceArgs, Telemetry, bind, shutdown_signal};
use sup_scheduler::{DEFAULTS, Settings, SystemClock, run};

/// The SUP scheduler: synchronization on a schedule and on demand, parents before children.
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
        .settings::<Settings>("scheduler", DEFAULTS)?
    else {
        return Ok(());
    };
    let telemetry = Telemetry::init("sup-scheduler", settings.log_format)?;
    let grpc = bind(settings.listen, "gRPC").await?;
    let admin = bind(settings.admin_listen, "admin").await?;
    let result = run(grpc, admin, settings, SystemClock, shutdown_signal()).await;
    telemetry.shutdown();
    result
}
