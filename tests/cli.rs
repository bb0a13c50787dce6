//! The `casebook` binary as an author and an analyst run it.

use std::process::Command;

use casebook::demo::cast;

use crate::common;

fn casebook() -> Command {
    Command::new(env!("CARGO_BIN_EXE_casebook"))
}

#[test]
fn check_reports_a_missing_column_with_its_position_and_exits_1() {
    let data = common::fresh_data();
    let pb = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        pb.path().join("bad.yaml"),
        "title: Bad\nsections:\n  - title: S\n    steps:\n      - id: a\n        query:\n          sql: |\n            SELECT treceived, bytez\n            FROM flows\n",
    )
    .expect("write");
    let out = casebook()
        .args(["check", "--playbooks"])
        .arg(pb.path())
        .arg("--data")
        .arg(data.path())
        .arg("--connectors")
        .arg(common::repo().join("connectors"))
        .output()
        .expect("run casebook");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let expected = format!("{}/bad.yaml:8:31: step `a`: unknown column `bytez`", pb.path().display());
    assert!(stdout.contains(&expected), "expected {expected}\ngot: {stdout}");
}

#[test]
fn check_passes_on_the_shipped_playbooks() {
    let data = common::fresh_data();
    let out = casebook().current_dir(common::repo()).args(["check", "--data"]).arg(data.path()).output().expect("run");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_rdp_bruteforce_as_csv_prints_the_attacker_first() {
    let data = common::fresh_data();
    let out = casebook()
        .current_dir(common::repo())
        .args(["run", "playbooks/network/rdp_bruteforce.yaml", "--format", "csv", "--data"])
        .arg(data.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let data_rows: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(data_rows[0].starts_with("source,connections"), "{stdout}");
    assert!(data_rows[1].starts_with(&format!("{},", cast::SCANNER)), "{stdout}");
}

#[test]
fn run_stores_and_prints_hidden_tables_only_when_asked() {
    let data = common::fresh_data();
    let work = tempfile::tempdir().expect("tempdir");
    let run = |extra: &[&str], trace: &std::path::Path| {
        let out = casebook()
            .current_dir(common::repo())
            .args(["run", "rdp_bruteforce", "--format", "csv", "--trace"])
            .arg(trace)
            .args(extra)
            .arg("--data")
            .arg(data.path())
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let steps: Vec<serde_json::Value> = std::fs::read_to_string(trace)
            .expect("trace")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("done").is_some())
            .collect();
        (String::from_utf8_lossy(&out.stdout).to_string(), steps)
    };
    // `top_flows` is hidden: the chart and two tables read it, a page does not show it.
    let file_of = |steps: &[serde_json::Value], id: &str| {
        let s = steps.iter().find(|s| s["done"] == id).unwrap_or_else(|| panic!("step {id} in {steps:?}"));
        assert!(s["rows"].as_u64().unwrap_or(0) > 0, "{s}");
        s["file"].as_str().map(std::path::PathBuf::from)
    };
    let (printed, steps) = run(&[], &work.path().join("plain.jsonl"));
    assert!(!printed.contains("# step: top_flows"), "{printed}");
    assert!(printed.contains("# step: attempts"), "{printed}");
    assert_eq!(file_of(&steps, "top_flows"), None);
    assert!(file_of(&steps, "attempts").is_some_and(|f| f.is_file()));
    let (printed, steps) = run(&["--keep-hidden"], &work.path().join("kept.jsonl"));
    assert!(printed.contains("# step: top_flows"), "{printed}");
    assert!(file_of(&steps, "top_flows").is_some_and(|f| f.is_file()));
}

#[test]
fn run_refuses_bad_parameters_with_a_message() {
    let data = common::fresh_data();
    let out = casebook()
        .current_dir(common::repo())
        .args([
            "run",
            "ip_flows",
            "--param",
            "src=10.0.0.300",
            "--param",
            "window=2026-02-05 15:00 .. 2026-02-05 14:00",
            "--data",
        ])
        .arg(data.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--param src: not an IP address or CIDR: `10.0.0.300`"), "{stderr}");
    assert!(stderr.contains("--param window: the start of the time range must be before its end"), "{stderr}");
}

#[test]
fn demo_is_deterministic_for_a_seed() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    for d in [a.path(), b.path()] {
        let st = casebook()
            .args(["demo", "--rows", "20000", "--seed", "7", "--end", "2026-02-06T00:00:00Z", "--data"])
            .arg(d)
            .status()
            .expect("demo");
        assert!(st.success());
    }
    let read = |d: &std::path::Path| {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("demo/manifest.json")).expect("manifest")).expect("json");
        (m["flows"].clone(), m["dns"].clone(), m["events"].clone())
    };
    assert_eq!(read(a.path()), read(b.path()));
    let part = "demo/flows/date=2026-02-05/hour=02/part-0.parquet";
    assert_eq!(std::fs::read(a.path().join(part)).expect("a"), std::fs::read(b.path().join(part)).expect("b"));
}

