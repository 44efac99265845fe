//! What supctl prints: the `status -o json` contract, tables, and site specs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sup_proto::convert::{self, health_name, role_state_from_proto, slot_from_proto};
use sup_proto::prost_types::Timestamp;
use sup_proto::v1;

pub fn state_name(state: i32) -> &'static str {
    role_state_from_proto(state)
        .map(|s| s.as_str())
        .unwrap_or("unknown")
}

/// RFC 3339 UTC, seconds precision.
pub fn time(t: Option<&Timestamp>) -> Option<String> {
    let t = t?;
    let nanos = u32::try_from(t.nanos).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(t.seconds, nanos)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn mode_name(mode: i32) -> &'static str {
    match v1::SiteMode::try_from(mode) {
        Ok(v1::SiteMode::Native) => "native",
        _ => "mixed",
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    sites: Vec<SiteJson<'a>>,
}

#[derive(Serialize)]
struct SiteJson<'a> {
    code: &'a str,
    name: &'a str,
    mode: &'static str,
    parent: Option<&'a str>,
    active: ActiveJson,
    roles: Vec<RoleJson<'a>>,
    sync: SyncJson,
    /// How the site's control file differs from the declaration (read through its SMS
    /// Provider); empty when it matches or is not read.
    drift: Vec<DriftJson<'a>>,
}

#[derive(Serialize)]
struct DriftJson<'a> {
    path: &'a str,
    declared: &'a str,
    live: &'a str,
}

#[derive(Serialize)]
struct ActiveJson {
    intranet: Option<SlotJson>,
    internet: Option<SlotJson>,
}

#[derive(Serialize)]
struct SlotJson {
    target: String,
    nlb: bool,
    epoch: u64,
}

#[derive(Serialize)]
struct RoleJson<'a> {
    server: &'a str,
    state: &'static str,
    slot: Option<&'static str>,
    health: &'static str,
    /// `microsoft_update`, `none` or the server this SUP synchronizes from.
    upstream: Option<String>,
    /// Why the role is failed, unhealthy or waiting.
    reason: Option<String>,
}

#[derive(Serialize)]
struct SyncJson {
    state: &'static str,
    last_started: Option<String>,
    last_finished: Option<String>,
    next: Option<String>,
    schedule_token: Option<String>,
    time_zone: Option<String>,
}

fn slot_json(a: Option<&v1::ActiveSlot>) -> Option<SlotJson> {
    a.filter(|a| !a.target.is_empty()).map(|a| SlotJson {
        target: a.target.clone(),
        nlb: a.nlb,
        epoch: a.epoch,
    })
}

use sup_proto::convert::sync_state_name as sync_state;

/// The slot a role holds now, from the site's slot records.
fn held_slot(s: &v1::SiteStatus, server: &str) -> Option<&'static str> {
    [(&s.intranet, "intranet"), (&s.internet, "internet")]
        .into_iter()
        .find(|(a, _)| {
            a.as_ref()
                .is_some_and(|a| a.members.iter().any(|m| m == server))
        })
        .map(|(_, name)| name)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Why a role is failed or unhealthy (its own record), or waiting (for its upstream).
fn role_reason(r: &v1::RoleStatus, sync: Option<&v1::RoleSync>) -> Option<String> {
    let troubled = matches!(
        v1::RoleState::try_from(r.state),
        Ok(v1::RoleState::Failed | v1::RoleState::Unhealthy)
    );
    if troubled && !r.reason.is_empty() {
        return Some(r.reason.clone());
    }
    sync.and_then(|x| non_empty(&x.waiting))
}

