//! The `query` step: SQL over connector tables and earlier steps' tables, with parameters
//! bound as typed values. Planning against schemas is done by [`crate::catalog`].

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::playbook::params::{Param, ParamKind};
use crate::problem::{Pos, Problems};
use crate::sql::{self, PreparedSql, SqlOrigin};
use crate::yaml::pos;

/// SQL over connectors and earlier steps; parameters as `$name`, `$range.start`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    #[schemars(with = "String")]
    pub sql: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub connector: Option<Spanned<String>>,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub sql: PreparedSql,
    pub origin: SqlOrigin,
    /// The connector the author names (checked to exist); every connector is visible.
    pub connector: Option<(String, Pos)>,
}

impl Query {
    /// File position of a position inside the SQL.
    pub fn file_pos(&self, at: (u64, u64)) -> Pos {
        self.origin.map(at)
    }
}

pub fn validate(raw: RawQuery, at: Pos, text: &str, params: &[Param], problems: &mut Problems) -> Option<Query> {
    let sql_pos = pos(&raw.sql);
    let origin = SqlOrigin::locate(if sql_pos.line > 0 { sql_pos } else { at }, text);
    let prepared = match sql::prepare(&raw.sql.value) {
        Ok(p) => p,
        Err((msg, where_)) => {
            problems.push(origin.map(where_), format!("SQL: {msg}"));
            return None;
        }
    };
    for ph in &prepared.placeholders {
        let at = origin.map(ph.at);
        match (params.iter().find(|p| p.name == ph.param), ph.field.as_deref()) {
            (None, _) => {
                let known: Vec<String> = params.iter().map(|p| format!("${}", p.name)).collect();
                problems.push_hint(
                    at,
                    format!("unknown parameter `${}`", ph.param),
                    if known.is_empty() {
                        "declare it under `params:`".to_string()
                    } else {
                        format!("declared parameters: {}", known.join(", "))
                    },
                );
            }
            (Some(p), Some(f)) => {
                if !matches!(p.kind, ParamKind::TimeRange) || !(f == "start" || f == "end") {
                    problems
                        .push(at, format!("`${}.{f}`: only a time_range parameter has `.start` and `.end`", p.name));
                }
            }
            (Some(p), None) if matches!(p.kind, ParamKind::TimeRange) => {
                problems.push_hint(
                    at,
                    format!("`${}` is a time range", p.name),
                    format!("use `${0}.start` and `${0}.end`", p.name),
                );
            }
            (Some(_), None) => {}
        }
    }
    Some(Query { sql: prepared, origin, connector: raw.connector.map(|c| (c.value.clone(), pos(&c))) })
}
