//! Incremental Internet checksum updates (RFC 1624).
use crate::Ip6;
/// Incremental Internet checksum update (RFC 1624, eqn. 3): `HC' = ~(~HC + ~m + m')`.
///
/// `check`, `old` and `new` are 16-bit words exactly as loaded from packet memory (any byte order,
/// as long as all three use the same one: one's-complement sums are byte-order independent).
#[inline(always)]
pub fn csum_replace2(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + (new as u32);
    !csum_fold(sum)
}

/// [`csum_replace2`] for a 32-bit field (an IPv4 address), loaded from packet memory.
#[inline(always)]
pub fn csum_replace4(check: u16, old: u32, new: u32) -> u16 {
    let sum =
        (!check as u32) + (!(old >> 16) & 0xffff) + (!old & 0xffff) + (new >> 16) + (new & 0xffff);
    !csum_fold(sum)
}

/// The one's-complement difference of replacing 32-bit `old` by `new` (unfolded), to apply to
/// several checksums covering the same field with [`csum_apply`].
#[inline(always)]
pub fn csum_diff4(old: u32, new: u32) -> u32 {
    (!(old >> 16) & 0xffff) + (!old & 0xffff) + (new >> 16) + (new & 0xffff)
}

/// [`csum_diff4`] for an IPv6 address ([`Ip6`]: the wire bytes in two native-order words), as
/// it appears in a TCP/UDP/ICMPv6 pseudo header.
#[inline(always)]
pub fn csum_diff_ip6(old: &Ip6, new: &Ip6) -> u32 {
    let mut diff = 0;
    for i in 0..2 {
        diff += csum_diff4(old[i] as u32, new[i] as u32);
        diff += csum_diff4((old[i] >> 32) as u32, (new[i] >> 32) as u32);
    }
    diff
}

/// [`csum_diff4`] for a 16-bit field.
#[inline(always)]
pub fn csum_diff2(old: u16, new: u16) -> u32 {
    (!old as u32) + (new as u32)
}

/// Applies an unfolded difference (a sum of at most a few [`csum_diff4`]/[`csum_diff2`]) to a
/// checksum.
#[inline(always)]
pub fn csum_apply(check: u16, diff: u32) -> u16 {
    !csum_fold((!check as u32) + diff)
}

/// [`csum_apply`] for UDP: a zero checksum stays zero, a computed zero is sent as 0xffff.
#[inline(always)]
pub fn udp_csum_apply(check: u16, diff: u32) -> u16 {
    if check == 0 {
        return 0;
    }
    match csum_apply(check, diff) {
        0 => 0xffff,
        c => c,
    }
}

/// UDP: a zero checksum means "none" and must stay zero; a computed zero is sent as 0xffff.
#[inline(always)]
pub fn udp_csum_replace(check: u16, old: u16, new: u16) -> u16 {
    if check == 0 {
        return 0;
    }
    match csum_replace2(check, old, new) {
        0 => 0xffff,
        c => c,
    }
}

/// [`udp_csum_replace`] for a 32-bit field.
#[inline(always)]
pub fn udp_csum_replace4(check: u16, old: u32, new: u32) -> u16 {
    if check == 0 {
        return 0;
    }
    match csum_replace4(check, old, new) {
        0 => 0xffff,
        c => c,
    }
}

