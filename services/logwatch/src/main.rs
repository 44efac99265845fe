use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sup_logwatch::{DEFAULTS, Settings, parse_cmd, run};
use sup_runtime::{ServiceSettings, Telemetry, load_config, shutdown_signal};

/// Follows ConfigMgr logs (SUPSetup.log, WCM.log, WSUSCtrl.log, wsyncmgr.log) and publishes
/// their lines and the SUP milestones.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch the configured (and discovered) log folders and publish to NATS.
    Run {
        /// TOML configuration file; SUP_LOGWATCH__<KEY> variables override it.
        #[arg(long, env = "SUP_LOGWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Print the built-in defaults and exit.
        #[arg(long)]
        print_defaults: bool,
    },
    /// Parse log files offline and print one record per line.
    Parse {
        /// Log files (.log or .lo_).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// JSON lines: file, line, format, time_utc, time_local, component, thread, message,
        /// milestone and the milestone's fields.
        #[arg(long)]
        json: bool,
        /// The server's time-zone bias in minutes (UTC = local + bias) for lines without a zone.
        #[arg(long, allow_hyphen_values = true)]
        tz_bias: Option<i32>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match real_main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sup-logwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Parse {
            files,
            json,
            tz_bias,
        } => {
            // Printed from another thread, in batches of lines.
            let mut out = std::io::BufWriter::new(std::io::stdout());
            parse_cmd::run(&files, json, tz_bias, &mut out)?;
            Ok(())
        }
        Command::Run {
            config,
            print_defaults,
        } => {
            if print_defaults {
                print!("{DEFAULTS}");
                return Ok(());
            }
            let settings: ServiceSettings<Settings> =
                load_config("logwatch", DEFAULTS, config.as_deref())?;
            let telemetry = Telemetry::init("sup-logwatch", settings.log_format)?;
            let admin = settings.bind_admin().await?;
            let result = run(admin, settings, shutdown_signal()).await;
            telemetry.shutdown();
            result
        }
    }
}
