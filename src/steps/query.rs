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
    /// Process a long time window in chunks, each checkpointed (a restarted run resumes
    /// after its last finished chunk). The step's table is the chunks' rows, in order.
    #[serde(default)]
    #[schemars(with = "Option<RawChunks>")]
    pub chunks: Option<Spanned<RawChunks>>,
}

/// `chunks: { over: window, by: 1d }`: run the SQL once per `by` of the time range `over`,
/// with `$over.start` and `$over.end` bound to each chunk's bounds.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChunks {
    /// The `time_range` parameter to split.
    pub over: String,
    /// The length of a chunk, such as 1h or 1d.
    pub by: String,
}

/// A validated chunking of a query step's window.
#[derive(Debug, Clone)]
pub struct Chunks {
    pub over: String,
    pub by: chrono::Duration,
}

impl Chunks {
    /// The chunks of `window`, in order; the last one may be shorter.
    pub fn split(&self, window: crate::timeutil::Window) -> Vec<crate::timeutil::Window> {
        let mut out = Vec::new();
        let mut start = window.start;
        while start < window.end {
            let end = (start + self.by).min(window.end);
            out.push(crate::timeutil::Window { start, end });
            start = end;
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub sql: PreparedSql,
    pub origin: SqlOrigin,
    /// The connector the author names (checked to exist); every connector is visible.
    pub connector: Option<(String, Pos)>,
    pub chunks: Option<Chunks>,
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
    let chunks = raw.chunks.and_then(|c| {
        let at = pos(&c);
        let c = c.value;
        let by = match crate::timeutil::parse_duration(&c.by) {
            Ok(d) if d >= chrono::Duration::seconds(1) => d,
            Ok(_) => {
                problems.push(at, "`chunks.by` must be at least 1s");
                return None;
            }
            Err(e) => {
                problems.push(at, format!("`chunks.by`: {e}"));
                return None;
            }
        };
        match params.iter().find(|p| p.name == c.over) {
            Some(p) if matches!(p.kind, ParamKind::TimeRange) => {}
            Some(_) => {
                problems.push(at, format!("`chunks.over`: `{}` is not a time_range parameter", c.over));
                return None;
            }
            None => {
                problems.push_hint(
                    at,
                    format!("`chunks.over`: unknown parameter `{}`", c.over),
                    "name the time_range parameter whose window is split",
                );
                return None;
            }
        }
        if !prepared.placeholders.iter().any(|ph| ph.param == c.over) {
            problems.push_hint(
                at,
                format!("the SQL does not use `${}`, so every chunk would read the same rows", c.over),
                format!("filter on `${0}.start` and `${0}.end`", c.over),
            );
            return None;
        }
        Some(Chunks { over: c.over, by })
    });
    Some(Query { sql: prepared, origin, connector: raw.connector.map(|c| (c.value.clone(), pos(&c))), chunks })
}
