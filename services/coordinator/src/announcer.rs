//! Events derived from KV, in revision order. The slot and role records are the truth; every
//! replica watches the two buckets from the last announced revision and publishes
//! `ActiveChanged` and `RoleStateChanged` with ids named by the revision. Each replica publishes
//! a revision only once every earlier one is acknowledged: slot changes one by one, role
//! changes as they come, in atomic batches of what the watch has ready (stored whole, in order,
//! or not at all), so the stream holds the events in revision order whichever replica published
//! first, and a crash between a KV write and its event only delays the event. A batch that holds
//! an event another replica already stored is refused whole and published one by one.

use std::time::Duration;

use futures::{FutureExt as _, StreamExt};
use sup_bus::{Bucket, Change};
use sup_proto::convert;
use sup_proto::prost::Message;
use sup_proto::v1::{self, event::Payload};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::coordinator::Coordinator;
use crate::error::ApiError;
use crate::store::Announced;

pub async fn run(c: Coordinator, stop: watch::Receiver<bool>) {
    tokio::join!(
        follow(c.clone(), Announced::Active, stop.clone()),
        follow(c, Announced::Roles, stop)
    );
}

fn bucket(c: &Coordinator, which: Announced) -> &Bucket {
    match which {
        Announced::Active => c.store.bus.active(),
        Announced::Roles => c.store.bus.roles(),
    }
}

