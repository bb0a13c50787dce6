//! SQL helpers registered as DataFusion functions: `ip_in`, `ip_to_int`, `int_to_ip`,
//! `ip_key` and `ip_from_key`, `is_private_ip`, `is_public_ip`, `one_of` for
//! multiple-choice parameters, `from_epoch` for logs that count seconds since 1970,
//! `registrable_domain` (a DNS name's domain by the public suffix list), and
//! `casebook_version()`, the version of the casebook that evaluates it (on a Ballista
//! cluster, an executor's: how a server checks that its cluster runs the same casebook);
//! and DataFusion's `date_trunc`, faster on UTC hours and days (`time.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    create_udf, lit, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use ipnet::IpNet;

use super::arrays::{finish, rows_of, to_strings};

/// Registers every casebook function on `ctx`, aggregates (`gap_stats`) included.
pub fn register(ctx: &SessionContext) {
    for f in all() {
        ctx.register_udf(f);
    }
    for f in super::aggregates::all() {
        ctx.register_udaf(f);
    }
}

/// Every casebook function, for registration and for documentation.
pub fn all() -> Vec<ScalarUDF> {
    use DataType::{Boolean, Int64, Utf8};
    let imm = Volatility::Immutable;
    vec![
        super::time::date_trunc(),
        ScalarUDF::from(IpIn { signature: Signature::exact(vec![Utf8, Utf8], imm) }),
        create_udf("ip_to_int", vec![Utf8], Int64, imm, Arc::new(ip_to_int)),
        create_udf("int_to_ip", vec![Int64], Utf8, imm, Arc::new(int_to_ip)),
        create_udf("ip_key", vec![Utf8], DataType::FixedSizeBinary(16), imm, Arc::new(ip_key)),
        create_udf("ip_from_key", vec![DataType::FixedSizeBinary(16)], Utf8, imm, Arc::new(ip_from_key)),
        create_udf("is_private_ip", vec![Utf8], Boolean, imm, Arc::new(|a: &[ColumnarValue]| ip_test(a, is_private))),
        create_udf("is_public_ip", vec![Utf8], Boolean, imm, Arc::new(|a: &[ColumnarValue]| ip_test(a, is_public))),
        create_udf("one_of", vec![Utf8, Utf8], Boolean, imm, Arc::new(one_of)),
        create_udf("from_epoch", vec![DataType::Float64], utc_micros(), imm, Arc::new(from_epoch)),
        create_udf("registrable_domain", vec![Utf8], Utf8, imm, Arc::new(super::domains::registrable_domain)),
        // Volatile: evaluated where the query runs, never folded by the planner that sent it.
        create_udf("casebook_version", vec![], Utf8, Volatility::Volatile, Arc::new(casebook_version)),
    ]
}

/// A parsed `ip_list`: addresses and networks, IPv4 and IPv6.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpList(pub Vec<IpNet>);

