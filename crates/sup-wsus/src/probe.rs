//! The probe ladder of a SUP's WSUS web site.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_rustls::rustls::{self, pki_types::ServerName};

use crate::*;

/// How one step of the ladder went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeResult {
    Ok,
    ConnectFailed,
    TlsFailed,
    Timeout,
    HtmlError,
    SoapFault,
    BadResponse,
}

impl ProbeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Ok => "ok",
            ProbeResult::ConnectFailed => "connect_failed",
            ProbeResult::TlsFailed => "tls_failed",
            ProbeResult::Timeout => "timeout",
            ProbeResult::HtmlError => "html_error",
            ProbeResult::SoapFault => "soap_fault",
            ProbeResult::BadResponse => "bad_response",
        }
    }
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// `tcp`, `tls`, `server_sync`, `client_web_service`, `simple_auth_wsdl`, `dss_auth_wsdl`,
    /// `reporting_wsdl`, `selfupdate`.
    pub name: &'static str,
    pub result: ProbeResult,
    pub detail: String,
    pub latency: Duration,
}

/// Where and how to probe one server.
#[derive(Debug, Clone)]
pub struct Target {
    /// The SUP's FQDN (the HTTP Host, and the name its certificate must carry).
    pub host: String,
    /// The address to reach its HTTP port at (resolved by the caller, so labs can override
    /// names and ports).
    pub addr: SocketAddr,
    /// The address to reach its HTTPS port at.
    pub https_addr: SocketAddr,
    /// The WSUS web site's ports, as the site declares them (they name the site in `Host`).
    pub http_port: u16,
    pub https_port: u16,
    /// The web site requires SSL: the TLS handshake is checked, and the SOAP and WSDL steps go
    /// over HTTPS (WSUS then refuses them over HTTP with IIS's 403.4).
    pub ssl: bool,
}

/// A prober with its HTTP client and TLS trust.
#[derive(Clone)]
pub struct Prober {
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    /// One client for every ladder: requests go to the resolved address with the server's name
    /// in `Host`, so nothing is built per probe. `Err` holds why it could not be built.
    http: Result<reqwest::Client, String>,
}

/// Classifies an HTTP answer to a SOAP call: text/xml with the expected element is ok; HTML is
/// an IIS/ASP.NET error page; a SOAP fault means the service is up but failing.
pub fn classify_soap(
    status: u16,
    content_type: &str,
    body: &str,
    expect: &[&str],
) -> (ProbeResult, String) {
    let ct = content_type.to_ascii_lowercase();
    if ct.starts_with("text/html")
        || body
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("<!doctype html")
        || body.trim_start().starts_with("<html")
    {
        return (
            ProbeResult::HtmlError,
            format!("HTTP {status} with an HTML page (IIS or ASP.NET error)"),
        );
    }
    if body.contains(":Fault>") || body.contains("<Fault>") {
        let reason = body
            .split("<faultstring>")
            .nth(1)
            .and_then(|r| r.split("</faultstring>").next())
            .unwrap_or("SOAP fault");
        let code = body
            .split("<ErrorCode>")
            .nth(1)
            .and_then(|r| r.split("</ErrorCode>").next());
        return (
            ProbeResult::SoapFault,
            match code {
                Some(c) => format!("HTTP {status} SOAP fault {c}: {reason}"),
                None => format!("HTTP {status} SOAP fault: {reason}"),
            },
        );
    }
    if status != 200 || !ct.starts_with("text/xml") {
        return (
            ProbeResult::BadResponse,
            format!("HTTP {status}, content type {content_type:?}"),
        );
    }
    match expect.iter().find(|e| !body.contains(**e)) {
        Some(missing) => (
            ProbeResult::BadResponse,
            format!("the answer lacks {missing}"),
        ),
        None => (ProbeResult::Ok, String::new()),
    }
}

fn classify_error(e: &reqwest::Error) -> (ProbeResult, String) {
    if e.is_timeout() {
        (ProbeResult::Timeout, e.to_string())
    } else if e.is_connect() {
        (ProbeResult::ConnectFailed, e.to_string())
    } else {
        // A reset or a connection closed without an answer: the server is not serving.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        (ProbeResult::ConnectFailed, msg)
    }
}

