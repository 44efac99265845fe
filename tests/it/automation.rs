//! The public event API as an automation sees it: a NATS client written elsewhere (Python's
//! nats-py, from `.tools/`) connected as the sample `automation` user follows the CloudEvents of
//! an `auto` site's failover, is refused when it publishes a command or writes a KV bucket, and
//! replays both event streams from the start: every event, in order, with no gap.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sup_testkit::{NatsServer, Process, free_port};

use crate::emulator::start_emulator;
use crate::support::*;

const USERS: [&str; 6] = [
    "coordinator",
    "provisioner",
    "logwatch",
    "health",
    "scheduler",
    "automation",
];

fn password(user: &str) -> String {
    format!("test-nats-password-{user}")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python that `make tools` made, with nats-py in it.
fn python() -> PathBuf {
    std::env::var_os("SUP_TOOLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/bin/python3"))
}

/// A nats-server with JetStream and the sample permissions, every user's password planted.
fn nats() -> NatsServer {
    let permissions = std::fs::read_to_string(root().join("deploy/nats/permissions.conf"))
        .expect("deploy/nats/permissions.conf");
    let passwords: Vec<(String, String)> = USERS
        .iter()
        .map(|u| {
            (
                format!("SUP_NATS_{}_PASSWORD", u.to_ascii_uppercase()),
                password(u),
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = passwords
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    NatsServer::start_with_config(
        "include \"permissions.conf\"\n",
        &[("permissions.conf", &permissions)],
        &env,
        false,
    )
    .expect("nats-server with permissions")
}

/// Starts a service as its own NATS user, from `config` plus its `[nats]` table.
fn service(
    nats: &NatsServer,
    dir: &Path,
    name: &str,
    user: &str,
    args: &[&str],
    config: &str,
    admin: u16,
) -> Process {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "{config}\n[nats]\nurl = \"{}\"\nuser = \"{user}\"\npassword_env = \"SUP_TEST_NATS_PASSWORD\"\n",
            nats.url()
        ),
    )
    .expect("config");
    let mut all = args.to_vec();
    all.extend(["--config", file.to_str().expect("path")]);
    let mut p =
        Process::start(name, &all, &[("SUP_TEST_NATS_PASSWORD", password(user))]).expect("start");
    p.admin_port = Some(admin);
    wait_ready(&mut p, admin);
    p
}

/// The example consumer, as the automation user; its stdout lines arrive on the channel.
fn consumer(nats: &NatsServer, args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(python())
        .arg(root().join("examples/automation/on_active_changed.py"))
        .args(["--url", nats.url(), "--user", "automation"])
        .args(["--password-env", "SUP_TEST_AUTOMATION_PASSWORD"])
        .args(args)
        .env("SUP_TEST_AUTOMATION_PASSWORD", password("automation"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (make tools installs nats-py there): {e}",
                python().display()
            )
        });
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn next_json(rx: &mpsc::Receiver<String>, what: &str) -> serde_json::Value {
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
}

#[tokio::test]
async fn an_automation_follows_a_failover_and_replays_every_event() {
    let nats = nats();
    let dir = tempfile::tempdir().expect("dir");
    let (http, https) = (free_port().expect("port"), free_port().expect("port"));
    let (http_l, https_l, ports) = (
        format!("127.0.0.1:{http}"),
        format!("127.0.0.1:{https}"),
        format!("{http},{https}"),
    );
    let emu = start_emulator(&[
        "--http",
        &http_l,
        "--https",
        &https_l,
        "--default-ports",
        &ports,
    ]);
    let (grpc, admin) = (free_port().expect("port"), free_port().expect("port"));
    let _coordinator = service(
        &nats,
        dir.path(),
        "sup-coordinator",
        "coordinator",
        &[],
        &format!(
            "listen = \"127.0.0.1:{grpc}\"\nadmin_listen = \"127.0.0.1:{admin}\"\nreconcile_interval_secs = 1\nfailover_after_secs = 1\n"
        ),
        admin,
    );
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let admin = free_port().expect("port");
    let _provisioner = service(
        &nats,
        dir.path(),
        "sup-provisioner",
        "provisioner",
        &[],
        &format!(
            "admin_listen = \"127.0.0.1:{admin}\"\ninstall_timeout_secs = 60\n[agents]\n\"*\" = \"{}\"\n",
            emu.agent
        ),
        admin,
    );
    let admin = free_port().expect("port");
    let _logwatch = service(
        &nats,
        dir.path(),
        "sup-logwatch",
        "logwatch",
        &["run"],
        &format!(
            "admin_listen = \"127.0.0.1:{admin}\"\npoll_interval_ms = 100\ndiscover_interval_secs = 1\nroot = \"{}\"\n",
            emu.logs.display()
        ),
        admin,
    );
    let (health_grpc, admin) = (free_port().expect("port"), free_port().expect("port"));
    let _health = service(
        &nats,
        dir.path(),
        "sup-health",
        "health",
        &[],
        &format!(
            "listen = \"127.0.0.1:{health_grpc}\"\nadmin_listen = \"127.0.0.1:{admin}\"\ninterval_ms = 300\ntimeout_ms = 500\nmilestone_max_age_secs = 30\nca_file = \"{}\"\n[resolve]\n\"*\" = \"127.0.0.1\"\n",
            emu.ca.display()
        ),
        admin,
    );

    crate::health::apply_auto_site(&endpoint, http, https);
    let before = wait_status(&endpoint, "a2 ready and healthy", |st| {
        st["sites"][0]["roles"].as_array().is_some_and(|rs| {
            rs.iter().any(|r| {
                r["server"] == "a2.corp.example.com"
                    && r["state"] == "ready"
                    && r["health"] == "healthy"
            })
        })
    })
    .await;
    let old_epoch = before["sites"][0]["active"]["intranet"]["epoch"]
        .as_u64()
        .expect("epoch");

    // The on-call hook: a durable consumer of sup.ce.*.active_changed.
    let (mut follower, lines) = consumer(&nats, &["--until", "a2.corp.example.com", "follow"]);
    assert_eq!(next_json(&lines, "the consumer")["ready"], true);
    let out = Command::new(sup_testkit::binary("wsus-emulator").expect("binary"))
        .args([
            "ctl",
            "--control",
            &emu.control,
            "fault",
            "a1.corp.example.com",
            "down",
        ])
        .output()
        .expect("ctl");
    assert!(out.status.success());
    let seen = loop {
        let line = next_json(&lines, "the failover's CloudEvent");
        let ce = line["cloudevent"].clone();
        if ce["data"]["active_changed"]["target"] == "a2.corp.example.com" {
            assert_eq!(
                line["content_type"],
                sup_proto::cloudevent::CONTENT_TYPE,
                "{line}"
            );
            break ce;
        }
    };
    assert_eq!(seen["specversion"], "1.0");
    assert_eq!(seen["type"], "sup.active.changed");
    assert_eq!(seen["subject"], "AUT");
    assert_eq!(seen["source"], "/sup/sites/AUT");
    assert_eq!(
        seen["data"]["active_changed"]["previous"],
        "a1.corp.example.com"
    );
    assert!(
        seen["data"]["epoch"].as_u64().expect("epoch") > old_epoch,
        "a newer epoch: {seen}"
    );
    assert!(
        seen["data"]["active_changed"]["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("failover")),
        "{seen}"
    );
    assert!(
        seen["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with("00-")),
        "{seen}"
    );
    assert!(follower.wait().expect("follower").success());

    // What the automation account may not do.
    let (mut refusals, lines) = consumer(&nats, &["--site", "AUT", "refusals"]);
    for subject in [
        "sup.cmd.provisioner.AUT",
        "$KV.sup_active.AUT.intranet",
        "$JS.API.CONSUMER.MSG.NEXT.SUP_EVENTS.coordinator-events",
    ] {
        let r = next_json(&lines, subject);
        assert_eq!(r["subject"], subject);
        assert_eq!(r["refused"], true, "{r}");
        assert!(
            r["server"].as_array().is_some_and(|s| s.iter().any(|m| m
                .as_str()
                .is_some_and(|m| m.to_ascii_lowercase().contains("permissions violation")))),
            "the server says why: {r}"
        );
    }
    assert!(refusals.wait().expect("refusals").success());

    // Replayed from the start with a durable consumer: every event, in order, no gap.
    let (mut replay, lines) = consumer(&nats, &["--durable", "audit", "replay"]);
    let r = next_json(&lines, "the replay");
    assert!(replay.wait().expect("replay").success(), "{r}");
    assert_eq!(r["read"], r["stored"], "{r}");
    assert_eq!(r["no_gap"], true, "{r}");
    assert_eq!(r["same_order"], true, "the protobuf stream's order: {r}");
    assert_eq!(r["sites"], serde_json::json!(["AUT"]), "{r}");
    let ids: Vec<&str> = r["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|i| i.as_str())
        .collect();
    assert!(ids.len() > 10, "{r}");
    assert_eq!(ids[0], "site:AUT:1", "the apply comes first: {r}");
    let failover = ids
        .iter()
        .position(|i| *i == seen["id"])
        .expect("the failover is in the history");
    let activation = ids
        .iter()
        .position(|i| i.starts_with("active:AUT:intranet:"))
        .expect("the first activation");
    assert!(activation < failover, "in order: {r}");
    // A second replay starts from the start again (the first one removed its consumer).
    let (mut again, lines) = consumer(&nats, &["--durable", "audit", "replay"]);
    let r2 = next_json(&lines, "the second replay");
    assert!(again.wait().expect("replay").success(), "{r2}");
    assert!(r2["read"].as_u64() >= r["read"].as_u64(), "{r2}");
}
