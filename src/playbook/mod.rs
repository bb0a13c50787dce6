//! The playbook: raw YAML shapes (`Raw*`, `deny_unknown_fields`, spans kept) and the validated
//! [`Playbook`] built from them by [`validate`], which collects every problem. It assembles
//! parameters and specs (`crate::model`) and steps (`crate::steps`); SQL planning against
//! connector schemas happens later, in the catalog.

use indexmap::IndexMap;
use regex::Regex;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::params::{self, Choice, Param, ParamKind, ParseCtx};
use crate::model::{schedule, selftest, Declares};
use crate::steps::{self, RawStep, Step};
use crate::util::problem::{Pos, Problems};
use crate::util::text::fnv1a;
use crate::util::text::is_identifier;
use crate::util::yaml::pos;
use crate::util::yaml::scalar_text;

/// A playbook file (`playbooks/**/*.yaml`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPlaybook {
    #[schemars(with = "String")]
    pub title: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub version: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub maintainers: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, RawParam>")]
    pub params: IndexMap<String, Spanned<RawParam>>,
    #[serde(default)]
    #[schemars(with = "Vec<RawSection>")]
    pub sections: Vec<Spanned<RawSection>>,
    /// Self-tests run by `casebook test`.
    #[serde(default)]
    #[schemars(with = "Vec<selftest::RawTest>")]
    pub tests: Vec<Spanned<selftest::RawTest>>,
    /// Runs on a cron timetable (listed on the schedules page).
    #[serde(default)]
    #[schemars(with = "Vec<schedule::RawSchedule>")]
    pub schedules: Vec<Spanned<schedule::RawSchedule>>,
}

/// A form parameter.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    #[serde(rename = "type")]
    #[schemars(with = "ParamTypeName")]
    pub kind: Spanned<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub help: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub pattern: Option<Spanned<String>>,
    #[serde(default)]
    pub options: Option<Vec<RawChoice>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub options_query: Option<Spanned<String>>,
    #[serde(default)]
    pub multiple: bool,
    /// What the parameter takes, for pivots from table cells: ip, domain or url.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub entity: Option<Spanned<String>>,
}

/// An option of a select: a value, or a value with a label.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawChoice {
    Labelled { value: serde_json::Value, label: String },
    Plain(serde_json::Value),
}

/// A section: like a notebook cell, with its own button.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSection {
    pub title: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub button: Option<String>,
    #[serde(default)]
    #[schemars(with = "Vec<RawStep>")]
    pub steps: Vec<Spanned<RawStep>>,
}

/// The parameter types, for the schema (editors complete them).
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ParamTypeName {
    Text,
    Integer,
    Number,
    Boolean,
    Select,
    IpList,
    Datetime,
    TimeRange,
}

/// A validated playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The file stem, used in URLs (`/p/ip_flows`).
    pub id: String,
    /// The file as given to the loader.
    pub path: String,
    pub title: String,
    pub description: String,
    pub version: Option<String>,
    pub maintainers: Vec<String>,
    pub tags: Vec<String>,
    pub params: Vec<Param>,
    pub sections: Vec<Section>,
    /// FNV-1a of the file's bytes, recorded with every run.
    pub hash: String,
    pub tests: Vec<selftest::SelfTest>,
    pub schedules: Vec<schedule::Declared>,
}

impl Declares for Playbook {
    fn params(&self) -> &[Param] {
        &self.params
    }

    fn has_step(&self, id: &str) -> bool {
        self.step(id).is_some()
    }

    fn makes_table(&self, id: &str) -> bool {
        self.step(id).is_some_and(Step::is_query)
    }
}

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub text: Option<String>,
    pub button: String,
    pub steps: Vec<Step>,
}

impl Playbook {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn steps(&self) -> impl Iterator<Item = (usize, &Step)> {
        self.sections.iter().enumerate().flat_map(|(i, s)| s.steps.iter().map(move |st| (i, st)))
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps().map(|(_, s)| s).find(|s| s.id == id)
    }

    /// The steps to execute for section `n`: its own, plus the earlier steps they use.
    pub fn plan_section(&self, n: usize) -> Vec<&Step> {
        let mut needed: Vec<&str> = Vec::new();
        let Some(section) = self.sections.get(n) else { return Vec::new() };
        let mut stack: Vec<&Step> = section.steps.iter().collect();
        while let Some(s) = stack.pop() {
            if needed.contains(&s.id.as_str()) {
                continue;
            }
            needed.push(&s.id);
            for d in &s.depends_on {
                if let Some(dep) = self.step(d) {
                    stack.push(dep);
                }
            }
        }
        self.steps().map(|(_, s)| s).filter(|s| needed.contains(&s.id.as_str())).collect()
    }
}

