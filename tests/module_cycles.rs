//! No import cycles among the crate's modules: reading every `src/**/*.rs`, each path that starts
//! with `crate::` or `super::` (in `use` trees and inline) is an edge from the module it is
//! written in to the module it names, both cut to their first two levels (`mpc::ops`,
//! `data::task`; a file is the module it declares, `mod.rs` its directory's). A name a
//! directory module re-exports (`pub use task::TaskKind` in `data/mod.rs`) is followed to the
//! child that defines it; a module's paths to its own children are declarations, not
//! dependencies. Test code (`#[cfg(test)]` modules, inline or files) is left out: a test may
//! read any module. A cycle among second-level modules, or among top-level ones, fails the
//! test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Cycles the crate still has, each removed by work under way; the test fails when one of
/// them is gone too, so that this list never outlives them.
const KNOWN_CYCLES: &[&[&str]] = &[];

type Module = Vec<String>;

/// Code without comments, string and char literals (whose text could look like paths).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let at = |j: usize| chars.get(j).copied();
        match (chars[i], at(i + 1)) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && at(i + 1) == Some('*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            ('r', Some('"' | '#')) if !ident_char(i.checked_sub(1).map(|j| chars[j])) => {
                // A raw string r#"…"#: ends at a quote followed by as many hashes.
                let mut j = i + 1;
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    out.push(chars[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                while j < chars.len()
                    && !(chars[j] == '"' && (1..=hashes).all(|h| chars.get(j + h) == Some(&'#')))
                {
                    j += 1;
                }
                i = j + 1 + hashes;
                out.push_str("\"\"");
            }
            ('"', _) => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            ('\'', Some(c)) => {
                // A char literal ('x', '\n', '\u{..}'), else a lifetime.
                let end = if c == '\\' {
                    (i + 2..chars.len()).find(|&j| chars[j] == '\'')
                } else {
                    (at(i + 2) == Some('\'')).then_some(i + 2)
                };
                match end {
                    Some(end) => {
                        i = end + 1;
                        out.push_str("' '");
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// One `use` tree (`a::{b, c::{d, e}}`) as the paths it names.
fn expand_tree(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![split_path(&tree)];
    };
    let prefix = split_path(tree[..open].trim_end_matches(':'));
    let inner = &tree[open + 1..tree.len().saturating_sub(1)];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (k, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(expand_tree)
        .map(|tail| prefix.iter().cloned().chain(tail).collect())
        .collect()
}

fn split_path(path: &str) -> Vec<String> {
    path.split("::")
        .filter(|s| !s.is_empty())
        .map(|s| s.split(" as ").next().unwrap_or(s).to_string())
        .collect()
}

/// A path as written: where (the module, inline `mod x { … }` blocks included, which change
/// what `super` means), and whether a `pub use` re-exports it.
struct Written {
    at: Module,
    path: Vec<String>,
    reexport: bool,
}

/// What a source file says: its paths outside test code, and its children declared for tests
/// only (`#[cfg(test)] mod x;`).
struct Source {
    paths: Vec<Written>,
    test_children: Vec<String>,
}

/// Whether the item starting at `i` is gated by `#[cfg(test)]`.
fn test_only(code: &str, i: usize) -> bool {
    let before = code[..i].trim_end();
    let before = before
        .strip_suffix("pub(crate)")
        .or_else(|| before.strip_suffix("pub"))
        .unwrap_or(before);
    before.trim_end().ends_with("#[cfg(test)]")
}

/// A source file's paths outside test code.
fn paths_in(module: &Module, code: &str) -> Vec<Written> {
    read_source(module, code).paths
}

fn read_source(module: &Module, code: &str) -> Source {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut test_children = Vec::new();
    // (brace depth at which the inline module opened, its name, whether it is test code)
    let mut inline: Vec<(usize, String, bool)> = Vec::new();
    let (mut depth, mut i) = (0usize, 0);
    let here = |inline: &[(usize, String, bool)]| -> Module {
        module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(_, n, _)| n.clone()))
            .collect()
    };
    while i < bytes.len() {
        let word_start = i == 0 || !ident_char(Some(bytes[i - 1] as char));
        let rest = &code[i..];
        if bytes[i] == b'{' {
            depth += 1;
        } else if bytes[i] == b'}' {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(d, _, _)| *d == depth) {
                inline.pop();
            }
        } else if word_start && rest.starts_with("mod ") {
            let decl: String = rest[4..]
                .chars()
                .take_while(|&c| c != ';' && c != '{')
                .collect();
            let name = decl.trim().to_string();
            let test = test_only(code, i) || inline.iter().any(|(_, _, t)| *t);
            if rest[4 + decl.len()..].starts_with('{') {
                inline.push((depth, name, test));
            } else if test {
                test_children.push(name);
            }
        } else if inline.iter().any(|(_, _, test)| *test) {
            // Test code: its paths are not the module's dependencies.
        } else if word_start && rest.starts_with("use ") {
            let end = rest.find(';').unwrap_or(rest.len());
            let before = code[..i].trim_end();
            let reexport = before.ends_with("pub") || before.ends_with(')');
            for path in expand_tree(&rest[4..end]) {
                found.push(Written {
                    at: here(&inline),
                    path,
                    reexport,
                });
            }
            i += end;
            continue;
        } else if word_start && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let len = rest
                .find(|c: char| !(ident_char(Some(c)) || c == ':'))
                .unwrap_or(rest.len());
            found.push(Written {
                at: here(&inline),
                path: split_path(&rest[..len]),
                reexport: false,
            });
            i += len;
            continue;
        }
        i += 1;
    }
    Source {
        paths: found,
        test_children,
    }
}

/// The crate's modules (by path) and their code.
struct Crate {
    modules: BTreeMap<Module, String>,
    /// Per module: the names it re-exports and the path (from `crate`) each comes from.
    reexports: BTreeMap<Module, BTreeMap<String, Vec<String>>>,
}

impl Crate {
    fn new(files: Vec<(Module, String)>) -> Self {
        let mut modules: BTreeMap<Module, String> = files
            .into_iter()
            .map(|(m, text)| (m, code_only(&text)))
            .collect();
        let tests: Vec<Module> = modules
            .iter()
            .flat_map(|(m, code)| {
                let children = read_source(m, code).test_children;
                children.into_iter().map(move |c| child(m, &c))
            })
            .collect();
        modules.retain(|m, _| !tests.iter().any(|t| m.starts_with(t)));
        let mut reexports: BTreeMap<Module, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (module, code) in &modules {
            for w in paths_in(module, code) {
                let Some(name) = w.path.last().filter(|_| w.reexport && w.at == *module) else {
                    continue;
                };
                // From `crate`: `super::` and child paths made absolute.
                let mut full = vec!["crate".to_string()];
                let mut rest = &w.path[..];
                match rest.first().map(String::as_str) {
                    Some("crate") => rest = &rest[1..],
                    Some("super") => {
                        let mut base = module.clone();
                        while rest.first().is_some_and(|s| s == "super") {
                            base.pop();
                            rest = &rest[1..];
                        }
                        full.extend(base);
                    }
                    _ => full.extend(module.iter().cloned()),
                }
                full.extend(rest.iter().cloned());
                reexports
                    .entry(module.clone())
                    .or_default()
                    .insert(name.clone(), full);
            }
        }
        Crate { modules, reexports }
    }

    fn from_dir(src: &Path) -> Self {
        let mut files = Vec::new();
        let mut dirs = vec![src.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable") {
                let path: PathBuf = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path
                        .strip_prefix(src)
                        .expect("under src")
                        .with_extension("");
                    let mut module: Module = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    if module.last().is_some_and(|l| l == "mod") {
                        module.pop();
                    }
                    if module == ["main"] {
                        // The binary: it uses the library as `marill::`, never `crate::`.
                        continue;
                    }
                    if module == ["lib"] {
                        module.clear();
                    }
                    files.push((module, std::fs::read_to_string(&path).expect("readable")));
                }
            }
        }
        Crate::new(files)
    }

    /// The module a path written in `at` names: its longest module prefix, re-exports followed.
    fn resolve(&self, at: &Module, path: &[String], hops: usize) -> Option<Module> {
        let mut target: Module = match path.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super") => at.clone(),
            _ => return None,
        };
        let mut rest = path;
        if rest[0] == "crate" {
            rest = &rest[1..];
        }
        while rest.first().is_some_and(|s| s == "super") {
            target.pop();
            rest = &rest[1..];
        }
        for (k, segment) in rest.iter().enumerate() {
            if segment == "self" || segment == "*" {
                break;
            }
            let next = child(&target, segment);
            if self.modules.contains_key(&next) {
                target = next;
                continue;
            }
            // Not a module: a name, perhaps re-exported from elsewhere.
            if hops < 8
                && let Some(from) = self.reexports.get(&target).and_then(|r| r.get(segment))
            {
                let full: Vec<String> = from.iter().chain(&rest[k + 1..]).cloned().collect();
                return self.resolve(&Vec::new(), &full, hops + 1);
            }
            break;
        }
        Some(target)
    }

    /// Edges between modules cut to `levels` levels.
    fn edges(&self, levels: usize) -> BTreeMap<Module, BTreeSet<Module>> {
        let cut = |m: &Module| -> Module { m.iter().take(levels).cloned().collect() };
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (module, code) in &self.modules {
            for w in paths_in(module, code) {
                let Some(target) = self.resolve(&w.at, &w.path, 0) else {
                    continue;
                };
                let (from, to) = (cut(module), cut(&target));
                let own_child = to.len() > from.len() && to.starts_with(&from);
                if from != to && !to.is_empty() && !from.is_empty() && !own_child {
                    edges.entry(from).or_default().insert(to);
                }
            }
        }
        edges
    }
}

