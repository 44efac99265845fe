//! The log watcher: follows `SUPSetup.log`, `WCM.log`, `WSUSCtrl.log` and `wsyncmgr.log` of every
//! server of every site (learned from the role registry in KV, or configured), publishes every
//! parsed line to `sup.log.<site>.<server>.<log>` and every milestone as an event whose id is the
//! file's identity and the line's offset, and keeps its read positions in KV: after a crash or a
//! restart it resumes exactly where the last acknowledged line ended, and anything re-read is
//! de-duplicated by the stream.

mod columns;
mod metrics;
pub mod parse_cmd;
pub mod records;
mod watch;
mod zones;

use std::collections::BTreeMap;
use std::future::Future;

use serde::Deserialize;
use sup_bus::{Bus, BusConfig};
use sup_runtime::{Lifecycle, ServiceSettings};
use tokio::net::TcpListener;

pub const DEFAULTS: &str = r#"
admin_listen = "127.0.0.1:9105"
log_format = "pretty"
poll_interval_ms = 500
discover = true
discover_interval_secs = 5
root = "."
path_template = "{root}/{server}/Logs"
logs = ["SUPSetup.log", "WCM.log", "WSUSCtrl.log", "wsyncmgr.log"]
own_servers = []
publish_lines = true
watch = []

[tz_bias]

[nats]
url = "nats://127.0.0.1:4222"
replicas = 1
client_name = "sup-logwatch"
"#;

/// A folder to watch besides (or instead of) those discovered.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticWatch {
    pub site: String,
    pub server: String,
    /// Defaults to the path template.
    #[serde(default)]
    pub folder: Option<String>,
    /// Defaults to `logs`.
    #[serde(default)]
    pub logs: Option<Vec<String>>,
}

/// What only the log watcher has; the shared keys are in [`ServiceSettings`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The polling fallback; file notifications wake the watcher sooner.
    pub poll_interval_ms: u64,
    /// Learn servers from `sup_roles` (and each site's `site_server`).
    pub discover: bool,
    pub discover_interval_secs: u64,
    /// `{root}` in the path template.
    pub root: String,
    /// Where a server's logs are: `{root}`, `{site}` and `{server}` are replaced.
    pub path_template: String,
    pub logs: Vec<String>,
    /// When not empty, only these servers are watched (a watcher running next to its logs).
    pub own_servers: Vec<String>,
    /// Publish every line to SUP_LOGS (milestones are always published).
    pub publish_lines: bool,
    /// Time-zone bias in minutes (UTC = local + bias) for lines without a zone (SUPSetup.log),
    /// per server, with `*` as the default. A server with neither has its bias read from the
    /// log's last write.
    pub tz_bias: BTreeMap<String, i32>,
    pub watch: Vec<StaticWatch>,
    pub nats: BusConfig,
}

impl sup_runtime::OwnSettings for Settings {
    const LISTENER: sup_runtime::Listener = sup_runtime::Listener::None;
}

pub async fn run(
    admin: TcpListener,
    settings: ServiceSettings<Settings>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = settings.own;
    let bus = Bus::connect(&settings.nats).await?;
    let metrics = metrics::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    bus.register_metrics(&mut registry);
    metrics.register(&mut registry);
    let mut life = Lifecycle::new();
    life.serve_admin(admin, registry);
    let stop = life.stop();
    life.spawn(
        "watcher",
        watch::Watcher::new(bus.clone(), settings, metrics).run(stop),
    );
    let result = life.run_until(shutdown).await;
    bus.close().await;
    result
}