#[test]
fn self_tests_of_every_shipped_playbook_pass() {
    let data = common::fresh_data();
    let out = casebook().current_dir(common::repo()).args(["test", "--data"]).arg(data.path()).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
    assert!(!stdout.contains("no tests"), "every shipped playbook has tests: {stdout}");
}

#[test]
fn a_failing_self_test_names_the_playbook_the_test_and_the_step() {
    let data = common::fresh_data();
    let pb = tempfile::tempdir().expect("tempdir");
    let yaml = std::fs::read_to_string(common::repo().join("playbooks/network/rdp_bruteforce.yaml"))
        .expect("read")
        .replace("first: 10.0.10.25", "first: 10.9.9.9");
    std::fs::write(pb.path().join("rdp_bruteforce.yaml"), yaml).expect("write");
    let out = casebook()
        .current_dir(common::repo())
        .args(["test", "rdp_bruteforce", "--playbooks"])
        .arg(pb.path())
        .arg("--data")
        .arg(data.path())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("✗ rdp_bruteforce › the demo's RDP attacker ranks first and its scan is listed › step `attempts`: expected the first `source` to be `10.9.9.9`, got `10.0.10.25`"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

#[test]
fn run_threat_investigation_lists_the_scanned_24_as_outbound_peers() {
    let data = common::fresh_data();
    let out = casebook()
        .current_dir(common::repo())
        .args(["run", "threat_investigation", "--param", &format!("ip={}", cast::SCANNER), "--step", "peers"])
        .args(["--format", "csv", "--data"])
        .arg(data.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let scanned: Vec<&str> = stdout.lines().filter(|l| l.starts_with("10.0.20.") && l.contains(",outbound,")).collect();
    let hosts: std::collections::BTreeSet<&str> = scanned.iter().filter_map(|l| l.split(',').next()).collect();
    assert_eq!(hosts.len(), 254, "every address of 10.0.20.0/24 is an outbound peer:\n{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("10.0.20.") && !l.contains(",outbound,")), "{stdout}");
}

/// README's first command on a fresh clone: `serve` with an empty data folder generates the
/// demo data (1,000,000 flows), prints the address and serves the shipped playbooks.
#[tokio::test]
async fn serve_on_an_empty_data_folder_generates_the_demo_and_lists_the_playbooks() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = common::Server::start(["--data".as_ref(), data.path().as_os_str()]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("demo/manifest.json")).expect("demo manifest"))
            .expect("json");
    assert!(manifest["flows"].as_u64().unwrap_or(0) >= 1_000_000, "{manifest}");

    // The first start without accounts prints a one-time link that makes the administrator.
    assert!(server.setup.as_deref().is_some_and(|l| l.contains("/setup/")), "a setup link is printed");
    let signed_out = reqwest::get(format!("http://{}/", server.addr)).await.expect("index");
    assert!(
        signed_out.url().path().starts_with("/login") || signed_out.status() == 401,
        "signed out: {}",
        signed_out.url()
    );
    let me = server.session().await;
    let (_, index) = server.get(&me, "/").await;
    let cards = index.matches("class=\"card").count();
    assert!(cards >= 3, "{cards} playbooks listed");
    for title in ["IP flows between hosts", "RDP brute force and scanning", "Event timeline in time buckets"] {
        assert!(index.contains(title), "{title} is not listed");
    }
    let (status, _) = server.get(&me, "/p/rdp_bruteforce").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let css = reqwest::get(format!("http://{}/static/casebook.css", server.addr)).await.expect("css");
    assert_eq!(css.status(), reqwest::StatusCode::OK);
}

/// `serve` over connectors that read only one's own files writes no demo data, and says
/// how to get it.
#[test]
fn serve_generates_the_demo_only_for_connectors_that_read_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    std::fs::create_dir_all(data.join("own")).expect("dirs");
    std::fs::write(data.join("own/hosts.csv"), "ip,name\n10.0.0.1,gateway\n").expect("csv");
    let connectors = root.path().join("connectors");
    std::fs::create_dir_all(&connectors).expect("dir");
    std::fs::write(connectors.join("hosts.yaml"), "format: csv\npath: own/hosts.csv\n").expect("yaml");
    let log = root.path().join("serve.log");
    let server = common::Server::start_logged(
        [
            "--data".as_ref(),
            data.as_os_str(),
            "--connectors".as_ref(),
            connectors.as_os_str(),
            "--playbooks".as_ref(),
            root.path().join("none").as_os_str(),
        ],
        Some(&log),
    );
    drop(server);
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(said.contains("No connector reads demo/: no demo data generated (serve --demo generates it)."), "{said}");
    assert!(!data.join("demo").exists());
}

/// Whether a DNS hour file is sorted by client and then time, and how many data pages its
/// `ip_dst` has. Its time column has no dictionary.
fn sorted_by_client(file: &std::path::Path) -> (bool, usize) {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;
    use datafusion::parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use datafusion::parquet::file::metadata::PageIndexPolicy;
    let open = || std::fs::File::open(file).expect("hour file");
    let b = ParquetRecordBatchReaderBuilder::try_new_with_options(
        open(),
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
    )
    .expect("parquet");
    let meta = b.metadata().clone();
    let column = |name: &str| {
        meta.file_metadata().schema_descr().columns().iter().position(|c| c.name() == name).expect("a DNS column")
    };
    let ip_dst = column("ip_dst");
    let pages: usize =
        meta.offset_index().map(|groups| groups.iter().map(|g| g[ip_dst].page_locations().len()).sum()).unwrap_or(0);
    let frame_time = column("frame_time");
    for g in meta.row_groups() {
        assert!(g.column(frame_time).dictionary_page_offset().is_none(), "{}: a dictionary of times", file.display());
    }
    let mut last: Option<(String, i64)> = None;
    for batch in b.build().expect("reader") {
        let batch = batch.expect("batch");
        let clients = batch.column_by_name("ip_dst").expect("ip_dst").as_string::<i32>().clone();
        let times = batch.column_by_name("frame_time").expect("frame_time");
        let times = times.as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            let row = (clients.value(i).to_string(), times.value(i));
            if last.as_ref().is_some_and(|l| *l > row) || clients.is_null(i) {
                return (false, pages);
            }
            last = Some(row);
        }
    }
    (true, pages)
}

