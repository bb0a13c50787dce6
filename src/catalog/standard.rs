//! The standard schemas casebook's playbooks read: Apache Spot's flows, DNS and proxy, and
//! the Windows event log. A connector says which one it `provides:`; its `columns:` map each
//! standard column onto the source (see [`super::mapping`]), and the demo writes exactly these.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A column's type, in a connector author's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Time,
    Text,
    Int32,
    Int64,
    Float,
}

impl Kind {
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Text => DataType::Utf8,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float => DataType::Float64,
        }
    }
}

/// One standard schema.
#[derive(Debug)]
pub struct Standard {
    pub name: &'static str,
    pub what: &'static str,
    /// The column a time window filters on.
    pub time_column: &'static str,
    /// The columns searched for one value (an address, a name): they get bloom filters
    /// when casebook writes the data (the demo, `casebook compact`).
    pub bloom: &'static [&'static str],
    /// The column each hour's rows are sorted by before time, when one value of it is what
    /// most searches ask for (DNS: the client). Its rows then sit together in a few pages,
    /// which the page index lets a one-value search read alone; the hour folders still
    /// narrow a time window.
    pub cluster: Option<&'static str>,
    pub columns: &'static [(&'static str, Kind)],
}

impl Standard {
    /// The schema as Arrow fields; `nullable` false for data casebook writes itself.
    pub fn schema(&self, nullable: bool) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(|(n, k)| Field::new(*n, k.data_type(), nullable)).collect::<Vec<_>>(),
        ))
    }

    pub fn kind_of(&self, column: &str) -> Option<Kind> {
        self.columns.iter().find(|(n, _)| *n == column).map(|(_, k)| *k)
    }
}

use Kind::{Float, Int32, Int64, Text, Time};

/// NetFlow/IPFIX records in Apache Spot's flow schema.
pub const FLOWS: Standard = Standard {
    name: "flows",
    what: "network flows (Apache Spot's flow schema)",
    time_column: "treceived",
    bloom: &["sip", "dip"],
    cluster: None,
    columns: &[
        ("treceived", Time),
        ("tryear", Int32),
        ("trmonth", Int32),
        ("trday", Int32),
        ("trhour", Int32),
        ("trminute", Int32),
        ("trsec", Int32),
        ("tdur", Float),
        ("sip", Text),
        ("dip", Text),
        ("sport", Int32),
        ("dport", Int32),
        ("proto", Text),
        ("flag", Text),
        ("fwd", Int32),
        ("stos", Int32),
        ("ipkt", Int64),
        ("ibyt", Int64),
        ("opkt", Int64),
        ("obyt", Int64),
        ("input", Int32),
        ("output", Int32),
        ("sas", Int32),
        ("das", Int32),
        ("dtos", Int32),
        ("dir", Int32),
        ("rip", Text),
    ],
};

/// DNS answers in Apache Spot's DNS schema: `ip_dst` is the client (Spot reads resolver
/// answers), `ip_src` the resolver.
pub const DNS: Standard = Standard {
    name: "dns",
    what: "DNS answers (Apache Spot's DNS schema; ip_dst is the client)",
    time_column: "frame_time",
    bloom: &["ip_dst", "dns_qry_name"],
    cluster: Some("ip_dst"),
    columns: &[
        ("frame_time", Time),
        ("unix_tstamp", Int64),
        ("frame_len", Int32),
        ("ip_dst", Text),
        ("ip_src", Text),
        ("dns_qry_name", Text),
        ("dns_qry_class", Text),
        ("dns_qry_type", Int32),
        ("dns_qry_rcode", Int32),
        ("dns_a", Text),
    ],
};

/// Web proxy requests in Apache Spot's proxy schema, plus `p_ts` (the request time).
pub const PROXY: Standard = Standard {
    name: "proxy",
    what: "web proxy requests (Apache Spot's proxy schema, plus p_ts)",
    time_column: "p_ts",
    bloom: &["clientip", "host"],
    cluster: None,
    columns: &[
        ("p_ts", Time),
        ("p_date", Text),
        ("p_time", Text),
        ("clientip", Text),
        ("host", Text),
        ("reqmethod", Text),
        ("useragent", Text),
        ("resconttype", Text),
        ("duration", Int32),
        ("username", Text),
        ("webcat", Text),
        ("referer", Text),
        ("respcode", Int32),
        ("uriport", Int32),
        ("uripath", Text),
        ("uriquery", Text),
        ("serverip", Text),
        ("scbytes", Int64),
        ("csbytes", Int64),
        ("fulluri", Text),
    ],
};

/// A Sysmon-like Windows event log (Security, System and Sysmon channels).
pub const EVENTS: Standard = Standard {
    name: "events",
    what: "Windows event log (Security, System and Sysmon channels)",
    time_column: "timestamp",
    bloom: &["computer", "src_ip"],
    cluster: None,
    columns: &[
        ("timestamp", Time),
        ("computer", Text),
        ("event_id", Int64),
        ("channel", Text),
        ("user", Text),
        ("logon_type", Int64),
        ("src_ip", Text),
        ("image", Text),
        ("parent_image", Text),
        ("command_line", Text),
        ("dst_ip", Text),
        ("dst_port", Int64),
        ("image_loaded", Text),
        ("target_filename", Text),
        ("target_object", Text),
        ("service_name", Text),
    ],
};

/// Every standard schema.
pub const ALL: [&Standard; 4] = [&FLOWS, &DNS, &PROXY, &EVENTS];

pub fn find(name: &str) -> Option<&'static Standard> {
    ALL.into_iter().find(|s| s.name == name)
}
