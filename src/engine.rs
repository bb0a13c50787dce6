//! Executing playbooks: a run binds parameters, executes query and markdown steps in order
//! on a DataFusion session, stores each table as Parquet under `data/runs/<id>/`, and records
//! the run in SQLite. Also serves stored results back: pages (sorted, filtered and counted on
//! the server), chart data, and exports to CSV, JSON or Parquet.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, sort_to_indices, take, SortOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use serde::Serialize;

use crate::catalog::{clean_error, new_session, read_only, Catalog};
use crate::playbook::params::Value;
use crate::playbook::Playbook;
use crate::sql::quote_ident;
use crate::steps::chart::ChartKind;
use crate::steps::{Step, StepKind};
use crate::store::{ExportRecord, RunRecord, StepRecord, Store};
use crate::timeutil;

/// One step's result table, held in memory for paging.
#[derive(Debug)]
pub struct StepData {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// All batches as one, made on first paging.
    merged: OnceLock<RecordBatch>,
}

impl StepData {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> StepData {
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        StepData { schema, batches, rows, merged: OnceLock::new() }
    }

    fn bytes(&self) -> usize {
        self.batches.iter().map(RecordBatch::get_array_memory_size).sum::<usize>() * 2
    }

    fn merged(&self) -> Result<&RecordBatch> {
        if let Some(m) = self.merged.get() {
            return Ok(m);
        }
        let m = concat_batches(&self.schema, &self.batches)?;
        Ok(self.merged.get_or_init(|| m))
    }
}

/// Recently used results, bounded by memory; anything evicted is read back from Parquet.
#[derive(Debug, Default)]
struct ResultCache {
    entries: Vec<((String, String), Arc<StepData>)>,
}

const CACHE_BYTES: usize = 1 << 30;

impl ResultCache {
    fn get(&mut self, key: &(String, String)) -> Option<Arc<StepData>> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        let e = self.entries.remove(i);
        let v = e.1.clone();
        self.entries.push(e);
        Some(v)
    }

    fn put(&mut self, key: (String, String), v: Arc<StepData>) {
        self.entries.retain(|(k, _)| k != &key);
        self.entries.push((key, v));
        let mut total: usize = self.entries.iter().map(|(_, d)| d.bytes()).sum();
        while total > CACHE_BYTES && self.entries.len() > 1 {
            let (_, old) = self.entries.remove(0);
            total -= old.bytes();
        }
    }
}

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

/// Where a running run is, for the progress bar.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Progress {
    pub state: String,
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
}

/// The runtime that executes queries, apart from the one serving pages: CPU-bound query
/// work cannot starve the web server, and cancel and time limits are answered at once.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn new() -> QueryRuntime {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("casebook-query")
            .enable_all()
            .build();
        if let Err(e) = &rt {
            tracing::warn!(error = %e, "no separate query runtime; queries share the server's");
        }
        QueryRuntime(rt.ok())
    }

    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(f),
            None => tokio::spawn(f),
        }
    }
}

impl std::fmt::Debug for QueryRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryRuntime")
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // May be dropped from async code, where a blocking shutdown is not allowed.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Aborts the task when dropped (a cancelled or timed-out run's steps).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    fn handle(&mut self) -> &mut tokio::task::JoinHandle<T> {
        &mut self.0
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a query step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("chunk {chunk} of {of}: {source}")]
    Chunk { chunk: usize, of: usize, window: timeutil::Window, source: datafusion::error::DataFusionError },
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl StepError {
    /// The message the analyst reads.
    pub fn message(&self) -> String {
        match self {
            StepError::Query(e) => clean_error(e).0,
            StepError::Chunk { chunk, of, window, source } => format!(
                "chunk {chunk} of {of} ({} – {}): {}",
                window.start.format("%Y-%m-%d %H:%M"),
                window.end.format("%Y-%m-%d %H:%M"),
                clean_error(source).0
            ),
            other => other.to_string(),
        }
    }
}

/// Why a run ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    TimedOut,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub playbook: Arc<Playbook>,
    /// Parsed values, one per declared parameter.
    pub values: Vec<(String, Value)>,
    /// Only this section (and the earlier steps it reads); None = every section.
    pub section: Option<usize>,
    pub who: String,
    pub source: String,
    /// The schedule that fired this run, if one did.
    pub schedule_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StepOutcome {
    pub id: String,
    pub title: Option<String>,
    pub section: usize,
    pub rows: Option<usize>,
    pub elapsed_ms: u128,
    pub error: Option<String>,
    /// Rendered HTML of a markdown step.
    pub html: Option<String>,
    pub chart: Option<serde_json::Value>,
    pub show_table: bool,
    pub export: bool,
    pub page_size: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    pub steps: Vec<StepOutcome>,
}

/// A request for one page of a stored table.
#[derive(Debug, Clone, Default)]
pub struct TableQuery {
    pub page: usize,
    pub size: usize,
    pub sort: Option<String>,
    pub desc: bool,
    pub search: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub text: String,
    pub num: bool,
    /// The kind of entity the cell holds (`ip`, `domain`, `url`), for pivots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pv: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TablePage {
    pub columns: Vec<String>,
    /// Each shown row's position in the stored table (for selecting rows to rate).
    pub ids: Vec<u32>,
    pub rows: Vec<Vec<Cell>>,
    pub total: usize,
    pub filtered: usize,
    pub page: usize,
    pub pages: usize,
    pub size: usize,
    pub first: usize,
    pub last: usize,
    pub sort: Option<String>,
    pub desc: bool,
    pub search: String,
}

#[derive(Debug)]
pub struct Engine {
    /// The current catalog; replaced whole when files change (see [`crate::watch`]).
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
    cache: Mutex<ResultCache>,
    views: Mutex<ViewCache>,
}

impl Engine {
    pub fn new(catalog: Arc<Catalog>, store: Store) -> Engine {
        Engine::with_limits(catalog, store, Limits::default())
    }

