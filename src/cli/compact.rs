//! `casebook compact`: rewrites what a connector reads (any format, mapped onto its standard
//! schema) as casebook lays out event data: time-sorted Parquet in `date=…/hour=…` folders
//! (DNS: each hour sorted by client, then time), row groups small enough to skip on their
//! time statistics, the page index, and bloom filters on the address and name columns. Then
//! prints the connector to read it with.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, DurationRound, TimeZone, Timelike, Utc};
use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::parquet::arrow::ArrowWriter;
use futures::StreamExt;

use crate::catalog::Catalog;
use crate::sql::quote_ident;

/// One hour's file being written.
struct HourFile {
    hour: i64,
    writer: ArrowWriter<File>,
}

/// Rewrites connector `name` of `catalog` under `out`; the rows written.
pub async fn compact(catalog: &Catalog, name: &str, out: &Path, bloom: Option<Vec<String>>) -> Result<u64> {
    let Some(c) = catalog.connectors.iter().find(|c| c.name == name) else {
        let known: Vec<&str> = catalog.connectors.iter().map(|c| c.name.as_str()).collect();
        bail!("no connector `{name}` (connectors: {})", known.join(", "));
    };
    let Some(time) = c.time_column.clone().or_else(|| c.provides.map(|s| s.time_column.to_string())) else {
        bail!("connector `{name}` has no time column: give it `time_column:` (or `provides:`)");
    };
    if out.exists() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        bail!("{} is not empty: compact writes into a new folder", out.display());
    }
    let bloom: Vec<String> = bloom
        .unwrap_or_else(|| c.provides.map(|s| s.bloom).unwrap_or_default().iter().map(|s| s.to_string()).collect());
    let schema = c.schema();
    let Ok(time_index) = schema.index_of(&time) else { bail!("connector `{name}` has no column `{time}`") };
    if time == "date" || time == "hour" {
        bail!("the time column of connector `{name}` is named `{time}`, like a partition folder");
    }
    if !matches!(schema.field(time_index).data_type(), DataType::Timestamp(..)) {
        bail!("`{time}` of connector `{name}` is not a time column ({})", schema.field(time_index).data_type());
    }
    let bloom_refs: Vec<&str> = bloom.iter().map(String::as_str).filter(|b| schema.index_of(b).is_ok()).collect();
    // Sorted within each hour by the standard's cluster column first (DNS: the client), so
    // that a one-value search reads that value's pages alone.
    let cluster = c.provides.and_then(|s| s.cluster).filter(|k| schema.index_of(k).is_ok());
    let props = crate::demo::layout_properties(&time, &bloom_refs, cluster);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let spill = out.join(".spill");
    std::fs::create_dir_all(&spill).with_context(|| format!("creating {}", spill.display()))?;
    let ctx = catalog.session_for_run(Some(2 << 30), Some(&spill));
    // Columns named like the partition folders (a source's own `date=…/hour=…`) are written
    // as those folders, derived from the time column.
    let kept: Vec<String> =
        schema.fields().iter().map(|f| f.name().clone()).filter(|n| n != "date" && n != "hour").collect();
    if kept.is_empty() {
        bail!("connector `{name}` has no columns to write");
    }
    let columns = kept.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let t = quote_ident(&time);
    let table = quote_ident(name);
    let range =
        ctx.sql(&format!("SELECT min({t}), max({t}), count(*) - count({t}) FROM {table}")).await?.collect().await?;
    let value = |col: usize| range.first().and_then(|b| ScalarValue::try_from_array(b.column(col), 0).ok());
    let micros = |v: Option<ScalarValue>| match v.and_then(|v| v.cast_to(&micros_utc()).ok()) {
        Some(ScalarValue::TimestampMicrosecond(Some(t), _)) => Utc.timestamp_micros(t).single(),
        _ => None,
    };
    let (Some(first), Some(last)) = (micros(value(0)), micros(value(1))) else {
        bail!("connector `{name}` has no rows with a time");
    };
    let untimed = match value(2) {
        Some(ScalarValue::Int64(Some(n))) => n,
        _ => 0,
    };
    // One day at a time: each is sorted on its own, within the memory a run may use.
    let mut day = first.duration_trunc(Duration::days(1)).unwrap_or(first);
    let mut rows = 0u64;
    while day <= last {
        let next = day + Duration::days(1);
        let order = match cluster {
            Some(k) => format!("date_trunc('hour', {t}), {}, {t}", quote_ident(k)),
            None => t.clone(),
        };
        let sql = format!("SELECT {columns} FROM {table} WHERE {t} >= $start AND {t} < $end ORDER BY {order}");
        let df = ctx.sql(&sql).await?.with_param_values(vec![
            ("start", ScalarValue::TimestampMicrosecond(Some(day.timestamp_micros()), Some("UTC".into()))),
            ("end", ScalarValue::TimestampMicrosecond(Some(next.timestamp_micros()), Some("UTC".into()))),
        ])?;
        let mut stream = df.execute_stream().await?;
        let mut current: Option<HourFile> = None;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            let Ok(time_index) = batch.schema().index_of(&time) else { bail!("the time column is missing") };
            write_by_hour(&batch, time_index, out, &props, &mut current)?;
        }
        if let Some(f) = current.take() {
            f.writer.close()?;
        }
        day = next;
    }
    let _ = std::fs::remove_dir_all(&spill);
    if untimed > 0 {
        eprintln!("{untimed} rows without a time were left out");
    }
    Ok(rows)
}

fn micros_utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Appends the rows of a batch sorted by hour to their hours' files, opening each hour's file
/// as its first row comes.
fn write_by_hour(
    batch: &RecordBatch,
    time_index: usize,
    out: &Path,
    props: &datafusion::parquet::file::properties::WriterProperties,
    current: &mut Option<HourFile>,
) -> Result<()> {
    let times = cast(batch.column(time_index), &micros_utc())?;
    let Some(times) = times.as_any().downcast_ref::<TimestampMicrosecondArray>() else {
        bail!("the time column did not read as times");
    };
    let hour_of = |i: usize| times.value(i).div_euclid(3_600_000_000);
    let mut start = 0;
    while start < batch.num_rows() {
        let hour = hour_of(start);
        let mut end = start;
        while end < batch.num_rows() && hour_of(end) == hour {
            end += 1;
        }
        if current.as_ref().is_none_or(|f| f.hour != hour) {
            if let Some(f) = current.take() {
                f.writer.close()?;
            }
            let at: DateTime<Utc> = Utc.timestamp_micros(hour * 3_600_000_000).single().unwrap_or_default();
            let dir: PathBuf =
                out.join(format!("date={}", at.format("%Y-%m-%d"))).join(format!("hour={:02}", at.hour()));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join("part-0.parquet");
            let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            *current =
                Some(HourFile { hour, writer: ArrowWriter::try_new(file, batch.schema(), Some(props.clone()))? });
        }
        if let Some(f) = current.as_mut() {
            f.writer.write(&batch.slice(start, end - start))?;
        }
        start = end;
    }
    Ok(())
}

/// The connector file that reads what [`compact`] wrote.
pub fn connector_yaml(catalog: &Catalog, name: &str, out: &Path) -> String {
    let c = catalog.connectors.iter().find(|c| c.name == name);
    let mut y = format!(
        "description: {} (compacted by casebook)\nformat: parquet\npath: {}\npartitions: [date, hour]\n",
        c.map(|c| c.description.as_str()).unwrap_or(name),
        out.display()
    );
    if let Some(s) = c.and_then(|c| c.provides) {
        y.push_str(&format!("provides: {}\n", s.name));
    }
    y
}
