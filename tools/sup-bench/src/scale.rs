//! Footprint and scale: each service's start-to-ready time and idle resident memory, and the
//! coordinator applying 1,000 sites of five SUP roles each from one file, beside the same records
//! written straight to KV.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Figure;
use crate::failover::bin;

/// Resident memory of a process, from /proc (Linux).
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
    Ok(kib / 1024.0)
}

/// Start-to-ready (process spawned → `/readyz` answers 200) and idle RSS of each service.
pub async fn footprint(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let rounds = if quick { 3 } else { 10 };
    let nats = sup_testkit::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let url = nats.url().to_string();
    let mut figures = Vec::new();
    for (name, grpc) in [
        ("coordinator", true),
        ("provisioner", false),
        ("scheduler", true),
        ("health", true),
        ("logwatch", false),
    ] {
        let binary = format!("sup-{name}");
        let service = binary.as_str();
        let mut starts = Vec::new();
        let mut rss = 0.0f64;
        for round in 0..rounds {
            let mut s = crate::failover::service(name, dir.path())?.nats(&url, 1);
            if grpc {
                s = s.listening()?;
            }
            if name == "logwatch" {
                s = s.arg("run").set("ROOT", dir.path().display());
            }
            let t = Instant::now();
            let kid = s.spawn()?;
            kid.ready(Duration::from_secs(30)).await?;
            starts.push(t.elapsed().as_secs_f64() * 1000.0);
            if round == 0 {
                // Idle: connected, ready, nothing to do.
                tokio::time::sleep(Duration::from_secs(2)).await;
                rss = rss_mib(kid.pid().unwrap_or_default())?;
            }
        }
        starts.sort_by(f64::total_cmp);
        let p50 = crate::failover::percentile(&starts, 0.5);
        figures.push(Figure {
            name: format!("{service} start-to-ready p50 ({rounds} starts)"),
            value: p50,
            unit: "ms".into(),
            baseline: 200.0,
            ratio: p50 / 200.0,
            goal: "<= 200 ms".into(),
            met: p50 <= 200.0,
        });
        figures.push(Figure {
            name: format!("{service} resident memory, idle"),
            value: rss,
            unit: "MiB".into(),
            baseline: 20.0,
            ratio: rss / 20.0,
            goal: "<= 20 MiB".into(),
            met: rss <= 20.0,
        });
    }
    Ok(figures)
}

/// A coordinator that does not reconcile on its own during the run, its log in `log_dir`, once
/// it is ready.
pub async fn start_coordinator(
    nats: &sup_testkit::NatsServer,
    log_dir: &Path,
) -> anyhow::Result<sup_testkit::Process> {
    let coordinator = crate::failover::service("coordinator", log_dir)?
        .listening()?
        .nats(nats.url(), 1)
        .set("RECONCILE_INTERVAL_SECS", 3600)
        .spawn()?;
    coordinator.ready(Duration::from_secs(30)).await?;
    Ok(coordinator)
}

