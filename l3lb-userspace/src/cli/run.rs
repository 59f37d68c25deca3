//! `l3lb run`: the node daemon (and, unless `--allocator=false`, the allocator beside it).
use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{ArgAction, Args};
use ipnet::IpNet;
use prometheus_client::registry::Registry;
use tracing::info;

use super::{
    ConfigError, kube_client,
    parse::{Lifetime, ListenAddr, parse_duration, parse_lifetime, parse_listen_addr},
    shared::{ClassArgs, LeaseArgs, check_networks, check_resync},
};
use crate::{
    core::config::Config,
    core::ownership::ExternalIps,
    daemon::{self, pass::Reconciler},
    metrics::{Metrics, http::serve as serve_metrics},
    node::addresses::Netlink,
    node::datapath::Datapath,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// This node's name, as in EndpointSlice endpoints' `nodeName` (the downward API's spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,

    /// VIP prefix l3lb manages (repeatable; comma-separated in the env var). VIPs outside every
    /// prefix are refused; addresses on --interface inside a prefix that no Service wants are removed;
    /// nothing outside is ever touched.
    #[arg(
        long = "prefix",
        env = "L3LB_PREFIX",
        value_delimiter = ',',
        required = true
    )]
    pub prefixes: Vec<IpNet>,

    /// Interface VIPs are added to; FRR redistributes its connected routes.
    #[arg(long, env = "L3LB_INTERFACE", default_value = "lo")]
    pub interface: String,

    /// Listen address for Prometheus /metrics, /healthz (alive) and /readyz (watches synced and a
    /// pass applied without failures); `off` disables the listener.
    #[arg(long, env = "L3LB_METRICS_ADDR", default_value = "0.0.0.0:9465", value_parser = parse_listen_addr)]
    pub metrics_addr: ListenAddr,

    /// Kernel lifetime of the VIP addresses, renewed about every --resync-interval: if the daemon
    /// dies or hangs, its VIPs expire and FRR withdraws them, while a quick restart keeps them.
    /// `0` or `forever`: no lifetime. Must be more than twice --resync-interval.
    #[arg(long, env = "L3LB_ADDRESS_LIFETIME", default_value = "60s", value_parser = parse_lifetime)]
    pub address_lifetime: Lifetime,

    /// Interface where client traffic arrives; the XDP and TC programs attach here (repeatable;
    /// comma-separated in the env var).
    #[arg(
        long = "uplink",
        env = "L3LB_UPLINK",
        value_delimiter = ',',
        required = true
    )]
    pub uplinks: Vec<String>,

    /// How long a frontend stays in the maps after its VIP is withdrawn (its Service gone, or
    /// all its local endpoints terminating), so in-flight flows drain.
    #[arg(long, env = "L3LB_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Full reconcile pass at least this often, which also repairs drift (an address removed by hand)
    /// and renews the VIPs' --address-lifetime (so less than half of it).
    #[arg(long, env = "L3LB_RESYNC_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub resync_interval: Duration,

    #[command(flatten)]
    pub class: ClassArgs,

    #[command(flatten)]
    pub lease: LeaseArgs,

    /// Which `spec.externalIPs` of l3lb's Services are served. `pool`: only addresses inside an
    /// L3lbPool that allows the Service (its namespaces and serviceSelector), so the pools'
    /// owner decides who may announce what. `prefix`: any address inside --prefix, from any
    /// Service: whoever can edit a Service in any namespace can then announce any free address
    /// of the range (CVE-2020-8554 class); only for clusters whose Service authors are all
    /// trusted. `none`: no externalIPs. An address the allocator granted to a Service is never
    /// served for another Service's externalIPs.
    #[arg(long, env = "L3LB_EXTERNAL_IPS", value_enum, default_value_t = ExternalIps::Pool)]
    pub external_ips: ExternalIps,

    /// Where this node's pods get their addresses (repeatable; comma-separated in the env var).
    /// Endpoints outside are never programmed (anyone who can write an EndpointSlice could point
    /// a Service anywhere). Default: the Node's `spec.podCIDRs`; set it when the CNI allocates
    /// pod addresses from its own pools (Calico IPAM, Cilium cluster-pool) instead. Loopback,
    /// link-local, the node's own addresses and --prefix are refused whatever this says.
    #[arg(long = "pod-cidr", env = "L3LB_POD_CIDR", value_delimiter = ',')]
    pub pod_cidrs: Vec<IpNet>,

    /// bpffs directory where the maps and the XDP/TC links are pinned, so forwarding continues
    /// while the daemon is down or restarting and the next start reuses them (the programs are
    /// replaced atomically). Not on a bpffs: one is mounted there. `l3lb cleanup` removes it all.
    #[arg(long, env = "L3LB_BPFFS_DIR", default_value = crate::node::datapath::DEFAULT_BPFFS_DIR)]
    pub bpffs_dir: PathBuf,

    /// Redirect DNATed frames straight into the pod's interface (XDP_REDIRECT) where its driver
    /// takes them, instead of the kernel's forwarding path. Faster, but redirected packets skip
    /// the node's IP stack: host netfilter and tc do not see them, so iptables-based
    /// NetworkPolicy and host firewall rules are not applied to them. Off: every DNATed packet
    /// takes the kernel's forwarding path.
    #[arg(long, env = "L3LB_XDP_REDIRECT")]
    pub xdp_redirect: bool,

    /// Log the XDP/TC programs' rare events (a flow the tables could not record, a refused
    /// redirect, a state that should not occur; at most one a second per CPU and kind, never one
    /// per packet) in this daemon's log, target `l3lb::datapath`. Off: the programs do not log.
    #[arg(long, env = "L3LB_BPF_LOG")]
    pub bpf_log: bool,

    /// Unix socket (root only) where `l3lb status` and `l3lb explain` ask this daemon what it
    /// serves and why.
    #[arg(long, env = "L3LB_CONTROL_SOCKET", default_value = crate::daemon::control::DEFAULT_CONTROL_SOCKET)]
    pub control_socket: PathBuf,

    /// L2 mode (pools with `advertisement: l2`): the namespace of the nodes' liveness Leases
    /// (`l3lb-node-<node>`), renewed by each node every second and watched by all. Best its own
    /// namespace: the nodes need write access to every Lease in it. Default: the client's
    /// namespace (in a pod, the pod's).
    #[arg(long, env = "L3LB_L2_LEASE_NAMESPACE")]
    pub l2_lease_namespace: Option<String>,

    /// Also stand for the allocator Lease and, while holding it, allocate addresses (needs
    /// `services/status` patch rights). `false` when `l3lb allocate` runs separately, so the
    /// nodes' identity cannot write any Service's status.
    #[arg(long, env = "L3LB_ALLOCATOR", default_value_t = true, action = ArgAction::Set)]
    pub allocator: bool,
}

