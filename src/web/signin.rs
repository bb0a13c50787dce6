//! Signing in and the gate in front of every route: who is asking (a session cookie, or a
//! trusted proxy's header), and whether their role may use the route the routes table names.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::csrf;
use super::error::WebError;
use super::state::AppState;
use super::toolkit::{audit, form_value, render, Result, UrlPath};
use super::Access;
use crate::auth::{Caller, SignInError};
use crate::store::accounts::Role;

pub const SESSION_COOKIE: &str = "casebook_session";

/// What the gate of one route knows.
#[derive(Clone)]
pub struct Gate {
    pub state: AppState,
    pub access: Access,
}

/// The address the request came from, when the server knows it.
pub fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    csrf::cookie(headers, SESSION_COOKIE)
}

/// The caller of a request: its session's account, else the account a trusted proxy names.
fn identify(state: &AppState, req: &Request) -> Option<Caller> {
    if let Some(c) = session_token(req.headers()).and_then(|t| crate::auth::session_caller(&state.engine.store, &t)) {
        return Some(c);
    }
    let proxy = state.proxy.as_ref()?;
    let name = proxy.named(peer(req.extensions()), req.headers())?;
    match state.engine.store.account(&name) {
        Ok(Some(a)) => Some(Caller::from_account(a)),
        Ok(None) => {
            tracing::warn!(account = %name, "the proxy named an account casebook does not have");
            None
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reading an account");
            None
        }
    }
}

/// Runs before each route's handler (put there by the routes table). A route open to anyone
/// (sign-in, static files, health) reads no session.
pub async fn gate(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
    let Access::Role(needed) = g.access else { return next.run(req).await };
    let Some(c) = identify(&g.state, &req) else { return signed_out(&req) };
    if !c.may(needed) {
        tracing::warn!(account = %c.name, path = %req.uri().path(), "refused: role too low");
        return WebError::Forbidden(format!(
            "Your account ({}) may not do this: it needs the {needed} role. An administrator can change roles \
             on the Accounts page.",
            c.role
        ))
        .into_response();
    }
    req.extensions_mut().insert(c);
    next.run(req).await
}

/// A page opened by a browser goes to the sign-in page and comes back after; anything else
/// (a script, a fragment, a form) is told to sign in.
fn signed_out(req: &Request) -> Response {
    let wants_page = req.method() == Method::GET
        && req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_page {
        let back = req.uri().path_and_query().map_or("/", |p| p.as_str());
        return Redirect::to(&format!("/login?next={}", super::toolkit::urlencode(back))).into_response();
    }
    if req.uri().path().starts_with("/api/") {
        let body = json!({ "error": "sign in first: POST /login with name and password, then send its cookie" });
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    WebError::SignIn.into_response()
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self> {
        parts.extensions.get::<Caller>().cloned().ok_or(WebError::SignIn)
    }
}

/// Where to go after signing in: a path of casebook's own, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && !n.contains(['\r', '\n']) => {
            n.to_string()
        }
        _ => "/".into(),
    }
}

fn session_cookie(state: &AppState, token: &str, life: std::time::Duration) -> Option<HeaderValue> {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        life.as_secs()
    ))
    .ok()
}

#[derive(Serialize)]
struct SignInPage<'a> {
    csrf: String,
    /// `login` or `setup`.
    mode: &'a str,
    next: String,
    name: &'a str,
    error: Option<String>,
    tz: &'a str,
    min_password: usize,
}

/// What a sign-in or setup page shows besides its form.
struct Shown<'a> {
    mode: &'a str,
    next: String,
    name: &'a str,
    error: Option<String>,
}

fn sign_in_page(state: &AppState, headers: &HeaderMap, shown: Shown<'_>, status: StatusCode) -> Result<Response> {
    let (token, cookie) = csrf::ensure(headers);
    let page = SignInPage {
        csrf: token,
        mode: shown.mode,
        next: shown.next,
        name: shown.name,
        error: shown.error,
        tz: state.engine.tz().name(),
        min_password: crate::auth::MIN_PASSWORD,
    };
    let html = render(state, "signin.html", page)?;
    let mut r = (status, Html(html)).into_response();
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(State(state): State<AppState>, headers: HeaderMap, q: Query<NextQuery>) -> Result<Response> {
    let page = Shown { mode: "login", next: safe_next(q.next.as_deref()), name: "", error: None };
    sign_in_page(&state, &headers, page, StatusCode::OK)
}

/// The address a request came from, as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Ok(Peer(peer(&parts.extensions)))
    }
}

