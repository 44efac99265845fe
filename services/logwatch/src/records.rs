//! One parsed line as the JSON record `sup-logwatch parse --json` prints and `SUP_LOGS` carries:
//! `file`, `line`, `format`, `time_utc`, `time_local`, `component`, `thread`, `message`,
//! `milestone`, and the milestone's fields (such as `server`) at the top level.

use chrono::SecondsFormat;
use serde_json::{Map, Value};
use sup_smslog::{Milestone, RecordRef};

pub fn json(file: &str, line: u64, record: &RecordRef<'_>, milestone: Option<&Milestone>) -> Value {
    let mut o = Map::new();
    o.insert("file".into(), file.into());
    o.insert("line".into(), line.into());
    o.insert("format".into(), record.format.as_str().into());
    o.insert(
        "time_utc".into(),
        record
            .time_utc()
            .map(|t| Value::from(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
            .unwrap_or(Value::Null),
    );
    o.insert(
        "time_local".into(),
        record
            .time_local
            .map(|t| Value::from(t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()))
            .unwrap_or(Value::Null),
    );
    o.insert(
        "component".into(),
        record.component.map(Value::from).unwrap_or(Value::Null),
    );
    o.insert(
        "thread".into(),
        record.thread.map(Value::from).unwrap_or(Value::Null),
    );
    o.insert("message".into(), record.message.into());
    o.insert(
        "milestone".into(),
        milestone
            .map(|m| Value::from(m.name))
            .unwrap_or(Value::Null),
    );
    if let Some(m) = milestone {
        for (k, v) in &m.fields {
            // `log` repeats `file`; every other field is the milestone's own.
            if *k != "log" && !o.contains_key(*k) {
                o.insert((*k).to_string(), v.clone().into());
            }
        }
    }
    Value::Object(o)
}
