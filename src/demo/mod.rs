//! Demo data, deterministic from a seed: flows, DNS and proxy logs in Apache Spot's schemas
//! (hive-partitioned Parquet), a Sysmon-like Windows event log (NDJSON), and context files,
//! with injected incidents documented in `src/demo/INCIDENTS.md`.

mod events;
mod layout;
mod rng;
mod web;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Duration, DurationRound, TimeZone, Timelike, Utc};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::SchemaRef;

use layout::write_hourly;
pub use layout::{layout_properties, LAYOUT, PAGE_ROWS, ROW_GROUP_ROWS};
pub use rng::Rng;

/// How much demo data to make.
#[derive(Debug, Clone)]
pub struct Options {
    /// Flow records (the other sources scale from it).
    pub rows: usize,
    pub seed: u64,
    /// Hours covered, ending at `end`.
    pub hours: u32,
    /// End of the data (exclusive); default: the start of the current hour.
    pub end: Option<DateTime<Utc>>,
}

impl Default for Options {
    fn default() -> Self {
        Options { rows: 1_000_000, seed: 42, hours: 48, end: None }
    }
}

/// The hosts the incidents involve (also documented in INCIDENTS.md).
pub mod cast {
    pub const SCANNER: &str = "10.0.10.25";
    pub const SCANNED_NET: &str = "10.0.20.0/24";
    pub const RDP_VICTIMS: [&str; 2] = ["10.0.20.14", "10.0.20.37"];
    pub const EXFIL_SRC: &str = "10.0.2.57";
    pub const EXFIL_DST: &str = "198.51.100.23";
    pub const BEACON_SRC: &str = "10.0.3.88";
    pub const BEACON_DST: &str = "45.77.65.211";
    pub const TUNNEL_CLIENT: &str = "10.0.1.203";
    pub const TUNNEL_DOMAIN: &str = "t1.cdn-sync-update.net";
    pub const DNS_SERVER: &str = "10.0.10.5";
    pub const PROXY_SERVER: &str = "10.0.10.10";
    pub const ADMIN: &str = "10.0.1.15";
}

/// Whether `data` already holds demo data.
pub fn present(data: &Path) -> bool {
    data.join("demo").join("manifest.json").is_file()
}

/// Generates everything under `data/demo/`, replacing what was there.
pub fn generate(data: &Path, opts: &Options) -> Result<String> {
    let started = Instant::now();
    let end = opts.end.unwrap_or_else(Utc::now);
    let end = end.duration_trunc(Duration::hours(1)).unwrap_or(end);
    let start = end - Duration::hours(i64::from(opts.hours.max(2)));
    let root = data.join("demo");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing old {}", root.display()))?;
    }
    fs::create_dir_all(&root)?;
    let mut rng = Rng::new(opts.seed);
    let world = World::new(&mut rng);
    // Incidents draw from a stream of their own, so that the ordinary rows of a seed stay
    // the same whatever the incidents need.
    let mut incident_rng = Rng::new(opts.seed ^ 0x5eed_1c1d_e475);
    let span = Span { start, hours: opts.hours.max(2) };

    let n_flows = write_hourly(
        &root.join("flows"),
        (&flows_schema(), flows_batch, &crate::catalog::standard::FLOWS),
        span,
        opts.rows,
        &mut rng,
        flow_incidents(&mut incident_rng, span),
        |rng, t| normal_flow(rng, &world, t),
        |f| f.t,
        |a, b| a.t.cmp(&b.t),
    )?;
    let n_dns = write_hourly(
        &root.join("dns"),
        (&web::dns_schema(), web::dns_batch, &crate::catalog::standard::DNS),
        span,
        opts.rows / 5,
        &mut rng,
        web::dns_incidents(&mut incident_rng, span),
        |rng, t| web::normal_dns(rng, &world, t),
        |d| d.t,
        |a, b| a.client().cmp(b.client()).then(a.t.cmp(&b.t)),
    )?;
    let n_proxy = write_hourly(
        &root.join("proxy"),
        (&web::proxy_schema(), web::proxy_batch, &crate::catalog::standard::PROXY),
        span,
        opts.rows / 10,
        &mut rng,
        web::proxy_incidents(&mut incident_rng, span),
        |rng, t| web::normal_proxy(rng, &world, t),
        |p| p.t,
        |a, b| a.t.cmp(&b.t),
    )?;

    let n_events = events::write(&root.join("events"), &mut rng, start, opts.hours.max(2), (opts.rows / 20).max(2000))?;
    world.write_context(&root.join("context"))?;

    let manifest = serde_json::json!({
        "seed": opts.seed,
        "layout": LAYOUT,
        "start": start.to_rfc3339(),
        "end": end.to_rfc3339(),
        "flows": n_flows, "dns": n_dns, "proxy": n_proxy, "events": n_events,
        "incidents": incidents(start, opts.hours.max(2)),
    });
    fs::write(root.join("manifest.json"), serde_json::to_string_pretty(&manifest)?)?;
    Ok(format!(
        "demo data in {}: {n_flows} flows, {n_dns} DNS queries, {n_proxy} proxy requests, {n_events} events, {} to {} (UTC), in {:.1} s",
        root.display(),
        start.format("%Y-%m-%d %H:%M"),
        end.format("%Y-%m-%d %H:%M"),
        started.elapsed().as_secs_f64()
    ))
}

