//! Who is asking: passwords (argon2), sign-in sessions (random tokens, stored as digests),
//! the limit on failed sign-ins, and the caller every request is served for. The routes
//! table in `web` says which [`Role`] each route needs; this module only knows accounts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::accounts::{Account, Role};
use crate::store::Store;

/// How long a sign-in lasts.
pub const SESSION_HOURS: i64 = 12;
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// Failed sign-ins (per account, and per address) after which sign-in pauses.
const MAX_FAILURES: usize = 5;
/// How long failures count, and how long sign-in pauses after too many.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The person a request is served for.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub groups: Vec<String>,
}

impl Caller {
    pub fn from_account(a: Account) -> Caller {
        Caller { name: a.name, role: a.role, groups: a.groups }
    }

    /// Whether the caller's role includes `role`.
    pub fn may(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// Playbooks limited to groups (`access.yaml` in the data folder): each rule names a folder of
/// the playbooks folder or a tag, and the groups whose members see the playbooks it matches,
/// with their runs, results, exports, schedules and threats. A playbook no rule matches is
/// seen by every account; administrators see everything.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AccessRules(Vec<AccessRule>);

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// A folder under the playbooks folder (`incident-response`, `network/sensitive`).
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    pub groups: Vec<String>,
}

impl AccessRules {
    /// The rules in `file`; none when it does not exist. A broken file is an error, so that
    /// a typo never opens restricted playbooks to everyone.
    pub fn load(file: &std::path::Path) -> Result<AccessRules> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AccessRules::default()),
            Err(e) => return Err(anyhow!("cannot read {}: {e}", file.display())),
        };
        if text.trim().is_empty() {
            return Ok(AccessRules::default());
        }
        let rules: Vec<AccessRule> =
            crate::util::yaml::parse(&file.display().to_string(), &text).map_err(|p| anyhow!("{p}"))?;
        for r in &rules {
            if r.folder.is_none() == r.tag.is_none() {
                return Err(anyhow!("{}: each rule names either a `folder` or a `tag`", file.display()));
            }
        }
        Ok(AccessRules(rules))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `who` sees a playbook at `folder` (its path under the playbooks folder) with
    /// `tags`.
    pub fn sees(&self, who: &Caller, folder: &std::path::Path, tags: &[String]) -> bool {
        if who.may(Role::Admin) {
            return true;
        }
        let mut matched = self
            .0
            .iter()
            .filter(|r| {
                r.folder.as_deref().is_some_and(|f| folder.starts_with(f.trim_matches('/')))
                    || r.tag.as_deref().is_some_and(|t| tags.iter().any(|x| x == t))
            })
            .peekable();
        if matched.peek().is_none() {
            return true;
        }
        matched.any(|r| r.groups.iter().any(|g| who.groups.contains(g)))
    }
}

/// An account name: letters, digits and `.`, `_`, `-`, `@`, at most 64 characters.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(anyhow!("an account name is 1 to 64 letters, digits, `.`, `_`, `-` or `@`"))
    }
}

/// An argon2 hash of `password`, which must be at least [`MIN_PASSWORD`] characters.
pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(anyhow!("a password needs at least {MIN_PASSWORD} characters"));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("salt: {e}"))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow!("hashing: {e}"))?.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A new random token (256 bits, hex).
pub fn new_token() -> Result<String> {
    crate::util::text::random_hex(32).map_err(anyhow::Error::msg)
}

/// What the state file keeps of a token.
pub fn digest(token: &str) -> String {
    crate::util::text::hex(&Sha256::digest(token.as_bytes()))
}

/// A new session for `name`: its token (for the cookie) and its lifetime.
pub fn start_session(store: &Store, name: &str) -> Result<(String, Duration)> {
    let token = new_token()?;
    let expires = chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    store.add_session(&digest(&token), name, &crate::store::stamp(expires))?;
    Ok((token, Duration::from_secs(u64::try_from(SESSION_HOURS).unwrap_or(12) * 3600)))
}

/// The caller a session token belongs to, if it is current.
pub fn session_caller(store: &Store, token: &str) -> Option<Caller> {
    if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    match store.session_account(&digest(token)) {
        Ok(a) => a.map(Caller::from_account),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reading a session");
            None
        }
    }
}

