//! `supctl`: the operator's CLI for the SUP control plane. It talks gRPC to the coordinator.
//!
//! Exit codes: 0 success, 2 invalid input (each violation printed as `path: message [rule]`),
//! 1 any other failure.

mod diff;
mod events;
mod format;
mod health;
mod import;
mod offline;
mod output;
mod status;
mod table;
mod wait;

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

#[derive(Debug, Parser)]
#[command(
    name = "supctl",
    version,
    about = "Operate software update points across ConfigMgr 2007 sites"
)]
struct Cli {
    /// The coordinator's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "SUP_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    coordinator: String,
    /// The scheduler's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "SUP_SCHEDULER",
        default_value = "http://127.0.0.1:50052"
    )]
    scheduler: String,
    /// The health service's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "SUP_HEALTH",
        default_value = "http://127.0.0.1:50053"
    )]
    health: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// How long a change (apply, delete, add, remove, activate, sync run) is sent again while the
    /// service answers UNAVAILABLE, as during a NATS election; every attempt carries the same op
    /// id, so the change is made once. 0s sends it once.
    #[arg(long, global = true, env = "SUPCTL_RETRY_FOR", default_value = "30s", value_parser = parse_duration)]
    retry_for: Duration,
    #[command(subcommand)]
    command: Command,
}

/// TLS to the services: needed for `https://` endpoints; the certificate and key are for servers
/// that require client certificates (mutual TLS).
#[derive(Debug, Clone, Args)]
struct TlsArgs {
    /// The CA certificate (PEM) that signed the services' certificates.
    #[arg(long, global = true, env = "SUP_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for mutual TLS.
    #[arg(long, global = true, env = "SUP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// This client's private key (PEM), for mutual TLS.
    #[arg(long, global = true, env = "SUP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name the services' certificates must carry, when it is not the endpoint's host.
    #[arg(long, global = true, env = "SUP_TLS_DOMAIN")]
    tls_domain: Option<String>,
}

