//! l3lb's datapath: entry points only. See `nat.rs` (XDP) and `egress.rs` (TC) for what each
//! program does.
#![no_std]
#![no_main]

mod egress;
mod egress_icmp;
mod family;
mod forward;
mod icmp;
mod lb;
mod maps;
mod nat;
mod parse;
mod stats;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// Uplink ingress: DNAT packets for a frontend to a local endpoint, pass everything else untouched.
#[xdp]
pub fn l3lb_xdp_ingress(ctx: XdpContext) -> u32 {
    let bytes = ctx.data_end().saturating_sub(ctx.data()) as u64;
    let (verdict, counter) = nat::xdp_ingress(&ctx, bytes);
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

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
