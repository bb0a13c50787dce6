//! The catalog: every connector and playbook loaded from disk and validated, including each
//! SQL statement planned against the connector schemas and earlier steps' outputs, so a
//! misspelled column is reported at load time with its `file:line:column`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use chrono_tz::Tz;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::Serialize;

pub mod compression;
pub mod connector;
pub mod database;
pub mod http_table;
pub mod mapping;
pub mod standard;
pub mod zeek;

use crate::model::params::{bind_all, ParamKind, ParseCtx, Value};
use crate::playbook::{self, Playbook, RawPlaybook};
use crate::sql::session::{clean_error, limited_session, new_session, ratings_schema, read_only, run_session, Cluster};
use crate::steps::env::{PlanEnv, Reported};
use crate::util::paths::Paths;
use crate::util::problem::{Pos, Problem, Problems};
use connector::Connector;

/// A playbook file and what became of it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub path: String,
    /// Parsed and structurally valid enough to show; runnable only with no problems.
    pub playbook: Option<Arc<Playbook>>,
    pub problems: Vec<Problem>,
    /// After a broken edit: the version that was valid before it, still served to analysts.
    pub last_good: Option<Arc<Playbook>>,
    /// What the page says before anyone runs it: columns the playbook reads that the data
    /// does not have (they read empty).
    pub notices: Vec<String>,
}

impl Entry {
    /// The version analysts run: this one when it has no problems, else the last good one.
    pub fn runnable(&self) -> Option<&Arc<Playbook>> {
        if self.problems.is_empty() {
            self.playbook.as_ref()
        } else {
            self.last_good.as_ref()
        }
    }

    /// What the page shows: the runnable version, else whatever parsed.
    pub fn shown(&self) -> Option<&Arc<Playbook>> {
        self.runnable().or(self.playbook.as_ref())
    }
}

/// Summary of one connector for pages and `check`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorInfo {
    pub name: String,
    pub path: String,
    pub description: String,
    pub columns: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Catalog {
    pub paths: Paths,
    pub tz: Tz,
    pub connectors: Vec<Connector>,
    /// Reputation services (`kind: http` connector files).
    pub services: Vec<crate::model::service::Service>,
    pub connector_problems: Vec<Problem>,
    pub playbooks: Vec<Entry>,
    /// The secrets connectors read (a database's password); reloads use the same.
    pub secrets: crate::secrets::Secrets,
}

impl Catalog {
    /// Carries over, for each playbook that is now broken, the version `old` could run.
    #[must_use]
    pub fn keep_last_good(mut self, old: &Catalog) -> Catalog {
        for e in &mut self.playbooks {
            if !e.problems.is_empty() {
                e.last_good = old.entry(&e.id).and_then(|o| o.runnable().cloned());
            }
        }
        self
    }

    /// Loads and validates everything under `paths`, connectors' secrets from the data
    /// folder's `secrets.yaml`. Never fails: problems are collected.
    pub async fn load(paths: Paths, tz: Tz) -> Catalog {
        let secrets = crate::secrets::Secrets::new(Some(paths.data.join("secrets.yaml")));
        Catalog::load_with(paths, tz, secrets).await
    }

