//! Repository-wide invariants from ARCHITECTURE.md, checked on the source text (rust-analyzer's tidy).
//!
//! Each test names the invariant it guards and, when it fails, every file that breaks it. They read
//! files only: no build of the binaries, no network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits inside the repository").to_path_buf()
}

/// Every `.rs` file under `dir`, as paths relative to the repository, sorted.
fn rust_files(dir: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = repo();
    let mut files = Vec::new();
    walk(&root.join(dir), &mut files);
    let mut rel: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(&root).expect("walked under the root").to_string_lossy().replace('\\', "/"))
        .collect();
    rel.sort();
    rel
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The code of a file without its comments (line comments and doc comments), so that prose about
/// SQL or proto types does not count as using them.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(idx, line)| (idx + 1, line)).filter(|(_, line)| !line.trim_start().starts_with("//"))
}

/// The part of a file before its `#[cfg(test)]` module: unit tests may use anything.
fn non_test_code(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(idx) => &text[..idx],
        None => text,
    }
}

fn fail_if_any(invariant: &str, offenders: &[String]) {
    assert!(offenders.is_empty(), "architecture invariant broken: {invariant}\n  {}", offenders.join("\n  "));
}

#[test]
fn every_source_file_starts_with_a_one_line_doc() {
    let mut offenders = Vec::new();
    for dir in
        ["proto/src", "common/src", "agent/src", "agent/examples", "collector/src", "collector/examples", "tests"]
    {
        for rel in rust_files(dir) {
            let text = read(&rel);
            let first = text.lines().next().unwrap_or("");
            if !first.starts_with("//! ") || first.len() < 8 {
                offenders.push(format!("{rel}: first line is not a `//! ` sentence: {first:?}"));
            }
        }
    }
    fail_if_any("each file starts with a one-sentence `//!` doc", &offenders);
}

/// Files allowed to name the generated protobuf types (`b24watch_proto::v1`). The series catalog
/// (`b24watch_proto::catalog`) is plain constants and may be used anywhere.
const PROTO_EDGE: &[&str] =
    &["agent/src/batch.rs", "agent/src/spool.rs", "agent/src/shipper.rs", "collector/src/grpc.rs"];

#[test]
fn only_the_wire_edges_name_proto_types() {
    let mut offenders = Vec::new();
    for dir in ["agent/src", "collector/src", "common/src"] {
        for rel in rust_files(dir) {
            if PROTO_EDGE.contains(&rel.as_str()) {
                continue;
            }
            let text = read(&rel);
            for (line_no, line) in code_lines(non_test_code(&text)) {
                let names_proto = line.contains("b24watch_proto::v1")
                    || line.contains("proto::v1::")
                    || (line.contains("b24watch_proto::{") && line.contains("v1"));
                if names_proto {
                    offenders.push(format!("{rel}:{line_no}: {}", line.trim()));
                }
            }
        }
    }
    fail_if_any(&format!("only {} name proto types", PROTO_EDGE.join(", ")), &offenders);
}

/// Top-level module of a file under `<crate>/src/`: `sampler/cpu.rs` → `sampler`, `config.rs` →
/// `config`; `lib.rs` and `main.rs` are the crate root and belong to no module.
fn top_module(rel_in_src: &str) -> Option<String> {
    let first = rel_in_src.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Edges `module → module it names through crate::` between the top-level modules of a crate.
fn module_graph(src: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let prefix = format!("{src}/");
    for rel in rust_files(src) {
        let Some(module) = top_module(rel.strip_prefix(&prefix).expect("under src")) else { continue };
        let text = read(&rel);
        let targets = graph.entry(module.clone()).or_default();
        // Whole text, not line by line: a `use crate::{…}` group may span lines.
        let code: Vec<&str> = code_lines(non_test_code(&text)).map(|(_, line)| line).collect();
        let code = code.join("\n");
        {
            let mut rest = code.as_str();
            while let Some(idx) = rest.find("crate::") {
                rest = &rest[idx + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                // `crate::{a, b}` names several modules at once.
                let names: Vec<String> = if name.is_empty() && rest.starts_with('{') {
                    top_level_items(&rest[1..])
                        .into_iter()
                        .map(|item| item.split("::").next().unwrap_or("").trim().to_string())
                        .collect()
                } else {
                    vec![name]
                };
                for name in names {
                    if !name.is_empty() && name != module && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    {
                        targets.insert(name);
                    }
                }
            }
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for targets in graph.values_mut() {
        targets.retain(|t| modules.contains(t));
    }
    graph
}

/// The comma-separated items of a `{…}` group up to its closing brace, nested groups kept whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (idx, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..idx]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..idx]);
                start = idx + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// Every cycle's modules, found by Tarjan's strongly connected components.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g str) {
            let idx = self.index.len();
            self.index.insert(node, idx);
            self.low.insert(node, idx);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in &self.graph[node] {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.to_string());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

#[test]
fn agent_and_collector_modules_import_without_cycles() {
    let mut offenders = Vec::new();
    for src in ["agent/src", "collector/src"] {
        let graph = module_graph(src);
        for cycle in cycles(&graph) {
            let edges: Vec<String> = cycle
                .iter()
                .map(|m| {
                    let inside: Vec<&str> = graph[m].iter().filter(|t| cycle.contains(t)).map(String::as_str).collect();
                    format!("{m} → {}", inside.join(", "))
                })
                .collect();
            offenders.push(format!("{src}: cycle {{{}}}: {}", cycle.join(", "), edges.join("; ")));
        }
    }
    fail_if_any("modules of a crate import each other without cycles", &offenders);
}

#[test]
fn cycle_finder_sees_a_cycle_and_a_chain_is_none() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            g.entry(from.to_string()).or_default().insert(to.to_string());
            g.entry(to.to_string()).or_default();
        }
        g
    };
    assert_eq!(cycles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])), vec![vec!["a", "b", "c"]]);
    assert!(cycles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
}

/// SQL keywords as they open a statement in a string literal.
const SQL_OPENERS: &[&str] =
    &["\"SELECT ", "\"INSERT ", "\"UPDATE ", "\"DELETE ", "\"CREATE ", "\"ALTER ", "\"PRAGMA ", "\"BEGIN", "\"WITH "];

/// Calls that run SQL on a rusqlite connection. Holding a connection the store opened and handing
/// it back to a store function is allowed outside the store; running SQL on it is not.
const SQL_CALLS: &[&str] =
    &[".execute(", ".execute_batch(", ".prepare(", ".prepare_cached(", ".query_row(", "rusqlite::params"];

#[test]
fn collector_sql_lives_in_the_store() {
    let mut offenders = Vec::new();
    for rel in rust_files("collector/src") {
        if rel.starts_with("collector/src/store/") {
            continue;
        }
        let text = read(&rel);
        for (line_no, line) in code_lines(non_test_code(&text)) {
            let upper = line.to_ascii_uppercase();
            let runs_sql = SQL_CALLS.iter().any(|call| line.contains(call));
            if line.contains("use rusqlite") || runs_sql || SQL_OPENERS.iter().any(|kw| upper.contains(kw)) {
                offenders.push(format!("{rel}:{line_no}: {}", line.trim()));
            }
        }
    }
    fail_if_any("collector SQL and rusqlite only in collector/src/store/", &offenders);
}
