//! Events as lines for people and as JSON objects for scripts.

use serde_json::{Value, json};
use sup_proto::convert::{health_name, role_state_from_proto, slot_from_proto, sync_state_name};
use sup_proto::kind;
use sup_proto::v1::{self, event::Payload};

use crate::output::time;

fn state(s: i32) -> &'static str {
    role_state_from_proto(s)
        .map(|s| s.as_str())
        .unwrap_or("none")
}

fn kind_and_details(p: Option<&Payload>) -> (&'static str, Value) {
    match p {
        Some(Payload::SiteApplied(a)) => (
            kind::SITE_APPLIED,
            json!({"changed": a.changed, "changes": a.changes}),
        ),
        Some(Payload::SiteDeleted(d)) => (kind::SITE_DELETED, json!({"code": d.code})),
        Some(Payload::RoleStateChanged(r)) => (
            kind::ROLE_STATE,
            json!({"from": state(r.from), "to": state(r.to), "reason": r.reason}),
        ),
        Some(Payload::ActiveChanged(a)) => (
            kind::ACTIVE_CHANGED,
            json!({
                "slot": slot_from_proto(a.slot).map(|s| s.as_str()),
                "target": if a.target.is_empty() { Value::Null } else { a.target.clone().into() },
                "previous": if a.previous.is_empty() { Value::Null } else { a.previous.clone().into() },
                "nlb": a.nlb, "members": a.members, "cause": a.cause,
            }),
        ),
        Some(Payload::Milestone(m)) => (
            kind::MILESTONE,
            json!({"name": m.name, "log": m.log, "line": m.line, "fields": m.fields}),
        ),
        Some(Payload::HealthChanged(h)) => (
            kind::HEALTH_CHANGED,
            json!({
                "from": health_name(h.from), "to": health_name(h.to),
                "failing": h.failing.iter().map(|c| json!({"component": c.component, "detail": c.detail})).collect::<Vec<_>>(),
            }),
        ),
        Some(Payload::Provisioning(p)) => (
            kind::PROVISIONING,
            json!({"step": p.step, "detail": p.detail, "attempt": p.attempt, "command_id": p.command_id}),
        ),
        Some(Payload::ComponentConfigured(c)) => (
            kind::COMPONENT_CONFIGURED,
            json!({"upstream_server": c.upstream_server}),
        ),
        Some(Payload::SyncStarted(s)) => (kind::SYNC_STARTED, sync_run(s.run.as_ref())),
        Some(Payload::SyncFinished(s)) => (kind::SYNC_FINISHED, sync_run(s.run.as_ref())),
        Some(Payload::CommandRejected(c)) => (
            kind::COMMAND_REJECTED,
            json!({"command_id": c.command_id, "reason": c.reason}),
        ),
        Some(Payload::Alert(a)) => (kind::ALERT, json!({"kind": a.kind, "message": a.message})),
        Some(Payload::DriftDetected(d)) => (
            kind::DRIFT_DETECTED,
            json!({"correcting": d.correcting, "fields": d.fields.iter().map(|f| json!({"path": f.path, "declared": f.declared, "live": f.live})).collect::<Vec<_>>()}),
        ),
        None => (kind::UNKNOWN, Value::Null),
    }
}

fn sync_run(r: Option<&v1::SyncRun>) -> Value {
    match r {
        Some(r) => {
            json!({"run": r.id, "state": sync_state_name(r.state), "trigger": r.trigger, "error": r.error})
        }
        None => Value::Null,
    }
}

pub fn json(w: &v1::WatchedEvent) -> String {
    let e = w.event.clone().unwrap_or_default();
    let (kind, details) = kind_and_details(e.payload.as_ref());
    json!({
        "sequence": w.sequence,
        "id": e.id,
        "time": time(e.time.as_ref()),
        "site": e.site,
        "server": if e.server.is_empty() { Value::Null } else { e.server.into() },
        "epoch": e.epoch,
        "op_id": if e.op_id.is_empty() { Value::Null } else { e.op_id.into() },
        "kind": kind,
        "payload": details,
    })
    .to_string()
}

