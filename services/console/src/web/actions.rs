//! The actions and who may take them: sign-in and sessions, the CSRF and origin checks, Run
//! Synchronization and activation, and what each said.

use super::*;

use axum::extract::rejection::FormRejection;

/// What an action said, kept here for the page it redirects to: a link cannot make one up.
#[derive(Default)]
pub(super) struct Notices(Mutex<HashMap<String, (bool, String, Instant)>>);

impl Notices {
    const KEPT: Duration = Duration::from_secs(600);
    const MOST: usize = 1024;

    pub(super) fn put(&self, ok: bool, text: String) -> String {
        let id = auth::random_hex();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, _, at)| at.elapsed() < Self::KEPT);
        if map.len() >= Self::MOST {
            map.clear();
        }
        map.insert(id.clone(), (ok, text, Instant::now()));
        id
    }

    pub(super) fn get(&self, id: &str) -> Option<(bool, String)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|(_, _, at)| at.elapsed() < Self::KEPT)
            .map(|(ok, text, _)| (*ok, text.clone()))
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage {
    title: String,
    site: String,
    enabled: bool,
    failed: bool,
}

pub(super) async fn login_form(State(s): State<AppState>) -> Response {
    page(&LoginPage {
        title: "Sign in".into(),
        site: String::new(),
        enabled: s.0.guard.is_some(),
        failed: false,
    })
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

pub(super) async fn login(
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

pub(super) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
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

pub(super) fn actions_disabled() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Actions are disabled in this console's configuration ([actions] enabled = false); it is read-only.".into(),
    )
}

pub(super) fn same_origin(s: &AppState, headers: &HeaderMap) -> bool {
    let get = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    match (&s.0.options.public_origin, get(header::ORIGIN)) {
        (Some(public), Some(origin)) => public.trim_end_matches('/').eq_ignore_ascii_case(origin),
        _ => auth::same_origin(get(header::ORIGIN), get(header::HOST)),
    }
}

/// Whether the caller reads JSON: a script (it sends a token or asks for JSON).
pub(super) fn wants_json(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION)
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"))
}

/// Who asks: a script with the bearer token, or a signed-in page with its CSRF token.
pub(super) enum Caller {
    Script,
    Page,
}

/// Why an action was refused.
pub(super) enum Refused {
    Disabled,
    CrossSite,
    NoSession,
}

impl Refused {
    pub(super) fn message(&self) -> &'static str {
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
    pub(super) fn respond(self, json: bool) -> Response {
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

pub(super) fn authorize(s: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Caller, Refused> {
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
/// A form that could not be read, for an authorised caller.
pub(super) fn malformed(rejection: &FormRejection, json: bool) -> Response {
    let text = format!(
        "The request's form could not be read: {}",
        rejection.body_text()
    );
    if json {
        return (
            rejection.status(),
            axum::Json(serde_json::json!({"ok": false, "error": text})),
        )
            .into_response();
    }
    error_page(StatusCode::BAD_REQUEST, text)
}

pub(super) fn http_status(code: tonic::Code) -> StatusCode {
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

pub(super) fn done(
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

pub(super) fn url_encode(text: &str) -> String {
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
pub(super) struct SyncForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op_id: String,
    #[serde(default)]
    full: Option<String>,
}

pub(super) async fn run_sync(
    State(s): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    form: Result<Form<SyncForm>, FormRejection>,
) -> Response {
    // Who asks is decided before what was sent is read: an unauthorised request is refused
    // whatever its body.
    let csrf = form.as_ref().map(|Form(f)| f.csrf.as_str()).unwrap_or("");
    let caller = match authorize(&s, &headers, csrf) {
        Ok(c) => c,
        Err(r) => {
            s.0.metrics.action("run_sync", "refused");
            return r.respond(wants_json(&headers));
        }
    };
    let f = match form {
        Ok(Form(f)) => f,
        Err(rejection) => return malformed(&rejection, wants_json(&headers)),
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
pub(super) struct ActivateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op_id: String,
    slot: String,
    target: String,
}

pub(super) async fn activate(
    State(s): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ActivateForm>, FormRejection>,
) -> Response {
    // Who asks is decided before what was sent is read: an unauthorised request is refused
    // whatever its body.
    let csrf = form.as_ref().map(|Form(f)| f.csrf.as_str()).unwrap_or("");
    let caller = match authorize(&s, &headers, csrf) {
        Ok(c) => c,
        Err(r) => {
            s.0.metrics.action("activate", "refused");
            return r.respond(wants_json(&headers));
        }
    };
    let f = match form {
        Ok(Form(f)) => f,
        Err(rejection) => return malformed(&rejection, wants_json(&headers)),
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
