//! Executing playbooks. A run binds parameters, executes its steps in order on a DataFusion
//! session, stores each table as Parquet under `data/runs/<id>/` and records the run in
//! SQLite. The parts: [`queue`] (recording, waiting for a slot, cancel, time limit, progress),
//! [`run`] (the steps of one run), [`resume`] (runs a restart left unfinished), [`diff`]
//! (*what is new* since a schedule's previous run) and [`ratings`]. Stored tables are served
//! by [`crate::results`].

pub mod diff;
pub mod queue;
pub mod ratings;
pub mod resume;
pub mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use chrono_tz::Tz;

use crate::catalog::Catalog;
use crate::results::paging::{TablePage, TableQuery};
use crate::results::stored::Results;
use crate::results::{cell_text, StepData};
use crate::sql::session::read_only;
use crate::store::{ExportRecord, Store};

pub use queue::Progress;
pub use run::{RunOutcome, RunRequest, StepOutcome};

/// How much a run may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Runs executing at once; the others wait in order of arrival.
    pub concurrent: usize,
    /// A run still going after this is stopped.
    pub timeout: std::time::Duration,
    /// DataFusion memory per run; a query needing more fails with a clear message.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { concurrent: 4, timeout: std::time::Duration::from_secs(30 * 60), memory_bytes: 4 << 30 }
    }
}

#[derive(Debug)]
pub struct Engine {
    /// The current catalog; replaced whole when files change (see `jobs::watch`).
    catalog: std::sync::RwLock<Arc<Catalog>>,
    pub limits: Limits,
    queue: queue::Queue,
    options_cache: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    pub store: Store,
    /// Named secrets (API keys of reputation services); `serve --secrets` sets the file.
    pub secrets: crate::secrets::Secrets,
    pub results: Results,
}

impl Engine {
    pub fn new(catalog: Arc<Catalog>, store: Store) -> Engine {
        Engine::with_limits(catalog, store, Limits::default())
    }

    pub fn with_limits(catalog: Arc<Catalog>, store: Store, limits: Limits) -> Engine {
        let secrets = crate::secrets::Secrets::new(Some(catalog.paths.data.join("secrets.yaml")));
        Engine {
            results: Results::new(store.clone(), catalog.paths.clone()),
            catalog: std::sync::RwLock::new(catalog),
            queue: queue::Queue::new(limits.concurrent),
            limits,
            options_cache: Mutex::new(HashMap::new()),
            secrets,
            store,
        }
    }

    /// The catalog as it is now. Hold the `Arc` for one request; a reload swaps in another.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads playbooks and connectors from disk and swaps the new catalog in. A playbook
    /// whose new version has problems keeps serving its last good version.
    pub async fn reload(&self) -> Arc<Catalog> {
        let old = self.catalog();
        let new = Arc::new(Catalog::load(old.paths.clone(), old.tz).await.keep_last_good(&old));
        match self.catalog.write() {
            Ok(mut c) => *c = new.clone(),
            Err(poisoned) => *poisoned.into_inner() = new.clone(),
        }
        new
    }

    pub fn tz(&self) -> Tz {
        self.catalog().tz
    }

    fn run_dir(&self, id: &str) -> PathBuf {
        self.catalog().paths.run_dir(id)
    }

    /// A stored step table, from memory or from its Parquet file.
    pub fn step_data(&self, run_id: &str, step_id: &str) -> Result<Arc<StepData>> {
        self.results.step_data(run_id, step_id)
    }

    /// One page of a stored table, sorted and filtered on the server.
    pub async fn page(&self, run_id: &str, step_id: &str, q: &TableQuery) -> Result<TablePage> {
        self.results.page(run_id, step_id, q, self.tz()).await
    }

    /// Exports a stored step table as `format` into `data/exports/<playbook>/`.
    pub async fn export(&self, run_id: &str, step_id: &str, format: &str, who: &str) -> Result<ExportRecord> {
        self.results.export(run_id, step_id, format, who, self.tz())
    }

    /// Options of a select whose choices come from a query, kept for a minute so that form
    /// pages do not query the data on every view.
    pub async fn options(&self, sql: &str) -> Result<Vec<String>> {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(60);
        if let Some((at, v)) = self.options_cache.lock().ok().and_then(|c| c.get(sql).cloned()) {
            if at.elapsed() < FRESH {
                return Ok(v);
            }
        }
        let v = self.query_options(sql).await?;
        if let Ok(mut c) = self.options_cache.lock() {
            c.retain(|_, (at, _)| at.elapsed() < FRESH);
            c.insert(sql.to_string(), (Instant::now(), v.clone()));
        }
        Ok(v)
    }

    async fn query_options(&self, sql: &str) -> Result<Vec<String>> {
        let ctx = self.catalog().session();
        let batches = ctx.sql_with_options(sql, read_only()).await?.limit(0, Some(1000))?.collect().await?;
        let mut out = Vec::new();
        for b in &batches {
            if b.num_columns() == 0 {
                continue;
            }
            for r in 0..b.num_rows() {
                out.push(cell_text(b.column(0), r, self.tz()));
            }
        }
        Ok(out)
    }
}

/// Whether process `pid` still exists (Linux: `/proc/<pid>`; elsewhere assumed gone).
fn process_alive(pid: i64) -> bool {
    cfg!(target_os = "linux") && std::path::Path::new(&format!("/proc/{pid}")).exists()
}
