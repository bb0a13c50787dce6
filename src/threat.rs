//! Saved threats (Spot's *Save threat*) and their storyboards.
//!
//! A threat is an entity (IP, domain or URI) with a title, description and severity, saved
//! from a run. Saving copies the run's step tables into `data/threats/<id>/` and computes the
//! storyboard's data there too (the entity's peers by direction with network context and
//! location, and its connections per hour), so deleting runs or data later never empties a
//! threat. Exports: CSV, JSON and a STIX 2.1 bundle.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{DateTime, Duration, Utc};
use datafusion::common::ScalarValue;
use serde::Serialize;

use crate::engine::Engine;
use crate::results::{cell_text, StepData};
use crate::store::threats::ThreatRecord;
use crate::store::Store;

pub const SEVERITIES: [&str; 3] = ["high", "medium", "low"];
pub const KINDS: [&str; 3] = ["ip", "domain", "uri"];

/// What an analyst enters to save a threat.
#[derive(Debug, Clone)]
pub struct NewThreat {
    pub run_id: String,
    pub title: String,
    pub description: String,
    pub severity: String,
    pub kind: String,
    pub entity: String,
    pub who: String,
}

impl NewThreat {
    /// Problems with the form, by field.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.title.trim().is_empty() || self.title.chars().count() > 200 {
            out.push(("title", "give the threat a title (up to 200 characters)".to_string()));
        }
        if self.description.chars().count() > 20_000 {
            out.push(("description", "the description is over 20,000 characters".to_string()));
        }
        if !SEVERITIES.contains(&self.severity.as_str()) {
            out.push(("severity", "choose high, medium or low".to_string()));
        }
        let e = self.entity.trim();
        match self.kind.as_str() {
            "ip" if e.parse::<std::net::IpAddr>().is_err() => {
                out.push(("entity", format!("`{}` is not an IP address", short(e))))
            }
            "domain"
                if crate::lookup::host_of(e).is_none_or(|h| h.contains(char::is_whitespace)) || e.contains('/') =>
            {
                out.push(("entity", format!("`{}` is not a domain name", short(e))))
            }
            "uri" if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() > 4000 => {
                out.push(("entity", "a URI starts with http:// or https://".to_string()))
            }
            "ip" | "domain" | "uri" => {}
            _ => out.push(("kind", "choose IP, domain or URI".to_string())),
        }
        out
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// The time window of a run: its first time range parameter as resolved, else the 7 days
/// before it started.
fn run_window(rec: &crate::store::runs::RunRecord) -> (DateTime<Utc>, DateTime<Utc>) {
    let resolved: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(rec.resolved.as_deref().unwrap_or("{}")).unwrap_or_default();
    for v in resolved.values() {
        if let Some((a, b)) = v.as_str().and_then(|s| s.split_once(" .. ")) {
            if let (Ok(a), Ok(b)) = (DateTime::parse_from_rfc3339(a.trim()), DateTime::parse_from_rfc3339(b.trim())) {
                return (a.with_timezone(&Utc), b.with_timezone(&Utc));
            }
        }
    }
    let end =
        DateTime::parse_from_rfc3339(&rec.started_at).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|_| Utc::now());
    (end - Duration::days(7), end)
}

