//! Types that cross the kernel boundary between l3lb's eBPF programs and its daemon, and the pure
//! helpers both sides run (checksum updates, flow hashing, the Maglev table).
#![no_std]

mod counter;
mod csum;
pub mod hash;
mod layout;
pub mod neigh;

pub use counter::{COUNTER_SLOTS, Counter};
pub use csum::{
    csum_apply, csum_diff_ip6, csum_diff2, csum_diff4, csum_replace2, csum_replace4,
    udp_csum_apply, udp_csum_replace, udp_csum_replace4,
};
pub use layout::*;

/// Name of the XDP program attached to each uplink (DNAT towards local endpoints).
pub const PROG_XDP_INGRESS: &str = "l3lb_xdp_ingress";
/// An XDP program that only passes: the benchmarks' floor. Loaded only by benchmarks.
pub const PROG_XDP_NOOP: &str = "l3lb_xdp_noop";
/// Name of the TC egress program attached to each uplink (reverse NAT of endpoint replies).
pub const PROG_TC_EGRESS: &str = "l3lb_tc_egress";

/// VIP:port/proto -> backend set and Maglev table.
pub const MAP_FRONTENDS_V4: &str = "L3LB_FRONTENDS_V4";
/// Backend slots (pod address and port), indexed by backend id.
pub const MAP_BACKENDS_V4: &str = "L3LB_BACKENDS_V4";
/// Established flows as they arrive (client -> VIP:port) -> the backend they are pinned to.
pub const MAP_CONNS_V4: &str = "L3LB_CONNS_V4";
/// Copies of pins in an array, found by the flow's hash: the established path's one lookup.
pub const MAP_FLOW_CACHE_V4: &str = "L3LB_FLOW_CACHE_V4";
/// `sessionAffinity: ClientIP`: (frontend, client) -> backend and since when.
pub const MAP_AFFINITY_V4: &str = "L3LB_AFFINITY_V4";
/// Established translated flows, keyed as the endpoint's reply will look, so egress can restore
/// VIP:port.
pub const MAP_FLOWS_V4: &str = "L3LB_FLOWS_V4";
/// Pins of new flows (seen one packet from the client: a SYN, a first datagram), apart from the
/// established ones so a flood of them cannot evict those. The client's next packet moves a
/// flow to `L3LB_CONNS_V4` and `L3LB_FLOWS_V4`.
pub const MAP_NEW_CONNS_V4: &str = "L3LB_NEW_CONNS_V4";
/// Reply-path records of new flows (the SYN-ACK's, a first answer's).
pub const MAP_NEW_FLOWS_V4: &str = "L3LB_NEW_FLOWS_V4";
/// The VIPs with at least one frontend: XDP drops what reaches them on no frontend.
pub const MAP_VIPS_V4: &str = "L3LB_VIPS_V4";
/// The IPv6 counterparts of the maps above.
pub const MAP_FRONTENDS_V6: &str = "L3LB_FRONTENDS_V6";
pub const MAP_BACKENDS_V6: &str = "L3LB_BACKENDS_V6";
pub const MAP_CONNS_V6: &str = "L3LB_CONNS_V6";
pub const MAP_FLOW_CACHE_V6: &str = "L3LB_FLOW_CACHE_V6";
pub const MAP_AFFINITY_V6: &str = "L3LB_AFFINITY_V6";
pub const MAP_FLOWS_V6: &str = "L3LB_FLOWS_V6";
pub const MAP_NEW_CONNS_V6: &str = "L3LB_NEW_CONNS_V6";
pub const MAP_NEW_FLOWS_V6: &str = "L3LB_NEW_FLOWS_V6";
pub const MAP_VIPS_V6: &str = "L3LB_VIPS_V6";
pub const MAP_BACKEND_STATS_V6: &str = "L3LB_BACKEND_STATS_V6";
/// Per-CPU verdict counters, indexed by [`Counter`].
pub const MAP_STATS: &str = "L3LB_STATS";
/// Per-CPU packets/bytes per frontend, indexed by [`Frontend::id`].
pub const MAP_FRONTEND_STATS: &str = "L3LB_FRONTEND_STATS";
/// Per-CPU packets/bytes per backend, indexed by backend id.
pub const MAP_BACKEND_STATS_V4: &str = "L3LB_BACKEND_STATS_V4";
/// Interfaces XDP may redirect translated packets into (a devmap keyed by ifindex).
pub const MAP_REDIRECT: &str = "L3LB_REDIRECT";
/// The VIP prefixes ([`Config`]), one entry.
pub const MAP_CONFIG: &str = "L3LB_CONFIG";

/// Capacity of each family's frontend map (entries are allocated on use, not up front).
pub const MAX_FRONTENDS: u32 = 16_384;
/// Capacity of each family's backend array: the local endpoints of all frontends together.
pub const MAX_BACKEND_SLOTS: u32 = 32_768;
/// Capacity of each family's established flow tables (LRU).
pub const MAX_FLOWS: u32 = 262_144;
/// Capacity of each family's new-flow tables (LRU): flows between their first and second client
/// packet (a handshake's round trip), and one-datagram exchanges.
pub const MAX_NEW_FLOWS: u32 = 65_536;
/// Slots of each family's flow cache (a power of two).
pub const FLOW_CACHE_SLOTS: u32 = 65_536;
const _: () = assert!(FLOW_CACHE_SLOTS.is_power_of_two());
/// Capacity of each family's affinity table (LRU).
pub const MAX_AFFINITY: u32 = 65_536;
/// Capacity of the redirect devmap: interfaces of a node's endpoints (pod veths).
pub const MAX_REDIRECT: u32 = 4_096;
/// Capacity of the VIP set: every VIP has at least one frontend.
pub const MAX_VIPS: u32 = MAX_FRONTENDS;
/// Endpoints a single frontend can spread over (local indices fit a byte, below `u8::MAX`).
pub const MAX_BACKENDS: usize = 128;
/// Slots of a frontend's Maglev table: a prime, about 100 times [`MAX_BACKENDS`], so one
/// backend more or less moves little more than its own share of flows.
pub const MAGLEV_SIZE: usize = 16_381;

const _: () = assert!(MAX_BACKENDS < u8::MAX as usize);

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_SCTP: u8 = 132;
pub const PROTO_ICMPV6: u8 = 58;
