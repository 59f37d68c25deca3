//! `cargo xtask check-cycles`: no import cycles between modules, in any crate. Each crate's
//! module tree is read from its `mod` items (following `#[path]`), and every `crate::`,
//! `super::` and `self::` path in a module (its `use` items and paths in code alike) is an edge
//! to the module it names. Edges between a module and its own ancestors or descendants are how
//! Rust modules work and do not count; any other edge is lifted to the two siblings under their
//! common parent, and a strongly connected set of siblings is a cycle: data that flows both ways
//! between two parts of the house.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use syn::visit::Visit;

/// The crate roots checked, relative to the workspace.
const ROOTS: [&str; 6] = [
    "l3lb-common/src/lib.rs",
    "l3lb-ebpf/src/main.rs",
    "l3lb-userspace/src/lib.rs",
    "l3lb-userspace/src/main.rs",
    "tests/src/lib.rs",
    "xtask/src/main.rs",
];

/// A module, as its path from the crate root (empty: the root).
type ModPath = Vec<String>;

/// One reference from a module to another, where it was written.
#[derive(Clone, Debug)]
struct Edge {
    from: ModPath,
    to: ModPath,
    at: String,
}

/// Every module of one crate and what each refers to.
#[derive(Default)]
struct Crate {
    modules: BTreeSet<ModPath>,
    /// Raw paths per module: (segments, where).
    refs: Vec<(ModPath, Vec<String>, String)>,
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut found = Vec::new();
    for rel in ROOTS {
        let file = root.join(rel);
        let mut krate = Crate::default();
        load(&mut krate, &file, Vec::new())?;
        for cycle in cycles(&krate) {
            found.push(format!("{rel}: {cycle}"));
        }
    }
    if found.is_empty() {
        println!("no import cycles between modules");
        return Ok(());
    }
    bail!("import cycles between modules:\n  {}", found.join("\n  "))
}

/// Parses `file` as module `path` and the modules it declares, recursively.
fn load(krate: &mut Crate, file: &Path, path: ModPath) -> anyhow::Result<()> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let ast = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
    let dir = module_dir(file, path.is_empty());
    load_items(krate, file, &dir, &ast.items, path)
}

/// Where the files of `file`'s child modules live.
fn module_dir(file: &Path, root: bool) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new("."));
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if root || stem == "mod" {
        parent.to_path_buf()
    } else {
        parent.join(stem)
    }
}

fn load_items(
    krate: &mut Crate,
    file: &Path,
    dir: &Path,
    items: &[syn::Item],
    path: ModPath,
) -> anyhow::Result<()> {
    krate.modules.insert(path.clone());
    let mut refs = Refs::default();
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                let mut child = path.clone();
                child.push(m.ident.to_string());
                let attr_path = m.attrs.iter().find_map(|a| {
                    let syn::Meta::NameValue(nv) = &a.meta else {
                        return None;
                    };
                    if !nv.path.is_ident("path") {
                        return None;
                    }
                    match &nv.value {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }) => Some(s.value()),
                        _ => None,
                    }
                });
                match (&m.content, attr_path) {
                    (Some((_, inner)), _) => {
                        load_items(krate, file, &dir.join(m.ident.to_string()), inner, child)?
                    }
                    (None, Some(p)) => {
                        // `#[path]` is relative to the directory of the declaring file.
                        let base = file.parent().unwrap_or(Path::new("."));
                        load(krate, &base.join(p), child)?
                    }
                    (None, None) => {
                        let name = m.ident.to_string();
                        let flat = dir.join(format!("{name}.rs"));
                        let nested = dir.join(&name).join("mod.rs");
                        let f = if flat.exists() { flat } else { nested };
                        load(krate, &f, child)?
                    }
                }
            }
            syn::Item::Use(u) => refs.tree(&u.tree, Vec::new()),
            other => refs.visit_item(other),
        }
    }
    let at = file.display().to_string();
    for p in refs.0 {
        krate.refs.push((path.clone(), p, at.clone()));
    }
    Ok(())
}

/// Paths that start with `crate`, `super` or `self`.
#[derive(Default)]
struct Refs(Vec<Vec<String>>);

impl Refs {
    fn tree(&mut self, tree: &syn::UseTree, mut prefix: Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(&p.tree, prefix);
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.push(prefix);
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.push(prefix);
            }
            syn::UseTree::Glob(_) => self.push(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.tree(t, prefix.clone());
                }
            }
        }
    }

    fn push(&mut self, path: Vec<String>) {
        if path
            .first()
            .is_some_and(|s| s == "crate" || s == "super" || s == "self")
        {
            self.0.push(path);
        }
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.tree(&u.tree, Vec::new());
    }

    // Child modules are loaded (and their paths resolved) as modules of their own.
    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}

    // Macro bodies (`tokio::select!`, `format!`) are not parsed: their tokens are scanned for
    // `crate::a::b` sequences instead.
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
}

