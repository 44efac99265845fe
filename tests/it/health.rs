//! The health service and automatic failover, through the real binaries.

use std::time::{Duration, Instant};

use sup_proto::v1::{self, event::Payload, health_service_client::HealthServiceClient};
use sup_testkit::{Process, Service, free_port};

use crate::procedure::stack;
use crate::support::*;

pub fn start_health(nats_url: &str, ca: &std::path::Path) -> (Process, String) {
    start_health_with(nats_url, ca, "")
}

/// The health service with `extra` TOML tables (e.g. a `[port_map]`) in its configuration.
pub fn start_health_with(nats_url: &str, ca: &std::path::Path, extra: &str) -> (Process, String) {
    let p = Service::new("health")
        .and_then(Service::listening)
        .map(|s| {
            s.nats(nats_url, 1).config(format!(
                "interval_ms = 300\ntimeout_ms = 500\nmilestone_max_age_secs = 30\nca_file = \"{}\"\n[resolve]\n\"*\" = \"127.0.0.1\"\n{extra}",
                ca.display()
            ))
        })
        .and_then(Service::start)
        .unwrap_or_else(|e| panic!("sup-health: {e}"));
    let endpoint = p.endpoint().expect("endpoint");
    (p, endpoint)
}

/// Applies the `auto` site AUT: a1 active, a2 standby, both with SSL on the emulator's ports.
pub fn apply_auto_site(endpoint: &str, http: u16, https: u16) {
    apply_and_wait(
        endpoint,
        &format!(
            "[[site]]\ncode = \"AUT\"\nfailover = \"auto\"\n[[site.site_system]]\nserver = \"a1.corp.example.com\"\n[[site.site_system]]\nserver = \"a2.corp.example.com\"\n[[site.software_update_point]]\nserver = \"a1.corp.example.com\"\nactive = \"intranet\"\nhttp_port = {http}\nhttps_port = {https}\nssl = true\n[[site.software_update_point]]\nserver = \"a2.corp.example.com\"\nhttp_port = {http}\nhttps_port = {https}\nssl = true\n"
        ),
        "60s",
    );
}

async fn report(
    c: &mut HealthServiceClient<tonic::transport::Channel>,
    server: &str,
) -> Option<v1::HealthReport> {
    c.get_health(v1::GetHealthRequest {
        site: "AUT".into(),
        server: server.into(),
    })
    .await
    .ok()?
    .into_inner()
    .reports
    .into_iter()
    .next()
}

