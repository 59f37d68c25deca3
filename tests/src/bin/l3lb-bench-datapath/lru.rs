//! `hit_tcp4_established_lru`: an established flow whose pin is found in the LRU conn table, not
//! in the flow cache.
//!
//! The flow cache is an array indexed by a hash of the flow; a miss that finds the pin in the LRU
//! writes it into the cache, so with one frame repeated only the first run would miss. Design:
//! two frontends, VIP_A:80 whose only backend is VIP_B:port and VIP_B:port whose only backend is
//! VIP_A:80, with VIP_B:port chosen so that both flows (client -> VIP_A:80 and
//! client -> VIP_B:port) hash to the same cache slot. Each run DNATs the frame into the other
//! flow, whose run then finds the slot holding the flow just run: a cache miss, an LRU hit and
//! the slot rewritten, every run. Checked: the slots collide, one run turns flow A's frame into
//! flow B's, an even number of runs gives back the input frame, and the counters moved as for
//! established hits (every run DNATed, no flow new or established during the run).
use anyhow::{Context as _, ensure};
use l3lb_common::{
    Counter, PROTO_TCP,
    hash::{cache_hash_v4, cache_slot},
};
use l3lb_tests::packets::{CLIENT, HTTP, XDP_PASS, backends, fe, tcp_ack};
use l3lb_userspace::node::datapath::Datapath;
use serde_json::Value;

use crate::testrun::{REPEAT, packets, row};

/// Flow A's VIP, inside the bench's prefix and apart from the other rows' VIPs.
const VIP_A: [u8; 4] = [203, 0, 113, 200];
/// Where flow B's VIP is searched.
const VIPS: std::ops::RangeInclusive<u8> = 201..=254;
const PORT: u16 = 41_000;
// An even number of runs gives back the input frame, which the row checks.
const _: () = assert!(REPEAT.is_multiple_of(2));

/// The cache slot of TCP flow `CLIENT:PORT -> vip:port`, as the program computes it (addresses
/// as on the wire, ports in network order).
fn slot(vip: [u8; 4], port: u16) -> u32 {
    let h = cache_hash_v4(
        u32::from_ne_bytes(CLIENT),
        u32::from_ne_bytes(vip),
        PORT.to_be(),
        port.to_be(),
        PROTO_TCP,
    );
    cache_slot(h)
}

/// Flow B's VIP and port, whose flow shares flow A's cache slot. (The slot is the hash's top
/// bits: addresses that differ in one octet never collide there, ports do.)
fn colliding() -> Option<([u8; 4], u16)> {
    let a = slot(VIP_A, HTTP);
    VIPS.flat_map(|last| (1024..=u16::MAX).map(move |port| ([203, 0, 113, last], port)))
        .find(|&(vip, port)| slot(vip, port) == a)
}

pub fn row_lru(dp: &mut Datapath) -> anyhow::Result<Value> {
    let name = "hit_tcp4_established_lru";
    let (b, port_b) = colliding().context("no VIP:port whose flow shares flow A's cache slot")?;
    dp.set_frontend(fe(VIP_A, HTTP, PROTO_TCP), &backends(&[(b, port_b)]))?;
    dp.set_frontend(fe(b, port_b, PROTO_TCP), &backends(&[(VIP_A, HTTP)]))?;
    let frame_a = tcp_ack((CLIENT, PORT), (VIP_A, HTTP));
    let frame_b = tcp_ack((CLIENT, PORT), (b, port_b));
    // Both flows established: a first packet pins each as new, a second establishes it.
    for frame in [&frame_a, &frame_a, &frame_b, &frame_b] {
        dp.test_run_xdp(frame, 1)?;
    }
    let one = dp.test_run_xdp(&frame_a, 1)?;
    ensure!(
        one.packet[30..34] == b && one.packet[36..38] == port_b.to_be_bytes(),
        "{name}: one run sent the frame to {:?}, not {b:?}:{port_b}",
        &one.packet[30..38]
    );
    let before = (
        packets(dp, Counter::XdpDnatPass)?,
        packets(dp, Counter::XdpFlowNew)?,
        packets(dp, Counter::XdpFlowEstablished)?,
    );
    let run = dp.test_run_xdp(&frame_a, REPEAT)?;
    let hits = packets(dp, Counter::XdpDnatPass)? - before.0;
    let new = packets(dp, Counter::XdpFlowNew)? - before.1;
    let established = packets(dp, Counter::XdpFlowEstablished)? - before.2;
    ensure!(run.verdict == XDP_PASS, "{name}: verdict {}", run.verdict);
    ensure!(
        run.packet == frame_a,
        "{name}: {REPEAT} runs did not alternate between the two flows"
    );
    ensure!(
        (hits, new, established) == (u64::from(REPEAT), 0, 0),
        "{name}: {hits} DNATed (want {REPEAT}), {new} new, {established} established flows"
    );
    let mut r = row(name, run.duration.as_nanos() as f64);
    r["cache_slot"] = slot(VIP_A, HTTP).into();
    r["design"] = "two established flows sharing a cache slot, each run DNATs the frame into \
                   the other: every run misses the cache, hits the LRU and rewrites the slot"
        .into();
    Ok(r)
}
