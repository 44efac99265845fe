//! Failover under a storm: 10,000 SUPs (2,000 `auto` sites of five), one health service probing
//! them all, and a tenth of the active ones taken down at once: every slot they held must move
//! within the grace plus three probe intervals and a second, and no site may have two actives.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use sup_bus::subjects;
use sup_proto::prost::Message as _;
use sup_proto::v1::{self, event::Payload};

use crate::Figure;
use crate::failover::percentile;
use crate::probing::{Fleet, Health, codes, resolve_table, server_of};
use crate::scale::hierarchy_on;

/// The coordinator's grace before a failover in this run.
const GRACE: Duration = Duration::ZERO;

pub async fn failover_storm(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let (sites, interval) = if quick {
        (200, Duration::from_secs(2))
    } else {
        (2000, Duration::from_secs(10))
    };
    let nats = sup_testkit::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let fleet = Fleet::start(d)?;
    let coordinator = crate::failover::service("coordinator", d)?
        .listening()?
        .nats(nats.url(), 1)
        .set("RECONCILE_INTERVAL_SECS", 5)
        .set("FAILOVER_AFTER_SECS", GRACE.as_secs())
        .spawn()?;
    coordinator.ready(Duration::from_secs(30)).await?;
    let text = hierarchy_on(sites, fleet.http, fleet.https)
        .replace("[[site]]\n", "[[site]]\nfailover = \"auto\"\n");
    let file = d.join("sites.toml");
    std::fs::write(&file, &text)?;
    crate::scale::apply_file(&coordinator.endpoint()?, &file, None)?;

    // No provisioner here: every role is marked installed, verified and healthy directly, and
    // the coordinator activates each site's declared SUP.
    let bus = sup_bus::Bus::connect(&sup_bus::BusConfig::new(nats.url())).await?;
    let codes = codes(&text);
    let keys: Vec<(String, String)> = codes
        .iter()
        .flat_map(|c| (0..5).map(move |j| (c.clone(), server_of(c, j))))
        .collect();
    futures::stream::iter(&keys)
        .map(|(code, server)| {
            let bus = bus.clone();
            async move {
                let key = subjects::role_key(code, server);
                let Some((b, _)) = bus.roles().get(&key).await? else {
                    anyhow::bail!("role {key} was not stored");
                };
                let mut r = v1::RoleStatus::decode(b)?;
                r.state = v1::RoleState::Ready as i32;
                r.health = v1::Health::Healthy as i32;
                r.verified = vec!["wsus_components_healthy".into(), "wsus_database_ok".into()];
                bus.roles().put(&key, r.encode_to_vec().into()).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let active_keys: Vec<String> = codes
        .iter()
        .map(|c| subjects::active_key(c, "intranet"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let slots = bus.active().get_many(active_keys.clone()).await?;
        let held = slots.iter().filter(|s| s.is_some()).count();
        if held == codes.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{held} of {} slots were activated in five minutes",
            codes.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let resolve = resolve_table(&text);
    let (health, _) = Health {
        dir: d,
        nats: &nats,
        name: "storm".into(),
        interval,
        ca: &fleet.ca,
        resolve: &resolve,
    }
    .start()
    .await?;
    // Two rounds: every SUP probed healthy, the first round's transitions taken in.
    tokio::time::sleep(interval * 2 + Duration::from_secs(5)).await;

    let mut changes = Box::pin(
        bus.subscribe_events(&subjects::events_of_kind(subjects::kind::ACTIVE_CHANGED))
            .await?,
    );
    // A tenth of the sites lose their active SUP, all at once.
    let storm: BTreeSet<String> = codes.iter().step_by(10).cloned().collect();
    let t0 = Instant::now();
    futures::stream::iter(&storm)
        .map(|code| fault_down(fleet.control, server_of(code, 0)))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let goal = GRACE + interval * 3 + Duration::from_secs(1);
    let mut moved: BTreeMap<String, f64> = BTreeMap::new();
    let mut elsewhere = 0usize;
    let wait_until = t0 + goal * 3;
    while moved.len() < storm.len() {
        let left = wait_until.saturating_duration_since(Instant::now());
        let Ok(Some(e)) = tokio::time::timeout(left, changes.next()).await else {
            break;
        };
        let Some(Payload::ActiveChanged(a)) = &e.payload else {
            continue;
        };
        if !storm.contains(&e.site) {
            elsewhere += 1;
        } else if a.target != server_of(&e.site, 0) {
            moved
                .entry(e.site.clone())
                .or_insert_with(|| t0.elapsed().as_secs_f64());
        }
    }
    drop(health);

    // No site with two active roles, from the records as they stand.
    let mut doubles = 0usize;
    for code in &storm {
        let active = bus
            .role_records(code)
            .await?
            .into_iter()
            .filter(|r| r.state == v1::RoleState::Active as i32)
            .count();
        doubles += usize::from(active > 1);
    }
    let mut times: Vec<f64> = moved.values().copied().collect();
    times.sort_by(f64::total_cmp);
    let p99 = if moved.len() == storm.len() {
        percentile(&times, 0.99)
    } else {
        f64::INFINITY
    };
    let goal_s = goal.as_secs_f64();
    let servers = sites * 5;
    Ok(vec![
        Figure {
            name: "failover under a 10% storm p99".into(),
            value: p99,
            unit: "s".into(),
            baseline: goal_s,
            ratio: p99 / goal_s,
            goal: format!(
                "<= grace {} s + 3 x {} s probes + 1 s = {goal_s:.0} s ({servers} SUPs)",
                GRACE.as_secs(),
                interval.as_secs()
            ),
            met: p99 <= goal_s && doubles == 0,
        },
        Figure {
            name: format!("… slots moved of the {} taken down", storm.len()),
            value: moved.len() as f64,
            unit: "slots".into(),
            baseline: storm.len() as f64,
            ratio: moved.len() as f64 / storm.len() as f64,
            goal: "every one".into(),
            met: moved.len() == storm.len(),
        },
        Figure {
            name: "… sites with two active SUPs, or a slot moved untouched".into(),
            value: (doubles + elsewhere) as f64,
            unit: "sites".into(),
            baseline: 0.0,
            ratio: 0.0,
            goal: "0".into(),
            met: doubles + elsewhere == 0,
        },
    ])
}

/// Takes `server`'s WSUS web site down through the emulator's control API.
async fn fault_down(control: u16, server: String) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", control)).await?;
    s.write_all(
        format!(
            "POST /faults/{server}/down HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).await?;
    anyhow::ensure!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "fault {server} down: {answer}"
    );
    Ok(())
}
