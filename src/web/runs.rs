//! A run's permalink, its progress as server-sent events, cancel, and reports (HTML, PDF).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::csrf;
use super::error::WebError;
use super::results::results_html;
use super::state::AppState;
use super::toolkit::{audit, check_run, page, render_page, urlencode, Result, Sight, UrlPath};
use crate::auth::Caller;
use crate::store::accounts::Role;

pub(super) fn report_text(state: &AppState, me: &Caller, run: &str) -> Result<String> {
    Sight::new(state, me)?.run(state, run)?;
    crate::report::html(&state.engine, &state.templates, &state.paths.web, run).map_err(WebError::Internal)
}

/// A run as one self-contained HTML file, downloaded.
pub async fn report_html(State(state): State<AppState>, me: Caller, UrlPath(run): UrlPath<String>) -> Result<Response> {
    let html = report_text(&state, &me, &run)?;
    let mut r = Response::new(Body::from(html));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"casebook-report-{}.html\"", &run[..8])) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// The same report as PDF, printed by headless Chromium.
/// Chromium is heavy: one PDF at a time per person, and two at once on the server.
pub async fn report_pdf(State(state): State<AppState>, me: Caller, UrlPath(run): UrlPath<String>) -> Result<Response> {
    let html = report_text(&state, &me, &run)?;
    let Some(_turn) = state.reports.take(&me.name) else {
        return Err(WebError::TooBusy(
            "A PDF report you asked for is still being made; wait for it, or download the HTML report.".into(),
        ));
    };
    let _slot = state.reports.slots.acquire().await.map_err(|e| WebError::Internal(e.into()))?;
    if !crate::report::pdf_available() {
        return Err(WebError::NotFound(
            "PDF reports need Chromium on the server; download the HTML report instead.".into(),
        ));
    }
    let pdf = crate::report::pdf(&html).await.map_err(WebError::Internal)?;
    let mut r = Response::new(Body::from(pdf));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"casebook-report-{}.pdf\"", &run[..8])) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// A run's permalink: what it showed, from its stored outputs, after a reload or on a
/// colleague's screen.
pub async fn run_page(
    State(state): State<AppState>,
    UrlPath(run): UrlPath<String>,
    me: Caller,
    headers: HeaderMap,
) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let rec = Sight::new(&state, &me)?.run(&state, &run)?;
    let outcomes: Vec<crate::engine::StepOutcome> =
        state.engine.store.steps(&run).map_err(WebError::Internal)?.iter().filter_map(|s| s.outcome_as()).collect();
    let catalog = state.engine.catalog();
    let entry = catalog.entry(&rec.playbook);
    let shown = entry.and_then(|e| e.shown());
    let title = shown.map(|p| p.title.clone()).unwrap_or_else(|| rec.playbook.clone());
    let params = rec.entered();
    let query: String = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let changed = shown.is_some_and(|p| p.hash != rec.playbook_hash);
    let results = results_html(&state, &rec.playbook, &run, &outcomes, None).await?;
    let html = render_page(
        &state,
        &me,
        "run.html",
        RunPage {
            csrf: token,
            tz: catalog.tz.name(),
            entity_hint: params
                .values()
                .find(|v| v.trim().parse::<std::net::IpAddr>().is_ok())
                .cloned()
                .unwrap_or_default(),
            rerun: format!("/p/{}?{}", rec.playbook, query),
            run: &rec,
            title,
            params: &params,
            exists: shown.is_some(),
            changed,
            results,
        },
    )?;
    Ok(page(html, cookie))
}

/// A run's permalink page.
#[derive(Serialize)]
struct RunPage<'a> {
    csrf: String,
    tz: &'a str,
    run: &'a crate::store::runs::RunRecord,
    title: String,
    params: &'a std::collections::BTreeMap<String, String>,
    /// The first address among the parameters, offered as the threat's entity.
    entity_hint: String,
    rerun: String,
    exists: bool,
    /// The playbook file changed since the run.
    changed: bool,
    results: String,
}

/// Stops a queued or running run (the page's Cancel button).
pub async fn cancel_run(
    State(state): State<AppState>,
    UrlPath(run): UrlPath<String>,
    me: Caller,
    _: csrf::Checked,
) -> Result<Response> {
    let rec = Sight::new(&state, &me)?.run(&state, &run)?;
    if rec.started_by != me.name && !me.may(Role::Admin) {
        return Err(WebError::Forbidden(format!(
            "This run was started by {}; only they or an administrator may cancel it.",
            rec.started_by
        )));
    }
    let stopped = state.engine.cancel(&run);
    audit(&state, &me.name, "cancel", &rec.playbook, json!({ "run": run, "stopped": stopped }));
    Ok(Json(json!({ "cancelled": stopped })).into_response())
}

/// Progress of a run as server-sent events: a `progress` event four times a second while it
/// is queued or running, then one `done` event with its final state.
pub async fn run_events(State(state): State<AppState>, me: Caller, UrlPath(run): UrlPath<String>) -> Result<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    check_run(&run)?;
    // A run not registered yet may be waited for (the page asks as it starts one); one that
    // exists must be the caller's to see.
    if state.engine.store.run(&run).map_err(WebError::Internal)?.is_some() {
        Sight::new(&state, &me)?.run(&state, &run)?;
    }
    let engine = state.engine.clone();
    let stream = futures::stream::unfold((0u32, false), move |(tick, finished)| {
        let engine = engine.clone();
        let run = run.clone();
        async move {
            if finished {
                return None;
            }
            if tick > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            let p = engine.progress(&run).ok().flatten();
            let event = match p {
                Some(p) if p.state.is_active() => {
                    (Event::default().event("progress").json_data(&p).unwrap_or_default(), false)
                }
                Some(p) => (Event::default().event("done").json_data(&p).unwrap_or_default(), true),
                // Not started yet (the page may ask before its run is registered): wait 10 s.
                None if tick < 40 => (Event::default().event("waiting").data("{}"), false),
                None => (Event::default().event("done").data("{\"state\":\"unknown\"}"), true),
            };
            Some((Ok::<_, std::convert::Infallible>(event.0), (tick + 1, event.1)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
