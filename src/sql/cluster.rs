//! Apache Ballista (feature `ballista`): sessions whose queries execute on a cluster, and the
//! scheduler and executors started from casebook's own binary, each with casebook's SQL
//! functions, so a playbook's SQL means the same on the cluster as on one machine.
//!
//! The client plans a query as locally (the same parser, functions and bound values), then
//! Ballista's planner sends the logical plan to the scheduler, which plans its stages and
//! hands them to executors. Tables reach the cluster as plans: connectors over files (Parquet,
//! CSV, NDJSON, through their views) and a run's step tables, registered from their Parquet
//! files; every executor must see those paths (one machine, or a shared file system).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::SessionStateExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::CancelJobParams;
use datafusion::execution::SessionState;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::functions::{self, VERSION};
use super::session::Cluster;

/// `local` turned into a session whose queries go to the scheduler of `cluster`: the same
/// settings, the same functions, Ballista's planner in place of the local one.
pub fn remote(local: &SessionContext, cluster: &Cluster) -> Result<SessionContext, String> {
    let address = cluster.grpc_address();
    let mut state = local
        .state()
        .upgrade_for_ballista(address)
        .map_err(|e| format!("cannot use the cluster at {}: {e}", cluster.url))?;
    state.config_mut().set_extension(Arc::new(cluster.clone()));
    // The client asks for its job's state: the job's id is known as soon as the scheduler
    // accepts the query (pushed states name it only when the job ends), so a cancelled run
    // cancels its job, and the progress line names it.
    state
        .config_mut()
        .options_mut()
        .set(ballista_core::config::BALLISTA_CLIENT_PULL, "true")
        .map_err(|e| format!("cannot use the cluster at {}: {e}", cluster.url))?;
    // Sent with every query; the scheduler refuses another version's.
    state.config_mut().options_mut().extensions.insert(CasebookOptions { version: VERSION.to_string() });
    // Ballista's upgrade sets its own function list; casebook's go back on top.
    let ctx = SessionContext::new_with_state(state);
    functions::register(&ctx);
    Ok(ctx)
}

/// What a casebook server tells the cluster with every query: `casebook.version`.
#[derive(Debug, Clone, Default)]
pub struct CasebookOptions {
    /// The version of the casebook that planned the query.
    pub version: String,
}

impl datafusion::common::config::ExtensionOptions for CasebookOptions {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn datafusion::common::config::ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> datafusion::common::Result<()> {
        match key {
            "version" => {
                self.version = value.to_string();
                Ok(())
            }
            other => Err(datafusion::common::DataFusionError::Configuration(format!("no setting casebook.{other}"))),
        }
    }

    /// Keys in full: Ballista sends the entries as they are, and DataFusion's own macro
    /// leaves an extension's prefix off.
    fn entries(&self) -> Vec<datafusion::common::config::ConfigEntry> {
        vec![datafusion::common::config::ConfigEntry {
            key: "casebook.version".to_string(),
            value: Some(self.version.clone()),
            description: "the version of the casebook that planned the query",
        }]
    }
}

impl datafusion::common::config::ConfigExtension for CasebookOptions {
    const PREFIX: &'static str = "casebook";
}

/// The scheduler's refusal of a query planned by another casebook version.
fn refusal(theirs: &str) -> String {
    format!(
        "the cluster runs casebook {VERSION} and this server is casebook {theirs}: run the same version on \
         the server, the scheduler and the executors"
    )
}

/// Asks the cluster for its casebook version (`casebook_version()`, evaluated on an
/// executor) and refuses one that differs from this binary's, or that does not answer.
///
/// A cluster whose executors are all busy (or not started yet) cannot answer at once: that
/// is a warning (`Ok(Some(…))`), not a refusal; the scheduler still checks every query.
pub async fn check(cluster: &Cluster) -> anyhow::Result<Option<String>> {
    let ctx = remote(&super::session::new_session(), cluster).map_err(anyhow::Error::msg)?;
    let ask = async {
        let df = ctx.sql("SELECT casebook_version() AS v").await?;
        df.collect().await
    };
    let batches = match tokio::time::timeout(Duration::from_secs(10), ask).await {
        Err(_) => {
            return Ok(Some(format!(
                "the scheduler at {} answers, but no executor took a test query within 10 s: runs wait \
                 until one is free (start executors with `casebook ballista executor --scheduler {}`)",
                cluster.url, cluster.url
            )))
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            if let Some(refused) = super::remote::refusal_in(&text) {
                anyhow::bail!("{} (at {})", refused, cluster.url)
            }
            if text.contains("casebook_version") {
                anyhow::bail!(
                    "the cluster at {} does not know casebook's SQL functions: start its scheduler and \
                     executors with `casebook ballista scheduler` and `casebook ballista executor`",
                    cluster.url
                )
            }
            if text.contains("transport error") || text.contains("Connection refused") || text.contains("connect") {
                anyhow::bail!(
                    "no Ballista scheduler answers at {} (is `casebook ballista scheduler` running?)",
                    cluster.url
                )
            }
            anyhow::bail!("the cluster at {} refused a test query: {}", cluster.url, super::session::clean_error(&e).0)
        }
        Ok(Ok(b)) => b,
    };
    use datafusion::arrow::array::{Array, StringArray};
    let theirs = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| b.column(0).as_any().downcast_ref::<StringArray>().map(|a| a.value(0).to_string()));
    match theirs {
        Some(v) if v == VERSION => Ok(None),
        Some(v) => anyhow::bail!(
            "the executors at {} run casebook {v} and this server is casebook {VERSION}: run the same \
             version on the server, the scheduler and the executors",
            cluster.url
        ),
        None => anyhow::bail!("the cluster at {} gave no answer to a test query", cluster.url),
    }
}

