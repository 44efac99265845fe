//! A stored site back into the model, without validating it again. The coordinator stores only
//! what it validated, written by [`site_to_proto`](super::site_to_proto), so every field maps
//! back one to one; reading a stored site is then a conversion, not a second validation. A record
//! that does not read back that way (written by an older version, or damaged) is an error naming
//! the field, and the caller may still validate it as a spec.

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use sup_core::catalog::{self, Entry};
use sup_core::model;
use sup_core::schedule::{
    IntervalUnit, Recurrence, Schedule, SyncSchedule, WeekOrder, weekday_from_number,
};

use super::{non_empty, slot_from_proto};
use crate::v1;

/// Why a stored site does not read back as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored site {site}: {field}: {problem}")]
pub struct StoredSiteError {
    pub site: String,
    pub field: String,
    pub problem: String,
}

type Result<T> = std::result::Result<T, (String, String)>;

fn problem<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T> {
    Err((field.into(), problem.into()))
}

/// The model of a site as [`site_to_proto`](super::site_to_proto) stored it.
pub fn site_from_stored(s: &v1::Site) -> std::result::Result<model::Site, StoredSiteError> {
    read_site(s).map_err(|(field, problem)| StoredSiteError {
        site: s.code.clone(),
        field,
        problem,
    })
}

fn read_site(s: &v1::Site) -> Result<model::Site> {
    let parent = non_empty(&s.parent);
    let Some(su) = s.software_updates.as_ref() else {
        return problem("software_updates", "missing");
    };
    Ok(model::Site {
        code: s.code.clone(),
        name: s.name.clone(),
        mode: match v1::SiteMode::try_from(s.mode) {
            Ok(v1::SiteMode::Mixed) => model::SiteMode::Mixed,
            Ok(v1::SiteMode::Native) => model::SiteMode::Native,
            _ => return problem("mode", format!("#{} is not a mode", s.mode)),
        },
        failover: match v1::FailoverPolicy::try_from(s.failover) {
            Ok(v1::FailoverPolicy::Manual) => model::Failover::Manual,
            Ok(v1::FailoverPolicy::Auto) => model::Failover::Auto,
            _ => return problem("failover", format!("#{} is not a policy", s.failover)),
        },
        drift: match v1::DriftPolicy::try_from(s.drift) {
            Ok(v1::DriftPolicy::Report) => model::Drift::Report,
            Ok(v1::DriftPolicy::Correct) => model::Drift::Correct,
            _ => return problem("drift", format!("#{} is not a policy", s.drift)),
        },
        software_updates: model::SoftwareUpdates {
            sync_source: match v1::SyncSource::try_from(su.sync_source) {
                Ok(v1::SyncSource::MicrosoftUpdate) => model::SyncSource::MicrosoftUpdate,
                Ok(v1::SyncSource::Upstream) => model::SyncSource::Upstream,
                Ok(v1::SyncSource::None) => model::SyncSource::None,
                _ => return problem("sync_source", format!("#{}", su.sync_source)),
            },
            reporting_events: match v1::ReportingEvents::try_from(su.reporting_events) {
                Ok(v1::ReportingEvents::None) => model::ReportingEvents::None,
                Ok(v1::ReportingEvents::StatusOnly) => model::ReportingEvents::StatusOnly,
                Ok(v1::ReportingEvents::All) => model::ReportingEvents::All,
                _ => return problem("reporting_events", format!("#{}", su.reporting_events)),
            },
            // A child site inherits these from the top of its hierarchy, whatever its record
            // holds (older versions kept their defaults there).
            top: match parent {
                Some(_) => None,
                None => Some(read_top(su)?),
            },
        },
        parent,
        site_systems: s
            .site_systems
            .iter()
            .map(read_site_system)
            .collect::<Result<_>>()?,
        software_update_points: s
            .software_update_points
            .iter()
            .map(read_sup)
            .collect::<Result<_>>()?,
        nlb_clusters: s
            .nlb_clusters
            .iter()
            .map(|n| model::NlbCluster {
                name: n.name.clone(),
                members: n.members.clone(),
                active: slot_from_proto(n.active),
            })
            .collect(),
        site_server: non_empty(&s.site_server),
        time_zone: s
            .time_zone
            .parse::<Tz>()
            .or_else(|_| problem("time_zone", format!("{:?} is not a time zone", s.time_zone)))?,
    })
}

fn read_top(su: &v1::SoftwareUpdateSettings) -> Result<model::TopSettings> {
    // The one `languages` list of older writers is read through validation.
    if su.update_file_languages.is_empty()
        && su.summary_languages.is_empty()
        && !su.languages.is_empty()
    {
        return problem("languages", "the one list of an older version");
    }
    let Some(schedule) = su.schedule.as_ref() else {
        return problem("schedule", "missing");
    };
    Ok(model::TopSettings {
        schedule: read_schedule(schedule)?,
        classifications: read_entries(
            "classifications",
            catalog::CLASSIFICATIONS,
            &su.classifications,
        )?,
        products: read_entries("products", catalog::PRODUCTS, &su.products)?,
        update_file_languages: read_entries(
            "update_file_languages",
            catalog::LANGUAGES,
            &su.update_file_languages,
        )?,
        summary_languages: read_entries(
            "summary_languages",
            catalog::LANGUAGES,
            &su.summary_languages,
        )?,
    })
}

