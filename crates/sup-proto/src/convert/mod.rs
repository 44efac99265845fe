//! Conversions between the `sup-core` domain and `sup.v1` messages. A proto `Site` becomes the
//! spec form (`RawSite`) so that API input goes through the same validation as a site file.

use chrono::Weekday;
use sup_core::catalog::Entry;
use sup_core::lifecycle::RoleState;
use sup_core::model::{self, SlotKind};
use sup_core::schedule::{IntervalUnit, Recurrence, SyncSchedule, WeekOrder};
use sup_core::spec::{
    NameOrNumber, RawNlbCluster, RawProxy, RawSchedule, RawScheduleTable, RawSite, RawSiteSystem,
    RawSoftwareUpdatePoint, RawSoftwareUpdates,
};

use crate::v1;

mod stored;
pub use stored::{StoredSiteError, site_from_stored};

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub fn slot_to_proto(slot: Option<SlotKind>) -> v1::Slot {
    match slot {
        Some(SlotKind::Intranet) => v1::Slot::Intranet,
        Some(SlotKind::Internet) => v1::Slot::Internet,
        None => v1::Slot::Unspecified,
    }
}

pub fn slot_from_proto(slot: i32) -> Option<SlotKind> {
    match v1::Slot::try_from(slot).ok()? {
        v1::Slot::Intranet => Some(SlotKind::Intranet),
        v1::Slot::Internet => Some(SlotKind::Internet),
        v1::Slot::Unspecified => None,
    }
}

pub fn role_state_to_proto(s: RoleState) -> v1::RoleState {
    match s {
        RoleState::Declared => v1::RoleState::Declared,
        RoleState::Provisioning => v1::RoleState::Provisioning,
        RoleState::Installing => v1::RoleState::Installing,
        RoleState::Installed => v1::RoleState::Installed,
        RoleState::Verifying => v1::RoleState::Verifying,
        RoleState::Ready => v1::RoleState::Ready,
        RoleState::Active => v1::RoleState::Active,
        RoleState::Unhealthy => v1::RoleState::Unhealthy,
        RoleState::Failed => v1::RoleState::Failed,
        RoleState::Removing => v1::RoleState::Removing,
        RoleState::Removed => v1::RoleState::Removed,
    }
}

pub fn role_state_from_proto(s: i32) -> Option<RoleState> {
    Some(match v1::RoleState::try_from(s).ok()? {
        v1::RoleState::Unspecified => return None,
        v1::RoleState::Declared => RoleState::Declared,
        v1::RoleState::Provisioning => RoleState::Provisioning,
        v1::RoleState::Installing => RoleState::Installing,
        v1::RoleState::Installed => RoleState::Installed,
        v1::RoleState::Verifying => RoleState::Verifying,
        v1::RoleState::Ready => RoleState::Ready,
        v1::RoleState::Active => RoleState::Active,
        v1::RoleState::Unhealthy => RoleState::Unhealthy,
        v1::RoleState::Failed => RoleState::Failed,
        v1::RoleState::Removing => RoleState::Removing,
        v1::RoleState::Removed => RoleState::Removed,
    })
}

/// The lower-case name of a proto health value, as status output shows it.
pub fn health_name(h: i32) -> &'static str {
    match v1::Health::try_from(h).unwrap_or(v1::Health::Unknown) {
        v1::Health::Healthy => "healthy",
        v1::Health::Degraded => "degraded",
        v1::Health::Unhealthy => "unhealthy",
        v1::Health::Unknown | v1::Health::Unspecified => "unknown",
    }
}

/// The lower-case name of a proto synchronization state, as status output shows it.
pub fn sync_state_name(s: i32) -> &'static str {
    match v1::SyncState::try_from(s).unwrap_or(v1::SyncState::Unspecified) {
        v1::SyncState::Running => "running",
        v1::SyncState::Succeeded => "succeeded",
        v1::SyncState::Failed => "failed",
        v1::SyncState::NeverRun | v1::SyncState::Unspecified => "never_run",
    }
}

fn weekday_number(d: Weekday) -> u32 {
    d.num_days_from_sunday() + 1
}

fn entries(list: &[Entry]) -> Vec<v1::CatalogEntry> {
    list.iter()
        .map(|e| v1::CatalogEntry {
            title: e.title.to_string(),
            id: e.id.to_string(),
        })
        .collect()
}