/// When an incident happens: `m` minutes after hour `h` of a 48-hour day, that hour placed
/// at the same share of a shorter or longer period (`--hours 24` has the scan at +13:00).
/// Durations stay as they are, so on a short period an incident placed by share alone would
/// run past the end (the exfiltration at 38/48 of 2 hours would lose 15 of its 40 minutes):
/// each incident's hour is moved back, when it must, to leave the longest incident
/// ([`LONGEST_INCIDENT_MINUTES`]) whole before the end. From 6 hours on nothing moves.
pub fn incident_at(start: DateTime<Utc>, hours: u32, h: i64, m: i64) -> DateTime<Utc> {
    let by_share = Duration::seconds(h * 3600 * i64::from(hours) / 48);
    let latest = Duration::hours(i64::from(hours)) - Duration::minutes(LONGEST_INCIDENT_MINUTES);
    start + by_share.min(latest).max(Duration::zero()) + Duration::minutes(m)
}

/// How long the longest incident lasts from its hour: the scan, the brute force and the
/// service installs take 66 minutes from hour 26; a margin makes it 70.
pub const LONGEST_INCIDENT_MINUTES: i64 = 70;

/// When each incident happens, relative to the start of the data.
pub fn incidents(start: DateTime<Utc>, hours: u32) -> serde_json::Value {
    let at = |h: i64, m: i64| incident_at(start, hours, h, m).to_rfc3339();
    serde_json::json!([
        {"what": "scan of 10.0.20.0/24", "host": cast::SCANNER, "from": at(26, 0), "to": at(26, 20)},
        {"what": "RDP brute force", "host": cast::SCANNER, "targets": cast::RDP_VICTIMS, "from": at(26, 20), "to": at(26, 60)},
        {"what": "PsExec service installs", "host": cast::SCANNER, "from": at(26, 65), "to": at(26, 66)},
        {"what": "DNS tunnelling", "host": cast::TUNNEL_CLIENT, "domain": cast::TUNNEL_DOMAIN, "from": at(30, 0), "to": at(30, 60)},
        {"what": "exfiltration", "host": cast::EXFIL_SRC, "peer": cast::EXFIL_DST, "from": at(38, 0), "to": at(38, 40)},
        {"what": "beaconing every 60 s", "host": cast::BEACON_SRC, "peer": cast::BEACON_DST, "from": at(0, 0), "to": "end"},
    ])
}

/// The synthetic network: internal hosts, external hosts with popularity, domains.
pub struct World {
    pub workstations: Vec<String>,
    pub servers: Vec<String>,
    pub rdp_hosts: Vec<String>,
    pub external: Vec<String>,
    pub domains: Vec<String>,
}

impl World {
    fn new(rng: &mut Rng) -> World {
        let mut workstations = Vec::new();
        for net in 1..=3 {
            for h in 10..210 {
                workstations.push(format!("10.0.{net}.{h}"));
            }
        }
        let servers = ["10.0.10.5", "10.0.10.10", "10.0.10.20", "10.0.10.25", "10.0.10.30", "10.0.10.40"]
            .map(String::from)
            .to_vec();
        let rdp_hosts = (10..60).map(|h| format!("10.0.20.{h}")).collect();
        let mut external = Vec::new();
        while external.len() < 3000 {
            let a = rng.range(1, 223) as u8;
            if matches!(a, 10 | 100 | 127 | 169 | 172 | 192 | 198 | 203) {
                continue;
            }
            let ip = format!("{a}.{}.{}.{}", rng.range(0, 255), rng.range(0, 255), rng.range(1, 254));
            if ip != cast::BEACON_DST {
                external.push(ip);
            }
        }
        World { workstations, servers, rdp_hosts, external, domains: web::top_domains() }
    }

