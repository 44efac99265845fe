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
        }
    }
}
