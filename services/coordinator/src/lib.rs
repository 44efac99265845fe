//! The SUP coordinator: the front door for configuration and status, and the only writer of the
//! active slots. It validates site specs with `sup-core`, keeps all state in NATS KV (so replicas
//! can run side by side and restart anywhere), activates SUPs by compare-and-set on the slot key
//! (the revision is the epoch), sends provisioning commands, and advances role lifecycles from the
//! events of the provisioner, the log watcher and the health service.

pub mod announcer;
pub mod api;
pub mod cloudevents;
pub mod coordinator;
pub mod error;
pub mod gauges;
pub mod metrics;

pub mod store;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sup_bus::subjects::kind;
use sup_bus::{Bus, BusConfig, Delivery, Durable, Verdict};
use sup_proto::v1;
use sup_runtime::{Lifecycle, ServiceSettings};
use tokio::net::TcpListener;

pub use coordinator::Coordinator;

/// Built-in defaults; a `--config` file and `SUP_COORDINATOR__*` variables override them.
pub const DEFAULTS: &str = r#"
listen = "127.0.0.1:50051"
admin_listen = "127.0.0.1:9101"
log_format = "pretty"
reconcile_interval_secs = 15
failover_after_secs = 30
cloudevents = true
event_lanes = 32

[nats]
url = "nats://127.0.0.1:4222"
replicas = 1
client_name = "sup-coordinator"
"#;

/// What only the coordinator has; the shared keys are in [`ServiceSettings`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How often every site is reconciled even without events (repairs after crashes).
    pub reconcile_interval_secs: u64,
    /// How long the active SUP of an `auto` site must be unhealthy before the slot moves.
    pub failover_after_secs: u64,
    /// Publish every event as a CloudEvent too (`sup.ce.<site>.<kind>`, stream `SUP_CLOUDEVENTS`).
    pub cloudevents: bool,
    /// Events handled at once, each site's in order in its own lane (1: one at a time).
    pub event_lanes: usize,
    pub nats: BusConfig,
}

impl sup_runtime::OwnSettings for Settings {
    const LISTENER: sup_runtime::Listener = sup_runtime::Listener::Grpc;
}

/// The `sup-coordinator` binary: what `--help` says of it, and its defaults.
pub const SERVICE: sup_runtime::ServiceInfo = sup_runtime::ServiceInfo::new(
    "coordinator",
    "sup-coordinator",
    env!("CARGO_PKG_VERSION"),
    ABOUT,
    DEFAULTS,
);
const ABOUT: &str =
    "The SUP coordinator: declared sites, role lifecycle, and the one-active-SUP invariant.";

/// Binds the configured listeners and runs until `shutdown`.
pub async fn serve(
    settings: ServiceSettings<Settings>,
    shutdown: sup_runtime::Shutdown,
) -> anyhow::Result<()> {
    let grpc = settings.bind_listen("gRPC").await?;
    let admin = settings.bind_admin().await?;
    run(grpc, admin, settings, shutdown).await
}

/// The event kinds the coordinator consumes.
const CONSUMED_KINDS: [&str; 5] = [
    kind::MILESTONE,
    kind::PROVISIONING,
    kind::HEALTH_CHANGED,
    kind::SYNC_STARTED,
    kind::SYNC_FINISHED,
];

