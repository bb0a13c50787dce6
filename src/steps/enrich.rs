//! The `enrich` step: adds columns to an earlier step's table for its IP and domain columns,
//! each distinct value looked up once per run. The lookup tables themselves (network context,
//! geolocation, top domains) are in [`crate::lookup`], the reputation client in
//! [`crate::reputation`]; this is the playbook shape, its validation, the columns it adds and
//! its execution.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::env::{Env, PlanEnv, Reported, StepError};
use crate::lookup::{host_of, split_domain, Context, Geo, Place, SourceRows, TopDomains};
use crate::model::service::Service;
use crate::reputation::Lookup;
use crate::results::{cell_text, StepData};
use crate::sql::quote_ident;
use crate::sql::session::read_only;
use crate::util::problem::{Pos, Problems};
use crate::util::yaml::pos;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEnrich {
    /// The earlier step whose table is enriched.
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    /// Columns holding IP addresses.
    #[serde(default)]
    pub ip: Vec<String>,
    /// Columns holding domains, host names or URLs.
    #[serde(default)]
    pub domain: Vec<String>,
    /// A connector in Spot's network context format (`ip` = address, `a-b` range or CIDR; `name`).
    #[serde(default)]
    pub context: Option<String>,
    /// A connector in Spot's `iploc.csv` layout, or a MaxMind / DB-IP `.mmdb` file in the data folder.
    #[serde(default)]
    pub geo: Option<String>,
    /// A connector listing `rank, domain` (Tranco / Alexa top-1m layout).
    #[serde(default)]
    pub top_domains: Option<String>,
    /// An `http` connector asked about each value (a reputation service).
    #[serde(default)]
    pub reputation: Option<String>,
}

/// Where geolocation comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoSource {
    /// A connector in Spot's iploc layout.
    Connector(String),
    /// A `.mmdb` file, relative to the data folder.
    Mmdb(String),
}

#[derive(Debug, Clone)]
pub struct Enrich {
    pub from: String,
    pub ip: Vec<String>,
    pub domain: Vec<String>,
    pub context: Option<String>,
    pub geo: Option<GeoSource>,
    pub top_domains: Option<String>,
    pub reputation: Option<String>,
    pub at: Pos,
}

impl Enrich {
    /// The connectors this step reads.
    pub fn connectors(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        v.extend(self.context.as_deref());
        if let Some(GeoSource::Connector(c)) = &self.geo {
            v.push(c);
        }
        v.extend(self.top_domains.as_deref());
        v.extend(self.reputation.as_deref());
        v
    }
}

pub fn validate(raw: RawEnrich, at: Pos, earlier: &[String], problems: &mut Problems) -> Option<Enrich> {
    let from_at = pos(&raw.from);
    let from = raw.from.value;
    if !earlier.contains(&from) {
        problems.push_hint(
            from_at,
            format!("`from` names `{from}`, which is not an earlier step"),
            if earlier.is_empty() {
                "enrich the table of a step above this one".to_string()
            } else {
                format!("earlier steps: {}", earlier.join(", "))
            },
        );
        return None;
    }
    if raw.ip.is_empty() && raw.domain.is_empty() {
        problems.push_hint(at, "an enrich step needs `ip:` or `domain:` columns", "e.g. ip: [source, destination]");
        return None;
    }
    if !raw.ip.is_empty() && raw.context.is_none() && raw.geo.is_none() && raw.reputation.is_none() {
        problems.push_hint(
            at,
            "nothing to look the IP columns up in",
            "name a `context:`, `geo:` or `reputation:` source",
        );
    }
    if !raw.domain.is_empty() && raw.top_domains.is_none() && raw.reputation.is_none() {
        // Registrable domain and subdomain come from the public suffix list alone: fine.
    }
    let geo = raw.geo.map(|g| if g.ends_with(".mmdb") { GeoSource::Mmdb(g) } else { GeoSource::Connector(g) });
    Some(Enrich {
        from,
        ip: raw.ip,
        domain: raw.domain,
        context: raw.context,
        geo,
        top_domains: raw.top_domains,
        reputation: raw.reputation,
        at,
    })
}

