//! `l3lb stats`: the datapath's counters, read from the programs attached to an uplink (an
//! operator tool, as root in the node's network namespace).
use clap::Args;

use crate::stats;

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
        let per_frontend = stats::attached_frontend_stats(&args.uplink).await?;
        print!("{}", stats::render_frontends(&per_frontend));
    } else {
        let counters = stats::attached_counters(&args.uplink).await?;
        print!("{}", stats::render(&counters));
    }
    Ok(())
}
