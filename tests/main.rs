//! casebook's integration tests: one binary, modules by area. Each test uses real parts:
//! demo data generated into a temporary folder, the shipped playbooks and connectors, a real
//! SQLite file, the real router, the built `casebook` binary, and headless Chromium.

mod browser;
mod cli;
mod common;
mod loader;
mod playbooks;
mod web;
