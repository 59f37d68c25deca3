//! Packets for the datapath fixtures, built with etherparse (which computes every checksum from
//! scratch, independently of the programs under test).
use std::net::{IpAddr, Ipv4Addr};

use etherparse::{IpHeaders, IpNumber, Ipv4Header, PacketBuilder};
use l3lb_common::{ConnKeyV4, FlowKeyV4, FlowNatV4, PROTO_TCP, PROTO_UDP};
use l3lb_userspace::core::model::{Backends, Endpoint, FrontendId, Proto};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const TC_ACT_OK: u32 = 0;

pub const MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_NODE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT: [u8; 4] = [198, 51, 100, 7];
pub const CLIENT_PORT: u16 = 40_000;
pub const VIP: [u8; 4] = [203, 0, 113, 10];
pub const OTHER: [u8; 4] = [203, 0, 113, 99];
pub const POD: [u8; 4] = [10, 244, 1, 5];
pub const HTTP: u16 = 80;
pub const HTTPS: u16 = 443;
pub const DNS: u16 = 53;
pub const POD_HTTP: u16 = 8080;
pub const POD_DNS: u16 = 5353;

pub fn be(addr: [u8; 4]) -> u32 {
    u32::from_ne_bytes(addr)
}

pub fn ip4(addr: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(addr))
}

/// The frontend `vip:port` of IP protocol `proto`.
pub fn fe(vip: [u8; 4], port: u16, proto: u8) -> FrontendId {
    FrontendId {
        vip: ip4(vip),
        port,
        proto: Proto::from_number(proto).expect("tcp or udp"),
    }
}

pub fn ep(addr: [u8; 4], port: u16) -> Endpoint {
    Endpoint {
        addr: ip4(addr),
        port,
    }
}

/// Ready endpoints, no affinity.
pub fn backends(ready: &[([u8; 4], u16)]) -> Backends {
    ready
        .iter()
        .map(|(a, p)| ep(*a, *p))
        .collect::<std::collections::BTreeSet<_>>()
        .into()
}

/// The pin key of the flow `client -> vip` of `proto`.
pub fn conn(client: ([u8; 4], u16), vip: ([u8; 4], u16), proto: u8) -> ConnKeyV4 {
    ConnKeyV4 {
        client_be: be(client.0),
        vip_be: be(vip.0),
        client_port_be: client.1.to_be(),
        vip_port_be: vip.1.to_be(),
        proto,
        _pad: 0,
        _pad2: 0,
    }
}

/// The flow entry XDP records for client -> VIP:port translated to backend.
pub fn flow(backend: ([u8; 4], u16), proto: u8, vip: ([u8; 4], u16)) -> (FlowKeyV4, FlowNatV4) {
    (
        FlowKeyV4 {
            backend_addr_be: be(backend.0),
            client_addr_be: be(CLIENT),
            backend_port_be: backend.1.to_be(),
            client_port_be: CLIENT_PORT.to_be(),
            proto,
            _pad: 0,
            _pad2: 0,
        },
        FlowNatV4 {
            vip_be: be(vip.0),
            port_be: vip.1.to_be(),
            _pad: 0,
        },
    )
}

pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    options: &[u8],
    more_fragments: bool,
) -> IpHeaders {
    let mut ip = Ipv4Header::new(0, 64, IpNumber(proto), src, dst).expect("ipv4 header");
    ip.identification = 0x1234;
    ip.more_fragments = more_fragments;
    ip.options = options.try_into().expect("ipv4 options");
    IpHeaders::Ipv4(ip, Default::default())
}

pub fn write(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    builder(&mut out);
    out
}

/// TCP segment `src -> dst` (SYN when `ack` is None, SYN-ACK otherwise), IPv4 `options`.
pub fn tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), options: &[u8], ack: Option<u32>) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ip(ipv4(src.0, dst.0, PROTO_TCP, options, false))
        .tcp(src.1, dst.1, 1_000, 64_240)
        .syn();
    let step = match ack {
        Some(n) => step.ack(n),
        None => step,
    };
    write(|out| step.write(out, &[]).expect("tcp packet"))
}

