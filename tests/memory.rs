//! Runs under the per-run memory limit, as `casebook run --run-memory-mb` (the same limit as
//! `serve`'s) applies it: what outgrows the limit spills into the data folder and finishes,
//! and what cannot fit even spilling stops with a message an analyst can act on.

use std::path::Path;
use std::process::{Command, Output};

use crate::common;

/// A week of the fixture's flows, four times over (240,000 rows): more than a 32 MB limit
/// holds sorted. Below about 24 MB DataFusion's final merges of two partitions' spill files
/// outgrow the limit in turn (they cannot spill), and the run stops with the message below.
const FLOWS_FOUR_TIMES: &str = "SELECT sip, dip, treceived, ibyt, obyt, dport, copy FROM flows \
                                CROSS JOIN (VALUES (1), (2), (3), (4)) AS c(copy) \
                                WHERE treceived >= $window.start AND treceived < $window.end";

/// A week of flows, each row widened so that the fixture's 60,000 rows need more than a
/// 16 MB limit gathered whole.
const WIDE_ROWS: &str = "SELECT sip, dip, treceived, ibyt, repeat(sip || dip, 8) AS padding FROM flows \
                         WHERE treceived >= $window.start AND treceived < $window.end";

fn playbook(dir: &Path, sql: &str) -> std::path::PathBuf {
    playbook_with(dir, sql, "")
}

/// A playbook whose one query step is `sql`, with `more` (e.g. its `chunks:`) at the query's indent.
fn playbook_with(dir: &Path, sql: &str, more: &str) -> std::path::PathBuf {
    let text = format!(
        "title: Memory\nparams:\n  window: {{ type: time_range, default: last 7d }}\nsections:\n  - title: S\n    \
         steps:\n      - id: all\n        query:\n{more}          sql: |\n            {sql}\n"
    );
    let path = dir.join("memory.yaml");
    std::fs::write(&path, text).expect("playbook");
    path
}

fn run(pb: &Path, data: &Path, memory_mb: Option<u32>, trace: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_casebook"));
    cmd.current_dir(common::repo()).arg("run").arg(pb).args(["--format", "csv", "--max-rows", "1000000", "--data"]);
    cmd.arg(data);
    if let Some(mb) = memory_mb {
        cmd.args(["--run-memory-mb", &mb.to_string()]);
    }
    if let Some(t) = trace {
        cmd.arg("--trace").arg(t);
    }
    cmd.output().expect("run casebook")
}

/// The bytes a traced run's queries spilled, summed.
fn spilled(trace: &Path) -> u64 {
    std::fs::read_to_string(trace)
        .expect("trace")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["scan"]["spilled"].as_u64())
        .sum()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_sort_larger_than_the_runs_memory_spills_into_the_data_folder_and_gives_the_same_rows() {
    let data = common::fresh_data();
    let work = tempfile::tempdir().expect("tempdir");
    let pb = playbook(work.path(), &format!("{FLOWS_FOUR_TIMES} ORDER BY ibyt DESC, treceived, sip, dip, copy"));
    let trace = work.path().join("trace.jsonl");
    let limited = run(&pb, data.path(), Some(32), Some(&trace));
    assert!(limited.status.success(), "{}", text(&limited));
    let spilled = spilled(&trace);
    assert!(spilled > 8 << 20, "the sort spilled {spilled} bytes under a 32 MB limit");
    let unlimited = run(&pb, data.path(), None, None);
    assert!(unlimited.status.success(), "{}", text(&unlimited));
    let rows = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.starts_with('#')).count();
    assert!(rows(&limited) > 200_000, "{} rows", rows(&limited));
    assert_eq!(String::from_utf8_lossy(&limited.stdout), String::from_utf8_lossy(&unlimited.stdout));
    // The spill files went into the run's folder in the data folder, and went with the run.
    let runs: Vec<_> = std::fs::read_dir(data.path().join("runs")).expect("runs").flatten().collect();
    assert!(!runs.is_empty());
    for r in runs {
        assert!(!r.path().join(".spill").exists(), "{} keeps its spill folder", r.path().display());
    }
}

