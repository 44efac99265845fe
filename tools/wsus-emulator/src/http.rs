//! WSUS 3.0's web site as IIS serves it, for every emulated server at once: requests are
//! dispatched on the `Host` header; the ASMX services answer SOAP 1.1 with the envelopes of the
//! protocol specifications; injected faults change what a server's site does.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;

use crate::soap::{self, esc};
use crate::state::{Emulator, Fault};

// The wire names are sup-wsus's: the probes and the emulator must agree on them.
pub use sup_wsus::{NS_API, NS_CLIENT, NS_DSS_AUTH, NS_REPORTING, NS_SERVER_SYNC, NS_SIMPLE_AUTH};

/// The ASMX services: path (lower case), namespace, service name.
pub const SERVICES: &[(&str, &str, &str)] = &[
    (
        "/serversyncwebservice/serversyncwebservice.asmx",
        NS_SERVER_SYNC,
        "ServerSyncWebService",
    ),
    ("/clientwebservice/client.asmx", NS_CLIENT, "Client"),
    (
        "/simpleauthwebservice/simpleauth.asmx",
        NS_SIMPLE_AUTH,
        "SimpleAuth",
    ),
    (
        "/dssauthwebservice/dssauthwebservice.asmx",
        NS_DSS_AUTH,
        "DssAuthWebService",
    ),
    (
        "/reportingwebservice/reportingwebservice.asmx",
        NS_REPORTING,
        "ReportingWebService",
    ),
    (
        "/apiremoting30/webservice.asmx",
        NS_API,
        "ApiRemotingWebService",
    ),
];

/// The virtual roots WSUS requires SSL on once it is set up for SSL ("Enforce SSL/TLS encryption
/// (require SSL) on the following applications: ApiRemoting30, ClientWebService,
/// DSSAuthWebService, ServerSyncWebService, SimpleAuthWebService", Microsoft's WSUS security
/// best practices; the ConfigMgr 2007 SDK: "you must configure five virtual roots to use a
/// secured channel"). Lower case, as paths are compared.
pub const SSL_ROOTS: [&str; 5] = [
    "/apiremoting30/",
    "/clientwebservice/",
    "/dssauthwebservice/",
    "/serversyncwebservice/",
    "/simpleauthwebservice/",
];

/// The listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// TLS was negotiated.
    pub secure: bool,
    /// The WSUS web site port this listener stands for (it may be bound elsewhere, e.g. port
    /// 80 at 18080 when binding below 1024 is not allowed): a declared server answers here only
    /// when the port is its own. `None`: any server's site.
    pub port: Option<u16>,
}

/// What the emulated servers answer.
pub enum Outcome {
    /// Close the connection without an answer (the server is down).
    Drop,
    Reply(Response<Body>),
}

fn iis(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::SERVER,
        HeaderValue::from_static("Microsoft-IIS/6.0"),
    );
    h.insert("X-Powered-By", HeaderValue::from_static("ASP.NET"));
    h.insert("X-AspNet-Version", HeaderValue::from_static("2.0.50727"));
    if let Ok(v) = HeaderValue::from_str(
        &chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    ) {
        h.insert(header::DATE, v);
    }
    r
}

const XML: &str = "text/xml; charset=utf-8";
const HTML: &str = "text/html";

fn html_page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    iis(
        status,
        HTML,
        format!(
            "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"><html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p><hr><p>Internet Information Services (IIS)</p></body></html>"
        ),
    )
}

fn soap_ok(body: String) -> Response<Body> {
    iis(StatusCode::OK, XML, soap::envelope(&body))
}

fn soap_fault(code: &str, message: &str, error_code: Option<&str>, method: &str) -> Response<Body> {
    iis(
        StatusCode::INTERNAL_SERVER_ERROR,
        XML,
        soap::fault(code, message, error_code, method),
    )
}

