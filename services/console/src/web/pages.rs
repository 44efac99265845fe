//! The pages: the hierarchy, a site, the event history, and the live feed that keeps them
//! current.

use super::*;

#[derive(Template)]
#[template(path = "hierarchy.html")]
pub(super) struct HierarchyPage {
    title: String,
    site: String,
    rows: Vec<TreeRow>,
    live: bool,
}

pub(super) async fn hierarchy(State(s): State<AppState>) -> Response {
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
pub(super) struct Actions {
    csrf: String,
    sync_op: String,
    activate_op: String,
    targets: Vec<String>,
    slots: Vec<&'static str>,
    child_site: bool,
}

#[derive(Template)]
#[template(path = "site.html")]
pub(super) struct SitePage {
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
pub(super) struct Notice {
    #[serde(default)]
    notice: String,
}

pub(super) async fn site(
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
pub(super) struct EventsPage {
    title: String,
    site: String,
    rows: Vec<EventRow>,
    live: bool,
}

#[derive(Deserialize, Default)]
pub(super) struct SiteFilter {
    #[serde(default)]
    site: String,
}

pub(super) async fn events(State(s): State<AppState>, Query(q): Query<SiteFilter>) -> Response {
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
pub(super) async fn stream(
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
