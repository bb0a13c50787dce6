//! Markdown to HTML for playbook descriptions and markdown steps. Raw HTML in the source is
//! shown as text, and links may only point to http(s), mailto or within casebook. Values a
//! template puts into an author's Markdown (from data or parameters) stand in it as marks and
//! are put back as text after the Markdown is read, so a value cannot add Markdown, HTML or
//! a link.

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};

/// The characters around a value's mark (private use: no author types them).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// The mark that stands for `values[index]` in [`to_html_with_values`].
pub fn value_mark(index: usize) -> String {
    format!("{OPEN}{index}{CLOSE}")
}

pub fn to_html(md: &str) -> String {
    to_html_with_values(md, &[])
}

/// `md` as HTML, each [`value_mark`] replaced by its value as text (escaped where it lands;
/// a link it lands in is checked like any other).
pub fn to_html_with_values(md: &str, values: &[String]) -> String {
    fn put<'a>(s: CowStr<'a>, values: &[String]) -> CowStr<'a> {
        if values.is_empty() || !s.contains(OPEN) {
            return s;
        }
        let mut out = String::with_capacity(s.len());
        let mut rest: &str = &s;
        while let Some(i) = rest.find(OPEN) {
            out.push_str(&rest[..i]);
            let after = &rest[i + OPEN.len_utf8()..];
            match after.find(CLOSE).and_then(|j| after[..j].parse::<usize>().ok().map(|n| (j, n))) {
                Some((j, n)) if n < values.len() => {
                    out.push_str(&values[n]);
                    rest = &after[j + CLOSE.len_utf8()..];
                }
                _ => {
                    out.push(OPEN);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        CowStr::from(out)
    }
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|ev| match ev {
        Event::Html(s) | Event::InlineHtml(s) | Event::Text(s) => Event::Text(put(s, values)),
        Event::Code(s) => Event::Code(put(s, values)),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(put(dest_url, values)),
            title: put(title, values),
            id,
        }),
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(put(dest_url, values)),
            title: put(title, values),
            id,
        }),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, parser);
    out
}

fn safe_url(u: CowStr<'_>) -> CowStr<'_> {
    let lower = u.trim().to_ascii_lowercase();
    // `//host` and `/\host` are other sites to a browser, not paths of casebook's.
    let elsewhere = lower.starts_with("//") || lower.starts_with("/\\") || lower.starts_with('\\');
    let ok = !elsewhere
        && (lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("mailto:")
            || lower.starts_with('/')
            || lower.starts_with('#')
            || lower.starts_with('?')
            || !lower.contains(':'));
    if ok {
        u
    } else {
        CowStr::Borrowed("#")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_text_and_script_links_are_dropped() {
        let h = to_html("Hi <script>alert(1)</script> [x](javascript:alert(1)) [ok](/p/ip_flows)");
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
        assert!(h.contains("href=\"#\""), "{h}");
        assert!(h.contains("href=\"/p/ip_flows\""), "{h}");
    }

    #[test]
    fn values_cannot_add_markdown_html_or_links() {
        let evil = "[Reset your password](//evil.example) <b>x</b> **y** | z".to_string();
        let md = format!("Name: **{}** and `{}`", value_mark(0), value_mark(0));
        let html = to_html_with_values(&md, &[evil]);
        assert!(!html.contains("<a ") && !html.contains("<b>") && !html.contains("<em>"), "{html}");
        assert!(
            html.contains("<strong>[Reset your password](//evil.example) &lt;b&gt;x&lt;/b&gt; **y** | z</strong>"),
            "{html}"
        );
        // A value in a link's address is checked like any address.
        let html = to_html_with_values(&format!("[open]({})", value_mark(0)), &["//evil.example".to_string()]);
        assert!(html.contains("href=\"#\""), "{html}");
        for other_site in ["//evil.example", "/\\evil.example", "\\\\evil.example"] {
            assert!(to_html(&format!("[x]({other_site})")).contains("href=\"#\""), "{other_site}");
        }
        assert!(to_html("[run](/runs/abc)").contains("href=\"/runs/abc\""));
    }
}
