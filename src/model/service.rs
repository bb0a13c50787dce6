//! Reputation services as configured: a connector file of `kind: http` (`connectors/*.yaml`)
//! read and validated into a [`Service`]. The HTTP client that asks it, with its pacing,
//! retries and cache, is in `reputation.rs`, a layer above.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::util::problem::{Pos, Problems};

/// A reputation service file (`connectors/<name>.yaml` with `kind: http`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Always `http`.
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// e.g. https://www.virustotal.com/api/v3
    pub base_url: String,
    /// Appended to the base URL; `{value}` is the address or domain, encoded as one path segment.
    pub path: String,
    /// The header carrying the API key (e.g. x-apikey).
    #[serde(default)]
    pub auth_header: Option<String>,
    /// The name of the secret holding the API key.
    #[serde(default)]
    pub secret: Option<String>,
    /// Requests allowed: `4/min`, `1/s`, `500/day`.
    #[serde(default = "default_rate")]
    pub rate_limit: String,
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Further attempts after a 429, a 5xx or no answer.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first wait before a retry, doubled each time.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Larger answers are refused.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long an answer is reused.
    #[serde(default = "default_ttl")]
    pub cache_ttl_h: f64,
    /// The most time one enrich step spends on this service.
    #[serde(default = "default_budget")]
    pub budget_s: f64,
    /// The most values one run asks about (the rest are marked, not looked up).
    #[serde(default = "default_max_lookups")]
    pub max_lookups: usize,
    /// Columns to add: name → JSON pointer into the answer (`/data/attributes/reputation`).
    pub fields: IndexMap<String, String>,
}

fn default_rate() -> String {
    "4/min".into()
}
fn default_timeout() -> f64 {
    10.0
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> u64 {
    1000
}
fn default_max_bytes() -> usize {
    1_000_000
}
fn default_ttl() -> f64 {
    24.0
}
fn default_budget() -> f64 {
    120.0
}
fn default_max_lookups() -> usize {
    500
}

/// A validated reputation service.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub description: Option<String>,
    pub base_url: reqwest::Url,
    pub path: Vec<String>,
    pub auth_header: Option<reqwest::header::HeaderName>,
    pub secret: Option<String>,
    /// The least time between two requests.
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub max_bytes: usize,
    pub ttl: chrono::Duration,
    pub budget: Duration,
    pub max_lookups: usize,
    pub fields: Vec<(String, String)>,
}

impl Service {
    /// The names of the fields an answer gives (each becomes a `<column>_<field>` column).
    pub fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(|(f, _)| f.clone()).collect()
    }
}

/// Whether a connector file is a service (`kind: http`) rather than files.
pub fn is_service(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        kind: Option<String>,
    }
    serde_saphyr::from_str::<Kind>(text).ok().and_then(|k| k.kind).is_some_and(|k| k == "http")
}

pub(crate) fn parse_rate(s: &str) -> Option<Duration> {
    let (n, per) = s.split_once('/')?;
    let n: f64 = n.trim().parse().ok().filter(|n: &f64| *n > 0.0 && n.is_finite())?;
    let secs = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        "day" => 86400.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs / n))
}

pub fn load(stem: &str, text: &str, problems: &mut Problems) -> Option<Service> {
    let raw: RawService = match crate::util::yaml::parse(&problems.path, text) {
        Ok(r) => r,
        Err(p) => {
            problems.list.push(p);
            return None;
        }
    };
    let at = Pos::new(1, 1);
    let name = raw.name.clone().unwrap_or_else(|| stem.to_string());
    let mut ok = true;
    let mut bad = |m: String, problems: &mut Problems| {
        problems.push(at, m);
        ok = false;
    };
    if !crate::util::text::is_identifier(&name) {
        bad(format!("connector name `{name}` is not usable (lower-case letters, digits and _)"), problems);
    }
    let base_url = match reqwest::Url::parse(&raw.base_url) {
        // Pages and health show the address; credentials belong in a secret.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            bad(
                "`base_url` carries a user name or password: keep credentials in a secret (`secret:` with \
                 `auth_header:`), never in the address"
                    .into(),
                problems,
            );
            None
        }
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
        _ => {
            bad(format!("`base_url` `{}` is not an http(s) address", raw.base_url), problems);
            None
        }
    };
    if !raw.path.contains("{value}") {
        bad("`path` must contain {value}, where the address or domain goes".into(), problems);
    }
    let interval = parse_rate(&raw.rate_limit);
    if interval.is_none() {
        bad(format!("`rate_limit` `{}` is not a rate such as 4/min or 1/s", raw.rate_limit), problems);
    }
    let auth_header = match &raw.auth_header {
        Some(h) => match reqwest::header::HeaderName::from_bytes(h.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                bad(format!("`auth_header` `{h}` is not a header name"), problems);
                None
            }
        },
        None => None,
    };
    if let Some(s) = &raw.secret {
        if !crate::secrets::valid_name(s) {
            bad(format!("`secret` is the name of a secret (e.g. VT_API_KEY), not `{s}`"), problems);
        }
    }
    if raw.secret.is_some() != raw.auth_header.is_some() {
        bad("`auth_header` and `secret` go together: the header carries the secret".into(), problems);
    }
    if raw.fields.is_empty() {
        bad("`fields` lists no column (name: /json/pointer)".into(), problems);
    }
    for (f, p) in &raw.fields {
        if !crate::util::text::is_identifier(f) || !(p.is_empty() || p.starts_with('/')) {
            bad(
                format!("field `{f}: {p}`: a lower-case name and a JSON pointer such as /data/attributes/reputation"),
                problems,
            );
        }
    }
    let in_range = |v: f64, max: f64| v > 0.0 && v <= max;
    if !in_range(raw.timeout_s, 300.0) || !in_range(raw.budget_s, 86_400.0) {
        bad("`timeout_s` (up to 300) and `budget_s` must be positive numbers of seconds".into(), problems);
    }
    if !(raw.cache_ttl_h >= 0.0 && raw.cache_ttl_h.is_finite()) {
        bad("`cache_ttl_h` must be a number of hours".into(), problems);
    }
    let (Some(base_url), Some(interval), true) = (base_url, interval, ok) else { return None };
    Some(Service {
        name,
        description: raw.description,
        base_url,
        path: raw.path.trim_matches('/').split('/').map(String::from).collect(),
        auth_header,
        secret: raw.secret,
        interval,
        timeout: Duration::from_secs_f64(raw.timeout_s),
        retries: raw.retries.min(10),
        backoff: Duration::from_millis(raw.backoff_ms),
        max_bytes: raw.max_bytes,
        ttl: chrono::Duration::seconds((raw.cache_ttl_h * 3600.0) as i64),
        budget: Duration::from_secs_f64(raw.budget_s),
        max_lookups: raw.max_lookups,
        fields: raw.fields.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_intervals() {
        assert_eq!(parse_rate("4/min"), Some(Duration::from_secs(15)));
        assert_eq!(parse_rate("2/s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_rate("0/min"), None);
        assert_eq!(parse_rate("fast"), None);
    }

    #[test]
    fn credentials_in_the_address_are_refused_without_being_repeated() {
        let mut p = Problems::new("t.yaml".to_string());
        let yaml = "kind: http\nbase_url: https://soc:hunter2@api.example/v3\npath: /ip/{value}\nfields: { rep: /r }\n";
        assert!(load("vt", yaml, &mut p).is_none());
        let text: Vec<String> = p.list.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(text[0].contains("carries a user name or password") && !text[0].contains("hunter2"), "{text:?}");
    }
}