pub fn status_json(status: &v1::StatusResponse) -> String {
    let sites = status
        .sites
        .iter()
        .filter_map(|s| {
            let site = s.site.as_ref()?;
            let sync = s.sync.clone().unwrap_or_default();
            Some(SiteJson {
                code: &site.code,
                name: &site.name,
                mode: mode_name(site.mode),
                parent: (!site.parent.is_empty()).then_some(site.parent.as_str()),
                active: ActiveJson {
                    intranet: slot_json(s.intranet.as_ref()),
                    internet: slot_json(s.internet.as_ref()),
                },
                roles: s
                    .roles
                    .iter()
                    .map(|r| {
                        let sync = s.role_sync.iter().find(|x| x.server == r.server);
                        RoleJson {
                            server: &r.server,
                            state: state_name(r.state),
                            slot: held_slot(s, &r.server),
                            health: health_name(r.health),
                            upstream: sync.and_then(|x| non_empty(&x.upstream)),
                            reason: role_reason(r, sync),
                        }
                    })
                    .collect(),
                sync: SyncJson {
                    state: sync_state(sync.state),
                    last_started: time(sync.last_started.as_ref()),
                    last_finished: time(sync.last_finished.as_ref()),
                    next: time(sync.next.as_ref()),
                    schedule_token: non_empty(&sync.schedule_token),
                    time_zone: non_empty(&sync.time_zone),
                },
                drift: s
                    .drift
                    .iter()
                    .map(|d| DriftJson {
                        path: &d.path,
                        declared: &d.declared,
                        live: &d.live,
                    })
                    .collect(),
            })
        })
        .collect();
    serde_json::to_string(&StatusJson { sites })
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Wide adds each role's declared slot, NLB cluster, verification milestones and last change.
pub fn status_table(status: &v1::StatusResponse, wide: bool) -> String {
    let mut out = String::new();
    if status.sites.is_empty() {
        out.push_str("no sites applied\n");
    }
    for s in &status.sites {
        let Some(site) = &s.site else { continue };
        let parent = if site.parent.is_empty() {
            "-"
        } else {
            &site.parent
        };
        let _ = writeln!(
            out,
            "SITE {}  {}  mode={}  parent={parent}",
            site.code,
            site.name,
            mode_name(site.mode)
        );
        for (label, a) in [("intranet", &s.intranet), ("internet", &s.internet)] {
            match a.as_ref().filter(|a| !a.target.is_empty()) {
                Some(a) => {
                    let nlb = if a.nlb { " (NLB)" } else { "" };
                    let _ = writeln!(
                        out,
                        "  active {label}: {}{nlb}  epoch {}",
                        a.target, a.epoch
                    );
                }
                None => {
                    let _ = writeln!(out, "  active {label}: none");
                }
            }
        }
        let rows: Vec<Vec<String>> = s
            .roles
            .iter()
            .map(|r| {
                let sync = s.role_sync.iter().find(|x| x.server == r.server);
                let mut row = vec![
                    r.server.clone(),
                    state_name(r.state).to_string(),
                    held_slot(s, &r.server).unwrap_or("-").to_string(),
                    health_name(r.health).to_string(),
                    sync.and_then(|x| non_empty(&x.upstream))
                        .unwrap_or_else(|| "-".into()),
                    role_reason(r, sync)
                        .or_else(|| non_empty(&r.reason))
                        .unwrap_or_default(),
                ];
                if wide {
                    row.extend([
                        slot_from_proto(r.desired_slot)
                            .map(|s| s.as_str())
                            .unwrap_or("-")
                            .to_string(),
                        non_empty(&r.nlb_cluster).unwrap_or_else(|| "-".into()),
                        if r.verified.is_empty() {
                            "-".into()
                        } else {
                            r.verified.join(",")
                        },
                        time(r.updated.as_ref()).unwrap_or_else(|| "-".into()),
                    ]);
                }
                row
            })
            .collect();
        let mut header = vec!["SERVER", "STATE", "SLOT", "HEALTH", "UPSTREAM", "REASON"];
        if wide {
            header.extend(["DECLARED SLOT", "NLB CLUSTER", "VERIFIED", "UPDATED"]);
        }
        out.push_str(&crate::table::render(&header, &rows, "  "));
        for d in &s.drift {
            let _ = writeln!(
                out,
                "  drift: {} is {:?} in the site control file, declared {:?}",
                d.path, d.live, d.declared
            );
        }
        let sync = s.sync.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "  sync: {}  last started {}  last finished {}  next {}{}\n",
            sync_state(sync.state),
            time(sync.last_started.as_ref()).unwrap_or_else(|| "-".into()),
            time(sync.last_finished.as_ref()).unwrap_or_else(|| "-".into()),
            time(sync.next.as_ref()).unwrap_or_else(|| if site.parent.is_empty() {
                "manual".into()
            } else {
                format!("after {}", site.parent)
            }),
            if sync.time_zone.is_empty() || sync.time_zone == "UTC" {
                String::new()
            } else {
                format!("  (site time zone {})", sync.time_zone)
            },
        );
    }
    out
}

