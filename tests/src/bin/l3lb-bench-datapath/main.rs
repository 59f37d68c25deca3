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
        let xdp = e2e::through_l3lb()?;
        let ipt = e2e::through_iptables()?;
        rows.extend([
            json!({"name": "e2e_xdp_udp64", "pps": xdp.udp_pps, "repeat": 1}),
            json!({"name": "e2e_iptables_udp64", "pps": ipt.udp_pps, "repeat": 1}),
            json!({"name": "e2e_xdp_tcp_cps", "cps": xdp.tcp_cps, "repeat": 1}),
            json!({"name": "e2e_iptables_tcp_cps", "cps": ipt.tcp_cps, "repeat": 1}),
        ]);
        Some((xdp, ipt))
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
    if let Some((xdp, ipt)) = rates {
        println!(
            "  e2e xdp / iptables: udp {:.2}x, tcp {:.2}x",
            xdp.udp_pps / ipt.udp_pps,
            xdp.tcp_cps / ipt.tcp_cps
        );
    }
    Ok(())
}
