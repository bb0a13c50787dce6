//! A data platform's HTTP API as a table (`kind: http_table`): a JSON endpoint that returns
//! rows for a time window, page by page. The query's window on the time column becomes the
//! request's parameters (`{start}`, `{end}`); requests keep the rate limit, timeout, retries
//! and size cap reputation services keep, and the key comes from a named secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use indexmap::IndexMap;
use serde::Deserialize;

use crate::reputation::{get_capped, Failure};
use crate::secrets::Secrets;
use crate::util::problem::{Pos, Problems};

/// A `kind: http_table` file as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTable {
    /// Always `http_table`.
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The endpoint, e.g. https://platform.example.org/api/v1/flows
    pub url: String,
    /// Request parameters; `{start}` and `{end}` are the query's time window (RFC 3339).
    #[serde(default)]
    pub params: IndexMap<String, String>,
    /// The parameter carrying the page number (1, 2, …); none: one request.
    #[serde(default)]
    pub page_param: Option<String>,
    /// The parameter carrying the page size, and the size asked for.
    #[serde(default)]
    pub page_size_param: Option<String>,
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// A JSON pointer to the array of rows in an answer (default: the answer is the array).
    #[serde(default)]
    pub rows: String,
    /// The column the window filters on; queries must give a window on it.
    pub time_column: String,
    /// The columns of a row (name and type, as in file connectors).
    #[schemars(with = "Vec<super::connector::RawColumn>")]
    pub schema: Vec<super::connector::RawColumn>,
    #[serde(default)]
    pub auth_header: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default = "default_rate")]
    pub rate_limit: String,
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// The most rows one query takes; more stop it with a message.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// The standard schema the rows map onto, and how (as for file connectors).
    #[serde(default)]
    pub provides: Option<String>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, String>")]
    pub columns: IndexMap<String, serde_saphyr::Spanned<String>>,
}

fn default_page_size() -> usize {
    1000
}
fn default_rate() -> String {
    "10/s".into()
}
fn default_timeout() -> f64 {
    30.0
}
fn default_retries() -> u32 {
    2
}
fn default_max_bytes() -> usize {
    50 << 20
}
fn default_max_rows() -> usize {
    5_000_000
}

/// Whether a connector file is an HTTP table.
pub fn is_http_table(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        kind: Option<String>,
    }
    serde_saphyr::from_str::<Kind>(text).ok().and_then(|k| k.kind).is_some_and(|k| k == "http_table")
}

/// How to ask the endpoint, checked.
#[derive(Debug)]
struct Endpoint {
    name: String,
    url: reqwest::Url,
    params: Vec<(String, String)>,
    page_param: Option<String>,
    page_size_param: Option<String>,
    page_size: usize,
    rows: String,
    time_column: String,
    auth: Option<(reqwest::header::HeaderName, String)>,
    interval: Duration,
    timeout: Duration,
    retries: u32,
    max_bytes: usize,
    max_rows: usize,
}

/// The table: rows fetched when a query scans it.
#[derive(Debug)]
pub struct HttpTable {
    endpoint: Arc<Endpoint>,
    schema: SchemaRef,
    secrets: Secrets,
}

