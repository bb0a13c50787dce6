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

use crate::model::service::Service;
use crate::secrets::Secrets;
use crate::store::Store;

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
pub(crate) enum Failure {
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
        let auth = self.auth_header.as_ref().zip(key);
        get_capped(client, url, auth, self.timeout, self.max_bytes).await
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

/// One GET: the status and the body, at most `max_bytes` of it, each wait at most `timeout`.
/// A 429, a 5xx or no answer may be retried; a body over the cap may not. Messages name
/// neither the address nor the key.
pub(crate) async fn get_capped(
    client: &reqwest::Client,
    url: &reqwest::Url,
    auth: Option<(&reqwest::header::HeaderName, &str)>,
    timeout: Duration,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), Failure> {
    let mut req = client.get(url.clone()).timeout(timeout);
    if let Some((h, k)) = auth {
        req = req.header(h.clone(), k);
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Err(Failure::Retry(format!("no answer within {} s", timeout.as_secs_f64()), None))
        }
        Err(e) if e.is_connect() => return Err(Failure::Retry("could not connect".into(), None)),
        Err(e) => return Err(Failure::Retry(crate::util::text::first_line(&e.without_url().to_string()), None)),
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
        match tokio::time::timeout(timeout, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                body.extend_from_slice(&chunk);
                if body.len() > max_bytes {
                    return Err(Failure::Final(format!("answer over {max_bytes} bytes, ignored")));
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(_)) => return Err(Failure::Retry("the answer broke off".into(), None)),
            Err(_) => return Err(Failure::Retry(format!("no answer within {} s", timeout.as_secs_f64()), None)),
        }
    }
    Ok((status, body))
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
    use crate::model::service::load;
    use crate::util::problem::Problems;

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