/// The line, then the epoch and the operation id that caused it.
pub fn wide_line(w: &v1::WatchedEvent) -> String {
    let e = w.event.clone().unwrap_or_default();
    format!(
        "{}  epoch={} op={} id={}",
        line(w),
        e.epoch,
        if e.op_id.is_empty() { "-" } else { &e.op_id },
        e.id
    )
}

pub fn line(w: &v1::WatchedEvent) -> String {
    let e = w.event.clone().unwrap_or_default();
    let (kind, _) = kind_and_details(e.payload.as_ref());
    let what = match e.payload.as_ref() {
        Some(Payload::SiteApplied(a)) => a.changes.join("; "),
        Some(Payload::SiteDeleted(_)) => "site deleted".into(),
        Some(Payload::RoleStateChanged(r)) => format!("{} -> {}", state(r.from), state(r.to)),
        Some(Payload::ActiveChanged(a)) => format!(
            "{} slot: {} (was {}), epoch {}, {}",
            slot_from_proto(a.slot).map(|s| s.as_str()).unwrap_or("?"),
            if a.target.is_empty() {
                "none"
            } else {
                &a.target
            },
            if a.previous.is_empty() {
                "none"
            } else {
                &a.previous
            },
            e.epoch,
            a.cause
        ),
        Some(Payload::Milestone(m)) => format!("{} in {}: {}", m.name, m.log, m.line),
        Some(Payload::HealthChanged(h)) => {
            format!("{} -> {}", health_name(h.from), health_name(h.to))
        }
        Some(Payload::Provisioning(p)) => format!("{} {}", p.step, p.detail),
        Some(Payload::ComponentConfigured(c)) => format!("upstream {}", c.upstream_server),
        Some(Payload::SyncStarted(_)) => "synchronization started".into(),
        Some(Payload::SyncFinished(s)) => format!(
            "synchronization finished: {}",
            sync_state_name(s.run.as_ref().map(|r| r.state).unwrap_or(0))
        ),
        Some(Payload::CommandRejected(c)) => c.reason.clone(),
        Some(Payload::Alert(a)) => format!("{}: {}", a.kind, a.message),
        Some(Payload::DriftDetected(d)) => d
            .fields
            .iter()
            .map(|f| format!("{} declared {:?}, live {:?}", f.path, f.declared, f.live))
            .collect::<Vec<_>>()
            .join("; "),
        None => String::new(),
    };
    format!(
        "#{:<6} {} {} {:<20} {} {}",
        w.sequence,
        time(e.time.as_ref()).unwrap_or_default(),
        e.site,
        kind,
        if e.server.is_empty() { "-" } else { &e.server },
        what
    )
}

/// `supctl events`: the stored events of one site or all, then (with `follow`) new ones.
pub(crate) async fn watch(
    ctx: &crate::Context,
    site: Option<String>,
    follow: bool,
    from: Option<u64>,
    tail: Option<u32>,
    output: crate::EventsFormat,
) -> Result<(), crate::Failure> {
    use crate::EventsFormat;
    let mut c = ctx.coordinator().await?;
    let mut stream = c
        .watch_events(v1::WatchEventsRequest {
            site: site.unwrap_or_default(),
            from_sequence: from.unwrap_or(0),
            follow,
            tail: tail.unwrap_or(0),
        })
        .await?
        .into_inner();
    while let Some(w) = stream.message().await? {
        match output {
            EventsFormat::Json => println!("{}", json(&w)),
            EventsFormat::Yaml => print!("---\n{}", crate::format::yaml(&json(&w))?),
            EventsFormat::Name => {
                println!("{}", w.event.as_ref().map(|e| e.id.as_str()).unwrap_or(""))
            }
            EventsFormat::Table => println!("{}", line(&w)),
            EventsFormat::Wide => println!("{}", wide_line(&w)),
            EventsFormat::Cloudevents => {
                if let Some(e) = &w.event {
                    println!("{}", sup_proto::cloudevent::cloud_event(e, None));
                }
            }
        }
    }
    Ok(())
}
