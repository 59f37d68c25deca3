//! A flood of new flows (SYNs from distinct sources, more than both flow tables hold) through the
//! real XDP program leaves established flows alone: their pins and reply records stay, their
//! packets go to their backend without a new pick, and their replies are translated. Both
//! families.
use l3lb_common::{Counter, MAX_FLOWS, MAX_NEW_FLOWS, PROTO_TCP};
use l3lb_tests::packets::{
    CLIENT, CLIENT6, HTTP, POD, POD_HTTP, POD6, TC_ACT_OK, VIP, VIP6, XDP_PASS, backends,
    backends6, fe, fe6, tcp, tcp_ack, tcp6,
};
use l3lb_userspace::node::datapath::Datapath;

use crate::require_root;

/// Established flows, from these client ports.
const PORTS: std::ops::Range<u16> = 42_000..42_016;

fn packets(dp: &Datapath, counter: Counter) -> u64 {
    dp.counters().expect("counters")[&counter].packets
}

/// Runs `n` SYNs through XDP, each a copy of `syn` with another source address (its last 4 bytes
/// at `src_off`; XDP does not check checksums, it updates them).
fn flood(dp: &Datapath, syn: &[u8], src_off: usize, n: u32) {
    let mut frame = syn.to_vec();
    for i in 0..n {
        frame[src_off..src_off + 4].copy_from_slice(&(0x6440_0000 + i).to_be_bytes());
        let out = dp.test_run_xdp(&frame, 1).expect("xdp run");
        assert_eq!(out.verdict, XDP_PASS, "flood syn {i}");
    }
}

#[test]
fn a_flood_of_new_flows_leaves_established_flows_alone() {
    require_root();
    let mut dp = Datapath::load_detached().expect("load");
    dp.set_frontend(fe(VIP, HTTP, PROTO_TCP), &backends(&[(POD, POD_HTTP)]))
        .expect("upsert");
    dp.set_frontend(fe6(VIP6, HTTP, PROTO_TCP), &backends6(&[(POD6, POD_HTTP)]))
        .expect("upsert");
    for port in PORTS {
        for packet in [
            tcp((CLIENT, port), (VIP, HTTP), &[], None),
            tcp_ack((CLIENT, port), (VIP, HTTP)),
            tcp6((CLIENT6, port), (VIP6, HTTP), None),
            tcp6((CLIENT6, port), (VIP6, HTTP), Some(1)),
        ] {
            dp.test_run_xdp(&packet, 1).expect("xdp run");
        }
    }
    let (pins, records) = (dp.pinned_flows().expect("pins"), dp.flows().expect("flows"));
    let (pins6, records6) = (
        dp.pinned_flows_v6().expect("pins"),
        dp.flows_v6().expect("flows"),
    );
    assert_eq!((pins.len(), pins6.len()), (PORTS.len(), PORTS.len()));

    // IPv4: more SYNs than the established table holds; IPv6: more than the new-flow table.
    let (n4, n6) = (MAX_FLOWS + 40_000, MAX_NEW_FLOWS + 10_000);
    let new = packets(&dp, Counter::XdpFlowNew);
    flood(
        &dp,
        &tcp(([0; 4], 1_234), (VIP, HTTP), &[], None),
        14 + 12,
        n4,
    );
    flood(
        &dp,
        &tcp6(([0; 16], 1_234), (VIP6, HTTP), None),
        14 + 8 + 12,
        n6,
    );
    assert_eq!(
        packets(&dp, Counter::XdpFlowNew) - new,
        u64::from(n4 + n6),
        "every flood SYN was a new flow"
    );
    assert!(dp.new_flows().expect("new flows").len() <= MAX_NEW_FLOWS as usize);
    assert_eq!(dp.pinned_flows().expect("pins"), pins, "established pins");
    assert_eq!(dp.flows().expect("flows"), records, "established records");
    assert_eq!(dp.pinned_flows_v6().expect("pins"), pins6);
    assert_eq!(dp.flows_v6().expect("flows"), records6);

    // Their packets go on without a new pick, and their replies leave translated.
    let (new, rev) = (
        packets(&dp, Counter::XdpFlowNew),
        packets(&dp, Counter::TcRevNat),
    );
    for port in PORTS {
        for (packet, pod, reply, want) in [
            (
                tcp_ack((CLIENT, port), (VIP, HTTP)),
                tcp_ack((CLIENT, port), (POD, POD_HTTP)),
                tcp((POD, POD_HTTP), (CLIENT, port), &[], Some(1)),
                tcp((VIP, HTTP), (CLIENT, port), &[], Some(1)),
            ),
            (
                tcp6((CLIENT6, port), (VIP6, HTTP), Some(1)),
                tcp6((CLIENT6, port), (POD6, POD_HTTP), Some(1)),
                tcp6((POD6, POD_HTTP), (CLIENT6, port), Some(1)),
                tcp6((VIP6, HTTP), (CLIENT6, port), Some(1)),
            ),
        ] {
            assert_eq!(dp.test_run_xdp(&packet, 1).expect("xdp").packet, pod);
            let out = dp.test_run_tc_egress(&reply, 1).expect("tc");
            assert_eq!((out.verdict, out.packet), (TC_ACT_OK, want), "port {port}");
        }
    }
    assert_eq!(packets(&dp, Counter::XdpFlowNew), new, "no new pick");
    assert_eq!(
        packets(&dp, Counter::TcRevNat) - rev,
        2 * PORTS.len() as u64,
        "translated by the established records"
    );
}