/// A site file of `n` sites under one central site, five SUP roles each (one active).
/// `supctl apply -f path` against the coordinator at `endpoint`, with `--wait` up to `wait` when
/// given; an error holding supctl's output when it fails.
pub fn apply_file(endpoint: &str, path: &Path, wait: Option<Duration>) -> anyhow::Result<()> {
    let mut cmd = Command::new(bin("supctl")?);
    cmd.env("SUP_COORDINATOR", endpoint)
        .arg("apply")
        .arg("-f")
        .arg(path);
    if let Some(wait) = wait {
        cmd.args([
            "--wait",
            "--timeout",
            &format!("{}s", wait.as_secs().max(1)),
        ]);
    }
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "apply {} failed: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

pub fn hierarchy(n: usize) -> String {
    hierarchy_on(n, 8530, 8531)
}

pub fn hierarchy_on(n: usize, http: u16, https: u16) -> String {
    let mut s = String::new();
    for i in 0..n {
        // Site codes are three letters or digits: the central site, then base-36 numbers.
        let code = if i == 0 {
            "CEN".to_string()
        } else {
            const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
            let d = |k: usize| DIGITS[k % 36] as char;
            format!("{}{}{}", d(i / 1296 + 10), d(i / 36), d(i))
        };
        s.push_str(&format!("[[site]]\ncode = \"{code}\"\n"));
        if i > 0 {
            s.push_str("parent = \"CEN\"\n");
        }
        for j in 0..5 {
            s.push_str(&format!(
                "[[site.site_system]]\nserver = \"sup{j}.{}.corp.example.com\"\n",
                code.to_ascii_lowercase()
            ));
        }
        for j in 0..5 {
            s.push_str(&format!(
                "[[site.software_update_point]]\nserver = \"sup{j}.{}.corp.example.com\"\nhttp_port = {http}\nhttps_port = {https}\n{}",
                code.to_ascii_lowercase(),
                if j == 0 { "active = \"intranet\"\n" } else { "" }
            ));
        }
    }
    s
}

/// Applying 1,000 sites (5,000 roles) through supctl and the coordinator, against writing the same
/// number of records straight to KV from one client.
pub async fn coordinator_apply(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let sites = if quick { 100 } else { 1000 };
    let nats = sup_testkit::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let coordinator = start_coordinator(&nats, dir.path()).await?;
    let file = dir.path().join("sites.toml");
    std::fs::write(&file, hierarchy(sites))?;
    let t = Instant::now();
    apply_file(&coordinator.endpoint()?, &file, None)?;
    let apply = t.elapsed().as_secs_f64();

    // The same number of records (one per site, one per role) written straight to KV.
    let bus = sup_bus::Bus::connect(&sup_bus::BusConfig::new(nats.url())).await?;
    let records = sites * 6;
    let payload = bytes::Bytes::from(vec![b'x'; 600]);
    let t = Instant::now();
    for i in 0..records {
        bus.positions()
            .put(&format!("bench.{i}"), payload.clone())
            .await?;
    }
    let raw = t.elapsed().as_secs_f64();
    Ok(vec![Figure {
        name: format!("apply {sites} sites x 5 SUP roles, all stored"),
        value: apply,
        unit: "s".into(),
        baseline: raw,
        ratio: apply / raw,
        goal: format!("report (baseline: {records} bare KV puts)"),
        met: true,
    }])
}

/// Activations (each a compare-and-set on the slot, then the role projections) per second
/// through gRPC, spread over two coordinator replicas, against bare KV compare-and-sets from
/// the same number of concurrent writers.
pub async fn activation_rate(quick: bool) -> anyhow::Result<Vec<Figure>> {
    use sup_proto::prost::Message as _;
    use sup_proto::v1;
    let sites = if quick { 16 } else { 64 };
    let run_for = Duration::from_secs(if quick { 3 } else { 10 });
    let nats = sup_testkit::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let mut endpoints = Vec::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let coordinator = start_coordinator(&nats, dir.path()).await?;
        endpoints.push(coordinator.endpoint()?);
        replicas.push(coordinator);
    }
    let file = dir.path().join("sites.toml");
    std::fs::write(&file, hierarchy(sites))?;
    apply_file(&endpoints[0], &file, None)?;
    // No provisioner runs here: the first two roles of each site are marked installed and
    // healthy directly, so that the slot can move between them.
    let bus = sup_bus::Bus::connect(&sup_bus::BusConfig::new(nats.url())).await?;
    let codes: Vec<String> = hierarchy(sites)
        .lines()
        .filter_map(|l| l.strip_prefix("code = \""))
        .map(|c| c.trim_end_matches('"').to_string())
        .collect();
    let server =
        |code: &str, j: usize| format!("sup{j}.{}.corp.example.com", code.to_ascii_lowercase());
    for code in &codes {
        for j in 0..2 {
            let key = sup_bus::subjects::role_key(code, &server(code, j));
            let mut r = match bus.roles().get(&key).await? {
                Some((b, _)) => v1::RoleStatus::decode(b)?,
                None => anyhow::bail!("role {key} was not stored"),
            };
            r.state = v1::RoleState::Ready as i32;
            r.health = v1::Health::Healthy as i32;
            r.verified = vec!["wsus_components_healthy".into(), "wsus_database_ok".into()];
            bus.roles().put(&key, r.encode_to_vec().into()).await?;
        }
    }
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let endpoint = endpoints[i % 2].clone();
        let (code, a, b) = (code.clone(), server(code, 0), server(code, 1));
        tasks.push(tokio::spawn(async move {
            let mut client = v1::coordinator_client::CoordinatorClient::connect(endpoint).await?;
            let (mut won, mut failed, mut n) = (0u64, 0u64, 0u64);
            while Instant::now() < deadline {
                let target = if n % 2 == 0 { &b } else { &a };
                n += 1;
                let r = client
                    .set_active(v1::SetActiveRequest {
                        site: code.clone(),
                        slot: v1::Slot::Intranet as i32,
                        target: target.clone(),
                        op_id: format!("bench-{code}-{n}"),
                    })
                    .await;
                if r.is_ok() { won += 1 } else { failed += 1 }
            }
            anyhow::Ok((won, failed))
        }));
    }
    let (mut won, mut failed) = (0, 0);
    for t in tasks {
        let (w, f) = t.await??;
        won += w;
        failed += f;
    }
    let rate = won as f64 / run_for.as_secs_f64();

    // Bare compare-and-sets: the same number of writers, each on its own key.
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for i in 0..codes.len() {
        let kv = bus.positions().clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("cas.{i}");
            let mut rev = kv.put(&key, bytes::Bytes::from_static(b"0")).await?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                rev = match kv
                    .update(&key, bytes::Bytes::from_static(b"1"), rev)
                    .await?
                {
                    sup_bus::Cas::Won(r) => r,
                    sup_bus::Cas::Lost => anyhow::bail!("{key} moved under its only writer"),
                };
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut bare = 0;
    for t in tasks {
        bare += t.await??;
    }
    let bare_rate = bare as f64 / run_for.as_secs_f64();
    drop(replicas);
    Ok(vec![Figure {
        name: format!(
            "activations/s via gRPC, 2 replicas, {} sites ({failed} refused)",
            codes.len()
        ),
        value: rate,
        unit: "ops/s".into(),
        baseline: bare_rate,
        ratio: rate / bare_rate,
        goal: "report (baseline: bare KV CAS/s)".into(),
        met: true,
    }])
}
