//! The management page: validity of every playbook and connector, self-tests on demand,
//! duplicated playbook files, stored data with sizes and ages (select and delete), the
//! retention policy, disk use and version. Authors see it and run self-tests; deleting and
//! updating are an administrator's, each a CSRF-checked POST that deletes only what the
//! page listed, and each in the audit log.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use serde::Serialize;
use serde_json::json;

use super::csrf;
use super::error::WebError;
use super::state::AppState;
use super::toolkit::audit;
use crate::auth::Caller;
use crate::manage;

type Result<T> = std::result::Result<T, WebError>;

/// Bytes on disk by kind of stored data.
#[derive(Serialize)]
struct Disk {
    runs: i64,
    exports: i64,
    demo: i64,
    state: i64,
}

/// One connector's files as checked now.
#[derive(Serialize)]
struct ConnectorHealth {
    name: String,
    ok: bool,
    note: String,
    ms: u64,
}

/// A reputation service: where it is and whether its key is set (never the key).
#[derive(Serialize)]
struct ServiceHealth {
    name: String,
    url: String,
    key: String,
}

#[derive(Serialize)]
struct Health {
    /// Where runs' queries execute: None here, else the cluster, its answer and whether ready.
    cluster: Option<(String, bool, String)>,
    connectors: Vec<ConnectorHealth>,
    memory: Option<i64>,
    schedules: String,
    services: Vec<ServiceHealth>,
}

#[derive(Serialize)]
struct PlaybookHealth<'a> {
    id: &'a str,
    path: &'a str,
    problems: &'a [crate::util::problem::Problem],
    title: String,
    tests: usize,
    last_good: bool,
}

#[derive(Serialize)]
struct RetentionView {
    days: f64,
    bytes: i64,
}

/// The management page.
#[derive(Serialize)]
struct ManagePage<'a> {
    csrf: String,
    tz: &'a str,
    version: &'static str,
    playbooks: Vec<PlaybookHealth<'a>>,
    connectors: Vec<crate::catalog::ConnectorInfo>,
    connector_problems: &'a [crate::util::problem::Problem],
    duplicates: Vec<manage::Duplicate>,
    stored: Vec<manage::Stored>,
    stored_total: i64,
    retention: Option<RetentionView>,
    disk: Disk,
    repo: serde_json::Value,
    health: Health,
}

fn disk(paths: &crate::util::paths::Paths) -> Disk {
    fn size(p: &std::path::Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| {
                let p = e.path();
                if p.is_symlink() {
                    0
                } else if p.is_dir() {
                    size(&p)
                } else {
                    e.metadata().map(|m| m.len()).unwrap_or(0)
                }
            })
            .sum()
    }
    Disk {
        runs: size(&paths.data.join("runs")) as i64,
        exports: size(&paths.exports_dir()) as i64,
        demo: size(&paths.data.join("demo")) as i64,
        state: std::fs::metadata(paths.state_db()).map(|m| m.len()).unwrap_or(0) as i64,
    }
}

/// Resident memory of this process, from /proc (Linux); None elsewhere.
fn memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Each connector's files, checked now (they may have gone since the catalog was loaded):
/// readable, holding the declared schema, and the time span of the time column. The
/// connectors are checked at once, so a slow one delays the page by its own time only.
async fn connector_health(catalog: &crate::catalog::Catalog) -> Vec<ConnectorHealth> {
    let ctx = catalog.session();
    futures::future::join_all(catalog.connectors.iter().map(|c| one_connector_health(c, &ctx, catalog.tz))).await
}

async fn one_connector_health(
    c: &crate::catalog::connector::Connector,
    ctx: &datafusion::prelude::SessionContext,
    tz: chrono_tz::Tz,
) -> ConnectorHealth {
    let started = std::time::Instant::now();
    if let Some(loc) = c.location.as_ref().filter(|l| !l.exists()) {
        return ConnectorHealth { name: c.name.clone(), ok: false, note: format!("{} is gone", loc.display()), ms: 0 };
    }
    let table = crate::sql::quote_ident(&c.name);
    // An HTTP API answers only for a time window: ask it for the last day.
    let api = c.format == crate::catalog::connector::Format::HttpTable;
    let window = match (&c.time_column, api) {
        (Some(tc), true) => {
            let tc = crate::sql::quote_ident(tc);
            format!(" WHERE {tc} >= now() - INTERVAL '1 day' AND {tc} < now()")
        }
        _ => String::new(),
    };
    let probe = async { ctx.sql(&format!("SELECT * FROM {table}{window} LIMIT 1")).await?.collect().await }.await;
    let rows = match probe {
        Ok(b) => b.iter().map(|b| b.num_rows()).sum::<usize>(),
        Err(e) => {
            let note = crate::sql::session::clean_error(&e).0;
            return ConnectorHealth { name: c.name.clone(), ok: false, note, ms: started.elapsed().as_millis() as u64 };
        }
    };
    let mut notes = vec![if rows == 0 { "no rows".to_string() } else { "readable".to_string() }];
    let mut ok = true;
    match c.schema_drift(ctx).await {
        Ok(drift) if drift.is_empty() => {
            if c.declared.is_some() {
                notes.push("files match the declared schema".into());
            }
        }
        Ok(drift) => {
            ok = false;
            notes.extend(drift);
        }
        Err(e) => {
            ok = false;
            notes.push(format!("cannot read the files' schema: {e}"));
        }
    }
    if let (Some(std), false) = (c.provides, c.missing.is_empty()) {
        let cols: Vec<String> = c.missing.iter().map(|m| format!("`{m}`")).collect();
        notes.push(format!("no {} of the standard `{}` schema: read as empty", cols.join(", "), std.name));
    }
    if api {
        notes.push(if rows > 0 { "answers for the last day".into() } else { "no rows for the last day".into() });
    } else if let (Some(tc), true) = (&c.time_column, rows > 0) {
        notes.push(time_span(ctx, &table, tc, tz).await);
    }
    ConnectorHealth { name: c.name.clone(), ok, note: notes.join(" · "), ms: started.elapsed().as_millis() as u64 }
}

