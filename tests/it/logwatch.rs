//! sup-logwatch as a real process: rotation without loss across restarts, milestones exactly
//! once, and the offline `parse --json` contract.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sup_proto::v1::event::Payload;
use sup_testkit::{NatsServer, Process, free_port};

use crate::support::*;

const SERVER: &str = "s1.corp.example.com";
const MARKER: &str = "<MAXIMUM LOG FILE SIZE REACHED - FILE RENAMED>";

fn start_logwatch(nats: &NatsServer, folder: &Path, publish_lines: bool) -> Process {
    start_logwatch_on(nats, folder, publish_lines, "WCM.log")
}

/// A watcher of one log of `folder`, configured with no time-zone bias.
fn start_logwatch_on(nats: &NatsServer, folder: &Path, publish_lines: bool, log: &str) -> Process {
    let admin = free_port().expect("port");
    let config = folder
        .parent()
        .expect("parent")
        .join(format!("logwatch-{admin}.toml"));
    fs::write(
        &config,
        format!(
            "discover = false\npoll_interval_ms = 50\npublish_lines = {publish_lines}\nadmin_listen = \"127.0.0.1:{admin}\"\n[[watch]]\nsite = \"CEN\"\nserver = \"{SERVER}\"\nfolder = \"{}\"\nlogs = [\"{log}\"]\n[nats]\nurl = \"{}\"\n",
            folder.display(),
            nats.url()
        ),
    )
    .expect("config");
    let mut p = Process::start(
        "sup-logwatch",
        &["run", "--config", config.to_str().expect("path")],
        &[],
    )
    .expect("start");
    p.wait_port(admin, Duration::from_secs(30))
        .expect("logwatch up");
    p
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("write");
}

fn sms(msg: &str) -> String {
    format!(
        "{msg}  $$<SMS_WSUS_CONFIGURATION_MANAGER><11-26-2026 17:09:33.123+480><thread=3404 (0xD4C)>\r\n"
    )
}

