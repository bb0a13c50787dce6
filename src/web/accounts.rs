//! The accounts page (administrators): who may sign in, with which role and groups; add,
//! change, set a password, remove. The same as `casebook user …` on the command line.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Serialize;
use serde_json::json;

use super::csrf;
use super::error::WebError;
use super::state::AppState;
use super::toolkit::{audit, form_value, page as full_page, render_page, Result, UrlPath};
use crate::auth::Caller;
use crate::store::accounts::{Account, Role};

#[derive(Serialize)]
struct AccountsPage<'a> {
    csrf: String,
    tz: &'a str,
    accounts: Vec<Account>,
    roles: Vec<&'static str>,
    error: Option<String>,
    min_password: usize,
}

fn render_accounts(state: &AppState, me: &Caller, headers: &HeaderMap, error: Option<String>) -> Result<Response> {
    let (token, cookie) = csrf::ensure(headers);
    let ctx = AccountsPage {
        csrf: token,
        tz: state.engine.tz().name(),
        accounts: state.engine.store.accounts().map_err(WebError::Internal)?,
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        error: error.clone(),
        min_password: crate::auth::MIN_PASSWORD,
    };
    let html = render_page(state, me, "accounts.html", ctx)?;
    if error.is_some() {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response());
    }
    Ok(full_page(html, cookie))
}

pub async fn page(State(state): State<AppState>, me: Caller, headers: HeaderMap) -> Result<Response> {
    render_accounts(&state, &me, &headers, None)
}

/// Groups as typed: `soc, ir` → [soc, ir], each a plain name.
fn groups(text: &str) -> std::result::Result<Vec<String>, String> {
    let list: Vec<String> = text.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect();
    match list.iter().find(|g| crate::auth::check_name(g).is_err()) {
        Some(bad) => Err(format!("`{bad}` is not a group name (letters, digits, `.`, `_`, `-`)")),
        None => Ok(list),
    }
}

pub async fn add(
    State(state): State<AppState>,
    me: Caller,
    headers: HeaderMap,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let name = form_value(&form, "name").trim();
    let made = (|| -> std::result::Result<(Role, Vec<String>, Option<String>), String> {
        crate::auth::check_name(name).map_err(|e| e.to_string())?;
        let role: Role = form_value(&form, "role").trim().parse()?;
        let groups = groups(form_value(&form, "groups").trim())?;
        let password = form_value(&form, "password");
        let hash = if password.is_empty() {
            None
        } else {
            Some(crate::auth::hash_password(password).map_err(|e| e.to_string())?)
        };
        Ok((role, groups, hash))
    })();
    let (role, groups, hash) = match made {
        Ok(m) => m,
        Err(e) => return render_accounts(&state, &me, &headers, Some(e)),
    };
    if !state.engine.store.add_account(name, role, &groups, hash.as_deref()).map_err(WebError::Internal)? {
        return render_accounts(&state, &me, &headers, Some(format!("there is already an account called “{name}”")));
    }
    audit(&state, &me.name, "account-add", name, json!({ "role": role, "groups": groups, "password": hash.is_some() }));
    Ok(Redirect::to("/accounts").into_response())
}

/// Whether changing `name` would leave no administrator.
fn last_admin(state: &AppState, name: &str) -> Result<bool> {
    let admins: Vec<Account> = state
        .engine
        .store
        .accounts()
        .map_err(WebError::Internal)?
        .into_iter()
        .filter(|a| a.role == Role::Admin)
        .collect();
    Ok(admins.len() == 1 && admins[0].name == name)
}

pub async fn update(
    State(state): State<AppState>,
    me: Caller,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let role: Role = match form_value(&form, "role").trim().parse() {
        Ok(r) => r,
        Err(e) => return render_accounts(&state, &me, &headers, Some(e)),
    };
    let groups = match groups(form_value(&form, "groups").trim()) {
        Ok(g) => g,
        Err(e) => return render_accounts(&state, &me, &headers, Some(e)),
    };
    if role != Role::Admin && last_admin(&state, &name)? {
        let msg = format!("“{name}” is the last administrator; make another account an administrator first");
        return render_accounts(&state, &me, &headers, Some(msg));
    }
    if !state.engine.store.set_account(&name, role, &groups).map_err(WebError::Internal)? {
        return Err(WebError::NotFound("There is no such account.".into()));
    }
    audit(&state, &me.name, "account-change", &name, json!({ "role": role, "groups": groups }));
    Ok(Redirect::to("/accounts").into_response())
}

pub async fn set_password(
    State(state): State<AppState>,
    me: Caller,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let password = form_value(&form, "password");
    let hash = match crate::auth::hash_password(password) {
        Ok(h) => h,
        Err(e) => return render_accounts(&state, &me, &headers, Some(e.to_string())),
    };
    if !state.engine.store.set_password_hash(&name, &hash).map_err(WebError::Internal)? {
        return Err(WebError::NotFound("There is no such account.".into()));
    }
    audit(&state, &me.name, "account-password", &name, serde_json::Value::Null);
    Ok(Redirect::to("/accounts").into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    me: Caller,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    csrf::CheckedForm(_): csrf::CheckedForm,
) -> Result<Response> {
    if last_admin(&state, &name)? {
        let msg = format!("“{name}” is the last administrator and cannot be removed");
        return render_accounts(&state, &me, &headers, Some(msg));
    }
    if !state.engine.store.remove_account(&name).map_err(WebError::Internal)? {
        return Err(WebError::NotFound("There is no such account.".into()));
    }
    audit(&state, &me.name, "account-remove", &name, serde_json::Value::Null);
    Ok(Redirect::to("/accounts").into_response())
}
