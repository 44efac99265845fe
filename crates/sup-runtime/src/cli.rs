//! The command line every service shares: `--config FILE` and `--print-defaults`.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

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
