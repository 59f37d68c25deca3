//! `l3lb cleanup`: uninstall what `l3lb run` left pinned (links, and so the programs on the
//! uplinks, and maps). VIPs still on the interface are the operator's to remove.

use clap::Args;
use tracing::info;

use crate::node::datapath;

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The pin directory `l3lb run` used.
    #[arg(long, env = "L3LB_BPFFS_DIR", default_value = crate::node::datapath::DEFAULT_BPFFS_DIR)]
    pub bpffs_dir: std::path::PathBuf,
    /// Uplinks to detach from (repeatable; comma-separated in the env var). Links pinned for
    /// other uplinks in the directory are removed too.
    #[arg(long = "uplink", env = "L3LB_UPLINK", value_delimiter = ',')]
    pub uplinks: Vec<String>,
}

pub fn run(args: CleanupArgs) -> anyhow::Result<()> {
    let done = datapath::cleanup(&args.bpffs_dir, &args.uplinks)?;
    info!(dir = %args.bpffs_dir.display(), unpinned = done.removed.len(),
        dir_removed = done.dir_removed, "cleanup done");
    Ok(())
}
