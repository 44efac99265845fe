//! NATS for the SUP control plane: the only crate that knows subject names, stream and bucket
//! definitions and header conventions. Services get typed publish and consume of `sup.v1` events
//! and commands, de-duplication by `Nats-Msg-Id`, durable pull consumers, compare-and-set on KV,
//! and W3C trace context in headers.
//!
//! - [`subjects`]: subject and key names, and how host names become subject tokens.
//! - [`setup`]: streams and buckets, created idempotently at start.
//! - [`Bus`]: a connected handle with typed operations.
//! - [`trace`]: `traceparent` in NATS headers.

mod atomic;
pub mod bucket;
pub mod consume;
pub mod records;
pub mod setup;
mod stores;
pub mod subjects;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sup_proto::prost::Message as _;
use sup_proto::v1::{Command, Event};

pub use atomic::{BatchOutcome, MAX_ATOMIC_BATCH};
pub use bucket::{Bucket, Change};
pub use consume::{Delivery, Durable, Verdict};
pub use setup::{ACTIVE_HISTORY, BusConfig, MAX_HEARTBEAT, ROLES_HISTORY};

/// Errors from the bus, classified so callers can decide to retry.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("setting up {what}: {message}")]
    Setup { what: String, message: String },
    #[error("publishing to {subject}: {message}")]
    Publish { subject: String, message: String },
    #[error("key-value {op} on {bucket}/{key}: {message}")]
    Kv {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("consuming {what}: {message}")]
    Consume { what: String, message: String },
    #[error("undecodable message on {subject}: {source}")]
    Decode {
        subject: String,
        #[source]
        source: sup_proto::prost::DecodeError,
    },
}

/// One message of a batch: subject, `Nats-Msg-Id`, payload, and the span whose trace context it
/// carries (the current span when `None`).
pub struct Outgoing {
    pub subject: String,
    pub msg_id: String,
    pub payload: Bytes,
    pub span: Option<tracing::Span>,
}

/// A published message's place in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// The stream already had a message with this id inside its duplicate window.
    pub duplicate: bool,
}

/// One event of a watch: its stream sequence, how many matching events are still stored after
/// it, and the event.
#[derive(Debug, Clone)]
pub struct WatchedEvent {
    pub sequence: u64,
    pub pending: u64,
    pub event: Event,
}

/// The outcome of a compare-and-set on a KV key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// Written; the new revision.
    Won(u64),
    /// Someone else wrote first (the key exists, or its revision moved on).
    Lost,
}

/// What a service's connection to NATS has been through, for its `/metrics`: whether it is
/// connected now, and the errors the server and the client reported.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    connected: prometheus_client::metrics::gauge::Gauge,
    jetstream: prometheus_client::metrics::gauge::Gauge,
    errors: prometheus_client::metrics::family::Family<
        Vec<(&'static str, &'static str)>,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl ConnectionMetrics {
    fn record(&self, event: &async_nats::Event) {
        let kind = match event {
            async_nats::Event::Connected => {
                self.connected.set(1);
                return;
            }
            async_nats::Event::Disconnected => {
                self.connected.set(0);
                return;
            }
            async_nats::Event::ServerError(_) => "server",
            async_nats::Event::ClientError(_) => "client",
            async_nats::Event::SlowConsumer(_) => "slow_consumer",
            _ => return,
        };
        self.errors.get_or_create(&vec![("kind", kind)]).inc();
    }

    /// Asks JetStream for the account's information every [`JETSTREAM_PROBE_EVERY`]: an answer in
    /// time means the service can use its streams and buckets (a cluster without a meta leader,
    /// or without JetStream, does not answer). Ends when the last clone of the bus is dropped.
    fn probe_jetstream(&self, js: jetstream::Context) -> AbortOnDrop {
        let gauge = self.jetstream.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                let answered = tokio::time::timeout(JETSTREAM_PROBE_EVERY, js.query_account())
                    .await
                    .is_ok_and(|r| r.is_ok());
                gauge.set(i64::from(answered));
                tokio::time::sleep(JETSTREAM_PROBE_EVERY).await;
            }
        }))
    }

    /// Registers `sup_nats_connected`, `sup_jetstream_available` and `sup_nats_errors`, every
    /// kind shown from the start.
    fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        for kind in ["server", "client", "slow_consumer"] {
            let _ = self.errors.get_or_create(&vec![("kind", kind)]);
        }
        registry.register(
            "sup_nats_connected",
            "1 while the service is connected to a NATS server, else 0",
            self.connected.clone(),
        );
        registry.register(
            "sup_jetstream_available",
            "1 while JetStream answers the service's account query in time, else 0",
            self.jetstream.clone(),
        );
        registry.register(
            "sup_nats_errors",
            "Errors NATS reported, by kind: server (e.g. a permission refused), client, slow_consumer",
            self.errors.clone(),
        );
    }
}