impl Enrich {
    /// Checks the step against the table it enriches and the sources it names; the enriched
    /// table's schema, or Err when a problem was reported ([`Reported`]).
    pub fn plan(&self, step_id: &str, env: &PlanEnv<'_>, problems: &mut Problems) -> Result<SchemaRef, Reported> {
        let e = self;
        let (_, from) = env.schemas.iter().find(|(id, _)| id == &e.from).ok_or(Reported)?;
        let mut ok = true;
        for c in e.ip.iter().chain(&e.domain) {
            if from.field_with_name(c).is_err() {
                let cols: Vec<&str> = from.fields().iter().map(|f| f.name().as_str()).collect();
                problems.push_hint(
                    e.at,
                    format!("step `{}`: `{}` has no column `{c}`", step_id, e.from),
                    format!("columns: {}", cols.join(", ")),
                );
                ok = false;
            }
        }
        for name in e.connectors() {
            let is_service = e.reputation.as_deref() == Some(name);
            let found = if is_service {
                env.services.iter().any(|s| s.name == name)
            } else {
                env.connectors.iter().any(|c| c == name)
            };
            if !found {
                let known: Vec<&str> = env.connectors.iter().map(String::as_str).collect();
                problems.push_hint(
                    e.at,
                    format!("step `{}`: unknown connector `{name}`", step_id),
                    format!("known connectors: {}", known.join(", ")),
                );
                ok = false;
            }
        }
        if let Some(GeoSource::Mmdb(file)) = &e.geo {
            match crate::util::paths::join_inside(env.data_dir, file) {
                Some(p) if p.is_file() => {}
                _ => {
                    problems.push_hint(
                        e.at,
                        format!("step `{}`: no geolocation database `{file}` in the data folder", step_id),
                        "put the .mmdb file under the data folder and name it relative to it",
                    );
                    ok = false;
                }
            }
        }
        let rep_fields: Vec<String> = e
            .reputation
            .as_deref()
            .and_then(|r| env.services.iter().find(|s| s.name == r))
            .map(Service::field_names)
            .unwrap_or_default();
        let mut fields: Vec<Field> = from.fields().iter().map(|f| f.as_ref().clone()).collect();
        for f in added_fields(e, &rep_fields) {
            if fields.iter().any(|g| g.name() == f.name()) {
                problems.push(
                    e.at,
                    format!("step `{}`: the column `{}` it adds is already in `{}`", step_id, f.name(), e.from),
                );
                ok = false;
            }
            fields.push(f);
        }
        if ok {
            Ok(Arc::new(Schema::new(fields)))
        } else {
            Err(Reported)
        }
    }

    /// Executes the step on the table of the earlier step it names.
    pub async fn execute(&self, env: &Env<'_>) -> Result<StepData, StepError> {
        let from =
            env.done.get(&self.from).ok_or_else(|| StepError::other(format!("step `{}` has no table", self.from)))?;
        self.enrich(from, env).await
    }

    /// `from` with the lookup columns added.
    pub async fn enrich(&self, from: &StepData, env: &Env<'_>) -> Result<StepData, StepError> {
        let tz = env.tz;
        let ctx = env.ctx;
        // A source connector's table as text, columns in order.
        let table = |name: String| async move {
            let batches = ctx
                .sql_with_options(&format!("SELECT * FROM {}", quote_ident(&name)), read_only())
                .await?
                .collect()
                .await?;
            let mut t = SourceRows::default();
            for b in &batches {
                t.names = b.schema().fields().iter().map(|f| f.name().to_ascii_lowercase()).collect();
                for r in 0..b.num_rows() {
                    t.rows
                        .push((0..b.num_columns()).map(|c| cell_text(b.column(c), r, tz).trim().to_string()).collect());
                }
            }
            Ok::<_, datafusion::error::DataFusionError>(t)
        };
        let mut src = Sources::default();
        if let Some(c) = &self.context {
            let (context, bad) = Context::from_rows(&table(c.clone()).await?);
            if !bad.is_empty() {
                tracing::warn!(connector = %c, rows = bad.len(), "network context rows that are not addresses, ranges or CIDRs");
            }
            src.context = Some(context);
        }
        match &self.geo {
            Some(GeoSource::Connector(c)) => {
                src.geo = Some(Geo::from_iploc_rows(&table(c.clone()).await?));
            }
            Some(GeoSource::Mmdb(file)) => {
                let path = crate::util::paths::join_inside(env.data_dir, file)
                    .ok_or_else(|| StepError::other(format!("`{file}` is not inside the data folder")))?;
                let bytes =
                    std::fs::read(&path).map_err(|err| StepError::other(format!("cannot read {file}: {err}")))?;
                src.geo = Some(Geo::mmdb(bytes).map_err(|m| StepError::other(format!("{file}: {m}")))?);
            }
            None => {}
        }
        if let Some(t) = &self.top_domains {
            src.top = Some(TopDomains::from_rows(&table(t.clone()).await?));
        }
        if let Some(name) = &self.reputation {
            let service = env
                .services
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| StepError::other(format!("no reputation service `{name}`")))?;
            let mut values: Vec<String> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let merged = from.merged().map_err(StepError::Other)?;
            for c in self.ip.iter().chain(&self.domain) {
                let Ok(i) = merged.schema().index_of(c) else { continue };
                for r in 0..merged.num_rows() {
                    let v = cell_text(merged.column(i), r, tz).trim().to_string();
                    if !v.is_empty() && seen.insert(v.clone()) {
                        values.push(v);
                    }
                }
            }
            let answers = service.lookup_all(&values, env.secrets, env.store).await;
            src.reputation = Some((service.field_names(), answers));
        }
        let merged = from.merged().map_err(StepError::Other)?;
        let out = apply(merged, self, &src, |col, r| cell_text(col, r, tz)).map_err(StepError::Message)?;
        Ok(StepData::new(out.schema(), vec![out]))
    }
}

