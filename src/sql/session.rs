//! DataFusion sessions as casebook runs queries (spans kept for error positions, plain UTF-8
//! strings, UTC, casebook's functions registered), the read-only SQL options, the tables every
//! session has, and DataFusion errors turned into messages an author or analyst reads.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use super::remote::{cluster_of, Cluster};
use crate::util::text::first_line;

/// A DataFusion session configured as casebook runs queries: spans kept for error
/// positions, plain UTF-8 strings, casebook's functions registered.
pub fn new_session() -> SessionContext {
    let ctx = SessionContext::new_with_config(session_config());
    crate::sql::functions::register(&ctx);
    ctx
}

/// [`limited_session`] on `cluster` when there is one: the same settings and functions,
/// the queries planned here and executed there.
pub fn run_session(
    memory: Option<usize>,
    spill: Option<&std::path::Path>,
    cluster: Option<&Cluster>,
) -> Result<SessionContext, String> {
    let local = limited_session(memory, spill);
    match cluster {
        None => Ok(local),
        #[cfg(feature = "ballista")]
        Some(c) => crate::sql::cluster::remote(&local, c),
        #[cfg(not(feature = "ballista"))]
        Some(c) => Err(format!("{}: this casebook was built without Ballista", c.url)),
    }
}

/// casebook's settings over DataFusion's defaults, or over the `DATAFUSION_*` environment
/// variables an administrator set (e.g. `DATAFUSION_EXECUTION_TARGET_PARTITIONS=8`).
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::from_env().unwrap_or_default().with_information_schema(false);
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().execution.parquet.schema_force_view_types = false;
    config.options_mut().execution.time_zone = Some("UTC".into());
    config
}

/// Only queries: no DDL, no DML (`COPY`, `INSERT`), no `SET`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// A session whose queries may use at most `memory` bytes (then they fail with "Resources
/// exhausted" instead of taking the server down), sorts, joins and groupings that outgrow it
/// spilling into a temporary folder made inside `spill` (removed with the session; the OS's
/// temporary folder without one); without a limit, [`new_session`].
///
/// The pool is DataFusion's fair spill pool: what cannot spill (hash tables being built,
/// merge buffers) is served first, and the spilling operators share the rest equally, so one
/// sorter cannot take the memory a second one needs to spill. Each sort sets aside memory for
/// merging its spill files up front; that share is sized to the limit (DataFusion's fixed
/// 10 MB per partition made sorts under small limits fail before they spilled).
pub fn limited_session(memory: Option<usize>, spill: Option<&std::path::Path>) -> SessionContext {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    let Some(memory) = memory else { return new_session() };
    let disk = match spill {
        Some(dir) => DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![dir.to_path_buf()])),
        None => DiskManagerBuilder::default(),
    };
    let pool = TrackConsumersPool::new(FairSpillPool::new(memory), std::num::NonZeroUsize::MIN.saturating_add(4));
    let rt = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(disk)
        .build_arc();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "no memory limit or spill folder for this session");
            return new_session();
        }
    };
    let mut config = session_config();
    let partitions = config.target_partitions().max(1);
    config.options_mut().execution.sort_spill_reservation_bytes =
        (memory / (8 * partitions)).clamp(256 << 10, 10 << 20);
    let ctx = SessionContext::new_with_config_rt(config, rt);
    crate::sql::functions::register(&ctx);
    ctx
}

/// The `ratings` table playbooks can query: analysts' ratings (1 high … 3 low) of values.
pub fn ratings_schema() -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let text = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("playbook"),
        text("run_id"),
        text("step"),
        text("field"),
        text("value"),
        Field::new("rating", DataType::Int64, false),
        text("note"),
        text("rated_by"),
        text("rated_at"),
    ]))
}

/// Strips DataFusion's prefixes and keeps the first line.
pub fn clean_error(e: &DataFusionError) -> (String, Option<String>) {
    let inner = e.iter().last().unwrap_or(e);
    let inner_text = inner.to_string();
    if let Some(refused) = super::remote::refusal_in(&inner_text) {
        return (refused, None);
    }
    if let Some(failed) = super::remote::job_failure_in(&inner_text) {
        return (failed, None);
    }
    let text = match e.diagnostic() {
        Some(_) if inner_text.contains("No field named ") => inner_text.clone(),
        Some(d) => d.message.clone(),
        None => inner_text.clone(),
    };
    // A database's own message ("ERROR: …") says more than the lines wrapped around it.
    let mut msg = match text.lines().find(|l| l.starts_with("ERROR: ")) {
        Some(l) => format!("the database answered: {}", &l[7..]),
        None => first_line(&text),
    };
    if let Some(i) = msg.find("No field named ") {
        msg = msg[i..].to_string();
    }
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "Execution error: ",
        "SQL error: ",
        "ParserError(",
        "Arrow error: ",
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // Only `ParserError(…)` wraps its text in parentheses.
            msg = if prefix.ends_with('(') { rest.strip_suffix(')').unwrap_or(rest) } else { rest }.to_string();
        }
    }
    if out_of_memory(e) {
        return (memory_message(None, None), None);
    }
    if disk_full(e) {
        return (
            "the disk of the data folder is full: this query's spill files or its result did not fit; narrow the \
             time window and run again, or ask an administrator to free space (old runs and exports go with \
             --retain-days and --retain-gb)"
                .into(),
            None,
        );
    }
    if let Some(rest) = msg.strip_prefix("No field named ") {
        let (name, tail) = match rest.split_once(". ") {
            Some((n, t)) => (n.to_string(), t.to_string()),
            None => (rest.trim_end_matches('.').to_string(), String::new()),
        };
        let name = name.trim_matches('"').to_string();
        let hint = if let Some(v) = tail.strip_prefix("Valid fields are ") {
            Some(suggest(&name, v.trim_end_matches('.')))
        } else if let Some(d) = tail.strip_prefix("Did you mean '") {
            let d = d.trim_end_matches("'?");
            Some(format!("did you mean `{}`?", d.rsplit('.').next().unwrap_or(d)))
        } else {
            None
        };
        return (format!("unknown column `{name}`"), hint);
    }
    (msg, None)
}

