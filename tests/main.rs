//! casebook's integration tests: one binary, modules by area. Each test uses real parts:
//! demo data generated into a temporary folder, the shipped playbooks and connectors, a real
//! SQLite file, the real router, the built `casebook` binary, and headless Chromium.

// Test and bench code may stop at the first surprise; the lints guard product code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod browser;
mod cli;
#[cfg(feature = "ballista")]
mod cluster;
mod common;
mod connectors;
mod enrich;
mod formats;
mod hostile;
mod jobs;
mod loader;
mod manage;
mod memory;
mod playbooks;
mod reload;
mod repo;
mod reputation;
mod resume;
mod schedules;
mod schema;
mod secrecy;
mod tidy;
mod web;
