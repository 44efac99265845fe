//! The scheduler: manual runs through the real binaries, parents before children, refusal on
//! child sites, stale epochs; and exactly one run per due time with two replicas on a clock the
//! test drives.

use std::time::{Duration, Instant};

use chrono::TimeZone;
use sup_proto::v1::{self, event::Payload};
use sup_scheduler::{ManualClock, Scheduler, Settings};
use sup_testkit::{NatsServer, Process, Service};

use crate::procedure::{PROCEDURE, stack, start_provisioner};
use crate::support::*;

pub fn start_scheduler(nats_url: &str) -> (Process, String) {
    let p = Service::new("scheduler")
        .and_then(Service::listening)
        .map(|s| s.nats(nats_url, 1).set("TICK_MS", 200))
        .and_then(Service::start)
        .unwrap_or_else(|e| panic!("sup-scheduler: {e}"));
    let endpoint = p.endpoint().expect("endpoint");
    (p, endpoint)
}

pub fn sync_cli(coordinator: &str, scheduler: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(sup_testkit::binary("supctl").expect("supctl"))
        .env("SUP_COORDINATOR", coordinator)
        .env("SUP_SCHEDULER", scheduler)
        .env_remove("RUST_BACKTRACE")
        .args(args)
        .output()
        .expect("supctl")
}

fn history(coordinator: &str, scheduler: &str, site: &str) -> Vec<serde_json::Value> {
    let out = sync_cli(
        coordinator,
        scheduler,
        &["sync", "history", "--site", site, "-o", "json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json");
    // The same listing as YAML reads back the same (runs still going may have moved on: the
    // run ids are compared, which only grow).
    let yaml = sync_cli(
        coordinator,
        scheduler,
        &["sync", "history", "--site", site, "-o", "yaml"],
    );
    let yaml: serde_json::Value = serde_yaml_ng::from_slice(&yaml.stdout).expect("yaml");
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    };
    let (from_json, from_yaml) = (ids(&json), ids(&yaml));
    assert!(
        from_yaml.len() >= from_json.len() && from_json.iter().all(|i| from_yaml.contains(i)),
        "{from_json:?} {from_yaml:?}"
    );
    json.as_array().cloned().unwrap_or_default()
}

