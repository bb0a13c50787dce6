//! Writing a table in the formats analysts take away: CSV and JSON (cells as they read them)
//! and Parquet.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Result};
use chrono_tz::Tz;

use super::cells::{cell_text, csv_field, row_json};
use super::table::{write_parquet, StepData};

/// The export formats, by the names forms and the API use.
pub const FORMATS: [&str; 3] = ["csv", "json", "parquet"];

/// Writes `data` to `path` as `format` (one of [`FORMATS`]).
pub fn write_file(path: &Path, data: &StepData, format: &str, tz: Tz) -> Result<()> {
    match format {
        "parquet" => write_parquet(path, data),
        "csv" => write_csv(path, data, tz),
        "json" => write_json(path, data, tz),
        _ => bail!("unknown export format `{format}`; use csv, json or parquet"),
    }
}

fn write_csv(path: &Path, data: &StepData, tz: Tz) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(File::create(path)?);
    write_delimited(&mut w, data, tz)?;
    w.flush()?;
    Ok(())
}

/// Writes `data` as CSV (header first) with cells as analysts read them.
pub fn write_delimited(w: &mut dyn std::io::Write, data: &StepData, tz: Tz) -> Result<()> {
    let header: Vec<String> = data.schema.fields().iter().map(|f| csv_field(f.name())).collect();
    writeln!(w, "{}", header.join(","))?;
    for b in &data.batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns()).map(|c| csv_field(&cell_text(b.column(c), r, tz))).collect();
            writeln!(w, "{}", cells.join(","))?;
        }
    }
    Ok(())
}

fn write_json(path: &Path, data: &StepData, tz: Tz) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(File::create(path)?);
    write_json_rows(&mut w, data, tz)?;
    w.flush()?;
    Ok(())
}

/// Writes `data` as a JSON array of objects; numbers stay numbers.
pub fn write_json_rows(w: &mut dyn std::io::Write, data: &StepData, tz: Tz) -> Result<()> {
    write!(w, "[")?;
    let mut first = true;
    for b in &data.batches {
        for r in 0..b.num_rows() {
            let obj = row_json(b, r, tz);
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
