//! What the pages show, computed from the coordinator's status, the scheduler's runs and the
//! event window; pure, so every rule here is unit-tested.
//!
//! The component grouping follows the ConfigMgr console's Component Status: WCM.log is written
//! by `SMS_WSUS_CONFIGURATION_MANAGER` (site server), wsyncmgr.log by `SMS_WSUS_SYNC_MANAGER`
//! (site server) and WSUSCtrl.log by `SMS_WSUS_CONTROL_MANAGER` (on the SUP); SUPSetup.log is
//! the role's installation (Microsoft Learn, "Log files" for Configuration Manager, and the
//! ConfigMgr 2007 "Software Updates" log list). Status message IDs are the ones the logs echo in
//! `STATMSG: ID=` lines (6701 started, 6702 done, 6703 failed, from SMS_WSUS_SYNC_MANAGER).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sup_proto::convert::{health_name, role_state_from_proto, slot_from_proto, sync_state_name};
use sup_proto::kind;
use sup_proto::prost_types::Timestamp;
use sup_proto::v1::{self, event::Payload};
use sup_smslog::MilestoneKind;

use crate::history::Entry;

pub const CONFIGURATION_MANAGER: &str = "SMS_WSUS_CONFIGURATION_MANAGER";
pub const SYNC_MANAGER: &str = "SMS_WSUS_SYNC_MANAGER";
pub const CONTROL_MANAGER: &str = "SMS_WSUS_CONTROL_MANAGER";
/// The role's installation, logged in SUPSetup.log.
pub const SUP_SETUP: &str = "SUP setup (SUPSetup.log)";

pub fn time(t: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

pub fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn role_state_name(state: i32) -> &'static str {
    role_state_from_proto(state)
        .map(|s| s.as_str())
        .unwrap_or("none")
}

/// One site as a row of the hierarchy.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeRow {
    pub depth: usize,
    pub code: String,
    pub name: String,
    pub mode: &'static str,
    pub failover: &'static str,
    pub intranet: String,
    pub intranet_members: Vec<String>,
    pub internet: String,
    pub epoch: u64,
    pub sync_state: &'static str,
    pub last_run: String,
    pub next_run: String,
    /// How many settings differ from the control file, when it was read; `None` when unknown.
    pub drift: usize,
    pub roles: usize,
    pub roles_settled: usize,
    pub roles_failed: usize,
    pub unhealthy: usize,
}

fn mode_name(m: i32) -> &'static str {
    match v1::SiteMode::try_from(m) {
        Ok(v1::SiteMode::Native) => "native",
        _ => "mixed",
    }
}

fn failover_name(f: i32) -> &'static str {
    match v1::FailoverPolicy::try_from(f) {
        Ok(v1::FailoverPolicy::Auto) => "auto",
        _ => "manual",
    }
}

fn slot_target(a: Option<&v1::ActiveSlot>) -> (String, Vec<String>, u64) {
    match a {
        Some(a) if !a.target.is_empty() => (
            a.target.clone(),
            if a.nlb { a.members.clone() } else { Vec::new() },
            a.epoch,
        ),
        _ => (String::new(), Vec::new(), 0),
    }
}

/// A role is settled when it is where its declaration puts it: active in its slot, or ready
/// as a standby.
pub fn settled(r: &v1::RoleStatus) -> bool {
    let state = v1::RoleState::try_from(r.state).unwrap_or(v1::RoleState::Unspecified);
    match state {
        v1::RoleState::Active => true,
        v1::RoleState::Ready => r.desired_slot == v1::Slot::Unspecified as i32,
        _ => false,
    }
}

