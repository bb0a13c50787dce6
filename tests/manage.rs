//! Management: duplicates and stored data are deleted exactly as listed; retention deletes
//! exactly what it plans; the page renders.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use casebook::catalog::Catalog;
use casebook::engine::{Engine, RunRequest};
use casebook::manage::{self, Retention};

use crate::common;

async fn engine_with_playbooks(data: &std::path::Path, files: &[(&str, String)]) -> (Arc<Engine>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, text).expect("write");
    }
    let mut paths = common::paths_with(data);
    paths.playbooks = dir.path().to_path_buf();
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let store = casebook::store::Store::open(&paths.state_db()).expect("store");
    (Arc::new(Engine::new(catalog, store)), dir)
}

fn shipped(rel: &str) -> String {
    std::fs::read_to_string(common::repo().join("playbooks").join(rel)).expect("read")
}

/// `text` (a playbook) with another `version:`, whatever its own is.
fn with_version(text: &str, version: &str) -> String {
    let old = text.lines().find(|l| l.starts_with("version:")).expect("a version line");
    let new = format!("version: {version}");
    assert_ne!(old, new);
    text.replacen(old, &new, 1)
}

#[tokio::test]
async fn duplicates_are_listed_and_only_those_are_deleted() {
    let data = common::fresh_data();
    let flows = shipped("network/ip_flows.yaml");
    let rdp = shipped("network/rdp_bruteforce.yaml");
    let events = shipped("hunting/event_timeline.yaml");
    let (engine, dir) = engine_with_playbooks(
        data.path(),
        &[
            ("ip_flows.yaml", flows.clone()),
            ("ip_flows-Copy1.yaml", flows.clone()),
            ("rdp_bruteforce.yaml", rdp.clone()),
            ("old/rdp_bruteforce (2).yaml", with_version(&rdp, "0.9.0")),
            ("rdp_bruteforce (2).yaml", with_version(&rdp, "0.9.1")),
            ("hunting/event_timeline.yaml", events.clone()),
            ("hunting/timeline_backup.yaml", events.clone()),
            ("other.yaml", events.replace("description: |", "description: |\n  A variant.")),
        ],
    )
    .await;
    let listed: Vec<(String, String, String)> =
        manage::duplicates(&engine.catalog()).into_iter().map(|d| (d.file, d.of, d.reason)).collect();
    let expected = vec![
        (
            "hunting/timeline_backup.yaml".to_string(),
            "hunting/event_timeline.yaml".to_string(),
            "identical content".to_string(),
        ),
        ("ip_flows-Copy1.yaml".into(), "ip_flows.yaml".into(), "a copy by its name".into()),
        ("old/rdp_bruteforce (2).yaml".into(), "rdp_bruteforce.yaml".into(), "the same title".into()),
        ("other.yaml".into(), "hunting/event_timeline.yaml".into(), "the same title".into()),
        ("rdp_bruteforce (2).yaml".into(), "rdp_bruteforce.yaml".into(), "a copy by its name".into()),
    ];
    assert_eq!(listed, expected);
    // Through the page: the listed files plus one that is not a duplicate.
    let app = common::app(casebook::web::AppState::new(engine.clone(), engine.catalog().paths.clone()).expect("state"));
    let r = app.clone().oneshot(Request::get("/manage").body(Body::empty()).expect("req")).await.expect("resp");
    assert_eq!(r.status(), StatusCode::OK);
    let (cookie, token) = common::csrf_cookie(&r);
    let page = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    assert!(page.contains("ip_flows-Copy1.yaml") && page.contains("the same title"), "{page}");
    let body = format!(
        "_csrf={token}&file=ip_flows-Copy1.yaml&file=hunting%2Ftimeline_backup.yaml&file=ip_flows.yaml&file=..%2F..%2Fetc%2Fpasswd"
    );
    let r = app
        .oneshot(
            Request::post("/manage/duplicates/delete")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, &cookie)
                .body(Body::from(body))
                .expect("req"),
        )
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let left: Vec<String> = casebook::catalog::yaml_files(dir.path())
        .iter()
        .map(|p| p.strip_prefix(dir.path()).expect("inside").to_string_lossy().to_string())
        .collect();
    assert_eq!(
        left,
        vec![
            "hunting/event_timeline.yaml",
            "ip_flows.yaml",
            "old/rdp_bruteforce (2).yaml",
            "other.yaml",
            "rdp_bruteforce (2).yaml",
            "rdp_bruteforce.yaml"
        ]
    );
    assert_eq!(engine.catalog().playbooks.len(), 6, "the catalog was reloaded");
}

