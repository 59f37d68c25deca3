//! Parse once into a small context; later stages read it.
//!
//! XDP reads packet memory directly through [`header_mut`], the crate's only `unsafe` for packet
//! access: every header is bounds-checked against `data_end` before a reference is made. TC reads
//! through the skb helpers (`bpf_skb_load_bytes`), which bound-check in the kernel.
use aya_ebpf::programs::{TcContext, XdpContext};
use l3lb_common::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use network_types::{ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

/// Ethernet header length (no VLAN tag: tagged frames are not ours and pass untouched).
pub const ETH_LEN: usize = 14;
const ETHER_TYPE_OFF: usize = 12;
const ETH_P_IP: [u8; 2] = [0x08, 0x00];
/// Offsets inside the IPv4 header.
pub const IP_CHECK_OFF: usize = 10;
pub const IP_SRC_OFF: usize = 12;
/// Length of an IPv4 header without options.
const IPV4_MIN_LEN: usize = 20;
/// Offsets of the checksum inside the L4 header.
pub const TCP_CHECK_OFF: usize = 16;
pub const UDP_CHECK_OFF: usize = 6;
/// SYN and ACK in the TCP header's data-offset/flags bitfield.
const TCP_SYN_BIT: usize = 9;
const TCP_ACK_BIT: usize = 12;
/// Fragment offset and More-Fragments bits of the IPv4 `frags` field.
const IP_FRAG_MASK: u16 = 0x3fff;

mod sealed {
    pub trait Header {}
}

/// Packet headers made only of byte arrays: alignment 1, every bit pattern valid.
pub trait Header: sealed::Header {}
impl<T: sealed::Header> Header for T {}
impl sealed::Header for [u8; 2] {}
impl sealed::Header for Ipv4Hdr {}
impl sealed::Header for TcpHdr {}
impl sealed::Header for UdpHdr {}
const _: () = assert!(align_of::<Ipv4Hdr>() == 1 && align_of::<TcpHdr>() == 1);
const _: () = assert!(align_of::<UdpHdr>() == 1 && size_of::<TcpHdr>() == 20);

/// A `&mut T` to the bytes at `offset` in the packet, if all of them lie inside it.
///
/// Callers take headers at disjoint offsets, so the references never overlap.
#[inline(always)]
#[allow(clippy::mut_from_ref)]
fn header_mut<T: Header>(ctx: &XdpContext, offset: usize) -> Option<&mut T> {
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

/// The outcome of parsing in TC.
pub enum Parsed<T> {
    /// Not IPv4 TCP/UDP, or truncated: pass untouched.
    NotOurs,
    /// An IPv4 fragment: no reliable L4 header, pass untouched.
    Fragment,
    Packet(T),
}

/// Where the L4 header of an XDP packet is, by protocol.
pub enum L4<'a> {
    Tcp(&'a mut TcpHdr),
    Udp(&'a mut UdpHdr),
}

/// An IPv4 TCP/UDP packet in XDP. Addresses and ports are raw network-order values.
pub struct Ingress<'a> {
    pub ip: &'a mut Ipv4Hdr,
    pub l4: L4<'a>,
    pub proto: u8,
    pub saddr_be: u32,
    pub daddr_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
    /// A TCP SYN without ACK: the start of a new connection.
    pub syn: bool,
}

/// IPv4 header length in bytes, if the version is 4 and the length is valid.
#[inline(always)]
fn ipv4_header_len(vihl: u8) -> Option<usize> {
    let ihl = (vihl & 0x0f) as usize;
    if vihl >> 4 != 4 || ihl < 5 {
        return None;
    }
    Some(ihl * 4)
}

#[inline(always)]
fn is_fragment(frags: [u8; 2]) -> bool {
    u16::from_be_bytes(frags) & IP_FRAG_MASK != 0
}

/// The IPv4 header of an XDP frame, and what decides how the rest is read.
pub struct Ipv4<'a> {
    pub ip: &'a mut Ipv4Hdr,
    pub daddr_be: u32,
    /// A fragment (More-Fragments set or a non-zero offset): no reliable L4 header.
    pub fragment: bool,
    /// The header carries options (IHL > 5).
    pub options: bool,
}

/// Parses an XDP frame down to its IPv4 header; None: not (valid) IPv4, or truncated.
#[inline(always)]
pub fn xdp_ipv4(ctx: &XdpContext) -> Option<Ipv4<'_>> {
    match header_mut::<[u8; 2]>(ctx, ETHER_TYPE_OFF) {
        Some(ether_type) if *ether_type == ETH_P_IP => {}
        _ => return None,
    }
    let ip = header_mut::<Ipv4Hdr>(ctx, ETH_LEN)?;
    let ip_len = ipv4_header_len(ip.vihl)?;
    Some(Ipv4 {
        daddr_be: u32::from_ne_bytes(ip.dst_addr),
        fragment: is_fragment(ip.frags),
        options: ip_len != IPV4_MIN_LEN,
        ip,
    })
}