#[test]
fn a_query_that_cannot_fit_even_spilling_says_how_to_narrow_it_not_the_engines_settings() {
    let data = common::fresh_data();
    let work = tempfile::tempdir().expect("tempdir");
    // One group holding every row: nothing to spill.
    let pb = playbook(
        work.path(),
        &format!("SELECT count(*) AS n, array_agg(padding ORDER BY ibyt) AS every FROM ({WIDE_ROWS}) w"),
    );
    let out = run(&pb, data.path(), Some(16), None);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(
            "step all: this query needs more memory than one run may use (16 MB), even spilling to disk: narrow the time \
             window (it spans 168 hours; try 84 hours or fewer) and run again; an administrator can raise the limit with \
             --run-memory-mb"
        ),
        "{all}"
    );
    for engine_text in ["Resources exhausted", "datafusion.", "memory_limit", "ExternalSorter", "pool"] {
        assert!(!all.contains(engine_text), "`{engine_text}` shown: {all}");
    }
    // Under the default limit the same query finishes.
    let fine = run(&pb, data.path(), None, None);
    assert!(fine.status.success(), "{}", text(&fine));
}

#[test]
fn a_chunk_that_cannot_fit_says_to_make_the_chunks_shorter_not_the_window_narrower() {
    let data = common::fresh_data();
    let work = tempfile::tempdir().expect("tempdir");
    let pb = playbook_with(
        work.path(),
        &format!("SELECT count(*) AS n, array_agg(padding ORDER BY ibyt) AS every FROM ({WIDE_ROWS}) w"),
        "          chunks: { over: window, by: 7d }\n",
    );
    let out = run(&pb, data.path(), Some(16), None);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("step all: chunk 1 of "), "{all}");
    assert!(
        all.contains(
            "hours) needs more memory than one run may use (16 MB), even spilling to disk: the playbook's author can \
             make its chunks shorter (`chunks: { by: … }`), or an administrator can raise the limit with --run-memory-mb"
        ),
        "{all}"
    );
    for engine_text in ["Resources exhausted", "datafusion.", "memory_limit", "pool"] {
        assert!(!all.contains(engine_text), "`{engine_text}` shown: {all}");
    }
}

#[test]
fn a_grouping_of_gaps_larger_than_the_runs_memory_spills_and_gives_the_same_rows() {
    let data = common::fresh_data();
    let work = tempfile::tempdir().expect("tempdir");
    // gap_stats keeps every group's times until the end: under a small limit its groups go to
    // disk as lists of times and come back whole.
    let pb = playbook(
        work.path(),
        &format!(
            "SELECT sip, dip, dport, copy, n, get_field(g, 'gaps') AS gaps, get_field(g, 'gap_squares') AS squares, \
             get_field(g, 'gap_spread') AS spread FROM (SELECT sip, dip, dport, copy, count(*) AS n, \
             gap_stats(treceived) AS g FROM ({FLOWS_FOUR_TIMES}) f GROUP BY sip, dip, dport, copy)"
        ),
    );
    let trace = work.path().join("trace.jsonl");
    let limited = run(&pb, data.path(), Some(32), Some(&trace));
    assert!(limited.status.success(), "{}", text(&limited));
    let spilled = spilled(&trace);
    assert!(spilled > 4 << 20, "the grouping spilled {spilled} bytes under a 32 MB limit");
    let unlimited = run(&pb, data.path(), None, None);
    assert!(unlimited.status.success(), "{}", text(&unlimited));
    // No ORDER BY (a sort would spill instead of the grouping): the same rows, in any order.
    let rows = |o: &Output| {
        let mut v: Vec<String> =
            String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.starts_with('#')).map(String::from).collect();
        v.sort();
        v
    };
    assert!(rows(&limited).len() > 100_000, "{} rows", rows(&limited).len());
    assert_eq!(rows(&limited), rows(&unlimited));
}
