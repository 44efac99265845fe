//! The provisioner: consumes install, remove, configure and synchronize commands from the
//! `SUP_COMMANDS` work queue (a durable consumer shared by every replica) and carries them out on
//! site systems through a [`driver::SiteDriver`]. It checks the procedure's prerequisites before
//! installing, reports progress as events, fences slot-bound work by the slot's epoch, retries
//! only what retrying can fix, and records each command's outcome before acking it, so a
//! redelivered command does nothing twice.

pub mod drift;
pub mod driver;
pub mod smsprov;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::Instrument as _;

use anyhow::Context as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use sup_bus::async_nats::jetstream::AckKind;
use sup_bus::{Bus, BusConfig, subjects};
use sup_proto::prost::Message as _;
use sup_proto::v1::{self, command::Kind, event::Payload};
use sup_runtime::{Lifecycle, LogFormat};
use tokio::net::TcpListener;

use driver::{DriverError, Drivers, Endpoints, GrpcDriver, SiteDriver};

pub const DEFAULTS: &str = r#"
admin_listen = "127.0.0.1:9102"
log_format = "pretty"
agent_endpoint = "http://{server}:7700"
agent_timeout_secs = 10
drift_interval_secs = 300
install_timeout_secs = 300
max_attempts = 5
retry_base_ms = 500

[agents]

[providers]

[nats]
url = "nats://127.0.0.1:4222"
replicas = 1
client_name = "sup-provisioner"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub admin_listen: SocketAddr,
    pub log_format: LogFormat,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `pending` (not yet delivered) or `unacked` (delivered, not yet acknowledged).
    pub state: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub commands: Family<CommandLabels, Counter>,
    pub redeliveries: Counter,
    pub duration: Family<CommandLabels, Histogram>,
    pub queue: Family<QueueLabels, Gauge>,
    pub drift: drift::DriftGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            commands: Family::default(),
            redeliveries: Counter::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
            }),
            queue: Family::default(),
            drift: Gauge::default(),
        }
    }
}

impl Metrics {
    fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "sup_provisioning_duration_seconds",
            "Time to handle a command (agent calls included), by kind and outcome",
            self.duration.clone(),
        );
        r.register(
            "sup_command_queue_depth",
            "Provisioner commands waiting in the queue: pending (undelivered) or unacked",
            self.queue.clone(),
        );
        r.register(
            "sup_provisioner_commands",
            "Commands handled, by kind and outcome",
            self.commands.clone(),
        );
        r.register(
            "sup_drift_fields",
            "Settings of the sites' control files that differ from their declarations, as last read through their SMS Providers",
            self.drift.clone(),
        );
        r.register(
            "sup_provisioner_redeliveries",
            "Commands delivered more than once",
            self.redeliveries.clone(),
        );
    }
}

/// What to do with a command after handling it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded; ack it.
    Done(&'static str),
    /// Try again after this long (not acked).
    Retry(Duration),
}

pub struct Provisioner<D> {
    pub bus: Bus,
    pub driver: Arc<D>,
    pub settings: Settings,
    pub metrics: Metrics,
}

fn now() -> sup_proto::prost_types::Timestamp {
    SystemTime::now().into()
}

fn kind_name(k: &Option<Kind>) -> &'static str {
    match k {
        Some(Kind::InstallRole(_)) => "install_role",
        Some(Kind::RemoveRole(_)) => "remove_role",
        Some(Kind::ConfigureComponent(_)) => "configure_component",
        Some(Kind::StartSync(_)) => "start_sync",
        None => "unknown",
    }
}

