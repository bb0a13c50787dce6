//! The `markdown` step: Markdown text that can show values from parameters and earlier
//! results through a minijinja template (`{{ steps.top.first.sip }}`). The rendered
//! Markdown is turned into HTML with raw HTML escaped (see [`crate::markdown`]).

use crate::problem::{Pos, Problems};

#[derive(Debug, Clone)]
pub struct Markdown {
    pub template: String,
    pub at: Pos,
}

impl Markdown {
    /// Whether the template mentions step `id` (as `steps.id`).
    pub fn mentions(&self, id: &str) -> bool {
        self.template.contains(&format!("steps.{id}")) || self.template.contains(&format!("steps[\"{id}\"]"))
    }
}

pub fn validate(template: &str, at: Pos, problems: &mut Problems) -> Option<Markdown> {
    let env = minijinja::Environment::new();
    if let Err(e) = env.template_from_str(template) {
        let line = e.line().map(|l| at.line + l as u64).unwrap_or(at.line);
        problems
            .push(Pos::new(line, at.column), format!("markdown template: {}", e.detail().unwrap_or("syntax error")));
        return None;
    }
    Some(Markdown { template: template.to_string(), at })
}
