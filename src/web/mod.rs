//! The web edge: one routes table saying who may use each route, typed state, pages
//! rendered by minijinja templates from `web/templates` and `widgets/` (autoescaped), CSRF
//! checks on every POST, and one error type that renders a friendly page or JSON while
//! logging the internals.

mod accounts;
mod api;
mod assets;
mod audit;
mod csrf;
mod error;
mod guard;
mod manage;
mod playbooks;
mod results;
mod runs;
mod schedules;
mod signin;
mod state;
mod templates;
mod threats;
mod toolkit;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::MethodRouter;
use axum::Router;

pub use error::WebError;
pub use state::{AllowedHosts, AppState, Proxy};

use crate::store::accounts::Role;

/// Who may use a route: anyone (the sign-in pages, health, static files), or a signed-in
/// account whose role includes the one named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Role(Role),
}

/// One row of the routes table.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

struct Route {
    info: RouteInfo,
    handler: MethodRouter<AppState>,
}

fn get<H: Handler<T, AppState>, T: 'static>(path: &'static str, access: Access, h: H) -> Route {
    Route { info: RouteInfo { method: Method::GET, path, access }, handler: axum::routing::get(h) }
}

fn post<H: Handler<T, AppState>, T: 'static>(path: &'static str, access: Access, h: H) -> Route {
    Route { info: RouteInfo { method: Method::POST, path, access }, handler: axum::routing::post(h) }
}

/// The routes table: every route, its handler and who may use it. The gate in
/// [`signin::gate`] is put on each route from here, so a new route cannot be left open.
fn table() -> Vec<Route> {
    use Access::Public;
    const VIEWER: Access = Access::Role(Role::Viewer);
    const ANALYST: Access = Access::Role(Role::Analyst);
    const AUTHOR: Access = Access::Role(Role::Author);
    const ADMIN: Access = Access::Role(Role::Admin);
    vec![
        get("/login", Public, signin::login_page),
        post("/login", Public, signin::login),
        get("/setup/{token}", Public, signin::setup_page),
        post("/setup/{token}", Public, signin::setup),
        post("/logout", VIEWER, signin::logout),
        get("/", VIEWER, playbooks::index),
        get("/p/{id}", VIEWER, playbooks::playbook_page),
        post("/p/{id}/run/{section}", ANALYST, playbooks::run_section),
        get("/runs/{run}/steps/{step}/table", VIEWER, results::table),
        post("/runs/{run}/steps/{step}/export", ANALYST, results::export),
        post("/runs/{run}/steps/{step}/rate", ANALYST, results::rate),
        get("/runs/{run}", VIEWER, runs::run_page),
        post("/runs/{run}/cancel", ANALYST, runs::cancel_run),
        post("/runs/{run}/rerun", ANALYST, playbooks::rerun),
        get("/runs/{run}/events", VIEWER, runs::run_events),
        get("/runs/{run}/report.html", VIEWER, runs::report_html),
        get("/runs/{run}/report.pdf", VIEWER, runs::report_pdf),
        get("/exports/{id}", ANALYST, results::download),
        post("/api/runs", ANALYST, api::start_run),
        get("/api/runs/{run}", VIEWER, api::run_status),
        post("/runs/{run}/threat", ANALYST, threats::save),
        get("/threats", VIEWER, threats::list),
        get("/threats/export/{format}", ANALYST, threats::export),
        get("/threats/{id}", VIEWER, threats::storyboard),
        get("/threats/{id}/story.json", VIEWER, threats::story_json),
        get("/schedules", VIEWER, schedules::page_all),
        post("/p/{id}/schedule", ANALYST, schedules::create),
        post("/schedules/{sid}/run", ANALYST, schedules::run_now),
        post("/schedules/{sid}/delete", ANALYST, schedules::delete),
        post("/schedules/{sid}/{action}", ANALYST, schedules::set_enabled),
        get("/manage", AUTHOR, manage::page),
        post("/manage/selftests", AUTHOR, manage::self_tests),
        post("/manage/repo/check", AUTHOR, manage::repo_check),
        post("/manage/services/{name}/check", AUTHOR, manage::service_check),
        post("/manage/duplicates/delete", ADMIN, manage::delete_duplicates),
        post("/manage/stored/delete", ADMIN, manage::delete_stored),
        post("/manage/repo/update", ADMIN, manage::repo_update),
        get("/accounts", ADMIN, accounts::page),
        post("/accounts", ADMIN, accounts::add),
        post("/accounts/{name}/update", ADMIN, accounts::update),
        post("/accounts/{name}/password", ADMIN, accounts::set_password),
        post("/accounts/{name}/remove", ADMIN, accounts::remove),
        get("/audit", ADMIN, audit::page),
        get("/audit/export/{format}", ADMIN, audit::export),
        get("/static/{*path}", Public, assets::static_file),
        get("/health", Public, || async { "ok" }),
        get("/schema/playbook.json", VIEWER, || async { json_response(crate::schema::playbook()) }),
        get("/schema/connector.json", VIEWER, || async { json_response(crate::schema::connector()) }),
    ]
}

/// Every route with who may use it, for the role-matrix test and the documentation.
pub fn routes() -> Vec<RouteInfo> {
    table().into_iter().map(|r| r.info).collect()
}

/// The server: the routes table, each route behind its gate, every request behind the
/// request-safety layer.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for r in table() {
        let gate = signin::Gate { state: state.clone(), access: r.info.access };
        router =
            router.route(r.info.path, r.handler.route_layer(axum::middleware::from_fn_with_state(gate, signin::gate)));
    }
    router
        .fallback(toolkit::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::request_safety))
        .with_state(state)
}

fn json_response(body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/schema+json")], body).into_response()
}
