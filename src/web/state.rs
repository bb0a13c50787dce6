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
    /// The host names requests may name (`Host`, and `Origin` of a change).
    pub hosts: AllowedHosts,
}

/// The host names casebook answers to. A request naming another host is refused: a web page
/// elsewhere could otherwise point its own name at 127.0.0.1 (DNS rebinding) and drive
/// casebook from an analyst's browser. An IP address is always answered: rebinding needs a
/// name, so a literal address cannot come from another site.
#[derive(Debug, Clone)]
pub struct AllowedHosts(Vec<String>);

impl Default for AllowedHosts {
    fn default() -> Self {
        AllowedHosts(vec!["localhost".into()])
    }
}

impl AllowedHosts {
    /// Also answers to `host` (a name, with or without a port).
    pub fn add(&mut self, host: &str) {
        let h = bare_host(host).to_ascii_lowercase();
        if !h.is_empty() && !self.0.contains(&h) {
            self.0.push(h);
        }
    }

    /// The names answered to, for messages.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether a `Host` header (or an `Origin`'s host) names casebook.
    pub fn allows(&self, host: &str) -> bool {
        let h = bare_host(host).to_ascii_lowercase();
        h.parse::<std::net::IpAddr>().is_ok() || self.0.contains(&h)
    }
}

/// `host` without its port, and an IPv6 address without its brackets.
fn bare_host(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => name,
        _ => host,
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("paths", &self.paths).finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(engine: Arc<Engine>, paths: Paths) -> anyhow::Result<AppState> {
        let templates = Arc::new(super::templates::environment(&paths)?);
        Ok(AppState {
            engine,
            templates,
            paths,
            retention: None,
            user_header: None,
            scheduler: None,
            hosts: AllowedHosts::default(),
        })
    }
}
