//! Backend choice through the real programs: flows spread over the backends by the Maglev
//! table, pinned flows keep their backend when the set changes, terminating backends keep their
//! flows and get no new ones, a removed backend's flows move, and removing one backend moves no
//! other backend's new flows. Counters per frontend and per backend follow.
use std::collections::{BTreeMap, BTreeSet};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use l3lb_common::{Counter, PROTO_TCP};
use l3lb_tests::packets::{CLIENT, HTTP, TC_ACT_OK, VIP, XDP_PASS, backends, ep, fe, tcp, tcp_ack};
use l3lb_userspace::{
    core::model::{Backends, Endpoint},
    node::datapath::Datapath,
};

use crate::require_root;

fn pod(i: u8) -> ([u8; 4], u16) {
    ([10, 244, 2, i], 9000 + u16::from(i))
}

/// Where XDP sent `packet`: the destination of the packet it passed on.
fn dest(dp: &Datapath, packet: &[u8]) -> Endpoint {
    let out = dp.test_run_xdp(packet, 1).expect("xdp run");
    assert_eq!(out.verdict, XDP_PASS);
    let sliced = SlicedPacket::from_ethernet(&out.packet).expect("parse output");
    let Some(NetSlice::Ipv4(ip)) = sliced.net else {
        panic!("not ipv4")
    };
    let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
        panic!("not tcp")
    };
    ep(ip.header().destination(), tcp.destination_port())
}

fn syn(port: u16) -> Vec<u8> {
    tcp((CLIENT, port), (VIP, HTTP), &[], None)
}

fn ack(port: u16) -> Vec<u8> {
    tcp_ack((CLIENT, port), (VIP, HTTP))
}

const PORTS: std::ops::Range<u16> = 41_000..41_300;

fn setup(ready: &[([u8; 4], u16)]) -> Datapath {
    require_root();
    let mut dp = Datapath::load_detached().expect("load");
    dp.set_frontend(fe(VIP, HTTP, PROTO_TCP), &backends(ready))
        .expect("upsert");
    dp
}

fn open_flows(dp: &Datapath) -> BTreeMap<u16, Endpoint> {
    PORTS.map(|p| (p, dest(dp, &syn(p)))).collect()
}

/// New flows spread over every backend; each flow's packets, and its reply, stay on it.
#[test]
fn flows_spread_and_replies_return_from_the_vip() {
    let all = [pod(1), pod(2), pod(3)];
    let dp = setup(&all);
    let flows = open_flows(&dp);
    let used: BTreeSet<Endpoint> = flows.values().copied().collect();
    assert_eq!(used, all.iter().map(|(a, p)| ep(*a, *p)).collect());
    for (port, backend) in &flows {
        assert_eq!(dest(&dp, &ack(*port)), *backend, "port {port}");
        let std::net::IpAddr::V4(addr) = backend.addr else {
            unreachable!()
        };
        let reply = tcp(
            (addr.octets(), backend.port),
            (CLIENT, *port),
            &[],
            Some(1_001),
        );
        let out = dp.test_run_tc_egress(&reply, 1).expect("tc run");
        assert_eq!(out.verdict, TC_ACT_OK);
        assert_eq!(
            out.packet,
            tcp((VIP, HTTP), (CLIENT, *port), &[], Some(1_001))
        );
    }
    // Each backend got about a third of the flows.
    for b in &used {
        let n = flows.values().filter(|x| *x == b).count();
        assert!(n > PORTS.len() / 6, "{b}: {n} of {} flows", PORTS.len());
    }
    let c = dp.counters().expect("counters");
    assert_eq!(c[&Counter::XdpFlowNew].packets, PORTS.len() as u64);
    // Each flow's ACK moved it from the new flows to the established ones.
    assert_eq!(c[&Counter::XdpFlowEstablished].packets, PORTS.len() as u64);
    assert_eq!(c[&Counter::TcRevNat].packets, PORTS.len() as u64);
    assert_eq!(c[&Counter::XdpDnatPass].packets, 2 * PORTS.len() as u64);
    // Per backend: one SYN and one ACK per flow, with their bytes.
    let per_backend = dp.backend_stats().expect("backend stats");
    let id = fe(VIP, HTTP, PROTO_TCP);
    for b in &used {
        let n = flows.values().filter(|x| *x == b).count() as u64;
        let stat = per_backend[&(id, *b)];
        assert_eq!(stat.packets, 2 * n, "{b}");
        assert_eq!(stat.bytes, n * (syn(1).len() + ack(1).len()) as u64, "{b}");
    }
    assert_eq!(
        dp.frontend_stats().expect("frontend stats")[&id].packets,
        2 * PORTS.len() as u64
    );
}

/// A backend joins: established flows stay where they are, even those whose table slot now
/// names the newcomer; new flows reach it.
#[test]
fn pinned_flows_stay_when_a_backend_joins() {
    let mut dp = setup(&[pod(1), pod(2), pod(3)]);
    let flows = open_flows(&dp);
    dp.set_frontend(
        fe(VIP, HTTP, PROTO_TCP),
        &backends(&[pod(1), pod(2), pod(3), pod(4)]),
    )
    .expect("add a backend");
    for (port, backend) in &flows {
        assert_eq!(
            dest(&dp, &ack(*port)),
            *backend,
            "established flow on port {port} moved"
        );
    }
    let fresh: Vec<Endpoint> = (42_000..42_300u16).map(|p| dest(&dp, &syn(p))).collect();
    let newcomer = ep(pod(4).0, pod(4).1);
    let n = fresh.iter().filter(|b| **b == newcomer).count();
    assert!(n > 30, "the new backend got {n} of 300 new flows");
    // A SYN reusing an old port is balanced anew: about a quarter of those go to the newcomer.
    let moved = flows
        .keys()
        .filter(|p| dest(&dp, &syn(**p)) == newcomer)
        .count();
    assert!(
        moved > 30 && moved < 120,
        "{moved} of 300 re-opened flows moved to the newcomer"
    );
}

