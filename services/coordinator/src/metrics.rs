//! The coordinator's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct Metrics {
    pub applies_changed: Counter,
    pub activations_won: Counter,
    pub activations_lost: Counter,
    pub slot_changes: Counter,
    pub role_transitions: Counter,
    pub events_handled: Counter,
    pub events_failed: Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sup_coordinator_applies_changed",
            "Site applies that changed a stored spec",
            self.applies_changed.clone(),
        );
        r.register(
            "sup_coordinator_activations_won",
            "Slot compare-and-sets won",
            self.activations_won.clone(),
        );
        r.register(
            "sup_coordinator_activations_lost",
            "Slot compare-and-sets lost to a concurrent writer",
            self.activations_lost.clone(),
        );
        r.register(
            "sup_active_slot_changes",
            "Active slot changes (new epochs)",
            self.slot_changes.clone(),
        );
        r.register(
            "sup_role_transitions",
            "Role lifecycle transitions",
            self.role_transitions.clone(),
        );
        r.register(
            "sup_coordinator_events_handled",
            "Events consumed and handled",
            self.events_handled.clone(),
        );
        r.register(
            "sup_coordinator_events_failed",
            "Events whose handling failed and will be redelivered",
            self.events_failed.clone(),
        );
    }
}
