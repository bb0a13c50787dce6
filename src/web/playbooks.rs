//! The index of playbooks, a playbook's page (its form built from the widget templates),
//! running a section, and Run again.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use std::collections::HashMap;

use super::csrf;
use super::error::WebError;
use super::results::results_html;
use super::state::AppState;
use super::toolkit::{
    audit, check_quota, entered, find_entry, join_multi, page, parse_form, render_page, runnable, Result, Sight,
    UrlPath,
};
use crate::auth::Caller;
use crate::catalog::Entry;
use crate::engine::RunRequest;
use crate::model::params::{Param, ParamKind};
use crate::util::markdown;
use crate::util::timeutil;

#[derive(Serialize)]
pub(super) struct PlaybookCard {
    id: String,
    path: String,
    title: String,
    description_html: String,
    version: Option<String>,
    maintainers: Vec<String>,
    tags: Vec<String>,
    problems: usize,
    search: String,
}

pub(super) fn card(e: &Entry) -> PlaybookCard {
    let pb = e.playbook.as_deref();
    let title = pb.map(|p| p.title.clone()).unwrap_or_else(|| e.id.clone());
    let description = pb.map(|p| p.description.clone()).unwrap_or_default();
    let first_para = description.split("\n\n").next().unwrap_or("").to_string();
    let tags = pb.map(|p| p.tags.clone()).unwrap_or_default();
    PlaybookCard {
        search: format!("{} {} {} {}", title, description, tags.join(" "), e.id).to_lowercase(),
        id: e.id.clone(),
        path: e.path.clone(),
        title,
        description_html: markdown::to_html(&first_para),
        version: pb.and_then(|p| p.version.clone()),
        maintainers: pb.map(|p| p.maintainers.clone()).unwrap_or_default(),
        tags,
        problems: e.problems.len(),
    }
}

/// The index: every playbook as a card, and the connectors.
#[derive(Serialize)]
struct IndexPage<'a> {
    csrf: String,
    playbooks: Vec<PlaybookCard>,
    connectors: Vec<crate::catalog::ConnectorInfo>,
    connector_problems: &'a [crate::util::problem::Problem],
    tz: &'a str,
}

/// A playbook's page: its documentation, its form, its sections' buttons, and what it has
/// done (runs, exports, schedules, ratings).
#[derive(Serialize)]
struct PlaybookPage<'a> {
    csrf: String,
    entry: EntryView<'a>,
    pb: Option<PbView<'a>>,
    fields: Vec<Field>,
    sections: Vec<SectionView<'a>>,
    exports: Vec<crate::store::exports::ExportRecord>,
    runs: Vec<crate::store::runs::RunRecord>,
    schedules: Vec<crate::jobs::scheduler::Listed>,
    ratings: Vec<crate::store::ratings::Rating>,
    from: Option<String>,
    query_steps: Vec<StepRef<'a>>,
    secret_names: Vec<String>,
    tz: &'a str,
}

#[derive(Serialize)]
struct EntryView<'a> {
    notices: &'a [String],
    id: &'a str,
    path: &'a str,
    problems: &'a [crate::util::problem::Problem],
    runnable: bool,
    last_good: bool,
}

#[derive(Serialize)]
struct PbView<'a> {
    id: &'a str,
    title: &'a str,
    version: Option<&'a str>,
    maintainers: &'a [String],
    tags: &'a [String],
    description_html: String,
}

#[derive(Serialize)]
struct SectionView<'a> {
    index: usize,
    title: &'a str,
    text_html: Option<String>,
    button: &'a str,
}

/// A step that makes a table, for the schedule form's *what is new* and notify choices.
#[derive(Serialize)]
struct StepRef<'a> {
    id: &'a str,
    title: &'a str,
}

pub async fn index(State(state): State<AppState>, me: Caller, headers: HeaderMap) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let catalog = state.engine.catalog();
    let sight = Sight::new(&state, &me)?;
    let cards: Vec<PlaybookCard> = catalog.playbooks.iter().filter(|e| sight.playbook(&e.id)).map(card).collect();
    let html = render_page(
        &state,
        &me,
        "index.html",
        IndexPage {
            csrf: token,
            playbooks: cards,
            connectors: catalog.connector_infos(),
            connector_problems: &catalog.connector_problems,
            tz: catalog.tz.name(),
        },
    )?;
    Ok(page(html, cookie))
}

