//! The layering rule of `src/lib.rs` (`# Layout`), checked from the code's own imports: no
//! import cycle between the top-level modules, nor between the files (and subfolders) of one
//! folder. A file may name the folder it sits in (`super::X` from `alarm/engine.rs` reaches
//! `alarm/mod.rs`, the folder's front). Test code (`tests.rs`, `*_tests.rs`, the trailing
//! `#[cfg(test)] mod tests { .. }`) and re-exports (`pub use`: a folder naming its children's
//! items, or a module passing on a type it moved) are left out. A failure names each cycle
//! and the imports that close it. Besides cycles, a few stages must not name one they feed
//! ([`UPSTREAM_ONLY`]: the hub never names the store).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path below the crate root: `["alarm", "engine"]` for `src/alarm/engine.rs`.
type ModPath = Vec<String>;

/// One import: which file names which path (as written, made absolute).
#[derive(Debug, Clone)]
struct Import {
    from: ModPath,
    to: ModPath,
    what: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/alarm/engine.rs` -> `alarm::engine`; `src/alarm/mod.rs` -> `alarm`; `lib.rs` -> root.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut segs: ModPath = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segs.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        segs.push(stem.to_owned());
    }
    segs
}

fn is_test_file(file: &Path) -> bool {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
    stem.is_some_and(|s| s == "tests" || s.ends_with("_tests"))
}

/// How many lines of `text` come before its trailing test module (`#[cfg(test)] mod tests {`):
/// its non-test lines.
fn non_test_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    for (i, pair) in lines.windows(2).enumerate() {
        let next = pair[1].trim();
        if pair[0].trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            return i;
        }
    }
    lines.len()
}

/// The code of a file without comments, string contents and its trailing test module.
fn code_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    strip(&lines[..non_test_lines(text)].join("\n"))
}

/// `code` without comments, with the contents of string literals (raw ones too) left out.
fn strip(code: &str) -> String {
    let b = code.as_bytes();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    let mut copied = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let skip_to = if b[i..].starts_with(b"//") {
            code[i..].find('\n').map_or(b.len(), |n| i + n)
        } else if b[i..].starts_with(b"/*") {
            code[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2)
        } else if b[i] == b'r'
            && (i == 0 || !ident(b[i - 1]))
            && matches!(b.get(i + 1), Some(b'"' | b'#'))
        {
            let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
            if b.get(i + 1 + hashes) == Some(&b'"') {
                let close = format!("\"{}", "#".repeat(hashes));
                let from = i + 2 + hashes;
                code[from..]
                    .find(&close)
                    .map_or(b.len(), |n| from + n + close.len())
            } else {
                i + 1
            }
        } else if b[i] == b'"' && !(i > 0 && b[i - 1] == b'\'' && b.get(i + 1) == Some(&b'\'')) {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else {
            i += 1;
            continue;
        };
        out.push_str(&code[copied..i]);
        out.push_str("\"\"");
        i = skip_to.min(b.len());
        copied = i;
    }
    out.push_str(&code[copied..]);
    out
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    fn split_top(s: &str) -> Vec<String> {
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut cur = String::new();
        for c in s.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        parts.push(cur);
        parts
            .into_iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    }
    let tree = tree.trim().trim_start_matches("::");
    match tree.find('{') {
        Some(open) => {
            let prefix: Vec<String> = tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut out = Vec::new();
            for part in split_top(inner) {
                for rest in expand_use(&part) {
                    let mut p = prefix.clone();
                    if rest != ["self"] {
                        p.extend(rest);
                    }
                    out.push(p);
                }
            }
            out
        }
        None => {
            let path = tree.split_whitespace().next().unwrap_or("");
            vec![
                path.split("::")
                    .filter(|s| !s.is_empty() && *s != "*")
                    .map(str::to_owned)
                    .collect(),
            ]
        }
    }
}

