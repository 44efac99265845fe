//! The console's routes: pages rendered from templates on each request, the live feed as
//! server-sent events, and the two actions behind [`crate::auth`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures::Stream;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sup_proto::v1;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;

use crate::auth::{self, Guard};
use crate::history::History;
use crate::sources::Sources;
use crate::svg;
use crate::view::{self, ComponentRow, EventRow, RoleRow, StatusMessage, TreeRow};

type Labels = Vec<(String, String)>;

#[derive(Clone, Default)]
pub struct Metrics {
    pages: Family<Labels, Counter>,
    actions: Family<Labels, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "sup_console_pages",
            "Pages the console served, by page",
            m.pages.clone(),
        );
        registry.register(
            "sup_console_actions",
            "Actions asked of the console, by action and result",
            m.actions.clone(),
        );
        m
    }

    fn page(&self, page: &str) {
        self.pages
            .get_or_create(&vec![("page".into(), page.into())])
            .inc();
    }

    fn action(&self, action: &str, result: &str) {
        self.actions
            .get_or_create(&vec![
                ("action".into(), action.into()),
                ("result".into(), result.into()),
            ])
            .inc();
    }
}

/// How the pages behave, from the console's settings.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Mark the session cookie `Secure`.
    pub secure_cookie: bool,
    /// The origin browsers reach the console at (`https://console.example.com`), when a proxy
    /// in front of it rewrites `Host`; without it a form must come from the `Host` it was sent to.
    pub public_origin: Option<String>,
    /// Synchronization runs drawn on a site's page.
    pub sync_runs_shown: u32,
}

/// What an action said, kept here for the page it redirects to: a link cannot make one up.
#[derive(Default)]
struct Notices(Mutex<HashMap<String, (bool, String, Instant)>>);

impl Notices {
    const KEPT: Duration = Duration::from_secs(600);
    const MOST: usize = 1024;

    fn put(&self, ok: bool, text: String) -> String {
        let id = auth::random_hex();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, _, at)| at.elapsed() < Self::KEPT);
        if map.len() >= Self::MOST {
            map.clear();
        }
        map.insert(id.clone(), (ok, text, Instant::now()));
        id
    }

    fn get(&self, id: &str) -> Option<(bool, String)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|(_, _, at)| at.elapsed() < Self::KEPT)
            .map(|(ok, text, _)| (*ok, text.clone()))
    }
}

struct Inner {
    sources: Sources,
    history: Arc<History>,
    guard: Option<Guard>,
    options: Options,
    notices: Notices,
    metrics: Metrics,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(
        sources: Sources,
        history: Arc<History>,
        guard: Option<Guard>,
        options: Options,
        metrics: Metrics,
    ) -> Self {
        Self(Arc::new(Inner {
            sources,
            history,
            guard,
            options,
            notices: Notices::default(),
            metrics,
        }))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(hierarchy))
        .route("/sites/{code}", get(site))
        .route("/sites/{code}/sync", post(run_sync))
        .route("/sites/{code}/activate", post(activate))
        .route("/events", get(events))
        .route("/events/stream", get(stream))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/static/console.js", get(script))
        .route("/static/console.css", get(style))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Every response: no inline script or style may run, no other site may frame the console.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/console.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/console.css"),
    )
}

fn page(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the page failed\n",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    site: String,
    message: String,
}

fn error_page(status: StatusCode, message: String) -> Response {
    let mut r = page(&ErrorPage {
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        site: String::new(),
        message,
    });
    *r.status_mut() = status;
    r
}

fn unreachable(what: &str, e: &tonic::Status) -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "The {what} did not answer: {}. The page follows it again as soon as it does.",
            e.message()
        ),
    )
}

#[derive(Template)]
#[template(path = "hierarchy.html")]
struct HierarchyPage {
    title: String,
    site: String,
    rows: Vec<TreeRow>,
    live: bool,
}

