//! The public JSON form of the event history: every event of `SUP_EVENTS`, in its order, becomes
//! a CloudEvent on `sup.ce.<site>.<kind>` (stream `SUP_CLOUDEVENTS`) with the same message id, so
//! an automation that does not compile protobuf can follow and replay it. One durable consumer,
//! shared by every replica, hands out one event at a time, so the JSON stream keeps the protobuf
//! one's order; an event is acked only once its CloudEvent is stored, and a redelivered one is
//! dropped by the stream as a duplicate.

use std::time::Duration;

use sup_bus::{Bus, Delivery, Durable, Verdict};
use sup_proto::v1;
use tracing::Instrument as _;

/// The durable consumer's name.
pub const BRIDGE: &str = "cloudevents-bridge";

/// Deliveries of one event (a second apart) before its CloudEvent is given up.
const GIVE_UP_AFTER: u64 = 120;

pub async fn run(bus: Bus, stop: tokio::sync::watch::Receiver<bool>) {
    let durable = Durable::all_events(BRIDGE).one_at_a_time();
    bus.consume(durable, stop, |d: Delivery<v1::Event>| {
        let bus = bus.clone();
        async move {
            let event = d.message;
            let published = async {
                // The event's own trace, or, for one published outside any (a state change the
                // announcer read from KV), the trace this republishing starts.
                let traceparent = d.traceparent.or_else(sup_bus::trace::current_traceparent);
                let ce = sup_proto::cloudevent::cloud_event(&event, traceparent.as_deref());
                bus.publish_cloud_event(&event, &ce).await
            };
            match published.instrument(d.span).await {
                Ok(_) => Verdict::Done,
                // One event that can never be stored (larger than the server's max_payload, say)
                // must not hold back every later one: after about two minutes of attempts it is
                // given up, loudly. The protobuf event stays in SUP_EVENTS.
                Err(e) if d.attempt >= GIVE_UP_AFTER => {
                    tracing::error!(event = %event.id, error = %e, attempts = GIVE_UP_AFTER, "giving up the CloudEvent of this event; the JSON stream goes on without it");
                    Verdict::GiveUp
                }
                Err(e) => {
                    tracing::warn!(event = %event.id, error = %e, "publishing a CloudEvent; retrying");
                    Verdict::RetryAfter(Duration::from_secs(1))
                }
            }
        }
    })
    .await;
}
