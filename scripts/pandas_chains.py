#!/usr/bin/env python3
"""The heavy step of shipped playbooks as an analyst writes it in a notebook: pandas over the
same Parquet files, read with pyarrow filters (the time window, and the address where there is
one), with the values casebook bound (from a `casebook run --trace`). Run by scripts/bench.py
in a child process of its own (wall time, peak RSS); prints one JSON line: the step, its
seconds (reading and computing, not Python's start) and, with --compare (a run of its own,
not timed), whether its table equals casebook's.

Each chain computes the step's table as its SQL defines it, with pandas' own idioms (groupby,
transform, diff); the check compares it with casebook's Parquet file of that step as a
multiset of rows (floats to 9 significant digits, times to the microsecond).
"""

import ipaddress
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from bench import registrable_domain

CHAINS = {}


def chain(playbook, step, chunked=False):
    """A chunked step (`chunks: { over: window, by: 1d }`) gets the values of every chunk,
    in order, and returns the union of its chunks' tables, as casebook stores it."""
    def put(f):
        CHAINS[playbook] = (step, f, chunked)
        return f
    return put


def when(p, name):
    """A bound time as pandas compares it (UTC, microseconds)."""
    return pd.Timestamp(p[name]["value"], unit="us", tz="UTC")


def read(data, folder, columns, filt):
    d = ds.dataset(Path(data) / "demo" / folder, format="parquet", partitioning="hive")
    return d.to_table(columns=columns, filter=filt).to_pandas()


def window(p, column):
    f = ds.field(column)
    return (f >= when(p, "window_start")) & (f < when(p, "window_end"))


def addresses(text):
    return [a.strip() for a in (text or "").split(",") if a.strip()]


def private(text):
    """casebook's is_private_ip: RFC 1918, loopback, link-local, carrier-grade NAT; IPv6
    loopback, unique local and link-local."""
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return False
    nets = PRIVATE4 if a.version == 4 else PRIVATE6
    return any(a in n for n in nets)


def public(text):
    """casebook's is_public_ip: parses, not private, unspecified, multicast or (IPv4)
    broadcast, 0/8 or 240/4."""
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return False
    if private(text) or a.is_unspecified or a.is_multicast:
        return False
    if a.version == 4:
        first = int(a) >> 24
        return str(a) != "255.255.255.255" and first != 0 and first < 240
    return True


