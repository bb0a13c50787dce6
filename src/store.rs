//! State in SQLite (`data/casebook.sqlite`): runs with their parameters, who started them
//! and each step's outcome, and the exports stored under `data/exports/`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
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
    pub state: String,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
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

#[derive(Debug, Clone, Serialize)]
pub struct ExportRecord {
    pub id: i64,
    pub run_id: String,
    pub playbook: String,
    pub step_id: String,
    pub format: String,
    pub file: String,
    pub bytes: i64,
    pub rows: i64,
    pub created_at: String,
    pub created_by: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    playbook TEXT NOT NULL,
    playbook_hash TEXT NOT NULL,
    section INTEGER,
    params TEXT NOT NULL,
    started_by TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_playbook ON runs(playbook, started_at);
CREATE TABLE IF NOT EXISTS run_steps (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step_id TEXT NOT NULL,
    rows INTEGER,
    elapsed_ms INTEGER NOT NULL,
    file TEXT,
    error TEXT,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS exports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    playbook TEXT NOT NULL,
    step_id TEXT NOT NULL,
    format TEXT NOT NULL,
    file TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exports_playbook ON exports(playbook, created_at);
";

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening state database {}", path.display()))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;")?;
        conn.execute_batch(SCHEMA).context("creating state tables")?;
        // Columns added after the first release of the schema.
        let has_outcome: bool =
            conn.prepare("SELECT 1 FROM pragma_table_info('run_steps') WHERE name = 'outcome'")?.exists([])?;
        if !has_outcome {
            conn.execute_batch("ALTER TABLE run_steps ADD COLUMN outcome TEXT")?;
        }
        Ok(Store { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Marks runs left `running` by a server that stopped as `interrupted`. Only the server
    /// calls this at start: a `casebook run` beside a live server must not touch its runs.
    pub fn mark_interrupted(&self) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = 'interrupted', finished_at = ?1 WHERE state IN ('queued', 'running')",
                params![now()],
            )
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().map_err(|_| anyhow::anyhow!("state database lock poisoned"))?;
        Ok(f(&conn)?)
    }

    pub fn start_run(&self, r: &RunRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (id, playbook, playbook_hash, section, params, started_by, source, state, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8)",
                params![r.id, r.playbook, r.playbook_hash, r.section, r.params, r.started_by, r.source, now()],
            )
            .map(|_| ())
        })
    }

    pub fn finish_run(&self, id: &str, error: Option<&str>) -> Result<()> {
        let state = if error.is_some() { "failed" } else { "succeeded" };
        self.finish_run_as(id, state, error)
    }

    /// Sets a run's state (`running`, or a final one: `succeeded`, `failed`, `cancelled`).
    pub fn set_state(&self, id: &str, state: &str) -> Result<()> {
        self.with(|c| c.execute("UPDATE runs SET state = ?2 WHERE id = ?1", params![id, state]).map(|_| ()))
    }

    pub fn finish_run_as(&self, id: &str, state: &str, error: Option<&str>) -> Result<()> {
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

    pub fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT id, playbook, playbook_hash, section, params, started_by, source, state, error, started_at, finished_at FROM runs WHERE id = ?1",
                params![id],
                run_row,
            )
            .optional()
        })
    }

    pub fn recent_runs(&self, playbook: &str, limit: i64) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, playbook, playbook_hash, section, params, started_by, source, state, error, started_at, finished_at
                 FROM runs WHERE playbook = ?1 ORDER BY started_at DESC LIMIT ?2",
            )?;
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

    pub fn add_export(&self, e: &ExportRecord) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO exports (run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![e.run_id, e.playbook, e.step_id, e.format, e.file, e.bytes, e.rows, now(), e.created_by],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn exports(&self, playbook: &str) -> Result<Vec<ExportRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by
                 FROM exports WHERE playbook = ?1 ORDER BY id DESC",
            )?;
            let rows = st.query_map(params![playbook], export_row)?;
            rows.collect()
        })
    }

    pub fn export(&self, id: i64) -> Result<Option<ExportRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT id, run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by FROM exports WHERE id = ?1",
                params![id],
                export_row,
            )
            .optional()
        })
    }
}

impl Store {
    /// Every run, newest first.
    pub fn all_runs(&self) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, playbook, playbook_hash, section, params, started_by, source, state, error, started_at, finished_at
                 FROM runs ORDER BY started_at DESC",
            )?;
            let rows = st.query_map([], run_row)?;
            rows.collect()
        })
    }

    /// Every export, newest first.
    pub fn all_exports(&self) -> Result<Vec<ExportRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by
                 FROM exports ORDER BY id DESC",
            )?;
            let rows = st.query_map([], export_row)?;
            rows.collect()
        })
    }

    pub fn delete_run(&self, id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM run_steps WHERE run_id = ?1", params![id])?;
            c.execute("DELETE FROM runs WHERE id = ?1", params![id]).map(|_| ())
        })
    }

    pub fn delete_export(&self, id: i64) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM exports WHERE id = ?1", params![id]).map(|_| ()))
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
    })
}

fn export_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRecord> {
    Ok(ExportRecord {
        id: r.get(0)?,
        run_id: r.get(1)?,
        playbook: r.get(2)?,
        step_id: r.get(3)?,
        format: r.get(4)?,
        file: r.get(5)?,
        bytes: r.get(6)?,
        rows: r.get(7)?,
        created_at: r.get(8)?,
        created_by: r.get(9)?,
    })
}