/// What an IP value looked up to: context name, zone, place.
type IpFound = (Option<String>, Option<&'static str>, Option<Place>);
/// What a domain value looked up to: registrable domain, subdomain, the registrable domain's
/// rank, whether the exact host is listed.
type DomainFound = (Option<String>, Option<String>, Option<i64>, bool);

/// What one step's lookups use.
#[derive(Debug, Default)]
pub struct Sources {
    pub context: Option<Context>,
    pub geo: Option<Geo>,
    pub top: Option<TopDomains>,
    /// A reputation service's answers by value, and its field names.
    pub reputation: Option<(Vec<String>, HashMap<String, Lookup>)>,
}

/// The columns the step adds, in order (also used to plan later steps at load).
pub fn added_fields(e: &Enrich, reputation: &[String]) -> Vec<Field> {
    let mut out = Vec::new();
    for c in &e.ip {
        out.push(Field::new(format!("{c}_name"), DataType::Utf8, true));
        out.push(Field::new(format!("{c}_zone"), DataType::Utf8, true));
        if e.geo.is_some() {
            out.push(Field::new(format!("{c}_country"), DataType::Utf8, true));
            out.push(Field::new(format!("{c}_city"), DataType::Utf8, true));
            out.push(Field::new(format!("{c}_lat"), DataType::Float64, true));
            out.push(Field::new(format!("{c}_lon"), DataType::Float64, true));
            out.push(Field::new(format!("{c}_owner"), DataType::Utf8, true));
        }
    }
    if e.reputation.is_some() {
        for c in e.ip.iter().chain(&e.domain) {
            for f in reputation {
                out.push(Field::new(format!("{c}_{f}"), DataType::Utf8, true));
            }
            out.push(Field::new(format!("{c}_lookup"), DataType::Utf8, true));
        }
    }
    for d in &e.domain {
        out.push(Field::new(format!("{d}_registrable"), DataType::Utf8, true));
        out.push(Field::new(format!("{d}_subdomain"), DataType::Utf8, true));
        if e.top_domains.is_some() {
            out.push(Field::new(format!("{d}_rank"), DataType::Int64, true));
            out.push(Field::new(format!("{d}_top10k"), DataType::Boolean, true));
            out.push(Field::new(format!("{d}_top1m"), DataType::Boolean, true));
            out.push(Field::new(format!("{d}_listed"), DataType::Boolean, true));
        }
    }
    out
}

/// A private, loopback or link-local address (v4 or v6).
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_private() || v.is_loopback() || v.is_link_local(),
        IpAddr::V6(v) => {
            v.is_loopback() || (v.segments()[0] & 0xfe00) == 0xfc00 || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Each row's text in column `col`: a text column's values as they are (null as empty),
/// another type's as `text` writes them.
fn texts<'a>(col: &'a ArrayRef, text: &impl Fn(&ArrayRef, usize) -> String) -> Vec<Cow<'a, str>> {
    let borrowed = |it: &mut dyn Iterator<Item = Option<&'a str>>| it.map(|v| Cow::Borrowed(v.unwrap_or(""))).collect();
    match col.data_type() {
        DataType::Utf8 => borrowed(&mut col.as_string::<i32>().iter()),
        DataType::LargeUtf8 => borrowed(&mut col.as_string::<i64>().iter()),
        DataType::Utf8View => borrowed(&mut col.as_string_view().iter()),
        _ => (0..col.len()).map(|r| Cow::Owned(text(col, r))).collect(),
    }
}

