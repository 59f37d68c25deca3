//! L2 mode's pure decisions: which node answers ARP/NDP for (announces) each L2 address, and
//! which nodes are alive. Every node computes the same answer from the same API state, so the
//! nodes agree without talking to each other.
//!
//! - [`announce`]: rendezvous hashing of (address, node name) over the eligible nodes of the
//!   address's Service (a Ready local endpoint, not excluded, alive); a Service's addresses go to
//!   distinct nodes while there are enough.
//! - [`liveness`]: a node is alive while its Lease keeps changing, as seen by the local clock of
//!   the node judging (no clock comparison between nodes).
//! - [`round`]: one round's announcers (kept while this node's view is stale) and what changed
//!   for this node (taken, released).
//! - [`serve`]: what a node serves given the announcers (frontends and ARP/NDP answers where it
//!   announces, never a host address).
//! - [`why`]: the reason for one node's part in one address, for Events, logs and `l3lb explain`.
pub mod announce;
pub mod liveness;
pub mod ready;
pub mod round;
pub mod serve;
pub mod why;

pub use announce::{Announcers, L2Service, announcers};
pub use liveness::{Liveness, View};
pub use ready::ReadyNodes;
pub use round::{Changes, changes, round};
pub use serve::{l2_addresses, l2_desired, ready_nodes, responder_entries};
pub use why::{Why, why};

use std::net::IpAddr;

/// The rendezvous score of `node` for `address`: the highest-scoring eligible node announces.
///
/// FNV-1a over the address bytes, a separator and the name, then splitmix64's finaliser. Fixed
/// here (not std's `DefaultHasher`, whose output may change between Rust releases) because nodes
/// running different l3lb versions during a rolling upgrade must still agree.
pub fn score(address: IpAddr, node: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let octets: Vec<u8> = match address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut h = OFFSET;
    for b in octets.iter().chain(&[0xff]).chain(node.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests;
