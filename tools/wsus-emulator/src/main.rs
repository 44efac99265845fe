use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wsus_emulator::{Config, ServerDefaults, Timing, bind_all, control, parse_server_spec, run};

/// A loopback stand-in for ConfigMgr 2007 site systems with WSUS 3.0.
///
/// One process emulates any number of servers. Their WSUS web sites answer on the --http (and
/// --https) listeners, chosen by the HTTP Host header (point the names at the listener with a
/// resolver override, e.g. the health service's table); the site-system agent (gRPC) answers on
/// --agent for all of them; each server's logs are written under <logs>/<server>/Logs. Servers
/// are learned from agent calls and requests, or listed with --server.
///
/// Example: wsus-emulator run --http 127.0.0.1:8530 --agent 127.0.0.1:7700 --control 127.0.0.1:7701
///   --logs .run/logs --server cen-sup01.corp.example.com --site-server CEN=cen-site.corp.example.com
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; the size of the `run` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the emulator.
    #[command(args_override_self = true)]
    Run {
        /// WSUS web site listener (HTTP); repeatable.
        #[arg(long = "http", default_value = "127.0.0.1:8530")]
        http: Vec<SocketAddr>,
        /// WSUS web site listener (HTTPS, a certificate per server name); repeatable.
        #[arg(long = "https")]
        https: Vec<SocketAddr>,
        /// Write the emulator CA certificate (PEM) here, for HTTPS clients to trust.
        #[arg(long)]
        ca_out: Option<PathBuf>,
        /// Site-system agent (gRPC) listener.
        #[arg(long, default_value = "127.0.0.1:7700")]
        agent: SocketAddr,
        /// The agent's TLS certificate (PEM); with --agent-tls-key the agent speaks gRPC over TLS.
        #[arg(long, requires = "agent_tls_key")]
        agent_tls_cert: Option<PathBuf>,
        /// The agent's TLS private key (PEM).
        #[arg(long, requires = "agent_tls_cert")]
        agent_tls_key: Option<PathBuf>,
        /// Require agent clients to present a certificate signed by this CA (mutual TLS).
        #[arg(long, requires = "agent_tls_cert")]
        agent_client_ca: Option<PathBuf>,
        /// Control API listener (fault injection).
        #[arg(long, env = "WSUS_EMULATOR_CONTROL", default_value = "127.0.0.1:7701")]
        control: SocketAddr,
        /// Root of the emulated servers' log folders.
        #[arg(long, default_value = "wsus-emulator-logs")]
        logs: PathBuf,
        /// A server known up front: NAME[:HTTP_PORT[:HTTPS_PORT]]; repeatable.
        #[arg(long = "server")]
        servers: Vec<String>,
        /// Only the --server names answer on HTTP; other hosts get IIS's 400.
        #[arg(long)]
        strict_hosts: bool,
        /// The site server of a site, SITE=FQDN: its folder gets WCM.log and wsyncmgr.log.
        #[arg(long = "site-server")]
        site_servers: Vec<String>,
        /// Default WSUS ports of learned servers: HTTP,HTTPS.
        #[arg(long, default_value = "8530,8531")]
        default_ports: String,
        /// Time-zone bias of the servers, minutes (UTC = local + bias).
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        tz_bias: i32,
        /// Time between steps of setup, configuration and synchronization.
        #[arg(long, default_value_t = 50)]
        step_ms: u64,
        /// How often the WSUS health lines are written.
        #[arg(long, default_value_t = 5000)]
        health_interval_ms: u64,
        /// Delay of the `slow` fault.
        #[arg(long, default_value_t = 3000)]
        slow_ms: u64,
        /// Logs rotate to .lo_ past this size (ConfigMgr's default is 250,000 bytes).
        #[arg(long, default_value_t = 250_000)]
        max_log_size: u64,
    },
    /// Talk to a running emulator's control API.
    Ctl {
        /// The control address.
        #[arg(long, env = "WSUS_EMULATOR_CONTROL", default_value = "127.0.0.1:7701")]
        control: String,
        #[command(subcommand)]
        command: Ctl,
    },
}

#[derive(Debug, Subcommand)]
enum Ctl {
    /// Inject a fault: down, slow, html-error, db-down, no-wsus, install-fails, sync-fails.
    Fault { server: String, kind: String },
    /// Clear every fault of a server: back to healthy.
    Clear { server: String },
    /// The emulated servers and their state, as JSON.
    List,
    /// The agent's fenced commands (configure, start_sync) in decision order, as JSON.
    Journal,
}

#[tokio::main]
async fn main() -> ExitCode {
    match real_main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsus-emulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ctl { control, command } => {
            let (method, path) = match &command {
                Ctl::Fault { server, kind } => {
                    (reqwest::Method::POST, format!("/faults/{server}/{kind}"))
                }
                Ctl::Clear { server } => (reqwest::Method::DELETE, format!("/faults/{server}")),
                Ctl::List => (reqwest::Method::GET, "/servers".to_string()),
                Ctl::Journal => (reqwest::Method::GET, "/journal".to_string()),
            };
            print!("{}", control::client(&control, method, &path).await?);
            if matches!(command, Ctl::List | Ctl::Journal) {
                println!();
            }
            Ok(())
        }
        Command::Run {
            http,
            https,
            ca_out,
            agent,
            agent_tls_cert,
            agent_tls_key,
            agent_client_ca,
            control,
            logs,
            servers,
            strict_hosts,
            site_servers,
            default_ports,
            tz_bias,
            step_ms,
            health_interval_ms,
            slow_ms,
            max_log_size,
        } => {
            let telemetry =
                sup_runtime::Telemetry::init("wsus-emulator", sup_runtime::LogFormat::Pretty)?;
            let (dh, ds) = default_ports
                .split_once(',')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                .ok_or_else(|| {
                    anyhow::anyhow!("--default-ports {default_ports}: expected HTTP,HTTPS")
                })?;
            let mut known = Vec::new();
            for s in &servers {
                let (name, h, t) = parse_server_spec(s)?;
                known.push((name, h, t, None));
            }
            let mut sites = std::collections::BTreeMap::new();
            for s in &site_servers {
                let (site, server) = s
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--site-server {s}: expected SITE=FQDN"))?;
                sites.insert(site.to_string(), server.to_ascii_lowercase());
            }
            let config = Config {
                http: bind_all(&http).await?,
                https: bind_all(&https).await?,
                agent: Some(bind_all(&[agent]).await?.remove(0)),
                agent_tls: match (agent_tls_cert, agent_tls_key) {
                    (Some(cert_file), Some(key_file)) => Some(sup_runtime::ServerTls {
                        cert_file,
                        key_file,
                        client_ca_file: agent_client_ca,
                    }),
                    _ => None,
                },
                control: Some(bind_all(&[control]).await?.remove(0)),
                logs_root: logs,
                max_log_size,
                timing: Timing {
                    step_ms,
                    health_interval_ms,
                    slow_ms,
                },
                defaults: ServerDefaults {
                    http_port: dh,
                    https_port: ds,
                    bias: tz_bias,
                },
                servers: known,
                site_servers: sites,
                ca_out,
                strict_hosts,
            };
            let result = run(config, sup_runtime::shutdown_signal()).await;
            telemetry.shutdown();
            result
        }
    }
}
