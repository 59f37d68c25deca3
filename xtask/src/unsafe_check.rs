//! The eBPF crate keeps all of its `unsafe` in one module (`l3lb-ebpf/src/raw.rs`: packet memory,
//! map values, helper calls, the license section), where each piece states its contract. The
//! crate denies `unsafe_code` outside it; this check reads the sources as tokens (comments and
//! strings do not count) so an `#[allow]` cannot quietly move the boundary either. Run by
//! `cargo xtask test` as a unit test of xtask.
use std::{fs, path::Path};

use anyhow::Context as _;
use proc_macro2::{TokenStream, TokenTree};

/// The eBPF crate (every Rust file in it: the programs, the empty library, the build script),
/// relative to the workspace, and the one file allowed `unsafe`, relative to the crate.
pub const EBPF_CRATE: &str = "l3lb-ebpf";
pub const EBPF_UNSAFE_MODULE: &str = "src/raw.rs";

/// Files under `dir` (recursively) other than `allowed` that hold the keyword `unsafe`, with how
/// many times each does.
pub fn unsafe_outside(dir: &Path, allowed: &str) -> anyhow::Result<Vec<(String, usize)>> {
    let mut found = Vec::new();
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    for file in files {
        let rel = file.strip_prefix(dir).unwrap_or(&file);
        if rel == Path::new(allowed) {
            continue;
        }
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let tokens: TokenStream = text
            .parse()
            .map_err(|e| anyhow::anyhow!("tokenizing {}: {e}", file.display()))?;
        let n = count(tokens);
        if n > 0 {
            found.push((rel.display().to_string(), n));
        }
    }
    Ok(found)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            // A build directory is no source.
            if path.file_name().is_none_or(|n| n != "target") {
                collect(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Occurrences of the keyword `unsafe` (blocks, fns, impls, traits, `#[unsafe(..)]`).
fn count(tokens: TokenStream) -> usize {
    tokens
        .into_iter()
        .map(|t| match t {
            TokenTree::Ident(i) if i == "unsafe" => 1,
            TokenTree::Group(g) => count(g.stream()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebpf_unsafe_lives_in_its_one_module() {
        let dir = crate::workspace_root().join(EBPF_CRATE);
        assert!(
            dir.join(EBPF_UNSAFE_MODULE).is_file(),
            "{EBPF_CRATE}/{EBPF_UNSAFE_MODULE} is gone: update the check"
        );
        let found = unsafe_outside(&dir, EBPF_UNSAFE_MODULE).unwrap();
        assert!(
            found.is_empty(),
            "`unsafe` outside {EBPF_CRATE}/{EBPF_UNSAFE_MODULE} (move it there, as a small \
             function with its contract): {found:?}"
        );
    }

    #[test]
    fn the_keyword_counts_wherever_code_says_it_and_nowhere_else() {
        let dir = std::env::temp_dir().join(format!("l3lb-unsafe-check-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::create_dir_all(dir.join("target")).unwrap();
        let files = [
            ("raw.rs", "fn a() { unsafe { f() } }"),
            (
                "clean.rs",
                "// unsafe in a comment\nfn b() -> &'static str { \"unsafe\" }",
            ),
            ("block.rs", "fn c() { let x = { unsafe { g() } }; }"),
            (
                "items.rs",
                "#[unsafe(no_mangle)] static S: u8 = 0; unsafe fn d() {} unsafe impl Send for T {}",
            ),
            ("sub/nested.rs", "mod m { unsafe trait U {} }"),
            ("target/built.rs", "unsafe fn generated() {}"),
        ];
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
        let found = unsafe_outside(&dir, "raw.rs").unwrap();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(
            found,
            [
                ("block.rs".to_owned(), 1),
                ("items.rs".to_owned(), 3),
                ("sub/nested.rs".to_owned(), 1),
            ]
        );
    }
}
