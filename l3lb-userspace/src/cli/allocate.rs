//! `l3lb allocate`: only the address allocator, as its own small Deployment with its own
//! ServiceAccount (the only identity that may write Service status).
use std::time::Duration;

use clap::Args;
use ipnet::IpNet;
use prometheus_client::registry::Registry;
use tracing::info;

use super::{
    ConfigError, kube_client,
    parse::{ListenAddr, parse_duration, parse_listen_addr},
    shared::{ClassArgs, LeaseArgs, check_networks, check_resync},
};
use crate::{
    core::config::{AllocateConfig, AllocatorConfig},
    daemon,
    metrics::{Metrics, http::serve as serve_metrics},
};

/// Arguments of `l3lb allocate`.
#[derive(Debug, Args)]
pub struct AllocateArgs {
    /// Holder identity in the Lease and reporting instance of the Events; unique per replica.
    /// Default: the hostname (a pod's name).
    #[arg(long, env = "L3LB_IDENTITY")]
    pub identity: Option<String>,

    /// VIP prefix addresses may be allocated from (repeatable; comma-separated in the env var):
    /// the nodes' --prefix. Pool addresses outside every prefix are not handed out.
    #[arg(
        long = "prefix",
        env = "L3LB_PREFIX",
        value_delimiter = ',',
        required = true
    )]
    pub prefixes: Vec<IpNet>,

    #[command(flatten)]
    pub class: ClassArgs,

    #[command(flatten)]
    pub lease: LeaseArgs,

    /// An allocation pass at least this often while leading (besides every Service or pool
    /// change).
    #[arg(long, env = "L3LB_RESYNC_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// Listen address for Prometheus /metrics, /healthz (alive) and /readyz (the Service and
    /// pool watches listed once); `off` disables the listener.
    #[arg(long, env = "L3LB_METRICS_ADDR", default_value = "0.0.0.0:9465", value_parser = parse_listen_addr)]
    pub metrics_addr: ListenAddr,
}

impl AllocateArgs {
    /// Validates the arguments; `hostname` is the identity when --identity is not given.
    pub fn into_config(self, hostname: Option<String>) -> Result<AllocateConfig, ConfigError> {
        let identity = self
            .identity
            .or(hostname)
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
            .ok_or(ConfigError::EmptyIdentity)?;
        check_networks(&self.prefixes)?;
        check_resync(self.resync_interval)?;
        Ok(AllocateConfig {
            allocator: AllocatorConfig {
                identity,
                prefixes: self.prefixes,
                class: self.class.filter()?,
                lease: self.lease.config()?,
                resync_interval: self.resync_interval,
            },
            metrics_addr: self.metrics_addr.0,
        })
    }
}

/// Runs the allocator until SIGTERM (which releases a held Lease).
pub async fn run(args: AllocateArgs) -> anyhow::Result<()> {
    let config = args.into_config(hostname())?;
    let allocator = &config.allocator;
    info!(identity = %allocator.identity, prefixes = ?allocator.prefixes, "starting the l3lb allocator");
    let client = kube_client().await?;
    let metrics = Metrics::default();
    if let Some(addr) = config.metrics_addr {
        serve_metrics(addr, allocator_registry(&metrics), metrics.health.clone()).await?;
        info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    daemon::allocate(client, allocator, metrics).await
}

/// This host's name (a pod's name, in a pod), the allocator's default identity.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}

/// What `l3lb allocate` has to show: its passes, its watches' errors and its dropped Events (the
/// node's datapath and reconcile metrics would only read 0 there).
fn allocator_registry(metrics: &Metrics) -> Registry {
    let mut registry = Registry::default();
    let r = registry.sub_registry_with_prefix("l3lb");
    r.register(
        "allocation_passes",
        "Allocation passes this process ran while it held the allocator Lease",
        metrics.allocation_passes.clone(),
    );
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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        core::class::ClassFilter,
    };

    fn allocate(extra: &[&str], hostname: Option<&str>) -> Result<AllocateConfig, ConfigError> {
        let base = ["l3lb", "allocate", "--prefix=198.51.100.0/24"];
        let cli = Cli::try_parse_from(base.iter().chain(extra)).unwrap();
        let Command::Allocate(args) = cli.command else {
            unreachable!()
        };
        args.into_config(hostname.map(str::to_owned))
    }

    #[test]
    fn allocate_needs_no_node_and_takes_its_identity_from_the_hostname() {
        let c = allocate(&[], Some("l3lb-allocator-7d9f-x2")).unwrap();
        assert_eq!(c.allocator.identity, "l3lb-allocator-7d9f-x2");
        assert_eq!(c.allocator.lease.name, "l3lb-allocator");
        assert_eq!(c.allocator.lease.duration, Duration::from_secs(15));
        assert_eq!(c.allocator.resync_interval, Duration::from_secs(20));
        assert_eq!(
            c.allocator.class,
            ClassFilter {
                default: true,
                ..ClassFilter::default()
            }
        );
        let c = allocate(&["--default-load-balancer=false"], Some("h")).unwrap();
        assert!(!c.allocator.class.default);
        assert_eq!(c.metrics_addr, Some("0.0.0.0:9465".parse().unwrap()));
        let c = allocate(
            &[
                "--identity=a1",
                "--default-load-balancer",
                "--lease-namespace=lb",
                "--metrics-addr=off",
            ],
            Some("host"),
        )
        .unwrap();
        assert_eq!(c.allocator.identity, "a1");
        assert!(c.allocator.class.default);
        assert_eq!(c.allocator.lease.namespace.as_deref(), Some("lb"));
        assert_eq!(c.metrics_addr, None);
        assert_eq!(allocate(&[], None), Err(ConfigError::EmptyIdentity));
        assert_eq!(
            allocate(&["--identity= "], None),
            Err(ConfigError::EmptyIdentity)
        );
        assert_eq!(
            allocate(&["--lease-duration=1s"], Some("h")),
            Err(ConfigError::LeaseTooShort)
        );
        assert!(matches!(
            allocate(&["--prefix=198.51.100.1/24"], Some("h")),
            Err(ConfigError::HostBits { .. })
        ));
    }
}