/// Makes `path` (as written in module `here`) absolute, or `None` for another crate's.
fn absolute(here: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let first = path.first()?;
    let mut base = here.clone();
    let mut rest = path;
    match first.as_str() {
        "crate" => {
            base.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        child => {
            let mut m = here.clone();
            m.push(child.to_owned());
            if !modules.contains(&m) {
                return None;
            }
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The module file a path lands in: its longest prefix that is a module.
fn target(abs: &ModPath, modules: &BTreeSet<ModPath>) -> ModPath {
    let mut p = abs.clone();
    while !p.is_empty() && !modules.contains(&p) {
        p.pop();
    }
    p
}

fn imports(src: &Path) -> Vec<Import> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(src, f)).collect();
    let mut out = Vec::new();
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let here = module_of(src, file);
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let code = code_of(&text);
        let mut paths: Vec<Vec<String>> = Vec::new();
        // `use` statements (re-exports left out), then paths written in the code.
        let mut rest = code.as_str();
        let mut body = String::new();
        while let Some(pos) = rest.find("use ") {
            let before = &rest[..pos];
            let at_start = before
                .chars()
                .last()
                .is_none_or(|c| c.is_whitespace() || c == ';' || c == '{' || c == '}');
            let line_start = before.rfind('\n').map_or(0, |n| n + 1);
            let lead = before[line_start..].trim();
            body.push_str(before);
            let end = rest[pos..].find(';').map_or(rest.len(), |e| pos + e);
            if at_start && !lead.starts_with("pub") {
                paths.extend(expand_use(&rest[pos + 4..end]));
                rest = &rest[end..];
            } else if at_start {
                rest = &rest[end..];
            } else {
                body.push_str("use ");
                rest = &rest[pos + 4..];
            }
        }
        body.push_str(rest);
        paths.extend(code_paths(&body));
        for p in paths {
            let Some(abs) = absolute(&here, &p, &modules) else {
                continue;
            };
            let to = target(&abs, &modules);
            // A file may name the folder it sits in (`super::X` from a child of `mod.rs`):
            // the folder's own file is its front, not a sibling.
            if to != here && !here.starts_with(&to) {
                out.push(Import {
                    from: here.clone(),
                    to,
                    what: p.join("::"),
                });
            }
        }
    }
    out
}

/// Paths such as `crate::alarm::Policy::default` or `super::ble::serve` written in code.
fn code_paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            segs.push(code[s..j].to_owned());
            if code[j..].starts_with("::") && bytes.get(j + 2).is_some_and(|b| ident(*b)) {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

/// The node of `m` in the graph of folder `dir`: `dir` itself, or the child of `dir` that
/// holds `m`; `None` outside `dir`.
fn node_in(dir: &ModPath, m: &ModPath) -> Option<ModPath> {
    if !m.starts_with(dir) {
        return None;
    }
    Some(m[..(dir.len() + 1).min(m.len())].to_vec())
}

/// Every cycle of each folder's graph (the crate root's being the top-level modules), as the
/// edges that close it, in words.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut dirs: BTreeSet<ModPath> = BTreeSet::new();
    for i in imports {
        for m in [&i.from, &i.to] {
            for n in 0..m.len() {
                dirs.insert(m[..n].to_vec());
            }
        }
    }
    let mut found = Vec::new();
    for dir in dirs {
        let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, Vec<&Import>>> = BTreeMap::new();
        for i in imports {
            let (Some(a), Some(b)) = (node_in(&dir, &i.from), node_in(&dir, &i.to)) else {
                continue;
            };
            // The crate root (`lib.rs`) is not one of the top-level modules; a folder's own
            // file (`mod.rs`) is one of the folder's files.
            if a != b && (!dir.is_empty() || (a != dir && b != dir)) {
                edges.entry(a).or_default().entry(b).or_default().push(i);
            }
        }
        let reach = |from: &ModPath| -> BTreeSet<ModPath> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.clone()];
            while let Some(n) = todo.pop() {
                for next in edges.get(&n).into_iter().flat_map(|e| e.keys()) {
                    if seen.insert(next.clone()) {
                        todo.push(next.clone());
                    }
                }
            }
            seen
        };
        for (a, outs) in &edges {
            for (b, via) in outs {
                if reach(b).contains(a) {
                    let name = |m: &ModPath| format!("crate::{}", m.join("::"));
                    let how: BTreeSet<String> = via
                        .iter()
                        .map(|i| format!("{} names {}", name(&i.from), i.what))
                        .collect();
                    let how: Vec<String> = how.into_iter().collect();
                    found.push(format!(
                        "{} -> {} is part of a cycle: {}",
                        name(a),
                        name(b),
                        how.join("; ")
                    ));
                }
            }
        }
    }
    found
}

/// Imports that go against the pipeline without closing a cycle: a stage naming one it
/// feeds. The hub publishes readings, alarm events and bed states; the store subscribes (it
/// implements the hub's `Recorder` and consumes its `Dispatch` channel, wired in `app`), so
/// the hub never names the store.
const UPSTREAM_ONLY: &[(&str, &str)] = &[("hub", "store")];

