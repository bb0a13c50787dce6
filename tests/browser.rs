//! Headless Chromium drives the analyst's path on the real server: open `ip_flows`, see a
//! field error for a bad address, fill the form, press the button, see the table and chart.
//! Chromium and ChromeDriver come from Debian (`scripts/install-browser.sh`). The browser
//! runs with networking to the outside disabled: every asset must come from casebook.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a23c-4f6e2e3b9dfd";

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Driver {
    async fn start() -> Driver {
        assert!(
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
            "headless Chromium is needed: run `bash scripts/install-browser.sh` (as root), or `bash .ci/run`"
        );
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile").keep();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1280,1400",
                     // Nothing but loopback: a CDN asset would fail to load.
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                     format!("--user-data-dir={}", profile.display())]
        }}}});
        let r: Value =
            http.post(format!("{base}/session")).json(&caps).send().await.expect("session").json().await.expect("json");
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        Driver { child, base, session, http }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let req = self.http.request(method.clone(), url);
        let req = if method == reqwest::Method::GET { req } else { req.json(&body) };
        let v: Value = req.send().await.expect("webdriver").json().await.expect("json");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self.cmd(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await;
        // The W3C key, or whichever element reference this driver version answers with.
        v.get(ELEMENT)
            .or_else(|| v.as_object().and_then(|o| o.iter().find(|(k, _)| k.starts_with("element-")).map(|(_, v)| v)))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/clear"), json!({})).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/value"), json!({"text": text})).await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/click"), json!({})).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": []})).await
    }

    /// Polls `script` until it returns something truthy.
    async fn wait_for(&self, script: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(script).await;
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Signs in on the sign-in page as a person does, and lands on `path`.
    async fn sign_in(&self, addr: std::net::SocketAddr, path: &str) {
        self.go(&format!("http://{addr}{path}")).await;
        let url = self.js("return location.pathname").await;
        assert_eq!(url, "/login", "a signed-out browser is sent to the sign-in page");
        self.type_into("input[name=name]", common::ME).await;
        self.type_into("input[name=password]", common::PASSWORD).await;
        self.click("button[type=submit]").await;
        let back = path.split('?').next().unwrap_or(path);
        self.wait_for(&format!("return location.pathname === {back:?} || null"), "back on the page asked for").await;
    }

    async fn screenshot(&self, name: &str) {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).expect("png");
        let dir = common::repo().join("tests/artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        std::fs::write(dir.join(name), png).expect("write screenshot");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_runs_ip_flows_in_headless_chromium() {
    let data = common::fresh_data();
    let (addr, server) = common::serve(data.path()).await;

    let d = Driver::start().await;
    d.sign_in(addr, "/").await;
    d.wait_for("return document.querySelectorAll('#playbooks .card').length >= 3", "the index").await;
    d.click("a.card[href='/p/ip_flows']").await;
    d.wait_for("return document.getElementById('f-src') !== null", "the form").await;

    // A bad address: the message appears next to the field, nothing runs.
    d.type_into("#f-src", "10.0.10.25, 10.0.0.999").await;
    d.click("button.run[data-section='0']").await;
    let err = d
        .wait_for(
            "const e = document.getElementById('err-src'); return e && !e.hidden && e.textContent",
            "the field error",
        )
        .await;
    assert_eq!(err, json!("not an IP address or CIDR: `10.0.0.999`"));

    // The analyst fixes it, widens the window and presses the button.
    d.type_into("#f-src", "10.0.10.25").await;
    d.js("const s = document.getElementById('f-window'); s.value = 'last 7d'; s.dispatchEvent(new Event('change', {bubbles: true})); return true").await;
    d.click("button.run[data-section='0']").await;
    let rows = d
        .wait_for("return document.querySelectorAll('#results-0 table.data tbody tr').length", "the flows table")
        .await;
    assert_eq!(rows, json!(25), "the first page of 25 rows");
    let info = d.js("return document.querySelector('#results-0 .table-foot .info').textContent").await;
    assert!(info.as_str().unwrap_or_default().starts_with("Showing 1 to 25 of "), "{info}");
    let points = d
        .wait_for("const c = document.querySelector('#results-0 canvas'); const ch = c && window.Chart && Chart.getChart(c); return ch ? ch.data.datasets[0].data.length : 0", "the chart")
        .await;
    assert!(points.as_u64().unwrap_or(0) > 5, "per-minute points: {points}");
    assert!(d.js("return document.getElementById('err-src').hidden").await == json!(true), "the error is gone");

    // Sorting happens on the server and replaces the table in place.
    d.click("#results-0 .table-widget button.sort[data-col='ibyt']").await;
    d.wait_for(
        "return document.querySelector(\"#results-0 th[aria-sort='ascending'] button[data-col='ibyt']\") !== null",
        "sorted table",
    )
    .await;
    // The filled form is in the address, to share.
    let url = d.js("return location.search").await;
    assert!(url.as_str().unwrap_or_default().contains("src=10.0.10.25"), "{url}");
    d.screenshot("ip_flows.png").await;

    // Export to CSV: the stored file is listed on the page.
    d.click("#results-0 .table-widget button.export[data-format='csv']").await;
    d.wait_for("return document.querySelectorAll('#exports a[href^=\"/exports/\"]').length", "the stored export").await;

    d.cmd(reqwest::Method::DELETE, "", json!({})).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_runs_both_sections_of_rdp_bruteforce() {
    let data = common::fresh_data();
    let (addr, server) = common::serve(data.path()).await;

    let d = Driver::start().await;
    d.sign_in(addr, "/p/rdp_bruteforce").await;
    d.click("button.run[data-section='0']").await;
    let first = d
        .wait_for(
            "const td = document.querySelector('#results-0 table.data tbody td:not(.pick)'); return td && td.textContent",
            "the top source",
        )
        .await;
    assert_eq!(first, json!(casebook::demo::cast::SCANNER));
    let series = d
        .wait_for("const c = document.querySelector('#results-0 canvas'); const ch = c && Chart.getChart(c); return ch ? ch.data.datasets.length : 0", "the per-minute chart")
        .await;
    assert!(series.as_u64().unwrap_or(0) >= 1);
    d.click("button.run[data-section='1']").await;
    let info = d
        .wait_for(
            "const i = document.querySelector('#results-1 .table-foot .info'); return i && i.textContent",
            "the scanned hosts",
        )
        .await;
    assert!(info.as_str().unwrap_or_default().contains("of 3"), "{info}");
    d.wait_for(
        "const c = document.querySelector('#results-1 canvas'); return c && Chart.getChart(c) ? 1 : 0",
        "the ports chart",
    )
    .await;
    d.js("window.scrollTo(0, 0); return true").await;
    d.screenshot("rdp_bruteforce.png").await;
    d.cmd(reqwest::Method::DELETE, "", json!({})).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_opens_offline_with_its_tables_and_charts() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let run = common::run_all(&engine, "rdp_bruteforce", &[]).await;
    let app = common::app(casebook::web::AppState::new(engine, common::paths_with(data.path())).expect("state"));
    let get = |uri: String| {
        let app = app.clone();
        async move {
            let r = app.oneshot(axum::http::Request::get(uri).body(Body::empty()).expect("req")).await.expect("resp");
            (r.status(), r.into_body().collect().await.expect("body").to_bytes().to_vec())
        }
    };
    let (status, html) = get(format!("/runs/{}/report.html", run.run_id)).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let text = String::from_utf8_lossy(&html).to_string();
    assert!(!text.contains(" src=\"http") && !text.contains("href=\"http"), "nothing from outside");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.html");
    std::fs::write(&file, &html).expect("write report");

    // Opened from disk, no server, no network.
    let d = Driver::start().await;
    d.go(&format!("file://{}", file.display())).await;
    d.wait_for("return document.body.dataset.ready === '1'", "the report script").await;
    let charts = d.js("return [...document.querySelectorAll('figure.chart')].map(f => f.dataset.drawn || '0')").await;
    assert_eq!(charts, json!(["2", "1"]), "both charts drawn (2 series, 1 series)");
    let first = d.js("return document.querySelector('table.data tbody td').textContent").await;
    assert_eq!(first, json!(casebook::demo::cast::SCANNER));
    let tables = d.js("return document.querySelectorAll('table.data').length").await;
    assert_eq!(tables, json!(2), "attempts and scanned");
    d.screenshot("report.png").await;
    d.cmd(reqwest::Method::DELETE, "", json!({})).await;

    let (status, pdf) = get(format!("/runs/{}/report.pdf", run.run_id)).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_rates_rows_saves_a_threat_and_opens_its_storyboard() {
    let data = common::fresh_data();
    let (addr, server) = common::serve(data.path()).await;
    let site = format!("http://{addr}");
    let d = Driver::start().await;

    // Score the connections; the beacon is among the most suspicious.
    d.sign_in(addr, "/p/suspicious_connects?window=last+7d&top=20").await;
    d.click("button.run[data-section='0']").await;
    d.wait_for(
        "return document.querySelectorAll('#results-0 table.data tbody input.row-pick').length >= 5",
        "the scored table",
    )
    .await;
    // Rate: tick the beacon's row, rate its source high.
    let ticked = d
        .js("const rows = [...document.querySelectorAll('#results-0 table.data tbody tr')];
             const r = rows.find((tr) => tr.textContent.includes('45.77.65.211'));
             if (!r) return false; r.querySelector('input.row-pick').click(); return true")
        .await;
    assert_eq!(ticked, json!(true), "the beacon is listed");
    d.js("document.querySelector('#results-0 details.rate-bar').open = true; return true").await;
    d.type_into("#results-0 .rate-note", "beacon to a VPS").await;
    d.click("#results-0 button.rate-selected").await;
    let rated = d
        .wait_for(
            "const r = document.querySelector('#results-0 .rate-result'); return r && r.textContent",
            "the rating",
        )
        .await;
    assert_eq!(rated, json!("Rated 1 value high: 10.0.3.88"));

    // Open the run's permalink and save the threat.
    let run = d.js("return document.getElementById('results-0').dataset.run").await;
    d.go(&format!("{site}/runs/{}", run.as_str().unwrap_or_default())).await;
    d.js("document.getElementById('save-threat').open = true; return true").await;
    d.type_into("#threat-form [name=threat_entity]", "10.0.3.88").await;
    d.js("document.querySelector('#threat-form [name=threat_severity]').value = 'high'; return true").await;
    d.click("#threat-form button[type=submit]").await;
    let err = d
        .wait_for(
            "const e = document.getElementById('err-threat_title'); return e && !e.hidden && e.textContent",
            "the missing title",
        )
        .await;
    assert!(err.as_str().unwrap_or_default().contains("title"), "{err}");
    d.type_into("#threat-form [name=threat_title]", "Sales workstation beaconing to a VPS").await;
    d.type_into("#threat-form [name=threat_description]", "Every 60 s to 45.77.65.211:8080 for two days.").await;
    d.click("#threat-form button[type=submit]").await;
    d.wait_for("return location.pathname.startsWith('/threats/')", "the storyboard").await;

    // Every panel is drawn from data casebook serves itself.
    d.wait_for("return document.getElementById('storyboard').dataset.drawn === 'yes'", "all panels").await;
    let drawn = d.js("return [...document.querySelectorAll('[data-drawn]')].map((e) => e.dataset.drawn)").await;
    assert!(drawn.as_array().is_some_and(|a| a.len() == 6 && a.iter().all(|v| v == "yes")), "{drawn}");
    let tree = d.js("return document.querySelector('#panel-tree .tree').textContent").await;
    let tree = tree.as_str().unwrap_or_default();
    assert!(tree.contains("10.0.3.88") && tree.contains("outbound") && tree.contains("RU"), "{tree}");
    let bars = d.js("const ch = Chart.getChart(document.getElementById('impact-chart')); return ch ? ch.data.datasets[0].data : null").await;
    assert!(bars.as_array().is_some_and(|b| b.len() == 3 && b[1].as_u64().unwrap_or(0) >= 1), "{bars}");
    let points = d.js("const ch = Chart.getChart(document.getElementById('timeline-chart')); return ch ? ch.data.labels.length : 0").await;
    assert!(points.as_u64().unwrap_or(0) >= 24, "hours on the timeline: {points}");
    // The map has land drawn (not only the sea colour) and a located peer.
    let land = d
        .js("const c = document.getElementById('map'); const g = c.getContext('2d');
             const px = g.getImageData(0, 0, c.width, c.height).data; let land = 0;
             for (let i = 0; i < px.length; i += 4) if (px[i] === 0xd5 && px[i+1] === 0xdb && px[i+2] === 0xe5) land++;
             return land")
        .await;
    assert!(land.as_u64().unwrap_or(0) > 10_000, "country shapes drawn: {land}");
    d.js("document.getElementById('panel-impact').scrollIntoView(); window.scrollTo(0, 0); return true").await;
    d.screenshot("storyboard.png").await;

    // The executive briefing lists it.
    d.go(&format!("{site}/threats")).await;
    let listed = d.js("return document.querySelector('table.threats tbody').textContent").await;
    assert!(listed.as_str().unwrap_or_default().contains("Sales workstation beaconing to a VPS"), "{listed}");
    d.cmd(reqwest::Method::DELETE, "", json!({})).await;
    server.abort();
}

/// Values an attacker can put into the data (a DNS name, a user agent, a log line).
const HOSTILE_CSV: &str = "name,host,hits
\"<script>window.__pwned=1</script>\",10.0.0.1,5
\"<img src=x onerror=\"\"window.__pwned=2\"\">\",10.0.0.2,4
\"[Reset your password](//evil.example/a)\",10.0.0.3,3
\"# Urgent ![x](http://evil.example/p.png)\",10.0.0.4,2
\"javascript:window.__pwned=3\",10.0.0.5,1
";

const HOSTILE_PLAYBOOK: &str = "title: Hostile data
sections:
  - title: S
    steps:
      - id: rows
        title: Rows
        query:
          connector: hostile
          sql: SELECT name, host, hits FROM hostile ORDER BY hits DESC
      - id: note
        markdown: |
          Top name: {{ steps.rows.first.name }}. All: {% for r in steps.rows.data %}{{ r.name }} · {% endfor %}
      - id: per_name
        title: Hits per name
        query:
          sql: SELECT name, hits FROM rows
        chart: { type: bar, x: name, y: hits }
";

/// Checks that nothing of the hostile data ran or became a link, image or heading.
async fn inert(d: &Driver, place: &str) {
    let pwned = d.js("return window.__pwned || null").await;
    assert!(pwned.is_null(), "a script ran on {place}: {pwned}");
    let bad = d
        .js("return [...document.querySelectorAll('a[href], img[src], script[src], h1, h2, h3, h4')]
                .filter(e => (e.getAttribute('href') || e.getAttribute('src') || '').includes('evil.example')
                          || (e.getAttribute('href') || '').startsWith('javascript:')
                          || e.textContent.includes('Urgent')).map(e => e.outerHTML)")
        .await;
    assert_eq!(bad, json!([]), "hostile data became markup on {place}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_and_markdown_inside_data_stay_inert_in_tables_charts_storyboards_and_reports() {
    let data = common::fresh_data();
    let root = tempfile::tempdir().expect("dir");
    for d in ["playbooks", "connectors"] {
        std::fs::create_dir_all(root.path().join(d)).expect("dir");
    }
    std::fs::create_dir_all(data.path().join("hostile")).expect("dir");
    std::fs::write(data.path().join("hostile/h.csv"), HOSTILE_CSV).expect("csv");
    std::fs::write(root.path().join("connectors/hostile.yaml"), "format: csv\npath: hostile\n").expect("connector");
    std::fs::write(root.path().join("playbooks/hostile.yaml"), HOSTILE_PLAYBOOK).expect("playbook");
    let mut paths = common::paths_with(data.path());
    paths.playbooks = root.path().join("playbooks");
    paths.connectors = root.path().join("connectors");
    let (addr, server) = common::serve_paths(paths.clone()).await;
    let site = format!("http://{addr}");
    let d = Driver::start().await;
    d.sign_in(addr, "/p/hostile").await;
    d.click("button.run[data-section='0']").await;
    d.wait_for("return document.querySelectorAll('#results-0 table.data tbody tr').length >= 5 || null", "the table")
        .await;
    let labels = d
        .wait_for(
            "const c = document.querySelector('#results-0 canvas'); const ch = c && window.Chart && Chart.getChart(c);
             return ch && ch.data.labels.length ? ch.data.labels : null",
            "the chart",
        )
        .await;
    assert_eq!(labels[0], json!("<script>window.__pwned=1</script>"), "a label is drawn text: {labels}");
    let cells =
        d.js("return [...document.querySelectorAll('#results-0 table.data tbody td')].map(td => td.textContent)").await;
    let cells = cells.as_array().cloned().unwrap_or_default();
    for v in ["<script>window.__pwned=1</script>", "[Reset your password](//evil.example/a)"] {
        assert!(
            cells.iter().any(|c| c.as_str().is_some_and(|t| t.trim() == v)),
            "{v} is shown as the text it is: {cells:?}"
        );
    }
    let note = d.js("return document.querySelector('#results-0 .md-output').textContent").await;
    assert!(note.as_str().unwrap_or("").contains("[Reset your password](//evil.example/a)"), "{note}");
    inert(&d, "the playbook page").await;

    // The run's permalink, the saved threat's storyboard, and the report opened from disk.
    let run = d.js("return document.querySelector('#results-0 [data-run]').dataset.run").await;
    let run = run.as_str().expect("run id").to_string();
    d.go(&format!("{site}/runs/{run}")).await;
    d.wait_for("return document.querySelectorAll('table.data tbody tr').length >= 5 || null", "the permalink").await;
    inert(&d, "the permalink").await;
    d.js("document.getElementById('save-threat').open = true; return true").await;
    d.type_into("#threat-form [name=threat_title]", "Hostile names").await;
    d.type_into("#threat-form [name=threat_entity]", "10.0.0.1").await;
    d.click("#threat-form button[type=submit]").await;
    d.wait_for("return location.pathname.startsWith('/threats/') || null", "the storyboard").await;
    d.wait_for(
        "return document.querySelectorAll('details.evidence table.data tbody tr').length >= 5 || null",
        "its evidence",
    )
    .await;
    inert(&d, "the storyboard").await;

    let cookie = d.cmd(reqwest::Method::GET, "/cookie/casebook_session", json!({})).await;
    let session = format!("casebook_session={}", cookie["value"].as_str().expect("session cookie"));
    let report = reqwest::Client::new()
        .get(format!("{site}/runs/{run}/report.html"))
        .header("cookie", session)
        .send()
        .await
        .expect("report")
        .text()
        .await
        .expect("text");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("report.html");
    std::fs::write(&file, report).expect("write");
    d.go(&format!("file://{}", file.display())).await;
    d.wait_for("return document.body.dataset.ready === '1' || null", "the report script").await;
    inert(&d, "the report").await;
    d.cmd(reqwest::Method::DELETE, "", json!({})).await;
    server.abort();
}
