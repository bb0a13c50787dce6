//! Cells as analysts read them: timestamps in the configured zone, numbers plain; rows as
//! JSON objects; CSV cells with spreadsheet formulas neutralised.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::util::timeutil;

/// A cell as analysts read it: timestamps in the configured zone, numbers plain.
pub fn cell_text(col: &ArrayRef, row: usize, tz: Tz) -> String {
    if col.is_null(row) {
        return String::new();
    }
    if let DataType::Timestamp(unit, _) = col.data_type() {
        let v = match unit {
            TimeUnit::Second => {
                col.as_primitive::<datafusion::arrow::datatypes::TimestampSecondType>().value(row) * 1_000_000
            }
            TimeUnit::Millisecond => {
                col.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().value(row) * 1000
            }
            TimeUnit::Microsecond => {
                col.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>().value(row)
            }
            TimeUnit::Nanosecond => {
                col.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>().value(row) / 1000
            }
        };
        if let Some(t) = DateTime::<Utc>::from_timestamp_micros(v) {
            return timeutil::format_display(t, tz);
        }
    }
    // Text and whole numbers directly: a formatter per cell costs more than the cell (lookup
    // tables of a million rows are read this way).
    use datafusion::arrow::datatypes::{Int32Type, Int64Type};
    match col.data_type() {
        DataType::Utf8 => return col.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => return col.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => return col.as_string_view().value(row).to_string(),
        DataType::Int64 => return col.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Int32 => return col.as_primitive::<Int32Type>().value(row).to_string(),
        _ => {}
    }
    let opts = FormatOptions::default();
    match ArrayFormatter::try_new(col.as_ref(), &opts) {
        Ok(f) => f.value(row).to_string(),
        Err(_) => String::new(),
    }
}

/// One row as a JSON object; numbers stay numbers.
pub fn row_json(b: &RecordBatch, r: usize, tz: Tz) -> serde_json::Map<String, serde_json::Value> {
    let mut obj = serde_json::Map::new();
    for (c, f) in b.schema().fields().iter().enumerate() {
        let col = b.column(c);
        let v = if col.is_null(r) {
            serde_json::Value::Null
        } else {
            let text = cell_text(col, r, tz);
            match col.data_type() {
                t if t.is_integer() => {
                    text.parse::<i64>().map(serde_json::Value::from).unwrap_or(serde_json::Value::String(text))
                }
                t if t.is_floating() => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::String(text)),
                DataType::Boolean => serde_json::Value::Bool(text == "true"),
                _ => serde_json::Value::String(text),
            }
        };
        obj.insert(f.name().clone(), v);
    }
    obj
}

/// A CSV cell: quoted when needed, spreadsheet formulas in text neutralised (a leading `=`,
/// `+`, `@`, or `-` that does not start a number).
pub fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '@']) || (s.starts_with('-') && s.parse::<f64>().is_err());
    let s = if formula { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray};

    use super::*;

    #[test]
    fn text_and_whole_numbers_read_as_arrows_formatter_writes_them() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("10.0.0.1"), None, Some(" a b "), Some("")])),
            Arc::new(LargeStringArray::from(vec![Some("x"), Some("é"), None, Some("y")])),
            Arc::new(StringViewArray::from(vec![
                Some("a much longer string than twelve bytes"),
                None,
                Some("s"),
                None,
            ])),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(-1), None, Some(1_000_000)])),
            Arc::new(Int32Array::from(vec![Some(0), None, Some(i32::MAX), Some(-42)])),
        ];
        for col in &columns {
            let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()).unwrap();
            for r in 0..col.len() {
                let want = if col.is_null(r) { String::new() } else { f.value(r).to_string() };
                assert_eq!(cell_text(col, r, chrono_tz::UTC), want, "{:?} row {r}", col.data_type());
            }
        }
    }
}