/// "data from … to …" over a connector's time column (a scan when its files keep no
/// statistics; given 5 s at most).
async fn time_span(ctx: &datafusion::prelude::SessionContext, table: &str, column: &str, tz: chrono_tz::Tz) -> String {
    use datafusion::arrow::array::{Array, TimestampMicrosecondArray};
    let col = crate::sql::quote_ident(column);
    let sql = format!(
        "SELECT arrow_cast(min({col}), 'Timestamp(Microsecond, Some(\"UTC\"))') AS a, \
                arrow_cast(max({col}), 'Timestamp(Microsecond, Some(\"UTC\"))') AS b FROM {table}"
    );
    let query = async { ctx.sql(&sql).await?.collect().await };
    let batches = match tokio::time::timeout(std::time::Duration::from_secs(5), query).await {
        Err(_) => return format!("time span of `{column}` not computed within 5 s"),
        Ok(Err(e)) => return format!("time span of `{column}`: {}", crate::sql::session::clean_error(&e).0),
        Ok(Ok(b)) => b,
    };
    let at = |i: usize| {
        let b = batches.first()?;
        let a = b.column(i).as_any().downcast_ref::<TimestampMicrosecondArray>()?;
        if a.is_null(0) {
            return None;
        }
        chrono::DateTime::from_timestamp_micros(a.value(0)).map(|t| crate::util::timeutil::format_display(t, tz))
    };
    match (at(0), at(1)) {
        (Some(a), Some(b)) => format!("data from {a} to {b}"),
        _ => format!("no times in `{column}`"),
    }
}

pub async fn page(State(state): State<AppState>, me: Caller, headers: HeaderMap) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let catalog = state.engine.catalog();
    // An author sees the playbooks (and their stored data) their groups may see.
    let sight = super::toolkit::Sight::new(&state, &me)?;
    let playbooks: Vec<PlaybookHealth<'_>> = catalog
        .playbooks
        .iter()
        .filter(|e| sight.playbook(&e.id))
        .map(|e| PlaybookHealth {
            id: &e.id,
            path: &e.path,
            problems: &e.problems,
            title: e.shown().map(|p| p.title.clone()).unwrap_or_else(|| e.id.clone()),
            tests: e.shown().map(|p| p.tests.len()).unwrap_or(0),
            last_good: e.last_good.is_some(),
        })
        .collect();
    let mut stored = manage::stored(&catalog, &state.engine.store).map_err(WebError::Internal)?;
    stored.retain(|s| sight.playbook(&s.playbook));
    let repo = match crate::repo::status(&catalog.paths.playbooks).await {
        Ok(r) => json!(r),
        Err(e) => json!({"error": format!("{e:#}")}),
    };
    let total: u64 = stored.iter().map(|s| s.bytes).sum();
    let services = catalog
        .services
        .iter()
        .map(|s| {
            let key = match &s.secret {
                None => "no key needed".to_string(),
                Some(name) => match state.engine.secrets.get(name) {
                    Ok(_) => format!("key {name} is set"),
                    Err(_) => format!("key {name} is not set: lookups will say so"),
                },
            };
            ServiceHealth { name: s.name.clone(), url: s.base_url.as_str().to_string(), key }
        })
        .collect();
    let html = super::toolkit::render_page(
        &state,
        &me,
        "manage.html",
        ManagePage {
            csrf: token,
            tz: catalog.tz.name(),
            version: env!("CARGO_PKG_VERSION"),
            playbooks,
            connectors: catalog.connector_infos(),
            connector_problems: &catalog.connector_problems,
            duplicates: manage::duplicates(&catalog),
            stored,
            stored_total: total as i64,
            retention: state.retention.map(|r| RetentionView { days: r.max_age_days, bytes: r.max_bytes as i64 }),
            disk: disk(&catalog.paths),
            repo,
            health: Health {
                cluster: match &state.engine.cluster {
                    Some(c) => {
                        let (ok, note) = c.health().await;
                        Some((c.url.clone(), ok, note))
                    }
                    None => None,
                },
                connectors: connector_health(&catalog).await,
                memory: memory_bytes().map(|m| m as i64),
                schedules: scheduler_state(&state),
                services,
            },
        },
    )?;
    Ok(super::toolkit::page(html, cookie))
}

