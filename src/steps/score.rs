//! The `score` step: ranks an earlier step's rows so that every rank is explained.
//!
//! - `rules`: SQL conditions over the rows, each worth points with a reason;
//! - `model`: in the spirit of Apache Spot's suspicious connects, how improbable a row's
//!   combination of feature values is for its entity (the first feature) against a baseline
//!   (an earlier step, default the rows themselves): `rarity = -log10((n + 1) / (total + 2))`
//!   where `n` counts the baseline rows with the same combination and `total` the entity's;
//!   it adds `round(rarity × points)`;
//! - `top`: keep the N highest scores (Spot's top 250).
//!
//! The step becomes one generated SQL query (identifiers quoted, reasons as escaped literals,
//! conditions as the author wrote them with `$params` bound like any query), so it is
//! planned at load and executed like a `query` step. Its table adds `score`, `reasons` and,
//! with a model, `rarity`.

use datafusion::arrow::datatypes::DataType;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::params::Param;
use crate::sql::{self, quote_ident, SqlOrigin};
use crate::steps::query::Query;
use crate::util::problem::{Pos, Problems};
use crate::util::yaml::pos;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScore {
    /// The earlier step whose rows are scored.
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub model: Option<RawModel>,
    /// Keep only the N highest scores: a number, or an integer parameter as `$name`.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub top: Option<serde_json::Value>,
}

/// `{ when: "dport = 3389 AND connections > 100", points: 40, reason: "RDP guessing" }`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// A SQL condition over the rows' columns (parameters as `$name`).
    pub when: String,
    pub points: f64,
    pub reason: String,
}

/// `{ features: [source, port, bytes_bucket, hour], baseline: last_month, points: 10 }`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Columns whose combination is judged; the first is the entity (e.g. the host).
    pub features: Vec<String>,
    /// An earlier step with the same columns to learn from (default: the scored rows).
    #[serde(default)]
    pub baseline: Option<String>,
    /// Points per unit of rarity (a combination seen once in 1,000 rows is rarity 3).
    #[serde(default = "ten")]
    pub points: f64,
}

fn ten() -> f64 {
    10.0
}

/// A validated score step: its generated query and the steps it reads.
#[derive(Debug, Clone)]
pub struct Score {
    pub query: Query,
    pub reads: Vec<String>,
}

/// Where the generated query's tie-breaking columns go.
const TIES: &str = " /*ties*/";

