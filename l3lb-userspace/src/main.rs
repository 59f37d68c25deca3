//! The `l3lb` binary: see [`l3lb_userspace::cli`].
use clap::Parser as _;
use l3lb_userspace::cli::{Cli, execute};

/// With `--features dhat-heap` (heap profiles for the benchmark), DHAT tracks every allocation.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

// One thread whatever the node's core count: the daemon's work is small and mostly waiting, and
// every worker thread grows a malloc arena of its own (at 10,000 Services two workers cost 20 MB
// of RSS over one thread, with the same change-to-applied latency).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // Written when it is dropped, as main returns (SIGTERM ends the daemon through main too).
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder()
        .file_name(std::env::var_os("L3LB_DHAT_FILE").unwrap_or_else(|| "dhat-heap.json".into()))
        .build();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    execute(Cli::parse()).await
}
