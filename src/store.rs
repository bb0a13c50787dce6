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
    /// The schedule that fired the run.
    pub schedule_id: Option<i64>,
    /// The parameters as resolved when the run started (relative windows made absolute), so
    /// that a resumed run reads exactly the same window.
    pub resolved: Option<String>,
    /// The process executing the run; a server resumes only runs whose process is gone.
    pub pid: Option<i64>,
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

/// An analyst's rating of a value (Spot's Score): 1 = high, 2 = medium, 3 = low.
#[derive(Debug, Clone, Serialize)]
pub struct Rating {
    pub id: i64,
    pub playbook: String,
    pub run_id: String,
    pub step_id: String,
    /// The column rated (`source`) and its value (`10.0.10.25`).
    pub field: String,
    pub value: String,
    pub rating: i64,
    pub note: String,
    pub rated_by: String,
    pub rated_at: String,
}

/// A saved threat.
#[derive(Debug, Clone, Serialize)]
pub struct ThreatRecord {
    pub id: i64,
    pub title: String,
    pub description: String,
    /// high, medium or low.
    pub severity: String,
    /// ip, domain or uri.
    pub kind: String,
    pub entity: String,
    pub playbook: String,
    pub run_id: String,
    pub params: String,
    pub window_start: String,
    pub window_end: String,
    pub created_by: String,
    pub created_at: String,
}

const THREAT_COLUMNS: &str =
    "id, title, description, severity, kind, entity, playbook, run_id, params, window_start, window_end, created_by, created_at";

fn threat_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ThreatRecord> {
    Ok(ThreatRecord {
        id: r.get(0)?,
        title: r.get(1)?,
        description: r.get(2)?,
        severity: r.get(3)?,
        kind: r.get(4)?,
        entity: r.get(5)?,
        playbook: r.get(6)?,
        run_id: r.get(7)?,
        params: r.get(8)?,
        window_start: r.get(9)?,
        window_end: r.get(10)?,
        created_by: r.get(11)?,
        created_at: r.get(12)?,
    })
}

/// A schedule's row: its spec (JSON of [`crate::schedule::ScheduleSpec`]) and its state.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRecord {
    pub id: i64,
    pub playbook: String,
    pub name: String,
    /// `playbook` (declared in the playbook file) or `analyst` (made on a page).
    pub origin: String,
    pub spec: String,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: String,
    pub last_fire: Option<String>,
    pub last_run: Option<String>,
    pub note: Option<String>,
}

const SCHEDULE_COLUMNS: &str =
    "id, playbook, name, origin, spec, enabled, created_by, created_at, last_fire, last_run, note";

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
CREATE TABLE IF NOT EXISTS run_chunks (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    file TEXT NOT NULL,
    PRIMARY KEY (run_id, step_id, chunk)
);
CREATE TABLE IF NOT EXISTS schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    playbook TEXT NOT NULL,
    name TEXT NOT NULL,
    origin TEXT NOT NULL,
    spec TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_fire TEXT,
    last_run TEXT,
    note TEXT,
    UNIQUE (playbook, name)
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    playbook TEXT NOT NULL,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    rating INTEGER NOT NULL,
    note TEXT NOT NULL,
    rated_by TEXT NOT NULL,
    rated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ratings_playbook ON ratings(playbook, field, value);
CREATE TABLE IF NOT EXISTS threats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    playbook TEXT NOT NULL,
    run_id TEXT NOT NULL,
    params TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS threat_evidence (
    threat_id INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    title TEXT NOT NULL,
    rows INTEGER NOT NULL,
    PRIMARY KEY (threat_id, step_id)
);
CREATE TABLE IF NOT EXISTS lookup_cache (
    service TEXT NOT NULL,
    value TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (service, value)
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    schedule_id INTEGER,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
";

const RUN_COLUMNS: &str =
    "id, playbook, playbook_hash, section, params, started_by, source, state, error, started_at, \
                           finished_at, schedule_id, resolved, pid";

fn now() -> String {
    stamp(chrono::Utc::now())
}

/// A time as the state database stores it (text that sorts as time).
pub fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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
        for (column, kind) in [("schedule_id", "INTEGER"), ("resolved", "TEXT"), ("pid", "INTEGER")] {
            let present: bool =
                conn.prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = ?1")?.exists(params![column])?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {column} {kind}"))?;
            }
        }
        Ok(Store { conn: Arc::new(Mutex::new(conn)) })
    }

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

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().map_err(|_| anyhow::anyhow!("state database lock poisoned"))?;
        Ok(f(&conn)?)
    }

    pub fn start_run(&self, r: &RunRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (id, playbook, playbook_hash, section, params, started_by, source, state, started_at,
                                   schedule_id, resolved, pid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11)",
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
                    std::process::id()
                ],
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
            let mut st = c.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC"))?;
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
            c.execute("DELETE FROM run_chunks WHERE run_id = ?1", params![id])?;
            c.execute("DELETE FROM runs WHERE id = ?1", params![id]).map(|_| ())
        })
    }

    pub fn delete_export(&self, id: i64) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM exports WHERE id = ?1", params![id]).map(|_| ()))
    }
}

