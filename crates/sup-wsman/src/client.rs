//! A WS-Management client over HTTP(S) with NTLM, as WinRM expects it (MS-WSMV 2.2.9): one
//! keep-alive connection per client, authenticated once by the three-leg handshake in
//! `Authorization: Negotiate` headers, and over plain HTTP every message sealed with the
//! established context (`multipart/encrypted`, MS-WSMV 2.2.9.1). A dropped connection is
//! re-established and re-authenticated on the next request.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use data_encoding::BASE64;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};

use crate::envelope::{self, Header, Message, action};
use crate::fault::Fault;
use crate::instance::Instance;
use crate::kerberos::{
    KERBEROS_ENCRYPTED_CONTENT_TYPE, KERBEROS_ENCRYPTED_PROTOCOL, KerberosInitiator,
};
use crate::ntlm::{self, ENCRYPTED_CONTENT_TYPE, Initiator, NtlmError, SPNEGO_ENCRYPTED_PROTOCOL};

const SOAP_CONTENT_TYPE: &str = "application/soap+xml;charset=UTF-8";

/// A password that never shows in logs or debug output.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a password from its reference: exactly one of an environment variable or a file
    /// (its trailing line break ignored). The error names the reference, never a value.
    pub fn from_reference(
        env: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let value = match (env, file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                format!("the password is to come from environment variable {var}, which is not set")
            })?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("the password file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            _ => {
                return Err(
                    "give the password as exactly one of an environment variable or a file".into(),
                );
            }
        };
        if value.is_empty() {
            return Err("the password is empty".into());
        }
        Ok(Self(value))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// How a client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// NTLM tokens under the `Negotiate` scheme, as pypsrp's `auth="ntlm"` sends them and
    /// every WinRM listener with Negotiate enabled (the default) accepts.
    Ntlm,
    /// Kerberos under the `Kerberos` scheme (WinRM's `Auth/Kerberos`, on by default), tickets
    /// from `kdc`, for the service `spn` (`HTTP/<host of the URL>` when not given: the name
    /// WinRM registers).
    Kerberos { kdc: url::Url, spn: Option<String> },
}

impl Auth {
    /// From configuration: `ntlm` or `negotiate` (NTLM either way), or `kerberos` with a KDC
    /// (`host`, `host:port` or `tcp://host:port`).
    pub fn parse(auth: &str, kdc: Option<&str>, spn: Option<&str>) -> Result<Self, String> {
        match auth.to_ascii_lowercase().as_str() {
            "ntlm" | "negotiate" => Ok(Auth::Ntlm),
            "kerberos" => {
                let kdc = kdc.ok_or("kerberos needs the KDC's address (kdc)")?;
                Ok(Auth::Kerberos {
                    kdc: crate::kerberos::kdc_url(kdc)?,
                    spn: spn.map(str::to_owned),
                })
            }
            other => Err(format!("{other:?}: ntlm, negotiate or kerberos")),
        }
    }
}

/// How to reach and authenticate to one WinRM endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://host:5985/wsman` or `https://host:5986/wsman`.
    pub url: String,
    /// `DOMAIN\user` (or `user@domain`).
    pub user: String,
    pub password: Password,
    /// PEM file of the CA that signed an HTTPS listener's certificate; the system's roots
    /// otherwise.
    pub ca_file: Option<PathBuf>,
    /// Where to connect instead of resolving the URL's host (the `Host` header and the TLS name
    /// stay the URL's).
    pub connect_to: Option<SocketAddr>,
    pub timeout: Duration,
    pub auth: Auth,
}