/// A one-client DNS search on data casebook laid out (the demo, then `casebook compact`):
/// each hour's file is sorted by client, then time, in pages of 2,048 rows (times without a
/// dictionary), so the page index skips every page but the client's, and the count equals
/// that of a scan that cannot skip.
#[test]
fn dns_hours_are_sorted_by_client_and_a_one_client_search_reads_its_pages() {
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let out = casebook()
        .current_dir(common::repo())
        .args(["demo", "--rows", "400000", "--hours", "3", "--seed", "11", "--data"])
        .arg(&data)
        .output()
        .expect("demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hour_files = |root: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(root)
            .expect("dns folder")
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .map(|h| h.path().join("part-0.parquet"))
            .filter(|f| f.is_file())
            .collect()
    };
    let demo_files = hour_files(&data.join("demo").join("dns"));
    assert!(demo_files.len() >= 3, "{demo_files:?}");
    for f in &demo_files {
        let (sorted, pages) = sorted_by_client(f);
        assert!(sorted && pages >= 5, "{}: sorted {sorted}, {pages} pages", f.display());
    }
    let compacted = work.path().join("dns-compacted");
    let out = casebook()
        .current_dir(common::repo())
        .args(["compact", "dns", "--out"])
        .arg(&compacted)
        .arg("--data")
        .arg(&data)
        .output()
        .expect("compact");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    for f in hour_files(&compacted) {
        let (sorted, pages) = sorted_by_client(&f);
        assert!(sorted && pages >= 5, "{}: sorted {sorted}, {pages} pages", f.display());
    }
    let connectors = work.path().join("connectors");
    std::fs::create_dir(&connectors).expect("mkdir");
    for e in std::fs::read_dir(common::repo().join("connectors")).expect("connectors").flatten() {
        if e.path().is_file() && e.file_name() != "dns.yaml" {
            std::fs::copy(e.path(), connectors.join(e.file_name())).expect("copy");
        }
    }
    std::fs::write(connectors.join("dns.yaml"), &yaml).expect("write");
    // The infected host of the demo's DNS tunnel: one client among hundreds.
    let pb = work.path().join("one_client.yaml");
    std::fs::write(
        &pb,
        "title: One client\nparams:\n  ip: { type: ip_list, default: 10.0.1.203 }\nsections:\n  - title: S\n    steps:\n      \
         - id: paged\n        query:\n          sql: SELECT count(*) AS n FROM dns WHERE ip_in(ip_dst, $ip)\n      \
         - id: whole\n        query:\n          sql: SELECT count(*) AS n FROM dns WHERE concat(ip_dst, '') = $ip\n",
    )
    .expect("playbook");
    for conn in [common::repo().join("connectors"), connectors] {
        let trace = work.path().join("trace.jsonl");
        let _ = std::fs::remove_file(&trace);
        let out = casebook()
            .current_dir(common::repo())
            .arg("run")
            .arg(&pb)
            .args(["--format", "json", "--trace"])
            .arg(&trace)
            .arg("--connectors")
            .arg(&conn)
            .arg("--data")
            .arg(&data)
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
            .expect("trace")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        let scan = |step: &str| {
            lines.iter().find(|l| l["step"] == step && l["sql"].is_string()).expect("query")["scan"].clone()
        };
        let (paged, whole) = (scan("paged"), scan("whole"));
        let read = |s: &serde_json::Value| s["rows"].as_u64().unwrap_or(0);
        assert!(read(&whole) > 20_000, "{whole}");
        assert!(read(&paged) * 5 <= read(&whole), "the page index skips most rows: {paged} against {whole}");
        let tables: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json tables");
        let n = |step: &str| tables[step][0]["n"].as_u64().unwrap_or(0);
        assert!(n("paged") > 0 && n("paged") == n("whole"), "{tables}");
    }
}