async fn wait_history(
    coordinator: &str,
    scheduler: &str,
    site: &str,
    what: &str,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = history(coordinator, scheduler, site);
        if pred(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "{site}: {what}: {h:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn manual_runs_go_parent_first_are_refused_on_children_and_follow_the_active_sup() {
    let mut s = stack(&[]);
    let (_scheduler, sched) = start_scheduler(s.nats.url());
    let three = format!(
        "{PROCEDURE}\n[[site]]\ncode = \"CH2\"\nparent = \"CEN\"\n[[site.site_system]]\nserver = \"ch2-sup.corp.example.com\"\n[[site.software_update_point]]\nserver = \"ch2-sup.corp.example.com\"\nactive = \"intranet\"\nhttp_port = 8530\nhttps_port = 8531\n"
    )
    .replacen("sync_source = \"microsoft_update\"", "sync_source = \"microsoft_update\"\nschedule = \"manual\"", 1);
    let file = site_file(&three);
    let out = supctl(
        &s.coordinator.endpoint,
        &[
            "apply",
            "-f",
            file.path().to_str().expect("path"),
            "--wait",
            "--timeout",
            "90s",
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let c = s.coordinator.endpoint.clone();

    let out = sync_cli(&c, &sched, &["sync", "run", "--site", "CEN", "--wait"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("succeeded"));
    let cen = history(&c, &sched, "CEN");
    let finished = cen[0]["finished"].as_str().expect("finished").to_string();
    assert_eq!(cen[0]["trigger"], "manual");
    assert_eq!(cen[0]["full"], false, "manual runs are delta");
    assert!(
        cen[0]["updates"].as_u64().unwrap_or(0) > 0,
        "the run's update count comes from wsyncmgr.log: {}",
        cen[0]
    );
    for child in ["CH1", "CH2"] {
        let h = wait_history(&c, &sched, child, "a run after the parent's", |h| {
            h.iter().any(|r| r["state"] == "succeeded")
        })
        .await;
        let run = h.iter().find(|r| r["state"] == "succeeded").expect("run");
        assert_eq!(run["trigger"], "parent");
        assert!(
            run["started"].as_str().expect("started") >= finished.as_str(),
            "{child} started before its parent finished"
        );
    }
    let refused = sync_cli(&c, &sched, &["sync", "run", "--site", "CH1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("not available on child sites"),
        "{}",
        text(&refused.stderr)
    );
    let status = wait_status(&c, "CEN sync in status", |st| {
        st["sites"].as_array().is_some_and(|ss| {
            ss.iter()
                .any(|x| x["code"] == "CEN" && x["sync"]["state"] == "succeeded")
        })
    })
    .await;
    let cen_status = status["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|x| x["code"] == "CEN")
        .expect("CEN")
        .clone();
    assert!(
        cen_status["sync"]["last_started"].is_string()
            && cen_status["sync"]["last_finished"].is_string()
    );
    assert_eq!(cen_status["sync"]["time_zone"], "UTC");
    assert!(
        cen_status["sync"]["schedule_token"].is_null(),
        "a manual schedule has no token: {cen_status}"
    );
    // Who each active SUP synchronizes from: the top site's from Microsoft Update, the Internet
    // SUP from the intranet one, the children from their parent's.
    let upstream_of = |site: &str, server: &str| -> serde_json::Value {
        status["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["code"] == site)
            .flat_map(|x| x["roles"].as_array().cloned().unwrap_or_default())
            .find(|r| r["server"] == server)
            .map(|r| r["upstream"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        upstream_of("CEN", "cen-sup01.corp.example.com"),
        "microsoft_update"
    );
    assert_eq!(
        upstream_of("CEN", "cen-inet01.corp.example.com"),
        "cen-sup01.corp.example.com"
    );
    assert_eq!(
        upstream_of("CH2", "ch2-sup.corp.example.com"),
        "cen-sup01.corp.example.com"
    );
    assert!(
        upstream_of("CEN", "cen-sup02.corp.example.com").is_null(),
        "a standby"
    );

    // The Internet-based SUP was configured to synchronize from the intranet one, and each run
    // synchronized it after the intranet one.
    let events = all_events(&bus(&s.nats).await).await;
    assert!(events.iter().any(|(_, e)| e.server == "cen-inet01.corp.example.com"
        && matches!(&e.payload, Some(Payload::ComponentConfigured(cc)) if cc.upstream_server == "cen-sup01.corp.example.com")));
    let site_log = std::fs::read_to_string(
        s.emulator
            .logs
            .join("cen-site.corp.example.com")
            .join("Logs")
            .join("wsyncmgr.log"),
    )
    .expect("CEN's wsyncmgr.log");
    let intranet_done = site_log
        .find("Done synchronizing WSUS Server cen-sup01.corp.example.com")
        .expect("the intranet SUP synchronized");
    let internet = site_log
        .find("Synchronizing WSUS server cen-inet01.corp.example.com")
        .expect("the Internet SUP synchronized");
    assert!(
        intranet_done < internet,
        "the Internet SUP after the intranet one"
    );
    assert!(
        site_log.contains("Performing sync on local request"),
        "a manual run"
    );
    let child_log = std::fs::read_to_string(
        s.emulator
            .logs
            .join("ch2-sup.corp.example.com")
            .join("Logs")
            .join("wsyncmgr.log"),
    )
    .expect("CH2's wsyncmgr.log");
    assert!(
        child_log.contains("Found parent sync notification file CEN.SYN")
            && child_log.contains("Performing sync on parent request"),
        "{child_log}"
    );

    // A run queued while the active SUP changes is dropped as stale and run by the new one.
    let earlier: Vec<String> = history(&c, &sched, "CEN")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    s.provisioner.kill();
    let out = sync_cli(&c, &sched, &["sync", "run", "--site", "CEN"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let act = supctl(
        &c,
        &[
            "sup",
            "activate",
            "--site",
            "CEN",
            "--server",
            "cen-sup02.corp.example.com",
        ],
    );
    assert!(act.status.success(), "{}", text(&act.stderr));
    s.provisioner = start_provisioner(&s.nats, &s.emulator);
    let h = wait_history(
        &c,
        &sched,
        "CEN",
        "the queued run finished on the new active SUP",
        |h| {
            h[0]["state"] == "succeeded"
                && h[0]["id"]
                    .as_str()
                    .is_some_and(|id| !earlier.iter().any(|e| e == id))
        },
    )
    .await;
    assert_eq!(h[0]["server"], "cen-sup02.corp.example.com");
    let events = all_events(&bus(&s.nats).await).await;
    assert!(events.iter().any(|(_, e)| matches!(&e.payload, Some(Payload::CommandRejected(r)) if r.reason.contains("stale epoch"))));
}

/// Stores one site as the coordinator would (its record and the site index), for a scheduler
/// driven directly.
async fn store_site(bus: &sup_bus::Bus, file: &str) {
    let site = sup_core::spec::load_site_file(file, &Default::default())
        .expect("site")
        .pop()
        .expect("one");
    bus.put_applied_site(&sup_proto::convert::site_to_proto(&site))
        .await
        .expect("store the site");
}

fn settings(url: &str) -> Settings {
    Settings {
        tick_ms: 100,
        run_timeout_secs: 7200,
        // No retries inside the test's hours: every run counted is a scheduled one.
        retry_after_secs: 1_000_000,
        nats: sup_bus::BusConfig::new(url),
    }
}

#[tokio::test]
async fn two_replicas_fire_each_due_time_exactly_once() {
    let nats = NatsServer::start().expect("nats-server");
    let bus = bus(&nats).await;
    store_site(
        &bus,
        "[[site]]\ncode = \"HRL\"\n[site.software_updates]\nschedule = \"every 1 hours\"\n",
    )
    .await;

    let clock = ManualClock::new(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 10, 30, 0)
            .single()
            .expect("time"),
    );
    let a = Scheduler {
        bus: bus.clone(),
        clock: clock.clone(),
        settings: settings(nats.url()),
        metrics: Default::default(),
    };
    let b = Scheduler {
        bus: bus.clone(),
        clock: clock.clone(),
        settings: settings(nats.url()),
        metrics: Default::default(),
    };
    let tick_both = || async {
        let (x, y) = tokio::join!(a.tick(), b.tick());
        x.expect("tick a");
        y.expect("tick b");
    };
    tick_both().await;
    let runs = || async {
        all_events(&bus)
            .await
            .into_iter()
            .filter_map(|(_, e)| match e.payload {
                Some(Payload::SyncStarted(s)) => s.run.filter(|r| r.trigger == "schedule"),
                _ => None,
            })
            .count()
    };
    assert_eq!(runs().await, 0, "nothing is due at 10:30");
    for hour in 1..=5 {
        clock.advance(chrono::Duration::minutes(if hour == 1 { 30 } else { 60 }));
        tick_both().await;
        tick_both().await;
        assert_eq!(runs().await, hour, "one run per due time");
    }
    // Every replica down for five hours: the missed fires run once, not five times.
    clock.advance(chrono::Duration::hours(5));
    tick_both().await;
    tick_both().await;
    assert_eq!(runs().await, 6);
    let next = a.status("HRL").await.expect("status").next.expect("next");
    assert_eq!(
        next.seconds,
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 21, 0, 0)
            .single()
            .expect("t")
            .timestamp()
    );
    let _ = v1::SyncState::Running;
}

#[tokio::test]
async fn schedules_fire_at_the_sites_wall_clock_time() {
    let nats = NatsServer::start().expect("nats-server");
    let bus = bus(&nats).await;
    // Daily at 02:30 in New York; the clocks go forward at 02:00 on 2026-03-08.
    store_site(
        &bus,
        "[[site]]\ncode = \"NYC\"\ntime_zone = \"America/New_York\"\n[site.software_updates]\nschedule = { every = \"1 days\", start = \"2026-01-01T02:30:00\" }\n",
    )
    .await;
    let at = |y, m, d, h, min| {
        chrono::Utc
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("time")
            .timestamp()
    };
    let clock = ManualClock::new(
        chrono::Utc
            .with_ymd_and_hms(2026, 3, 6, 12, 0, 0)
            .single()
            .expect("time"),
    );
    let s = Scheduler {
        bus: bus.clone(),
        clock: clock.clone(),
        settings: settings(nats.url()),
        metrics: Default::default(),
    };
    s.tick().await.expect("tick");
    let next = || async {
        s.status("NYC")
            .await
            .expect("status")
            .next
            .expect("next")
            .seconds
    };
    // 02:30 EST is 07:30 UTC.
    assert_eq!(next().await, at(2026, 3, 7, 7, 30));
    clock.advance(chrono::Duration::days(1));
    s.tick().await.expect("tick");
    // 02:30 does not exist on 2026-03-08: the run comes 30 minutes after the jump, 03:30 EDT.
    assert_eq!(next().await, at(2026, 3, 8, 7, 30));
    clock.advance(chrono::Duration::days(1));
    s.tick().await.expect("tick");
    // Then 02:30 EDT, 06:30 UTC.
    assert_eq!(next().await, at(2026, 3, 9, 6, 30));
}
