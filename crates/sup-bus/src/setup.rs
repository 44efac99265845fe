//! Streams and buckets, created (or updated to this definition) at every start so that any
//! service can come up first.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::{Bucket, BusError, subjects};

pub const EVENTS_STREAM: &str = "SUP_EVENTS";
/// The events as CloudEvents (JSON), in the order of `SUP_EVENTS`, for automation.
pub const CLOUD_EVENTS_STREAM: &str = "SUP_CLOUDEVENTS";
pub const COMMANDS_STREAM: &str = "SUP_COMMANDS";
pub const LOGS_STREAM: &str = "SUP_LOGS";

pub const SITES_BUCKET: &str = "sup_sites";
pub const ROLES_BUCKET: &str = "sup_roles";
pub const ACTIVE_BUCKET: &str = "sup_active";
/// Revisions the active bucket keeps per slot: how far writers may run ahead of the
/// announcements before a change could be dropped unannounced.
pub const ACTIVE_HISTORY: i64 = 20;
/// Revisions the roles bucket keeps per role (the most JetStream allows): the same bound for
/// role records.
pub const ROLES_HISTORY: i64 = 64;
/// Results of mutating requests by op id, so a retried request acts once.
pub const OPS_BUCKET: &str = "sup_ops";
/// Read positions of the log watcher, per file.
pub const POSITIONS_BUCKET: &str = "sup_positions";
/// The latest health report of each SUP server.
pub const HEALTH_BUCKET: &str = "sup_health";
/// Heartbeats of the replicas of a service that share its work (`<service>.<replica>`).
pub const MEMBERS_BUCKET: &str = "sup_members";
/// How long a heartbeat stays in [`MEMBERS_BUCKET`]: a replica that died is forgotten by the
/// server after this, so the bucket never fills with them. Replicas beat far more often (a
/// service refuses a heartbeat period above [`MAX_HEARTBEAT`]).
pub const MEMBERS_MAX_AGE: Duration = Duration::from_secs(60);
/// The longest heartbeat period a service sharing work may use: three missed beats stay well
/// inside [`MEMBERS_MAX_AGE`].
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(10);

/// The stream that keeps bucket `bucket`.
pub fn bucket_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The subject under which bucket `bucket` stores `key`.
pub fn key_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// How to reach and lay out the bus.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Comma-separated server URLs.
    pub url: String,
    /// Stream and bucket replicas: 1 on one node, 3 on a cluster.
    #[serde(default = "one")]
    pub replicas: usize,
    /// The client's name as the server shows it.
    #[serde(default = "default_name")]
    pub client_name: String,
    /// How long published ids are remembered for de-duplication.
    #[serde(default = "default_duplicate_window", with = "secs")]
    pub duplicate_window: Duration,
    /// How long log lines are kept.
    #[serde(default = "default_log_age", with = "secs")]
    pub log_max_age: Duration,
    // TLS and credentials. Secrets are named by reference only (a file or an environment
    // variable), so they never sit in a config file, KV, an event or a log line. One of user +
    // password, an nkey seed, or a creds file (user JWT + seed).
    /// Use TLS even if the URLs say `nats://` (implied by any of the TLS files).
    #[serde(default)]
    pub tls_required: bool,
    /// The CA that signed the servers' certificates, PEM.
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), for servers that verify clients.
    #[serde(default)]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// This client's private key, PEM.
    #[serde(default)]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// The user name (with `password_env` or `password_file`).
    #[serde(default)]
    pub user: Option<String>,
    /// The environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The file that holds the password (one line).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// The file that holds the user's nkey seed (`SU…`).
    #[serde(default)]
    pub nkey_seed_file: Option<std::path::PathBuf>,
    /// The environment variable that holds the user's nkey seed.
    #[serde(default)]
    pub nkey_seed_env: Option<String>,
    /// A NATS creds file (decentralised auth: user JWT and nkey seed).
    #[serde(default)]
    pub creds_file: Option<std::path::PathBuf>,
}

/// A secret read from its reference; its Debug never shows it.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

fn secret(
    what: &str,
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<Secret>, BusError> {
    let setup = |message: String| BusError::Setup {
        what: format!("NATS {what}"),
        message,
    };
    let value = match (env, file) {
        (Some(_), Some(_)) => {
            return Err(setup(format!("give {what}_env or {what}_file, not both")));
        }
        (Some(var), None) => std::env::var(var)
            .map_err(|_| setup(format!("environment variable {var} is not set")))?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| setup(format!("reading {}: {e}", path.display())))?,
        (None, None) => return Ok(None),
    };
    // Files usually end in a newline that is not part of the secret.
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err(setup("the secret is empty".into()));
    }
    Ok(Some(Secret(value)))
}

