//! The coordinator taking in events: every role of a large registry reports a health change at
//! once, as the health service's first round after a restart does, and the coordinator works
//! through them (each a compare-and-set on the role record, and a reconcile when a state moves).

use std::time::{Duration, Instant};

use sup_bus::subjects::{self, kind};
use sup_bus::{Bus, BusConfig, Durable, Outgoing};
use sup_proto::prost::Message as _;
use sup_proto::v1::{self, event::Payload};

use crate::Figure;

/// What the coordinator took in before its events were handled in lanes, on this machine: the
/// first round of 10,000 health transitions did not finish in three minutes.
const BEFORE_EVENTS_PER_SECOND: f64 = 60.0;
const GOAL_EVENTS_PER_SECOND: f64 = 2000.0;

/// `coordinator events/s`: one `HealthChanged` per role of `sites` sites of five roles, all
/// published at once, handled per second until the coordinator's consumer has none left.
pub async fn coordinator_events(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let sites = if quick { 200 } else { 2000 };
    let nats = sup_testkit::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    // Only the events move anything during the run.
    let coordinator = crate::scale::start_coordinator(&nats, dir.path()).await?;
    let file = dir.path().join("sites.toml");
    std::fs::write(&file, crate::scale::hierarchy(sites))?;
    crate::scale::apply_file(&coordinator.endpoint()?, &file, None)?;

    // Every role installed and verified, its health not yet known: no provisioner runs here.
    let bus = Bus::connect(&BusConfig::new(nats.url())).await?;
    let mut roles = Vec::new();
    for site in bus.applied_sites().await? {
        for mut r in bus.role_records(&site.code).await? {
            r.state = v1::RoleState::Ready as i32;
            r.health = v1::Health::Unknown as i32;
            r.verified = vec!["wsus_components_healthy".into(), "wsus_database_ok".into()];
            let key = subjects::role_key(&r.site, &r.server);
            bus.roles().put(&key, r.encode_to_vec().into()).await?;
            roles.push((r.site, r.server));
        }
    }
    let consumer = Durable::events("coordinator-events", &[kind::HEALTH_CHANGED]);
    settle(&bus, &consumer).await?;

    let events: Vec<Outgoing> = roles
        .iter()
        .enumerate()
        .map(|(i, (site, server))| {
            let event = v1::Event {
                id: format!("bench-health-{i}"),
                site: site.clone(),
                server: server.clone(),
                payload: Some(Payload::HealthChanged(v1::HealthChanged {
                    from: v1::Health::Unknown as i32,
                    to: v1::Health::Healthy as i32,
                    failing: Vec::new(),
                })),
                ..Default::default()
            };
            Outgoing {
                subject: subjects::event(site, kind::HEALTH_CHANGED),
                msg_id: event.id.clone(),
                payload: event.encode_to_vec().into(),
                span: None,
            }
        })
        .collect();
    let count = events.len();
    let t = Instant::now();
    let mut batch = Vec::new();
    for e in events {
        batch.push(e);
        if batch.len() == 500 {
            bus.publish_batch(std::mem::take(&mut batch)).await?;
        }
    }
    bus.publish_batch(batch).await?;
    settle(&bus, &consumer).await?;
    let rate = count as f64 / t.elapsed().as_secs_f64();
    drop(coordinator);
    Ok(vec![Figure {
        name: "coordinator events/s".into(),
        value: rate,
        unit: "events/s".into(),
        baseline: BEFORE_EVENTS_PER_SECOND,
        ratio: rate / BEFORE_EVENTS_PER_SECOND,
        goal: format!(
            ">= {GOAL_EVENTS_PER_SECOND} events/s ({count} health transitions of {sites} sites x 5 roles)"
        ),
        met: rate >= GOAL_EVENTS_PER_SECOND,
    }])
}

/// Waits until the coordinator's consumer has nothing waiting and nothing unacknowledged.
async fn settle(bus: &Bus, consumer: &Durable) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match bus.backlog(consumer).await {
            Ok((0, 0)) => return Ok(()),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok((pending, unacked)) => anyhow::bail!(
                "the coordinator still had {pending} events waiting and {unacked} unacknowledged"
            ),
            Err(e) => return Err(e.into()),
        }
    }
}
