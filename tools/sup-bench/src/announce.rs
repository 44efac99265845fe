//! The coordinator announcing role changes on a durable three-node cluster (`sync_interval:
//! always`, every stream and bucket replicated three times), where each round trip waits for
//! three disks: role records changed in KV, and the `RoleStateChanged` events that follow.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use sup_bus::{Bus, BusConfig, subjects};
use sup_proto::prost::Message as _;
use sup_proto::v1;

use crate::Figure;

/// Role records written per run: each one transition to announce.
fn transitions(quick: bool) -> usize {
    if quick { 2_000 } else { 10_000 }
}

/// Events published one per round trip, as the announcer did before it batched: the same-run
/// baseline.
const ONE_BY_ONE: usize = 300;

/// `announced role transitions/s (durable cluster)`: role records changed in KV while no
/// coordinator runs, then a coordinator started: the rate at which its announcer puts their
/// events in the stream (first event to last), against events published one per round trip on
/// the same cluster.
pub async fn announced_transitions(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let cluster = sup_testkit::NatsCluster::start_durable()?;
    let dir = tempfile::tempdir()?;
    let mut config = BusConfig::new(cluster.urls());
    config.replicas = 3;
    let bus = Bus::connect(&config).await?;

    // The baseline: one event, then its ack, then the next.
    let t = Instant::now();
    for i in 0..ONE_BY_ONE {
        bus.publish_event(&role_event(i)).await?;
    }
    let one_by_one = ONE_BY_ONE as f64 / t.elapsed().as_secs_f64();

    let count = transitions(quick);
    futures::stream::iter(0..count)
        .map(|i| {
            let bus = bus.clone();
            async move {
                let r = role_record(i);
                bus.roles()
                    .put(
                        &subjects::role_key(&r.site, &r.server),
                        r.encode_to_vec().into(),
                    )
                    .await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let before = bus.last_event_sequence().await?;

    let coordinator = crate::failover::service("coordinator", dir.path())?
        .listening()?
        .nats(&cluster.urls(), 3)
        .set("RECONCILE_INTERVAL_SECS", 3600)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    let last = loop {
        let stored = bus.last_event_sequence().await.unwrap_or(before) - before;
        let now = Instant::now();
        if stored > 0 && first.is_none() {
            first = Some((now, stored));
        }
        if stored >= count as u64 {
            break now;
        }
        anyhow::ensure!(
            now < deadline,
            "the coordinator announced {stored} of {count} role changes in ten minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(coordinator);
    let (first_at, first_count) = first.unwrap_or((last, 0));
    let rate = (count as u64 - first_count) as f64 / last.duration_since(first_at).as_secs_f64();
    Ok(vec![
        Figure {
            name: "announced role transitions/s (durable cluster)".into(),
            value: rate,
            unit: "events/s".into(),
            baseline: one_by_one,
            ratio: rate / one_by_one,
            goal: format!(">= 10x one per round trip ({count} role changes)"),
            met: rate >= 10.0 * one_by_one,
        },
        Figure {
            name: "… events published one per round trip (durable cluster)".into(),
            value: one_by_one,
            unit: "events/s".into(),
            baseline: one_by_one,
            ratio: 1.0,
            goal: "report (the announcer's rate before it batched)".into(),
            met: true,
        },
    ])
}

/// Role `i`, installed: one transition to announce.
fn role_record(i: usize) -> v1::RoleStatus {
    v1::RoleStatus {
        site: format!("S{:03}", i / 5),
        server: format!("sup{}.s{:03}.corp.example.com", i % 5, i / 5),
        previous: v1::RoleState::Installing as i32,
        state: v1::RoleState::Installed as i32,
        ..Default::default()
    }
}

/// A role change event for the baseline, on a site of its own.
fn role_event(i: usize) -> v1::Event {
    v1::Event {
        id: format!("bench-role-{i}"),
        site: "BASE".into(),
        server: format!("sup{i}.base.corp.example.com"),
        payload: Some(v1::event::Payload::RoleStateChanged(v1::RoleStateChanged {
            from: v1::RoleState::Installing as i32,
            to: v1::RoleState::Installed as i32,
            reason: String::new(),
        })),
        ..Default::default()
    }
}
