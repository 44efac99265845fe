//! The scheduler: starts synchronization of the top site on its schedule (or on demand, the
//! console's "Run Synchronization"), sends each run to the site's current active SUP with its
//! epoch, follows it through the log watcher's sync milestones, and starts the child sites'
//! runs when their parent's run succeeds, as ConfigMgr 2007 does. Each due time fires exactly once
//! across replicas: the site's next-fire record in KV moves by compare-and-set, and only the
//! writer that moved it starts the run. Time comes from a [`Clock`], so tests drive it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sup_bus::async_nats::jetstream::AckKind;
use sup_bus::{Bus, BusConfig, Cas, subjects};
use sup_core::model::{Site, SyncSource};
use sup_proto::prost::Message as _;
use sup_proto::v1::{self, event::Payload};
use sup_runtime::{Lifecycle, LogFormat};
use sup_smslog::MilestoneKind;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub log_format: LogFormat,
    pub tick_ms: u64,
    /// A run with no result after this long has failed.
    pub run_timeout_secs: u64,
    /// After a failed run, the next attempt ("Sync failed. Will retry in 60 minutes").
    pub retry_after_secs: u64,
    pub nats: BusConfig,
    /// gRPC over TLS (and, with `client_ca_file`, mutual TLS); plain gRPC when absent.
    #[serde(default)]
    pub tls: Option<sup_runtime::ServerTls>,
}

/// Where time comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests move by hand.
#[derive(Clone)]
pub struct ManualClock(pub Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The site's schedule state: `v1::ScheduleRecord`, read and written through sup-bus.
type SchedRecord = v1::ScheduleRecord;

/// The site's current run (`<site>.run` in `sup_sites`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub server: String,
    pub epoch: u64,
    pub started: i64,
    pub trigger: String,
    pub full: bool,
    pub command_id: String,
    pub finished: bool,
    /// The active Internet-based SUP, synchronized after the intranet one in this run.
    #[serde(default)]
    pub internet_server: String,
    /// The parent site that asked for this run.
    #[serde(default)]
    pub parent_site: String,
}

fn run_key(site: &str) -> String {
    format!("{}.run", subjects::site_key(site))
}

fn ts(secs: i64) -> sup_proto::prost_types::Timestamp {
    sup_proto::prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

pub struct Scheduler<C: Clock> {
    pub bus: Bus,
    pub clock: C,
    pub settings: Settings,
    pub metrics: Metrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
}

/// Synchronization runs as this replica saw them end, and each top site's next due time.
#[derive(Clone)]
pub struct Metrics {
    pub runs: Family<ResultLabels, Counter>,
    pub duration: Family<ResultLabels, Histogram>,
    pub last_success: Family<SiteLabels, Gauge>,
    pub next_due: Family<SiteLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0])
            }),
            last_success: Family::default(),
            next_due: Family::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sup_sync_runs",
            "Synchronization runs ended, by result (succeeded, failed)",
            self.runs.clone(),
        );
        r.register(
            "sup_sync_duration_seconds",
            "Synchronization run duration from start to its result, by result",
            self.duration.clone(),
        );
        r.register(
            "sup_sync_last_success_timestamp_seconds",
            "When each site's last synchronization succeeded (Unix time)",
            self.last_success.clone(),
        );
        r.register(
            "sup_sync_next_due_timestamp_seconds",
            "When each scheduled site's next synchronization is due (Unix time)",
            self.next_due.clone(),
        );
    }
}

/// Why a run could not start.
#[derive(Debug)]
pub enum StartError {
    Busy(String),
    Refused(String),
    Bus(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Bus(e)
    }
}

impl From<sup_bus::BusError> for StartError {
    fn from(e: sup_bus::BusError) -> Self {
        StartError::Bus(e.into())
    }
}

