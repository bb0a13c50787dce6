//! The `query` step: SQL over connector tables and earlier steps' tables, with parameters
//! bound as typed values. Planning against schemas is done by the catalog.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::env::{Env, PlanEnv, Reported, StepError};
use crate::model::params::{bind_all, with_window, Param, ParamKind, Value};
use crate::results::table::{read_parquet, write_parquet};
use crate::results::StepData;
use crate::sql::scan::ScanStats;
use crate::sql::session::read_only;
use crate::sql::session::{chunk_memory_message, clean_error, memory_message, out_of_memory};
use crate::sql::{self, find_identifier, PreparedSql, SqlOrigin};
use crate::util::problem::{Pos, Problem, Problems};
use crate::util::yaml::pos;

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
    pub fn split(&self, window: crate::util::timeutil::Window) -> Vec<crate::util::timeutil::Window> {
        let mut out = Vec::new();
        let mut start = window.start;
        while start < window.end {
            let end = (start + self.by).min(window.end);
            out.push(crate::util::timeutil::Window { start, end });
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

    /// Plans the SQL against the connectors and earlier steps' tables with sample values
    /// bound; the result's schema, or Err when a problem was reported ([`Reported`]).
    pub async fn plan(&self, step_id: &str, env: &PlanEnv<'_>, problems: &mut Problems) -> Result<SchemaRef, Reported> {
        if let Some((name, at)) = &self.connector {
            if !env.connectors.contains(name) {
                problems.push_hint(
                    *at,
                    format!("unknown connector `{name}`"),
                    format!("known connectors: {}", env.connectors.join(", ")),
                );
            }
        }
        // Placeholder problems are already reported; planning would only repeat them.
        let bad_placeholder =
            self.sql.placeholders.iter().any(|ph| match env.params.iter().find(|p| p.name == ph.param) {
                None => true,
                Some(p) => matches!(p.kind, ParamKind::TimeRange) != ph.field.is_some(),
            });
        if bad_placeholder {
            return Err(Reported);
        }
        let planned = match env.ctx.sql_with_options(&self.sql.text, read_only()).await {
            Ok(df) => df.with_param_values(env.bound.to_vec()),
            Err(e) => Err(e),
        };
        match planned {
            Ok(df) => Ok(Arc::new(df.schema().as_arrow().clone())),
            Err(e) => {
                let (at, message, hint) = locate_error(&e, self, env.ctx);
                let mut p = Problem::new(problems.path.clone(), at, format!("step `{step_id}`: {message}"));
                p.hint = hint;
                problems.list.push(p);
                Err(Reported)
            }
        }
    }

    /// The message for a query that outgrew its run's memory: the run's limit, and the
    /// length of the first time window the SQL reads.
    fn memory_message(&self, env: &Env<'_>) -> String {
        let limit = run_limit(env);
        let hours = env.values.iter().find_map(|(name, v)| match v {
            Value::Range { window, .. } if self.sql.placeholders.iter().any(|p| &p.param == name) => {
                Some((window.end - window.start).num_minutes() as f64 / 60.0)
            }
            _ => None,
        });
        memory_message(limit, hours)
    }

    /// Executes the step's SQL with the run's parameters bound (chunk by chunk when chunked).
    pub async fn execute(&self, step_id: &str, env: &Env<'_>) -> Result<StepData, StepError> {
        match &self.chunks {
            None => match collect(env, step_id, &self.sql.text, bind_all(env.params, env.values)).await {
                Ok((schema, batches)) => Ok(StepData::new(schema, batches)),
                Err(e) if out_of_memory(&e) => {
                    // The engine's own account (its memory consumers) is for whoever tunes it.
                    tracing::debug!(step = step_id, error = %e, "query outgrew the run's memory");
                    Err(StepError::Message(self.memory_message(env)))
                }
                Err(e) => Err(e.into()),
            },
            Some(chunks) => chunks.execute(step_id, &self.sql.text, env).await,
        }
    }
}

/// The most memory a query of this run may use, when it is limited.
fn run_limit(env: &Env<'_>) -> Option<usize> {
    use datafusion::execution::memory_pool::MemoryLimit;
    match env.ctx.runtime_env().memory_pool.memory_limit() {
        MemoryLimit::Finite(b) => Some(b),
        _ => None,
    }
}

/// Executes one query of step `step_id`, counting its rows into the run's progress as they
/// arrive; what its scans read is reported when it is done.
pub async fn collect(
    env: &Env<'_>,
    step_id: &str,
    sql: &str,
    params: Vec<(String, datafusion::common::ScalarValue)>,
) -> Result<(SchemaRef, Vec<RecordBatch>), DataFusionError> {
    let df = env.ctx.sql_with_options(sql, read_only()).await?.with_param_values(params.clone())?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    // On a cluster, a query reading a table the cluster cannot (a database, an HTTP
    // service) executes in this server instead, its file tables read here too.
    let here = crate::sql::remote::in_this_process(env.ctx, df.logical_plan());
    // A lost executor fails only a query that executes on the cluster.
    let mut lost = match here {
        Some(_) => Box::pin(futures::future::pending()),
        None => crate::sql::remote::watch(env.ctx),
    };
    let (task, plan) = match here {
        Some(state) => {
            let (_, plan) = df.into_parts();
            (Arc::new(datafusion::execution::TaskContext::from(&state)), state.create_physical_plan(&plan).await?)
        }
        None => (Arc::new(df.task_ctx()), df.create_physical_plan().await?),
    };
    // On a cluster, the job is cancelled there if this query is dropped before it is done.
    #[cfg(feature = "ballista")]
    let job = crate::sql::cluster::Job::of(env.ctx, &plan);
    let mut stream = datafusion::physical_plan::execute_stream(plan.clone(), task)?;
    let mut batches = Vec::new();
    let mut rows = 0u64;
    // A sort or a grouping yields nothing until it has read everything: what the scans have
    // read so far is the progress to show meanwhile.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            why = &mut lost => {
                #[cfg(feature = "ballista")]
                if let Some(job) = job {
                    job.cancel().await;
                }
                return Err(DataFusionError::Execution(why));
            }
            b = stream.next() => match b {
                Some(b) => {
                    let b = b?;
                    rows += b.num_rows() as u64;
                    batches.push(b);
                    env.progress.rows(rows);
                }
                None => break,
            },
            _ = tick.tick() => {
                env.progress.scanning(&ScanStats::of(&plan));
                #[cfg(feature = "ballista")]
                if let Some(id) = job.as_ref().and_then(|j| j.id()) {
                    env.progress.job(&id);
                }
            }
        }
    }
    #[cfg(feature = "ballista")]
    if let Some(job) = job {
        job.finished();
    }
    let scan = ScanStats::of(&plan);
    env.progress.scanning(&scan);
    env.progress.query(step_id, sql, &params, &scan);
    Ok((schema, batches))
}

