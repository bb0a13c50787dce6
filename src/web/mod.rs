//! The web edge: one routes table, typed state, pages rendered by minijinja templates from
//! `web/templates` and `widgets/` (autoescaped), CSRF checks on every POST, and one error
//! type that renders a friendly page or JSON while logging the internals.

mod api;
mod csrf;
mod error;
mod handlers;
mod manage;
mod schedules;
mod templates;
mod threats;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::engine::Engine;
use crate::util::paths::Paths;

pub use error::WebError;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub templates: Arc<minijinja::Environment<'static>>,
    pub paths: Paths,
    /// The retention policy applied daily, shown on the management page.
    pub retention: Option<crate::manage::Retention>,
    /// The header in which a trusted reverse proxy names the user (e.g. `X-Remote-User`).
    pub user_header: Option<axum::http::HeaderName>,
    /// The schedule loop, when this server runs one.
    pub scheduler: Option<Arc<crate::jobs::scheduler::Scheduler>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("paths", &self.paths).finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(engine: Arc<Engine>, paths: Paths) -> anyhow::Result<AppState> {
        let templates = Arc::new(templates::environment(&paths)?);
        Ok(AppState { engine, templates, paths, retention: None, user_header: None, scheduler: None })
    }
}

/// The routes table.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(handlers::index))
        .route("/p/{id}", get(handlers::playbook_page))
        .route("/p/{id}/run/{section}", post(handlers::run_section))
        .route("/runs/{run}/steps/{step}/table", get(handlers::table))
        .route("/runs/{run}/steps/{step}/export", post(handlers::export))
        .route("/runs/{run}/steps/{step}/rate", post(handlers::rate))
        .route("/runs/{run}", get(handlers::run_page))
        .route("/runs/{run}/cancel", post(handlers::cancel_run))
        .route("/runs/{run}/rerun", post(handlers::rerun))
        .route("/runs/{run}/events", get(handlers::run_events))
        .route("/runs/{run}/report.html", get(handlers::report_html))
        .route("/runs/{run}/report.pdf", get(handlers::report_pdf))
        .route("/exports/{id}", get(handlers::download))
        .route("/api/runs", post(api::start_run))
        .route("/api/runs/{run}", get(api::run_status))
        .route("/runs/{run}/threat", post(threats::save))
        .route("/threats", get(threats::list))
        .route("/threats/export/{format}", get(threats::export))
        .route("/threats/{id}", get(threats::storyboard))
        .route("/threats/{id}/story.json", get(threats::story_json))
        .route("/schedules", get(schedules::page_all))
        .route("/p/{id}/schedule", post(schedules::create))
        .route("/schedules/{sid}/run", post(schedules::run_now))
        .route("/schedules/{sid}/delete", post(schedules::delete))
        .route("/schedules/{sid}/{action}", post(schedules::set_enabled))
        .route("/manage", get(manage::page))
        .route("/manage/duplicates/delete", post(manage::delete_duplicates))
        .route("/manage/stored/delete", post(manage::delete_stored))
        .route("/manage/selftests", post(manage::self_tests))
        .route("/manage/repo/check", post(manage::repo_check))
        .route("/manage/services/{name}/check", post(manage::service_check))
        .route("/manage/repo/update", post(manage::repo_update))
        .route("/static/{*path}", get(handlers::static_file))
        .route("/health", get(|| async { "ok" }))
        .route("/schema/playbook.json", get(|| async { json_response(crate::schema::playbook()) }))
        .route("/schema/connector.json", get(|| async { json_response(crate::schema::connector()) }))
        .fallback(handlers::not_found)
        .with_state(state)
}

fn json_response(body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/schema+json")], body).into_response()
}
