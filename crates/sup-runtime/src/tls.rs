//! TLS for gRPC, configured by file references: a server's certificate and key (and, for mutual
//! TLS, the CA its clients' certificates must chain to), and a client's trusted CA (and, for
//! mutual TLS, its own certificate and key). Keys are read from files only, never from config
//! values, so no secret sits in a config file, an environment dump or a log line.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A gRPC server's TLS (`[tls]` in a service's config). With `client_ca_file`, every client must
/// present a certificate signed by that CA (mutual TLS); without it, any client may connect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The server's certificate chain, PEM.
    pub cert_file: PathBuf,
    /// The server's private key, PEM.
    pub key_file: PathBuf,
    /// The CA that client certificates must chain to; set it to require client certificates.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// A gRPC client's TLS: the CA to trust and, for mutual TLS, the client's own certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// The CA that signed the server's certificate, PEM.
    pub ca_file: PathBuf,
    /// The client's certificate chain, PEM (with `key_file`, for servers that require one).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client's private key, PEM.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name to check the server's certificate against, when it is not the endpoint's host.
    #[serde(default)]
    pub domain: Option<String>,
}

fn read(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    // The error names the file, never its content.
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

impl ServerTls {
    /// The tonic server configuration, with every file read now so a bad path fails at start.
    pub fn tonic(&self) -> anyhow::Result<ServerTlsConfig> {
        let identity = Identity::from_pem(
            read("TLS certificate", &self.cert_file)?,
            read("TLS private key", &self.key_file)?,
        );
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_file {
            config = config
                .client_ca_root(Certificate::from_pem(read("client CA certificate", ca)?))
                .client_auth_optional(false);
        }
        Ok(config)
    }
}

impl ClientTls {
    /// The tonic client configuration, with every file read now.
    pub fn tonic(&self) -> anyhow::Result<ClientTlsConfig> {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(
            "CA certificate",
            &self.ca_file,
        )?));
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read("client certificate", cert)?,
                    read("client private key", key)?,
                ));
            }
            (None, None) => {}
            _ => anyhow::bail!("a client certificate needs both cert_file and key_file"),
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}

/// Loads optional server TLS for a service's gRPC listener.
pub fn server_config(tls: Option<&ServerTls>) -> anyhow::Result<Option<ServerTlsConfig>> {
    tls.map(ServerTls::tonic).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let tls = ServerTls {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            client_ca_file: None,
        };
        let e = tls.tonic().expect_err("missing file");
        assert!(format!("{e:#}").contains("/nonexistent/cert.pem"), "{e:#}");
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked here").expect("write");
        let tls = ClientTls {
            ca_file: ca,
            cert_file: Some(dir.path().join("cert.pem")),
            key_file: None,
            domain: None,
        };
        let e = tls.tonic().expect_err("half an identity");
        assert!(e.to_string().contains("both cert_file and key_file"), "{e}");
    }
}
