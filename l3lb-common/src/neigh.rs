//! L2 mode's ARP/NDP responder: the map the daemon fills (which addresses to answer for, on
//! which interface, with which MAC) and the pure pieces of the replies the XDP program builds,
//! so host tests check the same arithmetic.

/// IPv4 responder entries: (ingress ifindex, address) -> the MAC to answer with.
pub const MAP_NEIGH_V4: &str = "L3LB_NEIGH_V4";
/// IPv6 responder entries: (ingress ifindex, address) -> the MAC to answer with.
pub const MAP_NEIGH_V6: &str = "L3LB_NEIGH_V6";
/// Addresses times interfaces one node answers for.
pub const MAX_NEIGH: u32 = 4_096;

/// Key of [`MAP_NEIGH_V4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeighKeyV4 {
    pub ifindex: u32,
    /// The address as on the wire.
    pub addr_be: u32,
}

/// Key of [`MAP_NEIGH_V6`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeighKeyV6 {
    pub ifindex: u32,
    pub addr: [u8; 16],
}

/// Value of both maps: the link-layer address to answer with (the interface's own).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeighMac {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(size_of::<NeighKeyV4>() == 8 && size_of::<NeighKeyV6>() == 20);
const _: () = assert!(size_of::<NeighMac>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)], no implicit padding (asserted sizes), every bit pattern valid.
    unsafe impl aya::Pod for super::NeighKeyV4 {}
    unsafe impl aya::Pod for super::NeighKeyV6 {}
    unsafe impl aya::Pod for super::NeighMac {}
}

/// An Ethernet ARP frame for IPv4 (without padding): Ethernet header 14, ARP 28.
pub const ARP_FRAME_LEN: usize = 42;
/// An Ethernet frame holding a Neighbour Solicitation or Advertisement with one link-layer
/// address option: Ethernet 14, IPv6 40, ICMPv6 32.
pub const ND_FRAME_LEN: usize = 86;
/// ICMPv6 part of such a frame.
pub const ND_LEN: usize = 32;
pub const ICMPV6_NS: u8 = 135;
pub const ICMPV6_NA: u8 = 136;
/// Neighbour Advertisement flags: Solicited and Override (Router clear).
pub const NA_SOLICITED_OVERRIDE: u8 = 0x60;

/// Offsets in an ARP frame (Ethernet header included).
pub const ARP_HDR: usize = 14;
pub const ARP_OP: usize = 20;
pub const ARP_SHA: usize = 22;
pub const ARP_SPA: usize = 28;
pub const ARP_THA: usize = 32;
pub const ARP_TPA: usize = 38;
/// Offsets in a Neighbour Solicitation/Advertisement frame.
pub const IP6_HDR: usize = 14;
pub const IP6_PAYLOAD_LEN: usize = 18;
pub const IP6_NEXT: usize = 20;
pub const IP6_HOP_LIMIT: usize = 21;
pub const IP6_SRC: usize = 22;
pub const IP6_DST: usize = 38;
pub const ICMP6: usize = 54;
pub const ND_TARGET: usize = ICMP6 + 8;
pub const ND_OPTION: usize = ICMP6 + 24;

/// Turns an ARP request frame (already checked to be one) into the reply from `mac`: Ethernet
/// back to the requester from `mac`, operation 2, sender `mac` and the asked-for address, target
/// the requester. In place: the XDP program has no stack to spare.
#[inline(always)]
pub fn arp_reply_in_place(f: &mut [u8; ARP_FRAME_LEN], mac: &[u8; 6]) {
    let mut i = 0;
    while i < 6 {
        let sha = f[ARP_SHA + i];
        f[i] = sha;
        f[ARP_THA + i] = sha;
        f[6 + i] = mac[i];
        f[ARP_SHA + i] = mac[i];
        i += 1;
    }
    let mut i = 0;
    while i < 4 {
        let (spa, tpa) = (f[ARP_SPA + i], f[ARP_TPA + i]);
        f[ARP_SPA + i] = tpa;
        f[ARP_TPA + i] = spa;
        i += 1;
    }
    f[ARP_OP] = 0;
    f[ARP_OP + 1] = 2;
}