/// Each row's index into the distinct values of `values`, and what `find` made of each
/// distinct value (called once per value).
fn distinct<'a, T>(values: &'a [Cow<'a, str>], mut find: impl FnMut(&str) -> T) -> (Vec<usize>, Vec<T>) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut found = Vec::new();
    let rows = values
        .iter()
        .map(|v| {
            *index.entry(v.as_ref()).or_insert_with(|| {
                found.push(find(v));
                found.len() - 1
            })
        })
        .collect();
    (rows, found)
}

/// Adds the lookup columns to `batch`; `text` writes a cell of a column that is not text.
pub fn apply(
    batch: &RecordBatch,
    e: &Enrich,
    src: &Sources,
    text: impl Fn(&ArrayRef, usize) -> String,
) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let column = |name: &str| -> Result<&ArrayRef, String> {
        let i = schema.index_of(name).map_err(|_| format!("the table has no column `{name}`"))?;
        Ok(batch.column(i))
    };
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for c in &e.ip {
        let values = texts(column(c)?, &text);
        let (rows, found) = distinct(&values, |v| -> IpFound {
            match v.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    let name = src.context.as_ref().and_then(|ctx| ctx.lookup(ip)).map(String::from);
                    let zone = if name.is_some() || is_internal(ip) { "internal" } else { "external" };
                    (name, Some(zone), src.geo.as_ref().and_then(|g| g.lookup(ip)))
                }
                Err(_) => (None, None, None),
            }
        });
        let each = || rows.iter().map(|&i| &found[i]);
        columns.push(Arc::new(StringArray::from_iter(each().map(|f| f.0.as_deref()))));
        columns.push(Arc::new(StringArray::from_iter(each().map(|f| f.1))));
        if e.geo.is_some() {
            let place = || each().map(|f| f.2.as_ref());
            columns.push(Arc::new(StringArray::from_iter(place().map(|p| p.and_then(|p| p.country.as_deref())))));
            columns.push(Arc::new(StringArray::from_iter(place().map(|p| p.and_then(|p| p.city.as_deref())))));
            columns.push(Arc::new(Float64Array::from_iter(place().map(|p| p.and_then(|p| p.lat)))));
            columns.push(Arc::new(Float64Array::from_iter(place().map(|p| p.and_then(|p| p.lon)))));
            columns.push(Arc::new(StringArray::from_iter(place().map(|p| p.and_then(|p| p.owner.as_deref())))));
        }
    }
    if let Some((names, answers)) = &src.reputation {
        for c in e.ip.iter().chain(&e.domain) {
            let values = texts(column(c)?, &text);
            let (rows, found) = distinct(&values, |v| (v.trim().is_empty(), answers.get(v.trim())));
            let each = || rows.iter().map(|&i| found[i]);
            for (i, _) in names.iter().enumerate() {
                columns.push(Arc::new(StringArray::from_iter(
                    each().map(|(_, l)| l.and_then(|l| l.fields.get(i).and_then(|f| f.as_deref()))),
                )));
            }
            columns.push(Arc::new(StringArray::from_iter(each().map(|(empty, l)| {
                if empty {
                    None
                } else {
                    Some(l.map_or("not looked up", |l| l.status.as_str()))
                }
            }))));
        }
    }
    for d in &e.domain {
        let values = texts(column(d)?, &text);
        let (rows, found) = distinct(&values, |v| -> DomainFound {
            match host_of(v) {
                Some(host) => {
                    let (reg, sub) = split_domain(&host);
                    let rank =
                        src.top.as_ref().and_then(|t| reg.as_deref().and_then(|r| t.rank(r)).or_else(|| t.rank(&host)));
                    let listed = src.top.as_ref().is_some_and(|t| t.rank(&host).is_some());
                    (reg, sub, rank, listed)
                }
                None => (None, None, None, false),
            }
        });
        let each = || rows.iter().map(|&i| &found[i]);
        columns.push(Arc::new(StringArray::from_iter(each().map(|f| f.0.as_deref()))));
        columns.push(Arc::new(StringArray::from_iter(each().map(|f| f.1.as_deref()))));
        if e.top_domains.is_some() {
            let top = |most: i64| BooleanArray::from_iter(each().map(|f| Some(f.2.is_some_and(|r| r <= most))));
            columns.push(Arc::new(Int64Array::from_iter(each().map(|f| f.2))));
            columns.push(Arc::new(top(10_000)));
            columns.push(Arc::new(top(1_000_000)));
            columns.push(Arc::new(BooleanArray::from_iter(each().map(|f| Some(f.3)))));
        }
    }
    let names: Vec<String> = src.reputation.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
    fields.extend(added_fields(e, &names));
    let out: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(out, columns).map_err(|e| e.to_string())
}