/// A TCP segment `src -> dst` with only ACK set (and a little payload): mid-connection.
pub fn tcp_ack(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ip(ipv4(src.0, dst.0, PROTO_TCP, &[], false))
        .tcp(src.1, dst.1, 1_001, 64_240)
        .ack(5_000);
    write(|out| step.write(out, b"GET / HTTP/1.1\r\n").expect("tcp packet"))
}

pub fn udp(src: ([u8; 4], u16), dst: ([u8; 4], u16), more_fragments: bool) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ip(ipv4(src.0, dst.0, PROTO_UDP, &[], more_fragments))
        .udp(src.1, dst.1);
    write(|out| step.write(out, b"l3lb-query").expect("udp packet"))
}

/// The same UDP packet sent without a checksum (0 = none).
pub fn udp_no_csum(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut packet = udp(src, dst, false);
    packet[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    packet
}

/// ICMP message `src -> dst` of `icmp_type` (code 0), e.g. 8 = echo request.
pub fn icmp(src: [u8; 4], dst: [u8; 4], icmp_type: u8, options: &[u8]) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ip(ipv4(src, dst, 1, options, false))
        .icmpv4_raw(icmp_type, 0, [0, 1, 0, 1]);
    write(|out| step.write(out, b"l3lb-ping").expect("icmp packet"))
}

/// An IPv4 packet `src -> dst` of IP protocol `proto` carrying `payload`.
pub fn ip_raw(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE).ip(ipv4(src, dst, proto, &[], false));
    write(|out| {
        step.write(out, IpNumber(proto), payload)
            .expect("ip packet")
    })
}

/// A non-first IPv4 fragment (offset 8 bytes, no more fragments) `src -> dst` of UDP.
pub fn udp_fragment_tail(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, IpNumber(PROTO_UDP), src, dst).expect("ipv4 header");
    ip.identification = 0x1234;
    ip.fragment_offset = 1u16.try_into().expect("fragment offset");
    let step =
        PacketBuilder::ethernet2(MAC_PEER, MAC_NODE).ip(IpHeaders::Ipv4(ip, Default::default()));
    write(|out| {
        step.write(out, IpNumber(PROTO_UDP), b"rest of the datagram")
            .expect("fragment")
    })
}

pub fn ipv6_udp() -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
            64,
        )
        .udp(CLIENT_PORT, DNS);
    write(|out| step.write(out, b"v6").expect("ipv6 packet"))
}

pub const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
pub const VIP6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
pub const OTHER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99];
pub const POD6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5];

pub fn ip6(addr: [u8; 16]) -> IpAddr {
    IpAddr::from(addr)
}

/// The IPv6 frontend `vip:port` of IP protocol `proto`.
pub fn fe6(vip: [u8; 16], port: u16, proto: u8) -> FrontendId {
    FrontendId {
        vip: ip6(vip),
        port,
        proto: Proto::from_number(proto).expect("tcp or udp"),
    }
}

pub fn ep6(addr: [u8; 16], port: u16) -> Endpoint {
    Endpoint {
        addr: ip6(addr),
        port,
    }
}

pub fn backends6(ready: &[([u8; 16], u16)]) -> Backends {
    ready
        .iter()
        .map(|(a, p)| ep6(*a, *p))
        .collect::<std::collections::BTreeSet<_>>()
        .into()
}

/// An IPv6 TCP segment `src -> dst`: a SYN (`ack` None) or an ACK with a little payload.
pub fn tcp6(src: ([u8; 16], u16), dst: ([u8; 16], u16), ack: Option<u32>) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ipv6(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1_000, 64_240);
    match ack {
        None => write(|out| step.syn().write(out, &[]).expect("tcp6 packet")),
        Some(n) => write(|out| step.ack(n).write(out, b"GET /").expect("tcp6 packet")),
    }
}