/// The TLS of this invocation, set once from the command line before any connection.
static TLS: std::sync::OnceLock<Option<tonic::transport::ClientTlsConfig>> =
    std::sync::OnceLock::new();

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum EventsFormat {
    Table,
    /// One line per event with its epoch and operation id.
    Wide,
    /// One JSON object per line.
    Json,
    /// One YAML document per event (the JSON object's values).
    Yaml,
    /// The event ids, one per line.
    Name,
    /// One CloudEvents JSON document per line.
    Cloudevents,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a site file and apply every site in it (nothing is applied if any rule is broken).
    Apply {
        /// The site file (TOML), `-` for standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Follow every role until it reaches its declared state.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 90s, 10m.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: Duration,
        /// Validate and show what would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// What applying a site file would change, field by field (`stored -> file`), against the
    /// sites the coordinator stores; nothing is changed.
    Diff {
        /// The site file (TOML), `-` for standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Check a site file against every rule `apply` checks, with no service running: exit 2 and
    /// each broken rule as `path: message [rule]`. A parent site the file does not declare is
    /// taken as applied (apply checks it).
    Validate {
        /// The site file (TOML), `-` for standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Print the shell completion script: `source <(supctl completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Each SUP server's WSUS health (the health service's last probe), or a probe now.
    Health(health::HealthArgs),
    /// Sites, active SUPs, roles and synchronization.
    Status(status::StatusArgs),
    /// Applied sites.
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Software update point roles: the wizard's steps.
    Sup {
        #[command(subcommand)]
        command: SupCommand,
    },
    /// Synchronization: "Run Synchronization" and the run history.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// ConfigMgr schedule tokens (the `Sync Schedule` of SMS_WSUS_SYNC_MANAGER).
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Print a site file for a live site, read through its SMS Provider over WinRM; applying it
    /// to the same site changes nothing.
    Import(import::ImportArgs),
    /// The event history (the audit trail), or live events with --follow.
    Events {
        #[arg(long)]
        site: Option<String>,
        /// Keep printing new events as they happen.
        #[arg(long)]
        follow: bool,
        /// Start at this stream sequence (default: the whole history, or now with --follow).
        #[arg(long, conflicts_with = "tail")]
        from: Option<u64>,
        /// Start this many events back from the last one stored (of every site; --site then
        /// filters them).
        #[arg(long)]
        tail: Option<u32>,
        /// table, wide, json, yaml, name, or cloudevents (one CloudEvents 1.0 JSON document per
        /// line, as published on sup.ce.<site>.<kind>).
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: EventsFormat,
    },
}

#[derive(Debug, Subcommand)]
enum SyncCommand {
    /// Run Synchronization on a site (the top site; child sites follow their parent).
    Run {
        #[arg(long)]
        site: String,
        /// A full synchronization (manual runs are delta by default).
        #[arg(long)]
        full: bool,
        /// Follow the run until it finishes; exit non-zero if it fails.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Past synchronization runs.
    History {
        #[arg(long)]
        site: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// Decode one or more concatenated 16-hex-digit tokens.
    Decode {
        token: String,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    /// Encode a token from JSON on standard input (one object or a list), or from flags.
    Encode {
        /// non_recurring, interval, weekly, monthly_by_weekday or monthly_by_date.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Start, local time YYYY-MM-DDTHH:MM:SS.
        #[arg(long, default_value = "1970-02-01T00:00:00")]
        start: String,
        #[arg(long)]
        is_gmt: bool,
        #[arg(long)]
        day_span: Option<u32>,
        #[arg(long)]
        hour_span: Option<u32>,
        #[arg(long)]
        minute_span: Option<u32>,
        /// 1 = Sunday … 7 = Saturday.
        #[arg(long)]
        weekday: Option<u32>,
        #[arg(long)]
        weeks: Option<u32>,
        /// 0 = last, 1-4.
        #[arg(long)]
        week_order: Option<u32>,
        #[arg(long)]
        months: Option<u32>,
        /// 0 = last day.
        #[arg(long)]
        month_day: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum SiteCommand {
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    Get {
        code: String,
        /// table, json, yaml, name, or toml (the site file, which `apply -f` takes back).
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: SiteFormat,
    },
    Delete {
        code: String,
    },
}

#[derive(Debug, Args)]
struct RoleArgs {
    /// Site code.
    #[arg(long)]
    site: String,
    /// The site system's intranet FQDN.
    #[arg(long)]
    server: String,
}

#[derive(Debug, Subcommand)]
enum SupCommand {
    /// Create the SUP role on a (new or existing) site system server.
    Add {
        #[command(flatten)]
        role: RoleArgs,
        /// WSUS web site HTTP port (80 default web site, 8530 custom web site).
        #[arg(long)]
        http_port: Option<u16>,
        /// WSUS web site HTTPS port (443 or 8531).
        #[arg(long)]
        https_port: Option<u16>,
        /// Require SSL between the site server and the SUP, and for clients.
        #[arg(long)]
        ssl: bool,
        /// Use a proxy server when synchronizing: HOST:PORT.
        #[arg(long)]
        proxy: Option<String>,
        /// The site system's Internet FQDN (for an Internet-based SUP).
        #[arg(long)]
        internet_fqdn: Option<String>,
        /// The active intranet SUP of a native-mode site accepts Internet-based clients too
        /// (needs --internet-fqdn; not with an active Internet-based SUP).
        #[arg(long)]
        allow_internet_clients: bool,
        /// The site server's computer account cannot install here: use an installation account.
        #[arg(long)]
        no_computer_account_access: bool,
        /// Site System Installation account, DOMAIN\user.
        #[arg(long)]
        install_account: Option<String>,
        /// Environment variable holding the installation account's password.
        #[arg(long)]
        install_password_env: Option<String>,
        /// File holding the installation account's password.
        #[arg(long)]
        install_password_file: Option<String>,
        /// Use this server as the active SUP once it is ready.
        #[arg(long)]
        active: bool,
        /// With --active: the active Internet-based SUP (native mode only).
        #[arg(long, requires = "active")]
        internet: bool,
    },
    /// Remove the SUP role from a server.
    Remove {
        #[command(flatten)]
        role: RoleArgs,
    },
    /// Make a server (or an NLB cluster) the active SUP of its site now.
    Activate {
        #[arg(long)]
        site: String,
        /// The server to activate.
        #[arg(long, required_unless_present = "nlb", conflicts_with = "nlb")]
        server: Option<String>,
        /// The NLB cluster (virtual FQDN) to activate.
        #[arg(long)]
        nlb: Option<String>,
        /// The Internet-based slot instead of the intranet one.
        #[arg(long)]
        internet: bool,
    },
}

/// A duration as people write them (`90s`, `10m`, `1h30m`, `2h 15m`, `500ms`); a bare number is
/// seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("\"{s}\" is too large"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("\"{s}\" is not a duration like 90s, 10m or 1h30m: {e}"))
}

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

async fn connect(endpoint: &str) -> Result<CoordinatorClient<TracedChannel>, Failure> {
    let channel = ready_channel(endpoint, "coordinator", "sup.v1.Coordinator").await?;
    Ok(CoordinatorClient::new(channel)
        .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES))
}

/// Connects and waits (a few seconds at most) until the service says it is serving: a service
/// that has just started accepts connections before it can answer.
async fn ready_channel(
    endpoint: &str,
    what: &str,
    service: &str,
) -> Result<TracedChannel, Failure> {
    let mut builder = Channel::from_shared(endpoint.to_string())
        .map_err(|e| invalid(format!("--{what} {endpoint}: {e}")))?
        .connect_timeout(Duration::from_secs(5));
    let https = endpoint.starts_with("https://");
    match (TLS.get().and_then(Option::as_ref), https) {
        (Some(tls), true) => {
            builder = builder
                .tls_config(tls.clone())
                .map_err(|e| invalid(format!("--{what} {endpoint}: {e}")))?;
        }
        (None, true) => {
            return Err(invalid(format!(
                "--{what} {endpoint} is https: give --tls-ca (or SUP_TLS_CA), the CA that signed its certificate"
            )));
        }
        (Some(_), false) => {
            return Err(invalid(format!(
                "--tls-ca is given but --{what} {endpoint} is not https://; use https://"
            )));
        }
        (None, false) => {}
    }
    let channel = builder
        .connect()
        .await
        .with_context(|| format!("connecting to the {what} at {endpoint}"))?;
    let channel = TracedChannel::new(channel);
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    for _ in 0..40 {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            })
            .await;
        match answer {
            Ok(r) if r.get_ref().status == serving => return Ok(channel),
            // A server without the health service: nothing to wait for.
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(channel),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    Err(Failure {
        code: 1,
        message: format!(
            "the {what} at {endpoint} accepts connections but is not serving; see its logs"
        ),
    })
}

fn op_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `--retry-for`, set once at start.
static RETRY_FOR: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

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

/// [`send`] with `--retry-for`.
async fn change<Req: Clone, T, Fut>(
    request: Req,
    call: impl FnMut(Req) -> Fut,
) -> Result<T, tonic::Status>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    send(request, RETRY_FOR.get().copied().unwrap_or_default(), call).await
}

async fn run(cli: Cli) -> Result<(), Failure> {
    RETRY_FOR.get_or_init(|| cli.retry_for);
    let tls = match &cli.tls.tls_ca {
        Some(ca) => Some(
            sup_runtime::ClientTls {
                ca_file: ca.clone(),
                cert_file: cli.tls.tls_cert.clone(),
                key_file: cli.tls.tls_key.clone(),
                domain: cli.tls.tls_domain.clone(),
            }
            .tonic()
            .map_err(|e| invalid(format!("{e:#}")))?,
        ),
        None => None,
    };
    let _ = TLS.set(tls);
    match cli.command {
        Command::Apply {
            file,
            wait,
            timeout,
            dry_run,
        } => apply(&cli.coordinator, &file, wait, timeout, dry_run).await,
        Command::Import(args) => import::import(&cli.coordinator, &args).await,
        Command::Validate { file } => offline::validate(&file),
        Command::Diff { file } => diff::diff(&cli.coordinator, &file).await,
        Command::Health(args) => health::health(&cli.health, args).await,
        Command::Completion { shell } => offline::completion(shell),
        Command::Status(args) => status::status(&cli.coordinator, args).await,
        Command::Site { command } => {
            let mut c = connect(&cli.coordinator).await?;
            match command {
                SiteCommand::List { output } => {
                    let sites = c
                        .list_sites(v1::ListSitesRequest {})
                        .await?
                        .into_inner()
                        .sites;
                    let names: Vec<String> = sites.iter().map(|s| s.code.clone()).collect();
                    format::print(output, &output::sites_json(&sites), &names, |wide| {
                        output::sites_table(&sites, wide)
                    })?;
                }
                SiteCommand::Get { code, output } => {
                    let site = c.get_site(v1::GetSiteRequest { code }).await?.into_inner();
                    let names = [site.code.clone()];
                    let json = output::site_json(&site);
                    match output {
                        SiteFormat::Toml => print!("{}", output::site_toml(&site)),
                        SiteFormat::Table => print!("{}", output::site_table(&site, false)),
                        SiteFormat::Wide => print!("{}", output::site_table(&site, true)),
                        SiteFormat::Json => {
                            format::print(Format::Json, &json, &names, |_| String::new())?
                        }
                        SiteFormat::Yaml => {
                            format::print(Format::Yaml, &json, &names, |_| String::new())?
                        }
                        SiteFormat::Name => {
                            format::print(Format::Name, &json, &names, |_| String::new())?
                        }
                    }
                }
                SiteCommand::Delete { code } => {
                    change(
                        v1::DeleteSiteRequest {
                            code: code.clone(),
                            op_id: op_id(),
                        },
                        |r| {
                            let mut c = c.clone();
                            async move { c.delete_site(r).await }
                        },
                    )
                    .await?;
                    println!("site {code} deleted; its roles are being removed");
                }
            }
            Ok(())
        }
        Command::Sup { command } => sup(&cli.coordinator, command).await,
        Command::Schedule { command } => schedule(command),
        Command::Sync { command } => sync(&cli.scheduler, command).await,
        Command::Events {
            site,
            follow,
            from,
            tail,
            output,
        } => {
            let mut c = connect(&cli.coordinator).await?;
            let mut stream = c
                .watch_events(v1::WatchEventsRequest {
                    site: site.unwrap_or_default(),
                    from_sequence: from.unwrap_or(0),
                    follow,
                    tail: tail.unwrap_or(0),
                })
                .await?
                .into_inner();
            while let Some(w) = stream.message().await? {
                match output {
                    EventsFormat::Json => println!("{}", events::json(&w)),
                    EventsFormat::Yaml => print!("---\n{}", format::yaml(&events::json(&w))?),
                    EventsFormat::Name => {
                        println!("{}", w.event.as_ref().map(|e| e.id.as_str()).unwrap_or(""))
                    }
                    EventsFormat::Table => println!("{}", events::line(&w)),
                    EventsFormat::Wide => println!("{}", events::wide_line(&w)),
                    EventsFormat::Cloudevents => {
                        if let Some(e) = &w.event {
                            println!("{}", sup_proto::cloudevent::cloud_event(e, None));
                        }
                    }
                }
            }
            Ok(())
        }
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
    endpoint: &str,
    file: &std::path::Path,
    wait: bool,
    timeout: Duration,
    dry_run: bool,
) -> Result<(), Failure> {
    let text = offline::read_site_file(file)?;
    let mut c = connect(endpoint).await?;
    let (sites, _) = validate_against_stored(&mut c, &text).await?;
    let resp = change(
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

async fn sup(endpoint: &str, command: SupCommand) -> Result<(), Failure> {
    match command {
        SupCommand::Add {
            role,
            http_port,
            https_port,
            ssl,
            proxy,
            internet_fqdn,
            allow_internet_clients,
            no_computer_account_access,
            install_account,
            install_password_env,
            install_password_file,
            active,
            internet,
        } => {
            let proxy = match proxy {
                Some(p) => {
                    let (host, port) = p
                        .rsplit_once(':')
                        .ok_or_else(|| invalid(format!("--proxy {p}: expected HOST:PORT")))?;
                    let port: u32 = port
                        .parse()
                        .map_err(|_| invalid(format!("--proxy {p}: {port} is not a port")))?;
                    Some(v1::Proxy {
                        server: host.to_string(),
                        port,
                        ..Default::default()
                    })
                }
                None => None,
            };
            let password = match (install_password_env, install_password_file) {
                (Some(e), None) => Some(v1::secret_ref::Source::Env(e)),
                (None, Some(f)) => Some(v1::secret_ref::Source::File(f)),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "give --install-password-env or --install-password-file, not both",
                    ));
                }
            };
            let slot = match (active, internet) {
                (true, true) => v1::Slot::Internet,
                (true, false) => v1::Slot::Intranet,
                _ => v1::Slot::Unspecified,
            };
            let c = connect(endpoint).await?;
            let status = change(
                v1::AddRoleRequest {
                    site: role.site.clone(),
                    site_system: Some(v1::SiteSystem {
                        server: role.server.clone(),
                        internet_fqdn: internet_fqdn.unwrap_or_default(),
                        computer_account_access: Some(!no_computer_account_access),
                        install_account: install_account.unwrap_or_default(),
                        install_password: password.map(|p| v1::SecretRef { source: Some(p) }),
                    }),
                    role: Some(v1::SoftwareUpdatePoint {
                        server: role.server.clone(),
                        active: slot as i32,
                        http_port: http_port.map(u32::from).unwrap_or(0),
                        https_port: https_port.map(u32::from).unwrap_or(0),
                        ssl,
                        proxy,
                        allow_internet_clients,
                    }),
                    op_id: op_id(),
                },
                |r| {
                    let mut c = c.clone();
                    async move { c.add_role(r).await }
                },
            )
            .await?;
            println!(
                "{} {}: software update point {}",
                role.site,
                role.server,
                output::state_name(status.state)
            );
            Ok(())
        }
        SupCommand::Remove { role } => {
            let c = connect(endpoint).await?;
            let status = change(
                v1::RemoveRoleRequest {
                    site: role.site.clone(),
                    server: role.server.clone(),
                    op_id: op_id(),
                },
                |r| {
                    let mut c = c.clone();
                    async move { c.remove_role(r).await }
                },
            )
            .await?;
            println!(
                "{} {}: {}",
                role.site,
                role.server,
                output::state_name(status.state)
            );
            Ok(())
        }
        SupCommand::Activate {
            site,
            server,
            nlb,
            internet,
        } => {
            let target = server
                .or(nlb)
                .ok_or_else(|| invalid("give --server or --nlb"))?;
            let c = connect(endpoint).await?;
            let slot = if internet {
                v1::Slot::Internet
            } else {
                v1::Slot::Intranet
            };
            let a = change(
                v1::SetActiveRequest {
                    site: site.clone(),
                    slot: slot as i32,
                    target,
                    op_id: op_id(),
                },
                |r| {
                    let mut c = c.clone();
                    async move { c.set_active(r).await }
                },
            )
            .await?;
            println!(
                "{site}: {} is the active {} SUP (epoch {})",
                a.target,
                if internet {
                    "Internet-based"
                } else {
                    "intranet"
                },
                a.epoch
            );
            Ok(())
        }
    }
}

fn schedule(command: ScheduleCommand) -> Result<(), Failure> {
    use sup_core::token::{self, Token, TokenJson};
    match command {
        ScheduleCommand::Decode {
            token: text,
            output,
        } => {
            let tokens = token::decode(&text).map_err(|e| invalid(e.to_string()))?;
            let json: Vec<TokenJson> = tokens.iter().map(TokenJson::from).collect();
            let text_json = if json.len() == 1 {
                serde_json::to_string(&json[0])
            } else {
                serde_json::to_string(&json)
            }
            .map_err(|e| anyhow::anyhow!(e))?;
            let names: Vec<String> = text
                .trim()
                .as_bytes()
                .chunks(16)
                .map(|c| String::from_utf8_lossy(c).to_uppercase())
                .collect();
            format::print(output, &text_json, &names, |_| {
                let mut out = String::new();
                for j in &json {
                    let mut fields = vec![format!("type={}", j.kind), format!("start={}", j.start)];
                    for (k, v) in [
                        ("day_span", j.day_span),
                        ("hour_span", j.hour_span),
                        ("minute_span", j.minute_span),
                        ("weekday", j.weekday),
                        ("weeks", j.weeks),
                        ("week_order", j.week_order),
                        ("months", j.months),
                        ("month_day", j.month_day),
                    ] {
                        if let Some(v) = v {
                            fields.push(format!("{k}={v}"));
                        }
                    }
                    if j.is_gmt {
                        fields.push("is_gmt=true".into());
                    }
                    if j.day_duration + j.hour_duration + j.minute_duration > 0 {
                        fields.push(format!(
                            "duration={}d{}h{}m",
                            j.day_duration, j.hour_duration, j.minute_duration
                        ));
                    }
                    out.push_str(&fields.join(" "));
                    out.push('\n');
                }
                out
            })?;
            Ok(())
        }
        ScheduleCommand::Encode {
            kind,
            start,
            is_gmt,
            day_span,
            hour_span,
            minute_span,
            weekday,
            weeks,
            week_order,
            months,
            month_day,
        } => {
            let json: Vec<TokenJson> = match kind {
                Some(kind) => vec![TokenJson {
                    kind,
                    start,
                    is_gmt,
                    day_duration: 0,
                    hour_duration: 0,
                    minute_duration: 0,
                    day_span,
                    hour_span,
                    minute_span,
                    weekday,
                    weeks,
                    week_order,
                    months,
                    month_day,
                    unused_bits: 0,
                }],
                None => {
                    let text = std::io::read_to_string(std::io::stdin())
                        .context("reading JSON from standard input")?;
                    let value: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| invalid(format!("standard input is not JSON: {e}")))?;
                    let list = match value {
                        serde_json::Value::Array(items) => items,
                        other => vec![other],
                    };
                    list.into_iter()
                        .map(|v| {
                            serde_json::from_value::<TokenJson>(v)
                                .map_err(|e| invalid(format!("schedule JSON: {e}")))
                        })
                        .collect::<Result<_, _>>()?
                }
            };
            let tokens: Vec<Token> = json
                .iter()
                .map(Token::try_from)
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(e.to_string()))?;
            println!(
                "{}",
                token::encode(&tokens).map_err(|e| invalid(e.to_string()))?
            );
            Ok(())
        }
    }
}

use sup_proto::convert::sync_state_name as sync_state;

fn run_json(r: &v1::SyncRun) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "site": r.site, "server": r.server, "state": sync_state(r.state),
        "trigger": r.trigger, "full": r.full, "epoch": r.epoch, "updates": r.updates,
        "started": output::time(r.started.as_ref()), "finished": output::time(r.finished.as_ref()),
        "error": if r.error.is_empty() { serde_json::Value::Null } else { r.error.clone().into() },
    })
}