impl<C: Clock> Scheduler<C> {
    async fn sites(&self) -> anyhow::Result<Vec<(v1::Site, Site)>> {
        let mut out = Vec::new();
        for (_, bytes) in self.bus.all_sites().await? {
            let Ok(pb) = v1::Site::decode(bytes) else {
                continue;
            };
            let mut known = BTreeMap::new();
            if !pb.parent.is_empty() {
                known.insert(pb.parent.clone(), None);
            }
            if let Ok(mut v) =
                sup_core::spec::validate_sites(&[sup_proto::convert::site_from_proto(&pb)], &known)
                && let Some(m) = v.pop()
            {
                out.push((pb, m));
            }
        }
        Ok(out)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> anyhow::Result<Option<(T, u64)>> {
        Ok(match self.bus.kv_get(&self.bus.buckets.sites, key).await? {
            Some((b, rev)) => Some((
                serde_json::from_slice(&b).context("a scheduler record")?,
                rev,
            )),
            None => None,
        })
    }

    async fn cas_schedule(
        &self,
        site: &str,
        record: &SchedRecord,
        rev: Option<u64>,
    ) -> anyhow::Result<Cas> {
        let key = sup_bus::records::schedule_key(site);
        let bytes = sup_bus::records::encode_schedule(record);
        Ok(match rev {
            Some(r) => {
                self.bus
                    .kv_update(&self.bus.buckets.sites, &key, bytes, r)
                    .await?
            }
            None => {
                self.bus
                    .kv_create(&self.bus.buckets.sites, &key, bytes)
                    .await?
            }
        })
    }

    async fn cas_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        rev: Option<u64>,
    ) -> anyhow::Result<Cas> {
        let bytes: Bytes = serde_json::to_vec(value)?.into();
        Ok(match rev {
            Some(r) => {
                self.bus
                    .kv_update(&self.bus.buckets.sites, key, bytes, r)
                    .await?
            }
            None => {
                self.bus
                    .kv_create(&self.bus.buckets.sites, key, bytes)
                    .await?
            }
        })
    }

    /// The next fire of the site's schedule after `now`, at the site's wall-clock time (or UTC
    /// for a GMT token); `None` for a child site, which has no schedule of its own.
    fn next_after(site: &Site, now: DateTime<Utc>) -> Option<i64> {
        site.software_updates
            .top
            .as_ref()?
            .schedule
            .next_fire_utc(site.time_zone, now)
            .map(|t| t.timestamp())
    }

    /// What a top site's next fire is computed from: its schedule's token and its time zone.
    fn basis(site: &Site) -> String {
        let token = site
            .software_updates
            .top
            .as_ref()
            .and_then(|t| sup_core::token::from_schedule(&t.schedule).ok())
            .unwrap_or_default();
        format!("{token}@{}", site.time_zone.name())
    }