/// Wide adds the failover policy, the site server, the time zone and the NLB clusters.
pub fn sites_table(sites: &[v1::Site], wide: bool) -> String {
    let rows: Vec<Vec<String>> = sites
        .iter()
        .map(|s| {
            let mut row = vec![
                s.code.clone(),
                s.name.clone(),
                mode_name(s.mode).to_string(),
                if s.parent.is_empty() {
                    "-".into()
                } else {
                    s.parent.clone()
                },
                s.software_update_points.len().to_string(),
            ];
            if wide {
                row.extend([
                    if s.failover == v1::FailoverPolicy::Auto as i32 {
                        "auto"
                    } else {
                        "manual"
                    }
                    .to_string(),
                    non_empty(&s.site_server).unwrap_or_else(|| "-".into()),
                    non_empty(&s.time_zone).unwrap_or_else(|| "UTC".into()),
                    if s.nlb_clusters.is_empty() {
                        "-".into()
                    } else {
                        s.nlb_clusters
                            .iter()
                            .map(|c| c.name.clone())
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                ]);
            }
            row
        })
        .collect();
    let mut header = vec!["CODE", "NAME", "MODE", "PARENT", "SUPS"];
    if wide {
        header.extend(["FAILOVER", "SITE SERVER", "TIME ZONE", "NLB CLUSTERS"]);
    }
    crate::table::render(&header, &rows, "")
}

/// One site for people: the listing's row, then its site systems' SUP roles.
pub fn site_table(site: &v1::Site, wide: bool) -> String {
    let mut out = sites_table(std::slice::from_ref(site), wide);
    let rows: Vec<Vec<String>> = spec_of(site)
        .software_update_point
        .iter()
        .map(|p| {
            vec![
                p.server.clone(),
                p.http_port.map_or("-".into(), |v| v.to_string()),
                p.https_port.map_or("-".into(), |v| v.to_string()),
                if p.ssl.unwrap_or(false) { "yes" } else { "no" }.to_string(),
                p.active.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&crate::table::render(
        &[
            "SOFTWARE UPDATE POINT",
            "HTTP",
            "HTTPS",
            "SSL",
            "DECLARED ACTIVE",
        ],
        &rows,
        "",
    ));
    out
}

pub fn sites_json(sites: &[v1::Site]) -> String {
    let list: Vec<BTreeMap<&str, serde_json::Value>> = sites
        .iter()
        .map(|s| {
            BTreeMap::from([
                ("code", s.code.clone().into()),
                ("name", s.name.clone().into()),
                ("mode", mode_name(s.mode).into()),
                (
                    "parent",
                    if s.parent.is_empty() {
                        serde_json::Value::Null
                    } else {
                        s.parent.clone().into()
                    },
                ),
                (
                    "software_update_points",
                    s.software_update_points
                        .iter()
                        .map(|p| serde_json::Value::from(p.server.clone()))
                        .collect::<Vec<_>>()
                        .into(),
                ),
            ])
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_default()
}

pub fn spec_of(site: &v1::Site) -> sup_core::spec::RawSite {
    // A stored site reads back into the model as it was validated; its canonical form fills in
    // every default. An older version's record goes through validation instead.
    if let Ok(model) = convert::site_from_stored(site) {
        return sup_core::spec::to_raw(&model);
    }
    let raw = convert::site_from_proto(site);
    let mut known = BTreeMap::new();
    if !site.parent.is_empty() {
        known.insert(site.parent.clone(), None);
    }
    match sup_core::spec::validate_sites(std::slice::from_ref(&raw), &known) {
        Ok(mut v) => v.pop().map(|m| sup_core::spec::to_raw(&m)).unwrap_or(raw),
        Err(_) => raw,
    }
}

/// A stored site as a site file.
pub fn site_toml(site: &v1::Site) -> String {
    let file = sup_core::spec::RawSiteFile {
        site: vec![spec_of(site)],
    };
    toml::to_string(&file).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

pub fn site_json(site: &v1::Site) -> String {
    serde_json::to_string(&spec_of(site)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_is_the_contract() {
        let status = v1::StatusResponse {
            sites: vec![v1::SiteStatus {
                site: Some(v1::Site {
                    code: "CEN".into(),
                    name: "Central site".into(),
                    mode: v1::SiteMode::Native as i32,
                    ..Default::default()
                }),
                intranet: Some(v1::ActiveSlot {
                    target: "cen-sup01.corp.example.com".into(),
                    members: vec!["cen-sup01.corp.example.com".into()],
                    epoch: 3,
                    ..Default::default()
                }),
                internet: None,
                roles: vec![
                    v1::RoleStatus {
                        server: "cen-sup01.corp.example.com".into(),
                        state: v1::RoleState::Active as i32,
                        health: v1::Health::Healthy as i32,
                        ..Default::default()
                    },
                    v1::RoleStatus {
                        server: "cen-sup02.corp.example.com".into(),
                        state: v1::RoleState::Failed as i32,
                        health: v1::Health::Unknown as i32,
                        reason: "Installation failed".into(),
                        ..Default::default()
                    },
                ],
                drift: Vec::new(),
                role_sync: vec![v1::RoleSync {
                    server: "cen-sup01.corp.example.com".into(),
                    upstream: "microsoft_update".into(),
                    waiting: String::new(),
                }],
                sync: Some(v1::SyncStatus {
                    state: v1::SyncState::Succeeded as i32,
                    last_started: Some(Timestamp {
                        seconds: 1_795_428_000,
                        nanos: 0,
                    }),
                    last_finished: Some(Timestamp {
                        seconds: 1_795_428_240,
                        nanos: 0,
                    }),
                    next: Some(Timestamp {
                        seconds: 1_796_032_800,
                        nanos: 0,
                    }),
                    schedule_token: "0001200000100038".into(),
                    time_zone: "UTC".into(),
                }),
            }],
        };
        assert_eq!(
            status_json(&status),
            r#"{"sites":[{"code":"CEN","name":"Central site","mode":"native","parent":null,"active":{"intranet":{"target":"cen-sup01.corp.example.com","nlb":false,"epoch":3},"internet":null},"roles":[{"server":"cen-sup01.corp.example.com","state":"active","slot":"intranet","health":"healthy","upstream":"microsoft_update","reason":null},{"server":"cen-sup02.corp.example.com","state":"failed","slot":null,"health":"unknown","upstream":null,"reason":"Installation failed"}],"sync":{"state":"succeeded","last_started":"2026-11-23T10:00:00Z","last_finished":"2026-11-23T10:04:00Z","next":"2026-11-30T10:00:00Z","schedule_token":"0001200000100038","time_zone":"UTC"},"drift":[]}]}"#
        );
    }
}
