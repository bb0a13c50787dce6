#!/usr/bin/env python3
"""casebook against DuckDB, side by side, on the same files (run through scripts/bench.sh).

For each shipped playbook, with the parameters of its first self-test:
  * casebook: `casebook run` end to end (process start, catalog, every step, the tables a page
    shows stored), timed over --runs runs; its peak RSS; the time of its SQL steps alone; what
    its scans read (files, row groups and rows, pruned and read), from `casebook run --trace`.
  * DuckDB: the same SQL chain, replayed from the trace of one more casebook run (untimed,
    with --keep-hidden: every step's table stored) with the same bound values: each step's SQL
    as a temporary table the later steps read, the tables of steps casebook computes itself
    (enrich) loaded from casebook's own results. Timed in a child process of its own (peak
    RSS), 2 threads.
  * The check: every step table DuckDB made equals casebook's, row for row (as multisets;
    floats to 9 significant digits, times to the microsecond).

Prints a Markdown table and the command lines that reproduce it.
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# casebook's SQL functions, as DuckDB macros over the same text values, written for speed:
# addresses are compared as text (the data holds them in canonical form), private and public
# ranges by prefix, networks in ip_in as IPv4 CIDRs. (DuckDB's inet extension would be
# downloaded at run time; closed networks cannot.)
MACROS = r"""
CREATE OR REPLACE MACRO cb_ip4(ip) AS CASE WHEN regexp_full_match(ip, '\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}') THEN
  CAST(split_part(ip, '.', 1) AS BIGINT) * 16777216 + CAST(split_part(ip, '.', 2) AS BIGINT) * 65536
  + CAST(split_part(ip, '.', 3) AS BIGINT) * 256 + CAST(split_part(ip, '.', 4) AS BIGINT) END;
CREATE OR REPLACE MACRO cb_in_net(ip, net) AS CASE WHEN strpos(net, '/') = 0 THEN ip = net
  ELSE cb_ip4(ip) // CAST(pow(2, 32 - CAST(split_part(net, '/', 2) AS INT)) AS BIGINT)
     = cb_ip4(split_part(net, '/', 1)) // CAST(pow(2, 32 - CAST(split_part(net, '/', 2) AS INT)) AS BIGINT) END;
CREATE OR REPLACE MACRO ip_in(ip, list) AS CASE WHEN strpos(list, '/') = 0
  THEN list_contains(string_split(replace(list, ' ', ''), ','), ip)
  ELSE list_bool_or(list_transform(string_split(list, ','), lambda n: cb_in_net(ip, trim(n)))) END;
CREATE OR REPLACE MACRO cb_octet(ip, i) AS TRY_CAST(split_part(ip, '.', i) AS INTEGER);
CREATE OR REPLACE MACRO is_private_ip(ip) AS CASE
  WHEN strpos(ip, ':') > 0 THEN lower(ip) = '::1' OR starts_with(lower(ip), 'fc') OR starts_with(lower(ip), 'fd')
    OR starts_with(lower(ip), 'fe8') OR starts_with(lower(ip), 'fe9') OR starts_with(lower(ip), 'fea')
    OR starts_with(lower(ip), 'feb')
  ELSE starts_with(ip, '10.') OR starts_with(ip, '192.168.') OR starts_with(ip, '127.') OR starts_with(ip, '169.254.')
    OR (starts_with(ip, '172.') AND cb_octet(ip, 2) BETWEEN 16 AND 31)
    OR (starts_with(ip, '100.') AND cb_octet(ip, 2) BETWEEN 64 AND 127)
  END;
CREATE OR REPLACE MACRO is_public_ip(ip) AS CASE
  WHEN strpos(ip, ':') > 0 THEN NOT is_private_ip(ip) AND lower(ip) <> '::' AND NOT starts_with(lower(ip), 'ff')
  ELSE NOT is_private_ip(ip) AND cb_octet(ip, 1) BETWEEN 1 AND 223
  END;
