//! The emulated SMS Provider from the far side of the wire: pypsrp (a WinRM client no one here
//! wrote) authenticates with NTLM, seals every message over HTTP (or relies on TLS over HTTPS),
//! enumerates with WQL and Pull, creates, gets and puts control file rows in a session and
//! commits; the commit installs the role and configures it, as ConfigMgr's components would.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sup_testkit::free_port;

use crate::emulator::{Emulator, start_emulator_with_env};

pub const PROVIDER_USER: &str = "LAB\\sup-provider";
pub const PROVIDER_PASSWORD: &str = "lab-provider-Passw0rd";
const SITE_SERVER: &str = "cen-site.corp.example.com";

fn python() -> PathBuf {
    std::env::var_os("SUP_TOOLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../.tools/bin/python3"
            ))
        })
}

/// An emulator serving site CEN's SMS Provider on WinRM HTTP and HTTPS.
pub fn start_provider() -> (Emulator, u16, u16) {
    let (http, https) = (free_port().expect("port"), free_port().expect("port"));
    let mut emu = start_emulator_with_env(
        &[
            "--site-server",
            &format!("CEN={SITE_SERVER}"),
            "--provider-http",
            &format!("127.0.0.1:{http}"),
            "--provider-https",
            &format!("127.0.0.1:{https}"),
        ],
        &[("WSUS_EMULATOR_PROVIDER_PASSWORD", PROVIDER_PASSWORD.into())],
    );
    emu._process
        .wait_port(https, Duration::from_secs(30))
        .expect("provider up");
    (emu, http, https)
}

