//! House rules checked as tests: every source file says what it is for in a `//!` line, and
//! pages reference nothing outside casebook (analysts' networks are often offline).

use std::path::Path;

use crate::common;

fn files(dir: &Path, ext: &str, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().and_then(|x| x.to_str()) == Some(ext) {
            out.push(p);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let mut rs = Vec::new();
    for d in ["src", "tests", "benches"] {
        files(&common::repo().join(d), "rs", &mut rs);
    }
    let missing: Vec<String> = rs
        .iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap_or_default().starts_with("//!"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` first line: {missing:#?}");
}

#[test]
fn pages_load_nothing_from_outside() {
    let mut html = Vec::new();
    files(&common::repo().join("web/templates"), "html", &mut html);
    files(&common::repo().join("widgets"), "html", &mut html);
    files(&common::repo().join("web/static"), "css", &mut html);
    html.push(common::repo().join("web/static/casebook.js"));
    for p in html {
        let text = std::fs::read_to_string(&p).expect("read");
        for needle in ["http://", "https://", "//cdn", "@import"] {
            assert!(!text.contains(needle), "{} references `{needle}`", p.display());
        }
    }
}