async fn sync(endpoint: &str, command: SyncCommand) -> Result<(), Failure> {
    use sup_proto::v1::scheduler_client::SchedulerClient;
    let channel = ready_channel(endpoint, "scheduler", "sup.v1.Scheduler").await?;
    let mut c = SchedulerClient::new(channel)
        .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES);
    match command {
        SyncCommand::Run {
            site,
            full,
            wait,
            timeout,
        } => {
            let run = change(
                v1::RunSyncRequest {
                    site: site.clone(),
                    op_id: op_id(),
                    full,
                },
                |r| {
                    let mut c = c.clone();
                    async move { c.run_sync(r).await }
                },
            )
            .await?;
            println!(
                "{site}: {} synchronization {} started on {} (epoch {})",
                if full { "full" } else { "delta" },
                run.id,
                if run.server.is_empty() {
                    "-"
                } else {
                    &run.server
                },
                run.epoch
            );
            if !wait {
                return Ok(());
            }
            let deadline = Instant::now() + timeout;
            let mut last = String::new();
            loop {
                let runs = c
                    .list_sync_runs(v1::ListSyncRunsRequest {
                        site: site.clone(),
                        limit: 50,
                    })
                    .await?
                    .into_inner()
                    .runs;
                for r in runs.iter().filter(|r| r.id == run.id) {
                    let state = sync_state(r.state).to_string();
                    if state != last {
                        println!(
                            "{}  {state}{}",
                            r.id,
                            if r.error.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", r.error)
                            }
                        );
                        last = state.clone();
                    }
                    match r.state {
                        x if x == v1::SyncState::Succeeded as i32 => return Ok(()),
                        x if x == v1::SyncState::Failed as i32 => {
                            return Err(Failure {
                                code: 1,
                                message: format!("synchronization failed: {}", r.error),
                            });
                        }
                        _ => {}
                    }
                }
                if Instant::now() > deadline {
                    return Err(Failure {
                        code: 1,
                        message: "timed out waiting for the synchronization".into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        SyncCommand::History {
            site,
            limit,
            output,
        } => {
            let runs = c
                .list_sync_runs(v1::ListSyncRunsRequest { site, limit })
                .await?
                .into_inner()
                .runs;
            let json = serde_json::Value::Array(runs.iter().map(run_json).collect()).to_string();
            let names: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
            format::print(output, &json, &names, |wide| {
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        let mut row = vec![
                            r.id.clone(),
                            sync_state(r.state).to_string(),
                            r.trigger.clone(),
                            r.full.to_string(),
                            output::time(r.started.as_ref()).unwrap_or_default(),
                            output::time(r.finished.as_ref()).unwrap_or_default(),
                            r.server.clone(),
                            r.error.clone(),
                        ];
                        if wide {
                            row.extend([
                                r.site.clone(),
                                r.epoch.to_string(),
                                r.updates.to_string(),
                            ]);
                        }
                        row
                    })
                    .collect();
                let mut header = vec![
                    "RUN", "STATE", "TRIGGER", "FULL", "STARTED", "FINISHED", "SERVER", "ERROR",
                ];
                if wide {
                    header.extend(["SITE", "EPOCH", "UPDATES"]);
                }
                table::render(&header, &rows, "")
            })?;
            Ok(())
        }
    }
}

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