/// One field of the form, as the widget templates see it.
#[derive(Serialize)]
pub(super) struct Field {
    name: String,
    label: String,
    help: Option<String>,
    widget: &'static str,
    value: String,
    error: Option<String>,
    required: bool,
    min: Option<f64>,
    max: Option<f64>,
    step: Option<&'static str>,
    options: Vec<crate::model::params::Choice>,
    multiple: bool,
    selected: Vec<String>,
    presets: Vec<&'static str>,
    range_start: String,
    range_end: String,
}

pub(super) async fn field(state: &AppState, p: &Param, given: Option<&str>, error: Option<String>) -> Field {
    let tz = state.engine.tz();
    let value = given.map(str::to_string).or_else(|| p.default.clone()).unwrap_or_default();
    let (options, multiple) = match &p.kind {
        ParamKind::Select { options, options_query: Some(q), multiple, .. } => {
            let mut opts = options.clone();
            match state.engine.options(q).await {
                Ok(vals) => {
                    opts.extend(vals.into_iter().map(|v| crate::model::params::Choice { label: v.clone(), value: v }))
                }
                Err(e) => tracing::warn!(param = %p.name, error = %e, "options query failed"),
            }
            (opts, *multiple)
        }
        ParamKind::Select { options, multiple, .. } => (options.clone(), *multiple),
        _ => (Vec::new(), false),
    };
    let selected = value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let (range_start, range_end) = match &p.kind {
        ParamKind::TimeRange => match timeutil::parse_range(&value, tz, chrono::Utc::now()) {
            Ok(w) => (timeutil::format_input(w.start, tz), timeutil::format_input(w.end, tz)),
            Err(_) => (String::new(), String::new()),
        },
        _ => (String::new(), String::new()),
    };
    Field {
        name: p.name.clone(),
        label: p.label.clone(),
        help: p.help.clone(),
        widget: p.kind.widget(),
        value: if matches!(p.kind, ParamKind::Datetime) {
            timeutil::parse_datetime(&value, tz).map(|t| timeutil::format_input(t, tz)).unwrap_or(value)
        } else {
            value
        },
        error,
        required: p.required,
        min: p.min,
        max: p.max,
        step: match p.kind {
            ParamKind::Number => Some("any"),
            ParamKind::Integer => Some("1"),
            _ => None,
        },
        options,
        multiple,
        selected,
        presets: timeutil::PRESETS.to_vec(),
        range_start,
        range_end,
    }
}

pub async fn playbook_page(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<Vec<(String, String)>>,
    me: Caller,
    headers: HeaderMap,
) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let entry = find_entry(&state, &me, &id)?;
    let given = join_multi(&query);
    let mut fields = Vec::new();
    let mut sections = Vec::new();
    let mut pb_view = None;
    let shown = entry.shown().cloned();
    let runnable = entry.runnable().cloned();
    if let Some(pb) = shown.as_deref() {
        // A link that fills the form in shows at once what is wrong with what it filled in
        // (not yet filled in is not wrong: a blank required field is said when it is sent).
        let cx = state.engine.catalog().parse_ctx();
        let filled = |name: &str| given.get(name).map(String::as_str).filter(|v| !v.trim().is_empty());
        let errors = crate::model::params::parse_all(&pb.params, filled, &cx).err().unwrap_or_default();
        for p in &pb.params {
            let error = filled(&p.name).and_then(|_| errors.iter().find(|(n, _)| n == &p.name)).map(|(_, e)| e.clone());
            fields.push(field(&state, p, given.get(&p.name).map(String::as_str), error).await);
        }
        for (i, s) in pb.sections.iter().enumerate() {
            sections.push(SectionView {
                index: i,
                title: &s.title,
                text_html: s.text.as_deref().map(markdown::to_html),
                button: &s.button,
            });
        }
        pb_view = Some(PbView {
            id: &pb.id,
            title: &pb.title,
            version: pb.version.as_deref(),
            maintainers: &pb.maintainers,
            tags: &pb.tags,
            description_html: markdown::to_html(&pb.description),
        });
    }
    let exports = state.engine.store.exports(&id).map_err(WebError::Internal)?;
    let runs = state.engine.store.recent_runs(&id, 10).map_err(WebError::Internal)?;
    let schedules = crate::jobs::scheduler::list(&state.engine, Some(&id)).map_err(WebError::Internal)?;
    let query_steps: Vec<StepRef<'_>> = runnable
        .as_deref()
        .map(|pb| {
            pb.steps()
                .filter(|(_, s)| s.is_query())
                .map(|(_, s)| StepRef { id: &s.id, title: s.title.as_deref().unwrap_or(&s.id) })
                .collect()
        })
        .unwrap_or_default();
    let secret_names = state.engine.secrets.names();
    let ratings = state.engine.store.ratings(Some(&id)).map_err(WebError::Internal)?;
    // Opened from another run's table (a pivot): the run it came from, recorded with the new run.
    let from = given.get("_from").filter(|r| r.len() == 32 && r.chars().all(|c| c.is_ascii_hexdigit())).cloned();
    let html = render_page(
        &state,
        &me,
        "playbook.html",
        PlaybookPage {
            csrf: token,
            entry: EntryView {
                id: &entry.id,
                path: &entry.path,
                problems: &entry.problems,
                notices: &entry.notices,
                runnable: runnable.is_some(),
                last_good: entry.last_good.is_some(),
            },
            pb: pb_view,
            fields,
            sections,
            exports,
            runs,
            schedules,
            ratings,
            from,
            query_steps,
            secret_names,
            tz: state.engine.tz().name(),
        },
    )?;
    Ok(page(html, cookie))
}