impl TryFrom<RunArgs> for Config {
    type Error = ConfigError;

    fn try_from(a: RunArgs) -> Result<Self, ConfigError> {
        if a.node_name.trim().is_empty() {
            return Err(ConfigError::EmptyNodeName);
        }
        check_networks(a.prefixes.iter().chain(&a.pod_cidrs))?;
        if let Some(u) = a.uplinks.iter().find(|u| **u == a.interface) {
            return Err(ConfigError::UplinkIsInterface(u.clone()));
        }
        check_resync(a.resync_interval)?;
        if let Lifetime(Some(lifetime)) = a.address_lifetime
            && a.resync_interval >= lifetime / 2
        {
            return Err(ConfigError::LifetimeTooShort {
                lifetime,
                resync: a.resync_interval,
            });
        }
        let mut uplinks = a.uplinks;
        uplinks.dedup();
        Ok(Config {
            node_name: a.node_name,
            prefixes: a.prefixes,
            interface: a.interface,
            metrics_addr: a.metrics_addr.0,
            address_lifetime: a.address_lifetime.0,
            uplinks,
            drain_timeout: a.drain_timeout,
            resync_interval: a.resync_interval,
            bpffs_dir: a.bpffs_dir,
            class: a.class.filter()?,
            lease: a.lease.config()?,
            external_ips: a.external_ips,
            pod_cidrs: a.pod_cidrs,
            allocator: a.allocator,
            xdp_redirect: a.xdp_redirect,
            bpf_log: a.bpf_log,
            control_socket: a.control_socket,
            l2_lease_namespace: a.l2_lease_namespace,
        })
    }
}

