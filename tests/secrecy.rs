//! A secret's value never leaves casebook except to its own service: a real server is used
//! through every kind of page, fragment, export, report, schedule, notification and audit
//! entry that touches a secret, and then every response, every line of its log at every
//! level, and every file it wrote are searched for the values.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::common;

const KEY: &str = "vt-key-5e1f0c9a77";
const HOOK_TOKEN: &str = "T0000/B0000/hooktoken9d3c";

const PLAYBOOK: &str = "title: Reputation
sections:
  - title: S
    steps:
      - id: hosts
        query:
          sql: SELECT * FROM (VALUES ('1.1.1.1'), ('6.6.6.6')) AS t(ip)
      - id: rated
        enrich: { from: hosts, ip: [ip], reputation: vt }
";

#[derive(Clone, Default)]
struct Seen {
    keyed: Arc<Mutex<usize>>,
    posts: Arc<Mutex<Vec<String>>>,
}

async fn reputation(State(seen): State<Seen>, Path(ip): Path<String>, headers: HeaderMap) -> Response {
    if headers.get("x-apikey").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    *seen.keyed.lock().expect("lock") += 1;
    match ip.as_str() {
        "1.1.1.1" => axum::Json(serde_json::json!({"data": {"attributes": {"reputation": 3}}})).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn hook(State(seen): State<Seen>, body: String) -> StatusCode {
    seen.posts.lock().expect("lock").push(body);
    StatusCode::OK
}

struct Collected(Vec<String>);

impl Collected {
    async fn take(&mut self, what: &str, r: reqwest::Response) -> String {
        let head = format!("{what} {} {:?}", r.status(), r.headers());
        let body = r.text().await.expect("body");
        self.0.push(format!("{head}\n{body}"));
        body
    }
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).expect("meta");
        if meta.file_type().is_symlink() {
            continue; // the shared demo data
        }
        if meta.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_response_log_line_export_report_or_audit_entry() {
    let seen = Seen::default();
    let fake = axum::Router::new()
        .route("/v3/ip_addresses/{ip}", axum::routing::get(reputation))
        .route("/hook/{*rest}", axum::routing::post(hook))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake_task = tokio::spawn(async move { axum::serve(listener, fake).await });

    let data = common::fresh_data();
    let dir = tempfile::tempdir().expect("dir");
    let (pb_dir, conn_dir) = (dir.path().join("playbooks"), dir.path().join("connectors"));
    std::fs::create_dir_all(&pb_dir).expect("dir");
    std::fs::create_dir_all(&conn_dir).expect("dir");
    std::fs::write(pb_dir.join("rep.yaml"), PLAYBOOK).expect("playbook");
    std::fs::copy(common::repo().join("connectors/flows.yaml"), conn_dir.join("flows.yaml")).expect("connector");
    std::fs::write(
        conn_dir.join("vt.yaml"),
        format!(
            "kind: http\ndescription: test reputation\nbase_url: http://{addr}/v3\npath: /ip_addresses/{{value}}\n\
             auth_header: x-apikey\nsecret: TEST_VT_KEY\ntimeout_s: 2\nfields:\n  reputation: /data/attributes/reputation\n"
        ),
    )
    .expect("service");
    let hook_url = format!("http://{addr}/hook/{HOOK_TOKEN}");
    common::write_secrets(&data.path().join("secrets.yaml"), &format!("TEST_VT_KEY: {KEY}\nTEST_HOOK: {hook_url}\n"));
    let log = dir.path().join("server.log");
    let args = [
        "--data".as_ref(),
        data.path().as_os_str(),
        "--playbooks".as_ref(),
        pb_dir.as_os_str(),
        "--connectors".as_ref(),
        conn_dir.as_os_str(),
    ];
    let server = common::Server::start_logged(args, Some(&log));
    let me = server.session().await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let get = |path: &str| http.get(format!("{base}{path}")).header("cookie", &me.cookie).send();
    let post = |path: &str, form: &[(&str, &str)]| {
        let mut f: Vec<(String, String)> = form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        f.push(("_csrf".into(), me.csrf.clone()));
        http.post(format!("{base}{path}")).header("cookie", &me.cookie).header("x-csrf-token", &me.csrf).form(&f).send()
    };
    let mut all = Collected(Vec::new());

    // Run the playbook: its enrich step calls the service with the key.
    let body = all.take("run", post("/p/rep/run/0", &[]).await.expect("run")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
    let run = v["run_id"].as_str().expect("run id").to_string();
    assert!(*seen.keyed.lock().expect("lock") >= 1, "the service was asked with its key");
    for path in [
        format!("/runs/{run}"),
        format!("/runs/{run}/steps/rated/table"),
        format!("/runs/{run}/report.html"),
        format!("/api/runs/{run}"),
        "/p/rep".to_string(),
        "/manage".to_string(),
        "/".to_string(),
    ] {
        let text = all.take(&path, get(&path).await.expect("get")).await;
        assert!(!text.is_empty(), "{path}");
    }
    all.take("service check", post("/manage/services/vt/check", &[]).await.expect("check")).await;
    let fragment = all
        .take("export", post(&format!("/runs/{run}/steps/rated/export"), &[("format", "csv")]).await.expect("x"))
        .await;
    let key = fragment.split("/exports/").nth(1).and_then(|s| s.get(..32)).expect("an export link").to_string();
    all.take("download", get(&format!("/exports/{key}")).await.expect("download")).await;

    // A schedule that notifies the secret webhook, run now: the post goes out with the URL.
    let form = [
        ("_sched_name", "every quarter hour"),
        ("_sched_every", "15m"),
        ("_sched_webhook", "TEST_HOOK"),
        ("_sched_tz", "UTC"),
    ];
    let made = all.take("schedule", post("/p/rep/schedule", &form).await.expect("schedule")).await;
    assert!(made.contains("/schedules#schedule-"), "{made}");
    let sid = made.split("schedule-").nth(1).and_then(|s| s.split('"').next()).expect("id").to_string();
    all.take("run now", post(&format!("/schedules/{sid}/run"), &[]).await.expect("run now")).await;
    let started = Instant::now();
    while seen.posts.lock().expect("lock").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the webhook was not called");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in ["/schedules", "/audit", "/audit/export/json", "/audit/export/csv", "/threats"] {
        all.take(path, get(path).await.expect("get")).await;
    }
    drop(server);
    fake_task.abort();

    // Now search everything.
    let mut places: Vec<(String, String)> =
        all.0.into_iter().enumerate().map(|(i, t)| (format!("response {i}"), t)).collect();
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(log_text.contains("run finished"), "the log was written");
    places.push(("the server log".into(), log_text));
    let mut files = Vec::new();
    files_under(data.path(), &mut files);
    assert!(files.iter().any(|f| f.to_string_lossy().contains("exports")), "{files:?}");
    for f in files.iter().filter(|f| f.file_name().is_some_and(|n| n != "secrets.yaml")) {
        let bytes = std::fs::read(f).unwrap_or_default();
        places.push((f.display().to_string(), String::from_utf8_lossy(&bytes).to_string()));
    }
    for (where_, text) in &places {
        for secret in [KEY, HOOK_TOKEN] {
            assert!(!text.contains(secret), "a secret is in {where_}");
        }
    }
    assert!(places.len() > 25, "{} places searched", places.len());
}
