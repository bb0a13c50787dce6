//! How the demo lays its files out, which `casebook compact` shares: Parquet properties, and
//! rows written hour by hour.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{Duration, Timelike};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;

use super::rng::Rng;
use super::{hour_weight, micros, Span};

/// Rows in one Parquet row group: an hour of a busy network is several, so a window that
/// starts or ends inside an hour skips the groups outside it on their time statistics.
pub const ROW_GROUP_ROWS: usize = 131_072;

/// Rows in one data page of a file sorted by a
/// [`cluster`](crate::catalog::standard::Standard::cluster) column: one client's lookups in
/// an hour fill a page or two, and the page index skips the rest. (2,048 and 8,192 rows read
/// a one-client day of 2M lookups equally fast, 2,048 decoding a third of the rows; the files
/// are the same size.)
pub const PAGE_ROWS: usize = 2048;

/// How the demo lays its files out, written into its manifest: the benchmark makes its data
/// again when it was made another way (`LAYOUT` in scripts/bench.py must say the same; a
/// test checks). 2: DNS hours sorted by client, then time; 3: time columns without a
/// dictionary.
pub const LAYOUT: u32 = 3;

/// How casebook lays out event files (README, "Laying out your own data"): Snappy, row groups
/// of [`ROW_GROUP_ROWS`], min/max statistics and the page index on every column (the
/// writer's default), bloom filters on `bloom`'s columns, for searches of one address or
/// one name, and, when the rows are sorted by a `cluster` column, pages of [`PAGE_ROWS`].
/// The `time` column is written plain: its values hardly repeat, so a dictionary saved
/// nothing and cost every read of a page its row group's whole dictionary (820 KB of an
/// hour of DNS, read to decode one client's two pages).
pub fn layout_properties(time: &str, bloom: &[&str], cluster: Option<&str>) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_column_dictionary_enabled(ColumnPath::from(time), false);
    if cluster.is_some() {
        b = b.set_data_page_row_count_limit(PAGE_ROWS);
    }
    for c in bloom {
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(*c), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(*c), 0.01);
    }
    b.build()
}

/// How one kind of row is written: its schema, the batch of a slice of rows, and the
/// standard it is (its bloom filter and cluster columns).
pub(super) type Writing<'a, T> =
    (&'a SchemaRef, fn(&SchemaRef, &[T]) -> Result<RecordBatch>, &'a crate::catalog::standard::Standard);

/// Makes and writes rows hour by hour as `date=YYYY-MM-DD/hour=HH/part-0.parquet`, laid out
/// as [`layout_properties`] says: `rows` ordinary rows (`make` at a time) spread over the
/// hours by [`hour_weight`], and the `incidents` of each hour (they lie inside the span by
/// [`incident_at`]), each hour sorted by `order` (time, or the standard's cluster column
/// and then time). One hour is in memory at a time, so a week of 100 million flows takes
/// what its busiest hour does. Returns the rows written.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_hourly<T>(
    dir: &Path,
    (schema, batch, standard): Writing<'_, T>,
    Span { start, hours }: Span,
    rows: usize,
    rng: &mut Rng,
    mut incidents: Vec<T>,
    mut make: impl FnMut(&mut Rng, i64) -> T,
    time: impl Fn(&T) -> i64,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Result<usize> {
    let props = layout_properties(standard.time_column, standard.bloom, standard.cluster);
    incidents.sort_by_key(|r| std::cmp::Reverse(time(r)));
    let weights: Vec<f64> = (0..hours).map(|h| hour_weight((start + Duration::hours(i64::from(h))).hour())).collect();
    let total_w: f64 = weights.iter().sum();
    let mut written = 0;
    for (h, wt) in weights.iter().enumerate() {
        let hour_start = start + Duration::hours(h as i64);
        let (base, end) = (micros(hour_start), micros(hour_start + Duration::hours(1)));
        let n = ((rows as f64) * wt / total_w) as usize;
        let mut out: Vec<T> = Vec::with_capacity(n);
        for _ in 0..n {
            let t = base + rng.range(0, 3_599_999_999) as i64;
            out.push(make(rng, t));
        }
        while incidents.last().is_some_and(|r| time(r) < end) {
            out.extend(incidents.pop());
        }
        out.sort_by(&order);
        if out.is_empty() {
            continue;
        }
        let part: PathBuf =
            dir.join(format!("date={}", hour_start.format("%Y-%m-%d"))).join(format!("hour={:02}", hour_start.hour()));
        fs::create_dir_all(&part)?;
        let file = File::create(part.join("part-0.parquet"))?;
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props.clone()))?;
        for chunk in out.chunks(65536) {
            w.write(&batch(schema, chunk)?)?;
        }
        w.close()?;
        written += out.len();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark makes its data again when the demo's layout changes: its `LAYOUT` must
    /// be this one.
    #[test]
    fn the_benchmark_knows_the_demo_layout() {
        let script =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench.py")).unwrap_or_default();
        assert!(script.contains(&format!("\nLAYOUT = {LAYOUT}\n")), "scripts/bench.py must say LAYOUT = {LAYOUT}");
    }
}