    /// [`Catalog::load`] with the secrets `serve` was given.
    pub async fn load_with(paths: Paths, tz: Tz, secrets: crate::secrets::Secrets) -> Catalog {
        let ctx = new_session();
        let mut connectors = Vec::new();
        let mut services = Vec::new();
        let mut connector_problems = Vec::new();
        for file in connector_files(&paths) {
            let shown = display_path(&file);
            let mut problems = Problems::new(shown);
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Pos::UNKNOWN, format!("cannot read: {e}"));
                    connector_problems.extend(problems.list);
                    continue;
                }
            };
            if http_table::is_http_table(&text) {
                let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                if let Some(c) = http_table::load(&stem, &text, &secrets, &mut problems) {
                    add_named(&mut connectors, c, |c| &c.name, &mut problems);
                }
                connector_problems.extend(problems.list);
                continue;
            }
            if crate::model::service::is_service(&text) {
                let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                if let Some(s) = crate::model::service::load(&stem, &text, &mut problems) {
                    add_named(&mut services, s, |s| &s.name, &mut problems);
                }
                connector_problems.extend(problems.list);
                continue;
            }
            if let Some(c) = connector::load(&file, &text, &paths.data, &ctx, &secrets, &mut problems).await {
                add_named(&mut connectors, c, |c| &c.name, &mut problems);
            }
            connector_problems.extend(problems.list);
        }
        let mut catalog =
            Catalog { paths, tz, connectors, services, connector_problems, playbooks: Vec::new(), secrets };
        let files = yaml_files(&catalog.paths.playbooks);
        let mut entries = Vec::new();
        for file in files {
            entries.push(catalog.load_playbook(&file).await);
        }
        // Ids are file stems; two files with one stem would share a URL.
        let mut seen = HashSet::new();
        for e in &mut entries {
            if !seen.insert(e.id.clone()) {
                e.problems.push(Problem::new(
                    e.path.clone(),
                    Pos::new(1, 1),
                    format!("another playbook file is also named `{}`; rename one of them", e.id),
                ));
            }
        }
        entries.sort_by(|a, b| {
            let ta = a.playbook.as_ref().map(|p| p.title.to_lowercase()).unwrap_or_default();
            let tb = b.playbook.as_ref().map(|p| p.title.to_lowercase()).unwrap_or_default();
            ta.cmp(&tb).then(a.id.cmp(&b.id))
        });
        catalog.playbooks = entries;
        catalog
    }

    pub fn parse_ctx(&self) -> ParseCtx {
        ParseCtx { tz: self.tz, now: Utc::now() }
    }

    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.playbooks.iter().find(|e| e.id == id)
    }

    /// Every problem, connectors first.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.connector_problems.iter().chain(self.playbooks.iter().flat_map(|e| e.problems.iter()))
    }

    /// A session with every connector registered under its name.
    pub fn session(&self) -> SessionContext {
        self.session_limited(None)
    }

    /// [`Catalog::session`] whose queries may use at most `memory` bytes (then they fail with
    /// "Resources exhausted" instead of taking the server down).
    pub fn session_limited(&self, memory: Option<usize>) -> SessionContext {
        self.session_for_run(memory, None)
    }

    /// [`Catalog::session_limited`], spilling into a folder made inside `spill`.
    pub fn session_for_run(&self, memory: Option<usize>, spill: Option<&std::path::Path>) -> SessionContext {
        self.with_tables(limited_session(memory, spill))
    }

    /// [`Catalog::session_for_run`] whose queries execute on `cluster` when there is one.
    pub fn run_session(
        &self,
        memory: Option<usize>,
        spill: Option<&std::path::Path>,
        cluster: Option<&Cluster>,
    ) -> Result<SessionContext, String> {
        run_session(memory, spill, cluster).map(|ctx| self.with_tables(ctx))
    }

    /// `ctx` with every connector registered under its name, and an empty `ratings` table.
    fn with_tables(&self, ctx: SessionContext) -> SessionContext {
        for c in &self.connectors {
            if let Err(e) = ctx.register_table(c.name.as_str(), c.table.clone()) {
                tracing::warn!(connector = %c.name, error = %e, "could not register connector");
            }
        }
        // Empty here (planning); a run registers the analysts' ratings in its place.
        if let Ok(t) = MemTable::try_new(ratings_schema(), vec![vec![]]) {
            let _ = ctx.register_table("ratings", Arc::new(t));
        }
        ctx
    }

    pub fn connector_infos(&self) -> Vec<ConnectorInfo> {
        self.connectors
            .iter()
            .map(|c| ConnectorInfo {
                name: c.name.clone(),
                path: c.path.clone(),
                description: c.description.clone(),
                columns: c.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect(),
            })
            .collect()
    }

    /// Loads one playbook file (also used for `casebook run FILE` outside the folder).
    pub async fn load_playbook(&self, file: &Path) -> Entry {
        let shown = display_path(file);
        let id = file.file_stem().and_then(|s| s.to_str()).unwrap_or("playbook").to_string();
        let mut problems = Problems::new(shown.clone());
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Pos::UNKNOWN, format!("cannot read: {e}"));
                return Entry {
                    id,
                    path: shown,
                    playbook: None,
                    problems: problems.list,
                    last_good: None,
                    notices: Vec::new(),
                };
            }
        };
        let raw: RawPlaybook = match crate::util::yaml::parse(&shown, &text) {
            Ok(r) => r,
            Err(p) => {
                return Entry {
                    id,
                    path: shown,
                    playbook: None,
                    problems: vec![p],
                    last_good: None,
                    notices: Vec::new(),
                }
            }
        };
        let pb = playbook::validate(&id, raw, &text, &self.parse_ctx(), &mut problems);
        self.plan(&pb, &mut problems).await;
        let notices = self.missing_columns(&pb);
        Entry { id, path: shown, playbook: Some(Arc::new(pb)), problems: problems.list, last_good: None, notices }
    }

    /// For each connector `pb` reads whose data lacks standard columns the playbook's SQL
    /// names: a sentence saying which, and that they read empty.
    fn missing_columns(&self, pb: &Playbook) -> Vec<String> {
        let mut out = Vec::new();
        for c in self.connectors.iter().filter(|c| !c.missing.is_empty()) {
            let mut used: Vec<&str> = Vec::new();
            let mut steps: Vec<&str> = Vec::new();
            for (_, step) in pb.steps() {
                let Some(q) = step.query() else { continue };
                let words = &q.sql.words;
                let reads = words.contains(&c.name) || q.connector.as_ref().is_some_and(|(n, _)| *n == c.name);
                if !reads {
                    continue;
                }
                let lacking: Vec<&String> = c.missing.iter().filter(|m| words.contains(m)).collect();
                if lacking.is_empty() {
                    continue;
                }
                steps.push(&step.id);
                for m in lacking {
                    if !used.contains(&m.as_str()) {
                        used.push(m);
                    }
                }
            }
            if !used.is_empty() {
                let cols: Vec<String> = used.iter().map(|u| format!("`{u}`")).collect();
                let steps: Vec<String> = steps.iter().map(|s| format!("`{s}`")).collect();
                out.push(format!(
                    "The `{}` data ({}) has no {}: step{} {} show{} {} empty.",
                    c.name,
                    c.path,
                    cols.join(", "),
                    if steps.len() == 1 { "" } else { "s" },
                    steps.join(", "),
                    if steps.len() == 1 { "s" } else { "" },
                    if used.len() == 1 { "it" } else { "them" },
                ));
            }
        }
        out
    }

    /// Plans every step of `pb` with sample parameter values, reporting what fails: each
    /// kind plans itself ([`crate::steps::StepKind::plan`]) against the connectors and the
    /// earlier steps' tables.
    async fn plan(&self, pb: &Playbook, problems: &mut Problems) {
        let ctx = self.session();
        let cx = self.parse_ctx();
        let mut values = Vec::new();
        for p in &pb.params {
            let v = p.default.as_deref().and_then(|d| p.parse(Some(d), &cx).ok()).unwrap_or_else(|| p.sample(&cx));
            let v = if v == Value::Null { p.sample(&cx) } else { v };
            values.push((p.name.clone(), v));
        }
        let bound = bind_all(&pb.params, &values);
        for p in &pb.params {
            if let ParamKind::Select { options_query: Some(q), options_at, .. } = &p.kind {
                if let Err(e) = ctx.sql_with_options(q, read_only()).await {
                    let (message, hint) = clean_error(&e);
                    let mut problem = Problem::new(
                        problems.path.clone(),
                        *options_at,
                        format!("options_query of `{}`: {message}", p.name),
                    );
                    problem.hint = hint;
                    problems.list.push(problem);
                }
            }
        }
        let connectors: Vec<String> = self.connectors.iter().map(|c| c.name.clone()).collect();
        let mut failed: Vec<&str> = Vec::new();
        let mut schemas: Vec<(String, SchemaRef)> = Vec::new();
        for (_, step) in pb.steps() {
            if step.depends_on.iter().any(|d| failed.contains(&d.as_str())) {
                failed.push(&step.id);
                continue;
            }
            let env = PlanEnv {
                ctx: &ctx,
                params: &pb.params,
                bound: &bound,
                schemas: &schemas,
                connectors: &connectors,
                services: &self.services,
                data_dir: &self.paths.data,
            };
            let schema = match step.kind.plan(&step.id, &env, problems).await {
                Ok(Some(schema)) => schema,
                Ok(None) => continue,
                Err(Reported) => {
                    failed.push(&step.id);
                    continue;
                }
            };
            if let Some(chart) = &step.chart {
                for (col, at) in chart.columns() {
                    if schema.field_with_name(col).is_err() {
                        let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                        problems.push_hint(
                            at,
                            format!("chart column `{col}` is not in the result of step `{}`", step.id),
                            format!("columns: {}", cols.join(", ")),
                        );
                    }
                }
            }
            let _ = ctx.deregister_table(step.id.as_str());
            match MemTable::try_new(schema.clone(), vec![vec![]]) {
                Ok(t) => {
                    let _ = ctx.register_table(step.id.as_str(), Arc::new(t));
                }
                Err(e) => problems.push(step.at, format!("step `{}`: {e}", step.id)),
            }
            schemas.push((step.id.clone(), schema));
        }
    }
}

