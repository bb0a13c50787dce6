//! Hostile input: SQL in every parameter of every shipped playbook, `../` in every path
//! value of every route, oversized bodies and lists, and a bounded corpus of mangled
//! playbook YAML, CSV and Parquet. Nothing may panic, answer 500 or lose what is saved.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use casebook::store::accounts::Role;
use casebook::web::AppState;

use crate::common;

const CSRF: &str = "0123456789abcdef0123456789abcdef";

/// Strings that would change a query if they were pasted into its text.
const INJECTIONS: [&str; 5] = [
    "' OR 1=1 --",
    "10.0.0.1'); DROP TABLE runs; --",
    "\" UNION SELECT * FROM ratings --",
    "$window.start",
    "1; SELECT pg_sleep(10)",
];

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let r = app.clone().oneshot(req).await.expect("response");
    let status = r.status();
    let body = r.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    (status, String::from_utf8_lossy(&body).to_string())
}

/// A tiny deterministic generator, so a failing case can be reproduced from its number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `text` with a few bytes flipped, cut, doubled or removed.
fn mangle(text: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = text.to_vec();
    for _ in 0..=rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(5) {
            0 => out[at] = (rng.next() & 0xff) as u8,
            1 => out.truncate(at),
            2 => {
                let end = (at + 1 + rng.below(40)).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
            3 => {
                let end = (at + 1 + rng.below(20)).min(out.len());
                out.drain(at..end);
            }
            _ => out.insert(at, b"\t:-[{&*!|>'\"%@`"[rng.below(15)]),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_every_parameter_of_every_playbook_stays_a_value() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let hash = casebook::auth::hash_password(common::PASSWORD).expect("hash");
    engine.store.add_account("keep", Role::Analyst, &[], Some(&hash)).expect("account");
    let saved = common::run_all(&engine, "rdp_bruteforce", &[]).await.run_id;
    let app = common::app(AppState::new(engine.clone(), common::paths_with(data.path())).expect("state"));
    let catalog = engine.catalog();
    let mut refused = 0;
    let mut started = Vec::new();
    for entry in &catalog.playbooks {
        let Some(pb) = entry.runnable() else { continue };
        for p in &pb.params {
            for bad in INJECTIONS {
                let body = serde_json::json!({ "playbook": pb.id, "params": { p.name.clone(): bad }, "section": 0 });
                let req = Request::post("/api/runs")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .expect("request");
                let (status, text) = send(&app, req).await;
                match status {
                    StatusCode::UNPROCESSABLE_ENTITY => {
                        refused += 1;
                        assert!(text.contains(&p.name), "{}.{}: the field is named: {text}", pb.id, p.name);
                    }
                    StatusCode::ACCEPTED => {
                        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
                        started.push((pb.id.clone(), p.name.clone(), v["run_id"].as_str().unwrap_or("").to_string()));
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        // One person's limit on runs at once: wait for theirs to finish.
                        wait_idle(&engine).await;
                    }
                    other => panic!("{}.{} = {bad:?}: {other} {text}", pb.id, p.name),
                }
            }
        }
    }
    wait_idle(&engine).await;
    assert!(refused > 20 && !started.is_empty(), "{refused} refused, {} started", started.len());
    for (pb, param, run) in &started {
        let rec = engine.store.run(run).expect("db").expect("recorded");
        let err = rec.error.unwrap_or_default().to_lowercase();
        assert!(!err.contains("sql") && !err.contains("syntax") && !err.contains("parser"), "{pb}.{param}: {err}");
    }
    assert!(engine.store.run(&saved).expect("db").is_some(), "the earlier run is still there");
    assert!(engine.store.account("keep").expect("db").is_some());
}

async fn wait_idle(engine: &Arc<casebook::engine::Engine>) {
    let start = std::time::Instant::now();
    while engine.store.active_runs_of(common::ME).unwrap_or(0) > 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(300), "runs did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn dot_dot_in_every_path_value_and_oversized_bodies_are_refused_cleanly() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let cookie = format!("{}; casebook_csrf={CSRF}", common::sign_in(&engine.store, "admin", Role::Admin));
    let app = casebook::web::app(AppState::new(engine.clone(), common::paths_with(data.path())).expect("state"));
    for r in casebook::web::routes() {
        if !r.path.contains('{') {
            continue;
        }
        for evil in ["..%2F..%2F..%2Fetc%2Fpasswd", "....%2F%2F....%2F%2Fcasebook.sqlite", "%2e%2e", "..\\..\\x"] {
            let uri: String = r
                .path
                .split('/')
                .map(|s| if s.starts_with('{') { evil.to_string() } else { s.to_string() })
                .collect::<Vec<_>>()
                .join("/");
            let req = Request::builder()
                .method(r.method.clone())
                .uri(&uri)
                .header(header::COOKIE, &cookie)
                .header("x-csrf-token", CSRF)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("_csrf={CSRF}")))
                .expect("request");
            let (status, body) = send(&app, req).await;
            assert!(status.is_client_error(), "{} {uri}: {status} {body}", r.method);
            assert!(!body.contains("root:") && !body.contains("SQLite format"), "{uri} served a file");
        }
    }
    // A body far over what a form needs, and a list of a hundred thousand values.
    let big = format!("_csrf={CSRF}&window=last+7d&src={}", "1".repeat(4 << 20));
    let req = Request::post("/p/ip_flows/run/0")
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", CSRF)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(big))
        .expect("request");
    let (status, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let many: Vec<String> = (0..100_000).map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)).collect();
    let body = serde_json::json!({ "playbook": "ip_flows", "params": { "src": many, "window": "last 7d" } });
    let req = Request::post("/api/runs")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let (status, text) = send(&app, req).await;
    assert!(status.is_client_error(), "{status} {text}");
    assert!(engine.store.all_runs().expect("runs").is_empty(), "nothing ran");
    let (status, _) = send(&app, Request::get("/health").body(Body::empty()).expect("request")).await;
    assert_eq!(status, StatusCode::OK, "still serving");
}

