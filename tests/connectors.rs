//! Connectors as an author declares them over their own files: CSV and NDJSON beside the
//! demo's Parquet; a file, a folder or a glob; hive partitions; a declared schema; a header
//! or none and a delimiter; the time column. And the messages when one is wrong.

use std::path::Path;
use std::sync::Arc;

use casebook::catalog::Catalog;
use casebook::engine::Engine;
use casebook::results::paging::TableQuery;

use crate::common;

/// A playbook over the connectors below; its parameter is bound like any analyst's input.
const PLAYBOOK: &str = r#"title: Own files
params:
  window: { type: time_range, default: "2026-01-01 00:00 .. 2026-01-01 12:00" }
sections:
  - title: Read
    steps:
      - id: per_day
        query:
          sql: SELECT date, count(*) AS logons, sum(CASE WHEN ok THEN 1 ELSE 0 END) AS good FROM auth GROUP BY date ORDER BY date
      - id: morning
        query:
          sql: SELECT "user" FROM auth WHERE ts >= $window.start AND ts < $window.end ORDER BY ts
      - id: firewall
        query:
          sql: SELECT count(*) AS n, sum(bytes) AS total FROM fw
      - id: alerts_high
        query:
          sql: SELECT rule, host FROM alerts WHERE severity >= 3 ORDER BY rule
"#;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
    std::fs::write(p, text).expect("write");
}

/// Data, connectors and playbooks folders under one temporary root; the catalog over them.
async fn catalog(connectors: &[(&str, &str)], data: &[(&str, &str)]) -> (Arc<Catalog>, tempfile::TempDir) {
    let root = folders(connectors, data);
    (Arc::new(load(root.path()).await), root)
}

/// The folders of [`catalog`], not loaded yet.
fn folders(connectors: &[(&str, &str)], data: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    for (name, yaml) in connectors {
        write(root.path(), &format!("connectors/{name}.yaml"), yaml);
    }
    for (rel, text) in data {
        write(root.path(), &format!("data/{rel}"), text);
    }
    write(root.path(), "playbooks/own.yaml", PLAYBOOK);
    root
}

/// The catalog over the folders under `root`.
async fn load(root: &Path) -> Catalog {
    let mut paths = common::paths_with(&root.join("data"));
    paths.connectors = root.join("connectors");
    paths.playbooks = root.join("playbooks");
    Catalog::load(paths, chrono_tz::Tz::UTC).await
}

fn problems(catalog: &Catalog, root: &Path) -> Vec<String> {
    let prefix = format!("{}/", root.display());
    catalog.problems().map(|p| p.to_string().replace(&prefix, "")).collect()
}

const AUTH: &str = "format: csv
path: auth
partitions: [date]
time_column: ts
schema:
  - { name: ts, type: timestamp }
  - { name: user, type: string }
  - { name: src, type: string }
  - { name: ok, type: boolean }
";
const FW: &str = "format: csv
path: exports/fw-*.csv
has_header: false
delimiter: ';'
schema:
  - { name: src, type: string }
  - { name: dst, type: string }
  - { name: bytes, type: integer }
";
const ALERTS: &str = "format: ndjson\npath: alerts.ndjson\n";

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "auth/date=2026-01-01/part-0.csv",
            "ts,user,src,ok\n2026-01-01T08:00:00Z,alice,10.0.0.5,true\n2026-01-01T13:00:00Z,bob,10.0.0.6,false\n",
        ),
        ("auth/date=2026-01-02/part-0.csv", "ts,user,src,ok\n2026-01-02T09:30:00Z,carol,10.0.0.7,true\n"),
        ("exports/fw-1.csv", "10.0.0.5;198.51.100.7;1200\n10.0.0.6;198.51.100.8;300\n"),
        ("exports/fw-2.csv", "10.0.0.7;198.51.100.9;4500\n"),
        // Beside the glob's files, not matched by it.
        ("exports/notes.csv", "10.0.0.9;198.51.100.1;999999\n"),
        (
            "alerts.ndjson",
            "{\"rule\":\"psexec\",\"host\":\"WS-07\",\"severity\":4}\n{\"rule\":\"dns-long\",\"host\":\"WS-02\",\"severity\":2}\n{\"rule\":\"beacon\",\"host\":\"WS-11\",\"severity\":3}\n",
        ),
    ]
}

async fn table(engine: &Engine, run: &str, step: &str) -> Vec<Vec<String>> {
    let page = engine.page(run, step, &TableQuery { page: 1, size: 50, ..Default::default() }).await.expect("page");
    page.rows.iter().map(|r| r.iter().map(|c| c.text.clone()).collect()).collect()
}

