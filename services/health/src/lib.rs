//! The health service: probes the WSUS web site of every installed SUP role (each NLB node has
//! its own) with the ladder of `sup-wsus`, combines it with the latest WSUS health lines from the
//! log watcher, keeps each server's report in KV (`sup_health`) and publishes `HealthChanged` only
//! on transitions (decided by compare-and-set, so replicas never announce one twice). Replicas
//! share the servers (`shard`): each probes its own. gRPC `GetHealth` / `ProbeNow` serve
//! operators.
//!
//! Rooms: `settings`, `metrics`, `api` (gRPC), `assess` (a ladder and the logs into one health),
//! `shard` (which replica probes which server); this file holds the probing loop, the stored
//! reports and `run`.

mod api;
pub mod assess;
mod metrics;
mod milestones;
mod settings;
pub mod shard;

pub use api::Api;
use metrics::health_labels;
pub use metrics::{ComponentLabel, Metrics, ProbeLabels, ServerHealthLabels, TransitionLabels};
pub use settings::{DEFAULTS, SERVICE, Settings, serve};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use sup_bus::{Bus, BusConfig, Cas, subjects};
use sup_proto::prost::Message as _;
use sup_proto::v1::{self, event::Payload};
use sup_runtime::{Lifecycle, ServiceSettings};
use sup_smslog::MilestoneKind;
use sup_wsus::probe::{ProbeResult, Prober, Target};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use assess::{Health, LogView};
use shard::Membership;

/// One server to probe, as the registry and the site spec describe it.
#[derive(Debug, Clone)]
pub struct Probed {
    pub site: String,
    pub server: String,
    pub http_port: u16,
    pub https_port: u16,
    pub ssl: bool,
}

pub struct HealthService {
    pub bus: Bus,
    pub settings: Settings,
    pub prober: Prober,
    pub metrics: Metrics,
    /// The replicas alive, which share the servers.
    pub membership: Membership,
    /// server → (milestone name → when seen).
    seen: Mutex<HashMap<String, HashMap<MilestoneKind, Instant>>>,
    /// KV key → (revision, health) of the report this replica last wrote, so the next write is
    /// one compare-and-set without a read first; another writer makes it fall back to a read.
    written: Mutex<HashMap<String, (u64, i32)>>,
    /// (site, server) of every server whose `sup_health` gauges this replica exports: only
    /// those in its share, so a server that moved to another replica is not shown twice, once
    /// with its old health.
    exported: Mutex<BTreeSet<(String, String)>>,
}

/// Sites whose roles are read at once when a round lists its targets.
const SITES_IN_FLIGHT: usize = 16;

fn proto_health(h: Health) -> v1::Health {
    match h {
        Health::Healthy => v1::Health::Healthy,
        Health::Degraded => v1::Health::Degraded,
        Health::Unhealthy => v1::Health::Unhealthy,
    }
}

fn proto_result(r: ProbeResult) -> v1::ProbeResult {
    match r {
        ProbeResult::Ok => v1::ProbeResult::Ok,
        ProbeResult::ConnectFailed => v1::ProbeResult::ConnectFailed,
        ProbeResult::TlsFailed => v1::ProbeResult::TlsFailed,
        ProbeResult::Timeout => v1::ProbeResult::Timeout,
        ProbeResult::HtmlError => v1::ProbeResult::HtmlError,
        ProbeResult::SoapFault => v1::ProbeResult::SoapFault,
        ProbeResult::BadResponse => v1::ProbeResult::BadResponse,
    }
}

impl HealthService {
    pub fn new(bus: Bus, settings: Settings) -> anyhow::Result<Self> {
        let roots = if settings.ca_file.is_empty() {
            Vec::new()
        } else {
            std::fs::read(&settings.ca_file)
                .with_context(|| format!("reading ca_file {}", settings.ca_file))?
        };
        let prober = Prober::new(Duration::from_millis(settings.timeout_ms.max(50)), &roots);
        let heartbeat = settings.heartbeat();
        anyhow::ensure!(
            !heartbeat.is_zero() && heartbeat <= sup_bus::MAX_HEARTBEAT,
            "heartbeat_ms: must be between 1 and {} (it is {})",
            sup_bus::MAX_HEARTBEAT.as_millis(),
            settings.heartbeat_ms
        );
        let membership = Membership::new(shard::replica_name(&settings.replica), heartbeat);
        Ok(Self {
            bus,
            settings,
            prober,
            metrics: Metrics::default(),
            membership,
            seen: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            exported: Mutex::new(BTreeSet::new()),
        })
    }

