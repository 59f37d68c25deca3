//! End to end, as root: L2 mode on a bridged lab (no router, no FRR). The client and three
//! nodes share one segment; each node runs a real `l3lb run` and has a pod behind it. A Service
//! in the lab's L2 pool asks for two addresses of one family. For each family:
//! - the client resolves each address by ARP / Neighbour Discovery and reaches it over TCP and
//!   UDP; the pod that answers saw the client's own address and sits behind the node whose MAC
//!   the client's neighbour entry holds (the announcer DNATs to its local endpoint);
//! - the two addresses are announced by two different nodes, and only the announcer answers
//!   when the client asks again;
//! - when the announcer's endpoint goes not-Ready, and when its daemon is SIGKILLed and its
//!   uplink set down, another node takes the address over and the client's entry moves to that
//!   node's MAC. The lab keeps the client's entries reachable for an hour and has it ignore
//!   redirects, so only a gratuitous ARP / unsolicited NA can move an entry in time.
use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use anyhow::ensure;
use l3lb_tests::{lab::LabConfig, scenario::Cluster};

const NODES: usize = 3;
const PORT: u16 = 80;
const SERVICE: &str = "web";
const CONVERGE: Duration = Duration::from_secs(30);

/// [`Cluster::wait_served`] on the test's port.
fn wait_served(c: &Cluster, addr: IpAddr, not: &[usize]) -> anyhow::Result<usize> {
    c.wait_served(addr, PORT, not, CONVERGE)
}

/// `xdp_neigh_reply` of every node.
fn neigh_replies(c: &Cluster) -> anyhow::Result<BTreeMap<usize, u64>> {
    (1..=NODES)
        .map(|i| {
            let packets = c.datapath_packets(i)?;
            Ok((i, packets.get("xdp_neigh_reply").copied().unwrap_or(0)))
        })
        .collect()
}

/// The client forgets `addr` and asks again: only `announcer`'s responder answers.
fn only_announcer_answers(c: &Cluster, addr: IpAddr, announcer: usize) -> anyhow::Result<()> {
    let before = neigh_replies(c)?;
    c.lab.forget_client_neighbour(addr)?;
    let node = wait_served(c, addr, &[])?;
    ensure!(
        node == announcer,
        "{addr} moved from node{announcer} to node{node}"
    );
    let after = neigh_replies(c)?;
    let grew: Vec<usize> = (1..=NODES).filter(|i| after[i] > before[i]).collect();
    ensure!(
        grew == [announcer],
        "asked for {addr} (announced by node{announcer}), answers grew on {grew:?}: \
         {before:?} -> {after:?}"
    );
    Ok(())
}

fn l2_failover(v6: bool) -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::bridged(NODES))?;
    c.apply_l2_service(SERVICE, v6, 2, PORT)?;
    c.apply_l2_endpoints(SERVICE, v6, &[])?;
    let addrs = c.wait_ingress(SERVICE, 2, CONVERGE)?;
    ensure!(addrs.iter().all(|a| a.is_ipv6() == v6), "status {addrs:?}");
    for i in 1..=NODES {
        for a in &addrs {
            let lo = c.lab.lo_addresses(i)?;
            ensure!(!lo.contains(a), "{a} on lo of node{i}: {lo:?}");
        }
    }

    // Each address is answered by one node, the two by two different nodes.
    let first: Vec<usize> = addrs
        .iter()
        .map(|a| wait_served(&c, *a, &[]))
        .collect::<anyhow::Result<_>>()?;
    println!("announcers: {addrs:?} -> {first:?}");
    ensure!(
        first[0] != first[1],
        "both addresses answered by node{}",
        first[0]
    );
    for (a, n) in addrs.iter().zip(&first) {
        only_announcer_answers(&c, *a, *n)?;
    }

    // The first address's announcer loses its Ready endpoint: another node takes it over.
    let (addr, old) = (addrs[0], first[0]);
    c.apply_l2_endpoints(SERVICE, v6, &[old])?;
    let new = wait_served(&c, addr, &[old])?;
    println!("{addr}: node{old} not Ready -> node{new}");
    // No address stays with the node without a Ready endpoint.
    let other = wait_served(&c, addrs[1], &[old])?;
    ensure!(other != new, "both addresses on node{new}");

    // Ready again: the same state gives the same announcers as at first.
    c.apply_l2_endpoints(SERVICE, v6, &[])?;
    for (a, n) in addrs.iter().zip(&first) {
        let others: Vec<usize> = (1..=NODES).filter(|i| i != n).collect();
        wait_served(&c, *a, &others)?;
    }

    // The second address's announcer crashes and falls off the segment.
    let (addr, old) = (addrs[1], first[1]);
    c.kill_daemon(old)?;
    c.lab.set_uplink(old, false)?;
    let new = wait_served(&c, addr, &[old])?;
    println!("{addr}: node{old} killed -> node{new}");
    let other = wait_served(&c, addrs[0], &[old])?;
    ensure!(other != new, "both addresses on node{new}");
    Ok(())
}

#[test]
fn l2_ipv4_addresses_spread_and_fail_over() -> anyhow::Result<()> {
    l2_failover(false)
}

#[test]
fn l2_ipv6_addresses_spread_and_fail_over() -> anyhow::Result<()> {
    l2_failover(true)
}
