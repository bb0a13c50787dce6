//! Reputation answers cached across runs, each kept for its service's time-to-live.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};

use super::{now, stamp, Store};

impl Store {
    /// A reputation answer fetched less than `ttl` ago: (status, JSON body).
    pub fn cached_lookup(&self, service: &str, value: &str, ttl: chrono::Duration) -> Result<Option<(String, String)>> {
        let since = stamp(chrono::Utc::now() - ttl);
        self.with(|c| {
            c.query_row(
                "SELECT status, body FROM lookup_cache WHERE service = ?1 AND value = ?2 AND fetched_at >= ?3",
                params![service, value, since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    /// Forgets reputation answers that can no longer be used: older than their service's
    /// `ttl`, or of a service no longer configured. Returns how many were deleted.
    pub fn prune_lookup_cache(&self, live: &[(String, chrono::Duration)]) -> Result<usize> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut n = 0;
            for (service, ttl) in live {
                let since = stamp(chrono::Utc::now() - *ttl);
                n += tx.execute(
                    "DELETE FROM lookup_cache WHERE service = ?1 AND fetched_at < ?2",
                    params![service, since],
                )?;
            }
            let names: Vec<&str> = live.iter().map(|(s, _)| s.as_str()).collect();
            let known = serde_json::to_string(&names).unwrap_or_else(|_| "[]".into());
            n += tx.execute(
                "DELETE FROM lookup_cache WHERE service NOT IN (SELECT value FROM json_each(?1))",
                params![known],
            )?;
            tx.commit()?;
            Ok(n)
        })
    }

    pub fn cache_lookup(&self, service: &str, value: &str, status: &str, body: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO lookup_cache (service, value, status, body, fetched_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![service, value, status, body, now()],
            )
            .map(|_| ())
        })
    }
}
