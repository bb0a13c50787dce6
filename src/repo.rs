//! The playbook repository: when the playbooks folder is a git checkout, its branch, commit
//! and local edits; fetching and listing incoming commits; validating the incoming version
//! before it is applied; and updating to it, discarding local edits to tracked files.
//!
//! It runs the `git` program (argument lists, never a shell; no prompts; time-limited), so
//! administrators' remotes, credentials and SSH settings work as they do in their terminal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::util::problem::Problem;

const GIT_TIMEOUT: Duration = Duration::from_secs(60);

async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("git {} took longer than {} s", args.join(" "), GIT_TIMEOUT.as_secs()))?
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("git {}: {}", args.first().unwrap_or(&""), err.lines().last().unwrap_or("failed").trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    pub id: String,
    pub author: String,
    pub date: String,
    pub subject: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub root: String,
    pub branch: String,
    pub head: Commit,
    /// `origin/main`, when the branch tracks one.
    pub upstream: Option<String>,
    /// Local changes as `git status --porcelain` shows them (`M file`, `?? file`).
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incoming {
    /// The full id of the upstream commit that was fetched and validated: the update applies
    /// exactly this one.
    pub target: String,
    pub commits: Vec<Commit>,
    /// Problems of the incoming version, found before it is applied.
    pub problems: Vec<Problem>,
}

const FORMAT: &str = "--format=%h%x09%an%x09%ad%x09%s";

fn commits(text: &str) -> Vec<Commit> {
    text.lines()
        .filter_map(|l| {
            let mut p = l.splitn(4, '\t');
            Some(Commit {
                id: p.next()?.to_string(),
                author: p.next()?.to_string(),
                date: p.next()?.to_string(),
                subject: p.next()?.to_string(),
            })
        })
        .collect()
}

/// The repository holding `playbooks`, or None when it is not in a git checkout.
pub async fn status(playbooks: &Path) -> Result<Option<Status>> {
    let Ok(root) = git(playbooks, &["rev-parse", "--show-toplevel"]).await else { return Ok(None) };
    let branch = git(playbooks, &["rev-parse", "--abbrev-ref", "HEAD"]).await?;
    let head = commits(&git(playbooks, &["log", "-1", FORMAT, "--date=short"]).await?)
        .pop()
        .ok_or_else(|| anyhow!("the repository has no commits"))?;
    let upstream = git(playbooks, &["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"]).await.ok();
    let changes =
        git(playbooks, &["status", "--porcelain", "--", "."]).await?.lines().map(|l| l.trim().to_string()).collect();
    Ok(Some(Status { root, branch, head, upstream, changes }))
}

/// Fetches, lists the commits not yet applied, and validates the incoming version with the
/// current connectors and data (in a temporary worktree; nothing here changes).
pub async fn check(catalog: &Catalog) -> Result<Incoming> {
    let dir = &catalog.paths.playbooks;
    git(dir, &["fetch", "--quiet"]).await?;
    let target = git(dir, &["rev-parse", "@{u}"])
        .await
        .map_err(|_| anyhow!("the branch tracks no remote branch; nothing to update from"))?;
    let list = commits(&git(dir, &["log", FORMAT, "--date=short", &format!("HEAD..{target}")]).await?);
    let prefix = git(dir, &["rev-parse", "--show-prefix"]).await?;
    let tmp = std::env::temp_dir().join(format!("casebook-incoming-{}", uuid::Uuid::new_v4().simple()));
    let tmp_s = tmp.to_string_lossy().to_string();
    git(dir, &["worktree", "add", "--detach", "--quiet", &tmp_s, &target]).await?;
    let incoming_playbooks: PathBuf = tmp.join(prefix.trim_end_matches('/'));
    let mut paths = catalog.paths.clone();
    paths.playbooks = incoming_playbooks.clone();
    let loaded = Catalog::load_with(paths, catalog.tz, catalog.secrets.clone()).await;
    let shown = |p: &str| p.replace(&format!("{}/", incoming_playbooks.display()), "");
    let problems = loaded
        .playbooks
        .iter()
        .flat_map(|e| e.problems.iter())
        .map(|p| Problem { path: shown(&p.path), ..p.clone() })
        .collect();
    let _ = git(dir, &["worktree", "remove", "--force", &tmp_s]).await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Incoming { target, commits: list, problems })
}

/// Moves to `target`, the upstream commit a check fetched and validated, discarding local
/// edits to tracked files (new, untracked files stay). Refuses when the upstream has moved
/// since, so that what is applied is always what was validated. Returns the new head.
pub async fn update(playbooks: &Path, target: &str) -> Result<Commit> {
    let upstream = git(playbooks, &["rev-parse", "@{u}"])
        .await
        .map_err(|_| anyhow!("the branch tracks no remote branch; nothing to update from"))?;
    if upstream != target.trim() {
        bail!("the remote has moved on since the check; check for updates again and review the new version");
    }
    git(playbooks, &["reset", "--hard", "--quiet", &upstream]).await?;
    let head = commits(&git(playbooks, &["log", "-1", FORMAT, "--date=short"]).await?)
        .pop()
        .ok_or_else(|| anyhow!("no commit after the update"))?;
    tracing::info!(commit = %head.id, "playbook repository updated");
    Ok(head)
}

/// A configured repository (`serve --playbooks-repo URL`): when the playbooks folder does
/// not exist yet or is empty, clones the repository there. An existing checkout is kept as it
/// is (updates go through the management page); a non-empty folder that is not a checkout is
/// an error, so nothing of an author's is overwritten.
pub async fn clone_if_absent(url: &str, playbooks: &Path) -> Result<bool> {
    let empty = match std::fs::read_dir(playbooks) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => true,
    };
    if !empty {
        if status(playbooks).await?.is_none() {
            bail!(
                "{} holds files but is not a git checkout; move them away or leave out --playbooks-repo",
                playbooks.display()
            );
        }
        return Ok(false);
    }
    if let Some(parent) = playbooks.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // From the current folder, so that a relative folder or repository path means what it
    // means on the command line.
    let dest = playbooks.to_string_lossy().to_string();
    git(Path::new("."), &["clone", "--quiet", "--", url, &dest]).await?;
    Ok(true)
}
