//! The SUP console: what a ConfigMgr administrator looks at, served as HTML.
//!
//! It reads through the coordinator's and the scheduler's gRPC APIs only; it holds no state of
//! its own but a bounded window of recent events, fed by one `WatchEvents` stream, which also
//! drives every open page (server-sent events) so pages follow the system without a reload.
//!
//! - [`sources`]: the gRPC clients.
//! - [`history`]: the event window and the live feed.
//! - [`view`]: pure view models (the hierarchy as a tree, components, status messages).
//! - [`svg`]: the pictures (synchronization history, health over time), pure.
//! - [`auth`]: the operator's bearer token, sessions and CSRF tokens, for the actions.
//! - [`web`]: routes and templates.

pub mod auth;
pub mod history;
pub mod sources;
pub mod svg;
pub mod view;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sup_runtime::{ClientTls, Lifecycle, ServiceSettings};
use tokio::net::TcpListener;

pub const DEFAULTS: &str = r#"
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9106"
log_format = "pretty"
coordinator = "http://127.0.0.1:50051"
scheduler = "http://127.0.0.1:50052"
history_per_site = 200
history_recent = 500
history_replay = 20000
sync_runs_shown = 30

[actions]
enabled = false
session_hours = 8
secure_cookie = false
"#;

/// What only the console has; the shared keys are in [`ServiceSettings`] (its `listen` serves
/// the pages, over HTTP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The coordinator's gRPC endpoint (`https://` with `[grpc_tls]`).
    pub coordinator: String,
    /// The scheduler's gRPC endpoint; empty when there is none (no synchronization history).
    pub scheduler: String,
    /// How the console reaches the coordinator and the scheduler over TLS or mutual TLS.
    #[serde(default)]
    pub grpc_tls: Option<ClientTls>,
    /// Events kept per site for its page (status messages, health over time).
    pub history_per_site: usize,
    /// Events kept for the event history page.
    pub history_recent: usize,
    /// Events read back from the stored history when the console starts (the most recent).
    pub history_replay: u32,
    /// Synchronization runs drawn on a site's page.
    pub sync_runs_shown: u32,
    pub actions: ActionSettings,
}

impl sup_runtime::OwnSettings for Settings {
    const LISTENER: sup_runtime::Listener = sup_runtime::Listener::Http;
}

/// The `sup-console` binary: what `--help` says of it, and its defaults.
pub const SERVICE: sup_runtime::ServiceInfo = sup_runtime::ServiceInfo::new(
    "console",
    "sup-console",
    env!("CARGO_PKG_VERSION"),
    ABOUT,
    DEFAULTS,
);
const ABOUT: &str = "The SUP console: the site hierarchy, each site's software update points, components, status messages and history, in a browser, live.";

/// Binds the configured listeners and runs until `shutdown`.
pub async fn serve(
    settings: ServiceSettings<Settings>,
    shutdown: sup_runtime::Shutdown,
) -> anyhow::Result<()> {
    let listener = settings.bind_listen("console").await?;
    let admin = settings.bind_admin().await?;
    run(listener, admin, settings, shutdown).await
}

/// "Run Synchronization" and "activate": off unless enabled, and then only for whoever holds
/// the bearer token in `token_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSettings {
    pub enabled: bool,
    /// A file holding the operator's bearer token (at least 16 characters); required when
    /// enabled. Read once at start; never logged.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// How long a browser session opened with the token lasts.
    pub session_hours: u64,
    /// Mark the session cookie `Secure` (set it when the console is reached over HTTPS, as
    /// through a TLS-terminating ingress).
    pub secure_cookie: bool,
    /// The origin browsers use (`https://console.corp.example.com`) when a proxy in front of
    /// the console rewrites `Host`: forms must come from it.
    #[serde(default)]
    pub public_origin: Option<String>,
}

/// Serves the console until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    admin: TcpListener,
    settings: ServiceSettings<Settings>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let settings = settings.own;
    let listen = listener.local_addr().context("console listener")?;
    if !(1..=720).contains(&settings.actions.session_hours) {
        anyhow::bail!("actions.session_hours must be 1 to 720 (30 days)");
    }
    if !(1..=200).contains(&settings.sync_runs_shown) {
        anyhow::bail!("sync_runs_shown must be 1 to 200");
    }
    let token = match (&settings.actions.enabled, &settings.actions.token_file) {
        (true, Some(file)) => Some(auth::Token::from_file(file)?),
        (true, None) => anyhow::bail!(
            "actions.enabled needs actions.token_file (a file holding the operator's bearer token)"
        ),
        (false, _) => None,
    };
    let sources = sources::Sources::connect(
        &settings.coordinator,
        &settings.scheduler,
        settings.grpc_tls.as_ref(),
    )
    .context("the console's gRPC endpoints")?;
    let mut registry = Registry::default();
    let metrics = web::Metrics::register(&mut registry);
    let history = Arc::new(history::History::new(
        settings.history_recent,
        settings.history_per_site,
    ));
    history.register_metrics(&mut registry);

    let mut life = Lifecycle::new();
    life.serve_admin(admin, registry);
    life.spawn(
        "events",
        history::follow(
            history.clone(),
            sources.clone(),
            settings.history_replay,
            life.stop(),
        ),
    );
    let state = web::AppState::new(
        sources,
        history,
        token.map(|t| auth::Guard::new(t, settings.actions.session_hours)),
        web::Options {
            secure_cookie: settings.actions.secure_cookie,
            public_origin: settings.actions.public_origin.clone(),
            sync_runs_shown: settings.sync_runs_shown,
        },
        metrics,
    );
    tracing::info!(
        listen = %listen,
        coordinator = %settings.coordinator,
        actions = settings.actions.enabled,
        "console serving"
    );
    let stopped = life.stopped();
    life.spawn("http", async move {
        axum::serve(listener, web::router(state))
            .with_graceful_shutdown(stopped)
            .await
            .context("console listener")
    });
    life.run_until(shutdown).await
}