/// Whether `e`, or an error under it, says the disk is full.
fn disk_full(e: &DataFusionError) -> bool {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains("No space left on device") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether `e` says a query needed more memory than its run may use, spilling included.
pub fn out_of_memory(e: &DataFusionError) -> bool {
    let whole = e.to_string();
    whole.contains("Resources exhausted") || whole.contains("Not enough memory")
}

/// What an analyst reads when a query could not fit in its run's memory even spilling to
/// disk: the limit (`limit` bytes, when known) and, when the query reads a time window of
/// `window_hours`, half of it as the first thing to try.
pub fn memory_message(limit: Option<usize>, window_hours: Option<f64>) -> String {
    let limit = limit_text(limit);
    let narrow = match window_hours {
        Some(h) if h >= 2.0 => {
            let half = (h / 2.0).floor();
            format!("narrow the time window (it spans {h:.0} hours; try {half:.0} hours or fewer)")
        }
        Some(_) => "narrow the time window".to_string(),
        None => "narrow the time window (or lower the row limit)".to_string(),
    };
    format!(
        "this query needs more memory than one run may use{limit}, even spilling to disk: {narrow} and run again; \
         an administrator can raise the limit with --run-memory-mb"
    )
}

/// What to do when one chunk of a chunked step (chunk `n` of `of`, over `window`) outgrew the
/// run's memory even spilling: a narrower window does not help, shorter chunks do.
pub fn chunk_memory_message(
    limit: Option<usize>,
    n: usize,
    of: usize,
    window: crate::util::timeutil::Window,
) -> String {
    let limit = limit_text(limit);
    let hours = (window.end - window.start).num_minutes() as f64 / 60.0;
    format!(
        "chunk {n} of {of} ({} – {}, {hours:.0} hours) needs more memory than one run may use{limit}, even spilling to \
         disk: the playbook's author can make its chunks shorter (`chunks: {{ by: … }}`), or an administrator can \
         raise the limit with --run-memory-mb",
        window.start.format("%Y-%m-%d %H:%M"),
        window.end.format("%Y-%m-%d %H:%M"),
    )
}

/// " (2048 MB)" for a run's memory limit, nothing without one.
fn limit_text(limit: Option<usize>) -> String {
    limit.map(|b| format!(" ({} MB)", b >> 20)).unwrap_or_default()
}

fn suggest(name: &str, valid: &str) -> String {
    let bare = name.rsplit('.').next().unwrap_or(name).to_lowercase();
    let fields: Vec<String> =
        valid.split(", ").map(|f| f.rsplit('.').next().unwrap_or(f).trim_matches('"').to_string()).collect();
    let best = fields.iter().min_by_key(|f| edit_distance(&bare, &f.to_lowercase()));
    match best {
        Some(b) if edit_distance(&bare, &b.to_lowercase()) <= 2 => format!("did you mean `{b}`?"),
        _ => {
            let shown: Vec<&str> = fields.iter().take(30).map(String::as_str).collect();
            format!("columns: {}", shown.join(", "))
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_and_a_full_pool_are_told_as_what_to_do() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device (os error 28)");
        let e = DataFusionError::ArrowError(
            Box::new(datafusion::arrow::error::ArrowError::IoError("IO error".into(), io)),
            None,
        );
        let (msg, _) = clean_error(&e);
        assert!(msg.starts_with("the disk of the data folder is full"), "{msg}");
        let e = DataFusionError::ResourcesExhausted(
            "Failed to allocate additional 10.0 MB for ExternalSorterMerge[0]".into(),
        );
        let (msg, _) = clean_error(&e);
        assert!(
            msg.starts_with("this query needs more memory than one run may use") && !msg.contains("ExternalSorter"),
            "{msg}"
        );
        assert_eq!(
            memory_message(Some(2048 << 20), Some(168.0)),
            "this query needs more memory than one run may use (2048 MB), even spilling to disk: narrow the time window \
             (it spans 168 hours; try 84 hours or fewer) and run again; an administrator can raise the limit with \
             --run-memory-mb"
        );
    }
}