/// Checks the procedure's prerequisites against what the site system reports.
pub fn prerequisites(
    info: &v1::WsusInfo,
    role: &v1::SoftwareUpdatePoint,
    system: Option<&v1::SiteSystem>,
) -> Result<(), String> {
    if !info.installed {
        return Err(format!(
            "WSUS 3.0 is not installed on {}: install WSUS 3.0 SP1 or later (and the WSUS 3.0 administration console on the site server), then apply again",
            info.server
        ));
    }
    // An SMS Provider site's WSUS setup values may not record the version (`VersionString`):
    // SUPSetup checks it again on the server.
    if !info.version.is_empty() && !info.version.starts_with("3.") {
        return Err(format!(
            "{} runs WSUS {}, not WSUS 3.0: ConfigMgr 2007 needs WSUS 3.0 SP1 or later",
            info.server, info.version
        ));
    }
    if !info.version.is_empty() && !sup_core::wsus_version::supported(&info.version) {
        return Err(format!(
            "{} runs WSUS {}, and ConfigMgr 2007 SP1 needs WSUS 3.0 SP1 or later ({} or later): install WSUS 3.0 SP1 or SP2 on it, then apply again",
            info.server,
            info.version,
            sup_core::wsus_version::min_wsus_version()
        ));
    }
    let (http, https) = (
        if role.http_port == 0 {
            80
        } else {
            role.http_port
        },
        if role.https_port == 0 {
            443
        } else {
            role.https_port
        },
    );
    // An HTTPS port of 0 is one the site system does not say (WSUS setup records only the
    // web site's port).
    if http != info.http_port || (info.https_port != 0 && https != info.https_port) {
        return Err(format!(
            "the SUP's ports {http}/{https} differ from the WSUS web site's {}/{} on {}: set http_port and https_port to the ports of the WSUS web site in IIS",
            info.http_port, info.https_port, info.server
        ));
    }
    if let Some(sys) = system
        && sys.computer_account_access == Some(false)
    {
        resolvable(
            &format!("the installation account {}", sys.install_account),
            sys.install_password.as_ref(),
        )?;
    }
    if let Some(proxy) = &role.proxy
        && !proxy.account.is_empty()
    {
        resolvable(
            &format!("the proxy account {}", proxy.account),
            proxy.password.as_ref(),
        )?;
    }
    Ok(())
}

/// Checks that a password reference can be read here, without keeping or showing the password.
fn resolvable(account: &str, secret: Option<&v1::SecretRef>) -> Result<(), String> {
    match secret.and_then(|p| p.source.as_ref()) {
        Some(v1::secret_ref::Source::Env(var)) => {
            if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                return Err(format!(
                    "{account}'s password is to come from environment variable {var}, which is not set for the provisioner"
                ));
            }
        }
        Some(v1::secret_ref::Source::File(path)) => {
            if std::fs::read(path).map(|b| b.is_empty()).unwrap_or(true) {
                return Err(format!(
                    "{account}'s password is to come from file {path}, which the provisioner cannot read"
                ));
            }
        }
        None => return Err(format!("{account} has no password reference")),
    }
    Ok(())
}

impl<D: SiteDriver> Provisioner<D> {
    async fn progress(
        &self,
        cmd: &v1::Command,
        server: &str,
        step: &str,
        detail: &str,
        attempt: u32,
    ) -> anyhow::Result<()> {
        let e = v1::Event {
            id: format!("prov:{}:{step}", cmd.id),
            time: Some(now()),
            site: cmd.site.clone(),
            server: server.to_string(),
            epoch: cmd.epoch,
            op_id: cmd.op_id.clone(),
            payload: Some(Payload::Provisioning(v1::ProvisioningProgress {
                command_id: cmd.id.clone(),
                step: step.to_string(),
                detail: detail.to_string(),
                attempt,
            })),
        };
        self.bus.publish_event(&e).await?;
        Ok(())
    }

    async fn rejected(&self, cmd: &v1::Command, reason: &str) -> anyhow::Result<()> {
        tracing::warn!(command = %cmd.id, site = %cmd.site, reason, "command dropped");
        let e = v1::Event {
            id: format!("rejected:{}", cmd.id),
            time: Some(now()),
            site: cmd.site.clone(),
            server: cmd.server.clone(),
            epoch: cmd.epoch,
            op_id: cmd.op_id.clone(),
            payload: Some(Payload::CommandRejected(v1::CommandRejected {
                command_id: cmd.id.clone(),
                reason: reason.to_string(),
            })),
        };
        self.bus.publish_event(&e).await?;
        Ok(())
    }

    fn done_key(id: &str) -> String {
        let clean: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("cmd.{clean}")
    }

