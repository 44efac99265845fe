//! Chaos trials of the SUP control plane on a real three-node NATS cluster (`sync_interval:
//! always`, streams and buckets with three replicas): coordinator replicas killed and frozen
//! during activation storms, the KV stream's leader killed during transitions, the active SUP of
//! an `auto` site taken down in the emulator, the log watcher killed while logs rotate. Then an
//! independent checker reads the whole event history, the site-system agent's own journal and
//! every acknowledged request, and counts what must never happen.

mod checker;
mod stack;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sup_bus::setup::{ACTIVE_BUCKET, EVENTS_STREAM, bucket_stream, key_subject};
use sup_proto::v1;
use sup_testkit::jetstream::StoredMessage;
use tokio::sync::Mutex;

pub use checker::Check;
pub use stack::Stack;

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// SIGKILL of a coordinator replica during an activation storm, then a restart.
    CoordinatorKill,
    /// SIGSTOP of a coordinator replica during an activation storm, SIGCONT a second later.
    CoordinatorPause,
    /// SIGKILL of the node that leads the `sup_active` bucket's stream during transitions.
    KvLeaderKill,
    /// The active SUP of an `auto` site taken down in the emulator.
    Failover,
    /// SIGKILL of the log watcher while the logs it follows rotate, then a restart.
    LogwatchKill,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::CoordinatorKill,
        Kind::CoordinatorPause,
        Kind::KvLeaderKill,
        Kind::Failover,
        Kind::LogwatchKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::CoordinatorKill => "coordinator_kill",
            Kind::CoordinatorPause => "coordinator_pause",
            Kind::KvLeaderKill => "kv_leader_kill",
            Kind::Failover => "failover",
            Kind::LogwatchKill => "logwatch_kill",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// What the kind's time figure measures.
    fn timed(self) -> &'static str {
        match self {
            Kind::CoordinatorKill | Kind::CoordinatorPause => {
                "fault -> next acknowledged compare-and-set"
            }
            Kind::KvLeaderKill => "kill -> next compare-and-set in the store",
            Kind::Failover => "SUP down -> slot moved to the other SUP",
            Kind::LogwatchKill => "kill -> log watcher ready again",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Trials per kind.
    pub trials: usize,
    pub kinds: Vec<Kind>,
    /// The folder of the workspace's binaries.
    pub bins: PathBuf,
}

/// One kind's trials.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub kind: Kind,
    pub trials: usize,
    /// Trials whose fault was injected and recovered from in time.
    pub recovered: usize,
    /// Requests made during the trials, by outcome.
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub measures: &'static str,
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub trials_per_kind: usize,
    pub kinds: Vec<KindReport>,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub seconds: f64,
}

/// An acknowledged activation: the coordinator said the slot is `target` at `epoch`.
#[derive(Debug, Clone)]
pub struct Acked {
    pub site: String,
    pub target: String,
    pub epoch: u64,
}

