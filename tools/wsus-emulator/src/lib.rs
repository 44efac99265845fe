//! The WSUS emulator: one process standing in for any number of ConfigMgr 2007 site systems. It
//! answers WSUS 3.0's web endpoints for every server by `Host` header (HTTP, and HTTPS with a
//! certificate per server name from an emulator CA), implements the site-system agent that the
//! provisioner's driver calls, writes the logs ConfigMgr writes (SUPSetup.log, WCM.log,
//! WSUSCtrl.log, wsyncmgr.log) in their real formats, serves each site's SMS Provider over
//! WinRM (the production path's peer), and takes injected faults through a control API. It exists because Windows site systems cannot run here; the services that talk to it do
//! not know it is not a real server.

pub mod agent;
pub mod catalog;
pub mod control;
pub mod http;
pub mod logs;
pub mod provider;
pub mod serve;
pub mod soap;
pub mod state;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use state::{Emulator, Fault, KnownServer, ServerDefaults, Timing};

/// A bound WSUS web site listener and the port it stands for (`None`: any server's, on whatever
/// port it is bound).
pub struct SiteListener {
    pub listener: TcpListener,
    pub port: Option<u16>,
}

impl SiteListener {
    pub fn any(listener: TcpListener) -> Self {
        Self {
            listener,
            port: None,
        }
    }
}

/// Everything `run` needs.
pub struct Config {
    pub http: Vec<SiteListener>,
    pub https: Vec<SiteListener>,
    pub agent: Option<TcpListener>,
    /// TLS (and client certificates) for the agent's gRPC listener.
    pub agent_tls: Option<sup_runtime::ServerTls>,
    /// The control API's address, bound only once everything else is set up (the CA written),
    /// so a client that finds the port listening can use what the emulator wrote.
    pub control: Option<SocketAddr>,
    pub logs_root: PathBuf,
    pub max_log_size: u64,
    pub timing: Timing,
    pub defaults: ServerDefaults,
    /// Servers known up front.
    pub servers: Vec<KnownServer>,
    pub site_servers: BTreeMap<String, String>,
    /// Where to write the CA certificate (PEM) for HTTPS clients to trust.
    pub ca_out: Option<PathBuf>,
    /// Refuse hosts not in `servers` instead of learning them.
    pub strict_hosts: bool,
    /// The SMS Provider's WinRM listeners: plain HTTP (messages sealed) and HTTPS.
    pub provider_http: Option<TcpListener>,
    pub provider_https: Option<TcpListener>,
    /// The accounts the SMS Provider accepts.
    pub provider_accounts: Vec<provider::http::Account>,
    /// Site code → (name, parent code or empty).
    pub site_details: BTreeMap<String, (String, String)>,
}

async fn serve_http(
    site: SiteListener,
    emu: Arc<Emulator>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let kind = http::Listener {
        secure: tls.is_some(),
        port: site.port,
    };
    serve::serve_connections(site.listener, tls, stop, "WSUS web site", move || {
        http::service(emu.clone(), kind)
    })
    .await;
}

/// Runs the emulator until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut emu = Emulator::new(
        logs::Logs::new(&config.logs_root, config.max_log_size),
        config.timing,
        config.defaults,
        config.site_servers.clone(),
    );
    emu.strict_hosts = config.strict_hosts;
    let emu = Arc::new(emu);
    for k in &config.servers {
        emu.declare_server(k);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let provider = Arc::new(provider::Provider::new(
        emu.clone(),
        &config.site_servers,
        &config.site_details,
    ));
    for l in config.http {
        tracing::info!(addr = %l.listener.local_addr()?, port = ?l.port, "WSUS web site (HTTP)");
        tasks.push(tokio::spawn(serve_http(
            l,
            emu.clone(),
            None,
            stop_rx.clone(),
        )));
    }
    let mut tls_acceptor = None;
    if !config.https.is_empty() || config.provider_https.is_some() {
        let authority = Arc::new(tls::Authority::new().context("making the emulator CA")?);
        if let Some(out) = &config.ca_out {
            // Whole or not at all: written beside and renamed into place.
            let partial = out.with_extension("partial");
            std::fs::write(&partial, authority.ca_pem())
                .and_then(|()| std::fs::rename(&partial, out))
                .with_context(|| format!("writing {}", out.display()))?;
        }
        tls_acceptor = Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
            authority,
        )?));
    }
    if let Some(acceptor) = tls_acceptor.clone() {
        for l in config.https {
            tracing::info!(addr = %l.listener.local_addr()?, port = ?l.port, "WSUS web site (HTTPS)");
            tasks.push(tokio::spawn(serve_http(
                l,
                emu.clone(),
                Some(acceptor.clone()),
                stop_rx.clone(),
            )));
        }
    }
    let accounts = Arc::new(config.provider_accounts);
    for (l, tls) in [
        (config.provider_http, None),
        (config.provider_https, tls_acceptor.clone()),
    ] {
        if let Some(l) = l {
            tracing::info!(addr = %l.local_addr()?, https = tls.is_some(), accounts = ?accounts, "SMS Provider (WinRM)");
            tasks.push(tokio::spawn(provider::http::serve(
                l,
                provider.clone(),
                accounts.clone(),
                tls,
                stop_rx.clone(),
            )));
        }
    }
    if let Some(addr) = config.control {
        let l = bind_all(&[addr]).await?.remove(0);
        tracing::info!(addr = %l.local_addr()?, "control API");
        let mut stop = stop_rx.clone();
        let router = control::router(emu.clone(), provider.clone());
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(l, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    if let Some(l) = config.agent {
        tracing::info!(addr = %l.local_addr()?, "site-system agent (gRPC)");
        let grpc = sup_runtime::grpc::routes()?;
        let mut routes = grpc.routes;
        routes.add_service(
            sup_proto::v1::site_system_agent_server::SiteSystemAgentServer::new(agent::Agent {
                emu: emu.clone(),
            }),
        );
        grpc.health
            .set_serving::<sup_proto::v1::site_system_agent_server::SiteSystemAgentServer<agent::Agent>>()
            .await;
        let tls = sup_runtime::tls::server_config(config.agent_tls.as_ref())?;
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = sup_runtime::grpc::serve(routes, l, tls, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            {
                tracing::error!(error = %e, "agent server");
            }
        }));
    }
    tasks.push(tokio::spawn(emu.clone().health_loop(stop_rx.clone())));
    shutdown.await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Parses `NAME[:HTTP[:HTTPS[:ssl]]]`.