#[derive(Debug, thiserror::Error)]
pub enum WsmanError {
    /// Could not connect, or no answer in time: retrying can help.
    #[error("WinRM at {endpoint} unreachable: {message}")]
    Unreachable { endpoint: String, message: String },
    /// The credentials were refused.
    #[error("WinRM at {endpoint} refused the credentials of {user}: {message}")]
    AuthFailed {
        endpoint: String,
        user: String,
        message: String,
    },
    /// The service answered with a fault.
    #[error("{operation} of {class} failed: {}{}{}", fault.message, fault.wmi_code.map(|c| format!(" (WMI 0x{c:08X})")).unwrap_or_default(), fault.wsman_code.map(|c| format!(" (WinRM {c})")).unwrap_or_default())]
    Fault {
        operation: String,
        class: String,
        fault: Box<Fault>,
    },
    /// The answer was not what WS-Management answers.
    #[error("WinRM at {endpoint}: {message}")]
    Protocol { endpoint: String, message: String },
    #[error("WinRM endpoint {0}")]
    Config(String),
}

impl WsmanError {
    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        match self {
            WsmanError::Unreachable { .. } => true,
            WsmanError::Fault { fault, .. } => {
                fault.wmi_code == Some(crate::fault::code::WBEM_E_TIMED_OUT)
                    || fault.wsman_code == Some(crate::fault::code::WSMAN_OPERATION_TIMEDOUT)
                    || fault.subcode == "TimedOut"
            }
            _ => false,
        }
    }
}

struct Url {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, WsmanError> {
    let bad = || WsmanError::Config(format!("{url:?} is not http(s)://host[:port]/path"));
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, "wsman"));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
        None => (authority, if https { 5986 } else { 5985 }),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Url {
        https,
        host: host.to_string(),
        port,
        path: format!("/{path}"),
    })
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// The established security context: sealing over HTTP.
    context: Context,
}

/// A security context of either kind, with what goes with it on the wire.
enum Context {
    Ntlm(Box<Initiator>),
    Kerberos(Box<KerberosInitiator>),
}

impl Context {
    /// The `Authorization` scheme its tokens travel in.
    fn scheme(&self) -> &'static str {
        match self {
            Context::Ntlm(_) => "Negotiate",
            Context::Kerberos(_) => "Kerberos",
        }
    }

    fn protocol(&self) -> (&'static str, &'static str) {
        match self {
            Context::Ntlm(_) => (SPNEGO_ENCRYPTED_PROTOCOL, ENCRYPTED_CONTENT_TYPE),
            Context::Kerberos(_) => (KERBEROS_ENCRYPTED_PROTOCOL, KERBEROS_ENCRYPTED_CONTENT_TYPE),
        }
    }

    fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>, NtlmError> {
        match self {
            Context::Ntlm(c) => c.step(input),
            Context::Kerberos(c) => c.step(input),
        }
    }

    fn is_complete(&self) -> bool {
        match self {
            Context::Ntlm(c) => c.is_complete(),
            Context::Kerberos(c) => c.is_complete(),
        }
    }

    fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), NtlmError> {
        match self {
            Context::Ntlm(c) => c.wrap(plain),
            Context::Kerberos(c) => c.wrap(plain),
        }
    }

    fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NtlmError> {
        match self {
            Context::Ntlm(c) => c.unwrap(header, sealed),
            Context::Kerberos(c) => c.unwrap(header, sealed),
        }
    }
}

/// One WinRM endpoint.
pub struct Client {
    endpoint: Endpoint,
    url: Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.endpoint.url)
            .field("user", &self.endpoint.user)
            .finish()
    }
}

