//! The control API (fault injection, inspection) and its client, `wsus-emulator ctl`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};

use crate::provider::{Commit, Provider};
use crate::state::{Emulator, Fault, Server};

pub fn router(emu: Arc<Emulator>, provider: Arc<Provider>) -> Router {
    let provider_routes = Router::new()
        .route("/provider/journal", get(provider_journal))
        .route(
            "/provider/sites/{site}/components/{component}/{property}/{slot}",
            post(set_property),
        )
        .with_state(provider);
    Router::new()
        .route("/servers", get(list))
        .route("/journal", get(journal))
        .route("/servers/{server}", post(add))
        .route("/servers/{server}/wsus-version/{version}", post(version))
        .route("/faults/{server}/{kind}", post(fault))
        .route("/faults/{server}", delete(clear))
        .with_state(emu)
        .merge(provider_routes)
}

/// Every commit of every site's control file, in order.
async fn provider_journal(State(p): State<Arc<Provider>>) -> Json<Vec<Commit>> {
    Json(p.journal())
}

/// Changes a committed setting behind the control plane's back (the body is the new value).
async fn set_property(
    State(p): State<Arc<Provider>>,
    Path((site, component, property, slot)): Path<(String, String, String, String)>,
    value: String,
) -> (StatusCode, String) {
    match p.set_property(&site, &component, &property, &slot, value.trim()) {
        Ok(()) => (
            StatusCode::OK,
            format!("{site}: {component} {property} {slot} = {}\n", value.trim()),
        ),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

async fn list(State(emu): State<Arc<Emulator>>) -> Json<Vec<Server>> {
    Json(emu.servers())
}

/// The agent's fenced commands in decision order (site, server, kind, epoch, accepted).
async fn journal(State(emu): State<Arc<Emulator>>) -> Json<Vec<crate::state::Fenced>> {
    Json(emu.journal())
}

async fn add(State(emu): State<Arc<Emulator>>, Path(server): Path<String>) -> StatusCode {
    emu.add_server(&server, None, None, None);
    StatusCode::NO_CONTENT
}

async fn version(
    State(emu): State<Arc<Emulator>>,
    Path((server, version)): Path<(String, String)>,
) -> (StatusCode, String) {
    if sup_core::wsus_version::parse(&version).is_none() {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "{version:?} is not a version: Major.Minor.Build.Revision, e.g. 3.2.7600.226\n"
            ),
        );
    }
    emu.set_wsus_version(&server, &version);
    (StatusCode::OK, format!("{server}: WSUS {version}\n"))
}

async fn fault(
    State(emu): State<Arc<Emulator>>,
    Path((server, kind)): Path<(String, String)>,
) -> (StatusCode, String) {
    match Fault::parse(&kind) {
        Some(f) => {
            emu.set_fault(&server, f);
            (StatusCode::OK, format!("{server}: {kind}\n"))
        }
        None => (
            StatusCode::BAD_REQUEST,
            format!(
                "unknown fault {kind:?}: one of {}\n",
                Fault::ALL.map(|f| f.as_str()).join(", ")
            ),
        ),
    }
}

async fn clear(
    State(emu): State<Arc<Emulator>>,
    Path(server): Path<String>,
) -> (StatusCode, String) {
    emu.clear_faults(&server);
    (StatusCode::OK, format!("{server}: healthy\n"))
}

/// `wsus-emulator ctl ...`: one request to the control API.
pub async fn client(control: &str, method: reqwest::Method, path: &str) -> anyhow::Result<String> {
    client_with_body(control, method, path, String::new()).await
}

/// One request with a body.
pub async fn client_with_body(
    control: &str,
    method: reqwest::Method,
    path: &str,
    body: String,
) -> anyhow::Result<String> {
    let base = if control.starts_with("http") {
        control.to_string()
    } else {
        format!("http://{control}")
    };
    let resp = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("the emulator's control API at {base} did not answer: {e}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        anyhow::bail!("{}", text.trim());
    }
    Ok(text)
}
