//! From probe results and the logs' verdict to a server's health: pure, so it is tested alone.

use std::time::Duration;

use sup_smslog::MilestoneKind;
use sup_wsus::probe::{Component, ProbeResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

/// What the logs said last: how long ago each WSUS health line was seen (None: never).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogView {
    pub components_healthy: Option<Duration>,
    pub database_ok: Option<Duration>,
}

/// Components without which clients cannot use the SUP.
const CORE: [&str; 4] = ["tcp", "tls", "server_sync", "client_web_service"];

/// Combines the ladder with the logs: a failed core component is unhealthy; any other failure,
/// or WSUS health lines missing or older than `max_age` (when `max_age` is set), is degraded.
/// Returns the health and the failing components with their reasons.
pub fn assess(
    components: &[Component],
    logs: LogView,
    max_age: Option<Duration>,
) -> (Health, Vec<(String, String)>) {
    let mut failing: Vec<(String, String)> = components
        .iter()
        .filter(|c| c.result != ProbeResult::Ok)
        .map(|c| {
            (
                c.name.to_string(),
                format!("{}: {}", c.result.as_str(), c.detail),
            )
        })
        .collect();
    let core_failed = components
        .iter()
        .any(|c| CORE.contains(&c.name) && c.result != ProbeResult::Ok);
    if core_failed {
        return (Health::Unhealthy, failing);
    }
    if let Some(max) = max_age {
        for (name, seen) in [
            (
                MilestoneKind::WsusComponentsHealthy.as_str(),
                logs.components_healthy,
            ),
            (MilestoneKind::WsusDatabaseOk.as_str(), logs.database_ok),
        ] {
            match seen {
                Some(age) if age <= max => {}
                Some(age) => failing.push((
                    format!("log:{name}"),
                    format!("last seen {}s ago", age.as_secs()),
                )),
                None => failing.push((
                    format!("log:{name}"),
                    "not seen in WSUSCtrl.log or WCM.log".into(),
                )),
            }
        }
    }
    if failing.is_empty() {
        (Health::Healthy, failing)
    } else {
        (Health::Degraded, failing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &'static str, result: ProbeResult) -> Component {
        Component {
            name,
            result,
            detail: String::new(),
            latency: Duration::ZERO,
        }
    }

    fn all_ok() -> Vec<Component> {
        std::iter::once("tcp")
            .chain(sup_wsus::probe::LADDER)
            .map(|n| c(n, ProbeResult::Ok))
            .collect()
    }

    const FRESH: LogView = LogView {
        components_healthy: Some(Duration::from_secs(1)),
        database_ok: Some(Duration::from_secs(1)),
    };

    #[test]
    fn ladder_and_logs() {
        let max = Some(Duration::from_secs(60));
        assert_eq!(assess(&all_ok(), FRESH, max).0, Health::Healthy);
        assert_eq!(
            assess(&all_ok(), LogView::default(), None).0,
            Health::Healthy,
            "logs not required when max_age is off"
        );
        let (h, failing) = assess(&all_ok(), LogView::default(), max);
        assert_eq!(h, Health::Degraded);
        assert_eq!(failing.len(), 2);
        let stale = LogView {
            components_healthy: Some(Duration::from_secs(600)),
            ..FRESH
        };
        assert_eq!(assess(&all_ok(), stale, max).0, Health::Degraded);
        for (name, r) in [
            ("tcp", ProbeResult::ConnectFailed),
            ("server_sync", ProbeResult::HtmlError),
            ("client_web_service", ProbeResult::SoapFault),
            ("server_sync", ProbeResult::Timeout),
        ] {
            let mut comps = all_ok();
            if let Some(x) = comps.iter_mut().find(|x| x.name == name) {
                x.result = r;
            }
            assert_eq!(
                assess(&comps, FRESH, max).0,
                Health::Unhealthy,
                "{name} {r:?}"
            );
        }
        let mut comps = all_ok();
        comps[3].result = ProbeResult::BadResponse;
        assert_eq!(assess(&comps, FRESH, max).0, Health::Degraded);
    }
}
