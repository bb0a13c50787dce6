//! Management: duplicated playbook files, stored data (run outputs and exports) with sizes
//! and ages, deleting what was listed, and the retention policy. Pages live in
//! `web/manage.rs`; this module does the work and never deletes what it did not list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::{display_path, yaml_files, Catalog};
use crate::store::Store;
use crate::util::paths::join_inside;
use crate::util::text::fnv1a;

/// A playbook file that copies another.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Duplicate {
    /// Relative to the playbooks folder.
    pub file: String,
    /// The file it duplicates, relative to the playbooks folder.
    pub of: String,
    pub reason: String,
}

fn rel(base: &Path, p: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).to_string_lossy().replace('\\', "/")
}

/// `ip_flows-Copy1`, `ip_flows - Copy`, `ip_flows (2)`, `ip_flows_copy` → `ip_flows`.
fn copy_base(stem: &str) -> Option<String> {
    let lower = stem.to_lowercase();
    for marker in ["-copy", " - copy", "_copy", " copy", "-kopie", " (", "-kopie"] {
        if let Some(i) = lower.rfind(marker) {
            let tail = &lower[i + marker.len()..];
            let tail_ok = tail.chars().all(|c| c.is_ascii_digit() || c == ')' || c == ' ');
            if i > 0 && tail_ok && (marker != " (" || tail.ends_with(')')) {
                return Some(stem[..i].to_string());
            }
        }
    }
    None
}

