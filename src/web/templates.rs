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
}
