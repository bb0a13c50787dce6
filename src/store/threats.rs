//! Saved threats and their evidence tables.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{now, Store};

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

impl ThreatRecord {
    /// The parameters of the run it was saved from, as stored (JSON); null when unreadable.
    pub fn params_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.params).unwrap_or(serde_json::Value::Null)
    }
}

impl Store {
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
}
