//! Every checksum a frame carries whole, computed from scratch (independently of the programs'
//! incremental updates): the IPv4 header's, the TCP, UDP, ICMP or ICMPv6 checksum (with its
//! pseudo header where it has one), and the IPv4 header an ICMP error quotes.

/// What a frame's checksums say: for each one the frame carries whole, whether it is right.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    pub ip4: Option<bool>,
    /// The transport checksum: the family (4 or 6), the protocol, whether it is right. UDP's
    /// "none" (0) is no checksum.
    pub l4: Option<(u8, u8, bool)>,
    /// The IPv4 header quoted by an ICMP error (its transport header is cut short and carries
    /// no checkable checksum).
    pub quoted_ip4: Option<bool>,
}

impl Checks {
    /// Each checksum right in `self` and wrong or gone in `after`.
    pub fn broken_in(&self, after: &Checks) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.ip4 == Some(true) && after.ip4 != Some(true) {
            out.push("IPv4 header");
        }
        if let Some((_, p, true)) = self.l4
            && !matches!(after.l4, Some((_, q, true)) if q == p)
        {
            out.push(match p {
                6 => "TCP",
                17 => "UDP",
                1 => "ICMP",
                _ => "ICMPv6",
            });
        }
        if self.quoted_ip4 == Some(true) && after.quoted_ip4 != Some(true) {
            out.push("quoted IPv4 header");
        }
        out
    }
}

/// The ethertype and network header offset the programs would parse (after up to two VLAN
/// tags, as XDP reads them).
pub fn l3(f: &[u8]) -> Option<([u8; 2], usize)> {
    let mut type_off = 12;
    for _ in 0..3 {
        let t: [u8; 2] = f.get(type_off..type_off + 2)?.try_into().ok()?;
        if t != [0x81, 0x00] && t != [0x88, 0xa8] {
            return Some((t, type_off + 2));
        }
        type_off += 4;
    }
    None
}

pub fn checks(f: &[u8]) -> Checks {
    match l3(f) {
        Some(([0x08, 0x00], l3)) => v4(&f[l3..]),
        Some(([0x86, 0xdd], l3)) => v6(&f[l3..]),
        _ => Checks::default(),
    }
}

fn v4(ip: &[u8]) -> Checks {
    let mut c = Checks::default();
    let Some(&vihl) = ip.first() else { return c };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return c;
    }
    c.ip4 = Some(right(&[&ip[..ihl]]));
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if total < ihl || total > ip.len() || fragment {
        return c;
    }
    let (proto, l4) = (ip[9], &ip[ihl..total]);
    let len = (l4.len() as u16).to_be_bytes();
    let pseudo = [&ip[12..20], &[0, proto], &len[..]].concat();
    c.l4 = match proto {
        6 if l4.len() >= 20 => Some((4, 6, right(&[&pseudo, l4]))),
        17 if l4.len() >= 8 && l4[6..8] != [0, 0] => Some((4, 17, right(&[&pseudo, l4]))),
        1 if l4.len() >= 8 => Some((4, 1, right(&[l4]))),
        _ => None,
    };
    // Destination unreachable and time exceeded quote the packet, IP header first.
    if proto == 1 && matches!(l4.first(), Some(3 | 11)) && l4.len() >= 28 && l4[8] == 0x45 {
        c.quoted_ip4 = Some(right(&[&l4[8..28]]));
    }
    c
}

fn v6(ip: &[u8]) -> Checks {
    let mut c = Checks::default();
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return c;
    }
    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if 40 + len > ip.len() {
        return c;
    }
    let (next, l4) = (ip[6], &ip[40..40 + len]);
    let pseudo = [&ip[8..40], &(len as u32).to_be_bytes(), &[0, 0, 0, next]].concat();
    c.l4 = match next {
        6 if l4.len() >= 20 => Some((6, 6, right(&[&pseudo, l4]))),
        17 if l4.len() >= 8 && l4[6..8] != [0, 0] => Some((6, 17, right(&[&pseudo, l4]))),
        58 if l4.len() >= 8 => Some((6, 58, right(&[&pseudo, l4]))),
        _ => None,
    };
    c
}

/// Whether the one's-complement sum over `parts` (each of even length but the last), checksum
/// included, is all ones.
fn right(parts: &[&[u8]]) -> bool {
    let mut sum: u64 = 0;
    for part in parts {
        for word in part.chunks(2) {
            sum += u64::from(u16::from_be_bytes([word[0], *word.get(1).unwrap_or(&0)]));
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[cfg(test)]
mod tests {
    use l3lb_tests::packets::{
        CLIENT, CLIENT_PORT, CLIENT6, DNS, HTTP, POD, POD_DNS, VIP, VIP6, icmp4_error, icmp6,
        quote, tagged, tcp, tcp6, udp, udp_no_csum, udp6,
    };

    use super::*;

    #[test]
    fn built_frames_check_out_and_a_flipped_bit_does_not() {
        let c = (CLIENT, CLIENT_PORT);
        let c6 = (CLIENT6, CLIENT_PORT);
        let error = icmp4_error(
            POD,
            CLIENT,
            (3, 3, [0; 4]),
            &quote(&udp(c, (POD, POD_DNS), false), 36),
        );
        for (frame, at) in [
            (tcp(c, (VIP, HTTP), &[], None), 14 + 20 + 4),
            (tagged(&udp(c, (VIP, DNS), false), &[1, 2]), 22 + 20 + 2),
            (tcp6(c6, (VIP6, HTTP), Some(1)), 14 + 40 + 2),
            (udp6(c6, (VIP6, DNS)), 14 + 40 + 8),
            (icmp6(CLIENT6, VIP6, 128), 14 + 40 + 4),
            (error.clone(), 14 + 20 + 8 + 12),
        ] {
            let good = checks(&frame);
            assert!(
                good.l4.is_some_and(|(_, _, ok)| ok) && good.broken_in(&good).is_empty(),
                "{good:?}"
            );
            let mut bad = frame.clone();
            bad[at] ^= 0x10;
            assert!(!checks(&frame).broken_in(&checks(&bad)).is_empty(), "{at}");
        }
        assert_eq!(checks(&error).quoted_ip4, Some(true));
        assert_eq!(checks(&error).ip4, Some(true));
        assert_eq!(checks(&udp_no_csum(c, (VIP, DNS))).l4, None);
    }
}