/// Turns a Neighbour Solicitation frame with one source link-layer address option (already
/// checked to be one) into the Neighbour Advertisement from `mac`: Ethernet back to the
/// requester from `mac`; IPv6 from the target to the requester (traffic class and flow label
/// cleared, length, next header and hop limit 255 kept); ICMPv6 type 136 with Solicited and
/// Override set, the same target, a target link-layer address option with `mac`, and its
/// checksum. In place: the XDP program has no stack to spare.
#[inline(always)]
pub fn neighbour_advertisement_in_place(f: &mut [u8; ND_FRAME_LEN], mac: &[u8; 6]) {
    let mut i = 0;
    while i < 6 {
        f[i] = f[6 + i];
        f[6 + i] = mac[i];
        f[ND_OPTION + 2 + i] = mac[i];
        i += 1;
    }
    f[IP6_HDR] = 0x60;
    f[IP6_HDR + 1] = 0;
    f[IP6_HDR + 2] = 0;
    f[IP6_HDR + 3] = 0;
    let mut i = 0;
    while i < 16 {
        f[IP6_DST + i] = f[IP6_SRC + i];
        f[IP6_SRC + i] = f[ND_TARGET + i];
        i += 1;
    }
    f[ICMP6] = ICMPV6_NA;
    f[ICMP6 + 1] = 0;
    f[ICMP6 + 4] = NA_SOLICITED_OVERRIDE;
    f[ICMP6 + 5] = 0;
    f[ICMP6 + 6] = 0;
    f[ICMP6 + 7] = 0;
    // Option 2: target link-layer address, one unit of 8 bytes.
    f[ND_OPTION] = 2;
    f[ND_OPTION + 1] = 1;
    let c = nd_checksum(f);
    f[ICMP6 + 2] = c[0];
    f[ICMP6 + 3] = c[1];
}

/// Neighbour Advertisement flag: Override only (an unsolicited advertisement is not Solicited).
pub const NA_OVERRIDE: u8 = 0x20;

/// A gratuitous ARP for `ip` from `mac` (an ARP Announcement, RFC 5227: a broadcast request whose
/// sender and target are both `ip`), sent when a node takes an address over, so neighbours and
/// switches move to it at once.
pub fn gratuitous_arp(mac: &[u8; 6], ip: &[u8; 4]) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[ARP_HDR..ARP_SHA].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[ARP_SHA..ARP_SPA].copy_from_slice(mac);
    f[ARP_SPA..ARP_THA].copy_from_slice(ip);
    f[ARP_TPA..].copy_from_slice(ip);
    f
}

