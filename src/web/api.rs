//! The HTTP API for scripts and other tools: start a run, follow it.
//!
//! `POST /api/runs` takes `application/json` only. Browsers send that content type across
//! sites only after a CORS preflight, which casebook never grants, so a page elsewhere cannot
//! start runs in an analyst's name: this is the API's CSRF protection.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::handlers::{find_entry, parse_form, who};
use super::{AppState, WebError};
use crate::engine::RunRequest;

type Result<T> = std::result::Result<T, WebError>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    pub playbook: String,
    /// Values as the form takes them; a list is a multiple choice.
    #[serde(default)]
    pub params: HashMap<String, serde_json::Value>,
    /// One section (and the earlier steps it reads); default: all.
    #[serde(default)]
    pub section: Option<usize>,
}

/// Starts a run in the background: 202 with its id and where to follow it, or 422 with a
/// message per parameter.
pub async fn start_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<StartRun>,
) -> Result<Response> {
    let entry = find_entry(&state, &body.playbook)?;
    let Some(pb) = entry.runnable().cloned() else {
        return Err(WebError::BadRequest("This playbook has problems and cannot run; see its page.".into()));
    };
    if body.section.is_some_and(|s| s >= pb.sections.len()) {
        return Err(WebError::BadRequest(format!(
            "the playbook has {} section(s), numbered from 0",
            pb.sections.len()
        )));
    }
    let given: HashMap<String, String> = body
        .params
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::Array(a) => {
                    a.iter().filter_map(crate::playbook::scalar_text).collect::<Vec<_>>().join(",")
                }
                other => crate::playbook::scalar_text(other).unwrap_or_default(),
            };
            (k.clone(), text)
        })
        .collect();
    let mut errors = HashMap::new();
    for k in given.keys() {
        if pb.param(k).is_none() {
            errors.insert(k.clone(), "this playbook has no such parameter".to_string());
        }
    }
    let values = match parse_form(&pb, &given, &state.engine.catalog().parse_ctx()) {
        Ok(v) if errors.is_empty() => v,
        Ok(_) => return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "errors": errors }))).into_response()),
        Err(e) => {
            errors.extend(e);
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "errors": errors }))).into_response());
        }
    };
    let req = RunRequest {
        playbook: pb.clone(),
        values,
        section: body.section,
        who: who(&state, &headers),
        source: "api".into(),
        schedule_id: None,
    };
    let run_id = state.engine.submit(req).map_err(WebError::Internal)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run_id": run_id, "url": format!("/runs/{run_id}"), "api": format!("/api/runs/{run_id}") })),
    )
        .into_response())
}

/// A run's state, live progress and steps.
pub async fn run_status(State(state): State<AppState>, Path(run): Path<String>) -> Result<Response> {
    if run.len() != 32 || !run.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(WebError::NotFound("There is no such run.".into()));
    }
    let store = &state.engine.store;
    let rec = store
        .run(&run)
        .map_err(WebError::Internal)?
        .ok_or_else(|| WebError::NotFound("There is no such run.".into()))?;
    let steps: Vec<serde_json::Value> = store
        .steps(&run)
        .map_err(WebError::Internal)?
        .into_iter()
        .map(|s| json!({ "id": s.step_id, "rows": s.rows, "elapsed_ms": s.elapsed_ms, "error": s.error }))
        .collect();
    let progress = state.engine.progress(&run).map_err(WebError::Internal)?;
    let params: serde_json::Value = serde_json::from_str(&rec.params).unwrap_or(serde_json::Value::Null);
    Ok(Json(json!({
        "id": rec.id, "playbook": rec.playbook, "state": rec.state, "error": rec.error,
        "started_by": rec.started_by, "source": rec.source, "params": params,
        "started_at": rec.started_at, "finished_at": rec.finished_at, "schedule_id": rec.schedule_id,
        "progress": progress, "steps": steps,
    }))
    .into_response())
}

/// "Run again" on a run's page: the same playbook, section and parameters as entered (a
/// relative window ends now), as a new run; answers with the new run's permalink.
pub async fn rerun(
    State(state): State<AppState>,
    Path(run): Path<String>,
    headers: HeaderMap,
    super::csrf::CheckedForm(_): super::csrf::CheckedForm,
) -> Result<Response> {
    if run.len() != 32 || !run.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(WebError::NotFound("There is no such run.".into()));
    }
    let rec = state
        .engine
        .store
        .run(&run)
        .map_err(WebError::Internal)?
        .ok_or_else(|| WebError::NotFound("There is no such run.".into()))?;
    let entry = find_entry(&state, &rec.playbook)?;
    let Some(pb) = entry.runnable().cloned() else {
        return Err(WebError::BadRequest("This playbook has problems and cannot run; see its page.".into()));
    };
    let stored: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&rec.params).unwrap_or_default();
    let given: HashMap<String, String> =
        stored.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect();
    let values = parse_form(&pb, &given, &state.engine.catalog().parse_ctx()).map_err(|errors| {
        let mut list: Vec<String> = errors.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        list.sort();
        WebError::BadRequest(format!(
            "These parameters no longer fit the playbook ({}); edit them and run.",
            list.join("; ")
        ))
    })?;
    let req = RunRequest {
        playbook: pb,
        values,
        section: rec
            .section
            .and_then(|s| usize::try_from(s).ok())
            .filter(|s| *s < entry.runnable().map_or(0, |p| p.sections.len())),
        who: who(&state, &headers),
        source: "page".into(),
        schedule_id: None,
    };
    let id = state.engine.submit(req).map_err(WebError::Internal)?;
    Ok(axum::response::Redirect::to(&format!("/runs/{id}")).into_response())
}
