//! The site file (the contract `supctl apply` reads) and its validation into the domain model.
//!
//! Parsing is two steps so that every broken rule is reported at once: serde reads the file into
//! loosely typed `Raw*` values (unknown keys and wrong types fail here, with their path), then
//! `validate_sites` checks every rule of the procedure and builds the model. A file with any
//! violation is rejected whole.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Entry};
use crate::error::{Collector, Violation, Violations};
use crate::model::*;
use crate::names::{is_account_name, is_fqdn, is_site_code, normalize_host};
use crate::schedule::{
    self, IntervalUnit, Recurrence, Schedule, SyncSchedule, WeekOrder, check_interval, parse_every,
    parse_local_datetime, parse_time_of_day, parse_weekday,
};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSiteFile {
    #[serde(default)]
    pub site: Vec<RawSite>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    /// "report" (the default) or "correct": what a difference between the site's control file
    /// and this declaration leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_server: Option<String>,
    /// An IANA time zone name ("America/New_York"); schedules fire at its wall-clock time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_updates: Option<RawSoftwareUpdates>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub site_system: Vec<RawSiteSystem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub software_update_point: Vec<RawSoftwareUpdatePoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nlb_cluster: Vec<RawNlbCluster>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoftwareUpdates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_events: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<RawSchedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifications: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<Vec<String>>,
    /// Both language lists at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
    /// The Languages page's "Update Files" list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_file_languages: Option<Vec<String>>,
    /// The Languages page's "Summary Details" list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_languages: Option<Vec<String>>,
}

/// `schedule = "every 7 days"`, `"manual"`, or a custom table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawSchedule {
    Text(String),
    Table(Box<RawScheduleTable>),
}

/// A custom schedule:
/// `{ type = "weekly", days = ["Tuesday"], at = "02:00", every_weeks = 1 }`,
/// `{ type = "monthly_by_date", day = 15, at = "03:00" }` (day 0 = last day),
/// `{ type = "monthly_by_weekday", week = "second", weekday = "Tuesday", at = "22:00" }`,
/// or a simple one with a start: `{ every = "7 days", start = "2026-11-01T02:00:00" }`.
/// The field names of the schedule-token JSON are accepted too (`type = "interval"` with
/// `day_span`/`hour_span`, `weekday = 3` with 1 = Sunday, `weeks`, `week_order`, `months`,
/// `month_day`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduleTable {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<NameOrNumber>>,
    #[serde(default, alias = "weeks", skip_serializing_if = "Option::is_none")]
    pub every_weeks: Option<i64>,
    #[serde(default, alias = "month_day", skip_serializing_if = "Option::is_none")]
    pub day: Option<i64>,
    #[serde(default, alias = "months", skip_serializing_if = "Option::is_none")]
    pub every_months: Option<i64>,
    #[serde(default, alias = "week_order", skip_serializing_if = "Option::is_none")]
    pub week: Option<NameOrNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday: Option<NameOrNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_span: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour_span: Option<i64>,
    /// The token's IsGMT flag: the times are UTC, not the site's local time.
    #[serde(default, alias = "gmt", skip_serializing_if = "Option::is_none")]
    pub is_gmt: Option<bool>,
}

/// A weekday or week given by name ("Tuesday", "second") or by number (3, 2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum NameOrNumber {
    Name(String),
    Number(i64),
}

impl NameOrNumber {
    fn text(&self) -> String {
        match self {
            NameOrNumber::Name(s) => s.clone(),
            NameOrNumber::Number(n) => n.to_string(),
        }
    }

    /// A weekday: a name, or 1 = Sunday … 7 = Saturday.
    fn weekday(&self) -> Option<chrono::Weekday> {
        match self {
            NameOrNumber::Name(s) => parse_weekday(s),
            NameOrNumber::Number(n) => u32::try_from(*n)
                .ok()
                .and_then(schedule::weekday_from_number),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSiteSystem {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_account_access: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_password_file: Option<String>,
    /// Accepted only to refuse it with a clear message: passwords are references, never values.
    #[serde(default, skip_serializing)]
    pub install_password: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoftwareUpdatePoint {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<RawProxy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_internet_clients: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// The proxy account (`DOMAIN\user` or `user@domain`), when the proxy needs credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Never accepted: present only so that a password written here is named in the error.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNlbCluster {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
}

/// Reads a site file's text. Syntax errors, unknown keys and wrong types are violations with the
/// key path (`site[0].software_update_point[1].http_port`).
pub fn parse_site_file(text: &str) -> Result<RawSiteFile, Violations> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        Violations(vec![Violation::new(
            "<file>",
            "toml_syntax",
            e.message().trim().to_string(),
        )])
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // The root, or a key with an empty name (`'' = 1`), has no path of its own to show.
        let path = if path == "." || path.is_empty() {
            "<file>".to_string()
        } else {
            path
        };
        Violations(vec![Violation::new(
            path,
            "schema",
            e.inner().message().trim().to_string(),
        )])
    })
}

/// Parses and validates a whole site file. `known` maps site codes already stored to their parent,
/// so a file may name a parent that was applied before.
pub fn load_site_file(
    text: &str,
    known: &BTreeMap<String, Option<String>>,
) -> Result<Vec<Site>, Violations> {
    let raw = parse_site_file(text)?;
    if raw.site.is_empty() {
        return Err(Violations(vec![Violation::new(
            "site",
            "required",
            "the file declares no [[site]]",
        )]));
    }
    validate_sites(&raw.site, known)
}

/// Validates sites together (a hierarchy), with `known` sites already stored (code → parent).
pub fn validate_sites(
    raw: &[RawSite],
    known: &BTreeMap<String, Option<String>>,
) -> Result<Vec<Site>, Violations> {
    let mut c = Collector::default();
    let mut sites = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, r) in raw.iter().enumerate() {
        let path = site_path(i, &r.code);
        if !seen.insert(r.code.clone()) {
            c.push(
                format!("{path}.code"),
                "duplicate_site",
                format!("site {} is declared twice", r.code),
            );
        }
        if let Some(site) = validate_site(r, &path, &mut c) {
            sites.push(site);
        }
    }
    check_hierarchy(raw, known, &mut c);
    if c.0.is_empty() {
        Ok(sites)
    } else {
        Err(Violations(c.0))
    }
}

