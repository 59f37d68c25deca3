//! Network-namespace lab: a client, an FRR router and `nodes` nodes (FRR + a pod running
//! `l3lb-echo`), each in its own uniquely named namespace; or, [`Shape::Bridged`], the client and
//! the nodes (each with its pod, no FRR) on one bridge. See [`topology`] for the wiring.
//!
//! [`Lab`] owns what it made: on drop (also on a failed start or a panicking test) it stops only
//! the pids it started and deletes only the namespaces it created. Its work directory (configs,
//! logs) is removed too, unless the thread is panicking or `L3LB_LAB_KEEP=1`; its path is printed
//! at start.
mod bpffs;
mod client;
pub mod container;
pub mod frr;
mod instance;
mod prereq;
pub mod privileges;
mod process;
mod queries;
mod scratch;
pub mod topology;
mod wait;

use std::{net::Ipv4Addr, path::PathBuf};

pub use client::{REQUEST_TIMEOUT, Stream};
pub use container::ContainerSpec;
pub use instance::Lab;
pub use privileges::Privileges;
pub use scratch::ScratchNs;
pub use topology::Shape;
pub use wait::wait_for;

/// Shape of a lab.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Number of nodes (each with one pod), 1-based everywhere in the API.
    pub nodes: usize,
    /// Routed (a router and FRR, BGP mode) or bridged (one segment, L2 mode).
    pub shape: Shape,
    /// Prefix the nodes advertise from `lo` (route-map `L3LB-VIPS`, `le 32`). In a bridged lab,
    /// the L2 pool's addresses: inside the segment (10.100.0.0/24) so the client asks for them.
    pub vip_prefix: ipnet::Ipv4Net,
    /// IPv6 prefix the nodes advertise from `lo` over their IPv6 BGP sessions (`le 128`); in a
    /// bridged lab inside fd00:100::/64.
    pub vip_prefix6: ipnet::Ipv6Net,
    /// Port of the echo servers (TCP and UDP) in the pods.
    pub echo_port: u16,
    /// The `l3lb-echo` binary. `None`: `$L3LB_ECHO_BIN`, else next to the running executable or
    /// its parent directory (target/debug/ for both `deps/<test>` and `xtask`). Integration tests
    /// can pass `env!("CARGO_BIN_EXE_l3lb-echo")`.
    pub echo_bin: Option<PathBuf>,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            nodes: 2,
            shape: Shape::Routed,
            vip_prefix: ipnet::Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24),
            vip_prefix6: ipnet::Ipv6Net::new_assert(
                std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0),
                64,
            ),
            echo_port: 8080,
            echo_bin: None,
        }
    }
}

impl LabConfig {
    /// A bridged lab of `nodes` nodes whose VIP prefixes lie on the segment: 10.100.0.192/27 and
    /// fd00:100::200/120.
    pub fn bridged(nodes: usize) -> Self {
        LabConfig {
            nodes,
            shape: Shape::Bridged,
            vip_prefix: ipnet::Ipv4Net::new_assert(Ipv4Addr::new(10, 100, 0, 192), 27),
            vip_prefix6: ipnet::Ipv6Net::new_assert(
                std::net::Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x200),
                120,
            ),
            ..LabConfig::default()
        }
    }
}
