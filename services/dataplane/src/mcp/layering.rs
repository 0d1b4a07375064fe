//! The layering of `mcp/`, checked: the modules directly under `mcp/` (a file, or a directory
//! with its submodules) must not import each other in a cycle, and none imports an item from
//! `mcp/mod.rs` (which only declares the modules and re-exports the handlers), so every
//! dependency between them is an edge of this graph.
//!
//! An edge is any path into a sibling, in a `use` or in code: `super::x` (from a file directly
//! under `mcp/`), `super::super::x` (one directory down), or `crate::mcp::x`, including groups
//! (`super::{x, y::Z}`). The files are read at test time, so a new module is covered as it is
//! added. Test modules (from a line `#[cfg(test)]` to the end of the file) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// This module: a test, not a layer.
const SELF: &str = "layering";

fn mcp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mcp")
}

/// The `.rs` files of a sibling, each with how many module levels it sits below `mcp`.
fn files_of(path: &Path, depth: usize, out: &mut Vec<(PathBuf, usize)>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir") {
            let entry = entry.expect("dir entry").path();
            let is_mod = entry.file_name().is_some_and(|n| n == "mod.rs");
            // `dir/mod.rs` is the module `dir` itself; other files and directories are below it.
            files_of(&entry, if is_mod { depth } else { depth + 1 }, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push((path.to_owned(), depth));
    }
}

/// The source without its test module.
fn without_tests(source: &str) -> &str {
    match source.find("\n#[cfg(test)]") {
        Some(at) => &source[..at],
        None => source,
    }
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first segment of each path in a `{..}` group starting at `text` (just after the `{`).
fn group_heads(text: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut item_start = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.push(ident_at(text[item_start..i].trim_start()));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(ident_at(text[item_start..i].trim_start()));
                item_start = i + 1;
            }
            _ => {}
        }
    }
    heads.into_iter().filter(|h| !h.is_empty()).collect()
}

/// The names `source` reaches in `mcp` through `prefix` (a path that means `mcp` from it).
fn names_after<'a>(source: &'a str, prefix: &str, out: &mut BTreeSet<&'a str>) {
    let mut from = 0;
    while let Some(found) = source[from..].find(prefix) {
        let at = from + found;
        from = at + prefix.len();
        // The start of a path, not the tail of a longer one (`super::super::` for `super::`).
        let before = source[..at].chars().next_back();
        if before.is_some_and(|c| c == ':' || c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &source[from..];
        if rest.starts_with("super::") {
            continue;
        }
        match rest.strip_prefix('{') {
            Some(group) => out.extend(group_heads(group)),
            None => {
                let name = ident_at(rest);
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
}

/// Sibling → the siblings it imports; and every import of a name that is not a sibling.
fn graph() -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let dir = mcp_dir();
    let mut siblings = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read mcp/") {
        let path = entry.expect("dir entry").path();
        let name = path.file_stem().expect("a name").to_string_lossy().into_owned();
        let is_module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
        if is_module && name != "mod" && name != SELF {
            siblings.insert(name, path);
        }
    }
    let mut edges = BTreeMap::new();
    let mut from_parent = Vec::new();
    for (name, path) in &siblings {
        let mut files = Vec::new();
        files_of(path, 1, &mut files);
        let mut imported = BTreeSet::new();
        for (file, depth) in files {
            let source = std::fs::read_to_string(&file).expect("read source");
            let source = without_tests(&source);
            let mut names = BTreeSet::new();
            names_after(source, &"super::".repeat(depth), &mut names);
            names_after(source, "crate::mcp::", &mut names);
            for n in names {
                match n {
                    "self" | "super" => {}
                    n if n == name => {}
                    n if siblings.contains_key(n) => {
                        imported.insert(n.to_owned());
                    }
                    n => from_parent.push(format!("{} uses `{n}` from mcp/mod.rs", file.display())),
                }
            }
        }
        edges.insert(name.clone(), imported);
    }
    (edges, from_parent)
}

/// A cycle of the graph, if it has one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn sibling_modules_import_each_other_without_cycles() {
    let (edges, from_parent) = graph();
    assert!(edges.len() > 5, "the modules of mcp/ were not found: {edges:?}");
    let cycle = find_cycle(&edges);
    assert!(
        cycle.is_none(),
        "mcp/ modules import each other in a cycle: {}\nall edges: {edges:#?}",
        cycle.unwrap_or_default().join(" -> ")
    );
    assert!(
        from_parent.is_empty(),
        "mcp/ modules import items of mod.rs (move them to the module that owns them):\n{}",
        from_parent.join("\n")
    );
}

#[test]
fn the_parser_sees_every_form_of_import() {
    let source = "use super::{a, b::{C, D}, self};\nuse super::super::up;\nfn f() { super::e::g(); crate::mcp::h::I; }";
    let mut names = BTreeSet::new();
    names_after(source, "super::", &mut names);
    names_after(source, "crate::mcp::", &mut names);
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a", "b", "e", "h", "self"]
    );
    let mut deeper = BTreeSet::new();
    names_after(source, "super::super::", &mut deeper);
    assert_eq!(deeper.into_iter().collect::<Vec<_>>(), ["up"]);
    let mut edges = BTreeMap::new();
    edges.insert("x".to_owned(), BTreeSet::from(["y".to_owned()]));
    edges.insert("y".to_owned(), BTreeSet::from(["x".to_owned()]));
    assert_eq!(find_cycle(&edges), Some(vec!["x".into(), "y".into(), "x".into()]));
    edges.insert("y".to_owned(), BTreeSet::new());
    assert_eq!(find_cycle(&edges), None);
}
