//! The layering of docs/adr/0010-layering.md as a test: reads every `src/**/*.rs`,
//! collects the `crate::<module>` and `super::` paths each file names, and fails naming
//! file and line of any arrow between top-level modules that [`ALLOWED`] does not list,
//! and of any module cycle among the submodules of `api/`.
//!
//! Owns: the allowed-arrow table and the source scan. Calls: only `std`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the skiff modules it may name (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("store", &[]),
    ("model", &[]),
    ("host", &[]),
    ("serve", &["pki"]),
    ("pki", &["model"]),
    ("runtime", &["model"]),
    ("image", &["model", "pki"]),
    ("network", &["model"]),
    ("dns", &["model"]),
    ("api", &["store", "pki", "model", "host", "serve"]),
    ("client", &["pki", "model"]),
    ("component", &["client", "model"]),
    ("controllers", &["client", "component", "model"]),
    ("scheduler", &["client", "component", "model"]),
    (
        "agent",
        &[
            "client",
            "component",
            "model",
            "runtime",
            "image",
            "network",
            "pki",
            "host",
            "serve",
            "dns",
        ],
    ),
    // The node's one configuration path: it assembles the agent's own config types.
    ("config", &["model", "host", "agent", "image", "network"]),
    (
        "server",
        &[
            "store",
            "model",
            "host",
            "serve",
            "pki",
            "runtime",
            "image",
            "network",
            "api",
            "client",
            "component",
            "controllers",
            "scheduler",
            "agent",
            "config",
            "dns",
        ],
    ),
    (
        "cli",
        &[
            "store",
            "model",
            "host",
            "serve",
            "pki",
            "runtime",
            "image",
            "network",
            "api",
            "client",
            "component",
            "controllers",
            "scheduler",
            "agent",
            "config",
            "server",
            "dns",
        ],
    ),
];

/// Arrows only test code (a `tests.rs` file or an inline `mod tests`) may take, each
/// with why it is kept (ADR 0010): (file, target).
const TEST_ONLY: &[(&str, &str)] = &[
    // The kubelet API tests issue real node credentials and dial with the API server's
    // own kubelet client config, so they test the pair that runs in production.
    ("agent/kubelet/tests.rs", "api"),
    // The join tests run the agent's join against the API's real credential issuer.
    ("agent/join.rs", "api"),
];

/// Arrows inside `api/` that close a cycle and are kept for now, each with why:
/// (from, to). Any other cycle fails the test.
const KNOWN_BACK_EDGES: &[(&str, &str)] = &[];

/// One named path: the file (relative to `src/`), its line, and the module it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    file: String,
    line: usize,
    /// The module path the reference resolves to, e.g. `["api", "join"]`.
    target: Vec<String>,
    /// Inside test code: a `tests.rs` file or an inline `mod tests`.
    in_test: bool,
}

/// The module path of a file under `src/`: `api/join.rs` → `["api", "join"]`.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source with `//` comments blanked (line structure kept).
fn strip_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first segments named after a path prefix starting at `at`: `x::..` gives `[x]`,
/// `{a, b::c}` gives `[a, b]`; each with the byte offset where it stands.
fn heads(text: &str, at: usize) -> Vec<(usize, String)> {
    let rest = &text[at..];
    if let Some(group) = rest.strip_prefix('{') {
        let mut out = Vec::new();
        let mut depth = 1;
        let mut expect_head = true;
        let offset = at + 1;
        let mut chars = group.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => expect_head = true,
                c if depth == 1 && expect_head && is_ident(c) => {
                    let start = i;
                    let mut end = i + c.len_utf8();
                    while let Some(&(j, d)) = chars.peek() {
                        if !is_ident(d) {
                            break;
                        }
                        end = j + d.len_utf8();
                        chars.next();
                    }
                    out.push((offset + start, group[start..end].to_string()));
                    expect_head = false;
                }
                _ => {}
            }
        }
        return out;
    }
    let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
    if end == 0 {
        return Vec::new();
    }
    vec![(at, rest[..end].to_string())]
}

