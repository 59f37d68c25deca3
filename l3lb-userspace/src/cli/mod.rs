//! The `l3lb` command line, one module per command: [`run`] (the node daemon), [`allocate`] (the
//! allocator alone), [`stats`] and [`cleanup`] (operator tools). Each parses its flags (with
//! environment fallbacks) into the typed configuration of [`crate::core::config`] once, and
//! says what is wrong when it cannot.
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ipnet::IpNet;

pub mod allocate;
pub mod cleanup;
pub mod explain;
pub mod frr_config;
pub mod parse;
pub mod run;
mod shared;
pub mod stats;
pub mod status;

pub use allocate::AllocateArgs;
pub use cleanup::CleanupArgs;
pub use explain::ExplainArgs;
pub use frr_config::FrrConfigArgs;
pub use run::RunArgs;
pub use stats::StatsArgs;
pub use status::StatusArgs;

/// How `status` and `explain` print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Table,
    /// For scripts.
    Json,
}

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
    /// Run the node daemon (needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_NET_RAW; hostNetwork in a pod).
    /// By default it also stands for the allocator Lease (single-binary mode, e.g. systemd hosts).
    Run(RunArgs),
    /// Run only the address allocator: elected over a Lease, it writes the LoadBalancer Services'
    /// `status.loadBalancer.ingress` from the L3lbPools. Needs no root, no capability and no node
    /// (a Deployment, beside nodes running `l3lb run --allocator=false`).
    Allocate(AllocateArgs),
    /// What this node serves now: one row per frontend (Services, local endpoints, the address
    /// and its lifetime, the maps, packets and bytes) and the node's state (uplinks, exclusion,
    /// allocator). Run it as root on the node (in the daemon's pod: `kubectl exec`).
    Status(StatusArgs),
    /// Why each address of a Service is or is not announced on this node, check by check in the
    /// order the daemon decides. Run it as root on the node.
    Explain(ExplainArgs),
    /// Print the FRR snippet for these --prefix values: prefix-lists and route-maps that let only
    /// the VIPs out, `redistribute connected` in both address families; with --asn a complete
    /// `router bgp` block.
    FrrConfig(FrrConfigArgs),
    /// Print the datapath counters (packets and bytes per verdict: DNATed, passed, replies
    /// translated, ...; or per frontend with --frontends) of the l3lb programs attached to an
    /// uplink. Run it in the node's network namespace, as root.
    Stats(StatsArgs),
    /// Uninstall: unpin the XDP and TC links of the uplinks (detaching the programs) and the maps
    /// that `l3lb run` left in --bpffs-dir, then remove the directory. Stop the daemon first.
    Cleanup(CleanupArgs),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-name (NODE_NAME) must not be empty")]
    EmptyNodeName,
    #[error("--identity (L3LB_IDENTITY) must not be empty; no hostname to default to")]
    EmptyIdentity,
    #[error("{given} has host bits set; did you mean {network}?")]
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

/// Runs the command.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Allocate(args) => allocate::run(args).await,
        Command::Stats(args) => stats::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Explain(args) => explain::run(args).await,
        Command::FrrConfig(args) => frr_config::run(args),
        Command::Cleanup(args) => cleanup::run(args),
    }
}

/// The Kubernetes client as kube-rs resolves it: in-cluster service account, or KUBECONFIG.
async fn kube_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster service account or KUBECONFIG)")
}
