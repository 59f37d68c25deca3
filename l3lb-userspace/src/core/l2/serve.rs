//! What a node serves of the L2 addresses, given the announcers: the frontends (the DNAT) of the
//! addresses it announces, and the responder entries that make it answer ARP/NDP for them on
//! their pools' interfaces. Never a host address: the datapath answers for the address itself,
//! so there is nothing for the kernel to answer wrongly and nothing for FRR to announce.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::Announcers;
use crate::core::{model::Desired, pool::Pool};

/// The addresses of `addresses` inside an L2 pool (the first pool holding an address decides,
/// as pools are ordered by name).
pub fn l2_addresses<'a>(
    addresses: impl IntoIterator<Item = &'a IpAddr>,
    pools: &[Pool],
) -> BTreeSet<IpAddr> {
    addresses
        .into_iter()
        .filter(|a| pool_of(a, pools).is_some_and(Pool::is_l2))
        .copied()
        .collect()
}

fn pool_of<'a>(address: &IpAddr, pools: &'a [Pool]) -> Option<&'a Pool> {
    pools.iter().find(|p| p.contains(address))
}

/// `desired` as an L2 node has it: no L2 address on the host, and the frontends of L2 addresses
/// only where `node` announces them (elsewhere they are removed, and drain as any other).
pub fn l2_desired(
    desired: &Desired,
    l2: &BTreeSet<IpAddr>,
    announcers: &Announcers,
    node: &str,
) -> Desired {
    let here = |a: &IpAddr| announcers.get(a).is_some_and(|n| n == node);
    Desired {
        frontends: desired
            .frontends
            .iter()
            .filter(|(id, _)| !l2.contains(&id.vip) || here(&id.vip))
            .map(|(id, b)| (*id, b.clone()))
            .collect(),
        addresses: desired
            .addresses
            .iter()
            .filter(|a| !l2.contains(a))
            .copied()
            .collect(),
        refusals: desired.refusals.clone(),
    }
}

/// Where this node answers ARP/NDP: each address it announces, on each interface of the
/// address's pool (`uplinks` when the pool names none).
pub fn responder_entries(
    announcers: &Announcers,
    node: &str,
    pools: &[Pool],
    uplinks: &[String],
) -> BTreeMap<String, BTreeSet<IpAddr>> {
    let mut out: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for (address, _) in announcers.iter().filter(|(_, n)| *n == node) {
        let Some(pool) = pool_of(address, pools).filter(|p| p.is_l2()) else {
            continue;
        };
        let interfaces = match pool.interfaces.is_empty() {
            true => uplinks,
            false => &pool.interfaces,
        };
        for i in interfaces {
            out.entry(i.clone()).or_default().insert(*address);
        }
    }
    out
}

/// The nodes with a Ready endpoint in `slice` (an unset `ready` means ready, as the EndpointSlice
/// API says).
pub fn ready_nodes(slice: &EndpointSlice) -> BTreeSet<String> {
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}
