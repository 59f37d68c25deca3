use anyhow::Context as _;
use clap::Parser as _;
use l3lb_userspace::{
    addresses::Netlink,
    config::{Cli, Command, Config},
    daemon::{allocate, run},
    datapath::{self, Datapath},
    metrics::{Metrics, http::serve as serve_metrics},
    reconcile::Reconciler,
    stats,
};
use prometheus_client::registry::Registry;
use tracing::info;

// One thread whatever the node's core count: the daemon's work is small and mostly waiting, and
// every worker thread grows a malloc arena of its own (at 10,000 Services two workers cost 20 MB
// of RSS over one thread, with the same change-to-applied latency).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Cli { command } = Cli::parse();
    match command {
        Command::Run(args) => {
            let config = Config::try_from(args)?;
            info!(node = %config.node_name, prefixes = ?config.prefixes, interface = %config.interface,
                uplinks = ?config.uplinks, "starting l3lb");
            let client = kube::Client::try_default().await.context(
                "no Kubernetes client configuration (in-cluster service account or KUBECONFIG)",
            )?;
            let mut datapath = Datapath::attach_pinned(&config.uplinks, &config.bpffs_dir)
                .context("cannot set up the datapath")?;
            datapath
                .set_prefixes(&config.prefixes)
                .context("cannot configure the datapath's VIP prefixes")?;
            // Translated packets go straight to pod interfaces that take redirected frames.
            datapath::redirect::spawn_refresh(config.bpffs_dir.clone());
            let addresses = Netlink::new(&config.interface, config.address_lifetime)?;
            addresses.check_prefixes(&config.prefixes).await?;
            let metrics = Metrics::default();
            if let Some(addr) = config.metrics_addr {
                let mut registry = Registry::default();
                metrics.register(&mut registry);
                serve_metrics(addr, registry, metrics.health.clone()).await?;
                info!(%addr, "serving /metrics, /healthz, /readyz");
            }
            let reconciler = Reconciler::new(config, datapath, addresses, metrics);
            run(client, reconciler).await
        }
        Command::Allocate(args) => {
            let config = args.into_config(hostname())?;
            let allocator = &config.allocator;
            info!(identity = %allocator.identity, prefixes = ?allocator.prefixes, "starting the l3lb allocator");
            let client = kube::Client::try_default().await.context(
                "no Kubernetes client configuration (in-cluster service account or KUBECONFIG)",
            )?;
            let metrics = Metrics::default();
            if let Some(addr) = config.metrics_addr {
                serve_metrics(addr, allocator_registry(&metrics), metrics.health.clone()).await?;
                info!(%addr, "serving /metrics, /healthz, /readyz");
            }
            allocate(client, allocator, metrics).await
        }
        Command::Stats { uplink, frontends } => {
            if frontends {
                let per_frontend = stats::attached_frontend_stats(&uplink).await?;
                print!("{}", stats::render_frontends(&per_frontend));
            } else {
                let counters = stats::attached_counters(&uplink).await?;
                print!("{}", stats::render(&counters));
            }
            Ok(())
        }
        Command::Cleanup { bpffs_dir, uplinks } => {
            let done = datapath::cleanup(&bpffs_dir, &uplinks)?;
            info!(dir = %bpffs_dir.display(), unpinned = done.removed.len(),
                dir_removed = done.dir_removed, "cleanup done");
            Ok(())
        }
    }
}

/// This host's name (a pod's name, in a pod), the allocator's default identity.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}

/// What `l3lb allocate` has to show: its watches' errors and its dropped Events (the node's
/// datapath and reconcile metrics would only read 0 there).
fn allocator_registry(metrics: &Metrics) -> Registry {
    let mut registry = Registry::default();
    let r = registry.sub_registry_with_prefix("l3lb");
    r.register(
        "watch_errors",
        "Kubernetes watch errors (retried with backoff), by resource",
        metrics.watch_errors.clone(),
    );
    r.register(
        "events_dropped",
        "Normal Events not published because the queue to the API server was full",
        metrics.events_dropped.clone(),
    );
    registry
}