async fn hierarchy(State(s): State<AppState>) -> Response {
    s.0.metrics.page("hierarchy");
    let status = match s
        .0
        .sources
        .coordinator()
        .get_status(v1::GetStatusRequest::default())
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => return unreachable("coordinator", &e),
    };
    page(&HierarchyPage {
        title: "Site hierarchy".into(),
        site: String::new(),
        rows: view::hierarchy(&status),
        live: s.0.history.is_connected(),
    })
}

/// What the site page offers a signed-in operator.
struct Actions {
    csrf: String,
    sync_op: String,
    activate_op: String,
    targets: Vec<String>,
    slots: Vec<&'static str>,
    child_site: bool,
}

#[derive(Template)]
#[template(path = "site.html")]
struct SitePage {
    title: String,
    site: String,
    name: String,
    parent: String,
    mode: &'static str,
    failover: &'static str,
    site_server: String,
    time_zone: String,
    intranet: String,
    intranet_members: Vec<String>,
    internet: String,
    epoch: u64,
    sync_state: &'static str,
    last_run: String,
    next_run: String,
    schedule: String,
    drift: Vec<(String, String, String)>,
    roles: Vec<RoleRow>,
    components: Vec<ComponentRow>,
    messages: Vec<StatusMessage>,
    sync_svg: String,
    health_svg: String,
    scheduler_note: String,
    actions: Option<Actions>,
    sign_in: bool,
    notice: String,
    error: String,
}

#[derive(Deserialize, Default)]
struct Notice {
    #[serde(default)]
    notice: String,
}

async fn site(
    State(s): State<AppState>,
    Path(code): Path<String>,
    Query(notice): Query<Notice>,
    headers: HeaderMap,
) -> Response {
    s.0.metrics.page("site");
    let status = match s
        .0
        .sources
        .coordinator()
        .get_status(v1::GetStatusRequest { site: code.clone() })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) if e.code() == tonic::Code::NotFound => {
            return error_page(
                StatusCode::NOT_FOUND,
                format!("No site {code} is declared."),
            );
        }
        Err(e) => return unreachable("coordinator", &e),
    };
    let Some(st) = status
        .sites
        .into_iter()
        .find(|x| x.site.as_ref().is_some_and(|x| x.code == code))
    else {
        return error_page(
            StatusCode::NOT_FOUND,
            format!("No site {code} is declared."),
        );
    };
    let now = Utc::now();
    let (runs, scheduler_note) = match s.0.sources.scheduler() {
        None => (
            Vec::new(),
            "No scheduler is configured for this console.".to_string(),
        ),
        Some(mut scheduler) => match scheduler
            .list_sync_runs(v1::ListSyncRunsRequest {
                site: code.clone(),
                limit: s.0.options.sync_runs_shown,
            })
            .await
        {
            Ok(r) => (r.into_inner().runs, String::new()),
            Err(e) => (
                Vec::new(),
                format!("The scheduler did not answer: {}", e.message()),
            ),
        },
    };
    let events = s.0.history.recent(Some(&code));
    let messages = view::status_messages(&events);
    let components = view::components(&messages);
    let changes = view::health_changes(&events);
    let roles = view::roles(&st);
    let lines: Vec<svg::HealthLine> = st
        .roles
        .iter()
        .map(|r| {
            let history = changes.get(&r.server).cloned().unwrap_or_default();
            svg::HealthLine {
                server: r.server.clone(),
                before: history.before,
                changes: history.changes,
                now: r.health,
            }
        })
        .collect();
    let from = changes
        .values()
        .flat_map(|h| h.changes.iter())
        .map(|(t, _)| *t)
        .min()
        .unwrap_or(now - chrono::Duration::minutes(10))
        .min(now - chrono::Duration::seconds(60));
    let health_svg = svg::health_timeline(&lines, from, now);
    let sync_svg = svg::sync_history(&runs, now);
    let row = view::hierarchy(&v1::StatusResponse {
        sites: vec![st.clone()],
    })
    .into_iter()
    .next();
    let site = st.site.clone().unwrap_or_default();
    let session = auth::session_of(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()));
    let actions = s.0.guard.as_ref().and_then(|g| {
        let csrf = g.csrf(session.as_deref()?)?;
        let mut targets: Vec<String> = st.roles.iter().map(|r| r.server.clone()).collect();
        targets.extend(site.nlb_clusters.iter().map(|c| c.name.clone()));
        targets.sort();
        targets.dedup();
        Some(Actions {
            csrf,
            sync_op: uuid::Uuid::new_v4().to_string(),
            activate_op: uuid::Uuid::new_v4().to_string(),
            targets,
            slots: if site.mode == v1::SiteMode::Native as i32 {
                vec!["intranet", "internet"]
            } else {
                vec!["intranet"]
            },
            child_site: !site.parent.is_empty(),
        })
    });
    let sync = st.sync.clone().unwrap_or_default();
    let mut messages = messages;
    messages.truncate(50);
    page(&SitePage {
        title: format!("{} - {}", site.code, site.name),
        site: site.code.clone(),
        name: site.name.clone(),
        parent: site.parent.clone(),
        mode: row.as_ref().map(|r| r.mode).unwrap_or("mixed"),
        failover: row.as_ref().map(|r| r.failover).unwrap_or("manual"),
        site_server: site.site_server.clone(),
        time_zone: if site.time_zone.is_empty() {
            "UTC".into()
        } else {
            site.time_zone.clone()
        },
        intranet: row.as_ref().map(|r| r.intranet.clone()).unwrap_or_default(),
        intranet_members: row
            .as_ref()
            .map(|r| r.intranet_members.clone())
            .unwrap_or_default(),
        internet: row.as_ref().map(|r| r.internet.clone()).unwrap_or_default(),
        epoch: row.as_ref().map(|r| r.epoch).unwrap_or(0),
        sync_state: sup_proto::convert::sync_state_name(sync.state),
        last_run: row.as_ref().map(|r| r.last_run.clone()).unwrap_or_default(),
        next_run: row.as_ref().map(|r| r.next_run.clone()).unwrap_or_default(),
        schedule: if sync.schedule_token.is_empty() {
            "manual or inherited".into()
        } else {
            sync.schedule_token.clone()
        },
        drift: st
            .drift
            .iter()
            .map(|d| (d.path.clone(), d.declared.clone(), d.live.clone()))
            .collect(),
        roles,
        components,
        messages,
        sync_svg,
        health_svg,
        scheduler_note,
        sign_in: s.0.guard.is_some() && actions.is_none(),
        actions,
        notice: match s.0.notices.get(&notice.notice) {
            Some((true, text)) => text,
            _ => String::new(),
        },
        error: match s.0.notices.get(&notice.notice) {
            Some((false, text)) => text,
            _ => String::new(),
        },
    })
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    title: String,
    site: String,
    rows: Vec<EventRow>,
    live: bool,
}