/// Every import from a file of folder `from` into folder `to` named in [`UPSTREAM_ONLY`].
fn reaching_downstream(imports: &[Import]) -> Vec<String> {
    let mut found = BTreeSet::new();
    for i in imports {
        for (from, to) in UPSTREAM_ONLY {
            if i.from.first().is_some_and(|m| m == from) && i.to.first().is_some_and(|m| m == to) {
                found.insert(format!(
                    "crate::{} names {}, but {from} must not name {to}",
                    i.from.join("::"),
                    i.what
                ));
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn the_hub_publishes_and_never_names_the_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = reaching_downstream(&imports(&src));
    assert!(
        found.is_empty(),
        "imports against the pipeline (see `# Layout` in src/lib.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_the_hub_naming_the_store() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("src");
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("lib.rs", "pub mod hub;\npub mod store;\npub mod app;\n");
    write("hub/mod.rs", "mod fanout;\npub trait Recorder {}\n");
    write(
        "hub/fanout.rs",
        "pub struct F(Option<crate::store::StoreHandle>);\n",
    );
    write("store/mod.rs", "pub struct StoreHandle;\n");
    write(
        "app.rs",
        "use crate::store::StoreHandle;\nimpl crate::hub::Recorder for StoreHandle {}\n",
    );
    let found = reaching_downstream(&imports(&src));
    let text = found.join("\n");
    assert_eq!(found.len(), 1, "{text}");
    assert!(
        text.contains("crate::hub::fanout names crate::store::StoreHandle"),
        "{text}"
    );
    assert!(cycles(&imports(&src)).is_empty(), "no cycle: {text}");
}

#[test]
fn no_import_cycle_between_modules_nor_between_the_files_of_a_folder() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = cycles(&imports(&src));
    assert!(
        found.is_empty(),
        "import cycles (see `# Layout` in src/lib.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_between_two_folders_and_within_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("src");
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write(
        "a/mod.rs",
        "mod x;\nmod y;\npub use x::X;\nuse crate::b::B;\npub struct Z(x::X);\n",
    );
    write(
        "a/x.rs",
        "use super::y::Y; // uses y\nuse super::Z;\npub struct X;\n",
    );
    write(
        "a/y.rs",
        "pub struct Y(super::x::X);\n#[cfg(test)]\nmod tests {\n    use crate::b::B;\n}\n",
    );
    write(
        "b.rs",
        "pub struct B;\nfn f() { let _ = \"crate::a::X\"; crate::a::X; }\n",
    );
    let found = cycles(&imports(&src));
    let text = found.join("\n");
    assert!(text.contains("crate::a -> crate::b"), "{text}");
    assert!(text.contains("crate::b -> crate::a"), "{text}");
    assert!(text.contains("crate::a::x -> crate::a::y"), "{text}");
    assert!(text.contains("crate::a::y names super::x::X"), "{text}");
    assert_eq!(found.len(), 4, "{text}");
}

/// The most lines of non-test code one source file under `src/` may hold; a larger concern is
/// a folder of files (`store/export/`, `sim/bluez/`).
const MAX_FILE_LINES: usize = 1000;

/// Each source file (test files aside) over `max` non-test lines, with its count.
fn files_over(src: &Path, max: usize) -> Vec<(String, usize)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .iter()
        .filter(|f| !is_test_file(f))
        .filter_map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            let n = non_test_lines(&text);
            let rel = f.strip_prefix(src).expect("a file under src/");
            (n > max).then(|| (rel.to_string_lossy().replace('\\', "/"), n))
        })
        .collect()
}

#[test]
fn no_source_file_holds_over_1000_lines_of_non_test_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let over: Vec<String> = files_over(&src, MAX_FILE_LINES)
        .into_iter()
        .map(|(f, n)| format!("src/{f}: {n} lines"))
        .collect();
    assert!(
        over.is_empty(),
        "source files over {MAX_FILE_LINES} lines of non-test code (split them by concern):\n{}",
        over.join("\n")
    );
}

#[test]
fn the_size_check_counts_the_lines_before_the_test_module_and_skips_test_files() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    let body = "fn f() {}\n".repeat(5);
    let tests = "#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";
    std::fs::write(src.join("lib.rs"), format!("{body}{tests}")).expect("write");
    std::fs::write(src.join("a/big.rs"), "fn g() {}\n".repeat(6)).expect("write");
    std::fs::write(src.join("a/tests.rs"), "fn h() {}\n".repeat(9)).expect("write");
    assert_eq!(files_over(&src, 5), vec![("a/big.rs".to_owned(), 6)]);
    assert_eq!(files_over(&src, 4).len(), 2);
}