    pub fn with_limits(catalog: Arc<Catalog>, store: Store, limits: Limits) -> Engine {
        let secrets = crate::secrets::Secrets::new(Some(catalog_secrets_default(&catalog)));
        Engine {
            catalog: std::sync::RwLock::new(catalog),
            slots: Arc::new(tokio::sync::Semaphore::new(limits.concurrent.max(1))),
            limits,
            jobs: Mutex::new(HashMap::new()),
            running: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
            progress: Mutex::new(HashMap::new()),
            queries: QueryRuntime::new(),
            options_cache: Mutex::new(HashMap::new()),
            secrets,
            store,
            cache: Mutex::new(ResultCache::default()),
            views: Mutex::new(ViewCache::default()),
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

    /// Executes a run to the end. Step failures are reported in the outcome (and stored),
    /// not returned as errors; an error here means the run could not be recorded at all.
    pub async fn run(self: &Arc<Self>, req: RunRequest) -> Result<RunOutcome> {
        self.run_with_id(req, uuid::Uuid::new_v4().simple().to_string()).await
    }

    /// [`Engine::run`] under an id the caller chose (a page picks one so that it can offer
    /// a cancel button while the run goes on). The run waits for a free slot (at most
    /// `limits.concurrent` at once, first come first served), can be cancelled with
    /// [`Engine::cancel`], and is stopped at `limits.timeout`.
    pub async fn run_with_id(self: &Arc<Self>, req: RunRequest, run_id: String) -> Result<RunOutcome> {
        self.register(&req, &run_id)?;
        self.drive(req, run_id).await
    }

    /// Records a new run (state `queued`) with its parameters as entered and as resolved.
    fn register(&self, req: &RunRequest, run_id: &str) -> Result<()> {
        if run_id.len() != 32 || !run_id.chars().all(|c| c.is_ascii_hexdigit()) || self.store.run(run_id)?.is_some() {
            bail!("a run id must be 32 new hexadecimal digits");
        }
        let pb = &req.playbook;
        let tz = self.tz();
        let text = |exact: bool| -> String {
            let m: serde_json::Map<String, serde_json::Value> = req
                .values
                .iter()
                .map(|(k, v)| {
                    (k.clone(), serde_json::Value::String(if exact { v.to_exact_text(tz) } else { v.to_text(tz) }))
                })
                .collect();
            serde_json::Value::Object(m).to_string()
        };
        self.store.start_run(&RunRecord {
            id: run_id.to_string(),
            playbook: pb.id.clone(),
            playbook_hash: pb.hash.clone(),
            section: req.section.map(|s| s as i64),
            params: text(false),
            started_by: req.who.clone(),
            source: req.source.clone(),
            state: "queued".into(),
            error: None,
            started_at: String::new(),
            finished_at: None,
            schedule_id: req.schedule_id,
            resolved: Some(text(true)),
            pid: None,
        })?;
        Ok(())
    }

    /// Records a run and executes it in the background; returns its id at once (the HTTP
    /// API: the caller follows the run at `/runs/<id>`).
    pub fn submit(self: &Arc<Self>, req: RunRequest) -> Result<String> {
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        self.register(&req, &run_id)?;
        let me = self.clone();
        let id = run_id.clone();
        tokio::spawn(async move {
            if let Err(e) = me.drive(req, id.clone()).await {
                tracing::error!(run = %id, error = %format!("{e:#}"), "run");
            }
        });
        Ok(run_id)
    }

    /// Resumes a run that an earlier process left unfinished: steps and chunks that finished
    /// are read back from their stored files, the rest executes with the parameters as they
    /// were resolved when the run first started. A run whose playbook has changed since is
    /// marked interrupted instead (its steps would no longer match).
    pub async fn resume(self: &Arc<Self>, run: RunRecord) -> Result<RunOutcome> {
        let catalog = self.catalog();
        let pb = match catalog.entry(&run.playbook).and_then(|e| e.runnable()) {
            Some(pb) if pb.hash == run.playbook_hash => pb.clone(),
            Some(_) => {
                self.store.interrupt(
                    &run.id,
                    "interrupted by a restart; the playbook has changed since, so it was not resumed",
                )?;
                bail!("playbook `{}` changed since run {} started", run.playbook, run.id);
            }
            None => {
                self.store.interrupt(&run.id, "interrupted by a restart; the playbook is no longer available")?;
                bail!("playbook `{}` of run {} is not available", run.playbook, run.id);
            }
        };
        let stored: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(run.resolved.as_deref().unwrap_or(&run.params)).unwrap_or_default();
        let cx = catalog.parse_ctx();
        let mut values = Vec::new();
        for p in &pb.params {
            let raw = stored.get(&p.name).and_then(|v| v.as_str());
            match p.parse(raw, &cx) {
                Ok(v) => values.push((p.name.clone(), v)),
                Err(e) => {
                    self.store.interrupt(&run.id, &format!("interrupted by a restart; parameter `{}`: {e}", p.name))?;
                    bail!("run {}: parameter `{}`: {e}", run.id, p.name);
                }
            }
        }
        let req = RunRequest {
            playbook: pb,
            values,
            section: run.section.and_then(|s| usize::try_from(s).ok()),
            who: run.started_by.clone(),
            source: run.source.clone(),
            schedule_id: run.schedule_id,
        };
        self.store.adopt(&run.id)?;
        tracing::info!(run = %run.id, playbook = %run.playbook, "resuming a run left unfinished by a restart");
        self.drive(req, run.id).await
    }

    /// At server start: resumes every run left queued or running by a process that is gone
    /// (in the background, through the same queue as new runs). Returns how many.
    pub fn resume_unfinished(self: &Arc<Self>) -> Result<usize> {
        let mut n = 0;
        for run in self.store.unfinished_runs()? {
            if run.pid.is_some_and(|pid| pid != i64::from(std::process::id()) && process_alive(pid)) {
                continue;
            }
            n += 1;
            let me = self.clone();
            tokio::spawn(async move {
                let id = run.id.clone();
                if let Err(e) = me.resume(run).await {
                    tracing::warn!(run = %id, error = %format!("{e:#}"), "not resumed");
                }
            });
        }
        Ok(n)
    }

    /// Executes a recorded run to its end and records how it ended.
    async fn drive(self: &Arc<Self>, req: RunRequest, run_id: String) -> Result<RunOutcome> {
        let pb = &req.playbook;
        self.set_progress(&run_id, Progress { state: "queued".into(), ..Progress::default() });
        let (cancel_tx, mut cancel_rx) = tokio::sync::watch::channel(false);
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(run_id.clone(), cancel_tx);
        }
        let result = self.run_guarded(&run_id, &req, &mut cancel_rx).await;
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(&run_id);
        }
        let (state, error) = match &result {
            Ok(Ok(outcomes)) => {
                let first = outcomes.iter().find_map(|o| o.error.as_ref().map(|e| format!("step `{}`: {e}", o.id)));
                (if first.is_some() { "failed" } else { "succeeded" }, first)
            }
            Ok(Err(Stop::Cancelled)) => ("cancelled", Some("cancelled by the analyst".to_string())),
            Ok(Err(Stop::TimedOut)) => {
                ("failed", Some(format!("stopped after the run time limit of {} s", self.limits.timeout.as_secs())))
            }
            Err(e) => ("failed", Some(format!("{e:#}"))),
        };
        self.store.finish_run_as(&run_id, state, error.as_deref())?;
        if let Ok(mut m) = self.progress.lock() {
            m.remove(&run_id);
        }
        tracing::info!(run = %run_id, playbook = %pb.id, state, "run finished");
        let steps = match result {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(_)) => self.stored_outcomes(&run_id)?,
            Err(e) => return Err(e),
        };
        Ok(RunOutcome { run_id, steps })
    }

    /// True while run `run_id` is queued or executing in this process.
    pub fn is_active(&self, run_id: &str) -> bool {
        self.jobs.lock().map(|j| j.contains_key(run_id)).unwrap_or(false)
    }

    /// Waits for a slot, then executes, stopping early on cancel or at the time limit.
    /// Dropping the execution future stops its DataFusion queries.
    async fn run_guarded(
        self: &Arc<Self>,
        run_id: &str,
        req: &RunRequest,
        cancel: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<std::result::Result<Vec<StepOutcome>, Stop>> {
        let cancelled = |rx: &mut tokio::sync::watch::Receiver<bool>| {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|c| *c).await;
            }
        };
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p.map_err(|_| anyhow!("the run queue is closed"))?,
            _ = cancelled(cancel) => return Ok(Err(Stop::Cancelled)),
        };
        self.store.set_state(run_id, "running")?;
        self.set_progress(run_id, Progress { state: "running".into(), ..Progress::default() });
        let now = self.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(run = %run_id, playbook = %req.playbook.id, who = %req.who, section = ?req.section, "run started");
        // The steps run in their own task, so that a cancel or the time limit is answered at
        // once even while a query is busy; aborting the task drops its DataFusion streams.
        let task = {
            let me = self.clone();
            let req = req.clone();
            let id = run_id.to_string();
            AbortOnDrop(self.queries.spawn(async move { me.execute(&id, &req).await }))
        };
        let mut task = task;
        let result = tokio::select! {
            r = task.handle() => match r {
                Ok(r) => r.map(Ok),
                Err(e) => Err(anyhow!("the run stopped unexpectedly: {e}")),
            },
            _ = cancelled(cancel) => Ok(Err(Stop::Cancelled)),
            _ = tokio::time::sleep(self.limits.timeout) => Ok(Err(Stop::TimedOut)),
        };
        drop(task);
        self.running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        drop(permit);
        result
    }

    fn set_progress(&self, run_id: &str, p: Progress) {
        if let Ok(mut m) = self.progress.lock() {
            m.insert(run_id.to_string(), (p, Instant::now()));
        }
    }

    /// Where run `run_id` is: live while it goes on, else from the state database.
    pub fn progress(&self, run_id: &str) -> Result<Option<Progress>> {
        if let Some((mut p, at)) = self.progress.lock().ok().and_then(|m| m.get(run_id).cloned()) {
            if p.state == "running" {
                p.elapsed_ms += at.elapsed().as_millis() as u64;
            }
            return Ok(Some(p));
        }
        Ok(self.store.run(run_id)?.map(|r| Progress { state: r.state, ..Progress::default() }))
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

    /// What a run's steps showed, read back from the state database.
    pub fn stored_outcomes(&self, run_id: &str) -> Result<Vec<StepOutcome>> {
        Ok(self
            .store
            .steps(run_id)?
            .iter()
            .filter_map(|s| s.outcome.as_deref().and_then(|o| serde_json::from_str(o).ok()))
            .collect())
    }

    /// Executes the steps of a recorded run; each step's outcome is stored as it finishes.
    async fn execute(&self, run_id: &str, req: &RunRequest) -> Result<Vec<StepOutcome>> {
        let pb = &req.playbook;
        let run_id = run_id.to_string();
        let tz = self.tz();
        let dir = self.run_dir(&run_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

        let mut bound: Vec<(String, ScalarValue)> = Vec::new();
        for p in &pb.params {
            let v = req.values.iter().find(|(k, _)| k == &p.name).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
            bound.extend(p.bind(&v));
        }
        let steps: Vec<(usize, &Step)> = match req.section {
            Some(n) => {
                let planned = pb.plan_section(n);
                pb.steps().filter(|(_, s)| planned.iter().any(|p| p.id == s.id)).collect()
            }
            None => pb.steps().collect(),
        };
        let ctx = self.catalog().session_limited(Some(self.limits.memory_bytes));
        if let Err(e) = self.register_ratings(&ctx) {
            tracing::warn!(error = %format!("{e:#}"), "ratings are not available to this run");
        }
        let mut outcomes: Vec<StepOutcome> = Vec::new();
        let mut done: HashMap<String, Arc<StepData>> = HashMap::new();
        let mut failed: Vec<String> = Vec::new();
        let total = steps.len();
        let run_started = Instant::now();
        // Steps that finished before a restart (a resumed run): read back, not run again.
        let mut finished: HashMap<String, StepRecord> =
            self.store.steps(&run_id)?.into_iter().map(|s| (s.step_id.clone(), s)).collect();
        for (index, (section, step)) in steps.into_iter().enumerate() {
            self.set_progress(
                &run_id,
                Progress {
                    state: "running".into(),
                    step: index + 1,
                    of: total,
                    current: step.title.clone().unwrap_or_else(|| step.id.clone()),
                    elapsed_ms: run_started.elapsed().as_millis() as u64,
                    ..Progress::default()
                },
            );
            if let Some(rec) = finished.remove(&step.id) {
                if let Some(out) = self.restore_step(&run_id, &rec, &ctx, &mut done, &mut failed) {
                    outcomes.push(out);
                    continue;
                }
            }
            let started = Instant::now();
            let mut out = StepOutcome {
                id: step.id.clone(),
                title: step.title.clone(),
                section,
                rows: None,
                elapsed_ms: 0,
                error: None,
                html: None,
                chart: None,
                show_table: step.show_table,
                export: step.export,
                page_size: step.page_size,
            };
            if let Some(cond) = &step.when {
                if !condition_holds(cond, &req.values, tz) {
                    continue;
                }
            }
            if let Some(d) = step.depends_on.iter().find(|d| failed.contains(d)) {
                out.error = Some(format!("skipped: step `{d}` failed"));
                failed.push(step.id.clone());
                outcomes.push(out);
                continue;
            }
            match &step.kind {
                StepKind::Query(_) | StepKind::Score(_) | StepKind::Enrich(_) => {
                    let result = match (&step.kind, step.query()) {
                        (StepKind::Enrich(e), _) => self.enrich(&ctx, e, &done).await,
                        (_, Some(q)) => match &q.chunks {
                            None => {
                                self.query(&ctx, &run_id, &q.sql.text, bound.clone()).await.map_err(StepError::from)
                            }
                            Some(chunks) => {
                                self.query_chunked(
                                    &ctx,
                                    &run_id,
                                    &step.id,
                                    &q.sql.text,
                                    chunks,
                                    &bound,
                                    &req.values,
                                    &dir,
                                )
                                .await
                            }
                        },
                        _ => continue,
                    };
                    match result {
                        Ok((schema, batches)) => {
                            let data = Arc::new(StepData::new(schema.clone(), batches));
                            let rows = data.rows;
                            // A step's table shadows a connector of the same name for later steps.
                            let _ = ctx.deregister_table(step.id.as_str());
                            if let Err(e) = MemTable::try_new(schema, vec![data.batches.clone()])
                                .and_then(|t| ctx.register_table(step.id.as_str(), Arc::new(t)).map(|_| ()))
                            {
                                tracing::warn!(error = %e, "registering step table");
                            }
                            let file = dir.join(format!("{}.parquet", step.id));
                            let write = write_parquet(&file, &data);
                            if let Err(e) = &write {
                                tracing::error!(run = %run_id, step = %step.id, error = %e, "storing step output");
                            }
                            if let Some(chart) = &step.chart {
                                out.chart = Some(chart_json(step, chart, &data, tz));
                            }
                            out.rows = Some(rows);
                            self.cache_put(&run_id, &step.id, data.clone());
                            done.insert(step.id.clone(), data);
                        }
                        Err(e) => {
                            tracing::warn!(run = %run_id, step = %step.id, error = %e, "step failed");
                            out.error = Some(e.message());
                            failed.push(step.id.clone());
                        }
                    }
                }
                StepKind::Markdown(m) => match render_markdown(&m.template, &req.values, &done, tz) {
                    Ok(html) => out.html = Some(html),
                    Err(e) => {
                        out.error = Some(e);
                        failed.push(step.id.clone());
                    }
                },
            }
            out.elapsed_ms = started.elapsed().as_millis();
            self.store.record_step(
                &run_id,
                &StepRecord {
                    step_id: step.id.clone(),
                    rows: out.rows.map(|r| r as i64),
                    elapsed_ms: out.elapsed_ms as i64,
                    file: out.rows.map(|_| format!("{}.parquet", step.id)),
                    error: out.error.clone(),
                    outcome: serde_json::to_string(&out).ok(),
                },
            )?;
            outcomes.push(out);
        }
        Ok(outcomes)
    }

    /// A step that finished before a restart: its stored outcome, its table registered for
    /// later steps. None when its stored table cannot be read (the step then runs again).
    fn restore_step(
        &self,
        run_id: &str,
        rec: &StepRecord,
        ctx: &datafusion::prelude::SessionContext,
        done: &mut HashMap<String, Arc<StepData>>,
        failed: &mut Vec<String>,
    ) -> Option<StepOutcome> {
        let out: StepOutcome = serde_json::from_str(rec.outcome.as_deref()?).ok()?;
        if out.error.is_some() {
            failed.push(out.id.clone());
            return Some(out);
        }
        if rec.file.is_some() {
            let data = self.step_data(run_id, &out.id).ok()?;
            let _ = ctx.deregister_table(out.id.as_str());
            let table = MemTable::try_new(data.schema.clone(), vec![data.batches.clone()]).ok()?;
            ctx.register_table(out.id.as_str(), Arc::new(table)).ok()?;
            done.insert(out.id.clone(), data);
        }
        Some(out)
    }

    /// Executes one query, counting its rows into the run's progress as they arrive.
    async fn query(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        run_id: &str,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
    ) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), datafusion::error::DataFusionError> {
        use futures::StreamExt;
        let df = ctx.sql_with_options(sql, read_only()).await?.with_param_values(params)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await?;
        let mut batches = Vec::new();
        let mut rows = 0u64;
        while let Some(b) = stream.next().await {
            let b = b?;
            rows += b.num_rows() as u64;
            batches.push(b);
            self.update_progress(run_id, |p| p.rows = rows);
        }
        Ok((schema, batches))
    }

    /// Executes a chunked query step: the window of its time range parameter is split into
    /// chunks; each is executed with that parameter bound to the chunk, stored as Parquet and
    /// recorded, so that a resumed run reads finished chunks back instead of executing them.
    #[allow(clippy::too_many_arguments)]
    async fn query_chunked(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        run_id: &str,
        step_id: &str,
        sql: &str,
        chunks: &crate::steps::query::Chunks,
        bound: &[(String, ScalarValue)],
        values: &[(String, Value)],
        dir: &std::path::Path,
    ) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), StepError> {
        let window = match values.iter().find(|(k, _)| k == &chunks.over) {
            Some((_, Value::Range { window, .. })) => *window,
            _ => return Err(StepError::Other(anyhow!("fill in `{}`: this step splits its time range", chunks.over))),
        };
        let parts = chunks.split(window);
        let (start_name, end_name) = (format!("{}_start", chunks.over), format!("{}_end", chunks.over));
        let bind = |w: &timeutil::Window| -> Vec<(String, ScalarValue)> {
            let utc: Option<Arc<str>> = Some("UTC".into());
            bound
                .iter()
                .map(|(k, v)| {
                    let t = if *k == start_name {
                        Some(w.start)
                    } else if *k == end_name {
                        Some(w.end)
                    } else {
                        None
                    };
                    match t {
                        Some(t) => {
                            (k.clone(), ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), utc.clone()))
                        }
                        None => (k.clone(), v.clone()),
                    }
                })
                .collect()
        };
        let first = parts.first().copied().unwrap_or(window);
        let schema: SchemaRef = {
            let df = ctx.sql_with_options(sql, read_only()).await?.with_param_values(bind(&first))?;
            Arc::new(df.schema().as_arrow().clone())
        };
        let folder = dir.join(format!("{step_id}.chunks"));
        std::fs::create_dir_all(&folder)
            .map_err(|e| StepError::Other(anyhow!("creating {}: {e}", folder.display())))?;
        let stored: HashMap<usize, String> =
            self.store.chunks(run_id, step_id).map_err(StepError::Other)?.into_iter().map(|(i, _, f)| (i, f)).collect();
        let total = parts.len();
        let mut batches = Vec::new();
        let mut rows = 0u64;
        for (i, w) in parts.iter().enumerate() {
            self.update_progress(run_id, |p| {
                p.chunk = i;
                p.chunks = total;
                p.rows = rows;
            });
            let name = format!("{i:06}.parquet");
            let path = folder.join(&name);
            if stored.get(&i) == Some(&name) {
                if let Ok(data) = read_parquet(&path) {
                    for b in data.batches {
                        rows += b.num_rows() as u64;
                        batches.push(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?);
                    }
                    continue;
                }
            }
            let (_, got) = self.query(ctx, run_id, sql, bind(w)).await.map_err(|e| StepError::Chunk {
                chunk: i + 1,
                of: total,
                window: *w,
                source: e,
            })?;
            let data = StepData::new(schema.clone(), got);
            // Written aside and renamed, so a kill mid-write never leaves a half chunk.
            let partial = folder.join(format!("{i:06}.partial"));
            write_parquet(&partial, &data).map_err(StepError::Other)?;
            std::fs::rename(&partial, &path).map_err(|e| StepError::Other(anyhow!("storing chunk {}: {e}", i + 1)))?;
            self.store.record_chunk(run_id, step_id, i, data.rows, &name).map_err(StepError::Other)?;
            rows += data.rows as u64;
            batches.extend(data.batches);
        }
        self.update_progress(run_id, |p| p.chunk = total);
        Ok((schema, batches))
    }

    /// Stores the rows of step `step_id` of run `run_id` that are not in run `prev`'s table
    /// (`EXCEPT` between the two Parquet outputs) as a step `<step>__new` of the run, shown
    /// after the run's steps. Without a previous run every row is new. Returns the count.
    pub async fn what_is_new(&self, run_id: &str, prev: Option<&str>, step_id: &str) -> Result<usize> {
        let rec = self
            .store
            .step(run_id, step_id)?
            .ok_or_else(|| anyhow!("step `{step_id}` has no table in run {run_id}"))?;
        let base: Option<StepOutcome> = rec.outcome.as_deref().and_then(|o| serde_json::from_str(o).ok());
        let file = self.run_dir(run_id).join(format!("{step_id}.parquet"));
        let ctx = new_session();
        let opts = datafusion::prelude::ParquetReadOptions::default();
        let path_text = |p: &std::path::Path| p.to_string_lossy().to_string();
        ctx.register_parquet("cur", path_text(&file), opts.clone()).await?;
        let prev_file = prev.map(|p| self.run_dir(p).join(format!("{step_id}.parquet"))).filter(|f| f.exists());
        let (sql, note) = match (&prev_file, prev) {
            (Some(pf), Some(p)) => {
                ctx.register_parquet("prev", path_text(pf), opts).await?;
                (
                    "SELECT * FROM cur EXCEPT SELECT * FROM prev".to_string(),
                    format!(
                        "Rows of this run's table that were not in the <a href=\"/runs/{p}\">previous run</a> of its schedule."
                    ),
                )
            }
            (None, Some(p)) => (
                "SELECT * FROM cur".to_string(),
                format!("The <a href=\"/runs/{p}\">previous run</a>'s table is no longer stored, so every row counts as new."),
            ),
            _ => ("SELECT * FROM cur".to_string(), "The first run of this schedule: every row is new.".to_string()),
        };
        let df = ctx.sql(&sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let data = StepData::new(schema, df.collect().await?);
        let id = format!("{step_id}__new");
        write_parquet(&self.run_dir(run_id).join(format!("{id}.parquet")), &data)?;
        let title = base.as_ref().and_then(|b| b.title.clone()).unwrap_or_else(|| step_id.to_string());
        let out = StepOutcome {
            id: id.clone(),
            title: Some(format!("New since the previous run: {title}")),
            section: base.as_ref().map_or(0, |b| b.section),
            rows: Some(data.rows),
            elapsed_ms: 0,
            error: None,
            html: Some(format!("<p class=\"muted\">{note}</p>")),
            chart: None,
            show_table: true,
            export: true,
            page_size: base.as_ref().map_or(25, |b| b.page_size),
        };
        self.store.record_step(
            run_id,
            &StepRecord {
                step_id: id.clone(),
                rows: Some(data.rows as i64),
                elapsed_ms: 0,
                file: Some(format!("{id}.parquet")),
                error: None,
                outcome: serde_json::to_string(&out).ok(),
            },
        )?;
        Ok(data.rows)
    }

    /// Makes the analysts' ratings the `ratings` table of a run's session.
    fn register_ratings(&self, ctx: &datafusion::prelude::SessionContext) -> Result<()> {
        use datafusion::arrow::array::{Int64Array, StringArray};
        let all = self.store.ratings(None)?;
        let text = |f: &dyn Fn(&crate::store::Rating) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(all.iter().map(|r| f(r).to_string())))
        };
        let batch = RecordBatch::try_new(
            crate::catalog::ratings_schema(),
            vec![
                text(&|r| &r.playbook),
                text(&|r| &r.run_id),
                text(&|r| &r.step_id),
                text(&|r| &r.field),
                text(&|r| &r.value),
                Arc::new(Int64Array::from_iter_values(all.iter().map(|r| r.rating))),
                text(&|r| &r.note),
                text(&|r| &r.rated_by),
                text(&|r| &r.rated_at),
            ],
        )?;
        let _ = ctx.deregister_table("ratings");
        ctx.register_table("ratings", Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?))?;
        Ok(())
    }

    /// Rates the values of `field` in rows of a stored table: the rows given by position, or
    /// else the rows whose columns equal all of `conditions`, or else every row matching
    /// `search`. Returns the distinct values rated.
    #[allow(clippy::too_many_arguments)]
    pub async fn rate(
        &self,
        run_id: &str,
        step_id: &str,
        rows: &[u32],
        conditions: &[(String, String)],
        search: Option<&str>,
        field: &str,
        rating: i64,
        note: &str,
        who: &str,
    ) -> Result<Vec<String>> {
        if !(1..=3).contains(&rating) {
            bail!("a rating is 1 (high), 2 (medium) or 3 (low)");
        }
        let run = self.store.run(run_id)?.ok_or_else(|| anyhow!("no such run"))?;
        let data = self.step_data(run_id, step_id)?;
        let merged = data.merged()?;
        let col = merged.schema().index_of(field).map_err(|_| anyhow!("the table has no column `{field}`"))?;
        let tz = self.tz();
        let picked: Vec<u32> = if !rows.is_empty() {
            rows.iter().copied().filter(|r| (*r as usize) < merged.num_rows()).collect()
        } else if !conditions.is_empty() {
            let mut cols = Vec::new();
            for (c, v) in conditions {
                let i = merged.schema().index_of(c).map_err(|_| anyhow!("the table has no column `{c}`"))?;
                cols.push((merged.column(i).clone(), v.trim().to_string()));
            }
            (0..merged.num_rows() as u32)
                .filter(|r| cols.iter().all(|(col, v)| cell_text(col, *r as usize, tz) == *v))
                .collect()
        } else {
            match search.map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) => self.search_rows(&data, &s.to_lowercase()).await?,
                None => {
                    bail!("tick rows, give column values, or type an address or keyword to rate every row that has it")
                }
            }
        };
        let mut values: Vec<String> = Vec::new();
        for r in picked {
            let v = cell_text(merged.column(col), r as usize, tz);
            if !v.is_empty() && !values.contains(&v) {
                values.push(v);
            }
        }
        if values.is_empty() {
            bail!("no row matched, so nothing was rated");
        }
        let base = crate::store::Rating {
            id: 0,
            playbook: run.playbook,
            run_id: run_id.to_string(),
            step_id: step_id.to_string(),
            field: field.to_string(),
            value: String::new(),
            rating,
            note: note.chars().take(500).collect(),
            rated_by: who.to_string(),
            rated_at: String::new(),
        };
        self.store.add_ratings(&base, &values)?;
        tracing::info!(run = %run_id, step = %step_id, field, rating, values = values.len(), who, "rated");
        Ok(values)
    }

    /// An enrich step: the earlier table with lookup columns added (see [`crate::enrich`]).
    async fn enrich(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        e: &crate::steps::enrich::Enrich,
        done: &HashMap<String, Arc<StepData>>,
    ) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), StepError> {
        let from = done.get(&e.from).ok_or_else(|| StepError::Other(anyhow!("step `{}` has no table", e.from)))?;
        let out = self.enrich_table(ctx, e, from).await?;
        Ok((out.schema.clone(), out.batches.clone()))
    }

    /// `from` with the lookup columns of `e` added.
    pub(crate) async fn enrich_table(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        e: &crate::steps::enrich::Enrich,
        from: &StepData,
    ) -> std::result::Result<StepData, StepError> {
        use crate::enrich::{Context, Geo, Sources, TopDomains};
        let other = |m: String| StepError::Other(anyhow!(m));
        let tz = self.tz();
        // A source connector's table as text, columns in order.
        let table = |name: String| async move {
            let batches = ctx
                .sql_with_options(&format!("SELECT * FROM {}", quote_ident(&name)), read_only())
                .await?
                .collect()
                .await?;
            let mut t = crate::enrich::SourceRows::default();
            for b in &batches {
                t.names = b.schema().fields().iter().map(|f| f.name().to_ascii_lowercase()).collect();
                for r in 0..b.num_rows() {
                    t.rows
                        .push((0..b.num_columns()).map(|c| cell_text(b.column(c), r, tz).trim().to_string()).collect());
                }
            }
            Ok::<_, datafusion::error::DataFusionError>(t)
        };
        let mut src = Sources::default();
        if let Some(c) = &e.context {
            let (context, bad) = Context::from_rows(&table(c.clone()).await?);
            if !bad.is_empty() {
                tracing::warn!(connector = %c, rows = bad.len(), "network context rows that are not addresses, ranges or CIDRs");
            }
            src.context = Some(context);
        }
        match &e.geo {
            Some(crate::steps::enrich::GeoSource::Connector(c)) => {
                src.geo = Some(Geo::from_iploc_rows(&table(c.clone()).await?));
            }
            Some(crate::steps::enrich::GeoSource::Mmdb(file)) => {
                let path = crate::paths::join_inside(&self.catalog().paths.data, file)
                    .ok_or_else(|| other(format!("`{file}` is not inside the data folder")))?;
                let bytes = std::fs::read(&path).map_err(|err| other(format!("cannot read {file}: {err}")))?;
                src.geo = Some(Geo::mmdb(bytes).map_err(|m| other(format!("{file}: {m}")))?);
            }
            None => {}
        }
        if let Some(t) = &e.top_domains {
            src.top = Some(TopDomains::from_rows(&table(t.clone()).await?));
        }
        if let Some(name) = &e.reputation {
            let catalog = self.catalog();
            let service = catalog
                .services
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| other(format!("no reputation service `{name}`")))?;
            let mut values: Vec<String> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let merged = from.merged().map_err(StepError::Other)?;
            for c in e.ip.iter().chain(&e.domain) {
                let Ok(i) = merged.schema().index_of(c) else { continue };
                for r in 0..merged.num_rows() {
                    let v = cell_text(merged.column(i), r, tz).trim().to_string();
                    if !v.is_empty() && seen.insert(v.clone()) {
                        values.push(v);
                    }
                }
            }
            let answers = service.lookup_all(&values, &self.secrets, &self.store).await;
            src.reputation = Some((service.fields.iter().map(|(f, _)| f.clone()).collect(), answers));
        }
        let merged = from.merged().map_err(StepError::Other)?;
        let out = crate::enrich::apply(merged, e, &src, |col, r| cell_text(col, r, tz)).map_err(other)?;
        Ok(StepData::new(out.schema(), vec![out]))
    }

    fn update_progress(&self, run_id: &str, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut m) = self.progress.lock() {
            if let Some((p, _)) = m.get_mut(run_id) {
                f(p);
            }
        }
    }

    fn cache_put(&self, run: &str, step: &str, data: Arc<StepData>) {
        if let Ok(mut c) = self.cache.lock() {
            c.put((run.to_string(), step.to_string()), data);
        }
    }

    /// A stored step table, from memory or from its Parquet file.
    pub fn step_data(&self, run_id: &str, step_id: &str) -> Result<Arc<StepData>> {
        let key = (run_id.to_string(), step_id.to_string());
        if let Some(d) = self.cache.lock().ok().and_then(|mut c| c.get(&key)) {
            return Ok(d);
        }
        let rec = self.store.step(run_id, step_id)?.ok_or_else(|| anyhow!("no such result"))?;
        let file = rec.file.ok_or_else(|| anyhow!("this step has no stored table"))?;
        if !crate::playbook::is_identifier(step_id) || file != format!("{step_id}.parquet") {
            bail!("no such result");
        }
        let path = self.run_dir(run_id).join(file);
        let data = Arc::new(read_parquet(&path)?);
        self.cache_put(run_id, step_id, data.clone());
        Ok(data)
    }

    /// Exports a stored step table as `format` into `data/exports/<playbook>/`.
    pub async fn export(&self, run_id: &str, step_id: &str, format: &str, who: &str) -> Result<ExportRecord> {
        let run = self.store.run(run_id)?.ok_or_else(|| anyhow!("no such run"))?;
        let data = self.step_data(run_id, step_id)?;
        let ext = match format {
            "csv" | "json" | "parquet" => format,
            _ => bail!("unknown export format `{format}`; use csv, json or parquet"),
        };
        let stamp = Utc::now().format("%Y%m%d-%H%M%S");
        let rel = format!(
            "{}/{}-{}-{}-{}.{}",
            run.playbook,
            run.playbook,
            step_id,
            stamp,
            &run_id[..8.min(run_id.len())],
            ext
        );
        let path = self.catalog().paths.exports_dir().join(&rel);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        match ext {
            "parquet" => write_parquet(&path, &data)?,
            "csv" => write_csv(&path, &data, self.tz())?,
            _ => write_json(&path, &data, self.tz())?,
        }
        let bytes = std::fs::metadata(&path).map(|m| m.len() as i64).unwrap_or(0);
        let mut rec = ExportRecord {
            id: 0,
            run_id: run_id.to_string(),
            playbook: run.playbook,
            step_id: step_id.to_string(),
            format: ext.to_string(),
            file: rel,
            bytes,
            rows: data.rows as i64,
            created_at: String::new(),
            created_by: who.to_string(),
        };
        rec.id = self.store.add_export(&rec)?;
        tracing::info!(export = rec.id, file = %rec.file, rows = rec.rows, who, "exported");
        Ok(rec)
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

/// `secrets.yaml` in the data folder, the default secrets file.
fn catalog_secrets_default(catalog: &Catalog) -> PathBuf {
    catalog.paths.data.join("secrets.yaml")
}

/// Whether process `pid` still exists (Linux: `/proc/<pid>`; elsewhere assumed gone).
fn process_alive(pid: i64) -> bool {
    cfg!(target_os = "linux") && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Row orders computed for paging (sorted and/or searched), kept so that turning pages is a
/// slice and a `take`, not a new sort of the whole result.
#[derive(Debug, Default)]
struct ViewCache {
    entries: Vec<(ViewKey, Arc<Vec<u32>>)>,
}

type ViewKey = (String, String, Option<(String, bool)>, Option<String>);

const VIEW_ENTRIES: usize = 64;

impl ViewCache {
    fn get(&mut self, k: &ViewKey) -> Option<Arc<Vec<u32>>> {
        let i = self.entries.iter().position(|(key, _)| key == k)?;
        let e = self.entries.remove(i);
        let v = e.1.clone();
        self.entries.push(e);
        Some(v)
    }

    fn put(&mut self, k: ViewKey, v: Arc<Vec<u32>>) {
        self.entries.retain(|(key, _)| key != &k);
        self.entries.push((k, v));
        if self.entries.len() > VIEW_ENTRIES {
            self.entries.remove(0);
        }
    }
}

impl Engine {
    /// The rows matching `search` (lower-cased), in stored order: DataFusion evaluates the
    /// filter with the search text bound as a parameter; identifiers come from the schema.
    async fn search_rows(&self, data: &StepData, search: &str) -> Result<Vec<u32>> {
        let columns: Vec<String> = data.schema.fields().iter().map(|f| f.name().clone()).collect();
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        let mut fields: Vec<datafusion::arrow::datatypes::FieldRef> = data.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(datafusion::arrow::datatypes::Field::new("__row", DataType::UInt32, false)));
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let mut offset = 0u32;
        let mut batches = Vec::with_capacity(data.batches.len());
        for b in &data.batches {
            let n = b.num_rows() as u32;
            let mut cols = b.columns().to_vec();
            cols.push(Arc::new(datafusion::arrow::array::UInt32Array::from_iter_values(offset..offset + n)));
            offset += n;
            batches.push(RecordBatch::try_new(schema.clone(), cols)?);
        }
        let ctx = new_session();
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, split_partitions(&batches, 2))?))?;
        let ors: Vec<String> =
            columns.iter().map(|c| format!("strpos(lower(CAST({} AS VARCHAR)), $q) > 0", quote_ident(c))).collect();
        let sql = format!("SELECT __row FROM t WHERE ({}) ORDER BY __row", ors.join(" OR "));
        let out = ctx
            .sql(&sql)
            .await?
            .with_param_values(vec![("q", ScalarValue::Utf8(Some(search.to_string())))])?
            .collect()
            .await?;
        let mut rows = Vec::new();
        for b in &out {
            if let Some(a) = b.column(0).as_primitive_opt::<datafusion::arrow::datatypes::UInt32Type>() {
                rows.extend(a.values().iter().copied());
            }
        }
        Ok(rows)
    }

    /// One page of a stored table, sorted and filtered on the server.
    pub async fn page(&self, run_id: &str, step_id: &str, q: &TableQuery) -> Result<TablePage> {
        let data = self.step_data(run_id, step_id)?;
        let tz = self.tz();
        let size = q.size.clamp(5, 500);
        let columns: Vec<String> = data.schema.fields().iter().map(|f| f.name().clone()).collect();
        let sort = q.sort.as_ref().filter(|s| columns.contains(s)).cloned();
        let search = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
        let merged = data.merged()?;
        let key = |sort: Option<(String, bool)>, search: Option<String>| -> ViewKey {
            (run_id.to_string(), step_id.to_string(), sort, search)
        };
        let cached = |k: &ViewKey| self.views.lock().ok().and_then(|mut v| v.get(k));
        let remember = |k: ViewKey, v: Arc<Vec<u32>>| {
            if let Ok(mut c) = self.views.lock() {
                c.put(k, v);
            }
        };
        // Rows that match the search, in stored order.
        let base: Option<Arc<Vec<u32>>> = match &search {
            None => None,
            Some(s) => {
                let k = key(None, Some(s.clone()));
                match cached(&k) {
                    Some(v) => Some(v),
                    None => {
                        let v = Arc::new(self.search_rows(&data, s).await?);
                        remember(k, v.clone());
                        Some(v)
                    }
                }
            }
        };
        // Their order under the requested sort.
        let order: Option<Arc<Vec<u32>>> = match &sort {
            None => base.clone(),
            Some(col) => {
                let k = key(Some((col.clone(), q.desc)), search.clone());
                match cached(&k) {
                    Some(v) => Some(v),
                    None => {
                        let idx = merged.schema().index_of(col)?;
                        let values = match &base {
                            Some(rows) => take(merged.column(idx).as_ref(), &UInt32Array::from(rows.to_vec()), None)?,
                            None => merged.column(idx).clone(),
                        };
                        let opts = SortOptions { descending: q.desc, nulls_first: false };
                        let sorted = sort_to_indices(values.as_ref(), Some(opts), None)?;
                        let v: Vec<u32> = match &base {
                            Some(rows) => sorted.values().iter().map(|i| rows[*i as usize]).collect(),
                            None => sorted.values().to_vec(),
                        };
                        let v = Arc::new(v);
                        remember(k, v.clone());
                        Some(v)
                    }
                }
            }
        };
        let filtered = base.as_ref().map_or(data.rows, |b| b.len());
        let pages = filtered.div_ceil(size).max(1);
        let page = q.page.clamp(1, pages);
        let offset = (page - 1) * size;
        let end = (offset + size).min(filtered);
        let idx: Vec<u32> = match &order {
            Some(o) => o.get(offset..end).map(<[u32]>::to_vec).unwrap_or_default(),
            None => (offset as u32..end as u32).collect(),
        };
        let ids = idx.clone();
        let idx = UInt32Array::from(idx);
        let cols: Vec<ArrayRef> =
            merged.columns().iter().map(|c| take(c.as_ref(), &idx, None)).collect::<std::result::Result<_, _>>()?;
        let rows: Vec<Vec<Cell>> = (0..idx.len())
            .map(|r| {
                cols.iter()
                    .map(|c| {
                        let text = cell_text(c, r, tz);
                        let num = c.data_type().is_numeric();
                        let pv = if num { None } else { crate::playbook::params::entity_of(&text) };
                        Cell { text, num, pv }
                    })
                    .collect()
            })
            .collect();
        let first = if rows.is_empty() { 0 } else { offset + 1 };
        Ok(TablePage {
            last: offset + rows.len(),
            ids,
            columns,
            rows,
            total: data.rows,
            filtered,
            page,
            pages,
            size,
            first,
            sort,
            desc: q.desc,
            search: q.search.clone().unwrap_or_default(),
        })
    }
}

