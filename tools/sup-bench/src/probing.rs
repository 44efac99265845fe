//! Probing at scale: 10,000 SUP servers in the emulator probed every 10 s, by one health
//! service and then by two replicas sharing them; the rates, CPU and memory it takes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sup_testkit::{NatsServer, Process};

use crate::Figure;
use crate::failover::spawn_env;
use crate::scale::{hierarchy_on, rss_mib, start_coordinator};

/// CPU seconds (user + system) a process has used, from /proc (Linux, 100 ticks a second).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("odd /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Probe ladders started so far: one `tcp` step per ladder.
async fn ladders(admin: u16) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", admin)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("sup_probe_results_total{") && l.contains("component=\"tcp\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// 10,000 SUP servers (2,000 sites of five) in the emulator, probed every 10 s by one health
/// service: the ladders per second it achieves against the 1,000/s the interval asks for, and
/// the CPU and memory it takes to do it.
pub async fn probing(quick: bool) -> anyhow::Result<Vec<Figure>> {
    use sup_proto::prost::Message as _;
    use sup_proto::v1;
    let sites = if quick { 200 } else { 2000 };
    let servers = sites * 5;
    let interval = Duration::from_secs(10);
    let want = servers as f64 / interval.as_secs_f64();
    let nats = sup_testkit::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let fleet = Fleet::start(d)?;
    let (http, https, ca) = (fleet.http, fleet.https, fleet.ca.clone());
    let coordinator = start_coordinator(&nats, d).await?;
    let text = hierarchy_on(sites, http, https);
    let file = d.join("sites.toml");
    std::fs::write(&file, &text)?;
    crate::scale::apply_file(&coordinator.endpoint()?, &file, None)?;
    // No provisioner here: every role is marked installed directly, so health probes them all.
    let bus = sup_bus::Bus::connect(&sup_bus::BusConfig::new(nats.url())).await?;
    for code in codes(&text) {
        for j in 0..5 {
            let server = server_of(&code, j);
            let key = sup_bus::subjects::role_key(&code, &server);
            if let Some((b, _)) = bus.roles().get(&key).await? {
                let mut r = v1::RoleStatus::decode(b)?;
                r.state = v1::RoleState::Ready as i32;
                bus.roles().put(&key, r.encode_to_vec().into()).await?;
            }
        }
    }
    // The coordinator's memory with the whole registry taken in (its gauges and announcer have
    // seen every role), before it goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let coordinator_rss = rss_mib(coordinator.pid().unwrap_or_default())?;
    // The health service needs only the registry, which is written: the coordinator goes, so the
    // figure is the prober's alone. (Left running, it would spend the measured minutes taking in
    // the first round's 10,000 health transitions, a one-off, on the same two cores.)
    drop(coordinator);
    let resolve = resolve_table(&text);
    let health_on = |name: &str| Health {
        dir: d,
        nats: &nats,
        name: name.to_string(),
        interval,
        ca: &ca,
        resolve: &resolve,
    };
    let (health, hadmin) = health_on("one").start().await?;
    // One interval to warm up (the first round loads the registry), then measure over three.
    tokio::time::sleep(interval).await;
    let npid = nats.pid();
    let (pid, epid) = (
        health.pid().unwrap_or_default(),
        fleet.emulator.pid().unwrap_or_default(),
    );
    let (l0, c0, e0, n0, t0) = (
        ladders(hadmin).await?,
        cpu_seconds(pid)?,
        cpu_seconds(epid)?,
        cpu_seconds(npid)?,
        Instant::now(),
    );
    // Memory is sampled through the window and the peak kept.
    let mut health_rss = 0.0f64;
    let end = Instant::now() + interval * 3;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        health_rss = health_rss.max(rss_mib(pid)?);
    }
    let (l1, c1, e1, n1, wall) = (
        ladders(hadmin).await?,
        cpu_seconds(pid)?,
        cpu_seconds(epid)?,
        cpu_seconds(npid)?,
        t0.elapsed().as_secs_f64(),
    );
    let rate = (l1 - l0) / wall;
    let cores = (c1 - c0) / wall;
    let emulator_cores = (e1 - e0) / wall;
    let nats_cores = (n1 - n0) / wall;
    drop(health);
    // Two replicas sharing the same servers: together they probe each once an interval (the
    // full rate, not twice it), each about half.
    let (first, admin1) = health_on("first").start().await?;
    let (second, admin2) = health_on("second").start().await?;
    tokio::time::sleep(interval).await;
    let (p0, q0, t0) = (
        ladders(admin1).await?,
        ladders(admin2).await?,
        Instant::now(),
    );
    tokio::time::sleep(interval * 3).await;
    let (p1, q1, wall2) = (
        ladders(admin1).await?,
        ladders(admin2).await?,
        t0.elapsed().as_secs_f64(),
    );
    let (shared_rate, first_part) = ((p1 - p0 + q1 - q0) / wall2, (p1 - p0) / (p1 - p0 + q1 - q0));
    drop((first, second));
    // The other services against the same 10,000-role registry, one at a time, each for a while
    // after it is ready: the provisioner with the apply's install commands waiting for it (it
    // works through them against the emulator's agent), the scheduler ticking every site, the log
    // watcher following the log folders of every site system. Peak resident memory of each.
    let logs_root = d.join("sites").display().to_string();
    let agent_ep = format!("http://127.0.0.1:{}", fleet.agent);
    let mut at_scale = vec![("coordinator", coordinator_rss), ("health", health_rss)];
    for (name, grpc, extra) in [
        (
            "provisioner",
            false,
            vec![("AGENT_ENDPOINT", agent_ep.clone())],
        ),
        ("scheduler", true, vec![]),
        ("logwatch", false, vec![("ROOT", logs_root.clone())]),
    ] {
        let mut s = crate::failover::service(name, d)?.nats(nats.url(), 1);
        if grpc {
            s = s.listening()?;
        }
        if name == "logwatch" {
            s = s.arg("run");
        }
        for (key, value) in extra {
            s = s.set(key, value);
        }
        let kid = s.spawn()?;
        kid.ready(Duration::from_secs(60)).await?;
        let mut peak = 0.0f64;
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(rss_mib(kid.pid().unwrap_or_default())?);
        }
        at_scale.push((name, peak));
    }
    let mut figures = vec![
        Figure {
            name: format!(
                "probe ladders/s, {servers} SUPs every {} s",
                interval.as_secs()
            ),
            value: rate,
            unit: "ladders/s".into(),
            baseline: want,
            ratio: rate / want,
            goal: format!("the full {want:.0}/s"),
            met: rate >= 0.95 * want,
        },
        Figure {
            name: "probing with 2 health replicas".into(),
            value: shared_rate,
            unit: "ladders/s".into(),
            baseline: want,
            ratio: shared_rate / want,
            goal: format!("{want:.0}/s: each SUP once (±5 %)"),
            met: (0.95..=1.05).contains(&(shared_rate / want)),
        },
        Figure {
            name: "… share of the first replica".into(),
            value: first_part,
            unit: "fraction".into(),
            baseline: 0.5,
            ratio: first_part / 0.5,
            goal: "about half (0.35–0.65)".into(),
            met: (0.35..=0.65).contains(&first_part),
        },
        Figure {
            name: format!("sup-health CPU at that rate ({servers} SUPs)"),
            value: cores,
            unit: "cores".into(),
            baseline: 1.0,
            ratio: cores,
            goal: "< 1 core".into(),
            met: cores < 1.0,
        },
        Figure {
            name: "wsus-emulator CPU answering them (same machine)".into(),
            value: emulator_cores,
            unit: "cores".into(),
            baseline: 2.0,
            ratio: emulator_cores / 2.0,
            goal: "report (the machine has 2)".into(),
            met: true,
        },
        Figure {
            name: "nats-server CPU storing the reports (same machine)".into(),
            value: nats_cores,
            unit: "cores".into(),
            baseline: 2.0,
            ratio: nats_cores / 2.0,
            goal: "report (the machine has 2)".into(),
            met: true,
        },
    ];
    for (service, rss) in at_scale {
        figures.push(Figure {
            name: format!("sup-{service} resident memory, {servers} SUPs (peak)"),
            value: rss,
            unit: "MiB".into(),
            baseline: 20.0,
            ratio: rss / 20.0,
            goal: "report (idle goal 20 MiB)".into(),
            met: true,
        });
    }
    Ok(figures)
}

