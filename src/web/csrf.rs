//! CSRF protection by double submit: a random token in a `SameSite=Strict` cookie, repeated
//! by the page in a header (`x-csrf-token`) or form field (`_csrf`) of every POST.

use axum::http::{HeaderMap, HeaderValue};

pub const COOKIE: &str = "casebook_csrf";

/// The value of cookie `name` the request carries, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The token the browser already holds, if any.
pub fn from_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE).filter(|v| v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The browser's token, or a new one with the `Set-Cookie` header that gives it.
pub fn ensure(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match from_cookie(headers) {
        Some(t) => (t, None),
        None => {
            let t = uuid::Uuid::new_v4().simple().to_string();
            let cookie = format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
            (t, HeaderValue::from_str(&cookie).ok())
        }
    }
}

/// Whether a POST carries the cookie's token (header or form field).
pub fn verify(headers: &HeaderMap, form_token: Option<&str>) -> bool {
    let Some(cookie) = from_cookie(headers) else { return false };
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).or(form_token);
    match sent {
        Some(s) => constant_time_eq(s.as_bytes(), cookie.as_bytes()),
        None => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A form POST whose CSRF token was checked: the only way handlers receive forms.
#[derive(Debug)]
pub struct CheckedForm(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for CheckedForm {
    type Rejection = axum::response::Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let headers = req.headers().clone();
        let axum::Form(form) =
            axum::Form::<Vec<(String, String)>>::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        let token = form.iter().find(|(k, _)| k == "_csrf").map(|(_, v)| v.as_str());
        if !verify(&headers, token) {
            return Err(super::error::WebError::Csrf.into_response());
        }
        Ok(CheckedForm(form))
    }
}

/// A POST without a body (the token comes in the header), checked.
#[derive(Debug)]
pub struct Checked;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Checked {
    type Rejection = super::error::WebError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        if verify(&parts.headers, None) {
            Ok(Checked)
        } else {
            Err(super::error::WebError::Csrf)
        }
    }
}
