//! SQL text handling for playbooks: finding `$name` / `$name.start` placeholders, giving
//! them bindable names, listing the identifiers a query mentions, and mapping positions
//! inside a query back to the YAML file it came from.
//!
//! Values never enter SQL text here: placeholders are only *renamed* (`$w.start` becomes
//! `$w_start`, same length, so positions stay true) and bound later as typed scalars.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::problem::Pos;

/// A placeholder found in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The parameter's name (`window` for `$window.start`).
    pub param: String,
    /// `start`/`end` for `$window.start`, else None.
    pub field: Option<String>,
    /// Line and column inside the SQL text (1-based).
    pub at: (u64, u64),
}

/// A query after placeholder renaming.
#[derive(Debug, Clone)]
pub struct PreparedSql {
    pub text: String,
    pub placeholders: Vec<Placeholder>,
    /// Identifier words used (lower-cased), to find references to earlier steps.
    pub words: Vec<String>,
}

/// Tokenizes `sql`, renames `$a.b` to `$a_b` and lists placeholders and words.
pub fn prepare(sql: &str) -> Result<PreparedSql, (String, (u64, u64))> {
    let dialect = GenericDialect {};
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| (e.message.clone(), (e.location.line, e.location.column)))?;
    let mut placeholders = Vec::new();
    let mut words = Vec::new();
    let mut renames: Vec<(u64, u64)> = Vec::new(); // positions of '.' to replace with '_'
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].token {
            Token::Placeholder(p) if p.starts_with('$') && p.len() > 1 => {
                let at = (tokens[i].span.start.line, tokens[i].span.start.column);
                let name = p[1..].to_string();
                let field = match (tokens.get(i + 1).map(|t| &t.token), tokens.get(i + 2).map(|t| &t.token)) {
                    (Some(Token::Period), Some(Token::Word(w))) if adjacent(&tokens[i], &tokens[i + 1]) => {
                        let dot = tokens[i + 1].span.start;
                        renames.push((dot.line, dot.column));
                        i += 2;
                        Some(w.value.clone())
                    }
                    _ => None,
                };
                placeholders.push(Placeholder { param: name, field, at });
            }
            Token::Word(w) => words.push(w.value.to_lowercase()),
            _ => {}
        }
        i += 1;
    }
    let text = if renames.is_empty() {
        sql.to_string()
    } else {
        let mut out = String::with_capacity(sql.len());
        for (ln, line) in sql.split_inclusive('\n').enumerate() {
            for (col, ch) in line.chars().enumerate() {
                let here = ((ln + 1) as u64, (col + 1) as u64);
                out.push(if ch == '.' && renames.contains(&here) { '_' } else { ch });
            }
        }
        out
    };
    Ok(PreparedSql { text, placeholders, words })
}

fn adjacent(a: &TokenWithSpan, b: &TokenWithSpan) -> bool {
    a.span.end.line == b.span.start.line && a.span.end.column == b.span.start.column
}

/// Finds the first use of identifier `name` (case-insensitive, not inside a string) in
/// `sql`, as a 1-based line and column.
pub fn find_identifier(sql: &str, name: &str) -> Option<(u64, u64)> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location().ok()?;
    let want = name.trim_matches('"').to_lowercase();
    let last = want.rsplit('.').next().unwrap_or(&want).to_string();
    tokens.iter().find_map(|t| match &t.token {
        Token::Word(w) if w.value.to_lowercase() == last => Some((t.span.start.line, t.span.start.column)),
        _ => None,
    })
}

/// Where a SQL string sits in its YAML file, to turn positions in the query into file
/// positions.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlOrigin {
    /// File position of the first character of the SQL text.
    pub first: Pos,
    /// Block scalar (`sql: |`): every line of the SQL is indented by `first.column - 1`.
    pub block: bool,
}

impl SqlOrigin {
    /// Works out where the scalar's text starts from the position serde reported and the
    /// file's text: a block scalar (`|`, `>`) starts on the next line.
    pub fn locate(reported: Pos, file_text: &str) -> SqlOrigin {
        let lines: Vec<&str> = file_text.lines().collect();
        let Some(line) = lines.get(reported.line.saturating_sub(1) as usize) else {
            return SqlOrigin { first: reported, block: false };
        };
        let rest: String = line.chars().skip(reported.column.saturating_sub(1) as usize).collect();
        let rest = rest.trim_start();
        if rest.starts_with('|') || rest.starts_with('>') {
            for (k, l) in lines.iter().enumerate().skip(reported.line as usize) {
                if !l.trim().is_empty() {
                    let indent = l.len() - l.trim_start().len();
                    return SqlOrigin { first: Pos::new(k as u64 + 1, indent as u64 + 1), block: true };
                }
            }
            return SqlOrigin { first: reported, block: true };
        }
        let quoted = rest.starts_with('"') || rest.starts_with('\'');
        SqlOrigin { first: Pos::new(reported.line, reported.column + u64::from(quoted)), block: false }
    }

    /// File position of SQL line/column (1-based).
    pub fn map(&self, (line, col): (u64, u64)) -> Pos {
        if line <= 1 {
            Pos::new(self.first.line, self.first.column + col.saturating_sub(1))
        } else if self.block {
            Pos::new(self.first.line + line - 1, self.first.column + col.saturating_sub(1))
        } else {
            Pos::new(self.first.line + line - 1, col)
        }
    }
}

/// Quotes an identifier taken from a schema for use in generated SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_dotted_placeholders_in_place() {
        let p =
            prepare("SELECT * FROM flows\nWHERE t >= $window.start AND t < $window.end AND x = '$a.b' LIMIT $limit")
                .unwrap();
        assert_eq!(
            p.text,
            "SELECT * FROM flows\nWHERE t >= $window_start AND t < $window_end AND x = '$a.b' LIMIT $limit"
        );
        let names: Vec<_> = p.placeholders.iter().map(|p| (p.param.as_str(), p.field.as_deref())).collect();
        assert_eq!(names, vec![("window", Some("start")), ("window", Some("end")), ("limit", None)]);
        assert_eq!(p.placeholders[0].at, (2, 12));
        assert!(p.words.contains(&"flows".to_string()));
    }

    #[test]
    fn maps_block_scalars_to_file_positions() {
        let yaml = "steps:\n  - id: a\n    query:\n      sql: |\n        SELECT x\n        FROM t\n";
        let o = SqlOrigin::locate(Pos::new(4, 12), yaml);
        assert!(o.block);
        assert_eq!(o.map((2, 6)), Pos::new(6, 14));
        let o = SqlOrigin::locate(Pos::new(1, 6), "sql: \"SELECT nope FROM t\"");
        assert_eq!(o.map((1, 8)), Pos::new(1, 14));
    }

    #[test]
    fn finds_identifiers_outside_strings() {
        assert_eq!(find_identifier("SELECT 'dport', dprot\nFROM t", "dprot"), Some((1, 17)));
        assert_eq!(find_identifier("SELECT a FROM t", "flows.zzz"), None);
    }
}