/// The host name a request is for (without port, lower case).
pub fn host_of(headers: &HeaderMap) -> Option<String> {
    let h = headers.get(header::HOST)?.to_str().ok()?.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        h.split(':').next().unwrap_or(h)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// IIS's answer when a virtual directory requires SSL and the request came over plain HTTP: 403
/// with substatus 4 (IIS 6.0's page, KB 839913; substatus table, TechNet cc737788).
fn ssl_required() -> Response<Body> {
    iis(
        StatusCode::FORBIDDEN,
        HTML,
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"><html><head><title>The page must be viewed over a secure channel</title></head><body><h1>The page must be viewed over a secure channel</h1><p>The page you are trying to access is secured with Secure Sockets Layer (SSL).</p><p>Please try the following:</p><ul><li>Type https:// at the beginning of the address you are attempting to reach and press ENTER.</li></ul><h2>HTTP Error 403.4 - Forbidden: SSL is required to view this resource.<br>Internet Information Services (IIS)</h2></body></html>",
    )
}

/// Answers one request.
pub async fn handle(emu: Arc<Emulator>, listener: Listener, req: Request<Body>) -> Outcome {
    let Some(host) = host_of(req.headers()) else {
        return Outcome::Reply(html_page(
            StatusCode::BAD_REQUEST,
            "Bad Request - Invalid Hostname",
            "HTTP Error 400. The request hostname is invalid.",
        ));
    };
    let server = match emu.get(&host) {
        Some(s) => s,
        None if emu.strict_hosts => {
            return Outcome::Reply(html_page(
                StatusCode::BAD_REQUEST,
                "Bad Request - Invalid Hostname",
                "HTTP Error 400. The request hostname is invalid.",
            ));
        }
        None => {
            emu.add_server(&host, None, None, None);
            match emu.get(&host) {
                Some(s) => s,
                None => return Outcome::Drop,
            }
        }
    };
    if server.faults.contains(&Fault::Down) {
        return Outcome::Drop;
    }
    // A declared server's web site is bound to its own ports only: elsewhere IIS has no site
    // for its name.
    if let Some(port) = listener.port
        && server.declared
        && port
            != if listener.secure {
                server.https_port
            } else {
                server.http_port
            }
    {
        return Outcome::Reply(html_page(
            StatusCode::BAD_REQUEST,
            "Bad Request - Invalid Hostname",
            "HTTP Error 400. The request hostname is invalid.",
        ));
    }
    if server.faults.contains(&Fault::Slow) {
        tokio::time::sleep(Duration::from_millis(emu.timing.slow_ms)).await;
    }
    if server.faults.contains(&Fault::HtmlError) {
        return Outcome::Reply(html_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "HTTP Error 503. The service is unavailable.",
        ));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_ascii_lowercase();
    let query = req.uri().query().unwrap_or("").to_ascii_lowercase();
    let soap_action = req
        .headers()
        .get("SOAPAction")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_string());
    let body = match axum::body::to_bytes(req.into_body(), 4 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return Outcome::Reply(html_page(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "HTTP Error 400. The request is badly formed.",
            ));
        }
    };
    let wsus = !server.faults.contains(&Fault::NoWsus);
    if wsus && server.ssl && !listener.secure && SSL_ROOTS.iter().any(|r| path.starts_with(r)) {
        return Outcome::Reply(ssl_required());
    }
    Outcome::Reply(route(
        &emu,
        &server.name,
        wsus,
        server.faults.contains(&Fault::DbDown),
        &method,
        &path,
        &query,
        soap_action,
        body,
    ))
}

