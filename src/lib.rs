//! casebook: YAML playbooks for security analysts, executed on DataFusion and served as pages.
//!
//! The crate is a library so that the binary, the integration tests and the benchmarks share
//! one code path. The modules are layers, each importing only those listed before it (a test
//! says so); `ARCHITECTURE.md` at the repository root is the map.

pub mod util;

pub mod secrets;
pub mod sql;
pub mod store;

pub mod auth;

pub mod model;
pub mod results;

pub mod lookup;
pub mod reputation;

pub mod steps;

pub mod playbook;
pub mod schema;

pub mod catalog;

pub mod engine;

pub mod jobs;
pub mod manage;
pub mod repo;
pub mod report;
pub mod threat;

pub mod web;

pub mod cli;

pub mod demo;
