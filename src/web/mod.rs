//! The web edge: one routes table, typed state, pages rendered by minijinja templates from
//! `web/templates` and `widgets/` (autoescaped), CSRF checks on every POST, and one error
//! type that renders a friendly page or JSON while logging the internals.

mod api;
mod assets;
mod csrf;
mod error;
mod guard;
mod manage;
mod playbooks;
mod results;
mod runs;
mod schedules;
mod state;
mod templates;
mod threats;
mod toolkit;

use axum::routing::{get, post};
use axum::Router;

pub use error::WebError;
pub use state::{AllowedHosts, AppState};

/// The routes table.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(playbooks::index))
        .route("/p/{id}", get(playbooks::playbook_page))
        .route("/p/{id}/run/{section}", post(playbooks::run_section))
        .route("/runs/{run}/steps/{step}/table", get(results::table))
        .route("/runs/{run}/steps/{step}/export", post(results::export))
        .route("/runs/{run}/steps/{step}/rate", post(results::rate))
        .route("/runs/{run}", get(runs::run_page))
        .route("/runs/{run}/cancel", post(runs::cancel_run))
        .route("/runs/{run}/rerun", post(playbooks::rerun))
        .route("/runs/{run}/events", get(runs::run_events))
        .route("/runs/{run}/report.html", get(runs::report_html))
        .route("/runs/{run}/report.pdf", get(runs::report_pdf))
        .route("/exports/{id}", get(results::download))
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
        .route("/static/{*path}", get(assets::static_file))
        .route("/health", get(|| async { "ok" }))
        .route("/schema/playbook.json", get(|| async { json_response(crate::schema::playbook()) }))
        .route("/schema/connector.json", get(|| async { json_response(crate::schema::connector()) }))
        .fallback(toolkit::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::request_safety))
        .with_state(state)
}

fn json_response(body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/schema+json")], body).into_response()
}
