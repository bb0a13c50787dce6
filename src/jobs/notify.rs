//! Webhook notifications in the Slack / Mattermost incoming-webhook shape (`{"text": …}`),
//! with retries and backoff. The URL is a [`Secret`]: errors are reported without it.

use std::time::Duration;

use crate::secrets::Secret;
use crate::store::schedules::Delivery;

/// Posts JSON to webhooks.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
    pub attempts: u32,
    /// The wait before the second attempt; doubled each time (a 429's Retry-After wins,
    /// up to 30 s).
    pub backoff: Duration,
}

impl Default for Webhook {
    fn default() -> Self {
        Webhook::new(4, Duration::from_secs(2))
    }
}

impl Webhook {
    pub fn new(attempts: u32, backoff: Duration) -> Webhook {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Webhook { client, attempts: attempts.max(1), backoff }
    }

    /// Posts `payload`; retries on network errors, 429 and 5xx; gives up at once on other
    /// answers (a wrong URL does not improve with retries).
    pub async fn post(&self, url: &Secret, payload: &serde_json::Value) -> Delivery {
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let sent = self.client.post(url.expose()).json(payload).send().await;
            let retry_after = match sent {
                Ok(r) if r.status().is_success() => {
                    return Delivery {
                        delivered: true,
                        attempts: attempt,
                        detail: format!("HTTP {}", r.status().as_u16()),
                    }
                }
                Ok(r) => {
                    let status = r.status();
                    last = format!("HTTP {}", status.as_u16());
                    if !(status.as_u16() == 429 || status.is_server_error()) {
                        return Delivery { delivered: false, attempts: attempt, detail: last };
                    }
                    r.headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)))
                }
                Err(e) => {
                    last = describe(&e.without_url());
                    None
                }
            };
            if attempt < self.attempts {
                tokio::time::sleep(retry_after.unwrap_or(wait)).await;
                wait = wait.saturating_mul(2).min(Duration::from_secs(30));
            }
        }
        Delivery {
            delivered: false,
            attempts: self.attempts,
            detail: format!("{last} (gave up after {} attempts)", self.attempts),
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        let text = e.to_string();
        crate::util::text::first_line(&text)
    }
}