fn site_path(index: usize, code: &str) -> String {
    if is_site_code(code) {
        format!("site[{code}]")
    } else {
        format!("site[{index}]")
    }
}

fn check_hierarchy(raw: &[RawSite], known: &BTreeMap<String, Option<String>>, c: &mut Collector) {
    // The graph is what is stored, overridden by what this file declares.
    let mut parent_of: BTreeMap<String, Option<String>> = known.clone();
    for r in raw {
        parent_of.insert(r.code.clone(), r.parent.clone().filter(|p| !p.is_empty()));
    }
    for (i, r) in raw.iter().enumerate() {
        let path = format!("{}.parent", site_path(i, &r.code));
        let Some(parent) = r.parent.as_deref().filter(|p| !p.is_empty()) else {
            continue;
        };
        if parent == r.code {
            c.push(path, "parent_cycle", "a site cannot be its own parent");
            continue;
        }
        if !parent_of.contains_key(parent) {
            c.push(
                path,
                "parent_exists",
                format!("parent site {parent} is neither in this file nor already applied"),
            );
            continue;
        }
        let mut at = Some(parent.to_string());
        let mut steps = 0;
        while let Some(p) = at {
            if p == r.code || steps > parent_of.len() {
                c.push(
                    path.clone(),
                    "parent_cycle",
                    format!("site {} is its own ancestor through {parent}", r.code),
                );
                break;
            }
            steps += 1;
            at = parent_of.get(&p).cloned().flatten();
        }
    }
}

fn validate_site(r: &RawSite, path: &str, c: &mut Collector) -> Option<Site> {
    let before = c.0.len();
    if !is_site_code(&r.code) {
        c.push(
            format!("{path}.code"),
            "site_code",
            format!(
                "\"{}\" is not a site code: exactly 3 characters A-Z or 0-9",
                r.code
            ),
        );
    }
    let mode = match r.mode.as_deref().unwrap_or("mixed") {
        "mixed" => SiteMode::Mixed,
        "native" => SiteMode::Native,
        other => {
            c.push(
                format!("{path}.mode"),
                "mode",
                format!("\"{other}\" is not a mode: use \"mixed\" or \"native\""),
            );
            SiteMode::Mixed
        }
    };
    let failover = match r.failover.as_deref().unwrap_or("manual") {
        "manual" => Failover::Manual,
        "auto" => Failover::Auto,
        other => {
            c.push(
                format!("{path}.failover"),
                "failover",
                format!("\"{other}\" is not a failover policy: use \"manual\" or \"auto\""),
            );
            Failover::Manual
        }
    };
    let drift = match r.drift.as_deref().unwrap_or("report") {
        "report" => Drift::Report,
        "correct" => Drift::Correct,
        other => {
            c.push(
                format!("{path}.drift"),
                "drift",
                format!("\"{other}\" is not a drift policy: use \"report\" or \"correct\""),
            );
            Drift::Report
        }
    };
    let parent = r.parent.clone().filter(|p| !p.is_empty());
    if let Some(p) = &parent
        && !is_site_code(p)
    {
        c.push(
            format!("{path}.parent"),
            "site_code",
            format!("\"{p}\" is not a site code"),
        );
    }
    let site_server = r.site_server.as_deref().map(|s| {
        if !is_fqdn(s) {
            c.push(
                format!("{path}.site_server"),
                "fqdn",
                format!("\"{s}\" is not a fully qualified domain name"),
            );
        }
        normalize_host(s)
    });
    let time_zone = match r.time_zone.as_deref() {
        None => chrono_tz::UTC,
        Some(name) => match name.trim().parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                c.push(
                    format!("{path}.time_zone"),
                    "time_zone",
                    format!("\"{name}\" is not an IANA time zone name, such as \"America/New_York\" or \"UTC\""),
                );
                chrono_tz::UTC
            }
        },
    };
    let software_updates = validate_software_updates(
        r.software_updates.as_ref(),
        &format!("{path}.software_updates"),
        parent.is_some(),
        c,
    );
    let site_systems: Vec<SiteSystem> = r
        .site_system
        .iter()
        .enumerate()
        .map(|(i, s)| validate_site_system(s, &format!("{path}.site_system[{i}]"), mode, c))
        .collect();
    let mut system_names = BTreeSet::new();
    for (i, s) in site_systems.iter().enumerate() {
        if !system_names.insert(s.server.clone()) {
            c.push(
                format!("{path}.site_system[{i}].server"),
                "duplicate_server",
                format!("{} is listed twice as a site system", s.server),
            );
        }
    }
    let sups: Vec<SoftwareUpdatePoint> = r
        .software_update_point
        .iter()
        .enumerate()
        .map(|(i, s)| validate_sup(s, &format!("{path}.software_update_point[{i}]"), c))
        .collect();
    let mut sup_names = BTreeSet::new();
    for (i, s) in sups.iter().enumerate() {
        let p = format!("{path}.software_update_point[{i}]");
        if !sup_names.insert(s.server.clone()) {
            c.push(
                format!("{p}.server"),
                "duplicate_role",
                format!("{} holds the SUP role once per site", s.server),
            );
        }
        if !system_names.contains(&s.server) {
            c.push(
                format!("{p}.server"),
                "sup_on_site_system",
                format!(
                    "{} is not a site_system of this site: add it under [[site.site_system]]",
                    s.server
                ),
            );
        }
    }
    let clusters: Vec<NlbCluster> = r
        .nlb_cluster
        .iter()
        .enumerate()
        .map(|(i, n)| validate_nlb(n, &format!("{path}.nlb_cluster[{i}]"), &sup_names, c))
        .collect();
    check_slots(
        path,
        mode,
        site_server.as_deref(),
        &site_systems,
        &sups,
        &clusters,
        c,
    );
    check_ssl_and_internet_clients(path, mode, &site_systems, &sups, &clusters, c);

    if c.0.len() > before {
        return None;
    }
    Some(Site {
        code: r.code.clone(),
        name: r.name.clone().unwrap_or_else(|| r.code.clone()),
        mode,
        parent,
        failover,
        drift,
        software_updates,
        site_systems,
        software_update_points: sups,
        nlb_clusters: clusters,
        site_server,
        time_zone,
    })
}