/// The module path each byte offset of a file sits in: the file's own path, one level
/// deeper inside an inline `mod name {` (rustfmt closes it with `}` at column 0).
fn inline_modules(text: &str) -> Vec<(usize, usize, String)> {
    let mut spans = Vec::new();
    let mut offset = 0;
    let mut open: Option<(usize, String)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let declares = trimmed
            .strip_prefix("pub ")
            .or(trimmed.strip_prefix("pub(crate) "))
            .unwrap_or(trimmed)
            .strip_prefix("mod ");
        if open.is_none() && line.starts_with(|c: char| !c.is_whitespace()) {
            if let Some(rest) = declares {
                if let Some(name) = rest.trim_end().strip_suffix('{') {
                    open = Some((offset, name.trim().to_string()));
                }
            }
        } else if line.starts_with('}') {
            if let Some((start, name)) = open.take() {
                spans.push((start, offset, name));
            }
        }
        offset += line.len();
    }
    if let Some((start, name)) = open {
        spans.push((start, offset, name));
    }
    spans
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// Every `crate::` and `super::` path named in one file, resolved to module paths.
fn references(file: &str, source: &str) -> Vec<Reference> {
    let text = strip_comments(source);
    let own = module_of(file);
    let inline = inline_modules(&text);
    let mut out = Vec::new();
    let test_file = file.ends_with("tests.rs");
    let mut push = |offset: usize, target: Vec<String>| {
        let in_tests_mod = inline
            .iter()
            .any(|(s, e, name)| name == "tests" && (*s..*e).contains(&offset));
        out.push(Reference {
            file: file.to_string(),
            line: line_of(&text, offset),
            target,
            in_test: test_file || in_tests_mod,
        })
    };
    for (at, _) in text.match_indices("crate::") {
        if at > 0 && text[..at].ends_with(|c: char| is_ident(c) || c == '$') {
            continue;
        }
        let after = at + "crate::".len();
        for (pos, head) in heads(&text, after) {
            let mut target = vec![head.clone()];
            let next = pos + head.len();
            if text[next..].starts_with("::") {
                if let Some((_, sub)) = heads(&text, next + 2).into_iter().next() {
                    target.push(sub);
                }
            }
            push(pos, target);
        }
    }
    let mut at = 0;
    while let Some(found) = text[at..].find("super::") {
        let start = at + found;
        if start > 0 && text[..start].ends_with(|c: char| is_ident(c) || c == ':') {
            at = start + 1;
            continue;
        }
        let mut end = start;
        let mut ups = 0;
        while text[end..].starts_with("super::") {
            ups += 1;
            end += "super::".len();
        }
        at = end;
        let mut base = own.clone();
        if let Some((_, _, name)) = inline.iter().find(|(s, e, _)| (*s..*e).contains(&start)) {
            base.push(name.clone());
        }
        if ups > base.len() {
            continue;
        }
        base.truncate(base.len() - ups);
        for (pos, head) in heads(&text, end) {
            if head == "self" {
                continue;
            }
            let mut target = base.clone();
            target.push(head);
            push(pos, target);
        }
    }
    out
}

/// Arrows between top-level modules that the table does not allow, as messages.
fn layering_violations(refs: &[Reference], top_level: &BTreeSet<String>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut out = Vec::new();
    for r in refs {
        let Some(from) = module_of(&r.file).into_iter().next() else {
            continue; // lib.rs and main.rs declare the modules
        };
        let from = &from;
        let to = &r.target[0];
        if from == to || !top_level.contains(to) {
            continue;
        }
        if r.in_test && TEST_ONLY.contains(&(r.file.as_str(), to.as_str())) {
            continue;
        }
        let ok = allowed
            .get(from.as_str())
            .is_some_and(|targets| targets.contains(&to.as_str()));
        if !ok {
            out.push(format!(
                "src/{}:{}: `{from}` may not name `{to}` (docs/adr/0010-layering.md)",
                r.file, r.line
            ));
        }
    }
    out
}

/// Cycles among the direct submodules of `parent` (e.g. `api`), one message per cycle,
/// naming file and line of each arrow in it.
fn cycles_inside(parent: &str, refs: &[Reference], children: &BTreeSet<String>) -> Vec<String> {
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in refs {
        let from = module_of(&r.file);
        if from.len() < 2 || from[0] != parent || r.target.len() < 2 || r.target[0] != parent {
            continue;
        }
        let (a, b) = (&from[1], &r.target[1]);
        let known = parent == "api" && KNOWN_BACK_EDGES.contains(&(a.as_str(), b.as_str()));
        if a != b && !known && children.contains(a) && children.contains(b) {
            edges
                .entry(a.clone())
                .or_default()
                .entry(b.clone())
                .or_insert_with(|| format!("src/{}:{}", r.file, r.line));
        }
    }
    let mut out = Vec::new();
    let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for start in edges.keys() {
        if let Some(path) = cycle_from(start, &edges) {
            let members: BTreeSet<String> = path.iter().cloned().collect();
            if reported.insert(members) {
                let arrows: Vec<String> = path
                    .windows(2)
                    .map(|w| format!("{} → {} ({})", w[0], w[1], edges[&w[0]][&w[1]]))
                    .collect();
                out.push(format!("cycle inside {parent}/: {}", arrows.join(", ")));
            }
        }
    }
    out
}

