//! Subject and key names. Host names contain dots, which NATS uses as token separators, so they
//! are carried as tokens with `.` replaced by `_` (an FQDN has no `_`, so this is reversible).

use sup_proto::v1::Event;
use sup_proto::v1::event::Payload;

/// Every event: `sup.evt.<site>.<kind>`.
pub const EVENTS_ALL: &str = "sup.evt.>";
/// Every event's CloudEvent (its public JSON form): `sup.ce.<site>.<kind>`.
pub const CLOUD_EVENTS_ALL: &str = "sup.ce.>";
/// Every command: `sup.cmd.<service>.<site>`.
pub const COMMANDS_ALL: &str = "sup.cmd.>";
/// Every log line: `sup.log.<site>.<server>.<log>`.
pub const LOGS_ALL: &str = "sup.log.>";

/// A host name or file name as one subject token.
pub fn token(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' => '_',
            ' ' | '*' | '>' | '\t' | '\r' | '\n' => '-',
            c => c,
        })
        .collect()
}

/// The host name a token stands for.
pub fn untoken(token: &str) -> String {
    token.replace('_', ".")
}

pub fn event(site: &str, kind: &str) -> String {
    format!("sup.evt.{}.{kind}", token(site))
}

pub fn cloud_event(site: &str, kind: &str) -> String {
    format!("sup.ce.{}.{kind}", token(site))
}

/// Every event of one site.
pub fn events_of(site: &str) -> String {
    format!("sup.evt.{}.>", token(site))
}

pub fn command(service: &str, site: &str) -> String {
    format!("sup.cmd.{service}.{}", token(site))
}

pub fn commands_for(service: &str) -> String {
    format!("sup.cmd.{service}.>")
}

pub fn log_line(site: &str, server: &str, log: &str) -> String {
    format!("sup.log.{}.{}.{}", token(site), token(server), token(log))
}

/// The subject kind of an event, from its payload.
pub fn event_kind(event: &Event) -> &'static str {
    match &event.payload {
        Some(Payload::SiteApplied(_)) => "site_applied",
        Some(Payload::SiteDeleted(_)) => "site_deleted",
        Some(Payload::RoleStateChanged(_)) => "role_state",
        Some(Payload::ActiveChanged(_)) => "active_changed",
        Some(Payload::Milestone(_)) => "milestone",
        Some(Payload::HealthChanged(_)) => "health_changed",
        Some(Payload::Provisioning(_)) => "provisioning",
        Some(Payload::ComponentConfigured(_)) => "component_configured",
        Some(Payload::SyncStarted(_)) => "sync_started",
        Some(Payload::SyncFinished(_)) => "sync_finished",
        Some(Payload::CommandRejected(_)) => "command_rejected",
        Some(Payload::Alert(_)) => "alert",
        Some(Payload::DriftDetected(_)) => "drift_detected",
        None => "unknown",
    }
}

/// `sup_active` key of a site's slot: `<site>.intranet` or `<site>.internet`.
pub fn active_key(site: &str, slot: &str) -> String {
    format!("{}.{slot}", token(site))
}

/// `sup_roles` key of a server's role in a site.
pub fn role_key(site: &str, server: &str) -> String {
    format!("{}.{}", token(site), token(server))
}

/// `sup_sites` key of a site.
pub fn site_key(site: &str) -> String {
    token(site)
}

/// `sup_sites` key of a site's last drift report (a `DriftDetected`, empty when none), written
/// by the provisioner that reads the site through its SMS Provider.
pub fn drift_key(site: &str) -> String {
    format!("{}.drift", token(site))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tokens_round_trip() {
        let host = "cen-sup01.corp.example.com";
        assert_eq!(token(host), "cen-sup01_corp_example_com");
        assert_eq!(untoken(&token(host)), host);
        assert_eq!(
            log_line("CEN", host, "SUPSetup.log"),
            "sup.log.CEN.cen-sup01_corp_example_com.SUPSetup_log"
        );
        assert_eq!(active_key("CEN", "intranet"), "CEN.intranet");
        assert_eq!(role_key("CEN", host), "CEN.cen-sup01_corp_example_com");
    }
}