#[tokio::test]
async fn mangled_playbooks_csv_and_parquet_give_problems_never_a_panic() {
    let data = common::fresh_data();
    let root = tempfile::tempdir().expect("dir");
    let (pb_dir, conn_dir) = (root.path().join("playbooks"), root.path().join("connectors"));
    std::fs::create_dir_all(&pb_dir).expect("dir");
    std::fs::create_dir_all(&conn_dir).expect("dir");
    let mut paths = common::paths_with(data.path());
    paths.playbooks = pb_dir.clone();
    let shipped: Vec<Vec<u8>> = casebook::catalog::yaml_files(&common::paths_with(data.path()).playbooks)
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect();
    let catalog = casebook::catalog::Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut problems = 0;
    // Bounded: a fixed number of cases, the same on every run.
    for case in 0..300 {
        let original = &shipped[case % shipped.len()];
        let file = pb_dir.join(format!("case{case}.yaml"));
        std::fs::write(&file, mangle(original, &mut rng)).expect("write");
        let entry = catalog.load_playbook(&file).await;
        problems += usize::from(!entry.problems.is_empty());
        for p in &entry.problems {
            assert!(p.to_string().contains(&format!("case{case}.yaml")), "case {case}: {p}");
        }
        std::fs::remove_file(&file).expect("remove");
    }
    assert!(problems > 100, "{problems} of 300 mangled playbooks have problems");

    // Mangled data files: the step fails with a message, the run is recorded, nothing panics.
    let csv = b"host,score\n10.0.0.1,9\n10.0.0.2,1\n\"10.0.0.3\",7\n".to_vec();
    fn first_parquet(dir: &std::path::Path) -> Option<std::path::PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
        entries.sort();
        entries
            .iter()
            .find(|p| p.extension().is_some_and(|x| x == "parquet"))
            .cloned()
            .or_else(|| entries.iter().filter(|p| p.is_dir()).find_map(|d| first_parquet(d)))
    }
    let demo_parquet = first_parquet(&data.path().join("demo/flows")).expect("a demo parquet file");
    let parquet = std::fs::read(&demo_parquet).expect("parquet");
    std::fs::write(conn_dir.join("c.yaml"), "format: csv\npath: mangled_csv\n").expect("connector");
    std::fs::write(conn_dir.join("p.yaml"), "format: parquet\npath: mangled_parquet\n").expect("connector");
    std::fs::write(
        pb_dir.join("read.yaml"),
        "title: Read\nsections:\n  - title: S\n    steps:\n      - id: c\n        query:\n          connector: c\n          sql: SELECT * FROM c\n      - id: p\n        query:\n          connector: p\n          sql: SELECT * FROM p\n",
    )
    .expect("playbook");
    paths.connectors = conn_dir;
    for d in ["mangled_csv", "mangled_parquet"] {
        std::fs::create_dir_all(data.path().join(d)).expect("dir");
    }
    let (mut failed, mut ran) = (0, 0);
    for case in 0..30 {
        std::fs::write(data.path().join("mangled_csv/a.csv"), mangle(&csv, &mut rng)).expect("csv");
        let mut p = parquet.clone();
        for _ in 0..=rng.below(8) {
            let at = rng.below(p.len());
            p[at] ^= (rng.next() & 0xff) as u8 | 1;
        }
        std::fs::write(data.path().join("mangled_parquet/a.parquet"), p).expect("parquet");
        let catalog = Arc::new(casebook::catalog::Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
        let engine = Arc::new(casebook::engine::Engine::new(
            catalog.clone(),
            casebook::store::Store::open(&paths.state_db()).expect("store"),
        ));
        let Some(pb) = catalog.entry("read").and_then(|e| e.runnable()).cloned() else {
            continue; // a connector that cannot be read is reported at load: also fine
        };
        let req = casebook::engine::RunRequest::new(pb, vec![], "t", "test");
        let out = engine.run(req).await.unwrap_or_else(|e| panic!("case {case}: the run was not recorded: {e:#}"));
        ran += 1;
        for s in out.steps.iter().filter_map(|s| s.error.as_ref()) {
            failed += 1;
            assert!(!s.is_empty() && !s.contains("panicked"), "case {case}: {s}");
        }
    }
    assert!(ran > 0 && failed > 0, "{ran} runs; some mangled files fail to read, and say so ({failed})");
}
