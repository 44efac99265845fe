//! Durable consumption of events and commands: a service names what it wants ([`Durable`]) and
//! hands over a typed handler; this module pulls, decodes, opens each message's process span
//! and turns the handler's [`Verdict`] into the JetStream acknowledgement. An undecodable
//! message is terminated here, so no handler sees bytes.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use sup_proto::prost::Message as _;
use sup_proto::v1::{Command, Event};

use crate::{Bus, BusError, setup, subjects};

/// What a handler decided about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handled: acknowledged, never delivered again.
    Done,
    /// Not handled yet: delivered again after the delay.
    RetryAfter(Duration),
    /// Never to be handled: terminated, never delivered again.
    GiveUp,
}

/// One decoded delivery.
pub struct Delivery<T> {
    pub message: T,
    /// 1 for the first delivery, more for a redelivery.
    pub attempt: u64,
    /// The W3C trace context the publisher attached, if any.
    pub traceparent: Option<String>,
    /// The span to process the message in: a child of the publisher's trace.
    pub span: tracing::Span,
}

/// A message type a durable consumer carries.
pub trait Consumable: Sized {
    fn decode_from(subject: &str, payload: &[u8]) -> Result<Self, BusError>;
    /// (id, site, server, epoch) for the process span.
    fn span_fields(&self) -> (&str, &str, &str, u64);
}

impl Consumable for Event {
    fn decode_from(subject: &str, payload: &[u8]) -> Result<Self, BusError> {
        crate::decode_event(subject, payload)
    }
    fn span_fields(&self) -> (&str, &str, &str, u64) {
        (&self.id, &self.site, &self.server, self.epoch)
    }
}

impl Consumable for Command {
    fn decode_from(subject: &str, payload: &[u8]) -> Result<Self, BusError> {
        Command::decode(payload).map_err(|source| BusError::Decode {
            subject: subject.to_string(),
            source,
        })
    }
    fn span_fields(&self) -> (&str, &str, &str, u64) {
        (&self.id, &self.site, &self.server, self.epoch)
    }
}

/// A durable pull consumer, shared by every replica of a service, with explicit acks.
#[derive(Debug, Clone)]
pub struct Durable {
    stream: &'static str,
    name: String,
    filters: Vec<String>,
    ack_wait: Duration,
    max_deliver: i64,
    one_at_a_time: bool,
    lanes: usize,
}

/// Deliveries queued in one lane beyond the one being handled: few, since a queued delivery's
/// ack wait is already running.
const LANE_DEPTH: usize = 8;

/// The most deliveries a lane hands its batch handler at once, and so the most it queues: a
/// batch is handled in about the time one delivery is, so its ack waits run no longer.
const BATCH_MAX: usize = 32;

impl Durable {
    /// Events of the given kinds (see [`subjects::kind`]), from every site.
    pub fn events(name: &str, kinds: &[&str]) -> Self {
        Self::new(
            setup::EVENTS_STREAM,
            name,
            kinds.iter().map(|k| subjects::events_of_kind(k)).collect(),
        )
    }

    /// Every event.
    pub fn all_events(name: &str) -> Self {
        Self::new(
            setup::EVENTS_STREAM,
            name,
            vec![subjects::EVENTS_ALL.to_string()],
        )
    }

    /// The command queue of `service` (consumer `<service>-commands`).
    pub fn commands(service: &str) -> Self {
        Self::new(
            setup::COMMANDS_STREAM,
            &format!("{service}-commands"),
            vec![subjects::commands_for(service)],
        )
    }

    fn new(stream: &'static str, name: &str, filters: Vec<String>) -> Self {
        Self {
            stream,
            name: name.to_string(),
            filters,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            one_at_a_time: false,
            lanes: 1,
        }
    }

    /// How long a delivery may go unacknowledged before it is delivered again.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// At most this many deliveries of one message (unlimited by default).
    pub fn max_deliver(mut self, max_deliver: i64) -> Self {
        self.max_deliver = max_deliver;
        self
    }

    /// One message out at a time whichever replica pulls: the handler sees the stream's order.
    pub fn one_at_a_time(mut self) -> Self {
        self.one_at_a_time = true;
        self
    }