impl Chunks {
    /// The window of time range `over` is split into chunks; each is executed with that
    /// parameter narrowed to the chunk, stored as Parquet and recorded, so that a resumed run
    /// reads finished chunks back instead of executing them again.
    async fn execute(&self, step_id: &str, sql: &str, env: &Env<'_>) -> Result<StepData, StepError> {
        let window = match env.values.iter().find(|(k, _)| k == &self.over) {
            Some((_, Value::Range { window, .. })) => *window,
            _ => return Err(StepError::other(format!("fill in `{}`: this step splits its time range", self.over))),
        };
        let parts = self.split(window);
        let bind = |w: crate::util::timeutil::Window| bind_all(env.params, &with_window(env.values, &self.over, w));
        let first = parts.first().copied().unwrap_or(window);
        let schema: SchemaRef = {
            let df = env.ctx.sql_with_options(sql, read_only()).await?.with_param_values(bind(first))?;
            Arc::new(df.schema().as_arrow().clone())
        };
        let folder = env.run_dir.join(format!("{step_id}.chunks"));
        std::fs::create_dir_all(&folder)
            .map_err(|e| StepError::other(format!("creating {}: {e}", folder.display())))?;
        let stored: HashMap<usize, String> = env
            .store
            .chunks(env.run_id, step_id)
            .map_err(StepError::Other)?
            .into_iter()
            .map(|(i, _, f)| (i, f))
            .collect();
        let total = parts.len();
        let mut batches = Vec::new();
        let mut rows = 0u64;
        for (i, w) in parts.iter().enumerate() {
            env.progress.chunk(i, total);
            env.progress.rows(rows);
            let name = format!("{i:06}.parquet");
            let path = folder.join(&name);
            if stored.get(&i) == Some(&name) {
                if let Ok(data) = read_parquet(&path) {
                    for b in data.batches {
                        rows += b.num_rows() as u64;
                        batches.push(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?);
                    }
                    continue;
                }
            }
            let (_, got) = match collect(env, step_id, sql, bind(*w)).await {
                Ok(got) => got,
                Err(e) if out_of_memory(&e) => {
                    tracing::debug!(step = step_id, chunk = i + 1, error = %e, "a chunk outgrew the run's memory");
                    return Err(StepError::Message(chunk_memory_message(run_limit(env), i + 1, total, *w)));
                }
                Err(e) => return Err(StepError::Chunk { chunk: i + 1, of: total, window: *w, source: e }),
            };
            let data = StepData::new(schema.clone(), got);
            // Written aside and renamed, so a kill mid-write never leaves a half chunk.
            let partial = folder.join(format!("{i:06}.partial"));
            write_parquet(&partial, &data).map_err(StepError::Other)?;
            std::fs::rename(&partial, &path).map_err(|e| StepError::other(format!("storing chunk {}: {e}", i + 1)))?;
            env.store.record_chunk(env.run_id, step_id, i, data.rows, &name).map_err(StepError::Other)?;
            rows += data.rows as u64;
            batches.extend(data.batches);
        }
        env.progress.chunk(total, total);
        Ok(StepData::new(schema, batches))
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
        let by = match crate::util::timeutil::parse_duration(&c.by) {
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

/// Where in the file a planning error points, its message and a hint.
fn locate_error(e: &DataFusionError, q: &Query, ctx: &SessionContext) -> (Pos, String, Option<String>) {
    let (message, mut hint) = clean_error(e);
    let span = e.diagnostic().and_then(|d| d.span).filter(|s| s.start.line > 0);
    let mut at = span.map(|s| q.file_pos((s.start.line, s.start.column)));
    let lower = message.to_lowercase();
    if at.is_none() {
        let name =
            message.split('`').nth(1).map(str::to_string).or_else(|| lower.split('\'').nth(1).map(str::to_string));
        if let Some(n) = name {
            at = find_identifier(&q.sql.text, &n).map(|p| q.file_pos(p));
        }
    }
    if lower.contains("table") && lower.contains("not found") && hint.is_none() {
        let names: Vec<String> = ctx.table_names_sorted();
        hint = Some(format!("tables you can use: {}", names.join(", ")));
    }
    (at.unwrap_or_else(|| q.file_pos((1, 1))), message, hint)
}

trait TableNames {
    fn table_names_sorted(&self) -> Vec<String>;
}

impl TableNames for SessionContext {
    fn table_names_sorted(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.catalog("datafusion").and_then(|c| c.schema("public")).map(|s| s.table_names()).unwrap_or_default();
        names.sort();
        names
    }
}
