//! The procedure end to end through the real binaries: coordinator, provisioner, log watcher,
//! WSUS emulator and supctl on a real nats-server.

use std::time::{Duration, Instant};

use sup_proto::v1::event::Payload;
use sup_testkit::{NatsServer, Process, Service, free_port};

use crate::emulator::{Emulator, start_emulator};
use crate::support::*;

pub struct Stack {
    pub nats: NatsServer,
    pub coordinator: Coordinator,
    pub emulator: Emulator,
    pub provisioner: Process,
    pub logwatch: Process,
    pub dir: tempfile::TempDir,
}

pub fn start_provisioner(nats: &NatsServer, emu: &Emulator) -> Process {
    // An agent nobody answers at, for the retry tests.
    let dead = free_port().expect("port");
    Service::new("provisioner")
        .map(|s| {
            s.nats(nats.url(), 1)
                .set("MAX_ATTEMPTS", 2)
                .set("RETRY_BASE_MS", 100)
                .set("INSTALL_TIMEOUT_SECS", 60)
                .config(format!(
                    "[agents]\n\"*\" = \"{}\"\n\"dead.corp.example.com\" = \"http://127.0.0.1:{dead}\"\n",
                    emu.agent
                ))
        })
        .and_then(Service::start)
        .unwrap_or_else(|e| panic!("sup-provisioner: {e}"))
}

pub fn start_logwatch(nats: &NatsServer, emu: &Emulator) -> Process {
    Service::new("logwatch")
        .map(|s| {
            s.arg("run")
                .nats(nats.url(), 1)
                .set("POLL_INTERVAL_MS", 100)
                .set("DISCOVER_INTERVAL_SECS", 1)
                .set("ROOT", emu.logs.display())
        })
        .and_then(Service::start)
        .unwrap_or_else(|e| panic!("sup-logwatch: {e}"))
}

pub fn stack(emulator_args: &[&str]) -> Stack {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("dir");
    let coordinator = coordinator(&nats);
    let mut args = vec!["--site-server", "CEN=cen-site.corp.example.com"];
    args.extend_from_slice(emulator_args);
    let emulator = start_emulator(&args);
    let provisioner = start_provisioner(&nats, &emulator);
    let logwatch = start_logwatch(&nats, &emulator);
    Stack {
        nats,
        coordinator,
        emulator,
        provisioner,
        logwatch,
        dir,
    }
}

pub const PROCEDURE: &str = r#"
[[site]]
code = "CEN"
name = "Central site"
mode = "native"
site_server = "cen-site.corp.example.com"

[site.software_updates]
sync_source = "microsoft_update"
classifications = ["Critical Updates", "Security Updates"]
products = ["Windows XP", "Office 2007"]
languages = ["English", "German"]

[[site.site_system]]
server = "cen-sup01.corp.example.com"
[[site.site_system]]
server = "cen-sup02.corp.example.com"
[[site.site_system]]
server = "cen-inet01.corp.example.com"
internet_fqdn = "sup.example.com"

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
[[site.software_update_point]]
server = "cen-inet01.corp.example.com"
active = "internet"
http_port = 8530
https_port = 8531
ssl = true

[[site]]
code = "CH1"
name = "Child one"
parent = "CEN"

[[site.site_system]]
server = "n1.corp.example.com"
[[site.site_system]]
server = "n2.corp.example.com"
[[site.software_update_point]]
server = "n1.corp.example.com"
http_port = 8530
https_port = 8531
[[site.software_update_point]]
server = "n2.corp.example.com"
http_port = 8530
https_port = 8531
[[site.nlb_cluster]]
name = "supnlb.corp.example.com"
members = ["n1.corp.example.com", "n2.corp.example.com"]
active = "intranet"
"#;

fn role_state(status: &serde_json::Value, site: &str, server: &str) -> Option<(String, String)> {
    status["sites"]
        .as_array()?
        .iter()
        .find(|s| s["code"] == site)?["roles"]
        .as_array()?
        .iter()
        .find(|r| r["server"] == server)
        .map(|r| {
            (
                r["state"].as_str().unwrap_or_default().to_string(),
                r.to_string(),
            )
        })
}

