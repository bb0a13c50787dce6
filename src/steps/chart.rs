//! The chart a query step draws: bar or line (time series), with x, one or more y columns,
//! and an optional series (colour) column. Drawn in the browser by the vendored Chart.js.

use std::collections::HashMap;

use chrono_tz::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::results::{cell_text, StepData};
use crate::util::problem::{Pos, Problems};
use crate::util::yaml::pos;

/// A chart of the step's result.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChart {
    #[serde(rename = "type")]
    #[schemars(with = "ChartTypeName")]
    pub kind: Spanned<String>,
    #[schemars(with = "String")]
    pub x: Spanned<String>,
    #[schemars(with = "OneOrMany")]
    pub y: Spanned<OneOrMany>,
    #[serde(default, alias = "color", alias = "colour")]
    #[schemars(with = "Option<String>")]
    pub series: Option<Spanned<String>>,
    #[serde(default)]
    pub title: Option<String>,
}

/// For the schema: the chart types.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum ChartTypeName {
    Bar,
    Line,
}

/// A column name or a list of them. Read by hand so that a value YAML did not read as text
/// (a bare `n` is false, `10` a number) gets a message that says what to write.
#[derive(Debug, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a column name or a list of them")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }

            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<OneOrMany, E> {
                let bare = if b { "y, yes, on or true" } else { "n, no, off or false" };
                Err(E::custom(format!(
                    "`y` must be a column name or a list of them; a bare {bare} is read as {b}, quote it"
                )))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<OneOrMany, E> {
                Err(E::custom(format!("`y` must be a column name or a list of them, not the number {n}; quote it")))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<OneOrMany, E> {
                Err(E::custom(format!("`y` must be a column name or a list of them, not the number {n}; quote it")))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<OneOrMany, E> {
                Err(E::custom(format!("`y` must be a column name or a list of them, not the number {n}; quote it")))
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<OneOrMany, E> {
                Err(E::custom("`y` must be a column name or a list of them; it is empty"))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(OneOrMany::Many(names))
            }
        }
        d.deserialize_any(Names)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChartKind {
    Bar,
    Line,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub kind: ChartKind,
    pub x: (String, Pos),
    pub y: (Vec<String>, Pos),
    pub series: Option<(String, Pos)>,
    pub title: Option<String>,
}

impl Chart {
    /// Every column the chart reads, with where it was named.
    pub fn columns(&self) -> Vec<(&str, Pos)> {
        let mut v = vec![(self.x.0.as_str(), self.x.1)];
        v.extend(self.y.0.iter().map(|y| (y.as_str(), self.y.1)));
        if let Some((s, p)) = &self.series {
            v.push((s.as_str(), *p));
        }
        v
    }
}

pub fn validate(raw: RawChart, _at: Pos, problems: &mut Problems) -> Option<Chart> {
    let kind = match raw.kind.value.as_str() {
        "bar" => ChartKind::Bar,
        "line" | "timeseries" | "time_series" => ChartKind::Line,
        other => {
            problems.push_hint(pos(&raw.kind), format!("unknown chart type `{other}`"), "use bar or line");
            return None;
        }
    };
    let y_at = pos(&raw.y);
    let y = match raw.y.value {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    if y.is_empty() {
        problems.push(y_at, "chart needs at least one `y` column");
        return None;
    }
    Some(Chart {
        kind,
        x: (raw.x.value.clone(), pos(&raw.x)),
        y: (y, y_at),
        series: raw.series.map(|s| (s.value.clone(), pos(&s))),
        title: raw.title,
    })
}

const CHART_ROWS: usize = 20_000;
const CHART_SERIES: usize = 12;

/// The data the chart widget draws: labels along x and one dataset per y column or series.
pub fn chart_data(step_id: &str, chart: &Chart, data: &StepData, tz: Tz) -> serde_json::Value {
    let idx = |name: &str| data.schema.index_of(name).ok();
    let (Some(xi), Some(yis)) = (idx(&chart.x.0), chart.y.0.iter().map(|y| idx(y)).collect::<Option<Vec<_>>>()) else {
        return serde_json::json!({"error": "chart columns are missing from the result"});
    };
    let si = chart.series.as_ref().and_then(|(s, _)| idx(s));
    let x_is_time = matches!(data.schema.field(xi).data_type(), DataType::Timestamp(..));
    let mut labels: Vec<String> = Vec::new();
    let mut label_pos: HashMap<String, usize> = HashMap::new();
    // (dataset name) -> values by label index
    let mut sets: Vec<(String, HashMap<usize, f64>, f64)> = Vec::new();
    let mut times: Vec<i64> = Vec::new();
    let mut seen = 0usize;
    'outer: for b in &data.batches {
        for r in 0..b.num_rows() {
            if seen >= CHART_ROWS {
                break 'outer;
            }
            seen += 1;
            let x = cell_text(b.column(xi), r, tz);
            let li = *label_pos.entry(x.clone()).or_insert_with(|| {
                labels.push(x);
                if x_is_time {
                    times.push(epoch_ms(b.column(xi), r));
                }
                labels.len() - 1
            });
            for (k, yi) in yis.iter().enumerate() {
                let y = as_f64(b.column(*yi), r).unwrap_or(0.0);
                let name = match si {
                    Some(si) => {
                        let s = cell_text(b.column(si), r, tz);
                        if yis.len() > 1 {
                            format!("{s} {}", chart.y.0[k])
                        } else {
                            s
                        }
                    }
                    None => chart.y.0[k].clone(),
                };
                let set = match sets.iter().position(|(n, _, _)| n == &name) {
                    Some(i) => i,
                    None => {
                        sets.push((name, HashMap::new(), 0.0));
                        sets.len() - 1
                    }
                };
                *sets[set].1.entry(li).or_insert(0.0) += y;
                sets[set].2 += y;
            }
        }
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    if x_is_time {
        order.sort_by_key(|i| times.get(*i).copied().unwrap_or(0));
    }
    // Keep the largest series; fold the rest into "other".
    sets.sort_by(|a, b| b.2.total_cmp(&a.2));
    if sets.len() > CHART_SERIES {
        let rest: Vec<_> = sets.split_off(CHART_SERIES - 1);
        let mut other = HashMap::new();
        for (_, vals, _) in rest {
            for (k, v) in vals {
                *other.entry(k).or_insert(0.0) += v;
            }
        }
        sets.push(("other".into(), other, 0.0));
    }
    let datasets: Vec<serde_json::Value> = sets
        .iter()
        .map(|(name, vals, _)| {
            let d: Vec<serde_json::Value> = order
                .iter()
                .map(|i| vals.get(i).map(|v| serde_json::json!(v)).unwrap_or(serde_json::json!(0)))
                .collect();
            serde_json::json!({"label": name, "data": d})
        })
        .collect();
    serde_json::json!({
        "type": match chart.kind { ChartKind::Bar => "bar", ChartKind::Line => "line" },
        "title": chart.title.clone(),
        "step": step_id,
        "time": x_is_time,
        "tz": tz.name(),
        "times": if x_is_time { order.iter().map(|i| times.get(*i).copied().unwrap_or(0)).collect::<Vec<i64>>() } else { Vec::new() },
        "x": chart.x.0,
        "y": chart.y.0.join(", "),
        "labels": order.iter().map(|i| labels[*i].clone()).collect::<Vec<_>>(),
        "datasets": datasets,
        "truncated": data.rows > CHART_ROWS,
    })
}

/// Milliseconds since the epoch of a timestamp cell (0 when it is not one).
fn epoch_ms(col: &ArrayRef, r: usize) -> i64 {
    if col.is_null(r) {
        return 0;
    }
    let Ok(c) = datafusion::arrow::compute::cast(&col.slice(r, 1), &DataType::Timestamp(TimeUnit::Millisecond, None))
    else {
        return 0;
    };
    c.as_primitive_opt::<datafusion::arrow::datatypes::TimestampMillisecondType>().map(|a| a.value(0)).unwrap_or(0)
}

fn as_f64(col: &ArrayRef, r: usize) -> Option<f64> {
    if col.is_null(r) {
        return None;
    }
    let c = datafusion::arrow::compute::cast(&col.slice(r, 1), &DataType::Float64).ok()?;
    c.as_primitive_opt::<datafusion::arrow::datatypes::Float64Type>().map(|a| a.value(0))
}
