//! Bring your own data: the same day of flows written as Zeek's conn.log (TSV and JSON),
//! Suricata's eve.json (flow events among alerts), nfdump's CSV and a gzip-compressed CSV,
//! each read through the shipped example connector in `connectors/examples/` with only its
//! `path:` changed. The shipped playbooks run on each unchanged, pass their self-tests, and
//! return the rows they return on the same flows as Parquet (columns a format does not carry
//! read empty, and only those are set aside).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use casebook::catalog::Catalog;
use casebook::engine::Engine;
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tokio::sync::OnceCell;

use crate::common;

/// The playbooks compared; each runs with its first self-test's parameters.
const PLAYBOOKS: [&str; 4] = ["ip_flows", "threat_investigation", "rdp_bruteforce", "suspicious_connects"];

/// Each step's rows as text (sorted: ties in time may come in either order), by step.
type Tables = BTreeMap<String, (Vec<String>, Vec<Vec<String>>)>;

/// The demo's flows at the precision every format here carries (milliseconds, whole seconds
/// of duration), as batches.
async fn base() -> &'static (SessionContext, PathBuf) {
    static BASE: OnceCell<(SessionContext, PathBuf)> = OnceCell::const_new();
    BASE.get_or_init(|| async {
        let ctx = casebook::sql::session::new_session();
        let flows = common::demo_data().join("demo/flows");
        ctx.register_parquet("demo", flows.to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
        ctx.sql(
            "CREATE VIEW base AS SELECT date_trunc('millisecond', treceived) AS treceived, tryear, trmonth, trday, \
             trhour, trminute, trsec, round(tdur) AS tdur, sip, dip, sport, dport, proto, flag, fwd, stos, ipkt, ibyt, \
             opkt, obyt, input, output, sas, das, dtos, dir, rip FROM demo",
        )
        .await
        .unwrap();
        let root = tempfile::tempdir().unwrap().keep();
        (ctx, root)
    })
    .await
}

async fn batches(sql: &str) -> Vec<RecordBatch> {
    let (ctx, _) = base().await;
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

fn csv_text(batches: &[RecordBatch], delimiter: u8, header: bool) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = datafusion::arrow::csv::WriterBuilder::new()
            .with_delimiter(delimiter)
            .with_header(header)
            .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.6fZ".into())
            .build(&mut out);
        for b in batches {
            w.write(b).unwrap();
        }
    }
    out
}