/// The emulator answering for every SUP of the benchmark at an address of its own in 127/8 (as
/// real servers have their own), so no connection is shared between two of them.
pub struct Fleet {
    pub emulator: Process,
    pub http: u16,
    pub https: u16,
    pub agent: u16,
    pub control: u16,
    /// The emulator's CA, for the TLS probe.
    pub ca: PathBuf,
}

impl Fleet {
    pub fn start(d: &Path) -> anyhow::Result<Self> {
        Self::start_with(d, &[])
    }

    /// The emulator with `extra` arguments (its step time, say); its logs in `d/sites`.
    pub fn start_with(d: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let port = sup_testkit::free_port;
        let (http, https, agent, control) = (port()?, port()?, port()?, port()?);
        let ca = d.join("ca.pem");
        let mut args: Vec<String> = [
            "run",
            "--http",
            &format!("0.0.0.0:{http}"),
            "--https",
            &format!("127.0.0.1:{https}"),
            "--agent",
            &format!("127.0.0.1:{agent}"),
            "--control",
            &format!("127.0.0.1:{control}"),
            "--ca-out",
            ca.to_str().unwrap_or_default(),
            "--logs",
            d.join("sites").to_str().unwrap_or_default(),
            "--default-ports",
            &format!("{http},{https}"),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let emulator = spawn_env("wsus-emulator", &args, &[], &d.join("emulator.log"))?;
        Ok(Self {
            emulator,
            http,
            https,
            agent,
            control,
            ca,
        })
    }
}

/// The site codes of a site file made by `hierarchy_on`.
pub fn codes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("code = \""))
        .map(|c| c.trim_end_matches('"').to_string())
        .collect()
}

