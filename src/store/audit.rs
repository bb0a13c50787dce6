//! The audit log: who did what, append-only and tamper-evident. Each entry carries the
//! SHA-256 of its own fields and of the entry before it, so an entry edited or removed in
//! the state file breaks the chain from there on ([`Store::verify_audit`]); triggers refuse
//! updates and deletes through SQLite itself.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{now, Store};

/// One entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub who: String,
    /// What was done: `sign-in`, `run`, `rate`, `export`, `delete`, …
    pub action: String,
    /// What it was done to: a playbook, a run, an account, …
    pub target: String,
    /// The rest, as JSON (parameters of a run, a rating's values, …).
    pub detail: String,
    pub prev: String,
    pub hash: String,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub who: Option<String>,
    pub action: Option<String>,
    /// Entries at or after this stored time (`2026-12-01` or a full stamp).
    pub since: Option<String>,
    pub limit: usize,
}

/// Where the chain breaks, if it does.
#[derive(Debug, Clone, Serialize)]
pub struct AuditCheck {
    pub entries: i64,
    /// The first entry whose hash does not match its fields or the entry before it.
    pub broken_at: Option<i64>,
}

fn digest(id: i64, at: &str, who: &str, action: &str, target: &str, detail: &str, prev: &str) -> String {
    let fields = serde_json::json!([id, at, who, action, target, detail, prev]).to_string();
    crate::util::text::hex(&Sha256::digest(fields.as_bytes()))
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.get(0)?,
        at: r.get(1)?,
        who: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        detail: r.get(5)?,
        prev: r.get(6)?,
        hash: r.get(7)?,
    })
}

impl Store {
    /// Appends an entry; `detail` is any JSON value.
    pub fn audit(&self, who: &str, action: &str, target: &str, detail: &serde_json::Value) -> Result<()> {
        let detail = if detail.is_null() { String::new() } else { detail.to_string() };
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let last: Option<(i64, String)> =
                tx.query_row("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
            let (id, prev) = match last {
                Some((id, hash)) => (id + 1, hash),
                None => (1, String::new()),
            };
            let at = now();
            let hash = digest(id, &at, who, action, target, &detail, &prev);
            tx.execute(
                "INSERT INTO audit (id, at, who, action, target, detail, prev, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, at, who, action, target, detail, prev, hash],
            )?;
            tx.commit()
        })
    }

    /// Entries matching `f`, newest first.
    pub fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let limit = if f.limit == 0 { i64::MAX } else { i64::try_from(f.limit).unwrap_or(i64::MAX) };
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, at, who, action, target, detail, prev, hash FROM audit
                 WHERE (?1 IS NULL OR who = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR at >= ?3)
                 ORDER BY id DESC LIMIT ?4",
            )?;
            let rows = st.query_map(params![f.who, f.action, f.since, limit], entry)?;
            rows.collect()
        })
    }

    /// The actions and people the log names, for the page's filters.
    pub fn audit_names(&self) -> Result<(Vec<String>, Vec<String>)> {
        self.with(|c| {
            let list = |sql: &str| -> rusqlite::Result<Vec<String>> {
                let mut st = c.prepare(sql)?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect()
            };
            Ok((
                list("SELECT DISTINCT who FROM audit ORDER BY who")?,
                list("SELECT DISTINCT action FROM audit ORDER BY action")?,
            ))
        })
    }

    /// Walks the whole chain and names the first entry that does not fit it.
    pub fn verify_audit(&self) -> Result<AuditCheck> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id, at, who, action, target, detail, prev, hash FROM audit ORDER BY id")?;
            let mut rows = st.query([])?;
            let (mut prev, mut expected_id, mut entries) = (String::new(), 1i64, 0i64);
            while let Some(r) = rows.next()? {
                let e = entry(r)?;
                entries += 1;
                let fits = e.id == expected_id
                    && e.prev == prev
                    && e.hash == digest(e.id, &e.at, &e.who, &e.action, &e.target, &e.detail, &e.prev);
                if !fits {
                    return Ok(AuditCheck { entries, broken_at: Some(e.id) });
                }
                prev = e.hash;
                expected_id += 1;
            }
            Ok(AuditCheck { entries, broken_at: None })
        })
    }
}
