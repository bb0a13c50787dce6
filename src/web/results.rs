//! A run's results as the page shows them: tables paged, sorted and searched on the server,
//! ratings of their rows, exports and their downloads.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::csrf;
use super::error::WebError;
use super::state::AppState;
use super::toolkit::{audit, check_ids, join_multi, render, Result, Sight, UrlPath};
use crate::auth::Caller;
use crate::engine::StepOutcome;
use crate::results::paging::{TablePage, TableQuery};
use crate::util::paths::join_inside;
use crate::util::refusal::Refusal;

/// The results page fragment: each shown step with its outputs rendered.
#[derive(Serialize)]
struct ResultsPage<'a> {
    pb: PbRef<'a>,
    run_id: &'a str,
    steps: Vec<StepView<'a>>,
}

#[derive(Serialize)]
struct PbRef<'a> {
    id: &'a str,
}

/// One step as the results page shows it: its heading and its outputs' HTML, in order.
#[derive(Serialize)]
struct StepView<'a> {
    id: &'a str,
    title: Option<&'a str>,
    rows: Option<usize>,
    elapsed_ms: u64,
    outputs: Vec<String>,
}

/// The context of the table widget (`output/table.html`), on the results page and alone
/// when a page, sort or search is asked for.
#[derive(Serialize)]
pub(super) struct TableWidget<'a> {
    run: &'a str,
    step: &'a str,
    export: bool,
    t: &'a TablePage,
    pivots: Vec<serde_json::Value>,
    total_fmt: String,
    filtered_fmt: String,
    first_fmt: String,
    last_fmt: String,
}

impl<'a> TableWidget<'a> {
    pub(super) fn new(state: &AppState, run: &'a str, step: &'a str, export: bool, t: &'a TablePage) -> Self {
        let n = |v: usize| super::templates::thousands(v as i64);
        TableWidget {
            run,
            step,
            export,
            t,
            pivots: pivots(state),
            total_fmt: n(t.total),
            filtered_fmt: n(t.filtered),
            first_fmt: n(t.first),
            last_fmt: n(t.last),
        }
    }
}

/// The list of a playbook's exports, the new one marked.
#[derive(Serialize)]
struct ExportsFragment {
    exports: Vec<crate::store::exports::ExportRecord>,
    new: i64,
}

/// The one place that fills the output widgets (`widgets/output/<name>.html`): each widget a
/// step has, in the order the page shows them, with the context its template reads. A new
/// output widget is its template and a line here.
/// What the error, markdown and chart widgets read: the step's outcome as `s`.
#[derive(Serialize)]
struct StepCtx<'a> {
    s: &'a StepOutcome,
}

fn outputs(state: &AppState, s: &StepOutcome, table: Option<TableWidget<'_>>) -> Result<Vec<String>> {
    let step = || json!(StepCtx { s });
    let shown: [(&str, Option<serde_json::Value>); 4] = [
        ("error", s.error.as_ref().map(|_| step())),
        ("markdown", s.html.as_ref().map(|_| step())),
        ("chart", s.chart.as_ref().filter(|_| s.error.is_none()).map(|_| step())),
        ("table", table.map(|t| json!(t))),
    ];
    let mut html = Vec::new();
    for (widget, ctx) in shown {
        if let Some(ctx) = ctx {
            html.push(render(state, &format!("output/{widget}.html"), ctx)?);
        }
    }
    Ok(html)
}

pub(super) async fn results_html(
    state: &AppState,
    pb_id: &str,
    run_id: &str,
    outcomes: &[StepOutcome],
    section: Option<usize>,
) -> Result<String> {
    let mut steps = Vec::new();
    for s in outcomes.iter().filter(|s| section.is_none_or(|n| s.section == n)) {
        let page = match (s.show_table, s.rows, &s.error) {
            (true, Some(_), None) => {
                let q = TableQuery { page: 1, size: s.page_size as usize, ..Default::default() };
                Some(state.engine.page(run_id, &s.id, &q).await.map_err(WebError::Internal)?)
            }
            _ => None,
        };
        let table = page.as_ref().map(|p| TableWidget::new(state, run_id, &s.id, s.export, p));
        let outputs = outputs(state, s, table)?;
        if outputs.is_empty() {
            continue;
        }
        steps.push(StepView {
            id: &s.id,
            title: s.title.as_deref(),
            rows: s.rows,
            elapsed_ms: s.elapsed_ms as u64,
            outputs,
        });
    }
    render(state, "results.html", ResultsPage { pb: PbRef { id: pb_id }, run_id, steps })
}

