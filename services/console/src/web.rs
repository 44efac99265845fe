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

mod actions;
mod pages;

use actions::*;
use pages::*;

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

#[cfg(test)]
mod tests;