/// A backend leaves: its flows get a live backend (counted as stale pins), every other flow
/// keeps its backend, and new flows that did not go to it before still go where they went.
#[test]
fn removing_a_backend_moves_only_its_flows() {
    let mut dp = setup(&[pod(1), pod(2), pod(3)]);
    let flows = open_flows(&dp);
    let syns_before: BTreeMap<u16, Endpoint> = (42_000..42_300u16)
        .map(|p| (p, dest(&dp, &syn(p))))
        .collect();
    let gone = ep(pod(3).0, pod(3).1);
    dp.set_frontend(fe(VIP, HTTP, PROTO_TCP), &backends(&[pod(1), pod(2)]))
        .expect("remove a backend");
    let before = dp.counters().expect("counters")[&Counter::XdpFlowStale].packets;
    let mut stale = 0;
    for (port, backend) in &flows {
        let now = dest(&dp, &ack(*port));
        if *backend == gone {
            assert_ne!(now, gone);
            stale += 1;
        } else {
            assert_eq!(now, *backend, "flow on port {port} moved");
        }
    }
    assert!(stale > 0);
    let after = dp.counters().expect("counters")[&Counter::XdpFlowStale].packets;
    assert_eq!(after - before, stale as u64);
    for (port, backend) in &syns_before {
        if *backend != gone {
            assert_eq!(
                dest(&dp, &syn(*port)),
                *backend,
                "new flow on port {port} moved"
            );
        }
    }
}

/// A terminating backend keeps its pinned flows and gets no new ones; the frontend reads back
/// with it as terminating.
#[test]
fn terminating_backend_keeps_its_flows_and_gets_no_new_ones() {
    let mut dp = setup(&[pod(1), pod(2), pod(3)]);
    let flows = open_flows(&dp);
    let draining = ep(pod(3).0, pod(3).1);
    let mut set: Backends = backends(&[pod(1), pod(2)]);
    set.terminating.insert(draining);
    dp.set_frontend(fe(VIP, HTTP, PROTO_TCP), &set)
        .expect("terminating");
    assert_eq!(
        dp.frontends().expect("frontends")[&fe(VIP, HTTP, PROTO_TCP)],
        set
    );
    for (port, backend) in &flows {
        assert_eq!(
            dest(&dp, &ack(*port)),
            *backend,
            "flow on port {port} moved"
        );
    }
    assert!(flows.values().any(|b| *b == draining));
    for p in 42_000..42_300u16 {
        assert_ne!(
            dest(&dp, &syn(p)),
            draining,
            "new flow on port {p} to a terminating backend"
        );
    }
    // Only terminating backends left: pinned flows go on, new ones are dropped.
    let only: Backends = Backends {
        terminating: set.ready.iter().copied().chain([draining]).collect(),
        ..Backends::default()
    };
    dp.set_frontend(fe(VIP, HTTP, PROTO_TCP), &only)
        .expect("only terminating");
    for (port, backend) in flows.iter().take(20) {
        assert_eq!(dest(&dp, &ack(*port)), *backend);
    }
    let out = dp.test_run_xdp(&syn(43_000), 1).expect("xdp run");
    assert_eq!(out.verdict, l3lb_tests::packets::XDP_DROP);
}

/// `sessionAffinity: ClientIP`: every new flow of a client goes to the backend its first one
/// got, also after the set changes, until the timeout passes since its last new flow; other
/// clients still spread.
#[test]
fn client_ip_affinity_keeps_a_client_on_its_backend_until_the_timeout() {
    require_root();
    let mut dp = Datapath::load_detached().expect("load");
    let id = fe(VIP, HTTP, PROTO_TCP);
    let affine = |ready: &[([u8; 4], u16)], timeout: u32| Backends {
        affinity_timeout_s: Some(timeout),
        ..backends(ready)
    };
    dp.set_frontend(id, &affine(&[pod(1), pod(2), pod(3)], 1))
        .expect("upsert");
    let from = |client: [u8; 4], port: u16| tcp((client, port), (VIP, HTTP), &[], None);
    let first = dest(&dp, &from(CLIENT, 40_000));
    for port in 40_001..40_050 {
        assert_eq!(dest(&dp, &from(CLIENT, port)), first, "port {port}");
    }
    let c = dp.counters().expect("counters");
    assert_eq!(c[&Counter::XdpAffinityHit].packets, 49);
    let others: BTreeSet<Endpoint> = (1..=60u8)
        .map(|i| dest(&dp, &from([198, 51, 100, 100 + i], 40_000)))
        .collect();
    assert_eq!(
        others.len(),
        3,
        "clients spread over every backend: {others:?}"
    );

    // A client whose hash now names the newcomer stays on its backend while the timeout runs.
    dp.set_frontend(id, &affine(&[pod(1), pod(2), pod(3), pod(4)], 1))
        .expect("add a backend");
    let newcomer = ep(pod(4).0, pod(4).1);
    let before: Vec<([u8; 4], Endpoint)> = (1..=60u8)
        .map(|i| [198, 51, 100, 100 + i])
        .map(|c| (c, dest(&dp, &from(c, 41_000))))
        .collect();
    assert!(
        before.iter().all(|(_, b)| *b != newcomer),
        "an affine client moved to the newcomer within its timeout"
    );
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let after: Vec<Endpoint> = before
        .iter()
        .map(|(c, _)| dest(&dp, &from(*c, 42_000)))
        .collect();
    assert!(
        after.contains(&newcomer),
        "after the timeout, clients are balanced anew (some to the newcomer)"
    );
}