/// Sets up the datapath, the addresses and the metrics listener, then runs the daemon until
/// SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::try_from(args)?;
    info!(node = %config.node_name, prefixes = ?config.prefixes, interface = %config.interface,
        uplinks = ?config.uplinks, "starting l3lb");
    let client = kube_client().await?;
    // The first pass gives the maps their prefixes and redirect targets (the Configure step).
    let mut datapath = Datapath::attach_pinned(&config.uplinks, &config.bpffs_dir)
        .context("cannot set up the datapath")?;
    // Forwards while it lives: until the daemon stops.
    let _bpf_log = match config.bpf_log {
        true => {
            let forwarder = datapath
                .forward_log()
                .context("cannot forward the programs' log (--bpf-log)")?;
            info!("forwarding the programs' rare events to the log (--bpf-log)");
            Some(forwarder)
        }
        false => None,
    };
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
    daemon::run(client, reconciler).await
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{
        cli::{Cli, Command},
        core::class::ClassFilter,
    };

    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let base = [
            "l3lb",
            "run",
            "--node-name=n1",
            "--prefix=198.51.100.0/24",
            "--uplink=eth0",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra)).unwrap();
        let Command::Run(args) = cli.command else {
            unreachable!()
        };
        Config::try_from(args)
    }

    #[test]
    fn class_and_lease_flags() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            c.class,
            ClassFilter {
                default: true,
                ..ClassFilter::default()
            },
            "l3lb's class, and classless Services too, as other implementations do"
        );
        for opt_out in [
            &["--default-load-balancer", "false"][..],
            &["--default-load-balancer=false"],
        ] {
            assert!(!parse(opt_out).unwrap().class.default, "{opt_out:?}");
        }
        assert!(parse(&["--default-load-balancer"]).unwrap().class.default);
        assert_eq!(c.lease.name, "l3lb-allocator");
        assert_eq!(c.lease.namespace, None);
        assert_eq!(c.lease.duration, Duration::from_secs(15));
        let c = parse(&[
            "--load-balancer-class=example.com/lb",
            "--default-load-balancer",
            "--lease-namespace=lb",
            "--lease-duration=30s",
        ])
        .unwrap();
        assert_eq!(
            c.class,
            ClassFilter {
                class: "example.com/lb".into(),
                default: true
            }
        );
        assert_eq!(c.lease.namespace.as_deref(), Some("lb"));
        assert_eq!(c.lease.duration, Duration::from_secs(30));
        assert_eq!(
            parse(&["--lease-duration=2s"]),
            Err(ConfigError::LeaseTooShort)
        );
        assert_eq!(
            parse(&["--load-balancer-class= "]),
            Err(ConfigError::EmptyClass)
        );
    }

    #[test]
    fn run_allocates_unless_told_not_to() {
        assert!(
            parse(&[]).unwrap().allocator,
            "single-binary mode by default"
        );
        assert!(!parse(&["--allocator=false"]).unwrap().allocator);
        assert!(!parse(&["--allocator", "false"]).unwrap().allocator);
        assert!(parse(&["--allocator=true"]).unwrap().allocator);
        let base = ["l3lb", "run", "--node-name=n1", "--prefix=198.51.100.0/24"];
        let bad = Cli::try_parse_from(base.iter().chain(&["--uplink=eth0", "--allocator=no"]));
        assert!(bad.is_err(), "only true or false");
        let c = parse(&["--lease-namespace=lb"]).unwrap().allocator_config();
        assert_eq!(c.identity, "n1", "a node allocates under its own name");
        assert_eq!(c.lease.namespace.as_deref(), Some("lb"));
        assert_eq!(c.prefixes, ["198.51.100.0/24".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn xdp_redirect_is_opt_in() {
        assert!(
            !parse(&[]).unwrap().xdp_redirect,
            "the kernel's path by default"
        );
        assert!(parse(&["--xdp-redirect"]).unwrap().xdp_redirect);
    }

    #[test]
    fn bpf_log_is_opt_in() {
        assert!(!parse(&[]).unwrap().bpf_log, "the programs do not log");
        assert!(parse(&["--bpf-log"]).unwrap().bpf_log);
    }
}
