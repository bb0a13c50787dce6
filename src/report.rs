//! Reports: a run as one self-contained HTML file (styles, data, chart library and charts
//! inline; it opens with no server and no network), and as PDF through headless Chromium
//! when it is installed.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::engine::Engine;
use crate::results::cell_text;

/// Rows of each table written into a report; the full results stay in exports.
pub const REPORT_ROWS: usize = 1000;

const CHROMIUM: &str = "/usr/bin/chromium";

fn inline_script(text: &str) -> String {
    // A script's text must not close its own element.
    text.replace("</script", "<\\/script")
}

/// The report of run `run_id`, rendered with `env`'s `report.html`.
pub fn html(engine: &Engine, env: &minijinja::Environment<'_>, web: &Path, run_id: &str) -> Result<String> {
    let run = engine.store.run(run_id)?.ok_or_else(|| anyhow!("no such run"))?;
    let catalog = engine.catalog();
    let title = catalog
        .entry(&run.playbook)
        .and_then(|e| e.shown())
        .map(|p| p.title.clone())
        .unwrap_or_else(|| run.playbook.clone());
    let tz = engine.tz();
    let mut steps = Vec::new();
    for rec in engine.store.steps(run_id)? {
        let outcome: serde_json::Value = rec.outcome_as().unwrap_or(serde_json::Value::Null);
        let show_table = outcome["show_table"].as_bool().unwrap_or(true);
        let mut table = serde_json::Value::Null;
        if rec.rows.is_some() && show_table {
            let data = engine.step_data(run_id, &rec.step_id)?;
            let columns: Vec<String> = data.schema.fields().iter().map(|f| f.name().clone()).collect();
            let mut rows = Vec::new();
            'b: for b in &data.batches {
                for r in 0..b.num_rows() {
                    if rows.len() >= REPORT_ROWS {
                        break 'b;
                    }
                    rows.push(
                        (0..b.num_columns())
                            .map(|c| json!({"text": cell_text(b.column(c), r, tz), "num": b.column(c).data_type().is_numeric()}))
                            .collect::<Vec<_>>(),
                    );
                }
            }
            table = json!({"columns": columns, "rows": rows, "total": data.rows, "shown": rows.len()});
        } else if !outcome["chart"].is_object() && outcome["html"].is_null() && rec.error.is_none() {
            continue; // a step that fed others and showed nothing
        }
        steps.push(json!({
            "id": rec.step_id,
            "title": outcome["title"],
            "rows": rec.rows,
            "error": rec.error,
            "html": outcome["html"],
            "chart": outcome["chart"],
            "table": table,
        }));
    }
    let css = std::fs::read_to_string(web.join("static/casebook.css")).context("reading casebook.css")?;
    let chart_js =
        std::fs::read_to_string(web.join("static/vendor/chart-4.6.1.umd.min.js")).context("reading Chart.js")?;
    let report_js = std::fs::read_to_string(web.join("static/report.js")).context("reading report.js")?;
    let params: serde_json::Value = serde_json::from_str(&run.params).unwrap_or(serde_json::Value::Null);
    let html = env.get_template("report.html")?.render(json!({
        "title": title,
        "run": run,
        "params": params,
        "steps": steps,
        "tz": tz.name(),
        "css": css,
        "chart_js": inline_script(&chart_js),
        "report_js": inline_script(&report_js),
        "generated": chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    }))?;
    Ok(html)
}

/// Whether PDF reports can be made here.
pub fn pdf_available() -> bool {
    Path::new(CHROMIUM).is_file()
}

/// Prints `html` to PDF with headless Chromium (networking off), within 60 seconds.
pub async fn pdf(html: &str) -> Result<Vec<u8>> {
    if !pdf_available() {
        bail!("PDF reports need Chromium ({CHROMIUM}); the HTML report works without it");
    }
    let dir = tempfile_dir()?;
    let input = dir.join("report.html");
    let output = dir.join("report.pdf");
    std::fs::write(&input, html)?;
    let profile = dir.join("profile");
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--no-pdf-header-footer",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--print-to-pdf={}", output.display()))
    .arg(format!("file://{}", input.display()))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    let printed = async {
        let status = tokio::time::timeout(Duration::from_secs(60), cmd.status())
            .await
            .map_err(|_| anyhow!("Chromium took longer than 60 s to print the report"))??;
        std::fs::read(&output).with_context(|| format!("Chromium ({status}) wrote no PDF"))
    }
    .await;
    // The temporary folder goes whether printing worked or not.
    let _ = std::fs::remove_dir_all(&dir);
    printed
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("casebook-report-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