pub fn schedule_to_proto(s: &SyncSchedule) -> v1::Schedule {
    use v1::schedule::{Kind, Manual, MonthlyByDate, MonthlyByWeekday, SimpleInterval, Weekly};
    let SyncSchedule::Recurring(s) = s else {
        return v1::Schedule {
            kind: Some(Kind::Manual(Manual {})),
            ..Default::default()
        };
    };
    let kind = match &s.recurrence {
        Recurrence::Interval { every, unit } => Kind::Simple(match unit {
            IntervalUnit::Hours => SimpleInterval {
                hours: *every,
                ..Default::default()
            },
            IntervalUnit::Days => SimpleInterval {
                days: *every,
                ..Default::default()
            },
            IntervalUnit::Weeks => SimpleInterval {
                weeks: *every,
                ..Default::default()
            },
        }),
        Recurrence::Weekly { days, every_weeks } => Kind::Weekly(Weekly {
            weekdays: days.iter().map(|d| weekday_number(*d)).collect(),
            every_weeks: *every_weeks,
        }),
        Recurrence::MonthlyByDate { day, every_months } => Kind::MonthlyByDate(MonthlyByDate {
            day: *day,
            every_months: *every_months,
        }),
        Recurrence::MonthlyByWeekday {
            week,
            weekday,
            every_months,
        } => Kind::MonthlyByWeekday(MonthlyByWeekday {
            week_order: match week {
                WeekOrder::Nth(n) => u32::from(*n),
                WeekOrder::Last => 0,
            },
            weekday: weekday_number(*weekday),
            every_months: *every_months,
        }),
    };
    v1::Schedule {
        kind: Some(kind),
        token: sup_core::token::from_schedule(&SyncSchedule::Recurring(s.clone()))
            .unwrap_or_default(),
        start: s.start.format("%Y-%m-%dT%H:%M:%S").to_string(),
        is_gmt: s.gmt,
    }
}

/// The spec form of a proto schedule; `None` when it says nothing (the default applies).
pub fn schedule_from_proto(s: &v1::Schedule) -> Option<RawSchedule> {
    use v1::schedule::Kind;
    let start = non_empty(&s.start);
    let table = |kind: &str| RawScheduleTable {
        kind: Some(kind.to_string()),
        start: start.clone(),
        is_gmt: s.is_gmt.then_some(true),
        ..Default::default()
    };
    let Some(kind) = s.kind.as_ref() else {
        return (!s.token.is_empty()).then(|| RawSchedule::Text(s.token.clone()));
    };
    Some(match kind {
        Kind::Manual(_) => RawSchedule::Text("manual".into()),
        Kind::Simple(i) => {
            let every = match (i.hours, i.days, i.weeks) {
                (h, 0, 0) if h > 0 => format!("{h} hours"),
                (0, d, 0) if d > 0 => format!("{d} days"),
                (0, 0, w) => format!("{w} weeks"),
                (h, d, w) => format!("{h} hours {d} days {w} weeks"),
            };
            RawSchedule::Table(Box::new(RawScheduleTable {
                every: Some(every),
                ..table("simple")
            }))
        }
        Kind::Weekly(w) => RawSchedule::Table(Box::new(RawScheduleTable {
            // Numbers, 1 = Sunday: validation names whatever is out of range.
            days: Some(
                w.weekdays
                    .iter()
                    .map(|n| NameOrNumber::Number(i64::from(*n)))
                    .collect(),
            ),
            every_weeks: (w.every_weeks > 0).then_some(i64::from(w.every_weeks)),
            ..table("weekly")
        })),
        Kind::MonthlyByDate(m) => RawSchedule::Table(Box::new(RawScheduleTable {
            day: Some(i64::from(m.day)),
            every_months: (m.every_months > 0).then_some(i64::from(m.every_months)),
            ..table("monthly_by_date")
        })),
        Kind::MonthlyByWeekday(m) => RawSchedule::Table(Box::new(RawScheduleTable {
            week: Some(NameOrNumber::Number(i64::from(m.week_order))),
            weekday: Some(NameOrNumber::Number(i64::from(m.weekday))),
            every_months: (m.every_months > 0).then_some(i64::from(m.every_months)),
            ..table("monthly_by_weekday")
        })),
    })
}