    async fn is_done(&self, id: &str) -> anyhow::Result<bool> {
        Ok(self
            .bus
            .kv_get(&self.bus.buckets.ops, &Self::done_key(id))
            .await?
            .is_some())
    }

    async fn record_done(&self, id: &str, outcome: &str) -> anyhow::Result<()> {
        self.bus
            .buckets
            .ops
            .put(Self::done_key(id), outcome.to_string().into())
            .await
            .map_err(|e| anyhow::anyhow!("recording the outcome of {id}: {e}"))?;
        Ok(())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        Duration::from_millis(
            self.settings
                .retry_base_ms
                .saturating_mul(1 << attempt.min(8)),
        )
    }

    /// Retry while attempts remain; then fail the role with the reason.
    async fn unreachable(
        &self,
        cmd: &v1::Command,
        server: &str,
        e: &DriverError,
        attempt: u32,
        fail_role: bool,
    ) -> anyhow::Result<Outcome> {
        if e.retryable() && attempt < self.settings.max_attempts {
            self.progress(
                cmd,
                server,
                &format!("retrying-{attempt}"),
                &e.to_string(),
                attempt,
            )
            .await?;
            return Ok(Outcome::Retry(self.backoff(attempt)));
        }
        let reason = format!("{e} (after {attempt} attempt(s))");
        if fail_role {
            self.progress(cmd, server, "failed", &reason, attempt)
                .await?;
        } else {
            self.rejected(cmd, &reason).await?;
        }
        Ok(Outcome::Done("failed"))
    }

    /// The current epoch of a slot (the KV revision of its key), 0 when never set.
    async fn slot_epoch(&self, site: &str, slot: &str) -> anyhow::Result<(u64, Vec<String>)> {
        read_slot(&self.bus, site, slot, false).await
    }

    /// Handles one command; `attempt` counts deliveries from 1.
    pub async fn handle(&self, cmd: &v1::Command, attempt: u32) -> anyhow::Result<Outcome> {
        if self.is_done(&cmd.id).await? {
            tracing::info!(command = %cmd.id, "already done; redelivery ignored");
            return Ok(Outcome::Done("duplicate"));
        }
        let outcome = match &cmd.kind {
            Some(Kind::InstallRole(i)) => self.install(cmd, i, attempt).await?,
            Some(Kind::RemoveRole(_)) => match self
                .driver
                .remove_role(v1::AgentRemoveRoleRequest {
                    site: cmd.site.clone(),
                    server: cmd.server.clone(),
                    op_id: cmd.id.clone(),
                })
                .await
            {
                Ok(_) => {
                    self.progress(cmd, &cmd.server, "removed", "SUP role removed", attempt)
                        .await?;
                    Outcome::Done("removed")
                }
                Err(e) => {
                    self.unreachable(cmd, &cmd.server, &e, attempt, false)
                        .await?
                }
            },
            Some(Kind::ConfigureComponent(c)) => self.configure(cmd, c, attempt).await?,
            Some(Kind::StartSync(s)) => self.start_sync(cmd, s, attempt).await?,
            None => {
                self.rejected(cmd, "command without a kind").await?;
                Outcome::Done("rejected")
            }
        };
        if let Outcome::Done(what) = outcome {
            self.record_done(&cmd.id, what).await?;
        }
        Ok(outcome)
    }

