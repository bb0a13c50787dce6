//! Parameter types of a playbook's form: parsing what an analyst typed (or a URL carried)
//! into typed values, and binding those values into SQL as typed scalars.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use datafusion::common::ScalarValue;
use regex::Regex;
use serde::Serialize;

use crate::sql::functions::IpList;
use crate::util::timeutil::{self, Window};

/// What an analyst may enter.
#[derive(Debug, Clone)]
pub enum ParamKind {
    Text {
        pattern: Option<Regex>,
    },
    Integer,
    Number,
    Boolean,
    /// `options_at`: where `options_query` is written, for its problems.
    Select {
        multiple: bool,
        options: Vec<Choice>,
        options_query: Option<String>,
        options_at: crate::util::problem::Pos,
    },
    IpList,
    Datetime,
    TimeRange,
}

impl ParamKind {
    /// The widget template (`widgets/input/<name>.html`) that draws it.
    pub fn widget(&self) -> &'static str {
        match self {
            ParamKind::Text { .. } => "text",
            ParamKind::Integer | ParamKind::Number => "number",
            ParamKind::Boolean => "boolean",
            ParamKind::Select { .. } => "select",
            ParamKind::IpList => "ip_list",
            ParamKind::Datetime => "datetime",
            ParamKind::TimeRange => "time_range",
        }
    }

    pub const NAMES: &'static [&'static str] =
        &["text", "integer", "number", "boolean", "select", "ip_list", "datetime", "time_range"];
}

/// One option of a `select`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// A declared parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub label: String,
    pub help: Option<String>,
    pub kind: ParamKind,
    /// The default, in the same text form a form field or URL carries.
    pub default: Option<String>,
    pub required: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// What the parameter takes for pivots (`ip`, `domain`, `url`): a table cell of that kind
    /// offers this playbook, prefilled. An `ip_list` takes IPs without saying so.
    pub entity: Option<String>,
}

/// Kinds of values a table cell can pivot on.
pub const ENTITIES: [&str; 3] = ["ip", "domain", "url"];

/// The kind of entity a table cell holds, if any: an IP address, a URL or a domain name.
pub fn entity_of(text: &str) -> Option<&'static str> {
    let t = text.trim();
    if t.len() < 4 || t.len() > 2000 || t.contains(char::is_whitespace) {
        return None;
    }
    if t.parse::<std::net::IpAddr>().is_ok() {
        return Some("ip");
    }
    if t.starts_with("http://") || t.starts_with("https://") {
        return Some("url");
    }
    let host_like = t.contains('.')
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && t.rsplit('.').next().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    (host_like && psl::domain_str(&t.to_ascii_lowercase()).is_some()).then_some("domain")
}

impl Param {
    /// The entity kind this parameter takes for pivots.
    pub fn pivot_kind(&self) -> Option<&str> {
        match (&self.entity, &self.kind) {
            (Some(e), _) => Some(e.as_str()),
            (None, ParamKind::IpList) => Some("ip"),
            _ => None,
        }
    }
}

/// A parsed, typed parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Num(f64),
    Bool(bool),
    Choices(Vec<String>),
    Ips(IpList),
    Time(DateTime<Utc>),
    Range { spec: String, window: Window },
}

/// What parsing needs besides the text: the zone times are entered in and the current time.
#[derive(Debug, Clone, Copy)]
pub struct ParseCtx {
    pub tz: Tz,
    pub now: DateTime<Utc>,
}

