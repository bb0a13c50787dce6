//! The enrich step over real files: Spot's network context CSV, a MaxMind-format `.mmdb`
//! database (a small fixture made by `tests/fixtures/make-geo-mmdb.py`), the top-domains list
//! and the public suffix list; and its problems reported at load.

use std::sync::Arc;

use casebook::catalog::Catalog;
use casebook::engine::Engine;
use casebook::results::paging::TableQuery;

use crate::common;

const PLAYBOOK: &str = "title: Enrich
sections:
  - title: S
    steps:
      - id: hosts
        query:
          sql: |
            SELECT * FROM (VALUES
              ('45.77.65.211', 'https://www.google.com/search?q=1'),
              ('2001:db8:100::7', 't1.cdn-sync-update.net'),
              ('10.0.2.57', 'Files.Example.co.uk'),
              ('not an ip', '')) AS t(ip, url)
      - id: looked_up
        enrich:
          from: hosts
          ip: [ip]
          domain: [url]
          context: network_context
          geo: geo/geo.mmdb
          top_domains: top_domains
";

async fn engine_with(playbook: &str) -> (Arc<Engine>, tempfile::TempDir, tempfile::TempDir) {
    let data = common::fresh_data();
    std::fs::create_dir_all(data.path().join("geo")).unwrap();
    std::fs::copy(common::repo().join("tests/fixtures/geo.mmdb"), data.path().join("geo/geo.mmdb")).unwrap();
    let pb = tempfile::tempdir().unwrap();
    std::fs::write(pb.path().join("e.yaml"), playbook).unwrap();
    let mut paths = common::paths_with(data.path());
    paths.playbooks = pb.path().to_path_buf();
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let store = casebook::store::Store::open(&paths.state_db()).unwrap();
    (Arc::new(Engine::new(catalog, store)), data, pb)
}