fn parse_slot(value: Option<&str>, path: String, c: &mut Collector) -> Option<SlotKind> {
    let v = value?;
    let slot = SlotKind::parse(v);
    if slot.is_none() {
        c.push(path, "slot", format!("\"{v}\" is not a slot: use \"intranet\", \"internet\" or leave it out for a standby"));
    }
    slot
}

/// The invariant as the spec declares it: one active intranet SUP; an active Internet-based SUP
/// only in native mode, with an Internet FQDN, not the intranet active server.
fn check_slots(
    path: &str,
    mode: SiteMode,
    site_server: Option<&str>,
    systems: &[SiteSystem],
    sups: &[SoftwareUpdatePoint],
    clusters: &[NlbCluster],
    c: &mut Collector,
) {
    let holders = |slot: SlotKind| -> Vec<(String, Vec<String>)> {
        let mut v: Vec<(String, Vec<String>)> = sups
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active == Some(slot))
            .map(|(i, s)| {
                (
                    format!("{path}.software_update_point[{i}].active"),
                    vec![s.server.clone()],
                )
            })
            .collect();
        v.extend(
            clusters
                .iter()
                .enumerate()
                .filter(|(_, n)| n.active == Some(slot))
                .map(|(i, n)| (format!("{path}.nlb_cluster[{i}].active"), n.members.clone())),
        );
        v
    };
    let intranet = holders(SlotKind::Intranet);
    let internet = holders(SlotKind::Internet);
    for (p, _) in intranet.iter().skip(1) {
        c.push(
            p.clone(),
            "one_active_intranet",
            "a site has exactly one active software update point",
        );
    }
    for (p, _) in internet.iter().skip(1) {
        c.push(
            p.clone(),
            "one_active_internet",
            "a site has at most one active Internet-based software update point",
        );
    }
    for (p, members) in &internet {
        if mode != SiteMode::Native {
            c.push(
                p.clone(),
                "internet_needs_native",
                "an active Internet-based software update point needs the site in native mode",
            );
        }
        for m in members {
            if let Some(sys) = systems.iter().find(|s| &s.server == m)
                && sys.internet_fqdn.is_none()
            {
                c.push(
                    p.clone(),
                    "internet_fqdn_required",
                    format!("{m} serves Internet-based clients and needs an internet_fqdn on its site_system"),
                );
            }
            if intranet.iter().any(|(_, im)| im.contains(m)) {
                c.push(
                    p.clone(),
                    "internet_not_intranet_active",
                    format!("{m} is the active intranet SUP; the Internet-based one must be another, remote server"),
                );
            }
            if site_server == Some(m.as_str()) {
                c.push(
                    p.clone(),
                    "internet_not_site_server",
                    format!("{m} is the site server; the active Internet-based SUP must be a server remote from it"),
                );
            }
        }
        // Its metadata comes from the active intranet SUP's WSUS database.
        if intranet.is_empty() {
            c.push(
                p.clone(),
                "internet_needs_intranet",
                "an active Internet-based software update point synchronizes from the site's active intranet SUP: declare one (a server or an NLB cluster) active = \"intranet\"",
            );
        }
    }
    // A server that is an NLB node serves through its cluster, not on its own as well.
    for (i, s) in sups.iter().enumerate() {
        if s.active.is_some()
            && clusters
                .iter()
                .any(|n| n.active.is_some() && n.members.contains(&s.server))
        {
            c.push(
                format!("{path}.software_update_point[{i}].active"),
                "nlb_member_active_alone",
                format!("{} is a node of an active NLB cluster; declare the cluster active, not the node", s.server),
            );
        }
    }
}

