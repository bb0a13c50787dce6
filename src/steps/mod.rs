//! Step kinds. One file per kind (`query`, `markdown`, `score`, `enrich`) with its YAML shape,
//! validation and execution, plus the `chart` a step with a table may draw. [`StepKind`] is
//! the one list of what steps exist: a new kind is a new file and an arm in each match here.

pub mod chart;
pub mod enrich;
pub mod env;
pub mod markdown;
pub mod query;
pub mod score;

use chrono_tz::Tz;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::params::{Param, Value};
use crate::util::problem::{Pos, Problems};
use crate::util::text::is_identifier;
use crate::util::yaml::pos;
use datafusion::arrow::datatypes::SchemaRef;
use env::{Env, Made, PlanEnv, Reported, StepError};

/// A step: exactly one of `query` or `markdown`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<query::RawQuery>")]
    pub query: Option<Spanned<query::RawQuery>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub markdown: Option<Spanned<String>>,
    /// Add network context, geolocation, domain and reputation columns to an earlier step's table.
    #[serde(default)]
    #[schemars(with = "Option<enrich::RawEnrich>")]
    pub enrich: Option<Spanned<enrich::RawEnrich>>,
    /// Rank an earlier step's rows by rules and a rarity model.
    #[serde(default)]
    #[schemars(with = "Option<score::RawScore>")]
    pub score: Option<Spanned<score::RawScore>>,
    #[serde(default)]
    #[schemars(with = "Option<chart::RawChart>")]
    pub chart: Option<Spanned<chart::RawChart>>,
    #[serde(default)]
    pub table: Option<RawTable>,
    #[serde(default)]
    pub export: Option<bool>,
    /// Run the step only when this expression over `params` holds (`view == 'extended'`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
}

/// How a query step's table is shown.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    #[serde(default = "yes")]
    pub show: bool,
    #[serde(default)]
    pub page_size: Option<u32>,
}

fn yes() -> bool {
    true
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    Query(query::Query),
    Markdown(markdown::Markdown),
    Score(score::Score),
    Enrich(enrich::Enrich),
}

/// A validated step.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub title: Option<String>,
    pub at: Pos,
    pub kind: StepKind,
    pub chart: Option<chart::Chart>,
    pub show_table: bool,
    pub page_size: u32,
    pub export: bool,
    /// Earlier steps whose tables this step reads.
    pub depends_on: Vec<String>,
    /// Condition over `params` (a minijinja expression); None = always.
    pub when: Option<String>,
}

impl Step {
    /// Whether the step makes a table (a query, a score or an enrichment).
    pub fn is_query(&self) -> bool {
        !matches!(self.kind, StepKind::Markdown(_))
    }

    /// The SQL the step executes: a query's, or the one a score step generates.
    pub fn query(&self) -> Option<&query::Query> {
        match &self.kind {
            StepKind::Query(q) => Some(q),
            StepKind::Score(s) => Some(&s.query),
            StepKind::Markdown(_) | StepKind::Enrich(_) => None,
        }
    }
}

/// Validates one step. `earlier` are the ids of the steps before it.
pub fn validate(
    raw: RawStep,
    at: Pos,
    text: &str,
    params: &[Param],
    earlier: &[String],
    problems: &mut Problems,
) -> Option<Step> {
    let id_at = pos(&raw.id);
    let id = raw.id.value;
    if !is_identifier(&id) {
        problems.push_hint(
            id_at,
            format!("step id `{id}` is not usable as a table name"),
            "use lower-case letters, digits and _",
        );
    }
    if earlier.contains(&id) {
        problems.push(id_at, format!("step id `{id}` is used twice"));
    }
    let given = usize::from(raw.query.is_some())
        + usize::from(raw.markdown.is_some())
        + usize::from(raw.score.is_some())
        + usize::from(raw.enrich.is_some());
    if given > 1 {
        problems
            .push(at, format!("step `{id}` has more than one of `query`, `markdown`, `score` and `enrich`; split it"));
        return None;
    }
    let (kind, depends_on) = if let Some(en) = raw.enrich {
        let e_at = pos(&en);
        let e = enrich::validate(en.value, e_at, earlier, problems)?;
        let deps = vec![e.from.clone()];
        (StepKind::Enrich(e), deps)
    } else if let Some(sc) = raw.score {
        let s_at = pos(&sc);
        let score = score::validate(sc.value, s_at, params, earlier, problems)?;
        let deps = score.reads.clone();
        (StepKind::Score(score), deps)
    } else {
        match (raw.query, raw.markdown) {
            (Some(q), None) => {
                let q_at = pos(&q);
                let query = query::validate(q.value, q_at, text, params, problems)?;
                let deps = earlier.iter().filter(|e| query.sql.words.contains(e)).cloned().collect();
                (StepKind::Query(query), deps)
            }
            (None, Some(m)) => {
                let md = markdown::validate(&m.value, pos(&m), problems)?;
                let deps = earlier.iter().filter(|e| md.mentions(e)).cloned().collect();
                (StepKind::Markdown(md), deps)
            }
            (Some(_), Some(_)) => return None,
            (None, None) => {
                problems.push_hint(
                    at,
                    format!("step `{id}` does nothing"),
                    "give it a `query:`, `score:`, `enrich:` or `markdown:`",
                );
                return None;
            }
        }
    };
    finish(id, raw.title, at, kind, depends_on, raw.chart, raw.table, raw.export, raw.when, problems)
}