fn split_partitions(batches: &[RecordBatch], n: usize) -> Vec<Vec<RecordBatch>> {
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n.max(1)];
    for (i, b) in batches.iter().enumerate() {
        parts[i % n.max(1)].push(b.clone());
    }
    parts
}

/// A cell as analysts read it: timestamps in the configured zone, numbers plain.
pub fn cell_text(col: &ArrayRef, row: usize, tz: Tz) -> String {
    if col.is_null(row) {
        return String::new();
    }
    if let DataType::Timestamp(unit, _) = col.data_type() {
        let v = match unit {
            TimeUnit::Second => {
                col.as_primitive::<datafusion::arrow::datatypes::TimestampSecondType>().value(row) * 1_000_000
            }
            TimeUnit::Millisecond => {
                col.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().value(row) * 1000
            }
            TimeUnit::Microsecond => {
                col.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>().value(row)
            }
            TimeUnit::Nanosecond => {
                col.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>().value(row) / 1000
            }
        };
        if let Some(t) = DateTime::<Utc>::from_timestamp_micros(v) {
            return timeutil::format_display(t, tz);
        }
    }
    let opts = FormatOptions::default();
    match ArrayFormatter::try_new(col.as_ref(), &opts) {
        Ok(f) => f.value(row).to_string(),
        Err(_) => String::new(),
    }
}

