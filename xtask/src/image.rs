//! `cargo xtask image`: the container image, built from nothing (no base image can be
//! downloaded): the release `l3lb` binary, linked statically against musl, alone in a `FROM
//! scratch` image (deploy/Containerfile), built with podman and tagged `l3lb:<version>`, which
//! podman names `localhost/l3lb:<version>`, the name deploy/base runs.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{cargo, workspace_root};

/// The Rust target of the static binary.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// The image's name as deploy/base names it.
pub fn reference() -> String {
    format!("localhost/l3lb:{}", env!("CARGO_PKG_VERSION"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Whether `program --version` runs.
fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every tool the build needs, or an error naming the fix.
fn check_tools() -> anyhow::Result<()> {
    if !found("podman") {
        bail!(
            "podman not found: install it with `sudo bash .ci/setup` (Debian: apt-get install podman)"
        );
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        bail!(
            "the Rust target {TARGET} is not installed: `rustup target add {TARGET}` (`bash .ci/setup` does)"
        );
    }
    // ring's C and assembly, for the musl target.
    if !found("musl-gcc") {
        bail!(
            "musl-gcc not found: install it with `sudo bash .ci/setup` (Debian: apt-get install musl-tools)"
        );
    }
    Ok(())
}

/// Whether the ELF file at `path` names a program interpreter (a dynamic loader): a static
/// binary has no PT_INTERP program header.
fn has_interpreter(path: &Path) -> anyhow::Result<bool> {
    let elf = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // ELF64, little-endian (x86_64).
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        bail!("{} is not a little-endian ELF64 file", path.display());
    }
    let header = || -> Option<(usize, usize, usize)> {
        let phoff = usize::try_from(u64_at(0x20)?).ok()?;
        Some((
            phoff,
            usize::from(u16_at(0x36)?),
            usize::from(u16_at(0x38)?),
        ))
    };
    let (phoff, size, count) = header().context("truncated ELF header")?;
    const PT_INTERP: u32 = 3;
    for i in 0..count {
        let at = phoff + i * size;
        let kind = elf
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .context("truncated program header")?;
        if kind == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Builds the static binary and the image; prints what it did and how long each part took.
pub fn run() -> anyhow::Result<()> {
    let start = Instant::now();
    check_tools()?;
    let version = env!("CARGO_PKG_VERSION");
    println!(
        "\n==> image {}: static {TARGET} release binary, then FROM scratch",
        reference()
    );
    cargo(&[
        "build",
        "--release",
        "--target",
        TARGET,
        "-p",
        "l3lb-userspace",
        "--bin",
        "l3lb",
    ])?;
    let built = start.elapsed();
    let binary = target_dir().join(TARGET).join("release/l3lb");
    if has_interpreter(&binary)? {
        bail!(
            "{} is dynamically linked; a FROM scratch image has no loader for it",
            binary.display()
        );
    }
    // The build context: the binary alone.
    let context = target_dir().join("image");
    fs::create_dir_all(&context).with_context(|| format!("creating {}", context.display()))?;
    fs::copy(&binary, context.join("l3lb"))
        .with_context(|| format!("copying {} to {}", binary.display(), context.display()))?;
    let containerfile = workspace_root().join("deploy/Containerfile");
    let mut podman = Command::new("podman");
    podman
        .arg("build")
        .arg("--file")
        .arg(&containerfile)
        .args(["--build-arg", &format!("VERSION={version}")])
        // Reproducible: the same binary gives the same image id; no intermediate images.
        .args(["--timestamp", "0", "--layers=false"])
        .args(["--tag", &format!("l3lb:{version}")])
        .arg(&context);
    println!("\n==> {podman:?}");
    let status = podman.status().context("running podman build")?;
    if !status.success() {
        bail!("podman build failed ({status}); see above");
    }
    let size = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Size}}", &reference()])
        .output()
        .context("running podman image inspect")?;
    let size = String::from_utf8_lossy(&size.stdout).trim().to_owned();
    println!(
        "\nimage {} ({size} bytes): binary built in {:.0?}, image in {:.1?}, {:.0?} in all\n  \
         run it: podman run --rm {0} --help; into k3s: podman save {0} | k3s ctr images import -",
        reference(),
        built,
        start.elapsed() - built,
        start.elapsed()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::has_interpreter;

    #[test]
    fn tells_dynamic_from_static_binaries() {
        // Whatever runs the tests is dynamically linked.
        let me = std::env::current_exe().unwrap();
        assert!(has_interpreter(&me).unwrap());
        let not_elf = std::env::temp_dir().join(format!("xtask-not-elf-{}", std::process::id()));
        std::fs::write(&not_elf, b"#!/bin/sh\n").unwrap();
        assert!(has_interpreter(&not_elf).is_err());
        let _ = std::fs::remove_file(&not_elf);
    }
}
