//! The provisioner's configuration and its defaults.

use super::*;

pub const DEFAULTS: &str = r#"
admin_listen = "127.0.0.1:9102"
log_format = "pretty"
agent_endpoint = "http://{server}:7700"
agent_timeout_secs = 10
drift_interval_secs = 300
install_timeout_secs = 300
max_attempts = 5
retry_base_ms = 500
command_lanes = 16

[agents]

[providers]

[nats]
url = "nats://127.0.0.1:4222"
replicas = 1
client_name = "sup-provisioner"
"#;

/// What only the provisioner has; the shared keys are in [`ServiceSettings`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The agent of a server, `{server}` replaced, unless `agents` names it.
    pub agent_endpoint: String,
    /// Server name (or `*`) → agent endpoint.
    pub agents: BTreeMap<String, String>,
    pub agent_timeout_secs: u64,
    /// How often each site reached through its SMS Provider is read back for drift (also right
    /// after every commit).
    pub drift_interval_secs: u64,
    /// A role still installing this long after setup started has failed.
    pub install_timeout_secs: u64,
    /// Attempts for work that fails in a way retrying can fix (an unreachable agent).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_base_ms: u64,
    /// Commands handled at once, each site's in order in its own lane (1: one at a time). A
    /// command mostly waits on a site system, so one at a time leaves a large apply queued for
    /// longer than a role may take to install.
    pub command_lanes: usize,
    pub nats: BusConfig,
    /// TLS to `https://` agent endpoints (with `cert_file`/`key_file` for agents that require
    /// client certificates).
    #[serde(default)]
    pub agent_tls: Option<sup_runtime::ClientTls>,
    /// Site code → its SMS Provider: those sites are reached over WinRM, the others through
    /// agents.
    #[serde(default)]
    pub providers: BTreeMap<String, smsprov::ProviderSettings>,
}

impl sup_runtime::OwnSettings for Settings {
    const LISTENER: sup_runtime::Listener = sup_runtime::Listener::None;
}

/// The `sup-provisioner` binary: what `--help` says of it, and its defaults.
pub const SERVICE: sup_runtime::ServiceInfo = sup_runtime::ServiceInfo::new(
    "provisioner",
    "sup-provisioner",
    env!("CARGO_PKG_VERSION"),
    ABOUT,
    DEFAULTS,
);
const ABOUT: &str = "The SUP provisioner: installs, removes and configures software update point roles on site systems through their agents.";

/// Binds the configured listeners and runs until `shutdown`.
pub async fn serve(
    settings: ServiceSettings<Settings>,
    shutdown: sup_runtime::Shutdown,
) -> anyhow::Result<()> {
    let admin = settings.bind_admin().await?;
    run(admin, settings, shutdown).await
}
