//! What the YAML files say, validated: parameter types and values, reputation services,
//! schedule and self-test specs. Below the step kinds and the playbook that assembles them,
//! so a spec that checks itself against its playbook sees it through [`Declares`].

pub mod params;
pub mod schedule;
pub mod selftest;
pub mod service;

use params::Param;

/// What a schedule or self-test spec checks against: the playbook that declares it.
pub trait Declares {
    fn params(&self) -> &[Param];
    fn param(&self, name: &str) -> Option<&Param> {
        self.params().iter().find(|p| p.name == name)
    }
    fn has_step(&self, id: &str) -> bool;
    /// Whether step `id` exists and makes a table.
    fn makes_table(&self, id: &str) -> bool;
}
