//! l3lb's datapath: entry points only. See `nat.rs` (XDP) and `egress.rs` (TC) for what each
//! program does.
//!
//! What each module owns: `parse` reads headers into a small context (XDP through packet views,
//! TC through the skb helpers); `nat` (XDP: DNAT to a local endpoint, the VIP filter) with
//! `icmp` (ICMP errors about translated flows) and `forward` (delivery: redirect or the kernel's
//! path); `egress` (TC: reverse NAT of replies) with `egress_icmp`; `lb` (backend choice, flow
//! pinning) over `family` (what differs between IPv4 and IPv6); `maps` (the maps shared with the
//! daemon, and lookups several parts make); `stats` (per-CPU counters); `rare` (rare events,
//! logged with aya-log when the daemon asks); `raw` (every `unsafe` of the crate: packet memory,
//! map values, helper calls, the license section). Checksum arithmetic lives in `l3lb-common`,
//! where host tests cover it.
#![no_std]
#![no_main]
// Only `raw` may: `cargo xtask test` also checks the sources for the word.
#![deny(unsafe_code)]

mod egress;
mod egress_icmp;
mod family;
mod forward;
mod icmp;
mod lb;
mod maps;
mod nat;
mod neigh;
mod parse;
mod rare;
#[allow(unsafe_code)]
mod raw;
mod stats;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// Uplink ingress: DNAT packets for a frontend to a local endpoint, pass everything else untouched.
#[xdp]
pub fn l3lb_xdp_ingress(ctx: XdpContext) -> u32 {
    let bytes = ctx.data_end().saturating_sub(ctx.data()) as u64;
    // L2 mode: ARP/NDP for an address this node announces is answered first.
    if neigh::respond(&ctx) {
        stats::count(l3lb_common::Counter::XdpNeighReply, bytes);
        return aya_ebpf::bindings::xdp_action::XDP_TX;
    }
    translate(&ctx, bytes)
}

/// The translation path, in a frame of its own: the verifier adds up the stacks of a call chain
/// (512 bytes at most), and `neigh::respond`'s frame copies must not count on top of this one's.
#[inline(never)]
fn translate(ctx: &XdpContext, bytes: u64) -> u32 {
    let (verdict, counter) = nat::xdp_ingress(ctx, bytes);
    stats::count(counter, bytes);
    verdict
}

/// Returns XDP_PASS and nothing else: the floor `cargo xtask bench datapath` compares against.
#[xdp]
pub fn l3lb_xdp_noop(_ctx: XdpContext) -> u32 {
    aya_ebpf::bindings::xdp_action::XDP_PASS
}

/// Uplink egress: restore VIP:port as the source of endpoint replies, pass everything else.
#[classifier]
pub fn l3lb_tc_egress(ctx: TcContext) -> i32 {
    let (verdict, counter) = egress::tc_egress(&ctx);
    stats::count(counter, u64::from(ctx.len()));
    verdict
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
