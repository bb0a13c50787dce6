//! What every handler is given: the engine, the templates, the folders and the server's
//! settings.

use std::sync::Arc;

use crate::engine::Engine;
use crate::util::paths::Paths;

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
        let templates = Arc::new(super::templates::environment(&paths)?);
        Ok(AppState { engine, templates, paths, retention: None, user_header: None, scheduler: None })
    }
}
