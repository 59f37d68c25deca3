//! `cargo xtask build-ebpf`: build the eBPF object the one way it is built (the daemon's build
//! script, through aya-build) and copy it to `target/bpf/l3lb.o` for bpftool and llvm-objdump.
use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context as _, bail};

use crate::{cargo, workspace_root};

/// Builds `l3lb-userspace` (whose build.rs compiles the eBPF crate) and copies the object out.
pub fn run() -> anyhow::Result<()> {
    cargo(&["build", "-p", "l3lb-userspace"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let object = newest_object(&target)?;
    let dest_dir = target.join("bpf");
    fs::create_dir_all(&dest_dir).with_context(|| format!("creating {}", dest_dir.display()))?;
    let dest = dest_dir.join("l3lb.o");
    fs::copy(&object, &dest)
        .with_context(|| format!("copying {} to {}", object.display(), dest.display()))?;
    println!(
        "eBPF object: {} (from {})\n  inspect with `bpftool btf dump file {0}` or `llvm-objdump -S {0}`",
        dest.display(),
        object.display()
    );
    Ok(())
}

/// The most recently written `<target>/<profile>/build/l3lb-userspace-*/out/l3lb`.
fn newest_object(target: &Path) -> anyhow::Result<PathBuf> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for profile in read_dir(target)? {
        let build = profile.join("build");
        if !build.is_dir() {
            continue;
        }
        for dir in read_dir(&build)? {
            let is_ours = dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("l3lb-userspace-"));
            let candidate = dir.join("out").join("l3lb");
            if !is_ours || !candidate.is_file() {
                continue;
            }
            let modified = fs::metadata(&candidate)
                .and_then(|m| m.modified())
                .with_context(|| format!("stat {}", candidate.display()))?;
            if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                newest = Some((modified, candidate));
            }
        }
    }
    match newest {
        Some((_, path)) => Ok(path),
        None => bail!(
            "no eBPF object under {}/*/build/l3lb-userspace-*/out/l3lb after the build",
            target.display()
        ),
    }
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    entries
        .map(|e| {
            e.map(|e| e.path())
                .with_context(|| format!("reading {}", dir.display()))
        })
        .collect()
}