impl Param {
    /// Parses `raw` (None or blank = not given; the default applies). The error is the
    /// message shown next to the field.
    pub fn parse(&self, raw: Option<&str>, cx: &ParseCtx) -> Result<Value, String> {
        let given = raw.map(str::trim).filter(|s| !s.is_empty());
        let text = match (given, &self.default) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) if !d.trim().is_empty() => d.clone(),
            (None, _) => {
                if matches!(self.kind, ParamKind::Boolean) {
                    return Ok(Value::Bool(false));
                }
                return if self.required { Err("required".into()) } else { Ok(Value::Null) };
            }
        };
        self.parse_text(&text, cx)
    }

    fn parse_text(&self, text: &str, cx: &ParseCtx) -> Result<Value, String> {
        if text.len() > 100_000 {
            return Err("this value is too long (over 100,000 characters)".into());
        }
        match &self.kind {
            ParamKind::Text { pattern } => {
                if let Some(re) = pattern {
                    if !re.is_match(text) {
                        return Err(format!("does not match the expected form `{}`", re.as_str()));
                    }
                }
                Ok(Value::Text(text.to_string()))
            }
            ParamKind::Integer => {
                let n: i64 = text
                    .replace(['_', ' '], "")
                    .parse()
                    .map_err(|_| format!("`{}` is not a whole number", short(text)))?;
                self.check_bounds(n as f64)?;
                Ok(Value::Int(n))
            }
            ParamKind::Number => {
                let n: f64 = text
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| format!("`{}` is not a number", short(text)))?;
                self.check_bounds(n)?;
                Ok(Value::Num(n))
            }
            ParamKind::Boolean => match text.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "off" | "no" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("`{}` is not yes or no", short(text))),
            },
            ParamKind::Select { multiple, options, options_query, .. } => {
                let picked: Vec<String> =
                    text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                if picked.is_empty() {
                    return if self.required { Err("choose at least one option".into()) } else { Ok(Value::Null) };
                }
                if !multiple && picked.len() > 1 {
                    return Err("choose one option".into());
                }
                // Options taken from a query are checked against that query's rows by the page.
                if options_query.is_none() {
                    if let Some(bad) = picked.iter().find(|p| !options.iter().any(|o| &o.value == *p)) {
                        let known: Vec<&str> = options.iter().map(|o| o.value.as_str()).collect();
                        return Err(format!("`{}` is not one of: {}", short(bad), known.join(", ")));
                    }
                }
                Ok(Value::Choices(picked))
            }
            ParamKind::IpList => {
                let list = IpList::parse(text)?;
                if list.0.is_empty() {
                    return if self.required { Err("required".into()) } else { Ok(Value::Null) };
                }
                Ok(Value::Ips(list))
            }
            ParamKind::Datetime => Ok(Value::Time(timeutil::parse_datetime(text, cx.tz)?)),
            ParamKind::TimeRange => {
                let window = timeutil::parse_range(text, cx.tz, cx.now)?;
                Ok(Value::Range { spec: text.to_string(), window })
            }
        }
    }

    fn check_bounds(&self, n: f64) -> Result<(), String> {
        if let Some(min) = self.min {
            if n < min {
                return Err(format!("must be at least {}", fmt_num(min)));
            }
        }
        if let Some(max) = self.max {
            if n > max {
                return Err(format!("must be at most {}", fmt_num(max)));
            }
        }
        Ok(())
    }

    /// The typed SQL values for this parameter: `$name`, or `$name.start` and `$name.end`
    /// (bound as `name_start`, `name_end`) for a time range.
    pub fn bind(&self, v: &Value) -> Vec<(String, ScalarValue)> {
        let utc: Option<std::sync::Arc<str>> = Some("UTC".into());
        let ts =
            |t: Option<DateTime<Utc>>| ScalarValue::TimestampMicrosecond(t.map(|t| t.timestamp_micros()), utc.clone());
        match (&self.kind, v) {
            (ParamKind::TimeRange, Value::Range { window, .. }) => vec![
                (format!("{}_start", self.name), ts(Some(window.start))),
                (format!("{}_end", self.name), ts(Some(window.end))),
            ],
            (ParamKind::TimeRange, _) => {
                vec![(format!("{}_start", self.name), ts(None)), (format!("{}_end", self.name), ts(None))]
            }
            (_, v) => vec![(self.name.clone(), self.scalar(v, ts))],
        }
    }

    fn scalar(&self, v: &Value, ts: impl Fn(Option<DateTime<Utc>>) -> ScalarValue) -> ScalarValue {
        match (v, &self.kind) {
            (Value::Text(s), _) => ScalarValue::Utf8(Some(s.clone())),
            (Value::Int(n), _) => ScalarValue::Int64(Some(*n)),
            (Value::Num(n), _) => ScalarValue::Float64(Some(*n)),
            (Value::Bool(b), _) => ScalarValue::Boolean(Some(*b)),
            (Value::Choices(c), _) => ScalarValue::Utf8(Some(c.join(","))),
            (Value::Ips(l), _) => ScalarValue::Utf8(Some(l.canonical())),
            (Value::Time(t), _) => ts(Some(*t)),
            (Value::Range { .. }, _) => ScalarValue::Utf8(None),
            (Value::Null, ParamKind::Integer) => ScalarValue::Int64(None),
            (Value::Null, ParamKind::Number) => ScalarValue::Float64(None),
            (Value::Null, ParamKind::Boolean) => ScalarValue::Boolean(None),
            (Value::Null, ParamKind::Datetime) => ts(None),
            (Value::Null, _) => ScalarValue::Utf8(None),
        }
    }

    /// A value of the right type for planning a query before anyone filled in the form.
    pub fn sample(&self, cx: &ParseCtx) -> Value {
        match &self.kind {
            ParamKind::Text { .. } => Value::Text(String::new()),
            ParamKind::Integer => Value::Int(1),
            ParamKind::Number => Value::Num(1.0),
            ParamKind::Boolean => Value::Bool(false),
            ParamKind::Select { .. } => Value::Choices(vec![]),
            ParamKind::IpList => Value::Ips(IpList::default()),
            ParamKind::Datetime => Value::Time(cx.now),
            ParamKind::TimeRange => Value::Range {
                spec: "last 1h".into(),
                window: Window { start: cx.now - chrono::Duration::hours(1), end: cx.now },
            },
        }
    }
}

