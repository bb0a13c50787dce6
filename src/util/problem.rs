//! Problems found in playbooks and connectors, each pointing at `file:line:column`.

use std::fmt;

use serde::Serialize;

/// One thing wrong with an author's file, with where it is and, when one helps, a hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file, as given to the loader (relative paths stay relative).
    pub path: String,
    /// 1-based line; 0 when the whole file is meant.
    pub line: u64,
    /// 1-based column; 0 when the whole line is meant.
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(path: impl Into<String>, at: Pos, message: impl Into<String>) -> Self {
        Problem { path: path.into(), line: at.line, column: at.column, message: message.into(), hint: None }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path, self.line.max(1), self.column.max(1), self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A position in a YAML file (1-based).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    pub fn new(line: u64, column: u64) -> Self {
        Pos { line, column }
    }
}

/// Collects problems for one file.
#[derive(Debug, Default)]
pub struct Problems {
    pub path: String,
    pub list: Vec<Problem>,
}

impl Problems {
    pub fn new(path: impl Into<String>) -> Self {
        Problems { path: path.into(), list: Vec::new() }
    }

    pub fn push(&mut self, at: Pos, message: impl Into<String>) {
        self.list.push(Problem::new(self.path.clone(), at, message));
    }

    pub fn push_hint(&mut self, at: Pos, message: impl Into<String>, hint: impl Into<String>) {
        self.list.push(Problem::new(self.path.clone(), at, message).hint(hint));
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
