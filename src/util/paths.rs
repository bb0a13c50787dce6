//! Where casebook finds its folders: playbooks, connectors, data, widgets and web assets.

use std::path::{Component, Path, PathBuf};

/// The folders one casebook instance works with.
#[derive(Debug, Clone)]
pub struct Paths {
    pub playbooks: PathBuf,
    pub connectors: PathBuf,
    pub data: PathBuf,
    pub widgets: PathBuf,
    pub web: PathBuf,
}

impl Paths {
    /// The repository's own folders: the current directory when it holds `web/`, otherwise
    /// the folder this crate was built from.
    pub fn repository() -> Self {
        let root = repo_root();
        Paths {
            playbooks: root.join("playbooks"),
            connectors: root.join("connectors"),
            data: root.join("data"),
            widgets: root.join("widgets"),
            web: root.join("web"),
        }
    }

    /// State database.
    pub fn state_db(&self) -> PathBuf {
        self.data.join("casebook.sqlite")
    }

    /// Stored step outputs of run `id`.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.data.join("runs").join(id)
    }

    pub fn exports_dir(&self) -> PathBuf {
        self.data.join("exports")
    }
}

pub fn repo_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        if cwd.join("web").is_dir() && cwd.join("widgets").is_dir() {
            return cwd;
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Joins a request-supplied relative path under `base`, refusing anything that could leave
/// it (`..`, absolute paths, prefixes). Returns `None` for such paths.
pub fn join_inside(base: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    let mut out = base.to_path_buf();
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Normal(part) => {
                let s = part.to_str()?;
                if s.starts_with('.') {
                    return None;
                }
                out.push(part);
                depth += 1;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    (depth > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_inside_refuses_escapes() {
        let base = Path::new("/srv/web");
        assert_eq!(join_inside(base, "a/b.css"), Some(PathBuf::from("/srv/web/a/b.css")));
        assert_eq!(join_inside(base, "../etc/passwd"), None);
        assert_eq!(join_inside(base, "a/../../x"), None);
        assert_eq!(join_inside(base, "/etc/passwd"), None);
        assert_eq!(join_inside(base, ".git/config"), None);
        assert_eq!(join_inside(base, ""), None);
    }
}
