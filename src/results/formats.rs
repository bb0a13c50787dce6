//! Writing a table in the formats analysts take away: CSV and JSON (cells as they read them)
//! and Parquet.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono_tz::Tz;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::cells::{cell_text, csv_field, row_json};
use super::table::StepData;

/// The export formats, by the names forms and the API use.
pub const FORMATS: [&str; 3] = ["csv", "json", "parquet"];

/// Writes the stored table `source` (a step's Parquet file) to `path` as `format` (one of
/// [`FORMATS`]), batch by batch: an export of ten million rows holds one batch in memory.
pub fn write_file(path: &Path, source: &Path, format: &str, tz: Tz) -> Result<()> {
    use std::io::Write;
    if format == "parquet" {
        std::fs::copy(source, path).with_context(|| format!("copying {}", source.display()))?;
        return Ok(());
    }
    let file = File::open(source).with_context(|| format!("opening {}", source.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let batches = builder.with_batch_size(8192).build()?.map(|b| b.map_err(anyhow::Error::from));
    let mut w = std::io::BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    match format {
        "csv" => write_delimited(&mut w, &schema, batches, tz)?,
        "json" => write_json_rows(&mut w, batches, tz)?,
        _ => bail!("unknown export format `{format}`; use csv, json or parquet"),
    }
    w.flush()?;
    Ok(())
}

/// A table in memory as the batches the writers below take.
pub fn in_memory(data: &StepData) -> impl Iterator<Item = Result<RecordBatch>> + '_ {
    data.batches.iter().cloned().map(Ok)
}

/// Writes `batches` as CSV (header first) with cells as analysts read them.
pub fn write_delimited(
    w: &mut dyn std::io::Write,
    schema: &Schema,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    tz: Tz,
) -> Result<()> {
    let header: Vec<String> = schema.fields().iter().map(|f| csv_field(f.name())).collect();
    writeln!(w, "{}", header.join(","))?;
    for b in batches {
        let b = b?;
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns()).map(|c| csv_field(&cell_text(b.column(c), r, tz))).collect();
            writeln!(w, "{}", cells.join(","))?;
        }
    }
    Ok(())
}

/// Writes `batches` as a JSON array of objects; numbers stay numbers.
pub fn write_json_rows(
    w: &mut dyn std::io::Write,
    batches: impl Iterator<Item = Result<RecordBatch>>,
    tz: Tz,
) -> Result<()> {
    write!(w, "[")?;
    let mut first = true;
    for b in batches {
        let b = b?;
        for r in 0..b.num_rows() {
            let obj = row_json(&b, r, tz);
            if !first {
                write!(w, ",")?;
            }
            first = false;
            write!(w, "\n{}", serde_json::Value::Object(obj))?;
        }
    }
    writeln!(w, "\n]")?;
    Ok(())
}
