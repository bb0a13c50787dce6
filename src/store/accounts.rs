//! Accounts and their sign-in sessions. Passwords are stored only as argon2 hashes and
//! session tokens only as SHA-256 digests (made and checked by the layer above): a copy of
//! the state file lets no one sign in.

use anyhow::Result;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{now, Store};

/// What an account may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads playbooks, runs, results and threats.
    Viewer,
    /// Also runs playbooks, rates, saves threats, exports and keeps schedules of their own.
    Analyst,
    /// Also sees validation detail and runs the self-tests.
    Author,
    /// Also manages: stored data, the repository, accounts, every schedule, the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Analyst, Role::Author, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Author => "author",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("`{s}` is not a role (viewer, analyst, author or admin)"))
    }
}

impl ToSql for Role {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Role {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

/// An account, without its password hash.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    /// Groups the account is in; a playbook limited to groups is seen by their members only.
    pub groups: Vec<String>,
    /// Whether the account has a password (an account for a reverse proxy's sign-on may not).
    pub has_password: bool,
    pub created_at: String,
}

fn account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let groups: String = r.get(2)?;
    let hash: Option<String> = r.get(3)?;
    Ok(Account {
        name: r.get(0)?,
        role: r.get(1)?,
        groups: groups.split(',').filter(|g| !g.is_empty()).map(String::from).collect(),
        has_password: hash.is_some(),
        created_at: r.get(4)?,
    })
}

const ACCOUNT: &str = "SELECT name, role, groups, password_hash, created_at FROM accounts";

impl Store {
    pub fn account_count(&self) -> Result<i64> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0)))
    }

    pub fn accounts(&self) -> Result<Vec<Account>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("{ACCOUNT} ORDER BY name"))?;
            let rows = st.query_map([], account)?;
            rows.collect()
        })
    }

    pub fn account(&self, name: &str) -> Result<Option<Account>> {
        self.with(|c| c.query_row(&format!("{ACCOUNT} WHERE name = ?1"), params![name], account).optional())
    }

    /// The stored password hash of `name` (None: no such account, or no password).
    pub fn password_hash(&self, name: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT password_hash FROM accounts WHERE name = ?1", params![name], |r| r.get(0))
                .optional()
                .map(Option::flatten)
        })
    }

    /// Adds an account; false when the name is taken.
    pub fn add_account(&self, name: &str, role: Role, groups: &[String], password_hash: Option<&str>) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO accounts (name, role, groups, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, role, groups.join(","), password_hash, now()],
            )?;
            Ok(n == 1)
        })
    }

    /// Changes an account's role and groups; false when there is no such account.
    pub fn set_account(&self, name: &str, role: Role, groups: &[String]) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE accounts SET role = ?2, groups = ?3 WHERE name = ?1",
                params![name, role, groups.join(",")],
            )? == 1)
        })
    }

    /// Sets an account's password hash and ends its sessions; false when there is no such account.
    pub fn set_password_hash(&self, name: &str, hash: &str) -> Result<bool> {
        self.with(|c| {
            let n = c.execute("UPDATE accounts SET password_hash = ?2 WHERE name = ?1", params![name, hash])?;
            c.execute("DELETE FROM sessions WHERE account = ?1", params![name])?;
            Ok(n == 1)
        })
    }

    /// Removes an account and its sessions; what it ran, rated and saved keeps its name.
    pub fn remove_account(&self, name: &str) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE account = ?1", params![name])?;
            Ok(c.execute("DELETE FROM accounts WHERE name = ?1", params![name])? == 1)
        })
    }

    /// Records a session (its token's digest) for `name`, ending at `expires_at`.
    pub fn add_session(&self, digest: &str, name: &str, expires_at: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", params![now()])?;
            c.execute(
                "INSERT INTO sessions (digest, account, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![digest, name, now(), expires_at],
            )?;
            Ok(())
        })
    }

    /// The account of a session that has not expired.
    pub fn session_account(&self, digest: &str) -> Result<Option<Account>> {
        self.with(|c| {
            c.query_row(
                "SELECT a.name, a.role, a.groups, a.password_hash, a.created_at FROM sessions s
                 JOIN accounts a ON a.name = s.account WHERE s.digest = ?1 AND s.expires_at > ?2",
                params![digest, now()],
                account,
            )
            .optional()
        })
    }

    pub fn end_session(&self, digest: &str) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE digest = ?1", params![digest]).map(|_| ()))
    }
}
