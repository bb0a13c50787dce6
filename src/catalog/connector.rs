//! Connectors (`connectors/*.yaml`): files of format parquet, csv, ndjson or zeek (a folder,
//! a file or a glob, optionally hive-partitioned, optionally compressed) registered as
//! DataFusion tables by name; a standard schema they provide and the mapping of its columns
//! onto the source ([`super::mapping`]).

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::TableProvider;
use datafusion::prelude::SessionContext;
use indexmap::IndexMap;
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
    /// A folder, file or glob, relative to the data folder (files only).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// A database's table (`format: postgres`): `flows` or `schema.flows`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub table: Option<Spanned<String>>,
    /// How to reach the database: host, port, db, user, sslmode (disable, require,
    /// verify-ca, verify-full).
    #[serde(default)]
    pub connection: IndexMap<String, serde_json::Value>,
    /// The secret (in the secrets file) holding the database password.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub password_secret: Option<Spanned<String>>,
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
    /// gzip, zstd, bzip2, xz or none (default: from the files' names, e.g. `.csv.gz`).
    #[serde(default)]
    #[schemars(with = "Option<CompressionName>")]
    pub compression: Option<Spanned<String>>,
    /// The standard schema these files hold once mapped: flows, dns, proxy or events.
    #[serde(default)]
    #[schemars(with = "Option<StandardName>")]
    pub provides: Option<Spanned<String>>,
    /// Columns as the playbooks see them: each a source column or a SQL expression over the
    /// source's columns (`sip: '"id.orig_h"'`, `treceived: from_epoch(ts)`).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, String>")]
    pub columns: IndexMap<String, Spanned<String>>,
    /// Only the rows for which this SQL condition holds (`event_type = 'flow'`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub filter: Option<Spanned<String>>,
}

/// For the schema: the compressions.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum CompressionName {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
    None,
}

/// For the schema: the standard schemas.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum StandardName {
    Flows,
    Dns,
    Proxy,
    Events,
}

/// For the schema: the file formats.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum FormatName {
    Parquet,
    Csv,
    Ndjson,
    /// Zeek's TSV logs: `#fields` and `#types` headers, `-` for empty.
    Zeek,
    /// A PostgreSQL table (`table:`, `connection:`, `password_secret:`).
    Postgres,
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
    Zeek,
    Postgres,
    /// A data platform's HTTP API (`kind: http_table`).
    HttpTable,
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
    /// The standard schema provided, if any.
    pub provides: Option<&'static super::standard::Standard>,
    /// Its columns the source has no mapping for: they read as empty (NULL).
    pub missing: Vec<String>,
}

impl Connector {
    pub fn schema(&self) -> SchemaRef {
        self.table.schema()
    }
}

