//! The HTTP API for scripts and other tools: start a run, follow it.
//!
//! `POST /api/runs` takes `application/json` only. Browsers send that content type across
//! sites only after a CORS preflight, which casebook never grants, so a page elsewhere cannot
//! start runs in an analyst's name: this is the API's CSRF protection.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::WebError;
use super::state::AppState;
use super::toolkit::{audit, check_quota, parse_form, runnable, Sight, UrlPath};
use crate::auth::Caller;
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
pub async fn start_run(State(state): State<AppState>, me: Caller, Json(body): Json<StartRun>) -> Result<Response> {
    let pb = runnable(&state, &me, &body.playbook, "run")?;
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
                    a.iter().filter_map(crate::util::yaml::scalar_text).collect::<Vec<_>>().join(",")
                }
                other => crate::util::yaml::scalar_text(other).unwrap_or_default(),
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
    check_quota(&state, &me)?;
    let req = RunRequest::new(pb.clone(), values, me.name.clone(), "api").section(body.section);
    let run_id = state.engine.submit(req).map_err(WebError::Internal)?;
    audit(
        &state,
        &me.name,
        "run",
        &pb.id,
        json!({ "run": run_id, "section": body.section, "params": given, "via": "api" }),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run_id": run_id, "url": format!("/runs/{run_id}"), "api": format!("/api/runs/{run_id}") })),
    )
        .into_response())
}

/// A run's state, live progress and steps.
pub async fn run_status(State(state): State<AppState>, me: Caller, UrlPath(run): UrlPath<String>) -> Result<Response> {
    let rec = Sight::new(&state, &me)?.run(&state, &run)?;
    let store = &state.engine.store;
    let steps: Vec<serde_json::Value> = store
        .steps(&run)
        .map_err(WebError::Internal)?
        .into_iter()
        .map(|s| json!({ "id": s.step_id, "rows": s.rows, "elapsed_ms": s.elapsed_ms, "error": s.error }))
        .collect();
    let progress = state.engine.progress(&run).map_err(WebError::Internal)?;
    let params = rec.entered();
    Ok(Json(json!({
        "id": rec.id, "playbook": rec.playbook, "state": rec.state, "error": rec.error,
        "started_by": rec.started_by, "source": rec.source, "params": params,
        "started_at": rec.started_at, "finished_at": rec.finished_at, "schedule_id": rec.schedule_id,
        "progress": progress, "steps": steps,
    }))
    .into_response())
}