    /// One pass: due schedules and retries start runs (exactly once across replicas); overdue
    /// runs time out.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        for (_, site) in self.sites().await? {
            self.check_timeout(&site.code, now).await?;
            // In ConfigMgr 2007 only the top site (synchronizing from Microsoft Update) has a
            // schedule; children follow their parent (and retry their own failures).
            let top = site.parent.is_none()
                && site.software_updates.sync_source == SyncSource::MicrosoftUpdate;
            let current = self.bus.schedule_record(&site.code).await?;
            if !top && current.as_ref().is_none_or(|(r, _)| r.retry_at.is_none()) {
                continue;
            }
            let (record, rev) = match &current {
                Some((r, rev)) => (r.clone(), Some(*rev)),
                None => (SchedRecord::default(), None),
            };
            let basis = top.then(|| Self::basis(&site));
            let due_schedule =
                top && record.basis == basis && record.next.is_some_and(|n| n <= now.timestamp());
            let due_retry = record.retry_at.is_some_and(|r| r <= now.timestamp());
            let next = if !top {
                None
            } else if record.next.is_none() || due_schedule || record.basis != basis {
                // Missed fires collapse into this one: the next is computed from now.
                Self::next_after(&site, now)
            } else {
                record.next
            };
            let updated = SchedRecord {
                next,
                retry_at: if due_retry { None } else { record.retry_at },
                basis,
            };
            if let Some(due) = updated.next {
                self.metrics
                    .next_due
                    .get_or_create(&SiteLabels {
                        site: site.code.clone(),
                    })
                    .set(due);
            }
            if updated == record && current.is_some() {
                continue;
            }
            match self.cas_schedule(&site.code, &updated, rev).await? {
                Cas::Won(_) => {
                    let trigger = if due_schedule {
                        Some("schedule")
                    } else if due_retry {
                        Some("retry")
                    } else {
                        None
                    };
                    if let Some(trigger) = trigger {
                        match self.start_run(&site, trigger, true, "").await {
                            Ok(_) | Err(StartError::Busy(_)) => {}
                            Err(StartError::Refused(m)) => {
                                tracing::warn!(site = %site.code, m, "scheduled run not started")
                            }
                            Err(StartError::Bus(e)) => return Err(e),
                        }
                    }
                }
                Cas::Lost => {}
            }
        }
        Ok(())
    }

    async fn check_timeout(&self, site: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        if let Some((run, _)) = self.get_json::<RunRecord>(&run_key(site)).await?
            && !run.finished
            && now.timestamp() - run.started > self.settings.run_timeout_secs as i64
        {
            self.finish(
                site,
                &run.id,
                false,
                &format!(
                    "no result in wsyncmgr.log within {} s",
                    self.settings.run_timeout_secs
                ),
                0,
            )
            .await?;
        }
        Ok(())
    }

    /// Starts a run on the site's current active SUP, if none is running.
    pub async fn start_run(
        &self,
        site: &Site,
        trigger: &str,
        full: bool,
        op_id: &str,
    ) -> Result<v1::SyncRun, StartError> {
        let code = site.code.as_str();
        let now = self.clock.now().timestamp();
        let key = run_key(code);
        let current = self.get_json::<RunRecord>(&key).await?;
        if let Some((r, _)) = &current
            && !r.finished
        {
            return Err(StartError::Busy(format!(
                "run {} of {code} is still running",
                r.id
            )));
        }
        // A child synchronizes from its parent's active SUP and from nothing else: without one
        // the run waits (ConfigMgr never points a child at Microsoft Update instead).
        if let Some(parent) = &site.parent
            && self.holder(parent, "intranet").await?.0.is_empty()
        {
            return Err(StartError::Refused(format!(
                "site {code} waits: its parent {parent} has no active software update point to synchronize from"
            )));
        }
        let (server, epoch) = self.holder(code, "intranet").await?;
        let (internet_server, _) = self.holder(code, "internet").await?;
        // The run record's revision makes the id unique even for two runs within one second
        // (event and command ids derive from it, and the streams drop repeated ids).
        let previous = current.as_ref().map(|(_, rev)| *rev).unwrap_or(0);
        let id = format!("{code}-{now}-{trigger}-{previous}");
        let run = RunRecord {
            id: id.clone(),
            server: server.clone(),
            epoch,
            started: now,
            trigger: trigger.to_string(),
            full,
            command_id: format!("sync:{id}:{epoch}"),
            finished: false,
            internet_server,
            parent_site: if trigger == "parent" {
                site.parent.clone().unwrap_or_default()
            } else {
                String::new()
            },
        };
        match self.cas_json(&key, &run, current.map(|(_, r)| r)).await? {
            Cas::Won(_) => {}
            Cas::Lost => {
                return Err(StartError::Busy(format!(
                    "another run of {code} started first"
                )));
            }
        }
        let pb = self.run_proto(code, &run, v1::SyncState::Running, "");
        self.event(
            code,
            &server,
            epoch,
            op_id,
            format!("sync-start:{id}"),
            Payload::SyncStarted(v1::SyncStarted {
                run: Some(pb.clone()),
            }),
        )
        .await?;
        if server.is_empty() {
            self.close(
                code,
                &id,
                false,
                "the site has no active software update point",
                0,
            )
            .await?;
            self.schedule_retry(code).await?;
            return Err(StartError::Refused(format!(
                "site {code} has no active software update point"
            )));
        }
        self.send(code, &run).await?;
        tracing::info!(site = code, run = %id, server = %server, epoch, trigger, full, "synchronization started");
        Ok(pb)
    }

    /// The server that holds a slot of `code` (an NLB cluster's first node) and the slot's epoch;
    /// empty and 0 when nobody does.
    async fn holder(&self, code: &str, slot: &str) -> anyhow::Result<(String, u64)> {
        Ok(
            match self
                .bus
                .kv_get(&self.bus.buckets.active, &subjects::active_key(code, slot))
                .await?
            {
                Some((b, rev)) => {
                    let a = v1::ActiveSlot::decode(b).unwrap_or_default();
                    let server = if a.nlb {
                        a.members.first().cloned().unwrap_or_default()
                    } else {
                        a.target.clone()
                    };
                    let epoch = if server.is_empty() { 0 } else { rev };
                    (server, epoch)
                }
                None => (String::new(), 0),
            },
        )
    }

    async fn send(&self, code: &str, run: &RunRecord) -> anyhow::Result<()> {
        let cmd = v1::Command {
            id: run.command_id.clone(),
            op_id: String::new(),
            issued: Some(SystemTime::now().into()),
            site: code.to_string(),
            server: run.server.clone(),
            epoch: run.epoch,
            kind: Some(v1::command::Kind::StartSync(v1::StartSync {
                run_id: run.id.clone(),
                trigger: run.trigger.clone(),
                full: run.full,
                internet_server: run.internet_server.clone(),
                parent_site: run.parent_site.clone(),
            })),
        };
        self.bus.publish_command("provisioner", &cmd).await?;
        Ok(())
    }

    fn run_proto(
        &self,
        code: &str,
        run: &RunRecord,
        state: v1::SyncState,
        error: &str,
    ) -> v1::SyncRun {
        v1::SyncRun {
            id: run.id.clone(),
            site: code.to_string(),
            server: run.server.clone(),
            state: state as i32,
            started: Some(ts(run.started)),
            finished: (state != v1::SyncState::Running).then(|| ts(self.clock.now().timestamp())),
            error: error.to_string(),
            trigger: run.trigger.clone(),
            epoch: run.epoch,
            full: run.full,
            updates: 0,
        }
    }

    async fn event(
        &self,
        site: &str,
        server: &str,
        epoch: u64,
        op_id: &str,
        id: String,
        payload: Payload,
    ) -> anyhow::Result<()> {
        let e = v1::Event {
            id,
            time: Some(ts(self.clock.now().timestamp())),
            site: site.to_string(),
            server: server.to_string(),
            epoch,
            op_id: op_id.to_string(),
            payload: Some(payload),
        };
        self.bus.publish_event(&e).await?;
        Ok(())
    }

    /// Marks the site's current run (if it is `run_id`) finished and announces it; returns the run
    /// when this call closed it.
    async fn close(
        &self,
        code: &str,
        run_id: &str,
        ok: bool,
        error: &str,
        updates: u32,
    ) -> anyhow::Result<Option<RunRecord>> {
        let key = run_key(code);
        let Some((mut run, rev)) = self.get_json::<RunRecord>(&key).await? else {
            return Ok(None);
        };
        if run.id != run_id || run.finished {
            return Ok(None);
        }
        run.finished = true;
        if let Cas::Lost = self.cas_json(&key, &run, Some(rev)).await? {
            return Ok(None);
        }
        let result = ResultLabels {
            result: if ok { "succeeded" } else { "failed" }.to_string(),
        };
        let now = self.clock.now().timestamp();
        self.metrics.runs.get_or_create(&result).inc();
        self.metrics
            .duration
            .get_or_create(&result)
            .observe((now - run.started).max(0) as f64);
        if ok {
            self.metrics
                .last_success
                .get_or_create(&SiteLabels {
                    site: code.to_string(),
                })
                .set(now);
        }
        let retry_minutes = self.settings.retry_after_secs / 60;
        let error = if ok {
            String::new()
        } else {
            format!("{error}. Will retry in {retry_minutes} minutes")
        };
        let mut pb = self.run_proto(
            code,
            &run,
            if ok {
                v1::SyncState::Succeeded
            } else {
                v1::SyncState::Failed
            },
            &error,
        );
        pb.updates = updates;
        self.event(
            code,
            &run.server,
            run.epoch,
            "",
            format!("sync-end:{}", run.id),
            Payload::SyncFinished(v1::SyncFinished { run: Some(pb) }),
        )
        .await?;
        tracing::info!(site = code, run = %run.id, ok, error, "synchronization finished");
        Ok(Some(run))
    }

    /// After a failure, the next attempt comes after the retry interval.
    async fn schedule_retry(&self, code: &str) -> anyhow::Result<()> {
        let retry_at = self.clock.now().timestamp() + self.settings.retry_after_secs as i64;
        for _ in 0..16 {
            let current = self.bus.schedule_record(code).await?;
            let mut r = current.as_ref().map(|(r, _)| r.clone()).unwrap_or_default();
            r.retry_at = Some(retry_at);
            if let Cas::Won(_) = self
                .cas_schedule(code, &r, current.map(|(_, rev)| rev))
                .await?
            {
                break;
            }
        }
        Ok(())
    }

    /// Ends the site's current run; a success starts the children's runs, a failure schedules
    /// the retry.
    pub async fn finish(
        &self,
        code: &str,
        run_id: &str,
        ok: bool,
        error: &str,
        updates: u32,
    ) -> anyhow::Result<()> {
        let Some(run) = self.close(code, run_id, ok, error, updates).await? else {
            return Ok(());
        };
        if ok {
            for (_, child) in self
                .sites()
                .await?
                .into_iter()
                .filter(|(_, s)| s.parent.as_deref() == Some(code))
            {
                match self.start_run(&child, "parent", run.full, "").await {
                    Ok(_) | Err(StartError::Busy(_)) | Err(StartError::Refused(_)) => {}
                    Err(StartError::Bus(e)) => return Err(e),
                }
            }
        } else {
            self.schedule_retry(code).await?;
        }
        Ok(())
    }

    /// Follows milestones and command rejections for the runs in flight.
    pub async fn on_event(&self, e: &v1::Event) -> anyhow::Result<()> {
        let Some((run, _)) = self.get_json::<RunRecord>(&run_key(&e.site)).await? else {
            return Ok(());
        };
        if run.finished {
            return Ok(());
        }
        match &e.payload {
            Some(Payload::Milestone(m)) => match MilestoneKind::from_name(&m.name) {
                // With an Internet-based SUP to synchronize after the site database, only the
                // cycle's closing status message (6702) ends the run.
                Some(MilestoneKind::SyncSucceeded)
                    if !run.internet_server.is_empty() && !m.fields.contains_key("statmsg_id") => {}
                Some(MilestoneKind::SyncSucceeded) => {
                    let updates = m
                        .fields
                        .get("updates")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    self.finish(&e.site, &run.id, true, "", updates).await?
                }
                Some(MilestoneKind::SyncFailed) => {
                    let reason = m
                        .fields
                        .get("reason")
                        .cloned()
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| m.line.clone());
                    self.finish(
                        &e.site,
                        &run.id,
                        false,
                        &format!("Sync failed: {reason}"),
                        0,
                    )
                    .await?
                }
                _ => {}
            },
            Some(Payload::CommandRejected(r)) if r.command_id == run.command_id => {
                if r.reason.contains("stale epoch") {
                    // The active SUP changed while the run was queued: the new one runs it.
                    self.reissue(&e.site, run).await?;
                } else {
                    self.finish(&e.site, &run.id, false, &r.reason, 0).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn reissue(&self, code: &str, mut run: RunRecord) -> anyhow::Result<()> {
        let key = run_key(code);
        let Some((_, rev)) = self.get_json::<RunRecord>(&key).await? else {
            return Ok(());
        };
        let (server, epoch) = self.holder(code, "intranet").await?;
        if server.is_empty() {
            return self
                .finish(
                    code,
                    &run.id,
                    false,
                    "the site has no active software update point",
                    0,
                )
                .await;
        }
        run.internet_server = self.holder(code, "internet").await?.0;
        run.server = server;
        run.epoch = epoch;
        run.command_id = format!("sync:{}:{epoch}", run.id);
        if let Cas::Won(_) = self.cas_json(&key, &run, Some(rev)).await? {
            tracing::info!(site = code, run = %run.id, server = %run.server, epoch, "re-sent to the new active SUP");
            self.send(code, &run).await?;
        }
        Ok(())
    }

    /// The site's run history, from the event stream.
    pub async fn history(&self, site: &str, limit: usize) -> anyhow::Result<Vec<v1::SyncRun>> {
        let (stored, mut events) = self
            .bus
            .watch_events(subjects::events_of(site), Some(1))
            .await?;
        let mut runs: Vec<v1::SyncRun> = Vec::new();
        if stored > 0 {
            while let Some(item) = events.next().await {
                let w = item?;
                match w.event.payload {
                    Some(Payload::SyncStarted(s)) => runs.extend(s.run),
                    Some(Payload::SyncFinished(f)) => {
                        if let Some(run) = f.run {
                            match runs.iter_mut().find(|r| r.id == run.id) {
                                Some(r) => *r = run,
                                None => runs.push(run),
                            }
                        }
                    }
                    _ => {}
                }
                if w.pending == 0 {
                    break;
                }
            }
        }
        runs.reverse();
        runs.truncate(limit.max(1));
        Ok(runs)
    }

    pub async fn status(&self, site: &str) -> anyhow::Result<v1::SyncStatus> {
        let runs = self.history(site, 1).await?;
        let sched = self
            .bus
            .schedule_record(site)
            .await?
            .map(|(r, _)| r)
            .unwrap_or_default();
        let last = runs.first();
        Ok(v1::SyncStatus {
            state: last
                .map(|r| r.state)
                .unwrap_or(v1::SyncState::NeverRun as i32),
            last_started: last.and_then(|r| r.started),
            last_finished: last.and_then(|r| r.finished),
            next: sched.retry_at.into_iter().chain(sched.next).min().map(ts),
            ..Default::default()
        })
    }
}

pub struct Api<C: Clock>(pub Arc<Scheduler<C>>);

#[tonic::async_trait]
impl<C: Clock> v1::scheduler_server::Scheduler for Api<C> {
    async fn run_sync(
        &self,
        req: Request<v1::RunSyncRequest>,
    ) -> Result<Response<v1::SyncRun>, Status> {
        let r = req.into_inner();
        let sites = self
            .0
            .sites()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let (_, site) = sites
            .into_iter()
            .find(|(pb, _)| pb.code == r.site)
            .ok_or_else(|| Status::not_found(format!("site {} is not applied", r.site)))?;
        if let Some(parent) = &site.parent {
            return Err(Status::failed_precondition(format!(
                "manual synchronization is not available on child sites in ConfigMgr 2007: {} synchronizes after its parent {parent}; run it there",
                site.code
            )));
        }
        match self.0.start_run(&site, "manual", r.full, &r.op_id).await {
            Ok(run) => Ok(Response::new(run)),
            Err(StartError::Busy(m)) => Err(Status::already_exists(m)),
            Err(StartError::Refused(m)) => Err(Status::failed_precondition(m)),
            Err(StartError::Bus(e)) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn list_sync_runs(
        &self,
        req: Request<v1::ListSyncRunsRequest>,
    ) -> Result<Response<v1::ListSyncRunsResponse>, Status> {
        let r = req.into_inner();
        let runs = self
            .0
            .history(&r.site, if r.limit == 0 { 50 } else { r.limit as usize })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(v1::ListSyncRunsResponse { runs }))
    }

    async fn get_sync_status(
        &self,
        req: Request<v1::GetSyncStatusRequest>,
    ) -> Result<Response<v1::SyncStatus>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            self.0
                .status(&r.site)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?,
        ))
    }
}