/// What the trial driver saw.
#[derive(Default)]
struct Record {
    acked: Mutex<Vec<Acked>>,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Every acknowledged request: when it started, when it came back, the epoch it reported.
    answered: Mutex<Vec<(Instant, Instant, u64)>>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Concurrent SetActive requests on CHX until `stop`; each task keeps to one replica (as a
/// client of one replica would), half the tasks on each.
/// How long a storm client waits for one `SetActive`.
const STORM_REQUEST_DEADLINE: Duration = Duration::from_secs(3);

fn storm(stack: &Arc<Stack>, record: &Arc<Record>, stop: &Arc<AtomicBool>, tasks: usize) {
    static OP: AtomicU64 = AtomicU64::new(0);
    for t in 0..tasks {
        let (stack, record, stop) = (stack.clone(), record.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = t;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let op = OP.fetch_add(1, Ordering::Relaxed);
                let target = stack::CHX[(n * 7 + t) % 3];
                // Like any automation, a storm client gives a request a deadline: one held while
                // its change waits to be announced does not keep the client from asking again.
                let answer = match stack.client(t).await {
                    Some(mut c) => tokio::time::timeout(
                        STORM_REQUEST_DEADLINE,
                        c.set_active(v1::SetActiveRequest {
                            site: "CHX".into(),
                            slot: v1::Slot::Intranet as i32,
                            target: target.into(),
                            op_id: format!("chaos-{}-{op}", std::process::id()),
                        }),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok),
                    None => None,
                };
                match answer {
                    Some(r) => {
                        let slot = r.into_inner();
                        record.ok.fetch_add(1, Ordering::Relaxed);
                        record
                            .answered
                            .lock()
                            .await
                            .push((started, Instant::now(), slot.epoch));
                        record.acked.lock().await.push(Acked {
                            site: "CHX".into(),
                            target: slot.target,
                            epoch: slot.epoch,
                        });
                    }
                    None => {
                        record.failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
}

/// The time from `fault` until a request started after it came back with a new epoch: a
/// compare-and-set that succeeded after the fault (a request for the current holder is answered
/// without writing, so it does not count). Waits at most `patience`.
async fn next_ok_after(record: &Record, fault: Instant, patience: Duration) -> Option<f64> {
    let deadline = fault + patience;
    let before = record
        .answered
        .lock()
        .await
        .iter()
        .filter(|(_, done, _)| *done < fault)
        .map(|(_, _, epoch)| *epoch)
        .max()
        .unwrap_or(0);
    loop {
        let first = record
            .answered
            .lock()
            .await
            .iter()
            .filter(|(s, _, epoch)| *s >= fault && *epoch > before)
            .map(|(_, done, _)| *done)
            .min();
        if let Some(done) = first {
            return Some(done.duration_since(fault).as_secs_f64());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CHX's intranet slot revision as the stream leader has it (tried for a while).
async fn slot_revision(stack: &Stack) -> Option<u64> {
    let key = sup_bus::subjects::active_key("CHX", "intranet");
    for _ in 0..50 {
        if let Ok(Some((_, rev))) = stack.bus.active().get_from_leader(&key).await {
            return Some(rev);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The time from `fault` (wall clock) to the first compare-and-set of the slot after `before`,
/// by the store's own timestamp of that revision: when the write happened, not when a poll
/// happened to see it (reads sent during the election are never answered and would round the
/// figure up to their timeout). Messages are read by sequence from the stream leader, not
/// through a history consumer: the storm goes on, and the key keeps only its last revisions, so
/// the first write after the kill must be read before it leaves. Waits at most `patience`.
async fn next_cas_after(
    stack: &Stack,
    before: u64,
    fault: SystemTime,
    patience: Duration,
) -> Option<f64> {
    let stream = bucket_stream(ACTIVE_BUCKET);
    let subject = key_subject(
        ACTIVE_BUCKET,
        &sup_bus::subjects::active_key("CHX", "intranet"),
    );
    let fault = fault.duration_since(UNIX_EPOCH).ok()?.as_nanos() as i128;
    let written = |m: &StoredMessage| m.stored_nanos;
    let deadline = Instant::now() + patience;
    // The slot's latest revision once it is a write made after the kill.
    let latest = loop {
        if let Ok(Ok(m)) = tokio::time::timeout(
            Duration::from_millis(300),
            stack.inspector.last_on_subject(&stream, &subject),
        )
        .await
            && m.sequence > before
            && written(&m) >= fault
        {
            break m;
        }
        if Instant::now() > deadline {
            eprintln!(
                "[chaos] no compare-and-set of the slot within {patience:?} of a leader kill"
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // An earlier write after the kill, if the store still has it (sequence = revision; other
    // keys' revisions and purged ones are passed over).
    let mut first = written(&latest);
    for sequence in before + 1..latest.sequence {
        let left = (deadline + patience).saturating_duration_since(Instant::now());
        let read = sup_bus::resend(left, Duration::from_millis(300), || {
            stack.inspector.message(&stream, sequence)
        })
        .await;
        if let Some(Ok(m)) = read
            && m.subject.as_str() == subject
            && written(&m) >= fault
        {
            first = first.min(written(&m));
            break;
        }
    }
    Some((first - fault) as f64 / 1e9)
}

/// Waits until the event history holds CHX's current slot revision (the audit trail caught up
/// with the store): a trial has recovered only then, and the next fault starts from a settled
/// system rather than from the last one's backlog.
async fn history_caught_up(stack: &Stack, patience: Duration) -> bool {
    use sup_proto::prost::Message as _;
    let deadline = Instant::now() + patience;
    let subject = sup_bus::subjects::event("CHX", sup_bus::subjects::kind::ACTIVE_CHANGED);
    while Instant::now() < deadline {
        if let Some(rev) = slot_revision(stack).await
            && let Ok(m) = stack
                .inspector
                .last_on_subject(EVENTS_STREAM, &subject)
                .await
            && let Ok(e) = v1::Event::decode(m.payload)
            && e.epoch >= rev
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The node that leads the `sup_active` bucket's stream, from the JetStream API.
async fn kv_leader(stack: &Stack) -> Option<usize> {
    let state = stack
        .inspector
        .stream_state(&bucket_stream(ACTIVE_BUCKET))
        .await?;
    let leader = state.leader?;
    stack.cluster.lock().ok()?.index_of(&leader)
}

fn with_node(
    stack: &Stack,
    i: usize,
    f: impl FnOnce(&mut sup_testkit::NatsServer) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut cluster = stack
        .cluster
        .lock()
        .map_err(|_| anyhow::anyhow!("cluster lock poisoned"))?;
    f(&mut cluster.nodes[i])?;
    Ok(())
}

/// Waits until the `sup_active` stream has a leader and every replica is current.
async fn kv_settled(stack: &Stack, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Some(s) = stack
            .inspector
            .stream_state(&bucket_stream(ACTIVE_BUCKET))
            .await
            && s.leader.is_some()
            && s.replicas.len() == 2
            && s.replicas
                .iter()
                .all(|(_, current, offline)| *current && !offline)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn storm_trial(
    stack: &Arc<Stack>,
    kind: Kind,
    trial: usize,
    record: &Arc<Record>,
) -> anyhow::Result<Option<f64>> {
    let stop = Arc::new(AtomicBool::new(false));
    storm(stack, record, &stop, 6);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fault = Instant::now();
    let victim = trial % 2;
    let measured = match kind {
        Kind::CoordinatorKill => {
            let mut c = stack.coordinators[victim].lock().await;
            c.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            stack::restart(&mut c).await?;
            drop(c);
            next_ok_after(record, fault, Duration::from_secs(30)).await
        }
        Kind::CoordinatorPause => {
            let c = stack.coordinators[victim].lock().await;
            c.signal("STOP")?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.signal("CONT")?;
            drop(c);
            next_ok_after(record, fault, Duration::from_secs(30)).await
        }
        Kind::KvLeaderKill => {
            let Some(leader) = kv_leader(stack).await else {
                stop.store(true, Ordering::Relaxed);
                return Ok(None);
            };
            let before = slot_revision(stack).await;
            with_node(stack, leader, |n| {
                n.kill();
                Ok(())
            })?;
            let fault = SystemTime::now();
            let t = match before {
                Some(before) => next_cas_after(stack, before, fault, Duration::from_secs(30)).await,
                None => None,
            };
            // The compare-and-set went through a new leader (the old one is down), or the kill
            // missed the leader and the trial does not count.
            // Right after the kill the client may still be moving to another server: ask again
            // for a while.
            let mut now = None;
            for _ in 0..50 {
                now = kv_leader(stack).await;
                if now.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let moved = now.is_some_and(|now| now != leader);
            if !moved {
                eprintln!(
                    "[chaos] kv_leader_kill trial {trial}: the leader did not move (n{leader} -> {now:?}); not counted"
                );
            }
            if std::env::var_os("SUP_CHAOS_DEBUG").is_some() {
                let state = format!(
                    "{:?}",
                    stack
                        .inspector
                        .stream_state(&bucket_stream(ACTIVE_BUCKET))
                        .await
                );
                let at = fault
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or_default();
                eprintln!(
                    "[debug] killed n{leader} at {at:.3} (unix); next CAS {t:?}; leader now {now:?}; {state}"
                );
            }
            with_node(stack, leader, |n| n.restart())?;
            t.filter(|_| moved)
        }
        _ => unreachable!("not a storm kind"),
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    // Let the storm's last requests finish before the next trial touches the stack.
    tokio::time::sleep(Duration::from_millis(600)).await;
    if !history_caught_up(stack, Duration::from_secs(60)).await {
        eprintln!("[chaos] {kind:?} trial {trial}: the event history did not catch up in 60 s");
        return Ok(None);
    }
    if kind == Kind::KvLeaderKill {
        kv_settled(stack, Duration::from_secs(60)).await;
        if std::env::var_os("SUP_CHAOS_DEBUG").is_some() {
            if let Some(i) = stack
                .inspector
                .stream_state(&bucket_stream(ACTIVE_BUCKET))
                .await
            {
                eprintln!(
                    "[debug] settled: first {} last {} msgs {}",
                    i.first_sequence, i.last_sequence, i.messages
                );
            }
            if let Ok(c) = stack.cluster.lock() {
                for (i, n) in c.nodes.iter().enumerate() {
                    for l in n.log().lines().filter(|l| {
                        (l.contains("[WRN]") || l.contains("[ERR]")) && l.contains(ACTIVE_BUCKET)
                    }) {
                        eprintln!("[debug] n{i}: {l}");
                    }
                }
            }
        }
    }
    Ok(measured)
}

async fn failover_trial(stack: &Stack) -> anyhow::Result<Option<f64>> {
    let holder = |s: &v1::SiteStatus| {
        s.intranet
            .as_ref()
            .map(|a| a.target.clone())
            .unwrap_or_default()
    };
    let ready = |s: &v1::SiteStatus, server: &str| {
        s.roles.iter().any(|r| {
            r.server == server
                && (r.state == v1::RoleState::Ready as i32
                    || r.state == v1::RoleState::Active as i32)
                && r.health == v1::Health::Healthy as i32
        })
    };
    // Both SUPs ready and healthy first, so the slot has somewhere to go.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        if let Some(s) = stack.site("FOV").await {
            let h = holder(&s);
            if !h.is_empty() && stack::FOV.iter().all(|f| ready(&s, f)) {
                break h;
            }
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stack
        .control(reqwest::Method::POST, &format!("/faults/{victim}/down"))
        .await?;
    let fault = Instant::now();
    let moved = loop {
        if let Some(s) = stack.site("FOV").await {
            let h = holder(&s);
            if !h.is_empty() && h != victim {
                break Some(fault.elapsed().as_secs_f64());
            }
        }
        if fault.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    stack
        .control(reqwest::Method::DELETE, &format!("/faults/{victim}"))
        .await?;
    Ok(moved)
}

async fn logwatch_trial(stack: &Stack, trial: usize) -> anyhow::Result<Option<f64>> {
    let mut logwatch = stack.logwatch.lock().await;
    let fault = Instant::now();
    logwatch.kill();
    // Down for 0.1-0.7 s: within one rotation of the fastest log.
    tokio::time::sleep(Duration::from_millis(100 + (trial as u64 * 137) % 600)).await;
    stack::restart(&mut logwatch).await?;
    drop(logwatch);
    let t = fault.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Some(t))
}

/// Runs every trial and the checker.
pub async fn run(options: &Options, progress: impl Fn(&str)) -> anyhow::Result<Report> {
    let begun = Instant::now();
    progress("starting the stack (three NATS nodes, two coordinators, services, emulator)");
    let stack = Arc::new(Stack::start(&options.bins).await?);
    let mut kinds = Vec::new();
    let mut leader_kill_times = Vec::new();
    let all_records = Arc::new(Mutex::new(Vec::<Acked>::new()));
    for kind in &options.kinds {
        let record = Arc::new(Record::default());
        let mut times = Vec::new();
        for trial in 0..options.trials {
            let t = match kind {
                Kind::CoordinatorKill | Kind::CoordinatorPause | Kind::KvLeaderKill => {
                    storm_trial(&stack, *kind, trial, &record).await?
                }
                Kind::Failover => failover_trial(&stack).await?,
                Kind::LogwatchKill => logwatch_trial(&stack, trial).await?,
            };
            if let Some(t) = t {
                times.push(t);
            }
            if (trial + 1) % 10 == 0 || trial + 1 == options.trials {
                progress(&format!(
                    "{}: {}/{} trials",
                    kind.name(),
                    trial + 1,
                    options.trials
                ));
            }
        }
        if *kind == Kind::KvLeaderKill {
            leader_kill_times = times.clone();
        }
        all_records
            .lock()
            .await
            .extend(record.acked.lock().await.iter().cloned());
        times.sort_by(f64::total_cmp);
        kinds.push(KindReport {
            kind: *kind,
            trials: options.trials,
            recovered: times.len(),
            requests_ok: record.ok.load(Ordering::Relaxed),
            requests_failed: record.failed.load(Ordering::Relaxed),
            measures: kind.timed(),
            p50_s: percentile(&times, 0.5),
            p99_s: percentile(&times, 0.99),
            max_s: times.last().copied().unwrap_or(0.0),
        });
    }
    progress("checking the history");
    let acked = all_records.lock().await.clone();
    let mut checks = checker::check(&stack, &acked).await?;
    leader_kill_times.sort_by(f64::total_cmp);
    if options.kinds.contains(&Kind::KvLeaderKill) {
        let p99 = percentile(&leader_kill_times, 0.99);
        checks.push(Check {
            name: "next compare-and-set after a KV leader kill, p99 (s)".into(),
            value: p99,
            goal: "<= 10".into(),
            met: p99 <= 10.0 && leader_kill_times.len() == options.trials,
        });
    }
    let unrecovered: usize = kinds.iter().map(|k| k.trials - k.recovered).sum();
    checks.push(Check {
        name: "trials that did not recover in time".into(),
        value: unrecovered as f64,
        goal: "0".into(),
        met: unrecovered == 0,
    });
    let passed = checks.iter().all(|c| c.met);
    Ok(Report {
        trials_per_kind: options.trials,
        kinds,
        checks,
        passed,
        seconds: begun.elapsed().as_secs_f64(),
    })
}

impl Report {
    /// The report as a table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<18} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  {}\n",
            "KIND",
            "TRIALS",
            "RECOVERED",
            "REQ OK",
            "REQ ERR",
            "P50 s",
            "P99 s",
            "MAX s",
            "MEASURES"
        );
        for k in &self.kinds {
            s.push_str(&format!(
                "{:<18} {:>6} {:>9} {:>8} {:>8} {:>8.2} {:>8.2} {:>8.2}  {}\n",
                k.kind.name(),
                k.trials,
                k.recovered,
                k.requests_ok,
                k.requests_failed,
                k.p50_s,
                k.p99_s,
                k.max_s,
                k.measures
            ));
        }
        s.push('\n');
        s.push_str(&format!(
            "{:<56} {:>10}  {:<8} MET\n",
            "CHECK", "VALUE", "GOAL"
        ));
        for c in &self.checks {
            s.push_str(&format!(
                "{:<56} {:>10.2}  {:<8} {}\n",
                c.name,
                c.value,
                c.goal,
                if c.met { "yes" } else { "NO" }
            ));
        }
        s
    }
}