/// Every log record on the bus for the watched file, in stream order.
async fn logged_messages(nats: &NatsServer, expect: usize) -> Vec<String> {
    let inspector = sup_testkit::jetstream::Inspector::connect(nats.url())
        .await
        .expect("inspector");
    let subject = sup_bus::subjects::log_line("CEN", SERVER, "WCM.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out: Vec<String> = inspector
            .stored(sup_bus::setup::LOGS_STREAM, Some(&subject))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json record");
                v["message"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        if out.len() >= expect || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rotation_and_restarts_lose_and_repeat_nothing() {
    rotations_and_restarts(true).await;
}

/// Without published lines the watcher reads only the lines that can hold a milestone; the
/// milestones are the same, exactly once.
#[tokio::test]
async fn milestones_only_lose_and_repeat_nothing_either() {
    rotations_and_restarts(false).await;
}

async fn rotations_and_restarts(publish_lines: bool) {
    let nats = NatsServer::start().expect("nats-server");
    let root = tempfile::tempdir().expect("dir");
    let folder = root.path().join(SERVER).join("Logs");
    fs::create_dir_all(&folder).expect("mkdir");
    let log = folder.join("WCM.log");
    let rotated = folder.join("WCM.lo_");
    let mut watcher = start_logwatch(&nats, &folder, publish_lines);

    let mut written = Vec::new();
    let mut n = 0;
    for round in 0..24 {
        for _ in 0..40 {
            n += 1;
            let msg = if n % 97 == 0 {
                format!(
                    "There are no unhealthy WSUS Server components on WSUS Server {SERVER} (check {n})"
                )
            } else {
                format!("line {n} of the test writer")
            };
            append(&log, &sms(&msg));
            written.push(msg);
        }
        if round % 3 == 2 {
            append(&log, &format!("{MARKER}\r\n"));
            if round % 2 == 0 {
                fs::copy(&log, &rotated).expect("copy");
                fs::write(&log, b"").expect("truncate");
            } else {
                fs::rename(&log, &rotated).expect("rename");
            }
        }
        if round % 7 == 3 {
            // A crash: the watcher is killed mid-stream and started again.
            watcher.kill();
            n += 1;
            let msg = format!("line {n} written while the watcher was down");
            append(&log, &sms(&msg));
            written.push(msg);
            watcher = start_logwatch(&nats, &folder, publish_lines);
        }
        // Let the watcher see each rotation before the next one (ConfigMgr keeps one .lo_).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let bus = bus(&nats).await;
    if publish_lines {
        let seen: Vec<String> = logged_messages(&nats, written.len() + 8)
            .await
            .into_iter()
            .filter(|m| m != MARKER)
            .collect();
        assert_eq!(
            seen.len(),
            written.len(),
            "every line exactly once:\n{}",
            watcher.log()
        );
        assert_eq!(seen, written, "in order");
    } else {
        // The last line's milestone is in once the watcher has caught up.
        wait_for_milestones(
            &bus,
            written
                .iter()
                .filter(|w| w.starts_with("There are no"))
                .count(),
        )
        .await;
        assert!(
            logged_messages(&nats, 0).await.is_empty(),
            "no lines published"
        );
    }

    // Milestones: one event per milestone line, never repeated by the restarts.
    let events = all_events(&bus).await;
    let healthy: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match &e.payload {
            Some(Payload::Milestone(m)) if m.name == "wsus_components_healthy" => {
                Some((e.server.clone(), m.log.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        healthy.len(),
        written
            .iter()
            .filter(|w| w.starts_with("There are no unhealthy"))
            .count()
    );
    assert!(
        healthy.iter().all(|(s, l)| s == SERVER && l == "WCM.log"),
        "{healthy:?}"
    );
}

/// SUPSetup.log's stamps carry no zone and the watcher is given none: it reads the server's
/// bias from the log's last write, so the setup start has its true time (UTC−5 here).
#[tokio::test]
async fn a_setup_start_gets_its_time_from_the_logs_last_write() {
    let nats = NatsServer::start().expect("nats-server");
    let root = tempfile::tempdir().expect("dir");
    let folder = root.path().join(SERVER).join("Logs");
    fs::create_dir_all(&folder).expect("mkdir");
    let bias = chrono::Duration::minutes(300);
    let local = chrono::Utc::now().naive_utc() - bias;
    let stamp = local.format("<%m/%d/%y %H:%M:%S>");
    append(
        &folder.join("SUPSetup.log"),
        &format!(
            "{stamp} ====================================================================\r\n{stamp} SMSWSUS Setup Started....\r\n"
        ),
    );
    let watcher = start_logwatch_on(&nats, &folder, false, "SUPSetup.log");
    let bus = bus(&nats).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let found = all_events(&bus)
            .await
            .into_iter()
            .find_map(|(_, e)| match e.payload {
                Some(Payload::Milestone(m)) if m.name == "role_install_started" => Some(m),
                _ => None,
            });
        if let Some(m) = found {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no setup start:\n{}",
            watcher.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected = (local.and_utc() + bias).timestamp();
    assert_eq!(
        started.line_time.map(|t| t.seconds),
        Some(expected),
        "{}",
        watcher.log()
    );
}

/// Waits (up to a minute) until `n` components-healthy milestones are stored.
async fn wait_for_milestones(bus: &sup_bus::Bus, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let got = all_events(bus)
            .await
            .iter()
            .filter(|(_, e)| matches!(&e.payload, Some(Payload::Milestone(m)) if m.name == "wsus_components_healthy"))
            .count();
        if got >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn parse_json_is_the_contract() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("SUPSetup.log");
    fs::write(
        &file,
        "<02/09/14 22:53:28> SMSWSUS Setup Started....\r\n<02/09/14 22:53:44> Installation was successful.\r\n<02/09/14 22:53:44> ~RoleSetup().\r\n",
    )
    .expect("write");
    let wcm = dir.path().join("WCM.log");
    fs::write(
        &wcm,
        sms("Successfully connected to server: CE1SITE.CONTOSO.COM, port: 8530, useSSL: False"),
    )
    .expect("write");
    let out = Command::new(sup_testkit::binary("sup-logwatch").expect("binary"))
        .args(["parse", "--json", "--tz-bias", "-60"])
        .arg(&file)
        .arg(&wcm)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(records.len(), 4);
    let ok = &records[1];
    assert_eq!(ok["line"], 2);
    assert_eq!(ok["format"], "rolesetup");
    assert_eq!(ok["milestone"], "role_install_succeeded");
    assert_eq!(ok["time_local"], "2014-02-09T22:53:44.000");
    // -60 is UTC+1: 22:53 local is 21:53 UTC.
    assert_eq!(ok["time_utc"], "2014-02-09T21:53:44.000Z");
    assert!(ok["component"].is_null() && ok["thread"].is_null());
    let c = &records[3];
    assert_eq!(c["format"], "sms");
    assert_eq!(c["milestone"], "wsus_connected");
    assert_eq!(c["server"], "CE1SITE.CONTOSO.COM");
    assert_eq!(c["port"], "8530");
    assert_eq!(c["component"], "SMS_WSUS_CONFIGURATION_MANAGER");
    assert_eq!(c["thread"], 3404);
    assert_eq!(c["time_utc"], "2026-11-27T01:09:33.123Z");
    for key in [
        "file",
        "line",
        "format",
        "time_utc",
        "time_local",
        "component",
        "thread",
        "message",
        "milestone",
    ] {
        assert!(
            records.iter().all(|r| r.get(key).is_some()),
            "every record has {key}"
        );
    }
}