async fn run(engine: &Arc<Engine>, id: &str) -> String {
    let catalog = engine.catalog();
    let pb = catalog.entry(id).and_then(|e| e.runnable()).expect("runnable").clone();
    let cx = catalog.parse_ctx();
    let values = pb
        .params
        .iter()
        .map(|p| {
            (p.name.clone(), p.parse(if p.name == "src" { Some("10.0.10.25") } else { None }, &cx).expect("param"))
        })
        .collect();
    engine.run(RunRequest::new(pb, values, "ana", "test").keeping(None)).await.expect("run").run_id
}

#[tokio::test]
async fn stored_data_and_retention_delete_exactly_what_they_list() {
    let data = common::fresh_data();
    let (engine, _dir) = engine_with_playbooks(
        data.path(),
        &[
            ("ip_flows.yaml", shipped("network/ip_flows.yaml")),
            ("rdp_bruteforce.yaml", shipped("network/rdp_bruteforce.yaml")),
        ],
    )
    .await;
    let r1 = run(&engine, "rdp_bruteforce").await;
    let r2 = run(&engine, "ip_flows").await;
    let r3 = run(&engine, "rdp_bruteforce").await;
    let export = engine.export(&r3, "attempts", "json", "ana").await.expect("export");
    let catalog = engine.catalog();
    let items = manage::stored(&catalog, &engine.store).expect("stored");
    let keys: Vec<&str> = items.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(items.len(), 4, "{keys:?}");
    assert!(items.iter().all(|s| s.bytes > 0 && s.owner == "ana"));

    // On the page, select one run (and send a key that is not listed): only that run goes.
    let app = common::app(casebook::web::AppState::new(engine.clone(), catalog.paths.clone()).expect("state"));
    let r = app.clone().oneshot(Request::get("/manage").body(Body::empty()).expect("req")).await.expect("resp");
    let (cookie, token) = common::csrf_cookie(&r);
    let page = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    for item in &items {
        assert!(page.contains(&format!("value=\"{}\"", item.key)), "{} is listed", item.key);
    }
    let body = format!("_csrf={token}&key=run%3A{r2}&key=run%3A..%2F..%2Fetc");
    let r = app.oneshot(common::form_post("/manage/stored/delete", &body, &cookie, &token)).await.expect("resp");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!catalog.paths.run_dir(&r2).exists());
    assert!(engine.store.run(&r2).expect("db").is_none());
    assert!(catalog.paths.run_dir(&r1).exists() && catalog.paths.run_dir(&r3).exists());

    // Retention by size: the oldest go until the rest fits; exactly the plan is deleted.
    let items = manage::stored(&catalog, &engine.store).expect("stored");
    let newest_two: u64 = items.iter().take(2).map(|s| s.bytes).sum();
    let policy = Retention { max_age_days: 365.0, max_bytes: newest_two };
    let plan = manage::retention_plan(&items, policy);
    assert_eq!(plan, vec![format!("run:{r1}")], "the oldest run");
    // Reputation answers: a fresh one stays; one past the service's 24 h and one of a service
    // no longer configured are forgotten by the same daily pass.
    engine.store.cache_lookup("virustotal", "203.0.113.9", "ok", "{}").expect("cache");
    {
        let db = rusqlite::Connection::open(catalog.paths.state_db()).expect("db");
        let old = (chrono::Utc::now() - chrono::Duration::hours(25)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        for (service, value) in [("virustotal", "198.51.100.1"), ("retired", "198.51.100.2")] {
            db.execute(
                "INSERT INTO lookup_cache (service, value, status, body, fetched_at) VALUES (?1, ?2, 'ok', '{}', ?3)",
                rusqlite::params![
                    service,
                    value,
                    if service == "retired" {
                        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
                    } else {
                        old.clone()
                    }
                ],
            )
            .expect("insert");
        }
    }
    let deleted = manage::apply_retention(&catalog, &engine.store, policy).expect("retention");
    assert_eq!(deleted, plan);
    let cached: Vec<(String, String)> = rusqlite::Connection::open(catalog.paths.state_db())
        .expect("db")
        .prepare("SELECT service, value FROM lookup_cache ORDER BY value")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(cached, [("virustotal".to_string(), "203.0.113.9".to_string())]);
    let left: Vec<String> =
        manage::stored(&catalog, &engine.store).expect("stored").into_iter().map(|s| s.key).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&format!("run:{r3}")) && left.contains(&format!("export:{}", export.id)));
    assert!(data.path().join("exports").join(&export.file).exists());
}

