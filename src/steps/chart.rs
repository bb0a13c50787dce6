//! The chart a query step draws: bar or line (time series), with x, one or more y columns,
//! and an optional series (colour) column. Drawn in the browser by the vendored Chart.js.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::problem::{Pos, Problems};
use crate::yaml::pos;

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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
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
