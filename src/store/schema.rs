//! The state database's tables, and the columns added to them after their first release:
//! every migration is here.

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

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
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    groups TEXT NOT NULL,
    password_hash TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_who ON audit(who, id);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// Creates the tables that are missing and adds the columns that older files lack.
pub fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA).context("creating state tables")?;
    let has_outcome: bool =
        conn.prepare("SELECT 1 FROM pragma_table_info('run_steps') WHERE name = 'outcome'")?.exists([])?;
    if !has_outcome {
        conn.execute_batch("ALTER TABLE run_steps ADD COLUMN outcome TEXT")?;
    }
    for (column, kind) in [("schedule_id", "INTEGER"), ("resolved", "TEXT"), ("pid", "INTEGER"), ("engine", "TEXT")] {
        let present: bool =
            conn.prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = ?1")?.exists(params![column])?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {column} {kind}"))?;
        }
    }
    let has_key: bool = conn.prepare("SELECT 1 FROM pragma_table_info('exports') WHERE name = 'key'")?.exists([])?;
    if !has_key {
        // Downloads were named by a counted id; every older export gets a random key.
        conn.execute_batch(
            "ALTER TABLE exports ADD COLUMN key TEXT;
             UPDATE exports SET key = lower(hex(randomblob(16)));
             CREATE UNIQUE INDEX IF NOT EXISTS exports_key ON exports(key);",
        )?;
    }
    Ok(())
}