CREATE OR REPLACE MACRO one_of(v, list) AS list_contains(string_split(list, ','), v);
CREATE OR REPLACE MACRO ip_key(ip) AS ip;
CREATE OR REPLACE MACRO ip_from_key(k) AS k;
CREATE OR REPLACE MACRO from_epoch(x) AS to_timestamp(x);
CREATE OR REPLACE MACRO to_timestamp_seconds(x) AS to_timestamp(x);
CREATE OR REPLACE MACRO cb_gaps(s) AS list_transform(list_zip(s[2:], s[:-1]), lambda p: (p[1] - p[2]) / 1e6);
CREATE OR REPLACE MACRO cb_gap_struct(s, n) AS {'gaps': greatest(n - 1, 0),
  'gap_sum': coalesce(list_sum(cb_gaps(s)), 0.0),
  'gap_squares': coalesce(list_sum(list_transform(cb_gaps(s), lambda g: g * g)), 0.0),
  'mean_gap': list_avg(cb_gaps(s)), 'gap_spread': list_stddev_pop(cb_gaps(s))};
CREATE OR REPLACE MACRO get_field(s, name) AS struct_extract(s, name);
CREATE OR REPLACE MACRO gap_stats(t) AS
  cb_gap_struct(list_sort(list(epoch_us(t)) FILTER (WHERE t IS NOT NULL)), count(t));
"""

def registrable_domain(names):
    """casebook's registrable_domain: a name's domain by the public suffix list, lower-cased,
    without the root's dot; a name with none is its own domain. Shared with pandas_chains."""
    from publicsuffixlist import PublicSuffixList
    psl = registrable_domain.psl = getattr(registrable_domain, "psl", None) or PublicSuffixList()
    out = {}
    for n in names:
        if n is None or n in out:
            continue
        low = n.strip().rstrip(".").lower()
        out[n] = psl.privatesuffix(low) or low
    return out


