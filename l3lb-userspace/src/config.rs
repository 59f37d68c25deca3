//! Command line and environment, validated once into a typed [`Config`].
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::class::ClassFilter;
use ipnet::IpNet;
use std::net::SocketAddr;

#[derive(Debug, Parser)]
#[command(
    name = "l3lb",
    version,
    about = "Anycast load balancer for bare-metal Kubernetes: XDP DNAT to local pods, VIPs advertised by FRR",
    long_about = "l3lb runs once per node. For every LoadBalancer Service VIP with a Ready endpoint on \
this node it programs eBPF maps so an XDP program on the uplink DNATs VIP:port straight to the local \
pod (keeping the client's source IP), and only then adds the VIP as a /32 on --interface, where FRR \
(`redistribute connected`, filtered to the VIP prefix) advertises it over BGP. Nodes with replicas \
announce the same VIP: anycast + ECMP, no leader node."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start; boxing `run`'s arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node daemon (needs CAP_NET_ADMIN, CAP_BPF and CAP_SYS_ADMIN; hostNetwork in a pod).
    Run(RunArgs),
    /// Print the datapath counters (packets and bytes per verdict: DNATed, passed, replies
    /// translated, ...; or per frontend with --frontends) of the l3lb programs attached to an
    /// uplink. Run it in the node's network namespace, as root.
    Stats {
        /// The uplink whose l3lb XDP program to read.
        #[arg(long, env = "L3LB_UPLINK")]
        uplink: String,
        /// Packets and bytes DNATed per frontend (VIP:port/proto) instead of per verdict.
        #[arg(long)]
        frontends: bool,
    },
    /// Uninstall: unpin the XDP and TC links of the uplinks (detaching the programs) and the maps
    /// that `l3lb run` left in --bpffs-dir, then remove the directory. Stop the daemon first.
    Cleanup {
        /// The pin directory `l3lb run` used.
        #[arg(long, env = "L3LB_BPFFS_DIR", default_value = crate::datapath::DEFAULT_BPFFS_DIR)]
        bpffs_dir: PathBuf,
        /// Uplinks to detach from (repeatable; comma-separated in the env var). Links pinned for
        /// other uplinks in the directory are removed too.
        #[arg(long = "uplink", env = "L3LB_UPLINK", value_delimiter = ',')]
        uplinks: Vec<String>,
    },
}

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

    /// `spec.loadBalancerClass` of the Services l3lb serves and allocates addresses for.
    /// Services of any other class belong to another implementation and are left alone.
    #[arg(long, env = "L3LB_LOAD_BALANCER_CLASS", default_value = crate::class::DEFAULT_CLASS)]
    pub load_balancer_class: String,

    /// Be the cluster's default load balancer: also serve and allocate for LoadBalancer Services
    /// without a `spec.loadBalancerClass`. Leave it off while another implementation (MetalLB,
    /// a cloud controller) handles those.
    #[arg(long, env = "L3LB_DEFAULT_LOAD_BALANCER")]
    pub default_load_balancer: bool,

    /// Name of the coordination.k8s.io Lease the daemons elect the address allocator with: the
    /// holder alone writes `status.loadBalancer.ingress` from the L3lbPools.
    #[arg(long, env = "L3LB_LEASE_NAME", default_value = "l3lb-allocator")]
    pub lease_name: String,

    /// Namespace of that Lease; default: the daemon's own (its service account's, or the
    /// kubeconfig context's).
    #[arg(long, env = "L3LB_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long an allocator's Lease lasts without renewal: when the holder dies, another daemon
    /// takes over about this long after its last renewal (at once when it stops cleanly). The
    /// holder renews every fifth of it and stops allocating when renewals fail for three fifths.
    #[arg(long, env = "L3LB_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// bpffs directory where the maps and the XDP/TC links are pinned, so forwarding continues
    /// while the daemon is down or restarting and the next start reuses them (the programs are
    /// replaced atomically). Not on a bpffs: one is mounted there. `l3lb cleanup` removes it all.
    #[arg(long, env = "L3LB_BPFFS_DIR", default_value = crate::datapath::DEFAULT_BPFFS_DIR)]
    pub bpffs_dir: PathBuf,

    /// Redirect DNATed frames straight into the pod's interface (XDP_REDIRECT) where its driver
    /// takes them, instead of the kernel's forwarding path. Faster, but redirected packets skip
    /// the node's IP stack: host netfilter and tc do not see them, so iptables-based
    /// NetworkPolicy and host firewall rules are not applied to them. Off: every DNATed packet
    /// takes the kernel's forwarding path.
    #[arg(long, env = "L3LB_XDP_REDIRECT")]
    pub xdp_redirect: bool,
}

