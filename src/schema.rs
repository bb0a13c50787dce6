//! JSON Schemas for playbook and connector files, generated from the Rust types the loader
//! reads, so an editor with a YAML language server completes and checks as authors type.

use crate::catalog::connector::RawConnector;
use crate::playbook::RawPlaybook;

/// The playbook schema, as pretty JSON.
pub fn playbook() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(RawPlaybook)).unwrap_or_default()
}

/// A connector file: files registered as a table, or a reputation service (`kind: http`).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
// Never built: it only describes the files for the schema generator.
#[allow(dead_code, clippy::large_enum_variant)]
enum AnyConnector {
    Files(RawConnector),
    Http(crate::model::service::RawService),
    HttpTable(crate::catalog::http_table::RawHttpTable),
}

/// The connector schema, as pretty JSON.
pub fn connector() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(AnyConnector)).unwrap_or_default()
}