#[allow(clippy::too_many_arguments)]
fn route(
    _emu: &Emulator,
    server: &str,
    wsus: bool,
    db_down: bool,
    method: &Method,
    path: &str,
    query: &str,
    soap_action: Option<String>,
    body: Bytes,
) -> Response<Body> {
    let not_found = || {
        html_page(
            StatusCode::NOT_FOUND,
            "The page cannot be found",
            "HTTP Error 404 - File or directory not found.",
        )
    };
    if !wsus {
        return not_found();
    }
    if path == "/selfupdate/wuident.cab" || path == "/selfupdate/iuident.cab" {
        if *method != Method::GET && *method != Method::HEAD {
            return html_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "The page cannot be displayed",
                "HTTP Error 405 - Method not allowed.",
            );
        }
        // A cabinet file starts with "MSCF".
        let mut cab = b"MSCF\0\0\0\0".to_vec();
        cab.extend_from_slice(format!("wuident for {server}").as_bytes());
        return iis(StatusCode::OK, "application/octet-stream", cab);
    }
    if path == "/content" || path.starts_with("/content/") {
        return html_page(
            StatusCode::FORBIDDEN,
            "Directory Listing Denied",
            "This Virtual Directory does not allow contents to be listed.",
        );
    }
    if path == "/inventory" || path == "/inventory/" {
        let mut r = iis(StatusCode::MOVED_PERMANENTLY, HTML, "");
        if let Ok(v) = HeaderValue::from_str("/Inventory/") {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    let Some((_, ns, name)) = SERVICES.iter().find(|(p, _, _)| *p == path) else {
        return not_found();
    };
    if *ns == NS_API {
        // Windows authentication only.
        let mut r = html_page(
            StatusCode::UNAUTHORIZED,
            "You are not authorized to view this page",
            "HTTP Error 401.2 - Unauthorized: Access is denied due to server configuration.",
        );
        r.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Negotiate"),
        );
        r.headers_mut()
            .append(header::WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
        return r;
    }
    if *method == Method::GET || *method == Method::HEAD {
        if query == "wsdl" {
            return iis(StatusCode::OK, XML, wsdl(ns, name));
        }
        return html_page(
            StatusCode::OK,
            name,
            &format!(
                "The following operations are supported. For a formal definition, please review the <a href=\"{path}?WSDL\">Service Description</a>."
            ),
        );
    }
    if *method != Method::POST {
        return html_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "The page cannot be displayed",
            "HTTP Error 405 - Method not allowed.",
        );
    }
    let action = soap_action.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let parsed = match soap::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            return soap_fault(
                "soap:Client",
                &format!("Server was unable to read request. ---> {e}"),
                None,
                &action,
            );
        }
    };
    let op = action.rsplit_once('/');
    let known = |expected_ns: &str, ops: &[&str]| -> Option<String> {
        let (n, o) = op?;
        (n == expected_ns && ops.contains(&o)).then(|| o.to_string())
    };
    match *ns {
        NS_SERVER_SYNC if path.contains("serversync") => match known(
            NS_SERVER_SYNC,
            &[
                "GetAuthConfig",
                "GetCookie",
                "GetConfigData",
                "GetRevisionIdList",
                "GetUpdateData",
                "GetUpdateDecryptionData",
                "DownloadFiles",
                "GetDeployments",
            ],
        ) {
            Some(o) if o == "GetAuthConfig" => soap_ok(format!(
                "<GetAuthConfigResponse xmlns=\"{NS_SERVER_SYNC}\"><GetAuthConfigResult><LastChange>2006-06-07T20:41:50.883Z</LastChange><AuthInfo><AuthPlugInInfo><PlugInID>DssTargeting</PlugInID><ServiceUrl>DssAuthWebService/DssAuthWebService.asmx</ServiceUrl></AuthPlugInInfo></AuthInfo></GetAuthConfigResult></GetAuthConfigResponse>"
            )),
            Some(o) if db_down => soap_fault(
                "soap:Server",
                "Fault occurred",
                Some("InternalServerError"),
                &format!("{NS_SERVER_SYNC}/{o}"),
            ),
            Some(o) if o == "GetCookie" && parsed.value("CookieData").is_some() => {
                soap_ok(format!(
                    "<GetCookieResponse xmlns=\"{NS_SERVER_SYNC}\"><GetCookieResult><Expiration>{}</Expiration><EncryptedData>AAAAAAAAAAAAAAAA</EncryptedData></GetCookieResult></GetCookieResponse>",
                    (chrono::Utc::now() + chrono::Duration::days(5)).format("%Y-%m-%dT%H:%M:%SZ")
                ))
            }
            Some(o) => soap_fault(
                "soap:Client",
                "Fault occurred",
                Some("InvalidCookie"),
                &format!("{NS_SERVER_SYNC}/{o}"),
            ),
            None => unknown_action(&action),
        },
        NS_CLIENT => match known(
            NS_CLIENT,
            &[
                "GetConfig",
                "GetConfig2",
                "GetCookie",
                "RegisterComputer",
                "StartCategoryScan",
                "SyncUpdates",
                "SyncPrinterCatalog",
                "RefreshCache",
                "GetExtendedUpdateInfo",
                "GetFileLocations",
            ],
        ) {
            Some(o) if db_down => soap_fault(
                "soap:Server",
                "Fault occurred",
                Some("InternalServerError"),
                &format!("{NS_CLIENT}/{o}"),
            ),
            Some(o) if o == "GetConfig" => soap_ok(format!(
                "<GetConfigResponse xmlns=\"{NS_CLIENT}\"><GetConfigResult><LastChange>2007-01-31T04:16:35.24Z</LastChange><IsRegistrationRequired>true</IsRegistrationRequired><AuthInfo><AuthPlugInInfo><PlugInID>SimpleTargeting</PlugInID><ServiceUrl>SimpleAuthWebService/SimpleAuth.asmx</ServiceUrl><Parameter /></AuthPlugInInfo></AuthInfo><AllowedEventIds /><Properties><ConfigurationProperty><Name>MaxExtendedUpdatesPerRequest</Name><Value>50</Value></ConfigurationProperty><ConfigurationProperty><Name>ProtocolVersion</Name><Value>3.0</Value></ConfigurationProperty></Properties></GetConfigResult></GetConfigResponse>"
            )),
            Some(o) => soap_fault(
                "soap:Client",
                "Fault occurred",
                Some("InvalidCookie"),
                &format!("{NS_CLIENT}/{o}"),
            ),
            None => unknown_action(&action),
        },
        NS_SIMPLE_AUTH => match known(NS_SIMPLE_AUTH, &["GetAuthorizationCookie"]) {
            Some(_) => soap_ok(format!(
                "<GetAuthorizationCookieResponse xmlns=\"{NS_SIMPLE_AUTH}\"><GetAuthorizationCookieResult><PlugInId>SimpleTargeting</PlugInId><CookieData>AAAAAAAAAAAAAAAA</CookieData></GetAuthorizationCookieResult></GetAuthorizationCookieResponse>"
            )),
            None => unknown_action(&action),
        },
        NS_DSS_AUTH => match known(NS_DSS_AUTH, &["GetAuthorizationCookie"]) {
            Some(o) => {
                let account = parsed.value("accountName").unwrap_or("");
                let guid = parsed.value("accountGuid").unwrap_or("");
                let guid_ok = guid.len() == 36 && guid.bytes().filter(|b| *b == b'-').count() == 4;
                if !sup_core::names::is_fqdn(account) || !guid_ok {
                    soap_fault(
                        "soap:Client",
                        "Fault occurred",
                        Some("InvalidParameters"),
                        &format!("{NS_DSS_AUTH}/{o}"),
                    )
                } else {
                    soap_ok(format!(
                        "<GetAuthorizationCookieResponse xmlns=\"{NS_DSS_AUTH}\"><GetAuthorizationCookieResult><PlugInId>DssTargeting</PlugInId><CookieData>{}</CookieData></GetAuthorizationCookieResult></GetAuthorizationCookieResponse>",
                        esc("AAAAAAAAAAAAAAAA")
                    ))
                }
            }
            None => unknown_action(&action),
        },
        _ => match known(
            NS_REPORTING,
            &[
                "ReportEventBatch",
                "GetRollupConfiguration",
                "RollupDownstreamServers",
            ],
        ) {
            Some(o) => soap_fault(
                "soap:Client",
                "Fault occurred",
                Some("InvalidCookie"),
                &format!("{NS_REPORTING}/{o}"),
            ),
            None => unknown_action(&action),
        },
    }
}