/// SSL as native mode demands it, and who may accept Internet-based clients: in native mode every
/// SUP uses SSL; the active intranet SUP may accept Internet clients too (the General tab's
/// alternative to "Allow intranet-only client connections"), which needs an Internet FQDN and
/// excludes an active Internet-based SUP (that tab is configurable only with intranet-only).
fn check_ssl_and_internet_clients(
    path: &str,
    mode: SiteMode,
    systems: &[SiteSystem],
    sups: &[SoftwareUpdatePoint],
    clusters: &[NlbCluster],
    c: &mut Collector,
) {
    let internet_declared = sups.iter().any(|s| s.active == Some(SlotKind::Internet))
        || clusters
            .iter()
            .any(|n| n.active == Some(SlotKind::Internet));
    let active_intranet = |server: &str| {
        sups.iter()
            .any(|s| s.server == server && s.active == Some(SlotKind::Intranet))
            || clusters.iter().any(|n| {
                n.active == Some(SlotKind::Intranet) && n.members.iter().any(|m| m == server)
            })
    };
    for (i, s) in sups.iter().enumerate() {
        let p = format!("{path}.software_update_point[{i}]");
        if mode == SiteMode::Native && !s.ssl {
            c.push(
                format!("{p}.ssl"),
                "native_requires_ssl",
                format!("{} is a SUP of a native-mode site: native mode requires SSL, set ssl = true (and require SSL on its WSUS web site)", s.server),
            );
        }
        if !s.allow_internet_clients {
            continue;
        }
        let p = format!("{p}.allow_internet_clients");
        if mode != SiteMode::Native {
            c.push(
                p.clone(),
                "internet_clients_need_native",
                "Internet-based clients connect only to a site in native mode",
            );
        }
        if !active_intranet(&s.server) {
            c.push(
                p.clone(),
                "internet_clients_active_only",
                format!("{} is not the active intranet SUP: only the active intranet SUP may also accept Internet-based clients", s.server),
            );
        }
        if systems
            .iter()
            .any(|sys| sys.server == s.server && sys.internet_fqdn.is_none())
        {
            c.push(
                p.clone(),
                "internet_clients_need_fqdn",
                format!("{} accepts Internet-based clients and needs an internet_fqdn on its site_system", s.server),
            );
        }
        if internet_declared {
            c.push(
                p,
                "internet_clients_or_internet_sup",
                "the site declares an active Internet-based SUP, so its intranet SUP serves intranet clients only: drop allow_internet_clients or the Internet-based SUP",
            );
        }
    }
}

fn validate_nlb(
    n: &RawNlbCluster,
    path: &str,
    sup_names: &BTreeSet<String>,
    c: &mut Collector,
) -> NlbCluster {
    if !is_fqdn(&n.name) {
        c.push(
            format!("{path}.name"),
            "fqdn",
            format!("\"{}\" is not a fully qualified domain name", n.name),
        );
    }
    if n.members.is_empty() || n.members.len() > 4 {
        c.push(
            format!("{path}.members"),
            "nlb_size",
            format!("an NLB cluster has 1 to 4 nodes, not {}", n.members.len()),
        );
    }
    let mut members = Vec::new();
    for (i, m) in n.members.iter().enumerate() {
        let host = normalize_host(m);
        if !is_fqdn(m) {
            c.push(
                format!("{path}.members[{i}]"),
                "fqdn",
                format!("\"{m}\" is not a fully qualified domain name"),
            );
        } else if !sup_names.contains(&host) {
            c.push(
                format!("{path}.members[{i}]"),
                "nlb_member_role",
                format!(
                    "{host} has no software_update_point: every NLB node holds its own SUP role"
                ),
            );
        }
        if members.contains(&host) {
            c.push(
                format!("{path}.members[{i}]"),
                "duplicate_server",
                format!("{host} is listed twice"),
            );
        }
        members.push(host);
    }
    let active = parse_slot(n.active.as_deref(), format!("{path}.active"), c);
    NlbCluster {
        name: normalize_host(&n.name),
        members,
        active,
    }
}

fn port(value: Option<i64>, default: u16, path: String, c: &mut Collector) -> u16 {
    match value {
        None => default,
        Some(p) => match u16::try_from(p) {
            Ok(p) if p >= 1 => p,
            _ => {
                c.push(
                    path,
                    "port_range",
                    format!("{p} is not a port: use 1-65535"),
                );
                default
            }
        },
    }
}

fn validate_sup(s: &RawSoftwareUpdatePoint, path: &str, c: &mut Collector) -> SoftwareUpdatePoint {
    if !is_fqdn(&s.server) {
        c.push(
            format!("{path}.server"),
            "fqdn",
            format!("\"{}\" is not a fully qualified domain name", s.server),
        );
    }
    let http_port = port(s.http_port, 80, format!("{path}.http_port"), c);
    let https_port = port(s.https_port, 443, format!("{path}.https_port"), c);
    if http_port == https_port {
        c.push(
            format!("{path}.https_port"),
            "ports_distinct",
            format!("the HTTPS port must differ from the HTTP port ({http_port})"),
        );
    }
    let proxy = s.proxy.as_ref().and_then(|p| {
        if p.enabled == Some(false) {
            return None;
        }
        let server = p.server.as_deref().map(str::trim).unwrap_or("");
        if server.is_empty() {
            // ConfigMgr accepts this and then fails to synchronize; refuse it here instead.
            c.push(
                format!("{path}.proxy.server"),
                "proxy_complete",
                "a proxy in use needs a server name",
            );
        } else if !is_fqdn(server) && server.parse::<std::net::IpAddr>().is_err() {
            c.push(
                format!("{path}.proxy.server"),
                "fqdn",
                format!("\"{server}\" is not a host name or address"),
            );
        }
        let port = match p.port {
            None => {
                c.push(
                    format!("{path}.proxy.port"),
                    "proxy_complete",
                    "a proxy in use needs a port",
                );
                0
            }
            Some(v) => port(Some(v), 0, format!("{path}.proxy.port"), c),
        };
        let password = secret_ref(
            p.password.is_some(),
            p.password_env.as_ref(),
            p.password_file.as_ref(),
            &format!("{path}.proxy.password"),
            c,
        );
        if let Some(a) = &p.account
            && !is_account_name(a)
        {
            c.push(
                format!("{path}.proxy.account"),
                "account_name",
                format!("\"{a}\" is not DOMAIN\\user or user@domain"),
            );
        }
        match (&p.account, &password) {
            (Some(_), None) if p.password.is_none() => c.push(
                format!("{path}.proxy.password_env"),
                "proxy_account_complete",
                "the proxy account needs its password by reference: password_env or password_file",
            ),
            (None, Some(_)) => c.push(
                format!("{path}.proxy.account"),
                "proxy_account_complete",
                "a proxy password needs the account it belongs to",
            ),
            _ => {}
        }
        Some(Proxy {
            server: normalize_host(server),
            port,
            account: p.account.clone(),
            password,
        })
    });
    SoftwareUpdatePoint {
        server: normalize_host(&s.server),
        active: parse_slot(s.active.as_deref(), format!("{path}.active"), c),
        http_port,
        https_port,
        ssl: s.ssl.unwrap_or(false),
        proxy,
        allow_internet_clients: s.allow_internet_clients.unwrap_or(false),
    }
}