/// Turns the raw shape into a [`Playbook`], collecting structural problems into `problems`.
/// `text` is the file's contents (for positions inside block scalars).
pub fn validate(id: &str, raw: RawPlaybook, text: &str, cx: &ParseCtx, problems: &mut Problems) -> Playbook {
    let mut params = Vec::new();
    for (name, rp) in raw.params {
        let at = pos(&rp);
        if !is_identifier(&name) {
            problems.push_hint(
                at,
                format!("parameter name `{name}` is not usable in SQL"),
                "use lower-case letters, digits and _ (e.g. src_ip)",
            );
        }
        if let Some(p) = validate_param(&name, rp.value, at, cx, problems) {
            params.push(p);
        }
    }
    for p in &params {
        for suffix in ["_start", "_end"] {
            if let Some(base) = p.name.strip_suffix(suffix) {
                if params.iter().any(|q| q.name == base && matches!(q.kind, ParamKind::TimeRange)) {
                    problems
                        .push(Pos::UNKNOWN, format!("parameter `{}` clashes with `${base}.{}`", p.name, &suffix[1..]));
                }
            }
        }
    }
    if raw.sections.is_empty() {
        problems.push_hint(pos(&raw.title), "the playbook has no sections", "add `sections:` with at least one step");
    }
    let mut sections = Vec::new();
    let mut seen_ids: Vec<String> = Vec::new();
    for rs in raw.sections {
        let s = rs.value;
        let mut steps_out = Vec::new();
        for st in s.steps {
            let at = pos(&st);
            if let Some(step) = steps::validate(st.value, at, text, &params, &seen_ids, problems) {
                seen_ids.push(step.id.clone());
                steps_out.push(step);
            }
        }
        sections.push(Section {
            button: s.button.unwrap_or_else(|| format!("Run: {}", s.title)),
            title: s.title,
            text: s.text,
            steps: steps_out,
        });
    }
    let version = raw.version.and_then(|v| scalar_text(&v.value));
    let mut pb = Playbook {
        id: id.to_string(),
        path: problems.path.clone(),
        title: raw.title.value,
        description: raw.description,
        version,
        maintainers: raw.maintainers,
        tags: raw.tags,
        params,
        sections,
        hash: fnv1a(text.as_bytes()),
        tests: Vec::new(),
        schedules: Vec::new(),
    };
    pb.tests = selftest::validate(raw.tests, &pb, problems);
    pb.schedules = schedule::validate(raw.schedules, &pb, cx, problems);
    pb
}

fn validate_param(name: &str, rp: RawParam, at: Pos, cx: &ParseCtx, problems: &mut Problems) -> Option<Param> {
    let kind_at = pos(&rp.kind);
    let options: Vec<Choice> = rp
        .options
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| match c {
            RawChoice::Plain(v) => scalar_text(&v).map(|s| Choice { label: s.clone(), value: s }),
            RawChoice::Labelled { value, label } => scalar_text(&value).map(|value| Choice { value, label }),
        })
        .collect();
    for o in &options {
        if o.value.contains(',') {
            problems
                .push(kind_at, format!("option `{}` of `{name}` contains a comma, which separates choices", o.value));
        }
    }
    let kind = match rp.kind.value.as_str() {
        "text" => {
            let pattern = match rp.pattern {
                Some(p) => match Regex::new(&p.value) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        problems.push(pos(&p), format!("pattern of `{name}` is not a valid regular expression: {e}"));
                        None
                    }
                },
                None => None,
            };
            ParamKind::Text { pattern }
        }
        "integer" => ParamKind::Integer,
        "number" => ParamKind::Number,
        "boolean" => ParamKind::Boolean,
        "select" => {
            if options.is_empty() && rp.options_query.is_none() {
                problems.push_hint(
                    kind_at,
                    format!("select `{name}` has no options"),
                    "list them under `options:` or give an `options_query:`",
                );
            }
            let options_at = rp.options_query.as_ref().map(pos).unwrap_or_default();
            ParamKind::Select {
                multiple: rp.multiple,
                options,
                options_query: rp.options_query.map(|q| q.value),
                options_at,
            }
        }
        "ip_list" => ParamKind::IpList,
        "datetime" => ParamKind::Datetime,
        "time_range" => ParamKind::TimeRange,
        other => {
            problems.push_hint(
                kind_at,
                format!("unknown parameter type `{other}` for `{name}`"),
                format!("use one of: {}", ParamKind::NAMES.join(", ")),
            );
            return None;
        }
    };
    if let (Some(min), Some(max)) = (rp.min, rp.max) {
        if min > max {
            problems.push(at, format!("`{name}`: min {min} is greater than max {max}"));
        }
    }
    let default_at = rp.default.as_ref().map(pos).unwrap_or(at);
    let default = rp.default.and_then(|d| scalar_text(&d.value));
    let entity = match rp.entity {
        Some(e) if params::ENTITIES.contains(&e.value.as_str()) => Some(e.value),
        Some(e) => {
            problems.push(pos(&e), format!("`entity` of `{name}` is one of ip, domain, url, not `{}`", e.value));
            None
        }
        None => None,
    };
    let p = Param {
        entity,
        name: name.to_string(),
        label: rp.label.unwrap_or_else(|| name.replace('_', " ")),
        help: rp.help,
        kind,
        default,
        required: rp.required,
        min: rp.min,
        max: rp.max,
    };
    if let Some(d) = &p.default {
        if let Err(e) = p.parse(Some(d), cx) {
            problems.push(default_at, format!("default of `{name}` is invalid: {e}"));
        }
    }
    Some(p)
}
