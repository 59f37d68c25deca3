//! L2 mode's ARP/NDP responder (XDP): an ARP request, or an IPv6 Neighbour Solicitation, for an
//! address this node announces on the interface it arrived on (an entry in the responder map,
//! written by the daemon only on the address's announcer) is answered right here: the frame is
//! rewritten into the reply and sent back out of the same interface (XDP_TX). The host never
//! holds the address, so there is nothing for the kernel to answer wrongly.
//!
//! Anything else passes untouched to the rest of the program: other ARP operations, gratuitous
//! ARP (sender = target), Solicitations without exactly one source link-layer address option
//! (duplicate address detection from `::` included), VLAN-tagged frames.
use crate::raw;
use aya_ebpf::{btf_maps::HashMap, macros::btf_map, programs::XdpContext};
use l3lb_common::{
    PROTO_ICMPV6,
    neigh::{
        ARP_FRAME_LEN, ARP_HDR, ARP_OP, ARP_SPA, ARP_TPA, ICMP6, ICMPV6_NS, IP6_HDR, IP6_HOP_LIMIT,
        IP6_NEXT, IP6_PAYLOAD_LEN, MAX_NEIGH, ND_FRAME_LEN, ND_LEN, ND_OPTION, ND_TARGET,
        NeighKeyV4, NeighKeyV6, NeighMac, arp_reply_in_place, neighbour_advertisement_in_place,
    },
};

const NEIGH: usize = MAX_NEIGH as usize;

#[btf_map]
pub static L3LB_NEIGH_V4: HashMap<NeighKeyV4, NeighMac, NEIGH> = HashMap::new();
#[btf_map]
pub static L3LB_NEIGH_V6: HashMap<NeighKeyV6, NeighMac, NEIGH> = HashMap::new();

const ETHER_TYPE: usize = 12;
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
/// ARP for IPv4 over Ethernet: hardware type 1, protocol 0x0800, lengths 6 and 4; a request.
const ARP_ETHER_IPV4_REQUEST: [u8; 8] = [0x00, 0x01, 0x08, 0x00, 6, 4, 0, 1];
/// Neighbour Discovery messages carry hop limit 255 (RFC 4861: proof they were not routed).
const ND_HOP_LIMIT: u8 = 255;

/// Whether the frame was a request this node answers: it now holds the reply, to send back
/// with `XDP_TX`. Not inlined: its own stack frame, apart from the translation path's. A `bool`,
/// not an `Option<u32>`: the BPF backend returns the latter through a misaligned stack slot.
#[inline(never)]
pub fn respond(ctx: &XdpContext) -> bool {
    let answered = match raw::view::<[u8; 2]>(ctx, ETHER_TYPE).map(|v| v.read()) {
        Some(ETH_P_ARP) => arp(ctx),
        Some(ETH_P_IPV6) => solicitation(ctx),
        _ => None,
    };
    answered.is_some()
}

#[inline(always)]
fn arp(ctx: &XdpContext) -> Option<()> {
    // A copy, rewritten and written back: packet memory is never borrowed (raw.rs).
    let packet = raw::view::<[u8; ARP_FRAME_LEN]>(ctx, 0)?;
    let mut f = packet.read();
    let header = u64::from_ne_bytes([
        f[ARP_HDR],
        f[ARP_HDR + 1],
        f[ARP_HDR + 2],
        f[ARP_HDR + 3],
        f[ARP_HDR + 4],
        f[ARP_HDR + 5],
        f[ARP_OP],
        f[ARP_OP + 1],
    ]);
    if header != u64::from_ne_bytes(ARP_ETHER_IPV4_REQUEST) {
        return None;
    }
    let word = |at: usize| u32::from_ne_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
    let (spa, tpa) = (word(ARP_SPA), word(ARP_TPA));
    // Gratuitous ARP announces the sender's own address; it asks nothing.
    if spa == tpa {
        return None;
    }
    let key = NeighKeyV4 {
        ifindex: ctx.ingress_ifindex() as u32,
        addr_be: tpa,
    };
    let mac = lookup(&L3LB_NEIGH_V4, &key)?;
    arp_reply_in_place(&mut f, &mac);
    packet.write(f);
    Some(())
}

#[inline(always)]
fn solicitation(ctx: &XdpContext) -> Option<()> {
    // Every IPv6 packet comes here first: two one-byte reads turn the rest away before the
    // whole frame is copied.
    if raw::view::<u8>(ctx, IP6_NEXT)?.read() != PROTO_ICMPV6
        || raw::view::<u8>(ctx, ICMP6)?.read() != ICMPV6_NS
    {
        return None;
    }
    let packet = raw::view::<[u8; ND_FRAME_LEN]>(ctx, 0)?;
    let mut f = packet.read();
    let payload_len = u16::from_be_bytes([f[IP6_PAYLOAD_LEN], f[IP6_PAYLOAD_LEN + 1]]);
    if f[IP6_HDR] >> 4 != 6
        || f[IP6_NEXT] != PROTO_ICMPV6
        || f[IP6_HOP_LIMIT] != ND_HOP_LIMIT
        || usize::from(payload_len) != ND_LEN
        || f[ICMP6] != ICMPV6_NS
        || f[ICMP6 + 1] != 0
        // Exactly one option: the source link-layer address (1), 8 bytes long.
        || f[ND_OPTION] != 1
        || f[ND_OPTION + 1] != 1
    {
        return None;
    }
    let mut key = NeighKeyV6 {
        ifindex: ctx.ingress_ifindex() as u32,
        addr: [0; 16],
    };
    let mut i = 0;
    while i < 16 {
        key.addr[i] = f[ND_TARGET + i];
        i += 1;
    }
    let mac = lookup(&L3LB_NEIGH_V6, &key)?;
    neighbour_advertisement_in_place(&mut f, &mac);
    packet.write(f);
    Some(())
}

#[inline(always)]
fn lookup<K>(map: &HashMap<K, NeighMac, NEIGH>, key: &K) -> Option<[u8; 6]> {
    // Copied out at once: the daemon may replace the entry while this packet is handled.
    raw::get(map, key).map(|v: NeighMac| v.mac)
}