/// Validated settings of `l3lb run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub node_name: String,
    pub prefixes: Vec<IpNet>,
    pub interface: String,
    /// Where /metrics, /healthz and /readyz are served; `None`: not at all.
    pub metrics_addr: Option<SocketAddr>,
    /// Valid and preferred lifetime of the VIPs; `None`: forever.
    pub address_lifetime: Option<Duration>,
    pub uplinks: Vec<String>,
    pub drain_timeout: Duration,
    pub resync_interval: Duration,
    pub bpffs_dir: PathBuf,
    /// Which Services are l3lb's.
    pub class: ClassFilter,
    pub lease: LeaseConfig,
    /// DNATed frames may skip the kernel's forwarding path (`--xdp-redirect`).
    pub xdp_redirect: bool,
}

/// The allocator's leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub name: String,
    /// `None`: the client's default namespace.
    pub namespace: Option<String>,
    pub duration: Duration,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-name (NODE_NAME) must not be empty")]
    EmptyNodeName,
    #[error("--prefix {given} has host bits set; did you mean {network}?")]
    HostBits { given: IpNet, network: IpNet },
    #[error(
        "--uplink {0:?} is also the VIP --interface; client traffic must arrive on another interface"
    )]
    UplinkIsInterface(String),
    #[error("--resync-interval must be at least one second")]
    ResyncTooShort,
    #[error("--lease-duration must be at least 5 seconds")]
    LeaseTooShort,
    #[error("--load-balancer-class must not be empty")]
    EmptyClass,
    #[error(
        "--address-lifetime {lifetime:?} must be more than twice --resync-interval {resync:?}, \
         or every VIP would expire between two renewals"
    )]
    LifetimeTooShort {
        lifetime: Duration,
        resync: Duration,
    },
}

impl TryFrom<RunArgs> for Config {
    type Error = ConfigError;

    fn try_from(a: RunArgs) -> Result<Self, ConfigError> {
        if a.node_name.trim().is_empty() {
            return Err(ConfigError::EmptyNodeName);
        }
        for p in &a.prefixes {
            if p.trunc() != *p {
                return Err(ConfigError::HostBits {
                    given: *p,
                    network: p.trunc(),
                });
            }
        }
        if let Some(u) = a.uplinks.iter().find(|u| **u == a.interface) {
            return Err(ConfigError::UplinkIsInterface(u.clone()));
        }
        if a.resync_interval < Duration::from_secs(1) {
            return Err(ConfigError::ResyncTooShort);
        }
        if a.lease_duration < Duration::from_secs(5) {
            return Err(ConfigError::LeaseTooShort);
        }
        if a.load_balancer_class.trim().is_empty() {
            return Err(ConfigError::EmptyClass);
        }
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
            class: ClassFilter {
                class: a.load_balancer_class,
                default: a.default_load_balancer,
            },
            lease: LeaseConfig {
                name: a.lease_name,
                namespace: a.lease_namespace.filter(|n| !n.is_empty()),
                duration: a.lease_duration,
            },
            xdp_redirect: a.xdp_redirect,
        })
    }
}

/// An address lifetime, or none (`forever`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime(pub Option<Duration>);

/// Parses a duration (see [`parse_duration`]), or `0` / `forever` for none.
pub fn parse_lifetime(s: &str) -> Result<Lifetime, String> {
    match s.trim() {
        "forever" => Ok(Lifetime(None)),
        s => parse_duration(s).map(|d| Lifetime(Some(d).filter(|d| !d.is_zero()))),
    }
}

/// A listen address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub Option<SocketAddr>);

/// Parses `ADDR:PORT` (`[v6]:PORT`) or `off`.
pub fn parse_listen_addr(s: &str) -> Result<ListenAddr, String> {
    match s.trim() {
        "off" | "" => Ok(ListenAddr(None)),
        s => s
            .parse()
            .map(|a| ListenAddr(Some(a)))
            .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:9465 or `off`")),
    }
}

/// Parses `250ms`, `10s`, `5m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unknown unit {unit:?}; use ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

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
        assert_eq!(c.class, ClassFilter::default());
        assert!(
            !c.class.default,
            "classless Services are not ours unless asked"
        );
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
    fn xdp_redirect_is_opt_in() {
        assert!(
            !parse(&[]).unwrap().xdp_redirect,
            "the kernel's path by default"
        );
        assert!(parse(&["--xdp-redirect"]).unwrap().xdp_redirect);
    }
}
