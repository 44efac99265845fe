//! The site systems as ConfigMgr 2007 and WSUS 3.0 behave: the five web-service roots over HTTPS
//! only when the web site requires SSL (403.4 over HTTP), the probe ladder taking them over HTTPS
//! with the certificate's name checked, WCM's `useSSL`, the WSUS version ConfigMgr 2007 SP1
//! needs, and WSyncMgr's log of what woke it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sup_proto::v1::{self, site_system_agent_client::SiteSystemAgentClient};
use sup_wsus::probe::{ProbeResult, Prober, Target};

use crate::emulator::{
    GET_AUTH_CONFIG, client, ctl, install, milestones, soap, start_emulator, wait_for,
};

const SSL: &str = "ssl01.corp.example.com";
const PLAIN: &str = "plain01.corp.example.com";

fn target(e: &crate::emulator::Emulator, host: &str, ssl: bool) -> Target {
    Target {
        host: host.into(),
        addr: SocketAddr::from(([127, 0, 0, 1], e.http)),
        https_addr: SocketAddr::from(([127, 0, 0, 1], e.https)),
        http_port: 80,
        https_port: 443,
        ssl,
    }
}

#[tokio::test]
async fn an_ssl_web_site_serves_its_web_services_over_https_only() {
    let ssl_spec = format!("{SSL}:80:443:ssl");
    let plain_spec = format!("{PLAIN}:80:443");
    let e = start_emulator(&["--server", &ssl_spec, "--server", &plain_spec]);

    // Plain HTTP to an SSL-required root: IIS's 403.4 page.
    let (status, ct, body) = soap(
        &client(&e, SSL),
        &format!(
            "http://{SSL}:{}/ServerSyncWebService/ServerSyncWebService.asmx",
            e.http
        ),
        "http://www.microsoft.com/SoftwareDistribution/GetAuthConfig",
        GET_AUTH_CONFIG,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(
        body.contains("HTTP Error 403.4 - Forbidden: SSL is required to view this resource."),
        "{body}"
    );
    for root in [
        "/ClientWebService/client.asmx?WSDL",
        "/SimpleAuthWebService/SimpleAuth.asmx?WSDL",
        "/DssAuthWebService/DssAuthWebService.asmx?WSDL",
        "/ApiRemoting30/WebService.asmx",
    ] {
        let r = client(&e, SSL)
            .get(format!("http://{SSL}:{}{root}", e.http))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), 403, "{root}");
    }
    // The rest of the site stays on HTTP.
    let r = client(&e, SSL)
        .get(format!("http://{SSL}:{}/selfupdate/wuident.cab", e.http))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 200);
    // A server without SSL answers over HTTP as before.
    let (status, _, _) = soap(
        &client(&e, PLAIN),
        &format!(
            "http://{PLAIN}:{}/ServerSyncWebService/ServerSyncWebService.asmx",
            e.http
        ),
        "http://www.microsoft.com/SoftwareDistribution/GetAuthConfig",
        GET_AUTH_CONFIG,
    )
    .await;
    assert_eq!(status, 200);

    // The ladder for an SSL SUP: SOAP and WSDL steps over HTTPS, selfupdate over HTTP.
    let ca = std::fs::read(&e.ca).expect("ca");
    let prober = Prober::new(Duration::from_secs(5), &ca);
    let ladder = prober.probe(&target(&e, SSL, true)).await;
    assert_eq!(ladder.len(), 8, "{ladder:?}");
    for c in &ladder {
        assert_eq!(c.result, ProbeResult::Ok, "{c:?}");
    }
    // Probed as if it had no SSL, it reads unhealthy: the web services refuse plain HTTP.
    let plain_ladder = prober.probe(&target(&e, SSL, false)).await;
    let server_sync = plain_ladder
        .iter()
        .find(|c| c.name == "server_sync")
        .expect("step");
    assert_eq!(
        server_sync.result,
        ProbeResult::HtmlError,
        "{plain_ladder:?}"
    );
    // The certificate must carry the server's name: without the emulator's CA it fails.
    let untrusted = Prober::new(Duration::from_secs(5), b"")
        .probe(&target(&e, SSL, true))
        .await;
    let tls = untrusted
        .iter()
        .find(|c| c.name == "tls")
        .expect("tls step");
    assert_eq!(tls.result, ProbeResult::TlsFailed, "{untrusted:?}");
    assert!(
        untrusted
            .iter()
            .filter(|c| c.name != "tcp" && c.name != "tls" && c.name != "selfupdate")
            .all(|c| c.result == ProbeResult::TlsFailed),
        "{untrusted:?}"
    );
}

