//! Who announces each L2 address: rendezvous (highest random weight) hashing of (address, node)
//! over the nodes eligible for the address's Service.
//!
//! For a Service with several addresses, (address, node) pairs are taken best score first, each
//! node at most once per round, so the addresses land on distinct nodes while there are enough
//! (and wrap around evenly when there are not). Each address's choice depends only on its own
//! Service's addresses and eligible nodes: a change elsewhere moves nothing, and a node leaving
//! moves only the addresses it announced (plus, at most, a reshuffle within that same Service).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::score;
use crate::core::model::ServiceKey;

/// An L2 Service as the announcer choice sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Service {
    pub key: ServiceKey,
    /// Its L2 addresses (from `status.loadBalancer.ingress`, inside an L2 pool).
    pub addresses: Vec<IpAddr>,
    /// Nodes with a Ready endpoint of the Service.
    pub ready_nodes: BTreeSet<String>,
}

/// The announcer of each L2 address; an address with no eligible node is absent.
pub type Announcers = BTreeMap<IpAddr, String>;

/// The announcer of every address of `services`, among nodes that are not `excluded` and are
/// `alive`. An address listed by two Services (a shared VIP) is decided by the first in key
/// order, over the nodes eligible for either.
pub fn announcers(
    services: &[L2Service],
    excluded: &BTreeSet<String>,
    alive: &BTreeSet<String>,
) -> Announcers {
    let mut out = Announcers::new();
    // Shared addresses: the union of eligible nodes of every Service listing them.
    let mut sharers: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
    for s in services {
        for a in &s.addresses {
            sharers
                .entry(*a)
                .or_default()
                .extend(s.ready_nodes.iter().map(String::as_str));
        }
    }
    let mut ordered: Vec<&L2Service> = services.iter().collect();
    ordered.sort_by(|a, b| a.key.cmp(&b.key));
    for s in ordered {
        let mut addresses: Vec<IpAddr> = s
            .addresses
            .iter()
            .filter(|a| !out.contains_key(a))
            .copied()
            .collect();
        addresses.sort();
        addresses.dedup();
        let mut nodes: BTreeSet<&str> = BTreeSet::new();
        for a in &addresses {
            nodes.extend(sharers.get(a).into_iter().flatten().copied());
        }
        nodes.retain(|n| !excluded.contains(*n) && alive.contains(*n));
        if nodes.is_empty() {
            continue;
        }
        out.extend(spread(&addresses, &nodes));
    }
    out
}

/// Assigns `addresses` to `nodes` by descending score, each node once per round.
fn spread(addresses: &[IpAddr], nodes: &BTreeSet<&str>) -> Vec<(IpAddr, String)> {
    let mut pairs: Vec<(u64, IpAddr, &str)> = addresses
        .iter()
        .flat_map(|a| nodes.iter().map(move |n| (score(*a, n), *a, *n)))
        .collect();
    // Best score first; ties (astronomically rare) broken by address and name, so every node
    // still agrees.
    pairs.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(y.2)));
    let mut out: Vec<(IpAddr, String)> = Vec::new();
    let mut left: BTreeSet<IpAddr> = addresses.iter().copied().collect();
    while !left.is_empty() {
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for (_, a, n) in &pairs {
            if left.contains(a) && !used.contains(n) {
                left.remove(a);
                used.insert(n);
                out.push((*a, (*n).to_owned()));
            }
        }
    }
    out
}
