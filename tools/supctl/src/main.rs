//! `supctl`: the operator's CLI for the SUP control plane. It talks gRPC to the coordinator.
//!
//! Exit codes: 0 success, 2 invalid input (each violation printed as `path: message [rule]`),
//! 1 any other failure.

mod cli;
mod context;
mod diff;
mod events;
mod format;
mod health;
mod import;
mod offline;
mod output;
mod schedule;
mod site;
mod status;
mod sup;
mod sync;
mod table;
mod wait;

use cli::*;
use context::Context;
use schedule::schedule;
use sup::sup;
use sync::sync;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use format::{Format, SiteFormat};
use sup_proto::convert;
use sup_proto::v1::{self, coordinator_client::CoordinatorClient};
use sup_runtime::TracedChannel;
use tonic::transport::Channel;
use tracing::Instrument as _;

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        let code = if s.code() == tonic::Code::InvalidArgument {
            2
        } else {
            1
        };
        let message = match s.code() {
            tonic::Code::InvalidArgument => s.message().to_string(),
            tonic::Code::Unavailable => format!("coordinator unavailable: {}", s.message()),
            other => format!("{}: {}", other.description(), s.message()),
        };
        Failure { code, message }
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Spans are exported when OTEL_EXPORTER_OTLP_ENDPOINT is set; the trace context always
    // travels in the gRPC metadata, so one command is one trace across the services.
    let telemetry = match sup_runtime::Telemetry::init_cli("supctl") {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: tracing is off: {e:#}");
            None
        }
    };
    let name = format!("supctl {}", matches.subcommand_name().unwrap_or("help"));
    let span = tracing::info_span!("supctl", otel.name = %name, otel.kind = "client");
    let result = run(cli).instrument(span).await;
    if let Some(t) = telemetry {
        t.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            for line in f.message.lines() {
                eprintln!("{line}");
            }
            ExitCode::from(f.code)
        }
    }
}

