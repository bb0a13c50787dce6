//! The audit log page (administrators): entries newest first, filtered by person, action and
//! date, whether the chain of hashes holds, and the same entries as CSV or JSON.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::csrf;
use super::error::WebError;
use super::state::AppState;
use super::toolkit::{page as full_page, render_page, Result, UrlPath};
use crate::auth::Caller;
use crate::store::audit::{AuditCheck, AuditEntry, AuditFilter};

/// Entries shown on the page at most (the exports have them all).
const SHOWN: usize = 500;

#[derive(Debug, Deserialize, Default)]
pub struct Filters {
    who: Option<String>,
    action: Option<String>,
    /// A date, `2026-12-01`.
    since: Option<String>,
}

impl Filters {
    fn to_filter(&self, limit: usize) -> std::result::Result<AuditFilter, WebError> {
        let text = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let since = match text(&self.since) {
            Some(d) => Some(
                chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .map_err(|_| WebError::BadRequest(format!("“{d}” is not a date such as 2026-12-01")))?
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            None => None,
        };
        Ok(AuditFilter { who: text(&self.who), action: text(&self.action), since, limit })
    }
}

#[derive(Serialize)]
struct AuditPage<'a> {
    csrf: String,
    tz: &'a str,
    entries: Vec<AuditEntry>,
    check: AuditCheck,
    people: Vec<String>,
    actions: Vec<String>,
    who: String,
    action: String,
    since: String,
    query: String,
    more: bool,
}

pub async fn page(
    State(state): State<AppState>,
    me: Caller,
    headers: HeaderMap,
    Query(f): Query<Filters>,
) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let store = &state.engine.store;
    let mut entries = store.audit_entries(&f.to_filter(SHOWN + 1)?).map_err(WebError::Internal)?;
    let more = entries.len() > SHOWN;
    entries.truncate(SHOWN);
    let (people, actions) = store.audit_names().map_err(WebError::Internal)?;
    let pick = |v: &Option<String>| v.clone().unwrap_or_default();
    let query = [("who", pick(&f.who)), ("action", pick(&f.action)), ("since", pick(&f.since))]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", super::toolkit::urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let ctx = AuditPage {
        csrf: token,
        tz: state.engine.tz().name(),
        entries,
        check: store.verify_audit().map_err(WebError::Internal)?,
        people,
        actions,
        who: pick(&f.who),
        action: pick(&f.action),
        since: pick(&f.since),
        query,
        more,
    };
    Ok(full_page(render_page(&state, &me, "audit.html", ctx)?, cookie))
}

/// `/audit/export/csv` or `/json`, with the page's filters.
pub async fn export(
    State(state): State<AppState>,
    UrlPath(format): UrlPath<String>,
    Query(f): Query<Filters>,
) -> Result<Response> {
    let entries = state.engine.store.audit_entries(&f.to_filter(0)?).map_err(WebError::Internal)?;
    let (body, kind, name) = match format.as_str() {
        "json" => (
            serde_json::to_string_pretty(&entries).map_err(|e| WebError::Internal(e.into()))?,
            "application/json",
            "casebook-audit.json",
        ),
        "csv" => {
            let mut out = String::from("id,at,who,action,target,detail,prev,hash\n");
            for e in &entries {
                let cells = [
                    e.id.to_string(),
                    e.at.clone(),
                    e.who.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.detail.clone(),
                    e.prev.clone(),
                    e.hash.clone(),
                ];
                let line: Vec<String> = cells.iter().map(|c| crate::results::cells::csv_field(c)).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
            (out, "text/csv; charset=utf-8", "casebook-audit.csv")
        }
        _ => return Err(WebError::NotFound("Export the audit log as csv or json.".into())),
    };
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok(([(header::CONTENT_TYPE, kind.to_string()), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}
