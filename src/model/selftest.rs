//! Playbook self-tests as specified: a `tests:` list in a playbook (parameters plus
//! expectations on step results), validated against the playbook. `casebook test` runs them
//! through the runner in `jobs/selftest.rs`.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::Declares;
use crate::util::problem::Problems;
use crate::util::yaml::pos;
use crate::util::yaml::scalar_text;

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
pub fn validate(raw: Vec<Spanned<RawTest>>, pb: &dyn Declares, problems: &mut Problems) -> Vec<SelfTest> {
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
            if !pb.has_step(&e.step) {
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
