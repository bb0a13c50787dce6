//! SQL functions on DNS and host names: `registrable_domain`.

use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;

use super::arrays::{finish, rows_of, to_strings};

/// `registrable_domain(name)`: the domain a DNS or host name belongs to by the public suffix
/// list (`a.b.example.co.uk` → `example.co.uk`, `x.github.io` → `x.github.io`), lower-cased and
/// without the root's dot. A name with no registrable part (`wpad`, `co.uk`) is its own domain,
/// so that it is still counted, apart from the others.
pub(super) fn registrable_domain(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let [arg] = args else {
        return Err(DataFusionError::Plan("registrable_domain takes one name".into()));
    };
    let names = to_strings(arg, rows_of(args))?;
    let mut lower = String::new();
    let out: StringArray = names
        .iter()
        .map(|v| {
            v.map(|name| {
                lower.clear();
                lower.push_str(name.trim().trim_end_matches('.'));
                lower.make_ascii_lowercase();
                psl::domain_str(&lower).unwrap_or(&lower).to_string()
            })
        })
        .collect();
    finish(args, Arc::new(out))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn registrable_domains_follow_the_public_suffix_list() {
        let ctx = SessionContext::new();
        crate::sql::functions::register(&ctx);
        let sql =
            "SELECT n, registrable_domain(n) AS d FROM (VALUES ('a.b.Example.CO.UK.'), ('bbc.co.uk'), ('co.uk'), \
                   ('x7f3.cdn-sync-update.net'), ('user.github.io'), ('WPAD'), ('host.corp'), (NULL)) t(n)";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        let expected = "\
+--------------------------+---------------------+
| n                        | d                   |
+--------------------------+---------------------+
| a.b.Example.CO.UK.       | example.co.uk       |
| bbc.co.uk                | bbc.co.uk           |
| co.uk                    | co.uk               |
| x7f3.cdn-sync-update.net | cdn-sync-update.net |
| user.github.io           | user.github.io      |
| WPAD                     | wpad                |
| host.corp                | host.corp           |
|                          |                     |
+--------------------------+---------------------+";
        assert_eq!(text, expected);
    }
}