impl IpList {
    /// Parses `10.0.0.1, 10.1.0.0/16, 2001:db8::/32`. An empty string is an empty list.
    /// Every bad entry is reported, by position, in one message.
    pub fn parse(s: &str) -> std::result::Result<IpList, String> {
        let mut nets = Vec::new();
        let mut bad = Vec::new();
        for part in s.split([',', '\n']).map(str::trim).filter(|p| !p.is_empty()) {
            match parse_net(part) {
                Some(n) => nets.push(n),
                None => bad.push(part.to_string()),
            }
        }
        if bad.is_empty() {
            Ok(IpList(nets))
        } else {
            let shown: Vec<String> = bad.iter().take(5).map(|b| format!("`{}`", truncate(b, 40))).collect();
            Err(format!(
                "not an IP address or CIDR: {}{}",
                shown.join(", "),
                if bad.len() > 5 { format!(" and {} more", bad.len() - 5) } else { String::new() }
            ))
        }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The canonical text form bound into SQL (`a,b/24`).
    pub fn canonical(&self) -> String {
        self.0
            .iter()
            .map(|n| if n.prefix_len() == n.max_prefix_len() { n.addr().to_string() } else { n.to_string() })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        // Accept host bits set (10.0.0.5/24) as analysts write it; keep the network.
        s.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || {
                let o = v4.octets();
                o[0] == 100 && (o[1] & 0xC0) == 64 // 100.64.0.0/10, carrier-grade NAT
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

fn is_public(ip: &IpAddr) -> bool {
    if is_private(ip) || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_broadcast() && v4.octets()[0] != 0 && v4.octets()[0] < 240,
        IpAddr::V6(_) => true,
    }
}

fn scalar_list(v: &ColumnarValue) -> Option<Result<IpList>> {
    match v {
        ColumnarValue::Scalar(s) => {
            let text = match s {
                ScalarValue::Utf8(t) | ScalarValue::LargeUtf8(t) | ScalarValue::Utf8View(t) => t.clone(),
                _ => return Some(Err(DataFusionError::Plan("ip_in expects a text list".into()))),
            };
            Some(
                IpList::parse(text.as_deref().unwrap_or(""))
                    .map_err(|e| DataFusionError::Execution(format!("ip_in: {e}"))),
            )
        }
        ColumnarValue::Array(_) => None,
    }
}

/// A list compiled for matching many addresses: single addresses by their written forms
/// ([`written_forms`]), networks by parsing.
struct Matcher {
    /// The written forms of the list's single addresses.
    single: std::collections::HashSet<String>,
    networks: IpList,
}

impl Matcher {
    fn new(list: IpList) -> Matcher {
        let (single, networks): (Vec<IpNet>, Vec<IpNet>) =
            list.0.into_iter().partition(|n| n.prefix_len() == n.max_prefix_len());
        Matcher { single: written_forms(&single).into_iter().collect(), networks: IpList(networks) }
    }

    fn matches(&self, text: &str) -> bool {
        if self.single.contains(text) {
            return true;
        }
        !self.networks.0.is_empty() && text.trim().parse::<IpAddr>().is_ok_and(|a| self.networks.contains(&a))
    }
}

/// How a single address of an `ip_list` is found in a column: by its text as flow, DNS and
/// proxy logs write it — IPv4 in dotted decimal (the one form Rust's parser accepts: no
/// leading zeros, no short forms), IPv6 as RFC 5952 writes it, in lowercase and in
/// uppercase. Comparing text is what lets the planner turn `ip_in(sip, '10.0.0.1')` into
/// `sip IN ('10.0.0.1')` and skip row groups on their statistics and bloom filters. A network
/// (`10.0.0.0/8`) matches any text that parses to an address inside it.
fn written_forms(nets: &[IpNet]) -> Vec<String> {
    let mut forms = Vec::new();
    for n in nets {
        let text = n.addr().to_string();
        let upper = text.to_uppercase();
        if upper != text {
            forms.push(upper);
        }
        forms.push(text);
    }
    forms.sort();
    forms.dedup();
    forms
}

/// `ip_in` as a function the planner can rewrite: over a list of single addresses, known when
/// the query is planned (a bound parameter, a literal), it becomes `ip IN (their written
/// forms)`, which DataFusion evaluates without casebook's code and which Parquet's row-group
/// statistics and bloom filters prune on. Lists with networks stay `ip_in`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IpIn {
    signature: Signature,
}

impl ScalarUDFImpl for IpIn {
    fn name(&self) -> &str {
        "ip_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        ip_in(&args.args)
    }

    fn simplify(&self, args: Vec<Expr>, _: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let [ip, Expr::Literal(
            ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) | ScalarValue::Utf8View(Some(t)),
            _,
        )] = args.as_slice()
        else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        // A list that does not parse is left to fail, with its message, when evaluated.
        let single = IpList::parse(t)
            .ok()
            .filter(|l| !l.0.is_empty() && l.0.iter().all(|n| n.prefix_len() == n.max_prefix_len()));
        let Some(single) = single else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        let forms = written_forms(&single.0).into_iter().map(lit).collect();
        Ok(ExprSimplifyResult::Simplified(Expr::InList(InList::new(Box::new(ip.clone()), forms, false))))
    }
}

/// `ip_in(ip, list)`: true when `ip` is one of the addresses or inside one of the networks.
fn ip_in(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let [ip, list] = args else {
        return Err(DataFusionError::Plan("ip_in takes two arguments: ip_in(ip, list)".into()));
    };
    let rows = rows_of(args);
    let ips = to_strings(ip, rows)?;
    let out: BooleanArray = match scalar_list(list) {
        Some(parsed) => {
            let matcher = Matcher::new(parsed?);
            ips.iter().map(|v| v.map(|s| matcher.matches(s))).collect()
        }
        None => {
            let lists = to_strings(list, rows)?;
            ips.iter()
                .zip(lists.iter())
                .map(|(v, l)| match (v, l) {
                    (Some(v), Some(l)) => Some(Matcher::new(IpList::parse(l).unwrap_or_default()).matches(v)),
                    _ => None,
                })
                .collect()
        }
    };
    finish(args, Arc::new(out))
}

fn ip_to_int(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let rows = rows_of(args);
    let ips = to_strings(&args[0], rows)?;
    let out: Int64Array = ips
        .iter()
        .map(|v| match v.and_then(|s| s.trim().parse::<IpAddr>().ok()) {
            Some(IpAddr::V4(a)) => Some(i64::from(u32::from(a))),
            _ => None,
        })
        .collect();
    finish(args, Arc::new(out))
}

/// An address as 16 bytes (IPv4 as its IPv4-mapped IPv6 form), exact for both families: one
/// key for every way a log writes the address. NULL for text that is not an address. (Not a
/// saving on text: grouping 10M flows by `sip, dip` text was faster and no larger.)
fn ip_key(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    use datafusion::arrow::array::FixedSizeBinaryBuilder;
    let rows = rows_of(args);
    let ips = to_strings(&args[0], rows)?;
    let mut out = FixedSizeBinaryBuilder::with_capacity(ips.len(), 16);
    for v in ips.iter() {
        let octets = match v.and_then(|s| s.trim().parse::<IpAddr>().ok()) {
            Some(IpAddr::V4(a)) => Some(a.to_ipv6_mapped().octets()),
            Some(IpAddr::V6(a)) => Some(a.octets()),
            None => None,
        };
        match octets {
            Some(o) => out.append_value(o)?,
            None => out.append_null(),
        }
    }
    finish(args, Arc::new(out.finish()))
}

/// The text of an [`ip_key`]: IPv4 addresses as dotted quads, IPv6 in its canonical form.
fn ip_from_key(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    use datafusion::arrow::array::FixedSizeBinaryArray;
    let rows = rows_of(args);
    let arr = args[0].to_array(rows)?;
    let keys = arr
        .as_any()
        .downcast_ref::<FixedSizeBinaryArray>()
        .ok_or_else(|| DataFusionError::Internal("expected ip_key values".into()))?;
    let out: StringArray = (0..keys.len())
        .map(|i| {
            if keys.is_null(i) {
                return None;
            }
            let b: [u8; 16] = keys.value(i).try_into().ok()?;
            Some(std::net::Ipv6Addr::from(b).to_canonical().to_string())
        })
        .collect();
    finish(args, Arc::new(out))
}

fn int_to_ip(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let rows = rows_of(args);
    let arr = args[0].to_array(rows)?;
    let arr = cast(&arr, &DataType::Int64)?;
    let ints = arr
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("expected integers".into()))?;
    let out: StringArray =
        ints.iter().map(|v| v.and_then(|n| u32::try_from(n).ok()).map(|n| Ipv4Addr::from(n).to_string())).collect();
    finish(args, Arc::new(out))
}