impl Prober {
    /// `roots`: PEM certificates to trust for TLS (none: TLS probes fail verification).
    pub fn new(timeout: Duration, roots_pem: &[u8]) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for der in pem_certificates(roots_pem) {
            let _ = roots.add(der.into());
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2 is supported by ring")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        });
        // A ladder's steps share one connection; it is closed soon after, so thousands of servers
        // leave no sockets open between rounds.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string());
        Self {
            timeout,
            tls: Arc::new(tls),
            http,
        }
    }

    /// Runs the whole ladder. A failed TCP connect ends it early (nothing else can answer).
    pub async fn probe(&self, t: &Target) -> Vec<Component> {
        let mut out = Vec::new();
        let started = Instant::now();
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(t.addr)).await;
        let (result, detail) = match tcp {
            Ok(Ok(_)) => (ProbeResult::Ok, String::new()),
            Ok(Err(e)) => (ProbeResult::ConnectFailed, e.to_string()),
            Err(_) => (
                ProbeResult::Timeout,
                format!("no TCP connection within {:?}", self.timeout),
            ),
        };
        out.push(Component {
            name: "tcp",
            result,
            detail,
            latency: started.elapsed(),
        });
        if result != ProbeResult::Ok {
            return out;
        }
        let client = match &self.http {
            Ok(c) => c,
            Err(e) => {
                out.push(Component {
                    name: "server_sync",
                    result: ProbeResult::BadResponse,
                    detail: format!("building an HTTP client: {e}"),
                    latency: Duration::ZERO,
                });
                return out;
            }
        };
        let mut plain = Channel::Http {
            client,
            base: format!("http://{}", t.addr),
            host: host_header(&t.host, t.http_port, 80),
        };
        // An SSL web site serves its web services over HTTPS only: those steps share the TLS
        // step's session; without one they are not tried.
        let mut secure: Result<Channel<'_>, Failure> =
            Err((ProbeResult::TlsFailed, "not tried: no TLS session".into()));
        if t.ssl {
            let (component, session) = self.tls(t).await;
            secure = match session {
                Some(sender) => Ok(Channel::Https {
                    sender,
                    host: host_header(&t.host, t.https_port, 443),
                }),
                None => Err((component.result, format!("not tried: {}", component.detail))),
            };
            out.push(component);
        }
        let sync_action = format!("{NS_SERVER_SYNC}/GetAuthConfig");
        let client_action = format!("{NS_CLIENT}/GetConfig");
        // The steps run one after another over one kept-alive connection per channel (a client
        // of the server does the same), rather than six connections at once. Once a step of a
        // channel cannot connect or times out, its later steps would only wait as long again:
        // they are reported as not tried.
        let mut stopped: [Option<(ProbeResult, &'static str)>; 2] = [None, None];
        for (step, name) in LADDER.iter().copied().enumerate() {
            let web_service = step < 5;
            let over_https = t.ssl && web_service;
            let lane = usize::from(over_https);
            if let Some((result, by)) = stopped[lane] {
                out.push(Component {
                    name,
                    result,
                    detail: format!("not tried: {by} failed"),
                    latency: Duration::ZERO,
                });
                continue;
            }
            let channel = if over_https {
                match &mut secure {
                    Ok(c) => c,
                    Err((result, detail)) => {
                        out.push(Component {
                            name,
                            result: *result,
                            detail: detail.clone(),
                            latency: Duration::ZERO,
                        });
                        continue;
                    }
                }
            } else {
                &mut plain
            };
            let t0 = Instant::now();
            let (result, detail) = match step {
                0 => {
                    self.soap(
                        channel,
                        PATH_SERVER_SYNC,
                        &sync_action,
                        get_auth_config(),
                        &["GetAuthConfigResponse", "<PlugInID>DssTargeting</PlugInID>"],
                    )
                    .await
                }
                1 => {
                    self.soap(
                        channel,
                        PATH_CLIENT,
                        &client_action,
                        get_config(),
                        &["GetConfigResponse", "SimpleTargeting"],
                    )
                    .await
                }
                2 => self.wsdl(channel, PATH_SIMPLE_AUTH, NS_SIMPLE_AUTH).await,
                3 => self.wsdl(channel, PATH_DSS_AUTH, NS_DSS_AUTH).await,
                4 => self.wsdl(channel, PATH_REPORTING, NS_REPORTING).await,
                _ => self.selfupdate(channel).await,
            };
            if matches!(result, ProbeResult::ConnectFailed | ProbeResult::Timeout) {
                stopped[lane] = Some((result, name));
            }
            out.push(Component {
                name,
                result,
                detail,
                latency: t0.elapsed(),
            });
        }
        out
    }

    async fn soap(
        &self,
        c: &mut Channel<'_>,
        path: &str,
        action: &str,
        body: String,
        expect: &[&str],
    ) -> (ProbeResult, String) {
        match c
            .exchange(
                self.timeout,
                reqwest::Method::POST,
                path,
                Some(action),
                body,
            )
            .await
        {
            Ok(a) => classify_soap(a.status, &a.content_type, &a.text, expect),
            Err(e) => e,
        }
    }

    async fn wsdl(&self, c: &mut Channel<'_>, path: &str, ns: &str) -> (ProbeResult, String) {
        let namespace = format!("targetNamespace=\"{ns}\"");
        match c
            .exchange(
                self.timeout,
                reqwest::Method::GET,
                &format!("{path}?WSDL"),
                None,
                String::new(),
            )
            .await
        {
            Ok(a) => classify_soap(
                a.status,
                &a.content_type,
                &a.text,
                &["wsdl:definitions", &namespace],
            ),
            Err(e) => e,
        }
    }

    async fn selfupdate(&self, c: &mut Channel<'_>) -> (ProbeResult, String) {
        match c
            .exchange(
                self.timeout,
                reqwest::Method::GET,
                PATH_SELFUPDATE,
                None,
                String::new(),
            )
            .await
        {
            Ok(a) => match (a.status, a.content_type.starts_with("text/html")) {
                (200, false) => (ProbeResult::Ok, String::new()),
                (status, true) => (
                    ProbeResult::HtmlError,
                    format!("HTTP {status} with an HTML page"),
                ),
                (status, _) => (ProbeResult::BadResponse, format!("HTTP {status}")),
            },
            Err(e) => e,
        }
    }

    /// The TLS step: a handshake on the HTTPS port with the certificate's name checked against
    /// the server's; the session it opens carries the SSL steps.
    async fn tls(
        &self,
        t: &Target,
    ) -> (
        Component,
        Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>>,
    ) {
        let started = Instant::now();
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(t.https_addr)
                .await
                .map_err(|e| (ProbeResult::ConnectFailed, e.to_string()))?;
            let name = ServerName::try_from(t.host.clone())
                .map_err(|e| (ProbeResult::TlsFailed, e.to_string()))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| (ProbeResult::TlsFailed, e.to_string()))?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| (ProbeResult::ConnectFailed, e.to_string()))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok::<_, Failure>(sender)
        };
        let (result, detail, sender) = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(sender)) => (ProbeResult::Ok, String::new(), Some(sender)),
            Ok(Err((result, detail))) => (result, detail, None),
            Err(_) => (
                ProbeResult::Timeout,
                "no TLS handshake in time".into(),
                None,
            ),
        };
        (
            Component {
                name: "tls",
                result,
                detail,
                latency: started.elapsed(),
            },
            sender,
        )
    }
}