impl Store {
    /// Makes the declared schedules of `playbook` exactly `declared` (name, spec, enabled at
    /// first): new ones are added, changed specs updated (their on/off switch and history
    /// kept), removed ones deleted. Analysts' schedules are not touched.
    pub fn sync_declared(&self, playbook: &str, declared: &[(String, String, bool)]) -> Result<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for (name, spec, enabled) in declared {
                tx.execute(
                    "INSERT INTO schedules (playbook, name, origin, spec, enabled, created_by, created_at)
                     VALUES (?1, ?2, 'playbook', ?3, ?4, 'playbook', ?5)
                     ON CONFLICT (playbook, name) DO UPDATE SET spec = excluded.spec WHERE origin = 'playbook'",
                    params![playbook, name, spec, enabled, now()],
                )?;
            }
            let names: Vec<&str> = declared.iter().map(|(n, _, _)| n.as_str()).collect();
            let mut st = tx.prepare("SELECT id, name FROM schedules WHERE playbook = ?1 AND origin = 'playbook'")?;
            let existing: Vec<(i64, String)> =
                st.query_map(params![playbook], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            drop(st);
            for (id, name) in existing {
                if !names.contains(&name.as_str()) {
                    tx.execute("DELETE FROM schedules WHERE id = ?1", params![id])?;
                }
            }
            tx.commit()
        })
    }

    /// Adds an analyst's schedule; fails when the playbook already has one of that name.
    pub fn add_schedule(&self, playbook: &str, name: &str, spec: &str, who: &str) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO schedules (playbook, name, origin, spec, enabled, created_by, created_at)
                 VALUES (?1, ?2, 'analyst', ?3, 1, ?4, ?5)",
                params![playbook, name, spec, who, now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY playbook, name"))?;
            let rows = st.query_map([], schedule_row)?;
            rows.collect()
        })
    }

    pub fn schedule(&self, id: i64) -> Result<Option<ScheduleRecord>> {
        self.with(|c| {
            c.query_row(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"), params![id], schedule_row)
                .optional()
        })
    }

    pub fn set_schedule_enabled(&self, id: i64, enabled: bool) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE schedules SET enabled = ?2, note = NULL WHERE id = ?1", params![id, enabled]).map(|_| ())
        })
    }

    /// Deletes an analyst's schedule (declared ones are removed from their playbook file).
    pub fn delete_schedule(&self, id: i64) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM schedules WHERE id = ?1 AND origin = 'analyst'", params![id]).map(|n| n > 0)
        })
    }

    /// Records that a schedule's fire at `at` was handled: started `run` (or none) with a note.
    pub fn schedule_fired(&self, id: i64, at: &str, run: Option<&str>, note: Option<&str>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE schedules SET last_fire = ?2, last_run = coalesce(?3, last_run), note = ?4 WHERE id = ?1",
                params![id, at, run, note],
            )
            .map(|_| ())
        })
    }

    /// Saves ratings of `values` (all with the same rating), in one transaction.
    pub fn add_ratings(&self, base: &Rating, values: &[String]) -> Result<usize> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for v in values {
                tx.execute(
                    "INSERT INTO ratings (playbook, run_id, step_id, field, value, rating, note, rated_by, rated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        base.playbook,
                        base.run_id,
                        base.step_id,
                        base.field,
                        v,
                        base.rating,
                        base.note,
                        base.rated_by,
                        now()
                    ],
                )?;
            }
            tx.commit()?;
            Ok(values.len())
        })
    }

    /// Every rating, newest first (`playbook` narrows it).
    pub fn ratings(&self, playbook: Option<&str>) -> Result<Vec<Rating>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, playbook, run_id, step_id, field, value, rating, note, rated_by, rated_at FROM ratings
                 WHERE ?1 IS NULL OR playbook = ?1 ORDER BY id DESC",
            )?;
            let rows = st.query_map(params![playbook], |r| {
                Ok(Rating {
                    id: r.get(0)?,
                    playbook: r.get(1)?,
                    run_id: r.get(2)?,
                    step_id: r.get(3)?,
                    field: r.get(4)?,
                    value: r.get(5)?,
                    rating: r.get(6)?,
                    note: r.get(7)?,
                    rated_by: r.get(8)?,
                    rated_at: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn add_threat(&self, t: &ThreatRecord) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO threats (title, description, severity, kind, entity, playbook, run_id, params, window_start, window_end, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![t.title, t.description, t.severity, t.kind, t.entity, t.playbook, t.run_id, t.params, t.window_start, t.window_end, t.created_by, now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn add_evidence(&self, threat: i64, step: &str, title: &str, rows: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO threat_evidence (threat_id, step_id, title, rows) VALUES (?1, ?2, ?3, ?4)",
                params![threat, step, title, rows],
            )
            .map(|_| ())
        })
    }

    /// Every threat: by date (newest first), then severity.
    pub fn threats(&self) -> Result<Vec<ThreatRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {THREAT_COLUMNS} FROM threats ORDER BY substr(created_at, 1, 10) DESC,
                 CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, id DESC"
            ))?;
            let rows = st.query_map([], threat_row)?;
            rows.collect()
        })
    }

    pub fn threat(&self, id: i64) -> Result<Option<ThreatRecord>> {
        self.with(|c| {
            c.query_row(&format!("SELECT {THREAT_COLUMNS} FROM threats WHERE id = ?1"), params![id], threat_row)
                .optional()
        })
    }

    /// A threat's evidence tables: (step, title, rows).
    pub fn evidence(&self, threat: i64) -> Result<Vec<(String, String, i64)>> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT step_id, title, rows FROM threat_evidence WHERE threat_id = ?1 ORDER BY rowid")?;
            let rows = st.query_map(params![threat], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    /// A reputation answer fetched less than `ttl` ago: (status, JSON body).
    pub fn cached_lookup(&self, service: &str, value: &str, ttl: chrono::Duration) -> Result<Option<(String, String)>> {
        let since = stamp(chrono::Utc::now() - ttl);
        self.with(|c| {
            c.query_row(
                "SELECT status, body FROM lookup_cache WHERE service = ?1 AND value = ?2 AND fetched_at >= ?3",
                params![service, value, since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    /// Forgets reputation answers that can no longer be used: older than their service's
    /// `ttl`, or of a service no longer configured. Returns how many were deleted.
    pub fn prune_lookup_cache(&self, live: &[(String, chrono::Duration)]) -> Result<usize> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut n = 0;
            for (service, ttl) in live {
                let since = stamp(chrono::Utc::now() - *ttl);
                n += tx.execute(
                    "DELETE FROM lookup_cache WHERE service = ?1 AND fetched_at < ?2",
                    params![service, since],
                )?;
            }
            let names: Vec<&str> = live.iter().map(|(s, _)| s.as_str()).collect();
            let known = serde_json::to_string(&names).unwrap_or_else(|_| "[]".into());
            n += tx.execute(
                "DELETE FROM lookup_cache WHERE service NOT IN (SELECT value FROM json_each(?1))",
                params![known],
            )?;
            tx.commit()?;
            Ok(n)
        })
    }

    pub fn cache_lookup(&self, service: &str, value: &str, status: &str, body: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO lookup_cache (service, value, status, body, fetched_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![service, value, status, body, now()],
            )
            .map(|_| ())
        })
    }

    /// Records a run started outside the timetable.
    pub fn schedule_started(&self, id: i64, run: &str) -> Result<()> {
        self.with(|c| c.execute("UPDATE schedules SET last_run = ?2 WHERE id = ?1", params![id, run]).map(|_| ()))
    }

    /// The latest succeeded run of schedule `schedule` before run `run`.
    pub fn previous_scheduled_run(&self, schedule: i64, run: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT id FROM runs WHERE schedule_id = ?1 AND state = 'succeeded' AND id != ?2
                   AND started_at <= (SELECT started_at FROM runs WHERE id = ?2)
                 ORDER BY started_at DESC LIMIT 1",
                params![schedule, run],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn add_notification(&self, run: &str, schedule: i64, target: &str, d: &crate::notify::Delivery) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO notifications (run_id, schedule_id, target, state, attempts, detail, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run,
                    schedule,
                    target,
                    if d.delivered { "sent" } else { "failed" },
                    d.attempts,
                    d.detail,
                    now()
                ],
            )
            .map(|_| ())
        })
    }

    /// The last notification of a schedule, as a line for the page.
    pub fn last_notification(&self, schedule: i64) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT state, attempts, detail, at, target FROM notifications WHERE schedule_id = ?1 ORDER BY id DESC LIMIT 1",
                params![schedule],
                |r| {
                    let (state, attempts, detail, at, target): (String, i64, String, String, String) =
                        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                    Ok(format!(
                        "{} to {target} at {} ({detail}{})",
                        if state == "sent" { "sent" } else { "not sent" },
                        at.get(..19).unwrap_or(&at).replace('T', " "),
                        if attempts > 1 { format!(", {attempts} attempts") } else { String::new() }
                    ))
                },
            )
            .optional()
        })
    }
}

fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: r.get(0)?,
        playbook: r.get(1)?,
        name: r.get(2)?,
        origin: r.get(3)?,
        spec: r.get(4)?,
        enabled: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        last_fire: r.get(8)?,
        last_run: r.get(9)?,
        note: r.get(10)?,
    })
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
