//! ICMP errors about translated flows, in XDP: a router on the path answers the VIP (the source
//! of our replies) with Fragmentation Needed / Packet Too Big, or unreachable and time exceeded,
//! quoting the reply as it left (VIP:port -> client). Translated like the flow itself (outer
//! destination, quoted source, every checksum), the error reaches the pod, whose kernel lowers
//! its path MTU: PMTU discovery works through a VIP.
use aya_ebpf::programs::XdpContext;
use l3lb_common::{
    BackendV4, BackendV6, Ip6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, csum_apply, csum_diff_ip6,
    csum_diff2, csum_diff4, udp_csum_apply,
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    family::{V4, V6},
    lb,
    parse::{
        self, IP_CHECK_OFF, IP_DST_OFF, IP_SRC_OFF, IP6_DST_OFF, IP6_SRC_OFF, IPV4_MIN_LEN,
        IPV6_LEN, TCP_CHECK_OFF, Tuple, UDP_CHECK_OFF,
    },
    raw::{View, view},
};

/// ICMP header length before the quoted packet.
const ICMP_HDR: usize = 8;
/// ICMP types quoting a packet: destination unreachable, time exceeded (v4); destination
/// unreachable, packet too big, time exceeded, parameter problem (v6).
pub const ICMP_ERRORS: [u8; 2] = [3, 11];
pub const ICMPV6_ERRORS: [u8; 4] = [1, 2, 3, 4];

/// The quoted transport header's ports and, where quoted, its checksum (an 8-byte quote always
/// holds UDP's; TCP's is 16 bytes in; SCTP's CRC32c covers no address and needs no change).
struct Quote<'a> {
    head: View<'a, [u8; 8]>,
    tcp_check: Option<View<'a, u16>>,
    proto: u8,
}

#[inline(always)]
fn quote(ctx: &XdpContext, off: usize, proto: u8) -> Option<Quote<'_>> {
    if proto != PROTO_TCP && proto != PROTO_UDP && proto != PROTO_SCTP {
        return None;
    }
    let head = view::<[u8; 8]>(ctx, off)?;
    let tcp_check = match proto {
        PROTO_TCP => view::<u16>(ctx, off + TCP_CHECK_OFF),
        _ => None,
    };
    Some(Quote {
        head,
        tcp_check,
        proto,
    })
}

impl Quote<'_> {
    /// The quoted reply's (source, destination) ports.
    #[inline(always)]
    fn ports(&self) -> (u16, u16) {
        (self.head.get::<u16, 0>(), self.head.get::<u16, 2>())
    }
}

/// Rewrites the quoted source port and the quoted checksum for a source address change of
/// checksum difference `addr`; returns the difference of the quoted bytes for the ICMP checksum.
#[inline(always)]
fn rewrite_quote(q: Quote<'_>, addr: u32, port_be: u16) -> u32 {
    let old_port = q.head.get::<u16, 0>();
    q.head.set::<u16, 0>(port_be);
    let mut icmp = csum_diff2(old_port, port_be);
    let l4 = addr + csum_diff2(old_port, port_be);
    if q.proto == PROTO_UDP {
        let old = q.head.get::<u16, UDP_CHECK_OFF>();
        let new = udp_csum_apply(old, l4);
        q.head.set::<u16, UDP_CHECK_OFF>(new);
        icmp += csum_diff2(old, new);
    } else if let Some(check) = q.tcp_check {
        let old = check.read();
        let new = csum_apply(old, l4);
        check.write(new);
        icmp += csum_diff2(old, new);
    }
    icmp
}

/// Applies `diff` to the checksum of the ICMP header at `off` (taken here, just before the
/// write: the verifier then holds one packet pointer less across the lookups).
#[inline(always)]
fn set_icmp_check(ctx: &XdpContext, off: usize, diff: u32) -> bool {
    let Some(check) = view::<u16>(ctx, off + 2) else {
        return false;
    };
    check.write(csum_apply(check.read(), diff));
    true
}

/// Translates an IPv4 ICMP error to `vip` quoting a translated reply; false: not one.
#[inline(always)]
pub fn error_v4(ctx: &XdpContext, ip: View<'_, Ipv4Hdr>, l3: usize, vip: u32) -> bool {
    let icmp_off = l3 + IPV4_MIN_LEN;
    let inner_off = icmp_off + ICMP_HDR;
    let Some(inner) = view::<Ipv4Hdr>(ctx, inner_off) else {
        return false;
    };
    let quoted = inner.read();
    // The quote must be a whole first fragment without options, sent from the VIP.
    if quoted.vihl != 0x45
        || parse::is_fragment(quoted.frags)
        || quoted.src_addr != vip.to_ne_bytes()
    {
        return false;
    }
    let Some(q) = quote(ctx, inner_off + IPV4_MIN_LEN, quoted.proto) else {
        return false;
    };
    // The quoted reply, seen as the flow it belongs to: client -> VIP:port.
    let (vip_port, client_port) = q.ports();
    let t = Tuple {
        saddr: u32::from_ne_bytes(quoted.dst_addr),
        daddr: vip,
        sport_be: client_port,
        dport_be: vip_port,
        proto: quoted.proto,
        syn: false,
    };
    let Some(backend) = lb::pinned_flow::<V4>(&t) else {
        return false;
    };
    let BackendV4 {
        addr_be, port_be, ..
    } = backend;
    let addr = csum_diff4(vip, addr_be);
    ip.set::<u16, IP_CHECK_OFF>(csum_apply(ip.get::<u16, IP_CHECK_OFF>(), addr));
    ip.set::<u32, IP_DST_OFF>(addr_be);
    let old_check = inner.get::<u16, IP_CHECK_OFF>();
    let new_check = csum_apply(old_check, addr);
    inner.set::<u16, IP_CHECK_OFF>(new_check);
    inner.set::<u32, IP_SRC_OFF>(addr_be);
    let quoted = rewrite_quote(q, addr, port_be);
    // ICMPv4's checksum covers the message only: every quoted word that changed.
    set_icmp_check(
        ctx,
        icmp_off,
        addr + csum_diff2(old_check, new_check) + quoted,
    )
}

/// Translates an ICMPv6 error to `vip` quoting a translated reply; false: not one.
#[inline(always)]
pub fn error_v6(ctx: &XdpContext, ip: View<'_, Ipv6Hdr>, l3: usize, vip: Ip6) -> bool {
    let icmp_off = l3 + IPV6_LEN;
    let inner_off = icmp_off + ICMP_HDR;
    let Some(inner) = view::<Ipv6Hdr>(ctx, inner_off) else {
        return false;
    };
    if parse::src6(inner) != vip {
        return false;
    }
    let proto = inner.read().next_hdr;
    let Some(q) = quote(ctx, inner_off + IPV6_LEN, proto) else {
        return false;
    };
    let (vip_port, client_port) = q.ports();
    let t = Tuple {
        saddr: parse::dst6(inner),
        daddr: vip,
        sport_be: client_port,
        dport_be: vip_port,
        proto,
        syn: false,
    };
    let Some(backend) = lb::pinned_flow::<V6>(&t) else {
        return false;
    };
    let BackendV6 { addr, port_be, .. } = backend;
    let diff = csum_diff_ip6(&vip, &addr);
    ip.set::<Ip6, IP6_DST_OFF>(addr);
    inner.set::<Ip6, IP6_SRC_OFF>(addr);
    let quoted = rewrite_quote(q, diff, port_be);
    // ICMPv6's checksum covers a pseudo header too: the outer destination changed as well.
    set_icmp_check(ctx, icmp_off, diff + diff + quoted)
}
