//! Address translation.
//!
//! Ingress (XDP): a packet for a frontend gets its destination rewritten to a local endpoint
//! (pod address and target port), keeping the client's source, and goes to the kernel's
//! forwarding path (XDP_PASS). The flow is recorded keyed as the endpoint's reply will look.
//!
//! Egress (TC): a reply matching a recorded flow gets its source restored to VIP:port. The skb
//! checksum helpers handle CHECKSUM_PARTIAL packets from local pods correctly.
use aya_ebpf::bindings::{
    BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT,
    xdp_action::{XDP_DROP, XDP_PASS},
};
use aya_ebpf::programs::{TcContext, XdpContext};
use l3lb_common::{
    Counter, FlowKeyV4, FlowNatV4, PROTO_UDP, csum_apply, csum_diff2, csum_diff4, udp_csum_apply,
};

use crate::{
    lb::{self, Choice},
    maps,
    parse::{self, ETH_LEN, Egress, IP_CHECK_OFF, IP_SRC_OFF, Ingress, L4, Parsed, Payload},
    stats,
};

/// ICMP types let through to the host when addressed to a VIP: echo request (the host answers
/// pings), destination unreachable (path MTU discovery) and time exceeded.
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;

/// XDP verdict and the counter it is accounted under.
///
/// Not for a VIP: passed untouched (fragments and options included); outside the VIP prefixes
/// that takes no map lookup. For a VIP: fragments and packets with IP options are dropped, a
/// frontend's packets are DNATed, the ICMP types above pass to the host, and everything else (a
/// frontend without endpoints included) is dropped, so host sockets listening on all addresses
/// are not reachable through a VIP.
#[inline(always)]
pub fn xdp_ingress(ctx: &XdpContext, bytes: u64) -> (u32, Counter) {
    let Some(ip) = parse::xdp_ipv4(ctx) else {
        return (XDP_PASS, Counter::XdpPassNotOurs);
    };
    let not_ours = match ip.fragment {
        true => (XDP_PASS, Counter::XdpPassFragment),
        false => (XDP_PASS, Counter::XdpPassNotOurs),
    };
    if !maps::in_prefixes_v4(ip.daddr_be) {
        return not_ours;
    }
    if ip.fragment || ip.options {
        return match (maps::is_vip_v4(ip.daddr_be), ip.fragment) {
            (false, _) => not_ours,
            (true, true) => (XDP_DROP, Counter::XdpDropVipFragment),
            (true, false) => (XDP_DROP, Counter::XdpDropVipIpOptions),
        };
    }
    let daddr_be = ip.daddr_be;
    let pkt = match parse::xdp_payload(ctx, ip.ip) {
        Payload::Packet(pkt) => pkt,
        Payload::Icmp(_) | Payload::Other if !maps::is_vip_v4(daddr_be) => return not_ours,
        Payload::Icmp(ICMP_ECHO_REQUEST | ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED) => {
            return (XDP_PASS, Counter::XdpPassVipIcmp);
        }
        Payload::Icmp(_) | Payload::Other => return (XDP_DROP, Counter::XdpDropVipNoFrontend),
    };
    let (backend, id) = match lb::choose_v4(&pkt) {
        Choice::Backend(backend, id) => (backend, id),
        // Not to the host either: its sockets on this port must not answer for the VIP.
        Choice::NoBackend => return (XDP_DROP, Counter::XdpNoBackend),
        Choice::NotFound if maps::is_vip_v4(daddr_be) => {
            return (XDP_DROP, Counter::XdpDropVipNoFrontend);
        }
        Choice::NotFound => return not_ours,
    };
    stats::count_backend_v4(backend.frontend, id, bytes);
    rewrite_destination(pkt, backend.addr_be, backend.port_be);
    (XDP_PASS, Counter::XdpDnatPass)
}

/// Rewrites destination address and port, updating the checksums incrementally (RFC 1624).
#[inline(always)]
fn rewrite_destination(pkt: Ingress<'_>, addr_be: u32, port_be: u16) {
    let Ingress {
        ip,
        l4,
        daddr_be,
        dport_be,
        ..
    } = pkt;
    // The address is in the IP header's checksum and the L4 pseudo header: one difference.
    let addr = csum_diff4(daddr_be, addr_be);
    let l4_diff = addr + csum_diff2(dport_be, port_be);
    ip.check = csum_apply(u16::from_ne_bytes(ip.check), addr).to_ne_bytes();
    ip.dst_addr = addr_be.to_ne_bytes();
    match l4 {
        L4::Tcp(tcp) => {
            tcp.check = csum_apply(u16::from_ne_bytes(tcp.check), l4_diff).to_ne_bytes();
            tcp.dest = port_be.to_ne_bytes();
        }
        L4::Udp(udp) => {
            udp.check = udp_csum_apply(u16::from_ne_bytes(udp.check), l4_diff).to_ne_bytes();
            udp.dst = port_be.to_ne_bytes();
        }
    }
}

/// TC verdict and the counter it is accounted under.
#[inline(always)]
pub fn tc_egress(ctx: &TcContext) -> (i32, Counter) {
    let Parsed::Packet(pkt) = parse::tc_ipv4(ctx) else {
        return (TC_ACT_OK, Counter::TcPassNotOurs);
    };
    let key = FlowKeyV4 {
        backend_addr_be: pkt.saddr_be,
        client_addr_be: pkt.daddr_be,
        backend_port_be: pkt.sport_be,
        client_port_be: pkt.dport_be,
        proto: pkt.proto,
        _pad: 0,
        _pad2: 0,
    };
    let Some(nat) = maps::L3LB_FLOWS_V4.get_ptr(key) else {
        return (TC_ACT_OK, Counter::TcPassNotOurs);
    };
    // SAFETY: pointer from a successful lookup, read once.
    let nat = unsafe { *nat };
    match rewrite_source(ctx, &pkt, &nat) {
        Ok(()) => (TC_ACT_OK, Counter::TcRevNat),
        // Checksums and fields may disagree now: a corrupted packet must not leave the node.
        Err(_) => (TC_ACT_SHOT, Counter::TcRevNatError),
    }
}

/// Rewrites source address and port to the VIP's, through the skb checksum helpers.
#[inline(always)]
fn rewrite_source(ctx: &TcContext, pkt: &Egress, nat: &FlowNatV4) -> Result<(), i64> {
    // A UDP checksum of 0 means "none": BPF_F_MARK_MANGLED_0 keeps it 0 and never produces 0.
    let udp = if pkt.proto == PROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    let pseudo = u64::from(BPF_F_PSEUDO_HDR);
    ctx.l4_csum_replace(
        pkt.l4_check_off,
        u64::from(pkt.saddr_be),
        u64::from(nat.vip_be),
        udp | pseudo | 4,
    )?;
    ctx.l4_csum_replace(
        pkt.l4_check_off,
        u64::from(pkt.sport_be),
        u64::from(nat.port_be),
        udp | 2,
    )?;
    ctx.l3_csum_replace(
        ETH_LEN + IP_CHECK_OFF,
        u64::from(pkt.saddr_be),
        u64::from(nat.vip_be),
        4,
    )?;
    ctx.store(ETH_LEN + IP_SRC_OFF, &nat.vip_be, 0)?;
    ctx.store(pkt.l4_off, &nat.port_be, 0)?;
    Ok(())
}