/// Why a sign-in did not work, as the sign-in page says it.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the name or the password is not right")]
    Wrong,
    #[error("too many failed sign-ins; try again in {0} minutes")]
    Paused(u64),
    #[error("sign-in failed on the server; the details are in its log")]
    Internal(#[from] anyhow::Error),
}

/// Failed sign-ins per account name and per client address, kept in memory.
#[derive(Debug, Default)]
pub struct SignIns {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl SignIns {
    /// Checks `password` for `name` (from `peer`), and starts a session when it is right.
    pub fn sign_in(
        &self,
        store: &Store,
        name: &str,
        password: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Result<(Caller, String, Duration), SignInError> {
        let keys = [Some(format!("name:{}", name.to_lowercase())), peer.map(|p| format!("addr:{p}"))];
        let keys: Vec<&String> = keys.iter().flatten().collect();
        if let Some(wait) = keys.iter().filter_map(|k| self.paused(k)).max() {
            return Err(SignInError::Paused(wait.as_secs().div_ceil(60).max(1)));
        }
        let hash = store.password_hash(name)?;
        // Without an account the check takes as long, so timing does not tell which names exist.
        let right = match &hash {
            Some(h) => verify_password(password, h),
            None => {
                let _ = verify_password(password, DUMMY_HASH);
                false
            }
        };
        let account = if right { store.account(name)? } else { None };
        let Some(account) = account else {
            self.fail(&keys);
            return Err(SignInError::Wrong);
        };
        if let Ok(mut f) = self.failures.lock() {
            f.remove(keys[0]);
        }
        let (token, life) = start_session(store, &account.name)?;
        Ok((Caller::from_account(account), token, life))
    }

    fn paused(&self, key: &str) -> Option<Duration> {
        let mut f = self.failures.lock().ok()?;
        let list = f.get_mut(key)?;
        list.retain(|t| t.elapsed() < FAILURE_WINDOW);
        (list.len() >= MAX_FAILURES).then(|| list.first().map_or(FAILURE_WINDOW, |t| FAILURE_WINDOW - t.elapsed()))
    }

    fn fail(&self, keys: &[&String]) {
        if let Ok(mut f) = self.failures.lock() {
            if f.len() > 100_000 {
                f.clear();
            }
            for k in keys {
                f.entry((*k).clone()).or_default().push(Instant::now());
            }
        }
    }
}

/// An argon2 hash of a random password no one knows, checked when the name has no account.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$3Jd+Wq5b0UtTmV1Vq5u0vQ9tBqYbqHn2d0mY0bqfXzQ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_limits_its_playbooks_to_its_groups() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("access.yaml");
        std::fs::write(&file, "- folder: incident-response\n  groups: [ir]\n- tag: hr\n  groups: [hr, ir]\n")?;
        let rules = AccessRules::load(&file)?;
        let who = |role, groups: &[&str]| Caller {
            name: "x".into(),
            role,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let ir = std::path::Path::new("incident-response/ransomware.yaml");
        let net = std::path::Path::new("network/ip_flows.yaml");
        assert!(rules.sees(&who(Role::Analyst, &["ir"]), ir, &[]));
        assert!(!rules.sees(&who(Role::Analyst, &["soc"]), ir, &[]));
        assert!(rules.sees(&who(Role::Admin, &[]), ir, &[]), "administrators see everything");
        assert!(rules.sees(&who(Role::Viewer, &[]), net, &[]), "no rule: everyone");
        assert!(!rules.sees(&who(Role::Analyst, &["soc"]), net, &["hr".into()]));
        assert!(rules.sees(&who(Role::Analyst, &["hr"]), net, &["hr".into()]));
        std::fs::write(&file, "- folder: x\n  tag: y\n  groups: [a]\n")?;
        assert!(AccessRules::load(&file).is_err());
        std::fs::write(&file, "- folder: x\n  group: [a]\n")?;
        assert!(AccessRules::load(&file).is_err(), "a typo is an error, not an open door");
        assert!(AccessRules::load(&dir.path().join("none.yaml"))?.is_empty());
        Ok(())
    }

    #[test]
    fn a_password_verifies_against_its_own_hash_only() -> Result<()> {
        let h = hash_password("correct horse battery")?;
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterx", &h));
        assert!(hash_password("short").is_err());
        assert!(PasswordHash::new(DUMMY_HASH).is_ok(), "the dummy hash parses, so an unknown name costs a full check");
        Ok(())
    }
}
