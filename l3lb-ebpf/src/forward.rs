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
    programs::XdpContext,
};
use l3lb_common::{Counter, Ip6, csum_replace2};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    maps::{self, L3LB_REDIRECT},
    parse::{ETH_LEN, IP_CHECK_OFF, IP_TTL_OFF, IP6_HOP_OFF, Tuple},
    rare,
    raw::{self, view},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The verdict of a translated packet: redirected, or passed to the kernel.
const PASS: (u32, Counter) = (XDP_PASS, Counter::XdpDnatPass);

/// Looks up the route to the (translated) destination; on success, the egress interface, if
/// redirectable, and the MAC addresses to write.
#[inline(always)]
fn lookup(ctx: &XdpContext, params: &mut FibParams) -> Option<u32> {
    let rc = raw::fib_lookup(ctx, params, 0);
    if rc != i64::from(BPF_FIB_LKUP_RET_SUCCESS) {
        return None;
    }
    let ifindex = params.ifindex;
    L3LB_REDIRECT.get_ifindex(ifindex).map(|_| ifindex)
}

/// Writes the next hop's MAC addresses and redirects.
#[inline(always)]
fn redirect(ctx: &XdpContext, params: &FibParams, ifindex: u32) -> (u32, Counter) {
    let Some(eth) = view::<[[u8; 6]; 2]>(ctx, 0) else {
        return PASS;
    };
    eth.write([params.dmac, params.smac]);
    match L3LB_REDIRECT.redirect(ifindex, 0) {
        Ok(XDP_REDIRECT) => (XDP_REDIRECT, Counter::XdpRedirect),
        // Listed a moment ago: cannot miss; if it did, the kernel gets it (MACs are not read
        // on the forwarding path's way in).
        _ => {
            rare::redirect_failed(ifindex);
            PASS
        }
    }
}

/// Delivers a translated IPv4 packet (`t` with the backend as destination).
#[inline(always)]
pub fn forward_v4(ctx: &XdpContext, l3: usize, t: &Tuple<u32>) -> (u32, Counter) {
    if l3 != ETH_LEN || !maps::redirecting() {
        return PASS;
    }
    let Some(ip) = view::<Ipv4Hdr>(ctx, l3) else {
        return PASS;
    };
    let hdr = ip.read();
    if hdr.ttl <= 1 {
        return PASS;
    }
    let mut params = raw::fib_params();
    params.family = AF_INET;
    params.l4_protocol = t.proto;
    params.sport = t.sport_be;
    params.dport = t.dport_be;
    params.__bindgen_anon_1.tot_len = u16::from_be_bytes(hdr.tot_len);
    params.ifindex = ctx.ingress_ifindex() as u32;
    params.__bindgen_anon_2.tos = hdr.tos;
    params.__bindgen_anon_3.ipv4_src = t.saddr;
    params.__bindgen_anon_4.ipv4_dst = t.daddr;
    let Some(ifindex) = lookup(ctx, &mut params) else {
        return PASS;
    };
    // Forwarded, so one hop less: TTL and checksum, as the kernel would.
    let old = u16::from_ne_bytes([hdr.ttl, hdr.proto]);
    let new = u16::from_ne_bytes([hdr.ttl - 1, hdr.proto]);
    ip.set::<u8, IP_TTL_OFF>(hdr.ttl - 1);
    ip.set::<u16, IP_CHECK_OFF>(csum_replace2(ip.get::<u16, IP_CHECK_OFF>(), old, new));
    redirect(ctx, &params, ifindex)
}

/// Delivers a translated IPv6 packet.
#[inline(always)]
pub fn forward_v6(ctx: &XdpContext, l3: usize, t: &Tuple<Ip6>) -> (u32, Counter) {
    if l3 != ETH_LEN || !maps::redirecting() {
        return PASS;
    }
    let Some(ip) = view::<Ipv6Hdr>(ctx, l3) else {
        return PASS;
    };
    let hdr = ip.read();
    if hdr.hop_limit <= 1 {
        return PASS;
    }
    let mut params = raw::fib_params();
    params.family = AF_INET6;
    params.l4_protocol = t.proto;
    params.sport = t.sport_be;
    params.dport = t.dport_be;
    params.__bindgen_anon_1.tot_len = u16::from_be_bytes(hdr.payload_len).saturating_add(40);
    params.ifindex = ctx.ingress_ifindex() as u32;
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
    ip.set::<u8, IP6_HOP_OFF>(hdr.hop_limit - 1);
    redirect(ctx, &params, ifindex)
}
