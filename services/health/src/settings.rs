//! The health service's configuration and its defaults.

use super::*;

pub const DEFAULTS: &str = r#"
listen = "127.0.0.1:50053"
admin_listen = "127.0.0.1:9104"
log_format = "pretty"
interval_ms = 10000
timeout_ms = 2000
concurrency = 256
milestone_max_age_secs = 7200
ca_file = ""
heartbeat_ms = 2000
replica = ""

[resolve]

[port_map]

[nats]
url = "nats://127.0.0.1:4222"
replicas = 1
client_name = "sup-health"
"#;

/// What only the health service has; the shared keys are in [`ServiceSettings`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub interval_ms: u64,
    /// Per probe step.
    pub timeout_ms: u64,
    /// Servers probed at once.
    pub concurrency: usize,
    /// WSUS health lines older than this make a server degraded; 0 turns the check off.
    pub milestone_max_age_secs: u64,
    /// PEM certificates trusted for the TLS probe (e.g. the emulator's CA).
    pub ca_file: String,
    /// How often this replica tells the others it is alive; one that misses three beats is
    /// taken as gone and its servers are probed by the others.
    pub heartbeat_ms: u64,
    /// This replica's name among the others; empty for the host's name and a random suffix.
    pub replica: String,
    /// Host name (or `*`) → IP address, before the system resolver.
    pub resolve: BTreeMap<String, String>,
    /// A WSUS web site port → the port to probe it at instead (e.g. `"80" = 18080` when a
    /// lab cannot bind ports below 1024). The site keeps its declared port in `Host`.
    #[serde(default)]
    pub port_map: BTreeMap<String, u16>,
    pub nats: BusConfig,
}

impl Settings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}

impl sup_runtime::OwnSettings for Settings {
    const LISTENER: sup_runtime::Listener = sup_runtime::Listener::Grpc;
}

/// The `sup-health` binary: what `--help` says of it, and its defaults.
pub const SERVICE: sup_runtime::ServiceInfo = sup_runtime::ServiceInfo::new(
    "health",
    "sup-health",
    env!("CARGO_PKG_VERSION"),
    ABOUT,
    DEFAULTS,
);
const ABOUT: &str =
    "The SUP health service: probes every SUP server's WSUS web site and publishes transitions.";

/// Binds the configured listeners and runs until `shutdown`.
pub async fn serve(
    settings: ServiceSettings<Settings>,
    shutdown: sup_runtime::Shutdown,
) -> anyhow::Result<()> {
    let grpc = settings.bind_listen("gRPC").await?;
    let admin = settings.bind_admin().await?;
    run(grpc, admin, settings, shutdown).await
}