def register_functions(con):
    """casebook's SQL functions that DuckDB's macros cannot express, as vectorised Python
    functions (each distinct value computed once per batch)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    def domains(arr):
        enc = pc.dictionary_encode(arr).combine_chunks() if isinstance(arr, pa.ChunkedArray) else pc.dictionary_encode(arr)
        uniq = enc.dictionary.to_pylist()
        found = registrable_domain(uniq)
        mapped = pa.array([None if u is None else found[u] for u in uniq], pa.string())
        return pc.take(mapped, enc.indices)

    con.create_function("registrable_domain", domains, [duckdb.sqltype("VARCHAR")], duckdb.sqltype("VARCHAR"),
                        type="arrow", side_effects=False)


TYPES = {"timestamp": "TIMESTAMPTZ", "string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE",
         "float": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE"}


def run_timed(cmd, stdout=subprocess.DEVNULL, env=None):
    """Runs cmd; its wall time in seconds, its peak RSS in bytes, its exit code."""
    start = time.perf_counter()
    with subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env) as p:
        err = p.stderr.read().decode(errors="replace") if p.stderr else ""
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss * 1024, p.returncode, err


def playbooks(only):
    import yaml
    out = []
    for f in sorted((ROOT / "playbooks").rglob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        tests = doc.get("tests") or [{}]
        params = tests[0].get("params") or {}
        if only and f.stem not in only:
            continue
        out.append((f.stem, params))
    return out


def param_args(params):
    args = []
    for k, v in params.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, list):
            v = ",".join(str(x) for x in v)
        args += ["-p", f"{k}={v}"]
    return args


# The demo's file layout (`LAYOUT` in src/demo/layout.rs; a test checks they agree): data laid
# out another way is made again.
LAYOUT = 3


def ensure_data(casebook, data, rows, hours, seed):
    """Generates the demo data into `data` unless the same was generated there, laid out the
    same way, in the last three days (the playbooks' windows are relative to now)."""
    marker = data / "bench.json"
    want = {"rows": rows, "hours": hours, "seed": seed, "layout": LAYOUT}
    if marker.exists() and json.loads(marker.read_text()) == want and time.time() - marker.stat().st_mtime < 3 * 86400:
        return
    print(f"generating {rows:,} flows over {hours} h (seed {seed}) into {data} …", file=sys.stderr)
    subprocess.run([casebook, "demo", "--rows", str(rows), "--hours", str(hours), "--seed", str(seed),
                    "--data", str(data)], check=True, stdout=subprocess.DEVNULL)
    marker.write_text(json.dumps(want))


def connector_views(data):
    """DuckDB views over the files casebook's shipped connectors read."""
    import yaml
    views = []
    for f in sorted((ROOT / "connectors").glob("*.yaml")):
        c = yaml.safe_load(f.read_text())
        if c.get("kind") or "path" not in c:
            continue
        path = data / c["path"]
        fmt = c.get("format", "parquet")
        hive = "true" if c.get("partitions") else "false"
        if fmt == "parquet":
            glob = f"{path}/**/*.parquet" if path.is_dir() else str(path)
            src = f"read_parquet('{glob}', hive_partitioning = {hive}, hive_types_autocast = false)"
        elif fmt == "ndjson":
            cols = ", ".join(f"'{s['name']}': '{TYPES.get(s['type'], 'VARCHAR')}'" for s in c.get("schema", []))
            glob = f"{path}/**/*.json" if path.is_dir() else str(path)
            src = (f"read_json('{glob}', format = 'newline_delimited', columns = {{{cols}}}, "
                   f"hive_partitioning = {hive}, hive_types_autocast = false)")
        elif fmt == "csv":
            src = f"read_csv('{path}', header = true)"
        else:
            continue
        views.append(f'CREATE OR REPLACE VIEW "{f.stem}" AS SELECT * FROM {src}')
    return views


def bound(params, sql):
    """The values of the parameters `sql` uses, as DuckDB takes them."""
    out = {}
    for k, v in params.items():
        if not re.search(r"\$" + re.escape(k) + r"\b", sql):
            continue
        if v["type"] == "timestamp_us" and v["value"] is not None:
            out[k] = dt.datetime.fromtimestamp(v["value"] / 1e6, tz=dt.timezone.utc)
        else:
            out[k] = v["value"]
    return out


def duck_replay(trace, data, threads, compare):
    """Child process: replays a casebook trace in DuckDB; prints JSON figures."""
    import duckdb
    lines = [json.loads(line) for line in Path(trace).read_text().splitlines() if line.strip()]
    con = duckdb.connect(config={"threads": threads})
    con.execute("SET integer_division = true; SET TimeZone = 'UTC'")
    con.execute(MACROS)
    register_functions(con)
    for v in connector_views(Path(data)):
        con.execute(v)
    con.execute("CREATE TEMP TABLE ratings (playbook VARCHAR, run_id VARCHAR, step VARCHAR, field VARCHAR, "
                "value VARCHAR, rating BIGINT, note VARCHAR, rated_by VARCHAR, rated_at VARCHAR)")
    queries = {}
    for q in (x for x in lines if "sql" in x):
        queries.setdefault(q["step"], []).append(q)
    sql_ms = 0.0
    steps = {}
    for done in (x for x in lines if "done" in x):
        sid = done["done"]
        if done.get("error") or done.get("file") is None:
            continue
        if sid in queries:
            start = time.perf_counter()
            for i, q in enumerate(queries[sid]):
                head = f'CREATE OR REPLACE TEMP TABLE "{sid}" AS ' if i == 0 else f'INSERT INTO "{sid}" '
                try:
                    con.execute(head + q["sql"], bound(q["params"], q["sql"]) or None)
                except duckdb.Error as e:
                    print(json.dumps({"error": f"step {sid}: " + " ".join(str(e).split())[:300]}))
                    return
            ms = (time.perf_counter() - start) * 1000
            sql_ms += ms
            steps[sid] = {"ms": ms, "rows": con.execute(f'SELECT count(*) FROM "{sid}"').fetchone()[0]}
        else:
            # A step casebook computes itself (enrich): its table, as casebook made it.
            con.execute(f'CREATE OR REPLACE TEMP TABLE "{sid}" AS SELECT * FROM read_parquet(\'{done["file"]}\')')
    result = {"sql_ms": sql_ms, "steps": steps}
    if compare:
        result["differ"] = {sid: diff(con, sid, d["file"]) for d in lines if "done" in d
                            for sid in [d["done"]] if sid in steps}
    print(json.dumps(result))


def diff(con, sid, file):
    """How DuckDB's table `sid` differs from casebook's file: None when equal as multisets
    (floats to 9 significant digits, times to the microsecond); "floats: …" when only
    floating-point cells differ more (an average rounded on either side of a half, say)."""
    cols = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{file}')").fetchall()
    mine = {r[0]: r[1] for r in con.execute(f'DESCRIBE "{sid}"').fetchall()}
    missing = [c for c, *_ in cols if c not in mine]
    if missing:
        return f"DuckDB has no column {', '.join(missing)}"

    def floating(ty):
        return ty in ("DOUBLE", "FLOAT", "REAL") or ty.startswith("DECIMAL")

    def norm(name, ty):
        q = '"' + name.replace('"', '""') + '"'
        if floating(ty):
            x = f"CAST({q} AS DOUBLE)"
            return f"CASE WHEN {x} = 0 OR {x} IS NULL OR isnan({x}) THEN {x} " \
                   f"ELSE round({x}, 8 - CAST(floor(log10(abs({x}))) AS INT)) END"
        if ty.startswith("TIMESTAMP"):
            return f"epoch_us({q})"
        return f"CAST({q} AS VARCHAR)"

    def compare(names):
        a = "SELECT " + ", ".join(norm(c, mine[c]) for c in names) + f' FROM "{sid}"'
        b = "SELECT " + ", ".join(norm(c, t) for c, t, *_ in cols if c in names) + f" FROM read_parquet('{file}')"
        extra = con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
        lack = con.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0]
        if extra == 0 and lack == 0:
            return None
        first = lambda q: con.execute(f"SELECT * FROM ({q}) ORDER BY ALL LIMIT 1").fetchone()
        ours, theirs = first(f"{a} EXCEPT ALL {b}"), first(f"{b} EXCEPT ALL {a}")
        sample = ""
        if ours is not None and theirs is not None:
            cells = {n: (v, w) for n, v, w in zip(names, ours, theirs) if v != w}
            sample = f" (first pair, DuckDB vs casebook: {cells})"
        return f"{extra} rows only in DuckDB, {lack} only in casebook{sample}"

    names = [c for c, *_ in cols]
    found = compare(names)
    if found is None:
        return None
    exact = [c for c, t, *_ in cols if not floating(t)]
    if exact and len(exact) < len(names) and compare(exact) is None:
        return "floats: " + found
    return found


