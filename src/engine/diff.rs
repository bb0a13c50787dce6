//! *What is new*: the rows of a scheduled run's table that were not in the schedule's
//! previous run (`EXCEPT` between the two runs' Parquet tables), stored as the step
//! `<step>__new` of the run and shown after its steps.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use datafusion::arrow::datatypes::SchemaRef;

use super::request::StepOutcome;
use super::Engine;
use crate::results::table::write_parquet;
use crate::results::StepData;
use crate::sql::session::new_session;
use crate::store::runs::StepRecord;
use crate::util::markdown::to_html;

impl Engine {
    /// Stores the rows of step `step_id` of run `run_id` that are not in run `prev`'s table
    /// (`EXCEPT` between the two Parquet outputs) as a step `<step>__new` of the run, shown
    /// after the run's steps. Without a previous run every row is new. Returns the count.
    pub async fn what_is_new(&self, run_id: &str, prev: Option<&str>, step_id: &str) -> Result<usize> {
        let rec = self
            .store
            .step(run_id, step_id)?
            .ok_or_else(|| anyhow!("step `{step_id}` has no table in run {run_id}"))?;
        let base: Option<StepOutcome> = rec.outcome_as();
        let file = self.run_dir(run_id).join(format!("{step_id}.parquet"));
        let ctx = new_session();
        let opts = datafusion::prelude::ParquetReadOptions::default();
        let path_text = |p: &std::path::Path| p.to_string_lossy().to_string();
        ctx.register_parquet("cur", path_text(&file), opts.clone()).await?;
        let prev_file = prev.map(|p| self.run_dir(p).join(format!("{step_id}.parquet"))).filter(|f| f.exists());
        let (sql, note) = match (&prev_file, prev) {
            (Some(pf), Some(p)) => {
                ctx.register_parquet("prev", path_text(pf), opts).await?;
                (
                    "SELECT * FROM cur EXCEPT SELECT * FROM prev".to_string(),
                    format!("Rows of this run's table that were not in the [previous run](/runs/{p}) of its schedule."),
                )
            }
            (None, Some(p)) => (
                "SELECT * FROM cur".to_string(),
                format!("The [previous run](/runs/{p})'s table is no longer stored, so every row counts as new."),
            ),
            _ => ("SELECT * FROM cur".to_string(), "The first run of this schedule: every row is new.".to_string()),
        };
        let df = ctx.sql(&sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let data = StepData::new(schema, df.collect().await?);
        let id = format!("{step_id}__new");
        write_parquet(&self.run_dir(run_id).join(format!("{id}.parquet")), &data)?;
        let title = base.as_ref().and_then(|b| b.title.clone()).unwrap_or_else(|| step_id.to_string());
        let out = StepOutcome {
            id: id.clone(),
            title: Some(format!("New since the previous run: {title}")),
            section: base.as_ref().map_or(0, |b| b.section),
            rows: Some(data.rows),
            elapsed_ms: 0,
            error: None,
            html: Some(to_html(&note)),
            chart: None,
            show_table: true,
            export: true,
            page_size: base.as_ref().map_or(25, |b| b.page_size),
            scan: None,
        };
        self.store.record_step(
            run_id,
            &StepRecord {
                step_id: id.clone(),
                rows: Some(data.rows as i64),
                elapsed_ms: 0,
                file: Some(format!("{id}.parquet")),
                error: None,
                outcome: serde_json::to_string(&out).ok(),
            },
        )?;
        Ok(data.rows)
    }
}