async fn follow(c: Coordinator, which: Announced, mut stop: watch::Receiver<bool>) {
    loop {
        // From the leader: a follower (or a node just back from a crash) may hold an older marker,
        // and a watch from there would announce again entries the stream has long had.
        let from = match c.store.marker_from_leader(which).await {
            Ok(m) => m + 1,
            Err(e) => {
                tracing::warn!(error = %e, which = which.as_str(), "reading the announce marker");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        let mut entries = match bucket(&c, which).watch_from_revision(from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, which = which.as_str(), "watching for announcements");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        // The marker moves at most every 250 ms while entries keep coming, and as soon as the
        // watch is caught up: after a crash a few entries are announced again, and the stream
        // drops them as duplicates.
        tracing::debug!(which = which.as_str(), from, "announcement watch started");
        c.store.announced_to(which, from - 1);
        let mut pending: Option<u64> = None;
        let mut flushed = std::time::Instant::now();
        // A watch whose stream lost its leader can go silent for good (its consumer lived on the
        // dead node): when nothing arrives for a while but the bucket has moved past what was
        // delivered, start again from the marker.
        let mut delivered = from.saturating_sub(1);
        let mut heard = std::time::Instant::now();
        let mut check = tokio::time::interval(STALL_CHECK);
        loop {
            enum Step<T> {
                Next(Option<T>),
                Quiet,
                Check,
                Stop,
            }
            let step = tokio::select! {
                e = entries.next() => Step::Next(e),
                // Caught up: record it at once (activations wait for the marker to pass them).
                _ = tokio::time::sleep(Duration::from_millis(10)), if pending.is_some() => Step::Quiet,
                _ = check.tick() => Step::Check,
                _ = stop.wait_for(|s| *s) => Step::Stop,
            };
            let entry = match step {
                Step::Stop => {
                    flush(&c, which, &mut pending).await;
                    return;
                }
                Step::Check => {
                    if heard.elapsed() >= STALL_CHECK && stalled(&c, which, delivered).await {
                        tracing::warn!(
                            which = which.as_str(),
                            delivered,
                            "announcement watch stalled; watching again"
                        );
                        break;
                    }
                    continue;
                }
                Step::Quiet => {
                    flush(&c, which, &mut pending).await;
                    flushed = std::time::Instant::now();
                    continue;
                }
                Step::Next(Some(Ok(e))) => e,
                Step::Next(Some(Err(e))) => {
                    tracing::warn!(error = %e, which = which.as_str(), "announcement watch");
                    break;
                }
                Step::Next(None) => break,
            };
            // Role changes the watch already holds join this one in a batch.
            let mut batch = vec![entry];
            let mut ended = None;
            while which == Announced::Roles && batch.len() < ROLE_BATCH {
                match entries.next().now_or_never() {
                    Some(Some(Ok(e))) => batch.push(e),
                    Some(other) => {
                        ended = Some(other);
                        break;
                    }
                    None => break,
                }
            }
            for entry in &batch {
                let revision = entry.revision;
                if revision > delivered + 1 && delivered > 0 {
                    // Revisions are missing when a stream leader assigned sequences and lost
                    // them with its node, or when the history limit purged them while this
                    // watch was behind; the latter is harmless if another replica announced
                    // them (writes stay within half the history of the announcements), which
                    // the marker tells.
                    let covered = c
                        .store
                        .marker_from_leader(which)
                        .await
                        .is_ok_and(|m| m + 1 >= revision);
                    if covered {
                        tracing::debug!(
                            which = which.as_str(),
                            after = delivered,
                            revision,
                            "watch behind the other announcers; revisions it skipped were announced"
                        );
                    } else {
                        tracing::warn!(
                            which = which.as_str(),
                            after = delivered,
                            revision,
                            "revisions skipped by the announcement watch"
                        );
                    }
                }
                delivered = revision;
            }
            let revision = delivered;
            heard = std::time::Instant::now();
            // A failure (a stream electing its leader) is retried in place: the watch outlives
            // the election, while building it again costs requests to a cluster that is busy.
            // After ANNOUNCE_RETRIES the watch starts again from the marker.
            let mut attempt = 0;
            let announced = loop {
                let result = match which {
                    Announced::Active => announce_slot(&c, &batch[0]).await,
                    Announced::Roles => announce_roles(&c, &batch).await,
                };
                let Err(e) = result else { break true };
                attempt += 1;
                tracing::warn!(error = %e, which = which.as_str(), revision, attempt, "announcing; will retry");
                if attempt >= ANNOUNCE_RETRIES {
                    break false;
                }
                let pause = Duration::from_millis(100 << attempt.min(4));
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(pause) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                if stopping {
                    flush(&c, which, &mut pending).await;
                    return;
                }
            };
            if !announced {
                break;
            }
            c.store.announced_to(which, revision);
            pending = Some(revision);
            if flushed.elapsed() >= Duration::from_millis(250) {
                flush(&c, which, &mut pending).await;
                flushed = std::time::Instant::now();
            }
            match ended {
                Some(Some(Err(e))) => {
                    tracing::warn!(error = %e, which = which.as_str(), "announcement watch");
                    break;
                }
                Some(_) => break,
                None => {}
            }
        }
        flush(&c, which, &mut pending).await;
    }
}

/// The most role changes announced in one atomic batch.
const ROLE_BATCH: usize = 256;

/// The fewest role changes worth an atomic batch. A batch's commit costs the stream a fixed
/// few milliseconds (measured with nats-server 2.15: about 3.5 ms for 2 to 64 messages on one
/// node, where a plain publish takes a quarter of a millisecond), so fewer changes go one by one.
const ATOMIC_FROM: usize = 16;

/// Attempts at announcing one entry before its watch is built again (about 12 s in all).
const ANNOUNCE_RETRIES: u32 = 10;

/// How long a watch may be silent before the bucket is asked whether it missed something.
const STALL_CHECK: Duration = Duration::from_secs(2);

/// The bucket holds revisions past `delivered` (asked of the stream leader: the bucket's own
/// `status()` answers from what it learnt when it was opened; no answer, as during an election,
/// is not a stall).
async fn stalled(c: &Coordinator, which: Announced, delivered: u64) -> bool {
    bucket(c, which)
        .last_revision()
        .await
        .is_some_and(|last| last > delivered)
}

async fn flush(c: &Coordinator, which: Announced, pending: &mut Option<u64>) {
    if let Some(revision) = pending.take()
        && let Err(e) = c.store.advance_marker(which, revision).await
    {
        tracing::warn!(error = %e, which = which.as_str(), "moving the announce marker");
    }
}

async fn announce_slot(c: &Coordinator, entry: &Change) -> Result<(), ApiError> {
    if entry.deleted {
        return Ok(());
    }
    let Ok(a) = v1::ActiveSlot::decode(entry.value.clone()) else {
        tracing::error!(key = %entry.key, "undecodable slot record");
        return Ok(());
    };
    let Some(slot) = convert::slot_from_proto(a.slot) else {
        return Ok(());
    };
    let epoch = entry.revision;
    c.project_slot(&a.site, slot, &a, epoch).await?;
    let e = v1::Event {
        id: format!("active:{}:{}:{epoch}", a.site, slot.as_str()),
        time: a
            .since
            .or_else(|| Some(std::time::SystemTime::now().into())),
        site: a.site.clone(),
        server: a.target.clone(),
        epoch,
        op_id: a.op_id.clone(),
        payload: Some(Payload::ActiveChanged(v1::ActiveChanged {
            slot: a.slot,
            target: a.target.clone(),
            previous: a.previous.clone(),
            nlb: a.nlb,
            members: a.members.clone(),
            cause: a.cause.clone(),
        })),
    };
    c.store.bus.publish_event(&e).await?;
    Ok(())
}

/// Announces a run of role record changes in revision order: one atomic batch when there are
/// enough of them to be worth one, else (or when the batch is refused) one by one.
async fn announce_roles(c: &Coordinator, entries: &[Change]) -> Result<(), ApiError> {
    let mut events: Vec<(u64, v1::Event, tracing::Span)> = entries
        .iter()
        .filter_map(|entry| role_event(entry).map(|(e, span)| (entry.revision, e, span)))
        .collect();
    let announced = events.len() as u64;
    if events.len() < ATOMIC_FROM || !stored_as_batch(c, &mut events).await? {
        for (_, e, span) in &events {
            c.store
                .bus
                .publish_event(e)
                .instrument(span.clone())
                .await?;
        }
    }
    c.metrics.role_transitions.inc_by(announced);
    Ok(())
}

/// Publishes the events as one atomic batch; `false` when they are to go one by one instead
/// (the stream takes no batches, or holds one of them). When another replica is ahead, what
/// the shared marker passed is in the stream already: those are dropped from `events` and the
/// rest tried once more as a batch.
async fn stored_as_batch(
    c: &Coordinator,
    events: &mut Vec<(u64, v1::Event, tracing::Span)>,
) -> Result<bool, ApiError> {
    let mut outcome = publish_roles(c, events).await?;
    if outcome == sup_bus::BatchOutcome::HasDuplicate
        && let Ok(marker) = c.store.marker_from_leader(Announced::Roles).await
    {
        let before = events.len();
        events.retain(|(revision, ..)| *revision > marker);
        if events.len() < before {
            outcome = publish_roles(c, events).await?;
        }
    }
    Ok(matches!(outcome, sup_bus::BatchOutcome::Stored { .. }))
}

/// Publishes the role events as one atomic batch.
async fn publish_roles(
    c: &Coordinator,
    events: &[(u64, v1::Event, tracing::Span)],
) -> Result<sup_bus::BatchOutcome, ApiError> {
    let batch = events
        .iter()
        .map(|(_, e, span)| sup_bus::Outgoing {
            subject: sup_bus::subjects::event(&e.site, sup_bus::subjects::event_kind(e)),
            msg_id: e.id.clone(),
            payload: e.encode_to_vec().into(),
            span: Some(span.clone()),
        })
        .collect();
    Ok(c.store.bus.publish_atomic(batch).await?)
}

/// The event a role record change announces, in the span of its publish (which joins the trace
/// of the operation that made the change); `None` for a change that moves no state.
fn role_event(entry: &Change) -> Option<(v1::Event, tracing::Span)> {
    if entry.deleted {
        return None;
    }
    let Ok(r) = v1::RoleStatus::decode(entry.value.clone()) else {
        tracing::error!(key = %entry.key, "undecodable role record");
        return None;
    };
    if r.previous == r.state {
        return None;
    }
    tracing::info!(
        site = %r.site,
        server = %r.server,
        from = convert::role_state_from_proto(r.previous).map(|s| s.as_str()).unwrap_or("none"),
        to = convert::role_state_from_proto(r.state).map(|s| s.as_str()).unwrap_or("none"),
        "role state changed"
    );
    let e = v1::Event {
        id: format!("role:{}:{}:{}", r.site, r.server, entry.revision),
        time: r
            .updated
            .or_else(|| Some(std::time::SystemTime::now().into())),
        site: r.site.clone(),
        server: r.server.clone(),
        epoch: r.intranet_epoch.max(r.internet_epoch),
        op_id: String::new(),
        payload: Some(Payload::RoleStateChanged(v1::RoleStateChanged {
            from: r.previous,
            to: r.state,
            reason: r.reason.clone(),
        })),
    };
    let span = tracing::info_span!(
        "announce",
        otel.name = "role_state_changed publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "publish",
        messaging.destination.name = %sup_bus::subjects::event(&r.site, sup_bus::subjects::kind::ROLE_STATE),
        sup.site = %r.site,
        sup.server = %r.server,
        sup.epoch = e.epoch,
    );
    if !r.trace_context.is_empty() {
        sup_bus::trace::follow_traceparent(&r.trace_context, &span);
    }
    Some((e, span))
}
