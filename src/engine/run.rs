//! The steps of one run: each executed in order on the run's session, its table registered
//! for the steps after it and stored as Parquet while they run (a hidden table no one reads
//! after the run is not stored), its outcome recorded as it finishes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::request::{RunRequest, StepOutcome};
use super::{Engine, Progress};
use crate::results::table::write_parquet;
use crate::results::StepData;
use crate::sql::scan::ScanStats;
use crate::sql::session::cluster_of;
use crate::steps::env::{Env, Made, ProgressSink, StepError};
use crate::steps::{condition_holds, Step};
use crate::store::runs::RunState;
use crate::store::runs::StepRecord;
use datafusion::common::ScalarValue;

/// A run's progress as its steps report it, and what the current step's queries read.
struct RunProgress<'a> {
    engine: &'a Engine,
    run_id: &'a str,
    scan: std::sync::Mutex<Option<ScanStats>>,
}

impl RunProgress<'_> {
    /// What the step's queries read so far; the next step starts from nothing.
    fn take_scan(&self) -> Option<ScanStats> {
        self.scan.lock().map(|mut s| s.take()).unwrap_or_default()
    }
}

impl ProgressSink for RunProgress<'_> {
    fn scanning(&self, scan: &ScanStats) {
        self.engine.update_progress(self.run_id, |p| {
            p.scanned = scan.rows;
            p.to_read = scan.rows_to_read;
            p.files_opened = scan.files_opened;
            p.files = scan.files;
        });
    }

    fn query(&self, step: &str, sql: &str, params: &[(String, ScalarValue)], scan: &ScanStats) {
        if let Ok(mut s) = self.scan.lock() {
            s.get_or_insert_with(ScanStats::default).add(scan);
        }
        if let Some(path) = &self.engine.trace {
            let line = serde_json::json!({
                "run": self.run_id,
                "step": step,
                "sql": sql,
                "params": params.iter().map(|(k, v)| (k.clone(), trace_value(v))).collect::<serde_json::Map<_, _>>(),
                "scan": scan,
            });
            if let Err(e) = append_to_trace(path, &format!("{line}\n")) {
                tracing::warn!(error = %e, path = %path.display(), "writing the query trace");
            }
        }
    }

    fn rows(&self, rows: u64) {
        self.engine.update_progress(self.run_id, |p| p.rows = rows);
    }

    fn job(&self, job: &str) {
        self.engine.update_progress(self.run_id, |p| p.job = Some(job.to_string()));
    }

    fn chunk(&self, done: usize, of: usize) {
        self.engine.update_progress(self.run_id, |p| {
            p.chunk = done;
            p.chunks = of;
        });
    }
}

/// Appends JSON lines to the trace file of `casebook run --trace`.
pub fn append_to_trace(path: &std::path::Path, lines: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(lines.as_bytes())
}

/// A bound value as the trace writes it: its SQL type and its value (times in µs since 1970, UTC).
fn trace_value(v: &ScalarValue) -> serde_json::Value {
    use serde_json::json;
    match v {
        ScalarValue::Utf8(s) => json!({"type": "text", "value": s}),
        ScalarValue::Int64(n) => json!({"type": "bigint", "value": n}),
        ScalarValue::Float64(n) => json!({"type": "double", "value": n}),
        ScalarValue::Boolean(b) => json!({"type": "boolean", "value": b}),
        ScalarValue::TimestampMicrosecond(t, _) => json!({"type": "timestamp_us", "value": t}),
        other => json!({"type": other.data_type().to_string(), "value": other.to_string()}),
    }
}

/// Makes `data` the table `id` for the steps after it (shadowing a connector of that name):
/// from memory, or on a cluster from its stored Parquet `file` (executors read files, they
/// cannot be sent this process's memory).
pub(super) async fn register(
    ctx: &SessionContext,
    id: &str,
    data: &StepData,
    file: &Path,
) -> datafusion::error::Result<()> {
    let _ = ctx.deregister_table(id);
    if cluster_of(ctx).is_some() {
        let path = std::fs::canonicalize(file)?;
        let opts = datafusion::prelude::ParquetReadOptions::default();
        return ctx.register_parquet(id, path.display().to_string(), opts).await;
    }
    let table = MemTable::try_new(data.schema.clone(), vec![data.batches.clone()])?;
    ctx.register_table(id, Arc::new(table)).map(|_| ())
}

/// Step tables being written to Parquet while the run goes on, each into a `.part` file
/// renamed when whole (a file under the step's name is always complete).
#[derive(Default)]
struct Writes(Vec<(String, String, tokio::task::JoinHandle<Result<()>>)>);

