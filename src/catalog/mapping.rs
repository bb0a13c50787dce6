//! A connector's mapping: the table the playbooks read, made from the source files by
//! `columns:` (each a source column or a SQL expression over the source) and `filter:`, and,
//! with `provides:`, shaped as one standard schema: its columns first, in its order and
//! types, NULL where the source has nothing for them, then the source's other columns.
//!
//! The mapping is a DataFusion view (a logical plan over the files), so it is planned once at
//! load, where a wrong expression is reported at its `file:line:column`, and at run time
//! filters and projections pass through it to the files (row-group pruning keeps working when
//! a column is mapped by name).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::{provider_as_source, TableProvider};
use datafusion::logical_expr::{cast, ident, lit, try_cast, Expr, ExprSchemable, LogicalPlanBuilder};
use indexmap::IndexMap;
use serde_saphyr::Spanned;

use super::connector::type_name;
use super::standard::Standard;
use crate::sql::session::{clean_error, new_session};
use crate::util::problem::Problems;
use crate::util::yaml::pos;

/// What a connector file says of its columns.
#[derive(Debug)]
pub struct Mapping<'a> {
    pub connector: &'a str,
    pub provides: Option<&'static Standard>,
    pub columns: &'a IndexMap<String, Spanned<String>>,
    pub filter: Option<&'a Spanned<String>>,
}

/// The mapped table and the standard columns it could not fill.
#[derive(Debug)]
pub struct Mapped {
    pub table: Arc<dyn TableProvider>,
    pub missing: Vec<String>,
}

