//! sup-bus against a real nats-server with JetStream.

use std::sync::Arc;
use std::time::Duration;

use sup_bus::{Bus, BusConfig, Cas, Delivery, Durable, Verdict, subjects};
use sup_proto::v1::{Command, Event, MilestoneObserved, event::Payload};
use sup_testkit::NatsServer;
use tokio::sync::{mpsc, watch};

async fn bus(server: &NatsServer) -> Bus {
    Bus::connect(&BusConfig::new(server.url()))
        .await
        .expect("connect and set up")
}

/// What a consumer handler saw of one delivery.
#[derive(Debug)]
struct Seen {
    id: String,
    attempt: u64,
    traceparent: Option<String>,
}

/// Runs `durable` in the background, answering each delivery with `verdict(attempt)` and
/// reporting it on the returned channel; the sender stops it.
fn consume_in_background<T>(
    bus: &Bus,
    durable: Durable,
    verdict: fn(u64) -> Verdict,
) -> (mpsc::UnboundedReceiver<Seen>, watch::Sender<bool>)
where
    T: sup_bus::consume::Consumable + Identified + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let bus = bus.clone();
    tokio::spawn(async move {
        bus.consume(durable, stop, move |d: Delivery<T>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Seen {
                    id: d.message.id().to_string(),
                    attempt: d.attempt,
                    traceparent: d.traceparent,
                });
                verdict(d.attempt)
            }
        })
        .await;
    });
    (rx, stop_tx)
}

trait Identified {
    fn id(&self) -> &str;
}
impl Identified for Event {
    fn id(&self) -> &str {
        &self.id
    }
}
impl Identified for Command {
    fn id(&self) -> &str {
        &self.id
    }
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered in time")
        .expect("consumer running")
}

async fn nothing_more(rx: &mut mpsc::UnboundedReceiver<Seen>, within: Duration) {
    if let Ok(Some(seen)) = tokio::time::timeout(within, rx.recv()).await {
        panic!("nothing more was expected, got {seen:?}");
    }
}