/// The HTTP steps of a ladder, in the order they run.
pub const LADDER: [&str; 6] = [
    "server_sync",
    "client_web_service",
    "simple_auth_wsdl",
    "dss_auth_wsdl",
    "reporting_wsdl",
    "selfupdate",
];

/// The `Host` a request to `port` of `host` carries: the port is left out when it is the scheme's.
fn host_header(host: &str, port: u16, default: u16) -> String {
    if port == default {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// An answer's `Content-Type`, empty when it has none.
fn content_type(headers: &hyper::HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

type Failure = (ProbeResult, String);

/// One connection a ladder's steps take in turn.
enum Channel<'a> {
    /// Plain HTTP through the shared client, to the resolved address with the server's name in
    /// `Host`.
    Http {
        client: &'a reqwest::Client,
        base: String,
        host: String,
    },
    /// HTTPS over the TLS session the `tls` step opened (the certificate's name checked).
    Https {
        sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
        host: String,
    },
}

impl Channel<'_> {
    /// Sends one request and reads its answer within `timeout`.
    async fn exchange(
        &mut self,
        timeout: Duration,
        method: reqwest::Method,
        path: &str,
        soap_action: Option<&str>,
        body: String,
    ) -> Result<Answer, Failure> {
        match self {
            Channel::Http { client, base, host } => {
                let mut r = client
                    .request(method, format!("{base}{path}"))
                    .header(reqwest::header::HOST, host.as_str());
                if let Some(action) = soap_action {
                    r = r
                        .header("Content-Type", "text/xml; charset=utf-8")
                        .header("SOAPAction", format!("\"{action}\""))
                        .body(body);
                }
                let resp = r.send().await.map_err(|e| classify_error(&e))?;
                let status = resp.status().as_u16();
                let content_type = content_type(resp.headers());
                let bytes = resp.bytes().await.map_err(|e| classify_error(&e))?;
                Ok(Answer {
                    status,
                    content_type,
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                })
            }
            Channel::Https { sender, host } => {
                let mut b = hyper::Request::builder()
                    .method(method.as_str())
                    .uri(path)
                    .header("Host", host.as_str());
                if let Some(action) = soap_action {
                    b = b
                        .header("Content-Type", "text/xml; charset=utf-8")
                        .header("SOAPAction", format!("\"{action}\""));
                }
                let req = b
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .map_err(|e| (ProbeResult::BadResponse, e.to_string()))?;
                let exchange = async {
                    sender
                        .ready()
                        .await
                        .map_err(|e| (ProbeResult::ConnectFailed, e.to_string()))?;
                    let resp = sender
                        .send_request(req)
                        .await
                        .map_err(|e| (ProbeResult::ConnectFailed, e.to_string()))?;
                    let status = resp.status().as_u16();
                    let content_type = content_type(resp.headers());
                    let body = http_body_util::BodyExt::collect(resp.into_body())
                        .await
                        .map_err(|e| (ProbeResult::ConnectFailed, e.to_string()))?
                        .to_bytes();
                    Ok(Answer {
                        status,
                        content_type,
                        text: String::from_utf8_lossy(&body).into_owned(),
                    })
                };
                tokio::time::timeout(timeout, exchange)
                    .await
                    .unwrap_or_else(|_| {
                        Err((
                            ProbeResult::Timeout,
                            format!("no answer over HTTPS within {timeout:?}"),
                        ))
                    })
            }
        }
    }
}

/// The DER certificates in a PEM bundle.
pub fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut b64 = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            inside = true;
            b64.clear();
        } else if line.starts_with("-----END CERTIFICATE") {
            inside = false;
            out.push(base64(&b64));
        } else if inside {
            b64.push_str(line.trim());
        }
    }
    out
}

