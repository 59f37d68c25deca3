//! The daemon's heap at its peak, from the profile a daemon built with `--features dhat-heap`
//! writes when it exits (DHAT's JSON: program points with the bytes they held at the global
//! peak, `gb`, and their stacks as indices into a frame table).
use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use l3lb_tests::lab::Lab;
use serde_json::Value;

/// SIGTERM to the daemon `pid` (started by `lab`), then waits up to `grace` for it to exit.
pub fn stop_and_wait(lab: &mut Lab, pid: u32, grace: Duration) -> anyhow::Result<()> {
    let raw = libc::pid_t::try_from(pid)?;
    // SAFETY: kill(2) on a pid the lab spawned and has not reaped, so it cannot have been reused.
    if unsafe { libc::kill(raw, libc::SIGTERM) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SIGTERM to the daemon");
    }
    let deadline = Instant::now() + grace;
    while lab.is_running(pid)? {
        if Instant::now() > deadline {
            bail!("the daemon did not exit within {grace:?} of SIGTERM (writing its heap profile)");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Frames that only say "allocating": the first frame after them says who.
const PLUMBING: [&str; 12] = [
    "alloc::",
    "<alloc::",
    "core::",
    "<core::",
    "std::",
    "<std::",
    "dhat::",
    "<dhat::",
    "hashbrown::",
    "<hashbrown::",
    "serde",
    "<serde",
];

/// A frame as DHAT prints it ("0x1234: path::to::fn (file.rs:10:5)"), without its address.
fn name(frame: &str) -> &str {
    frame.split_once(": ").map_or(frame, |(_, f)| f)
}

/// The first frames of `stack` that are not allocation plumbing, at most `n`.
fn who(stack: &[&str], n: usize) -> String {
    let mut out: Vec<&str> = stack
        .iter()
        .map(|f| name(f))
        .filter(|f| !PLUMBING.iter().any(|p| f.starts_with(p)))
        .take(n)
        .collect();
    if out.is_empty() {
        out = stack.iter().map(|f| name(f)).take(n).collect();
    }
    out.join(" < ")
}

/// Prints the total at the peak and the top program points.
pub fn report(file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "no heap profile at {}: build the daemon with `cargo build --release -p \
             l3lb-userspace --features dhat-heap`",
            file.display()
        )
    })?;
    let profile: Value = serde_json::from_str(&text)?;
    let frames: Vec<&str> = profile["ftbl"]
        .as_array()
        .context("no ftbl")?
        .iter()
        .map(|f| f.as_str().unwrap_or("?"))
        .collect();
    let mut points: Vec<(u64, u64, String)> = profile["pps"]
        .as_array()
        .context("no pps")?
        .iter()
        .map(|pp| {
            let stack: Vec<&str> = pp["fs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| frames.get(i.as_u64()? as usize).copied())
                .collect();
            (
                pp["gb"].as_u64().unwrap_or(0),
                pp["gbk"].as_u64().unwrap_or(0),
                who(&stack, 3),
            )
        })
        .collect();
    let total: u64 = points.iter().map(|p| p.0).sum();
    let blocks: u64 = points.iter().map(|p| p.1).sum();
    // Program points are whole stacks; those with the same first frames are one entry.
    let mut by_who: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for (bytes, n, who) in points.drain(..) {
        let e = by_who.entry(who).or_default();
        e.0 += bytes;
        e.1 += n;
    }
    points = by_who.into_iter().map(|(w, (b, n))| (b, n, w)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.0));
    println!(
        "heap at its peak: {:.1} MB in {blocks} blocks ({})",
        total as f64 / 1e6,
        file.display()
    );
    for (bytes, n, who) in points.iter().take(15) {
        println!("  {:>8.2} MB {n:>8} blocks  {who}", *bytes as f64 / 1e6);
    }
    Ok(())
}
