//! `casebook run`: one playbook run from the command line, its tables printed, and with
//! `--trace` each query's SQL, bound values and scans written as JSON lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono_tz::Tz;

use super::{Dirs, Format};
use crate::catalog::Catalog;
use crate::engine::{Engine, RunRequest};
use crate::store::Store;

/// How `casebook run` prints what it made.
pub(super) struct Printing {
    pub format: Format,
    pub max_rows: usize,
    pub trace: Option<PathBuf>,
    /// The run's memory limit.
    pub memory_bytes: usize,
    /// `--engine df://…`: the cluster the queries execute on.
    pub cluster: Option<crate::sql::session::Cluster>,
    /// `--keep-hidden`: the hidden steps' tables are stored and printed too.
    pub keep_hidden: bool,
}

pub(super) async fn run(
    playbook: &str,
    raw_params: &[String],
    step: Option<&str>,
    printing: Printing,
    dirs: &Dirs,
) -> Result<ExitCode> {
    let Printing { format, max_rows, trace, memory_bytes, cluster, keep_hidden } = printing;
    let paths = dirs.paths();
    let catalog = Arc::new(Catalog::load(paths.clone(), dirs.tz()?).await);
    let file = PathBuf::from(playbook);
    let entry = if file.is_file() {
        catalog.load_playbook(&file).await
    } else {
        match catalog.entry(playbook) {
            Some(e) => e.clone(),
            None => bail!("no playbook file or id `{playbook}`"),
        }
    };
    if !entry.problems.is_empty() {
        for p in &entry.problems {
            eprintln!("{p}");
        }
        return Ok(ExitCode::from(1));
    }
    let Some(pb) = entry.playbook.clone() else { bail!("playbook `{playbook}` could not be loaded") };
    let mut given: Vec<(String, String)> = Vec::new();
    for p in raw_params {
        let Some((k, v)) = p.split_once('=') else { bail!("--param takes NAME=VALUE, got `{p}`") };
        if pb.param(k.trim()).is_none() {
            let known: Vec<&str> = pb.params.iter().map(|p| p.name.as_str()).collect();
            bail!("`{}` has no parameter `{}` (it has: {})", pb.id, k.trim(), known.join(", "));
        }
        given.push((k.trim().to_string(), v.to_string()));
    }
    if let Some(s) = step {
        if pb.step(s).is_none() {
            bail!("`{}` has no step `{s}`", pb.id);
        }
    }
    let cx = catalog.parse_ctx();
    let raw = |name: &str| given.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let values = match crate::model::params::parse_all(&pb.params, raw, &cx) {
        Ok(values) => values,
        Err(errors) => {
            for (name, e) in errors {
                eprintln!("--param {name}: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let store = Store::open(&paths.state_db())?;
    let limits = crate::engine::Limits { memory_bytes, ..crate::engine::Limits::default() };
    let mut engine = Engine::with_limits(catalog.clone(), store, limits);
    engine.trace = trace.clone();
    engine.cluster = cluster;
    let engine = Arc::new(engine);
    let who = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    // The tables a page shows are printed (or the one `--step` names); with --keep-hidden,
    // the hidden ones too. As from a page, a hidden table no one asked for is not written.
    let keep = if keep_hidden { None } else { Some(step.map(|s| vec![s.to_string()]).unwrap_or_default()) };
    let req = RunRequest::new(pb.clone(), values, who, "cli").keeping(keep);
    let outcome = engine.run(req.clone()).await?;
    if let Some(path) = &trace {
        let dir = paths.run_dir(&outcome.run_id);
        let mut lines = String::new();
        for s in &outcome.steps {
            // A hidden table the run did not keep has no file.
            let file = Some(dir.join(format!("{}.parquet", s.id))).filter(|f| s.rows.is_some() && f.exists());
            let file = file.map(|f| f.display().to_string());
            let line = serde_json::json!({
                "run": outcome.run_id, "done": s.id, "elapsed_ms": s.elapsed_ms, "rows": s.rows,
                "scan": s.scan, "error": s.error, "file": file,
            });
            lines.push_str(&format!("{line}\n"));
        }
        crate::engine::run::append_to_trace(path, &lines)
            .with_context(|| format!("writing the trace {}", path.display()))?;
    }
    let mut failed = false;
    let tz = engine.tz();
    let mut out = std::io::stdout().lock();
    let printed: Vec<_> = outcome
        .steps
        .iter()
        .filter(|s| step.is_none_or(|only| s.id == only))
        .filter(|s| s.error.is_some() || s.html.is_some() || (s.rows.is_some() && req.keeps(&s.id, s.show_table)))
        .collect();
    let many = printed.len() > 1;
    if format == Format::Json {
        use std::io::Write;
        write!(out, "{{")?;
    }
    for (i, s) in printed.iter().enumerate() {
        if let Some(e) = &s.error {
            eprintln!("step {}: {e}", s.id);
            failed = true;
            continue;
        }
        if s.rows.is_none() {
            continue;
        }
        let data = engine.step_data(&outcome.run_id, &s.id)?;
        use crate::results::formats::in_memory;
        use std::io::Write;
        match format {
            Format::Csv => {
                if many {
                    writeln!(out, "# step: {}", s.id)?;
                }
                crate::results::formats::write_delimited(&mut out, &data.schema, in_memory(&data), tz)?;
                if many {
                    writeln!(out)?;
                }
            }
            Format::Json => {
                if i > 0 {
                    write!(out, ",")?;
                }
                write!(out, "\n{}: ", serde_json::Value::String(s.id.clone()))?;
                crate::results::formats::write_json_rows(&mut out, in_memory(&data), tz)?;
            }
            Format::Table => {
                writeln!(out, "== {} ({} rows)", s.title.as_deref().unwrap_or(&s.id), data.rows)?;
                print_table(&mut out, &data, tz, max_rows)?;
                writeln!(out)?;
            }
        }
    }
    if format == Format::Json {
        use std::io::Write;
        writeln!(out, "}}")?;
    }
    eprintln!("run {}", outcome.run_id);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_table(out: &mut dyn std::io::Write, data: &crate::results::StepData, tz: Tz, max_rows: usize) -> Result<()> {
    let cols: Vec<String> = data.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    'b: for b in &data.batches {
        for r in 0..b.num_rows() {
            if rows.len() >= max_rows {
                break 'b;
            }
            rows.push((0..b.num_columns()).map(|c| crate::results::cell_text(b.column(c), r, tz)).collect());
        }
    }
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r[i].chars().count()).chain([c.chars().count()]).max().unwrap_or(0).min(60))
        .collect();
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(*w).collect();
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    writeln!(out, "{}", line(&cols))?;
    writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"))?;
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    if data.rows > rows.len() {
        writeln!(out, "… {} more rows (use --format csv for all)", data.rows - rows.len())?;
    }
    Ok(())
}