fn tree_row(s: &v1::SiteStatus, depth: usize) -> TreeRow {
    let site = s.site.clone().unwrap_or_default();
    let (intranet, intranet_members, intranet_epoch) = slot_target(s.intranet.as_ref());
    let (internet, _, internet_epoch) = slot_target(s.internet.as_ref());
    let sync = s.sync.clone().unwrap_or_default();
    TreeRow {
        depth,
        code: site.code.clone(),
        name: site.name.clone(),
        mode: mode_name(site.mode),
        failover: failover_name(site.failover),
        intranet,
        intranet_members,
        internet,
        epoch: intranet_epoch.max(internet_epoch),
        sync_state: sync_state_name(sync.state),
        last_run: when(time(sync.last_finished.as_ref()).or(time(sync.last_started.as_ref()))),
        next_run: when(time(sync.next.as_ref())),
        drift: s.drift.len(),
        roles: s.roles.len(),
        roles_settled: s.roles.iter().filter(|r| settled(r)).count(),
        roles_failed: s
            .roles
            .iter()
            .filter(|r| r.state == v1::RoleState::Failed as i32)
            .count(),
        unhealthy: s
            .roles
            .iter()
            .filter(|r| r.health == v1::Health::Unhealthy as i32)
            .count(),
    }
}

/// Every site as a tree: central sites first (and any site whose parent is not known), each
/// followed by its children, depth-first, siblings by code. A site appears once even if the
/// parent links loop.
pub fn hierarchy(status: &v1::StatusResponse) -> Vec<TreeRow> {
    let code = |s: &v1::SiteStatus| s.site.as_ref().map(|s| s.code.clone()).unwrap_or_default();
    let parent = |s: &v1::SiteStatus| {
        s.site
            .as_ref()
            .map(|s| s.parent.clone())
            .unwrap_or_default()
    };
    // A site without a code (never stored so) has no place in a tree.
    let sites: Vec<&v1::SiteStatus> = status
        .sites
        .iter()
        .filter(|s| !code(s).is_empty())
        .collect();
    let known: HashSet<String> = sites.iter().map(|s| code(s)).collect();
    let mut children: BTreeMap<String, Vec<&v1::SiteStatus>> = BTreeMap::new();
    let mut roots: Vec<&v1::SiteStatus> = Vec::new();
    for s in &sites {
        let p = parent(s);
        if p.is_empty() || !known.contains(&p) || p == code(s) {
            roots.push(s);
        } else {
            children.entry(p).or_default().push(s);
        }
    }
    roots.sort_by_key(|s| code(s));
    for list in children.values_mut() {
        list.sort_by_key(|s| code(s));
    }
    // Sites only reachable through a loop of parents start walks of their own, after the real
    // roots, each with its descendants under it.
    let mut by_code: Vec<&v1::SiteStatus> = sites.clone();
    by_code.sort_by_key(|s| code(s));
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for start in roots.into_iter().chain(by_code) {
        if seen.contains(&code(start)) {
            continue;
        }
        let mut stack: Vec<(&v1::SiteStatus, usize)> = vec![(start, 0)];
        while let Some((s, depth)) = stack.pop() {
            if !seen.insert(code(s)) {
                continue;
            }
            rows.push(tree_row(s, depth));
            if let Some(kids) = children.get(&code(s)) {
                stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
            }
        }
    }
    rows
}

/// One role of a site's page.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRow {
    pub server: String,
    pub state: &'static str,
    pub health: &'static str,
    pub slot: &'static str,
    pub desired_slot: &'static str,
    pub nlb_cluster: String,
    pub upstream: String,
    pub waiting: String,
    pub reason: String,
    pub updated: String,
}

fn slot_name(s: i32) -> &'static str {
    slot_from_proto(s).map(|s| s.as_str()).unwrap_or("standby")
}

