//! One error type for the web edge: a friendly page (or JSON for scripts), internals logged.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Asked for something the playbook does not offer (a hidden table, an export it forbids).
    #[error("{0}")]
    Forbidden(String),
    /// A limit per person or per server is reached; try again later.
    #[error("{0}")]
    TooBusy(String),
    #[error("sign in first")]
    SignIn,
    #[error("the form has expired; reload the page and try again")]
    Csrf,
    #[error("something went wrong on the server; the details are in its log")]
    Internal(#[from] anyhow::Error),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::SignIn => StatusCode::UNAUTHORIZED,
            WebError::TooBusy(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<minijinja::Error> for WebError {
    fn from(e: minijinja::Error) -> Self {
        WebError::Internal(anyhow::anyhow!("template: {e:#}"))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Internal(e) = &self {
            tracing::error!(error = %format!("{e:#}"), "request failed");
        }
        let status = self.status();
        let msg = minijinja::HtmlEscape(&self.to_string()).to_string();
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} · casebook</title>\
             <link rel=\"stylesheet\" href=\"/static/casebook.css\"></head><body><main class=\"page narrow\">\
             <h1>{code}</h1><p class=\"error-text\">{msg}</p><p>{back}</p></main></body></html>",
            code = status.as_u16(),
            back = if matches!(self, WebError::SignIn) {
                "<a href=\"/login\">Sign in</a>"
            } else {
                "<a href=\"/\">Back to the playbooks</a>"
            }
        );
        (status, Html(body)).into_response()
    }
}