fn tls_config(ca_file: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>, WsmanError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| WsmanError::Config(format!("CA file {}: {e}", path.display())))?;
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert
                    .map_err(|e| WsmanError::Config(format!("CA file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| WsmanError::Config(format!("CA file {}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot read is one the server cannot have used.
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| WsmanError::Config(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

fn negotiate_token(h: &hyper::HeaderMap) -> Option<Vec<u8>> {
    h.get_all(WWW_AUTHENTICATE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        (scheme.eq_ignore_ascii_case("Negotiate")
            || scheme.eq_ignore_ascii_case("NTLM")
            || scheme.eq_ignore_ascii_case("Kerberos"))
        .then(|| BASE64.decode(token.trim().as_bytes()).ok())
        .flatten()
    })
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Result<Self, WsmanError> {
        let url = parse_url(&endpoint.url)?;
        let tls = if url.https {
            Some(tls_config(endpoint.ca_file.as_ref())?)
        } else {
            None
        };
        Ok(Self {
            endpoint,
            url,
            tls,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    fn unreachable(&self, message: impl fmt::Display) -> WsmanError {
        WsmanError::Unreachable {
            endpoint: self.endpoint.url.clone(),
            message: message.to_string(),
        }
    }

    fn protocol(&self, message: impl fmt::Display) -> WsmanError {
        WsmanError::Protocol {
            endpoint: self.endpoint.url.clone(),
            message: message.to_string(),
        }
    }

    /// Connects; over TLS also returns the channel binding of the server's certificate
    /// (`tls-server-end-point`, RFC 5929, SHA-256), which WinRM's extended protection checks.
    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, Option<Vec<u8>>), WsmanError> {
        let addr = match self.endpoint.connect_to {
            Some(a) => a.to_string(),
            None => format!("{}:{}", self.url.host, self.url.port),
        };
        let tcp = tokio::time::timeout(self.endpoint.timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| self.unreachable(format!("connecting to {addr} timed out")))?
            .map_err(|e| self.unreachable(format!("connecting to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        macro_rules! handshake {
            ($io:expr) => {{
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new($io))
                    .await
                    .map_err(|e| self.unreachable(e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }};
        }
        Ok(match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(self.url.host.clone())
                    .map_err(|e| WsmanError::Config(format!("{}: {e}", self.url.host)))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| self.unreachable(format!("TLS: {e}")))?;
                let binding = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|cert| {
                        let hash = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
                        [b"tls-server-end-point:".as_slice(), hash.as_ref()].concat()
                    });
                (handshake!(stream), binding)
            }
            None => (handshake!(tcp), None),
        })
    }

    fn request(
        &self,
        body: Bytes,
        content_type: &str,
        authorization: Option<String>,
    ) -> Result<hyper::Request<Full<Bytes>>, WsmanError> {
        let host = if (self.url.https && self.url.port == 443)
            || (!self.url.https && self.url.port == 80)
        {
            self.url.host.clone()
        } else {
            format!("{}:{}", self.url.host, self.url.port)
        };
        let mut b = hyper::Request::post(&self.url.path)
            .header(HOST, host)
            .header(CONTENT_TYPE, content_type)
            .header("User-Agent", "Microsoft WinRM Client");
        if let Some(a) = authorization {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(Full::new(body)).map_err(|e| self.protocol(e))
    }

    async fn roundtrip(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::StatusCode, hyper::HeaderMap, Bytes), WsmanError> {
        let call = async {
            sender.ready().await.map_err(|e| self.unreachable(e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| self.unreachable(e))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(self.endpoint.timeout, call)
            .await
            .map_err(|_| self.unreachable("no answer in time"))?
    }

    /// A fresh security context for this endpoint's authentication.
    fn context(&self, channel_binding: Option<&[u8]>) -> Result<Context, NtlmError> {
        let password = self.endpoint.password.expose();
        Ok(match &self.endpoint.auth {
            Auth::Ntlm => {
                let mut c = Initiator::new(&self.endpoint.user, password, None)?;
                if let Some(binding) = channel_binding {
                    c.set_channel_bindings(binding);
                }
                Context::Ntlm(Box::new(c))
            }
            Auth::Kerberos { kdc, spn } => {
                let spn = spn
                    .clone()
                    .unwrap_or_else(|| format!("HTTP/{}", self.url.host));
                let mut c = KerberosInitiator::new(
                    &self.endpoint.user,
                    password,
                    &spn,
                    kdc.clone(),
                    self.endpoint.timeout,
                )?;
                // Windows' Kerberos reads the bindings (MS-KILE 3.2.5.8); a listener whose
                // CbtHardeningLevel is Strict requires them over HTTPS.
                if let Some(binding) = channel_binding {
                    c.set_channel_bindings(binding);
                }
                Context::Kerberos(Box::new(c))
            }
        })
    }

    /// Connects and runs the handshake with empty bodies, as WinRM clients that seal do:
    /// NTLM's three legs, or Kerberos' AP-REQ answered by a 200 carrying the AP-REP.
    async fn authenticate(&self) -> Result<Conn, WsmanError> {
        let (mut sender, channel_binding) = self.connect().await?;
        let failed = |message: String| WsmanError::AuthFailed {
            endpoint: self.endpoint.url.clone(),
            user: self.endpoint.user.clone(),
            message,
        };
        let context = self
            .context(channel_binding.as_deref())
            .map_err(|e| failed(e.to_string()))?;
        let mut context = Some(context);
        let mut input: Option<Vec<u8>> = None;
        // Bounded: NTLM takes two client tokens, Kerberos one.
        for _ in 0..4 {
            // A Kerberos step asks the KDC over the network: off the async threads.
            let (ctx, token) = {
                let mut ctx = context.take().ok_or_else(|| failed("no context".into()))?;
                let input = input.take();
                tokio::task::spawn_blocking(move || {
                    let token = ctx.step(input.as_deref());
                    (ctx, token)
                })
                .await
                .map_err(|e| failed(e.to_string()))?
            };
            let token = token.map_err(|e| failed(e.to_string()))?;
            let scheme = ctx.scheme();
            context = Some(ctx);
            let Some(token) = token else { break };
            let req = self.request(
                Bytes::new(),
                SOAP_CONTENT_TYPE,
                Some(format!("{scheme} {}", BASE64.encode(&token))),
            )?;
            let (status, headers, _) = self.roundtrip(&mut sender, req).await?;
            let complete = context.as_ref().is_some_and(Context::is_complete);
            if status == hyper::StatusCode::UNAUTHORIZED {
                if complete {
                    return Err(failed("the server refused the authentication".into()));
                }
                input =
                    Some(negotiate_token(&headers).ok_or_else(|| {
                        failed(format!("the server offered no {scheme} challenge"))
                    })?);
                continue;
            }
            if !status.is_success() {
                return Err(failed(format!("expected 401 or 200, got {status}")));
            }
            if complete {
                break;
            }
            // Mutual authentication: the 200 carries the server's last token.
            input = Some(negotiate_token(&headers).ok_or_else(|| {
                failed("the server accepted without proving itself (no token in its 200)".into())
            })?);
        }
        match context {
            Some(context) if context.is_complete() => Ok(Conn { sender, context }),
            _ => Err(failed("the handshake did not complete".into())),
        }
    }

    /// Sends one envelope and reads the answer, re-connecting once if a kept-alive connection
    /// turned out to be closed.
    async fn exchange(&self, envelope: String, message_id: &str) -> Result<Message, WsmanError> {
        let mut guard = self.conn.lock().await;
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(self.authenticate().await?);
            }
            let Some(conn) = guard.as_mut() else {
                continue;
            };
            let (body, content_type) = if self.url.https {
                (Bytes::from(envelope.clone()), SOAP_CONTENT_TYPE)
            } else {
                let (protocol, content_type) = conn.context.protocol();
                let (header, sealed) = conn
                    .context
                    .wrap(envelope.as_bytes())
                    .map_err(|e| self.protocol(e))?;
                (
                    Bytes::from(ntlm::encode_multipart(
                        protocol,
                        envelope.len(),
                        &header,
                        &sealed,
                    )),
                    content_type,
                )
            };
            let req = self.request(body, content_type, None)?;
            let (status, headers, bytes) = match self.roundtrip(&mut conn.sender, req).await {
                Ok(r) => r,
                Err(e) if attempt == 0 => {
                    tracing::debug!(error = %e, "WinRM connection lost; reconnecting");
                    *guard = None;
                    continue;
                }
                Err(e) => {
                    *guard = None;
                    return Err(e);
                }
            };
            if status == hyper::StatusCode::UNAUTHORIZED {
                *guard = None;
                if attempt == 0 {
                    continue;
                }
                return Err(WsmanError::AuthFailed {
                    endpoint: self.endpoint.url.clone(),
                    user: self.endpoint.user.clone(),
                    message: "the server no longer accepts this connection's authentication".into(),
                });
            }
            let sealed = headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/encrypted"));
            let plain = if sealed {
                let (len, header, data) =
                    ntlm::decode_multipart(&bytes).map_err(|e| self.protocol(e))?;
                let plain = conn
                    .context
                    .unwrap(&header, &data)
                    .map_err(|e| self.protocol(e))?;
                if plain.len() != len {
                    return Err(self.protocol(format!(
                        "sealed answer of {} bytes, declared {len}",
                        plain.len()
                    )));
                }
                plain
            } else if !self.url.https && !bytes.is_empty() {
                *guard = None;
                return Err(self.protocol(format!(
                    "an unsealed answer ({status}) over HTTP: WinRM seals every message"
                )));
            } else {
                bytes.to_vec()
            };
            if !(status.is_success() || status == hyper::StatusCode::INTERNAL_SERVER_ERROR) {
                return Err(self.protocol(format!("HTTP {status}")));
            }
            let msg = envelope::parse(&plain).map_err(|e| self.protocol(e))?;
            if msg.header.relates_to != message_id && msg.fault().is_none() {
                return Err(self.protocol(format!(
                    "answer relates to {:?}, not to {message_id}",
                    msg.header.relates_to
                )));
            }
            return Ok(msg);
        }
        Err(self.unreachable("the connection closed twice"))
    }

    fn header(
        &self,
        resource_uri: &str,
        action: &str,
        selectors: &[(String, String)],
        options: &[(String, String)],
    ) -> Header {
        Header {
            to: self.endpoint.url.clone(),
            resource_uri: resource_uri.to_string(),
            action: action.to_string(),
            message_id: format!("uuid:{}", uuid::Uuid::new_v4().to_string().to_uppercase()),
            relates_to: String::new(),
            selectors: selectors.to_vec(),
            options: options.to_vec(),
            operation_timeout: format!("PT{}.000S", self.endpoint.timeout.as_secs().max(1)),
            max_envelope_size: 512_000,
        }
    }

    async fn call(&self, operation: &str, h: Header, body: &str) -> Result<Message, WsmanError> {
        let msg = self
            .exchange(envelope::request(&h, body), &h.message_id)
            .await?;
        if let Some(fault) = msg.fault() {
            return Err(WsmanError::Fault {
                operation: operation.to_string(),
                class: class_of(&h.resource_uri).to_string(),
                fault: Box::new(fault),
            });
        }
        Ok(msg)
    }

    /// Get of one instance by its keys.
    pub async fn get(
        &self,
        class_uri: &str,
        selectors: &[(String, String)],
        options: &[(String, String)],
    ) -> Result<Instance, WsmanError> {
        let h = self.header(class_uri, action::GET, selectors, options);
        let msg = self.call("Get", h, "").await?;
        msg.payload()
            .map(Instance::from_element)
            .ok_or_else(|| self.protocol("a Get answered without an instance"))
    }

    /// Put of a whole instance.
    pub async fn put(
        &self,
        class_uri: &str,
        selectors: &[(String, String)],
        instance: &Instance,
        options: &[(String, String)],
    ) -> Result<Option<Instance>, WsmanError> {
        let h = self.header(class_uri, action::PUT, selectors, options);
        let msg = self
            .call("Put", h, &instance.to_xml(namespace_of(class_uri)))
            .await?;
        Ok(msg.payload().map(Instance::from_element))
    }

    pub async fn create(
        &self,
        class_uri: &str,
        instance: &Instance,
        options: &[(String, String)],
    ) -> Result<(), WsmanError> {
        let h = self.header(class_uri, action::CREATE, &[], options);
        self.call("Create", h, &instance.to_xml(namespace_of(class_uri)))
            .await?;
        Ok(())
    }

    pub async fn delete(
        &self,
        class_uri: &str,
        selectors: &[(String, String)],
        options: &[(String, String)],
    ) -> Result<(), WsmanError> {
        let h = self.header(class_uri, action::DELETE, selectors, options);
        self.call("Delete", h, "").await?;
        Ok(())
    }

    /// Every instance a WQL query selects in a WMI namespace: an optimized Enumerate, then Pull
    /// until the end of the sequence.
    pub async fn query(
        &self,
        namespace: &str,
        wql: &str,
        options: &[(String, String)],
    ) -> Result<Vec<Instance>, WsmanError> {
        let ruri = crate::instance::class_uri(namespace, "*");
        let h = self.header(&ruri, action::ENUMERATE, &[], options);
        let msg = self
            .call("Enumerate", h, &envelope::enumerate_wql(wql, 512))
            .await?;
        let mut page = envelope::page(
            msg.payload()
                .ok_or_else(|| self.protocol("an empty EnumerateResponse"))?,
        );
        let mut items = std::mem::take(&mut page.items);
        while !page.end {
            let Some(ctx) = page.context.take() else {
                break;
            };
            let h = self.header(&ruri, action::PULL, &[], options);
            let msg = self.call("Pull", h, &envelope::pull(&ctx, 512)).await?;
            page = envelope::page(
                msg.payload()
                    .ok_or_else(|| self.protocol("an empty PullResponse"))?,
            );
            items.append(&mut page.items);
        }
        Ok(items)
    }

    /// Invokes a method of a class (static: no selectors) or of an instance; returns the
    /// `<Method>_OUTPUT` object (out-parameters and `ReturnValue`).
    pub async fn invoke(
        &self,
        class_uri: &str,
        method: &str,
        params: &[(&str, &str)],
        selectors: &[(String, String)],
        options: &[(String, String)],
    ) -> Result<Instance, WsmanError> {
        let h = self.header(
            class_uri,
            &format!("{class_uri}/{method}"),
            selectors,
            options,
        );
        let msg = self
            .call(
                method,
                h,
                &envelope::invoke_input(class_uri, method, params),
            )
            .await?;
        msg.payload()
            .map(Instance::from_element)
            .ok_or_else(|| self.protocol(format!("{method} answered without output")))
    }
}

fn class_of(resource_uri: &str) -> &str {
    resource_uri.rsplit('/').next().unwrap_or(resource_uri)
}

fn namespace_of(class_uri: &str) -> &str {
    class_uri.rsplit_once('/').map_or(class_uri, |(ns, _)| ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_default_winrm_ports_and_path() {
        let u = parse_url("http://cen-site.corp.example.com/wsman").unwrap();
        assert_eq!((u.https, u.port, u.path.as_str()), (false, 5985, "/wsman"));
        let u = parse_url("https://10.0.0.1:443/wsman").unwrap();
        assert_eq!((u.https, u.host.as_str(), u.port), (true, "10.0.0.1", 443));
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://:80/wsman").is_err());
    }

    #[test]
    fn auth_settings_read_as_configured() {
        assert_eq!(Auth::parse("NTLM", None, None), Ok(Auth::Ntlm));
        assert_eq!(Auth::parse("negotiate", None, None), Ok(Auth::Ntlm));
        let Ok(Auth::Kerberos { kdc, spn }) =
            Auth::parse("kerberos", Some("dc01.corp.example"), Some("WSMAN/cen"))
        else {
            panic!("kerberos with a KDC")
        };
        assert_eq!(kdc.as_str(), "tcp://dc01.corp.example:88");
        assert_eq!(spn.as_deref(), Some("WSMAN/cen"));
        assert!(
            Auth::parse("kerberos", None, None)
                .unwrap_err()
                .contains("KDC")
        );
        assert!(
            Auth::parse("basic", None, None)
                .unwrap_err()
                .contains("ntlm")
        );
    }

    #[test]
    fn a_password_never_prints() {
        let e = Endpoint {
            url: "http://x/wsman".into(),
            user: "CORP\\svc".into(),
            password: Password::new("hunter2"),
            ca_file: None,
            connect_to: None,
            timeout: Duration::from_secs(1),
            auth: Auth::Ntlm,
        };
        assert!(!format!("{e:?}").contains("hunter2"));
    }
}
