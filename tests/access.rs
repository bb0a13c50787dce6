//! Who may do what: the role matrix, generated from the routes table so that a new route is
//! covered without anyone adding it here; signing in and out; and the audit trail.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use casebook::store::accounts::Role;
use casebook::web::{Access, AppState};

use crate::common;

const CSRF: &str = "0123456789abcdef0123456789abcdef";
const ROLE_REFUSAL: &str = "may not do this: it needs the";

/// The routes anyone may use: signing in, the setup link, health and static files.
const PUBLIC: [&str; 4] = ["/login", "/setup/{token}", "/health", "/static/{*path}"];

/// A concrete URL for a route's pattern.
fn url_for(path: &str) -> String {
    let hex32 = "0123456789abcdef0123456789abcdef";
    let mut out = Vec::new();
    for seg in path.split('/') {
        let filled = match seg {
            "{id}" if path.starts_with("/threats") => "1".to_string(),
            "{id}" if path.starts_with("/exports") => hex32.to_string(),
            "{id}" => "ip_flows".to_string(),
            "{run}" => hex32.to_string(),
            "{step}" => "per_minute".to_string(),
            "{section}" | "{sid}" => "0".to_string(),
            "{action}" => "enable".to_string(),
            "{name}" => "nobody".to_string(),
            "{format}" => "csv".to_string(),
            "{token}" => "ab".repeat(32),
            "{*path}" => "casebook.css".to_string(),
            s if s.starts_with('{') => panic!("no value for {s} in {path}: add one here"),
            s => s.to_string(),
        };
        out.push(filled);
    }
    out.join("/")
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let r = app.clone().oneshot(req).await.expect("response");
    let status = r.status();
    let location = r.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(String::from);
    let body = r.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).to_string(), location)
}

/// A request as a browser sends it, with `cookie`; a POST carries no CSRF token, so a handler
/// that is reached refuses it with its own message and changes nothing.
fn request(method: &Method, uri: &str, cookie: &str, page: bool) -> Request<Body> {
    let mut b = Request::builder().method(method.clone()).uri(uri);
    if !cookie.is_empty() {
        b = b.header(header::COOKIE, cookie);
    }
    if page {
        b = b.header(header::ACCEPT, "text/html,application/xhtml+xml");
    }
    if method == Method::POST {
        b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    b.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_routes_table_says() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let app = casebook::web::app(AppState::new(engine.clone(), common::paths_with(data.path())).expect("state"));
    let routes = casebook::web::routes();
    assert!(routes.len() >= 45, "{} routes", routes.len());
    // What the roles mean, on the routes where it matters most.
    let needs = |method: Method, path: &str| {
        let r = routes.iter().find(|r| r.method == method && r.path == path);
        r.map(|r| r.access).unwrap_or_else(|| panic!("no route {method} {path}"))
    };
    for (path, role) in [
        ("/manage/repo/update", Role::Admin),
        ("/manage/stored/delete", Role::Admin),
        ("/manage/duplicates/delete", Role::Admin),
        ("/accounts/{name}/remove", Role::Admin),
        ("/manage/selftests", Role::Author),
        ("/p/{id}/run/{section}", Role::Analyst),
        ("/runs/{run}/steps/{step}/rate", Role::Analyst),
        ("/runs/{run}/threat", Role::Analyst),
        ("/api/runs", Role::Analyst),
    ] {
        assert_eq!(needs(Method::POST, path), Access::Role(role), "{path}");
    }
    for (path, role) in
        [("/audit", Role::Admin), ("/accounts", Role::Admin), ("/manage", Role::Author), ("/threats", Role::Viewer)]
    {
        assert_eq!(needs(Method::GET, path), Access::Role(role), "{path}");
    }
    for r in &routes {
        let uri = url_for(r.path);
        if r.access == Access::Public {
            assert!(PUBLIC.contains(&r.path), "{} {} is open to anyone: is that meant?", r.method, r.path);
            continue;
        }
        // Signed out: a browser's page goes to sign in and comes back; anything else is told to.
        let (status, body, location) = send(&app, request(&r.method, &uri, "", false)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "signed out, {} {uri}: {body}", r.method);
        if r.method == Method::GET {
            let (status, _, location2) = send(&app, request(&r.method, &uri, "", true)).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "signed-out page {uri}");
            let to = location2.unwrap_or_default();
            assert!(to.starts_with("/login?next=%2F"), "{uri} → {to}");
        }
        assert!(location.is_none());
        let Access::Role(needed) = r.access else { continue };
        for role in Role::ALL {
            let name = format!("matrix-{role}");
            let cookie = format!("{}; casebook_csrf={CSRF}", common::sign_in(&engine.store, &name, role));
            let (status, body, _) = send(&app, request(&r.method, &uri, &cookie, false)).await;
            if role < needed {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} at {} {uri}: {body}", r.method);
                assert!(body.contains(ROLE_REFUSAL) && body.contains(needed.as_str()), "{role} at {uri}: {body}");
            } else {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{role} at {} {uri}: {body}", r.method);
                assert!(!body.contains(ROLE_REFUSAL), "{role} is refused {} {uri}: {body}", r.method);
                if r.method == Method::POST && !uri.starts_with("/api/") {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{role} {uri}: a POST without its token: {body}");
                    assert!(body.contains("the form has expired"), "{role} {uri}: {body}");
                }
            }
        }
    }
    // Nothing above changed anything: no run, export, schedule, threat or rating.
    assert!(engine.store.all_runs().expect("runs").is_empty());
    assert!(engine.store.all_exports().expect("exports").is_empty());
    assert!(engine.store.threats().expect("threats").is_empty());
    assert!(engine.store.ratings(None).expect("ratings").is_empty());
}

