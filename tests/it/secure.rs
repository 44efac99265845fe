//! Security end to end: every gRPC server over mutual TLS (the services and the site-system
//! agent), every service on NATS over TLS as its own user with only the permissions of
//! `deploy/nats/permissions.conf`, and secrets only by reference: a planted secret shows up in no
//! service's log, no stream message (events, commands, log lines, every KV bucket's history) and
//! no `supctl` output. Also NATS nkey and `.creds` (decentralised, JWT) authentication.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sup_testkit::{NatsServer, Process, free_port};

use crate::emulator::start_emulator;
use crate::support::*;

/// Every secret of the test starts with this; none may leave the files that hold them.
const PLANTED: &str = "PLANTED-7c1f";

const SERVICES: [&str; 5] = [
    "coordinator",
    "provisioner",
    "logwatch",
    "health",
    "scheduler",
];

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A CA; a certificate for 127.0.0.1 and localhost that serves and connects (every service uses
/// it both ways); and a client certificate from another CA, which no server may accept.
fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("dir");
    let ca = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA");
        (cert, key)
    };
    let leaf = |ca: &(rcgen::Certificate, KeyPair), cn: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
            .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca.0, &ca.1).expect("leaf");
        (cert.pem(), key.serialize_pem())
    };
    let good = ca("SUP test CA");
    let rogue = ca("Someone else's CA");
    let (cert, key) = leaf(&good, "sup-service");
    let (rcert, rkey) = leaf(&rogue, "intruder");
    let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    w("ca.pem", &good.0.pem());
    w("cert.pem", &cert);
    w("key.pem", &key);
    w("rogue-cert.pem", &rcert);
    w("rogue-key.pem", &rkey);
    Pki { dir }
}

