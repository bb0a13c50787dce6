//! Command line: `serve`, `check`, `run`, `test`, `schema`, `user`, `compact`, `demo`, and
//! with the `ballista` feature `ballista scheduler|executor` (clap), each a thin shell over
//! the library.

#[cfg(feature = "ballista")]
mod ballista;
mod compact;
mod run;
mod serve;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono_tz::Tz;
use clap::{Parser, Subcommand, ValueEnum};

use crate::catalog::Catalog;
use crate::engine::Engine;
use crate::store::Store;
use crate::util::paths::Paths;

#[derive(Debug, Parser)]
#[command(name = "casebook", version, about = "Playbook server for security analysts")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args, Clone, Default)]
pub struct Dirs {
    /// Playbooks folder (default: the repository's `playbooks/`).
    #[arg(long, global = true)]
    pub playbooks: Option<PathBuf>,
    /// Connectors folder (default: the repository's `connectors/`).
    #[arg(long, global = true)]
    pub connectors: Option<PathBuf>,
    /// Data folder: demo data, stored results, exports and state (default: `data/`).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// Time zone in which times are entered and shown (e.g. Europe/Prague).
    #[arg(long, global = true, env = "CASEBOOK_TZ", default_value = "UTC")]
    pub tz: String,
}

impl Dirs {
    pub fn paths(&self) -> Paths {
        let mut p = Paths::repository();
        if let Some(d) = &self.playbooks {
            p.playbooks = d.clone();
        }
        if let Some(d) = &self.connectors {
            p.connectors = d.clone();
        }
        if let Some(d) = &self.data {
            p.data = d.clone();
        }
        p
    }

