//! The shape of the workspace: dependencies between crates point one way and stay short,
//! modules inside a crate import each other without circles, and docs/architecture.md names
//! every crate. Read from the sources, so a change that breaks the shape fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Workspace crates and the workspace crates each depends on (normal dependencies only).
fn crate_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut deps = BTreeSet::new();
        let mut in_deps = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                in_deps = t == "[dependencies]";
                continue;
            }
            if in_deps {
                if let Some(dep) = t.split(['.', ' ', '=']).next().filter(|d| d.starts_with("meshway")) {
                    deps.insert(dep.to_string());
                }
            }
        }
        g.insert(name, deps);
    }
    g
}

fn longest_chain(g: &BTreeMap<String, BTreeSet<String>>, from: &str, seen: &mut Vec<String>) -> Vec<String> {
    assert!(!seen.iter().any(|s| s == from), "crate dependency cycle through {from}: {seen:?}");
    seen.push(from.to_string());
    let mut best = Vec::new();
    for d in g.get(from).into_iter().flatten() {
        let c = longest_chain(g, d, seen);
        if c.len() > best.len() {
            best = c;
        }
    }
    seen.pop();
    let mut out = vec![from.to_string()];
    out.extend(best);
    out
}

#[test]
fn crate_dependencies_point_one_way_and_stay_short() {
    let g = crate_graph();
    assert!(g.len() >= 9, "{g:?}");
    // The pure crates never depend on the runtime ones.
    for pure in ["meshway-units", "meshway-fabric", "meshway-sim", "meshway-infer", "meshway-probe"] {
        for runtime in ["meshway-agent", "meshway-testbed", "meshway-report", "meshway"] {
            assert!(!g[pure].contains(runtime), "{pure} depends on {runtime}");
        }
    }
    assert!(g["meshway-units"].is_empty(), "units is the bottom of the graph");
    // From the binary down to the unit types: at most five crates deep (see
    // docs/architecture.md for the longest chain and why it is five).
    let chain = longest_chain(&g, "meshway", &mut Vec::new());
    assert!(chain.len() <= 6, "chain of {} crates: {}", chain.len(), chain.join(" -> "));
    for name in g.keys() {
        let c = longest_chain(&g, name, &mut Vec::new());
        assert!(c.len() <= 6, "{}", c.join(" -> "));
    }
}

/// Module-level imports (`crate::module`) of one crate's `src/*.rs`, test modules left out.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut texts = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "rs") {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            if name != "lib" && name != "main" {
                let text = std::fs::read_to_string(&p).unwrap();
                let text = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                texts.insert(name, text);
            }
        }
    }
    let names: BTreeSet<String> = texts.keys().cloned().collect();
    let mut g = BTreeMap::new();
    for (m, text) in &texts {
        let mut deps = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let mut idents: Vec<&str> = Vec::new();
                if let Some(group) = rest.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    idents.extend(group.split(',').map(|x| x.trim().split("::").next().unwrap_or("")));
                } else {
                    idents.push(rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or(""));
                }
                for id in idents {
                    if names.contains(id) && id != m {
                        deps.insert(id.to_string());
                    }
                }
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        v: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        stack.push(v.to_string());
        for w in &g[v] {
            match state.get(w).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == w).unwrap_or(0);
                    let mut c = stack[start..].to_vec();
                    c.push(w.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(g, w, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in g.keys() {
        if state.get(v).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(g, v, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn modules_import_each_other_without_circles() {
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let g = module_graph(&src);
        if let Some(c) = find_cycle(&g) {
            panic!("{}: modules import each other in a circle: {}", src.display(), c.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    g.insert("d".into(), BTreeSet::new());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn architecture_doc_names_every_crate() {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    for name in crate_graph().keys() {
        assert!(doc.contains(&format!("`{name}`")), "docs/architecture.md does not describe {name}");
    }
}
