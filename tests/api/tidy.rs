//! Tidy test (in the style of rust-analyzer's `tidy.rs`): the layer rule of
//! ARCHITECTURE.md holds by reading every `.rs` file under `src/`.
//!
//! The table under "## Layers" in ARCHITECTURE.md is the list of allowed
//! edges: the test parses it, so the document and the code cannot drift
//! apart. A `crate::X` (or `dynoguard::X` in the binaries) or `super::` path
//! that resolves to another top-level module — in a `use` or inline in a
//! body — is an edge; comments and string literals are not code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges the layer rule forbids whatever the table says, so that widening
/// the table to let an import through fails here instead of passing review
/// unnoticed. (`commands` is forbidden to every module but `main` and `cli`,
/// added in `forbidden`.) The first rows are the pipeline's direction; the
/// rest keep the modules beside it below what uses them: `config` and
/// `telemetry` are read by the layers, the store is under the decisions, and
/// the simulated Heroku shares no code with the client it stands in for.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("ingest", &["act", "store", "service", "commands", "config"]),
    ("decide", &["act", "store", "service", "commands", "config"]),
    ("domain", &["act", "store", "service", "commands", "config"]),
    ("store", &["decide", "act", "service", "config"]),
    ("act", &["service", "commands"]),
    ("service", &["commands"]),
    ("config", &["act", "store", "service", "telemetry"]),
    (
        "telemetry",
        &["ingest", "decide", "act", "store", "service"],
    ),
    ("sim", &["act", "service", "store"]),
];

fn forbidden(from: &str, to: &str) -> bool {
    let listed = FORBIDDEN
        .iter()
        .any(|(f, ts)| *f == from && ts.contains(&to));
    listed || (to == "commands" && !matches!(from, "main" | "cli"))
}

