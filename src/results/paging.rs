//! One page of a stored table, sorted and searched on the server. Row orders computed for
//! a sort or a search are kept, so that turning pages is a slice and a `take`, not a new sort
//! of the whole result; a big table's first pages are answered before its whole order is made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use chrono_tz::Tz;
use datafusion::arrow::array::{new_empty_array, Array, ArrayRef};
use datafusion::arrow::compute::{concat, interleave};
use futures::future::{BoxFuture, FutureExt, Shared};
use serde::Serialize;

use super::cells::cell_text;
use super::lru::Lru;
use super::order::{first_in_order, sorted_order};
use super::search::first_matches;
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
    /// The rows matching the search; while `counting`, those found so far.
    pub filtered: usize,
    /// The search has not read every row yet: more may match than `filtered`.
    pub counting: bool,
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

/// Bytes of row orders kept (the most recently used): a 10M-row table's order is 40 MB, so
/// six of those, or thousands of small ones.
const VIEW_BYTES: usize = 256 << 20;

/// A row order's weight: its row numbers, and at least 64 KiB, so that the cache holds at most
/// 4,096 orders and its lookups stay short.
fn view_bytes(order: &Arc<Vec<u32>>) -> usize {
    (order.len() * std::mem::size_of::<u32>()).max(64 << 10)
}

/// A row order being made on a blocking thread: what it gives when done (None if it failed).
type Making = Shared<BoxFuture<'static, Option<Arc<Vec<u32>>>>>;

/// The row orders of recent sorts and searches, and those being made.
#[derive(Debug)]
pub struct Views {
    cache: Arc<Mutex<Lru<ViewKey, Arc<Vec<u32>>>>>,
    making: Arc<Mutex<HashMap<ViewKey, Making>>>,
}

impl Default for Views {
    fn default() -> Self {
        Views { cache: Arc::new(Mutex::new(Lru::new(VIEW_BYTES, view_bytes))), making: Arc::default() }
    }
}

/// Tables up to this many rows are sorted whole before their first page is shown.
const SORT_WHOLE_BELOW: usize = 200_000;

/// Deeper in a new sort than this, a page waits for the whole order.
const FIRST_ROWS_AT_MOST: usize = 10_000;

impl Views {
    fn cached(&self, k: &ViewKey) -> Option<Arc<Vec<u32>>> {
        self.cache.lock().ok().and_then(|mut v| v.get(k))
    }

    fn remember(&self, k: ViewKey, v: Arc<Vec<u32>>) {
        if let Ok(mut c) = self.cache.lock() {
            c.put(k, v);
        }
    }

    /// Row order `k`, made by `make` on a blocking thread and kept; a second asker of an
    /// order being made waits for the same thread. Not awaited, it is made in the background.
    fn make(&self, k: ViewKey, make: impl FnOnce() -> Result<Vec<u32>> + Send + 'static) -> Making {
        let Ok(mut making) = self.making.lock() else {
            return futures::future::ready(None).boxed().shared();
        };
        if let Some(m) = making.get(&k) {
            return m.clone();
        }
        let (cache, all_making, key) = (self.cache.clone(), self.making.clone(), k.clone());
        let thread = tokio::task::spawn_blocking(move || {
            let made = match make() {
                Ok(v) => {
                    let v = Arc::new(v);
                    if let Ok(mut c) = cache.lock() {
                        c.put(key.clone(), v.clone());
                    }
                    Some(v)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a table's row order could not be made");
                    None
                }
            };
            if let Ok(mut m) = all_making.lock() {
                m.remove(&key);
            }
            made
        });
        // A thread that panicked leaves the order to the next asker, who makes it again.
        let (all_making, key) = (self.making.clone(), k.clone());
        let m = async move {
            let made = thread.await;
            if made.is_err() {
                if let Ok(mut m) = all_making.lock() {
                    m.remove(&key);
                }
            }
            made.ok().flatten()
        }
        .boxed()
        .shared();
        making.insert(k, m.clone());
        m
    }

