//! Request safety on every route, before any handler: the host a request names must be one
//! casebook answers to (no DNS rebinding), and a change sent by a browser must come from one
//! of casebook's own pages (its `Origin`). Every response, pages, fragments, errors and files
//! alike, carries the Content-Security-Policy and the other security headers. Applied in the
//! routes table, so a new route is covered without anyone remembering to.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::state::AppState;

/// Only casebook's own scripts, styles and images; no `<base>`, forms post only to casebook,
/// and no other site may frame a page.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn request_safety(state: State<AppState>, req: Request, next: Next) -> Response {
    let mut r = checked(state, req, next).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

async fn checked(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST) {
        let shown = String::from_utf8_lossy(host.as_bytes()).chars().take(100).collect::<String>();
        if !host.to_str().is_ok_and(|h| state.hosts.allows(h)) {
            tracing::warn!(host = %shown, "refused a request for another host name");
            let names = state.hosts.names().join(", ");
            return refused(
                StatusCode::MISDIRECTED_REQUEST,
                &format!(
                    "casebook does not answer to the name “{shown}”. Open it by the address it serves at, or by one \
                     of the names it answers to ({names}); an administrator adds a name with --public-url or \
                     --allowed-host."
                ),
            );
        }
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let from_here = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://").map(|(_, rest)| rest))
                .is_some_and(|host| state.hosts.allows(host));
            if !from_here {
                tracing::warn!(origin = %String::from_utf8_lossy(origin.as_bytes()), "refused a change sent from another site");
                return refused(
                    StatusCode::FORBIDDEN,
                    "This change was sent from a page that is not casebook's, so it was not made.",
                );
            }
        }
    }
    next.run(req).await
}

fn refused(status: StatusCode, message: &str) -> Response {
    let msg = minijinja::HtmlEscape(message).to_string();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} · casebook</title></head>\
         <body><main><h1>{code}</h1><p>{msg}</p></main></body></html>",
        code = status.as_u16()
    );
    (status, Html(body)).into_response()
}
