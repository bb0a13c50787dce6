//! Connectors (`connectors/*.yaml`): files of format parquet, csv or ndjson (a folder, a
//! file or a glob, optionally hive-partitioned) registered as DataFusion tables by name.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::TableProvider;
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::util::problem::{Pos, Problems};
use crate::util::text::first_line;
use crate::util::text::is_identifier;
use crate::util::yaml::pos;

/// A connector file (`connectors/*.yaml`): files registered as a table.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    /// The table name (default: the file name).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[schemars(with = "FormatName")]
    pub format: Spanned<String>,
    /// A folder, file or glob, relative to the data folder.
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// Hive-style partition folders, e.g. [date, hour] for date=…/hour=….
    #[serde(default)]
    pub partitions: Vec<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub time_column: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<RawColumn>>")]
    pub schema: Option<Spanned<Vec<RawColumn>>>,
    #[serde(default)]
    pub has_header: Option<bool>,
    #[serde(default)]
    #[schemars(with = "Option<char>")]
    pub delimiter: Option<Spanned<char>>,
}

/// For the schema: the file formats.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum FormatName {
    Parquet,
    Csv,
    Ndjson,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    Ndjson,
}

/// A loaded connector: its table, ready to register in any session.
#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    pub path: String,
    pub description: String,
    pub format: Format,
    pub time_column: Option<String>,
    pub table: Arc<dyn TableProvider>,
    /// The folder or file read (None for a glob), for health checks.
    pub location: Option<std::path::PathBuf>,
    /// Set when the author declared the schema: how to list the files again to check it.
    pub declared: Option<Listing>,
}

impl Connector {
    pub fn schema(&self) -> SchemaRef {
        self.table.schema()
    }
}

fn parse_type(s: &str) -> Option<DataType> {
    Some(match s.to_ascii_lowercase().as_str() {
        "string" | "text" | "utf8" => DataType::Utf8,
        "int" | "integer" | "bigint" | "int64" => DataType::Int64,
        "int32" => DataType::Int32,
        "float" | "double" | "float64" | "number" => DataType::Float64,
        "bool" | "boolean" => DataType::Boolean,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "date" => DataType::Date32,
        _ => return None,
    })
}

/// Loads one connector file. Problems go to `problems`; `None` when it cannot be used.
pub async fn load(
    file: &Path,
    text: &str,
    data_dir: &Path,
    ctx: &SessionContext,
    problems: &mut Problems,
) -> Option<Connector> {
    let raw: RawConnector = match crate::util::yaml::parse(&problems.path, text) {
        Ok(r) => r,
        Err(p) => {
            problems.list.push(p);
            return None;
        }
    };
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let (name, name_at) = match &raw.name {
        Some(n) => (n.value.clone(), pos(n)),
        None => (stem, Pos::new(1, 1)),
    };
    if !is_identifier(&name) {
        problems.push_hint(
            name_at,
            format!("connector name `{name}` is not usable as a table name"),
            "use lower-case letters, digits and _",
        );
        return None;
    }
    let format = match raw.format.value.as_str() {
        "parquet" => Format::Parquet,
        "csv" => Format::Csv,
        "ndjson" | "json" => Format::Ndjson,
        other => {
            problems.push_hint(pos(&raw.format), format!("unknown format `{other}`"), "use parquet, csv or ndjson");
            return None;
        }
    };
    let (file_format, ext): (Arc<dyn FileFormat>, &str) = match format {
        Format::Parquet => (Arc::new(ParquetFormat::default()), ".parquet"),
        Format::Csv => {
            let mut f = CsvFormat::default().with_has_header(raw.has_header.unwrap_or(true));
            if let Some(at) = &raw.delimiter {
                let d = at.value;
                match u8::try_from(u32::from(d)) {
                    Ok(b) if d.is_ascii() => f = f.with_delimiter(b),
                    _ => {
                        problems.push_hint(
                            pos(at),
                            format!("connector `{name}`: delimiter `{d}` is not a single ASCII character"),
                            "use e.g. `,`, `;`, `|` or a tab (\"\\t\")",
                        );
                        return None;
                    }
                }
            }
            (Arc::new(f), ".csv")
        }
        Format::Ndjson => (Arc::new(JsonFormat::default()), ".json"),
    };
    let path_at = pos(&raw.path);
    let rel = raw.path.value.trim();
    let full = if Path::new(rel).is_absolute() { Path::new(rel).to_path_buf() } else { data_dir.join(rel) };
    let is_glob = rel.contains(['*', '?', '[']);
    let mut location = full.to_string_lossy().to_string();
    if !is_glob && full.is_dir() && !location.ends_with('/') {
        location.push('/');
    }
    if !is_glob && !full.exists() {
        problems.push_hint(
            path_at,
            format!("connector `{name}`: {} does not exist", full.display()),
            "paths are relative to the data folder; run `casebook demo` to generate the demo data",
        );
        return None;
    }
    let url = match ListingTableUrl::parse(&location) {
        Ok(u) => u,
        Err(e) => {
            problems.push(path_at, format!("connector `{name}`: bad path: {e}"));
            return None;
        }
    };
    // A single file keeps whatever extension it has; folders and globs look for the format's.
    let ext = if full.is_file() { "" } else { ext };
    let options = ListingOptions::new(file_format)
        .with_file_extension(ext)
        .with_table_partition_cols(raw.partitions.iter().map(|p| (p.clone(), DataType::Utf8)).collect());
    let schema: SchemaRef = match &raw.schema {
        Some(cols) => {
            let mut fields = Vec::new();
            for c in &cols.value {
                match parse_type(&c.kind) {
                    Some(t) => fields.push(Field::new(&c.name, t, true)),
                    None => problems.push_hint(
                        pos(cols),
                        format!("column `{}` has unknown type `{}`", c.name, c.kind),
                        "use string, integer, int32, float, boolean, timestamp or date",
                    ),
                }
            }
            Arc::new(Schema::new(fields))
        }
        None => match options.infer_schema(&ctx.state(), &url).await {
            Ok(s) => s,
            Err(e) => {
                problems.push(
                    path_at,
                    format!("connector `{name}`: cannot read the files: {}", first_line(&e.to_string())),
                );
                return None;
            }
        },
    };
    let declared = raw.schema.is_some().then(|| Listing { options: options.clone(), url: url.clone() });
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
    let table = match ListingTable::try_new(config) {
        Ok(t) => Arc::new(t) as Arc<dyn TableProvider>,
        Err(e) => {
            problems.push(path_at, format!("connector `{name}`: {}", first_line(&e.to_string())));
            return None;
        }
    };
    let time_column = raw.time_column.as_ref().map(|t| t.value.clone());
    if let Some(tc) = &raw.time_column {
        match table.schema().field_with_name(&tc.value).map(|f| f.data_type().clone()) {
            Err(_) => {
                problems.push(pos(tc), format!("connector `{name}`: time column `{}` is not in its schema", tc.value))
            }
            Ok(DataType::Timestamp(..) | DataType::Date32 | DataType::Date64) => {}
            Ok(other) => problems.push_hint(
                pos(tc),
                format!("connector `{name}`: time column `{}` holds {}, not times", tc.value, type_name(&other)),
                "declare it in `schema:` with type timestamp (or date)",
            ),
        }
    }
    Some(Connector {
        name,
        path: problems.path.clone(),
        description: raw.description.unwrap_or_default(),
        format,
        time_column,
        table,
        location: (!is_glob).then_some(full),
        declared,
    })
}

