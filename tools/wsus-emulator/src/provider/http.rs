//! The SMS Provider's WinRM listener: POST `/wsman`, authenticated per connection by NTLM in
//! `Authorization: Negotiate` (or `NTLM`) headers, and over plain HTTP every message sealed with
//! the connection's context (MS-WSMV 2.2.9.1): an unsealed message, or one whose signature does
//! not verify, is refused, as WinRM refuses unencrypted traffic by default. The machine a request
//! is for is its `Host`.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use data_encoding::BASE64;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use sup_wsman::ntlm::{self, Acceptor, ENCRYPTED_CONTENT_TYPE, SPNEGO_ENCRYPTED_PROTOCOL};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Provider;

/// A lab account: domain, user, password.
#[derive(Clone)]
pub struct Account {
    pub domain: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\\{}", self.domain, self.user)
    }
}

#[derive(Default)]
struct Connection {
    /// The handshake under way, or the context it established.
    context: Option<Acceptor>,
    user: Option<String>,
}

fn challenge(token: Option<&[u8]>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(StatusCode::UNAUTHORIZED);
    r = match token {
        Some(t) => r.header(WWW_AUTHENTICATE, format!("Negotiate {}", BASE64.encode(t))),
        None => r.header(WWW_AUTHENTICATE, "Negotiate"),
    };
    r.header("Content-Length", "0")
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

fn token_of(req: &Request<Incoming>) -> Option<Vec<u8>> {
    let v = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("Negotiate") || scheme.eq_ignore_ascii_case("NTLM"))
        .then(|| BASE64.decode(token.trim().as_bytes()).ok())
        .flatten()
}

async fn handle(
    req: Request<Incoming>,
    provider: Arc<Provider>,
    conn: Arc<Mutex<Connection>>,
    accounts: Arc<Vec<Account>>,
    secure: bool,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST || !req.uri().path().eq_ignore_ascii_case("/wsman") {
        return status(StatusCode::NOT_FOUND);
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':')
                .map_or(h, |(n, _)| n)
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let sealed_in = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/encrypted"));
    let token = token_of(&req);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
    // SPNEGO's last token (the acceptor's mechListMIC) rides on the answer that completes the
    // handshake.
    let mut final_token = None;
    if let Some(token) = token {
        if c.user.is_some() || c.context.is_none() {
            let users = accounts
                .iter()
                .map(|a| (a.domain.clone(), a.user.clone(), a.password.clone()))
                .collect();
            c.context = Some(Acceptor::new(users));
            c.user = None;
        }
        let Some(ctx) = c.context.as_mut() else {
            return challenge(None);
        };
        match ctx.step(&token) {
            Ok(Some(out)) if !ctx.is_complete() => return challenge(Some(&out)),
            Ok(out) => {
                final_token = out;
                c.user = ctx.user();
                tracing::info!(host, user = ?c.user, "WinRM client authenticated");
            }
            Err(e) => {
                tracing::warn!(host, error = %e, "WinRM authentication refused");
                c.context = None;
                return challenge(None);
            }
        }
    }
    if c.user.is_none() {
        return challenge(None);
    }
    let done = |r: Response<Full<Bytes>>| match &final_token {
        Some(t) => {
            let (mut parts, body) = r.into_parts();
            if let Ok(v) = format!("Negotiate {}", BASE64.encode(t)).parse() {
                parts.headers.insert(WWW_AUTHENTICATE, v);
            }
            Response::from_parts(parts, body)
        }
        None => r,
    };
    if body.is_empty() {
        // The blank request that completes a sealing client's handshake.
        return done(status(StatusCode::OK));
    }
    let Some(ctx) = c.context.as_mut() else {
        return challenge(None);
    };
    let plain = if sealed_in {
        let unwrapped = ntlm::decode_multipart(&body)
            .and_then(|(len, header, data)| ctx.unwrap(&header, &data).map(|p| (len, p)));
        match unwrapped {
            Ok((len, p)) if p.len() == len => p,
            Ok(_) | Err(_) => {
                tracing::warn!(host, "a sealed WinRM message failed its integrity check");
                c.context = None;
                c.user = None;
                return status(StatusCode::BAD_REQUEST);
            }
        }
    } else if secure {
        body.to_vec()
    } else {
        tracing::warn!(host, "an unencrypted WinRM message over HTTP refused");
        return challenge(None);
    };
    let reply = match sup_wsman::envelope::parse(&plain) {
        Ok(msg) => provider.handle(&host, &msg),
        Err(e) => super::Reply {
            status: 400,
            body: format!("{e}"),
        },
    };
    let code = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if secure && !sealed_in {
        return done(
            Response::builder()
                .status(code)
                .header(CONTENT_TYPE, "application/soap+xml;charset=UTF-8")
                .body(Full::new(Bytes::from(reply.body)))
                .unwrap_or_default(),
        );
    }
    match ctx.wrap(reply.body.as_bytes()) {
        Ok((header, data)) => done(
            Response::builder()
                .status(code)
                .header(CONTENT_TYPE, ENCRYPTED_CONTENT_TYPE)
                .body(Full::new(Bytes::from(ntlm::encode_multipart(
                    SPNEGO_ENCRYPTED_PROTOCOL,
                    reply.body.len(),
                    &header,
                    &data,
                ))))
                .unwrap_or_default(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "sealing a WinRM answer");
            status(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// Serves WinRM on `listener` until `stop`; each connection authenticates on its own.
pub async fn serve(
    listener: TcpListener,
    provider: Arc<Provider>,
    accounts: Arc<Vec<Account>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let secure = tls.is_some();
    crate::serve::serve_connections(listener, tls, stop, "WinRM", move || {
        let conn = Arc::new(Mutex::new(Connection::default()));
        let (provider, accounts) = (provider.clone(), accounts.clone());
        hyper::service::service_fn(move |req| {
            let (p, c, a) = (provider.clone(), conn.clone(), accounts.clone());
            async move { Ok::<_, std::convert::Infallible>(handle(req, p, c, a, secure).await) }
        })
    })
    .await;
}
