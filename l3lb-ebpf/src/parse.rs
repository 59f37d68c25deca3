//! Parse once into a small context; later stages read it.
//!
//! XDP reads and writes packet memory through [`View`]s (bounds-checked, by copy: see
//! [`crate::raw`]); TC through the skb helpers (`bpf_skb_load_bytes`), which bound-check in the
//! kernel.
use core::mem::offset_of;

use aya_ebpf::programs::XdpContext;
use l3lb_common::{Ip6, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::raw::{View, view};

/// Ethernet header length without VLAN tags (TC: the kernel holds egress tags outside the
/// packet data).
pub const ETH_LEN: usize = 14;
pub const ETHER_TYPE_OFF: usize = 12;
pub const ETH_P_IP: [u8; 2] = [0x08, 0x00];
pub const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
/// Offsets inside the IPv4 header.
pub const IP_TTL_OFF: usize = offset_of!(Ipv4Hdr, ttl);
pub const IP_CHECK_OFF: usize = offset_of!(Ipv4Hdr, check);
pub const IP_SRC_OFF: usize = offset_of!(Ipv4Hdr, src_addr);
pub const IP_DST_OFF: usize = offset_of!(Ipv4Hdr, dst_addr);
/// Offsets inside the IPv6 header.
pub const IP6_NEXT_OFF: usize = offset_of!(Ipv6Hdr, next_hdr);
pub const IP6_HOP_OFF: usize = offset_of!(Ipv6Hdr, hop_limit);
pub const IP6_SRC_OFF: usize = offset_of!(Ipv6Hdr, src_addr);
pub const IP6_DST_OFF: usize = offset_of!(Ipv6Hdr, dst_addr);
/// Length of an IPv4 header without options, and of the IPv6 header.
pub const IPV4_MIN_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
/// Offsets inside the L4 headers.
pub const TCP_DPORT_OFF: usize = offset_of!(TcpHdr, dest);
pub const TCP_CHECK_OFF: usize = offset_of!(TcpHdr, check);
pub const UDP_DPORT_OFF: usize = offset_of!(UdpHdr, dst);
pub const UDP_CHECK_OFF: usize = offset_of!(UdpHdr, check);
/// The TCP flags byte, and its SYN and ACK bits.
const TCP_FLAGS_OFF: usize = 13;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// Length of SCTP's common header, and the chunk type that opens an association.
const SCTP_COMMON_LEN: usize = 12;
const SCTP_INIT: u8 = 1;
/// Fragment offset and More-Fragments bits of the IPv4 `frags` field.
const IP_FRAG_MASK: u16 = 0x3fff;
/// IPv6 next headers: the fragment header, and the other extension headers.
const IPV6_FRAGMENT: u8 = 44;
const IPV6_EXTENSIONS: [u8; 7] = [0, 43, 51, 60, 135, 139, 140];

const _: () = assert!(size_of::<Ipv4Hdr>() == IPV4_MIN_LEN && size_of::<Ipv6Hdr>() == IPV6_LEN);
const _: () = assert!(size_of::<TcpHdr>() == 20 && size_of::<UdpHdr>() == 8);
const _: () = assert!(IP_CHECK_OFF == 10 && IP_SRC_OFF == 12 && IP6_SRC_OFF == 8);
const _: () = assert!(TCP_CHECK_OFF == 16 && UDP_CHECK_OFF == 6);

/// Where the L4 header of an XDP packet is, by protocol.
pub enum L4<'a> {
    Tcp(View<'a, TcpHdr>),
    Udp(View<'a, UdpHdr>),
    /// SCTP: nothing in its common header changes with the destination address (its CRC32c
    /// covers no pseudo header), and its port is never rewritten: the control plane programs
    /// SCTP backends only on the frontend's own port, since XDP cannot recompute the CRC32c.
    Sctp,
}

/// Addresses (raw, as on the wire), ports (network order) and protocol of a flow.
#[derive(Clone, Copy)]
pub struct Tuple<A> {
    pub saddr: A,
    pub daddr: A,
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    /// A TCP SYN without ACK or an SCTP INIT: the start of a new connection.
    pub syn: bool,
}

/// A TCP/UDP packet in XDP, of IP header `H` and address type `A`.
pub struct Ingress<'a, H, A> {
    pub ip: View<'a, H>,
    pub l4: L4<'a>,
    pub t: Tuple<A>,
}

pub type Ingress4<'a> = Ingress<'a, Ipv4Hdr, u32>;
pub type Ingress6<'a> = Ingress<'a, Ipv6Hdr, Ip6>;

/// IPv4 header length in bytes, if the version is 4 and the length is valid.
#[inline(always)]
pub fn ipv4_header_len(vihl: u8) -> Option<usize> {
    let ihl = (vihl & 0x0f) as usize;
    if vihl >> 4 != 4 || ihl < 5 {
        return None;
    }
    Some(ihl * 4)
}

#[inline(always)]
pub fn is_fragment(frags: [u8; 2]) -> bool {
    u16::from_be_bytes(frags) & IP_FRAG_MASK != 0
}

/// The IP header of an XDP frame, and what decides how the rest is read.
pub enum L3<'a> {
    V4(View<'a, Ipv4Hdr>),
    V6(View<'a, Ipv6Hdr>),
}

/// What an IP header says about the rest of the packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The L4 header follows the fixed header.
    Plain,
    /// A fragment: no reliable L4 header.
    Fragment,
    /// IPv4 options or IPv6 extension headers before the L4 header.
    Options,
}

/// 802.1Q and 802.1ad (QinQ) tag ethertypes, and a tag's length.
const ETH_P_8021Q: [u8; 2] = [0x81, 0x00];
const ETH_P_8021AD: [u8; 2] = [0x88, 0xa8];
const VLAN_LEN: usize = 4;

/// Parses an XDP frame down to its IP header, past up to two VLAN tags; with the header, the
/// offset it starts at. None: not (valid) IP, or truncated.
#[inline(always)]
pub fn xdp_l3(ctx: &XdpContext) -> Option<(L3<'_>, usize)> {
    let mut type_off = ETHER_TYPE_OFF;
    let mut ether_type = view::<[u8; 2]>(ctx, type_off)?.read();
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        type_off += VLAN_LEN;
        ether_type = view::<[u8; 2]>(ctx, type_off)?.read();
    }
    let l3 = type_off + 2;
    if ether_type == ETH_P_IP {
        let ip = view::<Ipv4Hdr>(ctx, l3)?;
        ipv4_header_len(ip.read().vihl)?;
        return Some((L3::V4(ip), l3));
    }
    if ether_type == ETH_P_IPV6 {
        let ip = view::<Ipv6Hdr>(ctx, l3)?;
        if ip.read().vcf[0] >> 4 != 6 {
            return None;
        }
        return Some((L3::V6(ip), l3));
    }
    None
}

