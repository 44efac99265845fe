//! HTTPS for the emulated servers: an emulator CA, written out so probes can trust it, and a
//! leaf certificate per server name made on first use from the TLS SNI, so the certificate name
//! check works as it does against a real SUP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio_rustls::rustls::crypto::ring as provider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority")
    }
}

impl Authority {
    pub fn new() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "WSUS emulator CA");
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert,
            key,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM, for clients to trust.
    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    fn leaf(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.get(name) {
            return Some(k.clone());
        }
        let key = KeyPair::generate().ok()?;
        let mut params = CertificateParams::new(vec![name.to_string()]).ok()?;
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.cert, &self.key).ok()?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = provider::sign::any_supported_type(&der).ok()?;
        let chain = vec![
            CertificateDer::from(cert.der().to_vec()),
            CertificateDer::from(self.cert.der().to_vec()),
        ];
        let ck = Arc::new(CertifiedKey::new(chain, signing));
        cache.insert(name.to_string(), ck.clone());
        Some(ck)
    }
}

impl ResolvesServerCert for Authority {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.leaf(
            &hello
                .server_name()
                .unwrap_or("localhost")
                .to_ascii_lowercase(),
        )
    }
}

pub fn server_config(authority: Arc<Authority>) -> anyhow::Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(authority);
    let _ = rustls::version::TLS12;
    Ok(Arc::new(config))
}
