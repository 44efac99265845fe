//! Failover time: the emulator takes the active SUP down; how long until `ActiveChanged` for the
//! standby is delivered. The whole stack runs: nats-server, coordinator, provisioner, log
//! watcher, health service and the WSUS emulator (release binaries beside this one).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use sup_proto::prost::Message as _;
use sup_proto::v1::{self, event::Payload};

use sup_testkit::{Process, Service};

use crate::Figure;

pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    Ok(sup_testkit::sibling_binary(name)?)
}

/// `sup-<name>` beside this binary, its log in `log_dir`, `RUST_LOG` at warn.
pub fn service(name: &str, log_dir: &Path) -> anyhow::Result<Service> {
    let binary = bin(&format!("sup-{name}"))?;
    let bins = binary.parent().unwrap_or(Path::new("."));
    Ok(Service::new(name)?
        .from_build(bins, log_dir)
        .env("RUST_LOG", "warn"))
}

/// Starts workspace binary `name` beside this one, its output to `log`, `RUST_LOG` at warn.
pub fn spawn_env(
    name: &str,
    args: &[&str],
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<Process> {
    let mut env = env.to_vec();
    env.push(("RUST_LOG".into(), "warn".into()));
    Ok(Process::spawn(
        bin(name)?,
        args.iter().map(|a| a.to_string()).collect(),
        env,
        log.to_path_buf(),
    )?)
}

fn spawn(name: &str, args: &[&str], log: &Path) -> anyhow::Result<Process> {
    spawn_env(name, args, &[], log)
}

async fn wait_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nothing listens on {port}")
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(i.min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

pub async fn failover_time(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let trials = if quick { 10 } else { 50 };
    let interval_ms: u64 = 500;
    let nats = sup_testkit::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let port = || sup_testkit::free_port();
    let (http, https, agent, control) = (port()?, port()?, port()?, port()?);
    let logs = d.join("sites");
    let _emu = spawn(
        "wsus-emulator",
        &[
            "run",
            "--http",
            &format!("127.0.0.1:{http}"),
            "--https",
            &format!("127.0.0.1:{https}"),
            "--agent",
            &format!("127.0.0.1:{agent}"),
            "--control",
            &format!("127.0.0.1:{control}"),
            "--logs",
            logs.to_str().unwrap_or("sites"),
            "--default-ports",
            &format!("{http},{https}"),
            "--step-ms",
            "5",
            "--health-interval-ms",
            "250",
        ],
        &d.join("emulator.log"),
    )?;
    wait_port(control).await?;
    let url = nats.url().to_string();
    let write = |name: &str, body: String| -> anyhow::Result<PathBuf> {
        let p = d.join(name);
        std::fs::write(&p, body)?;
        Ok(p)
    };
    let c = service("coordinator", d)?
        .listening()?
        .nats(&url, 1)
        .set("RECONCILE_INTERVAL_SECS", 1)
        .set("FAILOVER_AFTER_SECS", 0)
        .spawn()?;
    let _p = service("provisioner", d)?
        .nats(&url, 1)
        .set("AGENT_ENDPOINT", format!("http://127.0.0.1:{agent}"))
        .spawn()?;
    let _l = service("logwatch", d)?
        .arg("run")
        .nats(&url, 1)
        .set("POLL_INTERVAL_MS", 100)
        .set("DISCOVER_INTERVAL_SECS", 1)
        .set("ROOT", logs.display())
        .spawn()?;
    let h = service("health", d)?
        .listening()?
        .nats(&url, 1)
        .set("INTERVAL_MS", interval_ms)
        .set("TIMEOUT_MS", 300)
        .set("MILESTONE_MAX_AGE_SECS", 0)
        .config("[resolve]\n\"*\" = \"127.0.0.1\"\n")
        .spawn()?;
    c.ready(Duration::from_secs(60)).await?;
    h.ready(Duration::from_secs(60)).await?;
    let coordinator = c.endpoint()?;
    let site = write(
        "site.toml",
        format!(
            "[[site]]\ncode = \"FOV\"\nfailover = \"auto\"\n[[site.site_system]]\nserver = \"f1.corp.example.com\"\n[[site.site_system]]\nserver = \"f2.corp.example.com\"\n[[site.software_update_point]]\nserver = \"f1.corp.example.com\"\nactive = \"intranet\"\nhttp_port = {http}\nhttps_port = {https}\n[[site.software_update_point]]\nserver = \"f2.corp.example.com\"\nhttp_port = {http}\nhttps_port = {https}\n"
        ),
    )?;
    crate::scale::apply_file(&coordinator, &site, Some(Duration::from_secs(120)))?;

    let bus = sup_bus::Bus::connect(&sup_bus::BusConfig::new(nats.url())).await?;
    let changes = bus
        .subscribe_events(&sup_bus::subjects::event(
            "FOV",
            sup_bus::subjects::kind::ACTIVE_CHANGED,
        ))
        .await?;
    let mut changes = std::pin::pin!(changes);
    let ctl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(bin("wsus-emulator")?)
            .args(["ctl", "--control", &format!("127.0.0.1:{control}")])
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    // Ready and healthy, from the role records.
    let ready_healthy = |server: &'static str| {
        let bus = bus.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ok = bus.site_roles("FOV").await.ok().is_some_and(|rs| {
                    rs.into_iter()
                        .filter_map(|b| v1::RoleStatus::decode(b).ok())
                        .any(|r| {
                            r.server == server
                                && r.state == v1::RoleState::Ready as i32
                                && r.health == v1::Health::Healthy as i32
                        })
                });
                if ok {
                    return Ok(());
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{server} never became ready and healthy"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut times = Vec::new();
    let mut active = "f1.corp.example.com";
    for trial in 0..trials {
        let standby = if active == "f1.corp.example.com" {
            "f2.corp.example.com"
        } else {
            "f1.corp.example.com"
        };
        ready_healthy(standby).await?;
        let t = Instant::now();
        ctl(&["fault", active, "down"])?;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), changes.next())
                .await
                .with_context(|| format!("trial {trial}: no failover within 30 s"))?
                .context("subscription closed")?;
            let e = m;
            if matches!(&e.payload, Some(Payload::ActiveChanged(a)) if a.target == standby) {
                break;
            }
        }
        times.push(t.elapsed().as_secs_f64());
        ctl(&["clear", active])?;
        active = standby;
    }
    times.sort_by(f64::total_cmp);
    let goal = 3.0 * interval_ms as f64 / 1000.0 + 1.0;
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    Ok(vec![
        Figure {
            name: format!("failover p50 ({trials} trials, probe every {interval_ms} ms)"),
            value: p50,
            unit: "s".into(),
            baseline: goal,
            ratio: p50 / goal,
            goal: format!("p99 <= 3 intervals + 1 s = {goal:.1} s"),
            met: p50 <= goal,
        },
        Figure {
            name: format!("failover p99 ({trials} trials, probe every {interval_ms} ms)"),
            value: p99,
            unit: "s".into(),
            baseline: goal,
            ratio: p99 / goal,
            goal: format!("<= {goal:.1} s"),
            met: p99 <= goal,
        },
    ])
}