def fmt_s(x):
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--casebook", default=str(ROOT / "target" / "release" / "casebook"))
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", help="data folder (default: ~/.cache/casebook-bench-data/<rows>-<hours>h-s<seed>)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each side (the median is shown)")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB's threads")
    ap.add_argument("--run-memory-mb", type=int, help="casebook's per-run memory limit (default: its own)")
    ap.add_argument("--playbooks", nargs="*", help="ids (default: every shipped playbook)")
    ap.add_argument("--duck", help=argparse.SUPPRESS)
    ap.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.duck:
        duck_replay(a.duck, a.data, a.threads, a.compare)
        return 0
    data = Path(a.data or Path.home() / ".cache" / "casebook-bench-data" / f"{a.rows}-{a.hours}h-s{a.seed}")
    ensure_data(a.casebook, data, a.rows, a.hours, a.seed)
    env = dict(os.environ)
    rows_out = []
    notes = []
    all_same = True
    for pid, params in playbooks(a.playbooks):
        base = [a.casebook, "run", pid, "--data", str(data), "--format", "table", "--max-rows", "1"]
        base += param_args(params)
        if a.run_memory_mb:
            base += ["--run-memory-mb", str(a.run_memory_mb)]
        times, rss, traces = [], [], []
        failed = None
        # The timed runs store what a run from a page stores (the tables it shows); one more,
        # untimed, keeps the hidden steps' tables too, for DuckDB's replay and the check.
        for i in range(a.runs + 1):
            check = i == a.runs
            trace = Path(tempfile.mkstemp(prefix=f"trace-{pid}-", suffix=".jsonl")[1])
            wall, peak, code, err = run_timed(base + ["--trace", str(trace)] + ["--keep-hidden"] * check, env=env)
            if code != 0:
                failed = err.strip().splitlines()[-1] if err.strip() else f"exit {code}"
            if check:
                full_trace = trace
                break
            times.append(wall)
            rss.append(peak)
            traces.append(trace)
        def sql_ms(t):
            ls = [json.loads(x) for x in t.read_text().splitlines() if x.strip()]
            steps = {x["step"] for x in ls if "sql" in x}
            return sum(x["elapsed_ms"] for x in ls if "done" in x and x["done"] in steps)

        cb_sql_ms = statistics.median(sql_ms(t) for t in traces)
        trace = full_trace
        lines = [json.loads(x) for x in trace.read_text().splitlines() if x.strip()]
        scan = {"files": 0, "files_pruned": 0, "row_groups": 0, "row_groups_pruned": 0, "rows": 0}
        for x in lines:
            for k in scan:
                scan[k] += (x.get("scan") or {}).get(k, 0) if "sql" in x else 0
        duck_times, duck_rss, duck_sql = [], [], []
        duck_err = None
        differ = {}
        for i in range(a.runs + 1):
            cmd = [sys.executable, __file__, "--duck", str(trace), "--data", str(data), "--threads", str(a.threads)]
            compare = i == a.runs
            if compare:
                cmd.append("--compare")
            with tempfile.TemporaryFile() as out:
                wall, peak, code, err = run_timed(cmd, stdout=out)
                out.seek(0)
                text = out.read().decode()
            try:
                res = json.loads(text.strip().splitlines()[-1])
            except (ValueError, IndexError):
                res = {"error": " ".join(err.split())[-300:] or f"exit {code}"}
            if "error" in res:
                duck_err = res["error"]
                break
            if compare:
                differ = {k: v for k, v in res["differ"].items() if v}
            else:
                duck_times.append(wall)
                duck_rss.append(peak)
                duck_sql.append(res["sql_ms"])
        panda = pandas_side(a, pid, trace, data)
        for t in traces + [full_trace]:
            t.unlink(missing_ok=True)
        real = {k: v for k, v in differ.items() if not v.startswith("floats: ")}
        floats = {k: v[len("floats: "):] for k, v in differ.items() if v.startswith("floats: ")}
        if failed:
            same = "— (casebook failed)"
            all_same = False
        elif duck_err:
            same = "—"
        elif real:
            same = "NO: " + "; ".join(f"`{k}` {v}" for k, v in real.items())
            all_same = False
        else:
            same = "yes"
            if floats:
                same += f" (floats¹: {', '.join(floats)})"
                notes.extend(f"{pid} `{k}`: {v}" for k, v in floats.items())
        cb_t, cb_m = statistics.median(times), statistics.median(rss)
        row = {
            "playbook": pid, "casebook_s": cb_t, "casebook_sql_s": cb_sql_ms / 1000, "casebook_rss": cb_m,
            "failed": failed, "scan": scan, "same": same, "duck_error": duck_err,
        }
        if panda:
            row["pandas"] = panda
            if panda.get("differ") and not panda["differ"].startswith("floats: "):
                all_same = False
            elif panda.get("differ"):
                notes.append(f"{pid} `{panda['step']}` in pandas: {panda['differ'][len('floats: '):]}")
        if duck_times:
            row.update(duck_s=statistics.median(duck_times), duck_sql_s=statistics.median(duck_sql) / 1000,
                       duck_rss=statistics.median(duck_rss))
        rows_out.append(row)
        print(json.dumps(row), file=sys.stderr)
    print_table(rows_out, a, data, notes)
    # The shipped self-tests on the same data: the detections hold at this size.
    test = subprocess.run([a.casebook, "test", "--data", str(data)], capture_output=True, text=True)
    failed = [line for line in test.stdout.splitlines() if line.startswith("✗")]
    summary = (test.stdout.strip().splitlines() or ["no output"])[-1]
    print(f"\nSelf-tests on this data (`casebook test --data {data}`): {summary}")
    for line in failed:
        print(f"- {line}")
    return 0 if all_same and test.returncode == 0 else 1