pub async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let (name, password) = (form_value(&form, "name").trim(), form_value(&form, "password"));
    let next = safe_next(Some(form_value(&form, "next")));
    let store = &state.engine.store;
    match state.sign_ins.sign_in(store, name, password, peer) {
        Ok((caller, token, life)) => {
            audit(&state, &caller.name, "sign-in", "", json!({ "from": peer.map(|p| p.to_string()) }));
            let mut r = Redirect::to(&next).into_response();
            if let Some(c) = session_cookie(&state, &token, life) {
                r.headers_mut().insert(header::SET_COOKIE, c);
            }
            Ok(r)
        }
        Err(e) => {
            if let SignInError::Internal(err) = &e {
                tracing::error!(error = %format!("{err:#}"), "sign-in failed");
            } else {
                audit(
                    &state,
                    name,
                    "sign-in-refused",
                    "",
                    json!({ "from": peer.map(|p| p.to_string()), "why": e.to_string() }),
                );
            }
            let status = match e {
                SignInError::Paused(_) => StatusCode::TOO_MANY_REQUESTS,
                SignInError::Wrong => StatusCode::UNAUTHORIZED,
                SignInError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let page = Shown { mode: "login", next, name, error: Some(e.to_string()) };
            sign_in_page(&state, &headers, page, status)
        }
    }
}

pub async fn logout(State(state): State<AppState>, me: Caller, headers: HeaderMap, _: csrf::CheckedForm) -> Response {
    if let Some(t) = session_token(&headers) {
        if let Err(e) = state.engine.store.end_session(&crate::auth::digest(&t)) {
            tracing::error!(error = %format!("{e:#}"), "ending a session");
        }
    }
    audit(&state, &me.name, "sign-out", "", serde_json::Value::Null);
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Whether `token` is the current setup link's (and there are still no accounts).
fn setup_open(state: &AppState, token: &str) -> bool {
    let current = state.setup.lock().ok().and_then(|s| s.clone());
    let matches = current.is_some_and(|c| c.len() == token.len() && c.bytes().zip(token.bytes()).all(|(a, b)| a == b));
    matches && state.engine.store.account_count().is_ok_and(|n| n == 0)
}

pub async fn setup_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(token): UrlPath<String>,
) -> Result<Response> {
    if !setup_open(&state, &token) {
        return Err(WebError::NotFound(
            "This setup link has been used or has expired. Sign in, or ask an administrator for an account.".into(),
        ));
    }
    let page = Shown { mode: "setup", next: "/".into(), name: "", error: None };
    sign_in_page(&state, &headers, page, StatusCode::OK)
}

pub async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(token): UrlPath<String>,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    if !setup_open(&state, &token) {
        return Err(WebError::NotFound("This setup link has been used or has expired.".into()));
    }
    let name = form_value(&form, "name").trim();
    let (password, again) = (form_value(&form, "password"), form_value(&form, "again"));
    let made = crate::auth::check_name(name).and_then(|()| {
        if password != again {
            anyhow::bail!("the two passwords differ");
        }
        crate::auth::hash_password(password)
    });
    let hash = match made {
        Ok(h) => h,
        Err(e) => {
            let page = Shown { mode: "setup", next: "/".into(), name, error: Some(e.to_string()) };
            return sign_in_page(&state, &headers, page, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    state.engine.store.add_account(name, Role::Admin, &[], Some(&hash))?;
    if let Ok(mut s) = state.setup.lock() {
        *s = None;
    }
    audit(&state, name, "account-add", name, json!({ "role": "admin", "by": "setup link" }));
    let (token, life) = crate::auth::start_session(&state.engine.store, name)?;
    let mut r = Redirect::to("/").into_response();
    if let Some(c) = session_cookie(&state, &token, life) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(r)
}
