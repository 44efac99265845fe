//! sup-bus against a real nats-server with JetStream.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sup_bus::{Bus, BusConfig, Cas};
use sup_proto::v1::{Event, MilestoneObserved, event::Payload};
use sup_testkit::NatsServer;

async fn bus(server: &NatsServer) -> Bus {
    Bus::connect(&BusConfig::new(server.url()))
        .await
        .expect("connect and set up")
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
    let a = first.buckets.sites.put("k", "v".into()).await.expect("put");
    let b = second
        .buckets
        .sites
        .entry("k")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(b.revision, a);
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

    let consumer = bus
        .durable_consumer(
            sup_bus::setup::EVENTS_STREAM,
            "test-reader",
            vec![sup_bus::subjects::events_of("CEN")],
            Duration::from_secs(30),
            5,
        )
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("delivered in time")
            .expect("stream open")
            .expect("message");
        assert_eq!(m.subject.as_str(), "sup.evt.CEN.milestone");
        let e = sup_bus::decode_event(&m.subject, &m.payload).expect("decodes");
        ids.push(e.id.clone());
        m.ack().await.expect("ack");
    }
    assert_eq!(ids, ["file-1:4096", "file-1:8192"]);
    // Acked: a new pull on the same durable sees nothing more.
    let nothing = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
    assert!(nothing.is_err(), "no redelivery after ack");
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
    let consumer = bus
        .command_consumer("provisioner", Duration::from_secs(1), 5)
        .await
        .expect("consumer");
    let mut first_worker = consumer.messages().await.expect("messages");
    let m = first_worker.next().await.expect("open").expect("message");
    drop(m); // the worker "crashes" before acking
    drop(first_worker);
    let mut second_worker = consumer.messages().await.expect("messages");
    let m = tokio::time::timeout(Duration::from_secs(10), second_worker.next())
        .await
        .expect("redelivered")
        .expect("open")
        .expect("message");
    let got = sup_bus::decode_command(&m.subject, &m.payload).expect("decodes");
    assert_eq!(got.id, "cmd-1");
    assert!(m.info().expect("info").delivered >= 2);
    m.ack().await.expect("ack");
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
            b.kv_create(
                &b.buckets.active,
                "CEN.intranet",
                format!("server-{i}").into(),
            )
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
            b.kv_update(
                &b.buckets.active,
                "CEN.intranet",
                format!("next-{i}").into(),
                rev,
            )
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
        .kv_get(&buses[0].buckets.active, "CEN.intranet")
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
    // The cluster elects its meta leader shortly after the nodes meet.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
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
    let mut stream = bus
        .js
        .get_stream(sup_bus::setup::EVENTS_STREAM)
        .await
        .expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.num_replicas, 3);
    let published = bus
        .publish_event(&milestone("cluster-1"))
        .await
        .expect("publish");
    assert!(!published.duplicate);
    assert!(matches!(
        bus.kv_create(&bus.buckets.active, "CEN.intranet", "a".into())
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
    let consumer = bus
        .durable_consumer(
            sup_bus::setup::EVENTS_STREAM,
            "trace-reader",
            vec![sup_bus::subjects::events_of("CEN")],
            Duration::from_secs(30),
            5,
        )
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let m = messages.next().await.expect("open").expect("message");
    let traceparent = m
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.to_string())
        .expect("traceparent header");
    assert!(
        traceparent.contains(&trace_id.to_string()),
        "{traceparent} carries {trace_id}"
    );
    // A consumer that follows the header continues the same trace.
    let child = tracing::info_span!("handle");
    sup_bus::trace::follow(m.headers.as_ref(), &child);
    assert_eq!(child.context().span().span_context().trace_id(), trace_id);
}
