//! Reputation services over HTTP: a connector of `kind: http` (`connectors/*.yaml`) that an
//! `enrich` step asks about each distinct IP or domain.
//!
//! Everything a slow, failing or hostile service can do ends as a readable per-value status,
//! never as a failed run: a rate limit paces the requests (`4/min`), each has a timeout,
//! 429 and 5xx are retried with backoff (Retry-After honoured), answers are capped in size,
//! and the whole step has a time budget and a most-lookups-per-run limit. Answers (and "not
//! found") are cached in the state database for `cache_ttl_h` and reused across runs. The API
//! key comes from a named secret and is sent only in the configured header.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::problem::{Pos, Problems};
use crate::secrets::Secrets;
use crate::store::Store;

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

/// Whether a connector file is a service (`kind: http`) rather than files.
pub fn is_service(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        kind: Option<String>,
    }
    serde_saphyr::from_str::<Kind>(text).ok().and_then(|k| k.kind).is_some_and(|k| k == "http")
}

fn parse_rate(s: &str) -> Option<Duration> {
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
    let raw: RawService = match crate::yaml::parse(&problems.path, text) {
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
    if !crate::playbook::is_identifier(&name) {
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
        if !crate::playbook::is_identifier(f) || !(p.is_empty() || p.starts_with('/')) {
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

/// What one value looked up to: a status analysts read, and the fields' values.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub status: String,
    pub fields: Vec<Option<String>>,
}

impl Lookup {
    fn status(s: impl Into<String>, n: usize) -> Lookup {
        Lookup { status: s.into(), fields: vec![None; n] }
    }
}

/// Why one request did not give an answer.
enum Failure {
    Retry(String, Option<Duration>),
    Final(String),
}

impl Service {
    fn url(&self, value: &str) -> Option<reqwest::Url> {
        let mut url = self.base_url.clone();
        {
            let mut segs = url.path_segments_mut().ok()?;
            segs.pop_if_empty();
            for p in &self.path {
                segs.push(&p.replace("{value}", value));
            }
        }
        Some(url)
    }

    fn extract(&self, body: &serde_json::Value) -> Vec<Option<String>> {
        self.fields
            .iter()
            .map(|(_, pointer)| {
                body.pointer(pointer).and_then(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
            })
            .collect()
    }

    async fn fetch_once(
        &self,
        client: &reqwest::Client,
        url: &reqwest::Url,
        key: Option<&str>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let mut req = client.get(url.clone()).timeout(self.timeout);
        if let (Some(h), Some(k)) = (&self.auth_header, key) {
            req = req.header(h.clone(), k);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(Failure::Retry(format!("no answer within {} s", self.timeout.as_secs_f64()), None))
            }
            Err(e) if e.is_connect() => return Err(Failure::Retry("could not connect".into(), None)),
            Err(e) => return Err(Failure::Retry(crate::connector::first_line(&e.without_url().to_string()), None)),
        };
        let status = resp.status().as_u16();
        if status == 429 || resp.status().is_server_error() {
            let after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let what = if status == 429 {
                "rate limited by the service (HTTP 429)".to_string()
            } else {
                format!("service error (HTTP {status})")
            };
            return Err(Failure::Retry(what, after));
        }
        let mut body = Vec::new();
        loop {
            match tokio::time::timeout(self.timeout, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > self.max_bytes {
                        return Err(Failure::Final(format!("answer over {} bytes, ignored", self.max_bytes)));
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(_)) => return Err(Failure::Retry("the answer broke off".into(), None)),
                Err(_) => {
                    return Err(Failure::Retry(format!("no answer within {} s", self.timeout.as_secs_f64()), None))
                }
            }
        }
        Ok((status, body))
    }

    /// Whether the service answers at all: one GET of its base address, without the key
    /// (any HTTP status counts as reachable). The message names neither key nor values.
    pub async fn reachable(&self) -> Result<String, String> {
        let limit = self.timeout.min(Duration::from_secs(5));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(limit)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {}", e.without_url()))?;
        let started = Instant::now();
        match client.get(self.base_url.clone()).send().await {
            Ok(r) => Ok(format!("reachable: HTTP {} in {} ms", r.status().as_u16(), started.elapsed().as_millis())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {} s", limit.as_secs_f32())),
            Err(e) if e.is_connect() => Err(format!("cannot connect: {}", root_cause(&e))),
            Err(e) => Err(root_cause(&e)),
        }
    }

    /// Looks every value up (cache first), within the rate limit, budget and lookup limit.
    pub async fn lookup_all(&self, values: &[String], secrets: &Secrets, store: &Store) -> HashMap<String, Lookup> {
        let n = self.fields.len();
        let mut out: HashMap<String, Lookup> = HashMap::new();
        // A missing key does not stop cached answers from being used.
        let key = self.secret.as_ref().map(|s| secrets.get(s)).transpose();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.timeout)
            .build()
            .unwrap_or_default();
        let started = Instant::now();
        let mut last_request: Option<Instant> = None;
        let mut asked = 0usize;
        for value in values {
            if out.contains_key(value) || value.trim().is_empty() {
                continue;
            }
            if let Ok(Some((status, body))) = store.cached_lookup(&self.name, value, self.ttl) {
                let fields = serde_json::from_str::<serde_json::Value>(&body)
                    .map(|b| self.extract(&b))
                    .unwrap_or_else(|_| vec![None; n]);
                out.insert(value.clone(), Lookup { status: format!("{status} (cached)"), fields });
                continue;
            }
            let key = match &key {
                Ok(k) => k,
                Err(e) => {
                    out.insert(value.clone(), Lookup::status(format!("not looked up: {e}"), n));
                    continue;
                }
            };
            if asked >= self.max_lookups {
                out.insert(
                    value.clone(),
                    Lookup::status(format!("not looked up: more than {} values in one run", self.max_lookups), n),
                );
                continue;
            }
            let Some(url) = self.url(value) else {
                out.insert(value.clone(), Lookup::status("not looked up: cannot form the address", n));
                continue;
            };
            asked += 1;
            let mut wait = self.backoff;
            let mut result = Lookup::status("not looked up", n);
            for attempt in 0..=self.retries {
                // Pace every request, retries included, by the rate limit.
                if let Some(t) = last_request {
                    let next = t + self.interval;
                    if next > Instant::now() {
                        tokio::time::sleep_until(next.into()).await;
                    }
                }
                if started.elapsed() >= self.budget {
                    result = Lookup::status(
                        format!("not looked up: the step's budget of {} s ran out", self.budget.as_secs()),
                        n,
                    );
                    break;
                }
                last_request = Some(Instant::now());
                match self.fetch_once(&client, &url, key.as_ref().map(|k| k.expose())).await {
                    Ok((200, body)) => {
                        result = match serde_json::from_slice::<serde_json::Value>(&body) {
                            Ok(json) => {
                                let _ = store.cache_lookup(&self.name, value, "ok", &json.to_string());
                                Lookup { status: "ok".into(), fields: self.extract(&json) }
                            }
                            Err(_) => Lookup::status("unreadable answer (not JSON)", n),
                        };
                        break;
                    }
                    Ok((404, _)) => {
                        let _ = store.cache_lookup(&self.name, value, "not found", "{}");
                        result = Lookup::status("not found", n);
                        break;
                    }
                    Ok((code, _)) => {
                        result = Lookup::status(format!("refused (HTTP {code})"), n);
                        break;
                    }
                    Err(Failure::Final(m)) => {
                        result = Lookup::status(m, n);
                        break;
                    }
                    Err(Failure::Retry(m, after)) => {
                        result =
                            Lookup::status(if attempt > 0 { format!("{m}, {} attempts", attempt + 1) } else { m }, n);
                        if attempt < self.retries {
                            let pause = after.unwrap_or(wait).min(Duration::from_secs(60));
                            if started.elapsed() + pause >= self.budget {
                                break;
                            }
                            tokio::time::sleep(pause).await;
                            wait = wait.saturating_mul(2);
                        }
                    }
                }
            }
            out.insert(value.clone(), result);
        }
        out
    }
}

/// The innermost cause of a request error ("Connection refused (os error 111)"), without the
/// address asked.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
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

    #[test]
    fn values_are_one_encoded_path_segment() {
        let mut p = Problems::new("t.yaml".to_string());
        let s = load("vt", "kind: http\nbase_url: https://api.example/v3/\npath: /ip_addresses/{value}\nfields: { rep: /data/reputation }\n", &mut p)
            .unwrap_or_else(|| panic!("{:?}", p.list));
        assert_eq!(
            s.url("10.0.0.1").map(|u| u.to_string()).as_deref(),
            Some("https://api.example/v3/ip_addresses/10.0.0.1")
        );
        assert_eq!(
            s.url("../../admin?x=1").map(|u| u.to_string()).as_deref(),
            Some("https://api.example/v3/ip_addresses/..%2F..%2Fadmin%3Fx=1")
        );
    }
}
