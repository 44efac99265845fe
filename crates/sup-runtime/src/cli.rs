//! The command line every service shares (`--config FILE`, `--print-defaults`) and the `main`
//! every service runs.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::settings::{OwnSettings, ServiceSettings};

/// Common service flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// TOML configuration file; SUP_<SERVICE>__<KEY> environment variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the built-in defaults and exit.
    #[arg(long)]
    pub print_defaults: bool,
}

impl ServiceArgs {
    /// The settings, or `None` after printing the defaults.
    pub fn settings<T: DeserializeOwned>(
        &self,
        service: &str,
        defaults: &str,
    ) -> anyhow::Result<Option<T>> {
        if self.print_defaults {
            print!("{defaults}");
            return Ok(None);
        }
        Ok(Some(crate::load_config(
            service,
            defaults,
            self.config.as_deref(),
        )?))
    }
}

/// Binds a listener with the address in the error.
pub async fn bind(
    addr: std::net::SocketAddr,
    what: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} {addr}"))
}

/// What a service binary is: its name in configuration (`coordinator` reads `SUP_COORDINATOR__*`
/// variables), what `--help` says of it, and its built-in defaults.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    pub name: &'static str,
    /// The executable's name, `sup-<name>`: what `--help` shows and telemetry reports.
    pub binary: &'static str,
    /// What `--version` prints: the service crate's own version.
    pub version: &'static str,
    pub about: &'static str,
    pub defaults: &'static str,
}

impl ServiceInfo {
    /// `sup-<name>`, about it, its defaults.
    pub const fn new(
        name: &'static str,
        binary: &'static str,
        version: &'static str,
        about: &'static str,
        defaults: &'static str,
    ) -> Self {
        Self {
            name,
            binary,
            version,
            about,
            defaults,
        }
    }
}

/// The whole of a service's `main`: the command line (`--config`, `--print-defaults`), the
/// settings, telemetry as the binary, then `serve` until SIGTERM or Ctrl-C, telemetry flushed
/// whatever `serve` returns.
///
/// An error ends the process with status 1 and one line on stderr, `sup-<name>: ` and the error
/// with its causes.
pub fn service_main<S, Serve, Fut>(info: ServiceInfo, serve: Serve) -> std::process::ExitCode
where
    S: OwnSettings,
    Serve: FnOnce(ServiceSettings<S>, crate::shutdown::Shutdown) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    match start(info, serve) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", info.binary);
            std::process::ExitCode::FAILURE
        }
    }
}

fn start<S, Serve, Fut>(info: ServiceInfo, serve: Serve) -> anyhow::Result<()>
where
    S: OwnSettings,
    Serve: FnOnce(ServiceSettings<S>, crate::shutdown::Shutdown) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use clap::{Args as _, FromArgMatches as _};
    // The flags' own doc comment would be the about text: the service's goes on last.
    let command = ServiceArgs::augment_args(clap::Command::new(info.binary))
        .version(info.version)
        .about(info.about);
    let args = ServiceArgs::from_arg_matches(&command.get_matches())?;
    let Some(settings) = args.settings::<ServiceSettings<S>>(info.name, info.defaults)? else {
        return Ok(());
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let telemetry = crate::Telemetry::init(info.binary, settings.log_format)?;
            let result = serve(settings, Box::pin(crate::shutdown_signal())).await;
            telemetry.shutdown();
            result
        })
}