async fn wait_health(
    c: &mut HealthServiceClient<tonic::transport::Channel>,
    server: &str,
    health: v1::Health,
    component: Option<(&str, v1::ProbeResult)>,
) -> v1::HealthReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = report(c, server).await
            && r.health == health as i32
            && component.is_none_or(|(name, result)| {
                r.components
                    .iter()
                    .any(|x| x.component == name && x.result == result as i32)
            })
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{server} never became {health:?} with {component:?}: {:?}",
            report(c, server).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ctl(control: &str, args: &[&str]) {
    let out = std::process::Command::new(sup_testkit::binary("wsus-emulator").expect("bin"))
        .args(["ctl", "--control", control])
        .args(args)
        .output()
        .expect("ctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn faults_are_classified_and_an_auto_site_fails_over() {
    // The emulator's WSUS sites answer on its own ports, so the SUPs are declared with them.
    let http = free_port().expect("port");
    let https = free_port().expect("port");
    let ports = format!("{http},{https}");
    let http_l = format!("127.0.0.1:{http}");
    let https_l = format!("127.0.0.1:{https}");
    let s = stack(&[
        "--http",
        &http_l,
        "--https",
        &https_l,
        "--default-ports",
        &ports,
        "--health-interval-ms",
        "200",
    ]);
    let (_health, endpoint) = start_health(s.nats.url(), &s.emulator.ca);
    apply_auto_site(&s.coordinator.endpoint, http, https);
    let mut c = HealthServiceClient::connect(endpoint.clone())
        .await
        .expect("health client");
    let r = wait_health(
        &mut c,
        "a2.corp.example.com",
        v1::Health::Healthy,
        Some(("tls", v1::ProbeResult::Ok)),
    )
    .await;
    assert_eq!(
        r.components.len(),
        8,
        "tcp, tls and six service steps: {r:?}"
    );
    wait_health(&mut c, "a1.corp.example.com", v1::Health::Healthy, None).await;

    // supctl shows the same reports, and probes a server on demand.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(sup_testkit::binary("supctl").expect("supctl"))
            .env("SUP_HEALTH", &endpoint)
            .args(args)
            .output()
            .expect("supctl");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&["health", "--site", "AUT", "-o", "json"])).expect("JSON");
    let servers: Vec<&str> = listed
        .as_array()
        .expect("reports")
        .iter()
        .filter(|r| r["health"] == "healthy")
        .filter_map(|r| r["server"].as_str())
        .collect();
    assert!(
        servers.contains(&"a1.corp.example.com") && servers.contains(&"a2.corp.example.com"),
        "{listed}"
    );
    let probed: serde_json::Value = serde_json::from_str(&cli(&[
        "health",
        "--probe",
        "a2.corp.example.com",
        "-o",
        "json",
    ]))
    .expect("JSON");
    assert_eq!(probed[0]["server"], "a2.corp.example.com");
    assert_eq!(
        probed[0]["components"].as_array().map(Vec::len),
        Some(8),
        "{probed}"
    );
    assert!(
        cli(&["health", "-o", "name"])
            .lines()
            .any(|l| l == "a1.corp.example.com")
    );

    // Each fault on the standby: its classification, then recovery.
    for (fault, component, result) in [
        ("html-error", "server_sync", v1::ProbeResult::HtmlError),
        ("db-down", "client_web_service", v1::ProbeResult::SoapFault),
        ("slow", "server_sync", v1::ProbeResult::Timeout),
        ("down", "server_sync", v1::ProbeResult::ConnectFailed),
    ] {
        ctl(
            &s.emulator.control,
            &["fault", "a2.corp.example.com", fault],
        );
        wait_health(
            &mut c,
            "a2.corp.example.com",
            v1::Health::Unhealthy,
            Some((component, result)),
        )
        .await;
        ctl(&s.emulator.control, &["clear", "a2.corp.example.com"]);
        wait_health(&mut c, "a2.corp.example.com", v1::Health::Healthy, None).await;
    }
    // The other server was never disturbed by the standby's troubles.
    assert_eq!(
        report(&mut c, "a1.corp.example.com")
            .await
            .map(|r| r.health),
        Some(v1::Health::Healthy as i32)
    );

    let before = wait_status(&s.coordinator.endpoint, "a2 ready and healthy", |st| {
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

    // The active SUP goes down: the slot moves to the healthy standby with a newer epoch.
    ctl(
        &s.emulator.control,
        &["fault", "a1.corp.example.com", "down"],
    );
    let after = wait_status(&s.coordinator.endpoint, "failover to a2", |st| {
        st["sites"][0]["active"]["intranet"]["target"] == "a2.corp.example.com"
    })
    .await;
    assert!(
        after["sites"][0]["active"]["intranet"]["epoch"]
            .as_u64()
            .expect("epoch")
            > old_epoch
    );
    // Re-applying the unchanged file with --wait finishes: the declared active SUP is a ready
    // standby now, and the slot stays with the server the failover chose.
    apply_auto_site(&s.coordinator.endpoint, http, https);
    let kept = wait_status(&s.coordinator.endpoint, "status", |_| true).await;
    assert_eq!(
        kept["sites"][0]["active"]["intranet"]["target"],
        "a2.corp.example.com"
    );
    let bus = bus(&s.nats).await;
    let events = all_events(&bus).await;
    let failover = events.iter().find_map(|(_, e)| match &e.payload {
        Some(Payload::ActiveChanged(a)) if e.site == "AUT" && a.target == "a2.corp.example.com" => {
            Some(a.clone())
        }
        _ => None,
    });
    assert!(failover.is_some_and(|a| a.cause.starts_with("failover") && a.previous == "a1.corp.example.com"));
    // Never two active SUPs in the slot.
    let mut active = std::collections::BTreeSet::new();
    for (seq, e) in events.iter().filter(|(_, e)| e.site == "AUT") {
        if let Some(Payload::RoleStateChanged(r)) = &e.payload {
            if r.to == v1::RoleState::Active as i32 {
                active.insert(e.server.clone());
            } else {
                active.remove(&e.server);
            }
            assert!(active.len() <= 1, "two active at #{seq}: {active:?}");
        }
    }
    assert!(events.iter().any(|(_, e)| e.server == "a1.corp.example.com"
        && matches!(&e.payload, Some(Payload::HealthChanged(h)) if h.to == v1::Health::Unhealthy as i32)));

    // Now the new active goes down too, with the old one still down: no healthy standby. The slot
    // stays where it is and an alert says so.
    ctl(
        &s.emulator.control,
        &["fault", "a2.corp.example.com", "down"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = all_events(&bus).await;
        if events.iter().any(|(_, e)| {
            e.site == "AUT"
                && matches!(&e.payload, Some(Payload::Alert(a)) if a.kind == "no_healthy_standby")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no alert about the missing standby"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = wait_status(&s.coordinator.endpoint, "status", |_| true).await;
    assert_eq!(
        st["sites"][0]["active"]["intranet"]["target"], "a2.corp.example.com",
        "the slot is kept"
    );
}

/// A health replica named `name` probing every second, beating every 250 ms.
fn start_replica(nats_url: &str, ca: &std::path::Path, name: &str) -> Process {
    Service::new("health")
        .and_then(Service::listening)
        .map(|s| {
            s.nats(nats_url, 1).config(format!(
                "interval_ms = 1000\nheartbeat_ms = 250\nreplica = \"{name}\"\ntimeout_ms = 500\nmilestone_max_age_secs = 0\nca_file = \"{}\"\n[resolve]\n\"*\" = \"127.0.0.1\"\n",
                ca.display()
            ))
        })
        .and_then(Service::start)
        .unwrap_or_else(|e| panic!("sup-health {name}: {e}"))
}

/// A replica's share as its metrics say: the servers it probes, and those whose health it
/// exports.
fn share_of(replica: &Process) -> (u64, u64) {
    let metrics = crate::observability::scrape(replica.admin_port.expect("admin port"));
    let probed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sup_health_probed_servers "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sup_health_probed_servers: {metrics}"));
    let exported = metrics
        .lines()
        .filter(|l| l.starts_with("sup_health{") && l.ends_with(" 1"))
        .count() as u64;
    (probed, exported)
}

/// Every report written to `sup_health`: when it was seen, its server and the replica that
/// probed it.
type Probes = std::sync::Arc<std::sync::Mutex<Vec<(Instant, String, String)>>>;

fn record_probes(bus: &sup_bus::Bus) -> Probes {
    use futures::StreamExt as _;
    use sup_proto::prost::Message as _;
    let probes = Probes::default();
    let seen = probes.clone();
    let health = bus.health().clone();
    tokio::spawn(async move {
        let mut changes = Box::pin(health.watch_latest().await.expect("watch sup_health"));
        while let Some(Ok(change)) = changes.next().await {
            if let Ok(r) = v1::HealthReport::decode(change.value) {
                seen.lock()
                    .expect("probes")
                    .push((Instant::now(), r.server, r.prober));
            }
        }
    });
    probes
}

/// Per server, the replicas that probed it and how often, from `since` on.
fn probes_since(
    probes: &Probes,
    since: Instant,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>> {
    let mut out = std::collections::BTreeMap::<String, std::collections::BTreeMap<_, _>>::new();
    for (at, server, prober) in probes.lock().expect("probes").iter() {
        if *at >= since {
            *out.entry(server.clone())
                .or_default()
                .entry(prober.clone())
                .or_insert(0) += 1;
        }
    }
    out
}

/// Watches `window` of probing and checks each of `servers` was probed by one replica, about
/// once a second, and returns the replicas that probed.
async fn each_probed_once(
    probes: &Probes,
    servers: &[String],
    window: Duration,
) -> std::collections::BTreeSet<String> {
    let since = Instant::now();
    tokio::time::sleep(window).await;
    let seen = probes_since(probes, since);
    let rounds = window.as_secs() as usize;
    let mut replicas = std::collections::BTreeSet::new();
    for server in servers {
        let by = seen.get(server).cloned().unwrap_or_default();
        assert_eq!(by.len(), 1, "{server} probed by one replica: {seen:?}");
        let count: usize = by.values().sum();
        // Once an interval; twice as often would mean two replicas probing it.
        assert!(
            (rounds - 2..=rounds + 1).contains(&count),
            "{server} probed {count} times in {rounds} intervals: {seen:?}"
        );
        replicas.extend(by.into_keys());
    }
    replicas
}

#[tokio::test]
async fn health_replicas_share_the_servers_and_take_over_a_killed_ones() {
    let http = free_port().expect("port");
    let https = free_port().expect("port");
    let ports = format!("{http},{https}");
    let (http_l, https_l) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{https}"));
    let s = stack(&[
        "--http",
        &http_l,
        "--https",
        &https_l,
        "--default-ports",
        &ports,
    ]);
    let servers: Vec<String> = (1..=8).map(|i| format!("sh{i}.corp.example.com")).collect();
    let mut file = String::from("[[site]]\ncode = \"SHR\"\n");
    for server in &servers {
        file += &format!("[[site.site_system]]\nserver = \"{server}\"\n");
    }
    for (i, server) in servers.iter().enumerate() {
        let active = if i == 0 {
            "active = \"intranet\"\n"
        } else {
            ""
        };
        file += &format!(
            "[[site.software_update_point]]\nserver = \"{server}\"\n{active}http_port = {http}\nhttps_port = {https}\n"
        );
    }
    apply_and_wait(&s.coordinator.endpoint, &file, "90s");

    let bus = bus(&s.nats).await;
    let probes = record_probes(&bus);
    let r1 = start_replica(s.nats.url(), &s.emulator.ca, "r1");
    let mut r2 = start_replica(s.nats.url(), &s.emulator.ca, "r2");

    // Both replicas probe, and between them every server.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = probes_since(&probes, Instant::now() - Duration::from_secs(2));
        let probers: std::collections::BTreeSet<_> =
            seen.values().flat_map(|by| by.keys().cloned()).collect();
        if servers.iter().all(|s| seen.contains_key(s)) && probers.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas never shared the servers: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shared = each_probed_once(&probes, &servers, Duration::from_secs(5)).await;
    assert_eq!(shared.len(), 2, "both replicas have a share: {shared:?}");
    let (share1, share2) = (share_of(&r1), share_of(&r2));
    assert_eq!(
        share1.0 + share2.0,
        8,
        "the shares add up: {share1:?} {share2:?}"
    );
    assert_eq!(
        (share1.1, share2.1),
        (share1.0, share2.0),
        "each exports the health of its own share only"
    );

    // A replica dies without a word: after three missed beats the other probes its servers too.
    r2.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = each_probed_once(&probes, &servers, Duration::from_secs(5)).await;
    assert_eq!(
        left,
        ["r1".to_string()].into(),
        "the survivor probes every server"
    );

    // A replica joins: the servers are shared again.
    let _r3 = start_replica(s.nats.url(), &s.emulator.ca, "r3");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rejoined = each_probed_once(&probes, &servers, Duration::from_secs(5)).await;
    assert_eq!(rejoined.len(), 2, "the newcomer has a share: {rejoined:?}");
}