fn base64(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let Some(v) = T.iter().position(|t| *t == c) else {
            continue;
        };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers() {
        let ok = "<soap:Envelope><soap:Body><GetAuthConfigResponse><PlugInID>DssTargeting</PlugInID></GetAuthConfigResponse></soap:Body></soap:Envelope>";
        assert_eq!(
            classify_soap(
                200,
                "text/xml; charset=utf-8",
                ok,
                &["GetAuthConfigResponse"]
            )
            .0,
            ProbeResult::Ok
        );
        assert_eq!(
            classify_soap(503, "text/html", "<html>Service Unavailable</html>", &[]).0,
            ProbeResult::HtmlError
        );
        assert_eq!(
            classify_soap(200, "text/html; charset=utf-8", "<!DOCTYPE html><p>", &[]).0,
            ProbeResult::HtmlError,
            "an error page served with 200"
        );
        let fault = "<soap:Envelope><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>Fault occurred</faultstring><detail><ErrorCode>InternalServerError</ErrorCode></detail></soap:Fault></soap:Body></soap:Envelope>";
        let (r, d) = classify_soap(500, "text/xml; charset=utf-8", fault, &[]);
        assert_eq!(r, ProbeResult::SoapFault);
        assert!(d.contains("InternalServerError"), "{d}");
        assert_eq!(
            classify_soap(200, "text/xml", "<x/>", &["GetConfigResponse"]).0,
            ProbeResult::BadResponse
        );
        assert_eq!(
            classify_soap(200, "application/json", "{}", &[]).0,
            ProbeResult::BadResponse
        );
        assert_eq!(
            classify_soap(200, "text/xml", "\u{0}\u{1}garbage", &["x"]).0,
            ProbeResult::BadResponse
        );
    }

    #[test]
    fn pem_bundles() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\njunk\n-----BEGIN CERTIFICATE-----\n/w==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_certificates(pem.as_bytes()),
            vec![vec![0, 1, 2], vec![255]]
        );
    }
}