/// A nats-server with TLS that requires client certificates and the sample permissions, each
/// service's password planted in its environment.
fn secure_nats(pki: &Pki) -> NatsServer {
    let permissions = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/permissions.conf"),
    )
    .expect("deploy/nats/permissions.conf");
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\ninclude \"permissions.conf\"\n",
        pki.p("cert.pem"),
        pki.p("key.pem"),
        pki.p("ca.pem")
    );
    // The sample's automation (event consumer) user needs its password planted too.
    let passwords: Vec<(String, String)> = SERVICES
        .iter()
        .chain(&["automation"])
        .map(|s| {
            (
                format!("SUP_NATS_{}_PASSWORD", s.to_ascii_uppercase()),
                format!("{PLANTED}-nats-{s}"),
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = passwords
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    NatsServer::start_with_config(&config, &[("permissions.conf", &permissions)], &env, true)
        .expect("secure nats-server")
}

/// The `[nats]` section of `service`: its own user, its password by file, TLS both ways.
fn nats_section(nats: &NatsServer, pki: &Pki, service: &str) -> String {
    let pw = pki.path(&format!("nats-{service}.pw"));
    std::fs::write(&pw, format!("{PLANTED}-nats-{service}\n")).expect("password file");
    format!(
        "[nats]\nurl = \"{}\"\nclient_name = \"sup-{service}\"\nuser = \"{service}\"\npassword_file = \"{}\"\ntls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        nats.url(),
        pw.display(),
        pki.p("ca.pem"),
        pki.p("cert.pem"),
        pki.p("key.pem")
    )
}

/// The `[tls]` section of a gRPC server: mutual TLS.
fn grpc_tls(pki: &Pki) -> String {
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n",
        pki.p("cert.pem"),
        pki.p("key.pem"),
        pki.p("ca.pem")
    )
}

/// Starts a service from a config file, logging at debug so that anything it might leak is
/// written.
fn service(name: &str, args: &[&str], config: &str, pki: &Pki, admin: u16) -> Process {
    let file = pki.path(&format!("{name}.toml"));
    std::fs::write(&file, config).expect("config");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", file.to_str().expect("path")]);
    let mut p = Process::start(
        name,
        &all,
        &[("RUST_LOG", "debug,h2=info,hyper=info".into())],
    )
    .expect("start");
    p.admin_port = Some(admin);
    wait_ready(&mut p, admin);
    p
}

fn supctl_tls(pki: &Pki, coordinator: &str, scheduler: &str, args: &[&str]) -> Output {
    Command::new(sup_testkit::binary("supctl").expect("supctl"))
        .env("SUP_COORDINATOR", coordinator)
        .env("SUP_SCHEDULER", scheduler)
        .env("SUP_TLS_CA", pki.path("ca.pem"))
        .env("SUP_TLS_CERT", pki.path("cert.pem"))
        .env("SUP_TLS_KEY", pki.path("key.pem"))
        .env_remove("RUST_BACKTRACE")
        .args(args)
        .output()
        .expect("run supctl")
}

fn site(http: u16, https: u16, password_file: &Path, proxy_password_file: &Path) -> String {
    format!(
        r#"
[[site]]
code = "CEN"
name = "Central site"
site_server = "cen-site.corp.example.com"

[site.software_updates]
sync_source = "microsoft_update"

[[site.site_system]]
server = "cen-sup01.corp.example.com"
computer_account_access = false
install_account = 'CORP\svc-sup'
install_password_file = "{}"

[[site.software_update_point]]
server = "cen-sup01.corp.example.com"
active = "intranet"
http_port = {http}
https_port = {https}
proxy = {{ server = "proxy.corp.example.com", port = 8080, account = 'CORP\svc-proxy', password_file = "{}" }}
"#,
        password_file.display(),
        proxy_password_file.display()
    )
}

/// Every message of every stream (events, commands, log lines and each KV bucket's history),
/// payload and headers as text.
async fn every_stream_message(
    nats_url: &str,
    secured: &sup_testkit::jetstream::Secured,
) -> Vec<String> {
    let inspector = sup_testkit::jetstream::Inspector::connect_secured(nats_url, secured)
        .await
        .expect("inspector");
    let mut out = Vec::new();
    for name in inspector.stream_names().await.expect("stream names") {
        for m in inspector.stored(&name, None).await.expect("stored") {
            out.push(format!(
                "{name}#{} {:?} {}",
                m.sequence,
                m.headers,
                String::from_utf8_lossy(&m.payload)
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_everywhere_least_privilege_and_no_secret_leaks() {
    let pki = pki();
    let nats = secure_nats(&pki);
    let port = || free_port().expect("port");

    // The site-system agent requires a client certificate from our CA.
    let (http, https) = (port(), port());
    let emulator = start_emulator(&[
        "--site-server",
        "CEN=cen-site.corp.example.com",
        "--http",
        &format!("127.0.0.1:{http}"),
        "--https",
        &format!("127.0.0.1:{https}"),
        "--default-ports",
        &format!("{http},{https}"),
        "--agent-tls-cert",
        &pki.p("cert.pem"),
        "--agent-tls-key",
        &pki.p("key.pem"),
        "--agent-client-ca",
        &pki.p("ca.pem"),
    ]);
    let agent = emulator.agent.replace("http://", "https://");

    let (cgrpc, cadmin) = (port(), port());
    let coordinator = service(
        "sup-coordinator",
        &[],
        &format!(
            "listen = \"127.0.0.1:{cgrpc}\"\nadmin_listen = \"127.0.0.1:{cadmin}\"\nreconcile_interval_secs = 1\nfailover_after_secs = 1\n{}{}",
            grpc_tls(&pki),
            nats_section(&nats, &pki, "coordinator")
        ),
        &pki,
        cadmin,
    );
    let padmin = port();
    let provisioner = service(
        "sup-provisioner",
        &[],
        &format!(
            "admin_listen = \"127.0.0.1:{padmin}\"\nmax_attempts = 2\nretry_base_ms = 100\ninstall_timeout_secs = 60\n[agents]\n\"*\" = \"{agent}\"\n[agent_tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{}",
            pki.p("ca.pem"),
            pki.p("cert.pem"),
            pki.p("key.pem"),
            nats_section(&nats, &pki, "provisioner")
        ),
        &pki,
        padmin,
    );
    let ladmin = port();
    let logwatch = service(
        "sup-logwatch",
        &["run"],
        &format!(
            "admin_listen = \"127.0.0.1:{ladmin}\"\npoll_interval_ms = 100\ndiscover_interval_secs = 1\nroot = \"{}\"\n{}",
            emulator.logs.display(),
            nats_section(&nats, &pki, "logwatch")
        ),
        &pki,
        ladmin,
    );
    let (hgrpc, hadmin) = (port(), port());
    let health = service(
        "sup-health",
        &[],
        &format!(
            "listen = \"127.0.0.1:{hgrpc}\"\nadmin_listen = \"127.0.0.1:{hadmin}\"\ninterval_ms = 300\ntimeout_ms = 500\nmilestone_max_age_secs = 30\nca_file = \"{}\"\n{}[resolve]\n\"*\" = \"127.0.0.1\"\n{}",
            emulator.ca.display(),
            grpc_tls(&pki),
            nats_section(&nats, &pki, "health")
        ),
        &pki,
        hadmin,
    );
    let (sgrpc, sadmin) = (port(), port());
    let scheduler = service(
        "sup-scheduler",
        &[],
        &format!(
            "listen = \"127.0.0.1:{sgrpc}\"\nadmin_listen = \"127.0.0.1:{sadmin}\"\ntick_ms = 200\n{}{}",
            grpc_tls(&pki),
            nats_section(&nats, &pki, "scheduler")
        ),
        &pki,
        sadmin,
    );
    let (cep, sep) = (
        format!("https://127.0.0.1:{cgrpc}"),
        format!("https://127.0.0.1:{sgrpc}"),
    );

    // The procedure through mutual TLS, the installation and proxy accounts' passwords by file.
    let install_pw = pki.path("install-account.pw");
    std::fs::write(&install_pw, format!("{PLANTED}-install-account\n")).expect("write");
    let proxy_pw = pki.path("proxy-account.pw");
    std::fs::write(&proxy_pw, format!("{PLANTED}-proxy-account\n")).expect("write");
    let file = site_file(&site(http, https, &install_pw, &proxy_pw));
    let path = file.path().to_str().expect("path");
    let out = supctl_tls(
        &pki,
        &cep,
        &sep,
        &["apply", "-f", path, "--wait", "--timeout", "90s"],
    );
    let logs = || {
        [&coordinator, &provisioner, &logwatch, &health, &scheduler]
            .iter()
            .map(|p| format!("--- {}\n{}", p.name, p.log()))
            .collect::<String>()
    };
    assert!(
        out.status.success(),
        "apply over mTLS:\n{}{}\n{}\nnats-server:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        logs(),
        nats.log()
    );
    let out = supctl_tls(
        &pki,
        &cep,
        &sep,
        &["sync", "run", "--site", "CEN", "--wait", "--timeout", "60s"],
    );
    assert!(
        out.status.success(),
        "sync over mTLS:\n{}{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        logs()
    );

    // The health service reports over its mutual-TLS gRPC, from what it stored in KV.
    let tls = sup_runtime::ClientTls {
        ca_file: pki.path("ca.pem"),
        cert_file: Some(pki.path("cert.pem")),
        key_file: Some(pki.path("key.pem")),
        domain: None,
    }
    .tonic()
    .expect("client TLS");
    let channel = tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{hgrpc}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("health over mTLS");
    let mut hc = sup_proto::v1::health_service_client::HealthServiceClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reports = hc
            .get_health(sup_proto::v1::GetHealthRequest {
                site: "CEN".into(),
                server: String::new(),
            })
            .await
            .map(|r| r.into_inner().reports)
            .unwrap_or_default();
        if !reports.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no health report\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Without a client certificate, or without TLS, or with another CA's certificate: refused.
    let bare = Command::new(sup_testkit::binary("supctl").expect("supctl"))
        .env("SUP_COORDINATOR", &cep)
        .env("SUP_TLS_CA", pki.path("ca.pem"))
        .env_remove("RUST_BACKTRACE")
        .args(["status", "-o", "json"])
        .output()
        .expect("supctl");
    assert!(!bare.status.success(), "no client certificate, yet served");
    let plain = supctl(&format!("http://127.0.0.1:{cgrpc}"), &["status"]);
    assert!(!plain.status.success(), "plain gRPC served by a TLS server");
    let rogue = Command::new(sup_testkit::binary("supctl").expect("supctl"))
        .env("SUP_COORDINATOR", &cep)
        .env("SUP_TLS_CA", pki.path("ca.pem"))
        .env("SUP_TLS_CERT", pki.path("rogue-cert.pem"))
        .env("SUP_TLS_KEY", pki.path("rogue-key.pem"))
        .env_remove("RUST_BACKTRACE")
        .args(["status"])
        .output()
        .expect("supctl");
    assert!(!rogue.status.success(), "a foreign CA's client was served");
    let https_without_ca = supctl(&cep, &["status"]);
    assert!(!https_without_ca.status.success());
    assert!(
        text(&https_without_ca.stderr).contains("--tls-ca"),
        "{}",
        text(&https_without_ca.stderr)
    );

    // NATS: a wrong password is refused; a service may not write what is not its own.
    let wrong = async_nats::ConnectOptions::with_user_and_password(
        "provisioner".into(),
        "not-the-password".into(),
    )
    .add_root_certificates(pki.path("ca.pem"))
    .add_client_certificate(pki.path("cert.pem"), pki.path("key.pem"))
    .require_tls(true)
    .connect(nats.url())
    .await;
    assert!(wrong.is_err(), "a wrong NATS password was accepted");
    let as_service = |service: &str| {
        let mut c = sup_bus::BusConfig::new(nats.url());
        c.user = Some(service.into());
        c.password_file = Some(pki.path(&format!("nats-{service}.pw")));
        c.tls_ca_file = Some(pki.path("ca.pem"));
        c.tls_cert_file = Some(pki.path("cert.pem"));
        c.tls_key_file = Some(pki.path("key.pem"));
        c
    };
    let coordinator_bus = sup_bus::Bus::connect(&as_service("coordinator"))
        .await
        .expect("coordinator's NATS user");
    let provisioner_bus = sup_bus::Bus::connect(&as_service("provisioner"))
        .await
        .expect("provisioner's NATS user");
    let key = sup_bus::subjects::active_key("CEN", "intranet");
    let (_, before) = coordinator_bus
        .active()
        .get(&key)
        .await
        .expect("read slot")
        .expect("slot held");
    let forged = tokio::time::timeout(
        Duration::from_secs(5),
        provisioner_bus
            .active()
            .put(&key, bytes::Bytes::from_static(b"forged")),
    )
    .await;
    assert!(
        !matches!(forged, Ok(Ok(_))),
        "the provisioner wrote sup_active"
    );
    let (_, after) = coordinator_bus
        .active()
        .get(&key)
        .await
        .expect("read slot")
        .expect("slot held");
    assert_eq!(before, after, "the slot moved");

    // The server refused the forged write, and nothing any service did in the whole run (so the
    // sample permissions give each service all it needs).
    let violations: Vec<String> = nats
        .log()
        .lines()
        .filter(|l| l.contains("Violation"))
        .map(str::to_string)
        .collect();
    assert!(
        violations.iter().any(|l| l.contains("sup_active")),
        "the forged write was not refused by a permission: {violations:?}"
    );
    assert!(
        violations.iter().all(|l| l.contains("$KV.sup_active")),
        "a service was denied something it needs: {violations:?}"
    );

    // The planted secrets: in no log, no stream message, no status or event output.
    let status = supctl_tls(&pki, &cep, &sep, &["status", "-o", "json"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let events = supctl_tls(&pki, &cep, &sep, &["events", "-o", "json"]);
    assert!(events.status.success(), "{}", text(&events.stderr));
    let mut haystacks = vec![
        ("supctl status".to_string(), text(&status.stdout)),
        ("supctl events".to_string(), text(&events.stdout)),
    ];
    for p in [&coordinator, &provisioner, &logwatch, &health, &scheduler] {
        let log = p.log();
        assert!(
            log.contains("DEBUG"),
            "{} logged nothing at debug: the check would prove little",
            p.name
        );
        haystacks.push((format!("{} log", p.name), log));
    }
    let as_coordinator = sup_testkit::jetstream::Secured {
        ca: pki.path("ca.pem"),
        cert: pki.path("cert.pem"),
        key: pki.path("key.pem"),
        user: "coordinator".into(),
        password: std::fs::read_to_string(pki.path("nats-coordinator.pw"))
            .expect("the coordinator's NATS password")
            .trim_end_matches(['\r', '\n'])
            .to_string(),
    };
    let messages = every_stream_message(nats.url(), &as_coordinator).await;
    assert!(
        messages.iter().any(|m| m.contains("install-account.pw"))
            && messages.iter().any(|m| m.contains("proxy-account.pw")),
        "the password reference is stored (the check looks in the right place)"
    );
    for m in messages {
        haystacks.push(("stream".into(), m));
    }
    for (place, text) in &haystacks {
        assert!(
            !text.contains(PLANTED),
            "a planted secret leaked into {place}:\n{}",
            text.lines()
                .filter(|l| l.contains(PLANTED))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// NATS nkey authentication: the seed comes from a file, the server knows only the public key.
#[tokio::test]
async fn a_service_connects_with_an_nkey_seed_from_a_file() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().expect("seed");
    let config = format!(
        "authorization {{\n  users = [ {{ nkey: {} }} ]\n}}\n",
        user.public_key()
    );
    let nats = NatsServer::start_with_config(&config, &[], &[], false).expect("nats-server");
    let dir = tempfile::tempdir().expect("dir");
    let seed_file = dir.path().join("user.nk");
    std::fs::write(&seed_file, format!("{seed}\n")).expect("write");
    let mut config = sup_bus::BusConfig::new(nats.url());
    config.nkey_seed_file = Some(seed_file);
    let bus = sup_bus::Bus::connect(&config).await.expect("nkey connect");
    bus.sites()
        .put("probe", bytes::Bytes::from_static(b"x"))
        .await
        .expect("write as the nkey user");

    // Without credentials the same server refuses.
    let anonymous = async_nats::connect(nats.url()).await;
    assert!(anonymous.is_err(), "anonymous client accepted");
    // A seed named by an unset variable stops the start with the variable's name.
    let mut both = sup_bus::BusConfig::new(nats.url());
    both.nkey_seed_env = Some("SUP_TEST_UNSET_SEED_VAR".into());
    let e = sup_bus::Bus::connect(&both).await.err().expect("unset env");
    assert!(
        e.to_string().contains("SUP_TEST_UNSET_SEED_VAR"),
        "the error names the variable: {e}"
    );
}

/// A NATS JWT (header.claims.signature, base64url without padding), signed by `issuer`: what
/// `nsc` writes, made here because no maintained crate issues accounts with JetStream limits.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use data_encoding::BASE64URL_NOPAD;
    let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("{subject}{now}"),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let body = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let signed = format!("{header}.{body}");
    let signature = issuer.sign(signed.as_bytes()).expect("sign");
    format!("{signed}.{}", BASE64URL_NOPAD.encode(&signature))
}

/// A `.creds` file as `nsc generate creds` writes it.
fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

/// Decentralised authentication: the server trusts an operator key, the account (with
/// JetStream) is signed by the operator, the user by the account, and the coordinator connects
/// with nothing but the user's `.creds` file, sets up its streams and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_connects_with_a_creds_file() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "SUP",
        serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
            },
            "type": "account",
            "version": 2
        }),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        "coordinator",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        }),
    );
    // JetStream needs the server's own (system) account too.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = nats_jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({ "type": "account", "version": 2 }),
    );
    let config = format!(
        "trusted_keys: [\"{}\"]\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}\n",
        operator.public_key(),
        account.public_key(),
        sys = system.public_key(),
    );
    let nats = NatsServer::start_with_config(&config, &[], &[], false).expect("nats-server");
    let dir = tempfile::tempdir().expect("dir");
    let creds_file = dir.path().join("coordinator.creds");
    let seed = user.seed().expect("seed");
    std::fs::write(&creds_file, creds(&user_jwt, &seed)).expect("creds");

    let (grpc, admin) = (free_port().expect("port"), free_port().expect("port"));
    let file = dir.path().join("coordinator.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{grpc}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[nats]\nurl = \"{}\"\ncreds_file = \"{}\"\n",
            nats.url(),
            creds_file.display()
        ),
    )
    .expect("config");
    let mut coordinator = Process::start(
        "sup-coordinator",
        &["--config", file.to_str().expect("path")],
        &[("RUST_LOG", "debug,h2=info,hyper=info".into())],
    )
    .expect("start");
    coordinator.admin_port = Some(admin);
    wait_ready(&mut coordinator, admin);

    // Streams and buckets were made as the creds user: a site applies and reads back.
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let sites = site_file(
        "[[site]]\ncode = \"CRD\"\nname = \"Creds site\"\nsite_server = \"crd-site.corp.example.com\"\n",
    );
    let applied = supctl(
        &endpoint,
        &["apply", "-f", sites.path().to_str().expect("path")],
    );
    assert!(applied.status.success(), "apply: {}", text(&applied.stderr));
    let status = supctl(&endpoint, &["status", "-o", "json"]);
    assert!(status.status.success(), "status: {}", text(&status.stderr));
    assert!(
        text(&status.stdout).contains("CRD"),
        "{}",
        text(&status.stdout)
    );
    // The seed is a secret: it is in no line the coordinator logged.
    assert!(
        !coordinator.log().contains(&seed),
        "the creds seed leaked into the log"
    );

    // The server really checks the chain: a user signed by an account it does not trust is
    // refused.
    let stranger = nkeys::KeyPair::new_account();
    let intruder = nkeys::KeyPair::new_user();
    let intruder_jwt = nats_jwt(
        &stranger,
        &intruder.public_key(),
        "intruder",
        serde_json::json!({ "pub": {}, "sub": {}, "type": "user", "version": 2 }),
    );
    let bad = dir.path().join("intruder.creds");
    std::fs::write(&bad, creds(&intruder_jwt, &intruder.seed().expect("seed"))).expect("creds");
    let refused = async_nats::ConnectOptions::with_credentials_file(&bad)
        .await
        .expect("a well-formed creds file")
        .connect(nats.url())
        .await;
    assert!(
        refused.is_err(),
        "a user of an untrusted account was accepted"
    );
}
