//! Every page through the router (`oneshot`), as a browser would call it.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use casebook::demo::cast;
use casebook::web::AppState;
use common::app;

use crate::common;

struct Client {
    app: axum::Router,
    cookie: String,
    token: String,
    _data: tempfile::TempDir,
}

async fn client() -> Client {
    client_with(None).await
}

/// A client whose playbooks folder holds the shipped playbooks plus `extra` (name, YAML).
async fn client_with(extra: Option<(&str, &str)>) -> Client {
    let data = common::fresh_data();
    let mut paths = common::paths_with(data.path());
    if let Some((name, yaml)) = extra {
        let dir = data.path().join("playbooks");
        std::fs::create_dir_all(&dir).expect("dir");
        for e in casebook::catalog::yaml_files(&paths.playbooks) {
            std::fs::copy(&e, dir.join(e.file_name().expect("name"))).expect("copy");
        }
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).expect("write");
        paths.playbooks = dir;
    }
    let catalog = std::sync::Arc::new(casebook::catalog::Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let store = casebook::store::Store::open(&paths.state_db()).expect("state db");
    let engine = std::sync::Arc::new(casebook::engine::Engine::new(catalog, store));
    let state = AppState::new(engine, paths).expect("state");
    let app = app(state);
    let r = app.clone().oneshot(Request::get("/").body(Body::empty()).expect("req")).await.expect("resp");
    let (cookie, token) = common::csrf_cookie(&r);
    Client { app, cookie, token, _data: data }
}

impl Client {
    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let r = self.app.clone().oneshot(Request::get(uri).body(Body::empty()).expect("req")).await.expect("resp");
        let status = r.status();
        let body = r.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    }

    async fn post(&self, uri: &str, form: &[(&str, &str)], with_token: bool) -> (StatusCode, String) {
        let body = form.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect::<Vec<_>>().join("&");
        let mut req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &self.cookie);
        if with_token {
            req = req.header("x-csrf-token", &self.token);
        }
        let r = self.app.clone().oneshot(req.body(Body::from(body)).expect("req")).await.expect("resp");
        let status = r.status();
        let body = r.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn index_lists_every_playbook() {
    let c = client().await;
    let (status, body) = c.get("/").await;
    assert_eq!(status, StatusCode::OK);
    for t in ["IP flows between hosts", "RDP brute force and scanning", "Event timeline in time buckets"] {
        assert!(body.contains(t), "{t}");
    }
    assert!(!body.contains("http://") && !body.contains("https://"), "no external assets");
}