/// SUP `j` of site `code`, as `hierarchy_on` names it.
pub fn server_of(code: &str, j: usize) -> String {
    format!("sup{j}.{}.corp.example.com", code.to_ascii_lowercase())
}

/// The health service's `[resolve]` table for a site file: every SUP at an address of its own.
pub fn resolve_table(text: &str) -> String {
    let mut resolve = String::new();
    let mut n = 0u32;
    for code in codes(text) {
        for j in 0..5 {
            n += 1;
            resolve.push_str(&format!(
                "\"{}\" = \"127.{}.{}.{}\"\n",
                server_of(&code, j),
                1 + n / 65536,
                (n / 256) % 256,
                n % 256
            ));
        }
    }
    resolve
}

/// One `sup-health` replica probing the benchmark's servers.
pub struct Health<'a> {
    pub dir: &'a Path,
    pub nats: &'a NatsServer,
    pub name: String,
    pub interval: Duration,
    pub ca: &'a Path,
    /// The `[resolve]` table: every server at an address of its own.
    pub resolve: &'a str,
}

impl Health<'_> {
    /// Starts the replica and waits until it is ready; its admin port beside it.
    pub async fn start(&self) -> anyhow::Result<(Process, u16)> {
        let port = sup_testkit::free_port;
        let (grpc, admin) = (port()?, port()?);
        let config = self.dir.join(format!("health-{}.toml", self.name));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{grpc}\"\nadmin_listen = \"127.0.0.1:{admin}\"\ninterval_ms = {}\nreplica = \"{}\"\nmilestone_max_age_secs = 0\nca_file = \"{}\"\n[resolve]\n{}[nats]\nurl = \"{}\"\n",
                self.interval.as_millis(),
                self.name,
                self.ca.display(),
                self.resolve,
                self.nats.url()
            ),
        )?;
        let health = spawn_env(
            "sup-health",
            &["--config", config.to_str().unwrap_or_default()],
            &[],
            &self.dir.join(format!("health-{}.log", self.name)),
        )?
        .with_admin(admin);
        health.ready(Duration::from_secs(30)).await?;
        Ok((health, admin))
    }
}