    pub fn tz(&self) -> Result<Tz> {
        self.tz
            .parse::<Tz>()
            .map_err(|_| anyhow::anyhow!("unknown time zone `{}` (use a name such as Europe/Prague)", self.tz))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the playbooks as pages (generates the demo data first when there is none).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
        /// Stored runs and exports older than this many days are deleted daily (0: keep all).
        #[arg(long, default_value_t = 90)]
        retain_days: u32,
        /// Oldest stored data is deleted daily while the total exceeds this many GB (0: no limit).
        #[arg(long, default_value_t = 20)]
        retain_gb: u64,
        /// Single sign-on: a reverse proxy that authenticates users names the account in
        /// this header (e.g. X-Remote-User). Believed only from --trusted-proxy addresses.
        #[arg(long, requires = "trusted_proxy")]
        user_header: Option<String>,
        /// An address or network (127.0.0.1, 10.0.0.0/24) whose --user-header is believed
        /// (repeatable).
        #[arg(long = "trusted-proxy", value_delimiter = ',')]
        trusted_proxy: Vec<String>,
        /// Runs executing at once; more wait in order of arrival.
        #[arg(long, default_value_t = 4)]
        max_runs: usize,
        /// Runs one person may have queued or running at once; more are refused with a message.
        #[arg(long, default_value_t = 8)]
        max_runs_per_person: usize,
        /// Minutes after which a run is stopped.
        #[arg(long, default_value_t = 30)]
        run_timeout_min: u64,
        /// Memory one run's queries may use, in MB; a query needing more fails with a message.
        #[arg(long, default_value_t = 4096)]
        run_memory_mb: usize,
        /// Where the runs' queries execute: `local` (this process) or an Apache Ballista
        /// scheduler, df://HOST:PORT (casebook built with the `ballista` feature).
        #[arg(long, env = "CASEBOOK_ENGINE", default_value = "local")]
        engine: String,
        /// The address colleagues open, used in notification links (default: http://BIND).
        #[arg(long, env = "CASEBOOK_PUBLIC_URL")]
        public_url: Option<String>,
        /// Another host name colleagues use to reach casebook (repeatable). Requests naming a
        /// host casebook does not answer to are refused (DNS rebinding); `localhost`, IP
        /// addresses and the host of --public-url are always answered.
        #[arg(long = "allowed-host", env = "CASEBOOK_ALLOWED_HOSTS", value_delimiter = ',')]
        allowed_hosts: Vec<String>,
        /// A YAML file of named secrets (`SOC_WEBHOOK: https://…`), readable by its owner
        /// only (default: secrets.yaml in the data folder).
        #[arg(long, env = "CASEBOOK_SECRETS")]
        secrets: Option<PathBuf>,
        /// An environment variable that may be read as a secret of the same name
        /// (repeatable); no other variable is.
        #[arg(long = "secret-env", env = "CASEBOOK_SECRET_ENV", value_delimiter = ',')]
        secret_env: Vec<String>,
        /// A git repository of playbooks (URL or path), cloned into the playbooks folder when
        /// that folder is missing or empty; the management page then checks it for updates.
        #[arg(long, env = "CASEBOOK_PLAYBOOKS_REPO")]
        playbooks_repo: Option<String>,
        /// Generate the demo data when it is missing even if no connector reads `demo/`
        /// (by default it is generated only for connectors that read it).
        #[arg(long)]
        demo: bool,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Validate every connector and playbook; print problems as path:line:column.
    Check {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Run a playbook headless (all sections) and print its tables.
    Run {
        /// A playbook file, or the id of one in the playbooks folder.
        playbook: String,
        /// A parameter, as NAME=VALUE (repeatable).
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Print only this step's table.
        #[arg(long)]
        step: Option<String>,
        /// Also keep and print the tables of hidden steps, as stored Parquet files (a run
        /// from a page keeps only the tables it shows; the benchmark compares them all).
        #[arg(long)]
        keep_hidden: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Most rows printed per table in `table` format (csv and json print all).
        #[arg(long, default_value_t = 50)]
        max_rows: usize,
        /// Append each query's SQL, bound values and scan figures, then each step's time,
        /// rows and file, to FILE as JSON lines (what the benchmark replays in DuckDB).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Memory the run's queries may use, in MB (as `serve --run-memory-mb`).
        #[arg(long, default_value_t = 4096)]
        run_memory_mb: usize,
        /// Where the runs' queries execute: `local` (this process) or an Apache Ballista
        /// scheduler, df://HOST:PORT (casebook built with the `ballista` feature).
        #[arg(long, env = "CASEBOOK_ENGINE", default_value = "local")]
        engine: String,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Run the playbooks' self-tests (`tests:` in each playbook) on the data folder.
    Test {
        /// A playbook file or id; default: every playbook.
        playbook: Option<String>,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Write the JSON Schemas of playbook and connector files (for YAML editors).
    Schema {
        /// Folder to write `playbook.schema.json` and `connector.schema.json` into; without
        /// it, the playbook schema is printed.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Accounts: add, set a password, change, remove, list.
    User {
        #[command(subcommand)]
        command: users::UserCommand,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Rewrite what a connector reads as time-sorted, hour-partitioned Parquet with bloom
    /// filters (README, "Laying out your own data"), and print the connector that reads it.
    Compact {
        /// The connector to read (any format; mapped onto its standard schema).
        connector: String,
        /// A new folder to write `date=…/hour=…/part-0.parquet` into.
        #[arg(long)]
        out: PathBuf,
        /// Columns to give bloom filters (default: the standard schema's address and name
        /// columns).
        #[arg(long, value_delimiter = ',')]
        bloom: Option<Vec<String>>,
        #[command(flatten)]
        dirs: Dirs,
    },
    /// An Apache Ballista scheduler or executor for `serve --engine df://…` (built with the
    /// `ballista` feature).
    #[cfg(feature = "ballista")]
    Ballista {
        #[command(subcommand)]
        command: ballista::BallistaCommand,
    },
    /// (Re)generate the demo data.
    Demo {
        /// Flow records to generate.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Hours of data, ending at the current hour.
        #[arg(long, default_value_t = 48)]
        hours: u32,
        /// End of the data (RFC 3339, e.g. 2026-02-06T00:00:00Z); default: the current hour.
        #[arg(long)]
        end: Option<String>,
        #[command(flatten)]
        dirs: Dirs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what analysts do; one-shot commands only warn.
    let default_filter = if matches!(cli.command, Command::Serve { .. }) { "casebook=info,warn" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Serve {
            bind,
            retain_days,
            retain_gb,
            user_header,
            trusted_proxy,
            max_runs,
            max_runs_per_person,
            run_timeout_min,
            run_memory_mb,
            engine,
            public_url,
            allowed_hosts,
            secrets,
            secret_env,
            playbooks_repo,
            demo,
            dirs,
        } => {
            let limits = crate::engine::Limits {
                concurrent: max_runs.max(1),
                timeout: std::time::Duration::from_secs(run_timeout_min.max(1) * 60),
                memory_bytes: run_memory_mb.max(16) << 20,
                per_person: max_runs_per_person.max(1),
            };
            let retention = (retain_days > 0 || retain_gb > 0).then(|| crate::manage::Retention {
                max_age_days: if retain_days == 0 { f64::INFINITY } else { f64::from(retain_days) },
                max_bytes: if retain_gb == 0 { u64::MAX } else { retain_gb.saturating_mul(1 << 30) },
            });
            let proxy = match user_header {
                Some(h) => Some(crate::web::Proxy {
                    header: axum::http::HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| anyhow::anyhow!("--user-header `{h}` is not a header name"))?,
                    trusted: trusted_proxy
                        .iter()
                        .map(|t| {
                            let t = t.trim();
                            t.parse::<ipnet::IpNet>()
                                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                                .map_err(|_| anyhow::anyhow!("--trusted-proxy `{t}` is not an address or network"))
                        })
                        .collect::<Result<_>>()?,
                }),
                None => None,
            };
            let opts = serve::ServeOptions {
                bind,
                cluster: cluster(&engine).await?,
                retention,
                proxy,
                limits,
                public_url,
                allowed_hosts,
                secrets,
                secret_env,
                playbooks_repo,
                demo,
            };
            serve::serve(opts, &dirs).await.map(|_| ExitCode::SUCCESS)
        }
        Command::Check { dirs } => check(&dirs).await,
        Command::Run { playbook, params, step, keep_hidden, format, max_rows, trace, run_memory_mb, engine, dirs } => {
            let cluster = cluster(&engine).await?;
            let memory_bytes = run_memory_mb.max(16) << 20;
            let printing = run::Printing { format, max_rows, trace, memory_bytes, cluster, keep_hidden };
            run::run(&playbook, &params, step.as_deref(), printing, &dirs).await
        }
        Command::Test { playbook, dirs } => self_test(playbook.as_deref(), &dirs).await,
        Command::Schema { out } => {
            match out {
                Some(dir) => {
                    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                    for (name, text) in
                        [("playbook", crate::schema::playbook()), ("connector", crate::schema::connector())]
                    {
                        let path = dir.join(format!("{name}.schema.json"));
                        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                        println!("{}", path.display());
                    }
                }
                None => println!("{}", crate::schema::playbook()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::User { command, dirs } => {
            let store = Store::open(&dirs.paths().state_db())?;
            users::run(command, &store)
        }
        Command::Compact { connector, out, bloom, dirs } => {
            let catalog = Catalog::load(dirs.paths(), dirs.tz()?).await;
            let started = std::time::Instant::now();
            let rows = compact::compact(&catalog, &connector, &out, bloom).await?;
            eprintln!("{rows} rows written under {} in {:.1} s", out.display(), started.elapsed().as_secs_f64());
            println!("{}", compact::connector_yaml(&catalog, &connector, &out));
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "ballista")]
        Command::Ballista { command } => ballista::run(command).await,
        Command::Demo { rows, seed, hours, end, dirs } => {
            let paths = dirs.paths();
            let end = match end {
                Some(e) => Some(
                    chrono::DateTime::parse_from_rfc3339(&e)
                        .map_err(|_| anyhow::anyhow!("--end `{e}` is not a time such as 2026-02-06T00:00:00Z"))?
                        .with_timezone(&chrono::Utc),
                ),
                None => None,
            };
            let opts = crate::demo::Options { rows, seed, hours, end };
            let summary = crate::demo::generate(&paths.data, &opts).context("generating demo data")?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--engine` read, and a cluster checked: it answers and runs this casebook's version.
async fn cluster(engine: &str) -> Result<Option<crate::sql::session::Cluster>> {
    let cluster = crate::sql::session::Cluster::from_flag(engine).map_err(anyhow::Error::msg)?;
    #[cfg(feature = "ballista")]
    if let Some(c) = &cluster {
        if let Some(warning) = crate::sql::cluster::check(c).await? {
            eprintln!("warning: {warning}");
        }
    }
    Ok(cluster)
}

async fn check(dirs: &Dirs) -> Result<ExitCode> {
    let catalog = Catalog::load(dirs.paths(), dirs.tz()?).await;
    let mut n = 0;
    for p in catalog.problems() {
        println!("{p}");
        n += 1;
    }
    for c in &catalog.connectors {
        eprintln!("✓ connector {} ({})", c.name, c.path);
    }
    for e in &catalog.playbooks {
        if e.problems.is_empty() {
            eprintln!("✓ playbook {} ({})", e.id, e.path);
        } else {
            eprintln!("✗ playbook {} ({}): {} problem(s)", e.id, e.path, e.problems.len());
        }
    }
    if n > 0 {
        eprintln!("{n} problem(s)");
        Ok(ExitCode::from(1))
    } else {
        eprintln!("all good");
        Ok(ExitCode::SUCCESS)
    }
}

async fn self_test(playbook: Option<&str>, dirs: &Dirs) -> Result<ExitCode> {
    let paths = dirs.paths();
    let catalog = Arc::new(Catalog::load(paths.clone(), dirs.tz()?).await);
    let entries: Vec<crate::catalog::Entry> = match playbook {
        Some(p) if PathBuf::from(p).is_file() => vec![catalog.load_playbook(&PathBuf::from(p)).await],
        Some(p) => vec![catalog.entry(p).cloned().ok_or_else(|| anyhow::anyhow!("no playbook file or id `{p}`"))?],
        None => catalog.playbooks.clone(),
    };
    let store = Store::open(&paths.state_db())?;
    let engine = Arc::new(Engine::new(catalog.clone(), store));
    let (mut passed, mut failed) = (0, 0);
    for e in &entries {
        let Some(pb) = e.runnable().filter(|_| e.problems.is_empty()) else {
            println!("✗ {}: cannot run, {} problem(s) (see `casebook check`)", e.id, e.problems.len());
            for p in &e.problems {
                println!("    {p}");
            }
            failed += 1;
            continue;
        };
        if pb.tests.is_empty() {
            println!("- {}: no tests", pb.id);
            continue;
        }
        for o in crate::jobs::selftest::run(&engine, pb).await {
            if o.passed() {
                passed += 1;
                println!("✓ {} › {}", o.playbook, o.test);
            } else {
                failed += 1;
                for f in &o.failures {
                    println!("✗ {} › {} › {f}", o.playbook, o.test);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
