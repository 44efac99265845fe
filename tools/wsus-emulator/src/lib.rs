//! The WSUS emulator: one process standing in for any number of ConfigMgr 2007 site systems. It
//! answers WSUS 3.0's web endpoints for every server by `Host` header (HTTP, and HTTPS with a
//! certificate per server name from an emulator CA), implements the site-system agent that the
//! provisioner's driver calls, writes the logs ConfigMgr writes (SUPSetup.log, WCM.log,
//! WSUSCtrl.log, wsyncmgr.log) in their real formats, and takes injected faults through a control
//! API. It exists because Windows site systems cannot run here; the services that talk to it do
//! not know it is not a real server.

pub mod agent;
pub mod catalog;
pub mod control;
pub mod http;
pub mod logs;
pub mod soap;
pub mod state;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use state::{Emulator, Fault, ServerDefaults, Timing};

/// A server known up front: name, HTTP port, HTTPS port, time-zone bias (defaults when absent).
pub type KnownServer = (String, Option<u16>, Option<u16>, Option<i32>);

/// Everything `run` needs.
pub struct Config {
    pub http: Vec<TcpListener>,
    pub https: Vec<TcpListener>,
    pub agent: Option<TcpListener>,
    /// TLS (and client certificates) for the agent's gRPC listener.
    pub agent_tls: Option<sup_runtime::ServerTls>,
    pub control: Option<TcpListener>,
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
}

async fn serve_http(
    listener: TcpListener,
    emu: Arc<Emulator>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let emu = emu.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = http::service(emu);
            let builder = hyper::server::conn::http1::Builder::new();
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake");
                        return;
                    }
                },
                None => builder.serve_connection(TokioIo::new(stream), svc).await,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
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
        config.site_servers,
    );
    emu.strict_hosts = config.strict_hosts;
    let emu = Arc::new(emu);
    for (name, http, https, bias) in &config.servers {
        emu.add_server(name, *http, *https, *bias);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for l in config.http {
        tracing::info!(addr = %l.local_addr()?, "WSUS web site (HTTP)");
        tasks.push(tokio::spawn(serve_http(
            l,
            emu.clone(),
            None,
            stop_rx.clone(),
        )));
    }
    if !config.https.is_empty() {
        let authority = Arc::new(tls::Authority::new().context("making the emulator CA")?);
        if let Some(out) = &config.ca_out {
            std::fs::write(out, authority.ca_pem())
                .with_context(|| format!("writing {}", out.display()))?;
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(authority)?);
        for l in config.https {
            tracing::info!(addr = %l.local_addr()?, "WSUS web site (HTTPS)");
            tasks.push(tokio::spawn(serve_http(
                l,
                emu.clone(),
                Some(acceptor.clone()),
                stop_rx.clone(),
            )));
        }
    }
    if let Some(l) = config.control {
        tracing::info!(addr = %l.local_addr()?, "control API");
        let mut stop = stop_rx.clone();
        let router = control::router(emu.clone());
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

/// Parses `NAME[:HTTP[:HTTPS]]`.
pub fn parse_server_spec(s: &str) -> anyhow::Result<(String, Option<u16>, Option<u16>)> {
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
    Ok((name, port(parts.next())?, port(parts.next())?))
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