#[tokio::test]
async fn ips_and_domains_gain_context_place_and_rank() {
    let (engine, _data, _pb) = engine_with(PLAYBOOK).await;
    let problems: Vec<String> = engine.catalog().problems().map(|p| p.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let out = common::run_all(&engine, "e", &[]).await;
    let page =
        engine.page(&out.run_id, "looked_up", &TableQuery { page: 1, size: 10, ..Default::default() }).await.unwrap();
    let col = |name: &str| {
        page.columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no {name}: {:?}", page.columns))
    };
    let cell = |row: usize, name: &str| page.rows[row][col(name)].text.clone();
    // An outside address placed by the .mmdb file, with its AS.
    assert_eq!(
        (cell(0, "ip_zone"), cell(0, "ip_country"), cell(0, "ip_city"), cell(0, "ip_owner")),
        ("external".into(), "NL".into(), "Amsterdam".into(), "AS20473 Example Cloud".into())
    );
    assert_eq!(cell(0, "ip_lat"), "52.37");
    assert_eq!(
        (cell(0, "url_registrable"), cell(0, "url_subdomain"), cell(0, "url_rank")),
        ("google.com".into(), "www".into(), "1".into())
    );
    assert_eq!(cell(0, "url_top10k"), "true");
    // IPv6 too; a domain nobody ranks.
    assert_eq!((cell(1, "ip_country"), cell(1, "ip_city")), ("CZ".into(), "Brno".into()));
    assert_eq!(
        (cell(1, "url_registrable"), cell(1, "url_rank"), cell(1, "url_top1m")),
        ("cdn-sync-update.net".into(), "".into(), "false".into())
    );
    // An internal address named by the network context; a domain under a two-label suffix.
    assert_eq!(
        (cell(2, "ip_name"), cell(2, "ip_zone"), cell(2, "ip_country")),
        ("Workstations - Engineering".into(), "internal".into(), "".into())
    );
    assert_eq!((cell(2, "url_registrable"), cell(2, "url_subdomain")), ("example.co.uk".into(), "files".into()));
    // What is not an address or a domain stays empty, and nothing else is lost.
    assert_eq!((cell(3, "ip_zone"), cell(3, "url_registrable")), ("".into(), "".into()));
    assert_eq!(page.total, 4);
}

#[tokio::test]
async fn enrich_problems_are_reported_at_load() {
    let broken = PLAYBOOK
        .replace("ip: [ip]", "ip: [address]")
        .replace("geo/geo.mmdb", "geo/missing.mmdb")
        .replace("context: network_context", "context: netctx");
    let (engine, _data, _pb) = engine_with(&broken).await;
    let problems: Vec<String> = engine.catalog().problems().map(|p| p.to_string()).collect();
    assert!(problems.iter().any(|p| p.contains("`hosts` has no column `address`")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("unknown connector `netctx`")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("no geolocation database `geo/missing.mmdb`")), "{problems:?}");
    assert!(problems.iter().all(|p| p.contains("e.yaml:15:")), "at the step's `enrich:`: {problems:?}");
}

#[tokio::test]
async fn spot_context_files_are_read_as_they_are() {
    let data = common::fresh_data();
    std::fs::create_dir_all(data.path().join("spot")).unwrap();
    // Spot's own examples: no header; ranges as start,end,label; names as ip, name.
    std::fs::write(data.path().join("spot/ipranges.csv"), "10.0.0.1,10.255.255.255,Internal\n").unwrap();
    std::fs::write(data.path().join("spot/networkcontext_1.csv"), "10.192.180.150, AnyMachine\n10.0.2.57, Exfil box\n")
        .unwrap();
    let conn = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(common::repo().join("connectors")).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, conn.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(conn.path().join("spot_ranges.yaml"), "format: csv\npath: spot/ipranges.csv\nhas_header: false\n")
        .unwrap();
    std::fs::write(
        conn.path().join("spot_names.yaml"),
        "format: csv\npath: spot/networkcontext_1.csv\nhas_header: false\n",
    )
    .unwrap();
    let pb = tempfile::tempdir().unwrap();
    std::fs::write(
        pb.path().join("s.yaml"),
        "title: S\nsections:\n  - title: S\n    steps:\n      - id: hosts\n        query:\n          sql: SELECT * FROM (VALUES ('10.0.2.57'), ('10.9.9.9'), ('8.8.8.8')) AS t(ip)\n      - id: ranged\n        enrich: { from: hosts, ip: [ip], context: spot_ranges }\n      - id: named\n        enrich: { from: hosts, ip: [ip], context: spot_names }\n",
    )
    .unwrap();
    let mut paths = common::paths_with(data.path());
    paths.playbooks = pb.path().to_path_buf();
    paths.connectors = conn.path().to_path_buf();
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let problems: Vec<String> = catalog.problems().map(|p| p.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let engine = Arc::new(Engine::new(catalog.clone(), casebook::store::Store::open(&paths.state_db()).unwrap()));
    let out = common::run_all(&engine, "s", &[]).await;
    let names = |step: &'static str| {
        let engine = engine.clone();
        let run = out.run_id.clone();
        async move {
            let page = engine.page(&run, step, &TableQuery { page: 1, size: 10, ..Default::default() }).await.unwrap();
            let i = page.columns.iter().position(|c| c == "ip_name").unwrap();
            page.rows.iter().map(|r| r[i].text.clone()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("ranged").await, ["Internal", "Internal", ""]);
    assert_eq!(names("named").await, ["Exfil box", "", ""]);
}

#[tokio::test]
async fn the_rarity_model_ranks_what_the_baseline_never_saw_first() {
    let yaml = "title: M
sections:
  - title: S
    steps:
      - id: baseline
        query:
          sql: SELECT * FROM (VALUES ('a', 'x'), ('a', 'x'), ('a', 'x'), ('a', 'x'), ('a', 'x'), ('a', 'x'), ('a', 'x'), ('a', 'x'), ('a', 'y'), ('b', 'x')) AS t(host, port)
      - id: today
        query:
          sql: SELECT * FROM (VALUES ('a', 'x'), ('a', 'y'), ('a', 'z'), ('b', 'x')) AS t(host, port)
      - id: ranked
        score:
          from: today
          model: { features: [host, port], baseline: baseline, points: 10 }
          rules:
            - { when: \"port = 'x'\", points: 1, reason: the usual port }
";
    let (engine, _data, _pb) = engine_with(yaml).await;
    let problems: Vec<String> = engine.catalog().problems().map(|p| p.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}");
    let out = common::run_all(&engine, "e", &[]).await;
    let page =
        engine.page(&out.run_id, "ranked", &TableQuery { page: 1, size: 10, ..Default::default() }).await.unwrap();
    let col = |n: &str| page.columns.iter().position(|c| c == n).unwrap();
    let order: Vec<String> =
        page.rows.iter().map(|r| format!("{}{}", r[col("host")].text, r[col("port")].text)).collect();
    // Never seen for `a` (z) before once seen (y) before the usual (x); `b`'s only port is usual for it.
    assert_eq!(order[0], "az", "{order:?}");
    assert_eq!(order[1], "ay", "{order:?}");
    let reasons: Vec<String> = page.rows.iter().map(|r| r[col("reasons")].text.clone()).collect();
    assert!(reasons[0].starts_with("unusual for this host ("), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("the usual port")), "{reasons:?}");
}
