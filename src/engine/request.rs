//! What a run is asked to do, and what its steps showed.

use std::sync::Arc;

use serde::Serialize;

use crate::model::params::Values;
use crate::playbook::Playbook;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub playbook: Arc<Playbook>,
    /// Parsed values, one per declared parameter.
    pub values: Values,
    /// Only this section (and the earlier steps it reads); None = every section.
    pub section: Option<usize>,
    pub who: String,
    pub source: String,
    /// The schedule that fired this run, if one did.
    pub schedule_id: Option<i64>,
    /// Hidden steps (`table: { show: false }`) whose tables are read after the run (a
    /// schedule's `what_is_new`, a self-test's expectations); the others' files go when the
    /// run is done. None keeps every table.
    pub keep: Option<Vec<String>>,
}

impl RunRequest {
    /// A run of every section of `playbook` with `values` (from `params::parse_all`), started
    /// by `who` from `source` (`page`, `api`, `cli`, `schedule`, `test`, …).
    pub fn new(playbook: Arc<Playbook>, values: Values, who: impl Into<String>, source: impl Into<String>) -> Self {
        RunRequest {
            playbook,
            values,
            section: None,
            who: who.into(),
            source: source.into(),
            schedule_id: None,
            keep: Some(Vec::new()),
        }
    }

    /// Keeps the tables of hidden steps `steps` after the run (None: every table).
    #[must_use]
    pub fn keeping(mut self, steps: Option<Vec<String>>) -> Self {
        self.keep = steps;
        self
    }

    /// Whether step `id`'s table is read after the run: shown, or asked for by `keep`.
    pub fn keeps(&self, id: &str, shown: bool) -> bool {
        shown || self.keep.as_ref().is_none_or(|keep| keep.iter().any(|k| k == id))
    }

    /// Only section `section` (and the earlier steps it reads); None = every section.
    #[must_use]
    pub fn section(mut self, section: Option<usize>) -> Self {
        self.section = section;
        self
    }

    /// Fired by schedule `id`.
    #[must_use]
    pub fn scheduled(mut self, id: Option<i64>) -> Self {
        self.schedule_id = id;
        self
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StepOutcome {
    pub id: String,
    pub title: Option<String>,
    pub section: usize,
    pub rows: Option<usize>,
    pub elapsed_ms: u128,
    pub error: Option<String>,
    /// Rendered HTML of a markdown step.
    pub html: Option<String>,
    pub chart: Option<serde_json::Value>,
    pub show_table: bool,
    pub export: bool,
    pub page_size: u32,
    /// What the step's queries read (files, row groups, bytes).
    #[serde(default)]
    pub scan: Option<crate::sql::scan::ScanStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    pub steps: Vec<StepOutcome>,
}