/// casebook's functions on a session state of the scheduler's or an executor's.
fn with_functions(state: SessionState) -> SessionState {
    let ctx = SessionContext::new_with_state(state);
    functions::register(&ctx);
    ctx.state()
}

/// A server's session on the scheduler, made from the settings its query carries: one of
/// another casebook version is refused before anything runs.
fn scheduler_session(c: datafusion::prelude::SessionConfig) -> datafusion::common::Result<SessionState> {
    let theirs = c.options().extensions.get::<CasebookOptions>().map(|o| o.version.clone()).unwrap_or_default();
    if !theirs.is_empty() && theirs != VERSION {
        return Err(datafusion::common::DataFusionError::Configuration(refusal(&theirs)));
    }
    ballista_core::utils::default_session_builder(c).map(with_functions)
}

/// Where a scheduler listens and what it tells executors and clients its host is.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: SocketAddr,
    pub external_host: Option<String>,
}

/// Runs a Ballista scheduler (in-memory cluster state) until the process is stopped.
pub async fn run_scheduler(opts: SchedulerOptions) -> anyhow::Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let mut config = SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        bind_port: opts.bind.port(),
        external_host: opts.external_host.unwrap_or_else(|| opts.bind.ip().to_string()),
        // A lost executor is noticed within 20 s (Ballista's default is three minutes);
        // executors beat every 5 s.
        executor_timeout_seconds: 15,
        // Executors ask for work when a slot of theirs is free: with push scheduling, the
        // slot of a task cancelled on a surviving executor after another was lost stayed
        // taken in the scheduler's books, and re-runs waited for it.
        scheduling_policy: ballista_core::config::TaskSchedulingPolicy::PullStaged,
        expire_dead_executor_interval_seconds: 5,
        no_executors_grace_period_seconds: 15,
        ..SchedulerConfig::default()
    };
    config.override_config_producer = Some(Arc::new(|| {
        use ballista_core::extension::SessionConfigExt;
        let mut c = datafusion::prelude::SessionConfig::new_with_ballista();
        c.options_mut().extensions.insert(CasebookOptions::default());
        c
    }));
    config.override_session_builder = Some(Arc::new(scheduler_session));
    let cluster = BallistaCluster::new_from_config(&config).await?;
    eprintln!("casebook {VERSION}: Ballista scheduler listening on df://{}", opts.bind);
    ballista_scheduler::scheduler_process::start_server(cluster, opts.bind, Arc::new(config)).await?;
    Ok(())
}

/// Where an executor listens, which scheduler it serves, what it may use.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler: String,
    /// The Arrow Flight address (results and shuffles); its gRPC service takes the next port.
    pub bind: SocketAddr,
    pub external_host: Option<String>,
    /// Tasks at once (0: one per core).
    pub concurrency: usize,
    /// Shuffle files; a temporary folder without it.
    pub work_dir: Option<std::path::PathBuf>,
    /// Memory of all its tasks together, in bytes (spilling beyond); None: Ballista's share of
    /// the host's memory.
    pub memory: Option<u64>,
}

