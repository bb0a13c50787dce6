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
    let app = common::app(casebook::web::AppState::new(engine.clone(), paths.clone()).expect("state"));
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
    let validated = html
        .split("name=\"commit\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the validated commit in the form")
        .to_string();
    assert_eq!(validated, git(&dev, &["rev-parse", "HEAD"]));
    let update = |commit: String| {
        let app = app.clone();
        let req = common::form_post("/manage/repo/update", &format!("_csrf={token}&commit={commit}"), &cookie, &token);
        async move { app.oneshot(req).await.expect("resp") }
    };

    // Meanwhile the remote moves again and the server fetches it: the update applies only what
    // was validated, so it refuses and asks for a new check.
    std::fs::write(dev.join("playbooks/notes.md"), "unreviewed\n").expect("write");
    git(&dev, &["add", "."]);
    git(&dev, &["commit", "--quiet", "-m", "Unreviewed change"]);
    git(&dev, &["push", "--quiet", "origin", "main"]);
    git(&live, &["fetch", "--quiet"]);
    let r = update(validated.clone()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    assert!(body.contains("the remote has moved on since the check"), "{body}");
    assert!(std::fs::read_to_string(live.join("playbooks/rdp_bruteforce.yaml")).expect("read").contains("3390"));
    git(&dev, &["reset", "--quiet", "--hard", "HEAD~1"]);
    git(&dev, &["push", "--quiet", "--force", "origin", "main"]);
    git(&live, &["fetch", "--quiet"]);

    let r = update(validated).await;
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

/// `serve --playbooks-repo`: an empty playbooks folder is cloned from the configured
/// repository and served; a folder of files that is not a checkout is never overwritten.
#[tokio::test]
async fn a_configured_repository_is_cloned_into_an_empty_playbooks_folder() {
    let data = common::fresh_data();
    let root = tempfile::tempdir().expect("tempdir");
    let (remote, seed) = (root.path().join("remote.git"), root.path().join("seed"));
    git(root.path(), &["init", "--bare", "--quiet", remote.to_str().expect("utf8")]);
    git(root.path(), &["clone", "--quiet", remote.to_str().expect("utf8"), seed.to_str().expect("utf8")]);
    let original = std::fs::read_to_string(common::repo().join("playbooks/network/rdp_bruteforce.yaml")).expect("read");
    std::fs::write(seed.join("rdp_bruteforce.yaml"), &original).expect("write");
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "--quiet", "-m", "First playbook"]);
    git(&seed, &["push", "--quiet", "origin", "HEAD:main"]);

    let playbooks = root.path().join("live/playbooks");
    let server = common::Server::start([
        "--data".as_ref(),
        data.path().as_os_str(),
        "--playbooks".as_ref(),
        playbooks.as_os_str(),
        "--playbooks-repo".as_ref(),
        remote.as_os_str(),
    ]);
    let me = server.session().await;
    let (_, index) = server.get(&me, "/").await;
    assert!(index.contains("RDP brute force and scanning") && index.contains("1 playbook"), "{index}");
    let (_, manage) = server.get(&me, "/manage").await;
    assert!(manage.contains("First playbook") && manage.contains("origin&#x2f;main"), "the checkout is shown");
    drop(server);

    // Files that are not a checkout stay as they are: serve refuses to start.
    let own = root.path().join("own");
    std::fs::create_dir_all(&own).expect("dir");
    std::fs::write(own.join("mine.yaml"), &original).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_casebook"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .arg("--playbooks")
        .arg(&own)
        .arg("--playbooks-repo")
        .arg(&remote)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holds files but is not a git checkout"), "{stderr}");
    assert_eq!(std::fs::read_to_string(own.join("mine.yaml")).expect("kept"), original);
}
