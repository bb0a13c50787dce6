//! The same playbooks on an Apache Ballista cluster (feature `ballista`): a scheduler and two
//! executors started from the built `casebook` binary on 127.0.0.1, shipped playbooks run
//! through them with `casebook run --engine df://…` and locally, their tables compared.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;

/// A scheduler and its executors, stopped when dropped.
struct Cluster {
    url: String,
    scheduler: Child,
    executors: Vec<Child>,
    _work: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.executors.iter_mut().chain(std::iter::once(&mut self.scheduler)) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port nothing listens on, and (for an executor) the one after it too.
fn free_ports(two: bool) -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        if !two || TcpListener::bind(("127.0.0.1", port.saturating_add(1))).is_ok() {
            return port;
        }
    }
}

fn wait_for(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} did not listen on port {port} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn casebook() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_casebook"));
    cmd.current_dir(common::repo());
    cmd
}

fn start_executor(url: &str, work: &Path, n: usize) -> Child {
    let port = free_ports(true);
    let dir = work.join(format!("executor-{n}"));
    std::fs::create_dir_all(&dir).expect("work dir");
    let child = casebook()
        .args(["ballista", "executor", "--scheduler", url, "--concurrency", "1", "--memory-mb", "512"])
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--work-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start an executor");
    wait_for(port, "an executor");
    child
}

