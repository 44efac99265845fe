//! Drift: each site reached through its SMS Provider is read back on an interval and right after
//! every commit, and compared with its declaration. A new difference is a `DriftDetected` event
//! naming each field; the last report is kept beside the site (`<site>.drift`) for the status,
//! and counted in a metric. A site declared with `drift = "correct"` has its last commands
//! committed again. A site with a role still being provisioned is not compared: its control file
//! is on its way to the declaration.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::gauge::Gauge;
use sup_bus::Bus;
use sup_proto::v1::{self, event::Payload};
use sup_smsprov::drift::{canonical, compare};
use sup_smsprov::import::import_site;
use sup_smsprov::scf::{ComponentName, prop};

use crate::smsprov::SmsProviderDriver;

/// Settings that differ from the declaration, over every site this provisioner reads (each
/// site's own are in the status and the events).
pub type DriftGauge = Gauge;

fn settling(roles: &[v1::RoleStatus]) -> bool {
    roles.iter().any(|r| {
        matches!(
            v1::RoleState::try_from(r.state),
            Ok(v1::RoleState::Declared
                | v1::RoleState::Provisioning
                | v1::RoleState::Installing
                | v1::RoleState::Installed
                | v1::RoleState::Verifying
                | v1::RoleState::Removing)
        )
    })
}

/// Reads and compares one site; returns the drift found (None when not compared).
/// `corrected`: the drift last corrected per site. The same drift found again right after its
/// correction is one the commands cannot undo (a setting they do not write): it is reported, not
/// corrected again in a loop.
pub async fn check(
    bus: &Bus,
    providers: &SmsProviderDriver,
    site: &str,
    corrected: &mut std::collections::BTreeMap<String, Vec<v1::DriftField>>,
) -> anyhow::Result<Option<Vec<v1::DriftField>>> {
    let Some((declared_site, _)) = bus.applied_site(site).await? else {
        return Ok(None);
    };
    if settling(&bus.role_records(site).await?) {
        return Ok(None);
    }
    // Stored as validated: its canonical form is its model's, without validating it again.
    let declared = match sup_proto::convert::site_from_stored(&declared_site) {
        Ok(model) => sup_core::spec::to_raw(&model),
        Err(_) => canonical(&sup_proto::convert::site_from_proto(&declared_site)),
    };
    let live = providers.read(site).await?;
    let imported = canonical(&import_site(&live, Some(&declared)));
    let (_, holders) = crate::read_slot(bus, site, "intranet", true).await?;
    let default_wsus = live
        .control_file
        .component(ComponentName::WsusConfigurationManager)
        .and_then(|c| prop(&c.props, sup_smsprov::map::DEFAULT_WSUS))
        .map(|p| p.value2.clone());
    let fields: Vec<v1::DriftField> =
        compare(&declared, &imported, &holders, default_wsus.as_deref())
            .into_iter()
            .map(|f| v1::DriftField {
                path: f.path,
                declared: f.declared,
                live: f.live,
            })
            .collect();
    let again = corrected.get(site) == Some(&fields);
    if fields.is_empty() {
        corrected.remove(site);
    }
    let correcting =
        !fields.is_empty() && !again && declared_site.drift == v1::DriftPolicy::Correct as i32;
    let report = v1::DriftDetected {
        fields: fields.clone(),
        correcting,
    };
    let previous = bus.drift_report(site).await?;
    if previous.as_ref().map(|p| &p.fields) != Some(&fields) {
        bus.put_drift_report(site, &report)
            .await
            .map_err(|e| anyhow::anyhow!("recording the drift of {site}: {e}"))?;
        if !fields.is_empty() {
            for f in &fields {
                tracing::warn!(site, path = %f.path, declared = %f.declared, live = %f.live, "drift");
            }
            let now = SystemTime::now();
            let ms = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            bus.publish_event(&v1::Event {
                id: format!("drift:{site}:{ms}"),
                time: Some(now.into()),
                site: site.to_string(),
                payload: Some(Payload::DriftDetected(report)),
                ..Default::default()
            })
            .await?;
        } else {
            tracing::info!(site, "the site control file matches the declaration again");
        }
    }
    if again && !fields.is_empty() {
        tracing::warn!(
            site,
            "the drift is still there after its correction: reported only"
        );
    }
    if correcting {
        corrected.insert(site.to_string(), fields.clone());
        let n = providers.correct(site).await?;
        tracing::info!(
            site,
            commands = n,
            "drift corrected: the declared settings committed again"
        );
    }
    Ok(Some(fields))
}

/// Checks every site of `providers` every `interval`, and shortly after each commit.
pub async fn run(
    bus: Bus,
    providers: Arc<SmsProviderDriver>,
    gauge: DriftGauge,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let sites = providers.site_codes();
    if sites.is_empty() {
        return;
    }
    let committed = providers.committed.clone();
    let mut per_site = std::collections::BTreeMap::new();
    let mut corrected = std::collections::BTreeMap::new();
    loop {
        for site in &sites {
            match check(&bus, &providers, site, &mut corrected).await {
                Ok(Some(fields)) => {
                    per_site.insert(site.clone(), fields.len());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(site, error = %format!("{e:#}"), "reading the site's control file for drift")
                }
            }
        }
        gauge.set(i64::try_from(per_site.values().sum::<usize>()).unwrap_or(i64::MAX));
        let after_commit = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = committed.notified() => true,
            _ = stop.wait_for(|s| *s) => return,
        };
        if after_commit {
            // Let a run of commits finish before reading.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
