//! Project tasks: `cargo xtask build-ebpf | test | image | demo | bench | check-cycles`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod build_ebpf;
mod cycles;
mod image;
#[cfg(test)]
mod unsafe_check;

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
    /// Run every test tier: fmt, check-cycles, clippy, build-ebpf, unit (among them: no `unsafe`
    /// in the eBPF crate outside src/raw.rs) and kube client (no root needed), then datapath and
    /// end-to-end (root).
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Benchmarks; results are appended as JSON lines to target/bench/<name>.json. Needs root.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// Fail on import cycles between modules in any crate.
    CheckCycles,
    /// Build the container image: the release binary, linked statically (musl), alone in a
    /// FROM scratch image (deploy/Containerfile), tagged l3lb:<version> by podman, which names
    /// it localhost/l3lb:<version> as deploy/base runs it. Needs podman and the musl target
    /// (`bash .ci/setup` installs both).
    Image,
    /// Build the demo lab (router, two nodes with FRR and l3lb, pods, a client), show each step,
    /// clean up. Needs root.
    Demo,
}

#[derive(Subcommand)]
enum Bench {
    /// A real daemon against the test API server with 10,000 Services / 100,000 endpoints
    /// (10 % local): time to first sync, EndpointSlice change to address applied (p50/p99),
    /// peak RSS.
    ControlPlane {
        /// Arguments for the benchmark binary, after `--`: `--services N`, `--local-services N`
        /// (how many have an endpoint on the node; default all), `--endpoints-per-service N`, `--changes N`, `--allocator false` (the daemon without
        /// the allocator, as beside `l3lb allocate`), `--heap-profile FILE` (the daemon built
        /// with DHAT: its heap at the peak, top entries printed).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The XDP program's cost per packet (BPF_PROG_TEST_RUN rows, among them an established
    /// flow found only in the LRU and the redirect path with its FIB lookup), then end to end on
    /// the lab: UDP 64-byte frames from a traffic generator that feeds the node's uplink as a NIC
    /// would (BPF_PROG_RUN live frames), and short TCP connections, through l3lb's XDP path
    /// (redirect and kernel path) and through iptables DNAT. Shows its step on stderr.
    Datapath,
    /// L2 mode on a bridged lab (client and three nodes on one segment, no router): the time
    /// from an announcer's endpoint going not-Ready (target 1 s), and from its daemon being
    /// SIGKILLed with its uplink set down (target 3 s), to the client's traffic arriving through
    /// the new node, and whether the client kept a stale neighbour entry; medians of N runs.
    L2Failover {
        /// Arguments for the benchmark binary, after `--`: `--runs N` (default 5), `--family
        /// ipv4|ipv6|both` (default both).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::BuildEbpf => build_ebpf::run(),
        Task::Test { args } => test(&args),
        Task::Demo => demo(),
        Task::CheckCycles => cycles::run(&workspace_root()),
        Task::Image => image::run(),
        Task::Bench { which } => match which {
            Bench::ControlPlane { args } => {
                bench("l3lb-bench-control-plane", "control-plane", &args)
            }
            Bench::Datapath => bench("l3lb-bench-datapath", "datapath", &[]),
            Bench::L2Failover { args } => bench("l3lb-bench-l2-failover", "l2-failover", &args),
        },
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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "{what} needs root (network namespaces, XDP, FRR): run it with sudo, after `sudo bash .ci/setup`"
        );
    }
    Ok(())
}

/// Integration tests of `l3lb-tests` that need no root: the test API server, the daemon's
/// kube-client code against it, and the manifests applied to it by kubectl. Every other file in
/// tests/tests/ is a root tier.
const UNPRIVILEGED_TESTS: [&str; 6] = [
    "apiserver",
    "allocator",
    "leader",
    "kustomize",
    "pool_crd",
    "l2_lease",
];

/// The root-tier test that runs the lab's daemons from the container image.
const IMAGE_TEST: &str = "image";