PRIVATE4 = [ipaddress.ip_network(n) for n in
            ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"]]
PRIVATE6 = [ipaddress.ip_network(n) for n in ["::1/128", "fc00::/7", "fe80::/10"]]


def each_unique(s, f):
    """A test of one address, run once per distinct value of the column (a notebook's map)."""
    return s.map({v: f(v) for v in s.dropna().unique()}).fillna(False).astype(bool)


def micros(s):
    """Times as integer microseconds since 1970, whatever unit pandas holds them in."""
    return s.dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype("int64")


def half_up(x, digits):
    """SQL's round (half away from zero), not pandas' (half to even)."""
    m = 10.0 ** digits
    return np.sign(x) * np.floor(np.abs(x) * m + 0.5) / m


@chain("ip_flows", "flows")
def ip_flows(data, p):
    cols = ["treceived", "sip", "sport", "dip", "dport", "proto", "flag", "ipkt", "ibyt", "opkt", "obyt", "tdur",
            "input", "output", "stos", "dtos", "dir", "rip"]
    filt = window(p, "treceived") & ds.field("sip").isin(addresses(p["src"]["value"]))
    if p.get("dst", {}).get("value"):
        filt = filt & ds.field("dip").isin(addresses(p["dst"]["value"]))
    df = read(data, "flows", cols, filt)
    return df.sort_values("treceived", kind="stable").head(int(p["limit"]["value"]))


@chain("threat_investigation", "peers")
def threat_investigation(data, p):
    ip = p["ip"]["value"]
    filt = window(p, "treceived") & ((ds.field("sip") == ip) | (ds.field("dip") == ip))
    f = read(data, "flows", ["treceived", "sip", "dip", "sport", "dport", "ibyt", "obyt", "ipkt", "opkt"], filt)
    out = f.sip == ip
    f = pd.DataFrame({
        "peer": np.where(out, f.dip, f.sip), "dir": np.where(out, "out", "in"),
        "port": np.where(out, f.dport, f.sport), "bytes": f.ibyt + f.obyt, "packets": f.ipkt + f.opkt,
        "treceived": f.treceived,
    })
    g = f.groupby("peer").agg(
        dmin=("dir", "min"), dmax=("dir", "max"), connections=("dir", "size"), bytes=("bytes", "sum"),
        max_bytes=("bytes", "max"), avg_bytes=("bytes", "mean"), max_packets=("packets", "max"),
        avg_packets=("packets", "mean"), ports=("port", "nunique"), lowest_port=("port", "min"),
        first_seen=("treceived", "min"), last_seen=("treceived", "max")).reset_index()
    g.insert(1, "direction", np.where(g.dmin != g.dmax, "two-way", np.where(g.dmin == "out", "outbound", "inbound")))
    g["avg_bytes"] = half_up(g.avg_bytes, 0)
    g["avg_packets"] = half_up(g.avg_packets, 1)
    return g.drop(columns=["dmin", "dmax"]).sort_values(["connections", "peer"], ascending=[False, True])


@chain("rdp_bruteforce", "attempts")
def rdp_bruteforce(data, p):
    port = int(p["port"]["value"])
    f = read(data, "flows", ["treceived", "sip", "dip", "ibyt"], window(p, "treceived") & (ds.field("dport") == port))
    f["minute"] = f.treceived.dt.floor("min")
    m = f.groupby(["sip", "dip", "minute"]).agg(c=("ibyt", "size"), first_seen=("treceived", "min"),
                                                  last_seen=("treceived", "max"), bytes_sent=("ibyt", "sum"))
    m = m.reset_index()
    g = m.groupby("sip").agg(connections=("c", "sum"), targets=("dip", "nunique"), peak_per_host_minute=("c", "max"),
                             active_minutes=("minute", "nunique"), first_seen=("first_seen", "min"),
                             last_seen=("last_seen", "max"), bytes_sent=("bytes_sent", "sum")).reset_index()
    g["per_active_minute"] = half_up(g.connections / g.active_minutes, 1)
    g = g[g.connections >= int(p["min_attempts"]["value"])].rename(columns={"sip": "source"})
    g = g.sort_values(["peak_per_host_minute", "per_active_minute", "source"], ascending=[False, False, True])
    cols = ["source", "connections", "targets", "peak_per_host_minute", "active_minutes", "per_active_minute",
            "first_seen", "last_seen", "bytes_sent"]
    return g[cols].head(int(p["top"]["value"]))


@chain("visited_domains", "names")
def visited_domains(data, p):
    filt = window(p, "frame_time") & ds.field("ip_dst").isin(addresses(p["ip"]["value"]))
    d = read(data, "dns", ["frame_time", "dns_qry_name"], filt)
    return d.groupby("dns_qry_name").agg(lookups=("frame_time", "size"), first_seen=("frame_time", "min"),
                                         last_seen=("frame_time", "max")).reset_index().rename(
        columns={"dns_qry_name": "name"})


@chain("suspicious_connects", "pairs")
def suspicious_connects(data, p):
    f = read(data, "flows", ["sip", "dip", "dport", "treceived", "ibyt", "obyt"], window(p, "treceived"))
    f = f.sort_values(["sip", "dip", "dport", "treceived"], kind="stable")
    us = micros(f.treceived).values
    same = (f.sip.values[1:] == f.sip.values[:-1]) & (f.dip.values[1:] == f.dip.values[:-1]) \
        & (f.dport.values[1:] == f.dport.values[:-1])
    gap = np.full(len(f), np.nan)
    gap[1:] = np.where(same, np.diff(us) / 1e6, np.nan)
    f["gap"] = gap
    f["silent"] = (f.obyt == 0).astype("int64")
    g = f.groupby(["sip", "dip", "dport"], sort=False).agg(
        connections=("ibyt", "size"), bytes_sent=("ibyt", "sum"), bytes_received=("obyt", "sum"),
        unanswered=("silent", "sum"), mean_gap=("gap", "mean"),
        first_seen=("treceived", "min"), last_seen=("treceived", "max"))
    g.insert(5, "gap_spread", f.groupby(["sip", "dip", "dport"], sort=False).gap.std(ddof=0))
    g = g.reset_index()
    g = g.rename(columns={"sip": "source", "dip": "destination", "dport": "port"})
    g["hour"] = g.first_seen.dt.hour.astype("int64")
    by = g.groupby(["source", "port"])
    g["peers_on_port"] = by.port.transform("size")
    g["silent_peers_on_port"] = (g.unanswered > 0).astype("int64").groupby([g.source, g.port]).transform("sum")
    g["clients_of_destination"] = g.groupby("destination").port.transform("size")
    g["volume"] = np.select([g.bytes_sent < 1_000_000, g.bytes_sent < 100_000_000], ["small", "medium"], "large")
    return g


@chain("beaconing", "pairs_per_day", chunked=True)
def beaconing(data, chunks):
    days = []
    for p in chunks:
        f = read(data, "flows", ["sip", "dip", "dport", "treceived"], window(p, "treceived"))
        f = f[each_unique(f.sip, private) & each_unique(f.dip, public)]
        f = f.sort_values(["sip", "dip", "dport", "treceived"], kind="stable")
        us = micros(f.treceived).values
        same = (f.sip.values[1:] == f.sip.values[:-1]) & (f.dip.values[1:] == f.dip.values[:-1]) \
            & (f.dport.values[1:] == f.dport.values[:-1])
        gap = np.full(len(f), np.nan)
        gap[1:] = np.where(same, np.diff(us) / 1e6, np.nan)
        f = f.assign(gap=gap, gap2=gap * gap)
        g = f.groupby(["sip", "dip", "dport"], sort=False).agg(
            connections=("treceived", "size"), gaps=("gap", "count"), gap_sum=("gap", "sum"),
            gap_squares=("gap2", "sum"), first_seen=("treceived", "min"), last_seen=("treceived", "max"))
        g = g[g.connections >= 3].reset_index()
        days.append(g.rename(columns={"sip": "source", "dip": "destination", "dport": "port"}))
    return pd.concat(days, ignore_index=True)


@chain("suspicious_dns", "lookups")
def suspicious_dns(data, p):
    q = read(data, "dns", ["ip_dst", "dns_qry_name", "dns_qry_type", "frame_time"], window(p, "frame_time"))
    q = pd.DataFrame({"client": q.ip_dst, "name": q.dns_qry_name,
                      "domain": q.dns_qry_name.map(registrable_domain(q.dns_qry_name.dropna().unique())),
                      "qtype": q.dns_qry_type, "frame_time": q.frame_time})
    q["txt"] = (q.qtype == 16).astype("int64")
    names = q.groupby(["client", "domain", "name"], dropna=False, sort=False).agg(
        n=("qtype", "size"), txt=("txt", "sum"), qtype=("qtype", "max"),
        first_seen=("frame_time", "min"), last_seen=("frame_time", "max")).reset_index()
    names["len"] = names.name.str.len()
    names["nlen"] = names.n * names.len
    names["counted"] = names.n.where(names.len.notna())
    per = names.groupby(["client", "domain"], dropna=False, sort=False).agg(
        queries=("n", "sum"), unique_names=("name", "count"), nlen=("nlen", "sum"), counted=("counted", "sum"),
        txt=("txt", "sum"), first_seen=("first_seen", "min"), last_seen=("last_seen", "max"),
        qtype=("qtype", "max")).reset_index()
    mean = per.nlen / per.counted
    per["mean_name_length"] = half_up(mean, 1)
    per["txt_share"] = half_up(per.txt / per.queries, 2)
    per["name_length"] = np.select([mean < 20, mean < 40], ["short", "medium"], "long")
    per["main_type"] = per.qtype.astype("int64").astype(str)
    per["clients_of_domain"] = per.groupby("domain", dropna=False).client.transform("size")
    return per.drop(columns=["nlen", "counted", "txt", "qtype"])


def normalised(df):
    out = pd.DataFrame(index=range(len(df)))
    for c in df.columns:
        s = df[c].reset_index(drop=True)
        if pd.api.types.is_datetime64_any_dtype(s):
            out[c] = micros(s if s.dt.tz is not None else s.dt.tz_localize("UTC"))
        elif pd.api.types.is_float_dtype(s):
            x = s.astype("float64")
            digits = (8 - np.floor(np.log10(np.abs(x.where(x != 0, 1.0))))).fillna(0).astype(int)
            out[c] = [None if pd.isna(v) else f"{round(v, d):.9g}" for v, d in zip(x, digits)]
        else:
            out[c] = s.astype("string").astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v))
    return out


