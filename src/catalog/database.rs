//! Database tables as connectors (`format: postgres`), through the maintained
//! `datafusion-table-providers`: DataFusion plans the query and sends the filters, the
//! projection and the limit it can to the database as SQL with the values in place of
//! casebook's bound parameters; the password comes from a named secret and is never shown.

use std::sync::Arc;

use datafusion::datasource::TableProvider;

use super::connector::RawConnector;
use crate::secrets::Secrets;
use crate::util::problem::{Pos, Problems};
use crate::util::yaml::pos;

/// The keys `connection:` may hold.
const KEYS: [&str; 5] = ["host", "port", "db", "user", "sslmode"];

/// The table of a `format: postgres` connector, its schema read from the database now.
pub async fn postgres(
    raw: &RawConnector,
    name: &str,
    secrets: &Secrets,
    problems: &mut Problems,
) -> Option<Arc<dyn TableProvider>> {
    let Some(table) = &raw.table else {
        problems.push_hint(
            pos(&raw.format),
            format!("connector `{name}`: a PostgreSQL connector needs `table:`"),
            "name the table, e.g. table: public.flows",
        );
        return None;
    };
    if let Some(k) = raw.connection.keys().find(|k| !KEYS.contains(&k.as_str())) {
        problems.push_hint(
            Pos::new(1, 1),
            format!("connector `{name}`: unknown `connection:` key `{k}`"),
            format!("known keys: {}; the password comes from `password_secret:`", KEYS.join(", ")),
        );
        return None;
    }
    let password = match &raw.password_secret {
        None => None,
        Some(s) => match secrets.get(&s.value) {
            Ok(secret) => Some(secret),
            Err(e) => {
                problems.push(pos(s), format!("connector `{name}`: {e}"));
                return None;
            }
        },
    };
    let password = password.map(|p| p.expose().to_string());
    let params: Vec<(String, String)> = raw
        .connection
        .iter()
        .map(|(k, v)| (k.clone(), crate::util::yaml::scalar_text(v).unwrap_or_default()))
        .chain(password.clone().map(|p| ("pass".to_string(), p)))
        .collect();
    match open(params, &table.value).await {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push_hint(
                pos(table),
                format!("connector `{name}`: cannot read table `{}`: {}", table.value, redact(&e, password.as_deref())),
                "check `connection:` (host, port, db, user), `password_secret:` and that the table exists",
            );
            None
        }
    }
}

/// The first line of a message, with the connector's password replaced if it appears.
fn redact(message: &str, password: Option<&str>) -> String {
    let first = crate::util::text::first_line(message);
    match password {
        Some(p) if !p.is_empty() => first.replace(p, "…"),
        _ => first,
    }
}

/// A database table that always asks the database for at least one column. The library's
/// tables answer an empty projection (`SELECT count(*) FROM t`) with a column anyway, which
/// the plan above does not expect; here the first column is read and dropped instead.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct AtLeastOneColumn(Arc<dyn TableProvider>);

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl TableProvider for AtLeastOneColumn {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        self.0.table_type()
    }

    /// Only conditions the database understands go to it: comparisons, AND/OR/NOT, IN,
    /// BETWEEN, LIKE, IS NULL and casts of columns and values. A condition calling a function
    /// (casebook's `ip_in`, DataFusion's own) is evaluated by casebook on the rows returned.
    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::logical_expr::Expr],
    ) -> datafusion::common::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        use datafusion::common::tree_node::TreeNode;
        use datafusion::logical_expr::{Expr, TableProviderFilterPushDown as Push};
        let plain: Vec<bool> = filters
            .iter()
            .map(|f| {
                !f.exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarFunction(_)
                            | Expr::AggregateFunction(_)
                            | Expr::WindowFunction(_)
                            | Expr::ScalarSubquery(_)
                            | Expr::InSubquery(_)
                            | Expr::Exists(_)
                            | Expr::Placeholder(_)
                    ))
                })
                .unwrap_or(true)
            })
            .collect();
        let sendable: Vec<&Expr> = filters.iter().zip(&plain).filter(|(_, p)| **p).map(|(f, _)| *f).collect();
        let mut answers = self.0.supports_filters_pushdown(&sendable)?.into_iter();
        Ok(plain
            .iter()
            .map(|p| if *p { answers.next().unwrap_or(Push::Unsupported) } else { Push::Unsupported })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        match projection {
            Some(p) if p.is_empty() && !self.0.schema().fields().is_empty() => {
                let plan = self.0.scan(state, Some(&vec![0]), filters, limit).await?;
                let none: Vec<datafusion::physical_plan::projection::ProjectionExpr> = Vec::new();
                Ok(Arc::new(datafusion::physical_plan::projection::ProjectionExec::try_new(none, plan)?))
            }
            _ => self.0.scan(state, projection, filters, limit).await,
        }
    }
}

#[cfg(feature = "postgres")]
async fn open(params: Vec<(String, String)>, table: &str) -> Result<Arc<dyn TableProvider>, String> {
    use datafusion::common::TableReference;
    use datafusion_table_providers_postgres::pool::PostgresConnectionPool;
    use datafusion_table_providers_postgres::PostgresTableFactory;
    let params = params.into_iter().map(|(k, v)| (k, secrecy::SecretString::from(v))).collect();
    let pool = PostgresConnectionPool::new(params).await.map_err(|e| e.to_string())?;
    let factory = PostgresTableFactory::new(Arc::new(pool));
    let t = factory.table_provider(TableReference::from(table)).await.map_err(|e| e.to_string())?;
    Ok(Arc::new(AtLeastOneColumn(t)))
}

#[cfg(not(feature = "postgres"))]
async fn open(_params: Vec<(String, String)>, _table: &str) -> Result<Arc<dyn TableProvider>, String> {
    Err("this casebook was built without PostgreSQL support (build it with `--features postgres`)".into())
}
