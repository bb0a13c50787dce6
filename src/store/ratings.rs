//! Analysts' ratings of values (Spot's Score).

use anyhow::Result;
use rusqlite::params;
use serde::Serialize;

use super::{now, Store};

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

impl Store {
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
}
