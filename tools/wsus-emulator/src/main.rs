use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wsus_emulator::{
    Config, ServerDefaults, SiteListener, Timing, bind_all, bound_port, control, parse_server_spec,
    run, site_file_setup,
};

/// A loopback stand-in for ConfigMgr 2007 site systems with WSUS 3.0.
///
/// One process emulates any number of servers. Their WSUS web sites answer on the --http (and
/// --https) listeners, chosen by the HTTP Host header (point the names at the listener with a
/// resolver override, e.g. the health service's table); the site-system agent (gRPC) answers on
/// --agent for all of them; each server's logs are written under <logs>/<server>/Logs. Servers
/// are learned from agent calls and requests, or listed with --server.
///
/// With --site-file, every SUP of the file is set up as declared (its WSUS web site on its ports,
/// 80/443 when left out, requiring SSL when `ssl = true`), each site's site server is known, and
/// a listener is bound for every declared port (ports below 1024 at port + --low-port-offset).
///
/// Example: wsus-emulator run --http 127.0.0.1:8530 --agent 127.0.0.1:7700 --control 127.0.0.1:7701
///   --logs .run/logs --server cen-sup01.corp.example.com --site-server CEN=cen-site.corp.example.com
///
///   wsus-emulator run --site-file site.toml --low-port-offset 18000 --logs .run/sites
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
        /// WSUS web site listener (HTTP) for any server; repeatable. Default 127.0.0.1:8530
        /// unless --site-file gives the ports.
        #[arg(long = "http")]
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
        /// A server known up front: NAME[:HTTP_PORT[:HTTPS_PORT[:ssl]]]; repeatable. With `ssl`
        /// its web services answer only over HTTPS.
        #[arg(long = "server")]
        servers: Vec<String>,
        /// Stand in for every server of this site file, set up as it declares them.
        #[arg(long)]
        site_file: Option<PathBuf>,
        /// The address the --site-file listeners are bound on.
        #[arg(long, default_value = "127.0.0.1")]
        listen_ip: std::net::IpAddr,
        /// Bind declared ports below 1024 at port + this offset (80 at 18080 with 18000), for a
        /// process that may not bind them; probe them through the health service's port_map.
        #[arg(long)]
        low_port_offset: Option<u16>,
        /// Write where each --site-file port is bound, as TOML lines `"80" = 18080`, for the
        /// health service's [port_map].
        #[arg(long, requires = "site_file")]
        port_map_out: Option<PathBuf>,
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
        /// The SMS Provider's WinRM listener over HTTP (every message sealed, as WinRM requires
        /// by default), e.g. 127.0.0.1:5985; it serves each site of --site-file / --site-server.
        #[arg(long)]
        provider_http: Option<SocketAddr>,
        /// The SMS Provider's WinRM listener over HTTPS (a certificate per host name from the
        /// emulator CA, see --ca-out), e.g. 127.0.0.1:5986.
        #[arg(long)]
        provider_https: Option<SocketAddr>,
        /// The lab account the SMS Provider accepts, DOMAIN\user; its password is read from
        /// WSUS_EMULATOR_PROVIDER_PASSWORD.
        #[arg(long, default_value = "LAB\\sup-provider")]
        provider_user: String,
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
    /// Set the WSUS version a server reports (e.g. 3.0.6000.374, before SP1, fails the SUP's
    /// prerequisite check).
    Version { server: String, version: String },
    /// The emulated servers and their state, as JSON.
    List,
    /// The agent's fenced commands (configure, start_sync) in decision order, as JSON.
    Journal,
    /// Every commit of the SMS Provider's site control files, in order, as JSON.
    ProviderJournal,
    /// Change a committed component setting behind the control plane's back, as an
    /// administrator in the console would: SITE COMPONENT PROPERTY value|value1|value2 VALUE
    /// (e.g. CEN SMS_WSUS_CONFIGURATION_MANAGER ClientReportingLevel value 0).
    ProviderSet {
        site: String,
        component: String,
        property: String,
        slot: String,
        value: String,
    },
}