impl Value {
    /// The text form of the value, as a form field or a URL carries it.
    pub fn to_text(&self, tz: Tz) -> String {
        match self {
            Value::Null => String::new(),
            Value::Text(s) => s.clone(),
            Value::Int(n) => n.to_string(),
            Value::Num(n) => fmt_num(*n),
            Value::Bool(b) => b.to_string(),
            Value::Choices(c) => c.join(","),
            Value::Ips(l) => l.canonical(),
            Value::Time(t) => timeutil::format_input(*t, tz),
            Value::Range { spec, .. } => spec.clone(),
        }
    }

    /// The value as text that parses back to exactly this value at any later time: times
    /// to the microsecond, relative windows as their absolute bounds.
    pub fn to_exact_text(&self, tz: Tz) -> String {
        let exact = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        match self {
            Value::Time(t) => exact(t),
            Value::Range { window, .. } => format!("{} .. {}", exact(&window.start), exact(&window.end)),
            other => other.to_text(tz),
        }
    }
}

/// Values of a playbook's parameters, by name, in declaration order.
pub type Values = Vec<(String, Value)>;

/// A field's error: the parameter's name and the message shown next to it.
pub type FieldError = (String, String);

/// The one way in for parameters. What a form, a URL, the API, a schedule, the CLI, a
/// self-test or a stored run gives (`given(name)`: the text entered for `name`, None when
/// absent) becomes typed values, one per declared parameter, or every field's error.
pub fn parse_all<'a>(
    params: &[Param],
    given: impl Fn(&str) -> Option<&'a str>,
    cx: &ParseCtx,
) -> Result<Values, Vec<FieldError>> {
    let mut values = Vec::with_capacity(params.len());
    let mut errors = Vec::new();
    for p in params {
        match p.parse(given(&p.name), cx) {
            Ok(v) => values.push((p.name.clone(), v)),
            Err(e) => errors.push((p.name.clone(), e)),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// The one way out to SQL: every declared parameter bound as a typed scalar (`$name`, or
/// `$name.start` and `$name.end` of a time range); a parameter without a value binds NULL.
pub fn bind_all(params: &[Param], values: &[(String, Value)]) -> Vec<(String, ScalarValue)> {
    let mut bound = Vec::new();
    for p in params {
        let v = values.iter().find(|(k, _)| k == &p.name).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
        bound.extend(p.bind(&v));
    }
    bound
}

/// `values` with time range `over` narrowed to `window` (one chunk of a chunked step).
pub fn with_window(values: &[(String, Value)], over: &str, window: Window) -> Values {
    values
        .iter()
        .map(|(k, v)| match v {
            Value::Range { spec, .. } if k == over => (k.clone(), Value::Range { spec: spec.clone(), window }),
            other => (k.clone(), other.clone()),
        })
        .collect()
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cx() -> ParseCtx {
        ParseCtx { tz: Tz::UTC, now: Utc.with_ymd_and_hms(2026, 2, 5, 15, 0, 0).unwrap() }
    }

    fn param(kind: ParamKind) -> Param {
        Param {
            name: "p".into(),
            label: "P".into(),
            help: None,
            kind,
            default: None,
            required: false,
            min: None,
            max: None,
            entity: None,
        }
    }

    #[test]
    fn cells_know_their_entity() {
        assert_eq!(entity_of("10.0.3.88"), Some("ip"));
        assert_eq!(entity_of("2001:db8::1"), Some("ip"));
        assert_eq!(entity_of("t1.cdn-sync-update.net"), Some("domain"));
        assert_eq!(entity_of("https://files.transfer-now.io/upload"), Some("url"));
        for not in ["8080", "2881", "60.0", "Workstations - Sales", "2026-11-22 18:00:00", "1.5e3", "a.b"] {
            assert_eq!(entity_of(not), None, "{not}");
        }
    }

    #[test]
    fn integers_with_bounds() {
        let mut p = param(ParamKind::Integer);
        p.min = Some(1.0);
        p.max = Some(1_000_000.0);
        assert_eq!(p.parse(Some("40 000"), &cx()), Ok(Value::Int(40000)));
        assert_eq!(p.parse(Some("0"), &cx()), Err("must be at least 1".into()));
        assert_eq!(p.parse(Some("2000000"), &cx()), Err("must be at most 1000000".into()));
        assert_eq!(p.parse(Some("ten"), &cx()), Err("`ten` is not a whole number".into()));
        assert_eq!(p.parse(None, &cx()), Ok(Value::Null));
        p.required = true;
        assert_eq!(p.parse(Some("  "), &cx()), Err("required".into()));
        p.default = Some("40000".into());
        assert_eq!(p.parse(None, &cx()), Ok(Value::Int(40000)));
    }

    #[test]
    fn numbers_booleans_text() {
        assert_eq!(param(ParamKind::Number).parse(Some("2.5"), &cx()), Ok(Value::Num(2.5)));
        assert!(param(ParamKind::Number).parse(Some("NaN"), &cx()).is_err());
        assert_eq!(param(ParamKind::Boolean).parse(Some("on"), &cx()), Ok(Value::Bool(true)));
        assert_eq!(param(ParamKind::Boolean).parse(None, &cx()), Ok(Value::Bool(false)));
        assert!(param(ParamKind::Boolean).parse(Some("maybe"), &cx()).is_err());
        let t = param(ParamKind::Text { pattern: Regex::new("^[a-z]+$").ok() });
        assert_eq!(t.parse(Some("abc"), &cx()), Ok(Value::Text("abc".into())));
        assert!(t.parse(Some("ABC"), &cx()).unwrap_err().contains("expected form"));
        let free = param(ParamKind::Text { pattern: None });
        let evil = "' OR 1=1 --<script>";
        assert_eq!(free.parse(Some(evil), &cx()), Ok(Value::Text(evil.into())));
        assert_eq!(free.bind(&Value::Text(evil.into()))[0].1, ScalarValue::Utf8(Some(evil.into())));
    }

    #[test]
    fn selects_single_and_multiple() {
        let options = vec![
            Choice { value: "basic".into(), label: "Basic".into() },
            Choice { value: "extended".into(), label: "Extended".into() },
        ];
        let single = param(ParamKind::Select {
            multiple: false,
            options: options.clone(),
            options_query: None,
            options_at: Default::default(),
        });
        assert_eq!(single.parse(Some("basic"), &cx()), Ok(Value::Choices(vec!["basic".into()])));
        assert_eq!(single.parse(Some("basic,extended"), &cx()), Err("choose one option".into()));
        assert_eq!(single.parse(Some("full"), &cx()), Err("`full` is not one of: basic, extended".into()));
        let multi =
            param(ParamKind::Select { multiple: true, options, options_query: None, options_at: Default::default() });
        assert_eq!(
            multi.bind(&multi.parse(Some("basic,extended"), &cx()).unwrap())[0].1,
            ScalarValue::Utf8(Some("basic,extended".into()))
        );
    }

    #[test]
    fn ip_lists() {
        let p = param(ParamKind::IpList);
        assert!(matches!(p.parse(Some("10.0.0.1, 10.0.1.0/24"), &cx()), Ok(Value::Ips(_))));
        assert_eq!(p.parse(Some("10.0.0.300"), &cx()), Err("not an IP address or CIDR: `10.0.0.300`".into()));
        assert_eq!(p.parse(Some(" , "), &cx()), Ok(Value::Null));
    }

    #[test]
    fn times_and_ranges_bind_as_utc_timestamps() {
        let p = Param { name: "window".into(), ..param(ParamKind::TimeRange) };
        let v = p.parse(Some("last 1h"), &cx()).unwrap();
        let b = p.bind(&v);
        assert_eq!(b[0].0, "window_start");
        assert_eq!(b[1].1, ScalarValue::TimestampMicrosecond(Some(cx().now.timestamp_micros()), Some("UTC".into())));
        assert!(p.parse(Some("2026-02-05 16:00 .. 2026-02-05 15:00"), &cx()).unwrap_err().contains("before its end"));
        let d = param(ParamKind::Datetime);
        assert_eq!(d.parse(Some("2026-02-05T14:30"), &cx()).unwrap().to_text(Tz::UTC), "2026-02-05T14:30");
        assert!(d.parse(Some("tomorrow"), &cx()).is_err());
    }
}