pub fn roles(s: &v1::SiteStatus) -> Vec<RoleRow> {
    let mut rows: Vec<RoleRow> = s
        .roles
        .iter()
        .map(|r| {
            let sync = s.role_sync.iter().find(|x| x.server == r.server);
            RoleRow {
                server: r.server.clone(),
                state: role_state_name(r.state),
                health: health_name(r.health),
                slot: slot_name(r.slot),
                desired_slot: slot_name(r.desired_slot),
                nlb_cluster: r.nlb_cluster.clone(),
                upstream: sync.map(|x| x.upstream.clone()).unwrap_or_default(),
                waiting: sync.map(|x| x.waiting.clone()).unwrap_or_default(),
                reason: r.reason.clone(),
                updated: when(time(r.updated.as_ref())),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.server.cmp(&b.server));
    rows
}

/// Which component wrote a log, by the log's file name (a rotated `.lo_` counts as its log).
pub fn component_of_log(log: &str) -> Option<&'static str> {
    let file = log
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(log)
        .to_ascii_lowercase();
    let stem = file.split('.').next().unwrap_or("");
    match stem {
        "wcm" => Some(CONFIGURATION_MANAGER),
        "wsyncmgr" => Some(SYNC_MANAGER),
        "wsusctrl" => Some(CONTROL_MANAGER),
        "supsetup" => Some(SUP_SETUP),
        _ => None,
    }
}

/// A status message as the console lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusMessage {
    pub sequence: u64,
    pub time: String,
    /// Informational, Warning or Error, as ConfigMgr names severities.
    pub severity: &'static str,
    pub component: &'static str,
    pub system: String,
    /// The ConfigMgr message ID when the log line carries one (`STATMSG: ID=`).
    pub message_id: String,
    pub milestone: String,
    pub description: String,
}

fn severity(m: &v1::MilestoneObserved) -> &'static str {
    match m.fields.get("sev").map(String::as_str) {
        Some("E") => return "Error",
        Some("W") => return "Warning",
        Some("I") => return "Informational",
        _ => {}
    }
    match MilestoneKind::from_name(&m.name) {
        Some(MilestoneKind::SyncFailed | MilestoneKind::RoleInstallFailed) => "Error",
        _ => "Informational",
    }
}

/// The site's status messages from the milestones its logs carried, newest first.
pub fn status_messages(events: &[Arc<Entry>]) -> Vec<StatusMessage> {
    let mut out: Vec<StatusMessage> = events
        .iter()
        .filter_map(|e| {
            let Some(Payload::Milestone(m)) = e.event.payload.as_ref() else {
                return None;
            };
            let component = component_of_log(&m.log)?;
            Some(StatusMessage {
                sequence: e.sequence,
                time: when(time(m.line_time.as_ref()).or(time(e.event.time.as_ref()))),
                severity: severity(m),
                component,
                system: e.event.server.clone(),
                message_id: m.fields.get("statmsg_id").cloned().unwrap_or_default(),
                milestone: m.name.clone(),
                description: m.line.clone(),
            })
        })
        .collect();
    out.reverse();
    out
}

/// One component's status, as the console's Component Status node shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentRow {
    pub name: &'static str,
    /// "OK", "Error" or "No messages".
    pub status: &'static str,
    pub errors: usize,
    pub last_time: String,
    pub last_message: String,
}

/// The SUP components with the status their latest message gives them (an error as the
/// latest message: Error), and the errors among the messages held.
pub fn components(messages: &[StatusMessage]) -> Vec<ComponentRow> {
    [
        CONFIGURATION_MANAGER,
        SYNC_MANAGER,
        CONTROL_MANAGER,
        SUP_SETUP,
    ]
    .into_iter()
    .map(|name| {
        // `messages` is newest first.
        let mine: Vec<&StatusMessage> = messages.iter().filter(|m| m.component == name).collect();
        let latest = mine.first();
        ComponentRow {
            name,
            status: match latest {
                None => "No messages",
                Some(m) if m.severity == "Error" => "Error",
                Some(_) => "OK",
            },
            errors: mine.iter().filter(|m| m.severity == "Error").count(),
            last_time: latest.map(|m| m.time.clone()).unwrap_or_default(),
            last_message: latest
                .map(|m| format!("{}: {}", m.milestone, m.description))
                .unwrap_or_default(),
        }
    })
    .collect()
}

/// One event as the history lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRow {
    pub sequence: u64,
    pub time: String,
    pub site: String,
    pub server: String,
    pub kind: &'static str,
    pub text: String,
}

pub fn event_row(e: &Entry) -> EventRow {
    let (kind, text) = describe(&e.event);
    EventRow {
        sequence: e.sequence,
        time: when(time(e.event.time.as_ref())),
        site: e.event.site.clone(),
        server: e.event.server.clone(),
        kind,
        text,
    }
}