    /// One page of a stored table, sorted and filtered on the server. A new sort or search of
    /// a big table answers with its first pages at once and finishes the whole order on a
    /// thread of its own; until a search has read every row, the page says it is counting.
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
        // The table stays in its batches (a merged copy of ten million rows would take
        // seconds and as much memory again); rows are found by their batch's start.
        let batches = Arc::new(data.batches.clone());
        let starts = super::starts(data.batches.iter().map(|b| b.num_rows()));
        let locate = |row: u32| -> (usize, usize) {
            let b = starts.partition_point(|s| *s <= row as usize).saturating_sub(1);
            (b, row as usize - starts.get(b).copied().unwrap_or(0))
        };
        let key = |sort: Option<(String, bool)>, search: Option<String>| -> ViewKey {
            (run_id.to_string(), step_id.to_string(), sort, search)
        };
        let asked = q.page.max(1);
        // Rows that match the search, in stored order: all of them, or (counting) the first
        // ones, enough for the page asked and one row more.
        let (base, counting): (Option<Arc<Vec<u32>>>, bool) = match &search {
            None => (None, false),
            Some(s) => {
                let k = key(None, Some(s.clone()));
                match self.cached(&k) {
                    Some(v) => (Some(v), false),
                    None => {
                        // A sort of the matches needs all of them.
                        let want =
                            if sort.is_some() { usize::MAX } else { asked.saturating_mul(size).saturating_add(1) };
                        let (table, text) = (batches.clone(), s.clone());
                        let (found, complete) = tokio::task::spawn_blocking(move || first_matches(&table, &text, want))
                            .await
                            .map_err(|e| anyhow::anyhow!("the search stopped: {e}"))??;
                        let found = Arc::new(found);
                        if complete {
                            self.remember(k, found.clone());
                        } else {
                            let (table, text) = (batches.clone(), s.clone());
                            drop(self.make(k, move || super::search::search_rows(&table, &text)));
                        }
                        (Some(found), !complete)
                    }
                }
            }
        };
        let filtered = base.as_ref().map_or(data.rows, |b| b.len());
        // While counting, there is at least one page after the one asked for.
        let pages = if counting { asked + 1 } else { filtered.div_ceil(size).max(1) };
        let page = asked.min(pages);
        let offset = (page - 1) * size;
        let end = (offset + size).min(filtered);
        let idx: Vec<u32> = match &sort {
            None => match &base {
                Some(b) => b.get(offset..end).map(<[u32]>::to_vec).unwrap_or_default(),
                None => (offset as u32..end as u32).collect(),
            },
            Some(col) => {
                let k = key(Some((col.clone(), q.desc)), search.clone());
                let order = match self.cached(&k) {
                    Some(v) => v,
                    None => {
                        let idx = data.schema.index_of(col)?;
                        let column: Vec<&dyn Array> = data.batches.iter().map(|b| b.column(idx).as_ref()).collect();
                        // The column in chunks (one per batch), or the matching rows' values.
                        let values: Vec<ArrayRef> = match &base {
                            Some(rows) => {
                                let at: Vec<(usize, usize)> = rows.iter().map(|r| locate(*r)).collect();
                                vec![interleave(&column, &at)?]
                            }
                            None => data.batches.iter().map(|b| b.column(idx).clone()).collect(),
                        };
                        let n: usize = values.iter().map(|v| v.len()).sum();
                        let desc = q.desc;
                        let through = base.clone();
                        let to_rows = move |sorted: Vec<u32>| -> Vec<u32> {
                            match &through {
                                Some(rows) => sorted.iter().map(|i| rows[*i as usize]).collect(),
                                None => sorted,
                            }
                        };
                        let (first_values, first_rows) = (values.clone(), to_rows.clone());
                        let whole = self.make(k, move || {
                            let all = concat(&values.iter().map(|v| v.as_ref()).collect::<Vec<_>>())?;
                            sorted_order(all.as_ref(), desc).map(to_rows)
                        });
                        if n < SORT_WHOLE_BELOW || end > FIRST_ROWS_AT_MOST {
                            whole.await.ok_or_else(|| anyhow::anyhow!("the sort stopped"))?
                        } else {
                            // The page now; the whole order goes on meanwhile.
                            tokio::task::spawn_blocking(move || {
                                first_in_order(&first_values, desc, end).map(first_rows)
                            })
                            .await
                            .map_err(|e| anyhow::anyhow!("the sort stopped: {e}"))??
                            .into()
                        }
                    }
                };
                order.get(offset..end).map(<[u32]>::to_vec).unwrap_or_default()
            }
        };
        let at: Vec<(usize, usize)> = idx.iter().map(|r| locate(*r)).collect();
        let cols: Vec<ArrayRef> = (0..data.schema.fields().len())
            .map(|c| {
                let column: Vec<&dyn Array> = data.batches.iter().map(|b| b.column(c).as_ref()).collect();
                if at.is_empty() {
                    return Ok(new_empty_array(data.schema.field(c).data_type()));
                }
                interleave(&column, &at)
            })
            .collect::<std::result::Result<_, _>>()?;
        let ids = idx;
        let rows: Vec<Vec<Cell>> = (0..ids.len())
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
            counting,
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
    let batches = data.batches.clone();
    let search = search.to_string();
    tokio::task::spawn_blocking(move || super::search::search_rows(&batches, &search))
        .await
        .map_err(|e| anyhow::anyhow!("the search stopped: {e}"))?
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// More rows than are sorted whole before a first page, and than two threads search in
    /// one go, in several batches.
    fn big() -> StepData {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new("bytes", DataType::Int64, true),
        ]));
        let n = (SORT_WHOLE_BELOW + 50_000).max(3 * crate::results::search::BLOCK);
        let batches = (0..n)
            .step_by(65_536)
            .map(|from| {
                let rows = from..(from + 65_536).min(n);
                let host: StringArray =
                    rows.clone().map(|i| (i % 31 != 0).then(|| format!("h{}", (i * 7919) % 5003))).collect();
                let bytes: Int64Array =
                    rows.map(|i| (i % 17 != 0).then_some(((i * 104_729) % 100_003) as i64)).collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(host), Arc::new(bytes)]).expect("batch")
            })
            .collect();
        StepData::new(schema, batches)
    }

    fn hosts(p: &TablePage) -> Vec<String> {
        p.rows.iter().map(|r| r[0].text.clone()).collect()
    }

    /// The first pages of a new sort of a big table come before its whole order and equal the
    /// pages of the whole order; a search's first page says it is counting until every row is
    /// read, then gives the exact count.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_big_tables_first_pages_equal_the_whole_orders_and_a_search_counts_in_the_background() {
        let data = big();
        let views = Views::default();
        let id = ("run", "step");
        for (col, desc) in [("bytes", true), ("bytes", false), ("host", false), ("host", true)] {
            let q = |page| TableQuery { page, size: 25, sort: Some(col.to_string()), desc, search: None };
            let first = views.page(id, &data, &q(1), Tz::UTC).await.expect("page");
            let third = views.page(id, &data, &q(3), Tz::UTC).await.expect("page");
            // The whole order, as a fresh cache makes it synchronously for a deep page.
            let whole = Views::default();
            let deep = TableQuery { page: FIRST_ROWS_AT_MOST, ..q(1) };
            let _ = whole.page(id, &data, &deep, Tz::UTC).await.expect("deep page");
            let want_first = whole.page(id, &data, &q(1), Tz::UTC).await.expect("page");
            let want_third = whole.page(id, &data, &q(3), Tz::UTC).await.expect("page");
            assert_eq!((first.ids.clone(), third.ids.clone()), (want_first.ids, want_third.ids), "{col} desc={desc}");
            assert_eq!(first.rows.len(), 25);
        }
        // "h1" is in many rows: the first page is found long before the last row.
        let q = |page| TableQuery { page, size: 25, sort: None, desc: false, search: Some("H1".into()) };
        let first = views.page(id, &data, &q(1), Tz::UTC).await.expect("page");
        assert!(first.counting, "the first page of a big search does not wait for the count");
        assert!(hosts(&first).iter().all(|h| h.contains("h1")), "{:?}", hosts(&first));
        let want = crate::results::search::search_rows(&data.batches, "h1").expect("search");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let counted = loop {
            let p = views.page(id, &data, &q(2), Tz::UTC).await.expect("page");
            if !p.counting {
                break p;
            }
            assert!(std::time::Instant::now() < until, "the count never came");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(counted.filtered, want.len());
        assert_eq!(counted.pages, want.len().div_ceil(25));
        assert_eq!(counted.ids, want[25..50].to_vec());
        assert_eq!(first.ids, want[..25].to_vec());
    }
}
