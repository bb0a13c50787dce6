//! Threats: saving one from a run, the executive briefing (`/threats`), a threat's
//! storyboard, and exports (CSV, JSON, STIX 2.1).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::csrf;
use super::error::WebError;
use super::state::AppState;
use super::toolkit::{audit, check_run, page, render_page, Sight, UrlPath};
use crate::auth::Caller;
use crate::threat::{self, NewThreat};

type Result<T> = std::result::Result<T, WebError>;

/// Saves a threat from run `run`; answers JSON: where it is, or a message per field.
pub async fn save(
    State(state): State<AppState>,
    UrlPath(run): UrlPath<String>,
    me: Caller,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    check_run(&run)?;
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    let t = NewThreat {
        run_id: run.clone(),
        title: get("threat_title"),
        description: get("threat_description"),
        severity: get("threat_severity"),
        kind: get("threat_kind"),
        entity: get("threat_entity"),
        who: me.name.clone(),
    };
    let problems = t.check();
    if !problems.is_empty() {
        let errors: serde_json::Map<String, serde_json::Value> =
            problems.into_iter().map(|(k, v)| (format!("threat_{k}"), serde_json::Value::String(v))).collect();
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "errors": errors }))).into_response());
    }
    Sight::new(&state, &me)?.run(&state, &run)?;
    let id = threat::save(&state.engine, &t).await.map_err(WebError::Internal)?;
    let detail = json!({ "threat": id, "run": run, "title": t.title, "severity": t.severity, "entity": t.entity });
    audit(&state, &me.name, "save-threat", &run, detail);
    Ok(Json(json!({ "location": format!("/threats/{id}") })).into_response())
}

/// The threats briefing.
#[derive(Serialize)]
struct ThreatsPage<'a> {
    csrf: String,
    threats: Vec<crate::store::threats::ThreatRecord>,
    tz: &'a str,
}

/// A threat's storyboard: the threat, its parameters and its evidence tables (first rows).
#[derive(Serialize)]
struct StoryboardPage<'a> {
    csrf: String,
    t: crate::store::threats::ThreatRecord,
    params: serde_json::Value,
    evidence: Vec<Evidence>,
    tz: &'a str,
}

#[derive(Serialize)]
struct Evidence {
    step: String,
    title: String,
    rows: i64,
    columns: Vec<String>,
    shown: Vec<Vec<String>>,
}

pub async fn list(State(state): State<AppState>, me: Caller, headers: HeaderMap) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let sight = Sight::new(&state, &me)?;
    let mut threats = state.engine.store.threats().map_err(WebError::Internal)?;
    threats.retain(|t| sight.playbook(&t.playbook));
    let html =
        render_page(&state, &me, "threats.html", ThreatsPage { csrf: token, threats, tz: state.engine.tz().name() })?;
    Ok(page(html, cookie))
}

pub async fn storyboard(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<i64>,
    me: Caller,
    headers: HeaderMap,
) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let store = &state.engine.store;
    let sight = Sight::new(&state, &me)?;
    let t = store
        .threat(id)
        .map_err(WebError::Internal)?
        .filter(|t| sight.playbook(&t.playbook))
        .ok_or_else(|| WebError::NotFound("There is no such threat.".into()))?;
    let tz = state.engine.tz();
    let dir = state.engine.catalog().paths.data.join("threats").join(id.to_string());
    let mut evidence = Vec::new();
    for (step, title, rows) in store.evidence(id).map_err(WebError::Internal)? {
        let Ok(data) = crate::results::table::read_parquet(&dir.join(format!("evidence_{step}.parquet"))) else {
            continue;
        };
        let columns: Vec<String> = data.schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut shown: Vec<Vec<String>> = Vec::new();
        'outer: for b in &data.batches {
            for r in 0..b.num_rows() {
                if shown.len() >= 20 {
                    break 'outer;
                }
                shown.push((0..b.num_columns()).map(|c| crate::results::cell_text(b.column(c), r, tz)).collect());
            }
        }
        evidence.push(Evidence { step, title, rows, columns, shown });
    }
    let params = t.params_json();
    let html = render_page(
        &state,
        &me,
        "storyboard.html",
        StoryboardPage { csrf: token, t, params, evidence, tz: tz.name() },
    )?;
    Ok(page(html, cookie))
}

pub async fn story_json(State(state): State<AppState>, me: Caller, UrlPath(id): UrlPath<i64>) -> Result<Response> {
    let seen = state.engine.store.threat(id).map_err(WebError::Internal)?;
    let sight = Sight::new(&state, &me)?;
    if !seen.is_some_and(|t| sight.playbook(&t.playbook)) {
        return Err(WebError::NotFound("There is no such threat.".into()));
    }
    let data = threat::storyboard_json(&state.engine.store, &state.engine.catalog().paths.data, id, state.engine.tz())
        .map_err(|_| WebError::NotFound("There is no such threat.".into()))?;
    Ok(Json(data).into_response())
}

/// `/threats/export/csv`, `/json` or `/stix` (a STIX 2.1 bundle).
pub async fn export(State(state): State<AppState>, me: Caller, UrlPath(file): UrlPath<String>) -> Result<Response> {
    let sight = Sight::new(&state, &me)?;
    let mut threats = state.engine.store.threats().map_err(WebError::Internal)?;
    threats.retain(|t| sight.playbook(&t.playbook));
    if matches!(file.as_str(), "csv" | "json" | "stix") {
        audit(&state, &me.name, "export-threats", &file, json!({ "threats": threats.len() }));
    }
    let (body, kind) = match file.as_str() {
        "csv" => (threat::csv(threats), "text/csv; charset=utf-8"),
        "json" => {
            let rows: Vec<threat::Exported> = threats.into_iter().map(Into::into).collect();
            (serde_json::to_string_pretty(&rows).unwrap_or_default(), "application/json")
        }
        "stix" => {
            let sightings = threat::sighting_counts(&state.engine.catalog().paths.data, &threats);
            (
                serde_json::to_string_pretty(&threat::stix(&threats, &sightings)).unwrap_or_default(),
                "application/stix+json;version=2.1",
            )
        }
        _ => return Err(WebError::NotFound("No such export.".into())),
    };
    let name = match file.as_str() {
        "csv" => "casebook-threats.csv",
        "json" => "casebook-threats.json",
        _ => "casebook-threats.stix.json",
    };
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok(([(header::CONTENT_TYPE, kind.to_string()), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}