/// An event's kind (as `supctl events -o json` names it) and a sentence for people.
pub fn describe(e: &v1::Event) -> (&'static str, String) {
    let or_none = |s: &str| {
        if s.is_empty() {
            "none".to_string()
        } else {
            s.to_string()
        }
    };
    match e.payload.as_ref() {
        Some(Payload::SiteApplied(a)) => (
            kind::SITE_APPLIED,
            if a.changes.is_empty() {
                "applied, no changes".into()
            } else {
                a.changes.join("; ")
            },
        ),
        Some(Payload::SiteDeleted(_)) => (kind::SITE_DELETED, "site deleted".into()),
        Some(Payload::RoleStateChanged(r)) => (
            kind::ROLE_STATE,
            format!(
                "{} -> {}{}",
                role_state_name(r.from),
                role_state_name(r.to),
                if r.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.reason)
                }
            ),
        ),
        Some(Payload::ActiveChanged(a)) => (
            kind::ACTIVE_CHANGED,
            format!(
                "{} SUP: {} (was {}), epoch {}, {}",
                slot_from_proto(a.slot).map(|s| s.as_str()).unwrap_or("?"),
                or_none(&a.target),
                or_none(&a.previous),
                e.epoch,
                a.cause
            ),
        ),
        Some(Payload::Milestone(m)) => (
            kind::MILESTONE,
            format!("{} in {}: {}", m.name, m.log, m.line),
        ),
        Some(Payload::HealthChanged(h)) => (
            kind::HEALTH_CHANGED,
            format!(
                "{} -> {}{}",
                health_name(h.from),
                health_name(h.to),
                if h.failing.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (failing: {})",
                        h.failing
                            .iter()
                            .map(|c| c.component.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ),
        Some(Payload::Provisioning(p)) => (kind::PROVISIONING, format!("{} {}", p.step, p.detail)),
        Some(Payload::ComponentConfigured(c)) => (
            kind::COMPONENT_CONFIGURED,
            format!("configured; upstream {}", or_none(&c.upstream_server)),
        ),
        Some(Payload::SyncStarted(s)) => (
            kind::SYNC_STARTED,
            format!(
                "synchronization started ({})",
                s.run.as_ref().map(|r| r.trigger.as_str()).unwrap_or("")
            ),
        ),
        Some(Payload::SyncFinished(s)) => (
            kind::SYNC_FINISHED,
            format!(
                "synchronization {}{}",
                sync_state_name(s.run.as_ref().map(|r| r.state).unwrap_or(0)),
                s.run
                    .as_ref()
                    .filter(|r| !r.error.is_empty())
                    .map(|r| format!(": {}", r.error))
                    .unwrap_or_default()
            ),
        ),
        Some(Payload::CommandRejected(c)) => (kind::COMMAND_REJECTED, c.reason.clone()),
        Some(Payload::Alert(a)) => (kind::ALERT, format!("{}: {}", a.kind, a.message)),
        Some(Payload::DriftDetected(d)) => (
            kind::DRIFT_DETECTED,
            d.fields
                .iter()
                .map(|f| format!("{}: declared {:?}, live {:?}", f.path, f.declared, f.live))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => (kind::UNKNOWN, String::new()),
    }
}

/// A server's health changes in the event window, oldest first, and its health before the
/// first of them (that change's `from`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthHistory {
    pub before: Option<i32>,
    pub changes: Vec<(DateTime<Utc>, i32)>,
}

/// Health changes of each server of a site, from the event window.
pub fn health_changes(events: &[Arc<Entry>]) -> BTreeMap<String, HealthHistory> {
    let mut out: BTreeMap<String, HealthHistory> = BTreeMap::new();
    for e in events {
        if let Some(Payload::HealthChanged(h)) = e.event.payload.as_ref()
            && let Some(at) = time(e.event.time.as_ref())
        {
            let history = out.entry(e.event.server.clone()).or_default();
            history.before.get_or_insert(h.from);
            history.changes.push((at, h.to));
        }
    }
    out
}

#[cfg(test)]
mod tests;
