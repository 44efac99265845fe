//! The provisioner's metrics.

use super::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `pending` (not yet delivered) or `unacked` (delivered, not yet acknowledged).
    pub state: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub commands: Family<CommandLabels, Counter>,
    pub redeliveries: Counter,
    pub duration: Family<CommandLabels, Histogram>,
    pub queue: Family<QueueLabels, Gauge>,
    pub drift: drift::DriftGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            commands: Family::default(),
            redeliveries: Counter::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
            }),
            queue: Family::default(),
            drift: Gauge::default(),
        }
    }
}

impl Metrics {
    pub(crate) fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "sup_provisioning_duration_seconds",
            "Time to handle a command (agent calls included), by kind and outcome",
            self.duration.clone(),
        );
        r.register(
            "sup_command_queue_depth",
            "Provisioner commands waiting in the queue: pending (undelivered) or unacked",
            self.queue.clone(),
        );
        r.register(
            "sup_provisioner_commands",
            "Commands handled, by kind and outcome",
            self.commands.clone(),
        );
        r.register(
            "sup_drift_fields",
            "Settings of the sites' control files that differ from their declarations, as last read through their SMS Providers",
            self.drift.clone(),
        );
        r.register(
            "sup_provisioner_redeliveries",
            "Commands delivered more than once",
            self.redeliveries.clone(),
        );
    }
}