impl Score {
    /// Runs the generated query, ties broken by every sortable column of the rows scored.
    pub async fn execute(
        &self,
        step_id: &str,
        env: &crate::steps::env::Env<'_>,
    ) -> Result<crate::results::table::StepData, crate::steps::env::StepError> {
        let from = self.reads.first().map(String::as_str).unwrap_or_default();
        let mut ties = String::new();
        if let Ok(t) = env.ctx.table_provider(from).await {
            for f in t.schema().fields() {
                let dt = f.data_type();
                if dt.is_primitive()
                    || matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean)
                {
                    ties.push_str(&format!(", {}", quote_ident(f.name())));
                }
            }
        }
        let mut query = self.query.clone();
        query.sql.text = query.sql.text.replace(TIES, &ties);
        query.execute(step_id, env).await
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

pub fn validate(
    raw: RawScore,
    at: Pos,
    params: &[Param],
    earlier: &[String],
    problems: &mut Problems,
) -> Option<Score> {
    let from_at = pos(&raw.from);
    let from = raw.from.value;
    let mut ok = true;
    let mut need = |name: &str, what: &str, problems: &mut Problems| {
        if !earlier.iter().any(|e| e == name) {
            problems.push_hint(
                from_at,
                format!("`{what}` names `{name}`, which is not an earlier step"),
                if earlier.is_empty() {
                    "score the table of a step above this one".to_string()
                } else {
                    format!("earlier steps: {}", earlier.join(", "))
                },
            );
            ok = false;
        }
    };
    need(&from, "from", problems);
    let mut reads = vec![from.clone()];
    if let Some(b) = raw.model.as_ref().and_then(|m| m.baseline.clone()) {
        need(&b, "model.baseline", problems);
        reads.push(b);
    }
    if raw.rules.is_empty() && raw.model.is_none() {
        problems.push_hint(
            at,
            "a score step needs `rules:` or a `model:`",
            "add rules such as { when: \"bytes > 1e9\", points: 50, reason: large transfer }",
        );
        ok = false;
    }
    if let Some(m) = &raw.model {
        if m.features.is_empty() {
            problems.push(at, "`model.features` lists no column");
            ok = false;
        }
    }
    for r in &raw.rules {
        if !r.points.is_finite() {
            problems.push(at, format!("rule `{}`: points must be a number", r.reason));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let mut parts: Vec<String> = vec![format!("WITH __rows AS (SELECT * FROM {})", quote_ident(&from))];
    let mut point_terms: Vec<String> = Vec::new();
    let mut model_reason: Option<String> = None;
    let mut scored_from = "__rows".to_string();
    if let Some(m) = &raw.model {
        let f: Vec<String> = m.features.iter().map(|c| quote_ident(c)).collect();
        let entity = &f[0];
        let base = quote_ident(m.baseline.as_deref().unwrap_or(&from));
        let cols = f.join(", ");
        parts.push(format!("__base AS (SELECT {cols}, count(*) AS __n FROM {base} GROUP BY {cols})"));
        parts.push(format!("__total AS (SELECT {entity}, count(*) AS __t FROM {base} GROUP BY {entity})"));
        let on: Vec<String> = f.iter().map(|c| format!("r.{c} = b.{c}")).collect();
        // Every row keeps its place and gets its counts: the counts are the joins' left sides,
        // the sides their hash tables are built from (thousands of combinations, where the
        // rows may be millions).
        parts.push(format!(
            "__modelled AS (SELECT r.*, -log10((coalesce(b.__n, 0) + 1.0) / (coalesce(t.__t, 0) + 2.0)) AS rarity \
             FROM __total t RIGHT JOIN (__base b RIGHT JOIN __rows r ON {}) ON r.{entity} = t.{entity})",
            on.join(" AND ")
        ));
        scored_from = "__modelled".into();
        let p = number(m.points);
        point_terms.push(format!("round(rarity * {p})"));
        model_reason = Some(format!(
            "CASE WHEN round(rarity * {p}) >= 1 THEN concat({}, CAST(CAST(round(rarity * {p}) AS BIGINT) AS VARCHAR), ' points)') END",
            literal(&format!("unusual for this {} (", m.features[0]))
        ));
    }
    // The rules' reasons first (they explain most), then the model's.
    let mut reasons: Vec<String> = Vec::new();
    for r in &raw.rules {
        point_terms.push(format!("CASE WHEN ({}) THEN {} ELSE 0 END", r.when, number(r.points)));
        reasons.push(format!("CASE WHEN ({}) THEN {} END", r.when, literal(&r.reason)));
    }
    reasons.extend(model_reason);
    parts.push(format!(
        "__scored AS (SELECT *, CAST({} AS DOUBLE) AS score FROM {scored_from})",
        point_terms.join(" + ")
    ));
    let limit = match &raw.top {
        None => String::new(),
        Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => format!(" LIMIT {n}"),
        Some(serde_json::Value::String(p)) if p.strip_prefix('$').is_some_and(crate::util::text::is_identifier) => {
            format!(" LIMIT {p}")
        }
        Some(other) => {
            problems.push(at, format!("`top` is a whole number or an integer parameter such as $top, not {other}"));
            return None;
        }
    };
    // Equal scores are ordered by the rows' own columns (filled in at run time, see
    // [`Score::execute`]), so the same data gives the same top rows however it was read.
    // The reasons are written for the top rows only: text for every row scored (millions of
    // pairs) would cost more than the scoring.
    parts.push(format!("__top AS (SELECT * FROM __scored ORDER BY score DESC{TIES}{limit})"));
    let text = format!(
        "{} SELECT *, concat_ws('; ', {}) AS reasons FROM __top ORDER BY score DESC{TIES}",
        parts.join(", "),
        reasons.join(", ")
    );
    let prepared = match sql::prepare(&text) {
        Ok(p) => p,
        Err((msg, _)) => {
            problems.push(at, format!("score: {msg}"));
            return None;
        }
    };
    for ph in &prepared.placeholders {
        if !params.iter().any(|p| p.name == ph.param) {
            problems.push(at, format!("score rule: unknown parameter `${}`", ph.param));
            return None;
        }
    }
    let query = Query {
        sql: prepared,
        origin: SqlOrigin { first: at, block: false, fixed: true },
        connector: None,
        chunks: None,
    };
    Some(Score { query, reads })
}