/// Writes a table as Parquet (threat snapshots).
pub fn write_parquet_file(path: &std::path::Path, data: &StepData) -> Result<()> {
    write_parquet(path, data)
}

/// Reads a Parquet table written by casebook.
pub fn read_parquet_file(path: &std::path::Path) -> Result<StepData> {
    read_parquet(path)
}

fn write_parquet(path: &std::path::Path, data: &StepData) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = ArrowWriter::try_new(file, data.schema.clone(), None)?;
    for b in &data.batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(())
}

fn read_parquet(path: &std::path::Path) -> Result<StepData> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(65536).build()?;
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    Ok(StepData::new(schema, batches))
}

fn write_csv(path: &std::path::Path, data: &StepData, tz: Tz) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(File::create(path)?);
    write_delimited(&mut w, data, tz)?;
    w.flush()?;
    Ok(())
}

/// Writes `data` as CSV (header first) with cells as analysts read them.
pub fn write_delimited(w: &mut dyn std::io::Write, data: &StepData, tz: Tz) -> Result<()> {
    let header: Vec<String> = data.schema.fields().iter().map(|f| csv_field(f.name())).collect();
    writeln!(w, "{}", header.join(","))?;
    for b in &data.batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns()).map(|c| csv_field(&cell_text(b.column(c), r, tz))).collect();
            writeln!(w, "{}", cells.join(","))?;
        }
    }
    Ok(())
}