def pandas_side(a, pid, trace, data):
    """The playbook's heavy step in pandas (scripts/pandas_chains.py), if it has one there:
    median seconds over the runs (its own clock: reading and computing), peak RSS, and whether
    its table equals casebook's."""
    lines = [json.loads(x) for x in trace.read_text().splitlines() if x.strip()]
    runs = []
    for i in range(a.runs + 1):
        # The last run checks the table and is not timed.
        cmd = [sys.executable, str(ROOT / "scripts" / "pandas_chains.py"), str(trace), str(data), pid]
        if i == a.runs:
            cmd.append("--compare")
        with tempfile.TemporaryFile() as out:
            wall, peak, code, err = run_timed(cmd, stdout=out)
            out.seek(0)
            text = out.read().decode().strip()
        if code != 0 or not text:
            return {"error": " ".join(err.split())[-300:] or f"exit {code}"}
        res = json.loads(text.splitlines()[-1])
        if res.get("skipped"):
            return None
        runs.append((res, wall, peak))
    res, runs = runs[-1][0], runs[:-1]
    step_ms = next((x["elapsed_ms"] for x in lines if x.get("done") == res["step"]), None)
    return {"step": res["step"], "s": statistics.median(r[0]["s"] for r in runs),
            "wall": statistics.median(r[1] for r in runs), "rss": statistics.median(r[2] for r in runs),
            "rows": res["rows"], "differ": res["differ"], "casebook_step_s": (step_ms or 0) / 1000}