#[test]
fn imports_follow_the_layers_of_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let table = allowed_edges(&doc);
    let modules = top_level_modules(&std::fs::read_to_string(root.join("src/lib.rs")).unwrap());
    assert!(
        modules.len() > 8,
        "lib.rs declares the modules: {modules:?}"
    );

    let mut problems = Vec::new();
    // The table covers every module (and the binaries), and nothing else.
    let rows: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    let mut expected: BTreeSet<&str> = modules.iter().map(String::as_str).collect();
    expected.extend(["main", "bin"]);
    for m in expected.difference(&rows) {
        problems.push(format!(
            "ARCHITECTURE.md: no row for `{m}` in the layers table"
        ));
    }
    for m in rows.difference(&expected) {
        problems.push(format!(
            "ARCHITECTURE.md: row `{m}` is not a module of src/lib.rs"
        ));
    }
    for (from, tos) in &table {
        for to in tos {
            if forbidden(from, to) {
                problems.push(format!(
                    "ARCHITECTURE.md: the table allows `{from}` → `{to}`, which the layer rule forbids"
                ));
            }
        }
    }

    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for file in rust_files(&root.join("src")) {
        let rel = file.strip_prefix(root.join("src")).unwrap();
        let Some(unit) = Unit::of(rel) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, to) in edges(&unit, &text, &modules) {
            let allowed = table.get(&unit.module).is_some_and(|t| t.contains(&to));
            if !allowed {
                problems.push(format!(
                    "src/{}:{line}: `{}` imports `{to}` against the layers (ARCHITECTURE.md)",
                    rel.display(),
                    unit.module
                ));
            }
            used.insert((unit.module.clone(), to));
        }
    }
    // An allowed edge no code takes is a statement the document makes that
    // is no longer true: drop it from the table.
    for (from, tos) in &table {
        for to in tos {
            if !used.contains(&(from.clone(), to.clone())) {
                problems.push(format!(
                    "ARCHITECTURE.md: the table allows `{from}` → `{to}`, but no code imports it"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The rows of the table under `## Layers`: module → modules it may import.
/// Names are in backticks; a cell without any (`—`) allows nothing; text in
/// parentheses is a note.
fn allowed_edges(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = doc
        .split("\n## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let mut table = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').collect();
        let (Some(from), Some(to)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        // The header and the separator have no module in backticks.
        let Some(from) = ticked(from).into_iter().next() else {
            continue;
        };
        let prev = table.insert(from.clone(), ticked(to).into_iter().collect());
        assert!(prev.is_none(), "ARCHITECTURE.md: two rows for `{from}`");
    }
    assert!(
        !table.is_empty(),
        "ARCHITECTURE.md: the layers table has rows"
    );
    table
}

/// The names in backticks, outside parentheses (a note may name a type).
fn ticked(cell: &str) -> Vec<String> {
    let mut depth = 0;
    let bare: String = cell
        .chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .collect();
    bare.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn top_level_modules(lib_rs: &str) -> BTreeSet<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// One file: the top-level module it belongs to, how deep its own module
/// sits (for `super::`), and the name its paths start from at the crate
/// root (`crate` in the library; `dynoguard` in a binary, where `crate` is
/// the binary itself).
struct Unit {
    module: String,
    depth: usize,
    root: &'static str,
}

impl Unit {
    fn of(rel: &Path) -> Option<Unit> {
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let bin = |module: &str| Unit {
            module: module.into(),
            depth: 0,
            root: "dynoguard",
        };
        match parts.as_slice() {
            // lib.rs only declares the modules.
            [f] if f == "lib.rs" => None,
            [f] if f == "main.rs" => Some(bin("main")),
            [d, ..] if d == "bin" => Some(bin("bin")),
            _ => {
                let last = parts.last().unwrap();
                let depth = if last == "mod.rs" {
                    parts.len() - 1
                } else {
                    parts.len()
                };
                let module = parts[0].trim_end_matches(".rs").to_owned();
                Some(Unit {
                    module,
                    depth,
                    root: "crate",
                })
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Every edge of one file to another top-level module, with its line.
fn edges(unit: &Unit, text: &str, modules: &BTreeSet<String>) -> Vec<(usize, String)> {
    let toks = tokens(&code_only(text));
    let mut out = Vec::new();
    // Inline modules (`mod tests { use super::*; }`) move `super` one down.
    let mut braces = 0usize;
    let mut inline: Vec<usize> = Vec::new();
    let mut pending_mod = false;
    for k in 0..toks.len() {
        let (line, tok) = &toks[k];
        let after_sep = k > 0 && toks[k - 1].1 == Tok::PathSep;
        let sep_next = toks.get(k + 1).is_some_and(|t| t.1 == Tok::PathSep);
        match tok {
            Tok::Punct('{') => {
                braces += 1;
                if pending_mod {
                    inline.push(braces);
                    pending_mod = false;
                }
            }
            Tok::Punct('}') => {
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
                braces = braces.saturating_sub(1);
            }
            Tok::Punct(';') => pending_mod = false,
            Tok::Ident(m) if m == "mod" => pending_mod = true,
            Tok::Ident(r) if r == unit.root && sep_next && !after_sep => {
                for to in tree_heads(&toks, k + 2) {
                    out.push((*line, to));
                }
            }
            Tok::Ident(s) if s == "super" && sep_next && !after_sep && unit.root == "crate" => {
                let mut j = k;
                let mut ups = 0;
                while toks
                    .get(j)
                    .is_some_and(|t| t.1 == Tok::Ident("super".into()))
                    && toks.get(j + 1).is_some_and(|t| t.1 == Tok::PathSep)
                {
                    ups += 1;
                    j += 2;
                }
                // Only a `super` that climbs to the crate root can leave
                // the file's top-level module.
                if unit.depth + inline.len() == ups {
                    for to in tree_heads(&toks, j) {
                        out.push((*line, to));
                    }
                }
            }
            _ => {}
        }
    }
    out.retain(|(_, to)| to != &unit.module && modules.contains(to));
    out
}

/// The first segment of each path of a use-tree starting at `k`: `a` for
/// `a::b`, `a` and `c` for `{a::b, c::{d, e}}`.
fn tree_heads(toks: &[(usize, Tok)], k: usize) -> Vec<String> {
    match toks.get(k).map(|t| &t.1) {
        Some(Tok::Ident(name)) => vec![name.clone()],
        Some(Tok::Punct('{')) => {
            let mut heads = Vec::new();
            let mut depth = 0;
            let mut at_start = true;
            for (_, t) in &toks[k..] {
                match t {
                    Tok::Punct('{') => {
                        depth += 1;
                        at_start = depth == 1;
                    }
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(',') if depth == 1 => at_start = true,
                    Tok::Ident(name) if at_start => {
                        heads.push(name.clone());
                        at_start = false;
                    }
                    _ => at_start = false,
                }
            }
            heads
        }
        _ => Vec::new(),
    }
}

fn tokens(code: &str) -> Vec<(usize, Tok)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ident(ch) || (ch == '$' && c.get(i + 1).is_some_and(|n| ident(*n))) {
            // `$crate` in a macro is `crate`.
            let start = if ch == '$' { i + 1 } else { i };
            i = start;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
            out.push((line, Tok::Ident(c[start..i].iter().collect())));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((line, Tok::PathSep));
            i += 2;
        } else {
            out.push((line, Tok::Punct(ch)));
            i += 1;
        }
    }
    out
}

/// The source with comments and the contents of string and character
/// literals blanked out (line breaks kept, so lines still count): a path
/// in a doc comment or a message is not an import.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(n, ch)| c.get(i + n) == Some(&ch))
    };
    let mut i = 0;
    while i < c.len() {
        // `r"…"`, `r#"…"#`, `br"…"`: the `r` starts a token.
        let raw = c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i == 1 || !ident(c[i - 2]))))
            && {
                let mut j = i + 1;
                while c.get(j) == Some(&'#') {
                    j += 1;
                }
                c.get(j) == Some(&'"')
            };
        if at(i, "//") {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            while i < c.len() {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if raw {
            let mut hashes = 0;
            i += 1;
            while c[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|n| c.get(i + n) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push_str("\"\"");
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            i += 1;
        } else if c[i] == '\'' && c.get(i + 1) == Some(&'\\') {
            // An escaped character literal: `'\''`, `'\u{7b}'`.
            i += 3;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            // `'{'` must not open a brace; a lifetime (`'a`) falls through.
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn the_scanner_sees_code_only() {
    let modules: BTreeSet<String> = ["config", "decide", "store", "act"]
        .map(String::from)
        .into();
    let unit = Unit::of(Path::new("store/history.rs")).unwrap();
    let src = r##"
// use crate::config::Comment;
/// [`crate::decide::Doc`]
use super::{Db, Store};
use crate::{act::x, domain::y};
fn f() {
    let s = "crate::config::in_a_string";
    let r = r#"crate::decide::raw"#;
    let b = '{';
    crate::config::parse_duration("1s");
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::policy::Policy;
}
"##;
    let found = edges(&unit, src, &modules);
    assert_eq!(
        found,
        [
            (5, "act".into()),
            (10, "config".into()),
            (15, "decide".into())
        ]
    );
    // From a top-level file, `super` out of a test module is the file's own
    // module, and `super::super` is the crate root.
    let unit = Unit::of(Path::new("store/mod.rs")).unwrap();
    let src = "mod tests { use super::*; }\nfn g() { super::act::x(); }";
    assert_eq!(edges(&unit, src, &modules), [(2, "act".into())]);
}