/// A password given by reference (`<path>_env` or `<path>_file`); a password written inline, or
/// both references, is a violation.
fn secret_ref(
    inline: bool,
    env: Option<&String>,
    file: Option<&String>,
    path: &str,
    c: &mut Collector,
) -> Option<SecretRef> {
    let key = path.rsplit('.').next().unwrap_or(path);
    if inline {
        c.push(
            path.to_string(),
            "secret_by_reference",
            format!("passwords are never written in a site file: use {key}_env or {key}_file"),
        );
    }
    match (env, file) {
        (Some(_), Some(_)) => {
            c.push(
                format!("{path}_env"),
                "secret_by_reference",
                format!("give the password by one reference: {key}_env or {key}_file, not both"),
            );
            None
        }
        (Some(e), None) => Some(SecretRef::Env(e.clone())),
        (None, Some(f)) => Some(SecretRef::File(f.clone())),
        (None, None) => None,
    }
}

fn validate_site_system(
    s: &RawSiteSystem,
    path: &str,
    mode: SiteMode,
    c: &mut Collector,
) -> SiteSystem {
    if !is_fqdn(&s.server) {
        let why = if mode == SiteMode::Native {
            "native mode requires an intranet FQDN for every site system"
        } else {
            "every site system is named by its intranet FQDN"
        };
        c.push(
            format!("{path}.server"),
            "fqdn",
            format!(
                "\"{}\" is not a fully qualified domain name: {why}",
                s.server
            ),
        );
    }
    if let Some(f) = &s.internet_fqdn
        && !is_fqdn(f)
    {
        c.push(
            format!("{path}.internet_fqdn"),
            "fqdn",
            format!("\"{f}\" is not a fully qualified domain name"),
        );
    }
    let install_password = secret_ref(
        s.install_password.is_some(),
        s.install_password_env.as_ref(),
        s.install_password_file.as_ref(),
        &format!("{path}.install_password"),
        c,
    );
    let access = s.computer_account_access.unwrap_or(true);
    if let Some(a) = &s.install_account
        && !is_account_name(a)
    {
        c.push(
            format!("{path}.install_account"),
            "account_name",
            format!("\"{a}\" is not DOMAIN\\user or user@domain"),
        );
    }
    if !access {
        if s.install_account.is_none() {
            c.push(
                format!("{path}.install_account"),
                "install_account_required",
                "the site server's computer account cannot reach this server, so an installation account is required",
            );
        }
        if install_password.is_none() && s.install_password.is_none() {
            c.push(
                format!("{path}.install_password_env"),
                "install_account_required",
                "the installation account needs its password by reference: install_password_env or install_password_file",
            );
        }
    }
    SiteSystem {
        server: normalize_host(&s.server),
        internet_fqdn: s.internet_fqdn.as_deref().map(normalize_host),
        computer_account_access: access,
        install_account: s.install_account.clone(),
        install_password,
    }
}

fn validate_software_updates(
    r: Option<&RawSoftwareUpdates>,
    path: &str,
    is_child: bool,
    c: &mut Collector,
) -> SoftwareUpdates {
    let default = RawSoftwareUpdates::default();
    let r = r.unwrap_or(&default);
    let sync_source = match r.sync_source.as_deref() {
        None if is_child => SyncSource::Upstream,
        None => SyncSource::MicrosoftUpdate,
        Some("microsoft_update") => SyncSource::MicrosoftUpdate,
        Some("upstream") => SyncSource::Upstream,
        Some("none") => SyncSource::None,
        Some(other) => {
            c.push(
                format!("{path}.sync_source"),
                "sync_source",
                format!("\"{other}\" is not a source: use \"microsoft_update\", \"upstream\" or \"none\""),
            );
            SyncSource::None
        }
    };
    if !is_child && sync_source == SyncSource::Upstream {
        c.push(
            format!("{path}.sync_source"),
            "central_sync_source",
            "the central site has no parent to synchronize from: use \"microsoft_update\" or \"none\"",
        );
    }
    if is_child && sync_source != SyncSource::Upstream {
        c.push(
            format!("{path}.sync_source"),
            "child_sync_source",
            "a child site synchronizes from its parent's active SUP: use \"upstream\"",
        );
    }
    let reporting_events = match r.reporting_events.as_deref().unwrap_or("none") {
        "none" => ReportingEvents::None,
        "status_only" => ReportingEvents::StatusOnly,
        "all" => ReportingEvents::All,
        other => {
            c.push(
                format!("{path}.reporting_events"),
                "reporting_events",
                format!("\"{other}\" is not a level: use \"none\", \"status_only\" or \"all\""),
            );
            ReportingEvents::None
        }
    };
    let top = if is_child {
        check_child_inherits(r, path, c);
        None
    } else {
        Some(validate_top_settings(r, path, c))
    };
    SoftwareUpdates {
        sync_source,
        reporting_events,
        top,
    }
}