    /// Handles up to `lanes` deliveries at once: each site's deliveries go to the same lane and
    /// are handled there one after another, in the order they came, so a site sees its events in
    /// order while other sites' go on beside them. One lane (the default) handles one delivery at
    /// a time.
    pub fn in_lanes(mut self, lanes: usize) -> Self {
        self.lanes = lanes.max(1);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    async fn make(
        &self,
        bus: &Bus,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, BusError> {
        let err = |message: String| BusError::Setup {
            what: format!("consumer {} on {}", self.name, self.stream),
            message,
        };
        let stream = bus
            .js
            .get_stream(self.stream)
            .await
            .map_err(|e| err(e.to_string()))?;
        let (filter_subject, filter_subjects) = match self.filters.as_slice() {
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        stream
            .get_or_create_consumer(
                &self.name,
                consumer::pull::Config {
                    durable_name: Some(self.name.clone()),
                    filter_subject,
                    filter_subjects,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_deliver: self.max_deliver,
                    max_ack_pending: if self.one_at_a_time { 1 } else { 0 },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err(e.to_string()))
    }
}

impl Bus {
    /// How many messages wait for `durable` (not yet delivered), and how many are delivered but
    /// not yet acknowledged.
    pub async fn backlog(&self, durable: &Durable) -> Result<(u64, u64), BusError> {
        let err = |message: String| BusError::Consume {
            what: format!("the backlog of {}", durable.name),
            message,
        };
        let stream = self
            .js
            .get_stream(durable.stream)
            .await
            .map_err(|e| err(e.to_string()))?;
        let info = stream
            .consumer_info(&durable.name)
            .await
            .map_err(|e| err(e.to_string()))?;
        Ok((info.num_pending, info.num_ack_pending as u64))
    }

    /// Pulls from `durable` until `stop` turns true, making the consumer again after any error
    /// (a restarted server, a lost connection). Each message is decoded and handed to `handle`
    /// in its process span, in the lane of its site when the durable has lanes; what the handler
    /// decides becomes the acknowledgement. A message whose verdict is lost with the process is
    /// delivered again after the ack wait.
    pub async fn consume<T, Handle, Fut>(
        &self,
        durable: Durable,
        stop: tokio::sync::watch::Receiver<bool>,
        handle: Handle,
    ) where
        T: Consumable,
        Handle: Fn(Delivery<T>) -> Fut,
        Fut: Future<Output = Verdict>,
    {
        let lanes = durable.lanes;
        if lanes <= 1 {
            let what = durable.name.clone();
            self.pull(&durable, stop, |m, message| {
                deliver(&what, m, message, &handle)
            })
            .await;
            return;
        }
        let what = durable.name.as_str();
        self.in_lanes(&durable, stop.clone(), LANE_DEPTH, |mut lane| {
            let (handle, stop) = (&handle, stop.clone());
            async move {
                while let Some((m, message)) = lane.recv().await {
                    if *stop.borrow() {
                        give_back(&m).await;
                        continue;
                    }
                    let verdict = handle(delivery(&m, message)).await;
                    acknowledge(what, &m, verdict).await;
                }
            }
        })
        .await;
    }

    /// Like [`consume`](Self::consume) with lanes, but each lane hands its handler everything
    /// it has queued at once (up to 32 deliveries, in the order they came), so that
    /// the handler can do once what several of them need: one write of a record several events
    /// change, say. The handler answers one verdict per delivery, in the same order; a delivery
    /// it gives no verdict is delivered again.
    pub async fn consume_batches<T, Handle, Fut>(
        &self,
        durable: Durable,
        stop: tokio::sync::watch::Receiver<bool>,
        handle: Handle,
    ) where
        T: Consumable,
        Handle: Fn(Vec<Delivery<T>>) -> Fut,
        Fut: Future<Output = Vec<Verdict>>,
    {
        let what = durable.name.as_str();
        self.in_lanes(&durable, stop.clone(), BATCH_MAX, |mut lane| {
            let (handle, stop) = (&handle, stop.clone());
            async move {
                let mut batch = Vec::with_capacity(BATCH_MAX);
                while lane.recv_many(&mut batch, BATCH_MAX).await > 0 {
                    if *stop.borrow() {
                        for (m, _) in batch.drain(..) {
                            give_back(&m).await;
                        }
                        continue;
                    }
                    let (messages, deliveries): (Vec<_>, Vec<_>) = batch
                        .drain(..)
                        .map(|(m, message)| {
                            let d = delivery(&m, message);
                            (m, d)
                        })
                        .unzip();
                    let verdicts = handle(deliveries).await;
                    let unanswered = Verdict::RetryAfter(Duration::from_secs(1));
                    for (i, m) in messages.iter().enumerate() {
                        acknowledge(what, m, verdicts.get(i).copied().unwrap_or(unanswered)).await;
                    }
                }
            }
        })
        .await;
    }

    /// Pulls from `durable` into lanes of `depth` queued deliveries each, a site's always into
    /// the same lane, and runs `work` on each lane's receiving end until the pull stops.
    async fn in_lanes<T, Work, Fut>(
        &self,
        durable: &Durable,
        stop: tokio::sync::watch::Receiver<bool>,
        depth: usize,
        work: Work,
    ) where
        T: Consumable,
        Work: Fn(tokio::sync::mpsc::Receiver<(jetstream::Message, T)>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let lanes = durable.lanes;
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes)
            .map(|_| tokio::sync::mpsc::channel::<(jetstream::Message, T)>(depth))
            .unzip();
        let workers = receivers.into_iter().map(work);
        let pump = async {
            self.pull(durable, stop, |m, message: T| {
                let lane = &senders[lane_of(message.span_fields().1, lanes)];
                async move {
                    // A lane closes only when the workers are gone, which is after this.
                    let _ = lane.send((m, message)).await;
                }
            })
            .await;
            drop(senders);
        };
        tokio::join!(pump, futures::future::join_all(workers));
    }

    /// The pull loop: every decodable message to `take`, until `stop`.
    async fn pull<T, Take, Fut>(
        &self,
        durable: &Durable,
        mut stop: tokio::sync::watch::Receiver<bool>,
        take: Take,
    ) where
        T: Consumable,
        Take: Fn(jetstream::Message, T) -> Fut,
        Fut: Future<Output = ()>,
    {
        let what = durable.name.clone();
        loop {
            let messages = match durable.make(self).await {
                Ok(c) => c.messages().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(consumer = %what, error = %e, "pulling; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match next {
                    Some(Ok(m)) => match T::decode_from(&m.subject, &m.payload) {
                        Ok(message) => take(m, message).await,
                        Err(e) => {
                            // Undecodable forever: terminate it rather than block the queue.
                            tracing::error!(consumer = %what, error = %e, "dropping an undecodable message");
                            let _ = m.ack_with(AckKind::Term).await;
                        }
                    },
                    Some(Err(e)) => {
                        tracing::warn!(consumer = %what, error = %e, "delivery");
                        break;
                    }
                    None => break,
                }
            }
        }
    }
}

/// The lane of a site: the same for every delivery of that site.
fn lane_of(site: &str, lanes: usize) -> usize {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    site.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

async fn deliver<T, Handle, Fut>(what: &str, m: jetstream::Message, message: T, handle: &Handle)
where
    T: Consumable,
    Handle: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = Verdict>,
{
    let verdict = handle(delivery(&m, message)).await;
    acknowledge(what, &m, verdict).await;
}

/// A decoded message with its attempt, trace context and process span.
fn delivery<T: Consumable>(m: &jetstream::Message, message: T) -> Delivery<T> {
    let (id, site, server, epoch) = message.span_fields();
    let span = crate::trace::process_span(m, id, site, server, epoch);
    let attempt = m.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1);
    let traceparent = m
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_string());
    Delivery {
        message,
        attempt,
        traceparent,
        span,
    }
}

/// Stopping: a delivery waiting in a lane goes back at once, for another replica (or this
/// one's successor) to take.
async fn give_back(m: &jetstream::Message) {
    let _ = m.ack_with(AckKind::Nak(None)).await;
}

async fn acknowledge(what: &str, m: &jetstream::Message, verdict: Verdict) {
    let acked = match verdict {
        Verdict::Done => m.ack().await,
        Verdict::RetryAfter(delay) => m.ack_with(AckKind::Nak(Some(delay))).await,
        Verdict::GiveUp => m.ack_with(AckKind::Term).await,
    };
    if let Err(e) = acked {
        // Unacknowledged, the message comes back after the ack wait: handled twice, not lost.
        tracing::warn!(consumer = %what, error = %e, ?verdict, "acknowledging a message");
    }
}
