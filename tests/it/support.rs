//! Shared helpers: running the real binaries against a real nats-server.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sup_bus::{Bus, BusConfig};
use sup_proto::v1::{self, Event, MilestoneObserved, event::Payload};
use sup_testkit::{NatsServer, Process, Service};

pub struct Coordinator {
    /// The process; dropping it kills it.
    pub process: Process,
    pub endpoint: String,
}

/// Starts a `sup-coordinator` process against `nats`.
pub fn coordinator(nats: &NatsServer) -> Coordinator {
    coordinator_at(nats.url(), 1)
}

/// Starts a `sup-coordinator` against any server list, with this many stream replicas.
pub fn coordinator_at(url: &str, replicas: usize) -> Coordinator {
    let process = Service::new("coordinator")
        .and_then(Service::listening)
        .map(|s| {
            s.nats(url, replicas)
                .set("RECONCILE_INTERVAL_SECS", 1)
                .set("FAILOVER_AFTER_SECS", 1)
        })
        .and_then(Service::start)
        .unwrap_or_else(|e| panic!("sup-coordinator: {e}"));
    let endpoint = process.endpoint().expect("endpoint");
    Coordinator { process, endpoint }
}

/// Waits until a service's `/readyz` answers 200 (its listeners are bound before it is ready).
pub fn wait_ready(process: &mut Process, admin: u16) {
    process.admin_port = Some(admin);
    if let Err(e) = process.wait_ready(Duration::from_secs(60)) {
        panic!("{e}");
    }
}

/// Runs `supctl` with `args` against `endpoint`.
pub fn supctl(endpoint: &str, args: &[&str]) -> Output {
    Command::new(sup_testkit::binary("supctl").expect("supctl"))
        .env("SUP_COORDINATOR", endpoint)
        .env_remove("RUST_BACKTRACE")
        .args(args)
        .output()
        .expect("run supctl")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes `content` to a temporary site file.
pub fn site_file(content: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    std::fs::write(f.path(), content).expect("write site file");
    f
}

/// Applies a site file of `content` with `supctl apply` and fails the test, with what supctl
/// said, if it is refused.
pub fn apply_sites(endpoint: &str, content: &str) {
    let file = site_file(content);
    let out = supctl(
        endpoint,
        &["apply", "-f", file.path().to_str().expect("path")],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Applies a site file of `content` with `supctl apply --wait` (at most `timeout`, e.g. `90s`)
/// and fails the test if it does not converge.
pub fn apply_and_wait(endpoint: &str, content: &str, timeout: &str) {
    let file = site_file(content);
    let out = supctl(
        endpoint,
        &[
            "apply",
            "-f",
            file.path().to_str().expect("path"),
            "--wait",
            "--timeout",
            timeout,
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub async fn bus(nats: &NatsServer) -> Bus {
    Bus::connect(&BusConfig::new(nats.url()))
        .await
        .expect("bus")
}

/// Publishes a log milestone as the log watcher would.
pub async fn milestone(bus: &Bus, site: &str, server: &str, name: &str, log: &str) {
    milestone_at(bus, site, server, name, log, None).await
}

/// Publishes a log milestone whose line was written at `line_time`.
pub async fn milestone_at(
    bus: &Bus,
    site: &str,
    server: &str,
    name: &str,
    log: &str,
    line_time: Option<std::time::SystemTime>,
) {
    // Lines of the same milestone at different times are different events.
    let when = line_time
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| format!(":{}", d.as_nanos()))
        .unwrap_or_default();
    let e = Event {
        id: format!("test:{site}:{server}:{name}{when}"),
        time: Some(std::time::SystemTime::now().into()),
        site: site.into(),
        server: server.into(),
        payload: Some(Payload::Milestone(MilestoneObserved {
            name: name.into(),
            log: log.into(),
            line: format!("{name} on {server}"),
            line_time: line_time.map(Into::into),
            ..Default::default()
        })),
        ..Default::default()
    };
    bus.publish_event(&e).await.expect("publish milestone");
}

/// Drives a role to `ready` with the milestones the procedure names.
pub async fn make_ready(bus: &Bus, site: &str, server: &str) {
    milestone(bus, site, server, "role_install_succeeded", "SUPSetup.log").await;
    milestone(bus, site, server, "wsus_components_healthy", "WSUSCtrl.log").await;
    milestone(bus, site, server, "wsus_database_ok", "WSUSCtrl.log").await;
}

/// Every event stored so far, in stream order.
pub async fn all_events(bus: &Bus) -> Vec<(u64, Event)> {
    use futures::StreamExt;
    // Right after a node is lost the stream may briefly have no leader; retry for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (stored, mut watch) = loop {
        match bus
            .watch_events(sup_bus::subjects::EVENTS_ALL.into(), Some(1))
            .await
        {
            Ok(w) => break w,
            Err(e) => {
                assert!(Instant::now() < deadline, "watching events: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let mut out = Vec::new();
    if stored == 0 {
        return out;
    }
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("events arrive")
    {
        let w = item.expect("event");
        out.push((w.sequence, w.event));
        if w.pending == 0 {
            break;
        }
    }
    out
}

/// Polls `supctl status -o json` until `pred` holds (a failing call is retried: on a cluster that
/// is electing leaders the coordinator answers "unavailable" for a moment).
pub async fn wait_status(
    endpoint: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = supctl(endpoint, &["status", "-o", "json"]);
        let last = if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
            if pred(&v) {
                return v;
            }
            format!("{v:#}")
        } else {
            text(&out.stderr)
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn role_states(status: &serde_json::Value, site: &str) -> Vec<(String, String)> {
    status["sites"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["code"] == site)
        .flat_map(|s| s["roles"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["server"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub fn active_changes(events: &[(u64, Event)], site: &str) -> Vec<(u64, v1::ActiveChanged, u64)> {
    events
        .iter()
        .filter(|(_, e)| e.site == site)
        .filter_map(|(seq, e)| match &e.payload {
            Some(Payload::ActiveChanged(a)) => Some((*seq, a.clone(), e.epoch)),
            _ => None,
        })
        .collect()
}