fn utc_micros() -> DataType {
    DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()))
}

/// Seconds since 1970 (Zeek's `ts`, epoch integers, `1700000000.123456`) as a UTC time,
/// rounded to the microsecond: exact for the 6 decimals logs write, where `to_timestamp` of
/// a float truncates nanoseconds that a double cannot hold and can land a microsecond early.
/// The version of this casebook binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn casebook_version(_: &[ColumnarValue]) -> Result<ColumnarValue> {
    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(VERSION.to_string()))))
}

fn from_epoch(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let rows = rows_of(args);
    let arr = cast(&args[0].to_array(rows)?, &DataType::Float64)?;
    let secs = arr
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Float64Array>()
        .ok_or_else(|| DataFusionError::Internal("expected numbers".into()))?;
    // ±9.2e12 s fits i64 microseconds; beyond that (or NaN) there is no time to give.
    let out: datafusion::arrow::array::TimestampMicrosecondArray = secs
        .iter()
        .map(|v| v.filter(|s| s.is_finite() && s.abs() < 9.0e12).map(|s| (s * 1_000_000.0).round() as i64))
        .collect();
    finish(args, Arc::new(out.with_timezone("UTC")))
}

fn ip_test(args: &[ColumnarValue], test: fn(&IpAddr) -> bool) -> Result<ColumnarValue> {
    let rows = rows_of(args);
    let ips = to_strings(&args[0], rows)?;
    let out: BooleanArray =
        ips.iter().map(|v| v.and_then(|s| s.trim().parse::<IpAddr>().ok()).map(|a| test(&a))).collect();
    finish(args, Arc::new(out))
}