    async fn install(
        &self,
        cmd: &v1::Command,
        i: &v1::InstallRole,
        attempt: u32,
    ) -> anyhow::Result<Outcome> {
        let server = cmd.server.as_str();
        self.progress(
            cmd,
            server,
            "accepted",
            "provisioning the software update point",
            attempt,
        )
        .await?;
        let info = match self.driver.wsus_info(&cmd.site, server).await {
            Ok(info) => info,
            Err(e) => return self.unreachable(cmd, server, &e, attempt, true).await,
        };
        let role = i.role.clone().unwrap_or_default();
        if let Err(reason) = prerequisites(&info, &role, i.site_system.as_ref()) {
            // Retrying cannot fix a missing prerequisite: fail now, with what to do.
            self.progress(cmd, server, "failed", &reason, attempt)
                .await?;
            return Ok(Outcome::Done("failed"));
        }
        self.progress(
            cmd,
            server,
            "prerequisites_ok",
            &format!(
                "WSUS {} on {}/{}",
                info.version, info.http_port, info.https_port
            ),
            attempt,
        )
        .await?;
        let reply = self
            .driver
            .install_role(v1::AgentInstallRoleRequest {
                site: cmd.site.clone(),
                server: server.to_string(),
                install: Some(i.clone()),
                // The command id: a redelivered command is the same operation to the agent.
                op_id: cmd.id.clone(),
            })
            .await;
        match reply {
            Ok(r) if r.accepted => {
                self.progress(cmd, server, "installing", &r.detail, attempt)
                    .await?;
                Ok(Outcome::Done("installing"))
            }
            Ok(r) => {
                self.progress(
                    cmd,
                    server,
                    "failed",
                    &format!("the agent refused the install: {}", r.detail),
                    attempt,
                )
                .await?;
                Ok(Outcome::Done("failed"))
            }
            Err(e) => self.unreachable(cmd, server, &e, attempt, true).await,
        }
    }

    async fn configure(
        &self,
        cmd: &v1::Command,
        c: &v1::ConfigureComponent,
        attempt: u32,
    ) -> anyhow::Result<Outcome> {
        let slot = if c.slot == v1::Slot::Internet as i32 {
            "internet"
        } else {
            "intranet"
        };
        let (current, members) = self.slot_epoch(&cmd.site, slot).await?;
        if cmd.epoch < current {
            self.rejected(
                cmd,
                &format!(
                    "stale epoch {} (the {slot} slot of {} is at epoch {current})",
                    cmd.epoch, cmd.site
                ),
            )
            .await?;
            return Ok(Outcome::Done("stale"));
        }
        let targets = if members.is_empty() {
            vec![cmd.server.clone()]
        } else {
            members
        };
        for server in &targets {
            let r = self
                .driver
                .configure(v1::AgentConfigureRequest {
                    site: cmd.site.clone(),
                    server: server.clone(),
                    epoch: cmd.epoch,
                    configure: Some(c.clone()),
                    op_id: format!("{}:{server}", cmd.id),
                })
                .await;
            match r {
                Ok(r) if r.accepted => {}
                Ok(r) => {
                    self.rejected(
                        cmd,
                        &format!("{server} refused the configuration: {}", r.detail),
                    )
                    .await?;
                    return Ok(Outcome::Done("refused"));
                }
                Err(e) => return self.unreachable(cmd, server, &e, attempt, false).await,
            }
        }
        let e = v1::Event {
            id: format!("configured:{}", cmd.id),
            time: Some(now()),
            site: cmd.site.clone(),
            server: cmd.server.clone(),
            epoch: cmd.epoch,
            op_id: cmd.op_id.clone(),
            payload: Some(Payload::ComponentConfigured(v1::ComponentConfigured {
                settings: c.settings.clone(),
                upstream_server: c.upstream_server.clone(),
            })),
        };
        self.bus.publish_event(&e).await?;
        Ok(Outcome::Done("configured"))
    }

    async fn start_sync(
        &self,
        cmd: &v1::Command,
        s: &v1::StartSync,
        attempt: u32,
    ) -> anyhow::Result<Outcome> {
        let (current, _) = self.slot_epoch(&cmd.site, "intranet").await?;
        if cmd.epoch < current {
            self.rejected(
                cmd,
                &format!(
                    "stale epoch {} (the active SUP of {} is at epoch {current})",
                    cmd.epoch, cmd.site
                ),
            )
            .await?;
            return Ok(Outcome::Done("stale"));
        }
        let r = self
            .driver
            .start_sync(v1::AgentStartSyncRequest {
                site: cmd.site.clone(),
                server: cmd.server.clone(),
                epoch: cmd.epoch,
                run_id: s.run_id.clone(),
                upstream_server: String::new(),
                full: s.full,
                trigger: s.trigger.clone(),
                parent_site: s.parent_site.clone(),
                internet_server: s.internet_server.clone(),
            })
            .await;
        match r {
            Ok(r) if r.accepted => {
                self.progress(cmd, &cmd.server, "sync_requested", &s.run_id, attempt)
                    .await?;
                Ok(Outcome::Done("sync_requested"))
            }
            Ok(r) => {
                self.rejected(
                    cmd,
                    &format!("{} refused the synchronization: {}", cmd.server, r.detail),
                )
                .await?;
                Ok(Outcome::Done("refused"))
            }
            Err(e) => self.unreachable(cmd, &cmd.server, &e, attempt, false).await,
        }
    }

