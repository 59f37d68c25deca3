//! Ingress (XDP): a packet for a frontend gets its destination rewritten to a local endpoint
//! (pod address and target port), keeping the client's source, and goes to the kernel's
//! forwarding path (XDP_PASS).
//!
//! Not for a VIP: passed untouched (fragments, options and extension headers included); outside
//! the VIP prefixes that takes no map lookup. For a VIP: fragments and packets with IPv4 options
//! or IPv6 extension headers are dropped, a frontend's packets are DNATed, ICMP echo requests and
//! errors (and neighbour discovery) pass to the host, and everything else (a frontend without
//! endpoints included) is dropped, so host sockets listening on all addresses are not reachable
//! through a VIP.
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    programs::XdpContext,
};
use l3lb_common::{
    BackendV4, BackendV6, Counter, Ip6, PROTO_ICMP, PROTO_ICMPV6, csum_apply, csum_diff_ip6,
    csum_diff2, csum_diff4, udp_csum_apply,
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    family::{Family, V4, V6},
    forward, icmp,
    lb::{self, Choice},
    maps,
    parse::{
        self, IP_CHECK_OFF, IP_DST_OFF, IP6_DST_OFF, IPV4_MIN_LEN, IPV6_LEN, Ingress, Ingress4,
        Ingress6, L3, L4, Payload, Shape, TCP_CHECK_OFF, TCP_DPORT_OFF, Tuple, UDP_CHECK_OFF,
        UDP_DPORT_OFF,
    },
    raw::View,
};

/// ICMP types let through to the host when addressed to a VIP: echo request (the host answers
/// pings), destination unreachable (path MTU discovery) and time exceeded.
const ICMP_PASS: [u8; 3] = [8, 3, 11];
/// ICMPv6: destination unreachable, packet too big, time exceeded, parameter problem, echo
/// request, and neighbour discovery (router/neighbour solicitation and advertisement, redirect).
const ICMPV6_PASS: [u8; 10] = [1, 2, 3, 4, 128, 133, 134, 135, 136, 137];

/// XDP verdict and the counter it is accounted under.
#[inline(always)]
pub fn xdp_ingress(ctx: &XdpContext, bytes: u64) -> (u32, Counter) {
    match parse::xdp_l3(ctx) {
        Some((L3::V4(ip), l3)) => ingress_v4(ctx, ip, l3, bytes),
        Some((L3::V6(ip), l3)) => ingress_v6(ctx, ip, l3, bytes),
        None => (XDP_PASS, Counter::XdpPassNotOurs),
    }
}

/// The verdict of a packet to a possible VIP that is not (or not only) TCP/UDP to a frontend.
#[inline(always)]
fn filter(vip: bool, shape: Shape, icmp: Option<(u8, &[u8])>) -> (u32, Counter) {
    match (vip, shape) {
        (false, Shape::Fragment) => (XDP_PASS, Counter::XdpPassFragment),
        (false, _) => (XDP_PASS, Counter::XdpPassNotOurs),
        (true, Shape::Fragment) => (XDP_DROP, Counter::XdpDropVipFragment),
        (true, Shape::Options) => (XDP_DROP, Counter::XdpDropVipIpOptions),
        (true, Shape::Plain) => match icmp {
            Some((t, pass)) if pass.contains(&t) => (XDP_PASS, Counter::XdpPassVipIcmp),
            _ => (XDP_DROP, Counter::XdpDropVipNoFrontend),
        },
    }
}

#[inline(always)]
fn ingress_v4(ctx: &XdpContext, ip: View<'_, Ipv4Hdr>, l3: usize, bytes: u64) -> (u32, Counter) {
    let hdr = ip.read();
    let daddr = u32::from_ne_bytes(hdr.dst_addr);
    let shape = parse::shape_v4(&hdr);
    if !maps::in_prefixes_v4(daddr) {
        return filter(false, shape, None);
    }
    if shape != Shape::Plain {
        return filter(V4::is_vip(daddr), shape, None);
    }
    let saddr = u32::from_ne_bytes(hdr.src_addr);
    let (l4, sport_be, dport_be, syn) =
        match parse::xdp_payload(ctx, l3 + IPV4_MIN_LEN, hdr.proto, PROTO_ICMP) {
            Payload::Packet(l4, s, d, syn) => (l4, s, d, syn),
            Payload::Icmp(t)
                if icmp::ICMP_ERRORS.contains(&t) && icmp::error_v4(ctx, ip, l3, daddr) =>
            {
                return (XDP_PASS, Counter::XdpIcmpErrorNat);
            }
            Payload::Icmp(t) => return filter(V4::is_vip(daddr), shape, Some((t, &ICMP_PASS))),
            Payload::Other => return filter(V4::is_vip(daddr), shape, None),
        };
    let t = Tuple {
        saddr,
        daddr,
        sport_be,
        dport_be,
        proto: hdr.proto,
        syn,
    };
    let (backend, slot) = match lb::choose::<V4>(&t) {
        Choice::Backend(backend, slot) => (backend, slot),
        // Not to the host either: its sockets on this port must not answer for the VIP.
        Choice::NoBackend => return (XDP_DROP, Counter::XdpNoBackend),
        Choice::NotFound => return filter(V4::is_vip(daddr), shape, None),
    };
    lb::count::<V4>(&backend, slot, bytes);
    let to = Tuple {
        daddr: backend.addr_be,
        dport_be: backend.port_be,
        ..t
    };
    rewrite_v4(Ingress { ip, l4, t }, &backend);
    forward::forward_v4(ctx, l3, &to)
}