/// How a connector with a declared schema lists its files, to compare that schema with what
/// the files hold now.
#[derive(Debug, Clone)]
pub struct Listing {
    options: ListingOptions,
    url: ListingTableUrl,
}

impl Connector {
    /// Where the files disagree with the declared schema: a declared column the files lack or
    /// hold with another type. Empty when nothing was declared, or all agrees.
    pub async fn schema_drift(&self, ctx: &SessionContext) -> Result<Vec<String>, String> {
        let Some(l) = &self.declared else { return Ok(Vec::new()) };
        let found = l.options.infer_schema(&ctx.state(), &l.url).await.map_err(|e| first_line(&e.to_string()))?;
        let partitions: Vec<&str> = l.options.table_partition_cols.iter().map(|(n, _)| n.as_str()).collect();
        let mut out = Vec::new();
        for f in self.schema().fields().iter().filter(|f| !partitions.contains(&f.name().as_str())) {
            match found.field_with_name(f.name()) {
                Err(_) => out.push(format!("declared column `{}` is not in the files", f.name())),
                Ok(g) if !compatible(g.data_type(), f.data_type()) => out.push(format!(
                    "declared column `{}` is {}, the files hold {}",
                    f.name(),
                    type_name(f.data_type()),
                    type_name(g.data_type())
                )),
                Ok(_) => {}
            }
        }
        Ok(out)
    }
}

/// A column type in the words of a connector's `schema:`.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        t if t.is_integer() => "integer".into(),
        t if t.is_floating() => "float".into(),
        DataType::Null => "nothing (always empty)".into(),
        other => other.to_string(),
    }
}

/// Whether values stored as `found` read well as `declared` (numbers widen; text and
/// integers read as timestamps; anything reads as text).
fn compatible(found: &DataType, declared: &DataType) -> bool {
    use DataType::*;
    found == declared
        || matches!(declared, Utf8 | LargeUtf8 | Utf8View)
        || (found.is_integer() && (declared.is_integer() || declared.is_floating()))
        || (found.is_floating() && declared.is_floating())
        || (matches!(declared, Timestamp(..) | Date32)
            && matches!(found, Utf8 | LargeUtf8 | Utf8View | Int64 | Timestamp(..)))
        || matches!(found, Null)
}