/// The parts every step kind shares: chart, table, export, `when`.
#[allow(clippy::too_many_arguments)]
fn finish(
    id: String,
    title: Option<String>,
    at: Pos,
    kind: StepKind,
    depends_on: Vec<String>,
    chart: Option<Spanned<chart::RawChart>>,
    table: Option<RawTable>,
    export: Option<bool>,
    when: Option<Spanned<String>>,
    problems: &mut Problems,
) -> Option<Step> {
    let raw_chart = chart;
    let raw_table = table;
    let raw_export = export;
    let raw_when = when;
    let makes_table = !matches!(kind, StepKind::Markdown(_));
    let chart = match raw_chart {
        Some(c) if makes_table => {
            let at = pos(&c);
            chart::validate(c.value, at, problems)
        }
        Some(c) => {
            problems.push(pos(&c), format!("step `{id}`: only a step with a table can draw a chart"));
            None
        }
        None => None,
    };
    let when = raw_when.and_then(|w| {
        let env = minijinja::Environment::new();
        match env.compile_expression(&w.value) {
            Ok(_) => Some(w.value),
            Err(e) => {
                problems.push(pos(&w), format!("`when` of step `{id}`: {}", e.detail().unwrap_or("not an expression")));
                None
            }
        }
    });
    let table = raw_table.unwrap_or(RawTable { show: chart.is_none(), page_size: None });
    Some(Step {
        title,
        at,
        show_table: table.show && makes_table,
        page_size: table.page_size.unwrap_or(25).clamp(5, 500),
        export: raw_export.unwrap_or(true),
        kind,
        chart,
        depends_on,
        when,
        id,
    })
}

impl StepKind {
    /// Plans the step at load: the schema of the table it makes (None for a text), or Err
    /// when a problem was reported ([`Reported`]).
    pub async fn plan(
        &self,
        step_id: &str,
        env: &PlanEnv<'_>,
        problems: &mut Problems,
    ) -> Result<Option<SchemaRef>, Reported> {
        match self {
            StepKind::Query(q) => q.plan(step_id, env, problems).await.map(Some),
            StepKind::Score(s) => s.query.plan(step_id, env, problems).await.map(Some),
            StepKind::Enrich(e) => e.plan(step_id, env, problems).map(Some),
            StepKind::Markdown(_) => Ok(None),
        }
    }

    /// Executes the step: the one dispatch over kinds.
    pub async fn execute(&self, step_id: &str, env: &Env<'_>) -> Result<Made, StepError> {
        match self {
            StepKind::Query(q) => q.execute(step_id, env).await.map(Made::Table),
            StepKind::Score(s) => s.execute(step_id, env).await.map(Made::Table),
            StepKind::Enrich(e) => e.execute(env).await.map(Made::Table),
            StepKind::Markdown(m) => m.render(env).map(Made::Html),
        }
    }
}

/// Evaluates a step's `when` expression against the parameters' text forms.
pub fn condition_holds(expr: &str, values: &[(String, Value)], tz: Tz) -> bool {
    let params: serde_json::Map<String, serde_json::Value> =
        values.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_text(tz)))).collect();
    let env = minijinja::Environment::new();
    let ctx = serde_json::json!({ "params": params });
    env.compile_expression(expr).and_then(|e| e.eval(&ctx)).map(|v| v.is_true()).unwrap_or(false)
}