#[tokio::test]
async fn a_change_from_a_foreign_host_or_origin_is_refused_on_every_route() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let app = casebook::web::app(AppState::new(engine.clone(), common::paths_with(data.path())).expect("state"));
    let cookie = format!("{}; casebook_csrf={CSRF}", common::sign_in(&engine.store, "admin", Role::Admin));
    for r in casebook::web::routes().iter().filter(|r| r.method == Method::POST) {
        let uri = url_for(r.path);
        let mut req = request(&r.method, &uri, &cookie, false);
        req.headers_mut().insert("x-csrf-token", CSRF.parse().expect("value"));
        req.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().expect("value"));
        let (status, body, _) = send(&app, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
        assert!(body.contains("not casebook"), "{uri}: {body}");
        let mut req = request(&r.method, &uri, &cookie, false);
        req.headers_mut().insert("x-csrf-token", CSRF.parse().expect("value"));
        req.headers_mut().insert(header::HOST, "evil.example".parse().expect("value"));
        let (status, _, _) = send(&app, req).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{uri}");
    }
    assert!(engine.store.all_runs().expect("runs").is_empty());
    assert_eq!(engine.store.accounts().expect("accounts").len(), 1);
}

fn form(uri: &str, body: &str, cookie: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body.to_string()))
        .expect("request")
}

