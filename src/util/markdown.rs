//! Markdown to HTML for playbook descriptions and markdown steps. Raw HTML in the source is
//! shown as text, and links may only point to http(s), mailto or within casebook.

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};

pub fn to_html(md: &str) -> String {
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|ev| match ev {
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Image { link_type, dest_url: safe_url(dest_url), title, id })
        }
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, parser);
    out
}

fn safe_url(u: CowStr<'_>) -> CowStr<'_> {
    let lower = u.trim().to_ascii_lowercase();
    let ok = lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("mailto:")
        || lower.starts_with('/')
        || lower.starts_with('#')
        || lower.starts_with('?')
        || !lower.contains(':');
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
}