/// `one_of(value, choices)`: true when `value` is one of the comma-separated `choices`
/// (how a multiple-choice parameter reaches SQL).
fn one_of(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let rows = rows_of(args);
    let vals = to_strings(&args[0], rows)?;
    let lists = to_strings(&args[1], rows)?;
    let out: BooleanArray = vals
        .iter()
        .zip(lists.iter())
        .map(|(v, l)| match (v, l) {
            (Some(v), Some(l)) => Some(l.split(',').any(|c| c == v)),
            _ => None,
        })
        .collect();
    finish(args, Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_keys_group_v4_and_v6_exactly_and_read_back_as_text() {
        let ctx = crate::sql::session::new_session();
        let sql = "SELECT ip_from_key(ip_key(ip)) AS back, count(*) AS n FROM (VALUES ('10.0.0.1'), ('10.0.0.1'), \
                   ('2001:db8::1'), ('2001:db8::2'), ('::ffff:10.0.0.1'), ('not an ip')) AS t(ip) \
                   GROUP BY ip_key(ip) ORDER BY back";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        let rows: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            rows,
            ["| back | n |", "| 10.0.0.1 | 3 |", "| 2001:db8::1 | 1 |", "| 2001:db8::2 | 1 |", "| | 1 |"],
            "{text}"
        );
    }

    #[test]
    fn ip_lists_parse_v4_v6_and_cidrs() {
        let l = IpList::parse(" 10.0.0.1, 192.168.0.0/16,2001:db8::/32 ,, ").unwrap();
        assert_eq!(l.0.len(), 3);
        assert_eq!(l.canonical(), "10.0.0.1,192.168.0.0/16,2001:db8::/32");
        assert!(l.contains(&"192.168.44.3".parse().unwrap()));
        assert!(l.contains(&"2001:db8::1".parse().unwrap()));
        assert!(!l.contains(&"10.0.0.2".parse().unwrap()));
        assert_eq!(IpList::parse("10.0.0.9/24").unwrap().canonical(), "10.0.0.0/24");
    }

    const LISTS: [&str; 6] = [
        "10.0.0.1",
        "10.0.0.1, 192.168.0.0/16",
        "2001:db8::1",
        "10.0.0.1,2001:db8::/32,0.0.0.0",
        "",
        "2001:DB8::A, 10.0.0.2",
    ];
    const TEXTS: [&str; 20] = [
        "10.0.0.1",
        " 10.0.0.1 ",
        "010.0.0.1",
        "10.0.0.01",
        "10.0.0.1.",
        "10.0.0.1:80",
        "10.0.0.1/32",
        "10.0.1",
        "10.0.0.2",
        "192.168.3.4",
        " 192.168.3.4",
        "2001:db8::1",
        "2001:DB8::1",
        "2001:db8::a",
        "2001:DB8:0::1",
        "::ffff:10.0.0.1",
        "0.0.0.0",
        "",
        "fish",
        "１0.0.0.1",
    ];

    /// A single address matches its written forms, a network any text that parses inside it;
    /// an IPv4 address has one form that parses, so for IPv4 this is what parsing gives.
    #[test]
    fn single_addresses_match_their_written_forms_and_networks_what_parses_inside() {
        for l in LISTS {
            let list = IpList::parse(l).unwrap();
            let matcher = Matcher::new(list.clone());
            for t in TEXTS {
                let parsed = t.trim().parse::<IpAddr>().ok();
                let expected = parsed.is_some_and(|a| {
                    list.0.iter().any(|n| {
                        if n.prefix_len() == n.max_prefix_len() {
                            n.addr() == a && (t == a.to_string() || t == a.to_string().to_uppercase())
                        } else {
                            n.contains(&a)
                        }
                    })
                });
                assert_eq!(matcher.matches(t), expected, "ip_in({t:?}, {l:?})");
                if let Some(IpAddr::V4(_)) = parsed.filter(|_| !t.contains(' ')) {
                    assert_eq!(matcher.matches(t), list.contains(&parsed.unwrap()), "IPv4 {t:?} in {l:?}");
                }
            }
        }
    }

    /// The planner's rewrite of `ip_in` over single addresses (`ip IN (…)`) answers what the
    /// function answers, and shows in the plan (as `ip = …` when the list is short); a list
    /// with a network stays `ip_in`.
    #[tokio::test]
    async fn the_planners_rewrite_gives_the_functions_answers() {
        let ctx = crate::sql::session::new_session();
        let values: Vec<String> = TEXTS.iter().map(|t| format!("('{t}')")).collect();
        let table = format!("(VALUES {}, (NULL)) AS t(ip)", values.join(", "));
        for l in LISTS {
            let sql = format!("SELECT ip, ip_in(ip, $l) AS hit FROM {table}");
            let frame =
                ctx.sql(&sql).await.unwrap().with_param_values(vec![("l", ScalarValue::Utf8(Some(l.into())))]).unwrap();
            let plan = format!("{}", frame.clone().into_optimized_plan().unwrap().display_indent());
            let single = !l.is_empty() && !l.contains('/');
            assert_eq!(!plan.contains("ip_in("), single, "{l:?}: {plan}");
            let batches = frame.collect().await.unwrap();
            let matcher = Matcher::new(IpList::parse(l).unwrap());
            for b in &batches {
                let ips = to_strings(&ColumnarValue::Array(Arc::clone(b.column(0))), b.num_rows()).unwrap();
                let hits = b.column(1).as_any().downcast_ref::<BooleanArray>().unwrap();
                for i in 0..b.num_rows() {
                    let expected = (!ips.is_null(i)).then(|| matcher.matches(ips.value(i)));
                    assert_eq!(hits.is_valid(i).then(|| hits.value(i)), expected, "ip_in({:?}, {l:?})", ips.value(i));
                }
            }
        }
    }

    #[test]
    fn bad_entries_are_all_named() {
        let e = IpList::parse("10.0.0.1, 10.0.0.256, fish, 10.0.0.0/33").unwrap_err();
        assert_eq!(e, "not an IP address or CIDR: `10.0.0.256`, `fish`, `10.0.0.0/33`");
    }

    #[tokio::test]
    async fn functions_work_in_sql() {
        let ctx = SessionContext::new();
        register(&ctx);
        let sql = "SELECT ip_in('10.0.0.5', '10.0.0.0/8') AS a, ip_in('10.1.0.5', '10.0.0.0/16, 192.168.1.1') AS b,
                   ip_in('2001:db8::1', '2001:db8::/32') AS c, ip_to_int('10.0.0.1') AS d, int_to_ip(167772161) AS e,
                   is_private_ip('8.8.8.8') AS f, is_public_ip('8.8.8.8') AS g, ip_in('not-an-ip', '10.0.0.0/8') AS h,
                   one_of('b', 'a,b,c') AS i, one_of('d', 'a,b,c') AS j";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        let expected = "\
+------+-------+------+-----------+----------+-------+------+-------+------+-------+
| a    | b     | c    | d         | e        | f     | g    | h     | i    | j     |
+------+-------+------+-----------+----------+-------+------+-------+------+-------+
| true | false | true | 167772161 | 10.0.0.1 | false | true | false | true | false |
+------+-------+------+-----------+----------+-------+------+-------+------+-------+";
        assert_eq!(text, expected);
        // Over a column, with the list bound as a parameter.
        let batches = ctx
            .sql("SELECT count(*) AS n FROM (VALUES ('10.0.0.1'), ('10.0.1.1'), ('fe80::1'), (NULL)) t(ip) WHERE ip_in(ip, $l)")
            .await
            .unwrap()
            .with_param_values(vec![("l", ScalarValue::Utf8(Some("10.0.0.0/24,fe80::/10".into())))])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| 2 |"), "{text}");
    }

    #[test]
    fn private_and_public() {
        for p in ["10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "100.64.1.1", "fd00::1", "fe80::1"] {
            assert!(is_private(&p.parse().unwrap()), "{p}");
        }
        for p in ["8.8.8.8", "198.51.100.23", "2001:4860::8888"] {
            assert!(is_public(&p.parse().unwrap()), "{p}");
        }
        assert!(!is_public(&"224.0.0.1".parse().unwrap()));
        assert!(!is_public(&"0.0.0.0".parse().unwrap()));
    }
}
