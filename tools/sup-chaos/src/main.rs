//! `sup-chaos`: runs the chaos trials and prints the report (also written as JSON).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sup_chaos::{Kind, Options};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Chaos trials on a real three-node NATS cluster, with an independent checker",
    long_about = "Chaos trials on a real three-node NATS cluster (sync_interval: always, replicas 3): coordinator replicas killed and frozen during activation storms, the KV stream leader killed during transitions, the active SUP of an auto site taken down, the log watcher killed while logs rotate. Exits non-zero when any check fails."
)]
struct Cli {
    /// Trials per fault kind.
    #[arg(long, env = "TRIALS", default_value_t = 100)]
    trials: usize,
    /// Comma-separated kinds: coordinator_kill, coordinator_pause, kv_leader_kill, failover,
    /// logwatch_kill (default: all).
    #[arg(long, default_value = "all")]
    kinds: String,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/chaos/report.json")]
    report: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    match real_main().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sup-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn real_main() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let kinds = if cli.kinds == "all" {
        Kind::ALL.to_vec()
    } else {
        cli.kinds
            .split(',')
            .map(|k| {
                Kind::parse(k.trim()).ok_or_else(|| anyhow::anyhow!("--kinds: unknown kind {k:?}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let bins = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("no folder for the binaries"))?;
    let options = Options {
        trials: cli.trials,
        kinds,
        bins,
    };
    let report = sup_chaos::run(&options, |m| eprintln!("[chaos] {m}")).await?;
    print!("{}", report.table());
    if let Some(dir) = cli.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.report, serde_json::to_string_pretty(&report)?)?;
    println!(
        "\n{} in {:.0} s; report: {}",
        if report.passed { "PASSED" } else { "FAILED" },
        report.seconds,
        cli.report.display()
    );
    Ok(report.passed)
}
