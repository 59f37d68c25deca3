//! `cargo xtask bench datapath`: per-packet cost of the XDP program through BPF_PROG_TEST_RUN,
//! then the same load end to end through l3lb's XDP path and through iptables DNAT on the lab,
//! the UDP load fed by our traffic generator as a NIC would feed it. Appends one JSON object per
//! row to the output file and prints a table; progress goes to stderr.
use std::{io::Write as _, path::PathBuf};

use anyhow::{Context as _, bail};
use l3lb_tests::{lab::ScratchNs, netns::in_netns};
use serde_json::{Value, json};

mod e2e;
mod fib;
mod generator;
mod lru;
mod progress;
mod testrun;

use progress::Progress;

fn main() -> anyhow::Result<()> {
    let mut out: PathBuf = "target/bench/datapath.json".into();
    let mut e2e = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => match args.next() {
                Some(path) => out = path.into(),
                None => bail!("--out needs a file"),
            },
            // While iterating on the programs: the BPF_PROG_TEST_RUN rows alone.
            "--no-e2e" => e2e = false,
            _ => bail!("usage: l3lb-bench-datapath [--out FILE] [--no-e2e]"),
        }
    }
    let progress = Progress::new(1 + if e2e { e2e::STEPS } else { 0 });
    progress.step("BPF_PROG_TEST_RUN rows (about 1,000,000 runs each)");
    let ns = ScratchNs::new("fib")?;
    fib::setup(&ns).context("preparing the FIB row's namespace")?;
    let mut rows = in_netns(ns.name(), testrun::rows)??;
    // Before the labs: whether the generator can feed the UDP rows at all.
    let refused = if e2e {
        in_netns(ns.name(), generator::probe)??
    } else {
        None
    };
    drop(ns);
    if let Some(reason) = refused {
        eprintln!(
            "live frames unavailable ({reason}): the three e2e UDP rows need a kernel or sandbox \
             that allows them; recording them as unavailable and measuring the TCP rows"
        );
    }
    let noop = rows[0]["ns_per_packet"].as_f64().unwrap_or(f64::NAN);
    for row in &mut rows {
        if let Some(ns) = row["ns_per_packet"].as_f64() {
            row["vs_noop"] = json!(ns / noop);
        }
    }
    let mut file = l3lb_tests::bench::rows_file(&out)?;
    // Appended now: a failing end-to-end phase keeps them.
    for row in &rows {
        writeln!(file, "{row}")?;
    }
    let written = rows.len();
    let rates = if e2e {
        let (kernel, xdp) = e2e::through_l3lb(&progress, refused.is_none())?;
        let ipt = e2e::through_iptables(&progress, refused.is_none())?;
        let udp = |name: &str, r: &e2e::Rates, path| match refused {
            Some(reason) => Ok(json!({"name": name, "unavailable": reason})),
            None => udp_row(name, r, &ipt, path),
        };
        rows.extend([
            udp("e2e_xdp_redirect_udp64", &xdp, Path::Redirect)?,
            udp("e2e_xdp_pass_udp64", &kernel, Path::Kernel)?,
            udp("e2e_iptables_udp64", &ipt, Path::Iptables)?,
            // The e2e_xdp_* rows redirect into the pod's veth (as they always measured); the
            // e2e_xdp_kernel_* rows hand DNATed packets to the kernel's path (the default).
            tcp_row("e2e_xdp_tcp_cps", xdp.tcp_cps, xdp.tcp_paths, true)?,
            json!({"name": "e2e_iptables_tcp_cps", "cps": ipt.tcp_cps, "repeat": 1}),
            tcp_row(
                "e2e_xdp_kernel_tcp_cps",
                kernel.tcp_cps,
                kernel.tcp_paths,
                false,
            )?,
        ]);
        Some((xdp, kernel, ipt))
    } else {
        None
    };
    for row in &rows[written..] {
        writeln!(file, "{row}")?;
    }
    println!(
        "datapath benchmark (appended to {}, {:.0} s)",
        out.display(),
        progress.elapsed().as_secs_f64()
    );
    println!(
        "  {:<26} {:>10} {:>14} {:>8} {:>10}",
        "name", "ns/packet", "pps or cps", "loss %", "repeat"
    );
    for row in &rows {
        let name = row["name"].as_str().unwrap_or("?");
        if !row["unavailable"].is_null() {
            println!("  {name:<26} unavailable (no live frames)");
            continue;
        }
        let num = |k: &str, digits: usize| {
            row[k]
                .as_f64()
                .map_or("-".to_owned(), |v| format!("{v:.digits$}"))
        };
        let rate = if row["cps"].is_null() {
            num("pps", 0)
        } else {
            num("cps", 1)
        };
        println!(
            "  {:<26} {:>10} {:>14} {:>8} {:>10}",
            name,
            num("ns_per_packet", 1),
            rate,
            num("loss_pct", 2),
            row["repeat"]
        );
    }
    for name in [
        "hit_tcp4_established",
        "hit_tcp4_established_lru",
        "hit_tcp4_redirect_fib",
    ] {
        if let Some(r) = rows.iter().find(|r| r["name"] == name) {
            println!(
                "  {name} / noop: {:.2}x",
                r["vs_noop"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    if let Some((xdp, kernel, ipt)) = rates {
        if let (Some(x), Some(k), Some(i)) = (xdp.udp, kernel.udp, ipt.udp) {
            println!(
                "  e2e udp64 (generator) pps vs iptables DNAT: xdp redirect {:.2}x, xdp pass {:.2}x",
                x.pps() / i.pps(),
                k.pps() / i.pps()
            );
        }
        println!(
            "  e2e tcp cps vs iptables DNAT: xdp redirect {:.2}x, xdp kernel path {:.2}x",
            xdp.tcp_cps / ipt.tcp_cps,
            kernel.tcp_cps / ipt.tcp_cps
        );
    }
    Ok(())
}

/// The path a row's packets must have taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// l3lb's XDP, redirected into the pod's veth.
    Redirect,
    /// l3lb's XDP, then the kernel's forwarding path.
    Kernel,
    /// No XDP program; iptables DNAT.
    Iptables,
}

/// Whether the verdicts `p` (if read) say the packets took `path`: redirected, all but the odd
/// packet before the neighbour is known; the kernel's path, none redirected.
fn check_path(name: &str, p: Option<e2e::Paths>, path: Path) -> anyhow::Result<()> {
    let Some(p) = p else {
        bail!("{name}: no verdict counters read");
    };
    let dnat = p.kernel + p.redirect;
    let right = match path {
        Path::Redirect => dnat > 0 && p.redirect * 100 >= dnat * 99,
        Path::Kernel => dnat > 0 && p.redirect == 0,
        Path::Iptables => false,
    };
    if !right {
        bail!(
            "{name}: measured another path than its name says: {} xdp_dnat_pass, {} xdp_redirect",
            p.kernel,
            p.redirect
        );
    }
    Ok(())
}

/// A UDP row fed by the generator, with the verdicts (or, for iptables, its rule's matches)
/// that prove its path, and its rate against iptables' on the same run.
fn udp_row(name: &str, r: &e2e::Rates, ipt: &e2e::Rates, path: Path) -> anyhow::Result<Value> {
    let (Some(u), Some(base)) = (r.udp, ipt.udp) else {
        bail!("{name}: no UDP load measured");
    };
    if u.delivered == 0 {
        bail!("{name}: none of {} frames reached the pod", u.sent);
    }
    let mut row = json!({"name": name, "pps": u.pps(), "repeat": 1, "feed": "xdp_live_frames",
        "generator_batch": generator::BATCH, "generator_ns_per_frame": u.kernel_ns,
        "frames_sent": u.sent, "frames_delivered": u.delivered, "loss_pct": u.loss_pct(),
        "seconds": u.secs, "vs_iptables": u.pps() / base.pps()});
    match path {
        Path::Iptables => {
            let matched = r.iptables_rule_packets.unwrap_or(0);
            if matched == 0 {
                bail!("{name}: the iptables DNAT rule matched no packet");
            }
            row["xdp_program"] = false.into();
            row["iptables_dnat_rule_packets"] = matched.into();
        }
        _ => {
            check_path(name, r.udp_paths, path)?;
            let p = r.udp_paths.unwrap_or_default();
            row["xdp_redirect"] = (path == Path::Redirect).into();
            row["xdp_dnat_pass_packets"] = p.kernel.into();
            row["xdp_redirect_packets"] = p.redirect.into();
        }
    }
    Ok(row)
}

/// A TCP row through l3lb, with the DNAT verdicts its packets got: it must have measured the
/// path its name says (redirected, or the kernel's), or the benchmark fails.
fn tcp_row(
    name: &str,
    rate: f64,
    paths: Option<e2e::Paths>,
    redirect: bool,
) -> anyhow::Result<Value> {
    let path = if redirect {
        Path::Redirect
    } else {
        Path::Kernel
    };
    check_path(name, paths, path)?;
    let p = paths.unwrap_or_default();
    Ok(
        json!({"name": name, "cps": rate, "repeat": 1, "xdp_redirect": redirect,
        "xdp_dnat_pass_packets": p.kernel, "xdp_redirect_packets": p.redirect}),
    )
}