    /// Every installed role of every site (NLB nodes included: each has its role).
    pub async fn targets(&self) -> anyhow::Result<Vec<Probed>> {
        let mut out = Vec::new();
        // Sites read several at a time: one at a time, thousands of sites take seconds a round.
        let sites: Vec<_> = futures::stream::iter(self.bus.applied_sites().await?)
            .map(|site| async move {
                let roles = self.bus.role_records(&site.code).await;
                (site, roles)
            })
            .buffered(SITES_IN_FLIGHT)
            .collect()
            .await;
        for (site, roles) in sites {
            let code = site.code.clone();
            for r in roles? {
                let installed = matches!(
                    v1::RoleState::try_from(r.state),
                    Ok(v1::RoleState::Installed
                        | v1::RoleState::Verifying
                        | v1::RoleState::Ready
                        | v1::RoleState::Active
                        | v1::RoleState::Unhealthy)
                );
                if !installed {
                    continue;
                }
                let Some(sup) = site
                    .software_update_points
                    .iter()
                    .find(|s| s.server == r.server)
                else {
                    continue;
                };
                out.push(Probed {
                    site: code.clone(),
                    server: r.server.clone(),
                    http_port: if sup.http_port == 0 {
                        80
                    } else {
                        sup.http_port as u16
                    },
                    https_port: if sup.https_port == 0 {
                        443
                    } else {
                        sup.https_port as u16
                    },
                    ssl: sup.ssl,
                });
            }
        }
        Ok(out)
    }

    /// Where a declared port is probed (`port_map`), else the port itself.
    fn mapped(&self, port: u16) -> u16 {
        self.settings
            .port_map
            .get(&port.to_string())
            .copied()
            .unwrap_or(port)
    }

    async fn resolve(&self, host: &str, port: u16) -> Option<IpAddr> {
        let table = &self.settings.resolve;
        if let Some(ip) = table
            .get(host)
            .or_else(|| table.get("*"))
            .and_then(|a| a.parse::<IpAddr>().ok())
        {
            return Some(ip);
        }
        tokio::net::lookup_host((host, port))
            .await
            .ok()?
            .next()
            .map(|a| a.ip())
    }

    /// Probes one server, stores its report and announces a transition.
    pub async fn probe(&self, t: &Probed) -> anyhow::Result<v1::HealthReport> {
        let components = match self.resolve(&t.server, t.http_port).await {
            Some(ip) => {
                self.prober
                    .probe(&Target {
                        host: t.server.clone(),
                        addr: SocketAddr::new(ip, self.mapped(t.http_port)),
                        https_addr: SocketAddr::new(ip, self.mapped(t.https_port)),
                        http_port: t.http_port,
                        https_port: t.https_port,
                        ssl: t.ssl,
                    })
                    .await
            }
            None => vec![sup_wsus::probe::Component {
                name: "tcp",
                result: ProbeResult::ConnectFailed,
                detail: format!("{} does not resolve", t.server),
                latency: Duration::ZERO,
            }],
        };
        for c in &components {
            self.metrics
                .results
                .get_or_create(&ProbeLabels {
                    component: c.name.to_string(),
                    result: c.result.as_str().to_string(),
                })
                .inc();
            self.metrics
                .latency
                .get_or_create(&ComponentLabel {
                    component: c.name.to_string(),
                })
                .observe(c.latency.as_secs_f64());
        }
        let max_age = (self.settings.milestone_max_age_secs > 0)
            .then(|| Duration::from_secs(self.settings.milestone_max_age_secs));
        let (health, failing) = assess::assess(&components, self.log_view(&t.server), max_age);
        let report = v1::HealthReport {
            site: t.site.clone(),
            server: t.server.clone(),
            health: proto_health(health) as i32,
            components: components
                .iter()
                .map(|c| v1::ComponentProbe {
                    component: c.name.to_string(),
                    result: proto_result(c.result) as i32,
                    detail: c.detail.clone(),
                    latency_ms: c.latency.as_millis().min(u128::from(u32::MAX)) as u32,
                })
                .collect(),
            checked: Some(SystemTime::now().into()),
            prober: self.membership.me.clone(),
        };
        self.store(&report, &failing).await?;
        Ok(report)
    }