#[cfg(test)]
mod wire_tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers every connection with `behave`.
    async fn server(behave: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    match behave {
                        "garbage" => {
                            let _ = s.write_all(b"\x00\x01\xffNOT HTTP AT ALL\r\n\r\n").await;
                        }
                        "trickle" => {
                            for b in b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n" {
                                if s.write_all(&[*b]).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                        "reset" => drop(s),
                        _ => {
                            let body = "<html><body>Server Error</body></html>";
                            let _ = s
                                .write_all(format!("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
                                .await;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Runs the ladder; it must return (a stalled probe would hang the test).
    async fn ladder(addr: SocketAddr) -> Vec<Component> {
        let p = Prober::new(Duration::from_millis(500), b"");
        p.probe(&Target {
            host: "sup01.corp.example.com".into(),
            addr,
            https_addr: addr,
            http_port: addr.port(),
            https_port: addr.port(),
            ssl: false,
        })
        .await
    }

    fn result_of(c: &[Component], name: &str) -> ProbeResult {
        c.iter()
            .find(|x| x.name == name)
            .map(|x| x.result)
            .unwrap_or(ProbeResult::Ok)
    }

    #[tokio::test]
    async fn garbage_html_trickle_and_resets_are_classified_in_bounded_time() {
        for (behave, expected) in [
            ("garbage", ProbeResult::ConnectFailed),
            ("html", ProbeResult::HtmlError),
            ("trickle", ProbeResult::Timeout),
            ("reset", ProbeResult::ConnectFailed),
        ] {
            let addr = server(behave).await;
            let c = ladder(addr).await;
            assert_eq!(result_of(&c, "tcp"), ProbeResult::Ok, "{behave}");
            assert_eq!(result_of(&c, "server_sync"), expected, "{behave}: {c:?}");
        }
        // Nothing listening: the ladder stops at TCP.
        let unused = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let c = ladder(unused).await;
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].result, ProbeResult::ConnectFailed);
    }

    #[tokio::test]
    async fn a_step_that_times_out_cuts_the_rest_of_the_ladder() {
        let c = ladder(server("trickle").await).await;
        assert_eq!(c.len(), 1 + LADDER.len(), "{c:?}");
        for later in &c[2..] {
            assert_eq!(later.result, ProbeResult::Timeout, "{c:?}");
            assert!(later.detail.starts_with("not tried"), "{c:?}");
        }
    }

    /// Answers every request of every connection with an IIS error page, keeping connections
    /// open; counts the connections.
    async fn keep_alive_server(connections: Arc<std::sync::atomic::AtomicUsize>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        // One request: its head, then as many body bytes as it announces.
                        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                        let body: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while pending.len() < end + 4 + body {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                        }
                        pending.drain(..end + 4 + body);
                        let page = "<html><body>Server Error</body></html>";
                        let answer = format!(
                            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
                            page.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_http_steps_share_one_connection() {
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let addr = keep_alive_server(connections.clone()).await;
        let c = ladder(addr).await;
        assert_eq!(c.len(), 1 + LADDER.len(), "{c:?}");
        assert_eq!(
            result_of(&c, "server_sync"),
            ProbeResult::HtmlError,
            "{c:?}"
        );
        assert_eq!(result_of(&c, "selfupdate"), ProbeResult::HtmlError, "{c:?}");
        // The TCP step's own connection and one for every HTTP step.
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
