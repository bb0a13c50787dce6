//! `casebook ballista scheduler|executor` (feature `ballista`): a Ballista cluster started
//! from casebook's own binary, with casebook's SQL functions on every executor.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::sql::cluster::{run_executor, run_scheduler, ExecutorOptions, SchedulerOptions};

#[derive(Debug, Subcommand)]
pub enum BallistaCommand {
    /// A Ballista scheduler: plans the queries servers send it and hands their stages to
    /// executors. Servers reach it with `serve --engine df://HOST:PORT`.
    Scheduler {
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// The host name executors and servers reach this scheduler by (default: the
        /// address of --bind).
        #[arg(long)]
        external_host: Option<String>,
    },
    /// A Ballista executor: runs the stages its scheduler hands it, with casebook's SQL
    /// functions. It must see the data folder at the same path as the server.
    Executor {
        /// The scheduler to serve, as df://HOST:PORT.
        #[arg(long, default_value = "df://127.0.0.1:50050")]
        scheduler: String,
        /// Where results and shuffles are fetched from (Arrow Flight); its control service
        /// listens on the next port.
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: SocketAddr,
        /// The host name the scheduler and other executors reach this one by (default: the
        /// address of --bind).
        #[arg(long)]
        external_host: Option<String>,
        /// Tasks at once (default: one per core).
        #[arg(long, default_value_t = 0)]
        concurrency: usize,
        /// Folder for shuffle files (default: a temporary folder).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Memory all its tasks may use together, in MB; what needs more spills to
        /// --work-dir (default: Ballista's share of the host's memory).
        #[arg(long)]
        memory_mb: Option<u64>,
    },
}

pub async fn run(cmd: BallistaCommand) -> Result<ExitCode> {
    match cmd {
        BallistaCommand::Scheduler { bind, external_host } => {
            run_scheduler(SchedulerOptions { bind, external_host }).await?;
        }
        BallistaCommand::Executor { scheduler, bind, external_host, concurrency, work_dir, memory_mb } => {
            let opts = ExecutorOptions {
                scheduler,
                bind,
                external_host,
                concurrency,
                work_dir,
                memory: memory_mb.map(|mb| mb.saturating_mul(1 << 20)),
            };
            run_executor(opts).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
