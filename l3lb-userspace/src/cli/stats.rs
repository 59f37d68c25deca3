//! `l3lb stats`: the datapath's counters, read from the programs attached to an uplink (an
//! operator tool, as root in the node's network namespace).
use clap::Args;

use std::collections::BTreeMap;

use l3lb_common::{Counter, Stat};

use crate::{core::model::FrontendId, node::datapath::attached};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The uplink whose l3lb XDP program to read.
    #[arg(long, env = "L3LB_UPLINK")]
    pub uplink: String,
    /// Packets and bytes DNATed per frontend (VIP:port/proto) instead of per verdict.
    #[arg(long)]
    pub frontends: bool,
}

pub async fn run(args: StatsArgs) -> anyhow::Result<()> {
    if args.frontends {
        let per_frontend = attached::attached_frontend_stats(&args.uplink).await?;
        print!("{}", render_frontends(&per_frontend));
    } else {
        let counters = attached::attached_counters(&args.uplink).await?;
        print!("{}", render(&counters));
    }
    Ok(())
}

/// A table for people: one line per counter.
pub fn render(counters: &BTreeMap<Counter, Stat>) -> String {
    table(
        "counter",
        24,
        counters.iter().map(|(c, s)| (c.name().to_owned(), s)),
    )
}

/// A table for people: one line per frontend.
pub fn render_frontends(stats: &BTreeMap<FrontendId, Stat>) -> String {
    table(
        "frontend",
        48,
        stats.iter().map(|(id, s)| (id.to_string(), s)),
    )
}

/// Named rows of packets and bytes, the name column `width` wide.
fn table<'a>(what: &str, width: usize, rows: impl Iterator<Item = (String, &'a Stat)>) -> String {
    let mut out = format!("{what:<width$} {:>14} {:>16}\n", "packets", "bytes");
    for (name, stat) in rows {
        out += &format!("{name:<width$} {:>14} {:>16}\n", stat.packets, stat.bytes);
    }
    out
}
