//! The `enrich` step: adds columns to an earlier step's table for its IP and domain columns,
//! each distinct value looked up once per run. The lookups themselves are in
//! [`crate::enrich`]; this is the playbook shape and its validation.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::problem::{Pos, Problems};
use crate::yaml::pos;

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
