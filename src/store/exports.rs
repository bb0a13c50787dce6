//! Exports: files written under `data/exports/`, fetched by a random key (an id could be
//! counted through).

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{now, Store};

#[derive(Debug, Clone, Serialize)]
pub struct ExportRecord {
    pub id: i64,
    /// What the download URL names: 128 random bits.
    pub key: String,
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

impl Store {
    /// Records an export; returns its id and its key.
    pub fn add_export(&self, e: &ExportRecord) -> Result<(i64, String)> {
        let key = super::random_key()?;
        self.with(|c| {
            c.execute(
                "INSERT INTO exports (run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by, key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![e.run_id, e.playbook, e.step_id, e.format, e.file, e.bytes, e.rows, now(), e.created_by, key],
            )?;
            Ok((c.last_insert_rowid(), key.clone()))
        })
    }

    /// The export a download URL names.
    pub fn export_by_key(&self, key: &str) -> Result<Option<ExportRecord>> {
        self.with(|c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM exports WHERE key = ?1"), params![key], export_row).optional()
        })
    }

    pub fn exports(&self, playbook: &str) -> Result<Vec<ExportRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by, key
                 FROM exports WHERE playbook = ?1 ORDER BY id DESC",
            )?;
            let rows = st.query_map(params![playbook], export_row)?;
            rows.collect()
        })
    }

    pub fn export(&self, id: i64) -> Result<Option<ExportRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT id, run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by, key FROM exports WHERE id = ?1",
                params![id],
                export_row,
            )
            .optional()
        })
    }

    /// Every export, newest first.
    pub fn all_exports(&self) -> Result<Vec<ExportRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by, key
                 FROM exports ORDER BY id DESC",
            )?;
            let rows = st.query_map([], export_row)?;
            rows.collect()
        })
    }

    pub fn delete_export(&self, id: i64) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM exports WHERE id = ?1", params![id]).map(|_| ()))
    }
}

const COLUMNS: &str = "id, run_id, playbook, step_id, format, file, bytes, rows, created_at, created_by, key";

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
        key: r.get(10)?,
    })
}