fn json_lines(batches: &[RecordBatch]) -> Vec<u8> {
    let mut w = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    w.into_inner()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

const ZEEK_CONN: &str = "SELECT CAST(treceived AS BIGINT) / 1000000.0 AS ts, concat('C', CAST(ipkt AS VARCHAR), sip) AS uid, \
     sip AS \"id.orig_h\", sport AS \"id.orig_p\", dip AS \"id.resp_h\", dport AS \"id.resp_p\", lower(proto) AS proto, \
     '-' AS service, tdur AS duration, ibyt AS orig_bytes, obyt AS resp_bytes, 'SF' AS conn_state, 'T' AS local_orig, \
     'F' AS local_resp, 0 AS missed_bytes, 'ShADadFf' AS history, ipkt AS orig_pkts, ibyt AS orig_ip_bytes, \
     opkt AS resp_pkts, obyt AS resp_ip_bytes, '(empty)' AS tunnel_parents FROM base";

/// Writes the flows in `format` under a fresh folder; returns the folder.
async fn write_format(format: &str) -> PathBuf {
    let (_, root) = base().await;
    let dir = root.join(format);
    match format {
        "zeek" => {
            let rows = batches(ZEEK_CONN).await;
            let mut text = b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n\
                #open\t2026-01-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\t\
                duration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\t\
                orig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n#types\ttime\tstring\taddr\tport\taddr\tport\t\
                enum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\t\
                set[string]\n"
                .to_vec();
            text.extend(csv_text(&rows, b'\t', false));
            text.extend(b"#close\t2026-01-03-00-00-00\n");
            // Two rotated files, the second gzip-compressed as Zeek's archiver leaves them.
            let cut = text.len() / 2;
            let cut = cut + text[cut..].iter().position(|b| *b == b'\n').unwrap() + 1;
            let header_end = text.windows(11).position(|w| w == b"set[string]").unwrap() + 12;
            write(&dir.join("conn.00:00:00-12:00:00.log"), &text[..cut]);
            let mut second = text[..header_end].to_vec();
            second.extend(&text[cut..]);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&second).unwrap();
            write(&dir.join("conn.12:00:00-00:00:00.log.gz"), &gz.finish().unwrap());
        }
        "zeek-json" => write(&dir.join("conn.log"), &json_lines(&batches(ZEEK_CONN).await)),
        "suricata" => {
            let flows = batches(
                "SELECT to_char(treceived, '%Y-%m-%dT%H:%M:%S%.6f+0000') AS timestamp, 'flow' AS event_type, \
                 sip AS src_ip, sport AS src_port, dip AS dest_ip, dport AS dest_port, proto, \
                 named_struct('pkts_toserver', ipkt, 'pkts_toclient', opkt, 'bytes_toserver', ibyt, \
                 'bytes_toclient', obyt, 'start', to_char(treceived, '%Y-%m-%dT%H:%M:%S%.6f+0000'), \
                 'age', CAST(tdur AS BIGINT), 'state', 'closed') AS flow FROM base",
            )
            .await;
            let alert = br#"{"timestamp":"2026-01-01T10:00:00.000000+0000","event_type":"alert","src_ip":"10.0.0.1","src_port":1,"dest_ip":"10.0.0.2","dest_port":80,"proto":"TCP","alert":{"signature":"ET POLICY test","severity":2}}"#;
            let mut text = Vec::new();
            for b in &flows {
                for i in (0..b.num_rows()).step_by(400) {
                    text.extend_from_slice(alert);
                    text.push(b'\n');
                    text.extend(json_lines(&[b.slice(i, 400.min(b.num_rows() - i))]));
                }
            }
            write(&dir.join("eve.json"), &text);
        }
        "nfdump" => {
            let rows = batches(
                "SELECT to_char(treceived, '%Y-%m-%d %H:%M:%S%.3f') AS ts, to_char(treceived, '%Y-%m-%d %H:%M:%S%.3f') AS te, \
                 tdur AS td, sip AS sa, dip AS da, sport AS sp, dport AS dp, proto AS pr, flag AS flg, fwd, stos, ipkt, \
                 ibyt, opkt, obyt, input AS \"in\", output AS out, sas, das, 0 AS smk, 0 AS dmk, dtos, dir, \
                 '0.0.0.0' AS nh, '0.0.0.0' AS nhb, 0 AS svln, 0 AS dvln, '00:00:00:00:00:00' AS ismc, \
                 '00:00:00:00:00:00' AS odmc, 0 AS cl, 0 AS sl, 0 AS al, rip AS ra, '0/0' AS eng, 1 AS exid, \
                 to_char(treceived, '%Y-%m-%d %H:%M:%S%.3f') AS tr FROM base",
            )
            .await;
            write(&dir.join("nfcapd.csv"), &csv_text(&rows, b',', true));
        }
        "gzip" => {
            let rows = batches("SELECT * FROM base").await;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&csv_text(&rows, b',', true)).unwrap();
            write(&dir.join("flows-2026-01-01.csv.gz"), &gz.finish().unwrap());
        }
        "parquet" => {
            let (ctx, _) = base().await;
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("flows.parquet");
            ctx.sql(&format!("COPY (SELECT * FROM base ORDER BY treceived) TO '{}' STORED AS PARQUET", file.display()))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
        }
        other => panic!("no such format {other}"),
    }
    dir
}

