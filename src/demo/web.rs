//! Demo DNS and proxy logs in Apache Spot's schemas, with the DNS tunnelling incident and
//! an upload through the proxy by the exfiltrating host.

use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, TimeZone, Utc};
use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::SchemaRef;

use super::{cast, micros, Rng, Span, World};

const POPULAR: &[&str] = &[
    "google.com",
    "youtube.com",
    "facebook.com",
    "microsoft.com",
    "apple.com",
    "amazon.com",
    "wikipedia.org",
    "instagram.com",
    "linkedin.com",
    "bing.com",
    "office.com",
    "live.com",
    "github.com",
    "windowsupdate.com",
    "cloudflare.com",
    "akamaihd.net",
    "googleapis.com",
    "gstatic.com",
    "office365.com",
    "zoom.us",
    "slack.com",
    "dropbox.com",
    "adobe.com",
    "twitter.com",
    "netflix.com",
    "yahoo.com",
    "reddit.com",
    "stackoverflow.com",
    "salesforce.com",
    "atlassian.net",
    "seznam.cz",
    "idnes.cz",
    "muni.cz",
    "bbc.co.uk",
    "cnn.com",
    "nytimes.com",
    "spotify.com",
    "mozilla.org",
    "ubuntu.com",
    "debian.org",
    "python.org",
    "npmjs.com",
    "crates.io",
    "docker.com",
    "okta.com",
    "duckduckgo.com",
    "whatsapp.net",
    "icloud.com",
    "msn.com",
    "skype.com",
];

/// The top-domains list: well-known names first, then synthetic ones to 10,000.
pub fn top_domains() -> Vec<String> {
    let mut v: Vec<String> = POPULAR.iter().map(|s| s.to_string()).collect();
    let tlds = ["com", "net", "org", "io", "de", "cz", "co.uk"];
    let mut i = 0;
    while v.len() < 10_000 {
        v.push(format!("site{i:04}.{}", tlds[i % tlds.len()]));
        i += 1;
    }
    v
}

#[derive(Debug, Clone)]
pub struct Dns {
    pub t: i64,
    client: String,
    qname: String,
    qtype: i32,
    rcode: i32,
    len: i32,
    answer: String,
}

impl Dns {
    /// The client that asked (`ip_dst`, the standard's cluster column).
    pub fn client(&self) -> &str {
        &self.client
    }
}

fn subdomain(rng: &mut Rng, d: &str) -> String {
    match rng.range(0, 5) {
        0 => d.to_string(),
        1 | 2 => format!("www.{d}"),
        3 => format!("api.{d}"),
        4 => format!("cdn.{d}"),
        _ => format!("login.{d}"),
    }
}

/// One ordinary DNS answer at `t`.
pub fn normal_dns(rng: &mut Rng, w: &World, t: i64) -> Dns {
    let d = &w.domains[rng.zipf(w.domains.len())];
    let nx = rng.unit() < 0.02;
    Dns {
        t,
        client: rng.pick(&w.workstations).clone(),
        qname: if nx { format!("{}.{d}", rng.range(1000, 9999)) } else { subdomain(rng, d) },
        qtype: *rng.pick(&[1, 1, 1, 28, 28, 5]),
        rcode: if nx { 3 } else { 0 },
        len: rng.range(90, 300) as i32,
        answer: if nx { String::new() } else { w.external[rng.zipf(w.external.len())].clone() },
    }
}

/// The injected incidents' DNS answers.
pub fn dns_incidents(rng: &mut Rng, Span { start, hours }: Span) -> Vec<Dns> {
    let mut out = Vec::with_capacity(3000);
    // Incident 4: DNS tunnelling — long random labels under one domain, TXT queries.
    let base = micros(super::incident_at(start, hours, 30, 0));
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    for k in 0..3000 {
        let len = rng.range(40, 60) as usize;
        let label: String = (0..len).map(|_| ALPHABET[rng.range(0, 31) as usize] as char).collect();
        out.push(Dns {
            t: base + k * 1_200_000 + rng.range(0, 900_000) as i64,
            client: cast::TUNNEL_CLIENT.into(),
            qname: format!("{label}.{}", cast::TUNNEL_DOMAIN),
            qtype: 16,
            rcode: 0,
            len: rng.range(280, 480) as i32,
            answer: String::new(),
        });
    }
    out
}

/// Apache Spot's DNS schema (the standard `dns`; `ip_dst` is the client).
pub fn dns_schema() -> SchemaRef {
    crate::catalog::standard::DNS.schema(false)
}

