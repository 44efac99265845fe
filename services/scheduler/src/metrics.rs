//! The scheduler's metrics.

use super::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
}

/// Synchronization runs as this replica saw them end, and each top site's next due time.
#[derive(Clone)]
pub struct Metrics {
    pub runs: Family<ResultLabels, Counter>,
    pub duration: Family<ResultLabels, Histogram>,
    pub last_success: Family<SiteLabels, Gauge>,
    pub next_due: Family<SiteLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0])
            }),
            last_success: Family::default(),
            next_due: Family::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sup_sync_runs",
            "Synchronization runs ended, by result (succeeded, failed)",
            self.runs.clone(),
        );
        r.register(
            "sup_sync_duration_seconds",
            "Synchronization run duration from start to its result, by result",
            self.duration.clone(),
        );
        r.register(
            "sup_sync_last_success_timestamp_seconds",
            "When each site's last synchronization succeeded (Unix time)",
            self.last_success.clone(),
        );
        r.register(
            "sup_sync_next_due_timestamp_seconds",
            "When each scheduled site's next synchronization is due (Unix time)",
            self.next_due.clone(),
        );
    }
}