/// What follows an IPv4 header without options or fragmentation, in XDP.
pub enum Payload<'a> {
    /// TCP or UDP, ports read.
    Packet(Ingress<'a>),
    /// ICMP: its type.
    Icmp(u8),
    /// Another protocol, or a truncated L4 header.
    Other,
}

/// Reads the L4 header after `ip`, a 20-byte IPv4 header (the caller has ruled out options).
#[inline(always)]
pub fn xdp_payload<'a>(ctx: &'a XdpContext, ip: &'a mut Ipv4Hdr) -> Payload<'a> {
    let l4_off = ETH_LEN + IPV4_MIN_LEN;
    let proto = ip.proto;
    let (l4, sport_be, dport_be, syn) = match proto {
        PROTO_TCP => {
            let Some(tcp) = header_mut::<TcpHdr>(ctx, l4_off) else {
                return Payload::Other;
            };
            let ports = (u16::from_ne_bytes(tcp.source), u16::from_ne_bytes(tcp.dest));
            let syn = tcp._bitfield_1.get_bit(TCP_SYN_BIT) && !tcp._bitfield_1.get_bit(TCP_ACK_BIT);
            (L4::Tcp(tcp), ports.0, ports.1, syn)
        }
        PROTO_UDP => {
            let Some(udp) = header_mut::<UdpHdr>(ctx, l4_off) else {
                return Payload::Other;
            };
            let ports = (u16::from_ne_bytes(udp.src), u16::from_ne_bytes(udp.dst));
            (L4::Udp(udp), ports.0, ports.1, false)
        }
        PROTO_ICMP => {
            // Type and code; every ICMP message is at least 8 bytes long.
            return match header_mut::<[u8; 2]>(ctx, l4_off) {
                Some(type_code) => Payload::Icmp(type_code[0]),
                None => Payload::Other,
            };
        }
        _ => return Payload::Other,
    };
    Payload::Packet(Ingress {
        proto,
        saddr_be: u32::from_ne_bytes(ip.src_addr),
        daddr_be: u32::from_ne_bytes(ip.dst_addr),
        ip,
        l4,
        sport_be,
        dport_be,
        syn,
    })
}

/// An IPv4 TCP/UDP packet in TC: offsets for the skb helpers and raw network-order values.
pub struct Egress {
    pub proto: u8,
    pub l4_off: usize,
    pub l4_check_off: usize,
    pub saddr_be: u32,
    pub daddr_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
}

/// Parses an skb down to its TCP/UDP ports.
#[inline(always)]
pub fn tc_ipv4(ctx: &TcContext) -> Parsed<Egress> {
    match ctx.load::<[u8; 2]>(ETHER_TYPE_OFF) {
        Ok(ether_type) if ether_type == ETH_P_IP => {}
        _ => return Parsed::NotOurs,
    }
    let Ok(ip) = ctx.load::<Ipv4Hdr>(ETH_LEN) else {
        return Parsed::NotOurs;
    };
    let Some(ip_len) = ipv4_header_len(ip.vihl) else {
        return Parsed::NotOurs;
    };
    if is_fragment(ip.frags) {
        return Parsed::Fragment;
    }
    let l4_off = ETH_LEN + ip_len;
    let proto = ip.proto;
    let l4_check_off = match proto {
        PROTO_TCP => l4_off + TCP_CHECK_OFF,
        PROTO_UDP => l4_off + UDP_CHECK_OFF,
        _ => return Parsed::NotOurs,
    };
    let Ok(ports) = ctx.load::<[u8; 4]>(l4_off) else {
        return Parsed::NotOurs;
    };
    // The checksum must be inside the packet too, or the rewrite would fail half-way.
    if ctx.load::<[u8; 2]>(l4_check_off).is_err() {
        return Parsed::NotOurs;
    }
    Parsed::Packet(Egress {
        proto,
        l4_off,
        l4_check_off,
        saddr_be: u32::from_ne_bytes(ip.src_addr),
        daddr_be: u32::from_ne_bytes(ip.dst_addr),
        sport_be: u16::from_ne_bytes([ports[0], ports[1]]),
        dport_be: u16::from_ne_bytes([ports[2], ports[3]]),
    })
}