def same_rows(mine, file):
    theirs = pd.read_parquet(file)
    missing = [c for c in theirs.columns if c not in mine.columns]
    if missing:
        return f"pandas has no column {', '.join(missing)}"
    a, b = normalised(mine[list(theirs.columns)]), normalised(theirs)
    if len(a) != len(b):
        return f"{len(a)} rows in pandas, {len(b)} in casebook"
    key = lambda df: sorted(tuple("\0" if v is None else str(v) for v in row) for row in df.itertuples(index=False))
    ka, kb = key(a), key(b)
    if ka == kb:
        return None
    diff = next(i for i, (x, y) in enumerate(zip(ka, kb)) if x != y)
    found = f"rows differ (first: pandas {ka[diff]} vs casebook {kb[diff]})"
    # As bench.py does for DuckDB: equal but for floats beyond 9 significant digits (a sum
    # of gaps against the span they add up to) is said so, apart from a real difference.
    exact = [c for c in theirs.columns if not pd.api.types.is_float_dtype(theirs[c])]
    if exact and len(exact) < len(theirs.columns) and key(a[exact]) == key(b[exact]):
        return "floats: " + found
    return found


def main():
    trace, data = sys.argv[1], sys.argv[2]
    lines = [json.loads(x) for x in Path(trace).read_text().splitlines() if x.strip()]
    playbook = sys.argv[3]
    if playbook not in CHAINS:
        print(json.dumps({"skipped": True}))
        return
    step, f, chunked = CHAINS[playbook]
    params = [x["params"] for x in lines if x.get("step") == step and "sql" in x]
    start = time.perf_counter()
    table = f(data, params if chunked else params[0])
    seconds = time.perf_counter() - start
    done = next(x for x in lines if x.get("done") == step)
    differ = same_rows(table, done["file"]) if "--compare" in sys.argv[4:] else None
    print(json.dumps({"step": step, "s": seconds, "rows": len(table), "differ": differ}))


if __name__ == "__main__":
    main()