    /// Fails roles that started installing and never reached "Installation was successful".
    /// Reads the command consumer's backlog into the queue-depth gauge.
    async fn measure_queue(&self) {
        let info = async {
            let stream = self
                .bus
                .js
                .get_stream(sup_bus::setup::COMMANDS_STREAM)
                .await
                .map_err(|e| e.to_string())?;
            stream
                .consumer_info("provisioner-commands")
                .await
                .map(|i| (i.num_pending, i.num_ack_pending))
                .map_err(|e| e.to_string())
        };
        match info.await {
            Ok((pending, unacked)) => {
                for (state, n) in [("pending", pending), ("unacked", unacked as u64)] {
                    self.metrics
                        .queue
                        .get_or_create(&QueueLabels {
                            state: state.to_string(),
                        })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the command queue depth"),
        }
    }

    pub async fn check_timeouts(&self) -> anyhow::Result<()> {
        let mut records = Vec::new();
        for (code, _) in self.bus.all_sites().await? {
            records.extend(self.bus.site_roles(&code).await?);
        }
        let limit = self.settings.install_timeout_secs;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for b in records {
            let Ok(r) = v1::RoleStatus::decode(b) else {
                continue;
            };
            let installing = r.state == v1::RoleState::Installing as i32
                || r.state == v1::RoleState::Provisioning as i32;
            let since = r.updated.map(|t| t.seconds.max(0) as u64).unwrap_or(now);
            if installing && now.saturating_sub(since) > limit {
                let e = v1::Event {
                    id: format!("timeout:{}:{}:{since}", r.site, r.server),
                    time: Some(self::now()),
                    site: r.site.clone(),
                    server: r.server.clone(),
                    epoch: 0,
                    op_id: String::new(),
                    payload: Some(Payload::Provisioning(v1::ProvisioningProgress {
                        command_id: String::new(),
                        step: "failed".into(),
                        detail: format!(
                            "no \"Installation was successful\" in SUPSetup.log within {limit} s of setup starting"
                        ),
                        attempt: 0,
                    })),
                };
                self.bus.publish_event(&e).await?;
            }
        }
        Ok(())
    }
}

pub async fn run(
    admin: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let agent_tls = settings
        .agent_tls
        .as_ref()
        .map(sup_runtime::ClientTls::tonic)
        .transpose()
        .context("agent_tls")?;
    let bus = Bus::connect(&settings.nats)
        .await
        .context("connecting to NATS")?;
    let agents = GrpcDriver::new(
        Endpoints {
            template: settings.agent_endpoint.clone(),
            table: settings.agents.clone(),
        },
        Duration::from_secs(settings.agent_timeout_secs.max(1)),
        agent_tls,
    );
    let providers = Arc::new(
        smsprov::SmsProviderDriver::new(
            &settings.providers,
            Arc::new(LeaderSlots { bus: bus.clone() }),
        )
        .context("providers")?,
    );
    for (site, p) in &settings.providers {
        tracing::info!(site, url = %p.url, user = %p.user, "site reached through its SMS Provider");
    }
    run_with(
        admin,
        settings,
        bus,
        Drivers {
            agents,
            providers: providers.clone(),
        },
        Some(providers),
        shutdown,
    )
    .await
}

/// Reads a site's active slot from the KV stream's leader, for the SMS Provider driver's fencing.
struct LeaderSlots {
    bus: Bus,
}

impl smsprov::SlotReader for LeaderSlots {
    fn read<'a>(
        &'a self,
        site: &'a str,
        slot: &'a str,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<(u64, Vec<String>)>> {
        Box::pin(read_slot(&self.bus, site, slot, true))
    }
}

/// A slot's epoch (the KV revision of its key, 0 when never set) and holders, from any replica
/// or from the stream's leader.
pub(crate) async fn read_slot(
    bus: &Bus,
    site: &str,
    slot: &str,
    from_leader: bool,
) -> anyhow::Result<(u64, Vec<String>)> {
    let key = subjects::active_key(site, slot);
    let record = if from_leader {
        bus.kv_get_from_leader(&bus.buckets.active, &key).await?
    } else {
        bus.kv_get(&bus.buckets.active, &key).await?
    };
    Ok(match record {
        Some((b, rev)) => (
            rev,
            v1::ActiveSlot::decode(b)
                .map(|a| a.members)
                .unwrap_or_default(),
        ),
        None => (0, Vec::new()),
    })
}

/// Runs with any driver; `providers`, the SMS Provider driver among them, is read back for drift.
pub async fn run_with<D: SiteDriver>(
    admin: TcpListener,
    settings: Settings,
    bus: Bus,
    driver: D,
    providers: Option<Arc<smsprov::SmsProviderDriver>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    bus.register_metrics(&mut registry);
    metrics.register(&mut registry);
    let mut life = Lifecycle::new();
    life.serve_admin(admin, registry);
    let p = Arc::new(Provisioner {
        bus: bus.clone(),
        driver: Arc::new(driver),
        settings,
        metrics,
    });
    let (worker, stop) = (p.clone(), life.stop());
    life.spawn("commands", async move {
        consume(worker, stop).await;
        Ok(())
    });
    if let Some(providers) = providers {
        let (bus, gauge, stop) = (bus.clone(), p.metrics.drift.clone(), life.stop());
        let interval = Duration::from_secs(p.settings.drift_interval_secs.max(1));
        life.spawn("drift", async move {
            drift::run(bus, providers, gauge, interval, stop).await;
            Ok(())
        });
    }
    let (checker, mut stop) = (p.clone(), life.stop());
    life.spawn("timeouts", async move {
        loop {
            checker.measure_queue().await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            if let Err(e) = checker.check_timeouts().await {
                tracing::warn!(error = %e, "checking install timeouts");
            }
        }
    });
    let result = life.run_until(shutdown).await;
    bus.close().await;
    result
}

async fn consume<D: SiteDriver>(p: Arc<Provisioner<D>>, stop: tokio::sync::watch::Receiver<bool>) {
    let bus = p.bus.clone();
    let make = || bus.command_consumer("provisioner", Duration::from_secs(60), -1);
    sup_bus::consume_durable("provisioner-commands", make, stop, |msg| {
        let p = p.clone();
        async move {
            let cmd = match sup_bus::decode_command(&msg.subject, &msg.payload) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "dropping an undecodable command");
                    let _ = msg.ack_with(AckKind::Term).await;
                    return;
                }
            };
            let attempt = msg.info().map(|i| i.delivered.max(1) as u32).unwrap_or(1);
            if attempt > 1 {
                p.metrics.redeliveries.inc();
            }
            let span =
                sup_bus::trace::process_span(&msg, &cmd.id, &cmd.site, &cmd.server, cmd.epoch);
            let started = std::time::Instant::now();
            let result = p.handle(&cmd, attempt).instrument(span).await;
            let kind = kind_name(&cmd.kind).to_string();
            let outcome = match &result {
                Ok(Outcome::Done(what)) => *what,
                Ok(Outcome::Retry(_)) => "retry",
                Err(_) => "error",
            };
            p.metrics
                .duration
                .get_or_create(&CommandLabels {
                    kind: kind.clone(),
                    outcome: outcome.to_string(),
                })
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(Outcome::Done(what)) => {
                    p.metrics
                        .commands
                        .get_or_create(&CommandLabels {
                            kind,
                            outcome: what.to_string(),
                        })
                        .inc();
                    tracing::info!(command = %cmd.id, outcome = what, "command done");
                    if let Err(e) = msg.ack().await {
                        tracing::warn!(error = %e, "acking a command");
                    }
                }
                Ok(Outcome::Retry(delay)) => {
                    let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
                }
                Err(e) => {
                    tracing::warn!(command = %cmd.id, error = %e, "handling a command; it will be redelivered");
                    let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(installed: bool, version: &str, http: u32, https: u32) -> v1::WsusInfo {
        v1::WsusInfo {
            server: "a.corp.example.com".into(),
            installed,
            version: version.into(),
            http_port: http,
            https_port: https,
            ssl: false,
        }
    }

    fn role(http: u32, https: u32) -> v1::SoftwareUpdatePoint {
        v1::SoftwareUpdatePoint {
            server: "a.corp.example.com".into(),
            http_port: http,
            https_port: https,
            ..Default::default()
        }
    }

    #[test]
    fn prerequisites_say_what_to_do() {
        assert!(
            prerequisites(
                &info(true, "3.2.7600.226", 8530, 8531),
                &role(8530, 8531),
                None
            )
            .is_ok()
        );
        assert!(
            prerequisites(&info(true, "3.2.7600.226", 80, 443), &role(0, 0), None).is_ok(),
            "defaults are 80/443"
        );
        let e = prerequisites(&info(false, "", 8530, 8531), &role(8530, 8531), None)
            .expect_err("no wsus");
        assert!(e.contains("WSUS 3.0 is not installed"), "{e}");
        let e = prerequisites(
            &info(true, "6.2.9200.16384", 8530, 8531),
            &role(8530, 8531),
            None,
        )
        .expect_err("wsus 4");
        assert!(e.contains("not WSUS 3.0"), "{e}");
        // WSUS 3.0 before SP1 (RTM builds are 3.0.6000.x) fails with the version found and needed.
        let e = prerequisites(
            &info(true, "3.0.6000.374", 8530, 8531),
            &role(8530, 8531),
            None,
        )
        .expect_err("wsus 3.0 rtm");
        assert!(
            e.contains("3.0.6000.374") && e.contains("3.1.6001.65") && e.contains("SP1"),
            "{e}"
        );
        assert!(
            prerequisites(
                &info(true, "3.1.6001.65", 8530, 8531),
                &role(8530, 8531),
                None
            )
            .is_ok(),
            "SP1 itself"
        );
        assert!(
            prerequisites(&info(true, "3.x", 8530, 8531), &role(8530, 8531), None).is_err(),
            "not a version"
        );
        let e = prerequisites(
            &info(true, "3.2.7600.226", 8530, 8531),
            &role(80, 443),
            None,
        )
        .expect_err("ports");
        assert!(e.contains("80/443") && e.contains("8530/8531"), "{e}");
        // What an SMS Provider site's registry says: the web site's port, no SSL port, maybe no
        // version; the web site's port still has to match.
        assert!(
            prerequisites(&info(true, "", 8530, 0), &role(8530, 8531), None).is_ok(),
            "unknown SSL port and version"
        );
        assert!(
            prerequisites(&info(true, "", 80, 0), &role(8530, 8531), None).is_err(),
            "the web site's port differs"
        );
        let sys = v1::SiteSystem {
            server: "a.corp.example.com".into(),
            computer_account_access: Some(false),
            install_account: "CORP\\svc".into(),
            install_password: Some(v1::SecretRef {
                source: Some(v1::secret_ref::Source::Env(
                    "SUP_TEST_SURELY_UNSET_PW".into(),
                )),
            }),
            ..Default::default()
        };
        let e = prerequisites(
            &info(true, "3.2.7600.226", 8530, 8531),
            &role(8530, 8531),
            Some(&sys),
        )
        .expect_err("secret");
        assert!(e.contains("SUP_TEST_SURELY_UNSET_PW"), "{e}");
        let mut proxied = role(8530, 8531);
        proxied.proxy = Some(v1::Proxy {
            server: "proxy.corp.example.com".into(),
            port: 8080,
            account: "CORP\\proxy".into(),
            password: Some(v1::SecretRef {
                source: Some(v1::secret_ref::Source::File(
                    "/nonexistent/proxy-password".into(),
                )),
            }),
        });
        let e = prerequisites(&info(true, "3.2.7600.226", 8530, 8531), &proxied, None)
            .expect_err("proxy secret");
        assert!(
            e.contains("proxy account") && e.contains("/nonexistent/proxy-password"),
            "{e}"
        );
    }
}
