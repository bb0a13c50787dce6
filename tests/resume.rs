//! Long investigations in chunks: a 7-day run processed hour by hour, its server killed with
//! SIGKILL half-way and started again, resumes after its last finished chunk and ends with
//! exactly the tables of an uninterrupted run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use casebook::engine::{Engine, RunRequest};
use casebook::store::Store;

use crate::common;

const CHUNKED: &str = "title: Chunked pairs
params:
  window: { type: time_range, required: true }
sections:
  - title: Pairs
    steps:
      - id: per_hour
        title: Pairs per hour
        query:
          chunks: { over: window, by: 1h }
          sql: |
            WITH f AS (
              SELECT sip, dip, dport, treceived,
                     date_part('epoch', treceived)
                       - lag(date_part('epoch', treceived)) OVER (PARTITION BY sip, dip, dport ORDER BY treceived) AS gap
              FROM flows
              WHERE treceived >= $window.start AND treceived < $window.end
            )
            SELECT sip, dip, dport, count(*) AS n, count(gap) AS gaps, coalesce(sum(gap), 0) AS gap_sum,
                   min(treceived) AS first_seen
            FROM f GROUP BY sip, dip, dport
      - id: totals
        query:
          sql: SELECT sip, sum(n) AS n, count(*) AS pairs FROM per_hour GROUP BY sip
";

/// The 7 days that end where the demo data ends, as the form takes them.
fn week() -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::demo_data().join("demo/manifest.json")).expect("manifest"))
            .expect("json");
    let end = chrono::DateTime::parse_from_rfc3339(manifest["end"].as_str().expect("end")).expect("end time");
    let start = end - chrono::Duration::days(7);
    format!("{} .. {}", start.format("%Y-%m-%dT%H:%M"), end.format("%Y-%m-%dT%H:%M"))
}

fn playbooks() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("chunked.yaml"), CHUNKED).expect("write");
    dir
}

/// A table's rows as sorted CSV lines (chunks are in order; rows inside one may not be).
fn rows(engine: &Engine, run: &str, step: &str) -> Vec<String> {
    let data = engine.step_data(run, step).expect("stored table");
    let mut out = Vec::new();
    casebook::results::formats::write_delimited(
        &mut out,
        &data.schema,
        casebook::results::formats::in_memory(&data),
        chrono_tz::Tz::UTC,
    )
    .expect("csv");
    let mut lines: Vec<String> = String::from_utf8(out).expect("utf8").lines().map(String::from).collect();
    lines.sort();
    lines
}

fn start(data: &Path, playbooks: &Path) -> common::Server {
    let connectors = common::repo().join("connectors");
    common::Server::start([
        "--data".as_ref(),
        data.as_os_str(),
        "--playbooks".as_ref(),
        playbooks.as_os_str(),
        "--connectors".as_ref(),
        connectors.as_os_str(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_week_killed_half_way_resumes_and_equals_an_uninterrupted_run() {
    let pb_dir = playbooks();
    let window = week();

    // The reference: the same run, uninterrupted.
    let ref_data = common::fresh_data();
    let mut paths = common::paths_with(ref_data.path());
    paths.playbooks = pb_dir.path().to_path_buf();
    let catalog = Arc::new(casebook::catalog::Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    assert_eq!(catalog.problems().count(), 0, "{:?}", catalog.problems().collect::<Vec<_>>());
    let reference = Arc::new(Engine::new(catalog.clone(), Store::open(&paths.state_db()).expect("store")));
    let pb = catalog.entry("chunked").and_then(|e| e.runnable()).expect("runnable").clone();
    let values = vec![("window".to_string(), pb.params[0].parse(Some(&window), &catalog.parse_ctx()).expect("window"))];
    let req = RunRequest {
        playbook: pb,
        values,
        section: None,
        who: "ref".into(),
        source: "test".into(),
        schedule_id: None,
        keep: None,
    };
    let done = reference.run(req).await.expect("reference run");
    assert!(done.steps.iter().all(|s| s.error.is_none()), "{:?}", done.steps);
    assert_eq!(reference.store.chunks(&done.run_id, "per_hour").expect("chunks").len(), 168, "7 days of hours");

    // The same run on a real server, killed half-way.
    let data = common::fresh_data();
    let server = start(data.path(), pb_dir.path());
    let addr = server.addr.clone();
    let http = reqwest::Client::new();
    let me = server.session().await;
    let (cookie, token) = (me.cookie.clone(), me.csrf.clone());
    let run = "5eed0000000000000000000000000001";
    let post = {
        let http = http.clone();
        let url = format!("http://{addr}/p/chunked/run/0");
        let form = [("_csrf", token.clone()), ("_run", run.to_string()), ("window", window.clone())];
        let cookie = cookie.clone();
        tokio::spawn(async move { http.post(url).header("cookie", cookie).form(&form).send().await })
    };
    let store = Store::open(&common::paths_with(data.path()).state_db()).expect("store beside the server");
    let started = Instant::now();
    let killed_at = loop {
        let n = store.chunks(run, "per_hour").unwrap_or_default().len();
        if n >= 20 {
            break n;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the run did not get going ({n} chunks)");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(server); // SIGKILL
    let _ = post.await;
    let after_kill = store.chunks(run, "per_hour").expect("chunks");
    let state = store.run(run).expect("read").expect("the run is recorded").state;
    assert_eq!(state, "running", "killed half-way: {} of 168 chunks", after_kill.len());
    assert!(after_kill.len() >= killed_at && after_kill.len() < 168, "{} chunks", after_kill.len());
    let chunk_dir = data.path().join("runs").join(run).join("per_hour.chunks");
    let mtime = |i: usize| -> SystemTime {
        std::fs::metadata(chunk_dir.join(format!("{i:06}.parquet"))).and_then(|m| m.modified()).expect("chunk file")
    };
    let before: Vec<SystemTime> = (0..after_kill.len()).map(mtime).collect();

    // Restarted, the server resumes the run by itself.
    let _server = start(data.path(), pb_dir.path());
    let started = Instant::now();
    loop {
        let state = store.run(run).expect("read").expect("run").state;
        if state != "running" && state != "queued" {
            assert_eq!(state, "succeeded", "{:?}", store.run(run));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the resumed run did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.chunks(run, "per_hour").expect("chunks").len(), 168);
    let after: Vec<SystemTime> = (0..before.len()).map(mtime).collect();
    assert_eq!(before, after, "chunks finished before the kill were read back, not executed again");

    let mut paths = common::paths_with(data.path());
    paths.playbooks = pb_dir.path().to_path_buf();
    let catalog = Arc::new(casebook::catalog::Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let resumed = Engine::new(catalog, Store::open(&paths.state_db()).expect("store"));
    for step in ["per_hour", "totals"] {
        let (a, b) = (rows(&reference, &done.run_id, step), rows(&resumed, run, step));
        assert!(a.len() > 100, "{step}: {} rows", a.len());
        assert_eq!(a, b, "step {step}: the resumed run equals the uninterrupted one");
    }
}
