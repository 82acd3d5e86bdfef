//! The shape of the source: which top-level module of `src/` uses which, read from the code
//! (every `crate::name` outside comments), and the promise that no module depends, directly or
//! through others, on a module that depends on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        files.extend(rust_files(&entry.unwrap().path()));
    }
    files.retain(|f| f.extension().is_some_and(|e| e == "rs"));
    files
}

/// The code of a line, without a comment at its end (`//` not after a `:`, as in a URL).
fn code(line: &str) -> &str {
    let comment = line.match_indices("//").find(|(at, _)| !line[..*at].ends_with(':'));
    comment.map_or(line, |(at, _)| &line[..at])
}

/// `crate::name` references in `text`, comments left out.
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines().map(code) {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Each top-level module of `src/` and the top-level modules it uses.
fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" || name == "main" || (path.is_file() && path.extension().is_none_or(|e| e != "rs")) {
            continue;
        }
        let mut uses = BTreeSet::new();
        for file in rust_files(&path) {
            uses.extend(references(&std::fs::read_to_string(file).unwrap()));
        }
        uses.remove(&name);
        graph.insert(name, uses);
    }
    graph
}

/// A path of modules that comes back to where it started, if the graph has one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

fn printed(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(m, uses)| format!("{m} -> {}\n", Vec::from_iter(uses.iter().cloned()).join(", ")))
        .collect()
}

#[test]
fn no_module_depends_on_one_that_depends_on_it() {
    let graph = module_graph();
    assert!(graph.contains_key("http") && graph.contains_key("routes"), "{}", printed(&graph));
    if let Some(cycle) = cycle(&graph) {
        panic!("a cycle: {}\n{}", cycle.join(" -> "), printed(&graph));
    }
    // The layers of the HTTP side: infrastructure knows no front end and no worker; only the root
    // knows every front end.
    for front_end in ["admin", "ingest", "web", "service", "routes", "deliver", "window", "notify"] {
        assert!(!graph["http"].contains(front_end), "http uses {front_end}\n{}", printed(&graph));
    }
    for module in ["admin", "ingest", "web", "service"] {
        assert!(!graph[module].contains("routes"), "{module} uses the composition root");
    }
    assert!(!graph["web"].contains("admin"), "the pages use the admin API's handlers");
    assert!(!graph["domain"].contains("store"), "the domain's vocabulary uses the store");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut graph = Graph::new();
    graph.insert("a".into(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".into(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".into(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.get_mut("c").unwrap().clear();
    assert_eq!(cycle(&graph), None);
    assert_eq!(
        references("use crate::http::AppState; // crate::web\n// crate::admin"),
        BTreeSet::from(["http".to_string()])
    );
}
