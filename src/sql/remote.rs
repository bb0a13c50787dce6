//! A Ballista cluster as casebook's settings name it (`--engine df://host:port`), known
//! without Ballista's crates: the address, whether a session's queries go there, and the
//! scheduler's health. Sessions on it and the scheduler and executors themselves are in
//! `sql/cluster.rs` (feature `ballista`).

use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::{source_as_provider, ViewTable};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;

/// A Ballista scheduler whose cluster executes the runs' queries; without one, they
/// execute in casebook's own process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// As the administrator wrote it: `df://host:port`.
    pub url: String,
    pub host: String,
    pub port: u16,
}

impl Cluster {
    /// `df://host:port` (or `host:port`; the port defaults to Ballista's 50050).
    pub fn parse(url: &str) -> Result<Cluster, String> {
        let rest = url.strip_prefix("df://").unwrap_or(url).trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("`{url}`: the port `{p}` is not a number"))?),
            None => (rest, 50050),
        };
        let host_ok =
            !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !host_ok {
            return Err(format!("`{url}` is not a scheduler address (write it as df://host:50050)"));
        }
        Ok(Cluster { url: format!("df://{host}:{port}"), host: host.to_string(), port })
    }

    /// `--engine` as given: `local` for casebook's own process, `df://…` for a Ballista
    /// cluster (refused when casebook was built without the `ballista` feature).
    pub fn from_flag(engine: &str) -> Result<Option<Cluster>, String> {
        match engine.trim() {
            "" | "local" => Ok(None),
            url if cfg!(feature = "ballista") => Cluster::parse(url).map(Some),
            url => Err(format!(
                "--engine {url}: this casebook was built without Ballista; build it with \
                 `cargo build --release --features ballista`"
            )),
        }
    }

    /// The scheduler's gRPC (and HTTP) address.
    pub fn grpc_address(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The scheduler's own readiness (`/readyz`: answering, and how many executors are
    /// registered), as the management page shows it.
    pub async fn health(&self) -> (bool, String) {
        match http_client() {
            Ok(client) => self.readyz(&client).await,
            Err(e) => (false, format!("cannot ask: {e}")),
        }
    }

    async fn readyz(&self, client: &reqwest::Client) -> (bool, String) {
        match client.get(format!("{}/readyz", self.grpc_address())).send().await {
            Ok(r) => {
                let ok = r.status().is_success();
                let text = r.text().await.unwrap_or_default();
                (ok, text.trim().to_string())
            }
            Err(_) => (false, "the scheduler does not answer".to_string()),
        }
    }

    /// Executors the scheduler has registered and alive (from its `/readyz` answer).
    async fn executors(&self, client: &reqwest::Client) -> Result<usize, String> {
        let (_, text) = self.readyz(client).await;
        // "ready: 2 executors registered" or "not ready: 0/1 executors registered".
        text.split(" executors registered")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.split('/').next())
            .and_then(|n| n.parse().ok())
            .ok_or(text)
    }
}

/// The client that asks schedulers how they are: short timeouts, one per watch.
fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()
}

/// Resolves, with the message the step shows, when the cluster of `ctx` loses an executor
/// or its scheduler stops answering while a query runs; never for a local session. Ballista
/// may wait a long time for a lost executor's work; a step rather fails and can be re-run.
pub fn watch(ctx: &SessionContext) -> futures::future::BoxFuture<'static, String> {
    let Some(c) = cluster_of(ctx) else { return Box::pin(futures::future::pending()) };
    Box::pin(async move {
        let Ok(client) = http_client() else { return futures::future::pending().await };
        let mut most = c.executors(&client).await.unwrap_or(0);
        let mut silent = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            match c.executors(&client).await {
                Ok(n) if n < most => {
                    return format!(
                        "the cluster at {} lost an executor during this step ({most} registered, now {n}): \
                         run it again, the remaining executors take the work",
                        c.url
                    )
                }
                Ok(n) => {
                    most = n;
                    silent = 0;
                }
                Err(_) => {
                    silent += 1;
                    if silent >= 3 {
                        return format!(
                            "the cluster's scheduler at {} stopped answering during this step: \
                             run it again when it is back",
                            c.url
                        );
                    }
                }
            }
        }
    })
}

