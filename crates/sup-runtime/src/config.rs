//! Layered configuration: built-in defaults < the file given with `--config` < environment
//! variables `SUP_<SERVICE>__<KEY>__<SUBKEY>`. Unknown keys and wrong types are refused at start
//! with the key path.

use std::path::Path;

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The message carries the cause's text, so it is not also a `source` (a printed chain would
    // say it twice).
    #[error("reading configuration: {0}")]
    Source(::config::ConfigError),
    #[error("configuration{}: {message}", at_key(.path))]
    Invalid { path: String, message: String },
}

/// ` key `a.b`` for a nested key; nothing for the top level (`.`), whose message names the key.
fn at_key(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(" key `{path}`")
    }
}

impl From<::config::ConfigError> for ConfigError {
    fn from(e: ::config::ConfigError) -> Self {
        Self::Source(e)
    }
}

/// Loads `T` for `service`. `defaults` is TOML text with every default; `file` is the operator's
/// file. Settings structs should use `#[serde(deny_unknown_fields)]` so typos fail loudly.
pub fn load_config<T: DeserializeOwned>(
    service: &str,
    defaults: &str,
    file: Option<&Path>,
) -> Result<T, ConfigError> {
    let prefix = format!("SUP_{}", service.to_ascii_uppercase().replace('-', "_"));
    let mut builder = ::config::Config::builder().add_source(::config::File::from_str(
        defaults,
        ::config::FileFormat::Toml,
    ));
    if let Some(f) = file {
        builder = builder.add_source(
            ::config::File::from(f)
                .format(::config::FileFormat::Toml)
                .required(true),
        );
    }
    let raw = builder
        .add_source(
            ::config::Environment::with_prefix(&prefix)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("__never__"),
        )
        .build()?;
    serde_path_to_error::deserialize(raw).map_err(|e| ConfigError::Invalid {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        listen: String,
        interval_secs: u64,
        nats: Nats,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Nats {
        url: String,
        replicas: usize,
    }

    const DEFAULTS: &str =
        "listen = \"127.0.0.1:1\"\ninterval_secs = 10\n[nats]\nurl = \"nats://a\"\nreplicas = 1\n";

    #[test]
    fn layers_defaults_file_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "interval_secs = 20\n[nats]\nurl = \"nats://file\"\n")
            .expect("write");
        // A service name unique to this test keeps parallel tests' variables apart.
        // SAFETY: this test is the only reader and writer of this variable.
        unsafe { std::env::set_var("SUP_LAYERTEST__NATS__URL", "nats://env") };
        let s: Settings = load_config("layertest", DEFAULTS, Some(&file)).expect("loads");
        assert_eq!(s.listen, "127.0.0.1:1");
        assert_eq!(s.interval_secs, 20);
        assert_eq!(s.nats.url, "nats://env");
        assert_eq!(s.nats.replicas, 1);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[nats]\nurll = \"x\"\n").expect("write");
        let err =
            load_config::<Settings>("unknowntest", DEFAULTS, Some(&file)).expect_err("unknown key");
        assert!(err.to_string().contains("urll"), "{err}");
        std::fs::write(&file, "interval_secs = \"soon\"\n").expect("write");
        let err =
            load_config::<Settings>("typetest", DEFAULTS, Some(&file)).expect_err("wrong type");
        assert!(err.to_string().contains("interval_secs"), "{err}");
    }
}