#[tokio::test]
async fn csv_ndjson_globs_partitions_and_declared_schemas_read_as_tables() {
    let (catalog, root) = catalog(&[("auth", AUTH), ("fw", FW), ("alerts", ALERTS)], &files()).await;
    assert_eq!(problems(&catalog, root.path()), Vec::<String>::new());
    let auth = catalog.connectors.iter().find(|c| c.name == "auth").expect("auth");
    assert_eq!(auth.time_column.as_deref(), Some("ts"));

    let state = root.path().join("data/casebook.sqlite");
    let engine = Arc::new(Engine::new(catalog.clone(), casebook::store::Store::open(&state).expect("store")));
    let out = common::run_all(&engine, "own", &[]).await;
    let run = &out.run_id;
    // Hive partitions become a column; the declared boolean reads as one.
    assert_eq!(table(&engine, run, "per_day").await, [["2026-01-01", "2", "1"], ["2026-01-02", "1", "1"]]);
    // The declared timestamp compares with the bound window.
    assert_eq!(table(&engine, run, "morning").await, [["alice"]]);
    // The glob reads fw-1 and fw-2 (no header, `;`), never notes.csv beside them.
    assert_eq!(table(&engine, run, "firewall").await, [["3", "6000"]]);
    // NDJSON with its schema inferred.
    assert_eq!(table(&engine, run, "alerts_high").await, [["beacon", "WS-11"], ["psexec", "WS-07"]]);
}

#[tokio::test]
async fn a_wrong_connector_says_where_and_how_to_fix_it() {
    let connectors = [
        ("missing", "format: parquet\npath: nowhere/flows\n"),
        ("textual", "format: csv\npath: auth\npartitions: [date]\ntime_column: user\n"),
        ("nocol", "format: ndjson\npath: alerts.ndjson\ntime_column: seen\n"),
        ("delim", "format: csv\npath: exports/fw-1.csv\ndelimiter: '→'\n"),
        ("typed", "format: csv\npath: exports/fw-2.csv\nhas_header: false\nschema:\n  - { name: src, type: ipaddr }\n"),
        ("shape", "format: xlsx\npath: alerts.ndjson\n"),
    ];
    let (catalog, root) = catalog(&connectors, &files()).await;
    let mut got = problems(&catalog, root.path());
    got.sort();
    // The playbook over the broken ones also reports (unknown tables); only connectors here.
    got.retain(|p| p.starts_with("connectors/"));
    assert_eq!(
        got,
        [
            "connectors/delim.yaml:3:12: connector `delim`: delimiter `→` is not a single ASCII character\n  hint: use e.g. `,`, `;`, `|` or a tab (\"\\t\")".to_string(),
            "connectors/missing.yaml:2:7: connector `missing`: data/nowhere/flows does not exist\n  hint: paths are relative to the data folder; run `casebook demo` to generate the demo data".to_string(),
            "connectors/nocol.yaml:3:14: connector `nocol`: time column `seen` is not in its schema".to_string(),
            "connectors/shape.yaml:1:9: unknown format `xlsx`\n  hint: use parquet, csv, ndjson, zeek or postgres".to_string(),
            "connectors/textual.yaml:4:14: connector `textual`: time column `user` holds text, not times\n  hint: declare it in `schema:` with type timestamp (or date), or map it in `columns:` (e.g. from_epoch(ts))".to_string(),
            "connectors/typed.yaml:5:3: column `src` has unknown type `ipaddr`\n  hint: use string, integer, int32, float, boolean, timestamp or date".to_string(),
        ]
    );
}

/// A mapping onto a standard schema, with the mistakes authors make: a misspelled source
/// column, a misspelled standard column, an unknown standard schema, a filter that is not a
/// condition. Each is reported where it is written, with what would fix it.
#[tokio::test]
async fn a_mapping_with_a_typo_says_where_and_which_column() {
    let flows = "format: csv
path: exports/fw-1.csv
has_header: false
delimiter: ';'
provides: flows
columns:
  sip: column_1
  dip: colum_2
  ibyt: column_3 * 8
  spi: column_1
";
    let connectors = [
        ("flows", flows),
        ("unknown", "format: ndjson\npath: alerts.ndjson\nprovides: netflow\n"),
        ("filtered", "format: ndjson\npath: alerts.ndjson\nfilter: severity + 1\n"),
    ];
    let (catalog, root) = catalog(&connectors, &files()).await;
    let mut got = problems(&catalog, root.path());
    got.retain(|p| p.starts_with("connectors/"));
    got.sort();
    assert_eq!(
        got,
        [
            "connectors/filtered.yaml:3:9: connector `filtered`: `filter:` is integer, not a condition",
            "connectors/flows.yaml:10:8: connector `flows`: `spi` is not a column of the standard `flows` schema\n  hint: its columns: treceived, tryear, trmonth, trday, trhour, trminute, trsec, tdur, sip, dip, sport, dport, proto, flag, fwd, stos, ipkt, ibyt, opkt, obyt, input, output, sas, das, dtos, dir, rip; the source's own columns are kept as they are",
            "connectors/flows.yaml:8:8: connector `flows`: column `dip`: unknown column `colum_2`\n  hint: did you mean `column_2`?",
            "connectors/unknown.yaml:3:11: connector `unknown`: there is no standard schema `netflow`\n  hint: use one of flows, dns, proxy, events",
        ]
    );
}