impl Mapping<'_> {
    /// Builds the view over `files`. Every problem is reported; `None` if there was one.
    pub fn apply(&self, files: Arc<dyn TableProvider>, problems: &mut Problems) -> Option<Mapped> {
        let name = self.connector;
        let ctx = new_session();
        let source_schema = match DFSchema::try_from(files.schema().as_ref().clone()) {
            Ok(s) => s,
            Err(e) => {
                problems.push(crate::util::problem::Pos::new(1, 1), format!("connector `{name}`: {e}"));
                return None;
            }
        };
        let source_names: Vec<&str> = source_schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut failed = false;
        // Each mapped expression, planned alone so a mistake is reported where it is written.
        let mut mapped: IndexMap<&str, (Expr, DataType)> = IndexMap::new();
        for (column, text) in self.columns {
            if let Some(std) = self.provides {
                if std.kind_of(column).is_none() {
                    let names: Vec<&str> = std.columns.iter().map(|(n, _)| *n).collect();
                    problems.push_hint(
                        pos(text),
                        format!("connector `{name}`: `{column}` is not a column of the standard `{}` schema", std.name),
                        format!("its columns: {}; the source's own columns are kept as they are", names.join(", ")),
                    );
                    failed = true;
                    continue;
                }
            }
            let planned = ctx
                .parse_sql_expr(&text.value, &source_schema)
                .and_then(|e| e.get_type(&source_schema).map(|t| (e, t)));
            match planned {
                Ok((e, t)) => {
                    mapped.insert(column.as_str(), (e, t));
                }
                Err(e) => {
                    let (msg, hint) = clean_error(&e);
                    let hint = hint.unwrap_or_else(|| format!("the source's columns: {}", source_names.join(", ")));
                    problems.push_hint(pos(text), format!("connector `{name}`: column `{column}`: {msg}"), hint);
                    failed = true;
                }
            }
        }
        let filter = match self.filter {
            None => None,
            Some(text) => match ctx.parse_sql_expr(&text.value, &source_schema).and_then(|e| {
                let t = e.get_type(&source_schema)?;
                Ok((e, t))
            }) {
                Ok((e, DataType::Boolean)) => Some(e),
                Ok((_, t)) => {
                    problems.push(
                        pos(text),
                        format!("connector `{name}`: `filter:` is {}, not a condition", type_name(&t)),
                    );
                    failed = true;
                    None
                }
                Err(e) => {
                    let (msg, hint) = clean_error(&e);
                    let hint = hint.unwrap_or_else(|| format!("the source's columns: {}", source_names.join(", ")));
                    problems.push_hint(pos(text), format!("connector `{name}`: filter: {msg}"), hint);
                    failed = true;
                    None
                }
            },
        };
        if failed {
            return None;
        }
        // Files that already hold the standard schema as it is need no view at all.
        let as_is = self.provides.is_some_and(|std| {
            std.columns.iter().all(|(c, k)| {
                source_schema.field_with_unqualified_name(c).is_ok_and(|f| f.data_type() == &k.data_type())
            })
        });
        if as_is && mapped.is_empty() && filter.is_none() {
            return Some(Mapped { table: files, missing: Vec::new() });
        }
        let mut out: Vec<Expr> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut missing = Vec::new();
        if let Some(std) = self.provides {
            for (column, kind) in std.columns {
                let want = kind.data_type();
                let expr = match mapped.get(column) {
                    Some((e, t)) => fitted(e.clone(), t, &want),
                    None => match source_schema.field_with_unqualified_name(column) {
                        Ok(f) => fitted(ident(*column), f.data_type(), &want),
                        Err(_) => {
                            missing.push((*column).to_string());
                            cast(lit(ScalarValue::Null), want)
                        }
                    },
                };
                out.push(expr.alias(*column));
                names.push((*column).to_string());
            }
        }
        // Without a standard: the source's columns, each replaced by its mapping if it has one.
        for f in source_schema.fields() {
            if names.iter().any(|n| n == f.name()) {
                continue;
            }
            let expr = match mapped.get(f.name().as_str()).filter(|_| self.provides.is_none()) {
                Some((e, _)) => e.clone(),
                None => Expr::Column(Column::new_unqualified(f.name())),
            };
            out.push(expr.alias(f.name()));
            names.push(f.name().clone());
        }
        for (column, (e, _)) in &mapped {
            if !names.iter().any(|n| n == column) {
                out.push(e.clone().alias(*column));
                names.push((*column).to_string());
            }
        }
        let plan = LogicalPlanBuilder::scan("source", provider_as_source(files), None)
            .and_then(|b| match filter {
                Some(f) => b.filter(f),
                None => Ok(b),
            })
            .and_then(|b| b.project(out))
            .and_then(LogicalPlanBuilder::build);
        match plan {
            Ok(plan) => Some(Mapped { table: Arc::new(ViewTable::new(plan, None)), missing }),
            Err(e) => {
                problems
                    .push(crate::util::problem::Pos::new(1, 1), format!("connector `{name}`: {}", clean_error(&e).0));
                None
            }
        }
    }
}

/// One table of several with one schema (plain and compressed files of one folder): their
/// rows together, as a view.
pub fn union(mut tables: Vec<Arc<dyn TableProvider>>) -> datafusion::common::Result<Arc<dyn TableProvider>> {
    if tables.len() <= 1 {
        return tables.pop().ok_or_else(|| datafusion::common::DataFusionError::Plan("no files".into()));
    }
    let mut plan: Option<LogicalPlanBuilder> = None;
    for t in tables {
        let scan = LogicalPlanBuilder::scan("source", provider_as_source(t), None)?.build()?;
        plan = Some(match plan {
            None => LogicalPlanBuilder::from(scan),
            Some(b) => b.union(scan)?,
        });
    }
    let plan = plan.ok_or_else(|| datafusion::common::DataFusionError::Plan("no files".into()))?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// `e` (of type `found`) as type `want`: unchanged when it already is, so filters on it
/// still prune the files; parsed leniently from text (a bad value reads as NULL rather than
/// failing every query); cast otherwise.
fn fitted(e: Expr, found: &DataType, want: &DataType) -> Expr {
    if found == want {
        e
    } else if matches!(found, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        try_cast(e, want.clone())
    } else {
        cast(e, want.clone())
    }
}
