//! The health service's metrics.

use super::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub component: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabel {
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub to: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub results: Family<ProbeLabels, Counter>,
    pub latency: Family<ComponentLabel, Histogram>,
    pub transitions: Family<TransitionLabels, Counter>,
    /// One-hot: 1 for each server's current health, 0 for the others.
    pub current: Family<ServerHealthLabels, Gauge>,
    /// The servers this replica probes in its share.
    pub probed_servers: Gauge,
    /// The health replicas alive, as this one sees them.
    pub replicas: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerHealthLabels {
    pub site: String,
    pub server: String,
    pub health: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            results: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
            }),
            transitions: Family::default(),
            current: Family::default(),
            probed_servers: Gauge::default(),
            replicas: Gauge::default(),
        }
    }
}

/// The label sets of one server's `sup_health` gauges, one per health.
pub(crate) fn health_labels(site: &str, server: &str) -> [(ServerHealthLabels, v1::Health); 4] {
    [
        v1::Health::Unknown,
        v1::Health::Healthy,
        v1::Health::Degraded,
        v1::Health::Unhealthy,
    ]
    .map(|h| {
        (
            ServerHealthLabels {
                site: site.to_string(),
                server: server.to_string(),
                health: format!("{h:?}").to_ascii_lowercase(),
            },
            h,
        )
    })
}