    /// An external host, popular ones far more often (Zipf-like).
    fn popular_external(&self, rng: &mut Rng) -> &str {
        &self.external[rng.zipf(self.external.len())]
    }

    fn write_context(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)?;
        let mut nc = String::from("ip,name\n");
        nc.push_str("10.0.1.0/24,Workstations - Finance\n10.0.2.0/24,Workstations - Engineering\n10.0.3.0/24,Workstations - Sales\n");
        nc.push_str("10.0.10.5,DNS resolver\n10.0.10.10,Web proxy\n10.0.10.20,File server\n10.0.10.25,Build server\n");
        nc.push_str("10.0.10.30,Mail server\n10.0.10.40,Intranet web\n10.0.20.1-10.0.20.254,RDP jump hosts\n");
        fs::write(dir.join("network_context.csv"), nc)?;
        // Spot's iploc.csv: integer ranges with location.
        let places = [
            ("US", "United States", "California", "San Jose", 37.33, -121.89, "Example Hosting"),
            ("DE", "Germany", "Hesse", "Frankfurt", 50.11, 8.68, "Contoso Cloud"),
            ("NL", "Netherlands", "North Holland", "Amsterdam", 52.37, 4.90, "Fabrikam DC"),
            ("CZ", "Czechia", "South Moravia", "Brno", 49.19, 16.61, "Brno Net"),
            ("JP", "Japan", "Tokyo", "Tokyo", 35.68, 139.69, "Nippon Transit"),
            ("BR", "Brazil", "Sao Paulo", "Sao Paulo", -23.55, -46.63, "Sul Telecom"),
            ("RU", "Russia", "Moscow", "Moscow", 55.75, 37.62, "Volga Hosting"),
            ("SG", "Singapore", "Singapore", "Singapore", 1.35, 103.82, "Lion Cloud"),
        ];
        let mut rows: Vec<(u32, String)> = Vec::new();
        let mut nets: Vec<u32> = self
            .external
            .iter()
            .chain([cast::EXFIL_DST.to_string(), cast::BEACON_DST.to_string()].iter())
            .filter_map(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
            .map(|a| u32::from(a) & 0xffff_ff00)
            .collect();
        nets.sort_unstable();
        nets.dedup();
        for n in nets {
            let p = places[(n >> 8) as usize % places.len()];
            let p = if n == u32::from(std::net::Ipv4Addr::new(45, 77, 65, 0)) { places[6] } else { p };
            rows.push((n, format!("{},{},{},{},{},{},{},{},{}", n, n + 255, p.0, p.1, p.2, p.3, p.4, p.5, p.6)));
        }
        let mut iploc = String::from("ip_start,ip_end,country_code,country,region,city,latitude,longitude,owner\n");
        for (_, r) in rows {
            iploc.push_str(&r);
            iploc.push('\n');
        }
        fs::write(dir.join("iploc.csv"), iploc)?;
        let mut top = String::from("rank,domain\n");
        for (i, d) in self.domains.iter().enumerate() {
            top.push_str(&format!("{},{d}\n", i + 1));
        }
        fs::write(dir.join("top_domains.csv"), top)?;
        Ok(())
    }
}

/// One NetFlow record.
#[derive(Debug, Clone)]
pub struct Flow {
    t: i64,
    sip: String,
    dip: String,
    sport: i32,
    dport: i32,
    proto: &'static str,
    flag: &'static str,
    ipkt: i64,
    ibyt: i64,
    opkt: i64,
    obyt: i64,
    tdur: f64,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Busier in working hours (relative weight per hour of day).
fn hour_weight(h: u32) -> f64 {
    match h {
        8..=17 => 3.0,
        6..=7 | 18..=20 => 1.6,
        _ => 0.6,
    }
}

/// The period the demo covers: `hours` from `start`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub hours: u32,
}