impl Refs {
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        use proc_macro2::TokenTree;
        let mut path: Vec<String> = Vec::new();
        let mut colons = 0;
        for tt in tokens {
            match tt {
                TokenTree::Ident(i) if path.is_empty() || colons == 2 => {
                    path.push(i.to_string());
                    colons = 0;
                }
                TokenTree::Punct(p) if p.as_char() == ':' && !path.is_empty() => colons += 1,
                TokenTree::Group(g) => {
                    self.push(std::mem::take(&mut path));
                    self.tokens(g.stream());
                    colons = 0;
                }
                other => {
                    self.push(std::mem::take(&mut path));
                    colons = 0;
                    if let TokenTree::Ident(i) = other {
                        path.push(i.to_string());
                    }
                }
            }
        }
        self.push(path);
    }
}

/// The module a path written in `from` names: the longest prefix that is a module.
fn resolve(krate: &Crate, from: &ModPath, path: &[String]) -> Option<ModPath> {
    let mut base: ModPath = from.clone();
    let mut rest = path;
    match path.first()?.as_str() {
        "crate" => {
            base.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while let Some(s) = rest.first() {
                if s != "super" {
                    break;
                }
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut at = base;
    for seg in rest {
        let mut next = at.clone();
        next.push(seg.clone());
        if krate.modules.contains(&next) {
            at = next;
        } else {
            break;
        }
    }
    Some(at)
}

/// The cycles of one crate, as text.
fn cycles(krate: &Crate) -> Vec<String> {
    // (parent, sibling graph): edges between children of one parent.
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, Edge>>> = BTreeMap::new();
    for (from, path, at) in &krate.refs {
        let Some(to) = resolve(krate, from, path) else {
            continue;
        };
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue; // the same module, an ancestor or a descendant
        }
        let parent: ModPath = from[..common].to_vec();
        let edge = Edge {
            from: from.clone(),
            to: to.clone(),
            at: at.clone(),
        };
        graphs
            .entry(parent)
            .or_default()
            .entry(from[common].clone())
            .or_default()
            .entry(to[common].clone())
            .or_insert(edge);
    }
    let mut out = Vec::new();
    for (parent, graph) in &graphs {
        for scc in strongly_connected(graph) {
            if scc.len() < 2 {
                continue;
            }
            let members: BTreeSet<&String> = scc.iter().collect();
            let mut why = Vec::new();
            for a in &scc {
                for (b, e) in graph.get(a).into_iter().flatten() {
                    if members.contains(b) {
                        why.push(format!(
                            "{} -> {} ({})",
                            e.from.join("::"),
                            e.to.join("::"),
                            e.at
                        ));
                    }
                }
            }
            let under = if parent.is_empty() {
                "crate".to_owned()
            } else {
                parent.join("::")
            };
            out.push(format!(
                "under {under}: {{{}}}: {}",
                scc.join(", "),
                why.join("; ")
            ));
        }
    }
    out
}

/// Tarjan's strongly connected components.
fn strongly_connected(graph: &BTreeMap<String, BTreeMap<String, Edge>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeMap<String, Edge>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(edges) = s.graph.get(v) {
            for w in edges.keys() {
                if !s.index.contains_key(w.as_str()) {
                    visit(s, w);
                    let lw = s.low[w.as_str()];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w.as_str()) {
                    let iw = s.index[w.as_str()];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            scc.sort();
            s.out.push(scc);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = graph
        .iter()
        .flat_map(|(a, es)| std::iter::once(a.as_str()).chain(es.keys().map(String::as_str)))
        .collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let p = dir.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
    }

    fn check(files: &[(&str, &str)]) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!(
            "l3lb-cycles-{}-{}",
            std::process::id(),
            files.len() + files.iter().map(|f| f.1.len()).sum::<usize>()
        ));
        let _ = fs::remove_dir_all(&dir);
        write(&dir, files);
        let mut krate = Crate::default();
        load(&mut krate, &dir.join("lib.rs"), Vec::new()).unwrap();
        let _ = fs::remove_dir_all(&dir);
        cycles(&krate)
    }

    #[test]
    fn sibling_cycles_are_found_parent_child_links_are_not() {
        let found = check(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "use crate::b::X; pub struct Y;"),
            (
                "b/mod.rs",
                "mod inner; pub struct X; fn f() -> inner::Z { todo!() }",
            ),
            // b::inner -> a closes a -> b -> a (lifted to the siblings a and b).
            ("b/inner.rs", "pub struct Z(crate::a::Y); use super::X;"),
            ("c.rs", "use crate::{a::Y, b::X};"),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("under crate: {a, b}: "),
            "{}",
            found[0]
        );
        assert!(found[0].contains("b::inner -> a"), "{}", found[0]);

        let none = check(&[
            ("lib.rs", "mod a; mod b;"),
            (
                "a.rs",
                "use crate::b::X; #[path = \"a_tests.rs\"] #[cfg(test)] mod tests;",
            ),
            ("a_tests.rs", "use super::*; use crate::b;"),
            ("b.rs", "pub struct X;"),
        ]);
        assert!(none.is_empty(), "{none:?}");
    }
}