/// A scheduler's refusal of another casebook version's query, out of the gRPC text that
/// carries it (`sql/cluster.rs` words it).
pub fn refusal_in(text: &str) -> Option<String> {
    let at = text.find("the cluster runs casebook ")?;
    let rest = &text[at..];
    let end = rest.find(['"', '\\']).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// A Ballista job's failure (`Job 038H… failed: …`, the scheduler's planning error or a
/// task's, wrapped in Rust's debug text) as a sentence: what failed, in the engine's own
/// innermost words, without the job's id or the wrapping.
pub fn job_failure_in(text: &str) -> Option<String> {
    let at = text.find("Job ")?;
    let rest = &text[at + 4..];
    let (_, failure) = rest.split_once(" failed: ")?;
    let planning = failure.starts_with("Error planning job ");
    // The innermost quoted text is the engine's message; without one, the failure's text.
    let inner = match failure.rfind("(\"") {
        Some(i) => {
            let quoted = &failure[i + 2..];
            quoted.find("\")").map_or(quoted, |end| &quoted[..end])
        }
        None => failure.split_once(": ").map_or(failure, |(_, m)| m),
    };
    let inner = inner.replace("\\\"", "\"");
    let lower = inner.to_ascii_lowercase();
    Some(if lower.contains("resources exhausted") || (lower.contains("memory") && lower.contains("exhaust")) {
        "the cluster's executors ran out of memory for this step: narrow the time window, or give the executors \
         more --memory-mb"
            .to_string()
    } else if planning {
        format!("the cluster could not plan this step's query: {inner}")
    } else {
        format!("the cluster failed this step's query: {inner}")
    })
}

/// The first table `plan` reads that the cluster cannot: one that is not over files (a
/// database, an HTTP service, rows held in this process). Views are looked through.
fn table_the_cluster_cannot_read(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = node else { return Ok(TreeNodeRecursion::Continue) };
        let Ok(provider) = source_as_provider(&scan.source) else { return Ok(TreeNodeRecursion::Continue) };
        let inner = match provider.downcast_ref::<ViewTable>() {
            Some(view) => table_the_cluster_cannot_read(view.logical_plan()),
            None if provider.is::<ListingTable>() => None,
            None => Some(scan.table_name.to_string()),
        };
        match inner {
            Some(name) => {
                found = Some(name);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    });
    found
}

/// When `ctx` sends its queries to a cluster and `plan` reads a table the cluster cannot:
/// `ctx`'s state (its tables, functions, settings and memory) planning for this process,
/// where the query then executes. None: the query goes where `ctx` sends it.
pub fn in_this_process(ctx: &SessionContext, plan: &LogicalPlan) -> Option<SessionState> {
    let cluster = cluster_of(ctx)?;
    let table = table_the_cluster_cannot_read(plan)?;
    tracing::info!(table = %table, cluster = %cluster.url,
        "the query reads a table the cluster cannot read: executing it in this server");
    Some(SessionStateBuilder::new_from_existing(ctx.state()).with_query_planner(Arc::new(HerePlanner)).build())
}

#[derive(Debug)]
struct HerePlanner;

#[async_trait::async_trait]
impl QueryPlanner for HerePlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::default().create_physical_plan(plan, session).await
    }
}

/// The cluster a session's queries execute on, if any.
pub fn cluster_of(ctx: &SessionContext) -> Option<Arc<Cluster>> {
    ctx.state().config().get_extension::<Cluster>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_are_read_as_written_and_refused_when_not_addresses() {
        let c = Cluster::parse("df://10.0.0.5:50050").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.grpc_address().as_str()), ("10.0.0.5", 50050, "http://10.0.0.5:50050"));
        assert_eq!(Cluster::parse("df://sched.example").unwrap().url, "df://sched.example:50050");
        assert_eq!(Cluster::parse("127.0.0.1:6000").unwrap().url, "df://127.0.0.1:6000");
        assert!(Cluster::parse("df://host:port").unwrap_err().contains("is not a number"));
        assert!(Cluster::parse("df://a/b:1").is_err());
        assert!(Cluster::parse("df://").is_err());
        assert_eq!(Cluster::from_flag("local"), Ok(None));
    }

    #[test]
    fn a_failed_ballista_job_reads_as_a_sentence_without_its_wrapping() {
        // As the 100M-flow week's NOT IN made it on a loopback cluster.
        let planning = "Execution error: Job 038HNM1FPR000 failed: Error planning job 038HNM1FPR000: \
            DataFusionError(Context(\"SelectJoinRule\", Plan(\"Null-aware anti join requires single-task execution, \
            but its build side does not fit ballista.optimizer.broadcast_join_threshold_bytes (134217728 bytes)\")))";
        assert_eq!(
            job_failure_in(planning).as_deref(),
            Some(
                "the cluster could not plan this step's query: Null-aware anti join requires single-task execution, \
                 but its build side does not fit ballista.optimizer.broadcast_join_threshold_bytes (134217728 bytes)"
            )
        );
        let memory = "Execution error: Job 038HN failed: Task failed: ResourcesExhausted(\"Resources exhausted: \
            Failed to allocate additional 10.0 MB for HashJoinInput\")";
        assert!(job_failure_in(memory).is_some_and(|m| m.contains("ran out of memory") && m.contains("--memory-mb")));
        assert_eq!(job_failure_in("Execution error: no such column"), None);
    }
}
