//! Hot reload: an author's edit is served without a restart; a broken edit shows its problems
//! while the last good version keeps working.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::common;

async fn page(app: &axum::Router, uri: &str) -> String {
    let r = app.clone().oneshot(Request::get(uri).body(Body::empty()).expect("req")).await.expect("resp");
    String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string()
}

/// Polls `uri` until its body satisfies `ok`; returns how long that took.
async fn until(app: &axum::Router, uri: &str, ok: impl Fn(&str) -> bool) -> Duration {
    let t = Instant::now();
    loop {
        if ok(&page(app, uri).await) {
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{uri} never showed the change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_are_served_within_two_seconds_without_a_restart() {
    let data = common::fresh_data();
    let dir = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(common::repo().join("playbooks/network/rdp_bruteforce.yaml")).expect("read");
    let file = dir.path().join("rdp_bruteforce.yaml");
    std::fs::write(&file, &original).expect("write");
    let mut paths = common::paths_with(data.path());
    paths.playbooks = dir.path().to_path_buf();
    let catalog = std::sync::Arc::new(casebook::catalog::Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let store = casebook::store::Store::open(&paths.state_db()).expect("store");
    let engine = std::sync::Arc::new(casebook::engine::Engine::new(catalog, store));
    let _watcher = casebook::jobs::watch::spawn(engine.clone()).expect("watcher");
    let app = common::app(casebook::web::AppState::new(engine.clone(), paths).expect("state"));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 1. A new title.
    std::fs::write(&file, original.replace("title: RDP brute force and scanning", "title: RDP brute force (edited)"))
        .expect("edit");
    let took = until(&app, "/p/rdp_bruteforce", |b| b.contains("RDP brute force (edited)")).await;
    assert!(took < Duration::from_secs(2), "served after {took:?}");

    // 2. A broken edit: its problem shows, the last good version keeps serving.
    std::fs::write(
        &file,
        original
            .replace("title: RDP brute force and scanning", "title: RDP brute force (edited)")
            .replace("sum(ibyt) AS bytes_sent", "sum(ibytes) AS bytes_sent"),
    )
    .expect("break");
    let took = until(&app, "/p/rdp_bruteforce", |b| b.contains("unknown column <code>ibytes</code>")).await;
    assert!(took < Duration::from_secs(2), "served after {took:?}");
    let body = page(&app, "/p/rdp_bruteforce").await;
    assert!(body.contains("last good version"), "{body}");
    assert!(body.contains("data-section=\"0\""), "the run button stays");
    let entry = engine.catalog().entry("rdp_bruteforce").cloned().expect("entry");
    assert_eq!(entry.runnable().map(|p| p.title.clone()).as_deref(), Some("RDP brute force (edited)"));

    // 3. Fixed again; and a new file appears on the index.
    std::fs::write(&file, &original).expect("fix");
    until(&app, "/p/rdp_bruteforce", |b| !b.contains("problem") && b.contains("RDP brute force and scanning")).await;
    std::fs::copy(common::repo().join("playbooks/hunting/event_timeline.yaml"), dir.path().join("event_timeline.yaml"))
        .expect("copy");
    let took = until(&app, "/", |b| b.contains("Event timeline in time buckets")).await;
    assert!(took < Duration::from_secs(2), "served after {took:?}");
}