pub fn site_to_proto(site: &model::Site) -> v1::Site {
    let su = &site.software_updates;
    v1::Site {
        code: site.code.clone(),
        name: site.name.clone(),
        mode: match site.mode {
            model::SiteMode::Mixed => v1::SiteMode::Mixed,
            model::SiteMode::Native => v1::SiteMode::Native,
        } as i32,
        parent: site.parent.clone().unwrap_or_default(),
        failover: match site.failover {
            model::Failover::Manual => v1::FailoverPolicy::Manual,
            model::Failover::Auto => v1::FailoverPolicy::Auto,
        } as i32,
        drift: match site.drift {
            model::Drift::Report => v1::DriftPolicy::Report,
            model::Drift::Correct => v1::DriftPolicy::Correct,
        } as i32,
        software_updates: Some(v1::SoftwareUpdateSettings {
            sync_source: match su.sync_source {
                model::SyncSource::MicrosoftUpdate => v1::SyncSource::MicrosoftUpdate,
                model::SyncSource::Upstream => v1::SyncSource::Upstream,
                model::SyncSource::None => v1::SyncSource::None,
            } as i32,
            reporting_events: match su.reporting_events {
                model::ReportingEvents::None => v1::ReportingEvents::None,
                model::ReportingEvents::StatusOnly => v1::ReportingEvents::StatusOnly,
                model::ReportingEvents::All => v1::ReportingEvents::All,
            } as i32,
            schedule: su.top.as_ref().map(|t| schedule_to_proto(&t.schedule)),
            classifications: su
                .top
                .as_ref()
                .map(|t| entries(&t.classifications))
                .unwrap_or_default(),
            products: su
                .top
                .as_ref()
                .map(|t| entries(&t.products))
                .unwrap_or_default(),
            languages: su
                .top
                .as_ref()
                .map(|t| entries(&t.update_file_languages))
                .unwrap_or_default(),
            update_file_languages: su
                .top
                .as_ref()
                .map(|t| entries(&t.update_file_languages))
                .unwrap_or_default(),
            summary_languages: su
                .top
                .as_ref()
                .map(|t| entries(&t.summary_languages))
                .unwrap_or_default(),
        }),
        site_systems: site
            .site_systems
            .iter()
            .map(|s| v1::SiteSystem {
                server: s.server.clone(),
                internet_fqdn: s.internet_fqdn.clone().unwrap_or_default(),
                computer_account_access: Some(s.computer_account_access),
                install_account: s.install_account.clone().unwrap_or_default(),
                install_password: s.install_password.as_ref().map(secret_ref_to_proto),
            })
            .collect(),
        software_update_points: site
            .software_update_points
            .iter()
            .map(sup_to_proto)
            .collect(),
        nlb_clusters: site
            .nlb_clusters
            .iter()
            .map(|n| v1::NlbCluster {
                name: n.name.clone(),
                members: n.members.clone(),
                active: slot_to_proto(n.active) as i32,
            })
            .collect(),
        site_server: site.site_server.clone().unwrap_or_default(),
        time_zone: site.time_zone.name().to_string(),
    }
}

pub fn sup_to_proto(s: &model::SoftwareUpdatePoint) -> v1::SoftwareUpdatePoint {
    v1::SoftwareUpdatePoint {
        server: s.server.clone(),
        active: slot_to_proto(s.active) as i32,
        http_port: u32::from(s.http_port),
        https_port: u32::from(s.https_port),
        ssl: s.ssl,
        proxy: s.proxy.as_ref().map(|p| v1::Proxy {
            server: p.server.clone(),
            port: u32::from(p.port),
            account: p.account.clone().unwrap_or_default(),
            password: p.password.as_ref().map(secret_ref_to_proto),
        }),
        allow_internet_clients: s.allow_internet_clients,
    }
}

fn enum_name<E: TryFrom<i32>>(v: i32, name: impl Fn(E) -> Option<&'static str>) -> Option<String> {
    match E::try_from(v) {
        Ok(e) => name(e).map(str::to_string),
        // An unknown number still reaches validation, which names it.
        Err(_) => Some(format!("#{v}")),
    }
}

fn slot_name(v: i32) -> Option<String> {
    enum_name::<v1::Slot>(v, |s| match s {
        v1::Slot::Unspecified => None,
        v1::Slot::Intranet => Some("intranet"),
        v1::Slot::Internet => Some("internet"),
    })
}