/// A path `start → … → start` through `edges`, if there is one (depth-first).
fn cycle_from(
    start: &str,
    edges: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in edges.get(last).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                let mut done = path.clone();
                done.push(next.clone());
                return Some(done);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module names directly under `dir` (files `x.rs` and folders `x/`).
fn child_modules(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.to_string();
            match name.strip_suffix(".rs") {
                Some("mod" | "lib" | "main") => None,
                Some(stem) => Some(stem.to_string()),
                None if path.is_dir() => Some(name),
                None => None,
            }
        })
        .collect()
}

fn scan(src: &Path) -> Vec<Reference> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.retain(|f| !f.ends_with("architecture_tests.rs"));
    files.sort();
    let mut refs = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(&path).expect("read source");
        refs.extend(references(&rel, &source));
    }
    refs
}

#[test]
fn modules_only_name_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let refs = scan(&src);
    let top_level = child_modules(&src);
    for name in &top_level {
        assert!(
            name == "architecture_tests" || ALLOWED.iter().any(|(m, _)| m == name),
            "src/{name}: a new top-level module needs a row in ALLOWED (docs/adr/0010-layering.md)"
        );
    }
    let mut problems = layering_violations(&refs, &top_level);
    problems.extend(cycles_inside(
        "api",
        &refs,
        &child_modules(&src.join("api")),
    ));
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_finds_a_wrong_arrow_and_a_cycle() {
    let files = [
        ("model/mod.rs", "use crate::api::Thing;\n"),
        ("agent/mod.rs", "use crate::{\n    client,\n    controllers::events,\n};\n"),
        ("api/a.rs", "//! mentions super::b only in a comment\nuse super::{b::X, status};\n"),
        ("api/b.rs", "fn f() { super::c::g() }\n"),
        ("api/c.rs", "use crate::api::a::Y;\n#[cfg(test)]\nmod tests {\n    use super::h;\n}\n"),
        ("api/status.rs", "use crate::store::Store;\n"),
        ("agent/kubelet/tests.rs", "use crate::api::proxy;\n"),
        ("agent/join.rs", "use crate::api::join;\n#[cfg(test)]\nmod tests {\n    use crate::api::join::PkiIssuer;\n}\n"),
    ];
    let refs: Vec<Reference> = files.iter().flat_map(|(f, s)| references(f, s)).collect();
    let top: BTreeSet<String> = ["model", "agent", "api", "client", "controllers", "store"]
        .map(String::from)
        .into();
    let wrong = layering_violations(&refs, &top);
    assert_eq!(
        wrong,
        [
            "src/model/mod.rs:1: `model` may not name `api` (docs/adr/0010-layering.md)",
            "src/agent/mod.rs:3: `agent` may not name `controllers` (docs/adr/0010-layering.md)",
            "src/agent/join.rs:1: `agent` may not name `api` (docs/adr/0010-layering.md)",
        ]
    );
    let children: BTreeSet<String> = ["a", "b", "c", "status"].map(String::from).into();
    let cycles = cycles_inside("api", &refs, &children);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].contains("a → b (src/api/a.rs:2)")
            && cycles[0].contains("b → c (src/api/b.rs:1)")
            && cycles[0].contains("c → a (src/api/c.rs:1)"),
        "{}",
        cycles[0]
    );
    // The inline test module's `super::h` is `api::c::h`, not a sibling of `c`.
    assert!(refs.iter().any(|r| r.target == ["api", "c", "h"]));
}

#[test]
fn an_acyclic_api_passes() {
    let files = [
        ("api/a.rs", "use super::b;\n"),
        ("api/b.rs", "use super::c;\n"),
    ];
    let refs: Vec<Reference> = files.iter().flat_map(|(f, s)| references(f, s)).collect();
    let children: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert!(cycles_inside("api", &refs, &children).is_empty());
}
