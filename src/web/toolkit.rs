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

/// What the caller may see: the playbooks `access.yaml` (in the data folder) limits to groups,
/// read once per request. A broken file shows nothing but the error, so a typo never opens
/// a restricted playbook to everyone.
pub(super) struct Sight<'a> {
    me: &'a crate::auth::Caller,
    rules: crate::auth::AccessRules,
    catalog: std::sync::Arc<crate::catalog::Catalog>,
}

impl<'a> Sight<'a> {
    pub fn new(state: &AppState, me: &'a crate::auth::Caller) -> Result<Sight<'a>> {
        let rules =
            crate::auth::AccessRules::load(&state.paths.data.join("access.yaml")).map_err(WebError::Internal)?;
        Ok(Sight { me, rules, catalog: state.engine.catalog() })
    }

    /// Whether the caller sees playbook `id` (and its runs, results and threats). A
    /// playbook no longer in the catalog is seen by administrators only once rules exist.
    pub fn playbook(&self, id: &str) -> bool {
        if self.rules.is_empty() || self.me.may(crate::store::accounts::Role::Admin) {
            return true;
        }
        let Some(e) = self.catalog.entry(id) else { return false };
        let absolute = |p: &std::path::Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir().map(|c| c.join(p)).unwrap_or_else(|_| p.to_path_buf())
            }
        };
        let file = absolute(std::path::Path::new(&e.path));
        let root = absolute(&self.catalog.paths.playbooks);
        let folder = file.strip_prefix(&root).map(std::path::Path::to_path_buf).unwrap_or(file);
        let tags = e.shown().map(|p| p.tags.clone()).unwrap_or_default();
        self.rules.sees(self.me, &folder, &tags)
    }

    /// Run `run`, when it exists and the caller may see its playbook (else the same "no
    /// such run" as for a run that does not exist).
    pub fn run(&self, state: &AppState, run: &str) -> Result<crate::store::runs::RunRecord> {
        check_run(run)?;
        let missing = || WebError::NotFound("There is no such run; it may have been deleted.".into());
        let rec = state.engine.store.run(run).map_err(WebError::Internal)?.ok_or_else(missing)?;
        if !self.playbook(&rec.playbook) {
            return Err(missing());
        }
        Ok(rec)
    }
}

/// Refuses a new run while `me` already has as many queued or running as one person may.
pub(super) fn check_quota(state: &AppState, me: &crate::auth::Caller) -> Result<()> {
    let limit = state.engine.limits.per_person;
    let active = state.engine.store.active_runs_of(&me.name).map_err(WebError::Internal)?;
    if usize::try_from(active).unwrap_or(usize::MAX) >= limit {
        return Err(WebError::TooBusy(format!(
            "You have {active} runs queued or running, as many as one person may at once; wait for one to finish \
             or cancel one."
        )));
    }
    Ok(())
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
pub(super) fn runnable(
    state: &AppState,
    me: &crate::auth::Caller,
    id: &str,
    what: &str,
) -> Result<std::sync::Arc<Playbook>> {
    find_entry(state, me, id)?
        .runnable()
        .cloned()
        .ok_or_else(|| WebError::BadRequest(format!("This playbook has problems and cannot {what}; see its page.")))
}

/// Playbook `id`'s entry, when it exists and `me` may see it.
pub(super) fn find_entry(state: &AppState, me: &crate::auth::Caller, id: &str) -> Result<Entry> {
    let missing = || WebError::NotFound(format!("There is no playbook called “{id}”."));
    if !Sight::new(state, me)?.playbook(id) {
        return Err(missing());
    }
    state.engine.catalog().entry(id).cloned().ok_or_else(missing)
}

/// The value of field `name` in a form as sent (not trimmed: a password is what was typed);
/// empty when the form has none.
pub(super) fn form_value<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
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
