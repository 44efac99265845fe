//! A look inside JetStream for trials and tests that judge the bus from outside it: a stream's
//! replicas and leader, and its raw messages by sequence or subject with the server's own
//! timestamps. Services never need this; they go through `sup-bus`.

use async_nats::jetstream::{self, message::StreamMessage};
use bytes::Bytes;

/// A connection used only to inspect streams.
#[derive(Clone)]
pub struct Inspector {
    js: jetstream::Context,
}

/// A stream's state and, in a cluster, its replicas.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub messages: u64,
    /// The node that leads the stream; `None` outside a cluster or during an election.
    pub leader: Option<String>,
    /// The other replicas: (name, current, offline).
    pub replicas: Vec<(String, bool, bool)>,
}

/// One stored message as the stream has it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub subject: String,
    pub sequence: u64,
    pub payload: Bytes,
    /// Its headers, name and value, as text.
    pub headers: Vec<(String, String)>,
    /// When the server stored it, in nanoseconds since the Unix epoch.
    pub stored_nanos: i128,
}

impl From<StreamMessage> for StoredMessage {
    fn from(m: StreamMessage) -> Self {
        let stored_nanos = m.time.unix_timestamp_nanos();
        let headers = m
            .headers
            .iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| (name.to_string(), v.as_str().to_string()))
            })
            .collect();
        Self {
            headers,
            subject: m.subject.to_string(),
            sequence: m.sequence,
            payload: m.payload,
            stored_nanos,
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a server that requires mutual TLS and a user wants of the inspector.
#[derive(Debug, Clone)]
pub struct Secured {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub user: String,
    pub password: String,
}

impl Inspector {
    /// Connects to `url` (a comma-separated list names the nodes of a cluster).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, async_nats::ConnectOptions::new()).await
    }

    /// Connects over mutual TLS as `user` (password as given).
    pub async fn connect_secured(url: &str, secured: &Secured) -> Result<Self, Error> {
        let options = async_nats::ConnectOptions::with_user_and_password(
            secured.user.clone(),
            secured.password.clone(),
        )
        .add_root_certificates(secured.ca.clone())
        .add_client_certificate(secured.cert.clone(), secured.key.clone())
        .require_tls(true);
        Self::connect_with(url, options).await
    }

    async fn connect_with(url: &str, options: async_nats::ConnectOptions) -> Result<Self, Error> {
        let servers = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        // Pings as often as the services' bus does, so a frozen node is noticed in seconds.
        let client = options
            .name("sup-testkit-inspector")
            .ping_interval(std::time::Duration::from_secs(3))
            .connect(servers)
            .await?;
        Ok(Self {
            js: jetstream::new(client),
        })
    }

    /// The state of stream `name`, or `None` when no server answered.
    pub async fn stream_state(&self, name: &str) -> Option<StreamState> {
        let mut s = self.js.get_stream(name).await.ok()?;
        let info = s.info().await.ok()?;
        let (leader, replicas) = match &info.cluster {
            Some(c) => (
                c.leader.clone(),
                c.replicas
                    .iter()
                    .map(|r| (r.name.clone(), r.current, r.offline))
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        Some(StreamState {
            first_sequence: info.state.first_sequence,
            last_sequence: info.state.last_sequence,
            messages: info.state.messages,
            leader,
            replicas,
        })
    }

    /// The names of every stream.
    pub async fn stream_names(&self) -> Result<Vec<String>, Error> {
        use futures::TryStreamExt as _;
        Ok(self.js.stream_names().try_collect().await?)
    }

    /// Every message stream `name` keeps, in order; with `subject`, only those on it.
    pub async fn stored(
        &self,
        name: &str,
        subject: Option<&str>,
    ) -> Result<Vec<StoredMessage>, Error> {
        let state = self
            .stream_state(name)
            .await
            .ok_or_else(|| format!("stream {name} did not answer"))?;
        let s = self.js.get_stream_no_info(name).await?;
        let mut out = Vec::new();
        if state.messages == 0 {
            return Ok(out);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            // A sequence deleted or purged from the middle is simply absent.
            if let Ok(m) = s.get_raw_message(sequence).await
                && subject.is_none_or(|want| m.subject.as_str() == want)
            {
                out.push(m.into());
            }
        }
        Ok(out)
    }

    /// The message at `sequence` of stream `name`, read through the stream's leader.
    pub async fn message(&self, name: &str, sequence: u64) -> Result<StoredMessage, Error> {
        let s = self.js.get_stream_no_info(name).await?;
        Ok(s.get_raw_message(sequence).await?.into())
    }

    /// The last message on `subject` in stream `name`, read through the stream's leader.
    pub async fn last_on_subject(&self, name: &str, subject: &str) -> Result<StoredMessage, Error> {
        let s = self.js.get_stream_no_info(name).await?;
        Ok(s.get_last_raw_message_by_subject(subject).await?.into())
    }
}
