//! Why a node does or does not announce an L2 address: one reason per case, worded for Events,
//! logs and `l3lb explain`.
use std::{collections::BTreeSet, fmt, net::IpAddr};

use super::Announcers;

/// One node's part in one L2 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// This node announces the address: it answers ARP/NDP for it and DNATs its traffic.
    Announces,
    /// Another node was chosen among the eligible ones.
    OtherAnnouncer { node: String },
    /// This node has no Ready endpoint of the Service.
    NoReadyEndpoint,
    /// This node is excluded from load balancing (label or cordon).
    Excluded,
    /// This node's own Lease is not seen renewing (it cannot reach the API, or is not yet up).
    NotAlive,
    /// No node is eligible: nobody answers for the address.
    NoEligibleNode,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Announces => f.write_str(
                "this node announces it (answers ARP/NDP and forwards it): chosen by rendezvous hashing among the eligible nodes",
            ),
            Why::OtherAnnouncer { node } => write!(
                f,
                "node {node} announces it (chosen by rendezvous hashing among the eligible nodes); this node neither answers nor forwards it"
            ),
            Why::NoReadyEndpoint => {
                f.write_str("this node has no Ready endpoint of the Service, so it is not eligible")
            }
            Why::Excluded => {
                f.write_str("this node is excluded from load balancing, so it is not eligible")
            }
            Why::NotAlive => f.write_str(
                "this node's Lease is not seen renewing within the timeout, so it is not eligible",
            ),
            Why::NoEligibleNode => f.write_str(
                "no node is eligible (a Ready endpoint, not excluded, Lease renewing): nobody answers for it",
            ),
        }
    }
}

/// Why `node` does or does not announce `address`, given the decisions and the inputs they were
/// made from (`ready_nodes`: of the address's Service).
pub fn why(
    node: &str,
    address: IpAddr,
    announcers: &Announcers,
    ready_nodes: &BTreeSet<String>,
    excluded: &BTreeSet<String>,
    alive: &BTreeSet<String>,
) -> Why {
    // This node's own ineligibility first: it is what an operator on this node can act on.
    match announcers.get(&address) {
        Some(n) if n == node => Why::Announces,
        _ if !ready_nodes.contains(node) => Why::NoReadyEndpoint,
        _ if excluded.contains(node) => Why::Excluded,
        _ if !alive.contains(node) => Why::NotAlive,
        Some(n) => Why::OtherAnnouncer { node: n.clone() },
        None => Why::NoEligibleNode,
    }
}
