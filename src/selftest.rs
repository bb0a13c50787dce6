//! Playbook self-tests: a `tests:` list in a playbook (parameters plus expectations on step
//! results) that `casebook test` runs, so an author proves a playbook on sample data before
//! analysts see it.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::engine::{cell_text, Engine, RunRequest};
use crate::playbook::{scalar_text, Playbook};
use crate::problem::Problems;
use crate::yaml::pos;

/// A self-test: parameters, and what the steps' results must show.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    pub name: String,
    #[serde(default)]
    pub params: indexmap::IndexMap<String, serde_json::Value>,
    #[schemars(with = "Vec<RawExpect>")]
    pub expect: Vec<Spanned<RawExpect>>,
}

/// One expectation on a step's result.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub step: String,
    #[serde(default)]
    pub rows_at_least: Option<usize>,
    #[serde(default)]
    pub rows_at_most: Option<usize>,
    #[serde(default)]
    pub column: Option<String>,
    /// Some row's `column` equals this.
    #[serde(default)]
    pub contains: Option<serde_json::Value>,
    /// The first row's `column` equals this.
    #[serde(default)]
    pub first: Option<serde_json::Value>,
}

/// A validated self-test.
#[derive(Debug, Clone)]
pub struct SelfTest {
    pub name: String,
    pub params: Vec<(String, String)>,
    pub expect: Vec<Expect>,
}

#[derive(Debug, Clone)]
pub struct Expect {
    pub step: String,
    pub rows_at_least: Option<usize>,
    pub rows_at_most: Option<usize>,
    pub column: Option<String>,
    pub contains: Option<String>,
    pub first: Option<String>,
}

/// Validates the tests of a playbook (steps and parameters must exist).
pub fn validate(raw: Vec<Spanned<RawTest>>, pb: &Playbook, problems: &mut Problems) -> Vec<SelfTest> {
    let mut out = Vec::new();
    for t in raw {
        let at = pos(&t);
        let t = t.value;
        for k in t.params.keys() {
            if pb.param(k).is_none() {
                problems.push(at, format!("test `{}`: unknown parameter `{k}`", t.name));
            }
        }
        let mut expect = Vec::new();
        for e in t.expect {
            let e_at = pos(&e);
            let e = e.value;
            if pb.step(&e.step).is_none() {
                problems.push(e_at, format!("test `{}`: unknown step `{}`", t.name, e.step));
            }
            let has_value = e.contains.is_some() || e.first.is_some();
            if has_value != e.column.is_some() {
                problems.push(e_at, format!("test `{}`: `contains` and `first` go with a `column`", t.name));
            }
            if e.rows_at_least.is_none() && e.rows_at_most.is_none() && !has_value {
                problems.push(e_at, format!("test `{}`: the expectation on `{}` checks nothing", t.name, e.step));
            }
            expect.push(Expect {
                step: e.step,
                rows_at_least: e.rows_at_least,
                rows_at_most: e.rows_at_most,
                column: e.column,
                contains: e.contains.as_ref().and_then(scalar_text),
                first: e.first.as_ref().and_then(scalar_text),
            });
        }
        let params = t.params.iter().filter_map(|(k, v)| scalar_text(v).map(|v| (k.clone(), v))).collect();
        out.push(SelfTest { name: t.name, params, expect });
    }
    out
}

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
        let mut values = Vec::new();
        for p in &pb.params {
            let raw = t.params.iter().find(|(k, _)| k == &p.name).map(|(_, v)| v.as_str());
            match p.parse(raw, &cx) {
                Ok(v) => values.push((p.name.clone(), v)),
                Err(e) => o.failures.push(format!("parameter `{}`: {e}", p.name)),
            }
        }
        if !o.failures.is_empty() {
            out.push(o);
            continue;
        }
        let req = RunRequest {
            playbook: pb.clone(),
            values,
            section: None,
            who: "self-test".into(),
            source: "test".into(),
            schedule_id: None,
        };
        let run = match engine.run(req).await {
            Ok(r) => r,
            Err(e) => {
                o.failures.push(format!("the run could not start: {e:#}"));
                out.push(o);
                continue;
            }
        };
        o.run_id = Some(run.run_id.clone());
        for e in &t.expect {
            if let Some(err) = run.steps.iter().find(|s| s.id == e.step).and_then(|s| s.error.clone()) {
                o.failures.push(format!("step `{}` failed: {err}", e.step));
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