#[inline(always)]
fn ingress_v6(ctx: &XdpContext, ip: View<'_, Ipv6Hdr>, l3: usize, bytes: u64) -> (u32, Counter) {
    let hdr = ip.read();
    let daddr = parse::dst6(ip);
    let shape = parse::shape_v6(&hdr);
    if !maps::in_prefixes_v6(daddr) {
        return filter(false, shape, None);
    }
    if shape != Shape::Plain {
        return filter(V6::is_vip(daddr), shape, None);
    }
    let saddr = parse::src6(ip);
    let proto = hdr.next_hdr;
    let (l4, sport_be, dport_be, syn) =
        match parse::xdp_payload(ctx, l3 + IPV6_LEN, proto, PROTO_ICMPV6) {
            Payload::Packet(l4, s, d, syn) => (l4, s, d, syn),
            Payload::Icmp(t)
                if icmp::ICMPV6_ERRORS.contains(&t) && icmp::error_v6(ctx, ip, l3, daddr) =>
            {
                return (XDP_PASS, Counter::XdpIcmpErrorNat);
            }
            Payload::Icmp(t) => return filter(V6::is_vip(daddr), shape, Some((t, &ICMPV6_PASS))),
            Payload::Other => return filter(V6::is_vip(daddr), shape, None),
        };
    let t = Tuple {
        saddr,
        daddr,
        sport_be,
        dport_be,
        proto,
        syn,
    };
    let (backend, slot) = match lb::choose::<V6>(&t) {
        Choice::Backend(backend, slot) => (backend, slot),
        Choice::NoBackend => return (XDP_DROP, Counter::XdpNoBackend),
        Choice::NotFound => return filter(V6::is_vip(daddr), shape, None),
    };
    lb::count::<V6>(&backend, slot, bytes);
    let to = Tuple {
        daddr: backend.addr,
        dport_be: backend.port_be,
        ..t
    };
    rewrite_v6(Ingress { ip, l4, t }, &backend);
    forward::forward_v6(ctx, l3, &to)
}

/// Rewrites the L4 destination port and checksum; `addr` is the addresses' checksum difference.
#[inline(always)]
fn rewrite_l4(l4: L4<'_>, addr: u32, dport_be: u16, port_be: u16) {
    let diff = addr + csum_diff2(dport_be, port_be);
    match l4 {
        L4::Tcp(tcp) => {
            tcp.set::<u16, TCP_CHECK_OFF>(csum_apply(tcp.get::<u16, TCP_CHECK_OFF>(), diff));
            tcp.set::<u16, TCP_DPORT_OFF>(port_be);
        }
        L4::Udp(udp) => {
            udp.set::<u16, UDP_CHECK_OFF>(udp_csum_apply(udp.get::<u16, UDP_CHECK_OFF>(), diff));
            udp.set::<u16, UDP_DPORT_OFF>(port_be);
        }
        L4::Sctp => {}
    }
}

/// Rewrites destination address and port, updating the checksums incrementally (RFC 1624).
#[inline(always)]
fn rewrite_v4(pkt: Ingress4<'_>, backend: &BackendV4) {
    let Ingress { ip, l4, t } = pkt;
    // The address is in the IP header's checksum and the L4 pseudo header: one difference.
    let addr = csum_diff4(t.daddr, backend.addr_be);
    ip.set::<u16, IP_CHECK_OFF>(csum_apply(ip.get::<u16, IP_CHECK_OFF>(), addr));
    ip.set::<u32, IP_DST_OFF>(backend.addr_be);
    rewrite_l4(l4, addr, t.dport_be, backend.port_be);
}

/// IPv6 has no header checksum: only the L4 pseudo header changes.
#[inline(always)]
fn rewrite_v6(pkt: Ingress6<'_>, backend: &BackendV6) {
    let Ingress { ip, l4, t } = pkt;
    ip.set::<Ip6, IP6_DST_OFF>(backend.addr);
    rewrite_l4(
        l4,
        csum_diff_ip6(&t.daddr, &backend.addr),
        t.dport_be,
        backend.port_be,
    );
}