/// Runs the coordinator on the given listeners until `shutdown` resolves.
pub async fn run(
    grpc: TcpListener,
    admin: TcpListener,
    settings: ServiceSettings<Settings>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Certificate files are read before anything else, so a bad path stops the start at once.
    let tls = sup_runtime::tls::server_config(settings.tls.as_ref())?;
    let bus = Bus::connect(&settings.own.nats).await?;
    let metrics = metrics::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    bus.register_metrics(&mut registry);
    let gauges = gauges::Gauges::default();
    gauges.register(&mut registry);
    let mut coordinator = Coordinator::new(store::Store::new(bus.clone()), metrics.clone());
    coordinator.failover_after = Duration::from_secs(settings.own.failover_after_secs);

    let mut life = Lifecycle::new();
    life.serve_admin(admin, registry);
    let lanes = settings.own.event_lanes;
    life.spawn_until_stopped("events", |stop| {
        consume_events(coordinator.clone(), lanes, stop)
    });
    life.spawn_until_stopped("announcer", |stop| {
        announcer::run(coordinator.clone(), stop)
    });
    if settings.own.cloudevents {
        life.spawn_until_stopped("cloudevents", |stop| {
            cloudevents::run(coordinator.store.bus.clone(), stop)
        });
    }
    life.spawn_until_stopped("gauges", |stop| {
        gauges::run(coordinator.clone(), gauges, stop)
    });
    let every = Duration::from_secs(settings.own.reconcile_interval_secs.max(1));
    life.spawn_until_stopped("reconcile", |stop| {
        reconcile_loop(coordinator.clone(), every, stop)
    });
    tracing::info!(grpc = %grpc.local_addr()?, "coordinator serving");
    let api = v1::coordinator_server::CoordinatorServer::new(api::Api {
        inner: coordinator.clone(),
    })
    .max_decoding_message_size(sup_proto::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(sup_proto::MAX_MESSAGE_BYTES);
    life.serve_grpc_api(grpc, api, tls).await?;
    let result = life.run_until(shutdown).await;
    bus.close().await;
    tracing::info!("coordinator stopped");
    result
}

const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// Consumes events with a durable consumer shared by all replicas, a lane's queued events at
/// once; an event is acked only after its effects are stored and announced, so a crash
/// redelivers it.
async fn consume_events(c: Coordinator, lanes: usize, stop: tokio::sync::watch::Receiver<bool>) {
    let bus = c.store.bus.clone();
    let durable = Durable::events("coordinator-events", &CONSUMED_KINDS).in_lanes(lanes);
    bus.consume_batches(durable, stop, |batch: Vec<Delivery<v1::Event>>| {
        let c = c.clone();
        async move {
            let events: Vec<(v1::Event, tracing::Span)> =
                batch.into_iter().map(|d| (d.message, d.span)).collect();
            // A handler stuck on a lost bus reply must not stall the whole queue: give up,
            // and the events are redelivered.
            let results = match tokio::time::timeout(HANDLER_TIMEOUT, c.handle_events(&events))
                .await
            {
                Ok(results) => results,
                Err(_) => {
                    let e = Arc::new(error::ApiError::Aborted(format!(
                        "no result within {} s",
                        HANDLER_TIMEOUT.as_secs()
                    )));
                    events.iter().map(|_| Err(e.clone())).collect()
                }
            };
            events
                .iter()
                .zip(results)
                .map(|((event, _), result)| match result {
                    Ok(()) => {
                        c.metrics.events_handled.inc();
                        Verdict::Done
                    }
                    Err(e) => {
                        c.metrics.events_failed.inc();
                        tracing::warn!(error = %e, id = %event.id, "handling an event; it will be redelivered");
                        Verdict::RetryAfter(Duration::from_secs(1))
                    }
                })
                .collect()
        }
    })
    .await;
}

/// Sites the periodic pass reconciles at once.
const RECONCILES_IN_FLIGHT: usize = 16;

async fn reconcile_loop(
    c: Coordinator,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let sites = match c.store.sites().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "listing sites to reconcile");
                continue;
            }
        };
        // Several sites at once: one after another, a pass over a thousand sites outlasts the
        // interval.
        futures::StreamExt::for_each_concurrent(
            futures::stream::iter(sites),
            RECONCILES_IN_FLIGHT,
            |s| {
                let c = &c;
                async move {
                    if let Err(e) = c.reconcile_site(&s.code).await {
                        tracing::debug!(site = %s.code, error = %e, "reconcile");
                    }
                }
            },
        )
        .await;
    }
}
