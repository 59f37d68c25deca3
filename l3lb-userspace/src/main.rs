use anyhow::Context as _;
use clap::Parser as _;
use l3lb_userspace::{
    addresses::Netlink,
    config::{Cli, Command, Config},
    daemon::run,
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
            if config.xdp_redirect {
                // Translated packets go straight to pod interfaces that take redirected frames.
                datapath::redirect::spawn_refresh(config.bpffs_dir.clone());
            } else {
                // Also what an earlier run with --xdp-redirect left in the pinned maps.
                datapath::redirect::disable(&config.bpffs_dir)
                    .context("cannot turn XDP redirect off")?;
            }
            let addresses = Netlink::new(&config.interface, config.address_lifetime)?;
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