pub async fn run_section(
    State(state): State<AppState>,
    UrlPath((id, section)): UrlPath<(String, usize)>,
    me: Caller,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let given = join_multi(&form);
    let pb = runnable(&state, &me, &id, "run")?;
    if section >= pb.sections.len() {
        return Err(WebError::NotFound("No such section.".into()));
    }
    let values = match parse_form(&pb, &given, &state.engine.catalog().parse_ctx()) {
        Ok(v) => v,
        Err(errors) => {
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "errors": errors }))).into_response());
        }
    };
    // The page names the run so that it can offer to cancel it while it goes on.
    let run_id = given
        .get("_run")
        .filter(|r| r.len() == 32 && r.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|r| r.to_ascii_lowercase())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let source = match given.get("_from").filter(|r| r.len() == 32 && r.chars().all(|c| c.is_ascii_hexdigit())) {
        Some(from) => format!("pivot from run {}", from.to_ascii_lowercase()),
        None => "page".into(),
    };
    check_quota(&state, &me)?;
    audit(&state, &me.name, "run", &pb.id, json!({ "run": run_id, "section": section, "params": entered(&form) }));
    let req = RunRequest::new(pb.clone(), values, me.name.clone(), source).section(Some(section));
    let outcome = state.engine.run_with_id(req, run_id).await.map_err(WebError::Internal)?;
    let html = results_html(&state, &pb.id, &outcome.run_id, &outcome.steps, Some(section)).await?;
    Ok(Json(json!({ "run_id": outcome.run_id, "html": html })).into_response())
}

/// "Run again" on a run's page: the same playbook, section and parameters as entered (a
/// relative window ends now), as a new run; answers with the new run's permalink.
pub async fn rerun(
    State(state): State<AppState>,
    UrlPath(run): UrlPath<String>,
    me: Caller,
    csrf::CheckedForm(_): csrf::CheckedForm,
) -> Result<Response> {
    let rec = Sight::new(&state, &me)?.run(&state, &run)?;
    let pb = runnable(&state, &me, &rec.playbook, "run")?;
    let given: HashMap<String, String> = rec.entered().into_iter().collect();
    let values = parse_form(&pb, &given, &state.engine.catalog().parse_ctx()).map_err(|errors| {
        let mut list: Vec<String> = errors.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        list.sort();
        WebError::BadRequest(format!(
            "These parameters no longer fit the playbook ({}); edit them and run.",
            list.join("; ")
        ))
    })?;
    let section = rec.section.and_then(|s| usize::try_from(s).ok()).filter(|s| *s < pb.sections.len());
    check_quota(&state, &me)?;
    let req = RunRequest::new(pb, values, me.name.clone(), "page").section(section);
    let id = state.engine.submit(req).map_err(WebError::Internal)?;
    audit(&state, &me.name, "run", &rec.playbook, json!({ "run": id, "again_of": run, "params": given }));
    Ok(axum::response::Redirect::to(&format!("/runs/{id}")).into_response())
}
