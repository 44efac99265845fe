use clap::Parser;
use sup_console::{DEFAULTS, Settings, run};
use sup_runtime::{ServiceArgs, Telemetry, bind, shutdown_signal};

/// The SUP console: the site hierarchy, each site's software update points, components, status
/// messages and history, in a browser, live.
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
        .settings::<Settings>("console", DEFAULTS)?
    else {
        return Ok(());
    };
    let telemetry = Telemetry::init("sup-console", settings.log_format)?;
    let listener = bind(settings.listen, "console").await?;
    let admin = bind(settings.admin_listen, "admin").await?;
    let result = run(listener, admin, settings, shutdown_signal()).await;
    telemetry.shutdown();
    result
}
