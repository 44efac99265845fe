//! Convergence at scale on a durable three-node cluster (`sync_interval: always`, replicas 3):
//! `supctl apply --wait` of many sites of five SUP roles, from the request to every role in its
//! declared state: installed by the provisioner through the emulator's agent, verified by the
//! milestones the log watcher reads, each site's declared SUP active. One site alone, through
//! the same stack, is the floor: the emulator's own install time.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Figure;
use crate::failover::service;
use crate::scale::hierarchy_on;

/// The goal for a thousand sites.
const GOAL: Duration = Duration::from_secs(300);

pub async fn converge(quick: bool) -> anyhow::Result<Vec<Figure>> {
    let sites = if quick { 100 } else { 1000 };
    let cluster = sup_testkit::NatsCluster::start_durable()?;
    let urls = cluster.urls();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // WSUS health lines once an hour, as the product writes them: the lines a role's
    // verification waits for are written as its install ends, and the coordinator keeps each
    // with its line's time, so one read before its setup-start line (another file) still counts.
    let fleet = crate::probing::Fleet::start_with(
        d,
        &["--step-ms", "5", "--health-interval-ms", "3600000"],
    )?;
    let (http, https, agent) = (fleet.http, fleet.https, fleet.agent);
    let logs = d.join("sites");
    let mut stack = Vec::new();
    for _ in 0..2 {
        stack.push(
            service("coordinator", d)?
                .listening()?
                .nats(&urls, 3)
                .set("RECONCILE_INTERVAL_SECS", 15)
                .spawn()?,
        );
    }
    let endpoint = stack[0].endpoint()?;
    for _ in 0..2 {
        stack.push(
            service("provisioner", d)?
                .nats(&urls, 3)
                .set("AGENT_ENDPOINT", format!("http://127.0.0.1:{agent}"))
                .spawn()?,
        );
    }
    stack.push(
        service("logwatch", d)?
            .arg("run")
            .nats(&urls, 3)
            .set("ROOT", logs.display())
            .set("DISCOVER_INTERVAL_SECS", 2)
            .spawn()?,
    );
    for p in &stack {
        p.ready(Duration::from_secs(120)).await?;
    }

    // The floor: one site alone (five roles installed at once).
    let floor = apply(d, &endpoint, "one.toml", &hierarchy_on(1, http, https))?;
    // The fleet: its central site is the one applied already, and stays as it is.
    let fleet = hierarchy_on(sites, http, https);
    // A fleet that does not converge (a role failed, the wait ran out) is a figure not met, not
    // the end of the whole benchmark run.
    let t = Instant::now();
    let (took, converged) = match apply(d, &endpoint, "fleet.toml", &fleet) {
        Ok(took) => (took, true),
        Err(e) => {
            eprintln!("converge: {e:#}");
            (t.elapsed().as_secs_f64(), false)
        }
    };
    drop(stack);
    let goal = GOAL.as_secs_f64() * sites as f64 / 1000.0;
    Ok(vec![
        Figure {
            name: format!("converge {sites} sites x 5 roles (durable cluster)"),
            value: took,
            unit: "s".into(),
            baseline: floor,
            ratio: took / floor,
            goal: format!(
                "<= {goal:.0} s (baseline: one site, the emulator's install time){}",
                if converged { "" } else { "; did not converge" }
            ),
            met: converged && took <= goal,
        },
        Figure {
            name: "… one site x 5 roles, same stack (the floor)".into(),
            value: floor,
            unit: "s".into(),
            baseline: floor,
            ratio: 1.0,
            goal: "report".into(),
            met: true,
        },
    ])
}

/// `supctl apply --wait` of `text`: seconds until every role is in its declared state.
fn apply(d: &Path, endpoint: &str, name: &str, text: &str) -> anyhow::Result<f64> {
    let file = d.join(name);
    std::fs::write(&file, text)?;
    let t = Instant::now();
    crate::scale::apply_file(endpoint, &file, Some(Duration::from_secs(1800)))?;
    Ok(t.elapsed().as_secs_f64())
}