#[inline(always)]
pub fn shape_v4(ip: &Ipv4Hdr) -> Shape {
    if is_fragment(ip.frags) {
        Shape::Fragment
    } else if ip.vihl & 0x0f != 5 {
        Shape::Options
    } else {
        Shape::Plain
    }
}

#[inline(always)]
pub fn shape_v6(ip: &Ipv6Hdr) -> Shape {
    if ip.next_hdr == IPV6_FRAGMENT {
        Shape::Fragment
    } else if IPV6_EXTENSIONS.contains(&ip.next_hdr) {
        Shape::Options
    } else {
        Shape::Plain
    }
}

/// The source address of an IPv6 header (two loads; an [`Ip6`] holds the wire bytes).
#[inline(always)]
pub fn src6(ip: View<'_, Ipv6Hdr>) -> Ip6 {
    ip.get::<Ip6, IP6_SRC_OFF>()
}

/// The destination address of an IPv6 header.
#[inline(always)]
pub fn dst6(ip: View<'_, Ipv6Hdr>) -> Ip6 {
    ip.get::<Ip6, IP6_DST_OFF>()
}

/// What follows a fixed IP header, in XDP.
pub enum Payload<'a> {
    /// TCP, UDP or SCTP: ports read, and whether it opens a connection (a TCP SYN, an SCTP
    /// INIT).
    Packet(L4<'a>, u16, u16, bool),
    /// ICMP or ICMPv6 (as `icmp_proto` says): its type.
    Icmp(u8),
    /// Another protocol, or a truncated L4 header.
    Other,
}

/// Reads the L4 header of protocol `proto` at `l4_off`; `icmp_proto` is the family's ICMP.
#[inline(always)]
pub fn xdp_payload(ctx: &XdpContext, l4_off: usize, proto: u8, icmp_proto: u8) -> Payload<'_> {
    match proto {
        PROTO_TCP => {
            let Some(tcp) = view::<TcpHdr>(ctx, l4_off) else {
                return Payload::Other;
            };
            let (sport, dport) = (tcp.get::<u16, 0>(), tcp.get::<u16, TCP_DPORT_OFF>());
            let syn = tcp.get::<u8, TCP_FLAGS_OFF>() & (TCP_SYN | TCP_ACK) == TCP_SYN;
            Payload::Packet(L4::Tcp(tcp), sport, dport, syn)
        }
        PROTO_UDP => {
            let Some(udp) = view::<UdpHdr>(ctx, l4_off) else {
                return Payload::Other;
            };
            let (sport, dport) = (udp.get::<u16, 0>(), udp.get::<u16, UDP_DPORT_OFF>());
            Payload::Packet(L4::Udp(udp), sport, dport, false)
        }
        PROTO_SCTP => {
            // The common header (ports, verification tag, checksum), then the first chunk's type.
            let Some(common) = view::<[u8; SCTP_COMMON_LEN]>(ctx, l4_off) else {
                return Payload::Other;
            };
            let (sport, dport) = (common.get::<u16, 0>(), common.get::<u16, 2>());
            let init = view::<[u8; 2]>(ctx, l4_off + SCTP_COMMON_LEN)
                .is_some_and(|chunk| chunk.get::<u8, 0>() == SCTP_INIT);
            Payload::Packet(L4::Sctp, sport, dport, init)
        }
        p if p == icmp_proto && (p == PROTO_ICMP || p == PROTO_ICMPV6) => {
            // Type and code; every ICMP message is at least 4 bytes long.
            match view::<[u8; 2]>(ctx, l4_off) {
                Some(type_code) => Payload::Icmp(type_code.get::<u8, 0>()),
                None => Payload::Other,
            }
        }
        _ => Payload::Other,
    }
}