pub fn parse_server_spec(s: &str) -> anyhow::Result<KnownServer> {
    let mut parts = s.split(':');
    let name = parts.next().unwrap_or_default().to_ascii_lowercase();
    anyhow::ensure!(
        sup_core::names::is_fqdn(&name),
        "--server {s}: {name:?} is not an FQDN"
    );
    let port = |p: Option<&str>| -> anyhow::Result<Option<u16>> {
        p.map(|p| {
            p.parse::<u16>()
                .with_context(|| format!("--server {s}: {p:?} is not a port"))
        })
        .transpose()
    };
    let http_port = port(parts.next())?;
    let https_port = port(parts.next())?;
    let ssl = match parts.next() {
        None => false,
        Some("ssl") => true,
        Some(other) => anyhow::bail!("--server {s}: {other:?} is not \"ssl\""),
    };
    anyhow::ensure!(
        parts.next().is_none(),
        "--server {s}: NAME[:HTTP[:HTTPS[:ssl]]]"
    );
    Ok(KnownServer {
        name,
        http_port,
        https_port,
        ssl,
        bias: None,
    })
}

/// The servers and web site ports a site file declares: every SUP's server with its ports
/// (80/443 when left out) and SSL, and each site's site server.
pub struct SiteFileSetup {
    pub servers: Vec<KnownServer>,
    pub site_servers: BTreeMap<String, String>,
    /// Site code → (name, parent code or empty), for the SMS Provider's `SMS_Site`.
    pub site_details: BTreeMap<String, (String, String)>,
    /// Distinct HTTP ports, then HTTPS ports, of the declared web sites.
    pub http_ports: Vec<u16>,
    pub https_ports: Vec<u16>,
}

/// Reads a site file as `supctl apply` would (every rule checked) into what the emulator must
/// stand in for.
pub fn site_file_setup(text: &str) -> anyhow::Result<SiteFileSetup> {
    let sites = sup_core::spec::load_site_file(text, &BTreeMap::new()).map_err(|v| {
        anyhow::anyhow!(
            "the site file is not valid:\n{}",
            v.0.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let mut out = SiteFileSetup {
        servers: Vec::new(),
        site_servers: BTreeMap::new(),
        site_details: BTreeMap::new(),
        http_ports: Vec::new(),
        https_ports: Vec::new(),
    };
    for site in &sites {
        if let Some(server) = &site.site_server {
            out.site_servers.insert(site.code.clone(), server.clone());
        }
        out.site_details.insert(
            site.code.clone(),
            (site.name.clone(), site.parent.clone().unwrap_or_default()),
        );
        for sup in &site.software_update_points {
            out.servers.push(KnownServer {
                name: sup.server.clone(),
                http_port: Some(sup.http_port),
                https_port: Some(sup.https_port),
                ssl: sup.ssl,
                bias: None,
            });
            if !out.http_ports.contains(&sup.http_port) {
                out.http_ports.push(sup.http_port);
            }
            if !out.https_ports.contains(&sup.https_port) {
                out.https_ports.push(sup.https_port);
            }
        }
    }
    if let Some(p) = out.http_ports.iter().find(|p| out.https_ports.contains(p)) {
        anyhow::bail!(
            "port {p} is one server's HTTP port and another's HTTPS port: one emulator cannot serve both on it"
        );
    }
    Ok(out)
}

/// Where a declared web site port is bound: ports below 1024 at `port + offset` when an offset is
/// given (a process that may not bind them), the port itself otherwise.
pub fn bound_port(port: u16, low_port_offset: Option<u16>) -> anyhow::Result<u16> {
    match low_port_offset {
        Some(offset) if port < 1024 => port
            .checked_add(offset)
            .with_context(|| format!("port {port} + offset {offset} is not a port")),
        _ => Ok(port),
    }
}

/// Binds every address.
pub async fn bind_all(addrs: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding {a}"))?,
        );
    }
    Ok(out)
}