/// The connector files (their names) whose `path:` is in the data folder's `demo/`.
pub fn demo_readers(paths: &Paths) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct PathOnly {
        #[serde(default)]
        path: Option<String>,
    }
    let mut out = Vec::new();
    for file in connector_files(paths) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let Ok(raw) = serde_saphyr::from_str::<PathOnly>(&text) else { continue };
        let Some(path) = raw.path else { continue };
        let p = Path::new(path.trim());
        let full = if p.is_absolute() { p.to_path_buf() } else { paths.data.join(p) };
        if full.starts_with(paths.data.join("demo")) {
            out.push(file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
        }
    }
    out
}

/// Adds `item` to `list` unless another file already took its name.
fn add_named<T>(list: &mut Vec<T>, item: T, name: impl Fn(&T) -> &String, problems: &mut Problems) {
    if list.iter().any(|o| name(o) == name(&item)) {
        problems.push(Pos::new(1, 1), format!("connector name `{}` is used by another file", name(&item)));
    } else {
        list.push(item);
    }
}

/// The connector files to load: every YAML file under `connectors/` but those in
/// `connectors/examples/`, which are there to copy from.
fn connector_files(paths: &Paths) -> Vec<PathBuf> {
    let examples = paths.connectors.join("examples");
    yaml_files(&paths.connectors).into_iter().filter(|f| !f.starts_with(&examples)).collect()
}

/// `*.yaml` / `*.yml` files under `dir`, recursively, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A path as authors want to see it: relative to the current directory when inside it.
pub fn display_path(p: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    match cwd.as_ref().and_then(|c| p.strip_prefix(c).ok()) {
        Some(rel) => rel.display().to_string(),
        None => p.display().to_string(),
    }
}
