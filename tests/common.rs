//! Shared fixture: demo data generated once per test binary into a temporary folder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use casebook::catalog::Catalog;
use casebook::engine::Engine;
use casebook::store::accounts::Role;
use casebook::store::Store;
use casebook::util::paths::Paths;

pub const FLOWS: usize = 60_000;

static DATA: OnceLock<PathBuf> = OnceLock::new();

/// A data folder with demo data (60,000 flows, seed 42), made once.
pub fn demo_data() -> &'static Path {
    DATA.get_or_init(|| {
        // Earlier test processes cannot remove theirs (it lives as long as they do): tidy here.
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix("casebook-test-") {
                    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("casebook-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = casebook::demo::Options { rows: FLOWS, seed: 42, hours: 48, end: None };
        casebook::demo::generate(&dir, &opts).expect("demo data");
        dir
    })
}

/// The checkout under test. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test too; that
/// value wins over the one compiled in, so a test binary reused from another clone of the
/// same commit (a shared target folder) still reads this clone's files.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The repository's playbooks and connectors over `data` (state in its own SQLite file).
pub fn paths_with(data: &Path) -> Paths {
    let root = repo();
    Paths {
        playbooks: root.join("playbooks"),
        connectors: root.join("connectors"),
        data: data.to_path_buf(),
        widgets: root.join("widgets"),
        web: root.join("web"),
    }
}

/// Writes a secrets file as an administrator would: readable by its owner only.
pub fn write_secrets(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("secrets file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// A fresh state folder sharing the demo data (so tests do not see each other's runs).
pub fn fresh_data() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(demo_data().join("demo"), t.path().join("demo")).expect("symlink demo data");
    t
}

pub async fn engine(data: &Path) -> Arc<Engine> {
    let paths = paths_with(data);
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let store = Store::open(&paths.state_db()).expect("state db");
    Arc::new(Engine::new(catalog, store))
}

/// The CSRF cookie a page response sets, as (`name=value` for a Cookie header, token).
pub fn csrf_cookie(r: &axum::http::Response<axum::body::Body>) -> (String, String) {
    let cookie = r
        .headers()
        .get(axum::http::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a csrf cookie")
        .to_string();
    let token = cookie.split('=').nth(1).expect("token").to_string();
    (cookie, token)
}

/// The password of every account tests make.
pub const PASSWORD: &str = "correct horse battery staple";
/// The account tests act as unless they say otherwise (an administrator, so that every page
/// is open to it; the role matrix is tested on its own).
pub const ME: &str = "analyst";

/// Makes account `name` with `role` (password [`PASSWORD`]) if it is missing, and signs it
/// in: returns the session's `name=value` for a Cookie header.
pub fn sign_in(store: &Store, name: &str, role: Role) -> String {
    if store.account(name).expect("account").is_none() {
        let hash = casebook::auth::hash_password(PASSWORD).expect("hash");
        store.add_account(name, role, &[], Some(&hash)).expect("add account");
    }
    let (token, _) = casebook::auth::start_session(store, name).expect("session");
    format!("casebook_session={token}")
}

/// The server's routes with every request signed in as [`ME`], an administrator.
pub fn app(state: casebook::web::AppState) -> axum::Router {
    let cookie = sign_in(&state.engine.store, ME, Role::Admin);
    app_with_cookie(state, &cookie)
}

/// The server's routes with `cookie` added to every request (`""`: signed out).
pub fn app_with_cookie(state: casebook::web::AppState, cookie: &str) -> axum::Router {
    let value = axum::http::HeaderValue::from_str(cookie).expect("cookie");
    let signed = !cookie.is_empty();
    casebook::web::app(state).layer(axum::middleware::map_request(move |mut req: axum::extract::Request| {
        if signed {
            req.headers_mut().append(axum::http::header::COOKIE, value.clone());
        }
        async move { req }
    }))
}

/// The real server on 127.0.0.1 over demo data in `data`, with account [`ME`] (password
/// [`PASSWORD`]) to sign in with; returns its address.
pub async fn serve(data: &Path) -> (std::net::SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    serve_paths(paths_with(data)).await
}

/// [`serve`] over other folders.
pub async fn serve_paths(paths: Paths) -> (std::net::SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let catalog = Arc::new(Catalog::load(paths.clone(), chrono_tz::Tz::UTC).await);
    let store = Store::open(&paths.state_db()).expect("state db");
    let engine = Arc::new(Engine::new(catalog, store));
    let state = casebook::web::AppState::new(engine, paths).expect("state");
    let _ = sign_in(&state.engine.store, ME, Role::Admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (addr, tokio::spawn(async move { axum::serve(listener, casebook::web::app(state)).await }))
}

/// A form POST as a page sends it: the CSRF cookie and its token in the header.
pub fn form_post(uri: &str, body: &str, cookie: &str, token: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post(uri)
        .header(axum::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(axum::http::header::COOKIE, cookie)
        .header("x-csrf-token", token)
        .body(axum::body::Body::from(body.to_string()))
        .expect("request")
}

/// A response's body as JSON.
pub async fn json_of(r: axum::http::Response<axum::body::Body>) -> serde_json::Value {
    use http_body_util::BodyExt;
    serde_json::from_slice(&r.into_body().collect().await.expect("body").to_bytes()).expect("json")
}

/// Runs every section of playbook `id`, its parameters parsed from `given` (the rest take
/// their defaults); panics on a parameter or step error.
pub async fn run_all(
    engine: &std::sync::Arc<Engine>,
    id: &str,
    given: &[(&str, &str)],
) -> casebook::engine::RunOutcome {
    let catalog = engine.catalog();
    let entry = catalog.entry(id).cloned().unwrap_or_else(|| panic!("playbook {id} missing"));
    let pb = entry.runnable().unwrap_or_else(|| panic!("{id}: {:?}", entry.problems)).clone();
    let cx = catalog.parse_ctx();
    let values = pb
        .params
        .iter()
        .map(|p| {
            let raw = given.iter().find(|(k, _)| *k == p.name).map(|(_, v)| *v);
            (p.name.clone(), p.parse(raw, &cx).unwrap_or_else(|e| panic!("{}: {e}", p.name)))
        })
        .collect();
    let req = casebook::engine::RunRequest {
        playbook: pb,
        values,
        section: None,
        who: "test".into(),
        source: "test".into(),
        schedule_id: None,
        keep: None,
    };
    let out = engine.run(req).await.expect("run");
    for s in &out.steps {
        assert!(s.error.is_none(), "{id}.{}: {:?}", s.id, s.error);
    }
    out
}

/// A real `casebook serve` process on a free port of 127.0.0.1, started in the repository
/// with `args` after `serve --bind 127.0.0.1:0`; killed (SIGKILL) when dropped.
pub struct Server {
    child: std::process::Child,
    /// `127.0.0.1:<port>`, from the address line the server prints.
    pub addr: String,
    /// The one-time setup link the server printed, when it had no accounts.
    pub setup: Option<String>,
}

/// A signed-in browser's cookies: the session's and the CSRF token's.
#[derive(Debug, Clone)]
pub struct Session {
    /// For a Cookie header.
    pub cookie: String,
    pub csrf: String,
}

impl Server {
    pub fn start<I, A>(args: I) -> Server
    where
        I: IntoIterator<Item = A>,
        A: AsRef<std::ffi::OsStr>,
    {
        Server::start_logged(args, None)
    }

    /// [`Server::start`], its log (every level of casebook's own) written to `log`.
    pub fn start_logged<I, A>(args: I, log: Option<&Path>) -> Server
    where
        I: IntoIterator<Item = A>,
        A: AsRef<std::ffi::OsStr>,
    {
        use std::io::BufRead;
        let stderr = match log {
            Some(p) => std::process::Stdio::from(std::fs::File::create(p).expect("log file")),
            None => std::process::Stdio::null(),
        };
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_casebook"))
            .current_dir(repo())
            .env("RUST_LOG", "casebook=trace,info")
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start casebook serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("the address line");
        let mut second = String::new();
        reader.read_line(&mut second).expect("the setup or sign-in line");
        // Keep reading, so that the server never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = line.split("http://").nth(1).unwrap_or_else(|| panic!("an address in {line:?}"));
        let setup = second.contains("/setup/").then(|| second.split_whitespace().last().unwrap_or("").to_string());
        Server { child, addr: addr.trim().trim_end_matches('/').to_string(), setup }
    }

    /// Signs in as [`ME`] the way a browser does: through the setup link on a server
    /// without accounts (making [`ME`] its administrator), else through the sign-in form.
    pub async fn session(&self) -> Session {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let page_url = self.setup.clone().unwrap_or_else(|| format!("http://{}/login", self.addr));
        let page = http.get(&page_url).send().await.expect("sign-in page");
        let csrf_pair =
            page.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_string();
        let csrf = csrf_pair.split('=').nth(1).expect("token").to_string();
        let form = [("_csrf", csrf.as_str()), ("name", ME), ("password", PASSWORD), ("again", PASSWORD)];
        let r = http.post(&page_url).header("cookie", &csrf_pair).form(&form).send().await.expect("sign in");
        assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "signed in through {page_url}");
        let session = r.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_string();
        Session { cookie: format!("{csrf_pair}; {session}"), csrf }
    }

    /// A page's status and text, signed in.
    pub async fn get(&self, session: &Session, path: &str) -> (reqwest::StatusCode, String) {
        let r = reqwest::Client::new()
            .get(format!("http://{}{path}", self.addr))
            .header("cookie", &session.cookie)
            .send()
            .await
            .expect("get");
        (r.status(), r.text().await.expect("body"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
