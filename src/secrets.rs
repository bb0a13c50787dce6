//! Named secrets (webhook URLs, API keys): looked up in a secrets file (`NAME: value` lines of
//! YAML, read on every lookup so an edit takes effect at once, and refused while others may
//! read it), then in an environment variable, but only one an administrator named
//! (`serve --secret-env`): a playbook cannot reach an unrelated variable by naming it. A
//! [`Secret`] never prints its value: not in logs, pages, errors or `Debug` output, and a
//! "not set" message never says which variables exist.

use std::path::PathBuf;

use indexmap::IndexMap;

/// A secret's value. Use [`Secret::expose`] only where the value is sent to its service.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Where secrets come from.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    file: Option<PathBuf>,
    /// Environment variables that may be read as secrets.
    env: Vec<String>,
}

/// A secret name as playbooks write it: `SOC_WEBHOOK`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

impl Secrets {
    pub fn new(file: Option<PathBuf>) -> Secrets {
        Secrets { file, env: Vec::new() }
    }

    /// Also reads these environment variables (and no others) as secrets.
    pub fn with_env(mut self, names: &[String]) -> Result<Secrets, String> {
        for n in names {
            if !valid_name(n) {
                return Err(format!("`{n}` is not a secret name (use capitals, digits and _, e.g. SOC_WEBHOOK)"));
            }
        }
        self.env = names.to_vec();
        Ok(self)
    }

    /// Whether the secrets file is safe to use: readable by its owner only. The message says
    /// the `chmod` to run.
    pub fn check_file(&self) -> Result<(), String> {
        let Some(path) = &self.file else { return Ok(()) };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(path) {
                Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                    return Err(format!(
                        "the secrets file {p} can be read by other users of this machine; run `chmod 600 {p}`",
                        p = path.display()
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The secret called `name`. The error says where to put it, never any value.
    pub fn get(&self, name: &str) -> Result<Secret, String> {
        if !valid_name(name) {
            return Err(format!("`{name}` is not a secret name (use capitals, digits and _, e.g. SOC_WEBHOOK)"));
        }
        if let Some(v) = self.read_file()?.shift_remove(name) {
            return Ok(Secret(v));
        }
        if self.env.iter().any(|n| n == name) {
            if let Ok(v) = std::env::var(name) {
                if !v.trim().is_empty() {
                    return Ok(Secret(v.trim().to_string()));
                }
            }
        }
        Err(match &self.file {
            Some(f) => format!(
                "secret `{name}` is not set: add `{name}: …` to {}, or let casebook read the environment variable \
                 with serve --secret-env {name}",
                f.display()
            ),
            None => format!("secret `{name}` is not set: give serve --secrets FILE, or --secret-env {name}"),
        })
    }

    /// The names the secrets file defines (never their values), for forms.
    pub fn names(&self) -> Vec<String> {
        self.read_file().map(|m| m.into_keys().collect()).unwrap_or_default()
    }

    fn read_file(&self) -> Result<IndexMap<String, String>, String> {
        let Some(path) = &self.file else { return Ok(IndexMap::new()) };
        self.check_file()?;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(IndexMap::new()),
            Err(e) => return Err(format!("cannot read the secrets file {}: {e}", path.display())),
        };
        // The parser's messages can quote the text; only say where the problem is.
        serde_saphyr::from_str::<IndexMap<String, String>>(&text)
            .map_err(|_| format!("the secrets file {} is not a list of `NAME: value` lines", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_print() {
        let s = Secret("https://hooks.example/T000/B000/XXXX".into());
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn file_first_and_clear_messages() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("secrets.yaml");
        std::fs::write(&file, "SOC_WEBHOOK: http://127.0.0.1:9/hook\n").unwrap_or_else(|e| panic!("{e}"));
        let secrets = Secrets::new(Some(file.clone()));
        let open = secrets.get("SOC_WEBHOOK").err().unwrap_or_default();
        assert!(open.contains("can be read by other users") && open.contains("chmod 600"), "{open}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(secrets.get("SOC_WEBHOOK").map(|s| s.expose().to_string()), Ok("http://127.0.0.1:9/hook".into()));
        assert_eq!(secrets.names(), vec!["SOC_WEBHOOK".to_string()]);
        let missing = secrets.get("CASEBOOK_TEST_NOT_SET").err().unwrap_or_default();
        assert!(missing.contains("is not set"), "{missing}");
        assert!(secrets.get("lower").is_err());
        // An environment variable is read only when named: PATH exists, yet is no secret.
        let path = secrets.get("PATH").err().unwrap_or_default();
        assert!(path.contains("secret `PATH` is not set"), "{path}");
        let allowed = secrets.clone().with_env(&["PATH".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert!(allowed.get("PATH").is_ok());
    }
}