#[tokio::test]
async fn health_checks_each_data_source_and_service_now() {
    // A live service on 127.0.0.1 (any status counts as an answer) and a port nobody listens on.
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let live_addr = live.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let app = axum::Router::new().route("/v3", axum::routing::get(|| async { (StatusCode::UNAUTHORIZED, "key?") }));
        let _ = axum::serve(live, app).await;
    });
    let dead_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };

    let data = common::fresh_data();
    let conns = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(data.path().join("ctx")).expect("dir");
    std::fs::write(data.path().join("ctx/hosts.csv"), "ip,name\n10.0.0.1,gateway\n").expect("csv");
    std::fs::write(data.path().join("ctx/alerts.ndjson"), "{\"rule\":\"psexec\",\"severity\":4}\n").expect("ndjson");
    std::fs::write(conns.path().join("hosts.yaml"), "format: csv\npath: ctx/hosts.csv\n").expect("yaml");
    std::fs::write(
        conns.path().join("alerts.yaml"),
        "format: ndjson\npath: ctx/alerts.ndjson\nschema:\n  - { name: rule, type: string }\n  - { name: host, type: string }\n",
    )
    .expect("yaml");
    std::fs::write(
        conns.path().join("flows.yaml"),
        "format: parquet\npath: demo/flows\npartitions: [date, hour]\ntime_column: treceived\n",
    )
    .expect("yaml");
    // A source mapped onto the standard flows that has only times and addresses.
    std::fs::write(data.path().join("ctx/nf.csv"), "ts,src,dst\n1767225600,10.0.0.1,10.0.0.2\n").expect("csv");
    std::fs::write(
        conns.path().join("netflow.yaml"),
        "format: csv\npath: ctx/nf.csv\nprovides: flows\ncolumns:\n  treceived: from_epoch(ts)\n  sip: src\n  dip: dst\n",
    )
    .expect("yaml");
    for (name, addr) in [("live", live_addr), ("dead", dead_addr)] {
        std::fs::write(
            conns.path().join(format!("{name}.yaml")),
            format!("kind: http\nbase_url: http://{addr}/v3\npath: /ip/{{value}}\nauth_header: x-apikey\nsecret: HEALTH_KEY\nfields:\n  score: /score\n"),
        )
        .expect("yaml");
    }
    common::write_secrets(&data.path().join("secrets.yaml"), "HEALTH_KEY: s3cr3t-health-key\n");
    let mut paths = common::paths_with(data.path());
    paths.connectors = conns.path().to_path_buf();
    paths.playbooks = conns.path().join("none");
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    assert_eq!(catalog.connectors.len(), 4, "{:?}", catalog.problems().collect::<Vec<_>>());
    assert_eq!(catalog.services.len(), 2);
    let mut engine = Engine::new(catalog, casebook::store::Store::open(&paths.state_db()).expect("store"));
    engine.secrets = casebook::secrets::Secrets::new(Some(data.path().join("secrets.yaml")));
    let app = common::app(casebook::web::AppState::new(Arc::new(engine), paths).expect("state"));
    std::fs::remove_file(data.path().join("ctx/hosts.csv")).expect("remove");
    let r = app.clone().oneshot(Request::get("/manage").body(Body::empty()).expect("req")).await.expect("resp");
    let (cookie, token) = common::csrf_cookie(&r);
    let page = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    let health = page.split("id=\"health\"").nth(1).and_then(|s| s.split("</section>").next()).expect("health section");
    let row = |name: &str| {
        health
            .split(&format!("<code>{name}</code>"))
            .nth(1)
            .and_then(|s| s.split("</tr>").next())
            .unwrap_or_default()
            .to_string()
    };
    let flows = row("flows");
    assert!(flows.contains("✓") && flows.contains("readable"), "{flows}");
    // The demo's 48 hours end at the top of the hour this test binary generated them.
    assert!(flows.contains("data from 20") && flows.contains(" to 20"), "{flows}");
    assert!(row("hosts").contains("✗"), "{}", row("hosts"));
    let alerts = row("alerts");
    assert!(
        alerts.contains("✗") && alerts.contains("declared column <code>host</code> is not in the files"),
        "{alerts}"
    );
    assert!(health.contains("Memory in use"));
    let netflow = row("netflow");
    assert!(
        netflow.contains("✓")
            && netflow.contains("no <code>tryear</code>, <code>trmonth</code>")
            && netflow.contains(
                "<code>dir</code>, <code>rip</code> of the standard <code>flows</code> schema: read as empty"
            )
            && !netflow.contains("<code>sip</code>"),
        "{netflow}"
    );
    assert!(row("live").contains("key HEALTH_KEY is set") && !page.contains("s3cr3t"), "{}", row("live"));

    // Reachability only when asked; any HTTP answer counts, a closed port says so.
    let check = |name: &str| {
        let app = app.clone();
        let req = Request::post(format!("/manage/services/{name}/check"))
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &token)
            .body(Body::empty())
            .expect("req");
        async move { common::json_of(app.oneshot(req).await.expect("resp")).await }
    };
    let live = check("live").await;
    assert_eq!(live["ok"], true, "{live}");
    assert!(live["note"].as_str().unwrap_or_default().starts_with("reachable: HTTP 401 in "), "{live}");
    let dead = check("dead").await;
    assert_eq!(dead["ok"], false, "{dead}");
    assert!(dead["note"].as_str().unwrap_or_default().starts_with("cannot connect: "), "{dead}");
    assert!(!dead.to_string().contains("s3cr3t"));
    // Without the page's token the check is refused.
    let forged = app
        .oneshot(Request::post("/manage/services/live/check").body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    server.abort();
}

