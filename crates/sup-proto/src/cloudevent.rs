//! The public JSON form of an event: a CloudEvents 1.0 structured-mode document
//! (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md>, JSON format), for
//! consumers that do not compile protobuf. `data` is the event in protobuf's canonical JSON
//! mapping with the `.proto` field names (64-bit integers as numbers, enums by name, every field
//! present, defaults too), so its shape is the one `proto/sup/v1/events.proto` documents.

use std::sync::LazyLock;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use crate::v1::{self, event::Payload};

/// The `Content-Type` of a structured-mode CloudEvent in JSON.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The CloudEvents `type` of each event kind (reverse-DNS style, as the specification suggests).
pub fn event_type(e: &v1::Event) -> &'static str {
    match &e.payload {
        Some(Payload::SiteApplied(_)) => "sup.site.applied",
        Some(Payload::SiteDeleted(_)) => "sup.site.deleted",
        Some(Payload::RoleStateChanged(_)) => "sup.role.state_changed",
        Some(Payload::ActiveChanged(_)) => "sup.active.changed",
        Some(Payload::Milestone(_)) => "sup.milestone.observed",
        Some(Payload::HealthChanged(_)) => "sup.health.changed",
        Some(Payload::Provisioning(_)) => "sup.provisioning.progress",
        Some(Payload::ComponentConfigured(_)) => "sup.component.configured",
        Some(Payload::SyncStarted(_)) => "sup.sync.started",
        Some(Payload::SyncFinished(_)) => "sup.sync.finished",
        Some(Payload::CommandRejected(_)) => "sup.command.rejected",
        Some(Payload::Alert(_)) => "sup.alert",
        Some(Payload::DriftDetected(_)) => "sup.drift.detected",
        None => "sup.unknown",
    }
}

static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).ok());

/// The event's fields in protobuf's canonical JSON mapping.
pub fn event_json(e: &v1::Event) -> serde_json::Value {
    let Some(descriptor) = POOL
        .as_ref()
        .and_then(|p| p.get_message_by_name("sup.v1.Event"))
    else {
        return serde_json::Value::Null;
    };
    let Ok(message) = DynamicMessage::decode(descriptor, e.encode_to_vec().as_slice()) else {
        return serde_json::Value::Null;
    };
    // Every field, defaults too (an empty `previous`, epoch 0), so consumers need not know them.
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or(serde_json::Value::Null)
}

/// The CloudEvent of an event. `id` is the event's id (its `Nats-Msg-Id`), `subject` its site,
/// `traceparent` the W3C trace context it was published in (the Distributed Tracing extension).
pub fn cloud_event(e: &v1::Event, traceparent: Option<&str>) -> serde_json::Value {
    let mut ce = serde_json::json!({
        "specversion": "1.0",
        "type": event_type(e),
        "source": format!("/sup/sites/{}", e.site),
        "id": e.id,
        "subject": e.site,
        "datacontenttype": "application/json",
        "data": event_json(e),
    });
    if let Some(t) = e.time.as_ref().and_then(|t| {
        chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
    }) {
        ce["time"] =
            serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    if let Some(tp) = traceparent.filter(|t| !t.is_empty()) {
        ce["traceparent"] = serde_json::Value::String(tp.to_string());
    }
    ce
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_change_as_a_cloud_event() {
        let e = v1::Event {
            id: "active:CEN:intranet:7".into(),
            time: Some(prost_types::Timestamp {
                seconds: 1_795_428_000,
                nanos: 5_000_000,
            }),
            site: "CEN".into(),
            server: "cen-sup02.corp.example.com".into(),
            epoch: 7,
            op_id: String::new(),
            payload: Some(Payload::ActiveChanged(v1::ActiveChanged {
                slot: v1::Slot::Intranet as i32,
                target: "cen-sup02.corp.example.com".into(),
                previous: "cen-sup01.corp.example.com".into(),
                nlb: false,
                members: vec!["cen-sup02.corp.example.com".into()],
                cause: "failover".into(),
            })),
        };
        let ce = cloud_event(
            &e,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["type"], "sup.active.changed");
        assert_eq!(ce["id"], "active:CEN:intranet:7");
        assert_eq!(ce["subject"], "CEN");
        assert_eq!(ce["source"], "/sup/sites/CEN");
        assert_eq!(ce["time"], "2026-11-23T10:00:00.005Z");
        assert_eq!(
            ce["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        let data = &ce["data"];
        assert_eq!(data["epoch"], 7, "a number, not a string: {data}");
        assert_eq!(data["server"], "cen-sup02.corp.example.com");
        assert_eq!(data["active_changed"]["slot"], "SLOT_INTRANET");
        assert_eq!(
            data["active_changed"]["target"],
            "cen-sup02.corp.example.com"
        );
        assert_eq!(
            data["active_changed"]["previous"],
            "cen-sup01.corp.example.com"
        );
        assert!(ce.get("traceparent").is_some());
        // Without a trace context, no attribute.
        assert!(cloud_event(&e, None).get("traceparent").is_none());
    }

    #[test]
    fn every_kind_has_a_type() {
        let e = v1::Event::default();
        assert_eq!(event_type(&e), "sup.unknown");
        let ce = cloud_event(
            &v1::Event {
                payload: Some(Payload::Alert(v1::Alert {
                    kind: "waiting_for_upstream".into(),
                    message: "m".into(),
                })),
                ..Default::default()
            },
            None,
        );
        assert_eq!(ce["type"], "sup.alert");
        assert_eq!(ce["data"]["alert"]["kind"], "waiting_for_upstream");
    }
}