impl BusConfig {
    /// Adds TLS and credentials to connect options, reading every referenced secret now.
    pub(crate) async fn apply_security(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, BusError> {
        let setup = |what: &str, message: String| BusError::Setup {
            what: what.into(),
            message,
        };
        let password = secret(
            "password",
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )?;
        let seed = secret(
            "nkey_seed",
            self.nkey_seed_env.as_deref(),
            self.nkey_seed_file.as_deref(),
        )?;
        let schemes = [
            self.user.is_some() || password.is_some(),
            seed.is_some(),
            self.creds_file.is_some(),
        ];
        if schemes.iter().filter(|s| **s).count() > 1 {
            return Err(setup(
                "NATS credentials",
                "give one of user + password, an nkey seed, or a creds file".into(),
            ));
        }
        match (&self.user, password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.0);
            }
            (Some(_), None) => {
                return Err(setup(
                    "NATS user",
                    "a user needs password_env or password_file".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(setup("NATS password", "a password needs a user".into()));
            }
            (None, None) => {}
        }
        if let Some(seed) = seed {
            options = options.nkey(seed.0);
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| setup("NATS creds file", format!("{}: {e}", path.display())))?;
        }
        if let Some(ca) = &self.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            (None, None) => {}
            _ => {
                return Err(setup(
                    "NATS TLS",
                    "a client certificate needs both tls_cert_file and tls_key_file".into(),
                ));
            }
        }
        let tls = self.tls_required || self.tls_ca_file.is_some() || self.tls_cert_file.is_some();
        Ok(options.require_tls(tls))
    }
}

fn one() -> usize {
    1
}
fn default_name() -> String {
    "sup".into()
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_log_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

mod secs {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl BusConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            replicas: one(),
            client_name: default_name(),
            duplicate_window: default_duplicate_window(),
            log_max_age: default_log_age(),
            tls_required: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            user: None,
            password_env: None,
            password_file: None,
            nkey_seed_file: None,
            nkey_seed_env: None,
            creds_file: None,
        }
    }
}

/// Handles on the project's KV buckets.
#[derive(Clone)]
pub(crate) struct Buckets {
    pub sites: Bucket,
    pub roles: Bucket,
    pub active: Bucket,
    pub ops: Bucket,
    pub positions: Bucket,
    pub health: Bucket,
    pub members: Bucket,
}

/// Creates or updates every stream and bucket.
pub(crate) async fn ensure(
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<Buckets, BusError> {
    let replicas = config.replicas.max(1);
    let streams = [
        stream::Config {
            name: EVENTS_STREAM.into(),
            description: Some("SUP events: the audit trail".into()),
            subjects: vec![subjects::EVENTS_ALL.into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: config.duplicate_window,
            num_replicas: replicas,
            // The coordinator announces role changes in atomic batches (`Bus::publish_atomic`).
            allow_atomic_publish: true,
            ..Default::default()
        },
        stream::Config {
            name: CLOUD_EVENTS_STREAM.into(),
            description: Some("SUP events as CloudEvents 1.0 JSON, for automation".into()),
            subjects: vec![subjects::CLOUD_EVENTS_ALL.into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: config.duplicate_window,
            num_replicas: replicas,
            ..Default::default()
        },
        stream::Config {
            name: COMMANDS_STREAM.into(),
            description: Some("SUP commands: a work queue".into()),
            subjects: vec![subjects::COMMANDS_ALL.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: config.duplicate_window,
            num_replicas: replicas,
            ..Default::default()
        },
        stream::Config {
            name: LOGS_STREAM.into(),
            description: Some("ConfigMgr log lines".into()),
            subjects: vec![subjects::LOGS_ALL.into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: config.log_max_age,
            max_bytes: 8 * 1024 * 1024 * 1024,
            duplicate_window: config.duplicate_window,
            num_replicas: replicas,
            ..Default::default()
        },
    ];
    for s in streams {
        let name = s.name.clone();
        js.create_or_update_stream(s)
            .await
            .map_err(|e| BusError::Setup {
                what: format!("stream {name}"),
                message: e.to_string(),
            })?;
    }
    let bucket = |name: &str, history: i64, description: &str| kv::Config {
        bucket: name.into(),
        description: description.into(),
        history,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let mut stores = Vec::new();
    for cfg in [
        bucket(SITES_BUCKET, 5, "site specs"),
        bucket(ROLES_BUCKET, ROLES_HISTORY, "SUP role state per server"),
        bucket(
            ACTIVE_BUCKET,
            ACTIVE_HISTORY,
            "active slot per site; the revision is the epoch",
        ),
        bucket(OPS_BUCKET, 1, "results of mutating requests by op id"),
        bucket(POSITIONS_BUCKET, 1, "log watcher read positions"),
        bucket(HEALTH_BUCKET, 1, "latest WSUS health report per SUP server"),
        kv::Config {
            max_age: MEMBERS_MAX_AGE,
            ..bucket(
                MEMBERS_BUCKET,
                1,
                "heartbeats of the replicas that share a service's work",
            )
        },
    ] {
        let name = cfg.bucket.clone();
        let store = js
            .create_or_update_key_value(cfg)
            .await
            .map_err(|e| BusError::Setup {
                what: format!("bucket {name}"),
                message: e.to_string(),
            })?;
        stores.push(Bucket::new(store, js.clone()));
    }
    let mut it = stores.into_iter();
    let mut next = || {
        it.next().ok_or_else(|| BusError::Setup {
            what: "buckets".into(),
            message: "bucket list out of step".into(),
        })
    };
    Ok(Buckets {
        sites: next()?,
        roles: next()?,
        active: next()?,
        ops: next()?,
        positions: next()?,
        health: next()?,
        members: next()?,
    })
}