/// The injected incidents' flows (see INCIDENTS.md), in any order.
fn flow_incidents(rng: &mut Rng, Span { start, hours }: Span) -> Vec<Flow> {
    let mut out = Vec::new();
    // Incident 1: scan of 10.0.20.0/24 then RDP brute force.
    let scan_start = micros(incident_at(start, hours, 26, 0));
    for host in 1..=254 {
        for (k, port) in [22, 135, 139, 445, 3389, 5985].into_iter().enumerate() {
            let t = scan_start + (host * 6 + k as i64) * 780_000 + rng.range(0, 500_000) as i64;
            let open = port == 3389 && (10..60).contains(&host);
            out.push(Flow {
                t,
                sip: cast::SCANNER.into(),
                dip: format!("10.0.20.{host}"),
                sport: rng.range(40000, 60000) as i32,
                dport: port,
                proto: "TCP",
                flag: if open { ".AP.SF" } else { "....S." },
                ipkt: if open { 3 } else { 1 },
                ibyt: if open { 180 } else { 60 },
                opkt: i64::from(open),
                obyt: if open { 60 } else { 0 },
                tdur: 0.01,
            });
        }
    }
    let brute_start = micros(incident_at(start, hours, 26, 20));
    for minute in 0..40 {
        for k in 0..120 {
            let victim = cast::RDP_VICTIMS[k % 2];
            out.push(Flow {
                t: brute_start + minute * 60_000_000 + rng.range(0, 59_999_999) as i64,
                sip: cast::SCANNER.into(),
                dip: victim.into(),
                sport: rng.range(40000, 60000) as i32,
                dport: 3389,
                proto: "TCP",
                flag: ".AP.SF",
                ipkt: rng.range(18, 30) as i64,
                ibyt: rng.range(2800, 4200) as i64,
                opkt: rng.range(15, 25) as i64,
                obyt: rng.range(3500, 5200) as i64,
                tdur: 1.5 + rng.unit() * 2.0,
            });
        }
    }
    // Incident 2: exfiltration, ~2.5 GB in 30 long flows.
    let ex_start = micros(incident_at(start, hours, 38, 0));
    for k in 0..30 {
        let bytes = 80_000_000 + rng.range(0, 10_000_000) as i64;
        out.push(Flow {
            t: ex_start + k * 80_000_000,
            sip: cast::EXFIL_SRC.into(),
            dip: cast::EXFIL_DST.into(),
            sport: rng.range(49152, 65535) as i32,
            dport: 443,
            proto: "TCP",
            flag: ".AP.SF",
            ipkt: bytes / 1400,
            ibyt: bytes,
            opkt: bytes / 2800,
            obyt: bytes / 50,
            tdur: 75.0 + rng.unit() * 5.0,
        });
    }
    // Incident 3: beaconing every 60 s (±2 s) for the whole period.
    let mut t = micros(start) + 17_000_000;
    let end = micros(start + Duration::hours(i64::from(hours)));
    while t < end {
        out.push(Flow {
            t,
            sip: cast::BEACON_SRC.into(),
            dip: cast::BEACON_DST.into(),
            sport: rng.range(49152, 65535) as i32,
            dport: 8080,
            proto: "TCP",
            flag: ".AP.SF",
            ipkt: 5,
            ibyt: 310 + rng.range(0, 40) as i64,
            opkt: 4,
            obyt: 190 + rng.range(0, 20) as i64,
            tdur: 0.2,
        });
        t += 60_000_000 + (rng.range(0, 4_000_000) as i64 - 2_000_000);
    }
    // Incident 4's DNS traffic also shows as flows to the resolver.
    let tun_start = micros(incident_at(start, hours, 30, 0));
    for k in 0..3000 {
        out.push(Flow {
            t: tun_start + k * 1_200_000,
            sip: cast::TUNNEL_CLIENT.into(),
            dip: cast::DNS_SERVER.into(),
            sport: rng.range(49152, 65535) as i32,
            dport: 53,
            proto: "UDP",
            flag: "......",
            ipkt: 1,
            ibyt: 140 + rng.range(0, 60) as i64,
            opkt: 1,
            obyt: 300 + rng.range(0, 200) as i64,
            tdur: 0.01,
        });
    }
    out
}

