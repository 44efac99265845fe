//! The command line: every command, its flags and their help.

use super::*;

#[derive(Debug, Parser)]
#[command(
    name = "supctl",
    version,
    about = "Operate software update points across ConfigMgr 2007 sites"
)]
pub(crate) struct Cli {
    /// The coordinator's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "SUP_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub(crate) coordinator: String,
    /// The scheduler's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "SUP_SCHEDULER",
        default_value = "http://127.0.0.1:50052"
    )]
    pub(crate) scheduler: String,
    /// The health service's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "SUP_HEALTH",
        default_value = "http://127.0.0.1:50053"
    )]
    pub(crate) health: String,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// How long a change (apply, delete, add, remove, activate, sync run) is sent again while the
    /// service answers UNAVAILABLE, as during a NATS election; every attempt carries the same op
    /// id, so the change is made once. 0s sends it once.
    #[arg(long, global = true, env = "SUPCTL_RETRY_FOR", default_value = "30s", value_parser = parse_duration)]
    pub(crate) retry_for: Duration,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// TLS to the services: needed for `https://` endpoints; the certificate and key are for servers
/// that require client certificates (mutual TLS).
#[derive(Debug, Clone, Args)]
pub(crate) struct TlsArgs {
    /// The CA certificate (PEM) that signed the services' certificates.
    #[arg(long, global = true, env = "SUP_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for mutual TLS.
    #[arg(long, global = true, env = "SUP_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// This client's private key (PEM), for mutual TLS.
    #[arg(long, global = true, env = "SUP_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The name the services' certificates must carry, when it is not the endpoint's host.
    #[arg(long, global = true, env = "SUP_TLS_DOMAIN")]
    pub(crate) tls_domain: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum EventsFormat {
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
pub(crate) enum Command {
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
pub(crate) enum SyncCommand {
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
pub(crate) enum ScheduleCommand {
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
pub(crate) enum SiteCommand {
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
pub(crate) struct RoleArgs {
    /// Site code.
    #[arg(long)]
    pub(crate) site: String,
    /// The site system's intranet FQDN.
    #[arg(long)]
    pub(crate) server: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SupCommand {
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
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
