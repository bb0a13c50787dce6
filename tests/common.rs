//! Shared fixture: demo data generated once per test binary into a temporary folder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use casebook::catalog::Catalog;
use casebook::engine::Engine;
use casebook::paths::Paths;
use casebook::store::Store;

pub const FLOWS: usize = 60_000;

static DATA: OnceLock<PathBuf> = OnceLock::new();

/// A data folder with demo data (60,000 flows, seed 42), made once.
pub fn demo_data() -> &'static Path {
    DATA.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("casebook-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = casebook::demo::Options { rows: FLOWS, seed: 42, hours: 48, end: None };
        casebook::demo::generate(&dir, &opts).expect("demo data");
        dir
    })
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