/// A CSV cell: quoted when needed, spreadsheet formulas in text neutralised (a leading `=`,
/// `+`, `@`, or `-` that does not start a number).
pub(crate) fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '@']) || (s.starts_with('-') && s.parse::<f64>().is_err());
    let s = if formula { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn write_json(path: &std::path::Path, data: &StepData, tz: Tz) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(File::create(path)?);
    write_json_rows(&mut w, data, tz)?;
    w.flush()?;
    Ok(())
}

/// Writes `data` as a JSON array of objects; numbers stay numbers.
pub fn write_json_rows(w: &mut dyn std::io::Write, data: &StepData, tz: Tz) -> Result<()> {
    write!(w, "[")?;
    let mut first = true;
    for b in &data.batches {
        for r in 0..b.num_rows() {
            let obj = row_json(b, r, tz);
            if !first {
                write!(w, ",")?;
            }
            first = false;
            write!(w, "\n{}", serde_json::Value::Object(obj))?;
        }
    }
    writeln!(w, "\n]")?;
    Ok(())
}

pub(crate) fn row_json(b: &RecordBatch, r: usize, tz: Tz) -> serde_json::Map<String, serde_json::Value> {
    let mut obj = serde_json::Map::new();
    for (c, f) in b.schema().fields().iter().enumerate() {
        let col = b.column(c);
        let v = if col.is_null(r) {
            serde_json::Value::Null
        } else {
            let text = cell_text(col, r, tz);
            match col.data_type() {
                t if t.is_integer() => {
                    text.parse::<i64>().map(serde_json::Value::from).unwrap_or(serde_json::Value::String(text))
                }
                t if t.is_floating() => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::String(text)),
                DataType::Boolean => serde_json::Value::Bool(text == "true"),
                _ => serde_json::Value::String(text),
            }
        };
        obj.insert(f.name().clone(), v);
    }
    obj
}