#[inline(always)]
fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip6;

    /// Full one's-complement checksum over big-endian 16-bit words.
    fn full_csum(words: &[u16]) -> u16 {
        let mut sum: u32 = 0;
        for w in words {
            sum += *w as u32;
        }
        !csum_fold(sum)
    }

    #[test]
    fn incremental_matches_full_recompute() {
        // A pseudo header-ish word list with a 32-bit address at words 2..4 and a port at word 5.
        let mut words = [
            0x4500u16, 0x003c, 0xc0a8, 0x0001, 0x1f90, 0xabcd, 0x0000, 0x1234,
        ];
        let mut seed = 0x1234_5678u32;
        for _ in 0..10_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let check = full_csum(&words);
            let old_addr = (words[2] as u32) << 16 | words[3] as u32;
            let new_addr = seed;
            let old_port = words[5];
            let new_port = (seed >> 7) as u16;
            let c = csum_replace4(check, old_addr, new_addr);
            let c = csum_replace2(c, old_port, new_port);
            words[2] = (new_addr >> 16) as u16;
            words[3] = new_addr as u16;
            words[5] = new_port;
            let want = full_csum(&words);
            // 0x0000 and 0xffff are the same value in one's complement.
            let norm = |x: u16| if x == 0xffff { 0 } else { x };
            assert_eq!(norm(c), norm(want), "words={words:04x?}");
            // byte-order independence: the same update on byte-swapped words
            let cs = csum_replace4(
                check.swap_bytes(),
                old_addr.swap_bytes(),
                new_addr.swap_bytes(),
            );
            let cs = csum_replace2(cs, old_port.swap_bytes(), new_port.swap_bytes());
            assert_eq!(norm(cs.swap_bytes()), norm(c));
        }
    }

    #[test]
    fn applied_differences_match_the_one_field_updates() {
        let mut seed = 0x2545_f491u32;
        for _ in 0..10_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let (check, old, new) = (seed as u16, seed.rotate_left(7), seed.rotate_left(19));
            let (op, np) = ((seed >> 3) as u16, (seed >> 11) as u16);
            let norm = |x: u16| if x == 0xffff { 0 } else { x };
            let one = csum_replace2(csum_replace4(check, old, new), op, np);
            let both = csum_apply(check, csum_diff4(old, new) + csum_diff2(op, np));
            assert_eq!(norm(one), norm(both));
            assert_eq!(
                norm(csum_replace4(check, old, new)),
                norm(csum_apply(check, csum_diff4(old, new)))
            );
            assert_ne!(udp_csum_apply(check | 1, csum_diff4(old, new)), 0);
        }
        assert_eq!(udp_csum_apply(0, csum_diff4(1, 2)), 0);
    }

    #[test]
    fn ipv6_address_differences_match_a_full_recompute() {
        let norm = |x: u16| if x == 0xffff { 0 } else { x };
        let mut seed = 0x9e37_79b9u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            seed
        };
        for _ in 0..2_000 {
            // A pseudo header's words: two addresses, then a port and a length.
            let mut bytes = [0u8; 36];
            for b in bytes.iter_mut() {
                *b = next() as u8;
            }
            let words = |b: &[u8; 36]| -> [u16; 18] {
                core::array::from_fn(|i| u16::from_be_bytes([b[2 * i], b[2 * i + 1]]))
            };
            let check = full_csum(&words(&bytes));
            let old: [u8; 16] = bytes[16..32].try_into().unwrap();
            let mut new = old;
            for b in new.iter_mut().skip((next() % 16) as usize) {
                *b = next() as u8;
            }
            let diff = csum_diff_ip6(&ip6(old), &ip6(new));
            bytes[16..32].copy_from_slice(&new);
            // Applied as the datapath does: to the checksum's bytes as loaded from the packet.
            let loaded = u16::from_ne_bytes(check.to_be_bytes());
            let stored = csum_apply(loaded, diff).to_ne_bytes();
            assert_eq!(
                norm(u16::from_be_bytes(stored)),
                norm(full_csum(&words(&bytes)))
            );
            // UDP keeps "no checksum".
            assert_eq!(udp_csum_apply(0, diff), 0);
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero_and_computed_zero_becomes_ffff() {
        assert_eq!(udp_csum_replace(0, 0x1234, 0x4321), 0);
        assert_eq!(udp_csum_replace4(0, 0x1234_5678, 0x8765_4321), 0);
        // check such that the result folds to zero: ~(~c + ~old + new) == 0  <=>  sum == 0xffff
        let c = csum_replace2(0x0001, 0x0000, 0x0000); // ~(0xfffe + 0xffff + 0) => 0x0001
        assert_eq!(c, 0x0001);
        assert_eq!(udp_csum_replace(0xffff, 0x0001, 0x0001), 0xffff);
        for old in [0u16, 1, 0x8000, 0xfffe] {
            for new in [0u16, 1, 0x7fff, 0xffff] {
                for check in [1u16, 0x00ff, 0xff00, 0xffff] {
                    assert_ne!(udp_csum_replace(check, old, new), 0);
                }
            }
        }
    }
}