/// The connector for `format`: the shipped example as a user copies it, `path:` pointed at
/// the files.
fn connector(format: &str, dir: &Path) -> String {
    let example = match format {
        "zeek" => "zeek_conn.yaml",
        "zeek-json" => "zeek_conn_json.yaml",
        "suricata" => "suricata_eve.yaml",
        "nfdump" => "nfdump.yaml",
        "gzip" | "parquet" => {
            let f = if format == "gzip" { "csv" } else { "parquet" };
            return format!("description: the same flows\nformat: {f}\npath: {}\nprovides: flows\n", dir.display());
        }
        other => panic!("no such format {other}"),
    };
    let text = std::fs::read_to_string(common::repo().join("connectors/examples").join(example)).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix("path: ") {
            // The example's path, under the folder the files were written to.
            Some(p) => format!("path: {}", dir.parent().unwrap().join(p).display()),
            None => l.to_string(),
        })
        .collect();
    lines.join("\n") + "\n"
}

/// The shipped connectors, with `name` replaced by `yaml`; the catalog over them, its
/// secrets in `root/secrets.yaml`.
async fn catalog_with(name: &str, yaml: &str, root: &Path) -> Arc<Catalog> {
    let dir = root.join("connectors");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(common::repo().join("connectors")).unwrap().flatten() {
        let p = e.path();
        if p.is_file() && p.file_name().unwrap() != format!("{name}.yaml").as_str() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
    let mut paths = common::paths_with(common::demo_data());
    paths.connectors = dir;
    let secrets = casebook::secrets::Secrets::new(Some(root.join("secrets.yaml")));
    Arc::new(Catalog::load_with(paths, chrono_tz::Tz::UTC, secrets).await)
}

/// Runs the playbooks on `format` and returns their tables, after checking the self-tests.
async fn run_on(format: &str) -> (Tables, Vec<String>) {
    let dir = write_format(format).await;
    let yaml = connector(format, &dir);
    let (tables, missing, catalog) = run_playbooks("flows", &yaml, &PLAYBOOKS).await;
    // A playbook that names a column the data lacks says so on its page (and still runs).
    let notices = &catalog.entry("ip_flows").unwrap().notices;
    if missing.contains(&"rip".to_string()) {
        assert!(
            notices.len() == 1
                && notices[0].contains(
                    "has no `flag`, `stos`, `input`, `output`, `dtos`, `dir`, `rip`: step `flows` shows them empty"
                ),
            "{format}: {notices:?}"
        );
    } else {
        assert!(notices.is_empty(), "{format}: {notices:?}");
    }
    (tables, missing)
}

/// Runs `playbooks` with connector `name` read through `yaml`: their self-tests must pass;
/// returns every step's table and the standard columns the connector lacks.
async fn run_playbooks(name: &str, yaml: &str, playbooks: &[&str]) -> (Tables, Vec<String>, Arc<Catalog>) {
    run_playbooks_with(name, yaml, playbooks, "").await
}

/// [`run_playbooks`] with `secrets` (YAML) in the catalog's secrets file.
async fn run_playbooks_with(
    name: &str,
    yaml: &str,
    playbooks: &[&str],
    secrets: &str,
) -> (Tables, Vec<String>, Arc<Catalog>) {
    let root = tempfile::tempdir().unwrap();
    if !secrets.is_empty() {
        common::write_secrets(&root.path().join("secrets.yaml"), secrets);
    }
    let catalog = catalog_with(name, yaml, root.path()).await;
    let problems: Vec<String> = catalog.problems().map(|p| p.to_string()).collect();
    assert!(problems.is_empty(), "{name}: {problems:#?}");
    let missing = catalog.connectors.iter().find(|c| c.name == name).unwrap().missing.clone();
    let store = casebook::store::Store::open(&root.path().join("state.sqlite")).unwrap();
    let engine = Arc::new(Engine::new(catalog.clone(), store));
    let mut tables = Tables::new();
    for id in playbooks {
        let pb = catalog.entry(id).unwrap().runnable().unwrap().clone();
        for o in casebook::jobs::selftest::run(&engine, &pb).await {
            assert!(o.passed(), "{name}: {id} › {}: {:?}", o.test, o.failures);
        }
        let given: Vec<(&str, &str)> = pb.tests[0].params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = common::run_all(&engine, id, &given).await;
        for s in out.steps.iter().filter(|s| s.rows.is_some()) {
            let data = engine.step_data(&out.run_id, &s.id).unwrap();
            let columns: Vec<String> = data.schema.fields().iter().map(|f| f.name().clone()).collect();
            let mut rows = Vec::new();
            for b in &data.batches {
                for r in 0..b.num_rows() {
                    rows.push(
                        b.columns()
                            .iter()
                            .map(|c| normal(&casebook::results::cell_text(c, r, chrono_tz::Tz::UTC)))
                            .collect(),
                    );
                }
            }
            rows.sort();
            tables.insert(format!("{id}.{}", s.id), (columns, rows));
        }
    }
    (tables, missing, catalog)
}

/// Numbers computed by parallel sums may differ in the last bits: compare 9 digits.
fn normal(text: &str) -> String {
    match text.parse::<f64>() {
        Ok(v) if text.contains('.') || text.contains('e') => format!("{v:.9e}"),
        _ => text.to_string(),
    }
}

async fn reference() -> &'static Tables {
    static REF: OnceCell<Tables> = OnceCell::const_new();
    REF.get_or_init(|| async { run_on("parquet").await.0 }).await
}