#[tokio::test]
async fn the_first_account_comes_from_the_setup_link_once_then_sign_in_pauses_after_failures() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let state = AppState::new(engine.clone(), common::paths_with(data.path())).expect("state");
    let link = "cd".repeat(32);
    *state.setup.lock().expect("lock") = Some(link.clone());
    let app = casebook::web::app(state);
    let csrf = format!("casebook_csrf={CSRF}");
    let (status, page, _) = send(&app, request(&Method::GET, &format!("/setup/{}", "ab".repeat(32)), "", true)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a wrong link: {page}");
    let (status, page, _) = send(&app, request(&Method::GET, &format!("/setup/{link}"), "", true)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Create the administrator"), "{page}");
    let body = format!("_csrf={CSRF}&name=lead&password=short&again=short");
    let (status, page, _) = send(&app, form(&format!("/setup/{link}"), &body, &csrf)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("at least 10 characters"), "{page}");
    let pw = "a long enough secret";
    let body = format!("_csrf={CSRF}&name=lead&password={pw}&again={pw}").replace(' ', "+");
    let r = app.clone().oneshot(form(&format!("/setup/{link}"), &body, &csrf)).await.expect("response");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[header::SET_COOKIE].to_str().expect("cookie").to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Max-Age="), "{set}");
    let session = set.split(';').next().expect("pair").to_string();
    assert_eq!(engine.store.account("lead").expect("db").map(|a| a.role), Some(Role::Admin));
    // The link is spent.
    let (status, _, _) = send(&app, form(&format!("/setup/{link}"), &body.replace("lead", "second"), &csrf)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = send(&app, request(&Method::GET, "/", &session, true)).await;
    assert_eq!(status, StatusCode::OK, "signed in by the setup");

    // Signing in: a wrong password says so without telling which part was wrong.
    let login = |pw: &str| form("/login", &format!("_csrf={CSRF}&name=lead&password={pw}&next=%2Fthreats"), &csrf);
    let (status, page, _) = send(&app, login("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("the name or the password is not right"), "{page}");
    let r = app.clone().oneshot(login(&pw.replace(' ', "+"))).await.expect("response");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/threats", "back where the person was going");
    // Another site as `next` is not followed.
    let evil = format!("_csrf={CSRF}&name=lead&password={}&next=%2F%2Fevil.example", pw.replace(' ', "+"));
    let r = app.clone().oneshot(form("/login", &evil, &csrf)).await.expect("response");
    assert_eq!(r.headers()[header::LOCATION], "/");
    // Five failures pause sign-in for the account, even with the right password.
    for _ in 0..5 {
        let _ = send(&app, login("wrong")).await;
    }
    let (status, page, _) = send(&app, login(&pw.replace(' ', "+"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("too many failed sign-ins"), "{page}");

    // Signing out ends the session on the server, not only in the browser.
    let cookie = format!("{session}; {csrf}");
    let (status, _, location) = send(&app, form("/logout", &format!("_csrf={CSRF}"), &cookie)).await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    let (status, _, _) = send(&app, request(&Method::GET, "/", &session, false)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old cookie no longer signs in");
    // No password or token is kept in the state file as it was typed or sent.
    let db = std::fs::read(common::paths_with(data.path()).state_db()).expect("state file");
    let text = String::from_utf8_lossy(&db);
    assert!(!text.contains(pw) && !text.contains(session.trim_start_matches("casebook_session=")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_shows_a_session_in_order_and_finds_an_edited_entry() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let paths = common::paths_with(data.path());
    let hash = casebook::auth::hash_password(common::PASSWORD).expect("hash");
    engine.store.add_account("ana", Role::Analyst, &[], Some(&hash)).expect("account");
    let admin = common::sign_in(&engine.store, "boss", Role::Admin);
    let app = casebook::web::app(AppState::new(engine.clone(), paths.clone()).expect("state"));
    let csrf = format!("casebook_csrf={CSRF}");

    // A scripted session: sign in, run, rate, export, save a threat, sign out.
    let pw = common::PASSWORD.replace(' ', "+");
    let r = app.clone().oneshot(form("/login", &format!("_csrf={CSRF}&name=ana&password={pw}"), &csrf)).await;
    let r = r.expect("response");
    let session = r.headers()[header::SET_COOKIE].to_str().expect("cookie").split(';').next().expect("p").to_string();
    let me = format!("{session}; {csrf}");
    let post = |uri: &str, body: &str| {
        let mut req = form(uri, body, &me);
        req.headers_mut().insert("x-csrf-token", CSRF.parse().expect("value"));
        req
    };
    let src = casebook::demo::cast::SCANNER;
    let (status, body, _) = send(&app, post("/p/ip_flows/run/0", &format!("src={src}&window=last+7d"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run =
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["run_id"].as_str().expect("id").to_string();
    let (status, body, _) = send(&app, post(&format!("/runs/{run}/steps/flows_basic/export"), "format=csv")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t =
        format!("threat_title=Scanner&threat_severity=high&threat_kind=ip&threat_entity={src}&threat_description=seen");
    let (status, body, _) = send(&app, post(&format!("/runs/{run}/threat"), &t)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = send(&app, post("/logout", &format!("_csrf={CSRF}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A failed sign-in is recorded too.
    let _ = send(&app, form("/login", &format!("_csrf={CSRF}&name=ana&password=nope"), &csrf)).await;

    let (status, body, _) = send(&app, request(&Method::GET, "/audit/export/json?who=ana", &admin, false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    let actions: Vec<&str> = entries.iter().rev().map(|e| e["action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions, ["sign-in", "run", "export", "save-threat", "sign-out", "sign-in-refused"]);
    let run_entry = entries.iter().find(|e| e["action"] == "run").expect("the run");
    assert_eq!(run_entry["target"], "ip_flows");
    assert!(run_entry["detail"].as_str().unwrap_or("").contains(src), "the parameters are recorded: {run_entry}");
    let (status, page, _) = send(&app, request(&Method::GET, "/audit?action=export", &admin, false)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("The chain of") && page.contains("holds"), "{page}");
    assert!(!page.contains("sign-in-refused</code>"), "the filter keeps to exports");

    // SQLite refuses edits; someone with the file who drops the guard is still found out.
    let conn = rusqlite::Connection::open(paths.state_db()).expect("db");
    let refused = conn.execute("UPDATE audit SET who = 'someone' WHERE action = 'export'", []);
    assert!(refused.is_err(), "the log is append-only");
    conn.execute_batch(
        "DROP TRIGGER audit_append_only_update; UPDATE audit SET detail = '{}' WHERE action = 'export';",
    )
    .expect("tamper");
    let check = engine.store.verify_audit().expect("verify");
    let edited = entries.iter().find(|e| e["action"] == "export").and_then(|e| e["id"].as_i64());
    assert_eq!(check.broken_at, edited, "the edited entry is named");
    let (_, page, _) = send(&app, request(&Method::GET, "/audit", &admin, false)).await;
    assert!(page.contains("has been tampered with"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playbook_limited_to_a_group_and_its_runs_are_hidden_from_everyone_else() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let paths = common::paths_with(data.path());
    let app = casebook::web::app(AppState::new(engine.clone(), paths.clone()).expect("state"));
    // An administrator runs ip_flows, exports a table and saves a threat from it.
    let out =
        common::run_all(&engine, "ip_flows", &[("src", casebook::demo::cast::SCANNER), ("window", "last 7d")]).await;
    let run = out.run_id;
    let export = engine.export(&run, "flows_basic", "csv", "boss").await.expect("export");
    std::fs::write(data.path().join("access.yaml"), "- folder: network\n  groups: [soc]\n").expect("rules");

    let hash = casebook::auth::hash_password(common::PASSWORD).expect("hash");
    engine.store.add_account("member", Role::Analyst, &["soc".to_string()], Some(&hash)).expect("account");
    let member = common::sign_in(&engine.store, "member", Role::Analyst);
    let outsider = common::sign_in(&engine.store, "outsider", Role::Analyst);
    let get = |uri: String, cookie: &str| send(&app, request(&Method::GET, &uri, cookie, false));

    let (_, index, _) = get("/".into(), &outsider).await;
    assert!(!index.contains("/p/ip_flows") && index.contains("/p/event_timeline"), "the index hides network/");
    let (_, index, _) = get("/".into(), &member).await;
    assert!(index.contains("/p/ip_flows"), "a member of soc sees it");
    for uri in [
        "/p/ip_flows".to_string(),
        format!("/runs/{run}"),
        format!("/runs/{run}/steps/flows_basic/table"),
        format!("/runs/{run}/report.html"),
        format!("/api/runs/{run}"),
        format!("/exports/{}", export.key),
    ] {
        let (status, body, _) = get(uri.clone(), &outsider).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri} is hidden from an outsider: {body}");
        let (status, body, _) = get(uri.clone(), &member).await;
        assert_eq!(status, StatusCode::OK, "{uri} is open to a member: {body}");
    }
    // An author outside the group does not see it on the management page either.
    let author = common::sign_in(&engine.store, "author-elsewhere", Role::Author);
    let (status, manage, _) = get("/manage".into(), &author).await;
    assert_eq!(status, StatusCode::OK);
    // (Its link and its file: the page also shows the repository's last commit, whose
    // subject may name anything.)
    assert!(
        !manage.contains("/p/ip_flows")
            && !manage.contains("network/ip_flows.yaml")
            && manage.contains("/p/event_timeline"),
        "the management page hides network/"
    );
    // A broken rules file hides nothing silently: the pages say something is wrong.
    std::fs::write(data.path().join("access.yaml"), "- folder: network\n  group: [soc]\n").expect("rules");
    let (status, _, _) = get("/".into(), &outsider).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn accounts_are_managed_on_the_command_line_and_a_secrets_file_others_can_read_stops_serve() {
    let data = common::fresh_data();
    let bin = env!("CARGO_BIN_EXE_casebook");
    let user = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(bin)
            .current_dir(common::repo())
            .arg("user")
            .args(args)
            .arg("--data")
            .arg(data.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("casebook user");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("wait");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let (ok, text) = user(&["add", "ana", "--role", "analyst", "--groups", "soc,ir"], "a long enough secret\n");
    assert!(ok, "{text}");
    let (ok, text) = user(&["add", "bob", "--role", "boss"], "a long enough secret\n");
    assert!(!ok && text.contains("is not a role"), "{text}");
    let (ok, text) = user(&["passwd", "ana"], "short\n");
    assert!(!ok && text.contains("at least 10 characters"), "{text}");
    let (ok, text) = user(&["set", "ana", "--role", "author"], "");
    assert!(ok, "{text}");
    let (ok, list) = user(&["list"], "");
    assert!(ok && list.contains("ana") && list.contains("author") && list.contains("soc,ir"), "{list}");
    let store = casebook::store::Store::open(&common::paths_with(data.path()).state_db()).expect("store");
    let (_, token, _) =
        casebook::auth::SignIns::default().sign_in(&store, "ana", "a long enough secret", None).expect("sign in");
    assert_eq!(token.len(), 64);
    let actions: Vec<String> =
        store.audit_entries(&Default::default()).expect("audit").into_iter().rev().map(|e| e.action).collect();
    assert_eq!(actions, ["account-add", "account-change"], "the command line's changes are audited");
    let (ok, _) = user(&["remove", "ana"], "");
    assert!(ok);
    assert!(store.account("ana").expect("db").is_none());

    // serve refuses a secrets file that others may read, and says how to fix it.
    let secrets = data.path().join("secrets.yaml");
    std::fs::write(&secrets, "SOC_WEBHOOK: https://hooks.example/T0/B0/xyz\n").expect("write");
    let out = std::process::Command::new(bin)
        .current_dir(common::repo())
        .args(["serve", "--bind", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .output()
        .expect("serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chmod 600"), "{err}");
    assert!(!err.contains("hooks.example"), "the value is never printed: {err}");
}
