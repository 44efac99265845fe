//! The WSUS emulator as a real process: its endpoints with the reference's envelopes, the agent,
//! the logs it writes as recognised by sup-smslog, and every fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sup_proto::v1::{self, site_system_agent_client::SiteSystemAgentClient};
use sup_smslog::{Classifier, parse_line};
use sup_testkit::{Process, free_port};

pub struct Emulator {
    /// Kept so the process lives as long as the test needs it.
    pub _process: Process,
    pub http: u16,
    pub https: u16,
    pub agent: String,
    pub control: String,
    pub logs: PathBuf,
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn start_emulator(extra: &[&str]) -> Emulator {
    start_emulator_with_env(extra, &[])
}

/// The emulator with extra arguments and environment. Its own ports are drawn afresh when
/// another test took one between the draw and the bind.
pub fn start_emulator_with_env(extra: &[&str], env: &[(&str, String)]) -> Emulator {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_start_emulator(extra, env) {
            Ok(emulator) => return emulator,
            Err(e) if attempt < 4 && e.to_string().contains("Address already in use") => {
                eprintln!("emulator: a port was taken meanwhile, drawing others: {e}");
            }
            Err(e) => panic!("emulator up: {e}"),
        }
    }
}

fn try_start_emulator(extra: &[&str], env: &[(&str, String)]) -> std::io::Result<Emulator> {
    let dir = tempfile::tempdir()?;
    let (http, https, agent, control) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let logs = dir.path().join("logs");
    let ca = dir.path().join("ca.pem");
    let mut args: Vec<String> = [
        "run",
        "--http",
        &format!("127.0.0.1:{http}"),
        "--https",
        &format!("127.0.0.1:{https}"),
        "--ca-out",
        ca.to_str().expect("path"),
        "--agent",
        &format!("127.0.0.1:{agent}"),
        "--control",
        &format!("127.0.0.1:{control}"),
        "--logs",
        logs.to_str().expect("path"),
        "--step-ms",
        "5",
        "--health-interval-ms",
        "200",
        "--slow-ms",
        "1500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A flag given in `extra` replaces its default here.
    for flag in ["--step-ms", "--health-interval-ms", "--slow-ms"] {
        if extra.contains(&flag)
            && let Some(i) = args.iter().position(|a| a == flag)
        {
            args.drain(i..i + 2);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut process = Process::start("wsus-emulator", &refs, env)?;
    process.wait_port(control, Duration::from_secs(30))?;
    process.wait_port(agent, Duration::from_secs(30))?;
    Ok(Emulator {
        _process: process,
        http,
        https,
        agent: format!("http://127.0.0.1:{agent}"),
        control: format!("127.0.0.1:{control}"),
        logs,
        ca,
        _dir: dir,
    })
}

const S1: &str = "cen-sup01.corp.example.com";

pub fn client(e: &Emulator, server: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve(server, SocketAddr::from(([127, 0, 0, 1], e.http)))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub const GET_AUTH_CONFIG: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
               xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <soap:Body>
    <GetAuthConfig xmlns="http://www.microsoft.com/SoftwareDistribution" />
  </soap:Body>
</soap:Envelope>"#;

const GET_CONFIG: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetConfig xmlns="http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"><protocolVersion>1.0</protocolVersion></GetConfig></soap:Body></soap:Envelope>"#;

pub async fn soap(
    c: &reqwest::Client,
    url: &str,
    action: &str,
    body: &str,
) -> (u16, String, String) {
    let r = c
        .post(url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{action}\""))
        .body(body.to_string())
        .send()
        .await
        .expect("answer");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, r.text().await.expect("body"))
}

#[tokio::test]
async fn every_endpoint_answers_as_wsus_does() {
    let e = start_emulator(&[]);
    let c = client(&e, S1);
    let base = format!("http://{S1}:{}", e.http);

    let (status, ct, body) = soap(
        &c,
        &format!("{base}/ServerSyncWebService/ServerSyncWebService.asmx"),
        "http://www.microsoft.com/SoftwareDistribution/GetAuthConfig",
        GET_AUTH_CONFIG,
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "text/xml; charset=utf-8"));
    assert!(
        body.contains(
            "<GetAuthConfigResponse xmlns=\"http://www.microsoft.com/SoftwareDistribution\">"
        ),
        "{body}"
    );
    assert!(
        body.contains("<PlugInID>DssTargeting</PlugInID>")
            && body.contains("<ServiceUrl>DssAuthWebService/DssAuthWebService.asmx</ServiceUrl>")
    );
    assert!(
        !body.contains("<Parameter"),
        "GetAuthConfig must not carry Parameter"
    );

    let (status, _, body) = soap(
        &c,
        &format!("{base}/ClientWebService/client.asmx"),
        "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService/GetConfig",
        GET_CONFIG,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<PlugInID>SimpleTargeting</PlugInID>")
            && body.contains("SimpleAuthWebService/SimpleAuth.asmx"),
        "{body}"
    );

    for (path, ns) in [
        (
            "/ServerSyncWebService/ServerSyncWebService.asmx",
            "http://www.microsoft.com/SoftwareDistribution",
        ),
        (
            "/ClientWebService/client.asmx",
            "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService",
        ),
        (
            "/SimpleAuthWebService/SimpleAuth.asmx",
            "http://www.microsoft.com/SoftwareDistribution/Server/SimpleAuthWebService",
        ),
        (
            "/DssAuthWebService/DssAuthWebService.asmx",
            "http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService",
        ),
        (
            "/ReportingWebService/ReportingWebService.asmx",
            "http://www.microsoft.com/SoftwareDistribution",
        ),
    ] {
        let r = c
            .get(format!("{base}{path}?WSDL"))
            .send()
            .await
            .expect("wsdl");
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().await.expect("body");
        assert!(
            body.contains("<wsdl:definitions")
                && body.contains(&format!("targetNamespace=\"{ns}\"")),
            "{path}: {body}"
        );
    }

    let r = c
        .get(format!("{base}/selfupdate/wuident.cab"))
        .send()
        .await
        .expect("cab");
    assert_eq!(r.status(), 200);
    assert!(
        !r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .contains("html")
    );
    assert!(r.bytes().await.expect("bytes").starts_with(b"MSCF"));

    assert_eq!(
        c.get(format!("{base}/Content/"))
            .send()
            .await
            .expect("content")
            .status(),
        403
    );

    let r = c
        .post(format!("{base}/ApiRemoting30/WebService.asmx"))
        .body(GET_AUTH_CONFIG)
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), 401);
    let auth: Vec<_> = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(auth.join(", "), "Negotiate, NTLM");
    assert_eq!(r.headers()["server"], "Microsoft-IIS/6.0");
    assert_eq!(r.headers()["x-aspnet-version"], "2.0.50727");
    assert_eq!(r.headers()["x-powered-by"], "ASP.NET");

    let (status, ct, body) = soap(
        &c,
        &format!("{base}/ClientWebService/client.asmx"),
        "http://example.com/NoSuchAction",
        GET_CONFIG,
    )
    .await;
    assert_eq!((status, ct.as_str()), (500, "text/xml; charset=utf-8"));
    assert!(body.contains("<soap:Fault>") && body.contains("Server did not recognize the value of HTTP Header SOAPAction: http://example.com/NoSuchAction"), "{body}");

    for bad in ["<soap:Envelope", "not xml at all", "<a><b></a>", ""] {
        let (status, _, body) = soap(
            &c,
            &format!("{base}/ServerSyncWebService/ServerSyncWebService.asmx"),
            "http://www.microsoft.com/SoftwareDistribution/GetAuthConfig",
            bad,
        )
        .await;
        assert_eq!(status, 500, "{bad:?}");
        assert!(body.contains("<soap:Fault>"), "{bad:?}: {body}");
    }
    // Still serving after garbage.
    let (status, _, _) = soap(
        &c,
        &format!("{base}/ServerSyncWebService/ServerSyncWebService.asmx"),
        "http://www.microsoft.com/SoftwareDistribution/GetAuthConfig",
        GET_AUTH_CONFIG,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn https_presents_a_certificate_for_each_server_name() {
    let e = start_emulator(&[]);
    let pem = std::fs::read_to_string(&e.ca).expect("ca written");
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for der in sup_wsus::probe::pem_certificates(pem.as_bytes()) {
        roots.add(der.into()).expect("ca");
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    for name in [S1, "other.corp.example.com"] {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", e.https))
            .await
            .expect("tcp");
        let server_name =
            tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let tls = connector.connect(server_name, tcp).await;
        assert!(tls.is_ok(), "{name}: {:?}", tls.err());
    }
}

pub fn milestones(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut c = Classifier::new();
    let log = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    sup_smslog::reader::lines_of(&bytes)
        .iter()
        .filter_map(|l| {
            c.classify(&parse_line(&l.text, Some(0)), &log)
                .map(|m| m.name.to_string())
        })
        .collect()
}

pub async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn ctl(e: &Emulator, args: &[&str]) -> std::process::Output {
    Command::new(sup_testkit::binary("wsus-emulator").expect("binary"))
        .args(["ctl", "--control", &e.control])
        .args(args)
        .output()
        .expect("ctl")
}

pub fn install(server: &str, op: &str) -> v1::AgentInstallRoleRequest {
    v1::AgentInstallRoleRequest {
        site: "CEN".into(),
        server: server.into(),
        install: Some(v1::InstallRole::default()),
        op_id: op.into(),
    }
}

#[tokio::test]
async fn installs_write_logs_that_sup_smslog_recognises_and_faults_change_them() {
    let e = start_emulator(&[]);
    let mut agent = SiteSystemAgentClient::connect(e.agent.clone())
        .await
        .expect("agent");
    let info = agent
        .get_wsus_info(v1::GetWsusInfoRequest { server: S1.into() })
        .await
        .expect("info")
        .into_inner();
    assert!(info.installed);
    assert_eq!((info.http_port, info.https_port), (8530, 8531));
    assert!(info.version.starts_with("3."), "WSUS 3.0: {}", info.version);

    let first = agent
        .install_role(install(S1, "op-1"))
        .await
        .expect("install")
        .into_inner();
    assert!(first.accepted && !first.duplicate);
    let again = agent
        .install_role(install(S1, "op-1"))
        .await
        .expect("install")
        .into_inner();
    assert!(again.duplicate, "the same op id acts once");

    let folder = e.logs.join(S1).join("Logs");
    wait_for("role_install_succeeded", || {
        milestones(&folder.join("SUPSetup.log")).contains(&"role_install_succeeded".to_string())
    })
    .await;
    assert_eq!(
        milestones(&folder.join("SUPSetup.log"))[0],
        "role_install_started"
    );
    wait_for("the two WSUS health lines", || {
        let m = milestones(&folder.join("WSUSCtrl.log"));
        m.contains(&"wsus_components_healthy".to_string())
            && m.contains(&"wsus_database_ok".to_string())
    })
    .await;
    assert!(
        milestones(&folder.join("WCM.log")).contains(&"wsus_components_healthy".to_string()),
        "WCM.log too, as the procedure says"
    );

    // Configuration under an epoch, and a stale epoch refused.
    let cfg = |epoch: u64, op: &str| v1::AgentConfigureRequest {
        site: "CEN".into(),
        server: S1.into(),
        epoch,
        configure: Some(v1::ConfigureComponent::default()),
        op_id: op.into(),
    };
    assert!(
        agent
            .configure_component(cfg(5, "c1"))
            .await
            .expect("configure")
            .into_inner()
            .accepted
    );
    let stale = agent
        .configure_component(cfg(4, "c2"))
        .await
        .expect("configure")
        .into_inner();
    assert!(
        !stale.accepted && stale.detail.contains("stale epoch"),
        "{stale:?}"
    );
    wait_for("WSUS_CONFIG_SUCCESS", || {
        milestones(&folder.join("WCM.log")).contains(&"wsus_config_state".to_string())
    })
    .await;

    // A synchronization, then one that fails.
    let sync = |run: &str| v1::AgentStartSyncRequest {
        site: "CEN".into(),
        server: S1.into(),
        epoch: 5,
        run_id: run.into(),
        upstream_server: String::new(),
        full: false,
        trigger: "manual".into(),
        ..Default::default()
    };
    assert!(
        agent
            .start_sync(sync("r1"))
            .await
            .expect("sync")
            .into_inner()
            .accepted
    );
    wait_for("sync_succeeded", || {
        milestones(&folder.join("wsyncmgr.log")).contains(&"sync_succeeded".to_string())
    })
    .await;
    let sync_log = std::fs::read_to_string(folder.join("wsyncmgr.log")).expect("wsyncmgr.log");
    assert!(
        sync_log.contains("Found local sync request file")
            && sync_log.contains("Performing sync on local request"),
        "a manual run says so"
    );
    assert!(!sync_log.contains("Performing sync on regular schedule"));
    assert!(ctl(&e, &["fault", S1, "sync-fails"]).status.success());
    agent.start_sync(sync("r2")).await.expect("sync");
    wait_for("sync_failed", || {
        milestones(&folder.join("wsyncmgr.log")).contains(&"sync_failed".to_string())
    })
    .await;

    // db-down: the health lines turn to failures.
    assert!(ctl(&e, &["fault", S1, "db-down"]).status.success());
    let before = std::fs::metadata(folder.join("WSUSCtrl.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    wait_for("failing health lines", || {
        std::fs::read_to_string(folder.join("WSUSCtrl.log"))
            .map(|t| {
                t.len() as u64 > before
                    && t[before as usize..].contains("Failed to check database connection")
            })
            .unwrap_or(false)
    })
    .await;

    // no-wsus and install-fails: setup fails the way it does.
    for (server, fault) in [
        ("nowsus.corp.example.com", "no-wsus"),
        ("broken.corp.example.com", "install-fails"),
    ] {
        assert!(ctl(&e, &["fault", server, fault]).status.success());
        if fault == "no-wsus" {
            let info = agent
                .get_wsus_info(v1::GetWsusInfoRequest {
                    server: server.into(),
                })
                .await
                .expect("info")
                .into_inner();
            assert!(!info.installed);
        }
        agent
            .install_role(install(server, "x"))
            .await
            .expect("install");
        let setup = e.logs.join(server).join("Logs").join("SUPSetup.log");
        wait_for(fault, || {
            milestones(&setup).contains(&"role_install_failed".to_string())
        })
        .await;
        assert!(!milestones(&setup).contains(&"role_install_succeeded".to_string()));
    }

    // An unknown fault kind is refused with the list.
    let out = ctl(&e, &["fault", S1, "meteor"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("html-error"));
}

#[tokio::test]
async fn web_faults_down_slow_html_and_recovery() {
    let e = start_emulator(&[]);
    let c = client(&e, S1);
    let url = format!(
        "http://{S1}:{}/ServerSyncWebService/ServerSyncWebService.asmx",
        e.http
    );
    let action = "http://www.microsoft.com/SoftwareDistribution/GetAuthConfig";
    assert_eq!(soap(&c, &url, action, GET_AUTH_CONFIG).await.0, 200);

    assert!(ctl(&e, &["fault", S1, "down"]).status.success());
    let r = c
        .post(&url)
        .header("SOAPAction", action)
        .body(GET_AUTH_CONFIG)
        .send()
        .await;
    assert!(r.is_err(), "a down server does not answer");
    // Another server on the same listener is unaffected.
    let other = client(&e, "cen-sup02.corp.example.com");
    let other_url = format!(
        "http://cen-sup02.corp.example.com:{}/ServerSyncWebService/ServerSyncWebService.asmx",
        e.http
    );
    assert_eq!(
        soap(&other, &other_url, action, GET_AUTH_CONFIG).await.0,
        200
    );

    assert!(ctl(&e, &["clear", S1]).status.success());
    assert!(ctl(&e, &["fault", S1, "html-error"]).status.success());
    let r = c
        .post(&url)
        .header("SOAPAction", action)
        .body(GET_AUTH_CONFIG)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 503);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );

    assert!(ctl(&e, &["clear", S1]).status.success());
    assert!(ctl(&e, &["fault", S1, "db-down"]).status.success());
    let (status, _, body) = soap(
        &c,
        &format!("http://{S1}:{}/ClientWebService/client.asmx", e.http),
        "http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService/GetConfig",
        GET_CONFIG,
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("InternalServerError"));

    assert!(ctl(&e, &["clear", S1]).status.success());
    assert!(ctl(&e, &["fault", S1, "slow"]).status.success());
    let t = Instant::now();
    assert_eq!(soap(&c, &url, action, GET_AUTH_CONFIG).await.0, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "slow answers late"
    );
    assert!(ctl(&e, &["clear", S1]).status.success());
    let list = ctl(&e, &["list"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert!(
        v.as_array()
            .expect("array")
            .iter()
            .any(|s| s["name"] == S1 && s["faults"].as_array().is_some_and(|f| f.is_empty()))
    );
}

#[tokio::test]
async fn logs_rotate_to_lo_with_the_marker() {
    let e = start_emulator(&["--max-log-size", "2000"]);
    let mut agent = SiteSystemAgentClient::connect(e.agent.clone())
        .await
        .expect("agent");
    agent.install_role(install(S1, "i")).await.expect("install");
    let lo = e.logs.join(S1).join("Logs").join("WSUSCtrl.lo_");
    wait_for("a rotated WSUSCtrl.lo_", || lo.exists()).await;
    let text = std::fs::read_to_string(&lo).expect("lo_");
    assert!(
        text.trim_end()
            .ends_with("<MAXIMUM LOG FILE SIZE REACHED - FILE RENAMED>"),
        "{text}"
    );
}
