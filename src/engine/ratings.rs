//! Analysts' ratings (Spot's Score): rating the values of a column in a stored table, and the
//! ratings given to every run's session as its `ratings` table.

use std::sync::Arc;

use anyhow::Result;
use datafusion::arrow::array::{ArrayRef, RecordBatch};

use super::Engine;
use crate::refuse;
use crate::results::cell_text;
use crate::results::paging::search_rows;
use crate::util::refusal::Refusal;

/// Different values one rating request may rate.
pub const MAX_RATED: usize = 1000;

impl Engine {
    /// Registers the analysts' ratings as the `ratings` table of `ctx`: from memory, or on a
    /// cluster from a Parquet file written into the run's folder `dir`.
    pub(super) async fn register_ratings(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        dir: &std::path::Path,
    ) -> Result<()> {
        use datafusion::arrow::array::{Int64Array, StringArray};
        let all = self.store.ratings(None)?;
        let text = |f: &dyn Fn(&crate::store::ratings::Rating) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(all.iter().map(|r| f(r).to_string())))
        };
        let batch = RecordBatch::try_new(
            crate::sql::session::ratings_schema(),
            vec![
                text(&|r| &r.playbook),
                text(&|r| &r.run_id),
                text(&|r| &r.step_id),
                text(&|r| &r.field),
                text(&|r| &r.value),
                Arc::new(Int64Array::from_iter_values(all.iter().map(|r| r.rating))),
                text(&|r| &r.note),
                text(&|r| &r.rated_by),
                text(&|r| &r.rated_at),
            ],
        )?;
        let data = crate::results::StepData::new(batch.schema(), vec![batch]);
        let file = dir.join(".ratings.parquet");
        // A cluster reads the table from a file; locally it stays in memory.
        if crate::sql::session::cluster_of(ctx).is_some() {
            crate::results::table::write_parquet(&file, &data)?;
        }
        super::run::register(ctx, "ratings", &data, &file).await?;
        Ok(())
    }

    /// Rates the values of `field` in rows of a stored table: the rows given by position, or
    /// else the rows whose columns equal all of `conditions`, or else every row matching
    /// `search`. Returns the distinct values rated.
    #[allow(clippy::too_many_arguments)]
    pub async fn rate(
        &self,
        run_id: &str,
        step_id: &str,
        rows: &[u32],
        conditions: &[(String, String)],
        search: Option<&str>,
        field: &str,
        rating: i64,
        note: &str,
        who: &str,
    ) -> std::result::Result<Vec<String>, Refusal> {
        if !(1..=3).contains(&rating) {
            refuse!("a rating is 1 (high), 2 (medium) or 3 (low)");
        }
        let Some(run) = self.store.run(run_id)? else { refuse!("no such run") };
        let data = self.step_data(run_id, step_id).map_err(|_| Refusal::refused("this result is no longer stored"))?;
        let merged = data.merged().map_err(Refusal::Failed)?;
        let col = merged
            .schema()
            .index_of(field)
            .map_err(|_| Refusal::refused(format!("the table has no column `{field}`")))?;
        let tz = self.tz();
        let picked: Vec<u32> = if !rows.is_empty() {
            rows.iter().copied().filter(|r| (*r as usize) < merged.num_rows()).collect()
        } else if !conditions.is_empty() {
            let mut cols = Vec::new();
            for (c, v) in conditions {
                let i = merged
                    .schema()
                    .index_of(c)
                    .map_err(|_| Refusal::refused(format!("the table has no column `{c}`")))?;
                cols.push((merged.column(i).clone(), v.trim().to_string()));
            }
            (0..merged.num_rows() as u32)
                .filter(|r| cols.iter().all(|(col, v)| cell_text(col, *r as usize, tz) == *v))
                .collect()
        } else {
            match search.map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) => search_rows(&data, &s.to_lowercase()).await.map_err(Refusal::Failed)?,
                None => {
                    refuse!(
                        "tick rows, give column values, or type an address or keyword to rate every row that has it"
                    )
                }
            }
        };
        let mut values: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in picked {
            let v = cell_text(merged.column(col), r as usize, tz);
            if !v.is_empty() && seen.insert(v.clone()) {
                values.push(v);
                if values.len() > MAX_RATED {
                    refuse!(
                        "this would rate more than {MAX_RATED} different values at once; narrow the search or tick \
                         the rows to rate"
                    );
                }
            }
        }
        if values.is_empty() {
            refuse!("no row matched, so nothing was rated");
        }
        let base = crate::store::ratings::Rating {
            id: 0,
            playbook: run.playbook,
            run_id: run_id.to_string(),
            step_id: step_id.to_string(),
            field: field.to_string(),
            value: String::new(),
            rating,
            note: note.chars().take(500).collect(),
            rated_by: who.to_string(),
            rated_at: String::new(),
        };
        self.store.add_ratings(&base, &values).map_err(Refusal::Failed)?;
        tracing::info!(run = %run_id, step = %step_id, field, rating, values = values.len(), who, "rated");
        Ok(values)
    }
}