fn op_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Sends a change, and sends the same request again (so the same op id: the service acts once)
/// while the service answers UNAVAILABLE, with a growing pause, for `retry_for` in all.
async fn send<Req: Clone, T, Fut>(
    request: Req,
    retry_for: Duration,
    mut call: impl FnMut(Req) -> Fut,
) -> Result<T, tonic::Status>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + retry_for;
    let mut pause = Duration::from_millis(250);
    loop {
        match call(request.clone()).await {
            Ok(answer) => return Ok(answer.into_inner()),
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() + pause < deadline => {
                eprintln!(
                    "unavailable ({}); sending again with the same op id",
                    s.message()
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(4));
            }
            Err(s) => return Err(s),
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Context::from_cli(&cli)?;
    match cli.command {
        Command::Apply {
            file,
            wait,
            timeout,
            dry_run,
        } => apply(&ctx, &file, wait, timeout, dry_run).await,
        Command::Import(args) => import::import(&ctx, &args).await,
        Command::Validate { file } => offline::validate(&file),
        Command::Diff { file } => diff::diff(&ctx, &file).await,
        Command::Health(args) => health::health(&ctx, args).await,
        Command::Completion { shell } => offline::completion(shell),
        Command::Status(args) => status::status(&ctx, args).await,
        Command::Site { command } => site::site(&ctx, command).await,
        Command::Sup { command } => sup(&ctx, command).await,
        Command::Schedule { command } => schedule(command),
        Command::Sync { command } => sync(&ctx, command).await,
        Command::Events {
            site,
            follow,
            from,
            tail,
            output,
        } => events::watch(&ctx, site, follow, from, tail, output).await,
    }
}

/// Validates a site file here, against the sites already applied (whose parents a child may
/// name), so errors come without a round trip; returns the file's sites and the stored ones.
async fn validate_against_stored(
    c: &mut CoordinatorClient<TracedChannel>,
    text: &str,
) -> Result<(Vec<sup_core::model::Site>, Vec<v1::Site>), Failure> {
    let stored = c
        .list_sites(v1::ListSitesRequest {})
        .await?
        .into_inner()
        .sites;
    let known: BTreeMap<String, Option<String>> = stored
        .iter()
        .map(|s| {
            (
                s.code.clone(),
                (!s.parent.is_empty()).then(|| s.parent.clone()),
            )
        })
        .collect();
    let sites = sup_core::spec::load_site_file(text, &known).map_err(|v| invalid(v.to_string()))?;
    Ok((sites, stored))
}

async fn apply(
    ctx: &Context,
    file: &std::path::Path,
    wait: bool,
    timeout: Duration,
    dry_run: bool,
) -> Result<(), Failure> {
    let text = offline::read_site_file(file)?;
    let mut c = ctx.coordinator().await?;
    let (sites, _) = validate_against_stored(&mut c, &text).await?;
    let resp = ctx
        .change(
            v1::ApplySitesRequest {
                sites: sites.iter().map(convert::site_to_proto).collect(),
                op_id: op_id(),
                dry_run,
            },
            |r| {
                let mut c = c.clone();
                async move { c.apply_sites(r).await }
            },
        )
        .await?;
    for r in &resp.results {
        let code = r.site.as_ref().map(|s| s.code.as_str()).unwrap_or("?");
        if r.changed {
            let verb = if dry_run { "would change" } else { "changed" };
            println!("site {code}: {verb}");
            for change in &r.changes {
                println!("  - {change}");
            }
        } else {
            println!("site {code}: no changes");
        }
    }
    if wait && !dry_run {
        let codes: Vec<String> = sites.iter().map(|s| s.code.clone()).collect();
        wait::wait_for_roles(&mut c, &codes, timeout).await?;
    }
    Ok(())
}

use sup_proto::convert::sync_state_name as sync_state;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        for (text, secs) in [
            ("90s", 90),
            ("10m", 600),
            ("1h30m", 5400),
            ("2h 15m", 8100),
            ("45", 45),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "soon", "10 parsecs", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// A call that answers with `answers` in turn, counting the attempts and the op ids sent.
    async fn attempts(
        answers: Vec<tonic::Code>,
        retry_for: Duration,
    ) -> (Result<u8, tonic::Code>, Vec<String>) {
        let sent = std::sync::Mutex::new(Vec::new());
        let result = send(
            v1::SetActiveRequest {
                op_id: "op-1".into(),
                ..Default::default()
            },
            retry_for,
            |r: v1::SetActiveRequest| {
                let n = {
                    let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
                    sent.push(r.op_id);
                    sent.len()
                };
                let code = answers.get(n - 1).copied().unwrap_or(tonic::Code::Ok);
                async move {
                    match code {
                        tonic::Code::Ok => Ok(tonic::Response::new(n as u8)),
                        code => Err(tonic::Status::new(code, "no")),
                    }
                }
            },
        )
        .await
        .map_err(|s| s.code());
        (result, sent.into_inner().unwrap_or_default())
    }

    #[tokio::test]
    async fn an_unavailable_change_is_sent_again_with_the_same_op_id() {
        use tonic::Code::Unavailable;
        let (result, sent) =
            attempts(vec![Unavailable, Unavailable], Duration::from_secs(30)).await;
        assert_eq!(result, Ok(3));
        assert_eq!(sent, vec!["op-1"; 3]);
    }

    #[tokio::test]
    async fn other_refusals_and_a_zero_retry_time_are_answered_at_once() {
        let (result, sent) = attempts(vec![tonic::Code::Aborted], Duration::from_secs(30)).await;
        assert_eq!((result, sent.len()), (Err(tonic::Code::Aborted), 1));
        let (result, sent) = attempts(vec![tonic::Code::Unavailable], Duration::ZERO).await;
        assert_eq!((result, sent.len()), (Err(tonic::Code::Unavailable), 1));
    }
}
