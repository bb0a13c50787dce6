//! Schedules: a timetable with a seconds field fires, runs, shows what is new since its
//! previous run and posts to a real webhook receiver on 127.0.0.1 (which fails once, so the
//! retry is exercised). Also: the schedule form, the page, and the playbook's declarations.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use casebook::catalog::Catalog;
use casebook::engine::Engine;
use casebook::jobs::scheduler::Scheduler;
use casebook::store::Store;
use casebook::util::paths::Paths;
use chrono::DurationRound;

use crate::common;

const WATCH: &str = "title: Hot hosts
sections:
  - title: Hot
    steps:
      - id: hot
        title: Hosts with a high score
        query:
          connector: alerts
          sql: SELECT host, score FROM alerts WHERE score > 5 ORDER BY host
schedules:
  - name: every two seconds
    cron: '*/2 * * * * *'
    what_is_new: [hot]
    notify:
      webhook: TEST_HOOK
      when: { step: hot, new_only: true }
";

/// A webhook receiver: answers 503 to the first post, 200 to the rest; keeps the bodies.
async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>, tokio::task::JoinHandle<()>) {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let got = got.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let got = got.clone();
                let seen = seen.clone();
                async move {
                    if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    got.lock().unwrap().push(body);
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got, task)
}

fn setup(dir: &std::path::Path, hook: &str) -> Paths {
    for d in ["playbooks", "connectors", "data/alerts"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("playbooks/watch.yaml"), WATCH).unwrap();
    std::fs::write(dir.join("connectors/alerts.yaml"), "format: csv\npath: alerts\n").unwrap();
    std::fs::write(dir.join("data/alerts/a.csv"), "host,score\n10.0.0.1,9\n10.0.0.2,1\n10.0.0.3,7\n").unwrap();
    common::write_secrets(&dir.join("data/secrets.yaml"), &format!("TEST_HOOK: {hook}\n"));
    let root = common::repo();
    Paths {
        playbooks: dir.join("playbooks"),
        connectors: dir.join("connectors"),
        data: dir.join("data"),
        widgets: root.join("widgets"),
        web: root.join("web"),
    }
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seconds_schedule_fires_diffs_and_posts_to_a_webhook() {
    let (hook, got, receiver_task) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let paths = setup(dir.path(), &hook);
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    assert_eq!(catalog.problems().count(), 0, "{:?}", catalog.problems().collect::<Vec<_>>());
    let engine = Arc::new(Engine::new(catalog, Store::open(&paths.state_db()).unwrap()));
    let mut scheduler = Scheduler::new(engine.clone(), "http://casebook.example:8080".into());
    scheduler.webhook = casebook::jobs::notify::Webhook::new(3, Duration::from_millis(200));
    let scheduler = Arc::new(scheduler);
    let task = scheduler.clone().spawn();

    // First run: every row is new; the post fails once (503), then is delivered.
    let first = wait_for("the first post", 30, || got.lock().unwrap().first().cloned()).await;
    let text = first["text"].as_str().unwrap().to_string();
    assert!(text.contains("Hot hosts") && text.contains("hot: 2 new rows (2 in all)"), "{text}");
    let schedule = engine.store.schedules().unwrap().remove(0);
    assert_eq!(schedule.name, "every two seconds");
    let runs = |engine: &Engine| -> Vec<casebook::store::runs::RunRecord> {
        let mut r: Vec<_> =
            engine.store.all_runs().unwrap().into_iter().filter(|r| r.schedule_id == Some(schedule.id)).collect();
        r.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        r
    };
    let first_run = runs(&engine)[0].id.clone();
    assert!(text.contains(&format!("http://casebook.example:8080/runs/{first_run}")), "{text}");
    // The scheduler records the delivery after the receiver has answered: wait for it.
    let note = wait_for("the notification recorded", 10, || {
        let listed = casebook::jobs::scheduler::list(&engine, None).ok()?;
        listed.first()?.last_notification.clone().filter(|n| !n.is_empty())
    })
    .await;
    assert!(note.starts_with("sent to TEST_HOOK") && note.contains("2 attempts"), "{note}");
    assert!(!note.contains("127.0.0.1"), "the webhook URL is a secret: {note}");

    // A new hot host arrives; a later run shows it, and only it, as new, and posts.
    std::fs::write(paths.data.join("alerts/b.csv"), "host,score\n10.0.0.9,8\n").unwrap();
    let post = wait_for("a post about the new host", 30, || {
        got.lock()
            .unwrap()
            .iter()
            .find(|p| p["text"].as_str().unwrap_or("").contains("hot: 1 new row (3 in all)"))
            .cloned()
    })
    .await;
    let text = post["text"].as_str().unwrap();
    let run = runs(&engine).into_iter().find(|r| text.contains(&format!("/runs/{}", r.id))).expect("the posted run");
    let new = engine.step_data(&run.id, "hot__new").unwrap();
    let mut csv = Vec::new();
    casebook::results::formats::write_delimited(
        &mut csv,
        &new.schema,
        casebook::results::formats::in_memory(&new),
        chrono_tz::Tz::UTC,
    )
    .unwrap();
    assert_eq!(String::from_utf8(csv).unwrap(), "host,score\n10.0.0.9,8\n");
    // Runs with nothing new post nothing: every post so far is about new rows.
    assert!(got.lock().unwrap().iter().all(|p| !p["text"].as_str().unwrap_or("").contains(": 0 new rows")));

    task.abort();
    // Never two runs of one schedule at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = runs(&engine);
    assert!(all.len() >= 2);
    for pair in all.windows(2) {
        let end = pair[0].finished_at.clone().unwrap_or_default();
        assert!(end.as_str() <= pair[1].started_at.as_str(), "overlap: {:?}", pair);
    }
    receiver_task.abort();
}

#[tokio::test]
async fn missed_fires_follow_the_declared_policy() {
    let dir = tempfile::tempdir().unwrap();
    let paths = setup(dir.path(), "http://127.0.0.1:9/hook");
    std::fs::write(
        paths.playbooks.join("watch.yaml"),
        WATCH
            .replace("'*/2 * * * * *'", "'0 * * * *'\n    missed: run_once")
            .replace("    notify:\n      webhook: TEST_HOOK\n      when: { step: hot, new_only: true }\n", ""),
    )
    .unwrap();
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    assert_eq!(catalog.problems().count(), 0, "{:?}", catalog.problems().collect::<Vec<_>>());
    let engine = Arc::new(Engine::new(catalog, Store::open(&paths.state_db()).unwrap()));
    let scheduler = Arc::new(Scheduler::new(engine.clone(), "http://x".into()));
    // Half past an hour: the last hourly fire is 30 minutes late, so it counts as missed.
    let now = chrono::Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap() + chrono::Duration::minutes(30);
    scheduler.tick(now).unwrap();
    let s = engine.store.schedules().unwrap().remove(0);
    // As if casebook had been down for five hours since the last fire.
    let five_ago = casebook::jobs::scheduler::format_time(now - chrono::Duration::hours(5));
    engine.store.schedule_fired(s.id, &five_ago, None, None).unwrap();
    scheduler.tick(now).unwrap();
    let s = engine.store.schedule(s.id).unwrap().unwrap();
    assert!(
        s.note.as_deref().unwrap_or("").contains("missed while casebook was not running; ran once"),
        "{:?}",
        s.note
    );
    let run = s.last_run.clone().expect("ran once for the missed fires");
    let done =
        wait_for("the catch-up run", 30, || engine.store.run(&run).unwrap().filter(|r| r.state == "succeeded")).await;
    assert_eq!(done.source, "schedule");
    // Another tick at the same moment starts nothing more.
    scheduler.tick(now).unwrap();
    assert_eq!(engine.store.schedule(s.id).unwrap().unwrap().last_run, Some(run));

    // With `skip`, the same downtime starts nothing.
    let pb = std::fs::read_to_string(paths.playbooks.join("watch.yaml")).unwrap().replace("run_once", "skip");
    std::fs::write(paths.playbooks.join("watch.yaml"), pb).unwrap();
    engine.reload().await;
    scheduler.tick(now).unwrap();
    engine.store.schedule_fired(s.id, &five_ago, None, None).unwrap();
    let before = engine.store.schedule(s.id).unwrap().unwrap().last_run;
    scheduler.tick(now).unwrap();
    let s = engine.store.schedule(s.id).unwrap().unwrap();
    assert_eq!(s.last_run, before);
    assert!(s.note.as_deref().unwrap_or("").contains("were skipped"), "{:?}", s.note);
}

#[tokio::test]
async fn an_analyst_schedules_a_filled_form_and_switches_it_off() {
    use tower::ServiceExt;
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let state = casebook::web::AppState::new(engine.clone(), common::paths_with(data.path())).unwrap();
    let app = common::app(state);
    let page = app
        .clone()
        .oneshot(axum::http::Request::get("/p/rdp_bruteforce").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let (cookie, token) = common::csrf_cookie(&page);
    let post = |uri: &str, body: String| common::form_post(uri, &body, &cookie, &token);
    let body = |r: axum::response::Response| async move {
        String::from_utf8(http_body_util::BodyExt::collect(r.into_body()).await.unwrap().to_bytes().to_vec()).unwrap()
    };
    // A bad time of day is reported next to the field.
    let r = app
        .clone()
        .oneshot(post(
            "/p/rdp_bruteforce/schedule",
            "window=last%2024h&_sched_name=Morning&_sched_every=day&_sched_at=25%3A00".into(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body(r).await.contains("is not a time of day"));
    let r = app
        .clone()
        .oneshot(post(
            "/p/rdp_bruteforce/schedule",
            "window=last%2024h&port=3389&_sched_name=Morning&_sched_every=weekday&_sched_at=06%3A30&_sched_tz=Europe%2FPrague&_sched_new=attempts".into(),
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let s = engine.store.schedules().unwrap().into_iter().find(|s| s.name == "Morning").expect("saved");
    let spec: casebook::model::schedule::ScheduleSpec = serde_json::from_str(&s.spec).unwrap();
    assert_eq!((spec.cron.as_str(), spec.timezone.as_str()), ("30 6 * * 1-5", "Europe/Prague"));
    assert_eq!(spec.params.get("window").map(String::as_str), Some("last 24h"), "relative windows stay relative");
    assert_eq!(s.created_by, "analyst");

    let r = app
        .clone()
        .oneshot(axum::http::Request::get("/schedules").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let html = body(r).await;
    assert!(html.contains("Morning") && html.contains("30 6 * * 1-5") && html.contains("Europe&#x2f;Prague"), "{html}");
    let r = app.clone().oneshot(post(&format!("/schedules/{}/disable", s.id), format!("_csrf={token}"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!engine.store.schedule(s.id).unwrap().unwrap().enabled);
    // Without the CSRF token nothing changes.
    let r = app
        .clone()
        .oneshot(
            axum::http::Request::post(format!("/schedules/{}/enable", s.id))
                .header("cookie", cookie.clone())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!engine.store.schedule(s.id).unwrap().unwrap().enabled);
}

#[tokio::test]
async fn a_broken_declaration_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let paths = setup(dir.path(), "http://127.0.0.1:9/hook");
    std::fs::write(
        paths.playbooks.join("watch.yaml"),
        WATCH.replace("'*/2 * * * * *'", "'0 25 * * *'").replace("what_is_new: [hot]", "what_is_new: [nope]"),
    )
    .unwrap();
    let catalog = Catalog::load(paths, chrono_tz::Tz::UTC).await;
    let problems: Vec<String> = catalog.problems().map(|p| p.to_string()).collect();
    assert!(
        problems.iter().any(|p| p.contains("watch.yaml:12:") && p.contains("is not a cron timetable")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("`nope` is not a query step")), "{problems:?}");
}