/// Finds duplicated playbook files: identical content, copies named like `name-Copy1.yaml`
/// next to `name.yaml`, and files with the same title. The file kept is the one without a
/// copy marker, else the first by path.
pub fn duplicates(catalog: &Catalog) -> Vec<Duplicate> {
    let base = &catalog.paths.playbooks;
    let files = yaml_files(base);
    let mut out: Vec<Duplicate> = Vec::new();
    let listed = |out: &Vec<Duplicate>, f: &str| out.iter().any(|d| d.file == f);
    // 1. Copies by name.
    for f in &files {
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if let Some(b) = copy_base(stem) {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("yaml");
            let original = f.with_file_name(format!("{b}.{ext}"));
            if original.is_file() {
                out.push(Duplicate {
                    file: rel(base, f),
                    of: rel(base, &original),
                    reason: "a copy by its name".into(),
                });
            }
        }
    }
    // 2. Identical content.
    let mut by_hash: HashMap<String, Vec<&PathBuf>> = HashMap::new();
    for f in &files {
        if let Ok(bytes) = std::fs::read(f) {
            by_hash.entry(fnv1a(&bytes)).or_default().push(f);
        }
    }
    let mut groups: Vec<Vec<&PathBuf>> = by_hash.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    for mut g in groups {
        g.sort_by_key(|p| {
            (copy_base(p.file_stem().and_then(|s| s.to_str()).unwrap_or_default()).is_some(), (*p).clone())
        });
        let keep = rel(base, g[0]);
        for f in &g[1..] {
            let r = rel(base, f);
            if !listed(&out, &r) {
                out.push(Duplicate { file: r, of: keep.clone(), reason: "identical content".into() });
            }
        }
    }
    // 3. Same title (different content): listed for a person to decide.
    let mut by_title: HashMap<String, Vec<String>> = HashMap::new();
    for f in &files {
        let shown = display_path(f);
        if let Some(pb) = catalog.playbooks.iter().find(|e| e.path == shown).and_then(|e| e.playbook.as_ref()) {
            by_title.entry(pb.title.trim().to_lowercase()).or_default().push(rel(base, f));
        }
    }
    for mut paths in by_title.into_values() {
        // Files already listed are not candidates to keep; prefer a file kept by another
        // rule, then names without a copy marker, then the first path.
        paths.retain(|p| !listed(&out, p));
        if paths.len() < 2 {
            continue;
        }
        paths.sort_by_key(|p| {
            let stem = Path::new(p).file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let kept_elsewhere = out.iter().any(|d| &d.of == p);
            (!kept_elsewhere, copy_base(&stem).is_some(), p.clone())
        });
        for p in &paths[1..] {
            if !listed(&out, p) {
                out.push(Duplicate { file: p.clone(), of: paths[0].clone(), reason: "the same title".into() });
            }
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// Deletes the requested files, but only those that are listed as duplicates right now.
/// Returns what was deleted.
pub fn delete_duplicates(catalog: &Catalog, requested: &[String]) -> Result<Vec<String>> {
    let listed = duplicates(catalog);
    let mut deleted = Vec::new();
    for r in requested {
        if !listed.iter().any(|d| &d.file == r) {
            continue;
        }
        if let Some(p) = join_inside(&catalog.paths.playbooks, r) {
            std::fs::remove_file(&p)?;
            tracing::info!(file = %r, "deleted duplicated playbook");
            deleted.push(r.clone());
        }
    }
    Ok(deleted)
}

/// One stored item: a run's outputs or an export.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stored {
    /// `run:<id>` or `export:<id>`.
    pub key: String,
    pub kind: &'static str,
    pub playbook: String,
    pub owner: String,
    pub what: String,
    pub bytes: u64,
    pub created_at: String,
    pub age_days: f64,
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

fn age_days(ts: &str, now: DateTime<Utc>) -> f64 {
    DateTime::parse_from_rfc3339(ts)
        .map(|t| (now - t.with_timezone(&Utc)).num_seconds() as f64 / 86_400.0)
        .unwrap_or(0.0)
}

/// Every run's outputs and every export, newest first, with size and age.
pub fn stored(catalog: &Catalog, store: &Store) -> Result<Vec<Stored>> {
    let now = Utc::now();
    let mut out = Vec::new();
    for e in store.all_exports()? {
        let bytes = join_inside(&catalog.paths.exports_dir(), &e.file)
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .unwrap_or(0);
        out.push(Stored {
            key: format!("export:{}", e.id),
            kind: "export",
            playbook: e.playbook,
            owner: e.created_by,
            what: format!("{} of step {} ({} rows)", e.format.to_uppercase(), e.step_id, e.rows),
            bytes,
            age_days: age_days(&e.created_at, now),
            created_at: e.created_at,
        });
    }
    for r in store.all_runs()? {
        if r.state == crate::store::runs::RunState::Running {
            continue;
        }
        let bytes = dir_size(&catalog.paths.run_dir(&r.id));
        out.push(Stored {
            key: format!("run:{}", r.id),
            kind: "run",
            playbook: r.playbook,
            owner: r.started_by,
            what: format!("run {} ({}, from {})", &r.id[..8.min(r.id.len())], r.state, r.source),
            bytes,
            age_days: age_days(&r.started_at, now),
            created_at: r.started_at,
        });
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    Ok(out)
}

/// Deletes the stored items named by `keys` (as listed by [`stored`]); unknown keys are
/// ignored. Returns the keys deleted.
pub fn delete_stored(catalog: &Catalog, store: &Store, keys: &[String]) -> Result<Vec<String>> {
    let listed = stored(catalog, store)?;
    let mut deleted = Vec::new();
    for k in keys {
        if !listed.iter().any(|s| &s.key == k) {
            continue;
        }
        if let Some(id) = k.strip_prefix("export:").and_then(|i| i.parse::<i64>().ok()) {
            if let Some(e) = store.export(id)? {
                if let Some(p) = join_inside(&catalog.paths.exports_dir(), &e.file) {
                    let _ = std::fs::remove_file(p);
                }
                store.delete_export(id)?;
                deleted.push(k.clone());
            }
        } else if let Some(id) = k.strip_prefix("run:") {
            if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
                let _ = std::fs::remove_dir_all(catalog.paths.run_dir(id));
                store.delete_run(id)?;
                deleted.push(k.clone());
            }
        }
    }
    if !deleted.is_empty() {
        tracing::info!(items = deleted.len(), "deleted stored data");
    }
    Ok(deleted)
}

/// How long and how much stored data is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age_days: f64,
    pub max_bytes: u64,
}

/// What the retention policy would delete now: everything older than the age limit, then
/// the oldest items until the total fits the size limit.
pub fn retention_plan(items: &[Stored], policy: Retention) -> Vec<String> {
    let mut doomed: Vec<String> =
        items.iter().filter(|s| s.age_days > policy.max_age_days).map(|s| s.key.clone()).collect();
    let mut total: u64 = items.iter().filter(|s| !doomed.contains(&s.key)).map(|s| s.bytes).sum();
    let mut oldest_first: Vec<&Stored> = items.iter().filter(|s| !doomed.contains(&s.key)).collect();
    oldest_first.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    for s in oldest_first {
        if total <= policy.max_bytes {
            break;
        }
        total -= s.bytes;
        doomed.push(s.key.clone());
    }
    doomed
}

/// Applies the retention policy and returns what it deleted; also forgets reputation answers
/// past their service's time-to-live.
pub fn apply_retention(catalog: &Catalog, store: &Store, policy: Retention) -> Result<Vec<String>> {
    let plan = retention_plan(&stored(catalog, store)?, policy);
    let deleted = delete_stored(catalog, store, &plan)?;
    let live: Vec<(String, chrono::Duration)> = catalog.services.iter().map(|s| (s.name.clone(), s.ttl)).collect();
    let forgotten = store.prune_lookup_cache(&live)?;
    if forgotten > 0 {
        tracing::info!(answers = forgotten, "expired reputation answers forgotten");
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_names() {
        assert_eq!(copy_base("ip_flows-Copy1").as_deref(), Some("ip_flows"));
        assert_eq!(copy_base("ip_flows - Copy").as_deref(), Some("ip_flows"));
        assert_eq!(copy_base("ip_flows (2)").as_deref(), Some("ip_flows"));
        assert_eq!(copy_base("ip_flows_copy").as_deref(), Some("ip_flows"));
        assert_eq!(copy_base("ip_flows"), None);
        assert_eq!(copy_base("copycat"), None);
        assert_eq!(copy_base("flows_copy_of_x"), None);
    }

    fn item(key: &str, bytes: u64, created: &str, age: f64) -> Stored {
        Stored {
            key: key.into(),
            kind: "run",
            playbook: "p".into(),
            owner: "o".into(),
            what: String::new(),
            bytes,
            created_at: created.into(),
            age_days: age,
        }
    }

    #[test]
    fn retention_takes_old_items_then_the_oldest_until_it_fits() {
        let items = vec![
            item("a", 10, "2026-01-01", 90.0),
            item("b", 50, "2026-02-01", 20.0),
            item("c", 50, "2026-02-10", 10.0),
            item("d", 50, "2026-02-20", 1.0),
        ];
        let plan = retention_plan(&items, Retention { max_age_days: 30.0, max_bytes: 100 });
        assert_eq!(plan, vec!["a".to_string(), "b".to_string()]);
        let plan = retention_plan(&items, Retention { max_age_days: 365.0, max_bytes: 1000 });
        assert!(plan.is_empty());
    }
}