fn read_entries(
    field: &str,
    table: &'static [Entry],
    list: &[v1::CatalogEntry],
) -> Result<Vec<Entry>> {
    list.iter()
        .map(|e| {
            let name = if e.id.is_empty() { &e.title } else { &e.id };
            catalog::find(table, name)
                .ok_or_else(|| (field.to_string(), format!("{name:?} is not in the catalog")))
        })
        .collect()
}

fn read_schedule(s: &v1::Schedule) -> Result<SyncSchedule> {
    use v1::schedule::Kind;
    let recurrence = match &s.kind {
        None => return problem("schedule", "no kind"),
        Some(Kind::Manual(_)) => return Ok(SyncSchedule::Manual),
        Some(Kind::Simple(i)) => match (i.hours, i.days, i.weeks) {
            (every, 0, 0) if every > 0 => Recurrence::Interval {
                every,
                unit: IntervalUnit::Hours,
            },
            (0, every, 0) if every > 0 => Recurrence::Interval {
                every,
                unit: IntervalUnit::Days,
            },
            (0, 0, every) if every > 0 => Recurrence::Interval {
                every,
                unit: IntervalUnit::Weeks,
            },
            _ => return problem("schedule", "not one interval"),
        },
        Some(Kind::Weekly(w)) => Recurrence::Weekly {
            days: w
                .weekdays
                .iter()
                .map(|n| weekday(*n))
                .collect::<Result<_>>()?,
            every_weeks: w.every_weeks,
        },
        Some(Kind::MonthlyByDate(m)) => Recurrence::MonthlyByDate {
            day: m.day,
            every_months: m.every_months,
        },
        Some(Kind::MonthlyByWeekday(m)) => Recurrence::MonthlyByWeekday {
            week: match m.week_order {
                0 => WeekOrder::Last,
                n @ 1..=4 => WeekOrder::Nth(n as u8),
                n => return problem("schedule", format!("week {n}")),
            },
            weekday: weekday(m.weekday)?,
            every_months: m.every_months,
        },
    };
    let start = NaiveDateTime::parse_from_str(&s.start, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| problem("schedule.start", format!("{:?}", s.start)))?;
    Ok(SyncSchedule::Recurring(Schedule {
        start,
        recurrence,
        gmt: s.is_gmt,
    }))
}

fn weekday(n: u32) -> Result<chrono::Weekday> {
    weekday_from_number(n).ok_or_else(|| ("schedule".to_string(), format!("weekday {n}")))
}

fn read_site_system(s: &v1::SiteSystem) -> Result<model::SiteSystem> {
    Ok(model::SiteSystem {
        server: s.server.clone(),
        internet_fqdn: non_empty(&s.internet_fqdn),
        // Absent means allowed, as in a site file.
        computer_account_access: s.computer_account_access.unwrap_or(true),
        install_account: non_empty(&s.install_account),
        install_password: read_secret(s.install_password.as_ref()),
    })
}

fn read_sup(s: &v1::SoftwareUpdatePoint) -> Result<model::SoftwareUpdatePoint> {
    let port = |field: &str, p: u32| {
        u16::try_from(p).or_else(|_| problem(format!("{}.{field}", s.server), format!("{p}")))
    };
    Ok(model::SoftwareUpdatePoint {
        server: s.server.clone(),
        active: slot_from_proto(s.active),
        http_port: port("http_port", s.http_port)?,
        https_port: port("https_port", s.https_port)?,
        ssl: s.ssl,
        proxy: match &s.proxy {
            None => None,
            Some(p) => Some(model::Proxy {
                server: p.server.clone(),
                port: port("proxy.port", p.port)?,
                account: non_empty(&p.account),
                password: read_secret(p.password.as_ref()),
            }),
        },
        allow_internet_clients: s.allow_internet_clients,
    })
}

