//! `cargo xtask bench datapath`: per-packet cost of the XDP program through BPF_PROG_TEST_RUN,
//! then the same load end to end through l3lb's XDP path and through iptables DNAT on the lab.
//! Appends one JSON object per row to the output file and prints a table.
use std::{io::Write as _, path::PathBuf};

use anyhow::bail;
use serde_json::{Value, json};

mod e2e;
mod testrun;

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
    let mut rows = testrun::rows()?;
    let rates = if e2e {
        let (kernel, xdp) = e2e::through_l3lb()?;
        let ipt = e2e::through_iptables()?;
        // The e2e_xdp_* rows redirect into the pod's veth (as they always measured); the
        // e2e_xdp_kernel_* rows hand DNATed packets to the kernel's path (the default).
        rows.extend([
            e2e_row("e2e_xdp_udp64", "pps", xdp.udp_pps, xdp.udp_paths, true)?,
            json!({"name": "e2e_iptables_udp64", "pps": ipt.udp_pps, "repeat": 1}),
            e2e_row("e2e_xdp_tcp_cps", "cps", xdp.tcp_cps, xdp.tcp_paths, true)?,
            json!({"name": "e2e_iptables_tcp_cps", "cps": ipt.tcp_cps, "repeat": 1}),
            e2e_row(
                "e2e_xdp_kernel_udp64",
                "pps",
                kernel.udp_pps,
                kernel.udp_paths,
                false,
            )?,
            e2e_row(
                "e2e_xdp_kernel_tcp_cps",
                "cps",
                kernel.tcp_cps,
                kernel.tcp_paths,
                false,
            )?,
        ]);
        Some((xdp, kernel, ipt))
    } else {
        None
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)?;
    println!("datapath benchmark (appended to {})", out.display());
    println!(
        "  {:<24} {:>12} {:>14} {:>10}",
        "name", "ns/packet", "pps or cps", "repeat"
    );
    for row in &rows {
        writeln!(file, "{row}")?;
        let num = |k: &str| {
            row[k]
                .as_f64()
                .map_or("-".to_owned(), |v| format!("{v:.1}"))
        };
        let rate = if row["cps"].is_null() {
            num("pps")
        } else {
            num("cps")
        };
        println!(
            "  {:<24} {:>12} {:>14} {:>10}",
            row["name"].as_str().unwrap_or("?"),
            num("ns_per_packet"),
            rate,
            row["repeat"]
        );
    }
    let ratio = |a: &Value, b: &Value| a.as_f64().zip(b.as_f64()).map_or(f64::NAN, |(a, b)| a / b);
    let noop = rows[0]["ns_per_packet"].clone();
    if let Some(est) = rows.iter().find(|r| r["name"] == "hit_tcp4_established") {
        println!(
            "  hit_tcp4_established / noop: {:.2}x",
            ratio(&est["ns_per_packet"], &noop)
        );
    }
    if let Some((xdp, kernel, ipt)) = rates {
        println!(
            "  e2e xdp / iptables: udp {:.2}x, tcp {:.2}x",
            xdp.udp_pps / ipt.udp_pps,
            xdp.tcp_cps / ipt.tcp_cps
        );
        println!(
            "  e2e xdp kernel path / iptables: udp {:.2}x, tcp {:.2}x",
            kernel.udp_pps / ipt.udp_pps,
            kernel.tcp_cps / ipt.tcp_cps
        );
    }
    Ok(())
}

/// An end-to-end row through l3lb, with the DNAT verdicts its packets got: it must have measured
/// the path its name says (redirected, or the kernel's), or the benchmark fails.
fn e2e_row(
    name: &str,
    unit: &str,
    rate: f64,
    paths: Option<e2e::Paths>,
    redirect: bool,
) -> anyhow::Result<Value> {
    let Some(p) = paths else {
        bail!("{name}: no verdict counters read");
    };
    let dnat = p.kernel + p.redirect;
    // Redirected: all but the odd packet before the neighbour is known. Kernel path: none.
    let right = match redirect {
        true => dnat > 0 && p.redirect * 100 >= dnat * 99,
        false => dnat > 0 && p.redirect == 0,
    };
    if !right {
        bail!(
            "{name}: measured another path than its name says: {} xdp_dnat_pass, {} xdp_redirect",
            p.kernel,
            p.redirect
        );
    }
    Ok(
        json!({"name": name, unit: rate, "repeat": 1, "xdp_redirect": redirect,
        "xdp_dnat_pass_packets": p.kernel, "xdp_redirect_packets": p.redirect}),
    )
}