fn milestone(id: &str) -> Event {
    Event {
        id: id.into(),
        site: "CEN".into(),
        server: "cen-sup01.corp.example.com".into(),
        payload: Some(Payload::Milestone(MilestoneObserved {
            name: "role_install_succeeded".into(),
            log: "SUPSetup.log".into(),
            line: "Installation was successful.".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn setup_is_idempotent() {
    let server = NatsServer::start().expect("nats-server");
    let first = bus(&server).await;
    let second = bus(&server).await;
    let a = first.sites().put("k", "v".into()).await.expect("put");
    let (value, revision) = second
        .sites()
        .get("k")
        .await
        .expect("get")
        .expect("present");
    assert_eq!((value.as_ref(), revision), (b"v".as_ref(), a));
}

#[tokio::test]
async fn an_event_is_published_once_deduplicated_consumed_and_acked() {
    let server = NatsServer::start().expect("nats-server");
    let bus = bus(&server).await;
    let event = milestone("file-1:4096");

    let first = bus.publish_event(&event).await.expect("publish");
    assert!(!first.duplicate);
    let again = bus.publish_event(&event).await.expect("re-publish");
    assert!(
        again.duplicate,
        "same Nats-Msg-Id inside the window is a duplicate"
    );
    assert_eq!(again.sequence, first.sequence);
    let other = bus
        .publish_event(&milestone("file-1:8192"))
        .await
        .expect("publish other");
    assert_eq!(other.sequence, first.sequence + 1);

    let (mut seen, stop) = consume_in_background::<Event>(
        &bus,
        Durable::events("test-reader", &[subjects::kind::MILESTONE]),
        |_| Verdict::Done,
    );
    let ids = [next_seen(&mut seen).await.id, next_seen(&mut seen).await.id];
    assert_eq!(ids, ["file-1:4096", "file-1:8192"]);
    stop.send(true).expect("stop");
    // Acked: the same durable, pulled again, has nothing more.
    let (mut again, _stop) = consume_in_background::<Event>(
        &bus,
        Durable::events("test-reader", &[subjects::kind::MILESTONE]),
        |_| Verdict::Done,
    );
    nothing_more(&mut again, Duration::from_millis(700)).await;
}

#[tokio::test]
async fn a_retried_message_comes_back_and_a_given_up_one_does_not() {
    let server = NatsServer::start().expect("nats-server");
    let bus = bus(&server).await;
    bus.publish_event(&milestone("retry-me"))
        .await
        .expect("publish");
    let (mut seen, _stop) = consume_in_background::<Event>(
        &bus,
        Durable::events("retrier", &[subjects::kind::MILESTONE]),
        |attempt| match attempt {
            1 => Verdict::RetryAfter(Duration::from_millis(100)),
            _ => Verdict::GiveUp,
        },
    );
    let first = next_seen(&mut seen).await;
    let second = next_seen(&mut seen).await;
    assert_eq!(
        (
            first.id.as_str(),
            first.attempt,
            second.id.as_str(),
            second.attempt
        ),
        ("retry-me", 1, "retry-me", 2)
    );
    nothing_more(&mut seen, Duration::from_millis(700)).await;
}

#[tokio::test]
async fn an_undecodable_message_never_reaches_a_handler_nor_blocks_the_next() {
    let server = NatsServer::start().expect("nats-server");
    let bus = bus(&server).await;
    bus.publish_msg(
        subjects::event("CEN", subjects::kind::MILESTONE),
        "garbage-1",
        bytes::Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]),
    )
    .await
    .expect("publish garbage");
    bus.publish_event(&milestone("after-garbage"))
        .await
        .expect("publish");
    let (mut seen, _stop) = consume_in_background::<Event>(
        &bus,
        Durable::events("garbage-reader", &[subjects::kind::MILESTONE]),
        |_| Verdict::Done,
    );
    assert_eq!(next_seen(&mut seen).await.id, "after-garbage");
    nothing_more(&mut seen, Duration::from_millis(700)).await;
}

#[tokio::test]
async fn an_unacked_command_is_redelivered_to_another_worker() {
    let server = NatsServer::start().expect("nats-server");
    let bus = bus(&server).await;
    let cmd = sup_proto::v1::Command {
        id: "cmd-1".into(),
        site: "CEN".into(),
        server: "a.corp.example.com".into(),
        ..Default::default()
    };
    bus.publish_command("provisioner", &cmd)
        .await
        .expect("publish");
    let queue = || Durable::commands("provisioner").ack_wait(Duration::from_secs(1));
    // The first worker takes the command and "crashes" before deciding anything.
    let (stop, crashed) = watch::channel(false);
    let (took_tx, mut took) = mpsc::unbounded_channel();
    let first_worker = {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.consume(queue(), crashed.clone(), move |d: Delivery<Command>| {
                let took_tx = took_tx.clone();
                async move {
                    let _ = took_tx.send(d.message.id);
                    std::future::pending::<Verdict>().await
                }
            })
            .await;
        })
    };
    let taken = tokio::time::timeout(Duration::from_secs(10), took.recv())
        .await
        .expect("taken in time");
    assert_eq!(taken.as_deref(), Some("cmd-1"));
    first_worker.abort();
    drop(stop);
    let (mut second_worker, _stop) =
        consume_in_background::<Command>(&bus, queue(), |_| Verdict::Done);
    let got = next_seen(&mut second_worker).await;
    assert_eq!(got.id, "cmd-1");
    assert!(got.attempt >= 2, "a redelivery: attempt {}", got.attempt);
    nothing_more(&mut second_worker, Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn exactly_one_of_many_concurrent_writers_wins_a_compare_and_set() {
    let server = NatsServer::start().expect("nats-server");
    // Separate connections, as separate replicas would have.
    let mut buses = Vec::new();
    for _ in 0..4 {
        buses.push(Arc::new(bus(&server).await));
    }
    // Round 1: everyone tries to create the slot.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let b = buses[i % buses.len()].clone();
        tasks.push(tokio::spawn(async move {
            b.active()
                .create("CEN.intranet", format!("server-{i}").into())
                .await
                .expect("no transport error")
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Cas::Won(rev) = t.await.expect("join") {
            winners.push(rev);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let rev = winners[0];

    // Round 2: everyone read revision `rev` and tries to move the slot.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let b = buses[i % buses.len()].clone();
        tasks.push(tokio::spawn(async move {
            b.active()
                .update("CEN.intranet", format!("next-{i}").into(), rev)
                .await
                .expect("no transport error")
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        if let Cas::Won(r) = t.await.expect("join") {
            won.push(r);
        }
    }
    assert_eq!(won.len(), 1, "exactly one update wins per revision");
    assert!(won[0] > rev, "the epoch grows");
    let (_, now) = buses[0]
        .active()
        .get_from_leader("CEN.intranet")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(now, won[0]);
}

#[tokio::test]
async fn a_three_node_cluster_replicates_streams_and_buckets() {
    let cluster = sup_testkit::NatsCluster::start().expect("cluster");
    let mut config = BusConfig::new(cluster.urls());
    config.replicas = 3;
    // The cluster elects its meta leader shortly after the nodes meet; on a loaded machine
    // (the whole suite on two cores) that and the streams' creation have taken over 30 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let bus = loop {
        match Bus::connect(&config).await {
            Ok(b) => break b,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("cluster never took the streams: {e}"),
        }
    };
    let inspector = sup_testkit::jetstream::Inspector::connect(&cluster.urls())
        .await
        .expect("inspector");
    for stream in [
        sup_bus::setup::EVENTS_STREAM.to_string(),
        sup_bus::setup::bucket_stream(sup_bus::setup::ACTIVE_BUCKET),
    ] {
        let state = inspector.stream_state(&stream).await.expect("stream state");
        assert_eq!(
            state.replicas.len(),
            2,
            "{stream}: a leader and two replicas"
        );
    }
    let published = bus
        .publish_event(&milestone("cluster-1"))
        .await
        .expect("publish");
    assert!(!published.duplicate);
    assert!(matches!(
        bus.active()
            .create("CEN.intranet", "a".into())
            .await
            .expect("kv"),
        Cas::Won(_)
    ));
}

#[tokio::test]
async fn trace_context_rides_in_nats_headers() {
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = NatsServer::start().expect("nats-server");
    let bus = bus(&server).await;
    let span = tracing::info_span!("apply");
    let trace_id = span.context().span().span_context().trace_id();
    {
        let _e = span.enter();
        bus.publish_event(&milestone("traced-1"))
            .await
            .expect("publish");
    }
    let (mut seen, _stop) = consume_in_background::<Event>(
        &bus,
        Durable::events("trace-reader", &[subjects::kind::MILESTONE]),
        |_| Verdict::Done,
    );
    let traceparent = next_seen(&mut seen)
        .await
        .traceparent
        .expect("traceparent header");
    assert!(
        traceparent.contains(&trace_id.to_string()),
        "{traceparent} carries {trace_id}"
    );
    // A consumer that follows the header continues the same trace.
    let child = tracing::info_span!("handle");
    sup_bus::trace::follow_traceparent(&traceparent, &child);
    assert_eq!(child.context().span().span_context().trace_id(), trace_id);
}

#[tokio::test]
async fn lanes_keep_each_sites_order_and_let_other_sites_pass_a_slow_one() {
    let server = NatsServer::start().expect("nats-server");
    let bus = bus(&server).await;
    let event = |site: &str, n: usize| Event {
        id: format!("{site}-{n}"),
        site: site.into(),
        ..milestone("")
    };
    // The slow site's first event comes first; the other sites' come after all of its own.
    let others = ["BR1", "BR2", "BR3", "BR4", "BR5", "BR6"];
    for n in 0..5 {
        bus.publish_event(&event("CEN", n)).await.expect("publish");
    }
    for site in others {
        for n in 0..3 {
            bus.publish_event(&event(site, n)).await.expect("publish");
        }
    }
    let (tx, mut seen) = mpsc::unbounded_channel::<String>();
    let other_handled = Arc::new(tokio::sync::Notify::new());
    let (_stop_tx, stop) = watch::channel(false);
    let consumer = bus.clone();
    let wake = other_handled.clone();
    tokio::spawn(async move {
        consumer
            .consume(
                Durable::events("laned", &[subjects::kind::MILESTONE]).in_lanes(8),
                stop,
                move |d: Delivery<Event>| {
                    let (tx, wake) = (tx.clone(), wake.clone());
                    async move {
                        if d.message.id == "CEN-0" {
                            // Held until a site in another lane has been handled: with one
                            // delivery at a time, this would wait forever.
                            wake.notified().await;
                        } else if d.message.site != "CEN" {
                            wake.notify_one();
                        }
                        let _ = tx.send(d.message.id.clone());
                        Verdict::Done
                    }
                },
            )
            .await
    });
    let mut order = Vec::new();
    while order.len() < 5 + 3 * others.len() {
        let id = tokio::time::timeout(Duration::from_secs(15), seen.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled after {order:?}"))
            .expect("consumer running");
        order.push(id);
    }
    let first_cen = order.iter().position(|id| id == "CEN-0").expect("CEN-0");
    assert!(first_cen > 0, "another site passed the slow one: {order:?}");
    for site in std::iter::once("CEN").chain(others) {
        let own: Vec<&String> = order
            .iter()
            .filter(|id| id.starts_with(&format!("{site}-")))
            .collect();
        let expected: Vec<String> = (0..own.len()).map(|n| format!("{site}-{n}")).collect();
        assert_eq!(
            own.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            expected,
            "{site} in order"
        );
    }
    let mut unique = order.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), order.len(), "each handled once: {order:?}");
}

#[tokio::test]
async fn batches_keep_each_sites_order_and_an_unanswered_delivery_comes_back() {
    let server = NatsServer::start().expect("nats-server");
    let bus = bus(&server).await;
    let sites = ["CEN", "BR1", "BR2", "BR3"];
    for n in 0..10 {
        for site in sites {
            let e = Event {
                id: format!("{site}-{n}"),
                site: site.into(),
                ..milestone("")
            };
            bus.publish_event(&e).await.expect("publish");
        }
    }
    let (tx, mut seen) = mpsc::unbounded_channel::<Vec<(String, u64)>>();
    let (_stop_tx, stop) = watch::channel(false);
    let consumer = bus.clone();
    tokio::spawn(async move {
        consumer
            .consume_batches(
                Durable::events("batched", &[subjects::kind::MILESTONE]).in_lanes(2),
                stop,
                move |batch: Vec<Delivery<Event>>| {
                    let tx = tx.clone();
                    async move {
                        let ids: Vec<(String, u64)> = batch
                            .iter()
                            .map(|d| (d.message.id.clone(), d.attempt))
                            .collect();
                        // No verdict for BR1-3 on its first delivery, nor for what follows it
                        // in its batch: all of those must come back.
                        let answered = ids
                            .iter()
                            .position(|(id, attempt)| id == "BR1-3" && *attempt == 1)
                            .unwrap_or(ids.len());
                        let _ = tx.send(ids);
                        vec![Verdict::Done; answered]
                    }
                },
            )
            .await
    });
    let mut batches = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    while done.len() < 40 {
        let batch = tokio::time::timeout(Duration::from_secs(15), seen.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled after {batches:?}"))
            .expect("consumer running");
        let unanswered = batch
            .iter()
            .position(|(id, attempt)| id == "BR1-3" && *attempt == 1)
            .unwrap_or(batch.len());
        done.extend(batch[..unanswered].iter().map(|(id, _)| id.clone()));
        batches.push(batch);
    }
    assert!(
        batches.iter().any(|b| b.len() > 1),
        "queued deliveries come as one batch: {batches:?}"
    );
    let first_deliveries: Vec<&String> = batches
        .iter()
        .flatten()
        .filter(|(_, attempt)| *attempt == 1)
        .map(|(id, _)| id)
        .collect();
    for site in sites {
        let own: Vec<&str> = first_deliveries
            .iter()
            .filter(|id| id.starts_with(&format!("{site}-")))
            .map(|id| id.as_str())
            .collect();
        let expected: Vec<String> = (0..10).map(|n| format!("{site}-{n}")).collect();
        assert_eq!(own, expected, "{site} in order");
    }
    assert!(
        batches
            .iter()
            .flatten()
            .any(|(id, attempt)| id == "BR1-3" && *attempt > 1),
        "the unanswered delivery came back: {batches:?}"
    );
}

fn outgoing(e: &Event) -> sup_bus::Outgoing {
    use sup_proto::prost::Message as _;
    sup_bus::Outgoing {
        subject: subjects::event(&e.site, subjects::event_kind(e)),
        msg_id: e.id.clone(),
        payload: e.encode_to_vec().into(),
        span: None,
    }
}

#[tokio::test]
async fn an_atomic_batch_is_stored_whole_in_order_or_not_at_all() {
    use sup_bus::BatchOutcome;
    let server = NatsServer::start().expect("nats-server");
    let bus = bus(&server).await;
    let first: Vec<Event> = ["a1", "a2", "a3"].iter().map(|id| milestone(id)).collect();
    let stored = bus
        .publish_atomic(first.iter().map(outgoing).collect())
        .await
        .expect("batch");
    let BatchOutcome::Stored { last_sequence } = stored else {
        panic!("not stored: {stored:?}");
    };
    assert_eq!(last_sequence, 3, "three messages, nothing between them");

    // A batch holding a message the stream already has is refused whole: none of its new
    // messages is stored ahead of the publisher's one-by-one retry.
    let again: Vec<Event> = ["a3", "a4"].iter().map(|id| milestone(id)).collect();
    assert_eq!(
        bus.publish_atomic(again.iter().map(outgoing).collect())
            .await
            .expect("batch"),
        BatchOutcome::HasDuplicate
    );
    let ids: Vec<String> = crate::support::all_events(&bus)
        .await
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    assert_eq!(ids, ["a1", "a2", "a3"]);

    // Too many for one batch is refused before anything is sent.
    let many: Vec<sup_bus::Outgoing> = (0..=sup_bus::MAX_ATOMIC_BATCH)
        .map(|i| outgoing(&milestone(&format!("m{i}"))))
        .collect();
    assert!(bus.publish_atomic(many).await.is_err());
    assert_eq!(crate::support::all_events(&bus).await.len(), 3);
}