fn read_secret(r: Option<&v1::SecretRef>) -> Option<model::SecretRef> {
    match r.and_then(|r| r.source.as_ref())? {
        v1::secret_ref::Source::Env(e) => Some(model::SecretRef::Env(e.clone())),
        v1::secret_ref::Source::File(f) => Some(model::SecretRef::File(f.clone())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::convert::site_to_proto;

    /// Sites with every kind of field and schedule: each must read back from its stored form
    /// exactly as validation made it.
    const FILE: &str = r#"
[[site]]
code = "CEN"
name = "Central"
mode = "native"
failover = "auto"
drift = "correct"
site_server = "cen-inet01.corp.example.com"
time_zone = "America/New_York"
[site.software_updates]
reporting_events = "status_only"
schedule = { type = "monthly_by_weekday", week = "second", weekday = "Tuesday", at = "22:00" }
products = ["Windows XP", "Office 2003"]
classifications = ["Security Updates"]
update_file_languages = ["English", "German"]
summary_languages = ["English"]
[[site.site_system]]
server = "a.corp.example.com"
internet_fqdn = "a.example.com"
computer_account_access = false
install_account = "CORP\\svc"
install_password_file = "/run/secrets/pw"
[[site.site_system]]
server = "b.corp.example.com"
install_account = "CORP\\svc2"
install_password_env = "SVC2_PW"
[[site.software_update_point]]
server = "a.corp.example.com"
active = "internet"
ssl = true
[[site.software_update_point]]
server = "b.corp.example.com"
http_port = 8530
https_port = 8531
ssl = true
proxy = { server = "proxy.corp.example.com", port = 8080, account = "CORP\\proxy", password_env = "PROXY_PW" }
[[site.nlb_cluster]]
name = "nlb.corp.example.com"
members = ["b.corp.example.com"]
active = "intranet"

[[site]]
code = "CH1"
parent = "CEN"
[site.software_updates]
sync_source = "upstream"
reporting_events = "all"
[[site.site_system]]
server = "ch1.corp.example.com"
[[site.software_update_point]]
server = "ch1.corp.example.com"
active = "intranet"

[[site]]
code = "NAT"
mode = "native"
[[site.site_system]]
server = "nat.corp.example.com"
internet_fqdn = "nat.example.com"
[[site.software_update_point]]
server = "nat.corp.example.com"
active = "intranet"
ssl = true
allow_internet_clients = true
"#;

    fn stored_round_trip(file: &str) {
        let sites = sup_core::spec::load_site_file(file, &BTreeMap::new()).expect("valid");
        for site in &sites {
            let back = site_from_stored(&site_to_proto(site)).expect("reads back");
            assert_eq!(&back, site);
        }
    }

    #[test]
    fn a_stored_site_reads_back_as_validated() {
        stored_round_trip(FILE);
    }

    #[test]
    fn every_schedule_reads_back() {
        for schedule in [
            "\"manual\"",
            "\"every 3 hours\"",
            "\"daily\"",
            "\"every 2 weeks\"",
            "{ type = \"weekly\", weekday = 3, weeks = 2, start = \"2008-08-24T11:42:00\" }",
            "{ type = \"monthly_by_weekday\", weekday = 2, week_order = 0, months = 1 }",
            "{ type = \"monthly_by_date\", month_day = 0, months = 3 }",
            "{ type = \"monthly_by_date\", month_day = 15, months = 1, is_gmt = true }",
        ] {
            stored_round_trip(&format!(
                "[[site]]\ncode = \"CEN\"\n[site.software_updates]\nschedule = {schedule}\n"
            ));
        }
    }

    #[test]
    fn a_record_that_does_not_read_back_names_its_field() {
        let sites = sup_core::spec::load_site_file(FILE, &BTreeMap::new()).expect("valid");
        let mut pb = site_to_proto(&sites[0]);
        pb.time_zone = "Mars/Olympus_Mons".into();
        let err = site_from_stored(&pb).expect_err("no such zone");
        assert_eq!(
            (err.site.as_str(), err.field.as_str()),
            ("CEN", "time_zone")
        );

        let mut pb = site_to_proto(&sites[0]);
        pb.mode = 0;
        assert_eq!(site_from_stored(&pb).expect_err("mode").field, "mode");

        // An older writer's single language list is left to validation.
        let mut pb = site_to_proto(&sites[0]);
        let su = pb.software_updates.as_mut().expect("settings");
        su.update_file_languages.clear();
        su.summary_languages.clear();
        assert_eq!(site_from_stored(&pb).expect_err("old").field, "languages");

        let mut pb = site_to_proto(&sites[0]);
        pb.software_updates.as_mut().expect("settings").products[0].id = "nope".into();
        assert_eq!(
            site_from_stored(&pb).expect_err("catalog").field,
            "products"
        );
    }

    #[test]
    fn a_child_ignores_the_settings_its_record_kept() {
        let sites = sup_core::spec::load_site_file(FILE, &BTreeMap::new()).expect("valid");
        let mut child = site_to_proto(&sites[1]);
        let top = site_to_proto(&sites[0]);
        child.software_updates = top.software_updates.map(|mut su| {
            su.sync_source = v1::SyncSource::Upstream as i32;
            su
        });
        let back = site_from_stored(&child).expect("reads back");
        assert_eq!(back.software_updates.top, None);
        assert_eq!(
            back.software_updates.reporting_events,
            model::ReportingEvents::StatusOnly
        );
    }
}
