//! The bottom layer: helpers with no knowledge of playbooks, runs or pages. Nothing here
//! imports another part of casebook.

pub mod markdown;
pub mod paths;
pub mod problem;
pub mod refusal;
pub mod text;
pub mod timeutil;
pub mod yaml;
