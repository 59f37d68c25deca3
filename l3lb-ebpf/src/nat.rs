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
    Counter, FlowKeyV4, FlowNatV4, FrontendKeyV4, PROTO_UDP, csum_replace2, csum_replace4,
    udp_csum_replace, udp_csum_replace4,
};

use crate::{
    maps::{self, Pick},
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
/// Not for a VIP: passed untouched (fragments and options included). For a VIP: fragments and
/// packets with IP options are dropped, a frontend's packets are DNATed, the ICMP types above
/// pass to the host, and everything else (a frontend without endpoints included) is dropped,
/// so host sockets listening on all addresses are not reachable through a VIP.
#[inline(always)]
pub fn xdp_ingress(ctx: &XdpContext) -> (u32, Counter) {
    let Some(ip) = parse::xdp_ipv4(ctx) else {
        return (XDP_PASS, Counter::XdpPassNotOurs);
    };
    if !maps::is_vip(ip.daddr_be) {
        return match ip.fragment {
            true => (XDP_PASS, Counter::XdpPassFragment),
            false => (XDP_PASS, Counter::XdpPassNotOurs),
        };
    }
    if ip.fragment {
        return (XDP_DROP, Counter::XdpDropVipFragment);
    }
    if ip.options {
        return (XDP_DROP, Counter::XdpDropVipIpOptions);
    }
    let pkt = match parse::xdp_payload(ctx, ip.ip) {
        Payload::Packet(pkt) => pkt,
        Payload::Icmp(ICMP_ECHO_REQUEST | ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED) => {
            return (XDP_PASS, Counter::XdpPassVipIcmp);
        }
        Payload::Icmp(_) | Payload::Other => return (XDP_DROP, Counter::XdpDropVipNoFrontend),
    };
    let key = FrontendKeyV4 {
        vip_be: pkt.daddr_be,
        port_be: pkt.dport_be,
        proto: pkt.proto,
        _pad: 0,
    };
    let backend = match maps::pick_backend(&key, pkt.saddr_be, pkt.sport_be) {
        Pick::Backend(backend) => backend,
        // Not to the host either: its sockets on this port must not answer for the VIP.
        Pick::NoBackend => return (XDP_DROP, Counter::XdpNoBackend),
        Pick::NotFound => return (XDP_DROP, Counter::XdpDropVipNoFrontend),
    };
    let flow = FlowKeyV4 {
        backend_addr_be: backend.addr_be,
        client_addr_be: pkt.saddr_be,
        backend_port_be: backend.port_be,
        client_port_be: pkt.sport_be,
        proto: pkt.proto,
        _pad: [0; 3],
    };
    let nat = FlowNatV4 {
        vip_be: pkt.daddr_be,
        port_be: pkt.dport_be,
        _pad: 0,
    };
    if !maps::record_flow(&flow, &nat) {
        // Still translate: the next packet of the flow retries the insert.
        stats::count(Counter::XdpFlowInsertFailed, 0);
    }
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
    let check = u16::from_ne_bytes(ip.check);
    ip.check = csum_replace4(check, daddr_be, addr_be).to_ne_bytes();
    ip.dst_addr = addr_be.to_ne_bytes();
    match l4 {
        L4::Tcp(tcp) => {
            let check = u16::from_ne_bytes(tcp.check);
            let check = csum_replace4(check, daddr_be, addr_be);
            tcp.check = csum_replace2(check, dport_be, port_be).to_ne_bytes();
            tcp.dest = port_be.to_ne_bytes();
        }
        L4::Udp(udp) => {
            let check = u16::from_ne_bytes(udp.check);
            let check = udp_csum_replace4(check, daddr_be, addr_be);
            udp.check = udp_csum_replace(check, dport_be, port_be).to_ne_bytes();
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
        _pad: [0; 3],
    };
    let Some(nat) = maps::flow(&key) else {
        return (TC_ACT_OK, Counter::TcPassNotOurs);
    };
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
