//! The scheduler: starts synchronization of the top site on its schedule (or on demand, the
//! console's "Run Synchronization"), sends each run to the site's current active SUP with its
//! epoch, follows it through the log watcher's sync milestones, and starts the child sites'
//! runs when their parent's run succeeds, as ConfigMgr 2007 does. Each due time fires exactly once
//! across replicas: the site's next-fire record in KV moves by compare-and-set, and only the
//! writer that moved it starts the run. Time comes from a [`Clock`], so tests drive it.
//!
//! Rooms: `settings`, `clock`, `metrics`, `api` (gRPC), `plan` (the schedule's next fire and
//! retry), `runs` (a run from start to finish, and the children after it), `history` (past runs
//! and the status); this file holds the records, the type and `run`, which wires them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sup_bus::subjects::{self, kind, run_key};
use sup_bus::{Bus, BusConfig, Cas, Delivery, Durable, Verdict};
use sup_core::model::{Site, SyncSource};
use sup_proto::v1::{self, event::Payload};
use sup_runtime::{Lifecycle, ServiceSettings};
use sup_smslog::MilestoneKind;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

mod api;
mod clock;
mod history;
mod metrics;
mod plan;
mod runs;
mod settings;

pub use api::Api;
pub use clock::{Clock, ManualClock, SystemClock};
pub use metrics::{Metrics, ResultLabels, SiteLabels};
pub use settings::{DEFAULTS, SERVICE, Settings, serve};

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
    pub(crate) async fn sites(&self) -> anyhow::Result<Vec<(v1::Site, Site)>> {
        let mut out = Vec::new();
        for pb in self.bus.applied_sites().await? {
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

    pub(crate) async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> anyhow::Result<Option<(T, u64)>> {
        Ok(match self.bus.sites().get(key).await? {
            Some((b, rev)) => Some((
                serde_json::from_slice(&b).context("a scheduler record")?,
                rev,
            )),
            None => None,
        })
    }

    pub(crate) async fn cas_schedule(
        &self,
        site: &str,
        record: &SchedRecord,
        rev: Option<u64>,
    ) -> anyhow::Result<Cas> {
        let key = sup_bus::records::schedule_key(site);
        let bytes = sup_bus::records::encode_schedule(record);
        Ok(self.bus.sites().write(&key, bytes, rev).await?)
    }

    pub(crate) async fn cas_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        rev: Option<u64>,
    ) -> anyhow::Result<Cas> {
        let bytes: Bytes = serde_json::to_vec(value)?.into();
        Ok(self.bus.sites().write(key, bytes, rev).await?)
    }
}

async fn consume<C: Clock>(s: Arc<Scheduler<C>>, stop: tokio::sync::watch::Receiver<bool>) {
    let bus = s.bus.clone();
    let durable = Durable::events(
        "scheduler-events",
        &[kind::MILESTONE, kind::COMMAND_REJECTED],
    );
    bus.consume(durable, stop, |d: Delivery<v1::Event>| {
        let s = s.clone();
        async move {
            match s.on_event(&d.message).instrument(d.span).await {
                Ok(()) => Verdict::Done,
                Err(err) => {
                    tracing::warn!(error = %err, "handling an event; it will be redelivered");
                    Verdict::RetryAfter(Duration::from_secs(1))
                }
            }
        }
    })
    .await;
}

pub async fn run<C: Clock>(
    grpc: TcpListener,
    admin: TcpListener,
    settings: ServiceSettings<Settings>,
    clock: C,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Certificate files are read before anything else, so a bad path stops the start at once.
    let tls = sup_runtime::tls::server_config(settings.tls.as_ref())?;
    let bus = Bus::connect(&settings.own.nats).await?;
    let tick = Duration::from_millis(settings.own.tick_ms.max(10));
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    bus.register_metrics(&mut registry);
    metrics.register(&mut registry);
    let s = Arc::new(Scheduler {
        bus: bus.clone(),
        clock,
        settings: settings.own,
        metrics,
    });
    let mut life = Lifecycle::new();
    life.serve_admin(admin, registry);
    life.spawn_until_stopped("events", |stop| consume(s.clone(), stop));
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
    let api = v1::scheduler_server::SchedulerServer::new(Api(s.clone()))
        .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES);
    life.serve_grpc_api(grpc, api, tls).await?;
    life.run_until(shutdown).await
}