#[tokio::test]
async fn wcm_connects_with_ssl_and_old_wsus_is_refused() {
    let ssl_spec = format!("{SSL}:80:443:ssl");
    let e = start_emulator(&["--server", &ssl_spec]);
    let mut agent = SiteSystemAgentClient::connect(e.agent.clone())
        .await
        .expect("agent");
    let info = agent
        .get_wsus_info(v1::GetWsusInfoRequest { server: SSL.into() })
        .await
        .expect("info")
        .into_inner();
    assert!(info.ssl, "{info:?}");
    assert_eq!((info.http_port, info.https_port), (80, 443));
    assert!(
        agent
            .install_role(install(SSL, "op-ssl"))
            .await
            .expect("install")
            .into_inner()
            .accepted
    );
    let folder = e.logs.join(SSL).join("Logs");
    wait_for("WCM's connection", || {
        std::fs::read_to_string(folder.join("WCM.log")).is_ok_and(|t| {
            t.contains(&format!(
                "server: {}, port: 443, useSSL: True",
                SSL.to_ascii_uppercase()
            ))
        })
    })
    .await;

    // WSUS 3.0 before SP1: the agent reports it, and SUPSetup refuses it.
    const OLD: &str = "old01.corp.example.com";
    let out = ctl(&e, &["version", OLD, "3.0.6000.374"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = ctl(&e, &["version", OLD, "three"]);
    assert!(!bad.status.success());
    let info = agent
        .get_wsus_info(v1::GetWsusInfoRequest { server: OLD.into() })
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.version, "3.0.6000.374");
    assert!(
        agent
            .install_role(install(OLD, "op-old"))
            .await
            .expect("install")
            .into_inner()
            .accepted
    );
    let folder = e.logs.join(OLD).join("Logs");
    wait_for("the failed setup", || {
        milestones(&folder.join("SUPSetup.log")).contains(&"role_install_failed".to_string())
    })
    .await;
}

#[tokio::test]
async fn wsyncmgr_says_what_woke_it_and_honours_no_synchronization() {
    let e = start_emulator(&["--site-server", "TOP=top-site.corp.example.com"]);
    let mut agent = SiteSystemAgentClient::connect(e.agent.clone())
        .await
        .expect("agent");
    const SUP: &str = "top-sup01.corp.example.com";
    let log = e
        .logs
        .join("top-site.corp.example.com")
        .join("Logs")
        .join("wsyncmgr.log");
    let run = |id: &str, trigger: &str, parent: &str| v1::AgentStartSyncRequest {
        site: "TOP".into(),
        server: SUP.into(),
        epoch: 1,
        run_id: id.into(),
        trigger: trigger.into(),
        parent_site: parent.into(),
        ..Default::default()
    };
    for (seen, (id, trigger, parent, wakeup, found, performing)) in (1..).zip([
        (
            "r1",
            "schedule",
            "",
            "Wakeup for scheduled regular sync",
            None,
            "Performing sync on regular schedule",
        ),
        (
            "r2",
            "parent",
            "cen",
            "Wakeup by inbox drop",
            Some("Found parent sync notification file CEN.SYN"),
            "Performing sync on parent request",
        ),
        (
            "r3",
            "manual",
            "",
            "Wakeup by inbox drop",
            Some("Found local sync request file"),
            "Performing sync on local request",
        ),
    ]) {
        assert!(
            agent
                .start_sync(run(id, trigger, parent))
                .await
                .expect("sync")
                .into_inner()
                .accepted
        );
        // Status message 6702: the run succeeded.
        wait_for("the run's result", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.matches("ID=6702").count() == seen)
        })
        .await;
        let text = std::fs::read_to_string(&log).expect("wsyncmgr.log");
        let this = text.rsplit("Starting Sync").nth(1).unwrap_or_default();
        let tail: String = this.lines().rev().take(3).collect::<Vec<_>>().join("\n");
        assert!(tail.contains(wakeup), "{trigger}: {tail}");
        if let Some(found) = found {
            assert!(tail.contains(found), "{trigger}: {tail}");
        }
        let after = text.rsplit("Starting Sync").next().unwrap_or_default();
        assert!(after.contains(performing), "{trigger}: {after}");
        assert!(
            after.contains(&format!("Synchronizing WSUS server {SUP}")),
            "{trigger}"
        );
    }

    // "Do not synchronize from Microsoft Update or upstream data source": no WSUS
    // synchronization, only the site database from what WSUS holds.
    let none = v1::AgentConfigureRequest {
        site: "TOP".into(),
        server: SUP.into(),
        epoch: 1,
        configure: Some(v1::ConfigureComponent {
            settings: Some(v1::SoftwareUpdateSettings {
                sync_source: v1::SyncSource::None as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        op_id: "c-none".into(),
    };
    assert!(
        agent
            .configure_component(none)
            .await
            .expect("configure")
            .into_inner()
            .accepted
    );
    assert!(
        agent
            .start_sync(run("r4", "manual", ""))
            .await
            .expect("sync")
            .into_inner()
            .accepted
    );
    wait_for("the run's result", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.matches("ID=6702").count() == 4)
    })
    .await;
    let text = std::fs::read_to_string(&log).expect("wsyncmgr.log");
    let last = text.rsplit("Starting Sync").next().unwrap_or_default();
    assert!(!last.contains("Synchronizing WSUS server"), "{last}");
    assert!(
        !last.contains("sync: Starting WSUS synchronization"),
        "{last}"
    );
    assert!(
        last.contains(&format!(
            "Synchronizing SMS database with WSUS server {SUP}"
        )),
        "{last}"
    );
}

/// `make run`'s emulator: every server of a site file on its own ports (80/443 when the file
/// leaves them out, bound higher when low ports are not allowed) with its SSL, and the map the
/// health service probes them through.
#[tokio::test]
async fn the_emulator_stands_in_for_a_site_files_servers() {
    let dir = tempfile::tempdir().expect("dir");
    // An offset that puts 80 and 443 on free ports.
    let offset = loop {
        let p = sup_testkit::free_port().expect("port");
        if p > 1024 && p < 60000 && std::net::TcpListener::bind(("127.0.0.1", p + 363)).is_ok() {
            break p - 80;
        }
    };
    let (agent, control) = (
        sup_testkit::free_port().expect("port"),
        sup_testkit::free_port().expect("port"),
    );
    let site_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/default-ports.toml");
    let map = dir.path().join("port-map.toml");
    let ca = dir.path().join("ca.pem");
    let mut p = sup_testkit::Process::start(
        "wsus-emulator",
        &[
            "run",
            "--site-file",
            site_file.to_str().expect("path"),
            "--low-port-offset",
            &offset.to_string(),
            "--port-map-out",
            map.to_str().expect("path"),
            "--ca-out",
            ca.to_str().expect("path"),
            "--agent",
            &format!("127.0.0.1:{agent}"),
            "--control",
            &format!("127.0.0.1:{control}"),
            "--logs",
            dir.path().join("logs").to_str().expect("path"),
        ],
        &[],
    )
    .expect("emulator");
    p.wait_port(control, Duration::from_secs(30)).expect("up");
    let text = std::fs::read_to_string(&map).expect("port map");
    assert_eq!(
        text,
        format!("\"80\" = {}\n\"443\" = {}\n", 80 + offset, 443 + offset),
        "the default web site's ports, moved"
    );
    let ca = std::fs::read(&ca).expect("ca");
    let prober = Prober::new(Duration::from_secs(5), &ca);
    let on = |host: &str, ssl: bool| Target {
        host: host.into(),
        addr: SocketAddr::from(([127, 0, 0, 1], 80 + offset)),
        https_addr: SocketAddr::from(([127, 0, 0, 1], 443 + offset)),
        http_port: 80,
        https_port: 443,
        ssl,
    };
    // The SSL SUP of the central site, and a node of the child's NLB cluster (no SSL).
    for (host, ssl) in [
        ("hq1-sup01.corp.example.com", true),
        ("hq1-inet01.corp.example.com", true),
        ("br1-n1.corp.example.com", false),
    ] {
        let ladder = prober.probe(&on(host, ssl)).await;
        for c in &ladder {
            assert_eq!(c.result, ProbeResult::Ok, "{host}: {c:?}");
        }
    }
    // Declared with SSL: its web services refuse plain HTTP.
    let plain = prober.probe(&on("hq1-sup01.corp.example.com", false)).await;
    assert_eq!(
        plain
            .iter()
            .find(|c| c.name == "server_sync")
            .map(|c| c.result),
        Some(ProbeResult::HtmlError),
        "{plain:?}"
    );
}
