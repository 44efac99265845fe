//! The provisioner: consumes install, remove, configure and synchronize commands from the
//! `SUP_COMMANDS` work queue (a durable consumer shared by every replica) and carries them out on
//! site systems through a [`driver::SiteDriver`]. It checks the procedure's prerequisites before
//! installing, reports progress as events, fences slot-bound work by the slot's epoch, retries
//! only what retrying can fix, and records each command's outcome before acking it, so a
//! redelivered command does nothing twice.
//!
//! Rooms: `settings`, `metrics`, `prerequisites` (what an install needs), `commands` (carrying
//! out one command), `outcomes` (events, remembered outcomes, retries, timeouts), `driver` and
//! `smsprov` (the ways to a site system), `drift`; this file holds the type and `run`.

mod commands;
pub mod drift;
pub mod driver;
mod metrics;
mod outcomes;
mod prerequisites;
mod settings;
pub mod smsprov;

pub use metrics::{CommandLabels, Metrics, QueueLabels};
pub use prerequisites::prerequisites;
pub use settings::{DEFAULTS, SERVICE, Settings, serve};

use std::collections::BTreeMap;
use std::future::Future;
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
use sup_bus::{Bus, BusConfig, Delivery, Durable, Verdict, subjects};
use sup_proto::v1::{self, command::Kind, event::Payload};
use sup_runtime::{Lifecycle, ServiceSettings};
use tokio::net::TcpListener;

use driver::{DriverError, Drivers, Endpoints, GrpcDriver, SiteDriver};

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

pub async fn run(
    admin: TcpListener,
    settings: ServiceSettings<Settings>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = settings.own;
    let agent_tls = settings
        .agent_tls
        .as_ref()
        .map(sup_runtime::ClientTls::tonic)
        .transpose()
        .context("agent_tls")?;
    let bus = Bus::connect(&settings.nats).await?;
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
    Ok(match bus.slot(site, slot, from_leader).await? {
        Some((a, rev)) => (rev, a.members),
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
    life.spawn_until_stopped("commands", |stop| consume(p.clone(), stop));
    if let Some(providers) = providers {
        let interval = Duration::from_secs(p.settings.drift_interval_secs.max(1));
        life.spawn_until_stopped("drift", |stop| {
            drift::run(
                bus.clone(),
                providers,
                p.metrics.drift.clone(),
                interval,
                stop,
            )
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

/// The provisioner's share of the command queue: a command unacknowledged for a minute (its
/// handler lost with a crashed replica) goes to another replica.
pub(crate) fn command_queue() -> Durable {
    Durable::commands("provisioner").ack_wait(Duration::from_secs(60))
}

async fn consume<D: SiteDriver>(p: Arc<Provisioner<D>>, stop: tokio::sync::watch::Receiver<bool>) {
    let bus = p.bus.clone();
    let queue = command_queue().in_lanes(p.settings.command_lanes);
    bus.consume(queue, stop, |d: Delivery<v1::Command>| {
        let p = p.clone();
        async move {
            let cmd = d.message;
            let attempt = u32::try_from(d.attempt).unwrap_or(u32::MAX);
            if attempt > 1 {
                p.metrics.redeliveries.inc();
            }
            let span = d.span;
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
                    Verdict::Done
                }
                Ok(Outcome::Retry(delay)) => Verdict::RetryAfter(delay),
                Err(e) => {
                    tracing::warn!(command = %cmd.id, error = %e, "handling a command; it will be redelivered");
                    Verdict::RetryAfter(Duration::from_secs(1))
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
