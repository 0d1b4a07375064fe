//! docs/security-checklist.md names a test for every applicable RFC 9700 row: each named test
//! must exist in the source, so the checklist cannot drift from the suite.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir()
            && !matches!(
                name.as_str(),
                "target" | "node_modules" | ".venv" | ".git" | ".data"
            )
        {
            rust_sources(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_test_named_in_the_security_checklist_exists() {
    let root = workspace();
    let checklist =
        std::fs::read_to_string(root.join("docs/security-checklist.md")).expect("docs/security-checklist.md");
    let names: Vec<String> = checklist
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.trim_end_matches('|').rsplit('|').next())
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    assert!(
        names.len() >= 25,
        "the checklist names only {} tests",
        names.len()
    );
    let mut files = Vec::new();
    for dir in ["services", "tests"] {
        rust_sources(&root.join(dir), &mut files);
    }
    let source: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !source.contains(&format!("fn {n}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/security-checklist.md names tests that do not exist: {missing:?}"
    );
}
