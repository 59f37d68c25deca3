//! L2 mode's ARP/NDP responder: a request for an address in the responder map, on the interface
//! of its entry, comes back as the reply (XDP_TX), byte for byte as built independently
//! (etherparse computes the ICMPv6 checksum from scratch); anything else passes untouched.
//!
//! BPF_PROG_TEST_RUN runs XDP as if the frame arrived on the loopback device: its ifindex (1)
//! is the entries' interface.
use etherparse::{Icmpv6Type, PacketBuilder, icmpv6::NeighborAdvertisementHeader};
use l3lb_common::Counter;
use l3lb_tests::packets::{CLIENT, MAC_PEER, OTHER, OTHER6, VIP, VIP6, XDP_PASS, ip4, ip6};
use l3lb_userspace::node::datapath::{Datapath, neigh::Responder};

use crate::{grown, hex, require_root};

const XDP_TX: u32 = 3;
const LOOPBACK: u32 = 1;
const ANSWER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
/// fe80::1, the client's link-local address.
const CLIENT_LL: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4], dst: [u8; 6]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sha);
    p.extend_from_slice(&[0x08, 0x06]);
    p.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa);
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa);
    p
}

fn who_has(target: [u8; 4]) -> Vec<u8> {
    arp(1, MAC_PEER, CLIENT, [0; 6], target, [0xff; 6])
}

/// The solicited-node multicast address of `target`, and its Ethernet address.
fn solicited_node(target: [u8; 16]) -> ([u8; 16], [u8; 6]) {
    let mut ip = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    ip[13..].copy_from_slice(&target[13..]);
    (ip, [0x33, 0x33, ip[12], ip[13], ip[14], ip[15]])
}

/// A Neighbour Solicitation for `target` from the client, with `options` after the target.
fn solicitation(target: [u8; 16], hop_limit: u8, options: &[u8]) -> Vec<u8> {
    let (dst, dst_mac) = solicited_node(target);
    let step = PacketBuilder::ethernet2(MAC_PEER, dst_mac)
        .ipv6(CLIENT_LL, dst, hop_limit)
        .icmpv6(Icmpv6Type::NeighborSolicitation);
    let mut payload = target.to_vec();
    payload.extend_from_slice(options);
    let mut out = Vec::new();
    step.write(&mut out, &payload)
        .expect("neighbour solicitation");
    out
}

fn source_lla() -> Vec<u8> {
    let mut o = vec![1, 1];
    o.extend_from_slice(&MAC_PEER);
    o
}

fn load(entries: &[(u32, std::net::IpAddr)]) -> Datapath {
    require_root();
    let mut dp = Datapath::load_detached().expect("load the embedded object");
    for (ifindex, address) in entries {
        dp.set_responder(
            Responder {
                ifindex: *ifindex,
                address: *address,
            },
            ANSWER_MAC,
        )
        .expect("responder entry");
    }
    dp
}

/// Runs `input`; checks the verdict, the output frame and the verdict's counter.
fn check(dp: &Datapath, what: &str, input: &[u8], verdict: u32, output: &[u8]) {
    let before = dp.counters().expect("counters");
    let out = dp.test_run_xdp(input, 1).expect("test run");
    assert_eq!(out.verdict, verdict, "{what}: verdict");
    assert!(
        out.packet == output,
        "{what}: output differs\n got:\n{}\nwant:\n{}",
        hex(&out.packet),
        hex(output)
    );
    let grew = grown(&before, &dp.counters().expect("counters"));
    let answered = grew.get(&Counter::XdpNeighReply).copied().unwrap_or(0);
    assert_eq!(answered, u64::from(verdict == XDP_TX), "{what}: {grew:?}");
}

#[test]
fn arp_requests_for_an_announced_address_are_answered_and_others_pass() {
    let dp = load(&[(LOOPBACK, ip4(VIP)), (LOOPBACK + 1000, ip4(OTHER))]);
    let reply = arp(2, ANSWER_MAC, VIP, MAC_PEER, CLIENT, MAC_PEER);
    let reply = {
        // Ethernet source: the answering MAC (arp() puts the sender there).
        let mut r = reply;
        r[6..12].copy_from_slice(&ANSWER_MAC);
        r
    };
    check(&dp, "who has the VIP", &who_has(VIP), XDP_TX, &reply);
    // Padded to Ethernet's minimum (60 bytes): answered, the padding kept.
    let mut padded = who_has(VIP);
    padded.resize(60, 0);
    let mut padded_reply = reply.clone();
    padded_reply.resize(60, 0);
    check(&dp, "padded request", &padded, XDP_TX, &padded_reply);
    for (what, frame) in [
        ("an address with no entry", who_has([192, 0, 2, 99])),
        ("an entry on another interface", who_has(OTHER)),
        (
            "gratuitous ARP (sender = target)",
            arp(1, MAC_PEER, VIP, [0; 6], VIP, [0xff; 6]),
        ),
        (
            "an ARP reply",
            arp(2, MAC_PEER, CLIENT, ANSWER_MAC, VIP, ANSWER_MAC),
        ),
        ("a truncated request", who_has(VIP)[..41].to_vec()),
    ] {
        check(&dp, what, &frame, XDP_PASS, &frame);
    }
}

#[test]
fn neighbour_solicitations_for_an_announced_address_are_answered_and_others_pass() {
    let dp = load(&[(LOOPBACK, ip6(VIP6)), (LOOPBACK + 1000, ip6(OTHER6))]);
    let advertisement = {
        let step = PacketBuilder::ethernet2(ANSWER_MAC, MAC_PEER)
            .ipv6(VIP6, CLIENT_LL, 255)
            .icmpv6(Icmpv6Type::NeighborAdvertisement(
                NeighborAdvertisementHeader {
                    router: false,
                    solicited: true,
                    r#override: true,
                },
            ));
        let mut payload = VIP6.to_vec();
        payload.extend_from_slice(&[2, 1]);
        payload.extend_from_slice(&ANSWER_MAC);
        let mut out = Vec::new();
        step.write(&mut out, &payload)
            .expect("neighbour advertisement");
        out
    };
    check(
        &dp,
        "who has the VIP",
        &solicitation(VIP6, 255, &source_lla()),
        XDP_TX,
        &advertisement,
    );
    let mut unknown = VIP6;
    unknown[15] = 0x77;
    let two_options = [source_lla(), vec![14, 1, 1, 2, 3, 4, 5, 6]].concat();
    for (what, frame) in [
        (
            "an address with no entry",
            solicitation(unknown, 255, &source_lla()),
        ),
        (
            "an entry on another interface",
            solicitation(OTHER6, 255, &source_lla()),
        ),
        (
            "a hop limit below 255 (routed)",
            solicitation(VIP6, 64, &source_lla()),
        ),
        (
            "no source link-layer address option (duplicate address detection)",
            solicitation(VIP6, 255, &[]),
        ),
        (
            "more than one option",
            solicitation(VIP6, 255, &two_options),
        ),
    ] {
        check(&dp, what, &frame, XDP_PASS, &frame);
    }
}
