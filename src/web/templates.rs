//! The template environment: page layouts from `web/templates/`, one template per widget
//! from `widgets/` (`input/<type>.html`, `output/<kind>.html`). HTML autoescape is on.

use minijinja::{AutoEscape, Environment};

use crate::util::paths::{join_inside, Paths};

pub fn environment(paths: &Paths) -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    let web = paths.web.join("templates");
    let widgets = paths.widgets.clone();
    env.set_loader(move |name: &str| {
        let path = if name.starts_with("input/") || name.starts_with("output/") {
            join_inside(&widgets, name)
        } else {
            join_inside(&web, name)
        };
        match path {
            Some(p) => match std::fs::read_to_string(&p) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, "cannot read template")
                    .with_source(e)),
            },
            None => Ok(None),
        }
    });
    env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
    env.add_filter("thousands", thousands);
    env.add_filter("bytes", human_bytes);
    env.add_filter("ticks", ticks);
    // Fail early if a page template is missing or broken.
    for t in [
        "layout.html",
        "index.html",
        "playbook.html",
        "results.html",
        "exports.html",
        "manage.html",
        "selftests.html",
        "report.html",
        "repo_check.html",
        "run.html",
    ] {
        env.get_template(t).map_err(|e| anyhow::anyhow!("template {t}: {e:#}"))?;
    }
    Ok(env)
}

/// A message of ours (a problem, a notice) with its `names` set as code: escaped first, so
/// names taken from files stay text.
fn ticks(text: &str) -> minijinja::Value {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;");
    let ticks = escaped.matches('`').count();
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        match (i % 2 == 1, i < ticks) {
            // Between two backticks.
            (true, true) => out.push_str(&format!("<code>{part}</code>")),
            // After a last, unpaired one.
            (true, false) => out.push_str(&format!("`{part}")),
            _ => out.push_str(part),
        }
    }
    minijinja::Value::from_safe_string(out)
}

/// 3256 → "3,256".
pub fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn human_bytes(n: i64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(2_005_094), "2,005,094");
        assert_eq!(super::thousands(25), "25");
        assert_eq!(super::thousands(-1000), "-1,000");
    }

    #[test]
    fn names_in_backticks_become_code_and_the_rest_stays_text() {
        let t = |s: &str| super::ticks(s).to_string();
        assert_eq!(t("no `rip` in `<flows>`"), "no <code>rip</code> in <code>&lt;flows&gt;</code>");
        assert_eq!(t("a lone ` tick"), "a lone ` tick");
        assert_eq!(t("<script>`x`"), "&lt;script&gt;<code>x</code>");
    }
}