const CHART_ROWS: usize = 20_000;
const CHART_SERIES: usize = 12;

/// The data a chart widget draws: labels along x and one dataset per y column or series.
fn chart_json(step: &Step, chart: &crate::steps::chart::Chart, data: &StepData, tz: Tz) -> serde_json::Value {
    let idx = |name: &str| data.schema.index_of(name).ok();
    let (Some(xi), Some(yis)) = (idx(&chart.x.0), chart.y.0.iter().map(|y| idx(y)).collect::<Option<Vec<_>>>()) else {
        return serde_json::json!({"error": "chart columns are missing from the result"});
    };
    let si = chart.series.as_ref().and_then(|(s, _)| idx(s));
    let x_is_time = matches!(data.schema.field(xi).data_type(), DataType::Timestamp(..));
    let mut labels: Vec<String> = Vec::new();
    let mut label_pos: HashMap<String, usize> = HashMap::new();
    // (dataset name) -> values by label index
    let mut sets: Vec<(String, HashMap<usize, f64>, f64)> = Vec::new();
    let mut times: Vec<i64> = Vec::new();
    let mut seen = 0usize;
    'outer: for b in &data.batches {
        for r in 0..b.num_rows() {
            if seen >= CHART_ROWS {
                break 'outer;
            }
            seen += 1;
            let x = cell_text(b.column(xi), r, tz);
            let li = *label_pos.entry(x.clone()).or_insert_with(|| {
                labels.push(x);
                if x_is_time {
                    times.push(epoch_ms(b.column(xi), r));
                }
                labels.len() - 1
            });
            for (k, yi) in yis.iter().enumerate() {
                let y = as_f64(b.column(*yi), r).unwrap_or(0.0);
                let name = match si {
                    Some(si) => {
                        let s = cell_text(b.column(si), r, tz);
                        if yis.len() > 1 {
                            format!("{s} {}", chart.y.0[k])
                        } else {
                            s
                        }
                    }
                    None => chart.y.0[k].clone(),
                };
                let set = match sets.iter().position(|(n, _, _)| n == &name) {
                    Some(i) => i,
                    None => {
                        sets.push((name, HashMap::new(), 0.0));
                        sets.len() - 1
                    }
                };
                *sets[set].1.entry(li).or_insert(0.0) += y;
                sets[set].2 += y;
            }
        }
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    if x_is_time {
        order.sort_by_key(|i| times.get(*i).copied().unwrap_or(0));
    }
    // Keep the largest series; fold the rest into "other".
    sets.sort_by(|a, b| b.2.total_cmp(&a.2));
    if sets.len() > CHART_SERIES {
        let rest: Vec<_> = sets.split_off(CHART_SERIES - 1);
        let mut other = HashMap::new();
        for (_, vals, _) in rest {
            for (k, v) in vals {
                *other.entry(k).or_insert(0.0) += v;
            }
        }
        sets.push(("other".into(), other, 0.0));
    }
    let datasets: Vec<serde_json::Value> = sets
        .iter()
        .map(|(name, vals, _)| {
            let d: Vec<serde_json::Value> = order
                .iter()
                .map(|i| vals.get(i).map(|v| serde_json::json!(v)).unwrap_or(serde_json::json!(0)))
                .collect();
            serde_json::json!({"label": name, "data": d})
        })
        .collect();
    serde_json::json!({
        "type": match chart.kind { ChartKind::Bar => "bar", ChartKind::Line => "line" },
        "title": chart.title.clone(),
        "step": step.id,
        "time": x_is_time,
        "tz": tz.name(),
        "times": if x_is_time { order.iter().map(|i| times.get(*i).copied().unwrap_or(0)).collect::<Vec<i64>>() } else { Vec::new() },
        "x": chart.x.0,
        "y": chart.y.0.join(", "),
        "labels": order.iter().map(|i| labels[*i].clone()).collect::<Vec<_>>(),
        "datasets": datasets,
        "truncated": data.rows > CHART_ROWS,
    })
}