#[tokio::test]
async fn playbook_page_builds_the_form_and_prefills_from_the_url() {
    let c = client().await;
    let (status, body) = c.get("/p/ip_flows?src=10.0.10.25&window=last%201h&view=extended").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"name="src" value="10.0.10.25""#), "prefilled src");
    assert!(body.contains(r#"<option value="extended" selected>"#));
    assert!(body.contains(r#"<option value="last 1h" selected>"#));
    assert!(body.contains("Get IP flows"));
    assert!(!body.contains("SELECT"), "no code on the page");
    let (status, _) = c.get("/p/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A link with a bad value opens with the message already next to that field.
    let (_, body) = c.get("/p/ip_flows?src=10.0.0.300&window=last%201h").await;
    assert!(body.contains(r#"name="src" value="10.0.0.300""#), "the value is kept to be corrected");
    assert!(
        body.contains(
            r#"<p class="field-error" id="err-src" role="alert">not an IP address or CIDR: `10.0.0.300`</p>"#
        ),
        "{body}"
    );
    assert!(body.contains(r#"<p class="field-error" id="err-window" role="alert" hidden>"#), "good values get none");
}

#[tokio::test]
async fn script_in_a_parameter_is_escaped_on_the_page() {
    let c = client().await;
    let (_, body) = c.get("/p/event_timeline?contains=%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert!(!body.contains("<script>alert(1)</script>"));
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
            || body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
}

#[tokio::test]
async fn running_needs_the_csrf_token() {
    let c = client().await;
    let (status, _) = c.post("/p/rdp_bruteforce/run/0", &[("window", "last 7d")], false).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_input_gets_a_message_per_field() {
    let c = client().await;
    let (status, body) = c
        .post(
            "/p/ip_flows/run/0",
            &[("src", "10.0.0.1, fish"), ("window", "2026-02-05 15:00 .. 2026-02-05 14:00"), ("limit", "0")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["errors"]["src"], "not an IP address or CIDR: `fish`");
    assert_eq!(v["errors"]["window"], "the start of the time range must be before its end");
    assert_eq!(v["errors"]["limit"], "must be at least 1");
}

#[tokio::test]
async fn a_section_runs_and_its_table_pages_on_the_server() {
    let c = client().await;
    let (status, body) = c.post("/p/rdp_bruteforce/run/0", &[("window", "last 7d")], true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let html = v["html"].as_str().expect("html");
    assert!(html.contains(cast::SCANNER));
    assert!(html.contains("class=\"chart-data\""));
    assert!(html.contains("Showing 1 to 2 of 2 entries"), "{html}");
    let run = v["run_id"].as_str().expect("run id");
    // Section 2 reads section 1's table: it is recomputed, not taken from the browser.
    let (status, body) = c.post("/p/rdp_bruteforce/run/1", &[("window", "last 7d")], true).await;
    assert_eq!(status, StatusCode::OK);
    let v2: serde_json::Value = serde_json::from_str(&body).expect("json");
    let run2 = v2["run_id"].as_str().expect("run id");
    let (status, table) = c.get(&format!("/runs/{run2}/steps/scanned/table?page=2&size=10&sort=target&dir=asc")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(table.contains("Showing 11 to 20 of"), "{table}");
    let (_, table) = c.get(&format!("/runs/{run2}/steps/scanned/table?q=10.0.20.14")).await;
    assert!(table.contains("(filtered from"), "{table}");
    // Export, list, download.
    let (status, list) =
        c.post(&format!("/runs/{run}/steps/attempts/export"), &[("format", "csv"), ("_csrf", &c.token)], true).await;
    assert_eq!(status, StatusCode::OK);
    let id = list.split("/exports/").nth(1).and_then(|s| s.split('"').next()).expect("export link");
    let (status, csv) = c.get(&format!("/exports/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.starts_with("source,connections"), "{csv}");
    let (_, page) = c.get("/p/rdp_bruteforce").await;
    assert!(page.contains(&format!("/exports/{id}")), "stored exports are listed on the page");
}

#[tokio::test]
async fn paths_from_requests_stay_in_their_folder() {
    let c = client().await;
    for uri in [
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/..%2fCargo.toml",
        "/exports/999",
        "/runs/..%2f..%2f/steps/x/table",
    ] {
        let (status, body) = c.get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(!body.contains("[package]"), "{uri}");
    }
    let (status, _) = c.get("/static/casebook.css").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = c.get("/static/vendor/chart-4.6.1.umd.min.js").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_broken_playbook_shows_its_problems_and_the_rest_keep_working() {
    let c = client_with(Some(("broken", "title: Broken one\nsections:\n  - title: S\n    steps:\n      - id: a\n        query: { sql: SELECT nope FROM flows }\n"))).await;
    let (status, index) = c.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(index.contains("Broken one") && index.contains("1 problem"), "{index}");
    let (status, page) = c.get("/p/broken").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("broken.yaml:6:30</code> step <code>a</code>: unknown column <code>nope</code>"), "{page}");
    assert!(!page.contains("button class=\"run"), "no run button");
    let (status, _) = c.post("/p/broken/run/0", &[], true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = c.post("/p/rdp_bruteforce/run/0", &[("window", "last 7d")], true).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn select_options_from_a_query_and_multiple_choices() {
    let c = client().await;
    let (_, page) = c.get("/p/event_timeline?computers=WKS-021&computers=WKS-022").await;
    assert!(page.contains(r#"<option value="WKS-021" selected>"#), "options come from the events");
    assert!(page.contains(r#"<option value="RDP-10">"#));
    let (status, body) = c
        .post(
            "/p/event_timeline/run/0",
            &[("window", "last 7d"), ("computers", "WKS-021"), ("computers", "WKS-022"), ("contains", "psexesvc")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let html = v["html"].as_str().expect("html");
    assert!(html.contains("of 16 entries"), "2 computers × (service + process + 6 image loads): {html}");
}

#[tokio::test]
async fn a_run_has_a_permalink_that_shows_its_stored_results() {
    let c = client().await;
    let (_, body) = c.post("/p/rdp_bruteforce/run/0", &[("window", "last 7d"), ("top", "5")], true).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let run = v["run_id"].as_str().expect("run id").to_string();
    let (status, page) = c.get(&format!("/runs/{run}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(cast::SCANNER), "the stored table");
    assert!(page.contains("class=\"chart-data\""), "the stored chart");
    assert!(
        page.replace("&#x2f;", "/").contains("/p/rdp_bruteforce?") && page.contains("top=5"),
        "re-run with these parameters"
    );
    let (_, playbook) = c.get("/p/rdp_bruteforce").await;
    assert!(playbook.contains(&format!("/runs/{run}")), "listed in the playbook's recent runs");
    let (status, _) = c.get("/runs/0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn runs_record_the_account_a_trusted_proxy_names_and_no_one_else_can_name_one() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let hash = casebook::auth::hash_password(common::PASSWORD).expect("hash");
    let analyst = casebook::store::accounts::Role::Analyst;
    engine.store.add_account("jane.analyst", analyst, &[], Some(&hash)).expect("account");
    let mut state = AppState::new(engine.clone(), common::paths_with(data.path())).expect("state");
    state.proxy = Some(casebook::web::Proxy {
        header: axum::http::HeaderName::from_static("x-remote-user"),
        trusted: vec!["10.9.0.0/24".parse().expect("net")],
    });
    let app = casebook::web::app(state);
    let token = "0123456789abcdef0123456789abcdef";
    let run = |from: &str, user: &str| {
        let mut req = Request::post("/p/rdp_bruteforce/run/0")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("casebook_csrf={token}"))
            .header("x-csrf-token", token)
            .header("x-remote-user", user)
            .body(Body::from("window=last%207d"))
            .expect("req");
        let peer: std::net::SocketAddr = format!("{from}:40000").parse().expect("addr");
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        app.clone().oneshot(req)
    };
    let r = run("10.9.0.5", "jane.analyst").await.expect("resp");
    assert_eq!(r.status(), StatusCode::OK);
    let runs = engine.store.recent_runs("rdp_bruteforce", 1).expect("runs");
    assert_eq!(runs[0].started_by, "jane.analyst");
    // The same header from an address that is not the proxy names no one.
    let r = run("127.0.0.1", "jane.analyst").await.expect("resp");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "an untrusted sender of the header is signed out");
    // The proxy naming someone without an account does not make one.
    let r = run("10.9.0.5", "mallory").await.expect("resp");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(engine.store.recent_runs("rdp_bruteforce", 5).expect("runs").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_can_cancel_the_run_it_started() {
    let slow = "title: Slow\nsections:\n  - title: S\n    steps:\n      - id: pairs\n        query:\n          sql: SELECT count(*) AS n FROM flows a JOIN flows b ON a.sport + b.sport = a.dport * 1000 + b.dport\n";
    let c = std::sync::Arc::new(client_with(Some(("slow", slow))).await);
    let run = "0123456789abcdef0123456789abcdef";
    let c2 = c.clone();
    let started = tokio::spawn(async move { c2.post("/p/slow/run/0", &[("_run", run)], true).await });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (status, body) = c.post(&format!("/runs/{run}/cancel"), &[], true).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"cancelled":true}"#));
    let (status, _) =
        tokio::time::timeout(std::time::Duration::from_secs(2), started).await.expect("in time").expect("join");
    assert_eq!(status, StatusCode::OK);
    let (_, page) = c.get(&format!("/runs/{run}")).await;
    assert!(page.contains("cancelled by the analyst"), "the permalink says so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_as_server_sent_events() {
    let slow = "title: Slow\nsections:\n  - title: S\n    steps:\n      - id: pairs\n        title: Pairs of flows\n        query:\n          sql: SELECT count(*) AS n FROM flows a JOIN flows b ON a.sport + b.sport = a.dport * 1000 + b.dport\n";
    let c = std::sync::Arc::new(client_with(Some(("slow", slow))).await);
    let run = "fedcba9876543210fedcba9876543210";
    let c2 = c.clone();
    let started = tokio::spawn(async move { c2.post("/p/slow/run/0", &[("_run", run)], true).await });
    let r = c
        .app
        .clone()
        .oneshot(Request::get(format!("/runs/{run}/events")).body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = r.into_body();
    let mut seen = String::new();
    let mut cancelled = false;
    // The query's share of its files' rows: what it read so far, of the rows their footers count.
    let counted = |seen: &str| {
        seen.split("\"to_read\":")
            .skip(1)
            .filter_map(|t| t.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
            .any(|n| n >= 60_000)
    };
    let begun = std::time::Instant::now();
    while let Some(frame) =
        tokio::time::timeout(std::time::Duration::from_secs(10), body.frame()).await.expect("events keep coming")
    {
        if let Ok(data) = frame.expect("frame").into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
        // Cancel once the step's scan has been shown (a busy machine may take a while to
        // open the files), or after 5 s without it, which the assertions below then report.
        let under_way = seen.contains("\"current\":\"Pairs of flows\"");
        if !cancelled && under_way && (counted(&seen) || begun.elapsed() > std::time::Duration::from_secs(5)) {
            let (status, _) = c.post(&format!("/runs/{run}/cancel"), &[], true).await;
            assert_eq!(status, StatusCode::OK);
            cancelled = true;
        }
    }
    assert!(
        seen.contains("event: progress") && seen.contains("\"step\":1,\"of\":1,\"current\":\"Pairs of flows\""),
        "{seen}"
    );
    assert!(seen.contains("event: done") && seen.contains("\"state\":\"cancelled\""), "{seen}");
    assert!(counted(&seen), "the rows to read are counted: {seen}");
    started.await.expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_starts_a_run_and_reports_its_progress() {
    let c = client().await;
    let json_post = |body: &str| {
        Request::post("/api/runs")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-remote-user", "someone")
            .body(Body::from(body.to_string()))
            .expect("req")
    };
    let r = c
        .app
        .clone()
        .oneshot(json_post(r#"{"playbook": "rdp_bruteforce", "params": {"window": "last 7d", "port": 3389}}"#))
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: serde_json::Value =
        serde_json::from_slice(&r.into_body().collect().await.expect("body").to_bytes()).expect("json");
    let id = body["run_id"].as_str().expect("run id").to_string();
    assert_eq!(body["url"], format!("/runs/{id}"));
    let started = std::time::Instant::now();
    let status = loop {
        let (code, text) = c.get(&format!("/api/runs/{id}")).await;
        assert_eq!(code, StatusCode::OK, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        if v["state"] != "queued" && v["state"] != "running" {
            break v;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the run did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["source"], "api");
    assert_eq!(status["params"]["window"], "last 7d");
    let attempts = status["steps"].as_array().expect("steps").iter().find(|s| s["id"] == "attempts").expect("step");
    assert!(attempts["rows"].as_i64().unwrap_or(0) >= 1, "{status}");

    // Bad values get a message per parameter; unknown ones are named.
    let r = c
        .app
        .clone()
        .oneshot(json_post(r#"{"playbook": "rdp_bruteforce", "params": {"port": "http", "prot": 1}}"#))
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    assert!(text.contains("not a whole number") && text.contains("no such parameter"), "{text}");

    // A form post (what another site could make a browser send) is refused.
    let (code, _) = c.post("/api/runs", &[("playbook", "rdp_bruteforce")], false).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_run_runs_again_from_its_permalink() {
    let c = client().await;
    let (status, body) = c.post("/p/rdp_bruteforce/run/0", &[("window", "last 7d"), ("port", "22")], true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let first = v["run_id"].as_str().expect("id").to_string();
    let (_, page) = c.get(&format!("/runs/{first}")).await;
    assert!(page.contains("Run again") && page.contains("Edit the parameters and run"), "{page}");
    let (status, _) = c.post(&format!("/runs/{first}/rerun"), &[], false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "needs the CSRF token");
    let req = Request::post(format!("/runs/{first}/rerun"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, &c.cookie)
        .body(Body::from(format!("_csrf={}", c.token)))
        .expect("req");
    let r = c.app.clone().oneshot(req).await.expect("resp");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()[header::LOCATION].to_str().expect("location").to_string();
    let second = to.trim_start_matches("/runs/").to_string();
    assert_ne!(second, first);
    let started = std::time::Instant::now();
    loop {
        let (_, text) = c.get(&format!("/api/runs/{second}")).await;
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        if v["state"] == "succeeded" {
            assert_eq!(v["params"]["port"], "22");
            assert_eq!(v["params"]["window"], "last 7d");
            break;
        }
        assert!(v["state"] == "queued" || v["state"] == "running", "{v}");
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_are_saved_survive_a_restart_and_leave_the_suspicious_list() {
    let data = common::fresh_data();
    let app = |engine: std::sync::Arc<casebook::engine::Engine>| {
        common::app(AppState::new(engine, common::paths_with(data.path())).expect("state"))
    };
    let first = common::engine(data.path()).await;
    let a = app(first.clone());
    let r = a
        .clone()
        .oneshot(Request::get("/p/suspicious_connects").body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    let (cookie, token) = common::csrf_cookie(&r);
    let post = |uri: String, body: String| common::form_post(&uri, &body, &cookie, &token);
    let r = a
        .clone()
        .oneshot(post("/p/suspicious_connects/run/0".into(), "window=last%207d&top=20".into()))
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::OK);
    let v = common::json_of(r).await;
    let run = v["run_id"].as_str().expect("run").to_string();
    assert!(v["html"].as_str().unwrap_or("").contains("Rate ticked rows"), "tables offer rating");
    let sources = |engine: std::sync::Arc<casebook::engine::Engine>, run: String| async move {
        let page = engine
            .page(
                &run,
                "most_suspicious",
                &casebook::results::paging::TableQuery { page: 1, size: 100, ..Default::default() },
            )
            .await
            .expect("page");
        let i = page.columns.iter().position(|c| c == "source").expect("source");
        page.rows.iter().map(|r| r[i].text.clone()).collect::<Vec<_>>()
    };
    assert!(sources(first.clone(), run.clone()).await.contains(&"10.0.3.88".to_string()));

    // Nothing selected: a clear message, nothing saved.
    let r = a
        .clone()
        .oneshot(post(format!("/runs/{run}/steps/most_suspicious/rate"), "field=source&rating=1".into()))
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The quick box: every row containing the beacon's address, rated high.
    let r = a
        .clone()
        .oneshot(post(
            format!("/runs/{run}/steps/most_suspicious/rate"),
            "field=source&rating=1&note=C2+beacon&search=10.0.3.88".into(),
        ))
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::OK);
    let v = common::json_of(r).await;
    assert_eq!(v["values"], serde_json::json!(["10.0.3.88"]));
    // A ticked row (the first on the page), rated low.
    let r = a
        .clone()
        .oneshot(post(format!("/runs/{run}/steps/most_suspicious/rate"), "field=destination&rating=3&row=0".into()))
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::OK);
    drop(a);
    drop(first);

    // A new server on the same data folder: the ratings are there, as a page and as a table.
    let second = common::engine(data.path()).await;
    let ratings = second.store.ratings(Some("suspicious_connects")).expect("ratings");
    assert_eq!(ratings.len(), 2);
    assert!(ratings
        .iter()
        .any(|r| r.value == "10.0.3.88" && r.rating == 1 && r.note == "C2 beacon" && r.field == "source"));
    let b = app(second.clone());
    let r = b
        .clone()
        .oneshot(Request::get("/p/suspicious_connects").body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    let page = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    assert!(page.contains("Analysts&#x27; ratings (2)") || page.contains("Analysts' ratings (2)"), "{page}");
    // The next run no longer lists the rated beacon.
    let r = b
        .clone()
        .oneshot(post("/p/suspicious_connects/run/0".into(), "window=last%207d&top=20".into()))
        .await
        .expect("resp");
    let v = common::json_of(r).await;
    let next = v["run_id"].as_str().expect("run").to_string();
    let listed = sources(second.clone(), next).await;
    assert!(!listed.contains(&"10.0.3.88".to_string()), "{listed:?}");
    assert!(listed.contains(&"10.0.2.57".to_string()), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_threat_keeps_its_evidence_survives_a_restart_and_exports_as_stix() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let a = common::app(AppState::new(engine.clone(), common::paths_with(data.path())).expect("state"));
    let r = a.clone().oneshot(Request::get("/threats").body(Body::empty()).expect("req")).await.expect("resp");
    let (cookie, token) = common::csrf_cookie(&r);
    let post = |uri: String, body: String| common::form_post(&uri, &body, &cookie, &token);
    let r = a
        .clone()
        .oneshot(post("/p/threat_investigation/run/0".into(), "ip=10.0.2.57&window=last%207d".into()))
        .await
        .expect("resp");
    let v = common::json_of(r).await;
    let run = v["run_id"].as_str().expect("run").to_string();
    // Bad input: a message per field, nothing saved.
    let r = a
        .clone()
        .oneshot(post(
            format!("/runs/{run}/threat"),
            "threat_kind=ip&threat_entity=10.0.2.999&threat_severity=urgent".into(),
        ))
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    assert!(
        text.contains("threat_entity") && text.contains("threat_title") && text.contains("threat_severity"),
        "{text}"
    );
    assert!(engine.store.threats().expect("threats").is_empty());
    let r = a
        .clone()
        .oneshot(post(
            format!("/runs/{run}/threat"),
            "threat_kind=ip&threat_entity=10.0.2.57&threat_severity=high&threat_title=Exfiltration+to+a+rare+host&threat_description=2.5+GB+to+198.51.100.23".into(),
        ))
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::OK);
    let v = common::json_of(r).await;
    let location = v["location"].as_str().expect("location").to_string();

    // The run's stored outputs go away (retention); the threat keeps its evidence and story.
    std::fs::remove_dir_all(common::paths_with(data.path()).run_dir(&run)).expect("delete run outputs");
    drop(a);
    drop(engine);
    let engine = common::engine(data.path()).await;
    let b = common::app(AppState::new(engine.clone(), common::paths_with(data.path())).expect("state"));
    let get = |uri: String| {
        let b = b.clone();
        async move {
            let r = b.oneshot(Request::get(uri).body(Body::empty()).expect("req")).await.expect("resp");
            (r.status(), String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string())
        }
    };
    let (status, page) = get(location.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Exfiltration to a rare host") && page.contains("Evidence") && page.contains("198.51.100.23"),
        "{page}"
    );
    let (_, story) = get(format!("{location}/story.json")).await;
    let story: serde_json::Value = serde_json::from_str(&story).expect("json");
    let peers = story["peers"].as_array().expect("peers");
    let exfil = peers.iter().find(|p| p["peer"] == "198.51.100.23").expect("the exfiltration peer");
    assert_eq!((exfil["direction"].as_str(), exfil["peer_zone"].as_str()), (Some("outbound"), Some("external")));
    assert!(exfil["bytes"].as_f64().unwrap_or(0.0) > 2.0e9, "{exfil}");

    // Exports: CSV, JSON, and a STIX 2.1 bundle with an indicator, a sighting and a report.
    let (_, csv) = get("/threats/export/csv".into()).await;
    assert!(csv.starts_with("id,created_at,severity,title") && csv.contains("Exfiltration to a rare host"), "{csv}");
    let (_, json) = get("/threats/export/json".into()).await;
    assert!(json.contains("\"entity\": \"10.0.2.57\""), "{json}");
    let (_, stix) = get("/threats/export/stix".into()).await;
    let bundle: serde_json::Value = serde_json::from_str(&stix).expect("stix json");
    assert_eq!(bundle["type"], "bundle");
    let objects = bundle["objects"].as_array().expect("objects");
    let of = |t: &str| objects.iter().find(|o| o["type"] == t).unwrap_or_else(|| panic!("no {t}")).clone();
    let (indicator, sighting, report) = (of("indicator"), of("sighting"), of("report"));
    assert_eq!(indicator["pattern"], "[ipv4-addr:value = '10.0.2.57']");
    assert_eq!(indicator["spec_version"], "2.1");
    assert_eq!(sighting["sighting_of_ref"], indicator["id"]);
    assert!(sighting["count"].as_i64().unwrap_or(0) >= 30, "{sighting}");
    assert!(sighting["first_seen"].as_str().is_some_and(|s| s.ends_with('Z')), "{sighting}");
    assert_eq!(report["object_refs"], serde_json::json!([indicator["id"], sighting["id"]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_pivots_to_a_prefilled_playbook_and_the_run_records_where_it_came_from() {
    let c = client().await;
    let (status, body) = c.post("/p/suspicious_connects/run/0", &[("window", "last 7d"), ("top", "20")], true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let from = v["run_id"].as_str().expect("run").to_string();
    let html = v["html"].as_str().expect("html");
    // Cells holding addresses are marked, and the table knows which playbooks take an IP.
    assert!(html.contains(r#"data-pv="ip">10.0.3.88<"#), "{html}");
    assert!(html.contains(r#""id":"threat_investigation","kind":"ip""#), "{html}");
    // The pivot opens the playbook prefilled, and says where it came from.
    let (status, page) = c.get(&format!("/p/threat_investigation?ip=10.0.3.88&_from={from}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"value="10.0.3.88""#) && page.contains(&format!(r#"name="_from" value="{from}""#)),
        "{page}"
    );
    let (status, body) = c
        .post("/p/threat_investigation/run/0", &[("ip", "10.0.3.88"), ("window", "last 7d"), ("_from", &from)], true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run =
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["run_id"].as_str().expect("run").to_string();
    let (_, page) = c.get(&format!("/runs/{run}")).await;
    assert!(page.contains(&format!("a pivot: <a href=\"/runs/{from}\">")), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_can_be_rated_by_a_combination_of_column_values() {
    let c = client().await;
    let (_, body) = c.post("/p/suspicious_connects/run/0", &[("window", "last 7d"), ("top", "50")], true).await;
    let run =
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["run_id"].as_str().expect("run").to_string();
    // The scanner's RDP rows: source and port together pick them; their destinations are rated.
    let form = [
        ("field", "destination"),
        ("rating", "2"),
        ("where_col", "source"),
        ("where_val", "10.0.10.25"),
        ("where_col", "port"),
        ("where_val", "3389"),
    ];
    let (status, body) = c.post(&format!("/runs/{run}/steps/most_suspicious/rate"), &form, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let values: Vec<String> =
        v["values"].as_array().expect("values").iter().map(|x| x.as_str().unwrap_or("").to_string()).collect();
    assert!(values.contains(&"10.0.20.14".to_string()) && values.contains(&"10.0.20.37".to_string()), "{values:?}");
    assert!(values.iter().all(|d| d.starts_with("10.0.20.")), "only the scanner's RDP rows: {values:?}");
    // A column that does not exist is named.
    let (status, body) = c
        .post(
            &format!("/runs/{run}/steps/most_suspicious/rate"),
            &[("field", "destination"), ("rating", "2"), ("where_col", "prot"), ("where_val", "1")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("no column `prot`"), "{body}");
}

#[tokio::test]
async fn a_bad_id_in_an_address_is_a_missing_page_not_the_routers_text() {
    let c = client().await;
    for uri in ["/exports/..%2f1", "/exports/abc", "/threats/1x", "/threats/99999999999999999999/story.json"] {
        let (status, body) = c.get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(body.contains("There is nothing at this address"), "{uri}: {body}");
        assert!(!body.contains("Cannot parse") && !body.contains("Invalid URL"), "{uri}: {body}");
    }
}

impl Client {
    async fn send(&self, req: axum::http::request::Builder, body: &str) -> (StatusCode, String) {
        let r = self.app.clone().oneshot(req.body(Body::from(body.to_string())).expect("req")).await.expect("resp");
        let status = r.status();
        let body = r.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    }
}

#[tokio::test]
async fn a_page_on_another_site_cannot_reach_casebook_by_rebinding_its_name() {
    let c = client().await;
    // DNS rebinding: a page at evil.example points its name at 127.0.0.1.
    let (status, body) = c.send(Request::get("/").header(header::HOST, "evil.example:8080"), "").await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(
        body.contains("does not answer to the name “evil.example:8080”") && body.contains("--allowed-host"),
        "{body}"
    );
    assert!(!body.contains(&c.token), "no CSRF token is handed to another site");
    let form = format!("_csrf={}", c.token);
    let post = |host: &str| {
        Request::post("/manage/selftests")
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &c.cookie)
            .header("x-csrf-token", &c.token)
    };
    let (status, _) = c.send(post("evil.example:8080"), &form).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    // The names casebook answers to, and any IP address (rebinding needs a name).
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "10.1.2.3"] {
        let (status, _) = c.send(Request::get("/").header(header::HOST, host), "").await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
    // A change sent from another site's page is refused even with a valid token.
    let (status, body) = c.send(post("127.0.0.1:8080").header(header::ORIGIN, "http://evil.example"), &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("sent from a page that is not casebook"), "{body}");
    let (status, _) = c.send(post("127.0.0.1:8080").header(header::ORIGIN, "null"), &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = c.send(post("127.0.0.1:8080").header(header::ORIGIN, "http://127.0.0.1:8080"), &form).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn values_put_into_a_markdown_step_stay_text() {
    let yaml = "title: Note\nparams:\n  name: { type: text, default: x }\nsections:\n  - title: S\n    steps:\n      - id: note\n        markdown: |\n          Host **{{ params.name }}** was seen; see [its runs](/p/note?name={{ params.name }}).\n";
    let c = client_with(Some(("note", yaml))).await;
    let evil = "[Reset your password](//evil.example) <img src=x onerror=alert(1)>";
    let (status, body) = c.post("/p/note/run/0", &[("name", evil)], true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let html =
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["html"].as_str().unwrap_or("").to_string();
    assert!(html.contains("<strong>[Reset your password](//evil.example) &lt;img"), "{html}");
    assert!(!html.contains("href=\"//evil.example") && !html.contains("<img"), "{html}");
    assert!(html.contains("<a href=\"/p/note?name="), "the author's own link stays a link: {html}");
}

#[tokio::test]
async fn a_table_the_playbook_hides_or_keeps_from_export_is_not_served() {
    let c = client().await;
    let (status, body) = c.post("/p/ip_flows/run/0", &[("src", cast::SCANNER), ("window", "last 7d")], true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run =
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["run_id"].as_str().unwrap_or("").to_string();
    // `per_minute` is a chart (its table hidden) marked `export: false`.
    let (status, body) = c.post(&format!("/runs/{run}/steps/per_minute/export"), &[("format", "csv")], true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("does not offer this step"), "{body}");
    let (status, _) = c.get(&format!("/runs/{run}/steps/per_minute/table")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The table the page shows pages and exports as before.
    let (status, _) = c.get(&format!("/runs/{run}/steps/flows_basic/table?page=2")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = c.post(&format!("/runs/{run}/steps/flows_basic/export"), &[("format", "csv")], true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Nor through a rating, a report or a saved threat's storyboard: `flows` is hidden too.
    let rate = [("field", "sip"), ("rating", "1"), ("row", "0")];
    let (status, _) = c.post(&format!("/runs/{run}/steps/flows/rate"), &rate, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, report) = c.get(&format!("/runs/{run}/report.html")).await;
    assert!(report.contains("<span class=\"sort\">sport</span>"), "the shown table is in the report");
    assert!(!report.contains("<span class=\"sort\">rip</span>"), "the hidden `flows` table is not");
    let threat = [
        ("threat_title", "Scanner"),
        ("threat_severity", "high"),
        ("threat_kind", "ip"),
        ("threat_entity", cast::SCANNER),
        ("threat_description", "seen"),
    ];
    let (status, body) = c.post(&format!("/runs/{run}/threat"), &threat, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at =
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["location"].as_str().unwrap_or("").to_string();
    let (_, story) = c.get(&at).await;
    assert!(story.contains("<summary>Flows <span"), "the shown table is evidence: {story}");
    assert!(!story.contains("<summary>flows <span") && !story.contains("Flows per minute"), "hidden ones are not");
    let (_, json) = c.get(&format!("{at}/story.json")).await;
    assert!(!json.contains("per_minute") && !json.contains("\"flows\""), "{json}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let c = client().await;
    let (_, body) = c.post("/p/rdp_bruteforce/run/0", &[("window", "last 7d")], true).await;
    let run =
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["run_id"].as_str().unwrap_or("").to_string();
    let uris = [
        "/".to_string(),
        "/p/ip_flows".into(),
        format!("/runs/{run}/steps/attempts/table"),
        "/static/casebook.css".into(),
        "/api/runs/0123".into(),
        "/no/such/page".into(),
    ];
    for uri in &uris {
        let r =
            c.app.clone().oneshot(Request::get(uri.as_str()).body(Body::empty()).expect("req")).await.expect("resp");
        let csp = r.headers().get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or("");
        for part in ["default-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(part), "{uri}: {csp}");
        }
        assert_eq!(
            r.headers().get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{uri}"
        );
    }
    let r = c
        .app
        .clone()
        .oneshot(Request::get("/").header(header::HOST, "evil.example").body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY), "refusals too");
}
