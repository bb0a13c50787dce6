//! The web toolkit every handler file uses: who is asking, rendering a page with its
//! security headers, finding a playbook or a run named in a URL, and reading form values
//! through the one way in for parameters.

use std::collections::HashMap;

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

use super::error::WebError;
use super::state::AppState;
use crate::catalog::Entry;
use crate::model::params::{parse_all, ParseCtx, Values};
use crate::playbook::Playbook;
use crate::util::text::is_identifier;

/// What a handler returns: a response, or the one web error type.
pub type Result<T> = std::result::Result<T, WebError>;

/// Appends to the audit log. A failure to is logged and does not undo what was done.
pub(super) fn audit(state: &AppState, who: &str, action: &str, target: &str, detail: serde_json::Value) {
    if let Err(e) = state.engine.store.audit(who, action, target, &detail) {
        tracing::error!(error = %format!("{e:#}"), action, "writing the audit log");
    }
}

/// What a person entered in a form, for the audit log: its fields without the form's own
/// (`_csrf`, `_run`, …).
pub(super) fn entered(form: &[(String, String)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in form.iter().filter(|(k, _)| !k.starts_with('_')) {
        match m.get_mut(k) {
            Some(serde_json::Value::String(e)) => {
                e.push(',');
                e.push_str(v);
            }
            _ => {
                m.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
    }
    serde_json::Value::Object(m)
}

/// A full page: its typed context, plus `me` (the caller) for the layout's menu.
pub(super) fn render_page(
    state: &AppState,
    me: &crate::auth::Caller,
    name: &str,
    ctx: impl serde::Serialize,
) -> Result<String> {
    let ctx =
        minijinja::context! { me => minijinja::Value::from_serialize(me), ..minijinja::Value::from_serialize(ctx) };
    Ok(state.templates.get_template(name)?.render(ctx)?)
}

/// Renders template `name` with `ctx`, a page's typed context (or a widget's).
pub(super) fn render(state: &AppState, name: &str, ctx: impl serde::Serialize) -> Result<String> {
    Ok(state.templates.get_template(name)?.render(ctx)?)
}

/// A full page, with the CSRF cookie when new (every response's security headers are set by
/// `guard::request_safety`).
pub(super) fn page(html: String, cookie: Option<HeaderValue>) -> Response {
    let mut r = Html(html).into_response();
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
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
    cx: &ParseCtx,
) -> std::result::Result<Values, HashMap<String, String>> {
    parse_all(&pb.params, |name| given.get(name).map(String::as_str), cx).map_err(|e| e.into_iter().collect())
}

pub(super) fn check_run(run: &str) -> Result<()> {
    if run.len() != 32 || !run.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(WebError::NotFound("No such run.".into()));
    }
    Ok(())
}

pub(super) fn check_ids(run: &str, step: &str) -> Result<()> {
    if check_run(run).is_err() || !is_identifier(step) {
        return Err(WebError::NotFound("No such result.".into()));
    }
    Ok(())
}

pub(super) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn not_found() -> WebError {
    WebError::NotFound("There is nothing at this address.".into())
}

/// The values a route takes from its path (`/runs/{run}`, `/exports/{id}`). A value that
/// does not fit (`/exports/../1`) is a page that does not exist, answered as the other
/// missing pages are, never the router's own text.
#[derive(Debug)]
pub struct UrlPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S> for UrlPath<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(UrlPath(v)),
            Err(_) => Err(WebError::NotFound("There is nothing at this address.".into())),
        }
    }
}
