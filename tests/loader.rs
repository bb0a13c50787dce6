//! The exact messages authors read for broken playbooks (snapshots), and that a broken
//! playbook does not stop the others.

use std::sync::Arc;

use casebook::catalog::Catalog;

use crate::common;

/// Loads one playbook text from a temporary playbooks folder; returns its problems.
async fn problems_of(name: &str, yaml: &str) -> Vec<String> {
    let data = common::fresh_data();
    let pb_dir = tempfile::tempdir().expect("tempdir");
    let file = pb_dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("write");
    let mut paths = common::paths_with(data.path());
    paths.playbooks = pb_dir.path().to_path_buf();
    let catalog = Arc::new(Catalog::load(paths, chrono_tz::Tz::UTC).await);
    let prefix = format!("{}/", pb_dir.path().display());
    catalog.problems().map(|p| p.to_string().replace(&prefix, "")).collect()
}

#[tokio::test]
async fn misspelled_column_points_at_it() {
    let got = problems_of(
        "typo",
        "title: Typo\nsections:\n  - title: S\n    steps:\n      - id: a\n        query:\n          sql: |\n            SELECT sip, dprot\n            FROM flows\n",
    )
    .await;
    assert_eq!(got, vec!["typo.yaml:8:25: step `a`: unknown column `dprot`\n  hint: did you mean `dport`?"]);
}

#[tokio::test]
async fn yaml_syntax_error() {
    let got = problems_of("syntax", "title: [unclosed\nsections: []\n").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("syntax.yaml:"), "{got:?}");
}

#[tokio::test]
async fn unknown_key_with_the_known_ones() {
    let got = problems_of("key", "title: K\ndescripton: oops\nsections: []\n").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("key.yaml:2:1: unknown key `descripton`"), "{got:?}");
}

#[tokio::test]
async fn wrong_types_unknown_steps_params_connectors_and_defaults() {
    let yaml = r#"title: Many
params:
  n: { type: integer, default: ten }
  w: { type: time_range, default: last 3 parsecs }
  k: { type: colour }
sections:
  - title: S
    steps:
      - id: a
        query:
          connector: flowz
          sql: SELECT * FROM flows WHERE dport = $port LIMIT $n
      - id: b
        query:
          sql: SELECT * FROM nothere
      - id: c
        query:
          sql: SELECT * FROM flows WHERE treceived > $w
        chart: { type: pie, x: a, y: b }
"#;
    let got = problems_of("many", yaml).await;
    let expected = vec![
        "many.yaml:3:32: default of `n` is invalid: `ten` is not a whole number",
        "many.yaml:4:35: default of `w` is invalid: `3 parsecs`: unknown unit, use s, m, h, d or w (e.g. 15m, 1h, 7d)",
        "many.yaml:5:14: unknown parameter type `colour` for `k`\n  hint: use one of: text, integer, number, boolean, select, ip_list, datetime, time_range",
        "many.yaml:12:50: unknown parameter `$port`\n  hint: declared parameters: $n, $w",
        "many.yaml:18:54: `$w` is a time range\n  hint: use `$w.start` and `$w.end`",
        "many.yaml:19:24: unknown chart type `pie`\n  hint: use bar or line",
        "many.yaml:11:22: unknown connector `flowz`\n  hint: known connectors: dns, events, flows, iploc, network_context, proxy, top_domains",
    ];
    for e in &expected {
        assert!(got.contains(&e.to_string()), "missing:\n{e}\n\ngot:\n{}", got.join("\n"));
    }
    assert!(got.contains(&"many.yaml:15:30: step `b`: table 'nothere' not found\n  hint: tables you can use: dns, events, flows, iploc, network_context, proxy, ratings, top_domains".to_string()), "{got:#?}");
    assert_eq!(got.len(), expected.len() + 1, "no repeated problems: {got:#?}");
}

#[tokio::test]
async fn a_broken_playbook_leaves_the_others_working() {
    let data = common::fresh_data();
    let pb_dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        common::repo().join("playbooks/network/rdp_bruteforce.yaml"),
        pb_dir.path().join("rdp_bruteforce.yaml"),
    )
    .expect("copy");
    std::fs::write(pb_dir.path().join("broken.yaml"), "title: Broken\nsections:\n  - title: S\n    steps:\n      - id: a\n        query: { sql: SELECT nope FROM flows }\n").expect("write");
    let mut paths = common::paths_with(data.path());
    paths.playbooks = pb_dir.path().to_path_buf();
    let catalog = Catalog::load(paths, chrono_tz::Tz::UTC).await;
    assert!(catalog.entry("rdp_bruteforce").and_then(|e| e.runnable()).is_some());
    let broken = catalog.entry("broken").expect("listed");
    assert!(broken.runnable().is_none());
    assert_eq!(broken.problems.len(), 1);
}

#[tokio::test]
async fn score_steps_are_checked_at_load() {
    let base = "title: S\nsections:\n  - title: S\n    steps:\n      - id: pairs\n        query:\n          sql: SELECT sip, dport, count(*) AS n FROM flows GROUP BY sip, dport\n      - id: scored\n        score:\n";
    let got = problems_of("score", &format!("{base}          from: pairs\n          rules:\n            - {{ when: \"nn > 5\", points: 10, reason: many }}\n")).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0], "score.yaml:10:11: step `scored`: unknown column `nn`\n  hint: did you mean `n`?");
    let got =
        problems_of("score", &format!("{base}          from: later\n          model: {{ features: [sip] }}\n")).await;
    assert!(got.iter().any(|p| p.contains("`from` names `later`, which is not an earlier step")), "{got:?}");
    let got = problems_of("score", &format!("{base}          from: pairs\n")).await;
    assert!(got.iter().any(|p| p.contains("needs `rules:` or a `model:`")), "{got:?}");
    let good = format!("{base}          from: pairs\n          rules:\n            - {{ when: \"n > 5\", points: 10, reason: \"it's busy\" }}\n          model: {{ features: [sip, dport] }}\n          top: 5\n");
    assert_eq!(problems_of("score", &good).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_chart_column_yaml_did_not_read_as_text_says_to_quote_it() {
    let yaml = "title: C\nsections:\n  - title: S\n    steps:\n      - id: a\n        query: { sql: SELECT 1 AS n }\n        chart: { type: bar, x: name, y: n }\n";
    let got = problems_of("chart", yaml).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("chart.yaml:7:")
            && got[0].contains(
                "`y` must be a column name or a list of them; a bare n, no, off or false is read as false, quote it"
            ),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_broken_options_query_is_reported_where_it_is_written() {
    let yaml = r#"title: Hosts
params:
  host:
    type: select
    options_query: SELECT DISTINCT sipp FROM flows
sections:
  - title: One
    steps:
      - id: s
        query:
          sql: SELECT 1 AS one
"#;
    let got = problems_of("hosts", yaml).await;
    assert_eq!(got, ["hosts.yaml:5:20: options_query of `host`: unknown column `sipp`\n  hint: did you mean `sip`?"]);
}
