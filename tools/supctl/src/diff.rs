//! `supctl diff -f FILE`: what an apply of the file would change, field by field, against the
//! sites the coordinator stores. Both sides are compared in their canonical site-file form (every
//! default filled in), so a key left out of the file differs only when its default does.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sup_proto::v1;

use crate::{Context, Failure, offline, output};

/// One difference: the site-file path, and the stored and the file's values (`None`: absent).
#[derive(Debug, PartialEq)]
pub struct Change {
    pub path: String,
    pub stored: Option<Value>,
    pub file: Option<Value>,
}

pub async fn diff(ctx: &Context, file: &Path) -> Result<(), Failure> {
    let text = offline::read_site_file(file)?;
    let mut c = ctx.coordinator().await?;
    let (sites, stored) = crate::validate_against_stored(&mut c, &text).await?;
    let stored_sites: BTreeMap<String, v1::Site> =
        stored.into_iter().map(|s| (s.code.clone(), s)).collect();
    for site in &sites {
        let declared = json(&sup_core::spec::to_raw(site));
        let Some(stored) = stored_sites.get(&site.code) else {
            println!("site {}: would be created", site.code);
            continue;
        };
        let changes = compare(&json(&output::spec_of(stored)), &declared);
        if changes.is_empty() {
            println!("site {}: no changes", site.code);
            continue;
        }
        println!("site {}:", site.code);
        for ch in changes {
            let show = |v: &Option<Value>| v.as_ref().map_or("(none)".into(), Value::to_string);
            println!("  {}: {} -> {}", ch.path, show(&ch.stored), show(&ch.file));
        }
    }
    Ok(())
}

fn json(raw: &sup_core::spec::RawSite) -> Value {
    serde_json::to_value(raw).unwrap_or(Value::Null)
}

/// Every leaf that differs. Lists of tables that carry a `server` or `name` are matched by it
/// (`software_update_point[cen-sup01.corp.example.com].http_port`), other lists by position.
pub fn compare(stored: &Value, file: &Value) -> Vec<Change> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(stored, String::new(), &mut a);
    flatten(file, String::new(), &mut b);
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| Change {
            path: p.clone(),
            stored: a.get(p).cloned(),
            file: b.get(p).cloned(),
        })
        .collect()
}

fn flatten(v: &Value, at: String, out: &mut BTreeMap<String, Value>) {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(v, join(k), out);
            }
        }
        Value::Array(items) if items.iter().all(|i| key_of(i).is_some()) && !items.is_empty() => {
            for item in items {
                let key = key_of(item).unwrap_or_default();
                flatten(item, format!("{at}[{key}]"), out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(at, other.clone());
        }
    }
}

fn key_of(item: &Value) -> Option<String> {
    ["server", "name"]
        .iter()
        .find_map(|k| item.get(*k).and_then(Value::as_str).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_named_by_path_and_servers_by_name() {
        let stored = json!({"code": "CEN", "failover": "manual", "software_update_point": [
            {"server": "a", "http_port": 80}, {"server": "b", "http_port": 80}],
            "classifications": ["Critical Updates"]});
        let file = json!({"code": "CEN", "failover": "auto", "software_update_point": [
            {"server": "b", "http_port": 8530}, {"server": "c", "http_port": 80}],
            "classifications": ["Critical Updates", "Security Updates"]});
        let paths: Vec<(String, Option<Value>, Option<Value>)> = compare(&stored, &file)
            .into_iter()
            .map(|c| (c.path, c.stored, c.file))
            .collect();
        assert_eq!(
            paths,
            vec![
                (
                    "classifications".into(),
                    Some(json!(["Critical Updates"])),
                    Some(json!(["Critical Updates", "Security Updates"]))
                ),
                (
                    "failover".into(),
                    Some(json!("manual")),
                    Some(json!("auto"))
                ),
                (
                    "software_update_point[a].http_port".into(),
                    Some(json!(80)),
                    None
                ),
                (
                    "software_update_point[a].server".into(),
                    Some(json!("a")),
                    None
                ),
                (
                    "software_update_point[b].http_port".into(),
                    Some(json!(80)),
                    Some(json!(8530))
                ),
                (
                    "software_update_point[c].http_port".into(),
                    None,
                    Some(json!(80))
                ),
                (
                    "software_update_point[c].server".into(),
                    None,
                    Some(json!("c"))
                ),
            ]
        );
        assert!(compare(&stored, &stored).is_empty());
    }
}
