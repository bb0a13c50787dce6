//! The run queue: a run is recorded (`queued`), waits for one of `limits.concurrent` slots
//! (first come, first served), executes on the query runtime, and ends succeeded, failed or
//! cancelled; cancel and the run time limit drop its execution, which stops its DataFusion
//! streams. Also where a running run is, for the progress bar.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use super::run::{RunOutcome, RunRequest, StepOutcome};
use super::Engine;
use crate::store::{RunRecord, RunState};

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

/// Why a run ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    TimedOut,
}

/// The queue's state: slots, the runs going on and where each is.
#[derive(Debug)]
pub(super) struct Queue {
    slots: Arc<tokio::sync::Semaphore>,
    jobs: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    progress: Mutex<HashMap<String, (Progress, Instant)>>,
    queries: QueryRuntime,
}

impl Queue {
    pub(super) fn new(concurrent: usize) -> Queue {
        Queue {
            slots: Arc::new(tokio::sync::Semaphore::new(concurrent.max(1))),
            jobs: Mutex::new(HashMap::new()),
            running: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
            progress: Mutex::new(HashMap::new()),
            queries: QueryRuntime::new(),
        }
    }
}

impl Engine {
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
            state: RunState::Queued,
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

    /// Executes a recorded run to its end and records how it ended.
    pub(super) async fn drive(self: &Arc<Self>, req: RunRequest, run_id: String) -> Result<RunOutcome> {
        let pb = &req.playbook;
        self.set_progress(&run_id, Progress { state: RunState::Queued, ..Progress::default() });
        let (cancel_tx, mut cancel_rx) = tokio::sync::watch::channel(false);
        if let Ok(mut jobs) = self.queue.jobs.lock() {
            jobs.insert(run_id.clone(), cancel_tx);
        }
        let result = self.run_guarded(&run_id, &req, &mut cancel_rx).await;
        if let Ok(mut jobs) = self.queue.jobs.lock() {
            jobs.remove(&run_id);
        }
        let (state, error) = match &result {
            Ok(Ok(outcomes)) => {
                let first = outcomes.iter().find_map(|o| o.error.as_ref().map(|e| format!("step `{}`: {e}", o.id)));
                (if first.is_some() { RunState::Failed } else { RunState::Succeeded }, first)
            }
            Ok(Err(Stop::Cancelled)) => (RunState::Cancelled, Some("cancelled by the analyst".to_string())),
            Ok(Err(Stop::TimedOut)) => (
                RunState::Failed,
                Some(format!("stopped after the run time limit of {} s", self.limits.timeout.as_secs())),
            ),
            Err(e) => (RunState::Failed, Some(format!("{e:#}"))),
        };
        self.store.finish_run_as(&run_id, state, error.as_deref())?;
        if let Ok(mut m) = self.queue.progress.lock() {
            m.remove(&run_id);
        }
        tracing::info!(run = %run_id, playbook = %pb.id, state = %state, "run finished");
        let steps = match result {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(_)) => self.stored_outcomes(&run_id)?,
            Err(e) => return Err(e),
        };
        Ok(RunOutcome { run_id, steps })
    }

    /// True while run `run_id` is queued or executing in this process.
    pub fn is_active(&self, run_id: &str) -> bool {
        self.queue.jobs.lock().map(|j| j.contains_key(run_id)).unwrap_or(false)
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
            p = self.queue.slots.clone().acquire_owned() => p.map_err(|_| anyhow!("the run queue is closed"))?,
            _ = cancelled(cancel) => return Ok(Err(Stop::Cancelled)),
        };
        self.store.set_state(run_id, RunState::Running)?;
        self.set_progress(run_id, Progress { state: RunState::Running, ..Progress::default() });
        let now = self.queue.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.queue.peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(run = %run_id, playbook = %req.playbook.id, who = %req.who, section = ?req.section, "run started");
        // The steps run in their own task, so that a cancel or the time limit is answered at
        // once even while a query is busy; aborting the task drops its DataFusion streams.
        let task = {
            let me = self.clone();
            let req = req.clone();
            let id = run_id.to_string();
            AbortOnDrop(self.queue.queries.spawn(async move { me.execute(&id, &req).await }))
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
        self.queue.running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        drop(permit);
        result
    }

    pub(super) fn set_progress(&self, run_id: &str, p: Progress) {
        if let Ok(mut m) = self.queue.progress.lock() {
            m.insert(run_id.to_string(), (p, Instant::now()));
        }
    }

    /// Where run `run_id` is: live while it goes on, else from the state database.
    pub fn progress(&self, run_id: &str) -> Result<Option<Progress>> {
        if let Some((mut p, at)) = self.queue.progress.lock().ok().and_then(|m| m.get(run_id).cloned()) {
            if p.state == RunState::Running {
                p.elapsed_ms += at.elapsed().as_millis() as u64;
            }
            return Ok(Some(p));
        }
        Ok(self.store.run(run_id)?.map(|r| Progress { state: r.state, ..Progress::default() }))
    }

    /// Asks a queued or running run to stop. False when it is not going on.
    pub fn cancel(&self, run_id: &str) -> bool {
        match self.queue.jobs.lock().ok().and_then(|j| j.get(run_id).cloned()) {
            Some(tx) => tx.send(true).is_ok(),
            None => false,
        }
    }

    /// The most runs that were executing at the same moment since the engine started.
    pub fn peak_running(&self) -> usize {
        self.queue.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn update_progress(&self, run_id: &str, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut m) = self.queue.progress.lock() {
            if let Some((p, _)) = m.get_mut(run_id) {
                f(p);
            }
        }
    }
}