def print_table(rows, a, data, notes):
    mb = lambda b: f"{b / 2**20:,.0f}"
    print(f"\n{a.rows:,} flows over {a.hours} h (seed {a.seed}), {a.runs} runs each, medians; "
          f"{platform.node()}, {os.cpu_count()} cores, {dt.date.today()}\n")
    print("| playbook | casebook s (SQL steps) | DuckDB s (SQL) | SQL ratio | casebook MB | DuckDB MB "
          "| files read | row groups read / pruned | rows scanned | same rows |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["scan"]
        if r.get("duck_s") is not None:
            ratio = f"{r['casebook_sql_s'] / r['duck_sql_s']:.2f}×" if r["duck_sql_s"] > 0 else "—"
            duck = f"{fmt_s(r['duck_s'])} ({fmt_s(r['duck_sql_s'])})"
            dmb = mb(r["duck_rss"])
        else:
            ratio, duck, dmb = "—", f"error: {r['duck_error']}", "—"
        cb = f"{fmt_s(r['casebook_s'])} ({fmt_s(r['casebook_sql_s'])})"
        if r["failed"]:
            cb += f" FAILED: {r['failed']}"
        print(f"| {r['playbook']} | {cb} | {duck} | {ratio} | {mb(r['casebook_rss'])} | {dmb} | {s['files']} "
              f"| {s['row_groups'] - s['row_groups_pruned']} / {s['row_groups_pruned']} | {s['rows']:,} "
              f"| {r['same']} |")
    pandas = [r for r in rows if r.get("pandas")]
    if pandas:
        print("\nThe heavy step in pandas (pyarrow filters), against the same step in casebook's run:\n")
        print("| playbook | step | casebook step s | pandas s (process) | pandas / casebook | pandas MB | rows | same rows |")
        print("|---|---|---|---|---|---|---|---|")
        for r in pandas:
            p = r["pandas"]
            if "error" in p:
                print(f"| {r['playbook']} | — | — | error: {p['error']} | — | — | — | — |")
                continue
            ratio = f"{p['s'] / p['casebook_step_s']:.1f}×" if p["casebook_step_s"] > 0 else "—"
            same = ("yes" if not p["differ"] else "yes (floats¹)" if p["differ"].startswith("floats: ")
                    else f"NO: {p['differ']}")
            print(f"| {r['playbook']} | {p['step']} | {fmt_s(p['casebook_step_s'])} | {fmt_s(p['s'])} ({fmt_s(p['wall'])}) "
                  f"| {ratio} | {mb(p['rss'])} | {p['rows']:,} | {same} |")
    if notes:
        print("\n¹ Equal but for floating-point cells beyond 9 significant digits (sums in another order)"
              " or an average rounded on the other side of a half:")
        for n in notes:
            print(f"- {n}")
    print(f"\nReproduce: bash scripts/bench.sh --rows {a.rows} --hours {a.hours} --seed {a.seed} --runs {a.runs}"
          + (f" --run-memory-mb {a.run_memory_mb}" if a.run_memory_mb else ""))
    print(f"Data: {data}")


if __name__ == "__main__":
    sys.exit(main())
