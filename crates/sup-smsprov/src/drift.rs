//! Drift: how a site's control file, read back through its SMS Provider, differs from its
//! declaration. Both sides are compared in their canonical site-file form, field by field, each
//! difference named by its site file path; lists of servers are matched by server, lists of
//! titles as sets. Settings the provider does not hold are taken from the declaration on both
//! sides ([`crate::import`]), so they never differ; the active intranet SUP is compared with the
//! slot's current holder, not the declaration, since a failover or an operator may have moved it.

use std::collections::BTreeMap;

use serde_json::Value;
use sup_core::spec::{RawSite, to_raw, validate_sites};

/// One setting whose live value differs from the declared one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftField {
    /// The site file path, e.g. `software_updates.reporting_events` or
    /// `software_update_point[cen-sup01.corp.example.com].http_port`.
    pub path: String,
    pub declared: String,
    pub live: String,
}

/// A site in its canonical form (every default filled in), or as given when it does not pass
/// the rules.
pub fn canonical(site: &RawSite) -> RawSite {
    let mut known = BTreeMap::new();
    if let Some(p) = &site.parent {
        known.insert(p.clone(), None);
    }
    match validate_sites(std::slice::from_ref(site), &known) {
        Ok(mut v) => v.pop().map(|m| to_raw(&m)).unwrap_or_else(|| site.clone()),
        Err(_) => site.clone(),
    }
}

/// Fields that are never the provider's to differ on: the slot (compared with its holder),
/// and what only the declaration holds.
const NOT_COMPARED: &[&str] = &[
    "active",
    "nlb_cluster",
    "mode",
    "failover",
    "time_zone",
    "drift",
];

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let mut items: Vec<String> = a.iter().map(text).collect();
            items.sort();
            items.join(", ")
        }
        other => other.to_string(),
    }
}

fn key_of(v: &Value) -> Option<String> {
    v.get("server")
        .or_else(|| v.get("name"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}

fn diff(path: &str, declared: &Value, live: &Value, out: &mut Vec<DriftField>) {
    // An empty list is left out of a site file: absent on one side is empty there.
    let empty = Value::Array(Vec::new());
    let (declared, live) = match (declared, live) {
        (Value::Array(_), Value::Null) => (declared, &empty),
        (Value::Null, Value::Array(_)) => (&empty, live),
        _ => (declared, live),
    };
    match (declared, live) {
        (Value::Object(d), Value::Object(l)) => {
            let keys: std::collections::BTreeSet<&String> = d.keys().chain(l.keys()).collect();
            for k in keys {
                if NOT_COMPARED.contains(&k.as_str()) {
                    continue;
                }
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &sub,
                    d.get(k).unwrap_or(&Value::Null),
                    l.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(d), Value::Array(l))
            if d.iter().chain(l.iter()).all(|v| key_of(v).is_some())
                && !(d.is_empty() && l.is_empty()) =>
        {
            let index = |a: &Vec<Value>| {
                a.iter()
                    .filter_map(|v| key_of(v).map(|k| (k, v.clone())))
                    .collect::<BTreeMap<String, Value>>()
            };
            let (d, l) = (index(d), index(l));
            let keys: std::collections::BTreeSet<&String> = d.keys().chain(l.keys()).collect();
            for k in keys {
                let sub = format!("{path}[{k}]");
                match (d.get(k), l.get(k)) {
                    (Some(a), Some(b)) => diff(&sub, a, b, out),
                    (Some(_), None) => out.push(DriftField {
                        path: sub,
                        declared: "present".into(),
                        live: "absent".into(),
                    }),
                    (None, Some(_)) => out.push(DriftField {
                        path: sub,
                        declared: "absent".into(),
                        live: "present".into(),
                    }),
                    (None, None) => {}
                }
            }
        }
        (d, l) => {
            let (dt, lt) = (text(d), text(l));
            let same = match (d, l) {
                (Value::Array(_), _) | (_, Value::Array(_)) => dt.eq_ignore_ascii_case(&lt),
                _ => d == l,
            };
            if !same {
                out.push(DriftField {
                    path: path.to_string(),
                    declared: dt,
                    live: lt,
                });
            }
        }
    }
}

/// The differences between `declared` and `live` (both canonical, [`canonical`]), plus the
/// active intranet SUP when the control file's `DefaultWSUS` is not one of the slot's holders.
pub fn compare(
    declared: &RawSite,
    live: &RawSite,
    holders: &[String],
    default_wsus: Option<&str>,
) -> Vec<DriftField> {
    let mut out = Vec::new();
    let (d, l) = (
        serde_json::to_value(declared).unwrap_or(Value::Null),
        serde_json::to_value(live).unwrap_or(Value::Null),
    );
    diff("", &d, &l, &mut out);
    if !holders.is_empty() {
        let live_active = default_wsus.unwrap_or_default();
        if !holders.iter().any(|h| h.eq_ignore_ascii_case(live_active)) {
            out.push(DriftField {
                path: "active.intranet".into(),
                declared: holders.join(", "),
                live: live_active.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sup_core::spec::{RawSoftwareUpdatePoint, RawSoftwareUpdates};

    fn site() -> RawSite {
        canonical(&RawSite {
            code: "CEN".into(),
            software_updates: Some(RawSoftwareUpdates {
                reporting_events: Some("none".into()),
                classifications: Some(vec!["Critical Updates".into(), "Security Updates".into()]),
                ..Default::default()
            }),
            software_update_point: vec![RawSoftwareUpdatePoint {
                server: "a.corp.example.com".into(),
                active: Some("intranet".into()),
                http_port: Some(8530),
                https_port: Some(8531),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    #[test]
    fn the_same_site_has_no_drift_whatever_the_order_of_its_lists() {
        let mut live = site();
        if let Some(su) = live.software_updates.as_mut() {
            su.classifications.as_mut().unwrap().reverse();
        }
        let holders = vec!["a.corp.example.com".to_string()];
        assert_eq!(
            compare(&site(), &live, &holders, Some("A.corp.example.com")),
            vec![]
        );
    }

    #[test]
    fn each_difference_is_named_by_its_path() {
        let mut live = site();
        live.software_updates.as_mut().unwrap().reporting_events = Some("all".into());
        live.software_update_point[0].http_port = Some(80);
        live.software_update_point[0].active = None;
        let holders = vec!["a.corp.example.com".to_string()];
        let d = compare(&site(), &live, &holders, Some("b.corp.example.com"));
        assert_eq!(
            d,
            vec![
                DriftField {
                    path: "software_update_point[a.corp.example.com].http_port".into(),
                    declared: "8530".into(),
                    live: "80".into()
                },
                DriftField {
                    path: "software_updates.reporting_events".into(),
                    declared: "none".into(),
                    live: "all".into()
                },
                DriftField {
                    path: "active.intranet".into(),
                    declared: "a.corp.example.com".into(),
                    live: "b.corp.example.com".into()
                },
            ]
        );
    }

    #[test]
    fn a_missing_role_row_is_drift() {
        let mut live = site();
        live.software_update_point.clear();
        let d = compare(&site(), &live, &[], None);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "software_update_point[a.corp.example.com]");
        assert_eq!(
            (d[0].declared.as_str(), d[0].live.as_str()),
            ("present", "absent")
        );
    }
}
