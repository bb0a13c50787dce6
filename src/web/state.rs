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
    /// A reverse proxy that signs users on and names them in a header.
    pub proxy: Option<Proxy>,
    /// Failed sign-ins, to pause sign-in after too many.
    pub sign_ins: Arc<crate::auth::SignIns>,
    /// The one-time link that creates the first account, while there is none.
    pub setup: Arc<std::sync::Mutex<Option<String>>>,
    /// Whether cookies are marked `Secure` (casebook is reached over TLS, `--public-url https://…`).
    pub secure_cookies: bool,
    /// PDF reports being made: one per person, two at once.
    pub reports: Arc<Turns>,
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

/// Single sign-on through a reverse proxy: the account named in `header` is the caller, but
/// only when the request comes from one of the `trusted` addresses (anyone else could send
/// the header too).
#[derive(Debug, Clone)]
pub struct Proxy {
    pub header: axum::http::HeaderName,
    pub trusted: Vec<ipnet::IpNet>,
}

impl Proxy {
    /// The account name a request from `peer` carries, if `peer` is trusted.
    pub fn named(&self, peer: Option<std::net::IpAddr>, headers: &axum::http::HeaderMap) -> Option<String> {
        let peer = peer?;
        if !self.trusted.iter().any(|n| n.contains(&peer)) {
            return None;
        }
        let v = headers.get(&self.header)?.to_str().ok()?.trim();
        crate::auth::check_name(v).is_ok().then(|| v.to_string())
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
            proxy: None,
            sign_ins: Arc::default(),
            setup: Arc::default(),
            secure_cookies: false,
            reports: Arc::new(Turns::new(2)),
            scheduler: None,
            hosts: AllowedHosts::default(),
        })
    }
}

/// Work one person may have only one of at a time, and the server only `slots` of.
#[derive(Debug)]
pub struct Turns {
    busy: std::sync::Mutex<std::collections::HashSet<String>>,
    pub slots: tokio::sync::Semaphore,
}

impl Turns {
    pub fn new(slots: usize) -> Turns {
        Turns { busy: Default::default(), slots: tokio::sync::Semaphore::new(slots) }
    }

    /// `who`'s turn, or None while they already have one; the turn ends when dropped.
    pub fn take(&self, who: &str) -> Option<Turn<'_>> {
        let mut b = self.busy.lock().ok()?;
        b.insert(who.to_string()).then(|| Turn { turns: self, who: who.to_string() })
    }
}

/// One person's turn at [`Turns`].
#[derive(Debug)]
pub struct Turn<'a> {
    turns: &'a Turns,
    who: String,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.turns.busy.lock() {
            b.remove(&self.who);
        }
    }
}