/// Saves a threat: its record, a snapshot of the run's tables and the storyboard's data.
pub async fn save(engine: &Arc<Engine>, t: &NewThreat) -> Result<i64> {
    let run = engine.store.run(&t.run_id)?.ok_or_else(|| anyhow!("no such run"))?;
    let (start, end) = run_window(&run);
    let entity = t.entity.trim().to_string();
    let id = engine.store.add_threat(&ThreatRecord {
        id: 0,
        title: t.title.trim().to_string(),
        description: t.description.trim().to_string(),
        severity: t.severity.clone(),
        kind: t.kind.clone(),
        entity: entity.clone(),
        playbook: run.playbook.clone(),
        run_id: t.run_id.clone(),
        params: run.params.clone(),
        window_start: start.to_rfc3339(),
        window_end: end.to_rfc3339(),
        created_by: t.who.clone(),
        created_at: String::new(),
    })?;
    let dir = engine.catalog().paths.data.join("threats").join(id.to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Evidence: the run's step tables, copied; not those the playbook hides or keeps from
    // export (the storyboard shows their rows).
    for s in engine.store.steps(&t.run_id)? {
        let Some(file) = s.file.clone() else { continue };
        if !crate::util::text::is_identifier(&s.step_id) || file != format!("{}.parquet", s.step_id) {
            continue;
        }
        let outcome = s.outcome_as::<serde_json::Value>();
        let offered = |key: &str| outcome.as_ref().and_then(|o| o[key].as_bool()).unwrap_or(true);
        if !offered("show_table") || !offered("export") {
            continue;
        }
        let from = engine.catalog().paths.run_dir(&t.run_id).join(&file);
        if std::fs::copy(&from, dir.join(format!("evidence_{}", file))).is_ok() {
            let title = outcome.as_ref().and_then(|o| o["title"].as_str().map(String::from));
            engine.store.add_evidence(id, &s.step_id, title.as_deref().unwrap_or(&s.step_id), s.rows.unwrap_or(0))?;
        }
    }
    // The storyboard's data, computed now and kept.
    match storyboard_tables(engine, &t.kind, &entity, start, end).await {
        Ok((peers, timeline)) => {
            crate::results::table::write_parquet(&dir.join("story_peers.parquet"), &peers)?;
            crate::results::table::write_parquet(&dir.join("story_timeline.parquet"), &timeline)?;
        }
        Err(e) => tracing::warn!(threat = id, error = %format!("{e:#}"), "no storyboard data"),
    }
    tracing::info!(threat = id, entity = %entity, who = %t.who, "threat saved");
    Ok(id)
}

/// Peers of the entity (peer, direction, connections, bytes, first/last seen, context name,
/// zone, place) and its connections per hour and direction, from flows (IP) or DNS / proxy
/// logs (domain, URI).
async fn storyboard_tables(
    engine: &Arc<Engine>,
    kind: &str,
    entity: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(StepData, StepData)> {
    let catalog = engine.catalog();
    let ctx = catalog.session();
    let has = |n: &str| catalog.connectors.iter().any(|c| c.name == n);
    let (peers_sql, timeline_sql) = match kind {
        "ip" if has("flows") => (
            "WITH f AS (
               SELECT CASE WHEN sip = $e THEN dip ELSE sip END AS peer,
                      CASE WHEN sip = $e THEN 'out' ELSE 'in' END AS dir,
                      ibyt + obyt AS bytes, treceived
               FROM flows WHERE (sip = $e OR dip = $e) AND treceived >= $s AND treceived < $t)
             SELECT peer,
                    CASE WHEN min(dir) <> max(dir) THEN 'two-way' WHEN min(dir) = 'out' THEN 'outbound' ELSE 'inbound' END AS direction,
                    count(*) AS connections, sum(bytes) AS bytes, min(treceived) AS first_seen, max(treceived) AS last_seen
             FROM f GROUP BY peer ORDER BY connections DESC LIMIT 2000",
            "SELECT date_trunc('hour', treceived) AS hour,
                    CASE WHEN sip = $e THEN 'outbound' ELSE 'inbound' END AS direction, count(*) AS connections
             FROM flows WHERE (sip = $e OR dip = $e) AND treceived >= $s AND treceived < $t
             GROUP BY 1, 2 ORDER BY 1",
        ),
        "domain" if has("dns") => (
            "SELECT ip_dst AS peer, 'outbound' AS direction, count(*) AS connections, sum(frame_len) AS bytes,
                    min(frame_time) AS first_seen, max(frame_time) AS last_seen
             FROM dns WHERE (dns_qry_name = $e OR dns_qry_name LIKE concat('%.', $e)) AND frame_time >= $s AND frame_time < $t
             GROUP BY ip_dst ORDER BY connections DESC LIMIT 2000",
            "SELECT date_trunc('hour', frame_time) AS hour, 'outbound' AS direction, count(*) AS connections
             FROM dns WHERE (dns_qry_name = $e OR dns_qry_name LIKE concat('%.', $e)) AND frame_time >= $s AND frame_time < $t
             GROUP BY 1 ORDER BY 1",
        ),
        "uri" if has("proxy") => (
            "SELECT clientip AS peer, 'outbound' AS direction, count(*) AS connections, sum(csbytes + scbytes) AS bytes,
                    min(p_ts) AS first_seen, max(p_ts) AS last_seen
             FROM proxy WHERE fulluri = $e AND p_ts >= $s AND p_ts < $t GROUP BY clientip ORDER BY connections DESC LIMIT 2000",
            "SELECT date_trunc('hour', p_ts) AS hour, 'outbound' AS direction, count(*) AS connections
             FROM proxy WHERE fulluri = $e AND p_ts >= $s AND p_ts < $t GROUP BY 1 ORDER BY 1",
        ),
        _ => bail!("no data source for a {kind} storyboard"),
    };
    let utc: Option<Arc<str>> = Some("UTC".into());
    let params = vec![
        ("e".to_string(), ScalarValue::Utf8(Some(entity.to_string()))),
        ("s".to_string(), ScalarValue::TimestampMicrosecond(Some(start.timestamp_micros()), utc.clone())),
        ("t".to_string(), ScalarValue::TimestampMicrosecond(Some(end.timestamp_micros()), utc)),
    ];
    let collect = |sql: &'static str| {
        let ctx = ctx.clone();
        let params = params.clone();
        async move {
            let df = ctx.sql_with_options(sql, crate::sql::session::read_only()).await?.with_param_values(params)?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            Ok::<_, datafusion::error::DataFusionError>(StepData::new(schema, df.collect().await?))
        }
    };
    let peers = collect(peers_sql).await?;
    let timeline = collect(timeline_sql).await?;
    // Context and place for each peer.
    let e = crate::steps::enrich::Enrich {
        from: String::new(),
        ip: vec!["peer".into()],
        domain: vec![],
        context: has("network_context").then(|| "network_context".to_string()),
        geo: has("iploc").then(|| crate::steps::enrich::GeoSource::Connector("iploc".into())),
        top_domains: None,
        reputation: None,
        at: crate::util::problem::Pos::UNKNOWN,
    };
    let enriched = engine.enrich_table(&ctx, &e, &peers).await?;
    Ok((enriched, timeline))
}

