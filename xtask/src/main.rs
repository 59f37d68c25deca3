//! Project tasks: `cargo xtask build-ebpf | test | demo`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod build_ebpf;

#[derive(Parser)]
#[command(name = "xtask", about = "l3lb project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the eBPF object through the daemon's build script (aya-build) and copy it to
    /// target/bpf/l3lb.o for bpftool.
    BuildEbpf,
    /// Run every test tier: fmt, clippy, unit, build-ebpf, kube client, datapath, end-to-end. Needs root.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the demo lab (router, two nodes with FRR and l3lb, pods, a client), show each step,
    /// clean up. Needs root.
    Demo,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::BuildEbpf => build_ebpf::run(),
        Task::Test { args } => test(&args),
        Task::Demo => demo(),
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs the cargo that runs us.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo), args)
}

/// Runs cargo from the nightly toolchain (the one aya-build uses for the eBPF crate).
fn nightly_cargo(args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]);
    for var in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "CARGO"] {
        cmd.env_remove(var);
    }
    run(cmd, args)
}

fn run(mut cmd: Command, args: &[&str]) -> anyhow::Result<()> {
    println!("\n==> cargo {}", args.join(" "));
    let status = cmd
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "{what} needs root (network namespaces, XDP, FRR): run it with sudo, after `sudo bash .ci/setup`"
        );
    }
    Ok(())
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    require_root("cargo xtask test")?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "l3lb-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The eBPF crate only builds for the BPF target, with the nightly toolchain aya-build uses.
    nightly_cargo(&[
        "clippy",
        "-p",
        "l3lb-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ])?;
    build_ebpf::run()?;
    cargo(&["build", "--workspace", "--bins"])?;
    let bin = workspace_root().join("target/debug/l3lb");
    // SAFETY: single-threaded at this point; the child cargo inherits it.
    unsafe { std::env::set_var("L3LB_BIN", &bin) };
    let mut args = vec!["test", "--workspace", "--no-fail-fast"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    cargo(&args)
}

fn demo() -> anyhow::Result<()> {
    require_root("cargo xtask demo")?;
    cargo(&["build", "--workspace", "--bins"])?;
    let bin = workspace_root().join("target/debug/l3lb");
    // SAFETY: single-threaded at this point; the child cargo inherits it.
    unsafe { std::env::set_var("L3LB_BIN", &bin) };
    cargo(&["run", "-q", "-p", "l3lb-tests", "--bin", "l3lb-demo"])
}
