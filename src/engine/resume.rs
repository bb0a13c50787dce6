//! Runs a restart left unfinished: steps and chunks that finished are read back from their
//! stored files, the rest executes with the parameters as they were resolved when the run
//! first started. A run whose playbook has changed since is marked interrupted instead.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::request::{RunOutcome, RunRequest};
use super::{process_alive, Engine};
use crate::model::params::parse_all;
use crate::store::runs::RunRecord;

impl Engine {
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
        let stored = run.resolved_params();
        let values = match parse_all(&pb.params, |name| stored.get(name).map(String::as_str), &catalog.parse_ctx()) {
            Ok(values) => values,
            Err(errors) => {
                let (name, e) = errors.first().cloned().unwrap_or_default();
                self.store.interrupt(&run.id, &format!("interrupted by a restart; parameter `{name}`: {e}"))?;
                bail!("run {}: parameter `{name}`: {e}", run.id);
            }
        };
        let req = RunRequest::new(pb, values, run.started_by.clone(), run.source.clone())
            .section(run.section.and_then(|s| usize::try_from(s).ok()))
            .scheduled(run.schedule_id)
            // What reads a resumed run's hidden tables afterwards is not known here.
            .keeping(None);
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
}
