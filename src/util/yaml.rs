//! YAML loading through `serde-saphyr`, with errors turned into [`Problem`]s and spans kept.

use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

use crate::util::problem::{Pos, Problem};

/// The position a spanned value came from.
pub fn pos<T>(s: &Spanned<T>) -> Pos {
    Pos::new(s.referenced.line(), s.referenced.column())
}

/// Text form of a YAML scalar used as a default or option.
pub fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Null => None,
        serde_json::Value::Array(a) => Some(a.iter().filter_map(scalar_text).collect::<Vec<_>>().join(",")),
        serde_json::Value::Object(_) => None,
    }
}

/// Parses `text` (the contents of `path`) into `T`, or one problem with its position.
pub fn parse<T: DeserializeOwned>(path: &str, text: &str) -> Result<T, Problem> {
    serde_saphyr::from_str::<T>(text).map_err(|err| {
        let at = err.location().map(|l| Pos::new(l.line(), l.column())).unwrap_or(Pos::UNKNOWN);
        let raw = err.without_snippet().to_string();
        let (message, hint) = clean_message(&raw);
        let mut p = Problem::new(path, at, message);
        p.hint = hint;
        p
    })
}

/// serde's messages are written for programmers; reword the common ones for authors.
fn clean_message(raw: &str) -> (String, Option<String>) {
    // Drop a trailing " at line X column Y" that some messages carry: we print our own.
    let mut msg = raw.lines().next().unwrap_or(raw).trim().to_string();
    if let Some(i) = msg.find(" at line ") {
        msg.truncate(i);
    }
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let hint = rest.find(", expected").map(|i| format!("known keys: {}", rest[i + 11..].trim()));
        let name = rest.split(',').next().unwrap_or(rest).trim().to_string();
        return (format!("unknown key {name}"), hint);
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return (format!("missing key {rest}"), None);
    }
    // "invalid type: boolean `false`, expected a string": YAML read a bare word or digits as
    // something other than text.
    if let Some((found, expected)) = msg.strip_prefix("invalid type: ").and_then(|r| r.split_once(", expected ")) {
        let found =
            found.replace("boolean ", "").replace("integer ", "the number ").replace("floating point ", "the number ");
        let hint =
            (!found.starts_with("a ") && !found.starts_with("map") && !found.starts_with("sequence")).then(|| {
                "quote it: YAML reads a bare y, n, yes, no, on or off as true or false, and digits as a number"
                    .to_string()
            });
        return (format!("expected {expected} here, not {found}"), hint);
    }
    (msg, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_word_read_as_true_or_false_says_to_quote_it() {
        let (m, hint) = clean_message("invalid type: boolean `false`, expected a string at line 3 column 9");
        assert_eq!(m, "expected a string here, not `false`");
        assert!(hint.is_some_and(|h| h.starts_with("quote it")));
        let (m, _) = clean_message("invalid type: integer `10`, expected a string");
        assert_eq!(m, "expected a string here, not the number `10`");
    }
}