pub fn sup_from_proto(s: &v1::SoftwareUpdatePoint) -> RawSoftwareUpdatePoint {
    RawSoftwareUpdatePoint {
        server: s.server.clone(),
        active: slot_name(s.active),
        http_port: (s.http_port != 0).then_some(i64::from(s.http_port)),
        https_port: (s.https_port != 0).then_some(i64::from(s.https_port)),
        ssl: Some(s.ssl),
        proxy: s.proxy.as_ref().map(|p| {
            let (password_env, password_file) = secret_ref_from_proto(p.password.as_ref());
            RawProxy {
                enabled: None,
                server: Some(p.server.clone()),
                port: Some(i64::from(p.port)),
                account: non_empty(&p.account),
                password_env,
                password_file,
                password: None,
            }
        }),
        allow_internet_clients: s.allow_internet_clients.then_some(true),
    }
}

fn secret_ref_to_proto(r: &model::SecretRef) -> v1::SecretRef {
    v1::SecretRef {
        source: Some(match r {
            model::SecretRef::Env(e) => v1::secret_ref::Source::Env(e.clone()),
            model::SecretRef::File(f) => v1::secret_ref::Source::File(f.clone()),
        }),
    }
}

/// A secret reference as the spec's `(…_env, …_file)` pair.
fn secret_ref_from_proto(r: Option<&v1::SecretRef>) -> (Option<String>, Option<String>) {
    match r.and_then(|r| r.source.as_ref()) {
        Some(v1::secret_ref::Source::Env(e)) => (Some(e.clone()), None),
        Some(v1::secret_ref::Source::File(f)) => (None, Some(f.clone())),
        None => (None, None),
    }
}

pub fn site_system_from_proto(s: &v1::SiteSystem) -> RawSiteSystem {
    let (env, file) = secret_ref_from_proto(s.install_password.as_ref());
    RawSiteSystem {
        server: s.server.clone(),
        internet_fqdn: non_empty(&s.internet_fqdn),
        computer_account_access: s.computer_account_access,
        install_account: non_empty(&s.install_account),
        install_password_env: env,
        install_password_file: file,
        install_password: None,
    }
}

