//! What a step kind's planning sees ([`PlanEnv`]), its execution sees ([`Env`]), reports ([`ProgressSink`]), makes ([`Made`])
//! and fails with ([`StepError`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono_tz::Tz;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;

use crate::model::params::{Param, Value};
use crate::model::service::Service;
use crate::results::StepData;
use crate::secrets::Secrets;
use crate::sql::session::clean_error;
use crate::store::Store;
use crate::util::timeutil;

/// What executing a step may use: the run's session (connectors, ratings and earlier steps'
/// tables registered), its parameters, the tables made so far, and the services and state it
/// may ask.
pub struct Env<'a> {
    pub ctx: &'a SessionContext,
    pub run_id: &'a str,
    /// `data/runs/<id>/`, where a chunked step keeps its chunks.
    pub run_dir: &'a Path,
    /// The data folder (`.mmdb` files are named relative to it).
    pub data_dir: &'a Path,
    pub params: &'a [Param],
    pub values: &'a [(String, Value)],
    pub done: &'a HashMap<String, Arc<StepData>>,
    pub tz: Tz,
    pub services: &'a [Service],
    pub secrets: &'a Secrets,
    pub store: &'a Store,
    pub progress: &'a dyn ProgressSink,
}

/// What planning a step at load may use: a session with the connectors and the earlier
/// steps' (empty) tables registered, sample parameter values, and what the catalog holds.
pub struct PlanEnv<'a> {
    pub ctx: &'a SessionContext,
    pub params: &'a [Param],
    /// Sample values of every parameter, bound.
    pub bound: &'a [(String, ScalarValue)],
    /// The earlier steps' result schemas, by step id.
    pub schemas: &'a [(String, SchemaRef)],
    /// The names of the file connectors.
    pub connectors: &'a [String],
    pub services: &'a [Service],
    pub data_dir: &'a Path,
}

/// Planning stopped at a problem, which is already in the author's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

/// Where a step reports how far it got (the run's progress bar).
pub trait ProgressSink: Send + Sync {
    /// Rows the step has produced so far.
    fn rows(&self, rows: u64);
    /// Chunk `done` of `of` is next (chunked steps).
    fn chunk(&self, done: usize, of: usize);
    /// What the running query has read so far (called twice a second while it runs).
    fn scanning(&self, _scan: &crate::sql::scan::ScanStats) {}
    /// The running query executes on a cluster as Ballista job `job`.
    fn job(&self, _job: &str) {}
    /// A query of step `step` finished: its SQL, the values bound, and what its scans read.
    fn query(&self, _step: &str, _sql: &str, _params: &[(String, ScalarValue)], _scan: &crate::sql::scan::ScanStats) {}
}

/// What a step made: a table, or the HTML of a text.
#[derive(Debug)]
pub enum Made {
    Table(StepData),
    Html(String),
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("chunk {chunk} of {of}: {source}")]
    Chunk { chunk: usize, of: usize, window: timeutil::Window, source: datafusion::error::DataFusionError },
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("{0:#}")]
    Other(anyhow::Error),
    /// A message already written for the analyst.
    #[error("{0}")]
    Message(String),
}

impl StepError {
    pub fn other(message: impl Into<String>) -> StepError {
        StepError::Message(message.into())
    }

    /// The message the analyst reads.
    pub fn message(&self) -> String {
        match self {
            StepError::Query(e) => clean_error(e).0,
            StepError::Chunk { chunk, of, window, source } => format!(
                "chunk {chunk} of {of} ({} – {}): {}",
                window.start.format("%Y-%m-%d %H:%M"),
                window.end.format("%Y-%m-%d %H:%M"),
                clean_error(source).0
            ),
            other => other.to_string(),
        }
    }
}
