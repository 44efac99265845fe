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

fn ctl(emu: &Emulator, args: &[&str]) -> String {
    let out = Command::new(sup_testkit::binary("wsus-emulator").expect("binary"))
        .args(["ctl", "--control", &emu.control])
        .args(args)
        .output()
        .expect("ctl");
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