async fn consume<C: Clock>(s: Arc<Scheduler<C>>, stop: tokio::sync::watch::Receiver<bool>) {
    let bus = s.bus.clone();
    let make = || {
        bus.durable_consumer(
            sup_bus::setup::EVENTS_STREAM,
            "scheduler-events",
            vec![
                "sup.evt.*.milestone".into(),
                "sup.evt.*.command_rejected".into(),
            ],
            Duration::from_secs(30),
            -1,
        )
    };
    sup_bus::consume_durable("scheduler-events", make, stop, |m| {
        let s = s.clone();
        async move {
            let Ok(e) = sup_bus::decode_event(&m.subject, &m.payload) else {
                let _ = m.ack_with(AckKind::Term).await;
                return;
            };
            match s.on_event(&e).await {
                Ok(()) => {
                    let _ = m.ack().await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "handling an event; it will be redelivered");
                    let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
            }
        }
    })
    .await;
}

pub async fn run<C: Clock>(
    grpc: TcpListener,
    admin: TcpListener,
    settings: Settings,
    clock: C,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Certificate files are read before anything else, so a bad path stops the start at once.
    let tls = sup_runtime::tls::server_config(settings.tls.as_ref())?;
    let bus = Bus::connect(&settings.nats)
        .await
        .context("connecting to NATS")?;
    let tick = Duration::from_millis(settings.tick_ms.max(10));
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    bus.register_metrics(&mut registry);
    metrics.register(&mut registry);
    let s = Arc::new(Scheduler {
        bus: bus.clone(),
        clock,
        settings,
        metrics,
    });
    let mut life = Lifecycle::new();
    life.serve_admin(admin, registry);
    let (events, stop) = (s.clone(), life.stop());
    life.spawn("events", async move {
        consume(events, stop).await;
        Ok(())
    });
    let (ticker, mut stop) = (s.clone(), life.stop());
    life.spawn("ticks", async move {
        loop {
            if let Err(e) = ticker.tick().await {
                tracing::warn!(error = %e, "scheduler tick");
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    });
    let g = sup_runtime::grpc::routes()?;
    let mut routes = g.routes;
    routes.add_service(
        v1::scheduler_server::SchedulerServer::new(Api(s.clone()))
            .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES),
    );
    g.health
        .set_serving::<v1::scheduler_server::SchedulerServer<Api<C>>>()
        .await;
    life.serve_grpc(grpc, routes, tls);
    life.run_until(shutdown).await
}