    /// Writes the report; a change of health is decided by compare-and-set and announced once.
    async fn store(
        &self,
        report: &v1::HealthReport,
        failing: &[(String, String)],
    ) -> anyhow::Result<()> {
        let key = subjects::health_key(&report.site, &report.server);
        let kv = self.bus.health();
        let mut known = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
        for _ in 0..16 {
            let (revision, previous) = match known.take() {
                Some((rev, health)) => (Some(rev), health),
                None => {
                    let current = kv.get(&key).await?;
                    let previous = current
                        .as_ref()
                        .and_then(|(b, _)| v1::HealthReport::decode(b.clone()).ok())
                        .map(|r| r.health)
                        .unwrap_or(v1::Health::Unknown as i32);
                    (current.map(|(_, rev)| rev), previous)
                }
            };
            let bytes = report.encode_to_vec().into();
            let cas = kv.write(&key, bytes, revision).await?;
            let Cas::Won(rev) = cas else { continue };
            self.written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), (rev, report.health));
            self.exported
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((report.site.clone(), report.server.clone()));
            for (labels, h) in health_labels(&report.site, &report.server) {
                self.metrics
                    .current
                    .get_or_create(&labels)
                    .set(i64::from(h as i32 == report.health));
            }
            if previous != report.health {
                let to = v1::Health::try_from(report.health).unwrap_or(v1::Health::Unknown);
                tracing::info!(site = %report.site, server = %report.server, from = previous, to = ?to, ?failing, "health changed");
                self.metrics
                    .transitions
                    .get_or_create(&TransitionLabels {
                        to: format!("{to:?}").to_ascii_lowercase(),
                    })
                    .inc();
                let e = v1::Event {
                    id: format!("health:{}:{}:{rev}", report.site, report.server),
                    time: Some(SystemTime::now().into()),
                    site: report.site.clone(),
                    server: report.server.clone(),
                    epoch: 0,
                    op_id: String::new(),
                    payload: Some(Payload::HealthChanged(v1::HealthChanged {
                        from: previous,
                        to: report.health,
                        failing: failing
                            .iter()
                            .map(|(c, d)| v1::ComponentProbe {
                                component: c.clone(),
                                detail: d.clone(),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                };
                self.bus.publish_event(&e).await?;
            }
            return Ok(());
        }
        anyhow::bail!("the health record of {key} kept changing")
    }

    /// The targets of `all` that fall to this replica among the replicas `live`.
    fn share<'a>(
        &'a self,
        all: Vec<Probed>,
        live: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = Probed> + 'a {
        all.into_iter().filter(move |t| self.owns(live, t))
    }

    fn owns(&self, live: &BTreeSet<String>, t: &Probed) -> bool {
        Membership::owns(
            live,
            &self.membership.me,
            &subjects::health_key(&t.site, &t.server),
        )
    }

    /// One round: every target in this replica's share.
    pub async fn round(self: &Arc<Self>) -> anyhow::Result<()> {
        let live = self.membership.live();
        let mine: Vec<Probed> = self.share(self.targets().await?, &live).collect();
        self.metrics.replicas.set(live.len() as i64);
        self.metrics.probed_servers.set(mine.len() as i64);
        self.unexport_except(&mine);
        self.probe_all(mine).await;
        Ok(())
    }

    /// Drops the health gauges of the servers no longer in this replica's share.
    fn unexport_except(&self, mine: &[Probed]) {
        let keep: BTreeSet<(&str, &str)> = mine
            .iter()
            .map(|t| (t.site.as_str(), t.server.as_str()))
            .collect();
        let mut exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        exported.retain(|(site, server)| {
            let kept = keep.contains(&(site.as_str(), server.as_str()));
            if !kept {
                for (labels, _) in health_labels(site, server) {
                    self.metrics.current.remove(&labels);
                }
            }
            kept
        });
    }

    /// After the replicas alive changed from `before` to `now`: probes at once the servers that
    /// fell to this replica, so none waits for this replica's next round.
    pub async fn take_over(
        self: &Arc<Self>,
        before: &BTreeSet<String>,
        now: &BTreeSet<String>,
    ) -> anyhow::Result<()> {
        let taken: Vec<Probed> = self
            .share(self.targets().await?, now)
            .filter(|t| !self.owns(before, t))
            .collect();
        self.metrics.replicas.set(now.len() as i64);
        if !taken.is_empty() {
            tracing::info!(servers = taken.len(), "probing the servers taken over");
        }
        self.probe_all(taken).await;
        Ok(())
    }

    /// Probes `targets`, at most `concurrency` at once; each step has its own timeout, so one
    /// slow server never holds up the others.
    async fn probe_all(self: &Arc<Self>, targets: Vec<Probed>) {
        // Each step has its own timeout and the HTTP steps run in turn: TCP, TLS and every step
        // at their slowest, with room to spare.
        let steps = sup_wsus::probe::LADDER.len() as u64 + 3;
        let hard = Duration::from_millis(self.settings.timeout_ms.max(50) * steps);
        futures::stream::iter(targets)
            .for_each_concurrent(self.settings.concurrency.max(1), |t| {
                let me = self.clone();
                async move {
                    match tokio::time::timeout(hard, me.probe(&t)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(server = %t.server, error = %e, "probe"),
                        Err(_) => {
                            tracing::warn!(server = %t.server, "probe exceeded its time budget")
                        }
                    }
                }
            })
            .await;
    }

    async fn stored(&self, site: &str, server: &str) -> anyhow::Result<Vec<v1::HealthReport>> {
        let mut out = Vec::new();
        let sites: Vec<String> = if site.is_empty() {
            self.bus
                .all_sites()
                .await?
                .into_iter()
                .map(|(c, _)| c)
                .collect()
        } else {
            vec![site.to_string()]
        };
        for code in sites {
            for r in self.bus.role_records(&code).await? {
                if !server.is_empty() && r.server != server {
                    continue;
                }
                if let Some((h, _)) = self.bus.health_report(&code, &r.server).await? {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}

pub async fn run(
    grpc: TcpListener,
    admin: TcpListener,
    settings: ServiceSettings<Settings>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Certificate files are read before anything else, so a bad path stops the start at once.
    let tls = sup_runtime::tls::server_config(settings.tls.as_ref())?;
    let bus = Bus::connect(&settings.own.nats).await?;
    let svc = Arc::new(HealthService::new(bus.clone(), settings.own)?);
    let mut registry = prometheus_client::registry::Registry::default();
    bus.register_metrics(&mut registry);
    registry.register(
        "sup_probe_results",
        "Probe steps by component and result",
        svc.metrics.results.clone(),
    );
    registry.register(
        "sup_probe_latency_seconds",
        "Probe step latency by component",
        svc.metrics.latency.clone(),
    );
    registry.register(
        "sup_health_transitions",
        "Health transitions by new health",
        svc.metrics.transitions.clone(),
    );
    registry.register(
        "sup_health",
        "Each server's current health (1 for its health, 0 for the others)",
        svc.metrics.current.clone(),
    );
    registry.register(
        "sup_health_probed_servers",
        "Servers this replica probes in its share",
        svc.metrics.probed_servers.clone(),
    );
    registry.register(
        "sup_health_replicas",
        "Health replicas alive, as this replica sees them",
        svc.metrics.replicas.clone(),
    );
    let mut life = Lifecycle::new();
    life.serve_admin(admin, registry);
    let follower = svc.clone();
    life.spawn_until_stopped("milestones", |stop| async move {
        follower.follow_milestones(stop).await
    });
    let follower = svc.clone();
    life.spawn_until_stopped("replicas", |stop| async move {
        follower.membership.follow(&follower.bus, stop).await
    });
    let beater = svc.clone();
    life.spawn_until_stopped("heartbeat", |stop| async move {
        let every = beater.settings.heartbeat();
        beater.membership.beat(&beater.bus, every, stop).await
    });
    let (prober, mut stop) = (svc.clone(), life.stop());
    life.spawn("probes", async move {
        let every = Duration::from_millis(prober.settings.interval_ms.max(100));
        // Rounds start at a fixed rate (each server probed once per interval), not an interval
        // after the previous round ended; a round longer than the interval starts the next at once.
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let heartbeat = prober.settings.heartbeat();
        tokio::select! {
            _ = prober.membership.caught_up(heartbeat * 3) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let mut replicas = prober.membership.subscribe();
        let mut known = replicas.borrow_and_update().clone();
        loop {
            let replicas_changed = tokio::select! {
                _ = ticks.tick() => false,
                Ok(()) = replicas.changed() => true,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let done = if replicas_changed {
                let now = replicas.borrow_and_update().clone();
                let done = prober.take_over(&known, &now).await;
                known = now;
                done
            } else {
                prober.round().await
            };
            if let Err(e) = done {
                tracing::warn!(error = %e, "probe round");
            }
        }
    });
    let api = v1::health_service_server::HealthServiceServer::new(Api(svc.clone()))
        .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES);
    life.serve_grpc_api(grpc, api, tls).await?;
    life.run_until(shutdown).await
}