fn pypsrp(port: u16, password: &str, sup: &str, ssl: Option<&PathBuf>) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/it/pypsrp_provider.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .arg(port.to_string())
        .arg(PROVIDER_USER)
        .arg(password)
        .arg("CEN")
        .arg(sup);
    if let Some(ca) = ssl {
        cmd.arg("--ssl").arg(ca);
    }
    let out = cmd.output().expect("python");
    assert!(
        out.status.success(),
        "pypsrp client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pypsrp client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `wsus-emulator ctl ARGS`, which must succeed; its output.
fn ctl(emu: &Emulator, args: &[&str]) -> String {
    let out = crate::emulator::ctl(emu, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_session(seen: &serde_json::Value) {
    assert_eq!(
        seen["components"],
        serde_json::json!(["SMS_WSUS_CONFIGURATION_MANAGER", "SMS_WSUS_SYNC_MANAGER"])
    );
    // MaxElements 1: the second component came by Pull.
    assert_eq!(seen["pulls"], 1);
    assert!(seen["handle"].as_str().is_some_and(|h| h.starts_with('{')));
    assert_eq!(
        seen["row_props"],
        serde_json::json!(["SSLWSUS", "WSUSIISPort", "WSUSIISSSLPort"])
    );
    assert_ne!(seen["wrong_site_commit"], "accepted");
    assert_eq!(seen["commit"], "0");
}

#[test]
fn pypsrp_edits_and_commits_a_site_control_file_over_sealed_http_and_https() {
    let (emu, http, https) = start_provider();
    let seen = pypsrp(http, PROVIDER_PASSWORD, "cen-sup1.corp.example.com", None);
    check_session(&seen);
    let journal: serde_json::Value =
        serde_json::from_str(&ctl(&emu, &["provider-journal"])).expect("journal");
    assert_eq!(journal[0]["site"], "CEN");
    assert_eq!(journal[0]["default_wsus"], "cen-sup1.corp.example.com");
    assert_eq!(journal[0]["accepted"], true);
    // The commit installed the role (SUPSetup.log on the SUP) and WCM configured it (WCM.log on
    // the site server).
    wait_for("setup and WCM after the commit", || {
        let setup = std::fs::read_to_string(
            emu.logs
                .join("cen-sup1.corp.example.com")
                .join("Logs")
                .join("SUPSetup.log"),
        )
        .unwrap_or_default();
        let wcm = std::fs::read_to_string(emu.logs.join(SITE_SERVER).join("Logs").join("WCM.log"))
            .unwrap_or_default();
        setup.contains("Installation was successful.")
            && wcm.contains("Setting new configuration state to 2 (WSUS_CONFIG_SUCCESS)")
    });

    let seen = pypsrp(
        https,
        PROVIDER_PASSWORD,
        "cen-sup2.corp.example.com",
        Some(&emu.ca),
    );
    check_session(&seen);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ctl(&emu, &["provider-journal"]))
            .expect("journal")
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn a_wrong_password_is_refused_and_an_unsealed_message_too() {
    let (emu, http, _) = start_provider();
    let seen = pypsrp(http, "not-the-password", "cen-sup1.corp.example.com", None);
    assert!(seen["refused"].is_string(), "{seen}");
    // A message without WinRM's sealing, even with no credentials at all, gets only a challenge.
    let body =
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body/></s:Envelope>";
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect");
    write!(
        tcp,
        "POST /wsman HTTP/1.1\r\nHost: {SITE_SERVER}\r\nContent-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("www-authenticate: Negotiate"), "{answer}");
    let journal: serde_json::Value =
        serde_json::from_str(&ctl(&emu, &["provider-journal"])).expect("journal");
    assert_eq!(journal, serde_json::json!([]));
}

/// `supctl apply` of a site file's text, which must succeed.
fn apply(endpoint: &str, site_file_text: &str) -> std::process::Output {
    let file = crate::support::site_file(site_file_text);
    let out = crate::support::supctl(
        endpoint,
        &["apply", "-f", file.path().to_str().expect("path")],
    );
    assert!(
        out.status.success(),
        "{}{}",
        crate::support::text(&out.stdout),
        crate::support::text(&out.stderr)
    );
    out
}

/// The provisioner's config for reaching every site of the example through its SMS Provider,
/// with no site-system agent anywhere (the agent endpoint is a closed port).
fn provider_config(admin: u16, nats: &str, provider_port: u16) -> String {
    let dead = free_port().expect("port");
    let mut c = format!(
        "admin_listen = \"127.0.0.1:{admin}\"\nagent_endpoint = \"http://127.0.0.1:{dead}\"\nmax_attempts = 3\nretry_base_ms = 200\ninstall_timeout_secs = 120\ndrift_interval_secs = 1\n[nats]\nurl = \"{nats}\"\n"
    );
    for (site, server) in [
        ("CEN", "cen-site.corp.example.com"),
        ("CH1", "ch1-site.corp.example.com"),
        ("CH2", "ch2-site.corp.example.com"),
    ] {
        c.push_str(&format!(
            "[providers.{site}]\nurl = \"http://{server}:5985/wsman\"\nuser = 'LAB\\sup-provider'\npassword_env = \"SMS_PROVIDER_PASSWORD\"\nconnect_to = \"127.0.0.1:{provider_port}\"\n"
        ));
    }
    c
}

#[tokio::test]
async fn the_example_hierarchy_is_provisioned_and_synchronized_through_the_sms_provider_only() {
    use crate::support::*;
    let nats = sup_testkit::NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("dir");
    let coordinator = coordinator(&nats);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/site.toml");
    // The example's web sites (CH2's on 80/443, moved up) on a loopback address of this
    // process's own, so their fixed ports meet no other test's, nor another run's.
    let pid = std::process::id();
    let listen_ip = format!("127.3.{}.{}", (pid >> 8) & 0xff, pid & 0xff);
    let listen_ip = listen_ip.as_str();
    let offset = "20000";
    let provider_port = free_port().expect("port");
    let mut emu = crate::emulator::start_emulator_with_env(
        &[
            "--site-file",
            example,
            "--listen-ip",
            listen_ip,
            "--low-port-offset",
            offset,
            "--provider-http",
            &format!("127.0.0.1:{provider_port}"),
        ],
        &[("WSUS_EMULATOR_PROVIDER_PASSWORD", PROVIDER_PASSWORD.into())],
    );
    emu._process
        .wait_port(provider_port, Duration::from_secs(30))
        .expect("provider up");

    let admin = free_port().expect("port");
    let config = dir.path().join("provisioner.toml");
    std::fs::write(&config, provider_config(admin, nats.url(), provider_port)).expect("config");
    let mut provisioner = sup_testkit::Process::start(
        "sup-provisioner",
        &["--config", config.to_str().expect("path")],
        &[
            ("SMS_PROVIDER_PASSWORD", PROVIDER_PASSWORD.into()),
            ("SUP_INSTALL_PW", "install-account-password".into()),
        ],
    )
    .expect("provisioner");
    provisioner
        .wait_port(admin, Duration::from_secs(30))
        .expect("provisioner up");
    let _logwatch = crate::procedure::start_logwatch(&nats, &emu);
    let (_scheduler, sched) = crate::scheduler::start_scheduler(nats.url());

    let out = supctl(
        &coordinator.endpoint,
        &["apply", "-f", example, "--wait", "--timeout", "120s"],
    );
    assert!(
        out.status.success(),
        "apply --wait through the SMS Provider failed:\n{}\n{}\nprovisioner:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        provisioner.log()
    );
    // Every site's control file names its active SUP, committed through the provider. The
    // component is configured once the slot is active, which is where `apply --wait` returns:
    // the commit may follow it by a moment.
    let expected = [
        ("CEN", "cen-sup01.corp.example.com"),
        ("CH1", "ch1-nlb-n1.corp.example.com"),
        ("CH2", "ch2-sup01.corp.example.com"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let journal: serde_json::Value =
            serde_json::from_str(&ctl(&emu, &["provider-journal"])).expect("journal");
        let commits_of = |site: &str| -> Vec<serde_json::Value> {
            journal
                .as_array()
                .expect("array")
                .iter()
                .filter(|c| c["site"] == site)
                .cloned()
                .collect()
        };
        for (site, _) in expected {
            let commits = commits_of(site);
            assert!(
                commits.iter().all(|c| c["accepted"] == true),
                "{site}: {commits:?}"
            );
        }
        let missing: Vec<(&str, Vec<serde_json::Value>)> = expected
            .iter()
            .filter(|(site, active)| {
                !commits_of(site)
                    .iter()
                    .any(|c| c["default_wsus"] == *active)
            })
            .map(|(site, _)| (*site, commits_of(site)))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "DefaultWSUS never became the active SUP: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Import every site from its provider: re-applied, the file changes nothing.
    let mut imported = String::new();
    for (site, server) in [
        ("CEN", "cen-site.corp.example.com"),
        ("CH1", "ch1-site.corp.example.com"),
        ("CH2", "ch2-site.corp.example.com"),
    ] {
        let out = Command::new(sup_testkit::binary("supctl").expect("supctl"))
            .env("SUP_COORDINATOR", &coordinator.endpoint)
            .env("SMS_PROVIDER_PASSWORD", PROVIDER_PASSWORD)
            .args([
                "import",
                "--provider",
                &format!("http://{server}:5985/wsman"),
                "--site",
                site,
                "--user",
                PROVIDER_USER,
                "--connect-to",
                &format!("127.0.0.1:{provider_port}"),
            ])
            .output()
            .expect("supctl import");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "import {site}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        imported.push_str(&text(&out.stdout));
    }
    let out = apply(&coordinator.endpoint, &imported);
    for site in ["CEN", "CH1", "CH2"] {
        assert!(
            text(&out.stdout).contains(&format!("site {site}: no changes")),
            "the imported file changes {site}:\n{}\n--- imported:\n{imported}",
            text(&out.stdout)
        );
    }

    // Drift: none while the control files match; a setting changed behind the system's back in
    // the provider is reported by path, declared and live value; with drift = "correct" it is
    // undone.
    let status = wait_status(&coordinator.endpoint, "drift read and empty", |st| {
        st["sites"].as_array().is_some_and(|sites| {
            sites.len() == 3 && sites.iter().all(|s| s["drift"] == serde_json::json!([]))
        })
    })
    .await;
    assert!(status["sites"].is_array());
    ctl(
        &emu,
        &[
            "provider-set",
            "CEN",
            "SMS_WSUS_CONFIGURATION_MANAGER",
            "ClientReportingLevel",
            "value",
            "2",
        ],
    );
    let expected = serde_json::json!([{
        "path": "software_updates.reporting_events",
        "declared": "none",
        "live": "all"
    }]);
    let cen_drift = |st: &serde_json::Value| {
        st["sites"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["code"] == "CEN"))
            .map(|s| s["drift"].clone())
            .unwrap_or_default()
    };
    wait_status(&coordinator.endpoint, "the drift reported", |st| {
        cen_drift(st) == expected
    })
    .await;
    let events = supctl(
        &coordinator.endpoint,
        &["events", "--site", "CEN", "-o", "json"],
    );
    assert!(
        text(&events.stdout).contains("\"drift_detected\"")
            && text(&events.stdout).contains("software_updates.reporting_events"),
        "{}",
        text(&events.stdout)
    );
    // Only reported: a second reading still finds it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = wait_status(&coordinator.endpoint, "status", |_| true).await;
    assert_eq!(cen_drift(&st), expected);
    let correcting = std::fs::read_to_string(example).expect("example").replacen(
        "failover = \"auto\"",
        "failover = \"auto\"\ndrift = \"correct\"",
        1,
    );
    apply(&coordinator.endpoint, &correcting);
    wait_status(&coordinator.endpoint, "the drift undone", |st| {
        cen_drift(st) == serde_json::json!([])
    })
    .await;
    let journal: serde_json::Value =
        serde_json::from_str(&ctl(&emu, &["provider-journal"])).expect("journal");
    assert!(
        journal
            .as_array()
            .is_some_and(|j| j.iter().all(|c| c["accepted"] == true))
    );

    // "Run Synchronization" on the central site: Sync Now through the provider; the child sites
    // follow their parent by themselves.
    let c = coordinator.endpoint.clone();
    let out = crate::scheduler::sync_cli(&c, &sched, &["sync", "run", "--site", "CEN", "--wait"]);
    assert!(
        out.status.success(),
        "{}{}\nprovisioner:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        provisioner.log()
    );
    assert!(text(&out.stdout).contains("succeeded"));
    for child in ["CH1", "CH2"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = crate::scheduler::sync_cli(
                &c,
                &sched,
                &["sync", "history", "--site", child, "-o", "json"],
            );
            let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if h.as_array().is_some_and(|runs| {
                runs.iter()
                    .any(|r| r["state"] == "succeeded" && r["trigger"] == "parent")
            }) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{child}: no run after its parent: {h}\nits wsyncmgr.log:\n{}",
                std::fs::read_to_string(
                    emu.logs
                        .join(format!(
                            "{}-site.corp.example.com",
                            child.to_ascii_lowercase()
                        ))
                        .join("Logs")
                        .join("wsyncmgr.log")
                )
                .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
