//! The coordinator and supctl, as real binaries against a real nats-server.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sup_proto::v1::{self, coordinator_client::CoordinatorClient, event::Payload};
use sup_testkit::NatsServer;

use crate::support::*;

const HIERARCHY: &str = r#"
[[site]]
code = "CEN"
name = "Central site"
mode = "native"

[site.software_updates]
sync_source = "microsoft_update"
schedule = "every 7 days"
classifications = ["Critical Updates", "Security Updates"]
products = ["Windows XP", "Office 2007"]
languages = ["English", "German"]

[[site.site_system]]
server = "cen-sup01.corp.example.com"
[[site.site_system]]
server = "cen-sup02.corp.example.com"

[[site.software_update_point]]
server = "cen-sup01.corp.example.com"
active = "intranet"
http_port = 8530
https_port = 8531
ssl = true
[[site.software_update_point]]
server = "cen-sup02.corp.example.com"
http_port = 8530
https_port = 8531
ssl = true

[[site]]
code = "CH1"
name = "Child one"
parent = "CEN"

[[site.site_system]]
server = "ch1-sup01.corp.example.com"
[[site.software_update_point]]
server = "ch1-sup01.corp.example.com"
active = "intranet"
"#;

#[tokio::test]
async fn applying_a_hierarchy_twice_changes_nothing_the_second_time() {
    let nats = NatsServer::start().expect("nats-server");
    let c = coordinator(&nats);
    let file = site_file(HIERARCHY);
    let path = file.path().to_str().expect("path");

    let first = supctl(&c.endpoint, &["apply", "-f", path]);
    assert!(
        first.status.success(),
        "{}{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    let out = text(&first.stdout);
    assert!(
        out.contains("site CEN: changed") && out.contains("site CH1: changed"),
        "{out}"
    );

    let bus = bus(&nats).await;
    let applied_before = count_site_applied(&bus).await;
    assert_eq!(applied_before, 2);

    let second = supctl(&c.endpoint, &["apply", "-f", path]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let out = text(&second.stdout);
    assert!(
        out.contains("site CEN: no changes") && out.contains("site CH1: no changes"),
        "{out}"
    );
    assert_eq!(
        count_site_applied(&bus).await,
        applied_before,
        "a no-op apply publishes no SiteApplied"
    );

    // `diff` says the same, and names each field a changed file would change.
    let same = text(&supctl(&c.endpoint, &["diff", "-f", path]).stdout);
    assert!(same.contains("site CEN: no changes"), "{same}");
    let edited = site_file(
        &HIERARCHY
            .replacen("http_port = 8530", "http_port = 8080", 1)
            .replace("schedule = \"every 7 days\"", "schedule = \"every 1 days\""),
    );
    let out = supctl(
        &c.endpoint,
        &["diff", "-f", edited.path().to_str().expect("path")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("software_update_point[cen-sup01.corp.example.com].http_port: 8530 -> 8080"),
        "{said}"
    );
    assert!(said.contains("software_updates.schedule"), "{said}");
    assert!(said.contains("site CH1: no changes"), "{said}");
    assert_eq!(
        count_site_applied(&bus).await,
        applied_before,
        "diff changes nothing"
    );

    // Nothing installs the roles here: --wait gives up at its timeout and says which roles are
    // short of their declared state, and where they stand.
    let waited = supctl(
        &c.endpoint,
        &["apply", "-f", path, "--wait", "--timeout", "2s"],
    );
    assert_eq!(waited.status.code(), Some(1), "{}", text(&waited.stdout));
    let said = text(&waited.stderr);
    assert!(said.contains("timed out with 3 role(s)"), "{said}");
    assert!(said.contains("CEN cen-sup01.corp.example.com: "), "{said}");

    let status = wait_status(&c.endpoint, "three declared roles", |s| {
        role_states(s, "CEN").len() == 2 && role_states(s, "CH1").len() == 1
    })
    .await;
    let sites = status["sites"].as_array().expect("sites");
    let ch1 = sites.iter().find(|s| s["code"] == "CH1").expect("CH1");
    assert_eq!(ch1["parent"], "CEN");
    assert_eq!(ch1["mode"], "mixed");
    let cen = sites.iter().find(|s| s["code"] == "CEN").expect("CEN");
    assert_eq!(cen["mode"], "native");
    assert!(
        cen["active"]["intranet"].is_null(),
        "nothing is active before the role is ready"
    );
    assert_eq!(cen["sync"]["state"], "never_run");
    assert!(
        cen["sync"]["next"].is_string(),
        "a scheduled site has a next run"
    );

    // The declared intent is kept: once cen-sup01 is ready, it becomes active on its own.
    make_ready(&bus, "CEN", "cen-sup01.corp.example.com").await;
    // The slot is written first, then projected onto the role: wait for both.
    let status = wait_status(&c.endpoint, "cen-sup01 active", |s| {
        s["sites"][0]["active"]["intranet"]["target"] == "cen-sup01.corp.example.com"
            && role_states(s, "CEN")
                .contains(&("cen-sup01.corp.example.com".into(), "active".into()))
    })
    .await;
    let roles = role_states(&status, "CEN");
    assert!(
        roles.contains(&("cen-sup01.corp.example.com".into(), "active".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&("cen-sup02.corp.example.com".into(), "declared".into())),
        "{roles:?}"
    );

    // `site get -o toml` prints the applied site back as a site file; the default is a table.
    let get = supctl(&c.endpoint, &["site", "get", "CEN", "-o", "toml"]);
    assert!(get.status.success());
    assert!(text(&get.stdout).contains("server = \"cen-sup01.corp.example.com\""));
    let table = text(&supctl(&c.endpoint, &["site", "get", "CEN"]).stdout);
    assert!(
        table.contains("SOFTWARE UPDATE POINT") && table.contains("cen-sup01.corp.example.com")
    );
    assert!(!table.contains("server = "), "a table, not TOML: {table}");

    // Every listing reads the same as JSON and as YAML, and names its resources.
    for listing in [
        &["status"][..],
        &["site", "list"][..],
        &["site", "get", "CEN"][..],
    ] {
        let run = |format: &str| {
            let out = supctl(&c.endpoint, &[listing, &["-o", format][..]].concat());
            assert!(
                out.status.success(),
                "{listing:?} -o {format}: {}",
                text(&out.stderr)
            );
            text(&out.stdout)
        };
        let json: serde_json::Value = serde_json::from_str(&run("json")).expect("JSON");
        let yaml: serde_json::Value = serde_yaml_ng::from_str(&run("yaml")).expect("YAML");
        assert_eq!(json, yaml, "{listing:?}");
        assert!(
            run("name").lines().any(|l| l == "CEN"),
            "{listing:?} -o name"
        );
        // Wide: the table with more columns, never less of it.
        let (table, wide) = (run("table"), run("wide"));
        let header = |t: &str| {
            t.lines()
                .find(|l| l.trim_start().starts_with("SERVER") || l.starts_with("CODE"))
                .map(|l| l.split_whitespace().count())
                .unwrap_or(0)
        };
        assert!(
            header(&wide) > header(&table) && header(&table) > 0,
            "{listing:?}:\n{table}\n{wide}"
        );
    }
    // The event history too: one JSON object per line, one YAML document per event, the ids.
    let events = |format: &str| {
        let out = supctl(&c.endpoint, &["events", "-o", format]);
        assert!(
            out.status.success(),
            "events -o {format}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let json: Vec<serde_json::Value> = events("json")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let yaml: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&events("yaml"))
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .collect();
    assert!(!json.is_empty());
    assert_eq!(json, yaml);
    let ids: Vec<String> = json
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(events("name").lines().collect::<Vec<_>>(), ids);
    assert!(events("wide").lines().all(|l| l.contains(" epoch=")));
    // --tail: the last events stored, as the whole history ends.
    let out = supctl(&c.endpoint, &["events", "--tail", "3", "-o", "json"]);
    let tail: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(json.len() > 3);
    assert_eq!(tail, json[json.len() - 3..]);
}

async fn count_site_applied(bus: &sup_bus::Bus) -> usize {
    all_events(bus)
        .await
        .iter()
        .filter(|(_, e)| matches!(e.payload, Some(Payload::SiteApplied(_))))
        .count()
}

#[tokio::test]
async fn an_invalid_file_is_rejected_whole_with_paths_and_exit_code_2() {
    let nats = NatsServer::start().expect("nats-server");
    let c = coordinator(&nats);
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "code = \"CH1\"",
            "code = \"CHILD\"",
            "site[1].code",
            "site_code",
        ),
        (
            "parent = \"CEN\"",
            "parent = \"XYZ\"",
            "site[CH1].parent",
            "parent_exists",
        ),
        (
            "https_port = 8531\nssl = true\n[[site.software_update_point]]",
            "https_port = 8530\nssl = true\n[[site.software_update_point]]",
            "site[CEN].software_update_point[0].https_port",
            "ports_distinct",
        ),
        (
            "https_port = 8531\nssl = true\n[[site.software_update_point]]",
            "https_port = 8531\n[[site.software_update_point]]",
            "site[CEN].software_update_point[0].ssl",
            "native_requires_ssl",
        ),
        (
            "parent = \"CEN\"\n",
            "parent = \"CEN\"\n[site.software_updates]\nschedule = \"every 1 days\"\n",
            "site[CH1].software_updates.schedule",
            "child_inherits_settings",
        ),
        (
            "server = \"ch1-sup01.corp.example.com\"\n[[site.software_update_point]]",
            "server = \"ch1-sup01\"\n[[site.software_update_point]]",
            "site[CH1].site_system[0].server",
            "fqdn",
        ),
        (
            "products = [\"Windows XP\", \"Office 2007\"]",
            "products = [\"Windows XP\", \"Office 2077\"]",
            "site[CEN].software_updates.products[1]",
            "catalog",
        ),
        (
            "schedule = \"every 7 days\"",
            "schedule = \"every 40 days\"",
            "site[CEN].software_updates.schedule",
            "schedule_range",
        ),
        (
            "mode = \"native\"",
            "mode = \"native\"\nfailover = \"sometimes\"",
            "site[CEN].failover",
            "failover",
        ),
        (
            "server = \"cen-sup02.corp.example.com\"\nhttp_port",
            "server = \"cen-sup02.corp.example.com\"\nactive = \"intranet\"\nhttp_port",
            "site[CEN].software_update_point[1].active",
            "one_active_intranet",
        ),
    ];
    for (from, to, path, rule) in cases {
        assert!(HIERARCHY.contains(from), "fixture lacks {from}");
        let file = site_file(&HIERARCHY.replacen(from, to, 1));
        let out = supctl(
            &c.endpoint,
            &["apply", "-f", file.path().to_str().expect("path")],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rule}: {err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{path}:")) && l.ends_with(&format!("[{rule}]"))),
            "{rule} at {path}: {err}"
        );
    }
    // Nothing of any of those files was stored.
    let list = supctl(&c.endpoint, &["site", "list", "-o", "json"]);
    assert!(list.status.success());
    assert_eq!(text(&list.stdout).trim(), "[]");

    // The coordinator enforces the same rules for clients that skip supctl's own check.
    let mut client = CoordinatorClient::connect(c.endpoint.clone())
        .await
        .expect("connect");
    let bad = v1::Site {
        code: "TOOLONG".into(),
        ..Default::default()
    };
    let err = client
        .apply_sites(v1::ApplySitesRequest {
            sites: vec![bad],
            ..Default::default()
        })
        .await
        .expect_err("rejected");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("site[0].code"), "{}", err.message());
    assert_eq!(
        text(&supctl(&c.endpoint, &["site", "list", "-o", "json"]).stdout).trim(),
        "[]"
    );
}

const FOUR_SUPS: &str = r#"
[[site]]
code = "CEN"
[[site.site_system]]
server = "s1.corp.example.com"
[[site.site_system]]
server = "s2.corp.example.com"
[[site.site_system]]
server = "s3.corp.example.com"
[[site.site_system]]
server = "s4.corp.example.com"
[[site.software_update_point]]
server = "s1.corp.example.com"
[[site.software_update_point]]
server = "s2.corp.example.com"
[[site.software_update_point]]
server = "s3.corp.example.com"
[[site.software_update_point]]
server = "s4.corp.example.com"
"#;

#[tokio::test]
async fn two_replicas_racing_activations_give_one_winner_per_epoch() {
    let nats = NatsServer::start().expect("nats-server");
    let a = coordinator(&nats);
    let b = coordinator(&nats);
    apply_sites(&a.endpoint, FOUR_SUPS);
    let bus = bus(&nats).await;
    let servers = [
        "s1.corp.example.com",
        "s2.corp.example.com",
        "s3.corp.example.com",
        "s4.corp.example.com",
    ];
    for s in servers {
        make_ready(&bus, "CEN", s).await;
    }
    wait_status(&a.endpoint, "four ready roles", |s| {
        role_states(s, "CEN")
            .iter()
            .filter(|(_, st)| st == "ready")
            .count()
            == 4
    })
    .await;

    let clients = Arc::new([
        CoordinatorClient::connect(a.endpoint.clone())
            .await
            .expect("a"),
        CoordinatorClient::connect(b.endpoint.clone())
            .await
            .expect("b"),
    ]);
    let mut tasks = Vec::new();
    for i in 0..48usize {
        let clients = clients.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = clients[i % 2].clone();
            c.set_active(v1::SetActiveRequest {
                site: "CEN".into(),
                slot: v1::Slot::Intranet as i32,
                target: servers[i % 4].into(),
                op_id: format!("race-{i}"),
            })
            .await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.expect("join") {
            Ok(r) => won.push(r.into_inner()),
            Err(s) => assert_eq!(
                s.code(),
                tonic::Code::Aborted,
                "only a lost compare-and-set may fail: {s}"
            ),
        }
    }
    assert!(!won.is_empty(), "someone wins");
    // A winner per epoch: every successful answer for a new holder has its own epoch.
    let epochs: BTreeSet<(u64, String)> = won.iter().map(|a| (a.epoch, a.target.clone())).collect();
    let per_epoch: BTreeSet<u64> = epochs.iter().map(|(e, _)| *e).collect();
    assert_eq!(
        per_epoch.len(),
        epochs.len(),
        "two targets share an epoch: {epochs:?}"
    );

    // Wait until every epoch has been announced, then read the whole history.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = all_events(&bus).await;
        let announced: BTreeSet<u64> = active_changes(&events, "CEN")
            .iter()
            .map(|(_, _, e)| *e)
            .collect();
        if per_epoch.is_subset(&announced) {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "epochs {per_epoch:?} not all announced: {announced:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let changes = active_changes(&events, "CEN");
    let mut last = 0;
    for (_, change, epoch) in &changes {
        assert!(
            *epoch > last,
            "epochs must strictly increase in stream order: {changes:?}"
        );
        last = *epoch;
        assert!(!change.target.is_empty());
    }
    // No moment with two active roles: replay role state changes in stream order.
    let mut active: BTreeSet<String> = BTreeSet::new();
    for (seq, e) in &events {
        if let Some(Payload::RoleStateChanged(r)) = &e.payload {
            if r.to == v1::RoleState::Active as i32 {
                active.insert(e.server.clone());
            } else {
                active.remove(&e.server);
            }
            assert!(
                active.len() <= 1,
                "two active SUPs at event #{seq}: {active:?}"
            );
        }
    }
    let status = wait_status(&a.endpoint, "one active role", |s| {
        role_states(s, "CEN")
            .iter()
            .filter(|(_, st)| st == "active")
            .count()
            == 1
    })
    .await;
    let holder = status["sites"][0]["active"]["intranet"]["target"]
        .as_str()
        .expect("holder")
        .to_string();
    assert_eq!(holder, changes.last().expect("a change").1.target);
    assert_eq!(
        status["sites"][0]["active"]["intranet"]["epoch"].as_u64(),
        Some(last)
    );
}

/// A long-running supctl and the lines it prints, as they come.
fn supctl_lines(
    endpoint: &str,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(sup_testkit::binary("supctl").expect("supctl"))
        .env("SUP_COORDINATOR", endpoint)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("supctl");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The log watcher publishes one file after another, so WCM.log's checks, written after setup,
/// can arrive before SUPSetup.log's setup start. The role still becomes ready on them.
#[tokio::test]
async fn checks_published_before_their_setup_start_still_make_the_role_ready() {
    let nats = NatsServer::start().expect("nats-server");
    let c = coordinator(&nats);
    apply_sites(&c.endpoint, HIERARCHY);
    let bus = bus(&nats).await;
    let server = "cen-sup01.corp.example.com";
    let setup = std::time::SystemTime::now() - Duration::from_secs(120);
    let at = |secs| Some(setup + Duration::from_secs(secs));
    // A check from before this install, published late, must not count.
    milestone_at(
        &bus,
        "CEN",
        server,
        "wsus_database_ok",
        "WCM.log",
        at(0).map(|t| t - Duration::from_secs(60)),
    )
    .await;
    milestone_at(
        &bus,
        "CEN",
        server,
        "wsus_components_healthy",
        "WCM.log",
        at(90),
    )
    .await;
    milestone_at(
        &bus,
        "CEN",
        server,
        "role_install_started",
        "SUPSetup.log",
        at(0),
    )
    .await;
    milestone_at(
        &bus,
        "CEN",
        server,
        "role_install_succeeded",
        "SUPSetup.log",
        at(60),
    )
    .await;
    let status = wait_status(&c.endpoint, "cen-sup01 verifying", |s| {
        role_states(s, "CEN").contains(&(server.into(), "verifying".into()))
    })
    .await;
    assert!(
        status["sites"][0]["active"]["intranet"].is_null(),
        "{status:#}"
    );
    // This install's database check, read before the setup start was published, completes it.
    milestone_at(&bus, "CEN", server, "wsus_database_ok", "WCM.log", at(91)).await;
    wait_status(&c.endpoint, "cen-sup01 active", |s| {
        s["sites"][0]["active"]["intranet"]["target"] == server
            && role_states(s, "CEN").contains(&(server.into(), "active".into()))
    })
    .await;
}

#[tokio::test]
async fn events_follow_shows_changes_as_they_happen() {
    let nats = NatsServer::start().expect("nats-server");
    let c = coordinator(&nats);
    let (mut follower, rx) = supctl_lines(&c.endpoint, &["events", "--follow", "-o", "json"]);
    // `status --watch` prints its first view once it follows the events: then every change
    // shows without polling.
    let (mut watcher, views) = supctl_lines(&c.endpoint, &["status", "--watch", "-o", "json"]);
    let first: serde_json::Value = serde_json::from_str(
        &views
            .recv_timeout(Duration::from_secs(30))
            .expect("the first view"),
    )
    .expect("JSON");
    assert_eq!(first["sites"], serde_json::json!([]), "{first}");
    // Give the events follower a moment to subscribe, then make changes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    apply_sites(&c.endpoint, HIERARCHY);
    let bus = bus(&nats).await;
    make_ready(&bus, "CEN", "cen-sup01.corp.example.com").await;

    let mut kinds = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(kinds.contains("site_applied")
        && kinds.contains("role_state")
        && kinds.contains("active_changed"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("events seen so far: {kinds:?}"));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
        kinds.insert(v["kind"].as_str().unwrap_or_default().to_string());
    }
    let _ = follower.kill();
    let _ = follower.wait();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let view: serde_json::Value = serde_json::from_str(
            &views
                .recv_timeout(left)
                .expect("a view with CEN's active SUP"),
        )
        .expect("one JSON document per view");
        let cen = view["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["code"] == "CEN");
        if cen.is_some_and(|s| s["active"]["intranet"]["target"] == "cen-sup01.corp.example.com") {
            break;
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();

    // The same history as CloudEvents, one JSON document per line.
    let out = supctl(
        &c.endpoint,
        &["events", "--site", "CEN", "-o", "cloudevents"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a CloudEvent per line"))
        .collect();
    let active = events
        .iter()
        .find(|e| e["type"] == "sup.active.changed")
        .expect("the activation");
    assert_eq!(active["specversion"], "1.0");
    assert_eq!(active["subject"], "CEN");
    assert_eq!(
        active["data"]["active_changed"]["target"],
        "cen-sup01.corp.example.com"
    );
    assert!(active["data"]["epoch"].as_u64().is_some_and(|e| e > 0));
    assert!(
        events
            .iter()
            .all(|e| e["id"].as_str().is_some_and(|i| !i.is_empty()))
    );
}

#[tokio::test]
async fn grpc_health_reflection_and_a_bad_config() {
    let nats = NatsServer::start().expect("nats-server");
    let c = coordinator(&nats);
    let channel = tonic::transport::Channel::from_shared(c.endpoint.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "sup.v1.Coordinator".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = stream.message().await.expect("answer").expect("one");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"sup.v1.Coordinator".to_string())
            && names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    // A typo in the configuration stops the service at start, naming the key.
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "reconcile_interval_secs = \"soon\"\n[nats]\nurll = \"x\"\n",
    )
    .expect("write");
    let out = Command::new(sup_testkit::binary("sup-coordinator").expect("bin"))
        .args(["--config", bad.to_str().expect("path")])
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("urll") || err.contains("reconcile_interval_secs"),
        "{err}"
    );
}

#[tokio::test]
async fn the_wizard_steps_as_commands() {
    let nats = NatsServer::start().expect("nats-server");
    let c = coordinator(&nats);
    apply_sites(&c.endpoint, HIERARCHY);

    let add = supctl(
        &c.endpoint,
        &[
            "sup",
            "add",
            "--site",
            "CEN",
            "--server",
            "cen-sup03.corp.example.com",
            "--http-port",
            "8530",
            "--https-port",
            "8531",
            "--proxy",
            "proxy.corp.example.com:8080",
            "--ssl",
        ],
    );
    assert!(add.status.success(), "{}", text(&add.stderr));
    assert!(
        text(&add.stdout).contains("declared"),
        "{}",
        text(&add.stdout)
    );
    let bad_proxy = supctl(
        &c.endpoint,
        &[
            "sup",
            "add",
            "--site",
            "CEN",
            "--server",
            "x.corp.example.com",
            "--proxy",
            "proxy-without-port",
        ],
    );
    assert_eq!(bad_proxy.status.code(), Some(2));
    let bad_ports = supctl(
        &c.endpoint,
        &[
            "sup",
            "add",
            "--site",
            "CEN",
            "--server",
            "y.corp.example.com",
            "--http-port",
            "8530",
            "--https-port",
            "8530",
        ],
    );
    assert_eq!(
        bad_ports.status.code(),
        Some(2),
        "{}",
        text(&bad_ports.stderr)
    );
    assert!(text(&bad_ports.stderr).contains("[ports_distinct]"));

    let get = supctl(&c.endpoint, &["site", "get", "CEN", "-o", "json"]);
    let spec: serde_json::Value = serde_json::from_slice(&get.stdout).expect("json");
    assert!(
        spec["software_update_point"]
            .as_array()
            .expect("sups")
            .iter()
            .any(|s| s["server"] == "cen-sup03.corp.example.com" && s["proxy"]["port"] == 8080)
    );

    let rm = supctl(
        &c.endpoint,
        &[
            "sup",
            "remove",
            "--site",
            "CEN",
            "--server",
            "cen-sup03.corp.example.com",
        ],
    );
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    // Declared but never installed: nothing to remove on the server.
    assert!(text(&rm.stdout).contains("removed"), "{}", text(&rm.stdout));

    // Activation needs a ready role.
    let act = supctl(
        &c.endpoint,
        &[
            "sup",
            "activate",
            "--site",
            "CEN",
            "--server",
            "cen-sup02.corp.example.com",
        ],
    );
    assert_eq!(act.status.code(), Some(1));
    assert!(
        text(&act.stderr).contains("not ready"),
        "{}",
        text(&act.stderr)
    );

    // A parent cannot go before its children.
    let del = supctl(&c.endpoint, &["site", "delete", "CEN"]);
    assert_eq!(del.status.code(), Some(1));
    assert!(text(&del.stderr).contains("CH1"), "{}", text(&del.stderr));
    assert!(
        supctl(&c.endpoint, &["site", "delete", "CH1"])
            .status
            .success()
    );
    assert!(
        supctl(&c.endpoint, &["site", "delete", "CEN"])
            .status
            .success()
    );
    assert_eq!(
        text(&supctl(&c.endpoint, &["site", "list", "-o", "json"]).stdout).trim(),
        "[]"
    );
}

/// A site file larger than gRPC's default 4 MiB message goes through supctl to the coordinator
/// in one request (a dry run: the test is about the wire, not storing the sites). Few sites with
/// many SUPs make the bytes, so the coordinator's per-site work stays small.
#[tokio::test]
async fn a_site_file_over_four_mebibytes_goes_in_one_request() {
    use sup_proto::prost::Message as _;
    let nats = NatsServer::start().expect("nats-server");
    let c = coordinator(&nats);
    let mut file_text = String::from(
        "[[site]]\ncode = \"CEN\"\nname = \"Central\"\n[site.software_updates]\nsync_source = \"microsoft_update\"\nclassifications = [\"Critical Updates\"]\nproducts = [\"Windows XP\"]\nlanguages = [\"English\"]\n[[site.site_system]]\nserver = \"cen-sup01.corp.example.com\"\n[[site.software_update_point]]\nserver = \"cen-sup01.corp.example.com\"\nactive = \"intranet\"\n",
    );
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let codes: Vec<String> = (0..1_290)
        .map(|i| format!("B{}{}", ALNUM[i / 36] as char, ALNUM[i % 36] as char))
        .collect();
    for code in &codes {
        let lower = code.to_ascii_lowercase();
        file_text.push_str(&format!(
            "[[site]]\ncode = \"{code}\"\nname = \"Branch office {code} of the example hierarchy\"\nparent = \"CEN\"\n"
        ));
        for n in 0..26 {
            file_text.push_str(&format!(
                "[[site.site_system]]\nserver = \"{lower}-software-update-point-{n:02}.branch-offices.corp.example.com\"\n\
                 [[site.software_update_point]]\nserver = \"{lower}-software-update-point-{n:02}.branch-offices.corp.example.com\"\n{}http_port = 8530\nhttps_port = 8531\nssl = true\n",
                if n == 0 { "active = \"intranet\"\n" } else { "" }
            ));
        }
    }
    // The request as supctl sends it is over gRPC's default limit.
    let sites = sup_core::spec::load_site_file(&file_text, &Default::default()).expect("valid");
    let request = v1::ApplySitesRequest {
        sites: sites
            .iter()
            .map(sup_proto::convert::site_to_proto)
            .collect(),
        ..Default::default()
    };
    assert!(
        request.encoded_len() > 4 * 1024 * 1024,
        "{} bytes",
        request.encoded_len()
    );
    let file = site_file(&file_text);
    let out = supctl(
        &c.endpoint,
        &[
            "apply",
            "-f",
            file.path().to_str().expect("path"),
            "--dry-run",
        ],
    );
    assert!(
        out.status.success(),
        "a dry run of {} bytes:\n{}",
        request.encoded_len(),
        text(&out.stderr)
    );
    let said = text(&out.stdout);
    assert!(
        codes
            .iter()
            .all(|code| said.contains(&format!("site {code}:"))),
        "{}",
        &said[..said.len().min(2000)]
    );
}

/// One request of many sites of one depth: stored and reconciled at once, each counted among
/// the applied sites and its role declared, with nothing lost to the writers' contention.
#[tokio::test]
async fn an_apply_of_many_sites_at_once_stores_and_declares_every_one() {
    const CHILDREN: usize = 48;
    let nats = NatsServer::start().expect("nats-server");
    let c = coordinator(&nats);
    let mut text_file = String::from(
        "[[site]]\ncode = \"CEN\"\n[[site.site_system]]\nserver = \"cen.corp.example.com\"\n[[site.software_update_point]]\nserver = \"cen.corp.example.com\"\nactive = \"intranet\"\n",
    );
    for i in 0..CHILDREN {
        text_file.push_str(&format!(
            "[[site]]\ncode = \"C{i:02}\"\nparent = \"CEN\"\n[[site.site_system]]\nserver = \"sup.c{i:02}.corp.example.com\"\n[[site.software_update_point]]\nserver = \"sup.c{i:02}.corp.example.com\"\nactive = \"intranet\"\n"
        ));
    }
    let file = site_file(&text_file);
    let path = file.path().to_str().expect("path");
    let out = supctl(&c.endpoint, &["apply", "-f", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let list = supctl(&c.endpoint, &["site", "list", "-o", "json"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&list.stdout).expect("site list json");
    assert_eq!(listed.len(), CHILDREN + 1, "{}", text(&list.stdout));

    let status = supctl(&c.endpoint, &["status", "-o", "json"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let sites = status["sites"].as_array().expect("sites");
    assert_eq!(sites.len(), CHILDREN + 1);
    for site in sites {
        let roles = site["roles"].as_array().expect("roles");
        assert_eq!(roles.len(), 1, "{site}");
        assert_eq!(roles[0]["state"], "declared", "{site}");
    }
    let bus = bus(&nats).await;
    assert_eq!(count_site_applied(&bus).await, CHILDREN + 1);

    let again = supctl(&c.endpoint, &["apply", "-f", path]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout).matches(": no changes").count(),
        CHILDREN + 1,
        "{}",
        text(&again.stdout)
    );
}
