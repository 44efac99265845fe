//! The log watcher's metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabels {
    pub log: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MilestoneLabels {
    pub log: String,
    pub milestone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    pub site: String,
    pub server: String,
    pub log: String,
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub lines: Family<LogLabels, Counter>,
    pub milestones: Family<MilestoneLabels, Counter>,
    pub lag_bytes: Family<FileLabels, Gauge>,
    pub gaps: Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sup_log_lines",
            "Log lines read, by log",
            self.lines.clone(),
        );
        r.register(
            "sup_log_milestones",
            "Milestones found, by log and name",
            self.milestones.clone(),
        );
        r.register(
            "sup_logwatch_lag_bytes",
            "Bytes between the read position and the end of each followed file",
            self.lag_bytes.clone(),
        );
        r.register(
            "sup_logwatch_rotation_gaps",
            "Rotations whose unread tail was gone (rotated twice between reads)",
            self.gaps.clone(),
        );
    }
}
