//! The run queue: a run is recorded (`queued`), waits for one of `limits.concurrent` slots
//! (first come, first served), executes on the query runtime, and ends succeeded, failed or
//! cancelled; cancel and the run time limit drop its execution, which stops its DataFusion
//! streams.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};

use super::request::{RunOutcome, RunRequest, StepOutcome};
use super::runtime::AbortOnDrop;
use super::{Engine, Progress};
use crate::store::runs::RunRecord;
use crate::store::runs::RunState;

/// Why a run ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    TimedOut,
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
            engine: self.cluster.as_ref().map(|c| c.url.clone()),
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
        if let Ok(mut m) = self.progress.lock() {
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
        self.store.set_state(run_id, RunState::Running)?;
        self.set_progress(run_id, Progress { state: RunState::Running, ..Progress::default() });
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
}
