//! The settings every service shares, declared once: `admin_listen`, `log_format` and, for a
//! service with a listener, `listen` (and `[tls]` for a gRPC server). They sit in the same table
//! as the service's own settings, so the configuration files keep one flat shape.
//!
//! serde's `flatten` would be the usual way to share them, but it does not combine with
//! `deny_unknown_fields`, which every settings struct relies on to refuse a typo. So the shared
//! keys are taken out of the table as it is read and every other key goes on to the service's own
//! struct, which still refuses what it does not know. Both halves are read through the same map,
//! so an error names its key path either way.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::net::TcpListener;

use crate::{LogFormat, ServerTls};

/// Which listener a service has; it decides whether `listen` and `[tls]` are keys of its
/// settings (for a service without them, the keys are refused as unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Only the admin listener.
    None,
    /// `listen` serves HTTP (pages); no `[tls]`.
    Http,
    /// `listen` serves gRPC, over TLS with `[tls]`.
    Grpc,
}

/// A service's own settings: the keys only it has.
pub trait OwnSettings: DeserializeOwned {
    const LISTENER: Listener;
}

/// The shared settings and the service's own `S`, read from one table.
#[derive(Debug, Clone)]
pub struct ServiceSettings<S> {
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin_listen: SocketAddr,
    pub log_format: LogFormat,
    /// The service's listener; always there when `S::LISTENER` is not `None`.
    pub listen: Option<SocketAddr>,
    /// gRPC over TLS (and, with `client_ca_file`, mutual TLS); plain gRPC when absent.
    pub tls: Option<ServerTls>,
    /// What only this service has.
    pub own: S,
}

impl<S> ServiceSettings<S> {
    /// Binds the service's listener; `what` names it in the error (`gRPC`, `console`).
    pub async fn bind_listen(&self, what: &str) -> anyhow::Result<TcpListener> {
        let addr = self
            .listen
            .ok_or_else(|| anyhow::anyhow!("this service has no `listen` setting"))?;
        crate::bind(addr, what).await
    }

    /// Binds the admin listener.
    pub async fn bind_admin(&self) -> anyhow::Result<TcpListener> {
        crate::bind(self.admin_listen, "admin").await
    }
}

impl<'de, S: OwnSettings> Deserialize<'de> for ServiceSettings<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SettingsVisitor(PhantomData))
    }
}

struct SettingsVisitor<S>(PhantomData<S>);

impl<'de, S: OwnSettings> Visitor<'de> for SettingsVisitor<S> {
    type Value = ServiceSettings<S>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut shared = Shared::default();
        let own = S::deserialize(OwnTable(OwnKeys {
            map,
            shared: &mut shared,
            listener: S::LISTENER,
            own_fields: None,
        }))?;
        let listen = match (S::LISTENER, shared.listen) {
            (Listener::None, _) => None,
            (_, Some(addr)) => Some(addr),
            (_, None) => return Err(de::Error::missing_field("listen")),
        };
        Ok(ServiceSettings {
            admin_listen: shared
                .admin_listen
                .ok_or_else(|| de::Error::missing_field("admin_listen"))?,
            log_format: shared
                .log_format
                .ok_or_else(|| de::Error::missing_field("log_format"))?,
            listen,
            tls: shared.tls,
            own,
        })
    }
}

#[derive(Default)]
struct Shared {
    admin_listen: Option<SocketAddr>,
    log_format: Option<LogFormat>,
    listen: Option<SocketAddr>,
    tls: Option<ServerTls>,
}

/// The table as the service's own struct sees it: the shared keys are read into `shared` on the
/// way past.
struct OwnKeys<'a, A> {
    map: A,
    shared: &'a mut Shared,
    listener: Listener,
    /// The own struct's field names, when it said them: an unknown key is then refused naming
    /// the shared keys among those expected, which the struct's own error would leave out.
    own_fields: Option<&'static [&'static str]>,
}

impl<A> OwnKeys<'_, A> {
    fn shared_keys(&self) -> &'static [&'static str] {
        match self.listener {
            Listener::None => &["admin_listen", "log_format"],
            Listener::Http => &["listen", "admin_listen", "log_format"],
            Listener::Grpc => &["listen", "admin_listen", "log_format", "tls"],
        }
    }

    fn unknown<E: de::Error>(&self, key: &str, own: &[&str]) -> E {
        let expected: Vec<String> = self
            .shared_keys()
            .iter()
            .chain(own)
            .map(|k| format!("`{k}`"))
            .collect();
        E::custom(format_args!(
            "unknown field `{key}`, expected one of {}",
            expected.join(", ")
        ))
    }
}

/// Hands the table to the service's own struct, noting the field names it expects.
struct OwnTable<'a, A>(OwnKeys<'a, A>);