/// Runs a Ballista executor with casebook's functions until it is stopped.
pub async fn run_executor(opts: ExecutorOptions) -> anyhow::Result<()> {
    use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
    let scheduler = Cluster::parse(&opts.scheduler).map_err(anyhow::Error::msg)?;
    let mut registry = BallistaFunctionRegistry::default();
    for f in functions::all() {
        registry.scalar_functions.insert(f.name().to_string(), Arc::new(f));
    }
    for f in super::aggregates::all() {
        registry.aggregate_functions.insert(f.name().to_string(), Arc::new(f));
    }
    let config = ExecutorProcessConfig {
        bind_host: opts.bind.ip().to_string(),
        external_host: opts.external_host.or_else(|| Some(opts.bind.ip().to_string())),
        port: opts.bind.port(),
        grpc_port: opts.bind.port().saturating_add(1),
        scheduler_host: scheduler.host.clone(),
        scheduler_port: scheduler.port,
        // Keep trying while the scheduler starts.
        scheduler_connect_timeout_seconds: 60,
        vcores: opts.concurrency,
        work_dir: opts.work_dir.map(|p| p.display().to_string()),
        memory_pool_size: opts.memory,
        // Heartbeats well inside the scheduler's 15 s executor timeout.
        executor_heartbeat_interval_seconds: 5,
        task_scheduling_policy: ballista_core::config::TaskSchedulingPolicy::PullStaged,
        override_function_registry: Some(Arc::new(registry)),
        ..ExecutorProcessConfig::default()
    };
    eprintln!("casebook {VERSION}: Ballista executor on {} serving the scheduler at {}", opts.bind, opts.scheduler);
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// Cancels a query's Ballista job when it is dropped before [`Job::finished`] (a cancelled
/// run, its time limit, a failed step): the cluster stops working for no one.
pub struct Job {
    cluster: Arc<Cluster>,
    plan: Arc<dyn ExecutionPlan>,
    finished: bool,
}

impl Job {
    /// The job of `plan` when it runs on a cluster.
    pub fn of(ctx: &SessionContext, plan: &Arc<dyn ExecutionPlan>) -> Option<Job> {
        Some(Job { cluster: super::session::cluster_of(ctx)?, plan: plan.clone(), finished: false })
    }

    pub fn finished(mut self) {
        self.finished = true;
    }

    /// The job's id, once the scheduler has accepted the query.
    pub fn id(&self) -> Option<String> {
        use ballista_core::execution_plans::DistributedQueryExec;
        use datafusion_proto::protobuf::LogicalPlanNode;
        let exec = self.plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>()?;
        exec.job_id().map(|j| j.to_string())
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("cluster", &self.cluster.url).field("job", &self.id()).finish()
    }
}

impl Job {
    /// Cancels the job now (a step that gives up on it waits until the scheduler knows).
    pub async fn cancel(mut self) {
        self.finished = true;
        if let Some(job_id) = self.id() {
            cancel(self.cluster.grpc_address(), job_id).await;
        }
    }
}

async fn cancel(address: String, job_id: String) {
    let cancelled = async {
        let mut client = SchedulerGrpcClient::connect(address).await?;
        client.cancel_job(CancelJobParams { job_id: job_id.clone() }).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    match tokio::time::timeout(Duration::from_secs(10), cancelled).await {
        Ok(Ok(())) => tracing::info!(job = %job_id, "cancelled the query's Ballista job"),
        Ok(Err(e)) => tracing::warn!(job = %job_id, error = %e, "could not cancel the query's Ballista job"),
        Err(_) => tracing::warn!(job = %job_id, "the scheduler did not answer the cancellation of a Ballista job"),
    }
}

impl Drop for Job {
    /// A query dropped unfinished (a cancelled run, its time limit): its job is cancelled in
    /// the background.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(job_id) = self.id() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(cancel(self.cluster.grpc_address(), job_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista_core::extension::{SessionConfigExt, SessionConfigHelperExt};
    use ballista_core::serde::protobuf::KeyValuePair;

    /// The scheduler's session for settings as a server of `version` sends them.
    fn session_for(version: &str) -> datafusion::common::Result<SessionState> {
        let mut sent = datafusion::prelude::SessionConfig::new_with_ballista();
        sent.options_mut().extensions.insert(CasebookOptions { version: version.to_string() });
        let settings: Vec<KeyValuePair> = sent.to_key_value_pairs();
        assert!(settings.iter().any(|kv| kv.key == "casebook.version"), "the version is not sent");
        let mut produced = datafusion::prelude::SessionConfig::new_with_ballista();
        produced.options_mut().extensions.insert(CasebookOptions::default());
        scheduler_session(produced.update_from_key_value_pair(&settings))
    }

    #[test]
    fn the_scheduler_refuses_a_query_planned_by_another_casebook_version_in_words() {
        let state = session_for(VERSION).expect("the same version is served");
        assert!(state.scalar_functions().contains_key("ip_in"), "casebook's functions are on the scheduler");
        let Err(e) = session_for("0.0.1") else { panic!("another version was served") };
        // As the server receives it: wrapped in gRPC's status text.
        let wire = format!(
            "Execution error: Status {{ code: Internal, message: \"Failed to create SessionContext: {e:?}\" }}"
        );
        let shown = super::super::remote::refusal_in(&wire).expect("the refusal is found");
        assert_eq!(
            shown,
            format!(
                "the cluster runs casebook {VERSION} and this server is casebook 0.0.1: run the same version on \
                 the server, the scheduler and the executors"
            )
        );
    }
}