/// The lab account, its password from the environment (never a flag: flags show in `ps`).
fn provider_accounts(
    user: &str,
    wanted: bool,
) -> anyhow::Result<Vec<wsus_emulator::provider::http::Account>> {
    if !wanted {
        return Ok(Vec::new());
    }
    let password = std::env::var("WSUS_EMULATOR_PROVIDER_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the SMS Provider needs its lab account's password in WSUS_EMULATOR_PROVIDER_PASSWORD"))?;
    let (domain, user) = user.split_once('\\').unwrap_or(("", user));
    Ok(vec![wsus_emulator::provider::http::Account {
        domain: domain.to_string(),
        user: user.to_string(),
        password,
    }])
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
                Ctl::Version { server, version } => (
                    reqwest::Method::POST,
                    format!("/servers/{server}/wsus-version/{version}"),
                ),
                Ctl::List => (reqwest::Method::GET, "/servers".to_string()),
                Ctl::Journal => (reqwest::Method::GET, "/journal".to_string()),
                Ctl::ProviderJournal => (reqwest::Method::GET, "/provider/journal".to_string()),
                Ctl::ProviderSet {
                    site,
                    component,
                    property,
                    slot,
                    ..
                } => (
                    reqwest::Method::POST,
                    format!("/provider/sites/{site}/components/{component}/{property}/{slot}"),
                ),
            };
            let body = match &command {
                Ctl::ProviderSet { value, .. } => value.clone(),
                _ => String::new(),
            };
            print!(
                "{}",
                control::client_with_body(&control, method, &path, body).await?
            );
            if matches!(command, Ctl::List | Ctl::Journal | Ctl::ProviderJournal) {
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
            site_file,
            listen_ip,
            low_port_offset,
            port_map_out,
            strict_hosts,
            site_servers,
            default_ports,
            tz_bias,
            step_ms,
            health_interval_ms,
            slow_ms,
            max_log_size,
            provider_http,
            provider_https,
            provider_user,
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
                known.push(parse_server_spec(s)?);
            }
            let mut sites = std::collections::BTreeMap::new();
            let mut site_details = std::collections::BTreeMap::new();
            let mut http_listeners = Vec::new();
            let mut https_listeners = Vec::new();
            if let Some(path) = &site_file {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                let setup = site_file_setup(&text)
                    .map_err(|e| anyhow::anyhow!("--site-file {}: {e:#}", path.display()))?;
                known.extend(setup.servers);
                sites.extend(setup.site_servers);
                site_details.extend(setup.site_details);
                let mut port_map = String::new();
                for (ports, out) in [
                    (&setup.http_ports, &mut http_listeners),
                    (&setup.https_ports, &mut https_listeners),
                ] {
                    for port in ports {
                        let bound = bound_port(*port, low_port_offset)?;
                        port_map.push_str(&format!("\"{port}\" = {bound}\n"));
                        let at = SocketAddr::new(listen_ip, bound);
                        let listener = bind_all(&[at]).await?.remove(0);
                        out.push(SiteListener {
                            listener,
                            port: Some(*port),
                        });
                    }
                }
                if let Some(out) = &port_map_out {
                    std::fs::write(out, port_map)
                        .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
                }
            }
            let http = if http.is_empty() && site_file.is_none() {
                vec![SocketAddr::from(([127, 0, 0, 1], 8530))]
            } else {
                http
            };
            http_listeners.extend(bind_all(&http).await?.into_iter().map(SiteListener::any));
            https_listeners.extend(bind_all(&https).await?.into_iter().map(SiteListener::any));
            for s in &site_servers {
                let (site, server) = s
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--site-server {s}: expected SITE=FQDN"))?;
                sites.insert(site.to_string(), server.to_ascii_lowercase());
            }
            let config = Config {
                http: http_listeners,
                https: https_listeners,
                agent: Some(bind_all(&[agent]).await?.remove(0)),
                agent_tls: match (agent_tls_cert, agent_tls_key) {
                    (Some(cert_file), Some(key_file)) => Some(sup_runtime::ServerTls {
                        cert_file,
                        key_file,
                        client_ca_file: agent_client_ca,
                    }),
                    _ => None,
                },
                control: Some(control),
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
                provider_http: match provider_http {
                    Some(a) => Some(bind_all(&[a]).await?.remove(0)),
                    None => None,
                },
                provider_https: match provider_https {
                    Some(a) => Some(bind_all(&[a]).await?.remove(0)),
                    None => None,
                },
                site_details,
                provider_accounts: provider_accounts(
                    &provider_user,
                    provider_http.is_some() || provider_https.is_some(),
                )?,
            };
            let result = run(config, sup_runtime::shutdown_signal()).await;
            telemetry.shutdown();
            result
        }
    }
}