impl Writes {
    fn store(&mut self, run_id: &str, step_id: &str, file: &Path, data: Arc<StepData>) {
        let file = file.to_path_buf();
        let job = tokio::task::spawn_blocking(move || {
            let part = file.with_extension("parquet.part");
            write_parquet(&part, &data)?;
            std::fs::rename(&part, &file).with_context(|| format!("renaming {}", part.display()))
        });
        self.0.push((run_id.to_string(), step_id.to_string(), job));
    }

    /// Waits for every write begun; a table that could not be written is logged (the run
    /// still shows it from memory; a resumed run makes it again).
    async fn wait(&mut self) {
        for (run, step, job) in self.0.drain(..) {
            let failed = match job.await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => e.to_string(),
            };
            tracing::error!(run = %run, step = %step, error = %failed, "storing step output");
        }
    }
}

impl Engine {
    /// What a run's steps showed, read back from the state database.
    pub fn stored_outcomes(&self, run_id: &str) -> Result<Vec<StepOutcome>> {
        Ok(self.store.steps(run_id)?.iter().filter_map(|s| s.outcome_as()).collect())
    }

    /// Executes the steps of a recorded run; each step's outcome is stored as it finishes.
    pub(super) async fn execute(&self, run_id: &str, req: &RunRequest) -> Result<Vec<StepOutcome>> {
        let pb = &req.playbook;
        // One snapshot of the catalog for the whole run.
        let catalog = self.catalog();
        let tz = catalog.tz;
        let dir = catalog.paths.run_dir(run_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let steps: Vec<(usize, &Step)> = match req.section {
            Some(n) => {
                let planned = pb.plan_section(n);
                pb.steps().filter(|(_, s)| planned.iter().any(|p| p.id == s.id)).collect()
            }
            None => pb.steps().collect(),
        };
        // What outgrows the run's memory spills into the data folder, not the system's /tmp
        // (often a small RAM disk); the folder goes when the run is done.
        let spill = dir.join(".spill");
        if let Err(e) = std::fs::create_dir_all(&spill) {
            tracing::warn!(error = %e, path = %spill.display(), "no spill folder for the run");
        }
        let ctx = catalog
            .run_session(Some(self.limits.memory_bytes), Some(&spill), self.cluster.as_ref())
            .map_err(anyhow::Error::msg)?;
        if let Err(e) = self.register_ratings(&ctx, &dir).await {
            tracing::warn!(error = %format!("{e:#}"), "ratings are not available to this run");
        }
        let progress = RunProgress { engine: self, run_id, scan: std::sync::Mutex::new(None) };
        let mut outcomes: Vec<StepOutcome> = Vec::new();
        let mut done: HashMap<String, Arc<StepData>> = HashMap::new();
        let mut failed: Vec<String> = Vec::new();
        let total = steps.len();
        let on_cluster = cluster_of(&ctx).is_some();
        let mut writes = Writes::default();
        let run_started = Instant::now();
        // Steps that finished before a restart (a resumed run): read back, not run again.
        let mut finished: HashMap<String, StepRecord> =
            self.store.steps(run_id)?.into_iter().map(|s| (s.step_id.clone(), s)).collect();
        for (index, (section, step)) in steps.into_iter().enumerate() {
            self.set_progress(
                run_id,
                Progress {
                    state: RunState::Running,
                    step: index + 1,
                    of: total,
                    current: step.title.clone().unwrap_or_else(|| step.id.clone()),
                    elapsed_ms: run_started.elapsed().as_millis() as u64,
                    ..Progress::default()
                },
            );
            if let Some(rec) = finished.remove(&step.id) {
                if let Some(out) = self.restore_step(run_id, &rec, &ctx, &mut done, &mut failed).await {
                    outcomes.push(out);
                    continue;
                }
            }
            let started = Instant::now();
            let mut stored = true;
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
                scan: None,
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
            let env = Env {
                ctx: &ctx,
                run_id,
                run_dir: &dir,
                data_dir: &catalog.paths.data,
                params: &pb.params,
                values: &req.values,
                done: &done,
                tz,
                services: &catalog.services,
                secrets: &self.secrets,
                store: &self.store,
                progress: &progress,
            };
            match step.kind.execute(&step.id, &env).await {
                Ok(Made::Table(data)) => {
                    let data = Arc::new(data);
                    let file = dir.join(format!("{}.parquet", step.id));
                    // A cluster's executors read the file: it is written before the next step.
                    // Here, it is written while the next steps run; a hidden table no one
                    // reads after the run is not written at all (a resumed run makes it again).
                    if on_cluster {
                        writes.store(run_id, &step.id, &file, data.clone());
                        writes.wait().await;
                    } else if req.keeps(&step.id, step.show_table) {
                        writes.store(run_id, &step.id, &file, data.clone());
                    } else {
                        stored = false;
                    }
                    if let Err(e) = register(&ctx, &step.id, &data, &file).await {
                        tracing::warn!(error = %e, "registering step table");
                    }
                    if let Some(chart) = &step.chart {
                        out.chart = Some(crate::steps::chart::chart_data(&step.id, chart, &data, tz));
                    }
                    out.rows = Some(data.rows);
                    self.results.keep(run_id, &step.id, data.clone());
                    done.insert(step.id.clone(), data);
                }
                Ok(Made::Html(html)) => out.html = Some(html),
                Err(e) => {
                    if step.is_query() {
                        tracing::warn!(run = %run_id, step = %step.id, error = %e, "step failed");
                    }
                    out.error = Some(e.message());
                    failed.push(step.id.clone());
                }
            }
            out.elapsed_ms = started.elapsed().as_millis();
            out.scan = progress.take_scan();
            self.store.record_step(
                run_id,
                &StepRecord {
                    step_id: step.id.clone(),
                    rows: out.rows.map(|r| r as i64),
                    elapsed_ms: out.elapsed_ms as i64,
                    file: out.rows.filter(|_| stored).map(|_| format!("{}.parquet", step.id)),
                    error: out.error.clone(),
                    outcome: serde_json::to_string(&out).ok(),
                },
            )?;
            outcomes.push(out);
        }
        // Every stored table is whole on disk before the run counts as done.
        writes.wait().await;
        // The session's spill files go with it; then their folder.
        drop(ctx);
        let _ = std::fs::remove_dir_all(&spill);
        self.forget_intermediates(run_id, &dir, req, &outcomes);
        Ok(outcomes)
    }

    /// Once a run is done, the tables of hidden steps no one reads after the run (`req.keep`)
    /// go, with their chunk files. An unfinished run keeps them all, to be resumed.
    fn forget_intermediates(&self, run_id: &str, dir: &Path, req: &RunRequest, outcomes: &[StepOutcome]) {
        for o in outcomes.iter().filter(|o| o.rows.is_some() && o.error.is_none()) {
            if req.keeps(&o.id, o.show_table) {
                continue;
            }
            self.results.forget(run_id, &o.id);
            match self.store.forget_step_file(run_id, &o.id) {
                Ok(()) => {
                    let _ = std::fs::remove_file(dir.join(format!("{}.parquet", o.id)));
                    let _ = std::fs::remove_dir_all(dir.join(format!("{}.chunks", o.id)));
                }
                Err(e) => {
                    tracing::warn!(run = %run_id, step = %o.id, error = %format!("{e:#}"), "keeping a hidden table")
                }
            }
        }
    }

    /// `from` with the lookup columns of `e` added, outside a run (a threat's storyboard).
    pub async fn enrich_table(
        &self,
        ctx: &SessionContext,
        e: &crate::steps::enrich::Enrich,
        from: &StepData,
    ) -> std::result::Result<StepData, StepError> {
        struct Silent;
        impl ProgressSink for Silent {
            fn rows(&self, _: u64) {}
            fn chunk(&self, _: usize, _: usize) {}
        }
        let catalog = self.catalog();
        let done = HashMap::new();
        let env = Env {
            ctx,
            run_id: "",
            run_dir: &catalog.paths.data.join("runs"),
            data_dir: &catalog.paths.data,
            params: &[],
            values: &[],
            done: &done,
            tz: catalog.tz,
            services: &catalog.services,
            secrets: &self.secrets,
            store: &self.store,
            progress: &Silent,
        };
        e.enrich(from, &env).await
    }

    /// A step that finished before a restart: its stored outcome, its table registered for
    /// later steps. None when its stored table cannot be read (the step then runs again).
    async fn restore_step(
        &self,
        run_id: &str,
        rec: &StepRecord,
        ctx: &SessionContext,
        done: &mut HashMap<String, Arc<StepData>>,
        failed: &mut Vec<String>,
    ) -> Option<StepOutcome> {
        let out: StepOutcome = rec.outcome_as()?;
        if out.error.is_some() {
            failed.push(out.id.clone());
            return Some(out);
        }
        if out.rows.is_some() {
            // A hidden table that was not written (or not whole) is made again.
            let data = self.step_data(run_id, &out.id).ok()?;
            let file = self.run_dir(run_id).join(format!("{}.parquet", out.id));
            register(ctx, &out.id, &data, &file).await.ok()?;
            done.insert(out.id.clone(), data);
        }
        Some(out)
    }
}
