//! The scheduler's configuration and its defaults.

use super::*;

pub const DEFAULTS: &str = r#"
listen = "127.0.0.1:50052"
admin_listen = "127.0.0.1:9103"
log_format = "pretty"
tick_ms = 1000
run_timeout_secs = 7200
retry_after_secs = 3600

[nats]
url = "nats://127.0.0.1:4222"
replicas = 1
client_name = "sup-scheduler"
"#;

/// What only the scheduler has; the shared keys are in [`ServiceSettings`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub tick_ms: u64,
    /// A run with no result after this long has failed.
    pub run_timeout_secs: u64,
    /// After a failed run, the next attempt ("Sync failed. Will retry in 60 minutes").
    pub retry_after_secs: u64,
    pub nats: BusConfig,
}

impl sup_runtime::OwnSettings for Settings {
    const LISTENER: sup_runtime::Listener = sup_runtime::Listener::Grpc;
}

/// The `sup-scheduler` binary: what `--help` says of it, and its defaults.
pub const SERVICE: sup_runtime::ServiceInfo = sup_runtime::ServiceInfo::new(
    "scheduler",
    "sup-scheduler",
    env!("CARGO_PKG_VERSION"),
    ABOUT,
    DEFAULTS,
);
const ABOUT: &str =
    "The SUP scheduler: synchronization on a schedule and on demand, parents before children.";

/// Binds the configured listeners and runs until `shutdown`.
pub async fn serve(
    settings: ServiceSettings<Settings>,
    shutdown: sup_runtime::Shutdown,
) -> anyhow::Result<()> {
    let grpc = settings.bind_listen("gRPC").await?;
    let admin = settings.bind_admin().await?;
    run(grpc, admin, settings, SystemClock, shutdown).await
}
