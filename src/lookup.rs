//! Lookups behind the `enrich` step: network context (Spot's format: address, `a-b` range
//! or CIDR → name), geolocation (Spot's `iploc.csv` integer ranges, or a MaxMind / DB-IP
//! `.mmdb` file), and domains (registrable domain and subdomain by the public suffix list,
//! rank in a top-domains list). Each distinct value of a column is looked up once.
//!
//! The columns added, per IP column `c`: `c_name`, `c_zone` (internal / external), and with
//! geolocation `c_country`, `c_city`, `c_lat`, `c_lon`, `c_owner`; per domain column `d`:
//! `d_registrable`, `d_subdomain`, and with a top-domains list `d_rank` (the registrable
//! domain's), `d_top10k`, `d_top1m` and `d_listed` (the exact host is in the list). A reputation service is asked by the `enrich` step itself (`reputation.rs`).

use std::collections::HashMap;
use std::net::IpAddr;

/// A source connector's table as text: lower-case column names and rows, in order.
#[derive(Debug, Default)]
pub struct SourceRows {
    pub names: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl SourceRows {
    fn col(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// Network context: the most specific range that holds an address names it.
#[derive(Debug, Default)]
pub struct Context {
    ranges: Vec<(IpAddr, IpAddr, u128, String)>,
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// An address, `a-b` range or CIDR as (first, last).
pub fn parse_range(text: &str) -> Option<(IpAddr, IpAddr)> {
    let t = text.trim();
    if let Ok(net) = t.parse::<ipnet::IpNet>() {
        return Some((net.network(), net.broadcast()));
    }
    if let Some((a, b)) = t.split_once('-') {
        let (a, b) = (a.trim().parse::<IpAddr>().ok()?, b.trim().parse::<IpAddr>().ok()?);
        return (a.is_ipv4() == b.is_ipv4() && as_u128(a) <= as_u128(b)).then_some((a, b));
    }
    t.parse::<IpAddr>().ok().map(|ip| (ip, ip))
}

impl Context {
    /// From (address or range, name) rows; rows that do not parse are returned as problems.
    pub fn new(rows: impl IntoIterator<Item = (String, String)>) -> (Context, Vec<String>) {
        let mut ranges = Vec::new();
        let mut bad = Vec::new();
        for (ip, name) in rows {
            match parse_range(&ip) {
                Some((a, b)) => ranges.push((a, b, as_u128(b) - as_u128(a), name)),
                None => bad.push(ip),
            }
        }
        (Context { ranges }, bad)
    }

    /// From Spot's files as they are: `ip, name` (networkcontext_1.csv: an address, `a-b`
    /// range or CIDR) or `start, end, name` (ipranges.csv), with or without a header.
    pub fn from_rows(t: &SourceRows) -> (Context, Vec<String>) {
        let cols = match (t.col("ip"), t.col("name")) {
            (Some(i), Some(n)) => Some((i, None, n)),
            _ if t.names.len() >= 3 => Some((0, Some(1), 2)),
            _ if t.names.len() == 2 => Some((0, None, 1)),
            _ => None,
        };
        let Some((a, b, n)) = cols else { return (Context::default(), Vec::new()) };
        Context::new(t.rows.iter().map(|r| {
            let ip = match b {
                Some(b) => format!("{}-{}", r[a], r[b]),
                None => r[a].clone(),
            };
            (ip, r[n].clone())
        }))
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&str> {
        let v = as_u128(ip);
        self.ranges
            .iter()
            .filter(|(a, b, _, _)| a.is_ipv4() == ip.is_ipv4() && as_u128(*a) <= v && v <= as_u128(*b))
            .min_by_key(|(_, _, size, _)| *size)
            .map(|(_, _, _, n)| n.as_str())
    }
}

/// A place an address is in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub country: Option<String>,
    pub city: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// The network's owner: iploc's `owner`, or an mmdb file's AS number and organisation.
    pub owner: Option<String>,
}

/// Geolocation.
pub enum Geo {
    /// Spot's iploc: sorted integer IPv4 ranges.
    IpLoc(Vec<(u32, u32, Place)>),
    Mmdb(maxminddb::Reader<Vec<u8>>),
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Geo::IpLoc(v) => write!(f, "Geo::IpLoc({} ranges)", v.len()),
            Geo::Mmdb(_) => f.write_str("Geo::Mmdb"),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct MmdbNamed {
    #[serde(default)]
    iso_code: Option<String>,
    #[serde(default)]
    names: HashMap<String, String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct MmdbLocation {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

/// The fields casebook reads from City, Country and ASN databases alike.
#[derive(Debug, Default, serde::Deserialize)]
struct MmdbRecord {
    #[serde(default)]
    country: Option<MmdbNamed>,
    #[serde(default)]
    city: Option<MmdbNamed>,
    #[serde(default)]
    location: Option<MmdbLocation>,
    /// Stored as uint16 or uint32 depending on the writer; read whatever width it has.
    #[serde(default)]
    autonomous_system_number: Option<serde_json::Value>,
    #[serde(default)]
    autonomous_system_organization: Option<String>,
}

impl Geo {
    /// From iploc rows: (start, end, country, city, latitude, longitude, owner).
    pub fn iploc(mut rows: Vec<(u32, u32, Place)>) -> Geo {
        rows.sort_by_key(|r| r.0);
        Geo::IpLoc(rows)
    }

    /// From Spot's `iploc.csv` layout (`ip_start, ip_end, country_code, country, region,
    /// city, latitude, longitude, owner`, by column name).
    pub fn from_iploc_rows(t: &SourceRows) -> Geo {
        let text = |r: &[String], k: &str| t.col(k).map(|i| r[i].clone()).filter(|v| !v.is_empty());
        let num = |r: &[String], k: &str| t.col(k).and_then(|i| r[i].parse::<f64>().ok());
        let int = |r: &[String], k: &str| t.col(k).and_then(|i| r[i].parse::<u32>().ok());
        Geo::iploc(
            t.rows
                .iter()
                .filter_map(|r| {
                    let place = Place {
                        country: text(r, "country_code").or_else(|| text(r, "country")),
                        city: text(r, "city"),
                        lat: num(r, "latitude"),
                        lon: num(r, "longitude"),
                        owner: text(r, "owner"),
                    };
                    Some((int(r, "ip_start")?, int(r, "ip_end")?, place))
                })
                .collect(),
        )
    }

    pub fn mmdb(bytes: Vec<u8>) -> Result<Geo, String> {
        maxminddb::Reader::from_source(bytes).map(Geo::Mmdb).map_err(|e| format!("not a MaxMind database: {e}"))
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Place> {
        match self {
            Geo::IpLoc(rows) => {
                let IpAddr::V4(v4) = ip else { return None };
                let v = u32::from(v4);
                let i = rows.partition_point(|r| r.0 <= v);
                let (lo, hi, place) = rows.get(i.checked_sub(1)?)?;
                (*lo <= v && v <= *hi).then(|| place.clone())
            }
            Geo::Mmdb(reader) => {
                let r: MmdbRecord = reader.lookup(ip).ok()?.decode().ok()??;
                let name = |n: &Option<MmdbNamed>| n.as_ref().and_then(|n| n.names.get("en").cloned());
                let asn = r.autonomous_system_number.as_ref().and_then(serde_json::Value::as_u64);
                let owner = match (asn, r.autonomous_system_organization) {
                    (Some(n), Some(o)) => Some(format!("AS{n} {o}")),
                    (Some(n), None) => Some(format!("AS{n}")),
                    (None, o) => o,
                };
                Some(Place {
                    country: r.country.as_ref().and_then(|c| c.iso_code.clone()).or_else(|| name(&r.country)),
                    city: name(&r.city),
                    lat: r.location.as_ref().and_then(|l| l.latitude),
                    lon: r.location.as_ref().and_then(|l| l.longitude),
                    owner,
                })
            }
        }
    }
}

/// Ranks of a top-domains list.
#[derive(Debug, Default)]
pub struct TopDomains {
    ranks: HashMap<String, i64>,
}

impl TopDomains {
    pub fn new(rows: impl IntoIterator<Item = (i64, String)>) -> TopDomains {
        let mut ranks = HashMap::new();
        for (rank, d) in rows {
            ranks.entry(d.trim().trim_end_matches('.').to_ascii_lowercase()).or_insert(rank);
        }
        TopDomains { ranks }
    }

    /// From a `rank, domain` table (Tranco / Alexa layout, by column name).
    pub fn from_rows(t: &SourceRows) -> TopDomains {
        let (Some(rank), Some(domain)) = (t.col("rank"), t.col("domain")) else { return TopDomains::default() };
        TopDomains::new(t.rows.iter().filter_map(|r| Some((r[rank].parse::<i64>().ok()?, r[domain].clone()))))
    }

    pub fn rank(&self, domain: &str) -> Option<i64> {
        self.ranks.get(domain).copied()
    }
}

/// The host of a domain, host name or URL, lower-cased (`https://a.b.c:8443/x` → `a.b.c`).
pub fn host_of(value: &str) -> Option<String> {
    let v = value.trim();
    let v = v.split_once("://").map_or(v, |(_, rest)| rest);
    let v = v.split(['/', '?', '#']).next().unwrap_or("");
    let v = v.rsplit_once('@').map_or(v, |(_, h)| h);
    let v = if v.starts_with('[') { v } else { v.split(':').next().unwrap_or("") };
    let v = v.trim_end_matches('.').to_ascii_lowercase();
    (!v.is_empty() && v.len() <= 253).then_some(v)
}

/// (registrable domain, subdomain) by the public suffix list: `a.b.example.co.uk` →
/// (`example.co.uk`, `a.b`).
pub fn split_domain(host: &str) -> (Option<String>, Option<String>) {
    match psl::domain_str(host) {
        Some(reg) => {
            let sub = host.strip_suffix(reg).map(|s| s.trim_end_matches('.')).filter(|s| !s.is_empty());
            (Some(reg.to_string()), sub.map(String::from))
        }
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn the_most_specific_context_names_an_address() {
        let (ctx, bad) = Context::new([
            ("10.0.0.0/8".to_string(), "Corporate".to_string()),
            ("10.0.1.0-10.0.1.255".to_string(), "Finance".to_string()),
            ("10.0.1.7".to_string(), "CFO laptop".to_string()),
            ("2001:db8::/32".to_string(), "Lab v6".to_string()),
            ("not an ip".to_string(), "x".to_string()),
        ]);
        assert_eq!(bad, vec!["not an ip".to_string()]);
        assert_eq!(ctx.lookup(ip("10.0.1.7")), Some("CFO laptop"));
        assert_eq!(ctx.lookup(ip("10.0.1.8")), Some("Finance"));
        assert_eq!(ctx.lookup(ip("10.9.9.9")), Some("Corporate"));
        assert_eq!(ctx.lookup(ip("2001:db8::1")), Some("Lab v6"));
        assert_eq!(ctx.lookup(ip("8.8.8.8")), None);
    }

    #[test]
    fn iploc_ranges_are_searched() {
        let place = |c: &str| Place { country: Some(c.into()), ..Place::default() };
        let geo = Geo::iploc(vec![(200, 300, place("CZ")), (10, 20, place("DE"))]);
        assert_eq!(geo.lookup(ip("0.0.0.15")).and_then(|p| p.country), Some("DE".into()));
        assert_eq!(geo.lookup(ip("0.0.1.0")).and_then(|p| p.country), Some("CZ".into()));
        assert_eq!(geo.lookup(ip("0.0.0.25")), None);
        assert_eq!(geo.lookup(ip("::1")), None);
    }

    #[test]
    fn domains_split_by_the_public_suffix_list() {
        assert_eq!(host_of("https://User@Files.Example.co.uk:8443/up?x=1").as_deref(), Some("files.example.co.uk"));
        assert_eq!(split_domain("a.b.example.co.uk"), (Some("example.co.uk".into()), Some("a.b".into())));
        assert_eq!(split_domain("t1.cdn-sync-update.net"), (Some("cdn-sync-update.net".into()), Some("t1".into())));
        assert_eq!(split_domain("example.com"), (Some("example.com".into()), None));
        let top = TopDomains::new([(1, "google.com".to_string()), (20_000, "example.org".to_string())]);
        assert_eq!(top.rank("google.com"), Some(1));
    }
}
