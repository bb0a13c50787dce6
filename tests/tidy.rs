//! House rules checked as tests: every source file says what it is for in a `//!` line;
//! pages reference nothing outside casebook (analysts' networks are often offline); source
//! files import each other in one direction only (no circle between files, nor between
//! top-level modules); no product source file is over 600 lines.

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

/// The module path of a source file: `src/engine/run.rs` is `engine::run`, `src/engine/mod.rs`
/// is `engine`, `src/lib.rs` is the crate root.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().to_string()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" && stem != "lib" {
        parts.push(stem);
    }
    parts
}

/// Each `src/` file and the files it names through `crate::`, `super::` or a child module's
/// path (`use`, a qualified name, a doc link: every mention counts). Unit tests are left out.
fn import_graph() -> (Vec<String>, Vec<Vec<usize>>) {
    let src = common::repo().join("src");
    let mut rs = Vec::new();
    files(&src, "rs", &mut rs);
    rs.sort();
    rs.retain(|p| !p.ends_with("main.rs"));
    let rel: Vec<std::path::PathBuf> =
        rs.iter().map(|p| p.strip_prefix(&src).expect("under src").to_path_buf()).collect();
    let modules: Vec<Vec<String>> = rel.iter().map(|r| module_of(r)).collect();
    let find = |path: &[String]| -> Option<usize> {
        (1..=path.len()).rev().find_map(|n| modules.iter().position(|m| m.as_slice() == &path[..n]))
    };
    let tests = regex::Regex::new(r"(?s)#\[cfg\(test\)\]\s*mod tests\s*\{.*").expect("regex");
    let path_re = regex::Regex::new(r"\b(crate|super|self|[a-z_][a-z0-9_]*)((?:::[a-z_][a-z0-9_]*)+)(::\{([^}]*)\})?")
        .expect("regex");
    let child_re = regex::Regex::new(r"(?m)^\s*(?:pub(?:\([a-z]+\))? )?mod ([a-z_][a-z0-9_]*);").expect("regex");
    let mut edges = vec![Vec::new(); rs.len()];
    for (i, p) in rs.iter().enumerate() {
        let text = std::fs::read_to_string(p).expect("read source");
        let text = tests.replace(&text, "");
        let here = &modules[i];
        let is_mod = rel[i].ends_with("mod.rs") || rel[i].ends_with("lib.rs");
        let children: Vec<String> = child_re.captures_iter(&text).map(|c| c[1].to_string()).collect();
        for c in path_re.captures_iter(&text) {
            let head = &c[1];
            let base: Vec<String> = match head {
                "crate" => Vec::new(),
                "self" if is_mod => here.clone(),
                "self" => here[..here.len().saturating_sub(1)].to_vec(),
                "super" => {
                    let up = if is_mod { 1 } else { 2 };
                    here[..here.len().saturating_sub(up)].to_vec()
                }
                child if is_mod && children.iter().any(|k| k == child) => {
                    let mut b = here.clone();
                    b.push(child.to_string());
                    b
                }
                _ => continue,
            };
            let tail: Vec<String> = c[2].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
            let mut paths = Vec::new();
            match c.get(4) {
                Some(group) => {
                    for item in group.as_str().split(',') {
                        let mut full: Vec<String> = base.iter().chain(&tail).cloned().collect();
                        full.extend(
                            item.trim().split("::").filter(|s| !s.is_empty() && *s != "self").map(str::to_string),
                        );
                        paths.push(full);
                    }
                }
                None => paths.push(base.iter().chain(&tail).cloned().collect()),
            }
            for full in paths {
                if let Some(j) = find(&full) {
                    if j != i && !modules[j].is_empty() && !edges[i].contains(&j) {
                        edges[i].push(j);
                    }
                }
            }
        }
    }
    (rel.iter().map(|r| format!("src/{}", r.display())).collect(), edges)
}

/// Strongly connected components with more than one member (Tarjan).
fn circles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct T<'a> {
        edges: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T<'_>, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in &t.edges[v] {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let n = edges.len();
    let mut t = T {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_cycle_between_source_files_or_top_level_modules() {
    let (names, edges) = import_graph();
    assert!(edges.iter().map(Vec::len).sum::<usize>() > 100, "the import graph was not read: {edges:?}");
    let file_circles: Vec<Vec<&str>> =
        circles(&edges).into_iter().map(|c| c.into_iter().map(|i| names[i].as_str()).collect()).collect();
    assert!(file_circles.is_empty(), "files that import each other in a circle: {file_circles:#?}");
    // The same at the level of top-level modules (a file or a folder of `src/` each).
    let top =
        |n: &str| n.trim_start_matches("src/").split('/').next().unwrap_or("").trim_end_matches(".rs").to_string();
    let mut tops: Vec<String> = names.iter().map(|n| top(n)).filter(|t| t != "lib").collect();
    tops.sort();
    tops.dedup();
    let mut top_edges = vec![Vec::new(); tops.len()];
    for (i, out) in edges.iter().enumerate() {
        let Some(a) = tops.iter().position(|t| *t == top(&names[i])) else { continue };
        for &j in out {
            if let Some(b) = tops.iter().position(|t| *t == top(&names[j])) {
                if a != b && !top_edges[a].contains(&b) {
                    top_edges[a].push(b);
                }
            }
        }
    }
    let module_circles: Vec<Vec<&str>> =
        circles(&top_edges).into_iter().map(|c| c.into_iter().map(|i| tops[i].as_str()).collect()).collect();
    assert!(module_circles.is_empty(), "top-level modules that import each other in a circle: {module_circles:#?}");
}

#[test]
fn no_product_source_file_is_over_600_lines() {
    let mut rs = Vec::new();
    files(&common::repo().join("src"), "rs", &mut rs);
    let long: Vec<String> = rs
        .iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap_or_default().lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files by what they do: {long:#?}");
}
