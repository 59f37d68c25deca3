//! Egress (TC): a reply matching a recorded flow gets its source restored to VIP:port: an
//! established flow's record first, else a new flow's (a SYN-ACK, a first answer). The skb
//! checksum helpers handle CHECKSUM_PARTIAL packets from local pods correctly.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use l3lb_common::{
    Counter, FlowKeyV4, FlowKeyV6, Ip6, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};

use crate::{
    egress_icmp,
    maps::{reply_v4, reply_v6},
    parse::{
        ETH_LEN, ETH_P_IP, ETH_P_IPV6, ETHER_TYPE_OFF, IP_CHECK_OFF, IP_SRC_OFF, IP6_NEXT_OFF,
        IP6_SRC_OFF, IPV4_MIN_LEN, IPV6_LEN, TCP_CHECK_OFF, UDP_CHECK_OFF, ipv4_header_len,
        is_fragment,
    },
};

/// A TCP/UDP/SCTP packet in TC: offsets for the skb helpers and raw network-order values.
struct Egress<A> {
    proto: u8,
    l4_off: usize,
    /// None for SCTP: its CRC32c covers neither the addresses nor, here, a changed port (SCTP
    /// is only ever translated to the frontend's own port).
    l4_check_off: Option<usize>,
    saddr: A,
    daddr: A,
    sport_be: u16,
    dport_be: u16,
}

/// The L4 ports at `l4_off` of protocol `proto`, if the header and its checksum are inside.
#[inline(always)]
fn ports(ctx: &TcContext, proto: u8, l4_off: usize) -> Option<(Option<usize>, u16, u16)> {
    let l4_check_off = match proto {
        PROTO_TCP => Some(l4_off + TCP_CHECK_OFF),
        PROTO_UDP => Some(l4_off + UDP_CHECK_OFF),
        PROTO_SCTP => None,
        _ => return None,
    };
    let ports = ctx.load::<u32>(l4_off).ok()?;
    // The checksum must be inside the packet too, or the rewrite would fail half-way.
    if let Some(off) = l4_check_off {
        ctx.load::<u16>(off).ok()?;
    }
    Some((l4_check_off, ports as u16, (ports >> 16) as u16))
}

// Headers are copied out as whole 8-byte words (or single bytes) and split by shifts: the
// program is built with misaligned loads allowed (fast packet access), which could merge loads
// of a stack copy of 4-byte fields into 8-byte loads the verifier rejects as misaligned. The
// shifts assume the little-endian BPF target.
const _: () = assert!(cfg!(target_endian = "little"));

#[inline(always)]
fn parse_v4(ctx: &TcContext) -> Option<Egress<u32>> {
    // Bytes 0..24 of the header: a TCP/UDP packet always has them (20 + its L4 header).
    let w = ctx.load::<[u64; 3]>(ETH_LEN).ok()?;
    let vihl = w[0] as u8;
    let frags = ((w[0] >> 48) as u16).to_ne_bytes();
    let proto = (w[1] >> 8) as u8;
    let ip_len = ipv4_header_len(vihl)?;
    if is_fragment(frags) {
        return None;
    }
    let l4_off = ETH_LEN + ip_len;
    let (l4_check_off, sport_be, dport_be) = ports(ctx, proto, l4_off)?;
    Some(Egress {
        proto,
        l4_off,
        l4_check_off,
        saddr: (w[1] >> 32) as u32,
        daddr: w[2] as u32,
        sport_be,
        dport_be,
    })
}

#[inline(always)]
fn parse_v6(ctx: &TcContext) -> Option<Egress<Ip6>> {
    let next_hdr = ctx.load::<u8>(ETH_LEN + IP6_NEXT_OFF).ok()?;
    let addrs = ctx.load::<[Ip6; 2]>(ETH_LEN + IP6_SRC_OFF).ok()?;
    let l4_off = ETH_LEN + IPV6_LEN;
    let (l4_check_off, sport_be, dport_be) = ports(ctx, next_hdr, l4_off)?;
    Some(Egress {
        proto: next_hdr,
        l4_off,
        l4_check_off,
        saddr: addrs[0],
        daddr: addrs[1],
        sport_be,
        dport_be,
    })
}

/// TC verdict and the counter it is accounted under.
#[inline(always)]
pub fn tc_egress(ctx: &TcContext) -> (i32, Counter) {
    let Ok(ether_type) = ctx.load::<u16>(ETHER_TYPE_OFF) else {
        return (TC_ACT_OK, Counter::TcPassNotOurs);
    };
    let ether_type = ether_type.to_ne_bytes();
    let done = if ether_type == ETH_P_IP {
        match icmp_v4(ctx) {
            Some(done) => Some((done, Counter::TcIcmpErrorNat)),
            None => egress_v4(ctx),
        }
    } else if ether_type == ETH_P_IPV6 {
        match icmp_v6(ctx) {
            Some(done) => Some((done, Counter::TcIcmpErrorNat)),
            None => egress_v6(ctx),
        }
    } else {
        None
    };
    match done {
        None => (TC_ACT_OK, Counter::TcPassNotOurs),
        Some((Ok(()), counter)) => (TC_ACT_OK, counter),
        // Checksums and fields may disagree now: a corrupted packet must not leave the node.
        Some((Err(_), _)) => (TC_ACT_SHOT, Counter::TcRevNatError),
    }
}

