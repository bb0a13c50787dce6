//! casebook: YAML playbooks for security analysts, executed on DataFusion and served as pages.
//!
//! The crate is a library so that the binary, the integration tests and the benchmarks share
//! one code path. See `ARCHITECTURE.md` at the repository root for the map.

pub mod catalog;
pub mod cli;
pub mod connector;
pub mod demo;
pub mod engine;
pub mod enrich;
pub mod manage;
pub mod markdown;
pub mod notify;
pub mod paths;
pub mod playbook;
pub mod problem;
pub mod repo;
pub mod report;
pub mod reputation;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod selftest;
pub mod sql;
pub mod sqlfn;
pub mod steps;
pub mod store;
pub mod threat;
pub mod timeutil;
pub mod watch;
pub mod web;
pub mod yaml;
