//! The shape of the source: which top-level module of `src/` uses which, read from the code
//! (every `crate::name` outside comments). The modules are layers in a rank, and a module uses only
//! the layers below its own; inside a folder, no file depends, directly or through others, on one
//! that depends on it.

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

/// The layers, lowest first. A module may use any module of a lower layer, never one of its own
/// layer or above (but for [`SIDEWAYS`]).
const LAYERS: &[&[&str]] = &[
    // The vocabulary and the small tools everything stands on.
    &["domain", "clock", "fault", "files", "supervise", "tls"],
    // What the operator set, and how the daemon reports (logs, traces, metrics).
    &["config"],
    &["telemetry"],
    // Keeping chats, messages, deliveries and the log.
    &["store"],
    // What people read: the words of both languages, then notes and payloads.
    &["words"],
    &["render"],
    // The workers: closing windows, delivering, e-mailing the owner, forgetting old rows.
    &["window", "deliver", "notify", "retention"],
    // The outside APIs: the channels' own (their media, through the delivery worker's SSRF
    // guard), and the OpenID Connect provider people sign in with.
    &["vendors", "sso"],
    // Sending replies through the channels' APIs.
    &["reply"],
    // HTTP as such: the server, its limits, errors, authentication and throttle.
    &["http"],
    // What both front ends do, written once, in domain terms.
    &["service"],
    // The front ends: the admin API, the inbound URLs and the JSON API, the web page.
    &["admin", "ingest", "web"],
    // The composition root of the routes, the daemon, and the command line.
    &["routes"],
    &["app"],
    &["cli"],
];

/// Uses within one layer that are allowed, as (from, to, why). None is needed today: the front
/// ends share what they do through `service`, the workers through `store`, and the channels' list
/// of credentials is the domain's, not the inbound adapters'.
const SIDEWAYS: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every use that does not point to a lower layer and is not a permitted sideways one.
fn against_the_rank(graph: &Graph) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, uses) in graph {
        let Some(own) = layer_of(module) else {
            wrong.push(format!("{module} is in no layer"));
            continue;
        };
        for used in uses {
            let permitted = SIDEWAYS.iter().any(|(from, to, _)| from == module && to == used);
            match layer_of(used) {
                Some(layer) if layer < own || permitted => {}
                Some(layer) if layer == own => wrong.push(format!("{module} -> {used} (same layer)")),
                Some(_) => wrong.push(format!("{module} -> {used} (upward)")),
                None => wrong.push(format!("{module} -> {used}, which is in no layer")),
            }
        }
    }
    wrong
}

#[test]
fn every_module_uses_only_the_layers_below_its_own() {
    let graph = module_graph();
    assert!(graph.contains_key("http") && graph.contains_key("routes"), "{}", printed(&graph));
    let wrong = against_the_rank(&graph);
    assert!(wrong.is_empty(), "against the rank:\n{}\n\n{}", wrong.join("\n"), printed(&graph));
    // With every arrow downward there is no cycle; checked on its own all the same.
    if let Some(cycle) = cycle(&graph) {
        panic!("a cycle: {}\n{}", cycle.join(" -> "), printed(&graph));
    }
}

/// Each file (or subfolder) directly in `folder` and the others beside it that it uses: through
/// `super::name` or `crate::<path>::name` (a file inside a subfolder reaches its siblings by
/// `crate::` paths only, its `super` being the subfolder).
fn folder_graph(folder: &Path, path: &str) -> Graph {
    let mut members = BTreeMap::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let entry = entry.unwrap().path();
        let name = entry.file_stem().unwrap().to_string_lossy().to_string();
        if entry.is_dir() || (entry.extension().is_some_and(|e| e == "rs") && name != "mod") {
            members.insert(name, entry);
        }
    }
    let mut graph = Graph::new();
    for (name, entry) in &members {
        let mut uses = BTreeSet::new();
        for file in rust_files(entry) {
            let direct = file.parent() == Some(folder);
            for line in std::fs::read_to_string(&file).unwrap().lines().map(code) {
                let crate_path = format!("crate::{path}::");
                let mut starts: Vec<usize> =
                    line.match_indices(&crate_path).map(|(at, _)| at + crate_path.len()).collect();
                if direct {
                    starts.extend(
                        line.match_indices("super::")
                            .filter(|(at, _)| !line[..*at].ends_with("::"))
                            .map(|(at, _)| at + "super::".len()),
                    );
                }
                let word = |text: &str| -> String {
                    text.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect()
                };
                for start in starts {
                    let rest = &line[start..];
                    // `super::{a, b::C}` names several, `super::a::B` one.
                    let named: Vec<String> = match rest.strip_prefix('{') {
                        Some(group) => group[..group.find('}').unwrap_or(group.len())]
                            .split(',')
                            .map(|item| word(item.trim()))
                            .collect(),
                        None => vec![word(rest)],
                    };
                    uses.extend(named.into_iter().filter(|n| members.contains_key(n) && n != name));
                }
            }
        }
        graph.insert(name.clone(), uses);
    }
    graph
}

#[test]
fn no_file_in_a_folder_depends_on_one_that_depends_on_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = vec![(src.clone(), String::new())];
    let mut checked = 0;
    while let Some((folder, path)) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() {
                let name = entry.file_name().unwrap().to_string_lossy().to_string();
                let inner = if path.is_empty() { name } else { format!("{path}::{name}") };
                folders.push((entry, inner));
            }
        }
        if path.is_empty() {
            continue;
        }
        let graph = folder_graph(&folder, &path);
        if let Some(cycle) = cycle(&graph) {
            panic!(
                "a circle inside src/{}: {}\n{}",
                path.replace("::", "/"),
                cycle.join(" -> "),
                printed(&graph)
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} folders were found");
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

#[test]
fn the_rank_check_finds_sideways_and_upward_uses() {
    let graph = Graph::from([
        ("store".to_string(), BTreeSet::from(["domain".to_string()])),
        ("admin".to_string(), BTreeSet::from(["ingest".to_string(), "service".to_string()])),
        ("http".to_string(), BTreeSet::from(["web".to_string()])),
        ("elsewhere".to_string(), BTreeSet::new()),
    ]);
    assert_eq!(
        against_the_rank(&graph),
        ["admin -> ingest (same layer)", "elsewhere is in no layer", "http -> web (upward)"]
    );
}

#[test]
fn the_folder_check_reads_super_and_crate_paths() {
    let folder = std::env::temp_dir().join(format!("chatbundle-architecture-{}", std::process::id()));
    std::fs::create_dir_all(folder.join("inner")).unwrap();
    std::fs::write(folder.join("mod.rs"), "mod a; mod b;").unwrap();
    std::fs::write(folder.join("a.rs"), "use super::{b, c::Thing};\n// super::inner").unwrap();
    std::fs::write(folder.join("b.rs"), "use super::super::a::X;").unwrap();
    std::fs::write(folder.join("c.rs"), "").unwrap();
    std::fs::write(folder.join("inner").join("mod.rs"), "use crate::top::b::Y;").unwrap();
    let graph = folder_graph(&folder, "top");
    std::fs::remove_dir_all(&folder).unwrap();
    assert_eq!(graph["a"], BTreeSet::from(["b".to_string(), "c".to_string()]));
    assert_eq!(graph["b"], BTreeSet::new());
    assert_eq!(graph["inner"], BTreeSet::from(["b".to_string()]));
}