fn start(executors: usize) -> Cluster {
    let work = tempfile::tempdir().expect("tempdir");
    let port = free_ports(false);
    let scheduler = casebook()
        .args(["ballista", "scheduler", "--bind"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the scheduler");
    wait_for(port, "the scheduler");
    let url = format!("df://127.0.0.1:{port}");
    let executors = (0..executors).map(|n| start_executor(&url, work.path(), n)).collect();
    Cluster { url, scheduler, executors, _work: work }
}

fn run(playbook: &str, params: &[&str], data: &Path, engine: Option<&str>) -> Output {
    let mut cmd = casebook();
    // Every table, hidden ones too, is compared.
    cmd.args(["run", playbook, "--keep-hidden", "--format", "csv", "--max-rows", "1000000", "--data"]).arg(data);
    for p in params {
        cmd.args(["-p", p]);
    }
    if let Some(e) = engine {
        cmd.args(["--engine", e]);
    }
    cmd.output().expect("run casebook")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn shipped_playbooks_give_the_same_tables_on_a_ballista_cluster_as_locally() {
    let cluster = start(2);
    // suspicious_proxy: its text maxima go through casebook's `max` on the executors.
    let cases: [(&str, &[&str]); 4] = [
        ("threat_investigation", &["ip=10.0.10.25", "window=last 7d"]),
        ("suspicious_connects", &["window=last 7d"]),
        ("rdp_bruteforce", &["window=last 7d"]),
        ("suspicious_proxy", &["window=last 7d"]),
    ];
    for (playbook, params) in cases {
        // Each run in a state folder of its own, over the same demo files.
        let local_data = common::fresh_data();
        let local = run(playbook, params, local_data.path(), None);
        assert!(local.status.success(), "{playbook} locally: {}", text(&local));
        let remote_data = common::fresh_data();
        let remote = run(playbook, params, remote_data.path(), Some(&cluster.url));
        assert!(remote.status.success(), "{playbook} on the cluster: {}", text(&remote));
        let (l, r) = (tables(&local), tables(&remote));
        assert!(l.iter().map(|t| t.rows.len()).sum::<usize>() > 10, "{playbook} made too little to compare: {l:?}");
        assert_eq!(l.len(), r.len(), "{playbook}: the cluster made other tables");
        for (l, r) in l.iter().zip(&r) {
            assert_eq!((&l.step, &l.header), (&r.step, &r.header), "{playbook}: columns differ");
            assert_eq!(l.rows, r.rows, "{playbook}, step {}: the cluster's rows differ from the local ones", l.step);
        }
    }
}

/// One step's table as `casebook run --format csv` prints it, its rows sorted: a step whose
/// SQL does not order its rows (or orders them with ties) may list them in any order.
#[derive(Debug)]
struct Table {
    step: String,
    header: String,
    rows: Vec<String>,
}

fn tables(out: &Output) -> Vec<Table> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tables: Vec<Table> = Vec::new();
    for line in text.lines() {
        if let Some(step) = line.strip_prefix("# step: ") {
            tables.push(Table { step: step.to_string(), header: String::new(), rows: Vec::new() });
            continue;
        }
        if tables.is_empty() {
            // One table is printed without its step's name.
            tables.push(Table { step: String::new(), header: String::new(), rows: Vec::new() });
        }
        if let Some(t) = tables.last_mut() {
            if t.header.is_empty() {
                t.header = line.to_string();
            } else if !line.is_empty() {
                t.rows.push(line.to_string());
            }
        }
    }
    for t in &mut tables {
        t.rows.sort();
    }
    tables
}

#[test]
fn a_server_refuses_a_cluster_that_does_not_answer_in_words() {
    let data = common::fresh_data();
    let port = free_ports(false);
    let out = run("ip_flows", &["ip=10.0.10.25"], data.path(), Some(&format!("df://127.0.0.1:{port}")));
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains(&format!("no Ballista scheduler answers at df://127.0.0.1:{port}")), "{t}");
    let bad = run("ip_flows", &["ip=10.0.10.25"], data.path(), Some("df://host:port"));
    assert!(text(&bad).contains("is not a number"), "{}", text(&bad));
}

/// A query that keeps a debug build's executors busy for several seconds on the fixture.
const HEAVY: &str = "title: Heavy\nparams:\n  window: { type: time_range, default: last 7d }\n  \
                     copies: { type: integer, default: 150 }\nsections:\n  - title: S\n    \
                     steps:\n      - id: all\n        query:\n          sql: |\n            \
                     SELECT f.dport, c.copy % 7 AS k, count(*) AS n, sum(f.ibyt) AS b FROM flows f \
                     CROSS JOIN (SELECT * FROM unnest(range(0, $copies)) AS t(copy)) c \
                     WHERE f.treceived >= $window.start AND f.treceived < $window.end \
                     GROUP BY f.dport, c.copy % 7 ORDER BY f.dport, k\n";

/// A server as `serve --engine df://…` makes it: one engine for every run, with the HEAVY
/// playbook among its playbooks.
struct Server {
    engine: Arc<casebook::engine::Engine>,
    catalog: Arc<casebook::catalog::Catalog>,
    paths: casebook::util::paths::Paths,
    playbook: Arc<casebook::playbook::Playbook>,
    values: casebook::model::params::Values,
    _playbooks: tempfile::TempDir,
}

impl Server {
    async fn new(cluster: &Cluster, data: &Path) -> Server {
        Server::with(Some(cluster), data, HEAVY, &[]).await
    }

    /// A server whose one playbook, `heavy`, is `playbook`, with `connectors` (name, YAML)
    /// next to the shipped ones; on `cluster`, or without one executing here.
    async fn with(cluster: Option<&Cluster>, data: &Path, playbook: &str, connectors: &[(&str, &str)]) -> Server {
        use casebook::catalog::Catalog;
        use casebook::engine::Engine;
        let playbooks = tempfile::tempdir().expect("tempdir");
        std::fs::write(playbooks.path().join("heavy.yaml"), playbook).expect("playbook");
        let mut paths = common::paths_with(data);
        paths.playbooks = playbooks.path().to_path_buf();
        if !connectors.is_empty() {
            let folder = playbooks.path().join("connectors");
            std::fs::create_dir_all(&folder).expect("connectors folder");
            for shipped in std::fs::read_dir(&paths.connectors).expect("shipped connectors") {
                let shipped = shipped.expect("a connector").path();
                if shipped.is_file() {
                    std::fs::copy(&shipped, folder.join(shipped.file_name().expect("a name"))).expect("copy");
                }
            }
            for (name, yaml) in connectors {
                std::fs::write(folder.join(format!("{name}.yaml")), yaml).expect("connector");
            }
            paths.connectors = folder;
        }
        let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
        // A re-run that waits for a slot the cluster never frees fails within five minutes (a
        // cancelled job's task already running on an executor may finish first).
        let limits = casebook::engine::Limits { timeout: Duration::from_secs(300), ..Default::default() };
        let store = casebook::store::Store::open(&paths.state_db()).expect("state");
        let mut engine = Engine::with_limits(catalog.clone(), store, limits);
        engine.cluster = cluster.map(|c| casebook::sql::session::Cluster::parse(&c.url).expect("address"));
        let playbook = catalog.entry("heavy").and_then(|e| e.runnable()).cloned().expect("the playbook loads");
        let values =
            casebook::model::params::parse_all(&playbook.params, |_| None, &catalog.parse_ctx()).expect("defaults");
        Server { engine: Arc::new(engine), catalog, paths, playbook, values, _playbooks: playbooks }
    }

    fn request(&self) -> casebook::engine::RunRequest {
        casebook::engine::RunRequest::new(self.playbook.clone(), self.values.clone(), "analyst", "test")
    }

    /// HEAVY with `copies` copies of every flow instead of its default 150: work that outlasts
    /// whatever a test does meanwhile, on a machine of any speed.
    fn request_with_copies(&self, copies: &str) -> casebook::engine::RunRequest {
        let values = casebook::model::params::parse_all(
            &self.playbook.params,
            |name| (name == "copies").then_some(copies),
            &self.catalog.parse_ctx(),
        )
        .expect("values");
        casebook::engine::RunRequest::new(self.playbook.clone(), values, "analyst", "test")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executor_lost_mid_run_fails_the_step_in_words_the_server_serves_on_and_a_rerun_succeeds() {
    use casebook::engine::Engine;
    let mut cluster = start(2);
    let data = common::fresh_data();
    let server = Server::new(&cluster, data.path()).await;
    let (engine, catalog, paths) = (server.engine.clone(), server.catalog.clone(), server.paths.clone());
    let request = || server.request();

    let id = "000000000000000000000000000dead1";
    // A run ten times the re-run's work, so it cannot end before the loss is told however
    // fast the machine; the loss cancels its job, but a task of it the remaining executor
    // is running may still finish before that executor takes the re-run.
    let running = tokio::spawn({
        let (engine, req) = (engine.clone(), server.request_with_copies("1500"));
        async move { engine.run_with_id(req, id.to_string()).await }
    });
    // Once the cluster has the query's job (the progress names it), an executor goes.
    let until = Instant::now() + Duration::from_secs(60);
    while engine.progress(id).expect("state").and_then(|p| p.job).is_none() {
        assert!(!running.is_finished() && Instant::now() < until, "no Ballista job seen while the run went on");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut lost = cluster.executors.remove(0);
    lost.kill().expect("kill an executor");
    let _ = lost.wait();
    let started = Instant::now();
    let failed = running.await.expect("the run's task").expect("the run is recorded");
    let error =
        failed.steps[0].error.clone().expect("the run finished before its executor was lost: give it more copies");
    assert!(error.contains("lost an executor during this step (2 registered, now 1): run it again"), "{error}");
    assert!(!error.contains("Status {") && !error.contains("tonic"), "gRPC's text reached the analyst: {error}");
    assert!(started.elapsed() < Duration::from_secs(60), "the loss took {:?} to tell", started.elapsed());
    let record = engine.store.run(&failed.run_id).expect("state").expect("the run");
    assert_eq!(record.engine.as_deref(), Some(cluster.url.as_str()), "the run records where it executed");

    // The same server runs it again on the remaining executor (the lost job was cancelled),
    // and gives what the local engine gives.
    let again = engine.run(request()).await.expect("the re-run");
    let ended = engine.store.run(&again.run_id).expect("state").map(|r| (r.state, r.error));
    assert!(again.steps.first().is_some_and(|s| s.error.is_none()), "the re-run: {:?} {ended:?}", again.steps);
    let theirs = engine.step_data(&again.run_id, "all").expect("the re-run's table");
    let local = Arc::new(Engine::new(catalog.clone(), casebook::store::Store::open(&paths.state_db()).expect("state")));
    let ours = local.run(request()).await.expect("a local run");
    let ours = local.step_data(&ours.run_id, "all").expect("the local table");
    assert!(ours.rows > 100);
    assert_eq!(theirs.rows, ours.rows);
    let text = |d: &casebook::results::StepData| -> Vec<String> {
        let mut rows: Vec<String> = d
            .batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |r| {
                    serde_json::Value::Object(casebook::results::cells::row_json(b, r, chrono_tz::Tz::UTC)).to_string()
                })
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(text(&theirs), text(&ours), "the cluster's rows differ from the local ones");
}

/// What the scheduler says of job `job`: None once it has forgotten it.
async fn job_status(cluster: &Cluster, job: &str) -> Option<ballista_core::serde::protobuf::job_status::Status> {
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    use ballista_core::serde::protobuf::GetJobStatusParams;
    let address = cluster.url.replacen("df://", "http://", 1);
    let mut client = SchedulerGrpcClient::connect(address).await.expect("the scheduler answers");
    match client.get_job_status(GetJobStatusParams { job_id: job.to_string() }).await {
        Ok(answer) => answer.into_inner().status.and_then(|s| s.status),
        Err(e) => panic!("job status: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_on_a_cluster_cancels_its_ballista_job() {
    use ballista_core::serde::protobuf::job_status::Status;
    let cluster = start(2);
    let data = common::fresh_data();
    let server = Server::new(&cluster, data.path()).await;
    let engine = server.engine.clone();
    let id = "000000000000000000000000000cafe1";
    let task = tokio::spawn({
        let (engine, req) = (engine.clone(), server.request_with_copies("4000"));
        async move { engine.run_with_id(req, id.to_string()).await }
    });
    // The run's progress names its job once the scheduler has it.
    let until = Instant::now() + Duration::from_secs(60);
    let job = loop {
        if let Some(job) = engine.progress(id).expect("state").and_then(|p| p.job) {
            break job;
        }
        if task.is_finished() {
            let ended = task.await.expect("the run's task").expect("the run is recorded");
            panic!("the run ended before its job was seen (give it more copies): {:?}", ended.steps[0].error);
        }
        assert!(Instant::now() < until, "no Ballista job within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let before = job_status(&cluster, &job).await;
    assert!(matches!(before, Some(Status::Queued(_) | Status::Running(_))), "the job is not going: {before:?}");

    assert!(engine.cancel(id));
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the run stopped within 10 s")
        .expect("the run's task")
        .expect("the run is recorded");
    let record = engine.store.run(&outcome.run_id).expect("state").expect("the run");
    assert_eq!(record.state.as_str(), "cancelled");
    // The cluster stops working for no one: the job is cancelled there, not left to finish.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match job_status(&cluster, &job).await {
            None => break,
            Some(Status::Failed(f)) => {
                assert!(f.error.contains("Cancelled"), "the job failed otherwise: {}", f.error);
                break;
            }
            Some(Status::Successful(_)) => panic!("the cancelled run's job ran to its end on the cluster"),
            Some(_) => {
                assert!(Instant::now() < until, "the job still goes 20 s after the run was cancelled");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// An HTTP table on 127.0.0.1: verdicts on a few hosts, as a data platform's API gives them.
const ALERTS: &str = "kind: http_table
name: alerts
description: verdicts from the platform
url: http://{addr}/alerts
params: { from: '{start}', to: '{end}' }
time_column: ts
schema:
  - { name: ts, type: timestamp }
  - { name: ip, type: string }
  - { name: verdict, type: string }
";

const JOINED: &str =
    "title: Joined\nparams:\n  window: { type: time_range, default: last 7d }\nsections:\n  - title: S\n    \
     steps:\n      - id: all\n        query:\n          sql: |\n            \
     SELECT a.verdict, count(*) AS flows, sum(f.ibyt) AS bytes FROM flows f JOIN alerts a ON f.sip = a.ip \
     WHERE f.treceived >= $window.start AND f.treceived < $window.end \
     AND a.ts >= $window.start AND a.ts < $window.end GROUP BY a.verdict ORDER BY a.verdict\n";

/// A query reading a table the cluster cannot read (here an HTTP API) executes in the
/// server, with the same result as without a cluster: the playbook works unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn a_query_reading_an_http_table_runs_in_the_server_and_gives_the_local_rows() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    let ts = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let answer = serde_json::json!([
        { "ts": ts, "ip": "10.0.10.25", "verdict": "beaconing" },
        { "ts": ts, "ip": "10.0.10.30", "verdict": "scanner" },
        { "ts": ts, "ip": "10.0.10.5", "verdict": "scanner" },
    ])
    .to_string();
    let app = axum::Router::new().route("/alerts", axum::routing::get(move || async move { answer }));
    let api = tokio::spawn(async move { axum::serve(listener, app).await });
    let connector = ALERTS.replace("{addr}", &addr.to_string());
    let connectors = [("alerts", connector.as_str())];

    let cluster = start(2);
    let table = |server: &Server, run: &casebook::engine::RunOutcome| {
        assert!(run.steps[0].error.is_none(), "{:?}", run.steps[0].error);
        let data = server.engine.step_data(&run.run_id, "all").expect("the table");
        let batch = datafusion::arrow::compute::concat_batches(&data.schema, &data.batches).expect("one batch");
        datafusion::arrow::util::pretty::pretty_format_batches(&[batch]).expect("text").to_string()
    };
    let data = common::fresh_data();
    let remote = Server::with(Some(&cluster), data.path(), JOINED, &connectors).await;
    let theirs = remote.engine.run(remote.request()).await.expect("the run on the cluster");
    let record = remote.engine.store.run(&theirs.run_id).expect("state").expect("the run");
    assert_eq!(record.engine.as_deref(), Some(cluster.url.as_str()));
    let theirs = table(&remote, &theirs);
    let local_data = common::fresh_data();
    let local = Server::with(None, local_data.path(), JOINED, &connectors).await;
    let ours = local.engine.run(local.request()).await.expect("the local run");
    let ours = table(&local, &ours);
    assert!(ours.contains("beaconing") && ours.contains("scanner"), "too little to compare:\n{ours}");
    assert_eq!(theirs, ours);
    api.abort();
}
