//! NATS for the SUP control plane: the only crate that knows subject names, stream and bucket
//! definitions and header conventions. Services get typed publish and consume of `sup.v1` events
//! and commands, de-duplication by `Nats-Msg-Id`, durable pull consumers, compare-and-set on KV,
//! and W3C trace context in headers.
//!
//! - [`subjects`]: subject and key names, and how host names become subject tokens.
//! - [`setup`]: streams and buckets, created idempotently at start.
//! - [`Bus`]: a connected handle with typed operations.
//! - [`trace`]: `traceparent` in NATS headers.

pub mod records;
pub mod setup;
pub mod subjects;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sup_proto::prost::Message as _;
use sup_proto::v1::{Command, Event};

pub use async_nats;
pub use setup::{ACTIVE_HISTORY, Buckets, BusConfig, ROLES_HISTORY};

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
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    connection: ConnectionMetrics,
    /// Started by [`Bus::register_metrics`], so that only a process that serves the metrics
    /// probes JetStream.
    jetstream_probe: Arc<std::sync::OnceLock<AbortOnDrop>>,
    pub buckets: Buckets,
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
    /// of one per message. Each item is (subject, message id, payload), sent in the current
    /// span's trace.
    pub async fn publish_many(
        &self,
        items: Vec<(String, String, Bytes)>,
    ) -> Result<Vec<Published>, BusError> {
        let items = items
            .into_iter()
            .map(|(subject, msg_id, payload)| Outgoing {
                subject,
                msg_id,
                payload,
                span: None,
            })
            .collect();
        self.publish_batch(items).await
    }

    /// [`Bus::publish_many`] where each message may carry the context of its own span.
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

    /// A durable pull consumer on the command queue for `service`, shared by all its replicas.
    /// Messages are redelivered after `ack_wait` until acked, up to `max_deliver` times.
    pub async fn command_consumer(
        &self,
        service: &str,
        ack_wait: Duration,
        max_deliver: i64,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, BusError> {
        self.durable_consumer(
            setup::COMMANDS_STREAM,
            &format!("{service}-commands"),
            vec![subjects::commands_for(service)],
            ack_wait,
            max_deliver,
        )
        .await
    }

    /// A durable pull consumer on a stream with explicit acks, filtered to `filters`.
    pub async fn durable_consumer(
        &self,
        stream_name: &str,
        durable: &str,
        filters: Vec<String>,
        ack_wait: Duration,
        max_deliver: i64,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, BusError> {
        self.durable_consumer_with(stream_name, durable, filters, ack_wait, max_deliver, None)
            .await
    }

    /// A durable consumer that hands out one message at a time, whichever replica pulls: what
    /// it feeds sees the stream's order.
    pub async fn durable_consumer_in_order(
        &self,
        stream_name: &str,
        durable: &str,
        filters: Vec<String>,
        ack_wait: Duration,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, BusError> {
        self.durable_consumer_with(stream_name, durable, filters, ack_wait, -1, Some(1))
            .await
    }

    async fn durable_consumer_with(
        &self,
        stream_name: &str,
        durable: &str,
        filters: Vec<String>,
        ack_wait: Duration,
        max_deliver: i64,
        max_ack_pending: Option<i64>,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, BusError> {
        let err = |message: String| BusError::Setup {
            what: format!("consumer {durable} on {stream_name}"),
            message,
        };
        let stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| err(e.to_string()))?;
        stream
            .get_or_create_consumer(
                durable,
                consumer::pull::Config {
                    durable_name: Some(durable.to_string()),
                    filter_subject: if filters.len() == 1 {
                        filters[0].clone()
                    } else {
                        String::new()
                    },
                    filter_subjects: if filters.len() == 1 {
                        Vec::new()
                    } else {
                        filters
                    },
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait,
                    max_deliver,
                    max_ack_pending: max_ack_pending.unwrap_or_default(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err(e.to_string()))
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
        let err = |message: String| BusError::Consume {
            what: format!("events {filter}"),
            message,
        };
        let stream = self
            .js
            .get_stream(setup::EVENTS_STREAM)
            .await
            .map_err(|e| err(e.to_string()))?;
        let deliver_policy = match from_sequence {
            Some(start_sequence) if start_sequence > 0 => {
                consumer::DeliverPolicy::ByStartSequence { start_sequence }
            }
            Some(_) => consumer::DeliverPolicy::All,
            None => consumer::DeliverPolicy::New,
        };
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

    /// Creates `key` only if absent (or deleted).
    pub async fn kv_create(
        &self,
        store: &kv::Store,
        key: &str,
        value: Bytes,
    ) -> Result<Cas, BusError> {
        match store.create(key, value).await {
            Ok(rev) => Ok(Cas::Won(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Cas::Lost),
            Err(e) => Err(kv_err("create", store, key, e)),
        }
    }

    /// Writes `key` only if its revision is still `revision`.
    pub async fn kv_update(
        &self,
        store: &kv::Store,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Cas, BusError> {
        match store.update(key, value, revision).await {
            Ok(rev) => Ok(Cas::Won(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Cas::Lost),
            // A clustered stream can refuse the same race with JetStream error 10164 ("wrong
            // last sequence", without the number), which the client does not classify: a lost
            // compare-and-set all the same, not a failure to retry from scratch.
            Err(e) if e.to_string().contains("10164") => Ok(Cas::Lost),
            Err(e) => Err(kv_err("update", store, key, e)),
        }
    }

    /// Reads `key`: its value and revision, or `None` when absent or deleted.
    pub async fn kv_get(
        &self,
        store: &kv::Store,
        key: &str,
    ) -> Result<Option<(Bytes, u64)>, BusError> {
        // A get sent while the stream elects a leader may never be answered, even once the
        // election is over: send it again every KV_READ_RETRY, for KV_READ_TIMEOUT in all.
        let read = resend(KV_READ_TIMEOUT, KV_READ_RETRY, || store.entry(key))
            .await
            .ok_or_else(|| kv_err("get", store, key, "timed out"))?;
        match read {
            Ok(Some(e)) if e.operation == kv::Operation::Put => Ok(Some((e.value, e.revision))),
            Ok(_) => Ok(None),
            Err(e) => Err(kv_err("get", store, key, e)),
        }
    }
}

/// How long [`Bus::close`] waits for a server to take what is buffered.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// How long a key read waits for an answer in all, and how long each attempt waits before the
/// read is sent again.
const KV_READ_TIMEOUT: Duration = Duration::from_secs(5);
const KV_READ_RETRY: Duration = Duration::from_millis(500);

/// How long a read through a stream's leader waits for an answer.
const LEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one attempt of a leader read waits before it is sent again.
const LEADER_READ_RETRY: Duration = Duration::from_millis(250);

impl Bus {
    /// A key read through the stream's leader, never a follower: for a read that a decision
    /// rests on. (`kv_get` may be answered by any replica, which can be behind, or — just after
    /// a restart — hold writes the cluster never committed.)
    pub async fn kv_get_from_leader(
        &self,
        store: &kv::Store,
        key: &str,
    ) -> Result<Option<(Bytes, u64)>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let stream = self
            .js
            .get_stream_no_info(format!("KV_{}", store.name))
            .await
            .map_err(|e| kv_err("leader get", store, key, e))?;
        // While the stream elects a new leader nobody answers, and a request sent before the
        // election is never answered after it: ask again every LEADER_READ_RETRY so the new
        // leader is heard at once, and give up (the caller is told to retry) after
        // LEADER_READ_TIMEOUT rather than the client's long default.
        let subject = format!("$KV.{}.{key}", store.name);
        let read = resend(LEADER_READ_TIMEOUT, LEADER_READ_RETRY, || {
            stream.get_last_raw_message_by_subject(&subject)
        })
        .await
        .ok_or_else(|| {
            kv_err(
                "leader get",
                store,
                key,
                "no stream leader answered in time",
            )
        })?;
        match read {
            Ok(m) => {
                let deleted = m
                    .headers
                    .get("KV-Operation")
                    .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
                Ok((!deleted).then_some((m.payload, m.sequence)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(kv_err("leader get", store, key, e)),
        }
    }
}

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

fn kv_err(op: &'static str, store: &kv::Store, key: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Kv {
        op,
        bucket: store.name.clone(),
        key: key.to_string(),
        message: e.to_string(),
    }
}

/// Decodes an event payload.
pub fn decode_event(subject: &str, payload: &[u8]) -> Result<Event, BusError> {
    Event::decode(payload).map_err(|source| BusError::Decode {
        subject: subject.to_string(),
        source,
    })
}

/// Decodes a command payload.
pub fn decode_command(subject: &str, payload: &[u8]) -> Result<Command, BusError> {
    Command::decode(payload).map_err(|source| BusError::Decode {
        subject: subject.to_string(),
        source,
    })
}

/// Re-exported so services name stream types without depending on async-nats paths.
pub use stream::Stream as JsStream;

/// Small membership lists kept in KV so that nobody lists a bucket's keys (each listing costs
/// the server a consumer): the applied site codes, and per site the servers with role records.
impl Bus {
    /// The key in `sup_sites` that lists the applied site codes.
    pub const SITES_INDEX: &'static str = "index";

    /// The key in `sup_sites` that lists the servers of a site that have role records.
    pub fn roles_index(site: &str) -> String {
        format!("{}.roles", subjects::site_key(site))
    }

    /// The members of an index (sorted, unique).
    pub async fn index_members(
        &self,
        store: &kv::Store,
        key: &str,
    ) -> Result<Vec<String>, BusError> {
        Ok(match self.kv_get(store, key).await? {
            Some((b, _)) => String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        })
    }

    /// Adds or removes a member with a compare-and-set loop.
    pub async fn index_update(
        &self,
        store: &kv::Store,
        key: &str,
        member: &str,
        present: bool,
    ) -> Result<(), BusError> {
        for _ in 0..64 {
            let current = self.kv_get(store, key).await?;
            let mut members: std::collections::BTreeSet<String> = current
                .as_ref()
                .map(|(b, _)| {
                    String::from_utf8_lossy(b)
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let changed = if present {
                members.insert(member.to_string())
            } else {
                members.remove(member)
            };
            if !changed {
                return Ok(());
            }
            let value: Bytes = members.into_iter().collect::<Vec<_>>().join("\n").into();
            let cas = match current {
                Some((_, rev)) => self.kv_update(store, key, value, rev).await?,
                None => self.kv_create(store, key, value).await?,
            };
            if let Cas::Won(_) = cas {
                return Ok(());
            }
        }
        Err(BusError::Kv {
            op: "index",
            bucket: store.name.clone(),
            key: key.to_string(),
            message: "kept changing under concurrent writers".into(),
        })
    }

    /// Every applied site's stored spec, by code.
    pub async fn all_sites(&self) -> Result<Vec<(String, Bytes)>, BusError> {
        let codes = self
            .index_members(&self.buckets.sites, Self::SITES_INDEX)
            .await?;
        let store = &self.buckets.sites;
        let records = self
            .get_many(store, codes.iter().map(|c| subjects::site_key(c)).collect())
            .await?;
        Ok(codes
            .into_iter()
            .zip(records)
            .filter_map(|(code, r)| Some((code, r?)))
            .collect())
    }

    /// Every role record of a site.
    pub async fn site_roles(&self, site: &str) -> Result<Vec<Bytes>, BusError> {
        let servers = self
            .index_members(&self.buckets.sites, &Self::roles_index(site))
            .await?;
        let records = self
            .get_many(
                &self.buckets.roles,
                servers
                    .iter()
                    .map(|s| subjects::role_key(site, s))
                    .collect(),
            )
            .await?;
        Ok(records.into_iter().flatten().collect())
    }

    /// Reads many keys with several requests in flight (a registry of thousands of records read
    /// one round trip at a time takes seconds); the values come back in the keys' order.
    pub async fn get_many(
        &self,
        store: &kv::Store,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Bytes>>, BusError> {
        use futures::StreamExt as _;
        futures::stream::iter(keys)
            .map(|key| async move { self.kv_get(store, &key).await.map(|v| v.map(|(b, _)| b)) })
            .buffered(READS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// How many KV reads [`Bus::get_many`] keeps in flight.
const READS_IN_FLIGHT: usize = 32;

/// Pulls messages from a durable consumer until `stop` turns true, making the consumer again after
/// any error (a restarted server, a lost connection). `handle` acks or naks each message; what it
/// does not ack is redelivered after the consumer's ack wait.
pub async fn consume_durable<Make, MakeFut, Handle, HandleFut>(
    what: &str,
    make: Make,
    mut stop: tokio::sync::watch::Receiver<bool>,
    handle: Handle,
) where
    Make: Fn() -> MakeFut,
    MakeFut:
        std::future::Future<Output = Result<consumer::Consumer<consumer::pull::Config>, BusError>>,
    Handle: Fn(jetstream::Message) -> HandleFut,
    HandleFut: std::future::Future<Output = ()>,
{
    loop {
        let messages = match make().await {
            Ok(c) => c.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(consumer = what, error = %e, "pulling; retrying");
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
                Some(Ok(m)) => handle(m).await,
                Some(Err(e)) => {
                    tracing::warn!(consumer = what, error = %e, "delivery");
                    break;
                }
                None => break,
            }
        }
    }
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
