//! The kind of an event: one token per payload, the last token of its subject
//! (`sup.evt.<site>.<kind>`) and the `kind` every reader shows, so they all say the same.

use crate::v1::{Event, event::Payload};

pub const SITE_APPLIED: &str = "site_applied";
pub const SITE_DELETED: &str = "site_deleted";
pub const ROLE_STATE: &str = "role_state";
pub const ACTIVE_CHANGED: &str = "active_changed";
pub const MILESTONE: &str = "milestone";
pub const HEALTH_CHANGED: &str = "health_changed";
pub const PROVISIONING: &str = "provisioning";
pub const COMPONENT_CONFIGURED: &str = "component_configured";
pub const SYNC_STARTED: &str = "sync_started";
pub const SYNC_FINISHED: &str = "sync_finished";
pub const COMMAND_REJECTED: &str = "command_rejected";
pub const ALERT: &str = "alert";
pub const DRIFT_DETECTED: &str = "drift_detected";
pub const UNKNOWN: &str = "unknown";

/// The kind of `event`, from its payload.
pub fn of(event: &Event) -> &'static str {
    match &event.payload {
        Some(Payload::SiteApplied(_)) => SITE_APPLIED,
        Some(Payload::SiteDeleted(_)) => SITE_DELETED,
        Some(Payload::RoleStateChanged(_)) => ROLE_STATE,
        Some(Payload::ActiveChanged(_)) => ACTIVE_CHANGED,
        Some(Payload::Milestone(_)) => MILESTONE,
        Some(Payload::HealthChanged(_)) => HEALTH_CHANGED,
        Some(Payload::Provisioning(_)) => PROVISIONING,
        Some(Payload::ComponentConfigured(_)) => COMPONENT_CONFIGURED,
        Some(Payload::SyncStarted(_)) => SYNC_STARTED,
        Some(Payload::SyncFinished(_)) => SYNC_FINISHED,
        Some(Payload::CommandRejected(_)) => COMMAND_REJECTED,
        Some(Payload::Alert(_)) => ALERT,
        Some(Payload::DriftDetected(_)) => DRIFT_DETECTED,
        None => UNKNOWN,
    }
}
