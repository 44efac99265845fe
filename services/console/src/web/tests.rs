//! The routes that need no coordinator: the actions' guard, sign-in, the live feed, and the
//! headers every response carries. The pages themselves are checked in a browser against the
//! real stack (tests/it/console.rs).

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt as _;

use super::*;
use crate::auth::Token;
use crate::history::Entry;

const TOKEN: &str = "operator-token-for-tests";

fn state(actions: bool) -> (AppState, Arc<History>) {
    // Nothing listens there: a route that reached the coordinator would fail, so these tests
    // also show the guard answers first.
    let sources =
        Sources::connect("http://127.0.0.1:9", "http://127.0.0.1:9", None).expect("sources");
    let history = Arc::new(History::new(10, 10));
    let guard = actions.then(|| Guard::new(Token::new(TOKEN, "test").expect("token"), 1));
    (
        AppState::new(
            sources,
            history.clone(),
            guard,
            Options {
                sync_runs_shown: 10,
                ..Options::default()
            },
            Metrics::default(),
        ),
        history,
    )
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let r = app.clone().oneshot(req).await.expect("response");
    let status = r.status();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn post(uri: &str) -> axum::http::request::Builder {
    Request::post(uri)
        .header(header::HOST, "console.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

async fn sign_in(app: &Router) -> String {
    let (status, headers, _) = send(
        app,
        post("/login")
            .header(header::ORIGIN, "http://console.test")
            .body(Body::from(format!("token={TOKEN}")))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().expect("pair").to_string()
}

#[tokio::test]
async fn a_read_only_console_refuses_every_action_even_with_a_token() {
    let (s, _) = state(false);
    let app = router(s);
    for uri in ["/sites/CEN/sync", "/sites/CEN/activate", "/login"] {
        let (status, _, body) = send(
            &app,
            post(uri)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::from("slot=intranet&target=x&token=x"))
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert!(body.contains("read-only"), "{uri}: {body}");
    }
}

#[tokio::test]
async fn actions_need_the_token_or_a_session_with_its_csrf_token() {
    let (s, _) = state(true);
    let app = router(s);
    // No credentials at all.
    let (status, _, body) = send(
        &app,
        post("/sites/CEN/sync")
            .body(Body::from("csrf="))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Sign in first"), "{body}");
    // A wrong bearer token: a script is told it is not authenticated.
    let (status, _, _) = send(
        &app,
        post("/sites/CEN/sync")
            .header(header::AUTHORIZATION, "Bearer not-the-operator-token")
            .body(Body::from(""))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A session, but the form's CSRF token is not the session's.
    let cookie = sign_in(&app).await;
    let (status, _, body) = send(
        &app,
        post("/sites/CEN/sync")
            .header(header::COOKIE, &cookie)
            .body(Body::from("csrf=forged"))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The session's own cookie posted from another site.
    let (status, _, body) = send(
        &app,
        post("/sites/CEN/sync")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, "https://attacker.example")
            .body(Body::from("csrf=forged"))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Cross-site"), "{body}");
}

#[tokio::test]
async fn with_the_token_an_action_reaches_the_service_and_reports_its_answer() {
    let (s, _) = state(true);
    let app = router(s);
    // Authorised: the request goes on to the coordinator, which is not there; a script is told
    // so as JSON, with the status the refusal maps to.
    let (status, headers, body) = send(
        &app,
        post("/sites/CEN/activate")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::from(
                "slot=intranet&target=cen-sup02.corp.example.com",
            ))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Activation was refused")),
        "{v}"
    );
    // A slot that does not exist is refused before anything is asked.
    let (status, _, body) = send(
        &app,
        post("/sites/CEN/activate")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::from("slot=dmz&target=x"))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("use intranet or internet"), "{body}");
    // A wrong token is refused as JSON too.
    let (status, _, body) = send(
        &app,
        post("/sites/CEN/activate")
            .header(header::AUTHORIZATION, "Bearer not-the-operator-token")
            .body(Body::from("slot=intranet&target=x"))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["ok"], false, "{v}");
}

#[tokio::test]
async fn a_wrong_token_does_not_sign_in() {
    let (s, _) = state(true);
    let app = router(s);
    let (status, headers, body) = send(
        &app,
        post("/login")
            .body(Body::from("token=guess-guess-guess-guess"))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());
    assert!(body.contains("not the operator"), "{body}");
}

#[tokio::test]
async fn every_response_forbids_inline_script_and_framing() {
    let (s, _) = state(false);
    let app = router(s);
    let (status, headers, body) = send(
        &app,
        Request::get("/static/console.js")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("EventSource"));
    let csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .expect("csp");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(
        headers
            .get(header::X_CONTENT_TYPE_OPTIONS)
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
}

#[tokio::test]
async fn the_live_feed_sends_each_new_event_of_the_site_asked_for() {
    let (s, history) = state(false);
    let app = router(s);
    let r = app
        .clone()
        .oneshot(
            Request::get("/events/stream?site=CH1")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(
        r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut body = r.into_body().into_data_stream();
    for (seq, site) in [(1, "CEN"), (2, "CH1")] {
        history.push(Entry {
            sequence: seq,
            event: v1::Event {
                site: site.into(),
                server: "ch1-nlb-n1.corp.example.com".into(),
                ..Default::default()
            },
        });
    }
    let chunk = futures::StreamExt::next(&mut body)
        .await
        .expect("an event")
        .expect("bytes");
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("id: 2"), "{text}");
    assert!(text.contains(r#""site":"CH1""#), "{text}");
    assert!(!text.contains(r#""site":"CEN""#), "{text}");
}

#[tokio::test]
async fn behind_a_proxy_forms_must_come_from_the_public_origin() {
    let sources =
        Sources::connect("http://127.0.0.1:9", "http://127.0.0.1:9", None).expect("sources");
    let app = router(AppState::new(
        sources,
        Arc::new(History::new(10, 10)),
        Some(Guard::new(Token::new(TOKEN, "test").expect("token"), 1)),
        Options {
            sync_runs_shown: 10,
            public_origin: Some("https://console.corp.example.com".into()),
            ..Options::default()
        },
        Metrics::default(),
    ));
    let login = |origin: &'static str| {
        post("/login")
            .header(header::HOST, "sup-console:8080")
            .header(header::ORIGIN, origin)
            .body(Body::from(format!("token={TOKEN}")))
            .expect("request")
    };
    let (status, _, _) = send(&app, login("https://console.corp.example.com")).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the public origin, Host rewritten"
    );
    let (status, _, _) = send(&app, login("http://sup-console:8080")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not the public origin");
}

#[test]
fn a_notice_is_only_what_an_action_left() {
    let n = Notices::default();
    let id = n.put(
        true,
        "cen-sup02 is the active intranet SUP (epoch 9)".into(),
    );
    assert_eq!(
        n.get(&id),
        Some((
            true,
            "cen-sup02 is the active intranet SUP (epoch 9)".into()
        ))
    );
    assert_eq!(n.get("made-up"), None);
    assert_eq!(n.get(""), None);
}

#[tokio::test]
async fn an_unauthorised_post_is_refused_whatever_its_body() {
    let (s, _) = state(true);
    let app = router(s);
    // No form at all (as `curl -X POST` sends): refused for who asks, not for what it sent.
    let (status, _, body) = send(
        &app,
        Request::post("/sites/CEN/sync")
            .header(header::HOST, "console.test")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // With the token, the missing form is what is wrong.
    let (status, _, body) = send(
        &app,
        Request::post("/sites/CEN/activate")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(body.contains("could not be read"), "{body}");
}