impl Bus {
    /// Registers the connection's metrics (`sup_nats_connected`, `sup_jetstream_available`,
    /// `sup_nats_errors`) and starts probing JetStream for them; once per bus.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.connection.register(registry);
        self.jetstream_probe
            .get_or_init(|| self.connection.probe_jetstream(self.js.clone()));
    }
}

/// How often (and how long at most) each service asks JetStream whether it answers.
const JETSTREAM_PROBE_EVERY: Duration = Duration::from_secs(10);

/// A task stopped when its handle's last owner is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connected bus: client, JetStream context and the project's buckets.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    connection: ConnectionMetrics,
    /// Started by [`Bus::register_metrics`], so that only a process that serves the metrics
    /// probes JetStream.
    jetstream_probe: Arc<std::sync::OnceLock<AbortOnDrop>>,
    buckets: setup::Buckets,
}

impl Bus {
    /// Connects and makes sure every stream and bucket exists (idempotent).
    pub async fn connect(config: &BusConfig) -> Result<Self, BusError> {
        // A comma-separated list names the nodes of a cluster.
        let mut servers = Vec::new();
        for u in config
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            servers.push(
                u.parse::<async_nats::ServerAddr>()
                    .map_err(|e| BusError::Setup {
                        what: format!("NATS URL {u:?}"),
                        message: e.to_string(),
                    })?,
            );
        }
        let options = config
            .apply_security(async_nats::ConnectOptions::new())
            .await?;
        let connection = ConnectionMetrics::default();
        let recorder = connection.clone();
        let client = options
            .name(config.client_name.as_str())
            // Authorization and TLS errors are otherwise silent retries: say what the server said.
            .event_callback(move |event| {
                recorder.record(&event);
                async move {
                    match event {
                        async_nats::Event::ServerError(e) => {
                            tracing::error!(error = %e, "NATS server error")
                        }
                        async_nats::Event::ClientError(e) => {
                            tracing::warn!(error = %e, "NATS client error")
                        }
                        async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                        async_nats::Event::Connected => tracing::info!("NATS connected"),
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            // A server cut off by a partition drops packets rather than closing the connection;
            // unanswered pings (two outstanding) are how the client learns to move to another
            // server, so ping often enough to notice within seconds, not minutes.
            .ping_interval(Duration::from_secs(3))
            .connect(servers)
            .await
            .map_err(|source| BusError::Connect {
                url: config.url.clone(),
                source,
            })?;
        let js = jetstream::new(client.clone());
        // A cluster that is still electing its meta leader refuses stream changes for a moment;
        // keep trying for a while before giving up.
        let mut attempt = 0;
        let buckets = loop {
            match setup::ensure(&js, config).await {
                Ok(b) => break b,
                Err(e) if attempt < 60 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "setting up streams and buckets; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Self {
            client,
            js,
            connection,
            jetstream_probe: Arc::default(),
            buckets,
        })
    }

    /// Sends what the connection still buffers before the process exits, waiting at most
    /// [`CLOSE_FLUSH`]: with every server down a flush would wait for a reconnection that may
    /// never come, and a service asked to stop must stop.
    pub async fn close(&self) {
        if tokio::time::timeout(CLOSE_FLUSH, self.client.flush())
            .await
            .is_err()
        {
            tracing::warn!("no NATS server took the last buffered messages before exit");
        }
    }

    /// Publishes an event to `sup.evt.<site>.<kind>` and waits for the stream's ack. The event id
    /// is the `Nats-Msg-Id`, so publishing the same event again inside the duplicate window is a
    /// no-op that reports `duplicate`.
    pub async fn publish_event(&self, event: &Event) -> Result<Published, BusError> {
        let subject = subjects::event(&event.site, subjects::event_kind(event));
        self.publish_msg(subject, &event.id, event.encode_to_vec().into())
            .await
    }

    /// Publishes a command to the `SUP_COMMANDS` work queue on `sup.cmd.<service>.<site>`.
    pub async fn publish_command(
        &self,
        service: &str,
        command: &Command,
    ) -> Result<Published, BusError> {
        let subject = subjects::command(service, &command.site);
        self.publish_msg(subject, &command.id, command.encode_to_vec().into())
            .await
    }

    /// Publishes an event's CloudEvent (its public JSON form) on `sup.ce.<site>.<kind>`, with the
    /// event's id as its message id and the current trace context.
    pub async fn publish_cloud_event(
        &self,
        event: &Event,
        cloud_event: &serde_json::Value,
    ) -> Result<Published, BusError> {
        let subject = subjects::cloud_event(&event.site, subjects::event_kind(event));
        let body = serde_json::to_vec(cloud_event).map_err(|e| BusError::Publish {
            subject: subject.clone(),
            message: e.to_string(),
        })?;
        self.publish_with(
            subject,
            &event.id,
            body.into(),
            &[("Content-Type", sup_proto::cloudevent::CONTENT_TYPE)],
        )
        .await
    }

    /// Publishes raw bytes with a message id and the current trace context.
    pub async fn publish_msg(
        &self,
        subject: String,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Published, BusError> {
        self.publish_with(subject, msg_id, payload, &[]).await
    }

    /// As [`Bus::publish_msg`], with more headers.
    async fn publish_with(
        &self,
        subject: String,
        msg_id: &str,
        payload: Bytes,
        extra: &[(&str, &str)],
    ) -> Result<Published, BusError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        for (name, value) in extra {
            headers.insert(*name, *value);
        }
        trace::inject(&mut headers);
        let err = |message: String| BusError::Publish {
            subject: subject.clone(),
            message,
        };
        let mut attempt = 0;
        loop {
            let result = match self
                .js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
            {
                Ok(ack) => ack.await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(ack) => {
                    return Ok(Published {
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                // JetStream 10158, "duplicate message id is in process": another publisher's
                // copy of this message (a second replica announcing the same revision) is
                // being stored. Once it settles, publishing again answers `duplicate`, or stores
                // this copy if the other one failed.
                Err(e) if e.contains("10158") && attempt < 40 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => return Err(err(e)),
            }
        }
    }

    /// Publishes many messages, then waits for all their acks: one round trip per batch instead
    /// of one per message. Each message carries the trace context of its own span, or of the
    /// current one.
    pub async fn publish_batch(&self, items: Vec<Outgoing>) -> Result<Vec<Published>, BusError> {
        let mut pending = Vec::with_capacity(items.len());
        for Outgoing {
            subject,
            msg_id,
            payload,
            span,
        } in items
        {
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
            match &span {
                Some(span) => trace::inject_span(span, &mut headers),
                None => trace::inject(&mut headers),
            }
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|e| BusError::Publish {
                    subject: subject.clone(),
                    message: e.to_string(),
                })?;
            pending.push((subject, ack));
        }
        let mut out = Vec::with_capacity(pending.len());
        for (subject, ack) in pending {
            let ack = ack.await.map_err(|e| BusError::Publish {
                subject,
                message: e.to_string(),
            })?;
            out.push(Published {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            });
        }
        Ok(out)
    }

    /// The stream sequence of the last event stored (0 when none).
    pub async fn last_event_sequence(&self) -> Result<u64, BusError> {
        let err = |message: String| BusError::Consume {
            what: "the event stream's state".into(),
            message,
        };
        let mut stream = self
            .js
            .get_stream(setup::EVENTS_STREAM)
            .await
            .map_err(|e| err(e.to_string()))?;
        let info = stream.info().await.map_err(|e| err(e.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// Events on `filter` (e.g. `sup.evt.CEN.>`), from a stream sequence or from now, in order.
    /// Returns how many matching events were stored when the watch began, and the watch itself.
    pub async fn watch_events(
        &self,
        filter: String,
        from_sequence: Option<u64>,
    ) -> Result<
        (
            u64,
            impl Stream<Item = Result<WatchedEvent, BusError>> + use<>,
        ),
        BusError,
    > {
        let deliver_policy = match from_sequence {
            Some(start_sequence) if start_sequence > 0 => {
                consumer::DeliverPolicy::ByStartSequence { start_sequence }
            }
            Some(_) => consumer::DeliverPolicy::All,
            None => consumer::DeliverPolicy::New,
        };
        self.watch_events_with(filter, deliver_policy).await
    }

    /// Events on `filter` as the server routes them, without JetStream: nothing replayed,
    /// nothing acknowledged, for a watcher that measures delivery as it happens. The
    /// subscription is in place when this returns; undecodable messages are skipped.
    pub async fn subscribe_events(
        &self,
        filter: &str,
    ) -> Result<impl Stream<Item = Event> + use<>, BusError> {
        let err = |message: String| BusError::Consume {
            what: format!("subscription {filter}"),
            message,
        };
        let subscription = self
            .client
            .subscribe(filter.to_string())
            .await
            .map_err(|e| err(e.to_string()))?;
        self.client.flush().await.map_err(|e| err(e.to_string()))?;
        Ok(subscription.filter_map(|m| async move { decode_event(&m.subject, &m.payload).ok() }))
    }

    /// Events of one kind from every site (see [`subjects::kind`]) stored at or after `since`,
    /// then new ones as they come, in order.
    pub async fn watch_events_of_kind_since(
        &self,
        kind: &str,
        since: std::time::SystemTime,
    ) -> Result<impl Stream<Item = Result<WatchedEvent, BusError>> + use<>, BusError> {
        let deliver_policy = since
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| async_nats::datetime::from_nanos(d.as_nanos() as i128).ok())
            .map(|start_time| consumer::DeliverPolicy::ByStartTime { start_time })
            .unwrap_or(consumer::DeliverPolicy::All);
        let (_, events) = self
            .watch_events_with(subjects::events_of_kind(kind), deliver_policy)
            .await?;
        Ok(events)
    }

    async fn watch_events_with(
        &self,
        filter: String,
        deliver_policy: consumer::DeliverPolicy,
    ) -> Result<
        (
            u64,
            impl Stream<Item = Result<WatchedEvent, BusError>> + use<>,
        ),
        BusError,
    > {
        let err = |message: String| BusError::Consume {
            what: format!("events {filter}"),
            message,
        };
        let stream = self
            .js
            .get_stream(setup::EVENTS_STREAM)
            .await
            .map_err(|e| err(e.to_string()))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.to_string()))?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(|e| err(e.to_string()))?;
        Ok((
            pending,
            messages.map(move |m| {
                let m = m.map_err(|e| BusError::Consume {
                    what: "events".into(),
                    message: e.to_string(),
                })?;
                let (sequence, pending) = m
                    .info()
                    .map(|i| (i.stream_sequence, i.pending))
                    .unwrap_or((0, 0));
                let event = decode_event(&m.subject, &m.payload)?;
                Ok(WatchedEvent {
                    sequence,
                    pending,
                    event,
                })
            }),
        ))
    }
}

/// How long [`Bus::close`] waits for a server to take what is buffered.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// Sends a request again every `every` until one is answered, for `total` in all; `None` when
/// none was. A request sent while a stream elects its leader is never answered, even once the
/// election is over, so waiting on it longer would only delay the answer.
pub async fn resend<T, Fut: std::future::Future<Output = T>>(
    total: Duration,
    every: Duration,
    mut request: impl FnMut() -> Fut,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + total;
    loop {
        let patience = every.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(patience, request()).await {
            Ok(answer) => return Some(answer),
            Err(_) if tokio::time::Instant::now() < deadline => continue,
            Err(_) => return None,
        }
    }
}

/// Decodes an event payload.
pub fn decode_event(subject: &str, payload: &[u8]) -> Result<Event, BusError> {
    Event::decode(payload).map_err(|source| BusError::Decode {
        subject: subject.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unanswered_request_is_sent_again_until_one_is_answered() {
        let mut sent = 0;
        let answer = resend(Duration::from_secs(5), Duration::from_millis(10), || {
            sent += 1;
            let answered = sent >= 3;
            async move {
                if !answered {
                    std::future::pending::<()>().await;
                }
                sent
            }
        })
        .await;
        assert_eq!(answer, Some(3));
    }

    #[tokio::test]
    async fn a_request_never_answered_gives_none_once_the_time_is_up() {
        let mut sent = 0;
        let answer = resend(Duration::from_millis(50), Duration::from_millis(10), || {
            sent += 1;
            std::future::pending::<()>()
        })
        .await;
        assert_eq!(answer, None);
        assert!(sent >= 2, "sent {sent} times");
    }
}
