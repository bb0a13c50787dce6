//! State in SQLite (`data/casebook.sqlite`), one file per table group: runs with their
//! steps and chunks, exports, schedules and notifications, ratings, threats, cached
//! reputation answers, accounts with their sessions, and the audit log. The tables and their
//! migrations are in [`schema`].

pub mod accounts;
pub mod audit;
pub mod exports;
pub mod lookups;
pub mod ratings;
pub mod runs;
pub mod schedules;
pub mod schema;
pub mod threats;

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rusqlite::Connection;

#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

fn now() -> String {
    stamp(chrono::Utc::now())
}

/// 128 random bits as hex: a key that cannot be guessed or counted through.
pub fn random_key() -> Result<String> {
    crate::util::text::random_hex(16).map_err(anyhow::Error::msg)
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
        schema::migrate(&conn)?;
        Ok(Store { conn: Arc::new(Mutex::new(conn)) })
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().map_err(|_| anyhow::anyhow!("state database lock poisoned"))?;
        Ok(f(&conn)?)
    }
}
