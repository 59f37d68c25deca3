//! End to end, as root: L2 mode on a bridged lab (no router, no FRR). The client and three
//! nodes share one segment; each node runs a real `l3lb run` and has a pod behind it. A Service
//! in the lab's L2 pool asks for two addresses of one family. For each family:
//! - the client resolves each address by ARP / Neighbour Discovery and reaches it over TCP and
//!   UDP; the pod that answers saw the client's own address and sits behind the node whose MAC
//!   the client's neighbour entry holds (the announcer DNATs to its local endpoint);
//! - the two addresses are announced by two different nodes, the ones the daemons' own choice
//!   (rendezvous hashing, a pure function) gives for the Ready, live nodes, and only the
//!   announcer answers when the client asks again;
//! - when the announcer's endpoint goes not-Ready, and when its daemon is SIGKILLed and its
//!   uplink set down, another node takes the address over and the client's entry moves to that
//!   node's MAC; Ready again, or restarted with its uplink up, the address comes back. The lab
//!   keeps the client's entries reachable (and stale ones unprobed) for an hour and has it
//!   ignore redirects, so only a gratuitous ARP / unsolicited NA can move an entry in time.
use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use anyhow::ensure;
use l3lb_tests::{
    l2::expected_announcers,
    lab::{LabConfig, wait_for},
    scenario::Cluster,
};

const NODES: usize = 3;
const PORT: u16 = 80;
const SERVICE: &str = "web";
const CONVERGE: Duration = Duration::from_secs(30);

/// [`Cluster::wait_served`] on the test's port.
fn wait_served(c: &Cluster, addr: IpAddr, not: &[usize]) -> anyhow::Result<usize> {
    c.wait_served(addr, PORT, not, CONVERGE)
}

/// Waits until the client finds each address at the node the daemons should agree on when the
/// nodes in `eligible` have a Ready endpoint and are alive ([`expected_announcers`]), served by
/// its pod; the two addresses on two different nodes.
fn wait_announcers(
    c: &Cluster,
    addrs: &[IpAddr],
    eligible: &[usize],
) -> anyhow::Result<Vec<usize>> {
    let want = expected_announcers(SERVICE, addrs, eligible)?;
    ensure!(
        want[0] != want[1],
        "the choice puts both on node{}",
        want[0]
    );
    let not: Vec<usize> = (1..=NODES).filter(|i| !eligible.contains(i)).collect();
    c.wait_served_all(addrs, PORT, &not, CONVERGE, |nodes| {
        ensure!(nodes == want, "want {want:?}");
        Ok(())
    })
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

/// Waits for an Event `reason` on the Service whose note contains `text`.
fn wait_event(c: &Cluster, reason: &str, text: &str) -> anyhow::Result<()> {
    wait_for(&format!("{reason} Event: {text}"), CONVERGE, || {
        let notes: Vec<String> = c
            .api
            .events()
            .iter()
            .filter(|e| e["regarding"]["name"] == SERVICE && e["reason"] == reason)
            .filter_map(|e| e["note"].as_str().map(str::to_owned))
            .collect();
        ensure!(notes.iter().any(|n| n.contains(text)), "{notes:?}");
        Ok(Some(()))
    })
}

fn l2_failover(v6: bool) -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::bridged(NODES))?;
    c.apply_l2_service(SERVICE, v6, 2, PORT)?;
    c.apply_l2_endpoints(SERVICE, v6, &[])?;
    let addrs = c.wait_ingress(SERVICE, 2, CONVERGE)?;
    ensure!(addrs.iter().all(|a| a.is_ipv6() == v6), "status {addrs:?}");

    // Each address is answered by one node, the two by two different nodes; each node's metric
    // counts what it announces, and no address is on any lo.
    let all: Vec<usize> = (1..=NODES).collect();
    let first = wait_announcers(&c, &addrs, &all)?;
    println!("announcers: {addrs:?} -> {first:?}");
    for (a, n) in addrs.iter().zip(&first) {
        only_announcer_answers(&c, *a, *n)?;
    }
    for i in 1..=NODES {
        let lo = c.lab.lo_addresses(i)?;
        ensure!(
            addrs.iter().all(|a| !lo.contains(a)),
            "an L2 address on lo of node{i}: {lo:?}"
        );
        let want = first.iter().filter(|n| **n == i).count() as f64;
        wait_for(&format!("node{i} announcing {want}"), CONVERGE, || {
            let seen = c.l2_announced(i)?;
            ensure!(seen == want, "l3lb_l2_addresses_announced {seen}");
            Ok(Some(()))
        })?;
    }

    // The first address's announcer loses its Ready endpoint: another node takes it over, and
    // no address stays with it.
    let old = first[0];
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
    c.apply_l2_endpoints(SERVICE, v6, &[old])?;
    let now = wait_announcers(&c, &addrs, &others)?;
    println!("node{old} not Ready: {addrs:?} -> {now:?}");
    let addr = addrs[0];
    wait_event(
        &c,
        "L2AddressTaken",
        &format!("node node{} announces {addr}", now[0]),
    )?;
    wait_event(
        &c,
        "L2AddressReleased",
        &format!("node node{old} no longer announces {addr}"),
    )?;

    // Ready again: the same state gives the same announcers as at first.
    c.apply_l2_endpoints(SERVICE, v6, &[])?;
    wait_announcers(&c, &addrs, &all)?;

    // The second address's announcer crashes and falls off the segment.
    let old = first[1];
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
    c.kill_daemon(old)?;
    c.lab.set_uplink(old, false)?;
    let now = wait_announcers(&c, &addrs, &others)?;
    println!("node{old} killed: {addrs:?} -> {now:?}");
    Ok(())
}

/// A crashed announcer comes back (uplink up, daemon restarted on its pinned maps): it takes
/// its address back, and the client must hear of it as of any takeover.
fn l2_comeback(v6: bool) -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::bridged(NODES))?;
    c.apply_l2_service(SERVICE, v6, 2, PORT)?;
    c.apply_l2_endpoints(SERVICE, v6, &[])?;
    let addrs = c.wait_ingress(SERVICE, 2, CONVERGE)?;
    let all: Vec<usize> = (1..=NODES).collect();
    let first = wait_announcers(&c, &addrs, &all)?;
    let old = first[0];
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
    c.kill_daemon(old)?;
    c.lab.set_uplink(old, false)?;
    wait_announcers(&c, &addrs, &others)?;
    c.lab.set_uplink(old, true)?;
    c.start_daemon(old)?;
    let now = wait_announcers(&c, &addrs, &all)?;
    println!("node{old} back: {addrs:?} -> {now:?}");
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

#[test]
fn l2_ipv4_restarted_announcer_takes_its_address_back() -> anyhow::Result<()> {
    l2_comeback(false)
}

#[test]
fn l2_ipv6_restarted_announcer_takes_its_address_back() -> anyhow::Result<()> {
    l2_comeback(true)
}
