//! Delivery after the DNAT: straight to the endpoint's interface (a FIB lookup, then
//! XDP_REDIRECT) where the daemon has listed that interface as able to take redirected frames
//! (`L3LB_REDIRECT`: a veth whose peer has NAPI, a NIC driver with ndo_xdp_xmit); to the kernel's
//! normal forwarding path (XDP_PASS) otherwise, and whenever the lookup does not resolve fully
//! (no neighbour entry yet, a fragmentation-needed MTU, a TTL about to expire, a tagged frame).
use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
        xdp_action::{XDP_PASS, XDP_REDIRECT},
    },
    helpers::bpf_fib_lookup,
    programs::XdpContext,
};
use l3lb_common::{Counter, Ip6, csum_replace2};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    maps::{self, L3LB_REDIRECT},
    parse::{ETH_LEN, Tuple, header_mut},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The verdict of a translated packet: redirected, or passed to the kernel.
const PASS: (u32, Counter) = (XDP_PASS, Counter::XdpDnatPass);

/// Looks up the route to the (translated) destination; on success, the egress interface, if
/// redirectable, and the MAC addresses to write.
#[inline(always)]
fn lookup(ctx: &XdpContext, params: &mut FibParams) -> Option<u32> {
    // SAFETY: the helper reads and writes `params`, a local of the size given.
    let rc = unsafe { bpf_fib_lookup(ctx.ctx.cast(), params, size_of::<FibParams>() as i32, 0) };
    if rc != i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return None;
    }
    let ifindex = params.ifindex;
    L3LB_REDIRECT.get_ifindex(ifindex).map(|_| ifindex)
}

/// Writes the next hop's MAC addresses and redirects.
#[inline(always)]
fn redirect(ctx: &XdpContext, params: &FibParams, ifindex: u32) -> (u32, Counter) {
    let Some(eth) = header_mut::<[u8; 12]>(ctx, 0) else {
        return PASS;
    };
    eth[..6].copy_from_slice(&params.dmac);
    eth[6..].copy_from_slice(&params.smac);
    match L3LB_REDIRECT.redirect(ifindex, 0) {
        Ok(XDP_REDIRECT) => (XDP_REDIRECT, Counter::XdpRedirect),
        // Listed a moment ago: cannot miss; if it did, the kernel gets it (MACs are not read
        // on the forwarding path's way in).
        _ => PASS,
    }
}

fn ingress_ifindex(ctx: &XdpContext) -> u32 {
    // SAFETY: the context pointer is valid for the program run.
    unsafe { (*ctx.ctx).ingress_ifindex }
}

/// Delivers a translated IPv4 packet (`t` with the backend as destination).
#[inline(always)]
pub fn forward_v4(ctx: &XdpContext, l3: usize, t: &Tuple<u32>) -> (u32, Counter) {
    if l3 != ETH_LEN || !maps::redirecting() {
        return PASS;
    }
    let Some(ip) = header_mut::<Ipv4Hdr>(ctx, l3) else {
        return PASS;
    };
    if ip.ttl <= 1 {
        return PASS;
    }
    // SAFETY: a plain C struct of integers, unions of integers and byte arrays: all-zero is
    // a valid value.
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.l4_protocol = t.proto;
    params.sport = t.sport_be;
    params.dport = t.dport_be;
    params.__bindgen_anon_1.tot_len = u16::from_be_bytes(ip.tot_len);
    params.ifindex = ingress_ifindex(ctx);
    params.__bindgen_anon_2.tos = ip.tos;
    params.__bindgen_anon_3.ipv4_src = t.saddr;
    params.__bindgen_anon_4.ipv4_dst = t.daddr;
    let Some(ifindex) = lookup(ctx, &mut params) else {
        return PASS;
    };
    // Forwarded, so one hop less: TTL and checksum, as the kernel would.
    let old = u16::from_ne_bytes([ip.ttl, ip.proto]);
    ip.ttl -= 1;
    let new = u16::from_ne_bytes([ip.ttl, ip.proto]);
    ip.check = csum_replace2(u16::from_ne_bytes(ip.check), old, new).to_ne_bytes();
    redirect(ctx, &params, ifindex)
}

/// Delivers a translated IPv6 packet.
#[inline(always)]
pub fn forward_v6(ctx: &XdpContext, l3: usize, t: &Tuple<Ip6>) -> (u32, Counter) {
    if l3 != ETH_LEN || !maps::redirecting() {
        return PASS;
    }
    let Some(ip) = header_mut::<Ipv6Hdr>(ctx, l3) else {
        return PASS;
    };
    if ip.hop_limit <= 1 {
        return PASS;
    }
    // SAFETY: as in `forward_v4`.
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.family = AF_INET6;
    params.l4_protocol = t.proto;
    params.sport = t.sport_be;
    params.dport = t.dport_be;
    params.__bindgen_anon_1.tot_len = u16::from_be_bytes(ip.payload_len).saturating_add(40);
    params.ifindex = ingress_ifindex(ctx);
    let words = |a: &Ip6| {
        [
            a[0] as u32,
            (a[0] >> 32) as u32,
            a[1] as u32,
            (a[1] >> 32) as u32,
        ]
    };
    params.__bindgen_anon_3.ipv6_src = words(&t.saddr);
    params.__bindgen_anon_4.ipv6_dst = words(&t.daddr);
    let Some(ifindex) = lookup(ctx, &mut params) else {
        return PASS;
    };
    ip.hop_limit -= 1;
    redirect(ctx, &params, ifindex)
}