pub fn dns_batch(schema: &SchemaRef, rows: &[Dns]) -> Result<RecordBatch> {
    let s = |f: &dyn Fn(&Dns) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let i = |f: &dyn Fn(&Dns) -> i32| -> ArrayRef { Arc::new(Int32Array::from_iter_values(rows.iter().map(f))) };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|d| d.t)).with_timezone("UTC")),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|d| d.t / 1_000_000))),
        i(&|d| d.len),
        s(&|d| &d.client),
        s(&|_| cast::DNS_SERVER),
        s(&|d| &d.qname),
        s(&|_| "0x00000001"),
        i(&|d| d.qtype),
        i(&|d| d.rcode),
        s(&|d| &d.answer),
    ];
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

#[derive(Debug, Clone)]
pub struct Proxy {
    pub t: i64,
    client: String,
    host: String,
    method: &'static str,
    agent: &'static str,
    ctype: &'static str,
    path: String,
    code: i32,
    sc: i64,
    cs: i64,
    server: String,
}

const CTYPES: &[&str] = &["text/html", "application/json", "image/png", "application/javascript"];

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Microsoft-CryptoAPI/10.0",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0)",
];

/// One ordinary proxy request at `t`.
pub fn normal_proxy(rng: &mut Rng, w: &World, t: i64) -> Proxy {
    let d = w.domains[rng.zipf(w.domains.len())].clone();
    let ok = rng.unit() > 0.03;
    Proxy {
        t,
        client: rng.pick(&w.workstations).clone(),
        host: subdomain(rng, &d),
        method: if rng.unit() < 0.9 { "GET" } else { "POST" },
        agent: AGENTS[rng.range(0, AGENTS.len() as u64 - 1) as usize],
        ctype: CTYPES[rng.range(0, CTYPES.len() as u64 - 1) as usize],
        path: format!("/{}", rng.pick(&["", "index.html", "api/v1/items", "static/app.js", "img/logo.png", "search"])),
        code: if ok { 200 } else { *rng.pick(&[301, 404, 403, 500]) },
        sc: rng.lognormal(8.5, 1.3) as i64,
        cs: rng.range(200, 1500) as i64,
        server: w.external[rng.zipf(w.external.len())].clone(),
    }
}

/// The injected incidents' proxy requests.
pub fn proxy_incidents(rng: &mut Rng, Span { start, hours }: Span) -> Vec<Proxy> {
    let mut out = Vec::with_capacity(40);
    // The exfiltrating host also uploads through the proxy with a scripting client.
    let base = micros(super::incident_at(start, hours, 38, -10));
    for k in 0..40 {
        out.push(Proxy {
            t: base + k * 15_000_000,
            client: cast::EXFIL_SRC.into(),
            host: "files.transfer-now.io".into(),
            method: "POST",
            agent: "python-requests/2.31.0",
            ctype: "application/octet-stream",
            path: "/upload".into(),
            code: 200,
            sc: 120,
            cs: 25_000_000 + rng.range(0, 1_000_000) as i64,
            server: cast::EXFIL_DST.into(),
        });
    }
    out
}

/// Apache Spot's proxy schema plus `p_ts` (the standard `proxy`).
pub fn proxy_schema() -> SchemaRef {
    crate::catalog::standard::PROXY.schema(false)
}

pub fn proxy_batch(schema: &SchemaRef, rows: &[Proxy]) -> Result<RecordBatch> {
    let times: Vec<DateTime<Utc>> =
        rows.iter().map(|p| Utc.timestamp_micros(p.t).single().unwrap_or_default()).collect();
    let s = |f: &dyn Fn(&Proxy) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|p| p.t)).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(times.iter().map(|t| t.format("%Y-%m-%d").to_string()))),
        Arc::new(StringArray::from_iter_values(times.iter().map(|t| t.format("%H:%M:%S").to_string()))),
        s(&|p| p.client.clone()),
        s(&|p| p.host.clone()),
        s(&|p| p.method.to_string()),
        s(&|p| p.agent.to_string()),
        s(&|p| p.ctype.to_string()),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|p| (p.sc / 5000) as i32 + 20))),
        s(&|_| "-".to_string()),
        s(&|p| if p.host.contains("transfer") { "Uncategorized".into() } else { "Business".into() }),
        s(&|_| "-".to_string()),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|p| p.code))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|_| 443))),
        s(&|p| p.path.clone()),
        s(&|_| "-".to_string()),
        s(&|p| p.server.clone()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|p| p.sc))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|p| p.cs))),
        s(&|p| format!("https://{}{}", p.host, p.path)),
    ];
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}
