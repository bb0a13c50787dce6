//! A reputation service over HTTP against a real server on 127.0.0.1 that answers well,
//! 429, 500, garbage, nothing or 404: the run completes within its budget, every row carries
//! a readable lookup status, answers are cached across runs, and the API key never shows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use casebook::catalog::Catalog;
use casebook::engine::{Engine, RunRequest};
use casebook::results::paging::TableQuery;

use crate::common;

const KEY: &str = "test-key-7f3a9c";

type Hits = Arc<Mutex<HashMap<String, usize>>>;

async fn answer(State(hits): State<Hits>, Path(ip): Path<String>, headers: HeaderMap) -> Response {
    *hits.lock().unwrap().entry(ip.clone()).or_default() += 1;
    if headers.get("x-apikey").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match ip.as_str() {
        "1.1.1.1" => axum::Json(serde_json::json!({"data": {"attributes": {"reputation": -5, "as_owner": "Good Net", "last_analysis_stats": {"malicious": 0}}}})).into_response(),
        "2.2.2.2" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "slow down").into_response(),
        "3.3.3.3" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "4.4.4.4" => (StatusCode::OK, "<html>this is not json").into_response(),
        "5.5.5.5" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

const PLAYBOOK: &str = "title: Reputation
sections:
  - title: S
    steps:
      - id: hosts
        query:
          sql: SELECT * FROM (VALUES ('1.1.1.1'), ('2.2.2.2'), ('3.3.3.3'), ('4.4.4.4'), ('5.5.5.5'), ('6.6.6.6'), ('1.1.1.1')) AS t(ip)
      - id: rated
        enrich: { from: hosts, ip: [ip], reputation: vt }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reputation_service_leaves_readable_statuses_and_nothing_lost() {
    let hits: Hits = Arc::default();
    let app = axum::Router::new().route("/v3/ip_addresses/{ip}", axum::routing::get(answer)).with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let data = common::fresh_data();
    let dir = tempfile::tempdir().unwrap();
    let (pb_dir, conn_dir) = (dir.path().join("playbooks"), dir.path().join("connectors"));
    std::fs::create_dir_all(&pb_dir).unwrap();
    std::fs::create_dir_all(&conn_dir).unwrap();
    std::fs::write(pb_dir.join("rep.yaml"), PLAYBOOK).unwrap();
    std::fs::write(
        conn_dir.join("vt.yaml"),
        format!(
            "kind: http\ndescription: test reputation\nbase_url: http://{addr}/v3\npath: /ip_addresses/{{value}}\n\
             auth_header: x-apikey\nsecret: TEST_VT_KEY\nrate_limit: 50/s\ntimeout_s: 0.5\nretries: 2\nbackoff_ms: 50\n\
             budget_s: 20\nfields:\n  reputation: /data/attributes/reputation\n  owner: /data/attributes/as_owner\n"
        ),
    )
    .unwrap();
    common::write_secrets(&data.path().join("secrets.yaml"), &format!("TEST_VT_KEY: {KEY}\n"));
    let mut paths = common::paths_with(data.path());
    paths.playbooks = pb_dir;
    paths.connectors = conn_dir;
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let problems: Vec<String> = catalog.problems().map(|p| p.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let engine = Arc::new(Engine::new(catalog.clone(), casebook::store::Store::open(&paths.state_db()).unwrap()));
    let pb = catalog.entry("rep").and_then(|e| e.runnable()).unwrap().clone();
    let run = || RunRequest {
        playbook: pb.clone(),
        values: vec![],
        section: None,
        who: "t".into(),
        source: "test".into(),
        schedule_id: None,
        keep: None,
    };

    let started = Instant::now();
    let out = engine.run(run()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(out.steps.iter().all(|s| s.error.is_none()), "{:?}", out.steps);
    let table = |run: String| {
        let engine = engine.clone();
        async move {
            let page =
                engine.page(&run, "rated", &TableQuery { page: 1, size: 20, ..Default::default() }).await.unwrap();
            assert_eq!(page.columns, ["ip", "ip_name", "ip_zone", "ip_reputation", "ip_owner", "ip_lookup"]);
            page.rows.iter().map(|r| r.iter().map(|c| c.text.clone()).collect::<Vec<_>>()).collect::<Vec<_>>()
        }
    };
    let rows = table(out.run_id.clone()).await;
    assert_eq!(rows.len(), 7, "every row kept");
    let by_ip: HashMap<String, Vec<String>> = rows.iter().map(|r| (r[0].clone(), r.clone())).collect();
    assert_eq!(&by_ip["1.1.1.1"][3..], ["-5", "Good Net", "ok"]);
    assert_eq!(by_ip["2.2.2.2"][5], "rate limited by the service (HTTP 429), 3 attempts");
    assert_eq!(by_ip["3.3.3.3"][5], "service error (HTTP 500), 3 attempts");
    assert_eq!(by_ip["4.4.4.4"][5], "unreadable answer (not JSON)");
    assert_eq!(by_ip["5.5.5.5"][5], "no answer within 0.5 s, 3 attempts");
    assert_eq!(by_ip["6.6.6.6"][5], "not found");
    assert_eq!(hits.lock().unwrap()["1.1.1.1"], 1, "each distinct value is asked once per run");

    // The next run reuses the answers.
    let again = engine.run(run()).await.unwrap();
    let rows = table(again.run_id.clone()).await;
    let by_ip: HashMap<String, Vec<String>> = rows.iter().map(|r| (r[0].clone(), r.clone())).collect();
    assert_eq!(&by_ip["1.1.1.1"][3..], ["-5", "Good Net", "ok (cached)"]);
    assert_eq!(by_ip["6.6.6.6"][5], "not found (cached)");
    assert_eq!(hits.lock().unwrap()["1.1.1.1"], 1);

    // The key is never in what the run stored or shows.
    for run in [&out.run_id, &again.run_id] {
        let dir = paths.run_dir(run);
        for f in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap_or_default();
            assert!(!String::from_utf8_lossy(&bytes).contains(KEY));
        }
    }
    let db = std::fs::read(paths.state_db()).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(KEY));

    // Without the secret, rows say what is missing, and the run still completes.
    common::write_secrets(&data.path().join("secrets.yaml"), "OTHER: x\n");
    let no_key = engine.run(run()).await.unwrap();
    assert!(no_key.steps.iter().all(|s| s.error.is_none()));
    let rows = table(no_key.run_id.clone()).await;
    let status = rows.iter().find(|r| r[0] == "3.3.3.3").map(|r| r[5].clone()).unwrap();
    assert!(status.starts_with("not looked up: secret `TEST_VT_KEY` is not set"), "{status}");
    let cached = rows.iter().find(|r| r[0] == "1.1.1.1").map(|r| r[5].clone()).unwrap();
    assert_eq!(cached, "ok (cached)", "cached answers need no key");
    server.abort();
}