/// Loads a `kind: http_table` file: the table (mapped when it `provides:` a standard schema).
pub fn load(stem: &str, text: &str, secrets: &Secrets, problems: &mut Problems) -> Option<super::connector::Connector> {
    let raw: RawHttpTable = match crate::util::yaml::parse(&problems.path, text) {
        Ok(r) => r,
        Err(p) => {
            problems.list.push(p);
            return None;
        }
    };
    let name = raw.name.clone().unwrap_or_else(|| stem.to_string());
    let at = Pos::new(1, 1);
    let mut ok = true;
    let mut bad = |m: String, problems: &mut Problems| {
        problems.push(at, format!("connector `{name}`: {m}"));
        ok = false;
    };
    let url = match reqwest::Url::parse(&raw.url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
        _ => {
            bad(format!("`url` `{}` is not an http(s) address", raw.url), problems);
            None
        }
    };
    let interval = crate::model::service::parse_rate(&raw.rate_limit);
    if interval.is_none() {
        bad(format!("`rate_limit` `{}` is not a rate such as 4/min or 1/s", raw.rate_limit), problems);
    }
    let auth = match (&raw.auth_header, &raw.secret) {
        (Some(h), Some(s)) => match reqwest::header::HeaderName::from_bytes(h.as_bytes()) {
            Ok(h) => Some((h, s.clone())),
            Err(_) => {
                bad(format!("`auth_header` `{h}` is not a header name"), problems);
                None
            }
        },
        (None, None) => None,
        _ => {
            bad("`auth_header` and `secret` go together: the header carries the secret".into(), problems);
            None
        }
    };
    if !(raw.timeout_s > 0.0 && raw.timeout_s <= 300.0) {
        bad("`timeout_s` must be a number of seconds up to 300".into(), problems);
    }
    if raw.page_size == 0 {
        bad("`page_size` must be at least 1".into(), problems);
    }
    let mut fields = Vec::new();
    for c in &raw.schema {
        match super::connector::parse_type(&c.kind) {
            Some(t) => fields.push(Field::new(&c.name, t, true)),
            None => bad(format!("column `{}` has unknown type `{}`", c.name, c.kind), problems),
        }
    }
    let schema = Arc::new(Schema::new(fields));
    match schema.field_with_name(&raw.time_column).map(|f| f.data_type().clone()) {
        Ok(DataType::Timestamp(..)) => {}
        _ => bad(format!("`time_column` `{}` must be a timestamp column of `schema:`", raw.time_column), problems),
    }
    let (Some(url), Some(interval), true) = (url, interval, ok) else { return None };
    let endpoint = Endpoint {
        name: name.clone(),
        url,
        params: raw.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        page_param: raw.page_param.clone(),
        page_size_param: raw.page_size_param.clone(),
        page_size: raw.page_size,
        rows: raw.rows.clone(),
        time_column: raw.time_column.clone(),
        auth,
        interval,
        timeout: Duration::from_secs_f64(raw.timeout_s),
        retries: raw.retries,
        max_bytes: raw.max_bytes,
        max_rows: raw.max_rows,
    };
    let table: Arc<dyn TableProvider> =
        Arc::new(HttpTable { endpoint: Arc::new(endpoint), schema, secrets: secrets.clone() });
    let provides = match raw.provides.as_deref().map(|p| (p, super::standard::find(p))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((p, None)) => {
            problems.push(at, format!("connector `{name}`: there is no standard schema `{p}`"));
            return None;
        }
    };
    let (table, missing) = if provides.is_some() || !raw.columns.is_empty() {
        let m = super::mapping::Mapping { connector: &name, provides, columns: &raw.columns, filter: None }
            .apply(table, problems)?;
        (m.table, m.missing)
    } else {
        (table, Vec::new())
    };
    let time_column = provides.map_or(raw.time_column.clone(), |s| s.time_column.to_string());
    Some(super::connector::Connector {
        name,
        path: problems.path.clone(),
        description: raw.description.unwrap_or_default(),
        format: super::connector::Format::HttpTable,
        time_column: Some(time_column),
        table,
        location: None,
        declared: None,
        provides,
        missing,
    })
}

/// The window a filter puts on `column`: `column >= t`, `column > t`, `column < t`, `t <= column`….
fn bound(e: &Expr, column: &str) -> Option<(bool, DateTime<Utc>)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else { return None };
    let time = |e: &Expr| -> Option<DateTime<Utc>> {
        let v = match e {
            Expr::Literal(v, _) => v,
            Expr::Cast(c) => match c.expr.as_ref() {
                Expr::Literal(v, _) => v,
                _ => return None,
            },
            _ => return None,
        };
        let micros = match v {
            ScalarValue::TimestampMicrosecond(Some(t), _) => *t,
            ScalarValue::TimestampNanosecond(Some(t), _) => t / 1000,
            ScalarValue::TimestampMillisecond(Some(t), _) => t * 1000,
            ScalarValue::TimestampSecond(Some(t), _) => t * 1_000_000,
            _ => return None,
        };
        DateTime::from_timestamp_micros(micros)
    };
    // The column as it is, or cast to another timestamp unit to meet `now()`'s.
    let is_col = |e: &Expr| match e {
        Expr::Column(c) => c.name == column,
        Expr::Cast(c) => matches!(c.expr.as_ref(), Expr::Column(c) if c.name == column),
        Expr::TryCast(c) => matches!(c.expr.as_ref(), Expr::Column(c) if c.name == column),
        _ => false,
    };
    match (is_col(left), is_col(right)) {
        (true, false) => {
            let t = time(right)?;
            match op {
                Operator::Gt | Operator::GtEq => Some((true, t)),
                Operator::Lt | Operator::LtEq => Some((false, t)),
                _ => None,
            }
        }
        (false, true) => {
            let t = time(left)?;
            match op {
                Operator::Lt | Operator::LtEq => Some((true, t)),
                Operator::Gt | Operator::GtEq => Some((false, t)),
                _ => None,
            }
        }
        _ => None,
    }
}