pub fn parse_type(s: &str) -> Option<DataType> {
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
    secrets: &crate::secrets::Secrets,
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
        "zeek" => Format::Zeek,
        "postgres" | "postgresql" => Format::Postgres,
        other => {
            problems.push_hint(
                pos(&raw.format),
                format!("unknown format `{other}`"),
                "use parquet, csv, ndjson, zeek or postgres",
            );
            return None;
        }
    };
    let provides = match &raw.provides {
        None => None,
        Some(p) => match super::standard::find(&p.value) {
            Some(s) => Some(s),
            None => {
                let known: Vec<&str> = super::standard::ALL.iter().map(|s| s.name).collect();
                problems.push_hint(
                    pos(p),
                    format!("connector `{name}`: there is no standard schema `{}`", p.value),
                    format!("use one of {}", known.join(", ")),
                );
                return None;
            }
        },
    };
    if format == Format::Postgres {
        let table = super::database::postgres(&raw, &name, secrets, problems).await?;
        return finish(raw, name, format, provides, table, None, None, problems);
    }
    let Some(path) = &raw.path else {
        problems.push_hint(
            Pos::new(1, 1),
            format!("connector `{name}`: no `path:`"),
            "say where the files are, relative to the data folder (e.g. path: logs/conn)",
        );
        return None;
    };
    let path_at = pos(path);
    let rel = path.value.trim();
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
    let base_ext = match format {
        Format::Parquet => ".parquet",
        Format::Csv => ".csv",
        Format::Ndjson => ".json",
        Format::Zeek => ".log",
        Format::Postgres | Format::HttpTable => "",
    };
    // Usually one compression; a folder of rotated logs may hold plain and compressed files.
    let kinds = super::compression::kinds(&raw, format, &full, rel, base_ext, &name, problems)?;
    let compression = kinds.first().copied().unwrap_or(FileCompressionType::UNCOMPRESSED);
    let zeek = match format {
        Format::Zeek => {
            match super::zeek::header(
                ctx,
                &url,
                &(base_ext.to_string() + super::compression::ext_of(compression)),
                compression,
            )
            .await
            {
                Ok(h) => Some(h),
                Err(e) => {
                    problems.push(path_at, format!("connector `{name}`: {e}"));
                    return None;
                }
            }
        }
        _ => None,
    };
    let delimiter = match &raw.delimiter {
        None => None,
        Some(at) => match u8::try_from(u32::from(at.value)) {
            Ok(b) if at.value.is_ascii() => Some(b),
            _ => {
                problems.push_hint(
                    pos(at),
                    format!("connector `{name}`: delimiter `{}` is not a single ASCII character", at.value),
                    "use e.g. `,`, `;`, `|` or a tab (\"\\t\")",
                );
                return None;
            }
        },
    };
    let file_format = |compression: FileCompressionType| -> Arc<dyn FileFormat> {
        match format {
            // Plain strings, as the session reads them (`schema_force_view_types` off): a format
            // made here does not see the session's Parquet options, and view-typed columns
            // came back wrapped in a cast that cost every query a copy and every filter on an
            // address its bloom filters.
            Format::Parquet | Format::Postgres | Format::HttpTable => {
                Arc::new(ParquetFormat::default().with_force_view_types(false))
            }
            Format::Csv => {
                let f = CsvFormat::default()
                    .with_has_header(raw.has_header.unwrap_or(true))
                    .with_file_compression_type(compression);
                Arc::new(match delimiter {
                    Some(d) => f.with_delimiter(d),
                    None => f,
                })
            }
            // Logs such as Suricata's mix record kinds: look far enough to see each kind's fields.
            Format::Ndjson => Arc::new(
                JsonFormat::default().with_file_compression_type(compression).with_schema_infer_max_rec(20_000),
            ),
            Format::Zeek => Arc::new(super::zeek::format(zeek.as_ref().map_or(b'\t', |h| h.delimiter), compression)),
        }
    };
    // A single file keeps whatever extension it has, a glob says which names it wants; a
    // folder holds the format's files.
    let listing = |compression: FileCompressionType| {
        let ext = if full.is_file() || is_glob {
            String::new()
        } else {
            base_ext.to_string() + super::compression::ext_of(compression)
        };
        ListingOptions::new(file_format(compression))
            .with_file_extension(ext)
            .with_table_partition_cols(raw.partitions.iter().map(|p| (p.clone(), DataType::Utf8)).collect())
    };
    let options = listing(compression);
    let schema: SchemaRef = match (&raw.schema, &zeek) {
        (Some(cols), _) => {
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
        (None, Some(h)) => h.schema(),
        (None, None) => match infer(&options, &ctx.state(), &url).await {
            Ok(s) => s,
            Err(e) => {
                problems.push_hint(
                    path_at,
                    format!("connector `{name}`: cannot read the files: {e}"),
                    "check `format:` and, for compressed files, `compression:`",
                );
                return None;
            }
        },
    };
    let declared = raw.schema.is_some().then(|| Listing { options: options.clone(), url: url.clone() });
    let mut tables: Vec<Arc<dyn TableProvider>> = Vec::new();
    for kind in &kinds {
        let config =
            ListingTableConfig::new(url.clone()).with_listing_options(listing(*kind)).with_schema(schema.clone());
        match ListingTable::try_new(config) {
            Ok(t) => tables.push(Arc::new(t)),
            Err(e) => {
                problems.push(path_at, format!("connector `{name}`: {}", first_line(&e.to_string())));
                return None;
            }
        }
    }
    let files = match super::mapping::union(tables) {
        Ok(t) => t,
        Err(e) => {
            problems.push(path_at, format!("connector `{name}`: {}", first_line(&e.to_string())));
            return None;
        }
    };
    finish(raw, name, format, provides, files, (!is_glob).then_some(full), declared, problems)
}

