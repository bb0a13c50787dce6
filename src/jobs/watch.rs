//! Hot reload: watches `playbooks/` and `connectors/` and swaps in a freshly loaded catalog
//! shortly after files change, without a restart. A broken edit shows its problems while the
//! last good version keeps serving (see [`crate::catalog::Catalog::keep_last_good`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

use crate::engine::Engine;

/// How long to wait for a burst of file events (an editor's save) to settle.
const SETTLE: Duration = Duration::from_millis(250);

/// Starts watching. Keep the returned watcher alive for as long as reloading should happen.
pub fn spawn(engine: Arc<Engine>) -> Result<notify::RecommendedWatcher> {
    let catalog = engine.catalog();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let relevant = ev.paths.iter().any(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml") || p.is_dir())
            });
            if relevant && !ev.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })
    .context("starting the file watcher")?;
    for dir in [&catalog.paths.playbooks, &catalog.paths.connectors] {
        if dir.is_dir() {
            watcher.watch(dir, RecursiveMode::Recursive).with_context(|| format!("watching {}", dir.display()))?;
        }
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let the burst settle, then drop what queued meanwhile: one reload per save.
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            let c = engine.reload().await;
            let problems = c.problems().count();
            tracing::info!(playbooks = c.playbooks.len(), problems, "playbooks reloaded");
        }
    });
    Ok(watcher)
}
