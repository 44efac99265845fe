//! A small chaos trial on a real 3-node nats-server cluster: activation storms against two
//! coordinator replicas while one replica is killed and restarted, the other frozen and thawed,
//! and a NATS node lost. The event history must never show two active SUPs in the slot, epochs
//! must only grow, and the final state must agree with itself.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sup_proto::v1::{self, coordinator_client::CoordinatorClient, event::Payload};
use sup_testkit::NatsCluster;

use crate::support::*;

const SITE: &str = r#"
[[site]]
code = "CHX"
[[site.site_system]]
server = "x1.corp.example.com"
[[site.site_system]]
server = "x2.corp.example.com"
[[site.site_system]]
server = "x3.corp.example.com"
[[site.software_update_point]]
server = "x1.corp.example.com"
[[site.software_update_point]]
server = "x2.corp.example.com"
[[site.software_update_point]]
server = "x3.corp.example.com"
"#;

const SERVERS: [&str; 3] = [
    "x1.corp.example.com",
    "x2.corp.example.com",
    "x3.corp.example.com",
];

async fn storm(endpoints: &[String], round: usize) -> usize {
    let mut tasks = Vec::new();
    for i in 0..24usize {
        let endpoint = endpoints[i % endpoints.len()].clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = CoordinatorClient::connect(endpoint).await else {
                return false;
            };
            c.set_active(v1::SetActiveRequest {
                site: "CHX".into(),
                slot: v1::Slot::Intranet as i32,
                target: SERVERS[(i + round) % 3].into(),
                op_id: format!("chaos-{round}-{i}"),
            })
            .await
            .is_ok()
        }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap_or(false) {
            won += 1;
        }
    }
    won
}

#[tokio::test]
async fn the_invariant_survives_killed_replicas_and_a_lost_nats_node() {
    let mut cluster = NatsCluster::start().expect("cluster");
    let urls = cluster.urls();
    let mut a = coordinator_at(&urls, 3);
    let b = coordinator_at(&urls, 3);
    apply_sites(&a.endpoint, SITE);
    let mut config = sup_bus::BusConfig::new(urls.clone());
    config.replicas = 3;
    let bus = sup_bus::Bus::connect(&config).await.expect("bus");
    for s in SERVERS {
        make_ready(&bus, "CHX", s).await;
    }
    wait_status(&a.endpoint, "three ready roles", |st| {
        role_states(st, "CHX")
            .iter()
            .filter(|(_, state)| state == "ready")
            .count()
            == 3
    })
    .await;

    // Round 1: a replica is killed mid-storm and started again.
    let endpoints = vec![a.endpoint.clone(), b.endpoint.clone()];
    let storm1 = tokio::spawn({
        let e = endpoints.clone();
        async move { storm(&e, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    a.process.kill();
    let _ = storm1.await;
    a = coordinator_at(&urls, 3);

    // Round 2: the other replica freezes (SIGSTOP) and thaws mid-storm.
    let endpoints = vec![a.endpoint.clone(), b.endpoint.clone()];
    let storm2 = tokio::spawn({
        let e = endpoints.clone();
        async move { storm(&e, 2).await }
    });
    b.process.signal("STOP").expect("stop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.process.signal("CONT").expect("cont");
    let _ = storm2.await;

    // Round 3: a NATS node is lost.
    drop(cluster.nodes.pop());
    let _ = storm(&[a.endpoint.clone(), b.endpoint.clone()], 3).await;

    // The state agrees with itself once the dust settles.
    let st = wait_status(&b.endpoint, "one active role holding the slot", |st| {
        let roles = role_states(st, "CHX");
        let holder = st["sites"][0]["active"]["intranet"]["target"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        roles.iter().filter(|(_, s)| s == "active").count() == 1
            && roles.iter().any(|(srv, s)| s == "active" && *srv == holder)
    })
    .await;
    let epoch = st["sites"][0]["active"]["intranet"]["epoch"]
        .as_u64()
        .expect("epoch");

    // The history, read from a surviving node once the last epoch is announced.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = all_events(&bus).await;
        if active_changes(&events, "CHX")
            .iter()
            .any(|(_, _, e)| *e == epoch)
        {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "epoch {epoch} was never announced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let changes = active_changes(&events, "CHX");
    let mut last = 0;
    for (_, c, e) in &changes {
        assert!(
            *e > last,
            "epochs strictly increase in stream order: {changes:?}"
        );
        last = *e;
        assert!(!c.target.is_empty());
    }
    assert_eq!(last, epoch);
    let mut active: BTreeSet<String> = BTreeSet::new();
    for (seq, e) in events.iter().filter(|(_, e)| e.site == "CHX") {
        if let Some(Payload::RoleStateChanged(r)) = &e.payload {
            if r.to == v1::RoleState::Active as i32 {
                active.insert(e.server.clone());
            } else {
                active.remove(&e.server);
            }
            assert!(active.len() <= 1, "two active SUPs at #{seq}: {active:?}");
        }
    }
}

/// The chaos trials of `make chaos` in small: two trials of each process-level fault kind on a
/// durable three-node cluster, and every check of the independent checker at 0. (The KV-leader
/// kill trials wait out a NATS election each, 4-9 s, so they run in `make chaos` only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_smoke_every_check_holds() {
    let bins = sup_testkit::binary("sup-coordinator")
        .expect("binaries")
        .parent()
        .expect("folder")
        .to_path_buf();
    let options = sup_chaos::Options {
        trials: 2,
        kinds: vec![
            sup_chaos::Kind::CoordinatorKill,
            sup_chaos::Kind::CoordinatorPause,
            sup_chaos::Kind::Failover,
            sup_chaos::Kind::LogwatchKill,
        ],
        bins,
    };
    let report = sup_chaos::run(&options, |m| eprintln!("[chaos] {m}"))
        .await
        .expect("chaos run");
    assert!(report.passed, "{}", report.table());
    assert!(
        report.kinds.iter().all(|k| k.recovered == k.trials),
        "{}",
        report.table()
    );
}