#[async_trait::async_trait]
impl TableProvider for HttpTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// The window on the time column goes into the request; DataFusion still checks every
    /// condition on the rows that come back.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if bound(f, &self.endpoint.time_column).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let e = &self.endpoint;
        let mut start: Option<DateTime<Utc>> = None;
        let mut end: Option<DateTime<Utc>> = None;
        for (lower, t) in filters.iter().filter_map(|f| bound(f, &e.time_column)) {
            if lower {
                start = Some(start.map_or(t, |s| s.max(t)));
            } else {
                end = Some(end.map_or(t, |s| s.min(t)));
            }
        }
        let (Some(start), Some(end)) = (start, end) else {
            return Err(DataFusionError::Plan(format!(
                "`{}` answers only for a time window: filter on `{}` from and to a time",
                e.name, e.time_column
            )));
        };
        let batch = self.fetch(start, end).await.map_err(DataFusionError::Execution)?;
        let exec = MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema.clone(), projection.cloned())?;
        Ok(exec)
    }
}

impl HttpTable {
    /// Every page of the window's rows, as one batch.
    async fn fetch(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<datafusion::arrow::array::RecordBatch, String> {
        let e = &self.endpoint;
        let key = match &e.auth {
            Some((h, secret)) => Some((h, self.secrets.get(secret).map_err(|m| format!("`{}`: {m}", e.name))?)),
            None => None,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(e.timeout)
            .build()
            .map_err(|err| format!("`{}`: cannot make an HTTP client: {}", e.name, err.without_url()))?;
        let fill = |v: &str| {
            v.replace("{start}", &start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                .replace("{end}", &end.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        };
        let mut decoder = datafusion::arrow::json::ReaderBuilder::new(self.schema.clone())
            .build_decoder()
            .map_err(|err| format!("`{}`: {err}", e.name))?;
        let mut rows_taken = 0usize;
        let mut last: Option<Instant> = None;
        for page in 1.. {
            let mut url = e.url.clone();
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in &e.params {
                    q.append_pair(k, &fill(v));
                }
                if let Some(p) = &e.page_param {
                    q.append_pair(p, &page.to_string());
                }
                if let Some(p) = &e.page_size_param {
                    q.append_pair(p, &e.page_size.to_string());
                }
            }
            let body = self.get(&client, &url, key.as_ref().map(|(h, k)| (*h, k.expose())), &mut last).await?;
            let json: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| format!("`{}` answered page {page} with something that is not JSON", e.name))?;
            let rows = if e.rows.is_empty() { Some(&json) } else { json.pointer(&e.rows) };
            let Some(rows) = rows.and_then(serde_json::Value::as_array) else {
                return Err(format!("`{}`: page {page} has no array of rows at `{}`", e.name, e.rows));
            };
            rows_taken += rows.len();
            if rows_taken > e.max_rows {
                return Err(format!(
                    "`{}` has more than {} rows for this window: narrow the window (the connector's max_rows)",
                    e.name, e.max_rows
                ));
            }
            decoder.serialize(rows).map_err(|err| format!("`{}`: a row does not fit the schema: {err}", e.name))?;
            if e.page_param.is_none() || rows.len() < e.page_size {
                break;
            }
        }
        let batch = decoder.flush().map_err(|err| format!("`{}`: {err}", e.name))?;
        Ok(batch.unwrap_or_else(|| datafusion::arrow::array::RecordBatch::new_empty(self.schema.clone())))
    }

    /// One page, paced by the rate limit and retried after a 429, a 5xx or no answer.
    async fn get(
        &self,
        client: &reqwest::Client,
        url: &reqwest::Url,
        auth: Option<(&reqwest::header::HeaderName, &str)>,
        last: &mut Option<Instant>,
    ) -> Result<Vec<u8>, String> {
        let e = &self.endpoint;
        let mut wait = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            if let Some(t) = *last {
                let next = t + e.interval;
                if next > Instant::now() {
                    tokio::time::sleep_until(next.into()).await;
                }
            }
            *last = Some(Instant::now());
            match get_capped(client, url, auth, e.timeout, e.max_bytes).await {
                Ok((200, body)) => return Ok(body),
                Ok((code, _)) => return Err(format!("`{}` refused the request (HTTP {code})", e.name)),
                Err(Failure::Final(m)) => return Err(format!("`{}`: {m}", e.name)),
                Err(Failure::Retry(m, after)) => {
                    if attempt >= e.retries {
                        let tries =
                            if attempt > 0 { format!(" after {} attempts", attempt + 1) } else { String::new() };
                        return Err(format!("`{}`: {m}{tries}", e.name));
                    }
                    tokio::time::sleep(after.unwrap_or(wait).min(Duration::from_secs(60))).await;
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }
}
