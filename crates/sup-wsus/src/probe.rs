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
    /// Where to connect (resolved by the caller, so labs can override names).
    pub addr: SocketAddr,
    pub http_port: u16,
    pub https_port: u16,
    /// Also check TLS on the HTTPS port.
    pub ssl: bool,
}

/// One anonymous SOAP call of the ladder and what its answer must contain.
struct SoapCall<'a> {
    name: &'static str,
    path: &'a str,
    action: &'a str,
    body: String,
    expect: &'a [&'a str],
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

/// Reads an HTTP answer to a SOAP call or a WSDL request and classifies it.
async fn classify_answer(
    sent: Result<reqwest::Response, reqwest::Error>,
    expect: &[&str],
) -> (ProbeResult, String) {
    let r = match sent {
        Ok(r) => r,
        Err(e) => return classify_error(&e),
    };
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match r.text().await {
        Ok(text) => classify_soap(status, &ct, &text, expect),
        Err(e) => classify_error(&e),
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
        let tcp = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect(SocketAddr::new(t.addr.ip(), t.http_port)),
        )
        .await;
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
        if t.ssl {
            out.push(self.tls(t).await);
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
        let web = Web {
            base: format!("http://{}", SocketAddr::new(t.addr.ip(), t.http_port)),
            host: if t.http_port == 80 {
                t.host.clone()
            } else {
                format!("{}:{}", t.host, t.http_port)
            },
        };
        let client = Step { client, web: &web };
        let sync_action = format!("{NS_SERVER_SYNC}/GetAuthConfig");
        let client_action = format!("{NS_CLIENT}/GetConfig");
        // The steps run one after another over one kept-alive connection (a client of the server
        // does the same), rather than six connections at once. Once a step cannot connect or
        // times out, the rest would only wait as long again: they are reported as not tried.
        let first_http = out.len();
        for (step, name) in LADDER.iter().copied().enumerate() {
            if let Some(stop) = out[first_http..]
                .iter()
                .find(|c| matches!(c.result, ProbeResult::ConnectFailed | ProbeResult::Timeout))
            {
                let (result, detail) = (stop.result, format!("not tried: {} failed", stop.name));
                out.push(Component {
                    name,
                    result,
                    detail,
                    latency: Duration::ZERO,
                });
                continue;
            }
            let done = match step {
                0 => {
                    self.soap(
                        &client,
                        SoapCall {
                            name,
                            path: PATH_SERVER_SYNC,
                            action: &sync_action,
                            body: get_auth_config(),
                            expect: &["GetAuthConfigResponse", "<PlugInID>DssTargeting</PlugInID>"],
                        },
                    )
                    .await
                }
                1 => {
                    self.soap(
                        &client,
                        SoapCall {
                            name,
                            path: PATH_CLIENT,
                            action: &client_action,
                            body: get_config(),
                            expect: &["GetConfigResponse", "SimpleTargeting"],
                        },
                    )
                    .await
                }
                2 => {
                    self.wsdl(&client, name, PATH_SIMPLE_AUTH, NS_SIMPLE_AUTH)
                        .await
                }
                3 => self.wsdl(&client, name, PATH_DSS_AUTH, NS_DSS_AUTH).await,
                4 => self.wsdl(&client, name, PATH_REPORTING, NS_REPORTING).await,
                _ => self.selfupdate(&client).await,
            };
            out.push(done);
        }
        out
    }

    async fn soap(&self, c: &Step<'_>, call: SoapCall<'_>) -> Component {
        let SoapCall {
            name,
            path,
            action,
            body,
            expect,
        } = call;
        let t = Instant::now();
        let r = c
            .request(reqwest::Method::POST, path)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{action}\""))
            .body(body)
            .send()
            .await;
        let (result, detail) = classify_answer(r, expect).await;
        Component {
            name,
            result,
            detail,
            latency: t.elapsed(),
        }
    }

    async fn wsdl(&self, c: &Step<'_>, name: &'static str, path: &str, ns: &str) -> Component {
        let t = Instant::now();
        let sent = c
            .request(reqwest::Method::GET, &format!("{path}?WSDL"))
            .send()
            .await;
        let namespace = format!("targetNamespace=\"{ns}\"");
        let (result, detail) = classify_answer(sent, &["wsdl:definitions", &namespace]).await;
        Component {
            name,
            result,
            detail,
            latency: t.elapsed(),
        }
    }

    async fn selfupdate(&self, c: &Step<'_>) -> Component {
        let t = Instant::now();
        let (result, detail) = match c
            .request(reqwest::Method::GET, PATH_SELFUPDATE)
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                let html = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.starts_with("text/html"));
                match (status, html) {
                    (200, false) => (ProbeResult::Ok, String::new()),
                    (_, true) => (
                        ProbeResult::HtmlError,
                        format!("HTTP {status} with an HTML page"),
                    ),
                    _ => (ProbeResult::BadResponse, format!("HTTP {status}")),
                }
            }
            Err(e) => classify_error(&e),
        };
        Component {
            name: "selfupdate",
            result,
            detail,
            latency: t.elapsed(),
        }
    }

    async fn tls(&self, t: &Target) -> Component {
        let started = Instant::now();
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(SocketAddr::new(t.addr.ip(), t.https_port))
                .await
                .map_err(|e| (ProbeResult::ConnectFailed, e.to_string()))?;
            let name = ServerName::try_from(t.host.clone())
                .map_err(|e| (ProbeResult::TlsFailed, e.to_string()))?;
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| (ProbeResult::TlsFailed, e.to_string()))?;
            Ok::<(), (ProbeResult, String)>(())
        };
        let (result, detail) = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(())) => (ProbeResult::Ok, String::new()),
            Ok(Err(e)) => e,
            Err(_) => (ProbeResult::Timeout, "no TLS handshake in time".into()),
        };
        Component {
            name: "tls",
            result,
            detail,
            latency: started.elapsed(),
        }
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

/// Where a ladder's HTTP steps go: the resolved address, and the name the server answers to.
struct Web {
    base: String,
    host: String,
}

/// The shared client aimed at one server.
struct Step<'a> {
    client: &'a reqwest::Client,
    web: &'a Web,
}

impl Step<'_> {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.web.base))
            .header(reqwest::header::HOST, &self.web.host)
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