pub fn udp6(src: ([u8; 16], u16), dst: ([u8; 16], u16)) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ipv6(src.0, dst.0, 64)
        .udp(src.1, dst.1);
    write(|out| step.write(out, b"l3lb-query6").expect("udp6 packet"))
}

/// An ICMPv6 message `src -> dst` of `icmp_type` (code 0).
pub fn icmp6(src: [u8; 16], dst: [u8; 16], icmp_type: u8) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ipv6(src, dst, 64)
        .icmpv6_raw(icmp_type, 0, [0, 1, 0, 1]);
    write(|out| step.write(out, b"l3lb-ping6").expect("icmpv6 packet"))
}

/// An IPv6 packet `src -> dst` whose first next header is `next` (e.g. 0 hop-by-hop, 44
/// fragment), carrying an 8-byte extension header then a UDP-looking payload.
pub fn ipv6_ext(src: [u8; 16], dst: [u8; 16], next: u8) -> Vec<u8> {
    let mut ip = etherparse::Ipv6Header {
        source: src,
        destination: dst,
        hop_limit: 64,
        next_header: IpNumber(next),
        ..Default::default()
    };
    let mut payload = vec![PROTO_UDP, 0, 0, 0, 0, 0, 0, 0];
    payload.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 12, 0, 0, b'h', b'i', b'!', b'!']);
    ip.payload_length = payload.len() as u16;
    let mut p = Vec::new();
    etherparse::Ethernet2Header {
        source: MAC_PEER,
        destination: MAC_NODE,
        ether_type: etherparse::EtherType::IPV6,
    }
    .write(&mut p)
    .expect("ethernet");
    ip.write(&mut p).expect("ipv6");
    p.extend_from_slice(&payload);
    p
}

pub fn arp_request() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&[0xff; 6]);
    p.extend_from_slice(&MAC_PEER);
    p.extend_from_slice(&[0x08, 0x06]); // ARP
    p.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    p.extend_from_slice(&MAC_PEER);
    p.extend_from_slice(&CLIENT);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&VIP); // who has the VIP?
    p
}

pub fn truncated(mut packet: Vec<u8>, len: usize) -> Vec<u8> {
    packet.truncate(len);
    packet
}

/// An ICMPv4 error `src -> dst` of `icmp_type`/`code` (bytes 4..8: `rest`, e.g. the next-hop
/// MTU) quoting `quoted` (an IP packet, as much of it as a router would send).
pub fn icmp4_error(
    src: [u8; 4],
    dst: [u8; 4],
    (icmp_type, code, rest): (u8, u8, [u8; 4]),
    quoted: &[u8],
) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ip(ipv4(src, dst, 1, &[], false))
        .icmpv4_raw(icmp_type, code, rest);
    write(|out| step.write(out, quoted).expect("icmp error"))
}

/// An ICMPv6 error `src -> dst` quoting `quoted` (an IPv6 packet).
pub fn icmp6_error(
    src: [u8; 16],
    dst: [u8; 16],
    (icmp_type, code, rest): (u8, u8, [u8; 4]),
    quoted: &[u8],
) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE)
        .ipv6(src, dst, 64)
        .icmpv6_raw(icmp_type, code, rest);
    write(|out| step.write(out, quoted).expect("icmpv6 error"))
}

/// The IP packet inside a frame (what an ICMP error quotes), cut to `len` bytes.
pub fn quote(frame: &[u8], len: usize) -> Vec<u8> {
    frame[14..].iter().take(len).copied().collect()
}

/// `frame` with VLAN tags inserted after the MAC addresses: one (802.1Q, VLAN `vids[0]`) or two
/// (802.1ad outside, 802.1Q inside).
pub fn tagged(frame: &[u8], vids: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (i, vid) in vids.iter().enumerate() {
        let tpid: [u8; 2] = if i + 1 < vids.len() {
            [0x88, 0xa8]
        } else {
            [0x81, 0x00]
        };
        out.extend_from_slice(&tpid);
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}
