//! One page of a stored table, sorted and searched on the server. Row orders computed for
//! a sort or a search are kept, so that turning pages is a slice and a `take`, not a new sort
//! of the whole result.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion::arrow::compute::take;
use serde::Serialize;

use super::cells::cell_text;
use super::lru::Lru;
use super::order::sorted_order;
use super::table::StepData;
use crate::model::params::entity_of;

/// A request for one page of a stored table.
#[derive(Debug, Clone, Default)]
pub struct TableQuery {
    pub page: usize,
    pub size: usize,
    pub sort: Option<String>,
    pub desc: bool,
    pub search: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub text: String,
    pub num: bool,
    /// The kind of entity the cell holds (`ip`, `domain`, `url`), for pivots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pv: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TablePage {
    pub columns: Vec<String>,
    /// Each shown row's position in the stored table (for selecting rows to rate).
    pub ids: Vec<u32>,
    pub rows: Vec<Vec<Cell>>,
    pub total: usize,
    pub filtered: usize,
    pub page: usize,
    pub pages: usize,
    pub size: usize,
    pub first: usize,
    pub last: usize,
    pub sort: Option<String>,
    pub desc: bool,
    pub search: String,
}

/// A stored table's key and a sort and search over it.
type ViewKey = (String, String, Option<(String, bool)>, Option<String>);

/// Row orders kept (the most recently used).
const VIEW_ENTRIES: usize = 64;

/// The row orders of recent sorts and searches.
#[derive(Debug)]
pub struct Views {
    cache: Mutex<Lru<ViewKey, Arc<Vec<u32>>>>,
}

impl Default for Views {
    fn default() -> Self {
        Views { cache: Mutex::new(Lru::new(VIEW_ENTRIES, |_| 1)) }
    }
}

impl Views {
    /// One page of a stored table, sorted and filtered on the server.
    pub async fn page(
        &self,
        (run_id, step_id): (&str, &str),
        data: &StepData,
        q: &TableQuery,
        tz: Tz,
    ) -> Result<TablePage> {
        let size = q.size.clamp(5, 500);
        let columns: Vec<String> = data.schema.fields().iter().map(|f| f.name().clone()).collect();
        let sort = q.sort.as_ref().filter(|s| columns.contains(s)).cloned();
        let search = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase);
        let merged = data.merged()?;
        let key = |sort: Option<(String, bool)>, search: Option<String>| -> ViewKey {
            (run_id.to_string(), step_id.to_string(), sort, search)
        };
        let cached = |k: &ViewKey| self.cache.lock().ok().and_then(|mut v| v.get(k));
        let remember = |k: ViewKey, v: Arc<Vec<u32>>| {
            if let Ok(mut c) = self.cache.lock() {
                c.put(k, v);
            }
        };
        // Rows that match the search, in stored order.
        let base: Option<Arc<Vec<u32>>> = match &search {
            None => None,
            Some(s) => {
                let k = key(None, Some(s.clone()));
                match cached(&k) {
                    Some(v) => Some(v),
                    None => {
                        let v = Arc::new(search_rows(data, s).await?);
                        remember(k, v.clone());
                        Some(v)
                    }
                }
            }
        };
        // Their order under the requested sort.
        let order: Option<Arc<Vec<u32>>> = match &sort {
            None => base.clone(),
            Some(col) => {
                let k = key(Some((col.clone(), q.desc)), search.clone());
                match cached(&k) {
                    Some(v) => Some(v),
                    None => {
                        let idx = merged.schema().index_of(col)?;
                        let values = match &base {
                            Some(rows) => take(merged.column(idx).as_ref(), &UInt32Array::from(rows.to_vec()), None)?,
                            None => merged.column(idx).clone(),
                        };
                        let desc = q.desc;
                        let sorted = tokio::task::spawn_blocking(move || sorted_order(values.as_ref(), desc))
                            .await
                            .map_err(|e| anyhow::anyhow!("the sort stopped: {e}"))??;
                        let v: Vec<u32> = match &base {
                            Some(rows) => sorted.iter().map(|i| rows[*i as usize]).collect(),
                            None => sorted,
                        };
                        let v = Arc::new(v);
                        remember(k, v.clone());
                        Some(v)
                    }
                }
            }
        };
        let filtered = base.as_ref().map_or(data.rows, |b| b.len());
        let pages = filtered.div_ceil(size).max(1);
        let page = q.page.clamp(1, pages);
        let offset = (page - 1) * size;
        let end = (offset + size).min(filtered);
        let idx: Vec<u32> = match &order {
            Some(o) => o.get(offset..end).map(<[u32]>::to_vec).unwrap_or_default(),
            None => (offset as u32..end as u32).collect(),
        };
        let ids = idx.clone();
        let idx = UInt32Array::from(idx);
        let cols: Vec<ArrayRef> =
            merged.columns().iter().map(|c| take(c.as_ref(), &idx, None)).collect::<std::result::Result<_, _>>()?;
        let rows: Vec<Vec<Cell>> = (0..idx.len())
            .map(|r| {
                cols.iter()
                    .map(|c| {
                        let text = cell_text(c, r, tz);
                        let num = c.data_type().is_numeric();
                        let pv = if num { None } else { entity_of(&text) };
                        Cell { text, num, pv }
                    })
                    .collect()
            })
            .collect();
        let first = if rows.is_empty() { 0 } else { offset + 1 };
        Ok(TablePage {
            last: offset + rows.len(),
            ids,
            columns,
            rows,
            total: data.rows,
            filtered,
            page,
            pages,
            size,
            first,
            sort,
            desc: q.desc,
            search: q.search.clone().unwrap_or_default(),
        })
    }
}

/// The rows matching `search` (lower-cased), in stored order, searched on a blocking thread.
pub async fn search_rows(data: &StepData, search: &str) -> Result<Vec<u32>> {
    let merged = data.merged()?.clone();
    let search = search.to_string();
    tokio::task::spawn_blocking(move || super::order::search_rows(&merged, &search))
        .await
        .map_err(|e| anyhow::anyhow!("the search stopped: {e}"))?
}