fn normal_flow(rng: &mut Rng, w: &World, t: i64) -> Flow {
    let sip = if rng.unit() < 0.85 { rng.pick(&w.workstations).clone() } else { rng.pick(&w.servers).clone() };
    let r = rng.unit();
    let (dip, dport, proto): (String, i32, &'static str) = if r < 0.55 {
        (w.popular_external(rng).to_string(), 443, "TCP")
    } else if r < 0.68 {
        (w.popular_external(rng).to_string(), 80, "TCP")
    } else if r < 0.80 {
        (cast::DNS_SERVER.to_string(), 53, "UDP")
    } else if r < 0.88 {
        ("10.0.10.20".to_string(), 445, "TCP")
    } else if r < 0.92 {
        (cast::PROXY_SERVER.to_string(), 3128, "TCP")
    } else if r < 0.94 {
        ("10.0.10.30".to_string(), 25, "TCP")
    } else if r < 0.96 {
        (w.popular_external(rng).to_string(), 123, "UDP")
    } else if r < 0.965 {
        // Ordinary administration over RDP: a handful of sessions from the admin host.
        (rng.pick(&w.rdp_hosts).clone(), 3389, "TCP")
    } else if r < 0.98 {
        ("10.0.10.40".to_string(), 80, "TCP")
    } else {
        (w.popular_external(rng).to_string(), *rng.pick(&[22, 993, 5222, 8443, 1194]), "TCP")
    };
    let sip = if dport == 3389 { cast::ADMIN.to_string() } else { sip };
    let small = proto == "UDP";
    let ipkt = if small { 1 } else { rng.lognormal(2.5, 1.0).clamp(1.0, 5000.0) as i64 };
    let ibyt = ipkt * if small { rng.range(60, 120) as i64 } else { rng.range(60, 900) as i64 };
    let opkt = if small { 1 } else { (ipkt as f64 * (0.5 + rng.unit())) as i64 + 1 };
    let obyt = opkt * if small { rng.range(80, 400) as i64 } else { rng.range(60, 1400) as i64 };
    Flow {
        t,
        sip,
        dip,
        sport: rng.range(49152, 65535) as i32,
        dport,
        proto,
        flag: if small { "......" } else { ".AP.SF" },
        ipkt,
        ibyt,
        opkt,
        obyt,
        tdur: if small { 0.01 } else { rng.lognormal(0.5, 1.2).min(3600.0) },
    }
}

/// Apache Spot's flow schema (the standard `flows`).
pub fn flows_schema() -> SchemaRef {
    crate::catalog::standard::FLOWS.schema(false)
}

fn flows_batch(schema: &SchemaRef, rows: &[Flow]) -> Result<RecordBatch> {
    let times: Vec<DateTime<Utc>> =
        rows.iter().map(|f| Utc.timestamp_micros(f.t).single().unwrap_or_default()).collect();
    let part = |f: &dyn Fn(&DateTime<Utc>) -> u32| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(times.iter().map(|t| f(t) as i32)))
    };
    let i32c = |f: &dyn Fn(&Flow) -> i32| -> ArrayRef { Arc::new(Int32Array::from_iter_values(rows.iter().map(f))) };
    let i64c = |f: &dyn Fn(&Flow) -> i64| -> ArrayRef { Arc::new(Int64Array::from_iter_values(rows.iter().map(f))) };
    let strc = |f: &dyn Fn(&Flow) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|f| f.t)).with_timezone("UTC")),
        part(&|t| t.year() as u32),
        part(&|t| t.month()),
        part(&|t| t.day()),
        part(&|t| t.hour()),
        part(&|t| t.minute()),
        part(&|t| t.second()),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|f| (f.tdur * 1000.0).round() / 1000.0))),
        strc(&|f| &f.sip),
        strc(&|f| &f.dip),
        i32c(&|f| f.sport),
        i32c(&|f| f.dport),
        strc(&|f| f.proto),
        strc(&|f| f.flag),
        i32c(&|_| 0),
        i32c(&|_| 0),
        i64c(&|f| f.ipkt),
        i64c(&|f| f.ibyt),
        i64c(&|f| f.opkt),
        i64c(&|f| f.obyt),
        i32c(&|_| 1),
        i32c(&|_| 2),
        i32c(&|_| 0),
        i32c(&|_| 0),
        i32c(&|_| 0),
        i32c(&|_| 0),
        strc(&|_| "10.0.0.1"),
    ];
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every incident lies whole inside the data, from the shortest span the demo makes (2
    /// hours) to a month, and spans of 6 hours and more keep their places by share.
    #[test]
    fn every_incident_lies_whole_inside_the_data_at_any_span() {
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).single().unwrap_or_default();
        for hours in [2, 3, 4, 5, 6, 24, 48, 168, 720] {
            let end = start + Duration::hours(i64::from(hours));
            let list = incidents(start, hours);
            for i in list.as_array().into_iter().flatten() {
                for key in ["from", "to"] {
                    let Some(at) = i[key].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
                        continue;
                    };
                    assert!(at >= start && at <= end, "{hours} h: {} {key} {at} is outside {start} – {end}", i["what"]);
                }
            }
            // The proxy traffic before the exfiltration starts 10 minutes before its hour.
            assert!(incident_at(start, hours, 38, -10) >= start, "{hours} h");
            if hours >= 6 {
                assert_eq!(
                    incident_at(start, hours, 38, 0),
                    start + Duration::seconds(38 * 3600 * i64::from(hours) / 48)
                );
            }
        }
    }
}