/// An unsolicited Neighbour Advertisement for `ip` from `mac` to all nodes (ff02::1), Override
/// set, with a target link-layer address option: sent when a node takes an address over.
pub fn unsolicited_advertisement(mac: &[u8; 6], ip: &[u8; 16]) -> [u8; ND_FRAME_LEN] {
    const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut f = [0u8; ND_FRAME_LEN];
    f[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(mac);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[IP6_HDR] = 0x60;
    f[IP6_PAYLOAD_LEN..IP6_NEXT].copy_from_slice(&(ND_LEN as u16).to_be_bytes());
    f[IP6_NEXT] = crate::PROTO_ICMPV6;
    f[IP6_HOP_LIMIT] = 255;
    f[IP6_SRC..IP6_DST].copy_from_slice(ip);
    f[IP6_DST..ICMP6].copy_from_slice(&ALL_NODES);
    f[ICMP6] = ICMPV6_NA;
    f[ICMP6 + 4] = NA_OVERRIDE;
    f[ND_TARGET..ND_OPTION].copy_from_slice(ip);
    f[ND_OPTION] = 2;
    f[ND_OPTION + 1] = 1;
    f[ND_OPTION + 2..].copy_from_slice(mac);
    let c = nd_checksum(&f);
    f[ICMP6 + 2..ICMP6 + 4].copy_from_slice(&c);
    f
}

/// The ICMPv6 checksum of the 32-byte message in a neighbour discovery frame (its checksum field
/// read as zero), from the frame's own addresses, as the bytes to store.
#[inline(always)]
pub fn nd_checksum(f: &[u8; ND_FRAME_LEN]) -> [u8; 2] {
    let word = |at: usize| u32::from(u16::from_be_bytes([f[at], f[at + 1]]));
    // Source and destination addresses, then the upper-layer length and next header.
    let mut sum: u32 = ND_LEN as u32 + u32::from(crate::PROTO_ICMPV6);
    let mut at = IP6_SRC;
    while at < ICMP6 {
        sum += word(at);
        at += 2;
    }
    let mut at = ICMP6;
    while at < ND_FRAME_LEN {
        if at != ICMP6 + 2 {
            sum += word(at);
        }
        at += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 over the whole pseudo header and message, independently of the fold above.
    fn reference(src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(src);
        bytes.extend_from_slice(dst);
        bytes.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        bytes.extend_from_slice(msg);
        let mut sum: u64 = bytes
            .chunks(2)
            .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    extern crate std;
    use std::vec::Vec;

    /// An NS for 2001:db8::10 from fe80::200:ff:fe00:1 (00:00:00:00:00:01).
    fn solicitation() -> [u8; ND_FRAME_LEN] {
        let mut f = [0u8; ND_FRAME_LEN];
        f[..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 0, 0x10]);
        f[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14..18].copy_from_slice(&[0x6a, 0xb1, 0x23, 0x45]);
        f[18..20].copy_from_slice(&32u16.to_be_bytes());
        f[20] = 58;
        f[21] = 255;
        f[22..38].copy_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0xff, 0xfe, 0, 0, 1]);
        f[38..54].copy_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0x10]);
        f[54] = 135;
        f[62..78].copy_from_slice(&TARGET);
        f[78..86].copy_from_slice(&[1, 1, 0, 0, 0, 0, 0, 1]);
        f
    }

    const TARGET: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc];

    #[test]
    fn the_advertisement_answers_the_solicitation_with_a_valid_checksum() {
        let ns = solicitation();
        let mut na = ns;
        neighbour_advertisement_in_place(&mut na, &MAC);
        assert_eq!(&na[..6], &ns[6..12], "to the requester");
        assert_eq!(&na[6..12], &MAC);
        assert_eq!(&na[12..14], &[0x86, 0xdd]);
        assert_eq!(&na[14..18], &[0x60, 0, 0, 0]);
        assert_eq!(
            &na[18..22],
            &ns[18..22],
            "length, next header, hop limit 255"
        );
        assert_eq!(&na[22..38], &TARGET, "from the target");
        assert_eq!(&na[38..54], &ns[22..38], "to the requester's address");
        assert_eq!((na[54], na[55]), (136, 0));
        assert_eq!(&na[58..62], &[0x60, 0, 0, 0], "solicited and override");
        assert_eq!(&na[62..78], &TARGET);
        assert_eq!(&na[78..86], &[2, 1, 0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc]);
        let src: [u8; 16] = na[22..38].try_into().unwrap();
        let dst: [u8; 16] = na[38..54].try_into().unwrap();
        // With its checksum in place the message sums to zero (the receiver's check), and the
        // checksum is RFC 1071's over the message with the field zeroed.
        assert_eq!(reference(&src, &dst, &na[54..]), 0);
        let mut zeroed = na;
        zeroed[56..58].copy_from_slice(&[0, 0]);
        assert_eq!(
            u16::from_be_bytes([na[56], na[57]]),
            reference(&src, &dst, &zeroed[54..])
        );
    }

    #[test]
    fn checksums_that_carry_more_than_once() {
        let mut f = [0xffu8; ND_FRAME_LEN];
        let c = nd_checksum(&f);
        f[56..58].copy_from_slice(&c);
        let src: [u8; 16] = f[22..38].try_into().unwrap();
        let dst: [u8; 16] = f[38..54].try_into().unwrap();
        assert_eq!(reference(&src, &dst, &f[54..]), 0);
    }

    #[test]
    fn announcements_on_takeover() {
        let arp = gratuitous_arp(&MAC, &[192, 0, 2, 100]);
        let mut want = [0u8; ARP_FRAME_LEN];
        want[..6].copy_from_slice(&[0xff; 6]);
        want[6..12].copy_from_slice(&MAC);
        want[12..22].copy_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        want[22..28].copy_from_slice(&MAC);
        want[28..32].copy_from_slice(&[192, 0, 2, 100]);
        want[38..42].copy_from_slice(&[192, 0, 2, 100]);
        assert_eq!(arp, want);

        let na = unsolicited_advertisement(&MAC, &TARGET);
        assert_eq!(&na[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&na[6..12], &MAC);
        assert_eq!(&na[14..22], &[0x60, 0, 0, 0, 0, 32, 58, 255]);
        assert_eq!(&na[22..38], &TARGET);
        assert_eq!(
            &na[38..54],
            &[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            (na[54], na[55], na[58]),
            (136, 0, 0x20),
            "override, not solicited"
        );
        assert_eq!(&na[62..78], &TARGET);
        assert_eq!(&na[78..86], &[2, 1, 0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc]);
        let src: [u8; 16] = na[22..38].try_into().unwrap();
        let dst: [u8; 16] = na[38..54].try_into().unwrap();
        assert_eq!(reference(&src, &dst, &na[54..]), 0, "checksum");
    }

    #[test]
    fn the_arp_reply_swaps_requester_and_target() {
        let mut f = [0u8; ARP_FRAME_LEN];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&[0, 0, 0, 0, 0, 1]);
        f[28..32].copy_from_slice(&[192, 0, 2, 1]);
        f[38..42].copy_from_slice(&[192, 0, 2, 100]);
        arp_reply_in_place(&mut f, &MAC);
        let mut want = [0u8; ARP_FRAME_LEN];
        want[..6].copy_from_slice(&[0, 0, 0, 0, 0, 1]);
        want[6..12].copy_from_slice(&MAC);
        want[12..14].copy_from_slice(&[0x08, 0x06]);
        want[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        want[22..28].copy_from_slice(&MAC);
        want[28..32].copy_from_slice(&[192, 0, 2, 100]);
        want[32..38].copy_from_slice(&[0, 0, 0, 0, 0, 1]);
        want[38..42].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(f, want);
    }
}
