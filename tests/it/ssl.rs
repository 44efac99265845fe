//! WSUS with SSL as IIS serves it: the five web-service roots over HTTPS only (403.4 over HTTP),
//! the probe ladder taking them over HTTPS with the certificate's name checked, WCM's `useSSL`,
//! and the WSUS version ConfigMgr 2007 SP1 needs.

use std::net::SocketAddr;
use std::time::Duration;

use sup_proto::v1::{self, site_system_agent_client::SiteSystemAgentClient};
use sup_wsus::probe::{ProbeResult, Prober, Target};

use crate::emulator::{GET_AUTH_CONFIG, client, ctl, milestones, soap, start_emulator, wait_for};

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
    let install = |server: &str| v1::AgentInstallRoleRequest {
        site: "CEN".into(),
        server: server.into(),
        install: Some(v1::InstallRole::default()),
        op_id: format!("op-{server}"),
    };
    assert!(
        agent
            .install_role(install(SSL))
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
            .install_role(install(OLD))
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