#[tokio::test]
async fn the_procedure_from_site_file_to_active_sups() {
    let s = stack(&[]);
    let file = site_file(PROCEDURE);
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
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "apply --wait failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("cen-sup01.corp.example.com") && stdout.contains("-> active"),
        "progress lines:\n{stdout}"
    );
    assert!(stdout.contains("every role reached its declared state"));

    // Every SUP of the native-mode site requires SSL: probed as WSUS serves it (web services over
    // HTTPS on the SSL port, the certificate's name checked), each stays healthy. The declared
    // ports are the emulator's through the health service's port map.
    let (_health, _) = crate::health::start_health_with(
        s.nats.url(),
        &s.emulator.ca,
        &format!(
            "[port_map]\n\"8530\" = {}\n\"8531\" = {}\n",
            s.emulator.http, s.emulator.https
        ),
    );
    wait_status(&s.coordinator.endpoint, "the SSL SUPs healthy", |st| {
        [
            "cen-sup01.corp.example.com",
            "cen-sup02.corp.example.com",
            "cen-inet01.corp.example.com",
        ]
        .iter()
        .all(|server| {
            role_state(st, "CEN", server).is_some_and(|(_, r)| r.contains("\"health\":\"healthy\""))
        })
    })
    .await;

    let status = wait_status(&s.coordinator.endpoint, "declared states", |_| true).await;
    let cen = status["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|x| x["code"] == "CEN")
        .expect("CEN")
        .clone();
    assert_eq!(
        cen["active"]["intranet"]["target"],
        "cen-sup01.corp.example.com"
    );
    assert_eq!(
        cen["active"]["internet"]["target"],
        "cen-inet01.corp.example.com"
    );
    assert!(cen["active"]["intranet"]["epoch"].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        role_state(&status, "CEN", "cen-sup02.corp.example.com")
            .map(|r| r.0)
            .as_deref(),
        Some("ready")
    );
    let ch1 = status["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|x| x["code"] == "CH1")
        .expect("CH1")
        .clone();
    assert_eq!(
        ch1["active"]["intranet"]["target"],
        "supnlb.corp.example.com"
    );
    assert_eq!(ch1["active"]["intranet"]["nlb"], true);
    for n in ["n1.corp.example.com", "n2.corp.example.com"] {
        let (state, json) = role_state(&status, "CH1", n).expect("node");
        assert_eq!(state, "active", "{json}");
        assert!(json.contains("\"slot\":\"intranet\""), "{json}");
    }

    // The milestones the procedure names, in order, before the role became active.
    let bus = bus(&s.nats).await;
    let events = all_events(&bus).await;
    let position =
        |pred: &dyn Fn(&sup_proto::v1::Event) -> bool| events.iter().position(|(_, e)| pred(e));
    let milestone = |name: &'static str| {
        move |e: &sup_proto::v1::Event| {
            e.server == "cen-sup01.corp.example.com"
                && matches!(&e.payload, Some(Payload::Milestone(m)) if m.name == name)
        }
    };
    let started = position(&milestone("role_install_started")).expect("setup started");
    let installed =
        position(&milestone("role_install_succeeded")).expect("Installation was successful");
    let healthy = position(&milestone("wsus_components_healthy")).expect("no unhealthy components");
    let db = position(&milestone("wsus_database_ok")).expect("database checked");
    let active = position(&|e| {
        e.server == "cen-sup01.corp.example.com"
            && matches!(&e.payload, Some(Payload::RoleStateChanged(r)) if r.to == sup_proto::v1::RoleState::Active as i32)
    })
    .expect("became active");
    assert!(
        started < installed && installed < active && healthy < active && db < active,
        "order: {started} {installed} {healthy} {db} {active}"
    );
    // The coordinator re-pointed the child at the parent's active SUP.
    assert!(events.iter().any(|(_, e)| e.site == "CH1"
        && matches!(&e.payload, Some(Payload::ComponentConfigured(c)) if c.upstream_server == "cen-sup01.corp.example.com")));

    // Negative cases: no WSUS, a failing setup, an unreachable agent. Each fails with a reason;
    // the other roles carry on.
    for (server, fault) in [
        ("nowsus.corp.example.com", "no-wsus"),
        ("broken.corp.example.com", "install-fails"),
    ] {
        let out = std::process::Command::new(sup_testkit::binary("wsus-emulator").expect("bin"))
            .args([
                "ctl",
                "--control",
                &s.emulator.control,
                "fault",
                server,
                fault,
            ])
            .output()
            .expect("ctl");
        assert!(out.status.success());
    }
    let mut more = PROCEDURE.replacen("[[site]]\ncode = \"CH1\"", "", 1);
    let extra = ["nowsus.corp.example.com", "broken.corp.example.com", "dead.corp.example.com"]
        .iter()
        .map(|s| format!("[[site.site_system]]\nserver = \"{s}\"\n[[site.software_update_point]]\nserver = \"{s}\"\nhttp_port = 8530\nhttps_port = 8531\nssl = true\n"))
        .collect::<String>();
    more = more.replacen("\n\nname = \"Child one\"", "", 1);
    let cut = more
        .find("parent = \"CEN\"")
        .map(|i| more[..i].rfind("\n\n").unwrap_or(i))
        .unwrap_or(more.len());
    let negative = format!("{}\n{extra}", &more[..cut]);
    apply_sites(&s.coordinator.endpoint, &negative);
    let status = wait_status(&s.coordinator.endpoint, "three failed roles", |st| {
        [
            "nowsus.corp.example.com",
            "broken.corp.example.com",
            "dead.corp.example.com",
        ]
        .iter()
        .all(|srv| role_state(st, "CEN", srv).is_some_and(|r| r.0 == "failed"))
    })
    .await;
    let reason = |server: &str| {
        let out = supctl(&s.coordinator.endpoint, &["status", "--site", "CEN"]);
        let t = text(&out.stdout);
        t.lines()
            .find(|l| l.contains(server))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        reason("nowsus.corp.example.com").contains("WSUS 3.0 is not installed"),
        "{}",
        reason("nowsus")
    );
    assert!(
        reason("broken.corp.example.com").contains("setup failed"),
        "{}",
        reason("broken")
    );
    assert!(
        reason("dead.corp.example.com").contains("unreachable"),
        "{}",
        reason("dead")
    );
    assert_eq!(
        role_state(&status, "CEN", "cen-sup01.corp.example.com")
            .map(|r| r.0)
            .as_deref(),
        Some("active")
    );
    assert_eq!(
        role_state(&status, "CEN", "cen-inet01.corp.example.com")
            .map(|r| r.0)
            .as_deref(),
        Some("active")
    );
    drop(s.provisioner);
    let _ = s.dir;
}