/// The mapping, the time column and the connector, the same for files and databases.
#[allow(clippy::too_many_arguments)]
fn finish(
    raw: RawConnector,
    name: String,
    format: Format,
    provides: Option<&'static super::standard::Standard>,
    files: Arc<dyn TableProvider>,
    location: Option<std::path::PathBuf>,
    declared: Option<Listing>,
    problems: &mut Problems,
) -> Option<Connector> {
    let mapping =
        super::mapping::Mapping { connector: &name, provides, columns: &raw.columns, filter: raw.filter.as_ref() };
    let (table, missing) = if provides.is_some() || !raw.columns.is_empty() || raw.filter.is_some() {
        let m = mapping.apply(files, problems)?;
        (m.table, m.missing)
    } else {
        (files, Vec::new())
    };
    let time_column = raw.time_column.as_ref().map(|t| t.value.clone()).or(provides.map(|s| s.time_column.to_string()));
    if let Some(tc) = &time_column {
        let at = raw.time_column.as_ref().map_or(Pos::new(1, 1), pos);
        match table.schema().field_with_name(tc).map(|f| f.data_type().clone()) {
            Err(_) => problems.push(at, format!("connector `{name}`: time column `{tc}` is not in its schema")),
            Ok(DataType::Timestamp(..) | DataType::Date32 | DataType::Date64) => {}
            Ok(other) => problems.push_hint(
                at,
                format!("connector `{name}`: time column `{tc}` holds {}, not times", type_name(&other)),
                "declare it in `schema:` with type timestamp (or date), or map it in `columns:` (e.g. from_epoch(ts))",
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
        location,
        declared,
        provides,
        missing,
    })
}

/// How a connector with a declared schema lists its files, to compare that schema with what
/// the files hold now.
#[derive(Debug, Clone)]
pub struct Listing {
    options: ListingOptions,
    url: ListingTableUrl,
}

/// The files' schema as DataFusion infers it. A damaged file can make Arrow's reader panic
/// (an impossible type in the schema a Parquet file embeds): that file cannot be read either.
///
/// Of Parquet files it reads the oldest and the newest in path order (hive partitions
/// `date=/hour=` sort by time), as Spark and DuckDB read one: each file's footer states its
/// schema exactly, and reading every footer made each start, and each `casebook run`, pay for
/// the whole history (a week of hourly files: 168 footers per connector; a year: 8,760). A
/// column that files gained or lost over time is in one of the two; one only some files in the
/// middle hold is not seen, and a declared `schema:` names it. Text formats read records from
/// the first files until they have enough, as before.
async fn infer(
    options: &ListingOptions,
    state: &datafusion::execution::SessionState,
    url: &ListingTableUrl,
) -> Result<SchemaRef, String> {
    use futures::{FutureExt, TryStreamExt};
    let store = state.runtime_env().object_store(url).map_err(|e| first_line(&e.to_string()))?;
    let listed = url.list_all_files(state, store.as_ref(), &options.file_extension).await;
    let mut files: Vec<_> =
        listed.map_err(|e| first_line(&e.to_string()))?.try_collect().await.map_err(|e| first_line(&e.to_string()))?;
    // Empty files cannot affect the schema but may fail to read.
    files.retain(|f| f.size > 0);
    if files.is_empty() {
        return Err(format!("no files found at {url}"));
    }
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let format: &dyn std::any::Any = options.format.as_ref();
    if format.is::<ParquetFormat>() && files.len() > 2 {
        files.drain(1..files.len() - 1);
    }
    match std::panic::AssertUnwindSafe(options.format.infer_schema(state, &store, &files)).catch_unwind().await {
        // Any column may be missing from a file not read here, and reads empty there.
        Ok(Ok(schema)) => Ok(Arc::new(Schema::new_with_metadata(
            schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
            schema.metadata().clone(),
        ))),
        Ok(Err(e)) => Err(first_line(&e.to_string())),
        Err(_) => Err("a file is damaged: its schema cannot be read".to_string()),
    }
}

impl Connector {
    /// Where the files disagree with the declared schema: a declared column the files lack or
    /// hold with another type. Empty when nothing was declared, or all agrees.
    pub async fn schema_drift(&self, ctx: &SessionContext) -> Result<Vec<String>, String> {
        let Some(l) = &self.declared else { return Ok(Vec::new()) };
        let found = infer(&l.options, &ctx.state(), &l.url).await?;
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
pub fn type_name(t: &DataType) -> String {
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