/// Fixed, the same connector loads: mapped columns take the standard types, the columns it
/// has nothing for read empty and are named, and a playbook naming one says so on its page.
#[tokio::test]
async fn a_mapped_connector_fills_the_standard_schema_and_names_what_is_missing() {
    let flows = "format: csv
path: exports/fw-*.csv
has_header: false
delimiter: ';'
provides: flows
columns:
  treceived: from_epoch(1767225600)
  sip: column_1
  dip: column_2
  ibyt: column_3 * 8
";
    let (catalog, root) = catalog(&[("flows", flows)], &files()).await;
    let c = catalog.connectors.iter().find(|c| c.name == "flows").unwrap();
    assert_eq!(c.time_column.as_deref(), Some("treceived"));
    assert!(c.missing.contains(&"dport".to_string()) && c.missing.contains(&"rip".to_string()), "{:?}", c.missing);
    assert!(!c.missing.contains(&"sip".to_string()));
    let schema = c.schema();
    assert_eq!(schema.field_with_name("sport").unwrap().data_type(), &datafusion::arrow::datatypes::DataType::Int32);
    assert_eq!(schema.field_with_name("ibyt").unwrap().data_type(), &datafusion::arrow::datatypes::DataType::Int64);
    let ctx = catalog.session();
    let rows = ctx
        .sql("SELECT sip, dip, ibyt, dport, CAST(treceived AS VARCHAR) AS t FROM flows ORDER BY ibyt")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows).unwrap().to_string();
    assert!(text.contains("| 10.0.0.6 | 198.51.100.8 | 2400  |       | 2026-01-01T00:00:00Z |"), "{text}");
    assert!(text.contains("| 10.0.0.7 | 198.51.100.9 | 36000 |"), "{text}");
    drop(root);
}

/// Writes one Parquet file of the given text columns, one row.
fn parquet(root: &Path, rel: &str, columns: &[(&str, &str)]) {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
    let arrays: Vec<(&str, ArrayRef)> =
        columns.iter().map(|(name, value)| (*name, Arc::new(StringArray::from(vec![*value])) as ArrayRef)).collect();
    let batch = RecordBatch::try_from_iter(arrays).expect("batch");
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&p).expect("file"),
        batch.schema(),
        None,
    )
    .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

/// A folder of hourly Parquet files takes its schema from the oldest and the newest file (a
/// start reads two footers, not one per hour of history): the column the exporter added lately
/// is there, the older hours read it empty; a column only a file in the middle holds is not,
/// until `schema:` names it.
#[tokio::test]
async fn a_parquet_folder_takes_its_schema_from_its_oldest_and_newest_files() {
    let hours = [
        ("logs/date=2026-01-01/hour=00/part.parquet", vec![("host", "ws-01")]),
        ("logs/date=2026-01-01/hour=01/part.parquet", vec![("host", "ws-02"), ("note", "middle")]),
        ("logs/date=2026-01-01/hour=02/part.parquet", vec![("host", "ws-03")]),
        ("logs/date=2026-01-02/hour=00/part.parquet", vec![("host", "ws-04"), ("user", "alice")]),
    ];
    let inferred = "format: parquet\npath: logs\npartitions: [date, hour]\n";
    let declared = "format: parquet\npath: logs\npartitions: [date, hour]\nschema:\n  - { name: host, type: string }\n  - { name: note, type: string }\n  - { name: user, type: string }\n";
    let root = folders(&[("logs", inferred), ("declared", declared)], &[]);
    for (rel, columns) in &hours {
        parquet(&root.path().join("data"), rel, columns);
    }
    let catalog = load(root.path()).await;
    let mut got = problems(&catalog, root.path());
    got.retain(|p| p.starts_with("connectors/"));
    assert_eq!(got, Vec::<String>::new());
    let logs = catalog.connectors.iter().find(|c| c.name == "logs").expect("logs");
    let names: Vec<String> = logs.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["host", "user", "date", "hour"]);
    let ctx = catalog.session();
    let text = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let rows = ctx.sql(sql).await.expect("plan").collect().await.expect("rows");
            datafusion::arrow::util::pretty::pretty_format_batches(&rows).expect("format").to_string()
        }
    };
    let all = text("SELECT host, user FROM logs ORDER BY host").await;
    assert!(all.contains("| ws-01 |       |") && all.contains("| ws-04 | alice |"), "{all}");
    assert_eq!(all.matches("| ws-").count(), 4, "{all}");
    let named = text("SELECT host, note, user FROM declared WHERE note IS NOT NULL").await;
    assert!(named.contains("| ws-02 | middle |"), "{named}");
}
