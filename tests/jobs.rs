//! Runs as jobs: cancel stops a long query promptly, a limit bounds how many run at once,
//! and a run time limit ends a run with a clear message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use casebook::catalog::Catalog;
use casebook::engine::{Engine, Limits, RunRequest};

use crate::common;

const SLOW: &str = "title: Slow
sections:
  - title: S
    steps:
      - id: pairs
        query:
          sql: SELECT count(*) AS n FROM flows a JOIN flows b ON a.sport + b.sport = a.dport * 1000 + b.dport
";

async fn engine(data: &std::path::Path, extra: &[(&str, &str)], limits: Limits) -> (Arc<Engine>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(common::repo().join("playbooks/network/rdp_bruteforce.yaml"), dir.path().join("rdp_bruteforce.yaml"))
        .expect("copy");
    for (name, text) in extra {
        std::fs::write(dir.path().join(format!("{name}.yaml")), text).expect("write");
    }
    let mut paths = common::paths_with(data);
    paths.playbooks = dir.path().to_path_buf();
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    assert_eq!(catalog.problems().count(), 0, "{:?}", catalog.problems().collect::<Vec<_>>());
    let store = casebook::store::Store::open(&paths.state_db()).expect("store");
    (Arc::new(Engine::with_limits(catalog, store, limits)), dir)
}

fn request(engine: &Engine, id: &str) -> RunRequest {
    let catalog = engine.catalog();
    let pb = catalog.entry(id).and_then(|e| e.runnable()).expect("runnable").clone();
    let cx = catalog.parse_ctx();
    let values = pb.params.iter().map(|p| (p.name.clone(), p.parse(None, &cx).expect("default"))).collect();
    RunRequest::new(pb, values, "ana", "test").keeping(None)
}

async fn wait_state(engine: &Engine, run: &str, state: &str) {
    let t = Instant::now();
    while engine.store.run(run).expect("db").map(|r| r.state.to_string()) != Some(state.to_string()) {
        assert!(t.elapsed() < Duration::from_secs(20), "run never became {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_long_query_within_two_seconds() {
    let data = common::fresh_data();
    let (engine, _dir) = engine(data.path(), &[("slow", SLOW)], Limits::default()).await;
    let id = "00000000000000000000000000000abc".to_string();
    let e = engine.clone();
    let req = request(&engine, "slow");
    let task = tokio::spawn(async move { e.run_with_id(req, "00000000000000000000000000000abc".into()).await });
    wait_state(&engine, &id, "running").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!task.is_finished(), "the query should take several seconds");
    let asked = Instant::now();
    assert!(engine.cancel(&id));
    let outcome = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("stopped within 2 s")
        .expect("join")
        .expect("run");
    assert!(asked.elapsed() < Duration::from_secs(2));
    let rec = engine.store.run(&outcome.run_id).expect("db").expect("run");
    assert_eq!((rec.state.as_str(), rec.error.as_deref()), ("cancelled", Some("cancelled by the analyst")));
    assert!(!engine.cancel(&id), "nothing left to cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_time_limit_ends_a_run_with_a_message() {
    let data = common::fresh_data();
    let limits = Limits { timeout: Duration::from_secs(1), ..Limits::default() };
    let (engine, _dir) = engine(data.path(), &[("slow", SLOW)], limits).await;
    let t = Instant::now();
    let out = engine.run(request(&engine, "slow")).await.expect("run");
    assert!(t.elapsed() < Duration::from_secs(3));
    let rec = engine.store.run(&out.run_id).expect("db").expect("run");
    assert_eq!(rec.state, "failed");
    assert_eq!(rec.error.as_deref(), Some("stopped after the run time limit of 1 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_says_what_to_do_not_datafusions_settings() {
    let data = common::fresh_data();
    let limits = Limits { memory_bytes: 1 << 20, ..Limits::default() };
    let (engine, _dir) = engine(data.path(), &[], limits).await;
    let out = engine.run(request(&engine, "rdp_bruteforce")).await.expect("run");
    let failed = out.steps.iter().find(|s| s.error.is_some()).expect("a step over 1 MB fails");
    let err = failed.error.clone().unwrap_or_default();
    assert!(err.contains("needs more memory than one run may use") && err.contains("narrow the time window"), "{err}");
    assert!(err.contains("--run-memory-mb"), "the hint says who can raise it: {err}");
    assert!(!err.contains("datafusion.") && !err.contains("ExternalSorter"), "{err}");
    assert_eq!(engine.store.run(&out.run_id).expect("db").expect("run").state, "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_the_limit_run_at_once_and_all_finish() {
    let data = common::fresh_data();
    let limits = Limits { concurrent: 4, ..Limits::default() };
    let (engine, _dir) = engine(data.path(), &[], limits).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let e = engine.clone();
            let req = request(&engine, "rdp_bruteforce");
            tokio::spawn(async move { e.run(req).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let out = t.await.expect("join").expect("run");
        assert!(out.steps.iter().all(|s| s.error.is_none()));
        ok += 1;
    }
    assert_eq!(ok, 20);
    assert!(engine.peak_running() <= 4, "peak {}", engine.peak_running());
    assert!(engine.peak_running() >= 2, "runs did overlap: peak {}", engine.peak_running());
    let runs = engine.store.recent_runs("rdp_bruteforce", 100).expect("runs");
    assert_eq!(runs.iter().filter(|r| r.state == "succeeded").count(), 20);
}