/// Milliseconds since the epoch of a timestamp cell (0 when it is not one).
fn epoch_ms(col: &ArrayRef, r: usize) -> i64 {
    if col.is_null(r) {
        return 0;
    }
    let Ok(c) = datafusion::arrow::compute::cast(&col.slice(r, 1), &DataType::Timestamp(TimeUnit::Millisecond, None))
    else {
        return 0;
    };
    c.as_primitive_opt::<datafusion::arrow::datatypes::TimestampMillisecondType>().map(|a| a.value(0)).unwrap_or(0)
}

fn as_f64(col: &ArrayRef, r: usize) -> Option<f64> {
    if col.is_null(r) {
        return None;
    }
    let c = datafusion::arrow::compute::cast(&col.slice(r, 1), &DataType::Float64).ok()?;
    c.as_primitive_opt::<datafusion::arrow::datatypes::Float64Type>().map(|a| a.value(0))
}

/// Evaluates a step's `when` expression against the parameters' text forms.
fn condition_holds(expr: &str, values: &[(String, Value)], tz: Tz) -> bool {
    let params: serde_json::Map<String, serde_json::Value> =
        values.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_text(tz)))).collect();
    let env = minijinja::Environment::new();
    let ctx = serde_json::json!({ "params": params });
    env.compile_expression(expr).and_then(|e| e.eval(&ctx)).map(|v| v.is_true()).unwrap_or(false)
}

