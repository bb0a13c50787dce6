//! Static files from `web/static/` (styles, scripts, vendored libraries and map shapes).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;

use super::error::WebError;
use super::state::AppState;
use super::toolkit::{Result, UrlPath};
use crate::util::paths::join_inside;

pub async fn static_file(State(state): State<AppState>, UrlPath(path): UrlPath<String>) -> Result<Response> {
    let full = join_inside(&state.paths.web.join("static"), &path)
        .ok_or_else(|| WebError::NotFound("No such file.".into()))?;
    let bytes = tokio::fs::read(&full).await.map_err(|_| WebError::NotFound("No such file.".into()))?;
    let ctype = match full.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "json" => "application/json",
        _ => "application/octet-stream",
    };
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Ok(r)
}
