//! Playbook self-tests: a `tests:` list in a playbook (parameters plus expectations on step
//! results) that `casebook test` runs, so an author proves a playbook on sample data before
//! analysts see it.

use serde::Serialize;

use crate::engine::{Engine, RunRequest};
use crate::model::params::parse_all;
use crate::playbook::Playbook;
use crate::results::cell_text;

/// What one self-test found.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub playbook: String,
    pub test: String,
    pub run_id: Option<String>,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every self-test of `pb` (all sections) and checks its expectations.
pub async fn run(engine: &std::sync::Arc<Engine>, pb: &std::sync::Arc<Playbook>) -> Vec<Outcome> {
    let mut out = Vec::new();
    let cx = engine.catalog().parse_ctx();
    for t in &pb.tests {
        let mut o = Outcome { playbook: pb.id.clone(), test: t.name.clone(), run_id: None, failures: Vec::new() };
        let raw = |name: &str| t.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let values = match parse_all(&pb.params, raw, &cx) {
            Ok(values) => values,
            Err(errors) => {
                o.failures.extend(errors.into_iter().map(|(name, e)| format!("parameter `{name}`: {e}")));
                out.push(o);
                continue;
            }
        };
        // The expectations read their steps' tables after the run, hidden ones too.
        let read: Vec<String> = t.expect.iter().map(|e| e.step.clone()).collect();
        let req = RunRequest::new(pb.clone(), values, "self-test", "test").keeping(Some(read));
        let run = match engine.run(req).await {
            Ok(r) => r,
            Err(e) => {
                o.failures.push(format!("the run could not start: {e:#}"));
                out.push(o);
                continue;
            }
        };
        o.run_id = Some(run.run_id.clone());
        // The step that failed for its own reason, which the skipped ones after it name.
        let cause = run
            .steps
            .iter()
            .find_map(|s| s.error.as_ref().filter(|e| !e.starts_with("skipped:")).map(|e| (s.id.clone(), e.clone())));
        let mut said: Vec<&str> = Vec::new();
        for e in &t.expect {
            if let Some(err) = run.steps.iter().find(|s| s.id == e.step).and_then(|s| s.error.clone()) {
                if !said.contains(&e.step.as_str()) {
                    said.push(&e.step);
                    let why = match &cause {
                        Some((id, first)) if err.starts_with("skipped:") => {
                            format!(" (first failure: `{id}`: {first})")
                        }
                        _ => String::new(),
                    };
                    o.failures.push(format!("step `{}` failed: {err}{why}", e.step));
                }
                continue;
            }
            let data = match engine.step_data(&run.run_id, &e.step) {
                Ok(d) => d,
                Err(_) => {
                    o.failures.push(format!("step `{}` produced no table", e.step));
                    continue;
                }
            };
            if let Some(min) = e.rows_at_least {
                if data.rows < min {
                    o.failures.push(format!("step `{}`: expected at least {min} rows, got {}", e.step, data.rows));
                }
            }
            if let Some(max) = e.rows_at_most {
                if data.rows > max {
                    o.failures.push(format!("step `{}`: expected at most {max} rows, got {}", e.step, data.rows));
                }
            }
            let Some(col) = &e.column else { continue };
            let Ok(ci) = data.schema.index_of(col) else {
                o.failures.push(format!("step `{}` has no column `{col}`", e.step));
                continue;
            };
            let tz = engine.tz();
            if let Some(want) = &e.first {
                let got = data.batches.iter().find(|b| b.num_rows() > 0).map(|b| cell_text(b.column(ci), 0, tz));
                if got.as_deref() != Some(want.as_str()) {
                    o.failures.push(format!(
                        "step `{}`: expected the first `{col}` to be `{want}`, got `{}`",
                        e.step,
                        got.unwrap_or_else(|| "no rows".into())
                    ));
                }
            }
            if let Some(want) = &e.contains {
                let found =
                    data.batches.iter().any(|b| (0..b.num_rows()).any(|r| cell_text(b.column(ci), r, tz) == *want));
                if !found {
                    o.failures.push(format!("step `{}`: no row has `{col}` = `{want}`", e.step));
                }
            }
        }
        out.push(o);
    }
    out
}