/// A child site inherits the Sync Schedule, Classifications, Products and Languages pages from
/// the top of its hierarchy: ConfigMgr 2007 hides them on a site that synchronizes from upstream.
fn check_child_inherits(r: &RawSoftwareUpdates, path: &str, c: &mut Collector) {
    let declared = [
        ("schedule", r.schedule.is_some()),
        ("classifications", r.classifications.is_some()),
        ("products", r.products.is_some()),
        ("languages", r.languages.is_some()),
        ("update_file_languages", r.update_file_languages.is_some()),
        ("summary_languages", r.summary_languages.is_some()),
    ];
    for (key, _) in declared.iter().filter(|(_, set)| *set) {
        c.push(
            format!("{path}.{key}"),
            "child_inherits_settings",
            format!(
                "a child site inherits {key} from the top site of its hierarchy (the site that synchronizes from Microsoft Update): declare it there"
            ),
        );
    }
}

fn validate_top_settings(r: &RawSoftwareUpdates, path: &str, c: &mut Collector) -> TopSettings {
    let schedule = match &r.schedule {
        None => schedule::default_schedule(),
        Some(s) => validate_schedule(s, &format!("{path}.schedule"), c),
    };
    let default_classifications: Vec<String> = catalog::DEFAULT_CLASSIFICATIONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let classifications = lookup_all(
        catalog::CLASSIFICATIONS,
        r.classifications
            .as_ref()
            .unwrap_or(&default_classifications),
        &format!("{path}.classifications"),
        "classification",
        c,
    );
    let products = lookup_all(
        catalog::PRODUCTS,
        r.products.as_deref().unwrap_or_default(),
        &format!("{path}.products"),
        "product",
        c,
    );
    let default_languages = vec!["English".to_string()];
    // `languages` sets both lists; each may also be given on its own, but not with it.
    if r.languages.is_some() && (r.update_file_languages.is_some() || r.summary_languages.is_some())
    {
        c.push(
            format!("{path}.languages"),
            "languages_once",
            "languages sets both update_file_languages and summary_languages: give either languages or the two lists",
        );
    }
    let pick = |own: &Option<Vec<String>>, key: &'static str| match (own, &r.languages) {
        (Some(list), _) => (list.clone(), key),
        (None, Some(both)) => (both.clone(), "languages"),
        (None, None) => (default_languages.clone(), "languages"),
    };
    let (update_files, update_files_key) = pick(&r.update_file_languages, "update_file_languages");
    let (summary, summary_key) = pick(&r.summary_languages, "summary_languages");
    let update_file_languages = lookup_all(
        catalog::LANGUAGES,
        &update_files,
        &format!("{path}.{update_files_key}"),
        "language",
        c,
    );
    // One list read once reports its mistakes once.
    let summary_languages = if summary_key == update_files_key {
        update_file_languages.clone()
    } else {
        lookup_all(
            catalog::LANGUAGES,
            &summary,
            &format!("{path}.{summary_key}"),
            "language",
            c,
        )
    };
    TopSettings {
        schedule,
        classifications,
        products,
        update_file_languages,
        summary_languages,
    }
}

fn lookup_all(
    table: &'static [Entry],
    names: &[String],
    path: &str,
    what: &'static str,
    c: &mut Collector,
) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match catalog::find(table, n) {
            Some(e) if out.contains(&e) => {
                c.push(
                    format!("{path}[{i}]"),
                    "duplicate_entry",
                    format!("\"{n}\" is listed twice"),
                );
            }
            Some(e) => out.push(e),
            None => {
                let hint = catalog::closest(table, n)
                    .map(|s| format!("; did you mean \"{s}\"?"))
                    .unwrap_or_default();
                c.push(
                    format!("{path}[{i}]"),
                    "catalog",
                    format!("unknown {what} \"{n}\"{hint}"),
                );
            }
        }
    }
    out
}

fn validate_schedule(s: &RawSchedule, path: &str, c: &mut Collector) -> SyncSchedule {
    match s {
        RawSchedule::Text(t) if crate::token::looks_like_token(t) => {
            match crate::token::decode(t).and_then(|tokens| crate::token::to_schedule(&tokens)) {
                Ok(s) => s,
                Err(e) => {
                    c.push(path, "schedule_token", e.to_string());
                    SyncSchedule::Manual
                }
            }
        }
        RawSchedule::Text(t) => match schedule::parse_text(t) {
            Ok(s) => s,
            Err(e) => {
                let rule = if matches!(e, schedule::ScheduleError::IntervalRange { .. }) {
                    "schedule_range"
                } else {
                    "schedule"
                };
                c.push(path, rule, e.to_string());
                SyncSchedule::Manual
            }
        },
        RawSchedule::Table(t) => {
            validate_schedule_table(t, path, c).unwrap_or(SyncSchedule::Manual)
        }
    }
}

