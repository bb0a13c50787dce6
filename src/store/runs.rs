//! Runs, their steps and the chunks of chunked steps.

use std::collections::BTreeMap;

use anyhow::Result;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{now, Store};

/// Where a run is. Stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Recorded, waiting for a slot.
    #[default]
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Left unfinished by a restart and not resumed (the reason is the run's error).
    Interrupted,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
        }
    }

    /// Queued or running: the run is not over.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RunState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl ToSql for RunState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RunState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        RunState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown run state `{text}`").into()))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub playbook: String,
    pub playbook_hash: String,
    pub section: Option<i64>,
    pub params: String,
    pub started_by: String,
    pub source: String,
    pub state: RunState,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The schedule that fired the run.
    pub schedule_id: Option<i64>,
    /// The parameters as resolved when the run started (relative windows made absolute), so
    /// that a resumed run reads exactly the same window.
    pub resolved: Option<String>,
    /// The process executing the run; a server resumes only runs whose process is gone.
    pub pid: Option<i64>,
    /// Where its queries executed: None in casebook's own process, else the Ballista
    /// scheduler's address (`df://host:port`).
    pub engine: Option<String>,
}

impl RunRecord {
    /// The parameters as entered (name → the text a form carries), by name.
    pub fn entered(&self) -> BTreeMap<String, String> {
        text_map(&self.params)
    }

    /// The parameters as resolved when the run started (as entered, for runs recorded before
    /// resolved values were kept).
    pub fn resolved_params(&self) -> BTreeMap<String, String> {
        text_map(self.resolved.as_deref().unwrap_or(&self.params))
    }
}

/// A stored JSON object of texts; anything else in it is left out.
fn text_map(json: &str) -> BTreeMap<String, String> {
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    map.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string()))).collect()
}

impl StepRecord {
    /// What the page showed for the step, read as `T` (the engine's step outcome); None when
    /// it was not stored or no longer reads.
    pub fn outcome_as<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.outcome.as_deref()?).ok()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step_id: String,
    pub rows: Option<i64>,
    pub elapsed_ms: i64,
    pub file: Option<String>,
    pub error: Option<String>,
    /// What the page showed for the step (title, text, chart data), as JSON.
    pub outcome: Option<String>,
}

const RUN_COLUMNS: &str =
    "id, playbook, playbook_hash, section, params, started_by, source, state, error, started_at, \
                           finished_at, schedule_id, resolved, pid, engine";

