//! `casebook serve`: the catalog, the engine, the schedule loop, retention and the web
//! server, and the one-time setup link while there are no accounts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::Dirs;
use crate::catalog::Catalog;
use crate::engine::Engine;
use crate::store::Store;

/// `casebook serve`'s settings beyond the folders.
pub struct ServeOptions {
    pub bind: SocketAddr,
    /// `--engine df://…`: the Ballista cluster the runs' queries execute on.
    pub cluster: Option<crate::sql::session::Cluster>,
    pub retention: Option<crate::manage::Retention>,
    pub proxy: Option<crate::web::Proxy>,
    pub limits: crate::engine::Limits,
    pub public_url: Option<String>,
    pub allowed_hosts: Vec<String>,
    pub secrets: Option<PathBuf>,
    pub secret_env: Vec<String>,
    pub playbooks_repo: Option<String>,
    /// Generate missing demo data even when no connector reads it.
    pub demo: bool,
}

pub async fn serve(opts: ServeOptions, dirs: &Dirs) -> Result<()> {
    let ServeOptions {
        bind,
        cluster,
        retention,
        proxy,
        limits,
        public_url,
        allowed_hosts,
        secrets,
        secret_env,
        playbooks_repo,
        demo,
    } = opts;
    let secrets = crate::secrets::Secrets::new(Some(secrets.unwrap_or_else(|| dirs.paths().data.join("secrets.yaml"))))
        .with_env(&secret_env)
        .map_err(|e| anyhow::anyhow!("--secret-env: {e}"))?;
    secrets.check_file().map_err(|e| anyhow::anyhow!("{e}"))?;
    let secure_cookies = public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
    // The name colleagues open is one casebook answers to.
    let public_host =
        public_url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()).and_then(|u| u.host_str().map(String::from));
    let paths = dirs.paths();
    if let Some(url) = &playbooks_repo {
        if crate::repo::clone_if_absent(url, &paths.playbooks).await? {
            eprintln!("Cloned the playbook repository into {}", paths.playbooks.display());
        }
    }
    // The demo data only when something reads it (or when asked): a server over one's own
    // data does not write a million made-up flows beside it.
    let readers = crate::catalog::demo_readers(&paths);
    if !crate::demo::present(&paths.data) && (demo || !readers.is_empty()) {
        let why = if readers.is_empty() {
            "--demo".to_string()
        } else {
            format!(
                "connector{} {} read{} it",
                if readers.len() == 1 { "" } else { "s" },
                readers.join(", "),
                if readers.len() == 1 { "s" } else { "" }
            )
        };
        eprintln!("No demo data in {} yet ({why}): generating it (once)…", paths.data.join("demo").display());
        let summary = crate::demo::generate(&paths.data, &crate::demo::Options::default())?;
        eprintln!("{summary}");
    } else if !crate::demo::present(&paths.data) {
        eprintln!("No connector reads demo/: no demo data generated (serve --demo generates it).");
    }
    let catalog = Arc::new(Catalog::load_with(paths.clone(), dirs.tz()?, secrets.clone()).await);
    let problems = catalog.problems().count();
    if problems > 0 {
        eprintln!("{problems} problem(s) in playbooks or connectors; see `casebook check` or the pages");
    }
    let store = Store::open(&paths.state_db())?;
    let mut engine = Engine::with_limits(catalog.clone(), store, limits);
    engine.secrets = secrets;
    if let Some(c) = &cluster {
        eprintln!("Runs execute on the Ballista cluster at {}", c.url);
    }
    engine.cluster = cluster;
    let engine = Arc::new(engine);
    let resumed = engine.resume_unfinished()?;
    if resumed > 0 {
        tracing::warn!(runs = resumed, "resuming runs left unfinished by the last server");
    }
    let _watcher = match crate::jobs::watch::spawn(engine.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "hot reload is off");
            None
        }
    };
    if let Some(policy) = retention {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
            loop {
                every.tick().await;
                let catalog = engine.catalog();
                match crate::manage::apply_retention(&catalog, &engine.store, policy) {
                    Ok(d) if !d.is_empty() => tracing::info!(deleted = d.len(), "retention policy applied"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "retention policy failed"),
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    let base_url = public_url.unwrap_or_else(|| format!("http://{addr}"));
    let scheduler = Arc::new(crate::jobs::scheduler::Scheduler::new(engine.clone(), base_url.clone()));
    let _schedules = scheduler.clone().spawn();
    let mut hosts = crate::web::AllowedHosts::default();
    for h in allowed_hosts.iter().map(String::as_str).chain(public_host.as_deref()) {
        hosts.add(h);
    }
    let mut state = crate::web::AppState::new(engine, paths)?;
    state.hosts = hosts;
    state.retention = retention;
    state.proxy = proxy;
    state.secure_cookies = secure_cookies;
    state.scheduler = Some(scheduler);
    // The first start without accounts prints a link that makes the first administrator.
    let accounts = state.engine.store.account_count()?;
    let setup = if accounts == 0 { Some(crate::auth::new_token()?) } else { None };
    if let (Some(token), Ok(mut slot)) = (&setup, state.setup.lock()) {
        *slot = Some(token.clone());
    }
    let app = crate::web::app(state);
    println!("casebook is serving {} playbooks at http://{addr}/", catalog.playbooks.len());
    match &setup {
        Some(token) => println!(
            "No accounts yet. Open this link once to create the first administrator: {}/setup/{token}",
            base_url.trim_end_matches('/')
        ),
        None => println!("Sign in at {}/login ({accounts} account(s))", base_url.trim_end_matches('/')),
    }
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