/// The root-tier test targets: every integration test of `l3lb-tests` not listed above.
fn root_tests() -> anyhow::Result<Vec<String>> {
    let dir = workspace_root().join("tests/tests");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            && !UNPRIVILEGED_TESTS.contains(&stem)
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Every tier: fmt, import cycles, clippy, the eBPF build, unit and kube-client tests (no root
/// needed), then the datapath and end-to-end tiers (root; without it they fail with a hint,
/// never skip).
fn test(extra: &[String]) -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    println!("\n==> check-cycles");
    cycles::run(&workspace_root())?;
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
    // Default members only: the eBPF crate builds for its own target, through aya-build.
    cargo(&["build", "--bins"])?;
    let bin = workspace_root().join("target/debug/l3lb");
    // SAFETY: single-threaded at this point; the child cargo inherits it.
    unsafe { std::env::set_var("L3LB_BIN", &bin) };
    let mut unprivileged = vec!["test", "--no-fail-fast", "--lib", "--bins"];
    unprivileged.extend(["--test", "config"]);
    for t in UNPRIVILEGED_TESTS {
        unprivileged.extend(["--test", t]);
    }
    let (mut passed, mut failed) = cargo_test(&with_filter(unprivileged, extra))?;
    let root = is_root();
    if root {
        // Its test runs what `cargo xtask image` builds: build it first (a no-op for podman
        // when the binary did not change), unless a filter leaves that test out.
        if image_tests_selected(extra)? {
            image::run()?;
        }
        let names = root_tests()?;
        let mut privileged = vec!["test", "--no-fail-fast", "-p", "l3lb-tests"];
        for t in &names {
            privileged.extend(["--test", t.as_str()]);
        }
        let (p, f) = cargo_test(&with_filter(privileged, extra))?;
        passed += p;
        failed += f;
    }
    println!("\ntests: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("cargo test failed");
    }
    if passed == 0 {
        bail!("cargo test ran no test");
    }
    require_root("the datapath and end-to-end tiers of `cargo xtask test` (the others passed)")
}

/// Whether a `cargo test` with the user's arguments `extra` runs a test of tests/tests/image.rs:
/// always without a name filter, else when a filter matches one of its test names (as libtest
/// matches: a substring, or the whole name with `--exact`).
fn image_tests_selected(extra: &[String]) -> anyhow::Result<bool> {
    let mut filters = Vec::new();
    let mut args = extra.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // The options of libtest that take a value.
            "--skip" | "--test-threads" | "--format" | "--logfile" | "--color" | "-Z" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a),
        }
    }
    if filters.is_empty() {
        return Ok(true);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "test",
            "-q",
            "-p",
            "l3lb-tests",
            "--test",
            IMAGE_TEST,
            "--",
            "--list",
        ])
        .current_dir(workspace_root())
        .output()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !out.status.success() {
        bail!(
            "listing the tests of tests/{IMAGE_TEST}.rs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let exact = extra.iter().any(|a| a == "--exact");
    let listed = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    Ok(names.iter().any(|name| {
        filters
            .iter()
            .any(|f| if exact { name == f } else { name.contains(f) })
    }))
}

/// `args` with the user's test filter (after `--`) appended.
fn with_filter<'a>(mut args: Vec<&'a str>, extra: &'a [String]) -> Vec<&'a str> {
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    args
}

/// Runs `cargo test`, echoing its output; returns (passed, failed) over every test binary. A
/// run whose cargo failed without a failed test (a build error) is an error.
fn cargo_test(args: &[&str]) -> anyhow::Result<(u64, u64)> {
    use std::io::{BufRead as _, BufReader};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("\n==> cargo {}", args.join(" "));
    let mut child = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cargo}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count(rest, " passed");
                failed += count(rest, " failed");
            }
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed ({status}) before any test failed: see above");
    }
    Ok((passed, failed))
}

/// The number before `label` in a libtest summary ("ok. 5 passed; 0 failed; ...").
fn count(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Builds release binaries and runs benchmark `bin`, appending to target/bench/<name>.json.
fn bench(bin: &str, name: &str, extra: &[String]) -> anyhow::Result<()> {
    require_root("cargo xtask bench")?;
    // A heap profile needs the daemon built with DHAT, and line tables so its stacks name the
    // inlined functions too.
    let heap_profile = extra.iter().any(|a| a == "--heap-profile");
    let mut daemon = vec![
        "build",
        "--release",
        "-p",
        "l3lb-userspace",
        "--bin",
        "l3lb",
    ];
    if heap_profile {
        daemon.extend(["--features", "dhat-heap"]);
        // SAFETY: single-threaded at this point; only the child cargo reads it.
        unsafe { std::env::set_var("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only") };
    }
    cargo(&daemon)?;
    // SAFETY: as above.
    unsafe { std::env::remove_var("CARGO_PROFILE_RELEASE_DEBUG") };
    cargo(&["build", "--release", "-p", "l3lb-tests", "--bins"])?;
    let root = workspace_root();
    let out = root.join(format!("target/bench/{name}.json"));
    let status = Command::new(root.join("target/release").join(bin))
        .arg("--out")
        .arg(&out)
        .args(extra)
        .env("L3LB_BIN", root.join("target/release/l3lb"))
        .env("L3LB_ECHO_BIN", root.join("target/release/l3lb-echo"))
        .status()
        .with_context(|| format!("cannot run {bin}"))?;
    if !status.success() {
        bail!("{name} benchmark failed ({status})");
    }
    Ok(())
}

fn demo() -> anyhow::Result<()> {
    require_root("cargo xtask demo")?;
    cargo(&["build", "--bins"])?;
    let bin = workspace_root().join("target/debug/l3lb");
    // SAFETY: single-threaded at this point; the child cargo inherits it.
    unsafe { std::env::set_var("L3LB_BIN", &bin) };
    cargo(&["run", "-q", "-p", "l3lb-tests", "--bin", "l3lb-demo"])
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_come_from_libtest_summaries() {
        let ok =
            "ok. 23 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.06s";
        assert_eq!((count(ok, " passed"), count(ok, " failed")), (23, 0));
        let bad =
            "FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s";
        assert_eq!((count(bad, " passed"), count(bad, " failed")), (3, 2));
    }
}
