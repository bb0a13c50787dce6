//! `casebook user add | passwd | remove | list`: accounts from the command line, on the
//! state file of the data folder (the server need not be stopped).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::store::accounts::Role;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account. The password is asked for (or read from standard input).
    Add {
        name: String,
        /// viewer, analyst, author or admin.
        #[arg(long, default_value = "analyst")]
        role: String,
        /// Groups, comma-separated: playbooks limited to a group are seen by its members.
        #[arg(long, default_value = "")]
        groups: String,
        /// No password: the account signs in only through a trusted proxy (--user-header).
        #[arg(long)]
        no_password: bool,
    },
    /// Set an account's password (its sessions end).
    Passwd { name: String },
    /// Change an account's role or groups.
    Set {
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        groups: Option<String>,
    },
    /// Remove an account (what it ran and saved keeps its name).
    Remove { name: String },
    /// List the accounts.
    List,
}

/// A password from the terminal (not echoed, asked twice) or one line of standard input.
fn read_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("Password: ").context("reading the password")?;
        let b = rpassword::prompt_password("Again: ").context("reading the password")?;
        if a != b {
            bail!("the two passwords differ");
        }
        Ok(a)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

fn group_list(text: &str) -> Result<Vec<String>> {
    let list: Vec<String> = text.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect();
    for g in &list {
        crate::auth::check_name(g).with_context(|| format!("group `{g}`"))?;
    }
    Ok(list)
}

fn parse_role(text: &str) -> Result<Role> {
    text.parse().map_err(|e: String| anyhow::anyhow!(e))
}

pub fn run(cmd: UserCommand, store: &Store) -> Result<ExitCode> {
    match cmd {
        UserCommand::Add { name, role, groups, no_password } => {
            crate::auth::check_name(&name)?;
            let role = parse_role(&role)?;
            let groups = group_list(&groups)?;
            let hash = if no_password { None } else { Some(crate::auth::hash_password(&read_password()?)?) };
            if !store.add_account(&name, role, &groups, hash.as_deref())? {
                bail!("there is already an account called `{name}`");
            }
            let detail = serde_json::json!({ "role": role, "groups": groups, "by": "command line" });
            store.audit(&operator(), "account-add", &name, &detail)?;
            println!("added {name} ({role})");
        }
        UserCommand::Passwd { name } => {
            let hash = crate::auth::hash_password(&read_password()?)?;
            if !store.set_password_hash(&name, &hash)? {
                bail!("there is no account called `{name}`");
            }
            store.audit(&operator(), "account-password", &name, &serde_json::json!({ "by": "command line" }))?;
            println!("password of {name} set; its sessions ended");
        }
        UserCommand::Set { name, role, groups } => {
            let Some(a) = store.account(&name)? else { bail!("there is no account called `{name}`") };
            let role = match role {
                Some(r) => parse_role(&r)?,
                None => a.role,
            };
            let groups = match groups {
                Some(g) => group_list(&g)?,
                None => a.groups,
            };
            store.set_account(&name, role, &groups)?;
            let detail = serde_json::json!({ "role": role, "groups": groups, "by": "command line" });
            store.audit(&operator(), "account-change", &name, &detail)?;
            println!(
                "{name}: {role}{}",
                if groups.is_empty() { String::new() } else { format!(", groups {}", groups.join(",")) }
            );
        }
        UserCommand::Remove { name } => {
            if !store.remove_account(&name)? {
                bail!("there is no account called `{name}`");
            }
            store.audit(&operator(), "account-remove", &name, &serde_json::json!({ "by": "command line" }))?;
            println!("removed {name}");
        }
        UserCommand::List => {
            for a in store.accounts()? {
                let pw = if a.has_password { "" } else { "  (no password: proxy sign-on only)" };
                println!("{:<24} {:<8} {}{pw}", a.name, a.role.as_str(), a.groups.join(","));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Who the audit log names for a change made on the command line: the system user.
fn operator() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("{user} (command line)")
}