/// Renders a markdown step: the template sees `params` and `steps.<id>` (`rows`, `columns`,
/// `first`, `data` — the first 100 rows).
fn render_markdown(
    template: &str,
    values: &[(String, Value)],
    done: &HashMap<String, Arc<StepData>>,
    tz: Tz,
) -> std::result::Result<String, String> {
    let mut steps = serde_json::Map::new();
    for (id, d) in done {
        let mut rows = Vec::new();
        'b: for b in &d.batches {
            for r in 0..b.num_rows() {
                if rows.len() >= 100 {
                    break 'b;
                }
                rows.push(serde_json::Value::Object(row_json(b, r, tz)));
            }
        }
        let first = rows.first().cloned().unwrap_or(serde_json::Value::Null);
        steps.insert(
            id.clone(),
            serde_json::json!({
                "rows": d.rows,
                "columns": d.schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
                "first": first,
                "data": rows,
            }),
        );
    }
    let params: serde_json::Map<String, serde_json::Value> =
        values.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_text(tz)))).collect();
    let env = minijinja::Environment::new();
    let text = env
        .render_str(template, serde_json::json!({"params": params, "steps": steps}))
        .map_err(|e| format!("could not fill in the text: {}", e.detail().unwrap_or("template error")))?;
    Ok(crate::markdown::to_html(&text))
}