/// Runs `format` and compares every step's table with the Parquet reference. A column may
/// differ only when the format lacks it (the connector names it missing) and it reads empty.
async fn same_rows_as_parquet(format: &str, expect_missing: &[&str]) {
    let (tables, missing) = run_on(format).await;
    assert_eq!(missing, expect_missing, "{format}: the standard columns it lacks");
    same_tables(format, &tables, &missing, reference().await);
}

fn same_tables(format: &str, tables: &Tables, missing: &[String], reference: &Tables) {
    assert_eq!(tables.keys().collect::<Vec<_>>(), reference.keys().collect::<Vec<_>>(), "{format}: steps");
    let mut compared = 0;
    for (step, (columns, rows)) in tables {
        let (ref_columns, ref_rows) = &reference[step];
        assert_eq!(columns, ref_columns, "{format}: columns of {step}");
        assert_eq!(rows.len(), ref_rows.len(), "{format}: rows of {step}");
        let keep: Vec<usize> = (0..columns.len())
            .filter(|&i| !(missing.contains(&columns[i]) && rows.iter().all(|r| r[i].is_empty())))
            .collect();
        let pick = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
            let mut out: Vec<Vec<String>> = rows.iter().map(|r| keep.iter().map(|&i| r[i].clone()).collect()).collect();
            out.sort();
            out
        };
        let (got, want) = (pick(rows), pick(ref_rows));
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            panic!("{format}: {step} differs from Parquet at row {i}:\n  got  {:?}\n  want {:?}", got[i], want[i]);
        }
        compared += got.len();
    }
    assert!(compared > 100, "{format}: only {compared} rows compared");
}

const NO_FLOW_DETAILS: [&str; 11] =
    ["flag", "fwd", "stos", "input", "output", "sas", "das", "dtos", "dir", "rip", "tryear"];

#[tokio::test]
async fn zeek_conn_log_tsv_plain_and_gzip_rotated_gives_the_parquet_rows() {
    same_rows_as_parquet("zeek", &NO_FLOW_DETAILS[..10]).await;
}

#[tokio::test]
async fn zeek_conn_log_json_gives_the_parquet_rows() {
    same_rows_as_parquet("zeek-json", &NO_FLOW_DETAILS[..10]).await;
}

#[tokio::test]
async fn suricata_eve_json_flow_events_give_the_parquet_rows() {
    same_rows_as_parquet(
        "suricata",
        &[
            "tryear", "trmonth", "trday", "trhour", "trminute", "trsec", "flag", "fwd", "stos", "input", "output",
            "sas", "das", "dtos", "dir", "rip",
        ],
    )
    .await;
}

