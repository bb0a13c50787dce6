//! Request handlers: the index, a playbook's page, running a section, table pages, exports
//! and static assets. Each builds a serializable context and renders a template.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{csrf, AppState, WebError};
use crate::catalog::Entry;
use crate::engine::RunRequest;
use crate::model::params::{Param, ParamKind, Value};
use crate::playbook::Playbook;
use crate::results::paging::{TablePage, TableQuery};
use crate::util::markdown;
use crate::util::paths::join_inside;
use crate::util::text::is_identifier;
use crate::util::timeutil;

type Result<T> = std::result::Result<T, WebError>;

/// Who is acting: the user a trusted reverse proxy names in the configured header
/// (`serve --user-header`), else "analyst". Accounts of casebook's own come later.
pub(super) fn who(state: &AppState, headers: &HeaderMap) -> String {
    let named = state
        .user_header
        .as_ref()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| !c.is_control()));
    match (named, &state.user_header) {
        (Some(v), _) => v.to_string(),
        (None, Some(_)) => "anonymous".into(),
        (None, None) => "analyst".into(),
    }
}

pub(super) fn render(state: &AppState, name: &str, ctx: serde_json::Value) -> Result<String> {
    Ok(state.templates.get_template(name)?.render(ctx)?)
}

/// A full page: the CSRF cookie when new, and the Content-Security-Policy every page sends.
pub(super) fn page(html: String, cookie: Option<HeaderValue>) -> Response {
    let mut r = Html(html).into_response();
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

#[derive(Serialize)]
struct PlaybookCard {
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

fn card(e: &Entry) -> PlaybookCard {
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

pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let catalog = state.engine.catalog();
    let cards: Vec<PlaybookCard> = catalog.playbooks.iter().map(card).collect();
    let html = render(
        &state,
        "index.html",
        json!({
            "csrf": token,
            "playbooks": cards,
            "connectors": catalog.connector_infos(),
            "connector_problems": catalog.connector_problems,
            "tz": state.engine.tz().name(),
        }),
    )?;
    Ok(page(html, cookie))
}

/// One field of the form, as the widget templates see it.
#[derive(Serialize)]
struct Field {
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

async fn field(state: &AppState, p: &Param, given: Option<&str>, error: Option<String>) -> Field {
    let tz = state.engine.tz();
    let value = given.map(str::to_string).or_else(|| p.default.clone()).unwrap_or_default();
    let (options, multiple) = match &p.kind {
        ParamKind::Select { options, options_query: Some(q), multiple } => {
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

/// The runnable version of playbook `id`, or a message that it cannot `what` ("run", "be
/// scheduled") until its author fixes it.
pub(super) fn runnable(state: &AppState, id: &str, what: &str) -> Result<std::sync::Arc<Playbook>> {
    find_entry(state, id)?
        .runnable()
        .cloned()
        .ok_or_else(|| WebError::BadRequest(format!("This playbook has problems and cannot {what}; see its page.")))
}

pub(super) fn find_entry(state: &AppState, id: &str) -> Result<Entry> {
    state
        .engine
        .catalog()
        .entry(id)
        .cloned()
        .ok_or_else(|| WebError::NotFound(format!("There is no playbook called “{id}”.")))
}

pub async fn playbook_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let entry = find_entry(&state, &id)?;
    let given = join_multi(&query);
    let mut fields = Vec::new();
    let mut sections = Vec::new();
    let mut pb_json = json!(null);
    if let Some(pb) = entry.shown().map(|p| p.as_ref()) {
        // A link that fills the form in shows at once what is wrong with what it filled in.
        let cx = state.engine.catalog().parse_ctx();
        for p in &pb.params {
            let value = given.get(&p.name).map(String::as_str);
            let error = value.filter(|v| !v.trim().is_empty()).and_then(|v| p.parse(Some(v), &cx).err());
            fields.push(field(&state, p, value, error).await);
        }
        for (i, s) in pb.sections.iter().enumerate() {
            sections.push(json!({
                "index": i,
                "title": s.title,
                "text_html": s.text.as_deref().map(markdown::to_html),
                "button": s.button,
            }));
        }
        pb_json = json!({
            "id": pb.id, "title": pb.title, "version": pb.version, "maintainers": pb.maintainers,
            "tags": pb.tags, "description_html": markdown::to_html(&pb.description),
        });
    }
    let exports = state.engine.store.exports(&id).map_err(WebError::Internal)?;
    let runs = state.engine.store.recent_runs(&id, 10).map_err(WebError::Internal)?;
    let schedules = crate::jobs::scheduler::list(&state.engine, Some(&id)).map_err(WebError::Internal)?;
    let query_steps: Vec<serde_json::Value> = entry
        .runnable()
        .map(|pb| {
            pb.steps()
                .filter(|(_, s)| s.is_query())
                .map(|(_, s)| json!({"id": s.id, "title": s.title.clone().unwrap_or_else(|| s.id.clone())}))
                .collect()
        })
        .unwrap_or_default();
    let secret_names = state.engine.secrets.names();
    let ratings = state.engine.store.ratings(Some(&id)).map_err(WebError::Internal)?;
    // Opened from another run's table (a pivot): the run it came from, recorded with the new run.
    let from = given.get("_from").filter(|r| r.len() == 32 && r.chars().all(|c| c.is_ascii_hexdigit())).cloned();
    let html = render(
        &state,
        "playbook.html",
        json!({
            "csrf": token,
            "entry": {"id": entry.id, "path": entry.path, "problems": entry.problems, "runnable": entry.runnable().is_some(), "last_good": entry.last_good.is_some()},
            "pb": pb_json,
            "fields": fields,
            "sections": sections,
            "exports": exports,
            "runs": runs,
            "schedules": schedules,
            "ratings": ratings,
            "from": from,
            "query_steps": query_steps,
            "secret_names": secret_names,
            "tz": state.engine.tz().name(),
        }),
    )?;
    Ok(page(html, cookie))
}

/// Form and query values: repeated names (multiple select) joined with `,`.
pub(super) fn join_multi(pairs: &[(String, String)]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for (k, v) in pairs {
        out.entry(k.clone())
            .and_modify(|e| {
                if !v.is_empty() {
                    if !e.is_empty() {
                        e.push(',');
                    }
                    e.push_str(v);
                }
            })
            .or_insert_with(|| v.clone());
    }
    out
}

/// Parses the form against the playbook's parameters: values, or a message per field.
pub fn parse_form(
    pb: &Playbook,
    given: &HashMap<String, String>,
    cx: &crate::model::params::ParseCtx,
) -> std::result::Result<Vec<(String, Value)>, HashMap<String, String>> {
    let mut values = Vec::new();
    let mut errors = HashMap::new();
    for p in &pb.params {
        match p.parse(given.get(&p.name).map(String::as_str), cx) {
            Ok(v) => values.push((p.name.clone(), v)),
            Err(e) => {
                errors.insert(p.name.clone(), e);
            }
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

pub async fn run_section(
    State(state): State<AppState>,
    Path((id, section)): Path<(String, usize)>,
    headers: HeaderMap,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let given = join_multi(&form);
    let pb = runnable(&state, &id, "run")?;
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
    let req = RunRequest {
        playbook: pb.clone(),
        values,
        section: Some(section),
        who: who(&state, &headers),
        source,
        schedule_id: None,
    };
    let outcome = state.engine.run_with_id(req, run_id).await.map_err(WebError::Internal)?;
    let html = results_html(&state, &pb.id, &outcome.run_id, &outcome.steps, Some(section)).await?;
    Ok(Json(json!({ "run_id": outcome.run_id, "html": html })).into_response())
}

async fn results_html(
    state: &AppState,
    pb_id: &str,
    run_id: &str,
    outcomes: &[crate::engine::StepOutcome],
    section: Option<usize>,
) -> Result<String> {
    let mut steps = Vec::new();
    for s in outcomes.iter().filter(|s| section.is_none_or(|n| s.section == n)) {
        let table = match (s.show_table, s.rows, &s.error) {
            (true, Some(_), None) => {
                let q = TableQuery { page: 1, size: s.page_size as usize, ..Default::default() };
                let page = state.engine.page(run_id, &s.id, &q).await.map_err(WebError::Internal)?;
                Some(table_html(state, run_id, &s.id, s.export, &page)?)
            }
            _ => None,
        };
        let visible = table.is_some() || s.chart.is_some() || s.html.is_some() || s.error.is_some();
        if !visible {
            continue;
        }
        steps.push(json!({
            "id": s.id, "title": s.title, "rows": s.rows, "error": s.error, "html": s.html,
            "chart": s.chart, "table": table, "elapsed_ms": s.elapsed_ms as u64,
        }));
    }
    render(state, "results.html", json!({ "pb": {"id": pb_id}, "run_id": run_id, "steps": steps }))
}

/// The playbooks a table cell can open, by the kind of entity they take.
fn pivots(state: &AppState) -> Vec<serde_json::Value> {
    let catalog = state.engine.catalog();
    let mut out = Vec::new();
    for e in &catalog.playbooks {
        let Some(pb) = e.runnable() else { continue };
        for p in &pb.params {
            if let Some(kind) = p.pivot_kind() {
                out.push(json!({ "kind": kind, "id": pb.id, "title": pb.title, "param": p.name, "label": p.label }));
            }
        }
    }
    out
}

fn table_html(state: &AppState, run: &str, step: &str, export: bool, page: &TablePage) -> Result<String> {
    render(
        state,
        "output/table.html",
        json!({
            "run": run, "step": step, "export": export, "t": page, "pivots": pivots(state),
            "total_fmt": crate::web::templates::thousands(page.total as i64),
            "filtered_fmt": crate::web::templates::thousands(page.filtered as i64),
            "first_fmt": crate::web::templates::thousands(page.first as i64),
            "last_fmt": crate::web::templates::thousands(page.last as i64),
        }),
    )
}

#[derive(Debug, Deserialize)]
pub struct TableParams {
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    size: Option<usize>,
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    export: Option<String>,
}

fn check_ids(run: &str, step: &str) -> Result<()> {
    if check_run(run).is_err() || !is_identifier(step) {
        return Err(WebError::NotFound("No such result.".into()));
    }
    Ok(())
}

pub async fn table(
    State(state): State<AppState>,
    Path((run, step)): Path<(String, String)>,
    Query(p): Query<TableParams>,
) -> Result<Response> {
    check_ids(&run, &step)?;
    let q = TableQuery {
        page: p.page.unwrap_or(1),
        size: p.size.unwrap_or(25),
        sort: p.sort.filter(|s| !s.is_empty()),
        desc: p.dir.as_deref() == Some("desc"),
        search: p.q,
    };
    let page = state
        .engine
        .page(&run, &step, &q)
        .await
        .map_err(|_| WebError::NotFound("This result is no longer stored.".into()))?;
    Ok(Html(table_html(&state, &run, &step, p.export.as_deref() != Some("0"), &page)?).into_response())
}

/// Rates values of a column in a stored table (Spot's Score): the ticked rows, or every row
/// matching the quick box. Answers JSON: how many values were rated, or what is wrong.
pub async fn rate(
    State(state): State<AppState>,
    Path((run, step)): Path<(String, String)>,
    headers: HeaderMap,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    check_ids(&run, &step)?;
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
    let rows: Vec<u32> = form.iter().filter(|(k, _)| k == "row").filter_map(|(_, v)| v.parse().ok()).collect();
    let rating: i64 = get("rating").parse().unwrap_or(0);
    let search = Some(get("search")).filter(|s| !s.trim().is_empty());
    // `where_col` / `where_val` pairs: rows whose columns equal every given value.
    let cols = form.iter().filter(|(k, _)| k == "where_col").map(|(_, v)| v.clone());
    let vals = form.iter().filter(|(k, _)| k == "where_val").map(|(_, v)| v.clone());
    let conditions: Vec<(String, String)> =
        cols.zip(vals).filter(|(c, v)| !c.is_empty() && !v.trim().is_empty()).collect();
    let who = who(&state, &headers);
    match state.engine.rate(&run, &step, &rows, &conditions, search, get("field"), rating, get("note"), &who).await {
        Ok(values) => Ok(Json(json!({ "rated": values.len(), "values": values, "rating": rating })).into_response()),
        Err(e) => Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": format!("{e:#}") }))).into_response()),
    }
}

pub async fn export(
    State(state): State<AppState>,
    Path((run, step)): Path<(String, String)>,
    headers: HeaderMap,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let given = join_multi(&form);
    check_ids(&run, &step)?;
    let format = given.get("format").map(String::as_str).unwrap_or("csv");
    if !matches!(format, "csv" | "json" | "parquet") {
        return Err(WebError::BadRequest("Export as csv, json or parquet.".into()));
    }
    let rec = state.engine.export(&run, &step, format, &who(&state, &headers)).await.map_err(WebError::Internal)?;
    let exports = state.engine.store.exports(&rec.playbook).map_err(WebError::Internal)?;
    let html = render(&state, "exports.html", json!({ "exports": exports, "new": rec.id }))?;
    Ok(Html(html).into_response())
}

pub async fn download(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Response> {
    let rec = state
        .engine
        .store
        .export(id)
        .map_err(WebError::Internal)?
        .ok_or_else(|| WebError::NotFound("No such export.".into()))?;
    let path = join_inside(&state.paths.exports_dir(), &rec.file)
        .ok_or_else(|| WebError::NotFound("No such export.".into()))?;
    let bytes =
        tokio::fs::read(&path).await.map_err(|_| WebError::NotFound("The exported file was deleted.".into()))?;
    let ctype = match rec.format.as_str() {
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        _ => "application/vnd.apache.parquet",
    };
    let name = rec.file.rsplit('/').next().unwrap_or("export").to_string();
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

pub async fn static_file(State(state): State<AppState>, Path(path): Path<String>) -> Result<Response> {
    let full = join_inside(&state.paths.web.join("static"), &path)
        .ok_or_else(|| WebError::NotFound("No such file.".into()))?;
    let bytes = tokio::fs::read(&full).await.map_err(|_| WebError::NotFound("No such file.".into()))?;
    let ctype = match full.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "json" => "application/json",
        _ => "application/octet-stream",
    };
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(r)
}

pub async fn not_found() -> WebError {
    WebError::NotFound("There is nothing at this address.".into())
}

pub(super) fn check_run(run: &str) -> Result<()> {
    if run.len() != 32 || !run.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(WebError::NotFound("No such run.".into()));
    }
    Ok(())
}

fn report_text(state: &AppState, run: &str) -> Result<String> {
    check_run(run)?;
    if state.engine.store.run(run).map_err(WebError::Internal)?.is_none() {
        return Err(WebError::NotFound("No such run.".into()));
    }
    crate::report::html(&state.engine, &state.templates, &state.paths.web, run).map_err(WebError::Internal)
}

/// A run as one self-contained HTML file, downloaded.
pub async fn report_html(State(state): State<AppState>, Path(run): Path<String>) -> Result<Response> {
    let html = report_text(&state, &run)?;
    let mut r = Response::new(Body::from(html));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"casebook-report-{}.html\"", &run[..8])) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// The same report as PDF, printed by headless Chromium.
pub async fn report_pdf(State(state): State<AppState>, Path(run): Path<String>) -> Result<Response> {
    let html = report_text(&state, &run)?;
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
pub async fn run_page(State(state): State<AppState>, Path(run): Path<String>, headers: HeaderMap) -> Result<Response> {
    check_run(&run)?;
    let (token, cookie) = csrf::ensure(&headers);
    let rec = state
        .engine
        .store
        .run(&run)
        .map_err(WebError::Internal)?
        .ok_or_else(|| WebError::NotFound("There is no such run; it may have been deleted.".into()))?;
    let outcomes: Vec<crate::engine::StepOutcome> = state
        .engine
        .store
        .steps(&run)
        .map_err(WebError::Internal)?
        .iter()
        .filter_map(|s| s.outcome.as_deref().and_then(|o| serde_json::from_str(o).ok()))
        .collect();
    let catalog = state.engine.catalog();
    let entry = catalog.entry(&rec.playbook);
    let shown = entry.and_then(|e| e.shown());
    let title = shown.map(|p| p.title.clone()).unwrap_or_else(|| rec.playbook.clone());
    let params: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&rec.params).unwrap_or_default();
    let query: String = params
        .iter()
        .filter_map(|(k, v)| v.as_str().filter(|v| !v.is_empty()).map(|v| format!("{}={}", urlencode(k), urlencode(v))))
        .collect::<Vec<_>>()
        .join("&");
    let changed = shown.is_some_and(|p| p.hash != rec.playbook_hash);
    let results = results_html(&state, &rec.playbook, &run, &outcomes, None).await?;
    let html = render(
        &state,
        "run.html",
        json!({
            "csrf": token, "tz": catalog.tz.name(), "run": rec, "title": title, "params": params,
            "rerun": format!("/p/{}?{}", rec.playbook, query), "exists": shown.is_some(), "changed": changed,
            "entity_hint": params.values().filter_map(|v| v.as_str()).find(|v| v.trim().parse::<std::net::IpAddr>().is_ok()).unwrap_or(""),
            "results": results,
        }),
    )?;
    Ok(page(html, cookie))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Stops a queued or running run (the page's Cancel button).
pub async fn cancel_run(State(state): State<AppState>, Path(run): Path<String>, _: csrf::Checked) -> Result<Response> {
    check_run(&run)?;
    let stopped = state.engine.cancel(&run);
    Ok(Json(json!({ "cancelled": stopped })).into_response())
}

/// Progress of a run as server-sent events: a `progress` event four times a second while it
/// is queued or running, then one `done` event with its final state.
pub async fn run_events(State(state): State<AppState>, Path(run): Path<String>) -> Result<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    check_run(&run)?;
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

/// "Run again" on a run's page: the same playbook, section and parameters as entered (a
/// relative window ends now), as a new run; answers with the new run's permalink.
pub async fn rerun(
    State(state): State<AppState>,
    Path(run): Path<String>,
    headers: HeaderMap,
    csrf::CheckedForm(_): csrf::CheckedForm,
) -> Result<Response> {
    check_run(&run)?;
    let rec = state
        .engine
        .store
        .run(&run)
        .map_err(WebError::Internal)?
        .ok_or_else(|| WebError::NotFound("There is no such run.".into()))?;
    let pb = runnable(&state, &rec.playbook, "run")?;
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
    let section = rec.section.and_then(|s| usize::try_from(s).ok()).filter(|s| *s < pb.sections.len());
    let req = RunRequest {
        playbook: pb,
        values,
        section,
        who: who(&state, &headers),
        source: "page".into(),
        schedule_id: None,
    };
    let id = state.engine.submit(req).map_err(WebError::Internal)?;
    Ok(axum::response::Redirect::to(&format!("/runs/{id}")).into_response())
}