impl<'de, A: MapAccess<'de>> Deserializer<'de> for OwnTable<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self.0)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.own_fields = Some(fields);
        visitor.visit_map(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OwnKeys<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<String>()? {
            match key.as_str() {
                "admin_listen" => self.shared.admin_listen = Some(self.map.next_value()?),
                "log_format" => self.shared.log_format = Some(self.map.next_value()?),
                "listen" if self.listener != Listener::None => {
                    self.shared.listen = Some(self.map.next_value()?)
                }
                "tls" if self.listener == Listener::Grpc => {
                    self.shared.tls = self.map.next_value()?
                }
                _ => match self.own_fields {
                    Some(own) if !own.contains(&key.as_str()) => {
                        return Err(self.unknown(&key, own));
                    }
                    _ => return seed.deserialize(key.into_deserializer()).map(Some),
                },
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Grpc {
        interval_secs: u64,
        nats: Nats,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Nats {
        url: String,
    }

    impl OwnSettings for Grpc {
        const LISTENER: Listener = Listener::Grpc;
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Quiet {
        interval_secs: u64,
    }

    impl OwnSettings for Quiet {
        const LISTENER: Listener = Listener::None;
    }

    const GRPC: &str = "listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\n\
        log_format = \"json\"\ninterval_secs = 10\n[nats]\nurl = \"nats://a\"\n";
    const QUIET: &str = "admin_listen = \"127.0.0.1:2\"\nlog_format = \"pretty\"\n\
        interval_secs = 10\n";

    fn load<S: OwnSettings>(
        name: &str,
        defaults: &str,
        file: &str,
    ) -> Result<ServiceSettings<S>, crate::ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).expect("write");
        crate::load_config(name, defaults, Some(&path))
    }

    #[test]
    fn shared_and_own_keys_come_from_one_table() {
        let s = load::<Grpc>(
            "sharedtest",
            GRPC,
            "listen = \"127.0.0.1:7\"\ninterval_secs = 20\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n",
        )
        .expect("loads");
        assert_eq!(s.listen, Some("127.0.0.1:7".parse().expect("addr")));
        assert_eq!(s.admin_listen, "127.0.0.1:2".parse().expect("addr"));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(
            s.tls.as_ref().map(|t| t.cert_file.clone()),
            Some("c".into())
        );
        assert_eq!(
            s.own,
            Grpc {
                interval_secs: 20,
                nats: Nats {
                    url: "nats://a".into()
                }
            }
        );
    }

    #[test]
    fn unknown_keys_are_still_refused_with_their_path() {
        let err = load::<Grpc>("typotest", GRPC, "listenn = 1\n").expect_err("typo");
        let err = err.to_string();
        assert!(err.contains("unknown field `listenn`"), "{err}");
        // The shared keys are among those expected, beside the service's own.
        assert!(err.contains("`listen`") && err.contains("`tls`"), "{err}");
        assert!(err.contains("`interval_secs`"), "{err}");
        let err = load::<Grpc>("nestedtest", GRPC, "[nats]\nurll = \"x\"\n").expect_err("typo");
        assert!(err.to_string().contains("urll"), "{err}");
        let err = load::<Grpc>("sharedtypetest", GRPC, "admin_listen = \"nowhere\"\n")
            .expect_err("bad address");
        assert!(err.to_string().contains("admin_listen"), "{err}");
        let err = load::<Grpc>("owntypetest", GRPC, "interval_secs = \"soon\"\n")
            .expect_err("bad number");
        assert!(err.to_string().contains("interval_secs"), "{err}");
    }

    #[test]
    fn a_service_without_a_listener_refuses_listen_and_tls() {
        let s = load::<Quiet>("quiettest", QUIET, "").expect("loads");
        assert_eq!(s.listen, None);
        let err =
            load::<Quiet>("quietlisten", QUIET, "listen = \"127.0.0.1:1\"\n").expect_err("listen");
        assert!(err.to_string().contains("listen"), "{err}");
        let err = load::<Quiet>("quiettls", QUIET, "[tls]\ncert_file = \"c\"\n").expect_err("tls");
        assert!(err.to_string().contains("tls"), "{err}");
    }

    #[test]
    fn shared_keys_are_required() {
        let err = crate::load_config::<ServiceSettings<Quiet>>(
            "missingtest",
            "interval_secs = 1\n",
            None,
        )
        .expect_err("no admin_listen");
        assert!(err.to_string().contains("admin_listen"), "{err}");
        let err = crate::load_config::<ServiceSettings<Grpc>>(
            "missinglisten",
            "admin_listen = \"127.0.0.1:2\"\nlog_format = \"json\"\ninterval_secs = 1\n[nats]\nurl = \"u\"\n",
            None,
        )
        .expect_err("no listen");
        assert!(err.to_string().contains("listen"), "{err}");
    }
}
