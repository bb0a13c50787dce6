//! Executing playbooks. A run binds parameters, executes its steps in order on a DataFusion
//! session, stores each table as Parquet under `data/runs/<id>/` and records the run in
//! SQLite. The parts: [`queue`] (recording, waiting for a slot, cancel, time limit, progress),
//! [`run`] (the steps of one run), [`resume`] (runs a restart left unfinished), [`diff`]
//! (*what is new* since a schedule's previous run) and [`ratings`]. Stored tables are served
//! by [`crate::results`].

pub mod diff;
pub mod queue;
pub mod ratings;
pub mod request;
pub mod resume;
pub mod run;
mod runtime;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use chrono_tz::Tz;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::results::paging::{TablePage, TableQuery};
use crate::results::stored::Results;
use crate::results::{cell_text, StepData};
use crate::sql::session::read_only;
use crate::store::exports::ExportRecord;
use crate::store::runs::RunState;
use crate::store::Store;

pub use request::{RunOutcome, RunRequest, StepOutcome};
use runtime::QueryRuntime;

/// How much a run may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Runs executing at once; the others wait in order of arrival.
    pub concurrent: usize,
    /// A run still going after this is stopped.
    pub timeout: std::time::Duration,
    /// DataFusion memory per run; a query needing more fails with a clear message.
    pub memory_bytes: usize,
    /// Runs one person may have queued or running at once (from pages and the API).
    pub per_person: usize,
}

/// Rows one export may hold. Exports stream from the stored Parquet file, so this bounds
/// the disk an export takes (about 2.5 GB of CSV for this many flows), not memory.
pub const MAX_EXPORT_ROWS: usize = 25_000_000;

impl Default for Limits {
    fn default() -> Self {
        Limits { concurrent: 4, timeout: std::time::Duration::from_secs(30 * 60), memory_bytes: 4 << 30, per_person: 8 }
    }
}

/// Where a running run is, for the progress bar.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Progress {
    pub state: RunState,
    /// The step being executed (1-based) of `of`.
    pub step: usize,
    pub of: usize,
    pub current: String,
    /// Since the run started executing.
    pub elapsed_ms: u64,
    /// Rows the current step has produced so far.
    pub rows: u64,
    /// Chunks of the current step finished, of `chunks` (0 when it is not chunked).
    pub chunk: usize,
    pub chunks: usize,
    /// Rows the current query has read from its files so far, of `to_read` in those files
    /// (0 when their format does not say; row groups skipped are never read, so `scanned` can
    /// end below it).
    pub scanned: u64,
    pub to_read: u64,
    /// Files the current query opened so far, of `files` it is to read.
    pub files_opened: u64,
    pub files: u64,
    /// The Ballista job of the current query, while it executes on a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

#[derive(Debug)]
pub struct Engine {
    /// The current catalog; replaced whole when files change (see `jobs::watch`).
    catalog: std::sync::RwLock<Arc<Catalog>>,
    pub limits: Limits,
    slots: Arc<tokio::sync::Semaphore>,
    jobs: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    progress: Mutex<HashMap<String, (Progress, Instant)>>,
    queries: QueryRuntime,
    options_cache: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    pub store: Store,
    /// Named secrets (API keys of reputation services); `serve --secrets` sets the file.
    pub secrets: crate::secrets::Secrets,
    pub results: Results,
    /// `casebook run --trace FILE`: each query's SQL, bound values and scans, as JSON lines.
    pub trace: Option<std::path::PathBuf>,
    /// `--engine df://host:port`: the Ballista cluster runs' queries execute on (feature
    /// `ballista`); None: in this process.
    pub cluster: Option<crate::sql::session::Cluster>,
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
            slots: Arc::new(tokio::sync::Semaphore::new(limits.concurrent.max(1))),
            jobs: Mutex::new(HashMap::new()),
            running: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
            progress: Mutex::new(HashMap::new()),
            queries: QueryRuntime::new(),
            limits,
            options_cache: Mutex::new(HashMap::new()),
            secrets,
            store,
            trace: None,
            cluster: None,
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
        let new =
            Arc::new(Catalog::load_with(old.paths.clone(), old.tz, old.secrets.clone()).await.keep_last_good(&old));
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

    /// Where run `run_id` is: live while it goes on, else from the state database.
    pub fn progress(&self, run_id: &str) -> Result<Option<Progress>> {
        if let Some((mut p, at)) = self.progress.lock().ok().and_then(|m| m.get(run_id).cloned()) {
            if p.state == RunState::Running {
                p.elapsed_ms += at.elapsed().as_millis() as u64;
            }
            return Ok(Some(p));
        }
        Ok(self.store.run(run_id)?.map(|r| Progress { state: r.state, ..Progress::default() }))
    }

    /// True while run `run_id` is queued or executing in this process.
    pub fn is_active(&self, run_id: &str) -> bool {
        self.jobs.lock().map(|j| j.contains_key(run_id)).unwrap_or(false)
    }

    /// Asks a queued or running run to stop. False when it is not going on.
    pub fn cancel(&self, run_id: &str) -> bool {
        match self.jobs.lock().ok().and_then(|j| j.get(run_id).cloned()) {
            Some(tx) => tx.send(true).is_ok(),
            None => false,
        }
    }

    /// The most runs that were executing at the same moment since the engine started.
    pub fn peak_running(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn update_progress(&self, run_id: &str, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut m) = self.progress.lock() {
            if let Some((p, _)) = m.get_mut(run_id) {
                f(p);
            }
        }
    }

    fn set_progress(&self, run_id: &str, p: Progress) {
        if let Ok(mut m) = self.progress.lock() {
            m.insert(run_id.to_string(), (p, Instant::now()));
        }
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
    /// Refused when the table has more than [`MAX_EXPORT_ROWS`] rows.
    pub async fn export(
        &self,
        run_id: &str,
        step_id: &str,
        format: &str,
        who: &str,
    ) -> std::result::Result<ExportRecord, crate::util::refusal::Refusal> {
        let rows = self.results.stored_rows(run_id, step_id)?;
        if rows > MAX_EXPORT_ROWS {
            crate::refuse!(
                "this table has {rows} rows, more than the {MAX_EXPORT_ROWS} an export may hold; narrow the run's \
                 window or filters and export again"
            );
        }
        Ok(self.results.export(run_id, step_id, format, who, self.tz()).await?)
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
