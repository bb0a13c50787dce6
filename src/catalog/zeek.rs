//! Zeek's TSV logs (`conn.log`, `dns.log`, rotated `.log.gz`): the `#separator`, `#fields`
//! and `#types` header of the first file names and types the columns; `-` (unset) and
//! `(empty)` read as NULL; `#` lines (the header, `#close`) are skipped.

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

/// What the header of a Zeek log says.
#[derive(Debug, Clone)]
pub struct Header {
    pub delimiter: u8,
    pub fields: Vec<(String, DataType)>,
}

impl Header {
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>()))
    }
}

/// Zeek's type names as Arrow types: times and intervals are seconds (map them with
/// `from_epoch(ts)`); counts and ports integers; addresses, sets and booleans (`T`/`F`) text.
fn arrow_type(zeek: &str) -> DataType {
    match zeek {
        "time" | "interval" | "double" => DataType::Float64,
        "count" | "int" | "port" => DataType::Int64,
        _ => DataType::Utf8,
    }
}

/// The CSV reading of a Zeek log. Zeek does not quote: the quote character is NUL, which
/// Zeek writes escaped (`\x00`), so a `"` inside a value stays a `"`.
pub fn format(delimiter: u8, compression: FileCompressionType) -> CsvFormat {
    CsvFormat::default()
        .with_has_header(false)
        .with_delimiter(delimiter)
        .with_comment(Some(b'#'))
        .with_quote(0)
        .with_null_regex(Some(r"^(-|\(empty\))$".to_string()))
        .with_file_compression_type(compression)
}

/// Reads the header of the first file the connector lists.
pub async fn header(
    ctx: &SessionContext,
    url: &ListingTableUrl,
    ext: &str,
    compression: FileCompressionType,
) -> Result<Header, String> {
    let state = ctx.state();
    let store = ctx.runtime_env().object_store(url).map_err(|e| e.to_string())?;
    let mut files = url.list_all_files(&state, store.as_ref(), ext).await.map_err(|e| e.to_string())?;
    let mut first: Option<String> = None;
    while let Some(meta) = files.next().await {
        let loc = format!("/{}", meta.map_err(|e| e.to_string())?.location);
        if first.as_ref().is_none_or(|f| &loc < f) {
            first = Some(loc);
        }
    }
    let Some(path) = first else { return Err(format!("no Zeek log (*{ext}) found")) };
    let file = std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let reader = compression.convert_read(file).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse(BufReader::new(reader)).map_err(|e| format!("{path}: {e}"))
}

/// Parses the `#` lines at the top of a Zeek log.
fn parse(reader: impl BufRead) -> Result<Header, String> {
    let mut delimiter = b'\t';
    let mut names: Option<Vec<String>> = None;
    let mut types: Option<Vec<String>> = None;
    for line in reader.lines().take(64) {
        let line = line.map_err(|e| format!("not a readable text log ({e})"))?;
        let Some(rest) = line.strip_prefix('#') else { break };
        let split = |s: &str| s.split(delimiter as char).map(str::to_string).collect::<Vec<_>>();
        if let Some(sep) = rest.strip_prefix("separator ") {
            delimiter = separator(sep.trim()).ok_or_else(|| format!("unusable #separator `{sep}`"))?;
        } else if let Some(f) = rest.strip_prefix("fields") {
            names = Some(split(f.trim_start_matches(delimiter as char)));
        } else if let Some(t) = rest.strip_prefix("types") {
            types = Some(split(t.trim_start_matches(delimiter as char)));
        }
    }
    let names =
        names.ok_or("no `#fields` line at the top: not a Zeek TSV log (for Zeek's JSON logs use `format: ndjson`)")?;
    let types = types.unwrap_or_default();
    let fields = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), arrow_type(types.get(i).map_or("string", String::as_str))))
        .collect();
    Ok(Header { delimiter, fields })
}

/// `\x09` or a literal character.
fn separator(s: &str) -> Option<u8> {
    match s.strip_prefix("\\x") {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => (s.len() == 1).then(|| s.as_bytes()[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_names_and_types_the_columns() {
        let log = "#separator \\x09\n#set_separator\t,\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tduration\tlocal_orig\n#types\ttime\tstring\taddr\tport\tinterval\tbool\n1.5\tC1\t10.0.0.1\t5000\t-\tT\n";
        let h = parse(log.as_bytes()).expect("header");
        assert_eq!(h.delimiter, b'\t');
        let got: Vec<(&str, &DataType)> = h.fields.iter().map(|(n, t)| (n.as_str(), t)).collect();
        assert_eq!(
            got,
            [
                ("ts", &DataType::Float64),
                ("uid", &DataType::Utf8),
                ("id.orig_h", &DataType::Utf8),
                ("id.orig_p", &DataType::Int64),
                ("duration", &DataType::Float64),
                ("local_orig", &DataType::Utf8)
            ]
        );
        assert!(parse("ts,uid\n1,2\n".as_bytes()).is_err_and(|e| e.contains("#fields")));
    }
}
