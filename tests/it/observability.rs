//! What an operator watches: every metric in the README's table is served by the service the
//! table names, the alert rules and the dashboard name only those metrics, and JSON log lines
//! carry the trace and span ids of the span they were logged in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sup_testkit::NatsServer;

use crate::health::start_health;
use crate::procedure::stack;
use crate::scheduler::{start_scheduler, sync_cli};
use crate::support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README's metrics table: metric name → the services that serve it.
fn documented_metrics() -> BTreeMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("### Metrics")
        .nth(1)
        .expect("a Metrics section in the README");
    let mut metrics = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `sup_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let services = cells[4].split(',').map(|s| s.trim().to_string()).collect();
        metrics.insert(name, services);
    }
    assert!(
        metrics.len() >= 20,
        "the table looks truncated: {metrics:?}"
    );
    metrics
}

pub fn scrape(admin: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("connect admin");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    answer
}

const SCHEDULED: &str = r#"
[[site]]
code = "CEN"
name = "Central site"
site_server = "cen-site.corp.example.com"

[site.software_updates]
sync_source = "microsoft_update"
schedule = "every 1 days"

[[site.site_system]]
server = "cen-sup01.corp.example.com"

[[site.software_update_point]]
server = "cen-sup01.corp.example.com"
active = "intranet"
http_port = 8530
https_port = 8531
"#;

/// Runs the whole stack through an apply and a synchronization, so that every labelled family
/// has been observed, then checks each service's `/metrics` against the README's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_is_served() {
    // The emulated WSUS sites answer on the ports the SUP is declared with, so it probes healthy.
    let (http, https) = (
        sup_testkit::free_port().expect("port"),
        sup_testkit::free_port().expect("port"),
    );
    let (http_l, https_l, ports) = (
        format!("127.0.0.1:{http}"),
        format!("127.0.0.1:{https}"),
        format!("{http},{https}"),
    );
    let s = stack(&[
        "--http",
        &http_l,
        "--https",
        &https_l,
        "--default-ports",
        &ports,
    ]);
    let (health, health_ep) = start_health(s.nats.url(), &s.emulator.ca);
    let (scheduler, sched_ep) = start_scheduler(s.nats.url());
    let file = site_file(
        &SCHEDULED
            .replace("8530", &http.to_string())
            .replace("8531", &https.to_string()),
    );
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
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = sync_cli(
        &s.coordinator.endpoint,
        &sched_ep,
        &["sync", "run", "--site", "CEN", "--wait"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // A gRPC call to the health service, so its server metrics have a sample too.
    let channel = tonic::transport::Channel::from_shared(health_ep)
        .expect("endpoint")
        .connect()
        .await
        .expect("health gRPC");
    let _ = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;

    let services: [(&str, &sup_testkit::Process); 5] = [
        ("coordinator", &s.coordinator.process),
        ("provisioner", &s.provisioner),
        ("logwatch", &s.logwatch),
        ("health", &health),
        ("scheduler", &scheduler),
    ];
    let documented = documented_metrics();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let scraped = loop {
        let scraped: BTreeMap<String, String> = services
            .iter()
            .map(|(name, p)| {
                (
                    name.to_string(),
                    scrape(p.admin_port.expect("the starter records the admin port")),
                )
            })
            .collect();
        let mut missing = Vec::new();
        for (metric, on) in &documented {
            for service in on {
                let body = scraped
                    .get(service)
                    .unwrap_or_else(|| panic!("the table names an unknown service {service}"));
                if !body.contains(&format!("# TYPE {metric} ")) {
                    missing.push(format!("{metric} on {service}"));
                }
            }
        }
        if missing.is_empty() {
            break scraped;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "documented but not served: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // And the other way: nothing served under the sup_ prefix is undocumented.
    for (service, body) in &scraped {
        for line in body.lines().filter(|l| l.starts_with("# TYPE sup_")) {
            let name = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(
                documented.contains_key(name),
                "{service} serves {name}, which the README does not document"
            );
        }
    }
    // The state gauges say what the stack is in.
    let coordinator = &scraped["coordinator"];
    assert!(
        coordinator.contains("sup_slot_active{site=\"CEN\",slot=\"intranet\"} 1"),
        "{coordinator}"
    );
    // One role, in whatever state the health probes have put it by now.
    let roles: i64 = coordinator
        .lines()
        .filter(|l| l.starts_with("sup_roles{site=\"CEN\","))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum();
    assert_eq!(roles, 1, "{coordinator}");
    assert!(
        scraped["scheduler"].contains("sup_sync_runs_total{result=\"succeeded\"} 1"),
        "{}",
        scraped["scheduler"]
    );
}

/// Metric names an expression uses, without the exposition suffixes.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("sup_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            let name = &expr[start..end];
            let base = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(base.to_string());
        }
        i = end;
    }
    out
}

#[test]
fn alert_rules_and_dashboard_name_only_served_metrics() {
    let documented = documented_metrics();
    let dir = root().join("deploy/observability");

    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("alerts.yml")).expect("alerts"))
            .expect("alerts.yml parses as YAML");
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("every rule has an expression");
            let used = metrics_in(expr);
            // Prometheus's own `up` says whether a service is scraped at all.
            assert!(
                !used.is_empty() || expr.contains("up{job"),
                "{alert} uses no SUP metric"
            );
            assert!(
                rule["annotations"]["runbook_url"].as_str().is_some()
                    && rule["annotations"]["summary"].as_str().is_some(),
                "{alert} has no summary or runbook_url"
            );
            for m in used {
                assert!(
                    documented.contains_key(&m),
                    "{alert} uses {m}, which is not served"
                );
            }
            alerts.insert(alert.to_string());
        }
    }
    for want in [
        "SupServiceDown",
        "SupServiceMissing",
        "SupNatsDisconnected",
        "SupJetStreamUnavailable",
        "SupRoleFailed",
        "SupSlotWithoutActiveSup",
        "SupRoleStuck",
        "SupSyncFailed",
        "SupSyncOverdue",
        "SupUnhealthy",
        "SupLogWatcherLagging",
        "SupCommandRedeliveries",
    ] {
        assert!(alerts.contains(want), "no {want} rule");
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dashboard.json")).expect("dash"))
            .expect("dashboard.json parses");
    let mut shown = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for m in metrics_in(expr) {
                assert!(
                    documented.contains_key(&m),
                    "the dashboard uses {m}, not served"
                );
                shown.insert(m);
            }
        }
    }
    let unshown: Vec<_> = documented.keys().filter(|m| !shown.contains(*m)).collect();
    assert!(
        unshown.is_empty(),
        "metrics on no dashboard panel: {unshown:?}"
    );

    let collector: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(dir.join("otel-collector.yaml")).expect("collector"),
    )
    .expect("otel-collector.yaml parses");
    assert!(
        collector["service"]["pipelines"]["traces"]["receivers"]
            .as_sequence()
            .is_some_and(|r| r.iter().any(|x| x.as_str() == Some("otlp"))),
        "the collector receives OTLP traces"
    );
}

#[test]
fn json_log_lines_carry_trace_and_span_ids() {
    let nats = NatsServer::start().expect("nats-server");
    // SAFETY: nextest runs each test in its own process.
    unsafe { std::env::set_var("SUP_LOG_FORMAT", "json") };
    let coordinator = coordinator(&nats);
    let file = site_file(
        r#"
[[site]]
code = "CEN"
name = "Central site"
site_server = "cen-site.corp.example.com"
"#,
    );
    let out = supctl(
        &coordinator.endpoint,
        &["apply", "-f", file.path().to_str().expect("path")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = coordinator.process.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let applied = lines
            .iter()
            .find(|l| l["fields"]["message"] == "site applied");
        if let Some(line) = applied {
            let hex = |v: &serde_json::Value, n: usize| {
                v.as_str()
                    .is_some_and(|s| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            assert!(hex(&line["trace_id"], 32), "{line}");
            assert!(hex(&line["span_id"], 16), "{line}");
            assert_eq!(line["level"], "INFO");
            assert_eq!(line["fields"]["site"], "CEN", "{line}");
            // Every line is JSON.
            assert!(
                log.lines()
                    .all(|l| l.trim().is_empty() || l.starts_with('{')),
                "{log}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `site applied` line:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