/// One line on the scheduler: running or not, how many schedules, the next fire.
fn scheduler_state(state: &AppState) -> String {
    let list = crate::jobs::scheduler::list(&state.engine, None).unwrap_or_default();
    let on = list.iter().filter(|s| s.enabled).count();
    let problems = list.iter().filter(|s| s.problem.is_some()).count();
    let next = list.iter().filter_map(|s| s.next.clone()).min();
    let mut line =
        if state.scheduler.is_some() { "running".to_string() } else { "not running in this server".to_string() };
    line.push_str(&format!(" · {} schedule(s), {on} on", list.len()));
    if problems > 0 {
        line.push_str(&format!(", {problems} with problems"));
    }
    if let Some(n) = next {
        line.push_str(&format!(" · next run {n}"));
    }
    line
}

fn values(form: &[(String, String)], name: &str) -> Vec<String> {
    form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
}

pub async fn delete_duplicates(
    State(state): State<AppState>,
    me: Caller,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let catalog = state.engine.catalog();
    let files = values(&form, "file");
    manage::delete_duplicates(&catalog, &files).map_err(WebError::Internal)?;
    audit(&state, &me.name, "delete-duplicates", "", json!({ "files": files }));
    state.engine.reload().await;
    Ok(Redirect::to("/manage#duplicates").into_response())
}

pub async fn delete_stored(
    State(state): State<AppState>,
    me: Caller,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let catalog = state.engine.catalog();
    let keys = values(&form, "key");
    manage::delete_stored(&catalog, &state.engine.store, &keys).map_err(WebError::Internal)?;
    audit(&state, &me.name, "delete-stored", "", json!({ "items": keys }));
    Ok(Redirect::to("/manage#stored").into_response())
}

pub async fn self_tests(State(state): State<AppState>, me: Caller, _: csrf::Checked) -> Result<Response> {
    audit(&state, &me.name, "self-tests", "", serde_json::Value::Null);
    let catalog = state.engine.catalog();
    let mut outcomes = Vec::new();
    for e in &catalog.playbooks {
        if let Some(pb) = e.runnable().filter(|_| e.problems.is_empty()) {
            outcomes.extend(crate::jobs::selftest::run(&state.engine, pb).await);
        }
    }
    let html = state.templates.get_template("selftests.html")?.render(json!({ "outcomes": outcomes }))?;
    Ok((StatusCode::OK, axum::response::Html(html)).into_response())
}

/// Asks a reputation service whether it answers (on demand: analysts' networks are often
/// closed, so the page never calls out by itself).
pub async fn service_check(
    State(state): State<AppState>,
    super::toolkit::UrlPath(name): super::toolkit::UrlPath<String>,
    _: csrf::Checked,
) -> Result<Response> {
    let catalog = state.engine.catalog();
    let Some(service) = catalog.services.iter().find(|s| s.name == name) else {
        return Ok((StatusCode::NOT_FOUND, axum::Json(json!({"ok": false, "note": "no such service"}))).into_response());
    };
    let body = match service.reachable().await {
        Ok(note) => json!({"ok": true, "note": note}),
        Err(note) => json!({"ok": false, "note": note}),
    };
    Ok(axum::Json(body).into_response())
}

/// Fetches and shows the incoming commits and the incoming version's problems.
pub async fn repo_check(State(state): State<AppState>, headers: HeaderMap, _: csrf::Checked) -> Result<Response> {
    let catalog = state.engine.catalog();
    let ctx = match crate::repo::check(&catalog).await {
        Ok(incoming) => json!({ "incoming": incoming, "csrf": csrf::from_cookie(&headers) }),
        Err(e) => json!({ "error": format!("{e:#}") }),
    };
    let html = state.templates.get_template("repo_check.html")?.render(ctx)?;
    Ok(axum::response::Html(html).into_response())
}

/// Moves the playbooks to the upstream commit (discarding local edits) and reloads.
pub async fn repo_update(
    State(state): State<AppState>,
    me: Caller,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let catalog = state.engine.catalog();
    let target = form
        .iter()
        .find(|(k, _)| k == "commit")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| WebError::BadRequest("no commit given: check for updates first".into()))?;
    crate::repo::update(&catalog.paths.playbooks, target).await.map_err(|e| WebError::BadRequest(format!("{e:#}")))?;
    audit(&state, &me.name, "repo-update", target, serde_json::Value::Null);
    state.engine.reload().await;
    Ok(Redirect::to("/manage#repo").into_response())
}
