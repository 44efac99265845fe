//! `sup-bench`: measures the figures the README reports, each beside the comparison measured in
//! the same run, and writes them as a table and as JSON (`target/bench/report.json`).

mod announce;
mod converge;
mod events;
mod failover;
mod logs;
mod probing;
mod scale;
mod storm;

use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(about = "Run the SUP control plane's benchmarks")]
struct Cli {
    /// A smaller version of each benchmark (minutes, not tens of minutes).
    #[arg(long, env = "QUICK", value_parser = parse_flag, default_value = "0")]
    quick: bool,
    /// Which benchmarks: all, or a comma-separated list of parse, latency, failover, footprint,
    /// apply, activate, events, announce, converge, probing, storm.
    #[arg(long, default_value = "all")]
    only: String,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench/report.json")]
    report: PathBuf,
}

fn parse_flag(s: &str) -> Result<bool, String> {
    Ok(matches!(s, "1" | "true" | "yes"))
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The comparison measured in the same run (or the goal's reference), in the same unit.
    pub baseline: f64,
    /// value / baseline.
    pub ratio: f64,
    pub goal: String,
    pub met: bool,
}

fn print_table(figures: &[Figure]) {
    println!(
        "{:<44} {:>14} {:<8} {:>14} {:>8}  {:<28} MET",
        "FIGURE", "VALUE", "UNIT", "BASELINE", "RATIO", "GOAL"
    );
    for f in figures {
        println!(
            "{:<44} {:>14.3} {:<8} {:>14.3} {:>8.3}  {:<28} {}",
            f.name,
            f.value,
            f.unit,
            f.baseline,
            f.ratio,
            f.goal,
            if f.met { "yes" } else { "NO" }
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut figures = Vec::new();
    let want = |name: &str| cli.only == "all" || cli.only.split(',').any(|o| o == name);
    if want("parse") {
        figures.extend(logs::parse_throughput(cli.quick)?);
    }
    if want("latency") {
        figures.extend(logs::milestone_latency(cli.quick).await?);
    }
    if want("failover") {
        figures.extend(failover::failover_time(cli.quick).await?);
    }
    if want("footprint") {
        figures.extend(scale::footprint(cli.quick).await?);
    }
    if want("apply") {
        figures.extend(scale::coordinator_apply(cli.quick).await?);
    }
    if want("probing") {
        figures.extend(probing::probing(cli.quick).await?);
    }
    if want("converge") {
        figures.extend(converge::converge(cli.quick).await?);
    }
    if want("storm") {
        figures.extend(storm::failover_storm(cli.quick).await?);
    }
    if want("events") {
        figures.extend(events::coordinator_events(cli.quick).await?);
    }
    if want("announce") {
        figures.extend(announce::announced_transitions(cli.quick).await?);
    }
    if want("activate") {
        figures.extend(scale::activation_rate(cli.quick).await?);
    }
    print_table(&figures);
    if let Some(dir) = cli.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.report, serde_json::to_string_pretty(&figures)?)?;
    println!("\nreport: {}", cli.report.display());
    Ok(())
}
