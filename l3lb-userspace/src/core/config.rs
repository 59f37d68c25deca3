//! The daemon's settings, validated: what `l3lb run` and `l3lb allocate` run with, whatever the
//! command line or environment they came from ([`crate::cli`] builds them).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ipnet::IpNet;

use crate::core::{class::ClassFilter, ownership::ExternalIps};

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
    pub external_ips: ExternalIps,
    /// `--pod-cidr`; empty: the Node's `spec.podCIDRs`.
    pub pod_cidrs: Vec<IpNet>,
    /// Whether this daemon also runs the allocator.
    pub allocator: bool,
    /// DNATed frames may skip the kernel's forwarding path (`--xdp-redirect`).
    pub xdp_redirect: bool,
    /// The programs log rare events into the daemon's log (`--bpf-log`).
    pub bpf_log: bool,
    /// Where `l3lb status` and `l3lb explain` reach the daemon.
    pub control_socket: PathBuf,
    /// `--l2-lease-namespace`; `None`: the client's default namespace.
    pub l2_lease_namespace: Option<String>,
}

impl Config {
    /// The allocator's settings when this daemon runs it: identified by the node's name.
    pub fn allocator_config(&self) -> AllocatorConfig {
        AllocatorConfig {
            identity: self.node_name.clone(),
            prefixes: self.prefixes.clone(),
            class: self.class.clone(),
            lease: self.lease.clone(),
            resync_interval: self.resync_interval,
        }
    }
}

/// Validated settings of the allocator, in `l3lb allocate` or inside `l3lb run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatorConfig {
    /// Holder identity in the Lease and reporting instance of the Events (a node's name).
    pub identity: String,
    pub prefixes: Vec<IpNet>,
    pub class: ClassFilter,
    pub lease: LeaseConfig,
    pub resync_interval: Duration,
}

/// Validated settings of `l3lb allocate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocateConfig {
    pub allocator: AllocatorConfig,
    /// Where /metrics, /healthz and /readyz are served; `None`: not at all.
    pub metrics_addr: Option<SocketAddr>,
}

/// The allocator's leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub name: String,
    /// `None`: the client's default namespace.
    pub namespace: Option<String>,
    pub duration: Duration,
}
