//! The public JSON form of the event history: every event of `SUP_EVENTS`, in its order, becomes
//! a CloudEvent on `sup.ce.<site>.<kind>` (stream `SUP_CLOUDEVENTS`) with the same message id, so
//! an automation that does not compile protobuf can follow and replay it. One durable consumer,
//! shared by every replica, hands out one event at a time, so the JSON stream keeps the protobuf
//! one's order; an event is acked only once its CloudEvent is stored, and a redelivered one is
//! dropped by the stream as a duplicate.

use std::time::Duration;

use sup_bus::async_nats::jetstream::AckKind;
use sup_bus::{Bus, setup, subjects};
use tracing::Instrument as _;

/// The durable consumer's name.
pub const BRIDGE: &str = "cloudevents-bridge";

/// Deliveries of one event (a second apart) before its CloudEvent is given up.
const GIVE_UP_AFTER: i64 = 120;

pub async fn run(bus: Bus, stop: tokio::sync::watch::Receiver<bool>) {
    let make = || {
        bus.durable_consumer_in_order(
            setup::EVENTS_STREAM,
            BRIDGE,
            vec![subjects::EVENTS_ALL.to_string()],
            Duration::from_secs(30),
        )
    };
    sup_bus::consume_durable(BRIDGE, make, stop, |msg| {
        let bus = bus.clone();
        async move {
            let event = match sup_bus::decode_event(&msg.subject, &msg.payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "an undecodable event has no CloudEvent");
                    let _ = msg.ack_with(AckKind::Term).await;
                    return;
                }
            };
            let traceparent = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("traceparent"))
                .map(|v| v.as_str().to_string());
            let span = sup_bus::trace::process_span(
                &msg,
                &event.id,
                &event.site,
                &event.server,
                event.epoch,
            );
            let published = async {
                // The event's own trace, or, for one published outside any (a state change the
                // announcer read from KV), the trace this republishing starts.
                let traceparent = traceparent.or_else(sup_bus::trace::current_traceparent);
                let ce = sup_proto::cloudevent::cloud_event(&event, traceparent.as_deref());
                bus.publish_cloud_event(&event, &ce).await
            };
            match published.instrument(span).await {
                Ok(_) => {
                    let _ = msg.ack().await;
                }
                // One event that can never be stored (larger than the server's max_payload, say)
                // must not hold back every later one: after about two minutes of attempts it is
                // given up, loudly. The protobuf event stays in SUP_EVENTS.
                Err(e) if msg.info().is_ok_and(|i| i.delivered >= GIVE_UP_AFTER) => {
                    tracing::error!(event = %event.id, error = %e, attempts = GIVE_UP_AFTER, "giving up the CloudEvent of this event; the JSON stream goes on without it");
                    let _ = msg.ack_with(AckKind::Term).await;
                }
                Err(e) => {
                    tracing::warn!(event = %event.id, error = %e, "publishing a CloudEvent; retrying");
                    let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
            }
        }
    })
    .await;
}
