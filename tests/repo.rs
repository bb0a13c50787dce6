//! Updating the playbook repository against a real local "remote" (a bare repository made
//! here): local edits → check lists incoming commits → update discards the edits and lands on
//! the remote commit; an incoming version with an invalid playbook is reported first.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::common;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn check_then_update_discards_local_edits_and_reports_broken_incoming_versions() {
    let data = common::fresh_data();
    let root = tempfile::tempdir().expect("tempdir");
    let (remote, seed, live, dev) =
        (root.path().join("remote.git"), root.path().join("seed"), root.path().join("live"), root.path().join("dev"));
    git(root.path(), &["init", "--bare", "--quiet", remote.to_str().expect("utf8")]);
    git(root.path(), &["clone", "--quiet", remote.to_str().expect("utf8"), seed.to_str().expect("utf8")]);
    let original = std::fs::read_to_string(common::repo().join("playbooks/network/rdp_bruteforce.yaml")).expect("read");
    std::fs::create_dir_all(seed.join("playbooks")).expect("dir");
    std::fs::write(seed.join("playbooks/rdp_bruteforce.yaml"), &original).expect("write");
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "--quiet", "-m", "First playbook"]);
    git(&seed, &["push", "--quiet", "origin", "HEAD:main"]);
    for clone in [&live, &dev] {
        git(
            root.path(),
            &["clone", "--quiet", "--branch", "main", remote.to_str().expect("utf8"), clone.to_str().expect("utf8")],
        );
    }
    // Upstream moves on: a new title.
    std::fs::write(
        dev.join("playbooks/rdp_bruteforce.yaml"),
        original.replace("title: RDP brute force and scanning", "title: RDP brute force v2"),
    )
    .expect("write");
    git(&dev, &["commit", "--quiet", "-am", "Rename the RDP playbook"]);
    git(&dev, &["push", "--quiet", "origin", "main"]);
    let remote_head = git(&dev, &["rev-parse", "--short", "HEAD"]);
    // The server's checkout has a local edit.
    std::fs::write(live.join("playbooks/rdp_bruteforce.yaml"), original.replace("default: 3389", "default: 3390"))
        .expect("edit");

    let mut paths = common::paths_with(data.path());
    paths.playbooks = live.join("playbooks");
    let catalog = Arc::new(casebook::catalog::Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let engine = Arc::new(casebook::engine::Engine::new(
        catalog.clone(),
        casebook::store::Store::open(&paths.state_db()).expect("store"),
    ));

    let status = casebook::repo::status(&paths.playbooks).await.expect("status").expect("a checkout");
    assert_eq!(status.branch, "main");
    assert_eq!(status.upstream.as_deref(), Some("origin/main"));
    assert_eq!(status.changes, vec!["M playbooks/rdp_bruteforce.yaml"]);

    let incoming = casebook::repo::check(&catalog).await.expect("check");
    let subjects: Vec<&str> = incoming.commits.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, vec!["Rename the RDP playbook"]);
    assert!(incoming.problems.is_empty(), "{:?}", incoming.problems);
    assert!(
        std::fs::read_to_string(live.join("playbooks/rdp_bruteforce.yaml")).expect("read").contains("3390"),
        "check changes nothing"
    );

    // Update through the management page.
    let app = casebook::web::app(casebook::web::AppState::new(engine.clone(), paths.clone()).expect("state"));
    let r = app.clone().oneshot(Request::get("/manage").body(Body::empty()).expect("req")).await.expect("resp");
    let (cookie, token) = common::csrf_cookie(&r);
    let page = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    assert!(page.contains("M playbooks&#x2f;rdp_bruteforce.yaml"), "local changes are shown");
    let r = app
        .clone()
        .oneshot(
            Request::post("/manage/repo/check")
                .header(header::COOKIE, &cookie)
                .header("x-csrf-token", &token)
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("resp");
    let html = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    assert!(html.contains("Rename the RDP playbook") && html.contains("The incoming version is valid"), "{html}");
    let r = app
        .clone()
        .oneshot(
            Request::post("/manage/repo/update")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, &cookie)
                .body(Body::from(format!("_csrf={token}")))
                .expect("req"),
        )
        .await
        .expect("resp");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(git(&live, &["rev-parse", "--short", "HEAD"]), remote_head, "on the remote commit");
    assert_eq!(git(&live, &["status", "--porcelain"]), "", "local edits discarded");
    assert_eq!(
        engine.catalog().entry("rdp_bruteforce").and_then(|e| e.runnable()).map(|p| p.title.clone()).as_deref(),
        Some("RDP brute force v2"),
        "the catalog was reloaded"
    );

    // An incoming version with a broken playbook is reported before anything is applied.
    std::fs::write(
        dev.join("playbooks/rdp_bruteforce.yaml"),
        original.replace("sum(ibyt) AS bytes_sent", "sum(ibytez) AS bytes_sent"),
    )
    .expect("write");
    git(&dev, &["commit", "--quiet", "-am", "Break it"]);
    git(&dev, &["push", "--quiet", "origin", "main"]);
    let incoming = casebook::repo::check(&engine.catalog()).await.expect("check");
    assert_eq!(incoming.commits.len(), 1);
    let problems: Vec<String> = incoming.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("rdp_bruteforce.yaml:") && problems[0].contains("unknown column `ibytez`"),
        "{problems:?}"
    );
    assert_eq!(git(&live, &["rev-parse", "--short", "HEAD"]), remote_head, "nothing applied");
    assert_eq!(git(&live, &["worktree", "list"]).lines().count(), 1, "the temporary worktree is gone");
}
