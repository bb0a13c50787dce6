//! Big-result benchmark: a step whose table is every flow of a demo day (10,000,000 rows by
//! default), paged, sorted, searched and exported through the real router and engine, with
//! the process's resident memory read before and during each phase.
//!
//! Run: `cargo bench --bench big_result` (release build; BENCH_FLOWS=N, BENCH_HOURS=H for
//! other sizes). Prints p50/p95/max per kind of page and the peak RSS of each phase.
//! Target on the 2-core reference machine: every page under 150 ms once its sort or search
//! is made; the export's download streams (RSS does not grow while it is read).

// Test and bench code may stop at the first surprise; the lints guard product code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use casebook::catalog::Catalog;
use casebook::engine::{Engine, RunRequest};
use casebook::store::Store;
use casebook::util::paths::Paths;

mod common;
use common::stats;

const PLAYBOOK: &str = "title: Every flow\nparams:\n  window: { type: time_range, default: last 30d }\nsections:\n  \
- title: All\n    steps:\n      - id: all\n        query:\n          sql: |\n            SELECT treceived, sip, \
sport, dip, dport, proto, flag, ipkt, ibyt, opkt, obyt, tdur FROM flows\n            WHERE treceived >= \
$window.start AND treceived < $window.end\n";

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Samples RSS every 10 ms while a phase runs; the highest reading.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max((rss_mb() * 1024.0) as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler { stop, peak, thread }
    }

    fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

static SESSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    (status, r.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).header(header::COOKIE, SESSION.get().unwrap()).body(Body::empty()).unwrap()
}

#[tokio::main]
async fn main() {
    let flows: usize = std::env::var("BENCH_FLOWS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let hours: u32 = std::env::var("BENCH_HOURS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let opts = casebook::demo::Options { rows: flows, seed: 42, hours, end: None };
    println!("{}", casebook::demo::generate(dir.path(), &opts).unwrap());
    println!("demo generation: {:.1} s", t.elapsed().as_secs_f64());
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(playbooks.join("every_flow.yaml"), PLAYBOOK).unwrap();
    let paths = Paths {
        playbooks,
        connectors: root.join("connectors"),
        data: dir.path().to_path_buf(),
        widgets: root.join("widgets"),
        web: root.join("web"),
    };
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    assert_eq!(catalog.problems().count(), 0, "{:?}", catalog.problems().collect::<Vec<_>>());
    let engine = Arc::new(Engine::new(catalog.clone(), Store::open(&paths.state_db()).unwrap()));
    let hash = casebook::auth::hash_password("bench password, long enough").unwrap();
    engine.store.add_account("bench", casebook::store::accounts::Role::Analyst, &[], Some(&hash)).unwrap();
    let (token, _) = casebook::auth::start_session(&engine.store, "bench").unwrap();
    SESSION.set(format!("casebook_csrf=0123456789abcdef0123456789abcdef; casebook_session={token}")).unwrap();
    let app = casebook::web::app(casebook::web::AppState::new(engine.clone(), paths.clone()).unwrap());
    println!("RSS before the run: {:.0} MB", rss_mb());

    let pb = catalog.entry("every_flow").and_then(|e| e.runnable()).unwrap().clone();
    let cx = catalog.parse_ctx();
    let values = pb.params.iter().map(|p| (p.name.clone(), p.parse(None, &cx).unwrap())).collect();
    let sampler = Sampler::start();
    let t = Instant::now();
    let request = RunRequest {
        playbook: pb,
        values,
        section: None,
        who: "bench".into(),
        source: "bench".into(),
        schedule_id: None,
        keep: None,
    };
    let out = engine.run(request).await.unwrap();
    let n = engine.step_data(&out.run_id, "all").unwrap().rows;
    let file = paths.run_dir(&out.run_id).join("all.parquet");
    let file_mb = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "run storing a {n}-row table ({file_mb:.0} MB of Parquet): {:.1} s, peak RSS {:.0} MB, after {:.0} MB",
        t.elapsed().as_secs_f64(),
        sampler.stop(),
        rss_mb()
    );

    let table = format!("/runs/{}/steps/all/table", out.run_id);
    let page = |q: String| {
        let app = app.clone();
        let uri = format!("{table}?size=25&{q}");
        async move {
            let t = Instant::now();
            let (s, body) = send(&app, get(&uri)).await;
            assert_eq!(s, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&body));
            t.elapsed()
        }
    };
    let sampler = Sampler::start();
    let spread = |k: usize| 1 + (k * 7919) % (n / 25).max(1);
    let mut plain = Vec::new();
    for k in 0..30 {
        plain.push(page(format!("page={}", spread(k))).await);
    }
    println!("first page of the table, as the results page shows it: {:.1} ms", plain[0].as_secs_f64() * 1e3);
    stats(&format!("page of 25 of {n} rows, stored order"), plain);
    // Each sort or search: its first page makes the row order, the pages after reuse it.
    let sorts: Vec<String> = ["ibyt", "treceived", "sip", "proto"]
        .iter()
        .flat_map(|col| ["desc", "asc"].map(|dir| format!("sort={col}&dir={dir}")))
        .collect();
    let searches: Vec<String> = ["10.0.20.14", "198.51.100", "8080"].iter().map(|q| format!("q={q}")).collect();
    let views = [("sort", sorts, (0..6).map(spread).collect::<Vec<_>>()), ("search", searches, (1..=5).collect())];
    for (what, views, pages) in views {
        let (mut first, mut next) = (Vec::new(), Vec::new());
        for view in &views {
            for (k, p) in pages.iter().enumerate() {
                let d = page(format!("page={p}&{view}")).await;
                if k == 0 {
                    println!("  first page of {view}: {:.1} ms", d.as_secs_f64() * 1e3);
                    first.push(d)
                } else {
                    next.push(d)
                }
            }
        }
        stats(&format!("first page of a new {what}"), first);
        stats(&format!("next pages of that {what}"), next);
    }
    println!("peak RSS while paging: {:.0} MB", sampler.stop());

    let t = Instant::now();
    let sampler = Sampler::start();
    let rec = engine.export(&out.run_id, "all", "csv", "bench").await.unwrap();
    println!(
        "export as CSV: {:.1} s, {:.0} MB, peak RSS {:.0} MB",
        t.elapsed().as_secs_f64(),
        rec.bytes as f64 / 1e6,
        sampler.stop()
    );
    let before = rss_mb();
    let sampler = Sampler::start();
    let t = Instant::now();
    let r = app.clone().oneshot(get(&format!("/exports/{}", rec.key))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.into_body();
    let mut bytes = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes += data.len();
        }
    }
    println!(
        "download of the export: {:.0} MB in {:.1} s; RSS before {before:.0} MB, peak while reading {:.0} MB",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        sampler.stop()
    );
    println!("reproduce: cargo bench --bench big_result   (BENCH_FLOWS=N BENCH_HOURS=H for other sizes)");
}
