//! Subject and key names. Host names contain dots, which NATS uses as token separators, so they
//! are carried as tokens with `.` replaced by `_` (an FQDN has no `_`, so this is reversible).

use sup_proto::v1::Event;

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

/// Events of one kind from every site: `sup.evt.*.<kind>`.
pub fn events_of_kind(kind: &str) -> String {
    format!("sup.evt.*.{kind}")
}

pub fn commands_for(service: &str) -> String {
    format!("sup.cmd.{service}.>")
}

pub fn log_line(site: &str, server: &str, log: &str) -> String {
    format!("sup.log.{}.{}.{}", token(site), token(server), token(log))
}

/// The kind token of each event subject, named after the payload it carries.
pub use sup_proto::kind;

/// The subject kind of an event, from its payload.
pub fn event_kind(event: &Event) -> &'static str {
    kind::of(event)
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

/// `sup_sites` key of a site's sync status.
pub fn sync_key(site: &str) -> String {
    format!("{}.sync", token(site))
}

/// `sup_sites` key of the slot a site's operator asked for (`intranet` or `internet`), kept
/// until the chosen server is ready to take it.
pub fn want_key(site: &str, slot: &str) -> String {
    format!("{}.want.{slot}", token(site))
}

/// `sup_sites` key of a site's synchronization run in progress.
pub fn run_key(site: &str) -> String {
    format!("{}.run", token(site))
}

/// `sup_sites` key of a site's schedule record.
pub fn schedule_key(site: &str) -> String {
    format!("{}.sched", token(site))
}

/// `sup_sites` key that lists the applied site codes.
pub const SITES_INDEX: &str = "index";

/// `sup_sites` key that lists the servers of a site that have role records.
pub fn roles_index(site: &str) -> String {
    format!("{}.roles", token(site))
}

/// `sup_health` key of a server's latest health report.
pub fn health_key(site: &str, server: &str) -> String {
    role_key(site, server)
}

/// `sup_positions` key of one log file the watcher follows.
pub fn position_key(site: &str, server: &str, log: &str) -> String {
    format!("{}.{}.{}", token(site), token(server), token(log))
}

/// An id made safe as a key token: letters, digits, `-` and `_` kept, anything else `_`.
fn id_token(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `sup_ops` key of the stored result of a mutating request, by its op id.
pub fn op_key(op_id: &str) -> String {
    format!("op.{}", id_token(op_id))
}

/// `sup_ops` key of the outcome of a command the provisioner carried out, by command id.
pub fn done_key(command_id: &str) -> String {
    format!("cmd.{}", id_token(command_id))
}

/// `sup_ops` key of the revision of a bucket (`active` or `roles`) up to which every change is
/// announced as an event.
pub fn announced_key(bucket: &str) -> String {
    format!("announced.{bucket}")
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
        assert_eq!(events_of_kind(kind::MILESTONE), "sup.evt.*.milestone");
        assert_eq!(want_key("CEN", "internet"), "CEN.want.internet");
        assert_eq!(
            position_key("CEN", host, "WCM.log"),
            "CEN.cen-sup01_corp_example_com.WCM_log"
        );
    }

    #[test]
    fn ids_become_single_key_tokens() {
        assert_eq!(op_key("a.b c/d-e_f"), "op.a_b_c_d-e_f");
        assert_eq!(done_key("cmd:1.2"), "cmd.cmd_1_2");
    }
}