/// The playbooks a table cell can open, by the kind of entity they take.
pub(super) fn pivots(state: &AppState) -> Vec<serde_json::Value> {
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

/// What run `run` stored of step `step`: whether the page shows its table and offers it for
/// export. A run recorded before outcomes were stored offers both, as it did then. A run of
/// a playbook `me` may not see is no such result.
fn offered(state: &AppState, me: &Caller, run: &str, step: &str) -> Result<(bool, bool)> {
    check_ids(run, step)?;
    Sight::new(state, me)?.run(state, run).map_err(|_| WebError::NotFound("No such result.".into()))?;
    let rec = state
        .engine
        .store
        .step(run, step)
        .map_err(WebError::Internal)?
        .ok_or_else(|| WebError::NotFound("No such result.".into()))?;
    Ok(rec.outcome_as::<StepOutcome>().map_or((true, true), |o| (o.show_table, o.export)))
}

pub async fn table(
    State(state): State<AppState>,
    UrlPath((run, step)): UrlPath<(String, String)>,
    Query(p): Query<TableParams>,
    me: Caller,
) -> Result<Response> {
    if !offered(&state, &me, &run, &step)?.0 {
        return Err(WebError::Forbidden("The playbook does not show this step's table.".into()));
    }
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
    let widget = TableWidget::new(&state, &run, &step, p.export.as_deref() != Some("0"), &page);
    Ok(Html(render(&state, "output/table.html", widget)?).into_response())
}

/// Rates values of a column in a stored table (Spot's Score): the ticked rows, or every row
/// matching the quick box. Answers JSON: how many values were rated, or what is wrong.
pub async fn rate(
    State(state): State<AppState>,
    UrlPath((run, step)): UrlPath<(String, String)>,
    me: Caller,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    if !offered(&state, &me, &run, &step)?.0 {
        return Err(WebError::Forbidden("The playbook does not show this step's table.".into()));
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
    let rows: Vec<u32> = form.iter().filter(|(k, _)| k == "row").filter_map(|(_, v)| v.parse().ok()).collect();
    let rating: i64 = get("rating").parse().unwrap_or(0);
    let search = Some(get("search")).filter(|s| !s.trim().is_empty());
    // `where_col` / `where_val` pairs: rows whose columns equal every given value.
    let cols = form.iter().filter(|(k, _)| k == "where_col").map(|(_, v)| v.clone());
    let vals = form.iter().filter(|(k, _)| k == "where_val").map(|(_, v)| v.clone());
    let conditions: Vec<(String, String)> =
        cols.zip(vals).filter(|(c, v)| !c.is_empty() && !v.trim().is_empty()).collect();
    match state.engine.rate(&run, &step, &rows, &conditions, search, get("field"), rating, get("note"), &me.name).await
    {
        Ok(values) => {
            let detail = json!({ "run": run, "step": step, "field": get("field"), "rating": rating, "values": values });
            audit(&state, &me.name, "rate", &run, detail);
            Ok(Json(json!({ "rated": values.len(), "values": values, "rating": rating })).into_response())
        }
        Err(Refusal::Refused(e)) => Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": e }))).into_response()),
        Err(Refusal::Failed(e)) => Err(WebError::Internal(e)),
    }
}

pub async fn export(
    State(state): State<AppState>,
    UrlPath((run, step)): UrlPath<(String, String)>,
    me: Caller,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let given = join_multi(&form);
    let (shown, exported) = offered(&state, &me, &run, &step)?;
    if !(shown && exported) {
        return Err(WebError::Forbidden("The playbook does not offer this step's table for export.".into()));
    }
    let format = given.get("format").map(String::as_str).unwrap_or("csv");
    if !crate::results::formats::FORMATS.contains(&format) {
        return Err(WebError::BadRequest("Export as csv, json or parquet.".into()));
    }
    let rec = match state.engine.export(&run, &step, format, &me.name).await {
        Ok(r) => r,
        Err(Refusal::Refused(m)) => return Err(WebError::BadRequest(m)),
        Err(Refusal::Failed(e)) => return Err(WebError::Internal(e)),
    };
    let detail = json!({ "run": run, "step": step, "format": format, "rows": rec.rows, "file": rec.file });
    audit(&state, &me.name, "export", &rec.playbook, detail);
    let exports = state.engine.store.exports(&rec.playbook).map_err(WebError::Internal)?;
    let html = render(&state, "exports.html", ExportsFragment { exports, new: rec.id })?;
    Ok(Html(html).into_response())
}

/// An export's file, streamed (a large export is never read whole into memory).
pub async fn download(State(state): State<AppState>, me: Caller, UrlPath(key): UrlPath<String>) -> Result<Response> {
    let missing = || WebError::NotFound("No such export.".into());
    if key.len() != 32 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(WebError::NotFound("There is nothing at this address.".into()));
    }
    let rec = state.engine.store.export_by_key(&key).map_err(WebError::Internal)?.ok_or_else(missing)?;
    if !Sight::new(&state, &me)?.playbook(&rec.playbook) {
        return Err(missing());
    }
    let path = join_inside(&state.paths.exports_dir(), &rec.file).ok_or_else(missing)?;
    let file =
        tokio::fs::File::open(&path).await.map_err(|_| WebError::NotFound("The exported file was deleted.".into()))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    audit(&state, &me.name, "download", &rec.playbook, json!({ "export": rec.file, "run": rec.run_id }));
    let ctype = match rec.format.as_str() {
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        _ => "application/vnd.apache.parquet",
    };
    let name = rec.file.rsplit('/').next().unwrap_or("export").to_string();
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
