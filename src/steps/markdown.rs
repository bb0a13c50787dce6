//! The `markdown` step: Markdown text that can show values from parameters and earlier
//! results through a minijinja template (`{{ steps.top.first.sip }}`). The rendered
//! Markdown is turned into HTML with raw HTML escaped (see [`crate::util::markdown`]).

use super::env::{Env, StepError};
use crate::results::cells::row_json;
use crate::util::markdown::{to_html_with_values, value_mark};
use crate::util::problem::{Pos, Problems};

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

    /// Renders a markdown step: the template sees `params` and `steps.<id>` (`rows`, `columns`,
    /// `first`, `data` — the first 100 rows).
    pub fn render(&self, env: &Env<'_>) -> Result<String, StepError> {
        let (template, values, done, tz) = (&self.template, env.values, env.done, env.tz);
        let mut steps = serde_json::Map::new();
        for (id, d) in done {
            let mut rows = Vec::new();
            'b: for b in &d.batches {
                for r in 0..b.num_rows() {
                    if rows.len() >= 100 {
                        break 'b;
                    }
                    rows.push(serde_json::Value::Object(row_json(b, r, tz)));
                }
            }
            let first = rows.first().cloned().unwrap_or(serde_json::Value::Null);
            steps.insert(
                id.clone(),
                serde_json::json!({
                    "rows": d.rows,
                    "columns": d.schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
                    "first": first,
                    "data": rows,
                }),
            );
        }
        let params: serde_json::Map<String, serde_json::Value> =
            values.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_text(tz)))).collect();
        // Each value the template puts in stands as a mark until the Markdown is read, so data
        // cannot add Markdown, HTML or links of its own.
        let filled = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut env = minijinja::Environment::new();
        let marks = filled.clone();
        env.set_formatter(move |out, _state, value| {
            let text = value.to_string();
            if text.is_empty() {
                return Ok(());
            }
            let mut list = marks.lock().map_err(|_| minijinja::Error::from(minijinja::ErrorKind::InvalidOperation))?;
            list.push(text);
            out.write_str(&value_mark(list.len() - 1))
                .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure))
        });
        let text = env.render_str(template, serde_json::json!({"params": params, "steps": steps})).map_err(|e| {
            StepError::other(format!("could not fill in the text: {}", e.detail().unwrap_or("template error")))
        })?;
        let values = filled.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(to_html_with_values(&text, &values))
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