#[derive(Deserialize, Default)]
struct SiteFilter {
    #[serde(default)]
    site: String,
}

async fn events(State(s): State<AppState>, Query(q): Query<SiteFilter>) -> Response {
    s.0.metrics.page("events");
    let held =
        s.0.history
            .recent((!q.site.is_empty()).then_some(q.site.as_str()));
    let rows = held.iter().rev().map(|e| view::event_row(e)).collect();
    page(&EventsPage {
        title: if q.site.is_empty() {
            "Event history".into()
        } else {
            format!("Event history of {}", q.site)
        },
        site: q.site,
        rows,
        live: s.0.history.is_connected(),
    })
}

/// New events as server-sent events (of one site with `?site=`); the pages' script refreshes
/// on each. A page that fell behind gets one `resync` message.
async fn stream(
    State(s): State<AppState>,
    Query(q): Query<SiteFilter>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let site = q.site;
    let events = BroadcastStream::new(s.0.history.subscribe()).filter_map(move |r| match r {
        Ok(e) if site.is_empty() || e.event.site == site => {
            let row = view::event_row(&e);
            Some(Ok(SseEvent::default()
                .id(e.sequence.to_string())
                .data(serde_json::to_string(&row).unwrap_or_default())))
        }
        Ok(_) => None,
        Err(_) => Some(Ok(SseEvent::default().data(r#"{"resync":true}"#))),
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    title: String,
    site: String,
    enabled: bool,
    failed: bool,
}

async fn login_form(State(s): State<AppState>) -> Response {
    page(&LoginPage {
        title: "Sign in".into(),
        site: String::new(),
        enabled: s.0.guard.is_some(),
        failed: false,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(guard) = s.0.guard.as_ref() else {
        return actions_disabled();
    };
    if !same_origin(&s, &headers) {
        return error_page(StatusCode::FORBIDDEN, "Cross-site request refused.".into());
    }
    match guard.login(&f.token) {
        Some(session) => {
            s.0.metrics.action("login", "ok");
            tracing::info!("an operator signed in to the console");
            let cookie = format!(
                "{}={session}; Path=/; HttpOnly; SameSite=Strict{}",
                auth::COOKIE,
                if s.0.options.secure_cookie {
                    "; Secure"
                } else {
                    ""
                }
            );
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        None => {
            s.0.metrics.action("login", "refused");
            tracing::warn!("a sign-in to the console was refused: wrong token");
            let mut r = page(&LoginPage {
                title: "Sign in".into(),
                site: String::new(),
                enabled: true,
                failed: true,
            });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let (Some(guard), Some(session)) = (
        s.0.guard.as_ref(),
        auth::session_of(headers.get(header::COOKIE).and_then(|v| v.to_str().ok())),
    ) && same_origin(&s, &headers)
    {
        guard.logout(&session);
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "sup_console_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

fn actions_disabled() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Actions are disabled in this console's configuration ([actions] enabled = false); it is read-only.".into(),
    )
}

fn same_origin(s: &AppState, headers: &HeaderMap) -> bool {
    let get = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    match (&s.0.options.public_origin, get(header::ORIGIN)) {
        (Some(public), Some(origin)) => public.trim_end_matches('/').eq_ignore_ascii_case(origin),
        _ => auth::same_origin(get(header::ORIGIN), get(header::HOST)),
    }
}

/// Whether the caller reads JSON: a script (it sends a token or asks for JSON).
fn wants_json(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION)
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"))
}

/// Who asks: a script with the bearer token, or a signed-in page with its CSRF token.
enum Caller {
    Script,
    Page,
}

/// Why an action was refused.
enum Refused {
    Disabled,
    CrossSite,
    NoSession,
}

impl Refused {
    fn message(&self) -> &'static str {
        match self {
            Refused::Disabled => {
                "Actions are disabled in this console's configuration ([actions] enabled = false); it is read-only."
            }
            Refused::CrossSite => "Cross-site request refused.",
            Refused::NoSession => {
                "Sign in first (the token, or the form's session or CSRF token, is missing or stale)."
            }
        }
    }

    /// An HTML page for a browser, JSON for a script.
    fn respond(self, json: bool) -> Response {
        if json {
            let status = match self {
                Refused::NoSession => StatusCode::UNAUTHORIZED,
                Refused::Disabled | Refused::CrossSite => StatusCode::FORBIDDEN,
            };
            return (
                status,
                axum::Json(serde_json::json!({"ok": false, "error": self.message()})),
            )
                .into_response();
        }
        error_page(StatusCode::FORBIDDEN, self.message().into())
    }
}

fn authorize(s: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Caller, Refused> {
    let Some(guard) = s.0.guard.as_ref() else {
        return Err(Refused::Disabled);
    };
    let get = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if guard.bearer(get(header::AUTHORIZATION)) {
        return Ok(Caller::Script);
    }
    if !same_origin(s, headers) {
        return Err(Refused::CrossSite);
    }
    let session = auth::session_of(get(header::COOKIE));
    if guard.form_allowed(session.as_deref(), csrf) {
        return Ok(Caller::Page);
    }
    Err(Refused::NoSession)
}

/// The HTTP status a service's refusal maps to, for scripts.
fn http_status(code: tonic::Code) -> StatusCode {
    match code {
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => StatusCode::FORBIDDEN,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition | tonic::Code::Aborted => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn done(
    s: &AppState,
    caller: Caller,
    code: &str,
    result: Result<String, (StatusCode, String)>,
) -> Response {
    match caller {
        Caller::Script => {
            let (status, body) = match &result {
                Ok(m) => (
                    StatusCode::OK,
                    serde_json::json!({"ok": true, "message": m}),
                ),
                Err((status, m)) => (*status, serde_json::json!({"ok": false, "error": m})),
            };
            (status, axum::Json(body)).into_response()
        }
        Caller::Page => {
            let id = match result {
                Ok(m) => s.0.notices.put(true, m),
                Err((_, m)) => s.0.notices.put(false, m),
            };
            Redirect::to(&format!("/sites/{}?notice={id}", url_encode(code))).into_response()
        }
    }
}

fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(Deserialize)]
struct SyncForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op_id: String,
    #[serde(default)]
    full: Option<String>,
}

async fn run_sync(
    State(s): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Form(f): Form<SyncForm>,
) -> Response {
    let caller = match authorize(&s, &headers, &f.csrf) {
        Ok(c) => c,
        Err(r) => {
            s.0.metrics.action("run_sync", "refused");
            return r.respond(wants_json(&headers));
        }
    };
    let Some(mut scheduler) = s.0.sources.scheduler() else {
        return done(
            &s,
            caller,
            &code,
            Err((
                StatusCode::NOT_IMPLEMENTED,
                "no scheduler is configured for this console".into(),
            )),
        );
    };
    let op_id = if f.op_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        f.op_id
    };
    let full = f.full.is_some_and(|v| v == "on" || v == "true");
    let result = scheduler
        .run_sync(v1::RunSyncRequest {
            site: code.clone(),
            op_id: op_id.clone(),
            full,
        })
        .await;
    let result = match result {
        Ok(r) => {
            let run = r.into_inner();
            s.0.metrics.action("run_sync", "ok");
            tracing::info!(site = %code, run = %run.id, op_id = %op_id, "Run Synchronization from the console");
            Ok(format!(
                "Run Synchronization: run {} on {} ({})",
                run.id,
                run.server,
                if run.full { "full" } else { "delta" }
            ))
        }
        Err(e) => {
            s.0.metrics.action("run_sync", "failed");
            Err((
                http_status(e.code()),
                format!("Run Synchronization was refused: {}", e.message()),
            ))
        }
    };
    done(&s, caller, &code, result)
}

#[derive(Deserialize)]
struct ActivateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op_id: String,
    slot: String,
    target: String,
}

async fn activate(
    State(s): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ActivateForm>,
) -> Response {
    let caller = match authorize(&s, &headers, &f.csrf) {
        Ok(c) => c,
        Err(r) => {
            s.0.metrics.action("activate", "refused");
            return r.respond(wants_json(&headers));
        }
    };
    let slot = match f.slot.as_str() {
        "intranet" => v1::Slot::Intranet,
        "internet" => v1::Slot::Internet,
        other => {
            return done(
                &s,
                caller,
                &code,
                Err((
                    StatusCode::BAD_REQUEST,
                    format!("slot {other:?}: use intranet or internet"),
                )),
            );
        }
    };
    let op_id = if f.op_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        f.op_id
    };
    let result =
        s.0.sources
            .coordinator()
            .set_active(v1::SetActiveRequest {
                site: code.clone(),
                slot: slot as i32,
                target: f.target.clone(),
                op_id: op_id.clone(),
            })
            .await;
    let result = match result {
        Ok(r) => {
            let a = r.into_inner();
            s.0.metrics.action("activate", "ok");
            tracing::info!(site = %code, slot = %f.slot, target = %a.target, epoch = a.epoch, op_id = %op_id, "activation from the console");
            Ok(format!(
                "{} is the active {} SUP (epoch {})",
                a.target, f.slot, a.epoch
            ))
        }
        Err(e) => {
            s.0.metrics.action("activate", "failed");
            Err((
                http_status(e.code()),
                format!("Activation was refused: {}", e.message()),
            ))
        }
    };
    done(&s, caller, &code, result)
}

#[cfg(test)]
mod tests;
