//! Stored results: a run's step tables, from memory when recently used or else from their
//! Parquet files, served as pages and exported. A reload or a colleague's browser can page a
//! result the server no longer holds in memory.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Result};
use chrono::Utc;
use chrono_tz::Tz;

use super::formats::{write_file, FORMATS};
use super::lru::Lru;
use super::paging::{TablePage, TableQuery, Views};
use super::table::{read_parquet, StepData};
use crate::store::exports::ExportRecord;
use crate::store::Store;
use crate::util::paths::Paths;
use crate::util::text::is_identifier;

/// Result tables kept in memory, by total size; anything evicted is read back from Parquet.
const CACHE_BYTES: usize = 1 << 30;

/// A run's step tables as stored.
#[derive(Debug)]
pub struct Results {
    store: Store,
    paths: Paths,
    tables: Mutex<Lru<(String, String), Arc<StepData>>>,
    views: Views,
}

impl Results {
    pub fn new(store: Store, paths: Paths) -> Results {
        Results {
            store,
            paths,
            tables: Mutex::new(Lru::new(CACHE_BYTES, |d: &Arc<StepData>| d.bytes())),
            views: Views::default(),
        }
    }

    /// Keeps a table a run just made, for paging.
    pub fn keep(&self, run: &str, step: &str, data: Arc<StepData>) {
        if let Ok(mut c) = self.tables.lock() {
            c.put((run.to_string(), step.to_string()), data);
        }
    }

    /// Forgets a table whose file is gone (a hidden step's, once its run is done).
    pub fn forget(&self, run: &str, step: &str) {
        if let Ok(mut c) = self.tables.lock() {
            c.remove(&(run.to_string(), step.to_string()));
        }
    }

    /// A stored step table, from memory or from its Parquet file.
    pub fn step_data(&self, run_id: &str, step_id: &str) -> Result<Arc<StepData>> {
        let key = (run_id.to_string(), step_id.to_string());
        if let Some(d) = self.tables.lock().ok().and_then(|mut c| c.get(&key)) {
            return Ok(d);
        }
        let data = Arc::new(read_parquet(&self.stored_file(run_id, step_id)?)?);
        self.keep(run_id, step_id, data.clone());
        Ok(data)
    }

    /// The Parquet file of a stored step table.
    fn stored_file(&self, run_id: &str, step_id: &str) -> Result<PathBuf> {
        Ok(self.stored(run_id, step_id)?.0)
    }

    /// The Parquet file of a stored step table and its rows, as the run recorded them.
    fn stored(&self, run_id: &str, step_id: &str) -> Result<(PathBuf, usize)> {
        let rec = self.store.step(run_id, step_id)?.ok_or_else(|| anyhow!("no such result"))?;
        let file = match (rec.file, rec.rows) {
            (Some(f), _) => f,
            (None, Some(_)) => {
                bail!("this step's table was not kept: it is hidden and was only for the run's later steps")
            }
            (None, None) => bail!("this step has no stored table"),
        };
        if !is_identifier(step_id) || file != format!("{step_id}.parquet") {
            bail!("no such result");
        }
        let rows = rec.rows.and_then(|r| usize::try_from(r).ok()).unwrap_or(0);
        Ok((self.paths.run_dir(run_id).join(file), rows))
    }

    /// The rows of a stored step table.
    pub fn stored_rows(&self, run_id: &str, step_id: &str) -> Result<usize> {
        Ok(self.stored(run_id, step_id)?.1)
    }

    /// One page of a stored table, sorted and filtered on the server.
    pub async fn page(&self, run_id: &str, step_id: &str, q: &TableQuery, tz: Tz) -> Result<TablePage> {
        let data = self.step_data(run_id, step_id)?;
        self.views.page((run_id, step_id), &data, q, tz).await
    }

    /// Exports a stored step table as `format` into `data/exports/<playbook>/`, read from its
    /// Parquet file batch by batch on a blocking thread (memory stays flat however many rows).
    pub async fn export(&self, run_id: &str, step_id: &str, format: &str, who: &str, tz: Tz) -> Result<ExportRecord> {
        let run = self.store.run(run_id)?.ok_or_else(|| anyhow!("no such run"))?;
        let (source, rows) = self.stored(run_id, step_id)?;
        let Some(ext) = FORMATS.iter().find(|f| **f == format) else {
            bail!("unknown export format `{format}`; use csv, json or parquet")
        };
        let stamp = Utc::now().format("%Y%m%d-%H%M%S");
        let rel = format!(
            "{}/{}-{}-{}-{}.{}",
            run.playbook,
            run.playbook,
            step_id,
            stamp,
            &run_id[..8.min(run_id.len())],
            ext
        );
        let path = self.paths.exports_dir().join(&rel);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let target = path.clone();
        tokio::task::spawn_blocking(move || {
            let written = write_file(&target, &source, ext, tz);
            if written.is_err() {
                let _ = std::fs::remove_file(&target);
            }
            written
        })
        .await
        .map_err(|e| anyhow!("the export stopped: {e}"))??;
        let bytes = std::fs::metadata(&path).map(|m| m.len() as i64).unwrap_or(0);
        let mut rec = ExportRecord {
            id: 0,
            key: String::new(),
            run_id: run_id.to_string(),
            playbook: run.playbook,
            step_id: step_id.to_string(),
            format: ext.to_string(),
            file: rel,
            bytes,
            rows: rows as i64,
            created_at: String::new(),
            created_by: who.to_string(),
        };
        (rec.id, rec.key) = self.store.add_export(&rec)?;
        tracing::info!(export = rec.id, file = %rec.file, rows = rec.rows, who, "exported");
        Ok(rec)
    }
}