#[tokio::test]
async fn nfdump_csv_gives_the_parquet_rows() {
    same_rows_as_parquet("nfdump", &[]).await;
}

#[tokio::test]
async fn a_gzip_compressed_csv_gives_the_parquet_rows() {
    same_rows_as_parquet("gzip", &[]).await;
}

/// The demo's DNS answers with the client in `ip_src` and the resolver in `ip_dst` (as most
/// tools name them, the other way round from Spot), read by a connector that only maps
/// the two columns: `suspicious_dns` passes its self-tests and finds what it finds on the
/// shipped data. The same answers as Zeek's dns.log through the shipped example too.
#[tokio::test]
async fn a_dns_log_whose_client_is_ip_src_works_with_suspicious_dns_through_a_mapping_alone() {
    let (ctx, root) = base().await;
    let dns = common::demo_data().join("demo/dns");
    ctx.register_parquet("dns_demo", dns.to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
    let rows = batches(
        "SELECT frame_time AS ts, frame_len AS len, ip_dst AS ip_src, ip_src AS ip_dst, dns_qry_name AS query, \
         dns_qry_class AS qclass, dns_qry_type AS qtype, dns_qry_rcode AS rcode, dns_a AS answers FROM dns_demo",
    )
    .await;
    let file = root.join("own-dns/dns.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&csv_text(&rows, b',', true)).unwrap();
    write(&file, &gz.finish().unwrap());
    let mapped = format!(
        "format: csv\npath: {}\nprovides: dns\ncolumns:\n  frame_time: ts\n  unix_tstamp: CAST(date_part('epoch', ts) AS BIGINT)\n  \
         frame_len: len\n  ip_dst: ip_src\n  ip_src: ip_dst\n  dns_qry_name: query\n  dns_qry_class: qclass\n  \
         dns_qry_type: qtype\n  dns_qry_rcode: rcode\n  dns_a: answers\n",
        file.display()
    );
    let shipped = std::fs::read_to_string(common::repo().join("connectors/dns.yaml")).unwrap();
    let (want, _, _) = run_playbooks("dns", &shipped, &["suspicious_dns"]).await;
    let (got, missing, _) = run_playbooks("dns", &mapped, &["suspicious_dns"]).await;
    assert!(missing.is_empty(), "{missing:?}");
    same_tables("dns with ip_src", &got, &missing, &want);

    // Zeek's dns.log: client = id.orig_h; answers as a set; rcode and qtype numbers.
    let zeek = batches(
        "SELECT CAST(frame_time AS BIGINT) / 1000000.0 AS ts, 'C1' AS uid, ip_dst AS \"id.orig_h\", 53000 AS \"id.orig_p\", \
         ip_src AS \"id.resp_h\", 53 AS \"id.resp_p\", 'udp' AS proto, 1 AS trans_id, dns_qry_name AS query, \
         dns_qry_class AS qclass, dns_qry_type AS qtype, dns_qry_rcode AS rcode, \
         CASE WHEN dns_a = '' THEN '-' ELSE dns_a END AS answers FROM dns_demo",
    )
    .await;
    let mut text = b"#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\tquery\t\
        qclass\tqtype\trcode\tanswers\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tstring\tcount\tcount\t\
        count\tvector[string]\n"
        .to_vec();
    text.extend(csv_text(&zeek, b'\t', false));
    write(&root.join("zeek-dns/dns.log"), &text);
    let example = std::fs::read_to_string(common::repo().join("connectors/examples/zeek_dns.yaml")).unwrap();
    let example = example.replace("path: zeek-dns", &format!("path: {}", root.join("zeek-dns").display()));
    let (_, missing, _) = run_playbooks("dns", &example, &["suspicious_dns"]).await;
    assert_eq!(missing, ["frame_len"]);
}

/// A real PostgreSQL server (Debian's, installed by `scripts/install-postgres.sh`) in a
/// temporary folder on a free port of 127.0.0.1, run as an unprivileged user when the tests
/// run as root; stopped when dropped.
#[cfg(feature = "postgres")]
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<String>,
    port: u16,
}

#[cfg(feature = "postgres")]
impl Postgres {
    fn command(&self, program: &str) -> std::process::Command {
        let exe = self.bin.join(program);
        match &self.user {
            Some(u) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        }
    }

    fn start(password: &str) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path().join("bin")).find(|b| b.join("initdb").exists()))
            .expect("PostgreSQL's initdb (scripts/install-postgres.sh installs it)");
        let root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let user = root.then(|| {
            let known = |u: &str| std::process::Command::new("id").arg(u).output().is_ok_and(|o| o.status.success());
            if known("postgres") {
                "postgres".to_string()
            } else {
                "nobody".to_string()
            }
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), password).unwrap();
        if let Some(u) = &user {
            let ok = std::process::Command::new("chown").args(["-R", u]).arg(dir.path()).status().unwrap();
            assert!(ok.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut pg = Postgres { dir, bin, user, port };
        let data = pg.dir.path().join("data");
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "casebook", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"])
            .arg(format!("--pwfile={}", pg.dir.path().join("pw").display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let opts = format!("-h 127.0.0.1 -p {} -k {} -c fsync=off", pg.port, pg.dir.path().display());
        let out = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-o", &opts, "-l"])
            .arg(pg.dir.path().join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        pg.port = port;
        pg
    }

    /// Runs SQL through psql as `casebook` (the server's superuser).
    fn psql(&self, db: &str, sql: &str, password: &str) {
        let out = std::process::Command::new(self.bin.join("psql"))
            .env("PGPASSWORD", password)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "casebook",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[cfg(feature = "postgres")]
impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A day of the demo's flows in a PostgreSQL table, read through a connector whose password
/// is a named secret: the shipped playbooks run unchanged and return the Parquet rows; a
/// wrong password says so without showing it.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_postgresql_table_gives_the_parquet_rows() {
    let password = "pg-s3cret-for-casebook";
    let pg = Postgres::start(password);
    let csv = pg.dir.path().join("flows.csv");
    std::fs::write(&csv, csv_text(&batches("SELECT * FROM base").await, b',', true)).unwrap();
    pg.psql("postgres", "CREATE DATABASE netflow", password);
    pg.psql(
        "netflow",
        "CREATE TABLE flows (treceived timestamptz, tryear int, trmonth int, trday int, trhour int, trminute int, \
         trsec int, tdur double precision, sip text, dip text, sport int, dport int, proto text, flag text, fwd int, \
         stos int, ipkt bigint, ibyt bigint, opkt bigint, obyt bigint, input int, output int, sas int, das int, dtos int, \
         dir int, rip text)",
        password,
    );
    pg.psql("netflow", &format!("\\copy flows FROM '{}' CSV HEADER", csv.display()), password);
    pg.psql("netflow", "CREATE INDEX ON flows (treceived); ANALYZE flows", password);
    let yaml = format!(
        "description: the demo's flows in PostgreSQL\nformat: postgres\ntable: public.flows\nconnection:\n  host: 127.0.0.1\n  \
         port: {}\n  db: netflow\n  user: casebook\n  sslmode: disable\npassword_secret: PG_PASSWORD\nprovides: flows\n",
        pg.port
    );
    {
        // The time window, a port and the limit go to the database; casebook's ip_in does not.
        let root = tempfile::tempdir().unwrap();
        common::write_secrets(&root.path().join("secrets.yaml"), &format!("PG_PASSWORD: {password}\n"));
        let catalog = catalog_with("flows", &yaml, root.path()).await;
        let ctx = catalog.session();
        let q =
            "EXPLAIN SELECT sip, dip FROM flows WHERE treceived >= TIMESTAMP '2026-01-01T00:00:00Z' AND dport = 443 \
                 AND ip_in(sip, '10.0.0.0/8') LIMIT 5";
        let plan =
            datafusion::arrow::util::pretty::pretty_format_batches(&ctx.sql(q).await.unwrap().collect().await.unwrap())
                .unwrap()
                .to_string();
        let sent = plan.lines().find(|l| l.contains("SELECT") && l.contains("FROM")).unwrap_or_default().to_string();
        assert!(sent.contains("\"dport\" = 443") && sent.contains("treceived"), "{plan}");
        assert!(!sent.contains("ip_in"), "{plan}");
    }
    let (tables, missing, _) =
        run_playbooks_with("flows", &yaml, &PLAYBOOKS, &format!("PG_PASSWORD: {password}\n")).await;
    assert!(missing.is_empty(), "{missing:?}");
    same_tables("postgres", &tables, &missing, reference().await);

    // A wrong password: the connector says it cannot read the table, and nothing shows the
    // password it was given.
    let root = tempfile::tempdir().unwrap();
    common::write_secrets(&root.path().join("secrets.yaml"), "PG_PASSWORD: not-the-password\n");
    let catalog = catalog_with("flows", &yaml, root.path()).await;
    let problems: Vec<String> = catalog.connector_problems.iter().map(|p| p.to_string()).collect();
    assert!(
        problems.len() == 1 && problems[0].contains("connector `flows`: cannot read table `public.flows`"),
        "{problems:?}"
    );
    assert!(!problems[0].contains("not-the-password") && !problems[0].contains(password), "{problems:?}");
}

/// The rows a data platform's API serves: the flows under its own field names, with the
/// time as RFC 3339 text.
async fn api_rows() -> Vec<(i64, serde_json::Value)> {
    let rows = batches(
        "SELECT CAST(treceived AS BIGINT) AS micros, to_char(treceived, '%Y-%m-%dT%H:%M:%S%.6fZ') AS ts, \
         sip AS src_ip, sport AS src_port, dip AS dst_ip, dport AS dst_port, proto AS protocol, tdur AS duration, \
         ipkt AS pkts_out, ibyt AS bytes_out, opkt AS pkts_in, obyt AS bytes_in FROM base",
    )
    .await;
    let text = String::from_utf8(json_lines(&rows)).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let micros = v["micros"].as_i64().unwrap();
            v.as_object_mut().unwrap().remove("micros");
            (micros, v)
        })
        .collect()
}

/// A data platform's HTTP API on 127.0.0.1 (`kind: http_table`): the window as request
/// parameters, 2,500 rows a page, a key in a header, one 429 to retry. The shipped playbooks
/// run on it unchanged and return the Parquet rows.
#[tokio::test]
async fn a_data_platform_http_api_gives_the_parquet_rows() {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone)]
    struct Api {
        rows: Arc<Vec<(i64, serde_json::Value)>>,
        asked: Arc<AtomicUsize>,
        windows: Arc<std::sync::Mutex<Vec<String>>>,
    }
    async fn flows(
        State(api): State<Api>,
        headers: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
    ) -> (StatusCode, [(&'static str, &'static str); 1], String) {
        if api.asked.fetch_add(1, Ordering::SeqCst) == 0 {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "slow down".into());
        }
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("platform-key-123") {
            return (StatusCode::UNAUTHORIZED, [("x-why", "key")], "no key".into());
        }
        let t = |k: &str| chrono::DateTime::parse_from_rfc3339(&q[k]).unwrap().timestamp_micros();
        let (from, to) = (t("from"), t("to"));
        api.windows.lock().unwrap().push(format!("{}..{}", q["from"], q["to"]));
        let page: usize = q["page"].parse().unwrap();
        let size: usize = q["size"].parse().unwrap();
        let chosen: Vec<&serde_json::Value> = api
            .rows
            .iter()
            .filter(|(m, _)| *m >= from && *m <= to)
            .map(|(_, v)| v)
            .skip((page - 1) * size)
            .take(size)
            .collect();
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            serde_json::json!({ "data": chosen, "page": page }).to_string(),
        )
    }
    let api = Api {
        rows: Arc::new(api_rows().await),
        asked: Arc::new(AtomicUsize::new(0)),
        windows: Arc::new(std::sync::Mutex::new(Vec::new())),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/api/flows", axum::routing::get(flows)).with_state(api.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let yaml = format!(
        "kind: http_table
name: flows
description: the platform's flow API
url: http://{addr}/api/flows
params: {{ from: '{{start}}', to: '{{end}}' }}
page_param: page
page_size_param: size
page_size: 2500
rows: /data
auth_header: x-api-key
secret: PLATFORM_KEY
rate_limit: 200/s
time_column: ts
schema:
  - {{ name: ts, type: timestamp }}
  - {{ name: src_ip, type: string }}
  - {{ name: src_port, type: int32 }}
  - {{ name: dst_ip, type: string }}
  - {{ name: dst_port, type: int32 }}
  - {{ name: protocol, type: string }}
  - {{ name: duration, type: float }}
  - {{ name: pkts_out, type: integer }}
  - {{ name: bytes_out, type: integer }}
  - {{ name: pkts_in, type: integer }}
  - {{ name: bytes_in, type: integer }}
provides: flows
columns:
  treceived: ts
  sip: src_ip
  sport: src_port
  dip: dst_ip
  dport: dst_port
  proto: protocol
  tdur: duration
  ipkt: pkts_out
  ibyt: bytes_out
  opkt: pkts_in
  obyt: bytes_in
"
    );
    let (tables, missing, _) = run_playbooks_with("flows", &yaml, &PLAYBOOKS, "PLATFORM_KEY: platform-key-123\n").await;
    assert!(missing.contains(&"rip".to_string()) && !missing.contains(&"sip".to_string()), "{missing:?}");
    same_tables("http api", &tables, &missing, reference().await);
    // It was asked for windows, page by page, and retried the one 429.
    let windows = api.windows.lock().unwrap().clone();
    assert!(windows.len() > 10 && windows.iter().all(|w| w.contains("..")), "{windows:?}");
    assert!(api.asked.load(Ordering::SeqCst) > windows.len());

    // Without the key the run's step says the platform refused, and shows no key.
    let root = tempfile::tempdir().unwrap();
    common::write_secrets(&root.path().join("secrets.yaml"), "PLATFORM_KEY: wrong-key\n");
    let catalog = catalog_with("flows", &yaml, root.path()).await;
    let ctx = catalog.session();
    let err = ctx
        .sql("SELECT count(*) FROM flows WHERE treceived >= now() - INTERVAL '1 day' AND treceived < now()")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let (message, _) = casebook::sql::session::clean_error(&err);
    assert!(message.contains("`flows` refused the request (HTTP 401)"), "{message}");
    assert!(!message.contains("wrong-key"));
    // A query without a window is told what to give.
    let err = ctx.sql("SELECT count(*) FROM flows").await.unwrap().collect().await.unwrap_err();
    assert!(casebook::sql::session::clean_error(&err).0.contains("answers only for a time window"), "{err}");

    // Health on the management page asks it for the last day, with the right key.
    let root = tempfile::tempdir().unwrap();
    common::write_secrets(&root.path().join("secrets.yaml"), "PLATFORM_KEY: platform-key-123\n");
    let catalog = catalog_with("flows", &yaml, root.path()).await;
    let paths = catalog.paths.clone();
    let store = casebook::store::Store::open(&root.path().join("state.sqlite")).unwrap();
    let engine = Arc::new(Engine::new(catalog, store));
    let app = common::app(casebook::web::AppState::new(engine, paths).unwrap());
    let page = {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let r =
            app.oneshot(axum::http::Request::get("/manage").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).to_string()
    };
    let health = page.split("id=\"health\"").nth(1).unwrap_or_default();
    let row = health.split_once("<code>flows</code>").and_then(|(_, s)| s.split("</tr>").next()).unwrap_or_default();
    assert!(row.contains("✓") && row.contains("answers for the last day"), "{row}");
    server.abort();
}