/// `serve --retain-days N` applies the policy when it starts and daily after: a run older
/// than N days goes, a recent one stays.
#[tokio::test]
async fn serve_applies_the_retention_policy_on_its_own() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let old = common::run_all(&engine, "rdp_bruteforce", &[]).await.run_id;
    let recent = common::run_all(&engine, "rdp_bruteforce", &[]).await.run_id;
    let paths = engine.catalog().paths.clone();
    drop(engine);
    let ten_days_ago = (chrono::Utc::now() - chrono::Duration::days(10)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    rusqlite::Connection::open(paths.state_db())
        .expect("db")
        .execute("UPDATE runs SET started_at = ?1 WHERE id = ?2", rusqlite::params![ten_days_ago, old])
        .expect("age the run");

    let _server =
        common::Server::start(["--data".as_ref(), data.path().as_os_str(), "--retain-days".as_ref(), "5".as_ref()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while paths.run_dir(&old).exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!paths.run_dir(&old).exists(), "the 10-day-old run's outputs are deleted");
    assert!(paths.run_dir(&recent).exists(), "the recent run stays");
    let store = casebook::store::Store::open(&paths.state_db()).expect("store");
    assert!(store.run(&old).expect("db").is_none() && store.run(&recent).expect("db").is_some());
}