/// The spec form of an API site, to be validated like a site file.
pub fn site_from_proto(s: &v1::Site) -> RawSite {
    let titles = |list: &[v1::CatalogEntry]| -> Vec<String> {
        list.iter()
            .map(|e| {
                if e.title.is_empty() {
                    e.id.clone()
                } else {
                    e.title.clone()
                }
            })
            .collect()
    };
    RawSite {
        code: s.code.clone(),
        name: non_empty(&s.name),
        mode: enum_name::<v1::SiteMode>(s.mode, |m| match m {
            v1::SiteMode::Unspecified => None,
            v1::SiteMode::Mixed => Some("mixed"),
            v1::SiteMode::Native => Some("native"),
        }),
        parent: non_empty(&s.parent),
        failover: enum_name::<v1::FailoverPolicy>(s.failover, |f| match f {
            v1::FailoverPolicy::Unspecified => None,
            v1::FailoverPolicy::Manual => Some("manual"),
            v1::FailoverPolicy::Auto => Some("auto"),
        }),
        drift: enum_name::<v1::DriftPolicy>(s.drift, |d| match d {
            v1::DriftPolicy::Unspecified => None,
            v1::DriftPolicy::Report => Some("report"),
            v1::DriftPolicy::Correct => Some("correct"),
        }),
        site_server: non_empty(&s.site_server),
        time_zone: non_empty(&s.time_zone),
        software_updates: s.software_updates.as_ref().map(|su| RawSoftwareUpdates {
            sync_source: enum_name::<v1::SyncSource>(su.sync_source, |x| match x {
                v1::SyncSource::Unspecified => None,
                v1::SyncSource::MicrosoftUpdate => Some("microsoft_update"),
                v1::SyncSource::Upstream => Some("upstream"),
                v1::SyncSource::None => Some("none"),
            }),
            reporting_events: enum_name::<v1::ReportingEvents>(su.reporting_events, |x| match x {
                v1::ReportingEvents::Unspecified => None,
                v1::ReportingEvents::None => Some("none"),
                v1::ReportingEvents::StatusOnly => Some("status_only"),
                v1::ReportingEvents::All => Some("all"),
            }),
            schedule: su.schedule.as_ref().and_then(schedule_from_proto),
            classifications: (!su.classifications.is_empty()).then(|| titles(&su.classifications)),
            products: (!su.products.is_empty()).then(|| titles(&su.products)),
            // The two lists when given; the one list of older writers otherwise.
            languages: (su.update_file_languages.is_empty()
                && su.summary_languages.is_empty()
                && !su.languages.is_empty())
            .then(|| titles(&su.languages)),
            update_file_languages: (!su.update_file_languages.is_empty())
                .then(|| titles(&su.update_file_languages)),
            summary_languages: (!su.summary_languages.is_empty())
                .then(|| titles(&su.summary_languages)),
        }),
        site_system: s.site_systems.iter().map(site_system_from_proto).collect(),
        software_update_point: s
            .software_update_points
            .iter()
            .map(sup_from_proto)
            .collect(),
        nlb_cluster: s
            .nlb_clusters
            .iter()
            .map(|n| RawNlbCluster {
                name: n.name.clone(),
                members: n.members.clone(),
                active: slot_name(n.active),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const FILE: &str = r#"
[[site]]
code = "CEN"
name = "Central"
mode = "native"
failover = "auto"
[site.software_updates]
reporting_events = "status_only"
schedule = { type = "monthly_by_weekday", week = "second", weekday = "Tuesday", at = "22:00" }
products = ["Windows XP"]
[[site.site_system]]
server = "a.corp.example.com"
internet_fqdn = "a.example.com"
computer_account_access = false
install_account = "CORP\\svc"
install_password_file = "/run/secrets/pw"
[[site.site_system]]
server = "b.corp.example.com"
[[site.software_update_point]]
server = "a.corp.example.com"
active = "internet"
ssl = true
[[site.software_update_point]]
server = "b.corp.example.com"
active = "intranet"
http_port = 8530
https_port = 8531
ssl = true
proxy = { server = "proxy.corp.example.com", port = 8080, account = "CORP\\proxy", password_env = "PROXY_PW" }
[[site.nlb_cluster]]
name = "nlb.corp.example.com"
members = ["b.corp.example.com"]
"#;

    #[test]
    fn sites_survive_the_wire() {
        let sites = sup_core::spec::load_site_file(FILE, &BTreeMap::new()).expect("valid");
        let wire: Vec<_> = sites.iter().map(site_to_proto).collect();
        let raw: Vec<_> = wire.iter().map(site_from_proto).collect();
        let back = sup_core::spec::validate_sites(&raw, &BTreeMap::new()).expect("still valid");
        assert_eq!(sites, back);
    }

    #[test]
    fn every_schedule_kind_survives_the_wire() {
        for text in ["manual", "every 3 hours", "every 2 weeks"] {
            let s = sup_core::schedule::parse_text(text).expect("schedule");
            let raw = schedule_from_proto(&schedule_to_proto(&s)).expect("some");
            let file = format!(
                "[[site]]\ncode = \"CEN\"\n[site.software_updates]\nschedule = {}\n",
                toml_value(&raw)
            );
            let back = sup_core::spec::load_site_file(&file, &BTreeMap::new()).expect("valid");
            assert_eq!(
                back[0].software_updates.top.as_ref().map(|t| &t.schedule),
                Some(&s),
                "{text}"
            );
        }
    }

    fn toml_value(raw: &RawSchedule) -> String {
        match raw {
            RawSchedule::Text(t) => format!("\"{t}\""),
            RawSchedule::Table(t) => {
                let mut parts = Vec::new();
                if let Some(k) = &t.kind {
                    parts.push(format!("type = \"{k}\""));
                }
                if let Some(e) = &t.every {
                    parts.push(format!("every = \"{e}\""));
                }
                if let Some(s) = &t.start {
                    parts.push(format!("start = \"{s}\""));
                }
                format!("{{ {} }}", parts.join(", "))
            }
        }
    }

    #[test]
    fn absent_computer_account_access_means_true() {
        let raw = site_system_from_proto(&v1::SiteSystem {
            server: "a.corp.example.com".into(),
            ..Default::default()
        });
        assert_eq!(raw.computer_account_access, None);
    }
}