#[tokio::test]
async fn a_provisioner_killed_mid_install_finishes_it_exactly_once() {
    let mut s = stack(&["--step-ms", "400"]);
    let file = site_file(
        "[[site]]\ncode = \"ONE\"\n[[site.site_system]]\nserver = \"only.corp.example.com\"\n[[site.software_update_point]]\nserver = \"only.corp.example.com\"\nhttp_port = 8530\nhttps_port = 8531\nactive = \"intranet\"\n",
    );
    assert!(
        supctl(
            &s.coordinator.endpoint,
            &["apply", "-f", file.path().to_str().expect("path")]
        )
        .status
        .success()
    );
    // Kill the provisioner as soon as the install is under way, then start another.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = wait_status(&s.coordinator.endpoint, "status", |_| true).await;
        if role_state(&st, "ONE", "only.corp.example.com").is_some_and(|r| r.0 != "declared") {
            break;
        }
        assert!(Instant::now() < deadline, "install never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.provisioner.kill();
    s.provisioner = start_provisioner(&s.nats, &s.emulator);
    wait_status(&s.coordinator.endpoint, "the role active", |st| {
        role_state(st, "ONE", "only.corp.example.com").is_some_and(|r| r.0 == "active")
    })
    .await;
    let out = std::process::Command::new(sup_testkit::binary("wsus-emulator").expect("bin"))
        .args(["ctl", "--control", &s.emulator.control, "list"])
        .output()
        .expect("ctl");
    let servers: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let only = servers
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["name"] == "only.corp.example.com")
        .expect("server");
    assert_eq!(only["installs"], 1, "the agent ran setup once: {only}");
}