impl Store {
    /// Runs left `queued` or `running` (by this or an earlier process), oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('queued', 'running') ORDER BY started_at"
            ))?;
            let rows = st.query_map([], run_row)?;
            rows.collect()
        })
    }

    /// Marks one unfinished run `interrupted`, saying why.
    pub fn interrupt(&self, id: &str, why: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = 'interrupted', error = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, why, now()],
            )
            .map(|_| ())
        })
    }

    /// Takes over an unfinished run for a resume: queued again, owned by this process.
    pub fn adopt(&self, id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE runs SET state = 'queued', pid = ?2 WHERE id = ?1", params![id, std::process::id()])
                .map(|_| ())
        })
    }

    /// Records a finished chunk of a chunked step (its rows are in `file`).
    pub fn record_chunk(&self, run_id: &str, step_id: &str, chunk: usize, rows: usize, file: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO run_chunks (run_id, step_id, chunk, rows, file) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, step_id, chunk as i64, rows as i64, file],
            )
            .map(|_| ())
        })
    }

    /// The finished chunks of a step: (chunk, rows, file).
    pub fn chunks(&self, run_id: &str, step_id: &str) -> Result<Vec<(usize, usize, String)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT chunk, rows, file FROM run_chunks WHERE run_id = ?1 AND step_id = ?2 ORDER BY chunk",
            )?;
            let rows = st.query_map(params![run_id, step_id], |r| {
                Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize, r.get(2)?))
            })?;
            rows.collect()
        })
    }

    pub fn start_run(&self, r: &RunRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (id, playbook, playbook_hash, section, params, started_by, source, state, started_at,
                                   schedule_id, resolved, pid, engine)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11, ?12)",
                params![
                    r.id,
                    r.playbook,
                    r.playbook_hash,
                    r.section,
                    r.params,
                    r.started_by,
                    r.source,
                    now(),
                    r.schedule_id,
                    r.resolved,
                    std::process::id(),
                    r.engine
                ],
            )
            .map(|_| ())
        })
    }

    pub fn finish_run(&self, id: &str, error: Option<&str>) -> Result<()> {
        let state = if error.is_some() { RunState::Failed } else { RunState::Succeeded };
        self.finish_run_as(id, state, error)
    }

    /// Sets a run's state (`running`, or a final one: `succeeded`, `failed`, `cancelled`).
    pub fn set_state(&self, id: &str, state: RunState) -> Result<()> {
        self.with(|c| c.execute("UPDATE runs SET state = ?2 WHERE id = ?1", params![id, state]).map(|_| ()))
    }

    pub fn finish_run_as(&self, id: &str, state: RunState, error: Option<&str>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = ?2, error = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, state, error, now()],
            )
            .map(|_| ())
        })
    }

    pub fn record_step(&self, run_id: &str, s: &StepRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO run_steps (run_id, step_id, rows, elapsed_ms, file, error, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run_id, s.step_id, s.rows, s.elapsed_ms, s.file, s.error, s.outcome],
            )
            .map(|_| ())
        })
    }

    /// Records that a step's table file is gone (its rows and outcome stay).
    pub fn forget_step_file(&self, run_id: &str, step_id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE run_steps SET file = NULL WHERE run_id = ?1 AND step_id = ?2", params![run_id, step_id])
                .map(|_| ())
        })
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        self.with(|c| {
            c.query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"), params![id], run_row).optional()
        })
    }

    pub fn recent_runs(&self, playbook: &str, limit: i64) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE playbook = ?1 ORDER BY started_at DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![playbook, limit], run_row)?;
            rows.collect()
        })
    }

    pub fn step(&self, run_id: &str, step_id: &str) -> Result<Option<StepRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT step_id, rows, elapsed_ms, file, error, outcome FROM run_steps WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step_id],
                step_row,
            )
            .optional()
        })
    }

    /// A run's steps in the order they ran.
    pub fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT step_id, rows, elapsed_ms, file, error, outcome FROM run_steps WHERE run_id = ?1 ORDER BY rowid",
            )?;
            let rows = st.query_map(params![run_id], step_row)?;
            rows.collect()
        })
    }

    /// Every run, newest first.
    /// Runs of `who` that are queued or running.
    pub fn active_runs_of(&self, who: &str) -> Result<i64> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM runs WHERE started_by = ?1 AND state IN ('queued', 'running')",
                params![who],
                |r| r.get(0),
            )
        })
    }

    pub fn all_runs(&self) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC"))?;
            let rows = st.query_map([], run_row)?;
            rows.collect()
        })
    }

    pub fn delete_run(&self, id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM run_steps WHERE run_id = ?1", params![id])?;
            c.execute("DELETE FROM run_chunks WHERE run_id = ?1", params![id])?;
            c.execute("DELETE FROM runs WHERE id = ?1", params![id]).map(|_| ())
        })
    }
}

fn step_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        step_id: r.get(0)?,
        rows: r.get(1)?,
        elapsed_ms: r.get(2)?,
        file: r.get(3)?,
        error: r.get(4)?,
        outcome: r.get(5)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        playbook: r.get(1)?,
        playbook_hash: r.get(2)?,
        section: r.get(3)?,
        params: r.get(4)?,
        started_by: r.get(5)?,
        source: r.get(6)?,
        state: r.get(7)?,
        error: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        schedule_id: r.get(11)?,
        resolved: r.get(12)?,
        pid: r.get(13)?,
        engine: r.get(14)?,
    })
}