fn validate_schedule_table(
    t: &RawScheduleTable,
    path: &str,
    c: &mut Collector,
) -> Option<SyncSchedule> {
    let mut start: NaiveDateTime = schedule::default_start();
    if let Some(s) = &t.start {
        match parse_local_datetime(s) {
            Some(d) => start = d,
            None => {
                c.push(
                    format!("{path}.start"),
                    "schedule",
                    format!("\"{s}\" is not YYYY-MM-DDTHH:MM:SS local time"),
                );
                return None;
            }
        }
    }
    if let Some(at) = &t.at {
        match parse_time_of_day(at) {
            Some(time) => start = start.date().and_time(time),
            None => {
                c.push(
                    format!("{path}.at"),
                    "schedule",
                    format!("\"{at}\" is not a time of day HH:MM"),
                );
                return None;
            }
        }
    }
    let count = |v: Option<i64>, max: i64, field: &str, c: &mut Collector| -> Option<u32> {
        match v {
            None => Some(1),
            Some(n) if (1..=max).contains(&n) => u32::try_from(n).ok(),
            Some(n) => {
                c.push(
                    format!("{path}.{field}"),
                    "schedule_range",
                    format!("{n} is out of range 1-{max}"),
                );
                None
            }
        }
    };
    let has_spans = t.day_span.is_some() || t.hour_span.is_some();
    let kind = t
        .kind
        .as_deref()
        .unwrap_or(if t.every.is_some() || has_spans {
            "simple"
        } else {
            ""
        });
    // The token JSON's spans, as the simple schedule's phrase.
    let spans = match (t.day_span.unwrap_or(0), t.hour_span.unwrap_or(0)) {
        (0, 0) => None,
        (d, 0) => Some(format!("{d} days")),
        (0, h) => Some(format!("{h} hours")),
        _ => {
            c.push(
                format!("{path}.day_span"),
                "schedule",
                "a simple schedule is every N hours or every N days, not both",
            );
            return None;
        }
    };
    let recurrence = match kind {
        "simple" | "interval" => {
            let text = t.every.clone().or(spans).unwrap_or_default();
            let text = text.as_str();
            let Some((every, unit)) = parse_every(text) else {
                c.push(
                    format!("{path}.every"),
                    "schedule",
                    format!("\"{text}\" is not \"N hours|days|weeks\""),
                );
                return None;
            };
            if let Err(e) = check_interval(every, unit) {
                c.push(format!("{path}.every"), "schedule_range", e.to_string());
                return None;
            }
            Recurrence::Interval { every, unit }
        }
        "weekly" => {
            let names = t
                .days
                .clone()
                .or_else(|| t.weekday.clone().map(|w| vec![w]))
                .unwrap_or_default();
            if names.is_empty() {
                c.push(
                    format!("{path}.days"),
                    "schedule",
                    "a weekly schedule names at least one day",
                );
                return None;
            }
            let mut days = Vec::new();
            for (i, n) in names.iter().enumerate() {
                match n.weekday() {
                    Some(d) if !days.contains(&d) => days.push(d),
                    Some(_) => {}
                    None => {
                        c.push(
                            format!("{path}.days[{i}]"),
                            "schedule",
                            format!("\"{}\" is not a day of the week", n.text()),
                        );
                        return None;
                    }
                }
            }
            Recurrence::Weekly {
                days,
                every_weeks: count(t.every_weeks, 4, "every_weeks", c)?,
            }
        }
        "monthly_by_date" => {
            let day = match t.day {
                Some(d) if (0..=31).contains(&d) => d as u32,
                other => {
                    c.push(
                        format!("{path}.day"),
                        "schedule_range",
                        format!("{other:?} is not a day of the month: 1-31, or 0 for the last day"),
                    );
                    return None;
                }
            };
            Recurrence::MonthlyByDate {
                day,
                every_months: count(t.every_months, 12, "every_months", c)?,
            }
        }
        "monthly_by_weekday" => {
            let week_text = t.week.as_ref().map(|w| w.text().to_ascii_lowercase());
            let week = match week_text.as_deref() {
                Some("first" | "1") => WeekOrder::Nth(1),
                Some("second" | "2") => WeekOrder::Nth(2),
                Some("third" | "3") => WeekOrder::Nth(3),
                Some("fourth" | "4") => WeekOrder::Nth(4),
                Some("last" | "0") => WeekOrder::Last,
                other => {
                    c.push(
                        format!("{path}.week"),
                        "schedule",
                        format!("{other:?} is not a week: first, second, third, fourth or last"),
                    );
                    return None;
                }
            };
            let Some(weekday) = t.weekday.as_ref().and_then(NameOrNumber::weekday) else {
                c.push(
                    format!("{path}.weekday"),
                    "schedule",
                    "a day of the week is required, e.g. \"Tuesday\"",
                );
                return None;
            };
            Recurrence::MonthlyByWeekday {
                week,
                weekday,
                every_months: count(t.every_months, 12, "every_months", c)?,
            }
        }
        other => {
            c.push(
                format!("{path}.type"),
                "schedule",
                format!("\"{other}\" is not a schedule type: simple, weekly, monthly_by_date or monthly_by_weekday"),
            );
            return None;
        }
    };
    Some(SyncSchedule::Recurring(Schedule {
        start,
        recurrence,
        gmt: t.is_gmt.unwrap_or(false),
    }))
}