fn child(module: &Module, name: &str) -> Module {
    let mut m = module.clone();
    m.push(name.to_string());
    m
}

/// The strongly connected components with more than one module (Tarjan), each sorted.
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeSet<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        found: BTreeSet<Vec<String>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: &Module) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self
                    .stack
                    .iter()
                    .position(|m| m == v)
                    .expect("on the stack");
                let component: Vec<Module> = self.stack.split_off(at);
                if component.len() > 1 {
                    let mut names: Vec<String> = component.iter().map(|m| m.join("::")).collect();
                    names.sort();
                    self.found.insert(names);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: BTreeSet::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

#[test]
fn the_crate_has_no_module_cycle_but_the_known_ones() {
    let krate = Crate::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(krate.modules.len() > 50, "src/ read");
    let known: BTreeSet<Vec<String>> = KNOWN_CYCLES
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
    let second_level = cycles(&krate.edges(2));
    let new: Vec<_> = second_level.difference(&known).collect();
    assert!(new.is_empty(), "import cycles among modules: {new:?}");
    let gone: Vec<_> = known.difference(&second_level).collect();
    assert!(
        gone.is_empty(),
        "no longer cycles, remove them from KNOWN_CYCLES: {gone:?}"
    );
    let top_level = cycles(&krate.edges(1));
    assert!(
        top_level.is_empty(),
        "import cycles among top-level modules: {top_level:?}"
    );
}

/// The reader finds cycles through nested `use` trees, inline paths, re-exports and an inline
/// module's `super::super`, and is not fooled by paths in comments, strings or test code.
#[test]
fn the_reader_finds_cycles_however_they_are_written() {
    let file = |m: &str, text: &str| -> (Module, String) { (split_path(m), text.to_string()) };
    let files = vec![
        file("", "pub mod a; pub mod b;"),
        file("a", "mod x; mod y; pub use x::Thing;"),
        // a::x -> b::z through a nested tree; a::y -> a::x through a's re-export.
        file("a::x", "use crate::{b::{z::Z, w}};\npub struct Thing;"),
        file(
            "a::y",
            "use super::Thing;\n// crate::b::w::loop in a comment\nlet s = \"crate::b::w\";",
        ),
        file("b", "pub mod z; pub mod w;"),
        // b::z -> a::y inline; b::w -> a::x only from its inline module.
        file("b::z", "fn f() { crate::a::y::g(); } let c = '\"';"),
        file(
            "b::w",
            "mod inner {\n    use super::super::super::a::x;\n}\n#[cfg(test)]\nmod tests {\n    use crate::a::y;\n}\n#[cfg(test)]\nmod fixtures;",
        ),
        // Test code, left out: a file declared for tests only.
        file("b::w::fixtures", "use crate::a::y;"),
    ];
    let krate = Crate::new(files);
    let edges = krate.edges(2);
    let names = |m: &str| -> BTreeSet<String> {
        edges[&split_path(m)].iter().map(|t| t.join("::")).collect()
    };
    assert_eq!(
        names("a::x"),
        BTreeSet::from(["b::z".into(), "b::w".into()])
    );
    assert_eq!(names("a::y"), BTreeSet::from(["a::x".into()]));
    assert_eq!(names("b::z"), BTreeSet::from(["a::y".into()]));
    assert_eq!(names("b::w"), BTreeSet::from(["a::x".into()]));
    let found = cycles(&edges);
    let want: Vec<String> = ["a::x", "a::y", "b::w", "b::z"].map(String::from).to_vec();
    assert_eq!(found, BTreeSet::from([want]));
    assert_eq!(
        cycles(&krate.edges(1)),
        BTreeSet::from([vec!["a".to_string(), "b".to_string()]])
    );
}