fn unknown_action(action: &str) -> Response<Body> {
    soap_fault(
        "soap:Client",
        &format!("Server did not recognize the value of HTTP Header SOAPAction: {action}."),
        None,
        action,
    )
}

/// A minimal service description with the service's target namespace.
pub fn wsdl(ns: &str, name: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><wsdl:definitions xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\" xmlns:s=\"http://www.w3.org/2001/XMLSchema\" xmlns:tns=\"{ns}\" xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" targetNamespace=\"{ns}\"><wsdl:types><s:schema elementFormDefault=\"qualified\" targetNamespace=\"{ns}\" /></wsdl:types><wsdl:service name=\"{name}\"><wsdl:port name=\"{name}Soap\" binding=\"tns:{name}Soap\" /></wsdl:service></wsdl:definitions>"
    )
}

/// The future a request's answer comes from.
type Answer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<Body>, std::io::Error>> + Send>,
>;

/// A hyper service over [`handle`]: a dropped request becomes a connection error, which closes
/// the connection without an answer.
pub fn service(
    emu: Arc<Emulator>,
    listener: Listener,
) -> impl hyper::service::Service<
    Request<hyper::body::Incoming>,
    Response = Response<Body>,
    Error = std::io::Error,
    Future = Answer,
> + Clone {
    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let emu = emu.clone();
        Box::pin(async move {
            match handle(emu, listener, req.map(Body::new)).await {
                Outcome::Reply(r) => Ok(r),
                Outcome::Drop => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "server down",
                )),
            }
        }) as Answer
    })
}
