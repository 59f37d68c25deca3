//! Parse once into a small context; later stages read it.
//!
//! XDP reads packet memory directly through [`header_mut`], the crate's only `unsafe` for packet
//! access: every header is bounds-checked against `data_end` before a reference is made. TC reads
//! through the skb helpers (`bpf_skb_load_bytes`), which bound-check in the kernel.
use aya_ebpf::programs::XdpContext;
use l3lb_common::{Ip6, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

/// Ethernet header length without VLAN tags (TC: the kernel holds egress tags outside the
/// packet data).
pub const ETH_LEN: usize = 14;
pub const ETHER_TYPE_OFF: usize = 12;
pub const ETH_P_IP: [u8; 2] = [0x08, 0x00];
pub const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
/// Offsets inside the IPv4 header.
pub const IP_CHECK_OFF: usize = 10;
pub const IP_SRC_OFF: usize = 12;
/// Offsets of the next header and the source address inside the IPv6 header.
pub const IP6_NEXT_OFF: usize = 6;
pub const IP6_SRC_OFF: usize = 8;
/// Length of an IPv4 header without options, and of the IPv6 header.
pub const IPV4_MIN_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
/// Offsets of the checksum inside the L4 header.
pub const TCP_CHECK_OFF: usize = 16;
pub const UDP_CHECK_OFF: usize = 6;
/// Length of SCTP's common header, and the chunk type that opens an association.
const SCTP_COMMON_LEN: usize = 12;
const SCTP_INIT: u8 = 1;
/// SYN and ACK in the TCP header's data-offset/flags bitfield.
const TCP_SYN_BIT: usize = 9;
const TCP_ACK_BIT: usize = 12;
/// Fragment offset and More-Fragments bits of the IPv4 `frags` field.
const IP_FRAG_MASK: u16 = 0x3fff;
/// IPv6 next headers: the fragment header, and the other extension headers.
const IPV6_FRAGMENT: u8 = 44;
const IPV6_EXTENSIONS: [u8; 7] = [0, 43, 51, 60, 135, 139, 140];

mod sealed {
    pub trait Header {}
}

/// Packet headers made only of byte arrays: alignment 1, every bit pattern valid.
pub trait Header: sealed::Header {}
impl<T: sealed::Header> Header for T {}
impl sealed::Header for [u8; 2] {}
impl sealed::Header for [u8; 8] {}
impl sealed::Header for [u8; 12] {}
impl sealed::Header for Ipv4Hdr {}
impl sealed::Header for Ipv6Hdr {}
impl sealed::Header for TcpHdr {}
impl sealed::Header for UdpHdr {}
const _: () = assert!(align_of::<Ipv4Hdr>() == 1 && align_of::<TcpHdr>() == 1);
const _: () = assert!(align_of::<Ipv6Hdr>() == 1 && size_of::<Ipv6Hdr>() == IPV6_LEN);
const _: () = assert!(align_of::<UdpHdr>() == 1 && size_of::<TcpHdr>() == 20);

/// A `&mut T` to the bytes at `offset` in the packet, if all of them lie inside it.
///
/// Callers take headers at disjoint offsets, so the references never overlap.
#[inline(always)]
#[allow(clippy::mut_from_ref)]
pub fn header_mut<T: Header>(ctx: &XdpContext, offset: usize) -> Option<&mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    // SAFETY: the range [start + offset, start + offset + size_of::<T>()) is inside the packet
    // (checked above, and the verifier checks it again); `T` has alignment 1 and no invalid bit
    // patterns (the sealed `Header` trait), and the packet stays mapped for the program run.
    Some(unsafe { &mut *((start + offset) as *mut T) })
}

/// Where the L4 header of an XDP packet is, by protocol.
pub enum L4<'a> {
    Tcp(&'a mut TcpHdr),
    Udp(&'a mut UdpHdr),
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
    pub ip: &'a mut H,
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
    V4(&'a mut Ipv4Hdr),
    V6(&'a mut Ipv6Hdr),
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
    let mut ether_type = *header_mut::<[u8; 2]>(ctx, type_off)?;
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        type_off += VLAN_LEN;
        ether_type = *header_mut::<[u8; 2]>(ctx, type_off)?;
    }
    let l3 = type_off + 2;
    if ether_type == ETH_P_IP {
        let ip = header_mut::<Ipv4Hdr>(ctx, l3)?;
        ipv4_header_len(ip.vihl)?;
        return Some((L3::V4(ip), l3));
    }
    if ether_type == ETH_P_IPV6 {
        let ip = header_mut::<Ipv6Hdr>(ctx, l3)?;
        if ip.vcf[0] >> 4 != 6 {
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

/// An IPv6 address field of the packet as an [`Ip6`] (two loads).
#[inline(always)]
pub fn addr6(bytes: &[u8; 16]) -> Ip6 {
    let (hi, lo) = bytes.split_at(8);
    let word = |b: &[u8]| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    [word(hi), word(lo)]
}

/// Writes an [`Ip6`] into an IPv6 address field of the packet (two stores).
#[inline(always)]
pub fn set_addr6(field: &mut [u8; 16], addr: &Ip6) {
    let (hi, lo) = field.split_at_mut(8);
    hi.copy_from_slice(&addr[0].to_ne_bytes());
    lo.copy_from_slice(&addr[1].to_ne_bytes());
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
            let Some(tcp) = header_mut::<TcpHdr>(ctx, l4_off) else {
                return Payload::Other;
            };
            let (sport, dport) = (u16::from_ne_bytes(tcp.source), u16::from_ne_bytes(tcp.dest));
            let syn = tcp._bitfield_1.get_bit(TCP_SYN_BIT) && !tcp._bitfield_1.get_bit(TCP_ACK_BIT);
            Payload::Packet(L4::Tcp(tcp), sport, dport, syn)
        }
        PROTO_UDP => {
            let Some(udp) = header_mut::<UdpHdr>(ctx, l4_off) else {
                return Payload::Other;
            };
            let (sport, dport) = (u16::from_ne_bytes(udp.src), u16::from_ne_bytes(udp.dst));
            Payload::Packet(L4::Udp(udp), sport, dport, false)
        }
        PROTO_SCTP => {
            // The common header (ports, verification tag, checksum), then the first chunk's type.
            let Some(common) = header_mut::<[u8; 12]>(ctx, l4_off) else {
                return Payload::Other;
            };
            let (sport, dport) = (
                u16::from_ne_bytes([common[0], common[1]]),
                u16::from_ne_bytes([common[2], common[3]]),
            );
            let init = header_mut::<[u8; 2]>(ctx, l4_off + SCTP_COMMON_LEN)
                .is_some_and(|chunk| chunk[0] == SCTP_INIT);
            Payload::Packet(L4::Sctp, sport, dport, init)
        }
        p if p == icmp_proto && (p == PROTO_ICMP || p == PROTO_ICMPV6) => {
            // Type and code; every ICMP message is at least 4 bytes long.
            match header_mut::<[u8; 2]>(ctx, l4_off) {
                Some(type_code) => Payload::Icmp(type_code[0]),
                None => Payload::Other,
            }
        }
        _ => Payload::Other,
    }
}