/// Turns a validated site back into its spec form (for storage and display); validating the
/// result gives the same site again.
pub fn to_raw(site: &Site) -> RawSite {
    let su = &site.software_updates;
    RawSite {
        code: site.code.clone(),
        name: Some(site.name.clone()),
        mode: Some(site.mode.as_str().to_string()),
        parent: site.parent.clone(),
        failover: Some(
            match site.failover {
                Failover::Manual => "manual",
                Failover::Auto => "auto",
            }
            .to_string(),
        ),
        drift: Some(
            match site.drift {
                Drift::Report => "report",
                Drift::Correct => "correct",
            }
            .to_string(),
        ),
        site_server: site.site_server.clone(),
        time_zone: Some(site.time_zone.name().to_string()),
        software_updates: Some(RawSoftwareUpdates {
            sync_source: Some(
                match su.sync_source {
                    SyncSource::MicrosoftUpdate => "microsoft_update",
                    SyncSource::Upstream => "upstream",
                    SyncSource::None => "none",
                }
                .to_string(),
            ),
            reporting_events: Some(
                match su.reporting_events {
                    ReportingEvents::None => "none",
                    ReportingEvents::StatusOnly => "status_only",
                    ReportingEvents::All => "all",
                }
                .to_string(),
            ),
            schedule: su.top.as_ref().map(|t| schedule_to_raw(&t.schedule)),
            classifications: su.top.as_ref().map(|t| titles(&t.classifications)),
            products: su.top.as_ref().map(|t| titles(&t.products)),
            languages: None,
            update_file_languages: su.top.as_ref().map(|t| titles(&t.update_file_languages)),
            summary_languages: su.top.as_ref().map(|t| titles(&t.summary_languages)),
        }),
        site_system: site
            .site_systems
            .iter()
            .map(|s| RawSiteSystem {
                server: s.server.clone(),
                internet_fqdn: s.internet_fqdn.clone(),
                computer_account_access: Some(s.computer_account_access),
                install_account: s.install_account.clone(),
                install_password_env: match &s.install_password {
                    Some(SecretRef::Env(e)) => Some(e.clone()),
                    _ => None,
                },
                install_password_file: match &s.install_password {
                    Some(SecretRef::File(f)) => Some(f.clone()),
                    _ => None,
                },
                install_password: None,
            })
            .collect(),
        software_update_point: site
            .software_update_points
            .iter()
            .map(|s| RawSoftwareUpdatePoint {
                server: s.server.clone(),
                active: s.active.map(|a| a.as_str().to_string()),
                http_port: Some(i64::from(s.http_port)),
                https_port: Some(i64::from(s.https_port)),
                ssl: Some(s.ssl),
                proxy: s.proxy.as_ref().map(|p| RawProxy {
                    enabled: None,
                    server: Some(p.server.clone()),
                    port: Some(i64::from(p.port)),
                    account: p.account.clone(),
                    password_env: match &p.password {
                        Some(SecretRef::Env(e)) => Some(e.clone()),
                        _ => None,
                    },
                    password_file: match &p.password {
                        Some(SecretRef::File(f)) => Some(f.clone()),
                        _ => None,
                    },
                    password: None,
                }),
                allow_internet_clients: s.allow_internet_clients.then_some(true),
            })
            .collect(),
        nlb_cluster: site
            .nlb_clusters
            .iter()
            .map(|n| RawNlbCluster {
                name: n.name.clone(),
                members: n.members.clone(),
                active: n.active.map(|a| a.as_str().to_string()),
            })
            .collect(),
    }
}

fn titles(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.title.to_string()).collect()
}

/// The spec form of a schedule: text for manual and for simple schedules at the default start,
/// a table otherwise.
pub fn schedule_to_raw(s: &SyncSchedule) -> RawSchedule {
    let SyncSchedule::Recurring(s) = s else {
        return RawSchedule::Text("manual".into());
    };
    let start = Some(s.start.format("%Y-%m-%dT%H:%M:%S").to_string());
    let is_gmt = s.gmt.then_some(true);
    match &s.recurrence {
        Recurrence::Interval { every, unit } => {
            let unit = match unit {
                IntervalUnit::Hours => "hours",
                IntervalUnit::Days => "days",
                IntervalUnit::Weeks => "weeks",
            };
            if s.start == schedule::default_start() && !s.gmt {
                RawSchedule::Text(format!("every {every} {unit}"))
            } else {
                RawSchedule::Table(Box::new(RawScheduleTable {
                    kind: Some("simple".into()),
                    every: Some(format!("{every} {unit}")),
                    start,
                    is_gmt,
                    ..Default::default()
                }))
            }
        }
        Recurrence::Weekly { days, every_weeks } => {
            RawSchedule::Table(Box::new(RawScheduleTable {
                kind: Some("weekly".into()),
                start,
                days: Some(
                    days.iter()
                        .map(|d| NameOrNumber::Name(schedule::weekday_name(*d).to_string()))
                        .collect(),
                ),
                every_weeks: Some(i64::from(*every_weeks)),
                is_gmt,
                ..Default::default()
            }))
        }
        Recurrence::MonthlyByDate { day, every_months } => {
            RawSchedule::Table(Box::new(RawScheduleTable {
                kind: Some("monthly_by_date".into()),
                start,
                day: Some(i64::from(*day)),
                every_months: Some(i64::from(*every_months)),
                is_gmt,
                ..Default::default()
            }))
        }
        Recurrence::MonthlyByWeekday {
            week,
            weekday,
            every_months,
        } => RawSchedule::Table(Box::new(RawScheduleTable {
            kind: Some("monthly_by_weekday".into()),
            start,
            week: Some(NameOrNumber::Name(
                match week {
                    WeekOrder::Nth(1) => "first",
                    WeekOrder::Nth(2) => "second",
                    WeekOrder::Nth(3) => "third",
                    WeekOrder::Nth(_) => "fourth",
                    WeekOrder::Last => "last",
                }
                .into(),
            )),
            weekday: Some(NameOrNumber::Name(
                schedule::weekday_name(*weekday).to_string(),
            )),
            every_months: Some(i64::from(*every_months)),
            is_gmt,
            ..Default::default()
        })),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The one site of a valid site file, for tests.
    pub(crate) fn one_site(text: &str) -> Site {
        load_site_file(text, &BTreeMap::new())
            .expect("valid")
            .pop()
            .expect("one site")
    }
}