/// `casebook compact` rewrites a connector's data as hourly, time-sorted Parquet with bloom
/// filters; the connector it prints gives a playbook the same rows, and `run --trace` shows
/// the bloom filters skipping the row groups of a search for an address the data lacks (the
/// usual answer when an analyst checks an indicator). 10.0.2.5 sorts between the files'
/// smallest and largest `sip`, so their min/max statistics cannot skip it; the bloom filters can.
#[test]
fn compact_lays_data_out_by_hour_and_a_one_address_search_skips_row_groups() {
    let data = common::fresh_data();
    let work = tempfile::tempdir().expect("tempdir");
    let out_dir = work.path().join("flows-compacted");
    let out = casebook()
        .current_dir(common::repo())
        .args(["compact", "flows", "--out"])
        .arg(&out_dir)
        .arg("--data")
        .arg(data.path())
        .output()
        .expect("compact");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(yaml.contains("partitions: [date, hour]") && yaml.contains("provides: flows"), "{yaml}");
    let hours = std::fs::read_dir(&out_dir)
        .expect("out")
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|h| h.path().join("part-0.parquet").is_file())
        .count();
    assert!(hours >= 48, "{hours} hour files");
    // The shipped connectors with flows read from the compacted copy.
    let connectors = work.path().join("connectors");
    std::fs::create_dir(&connectors).expect("mkdir");
    for e in std::fs::read_dir(common::repo().join("connectors")).expect("connectors").flatten() {
        if e.path().is_file() && e.file_name() != "flows.yaml" {
            std::fs::copy(e.path(), connectors.join(e.file_name())).expect("copy");
        }
    }
    std::fs::write(connectors.join("flows.yaml"), &yaml).expect("write");
    let csv = |conn: &std::path::Path| {
        let out = casebook()
            .current_dir(common::repo())
            .args(["run", "rdp_bruteforce", "--format", "csv", "--connectors"])
            .arg(conn)
            .arg("--data")
            .arg(data.path())
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // The same rows (a step that orders by minute alone may list a minute's rows in any order).
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(csv(&connectors)), sorted(csv(&common::repo().join("connectors"))));
    // One address, as `ip_in` over an address list (the planner makes it `sip = …`): the trace
    // names the SQL, its bound value, and the row groups skipped.
    let pb = work.path().join("one_host.yaml");
    std::fs::write(
        &pb,
        "title: One host\nparams:\n  ip: { type: ip_list, default: 10.0.2.5 }\nsections:\n  - title: S\n    steps:\n      \
         - id: flows_of\n        query:\n          sql: SELECT count(*) AS n FROM flows WHERE ip_in(sip, $ip)\n",
    )
    .expect("playbook");
    let trace = work.path().join("trace.jsonl");
    let out = casebook()
        .current_dir(common::repo())
        .args(["run"])
        .arg(&pb)
        .args(["--format", "csv", "--trace"])
        .arg(&trace)
        .arg("--connectors")
        .arg(&connectors)
        .arg("--data")
        .arg(data.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let query = lines.iter().find(|l| l["sql"].is_string()).expect("a query line");
    assert_eq!(query["params"]["ip"]["value"], "10.0.2.5", "{query}");
    let scan = &query["scan"];
    assert!(scan["files"].as_u64() >= Some(48), "{scan}");
    let (groups, pruned) = (scan["row_groups"].as_u64().unwrap_or(0), scan["row_groups_pruned"].as_u64().unwrap_or(0));
    assert!(groups >= 48 && pruned * 10 >= groups * 9, "bloom filters skip the row groups: {scan}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n0"), "{}", String::from_utf8_lossy(&out.stdout));
    let done = lines.iter().find(|l| l["done"] == "flows_of").expect("a step line");
    assert_eq!(done["rows"], 1, "{done}");
}