/// An ICMP error (IPv4 header without options, not a fragment) about a translated flow.
#[inline(always)]
fn icmp_v4(ctx: &TcContext) -> Option<Result<(), i64>> {
    let w = ctx.load::<[u64; 2]>(ETH_LEN).ok()?;
    let frags = ((w[0] >> 48) as u16).to_ne_bytes();
    if w[0] as u8 != 0x45 || is_fragment(frags) || (w[1] >> 8) as u8 != PROTO_ICMP {
        return None;
    }
    let icmp_type = ctx.load::<u8>(ETH_LEN + IPV4_MIN_LEN).ok()?;
    egress_icmp::error_v4(ctx, (w[1] >> 32) as u32, icmp_type)
}

/// An ICMPv6 error (no extension headers) about a translated flow.
#[inline(always)]
fn icmp_v6(ctx: &TcContext) -> Option<Result<(), i64>> {
    if ctx.load::<u8>(ETH_LEN + IP6_NEXT_OFF).ok()? != PROTO_ICMPV6 {
        return None;
    }
    let saddr = ctx.load::<Ip6>(ETH_LEN + IP6_SRC_OFF).ok()?;
    let icmp_type = ctx.load::<u8>(ETH_LEN + IPV6_LEN).ok()?;
    egress_icmp::error_v6(ctx, saddr, icmp_type)
}

/// Flags for the L4 checksum helper: UDP's 0 means "none" (BPF_F_MARK_MANGLED_0 keeps it 0 and
/// never produces 0).
#[inline(always)]
fn l4_flags(proto: u8) -> u64 {
    if proto == PROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    }
}

#[inline(always)]
fn egress_v4(ctx: &TcContext) -> Option<(Result<(), i64>, Counter)> {
    let pkt = parse_v4(ctx)?;
    let key = FlowKeyV4 {
        backend_addr_be: pkt.saddr,
        client_addr_be: pkt.daddr,
        backend_port_be: pkt.sport_be,
        client_port_be: pkt.dport_be,
        proto: pkt.proto,
        _pad: 0,
        _pad2: 0,
    };
    let (nat, counter) = reply_v4(&key)?;
    let flags = l4_flags(pkt.proto);
    let pseudo = u64::from(BPF_F_PSEUDO_HDR);
    let rewrite = || {
        if let Some(check_off) = pkt.l4_check_off {
            ctx.l4_csum_replace(
                check_off,
                u64::from(pkt.saddr),
                u64::from(nat.vip_be),
                flags | pseudo | 4,
            )?;
            ctx.l4_csum_replace(
                check_off,
                u64::from(pkt.sport_be),
                u64::from(nat.port_be),
                flags | 2,
            )?;
        }
        ctx.l3_csum_replace(
            ETH_LEN + IP_CHECK_OFF,
            u64::from(pkt.saddr),
            u64::from(nat.vip_be),
            4,
        )?;
        ctx.store(ETH_LEN + IP_SRC_OFF, &nat.vip_be, 0)?;
        ctx.store(pkt.l4_off, &nat.port_be, 0)
    };
    Some((rewrite(), counter))
}

#[inline(always)]
fn egress_v6(ctx: &TcContext) -> Option<(Result<(), i64>, Counter)> {
    let pkt = parse_v6(ctx)?;
    let key = FlowKeyV6 {
        backend_addr: pkt.saddr,
        client_addr: pkt.daddr,
        backend_port_be: pkt.sport_be,
        client_port_be: pkt.dport_be,
        proto: pkt.proto,
        _pad: 0,
        _pad2: 0,
    };
    let (nat, counter) = reply_v6(&key)?;
    let flags = l4_flags(pkt.proto);
    let pseudo = u64::from(BPF_F_PSEUDO_HDR);
    let rewrite = || {
        if let Some(check_off) = pkt.l4_check_off {
            for i in 0..2 {
                for half in [0u32, 32] {
                    ctx.l4_csum_replace(
                        check_off,
                        u64::from((pkt.saddr[i] >> half) as u32),
                        u64::from((nat.vip[i] >> half) as u32),
                        flags | pseudo | 4,
                    )?;
                }
            }
            ctx.l4_csum_replace(
                check_off,
                u64::from(pkt.sport_be),
                u64::from(nat.port_be),
                flags | 2,
            )?;
        }
        // The address words hold the wire bytes.
        ctx.store(ETH_LEN + IP6_SRC_OFF, &nat.vip, 0)?;
        ctx.store(pkt.l4_off, &nat.port_be, 0)
    };
    Some((rewrite(), counter))
}