/// The storyboard's data as JSON for the page's script.
pub fn storyboard_json(
    store: &Store,
    data_dir: &std::path::Path,
    id: i64,
    tz: chrono_tz::Tz,
) -> Result<serde_json::Value> {
    let t = store.threat(id)?.ok_or_else(|| anyhow!("no such threat"))?;
    let dir = data_dir.join("threats").join(id.to_string());
    let rows = |file: &str| -> Vec<serde_json::Map<String, serde_json::Value>> {
        crate::results::table::read_parquet(&dir.join(file))
            .map(|d| {
                d.batches
                    .iter()
                    .flat_map(|b| (0..b.num_rows()).map(move |r| crate::results::cells::row_json(b, r, tz)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(serde_json::json!({
        "threat": t,
        "peers": rows("story_peers.parquet"),
        "timeline": rows("story_timeline.parquet"),
    }))
}

/// A threat as one row of the CSV / JSON export.
#[derive(Debug, Serialize)]
pub struct Exported {
    pub id: i64,
    pub created_at: String,
    pub severity: String,
    pub title: String,
    pub kind: String,
    pub entity: String,
    pub description: String,
    pub playbook: String,
    pub run_id: String,
    pub window_start: String,
    pub window_end: String,
    pub created_by: String,
}

impl From<ThreatRecord> for Exported {
    fn from(t: ThreatRecord) -> Exported {
        Exported {
            id: t.id,
            created_at: t.created_at,
            severity: t.severity,
            title: t.title,
            kind: t.kind,
            entity: t.entity,
            description: t.description,
            playbook: t.playbook,
            run_id: t.run_id,
            window_start: t.window_start,
            window_end: t.window_end,
            created_by: t.created_by,
        }
    }
}

/// Every threat as CSV (spreadsheet formulas neutralised).
pub fn csv(threats: Vec<ThreatRecord>) -> String {
    let mut out = String::from(
        "id,created_at,severity,title,kind,entity,description,playbook,run_id,window_start,window_end,created_by\n",
    );
    for t in threats {
        let e = Exported::from(t);
        let fields = [
            e.id.to_string(),
            e.created_at,
            e.severity,
            e.title,
            e.kind,
            e.entity,
            e.description,
            e.playbook,
            e.run_id,
            e.window_start,
            e.window_end,
            e.created_by,
        ];
        out.push_str(&fields.iter().map(|f| crate::results::cells::csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// A STIX 2.1 bundle: casebook's identity; per threat an indicator (a pattern on the entity),
/// a sighting of it (count, first and last seen from the storyboard), and a report that
/// groups them.
pub fn stix(threats: &[ThreatRecord], sightings: &[(i64, i64, Option<String>, Option<String>)]) -> serde_json::Value {
    let ns = uuid::Uuid::from_u128(0x6361_7365_626f_6f6b_0000_0000_0000_0001);
    let sid =
        |kind: &str, key: &str| format!("{kind}--{}", uuid::Uuid::new_v5(&ns, format!("{kind}:{key}").as_bytes()));
    let identity = sid("identity", "casebook");
    let ts = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|_| Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let mut objects = vec![serde_json::json!({
        "type": "identity", "spec_version": "2.1", "id": identity, "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z", "name": "casebook", "identity_class": "system",
    })];
    for t in threats {
        let created = ts(&t.created_at);
        let quoted = t.entity.replace('\\', "\\\\").replace('\'', "\\'");
        let pattern = match t.kind.as_str() {
            "ip" if t.entity.contains(':') => format!("[ipv6-addr:value = '{quoted}']"),
            "ip" => format!("[ipv4-addr:value = '{quoted}']"),
            "domain" => format!("[domain-name:value = '{quoted}']"),
            _ => format!("[url:value = '{quoted}']"),
        };
        let indicator = sid("indicator", &t.id.to_string());
        let sighting = sid("sighting", &t.id.to_string());
        let report = sid("report", &t.id.to_string());
        let (count, first, last) =
            sightings.iter().find(|s| s.0 == t.id).map(|s| (s.1, s.2.clone(), s.3.clone())).unwrap_or((0, None, None));
        objects.push(serde_json::json!({
            "type": "indicator", "spec_version": "2.1", "id": indicator, "created": created, "modified": created,
            "created_by_ref": identity, "name": t.title, "description": t.description,
            "indicator_types": ["malicious-activity"], "pattern": pattern, "pattern_type": "stix",
            "valid_from": ts(&t.window_start), "labels": [format!("severity:{}", t.severity)],
        }));
        let mut s = serde_json::json!({
            "type": "sighting", "spec_version": "2.1", "id": sighting, "created": created, "modified": created,
            "created_by_ref": identity, "sighting_of_ref": indicator, "count": count.clamp(0, 999_999_999),
            "description": format!("seen by casebook run {} of playbook {}", t.run_id, t.playbook),
        });
        if let (Some(f), Some(l)) = (first, last) {
            s["first_seen"] = serde_json::Value::String(ts(&f));
            s["last_seen"] = serde_json::Value::String(ts(&l));
        }
        objects.push(s);
        objects.push(serde_json::json!({
            "type": "report", "spec_version": "2.1", "id": report, "created": created, "modified": created,
            "created_by_ref": identity, "name": t.title, "description": t.description, "published": created,
            "report_types": ["threat-report"], "object_refs": [indicator, sighting],
        }));
    }
    serde_json::json!({ "type": "bundle", "id": format!("bundle--{}", uuid::Uuid::new_v4()), "objects": objects })
}

/// (threat id, connections, first seen, last seen) from each threat's storyboard data.
pub fn sighting_counts(
    data_dir: &std::path::Path,
    threats: &[ThreatRecord],
) -> Vec<(i64, i64, Option<String>, Option<String>)> {
    threats
        .iter()
        .map(|t| {
            let file = data_dir.join("threats").join(t.id.to_string()).join("story_peers.parquet");
            let mut count = 0i64;
            let (mut first, mut last): (Option<String>, Option<String>) = (None, None);
            if let Ok(d) = crate::results::table::read_parquet(&file) {
                for b in &d.batches {
                    let col = |n: &str| b.schema().index_of(n).ok().map(|i| b.column(i).clone());
                    for r in 0..b.num_rows() {
                        if let Some(c) = col("connections") {
                            count += cell_text(&c, r, chrono_tz::Tz::UTC).parse::<i64>().unwrap_or(0);
                        }
                        let iso = |n: &str| -> Option<String> {
                            col(n)
                                .map(|c| cell_text(&c, r, chrono_tz::Tz::UTC))
                                .filter(|s| !s.is_empty())
                                .map(|s| format!("{}Z", s.replace(' ', "T")))
                        };
                        if let Some(f) = iso("first_seen") {
                            if first.as_ref().is_none_or(|x| &f < x) {
                                first = Some(f);
                            }
                        }
                        if let Some(l) = iso("last_seen") {
                            if last.as_ref().is_none_or(|x| &l > x) {
                                last = Some(l);
                            }
                        }
                    }
                }
            }
            (t.id, count, first, last)
        })
        .collect()
}
