//! Flow hashing and the Maglev table (Eisenbud et al., NSDI 2016): pure code, so host tests cover
//! the same arithmetic the kernel runs, and the daemon builds tables the program reads.
use crate::MAGLEV_SIZE;

/// Marks a table slot not yet filled while building (never a valid local index).
const EMPTY: u8 = u8::MAX;

/// murmur3's 32-bit finaliser: every input bit affects every output bit.
#[inline(always)]
pub fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Folds one more 32-bit word into a running hash.
#[inline(always)]
pub fn fold(h: u32, word: u32) -> u32 {
    mix32(h ^ word).wrapping_add(0x9e37_79b9)
}

/// Lemire's multiply-shift reduction of `h` to `0..n`: no division, and the verifier bounds the
/// result from the multiplication, which it cannot do for a modulo.
#[inline(always)]
pub fn reduce(h: u32, n: u32) -> u32 {
    ((h as u64 * n as u64) >> 32) as u32
}

/// The Maglev slot of a flow whose addresses/ports/protocol hashed to `h`.
#[inline(always)]
pub fn maglev_slot(h: u32) -> usize {
    reduce(h, MAGLEV_SIZE as u32) as usize
}

/// Hash of an IPv4 5-tuple (raw network-order words as loaded from the packet).
#[inline(always)]
pub fn flow_hash_v4(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let h = fold(0x6c33_6c62, saddr);
    let h = fold(h, daddr);
    let h = fold(h, (sport as u32) << 16 | dport as u32);
    mix32(h ^ proto as u32)
}

/// A cheap hash of an IPv4 5-tuple (one 64-bit multiplication), for the flow cache: on the
/// established path every cycle counts, and the cache only needs its top bits spread. Client
/// address and ports sit in separate halves of the word multiplied, so no two clients' flows
/// collide by construction.
#[inline(always)]
pub fn cache_hash_v4(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let ports = (sport as u64) << 16 | dport as u64;
    let x = ((saddr as u64) << 32 | ports) ^ ((daddr as u64) << 7) ^ proto as u64;
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

/// The flow-cache slot of a flow whose [`cache_hash_v4`] is `h` (its top bits).
#[inline(always)]
pub fn cache_slot(h: u32) -> u32 {
    h >> (32 - crate::FLOW_CACHE_SLOTS.trailing_zeros())
}

/// The check word of a flow-cache slot holding `pin` for a flow whose cache hash is `h`:
/// never 0, so a zeroed slot matches nothing.
#[inline(always)]
pub fn pin_check(h: u32, pin: &crate::Pin) -> u32 {
    (h ^ pin.backend ^ pin.gen_.rotate_left(16)) | 1
}

/// Hash of an IPv4 client address alone (`sessionAffinity: ClientIP`).
#[inline(always)]
pub fn client_hash_v4(saddr: u32) -> u32 {
    mix32(fold(0x6c33_6c62, saddr))
}

/// Folds an IPv6 address into a running hash.
#[inline(always)]
pub fn fold_v6(h: u32, addr: &crate::Ip6) -> u32 {
    let h = fold(h, addr[0] as u32);
    let h = fold(h, (addr[0] >> 32) as u32);
    let h = fold(h, addr[1] as u32);
    fold(h, (addr[1] >> 32) as u32)
}

/// Hash of an IPv6 5-tuple.
#[inline(always)]
pub fn flow_hash_v6(
    saddr: &crate::Ip6,
    daddr: &crate::Ip6,
    sport: u16,
    dport: u16,
    proto: u8,
) -> u32 {
    let h = fold_v6(0x6c33_6c62, saddr);
    let h = fold_v6(h, daddr);
    let h = fold(h, (sport as u32) << 16 | dport as u32);
    mix32(h ^ proto as u32)
}

/// Hash of an IPv6 client address alone.
#[inline(always)]
pub fn client_hash_v6(saddr: &crate::Ip6) -> u32 {
    mix32(fold_v6(0x6c33_6c62, saddr))
}

/// [`cache_hash_v4`] for IPv6: the address words folded by xor. Clients of one network differ
/// in their last bytes, the top of the second word on a little-endian CPU, apart from the ports
/// in the bottom.
#[inline(always)]
pub fn cache_hash_v6(
    saddr: &crate::Ip6,
    daddr: &crate::Ip6,
    sport: u16,
    dport: u16,
    proto: u8,
) -> u32 {
    let ports = (sport as u64) << 16 | dport as u64;
    let x = saddr[1] ^ saddr[0].rotate_left(17) ^ ports ^ (daddr[0] ^ daddr[1]).rotate_left(7);
    let x = x ^ proto as u64;
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

/// A backend's identity for the table: 64 bits from its address bytes and port (FNV-1a, then
/// finalised). Tables depend only on these, so the daemon rebuilds the same table after a
/// restart and every node with the same endpoints builds the same one.
pub fn backend_key(addr: &[u8], port: u16) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in addr.iter().chain(&port.to_be_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Builds a frontend's Maglev table in place.
///
/// `members` are the backends that take new flows: each one's key ([`backend_key`]) and the
/// local index the table names it by; sorted by key, at most `N` of them. `prev` gives the key of
/// each local index the table currently holds; empty: the table holds nothing yet.
///
/// From nothing this is Maglev population (Eisenbud et al., NSDI 2016): backends take turns
/// claiming the next free slot along their own permutation of the table, so each gets
/// `MAGLEV_SIZE / n` slots (±1). Over an existing table the same turns only claim what must
/// move: slots of backends that left, and, for a backend that joined, its most preferred slots
/// among those of backends above their new share. So removing one of N backends moves exactly
/// its slots (1/N) and adding one moves exactly the newcomer's share (1/(N+1)), where
/// rebuilding from nothing would move a little more.
pub fn maglev_update<const N: usize>(
    table: &mut [u8; MAGLEV_SIZE],
    prev: &[u64],
    members: &[(u64, u8)],
) {
    let n = members.len().min(N);
    if n == 0 {
        table.fill(0);
        return;
    }
    if n == 1 {
        // What the turns below end in with one member (every slot its own), without 16,381
        // steps along its permutation: the common case of one local endpoint per frontend.
        table.fill(members[0].1);
        return;
    }
    let members = &members[..n];
    // Owners as indices into `members`; EMPTY: free.
    let mut remap = [EMPTY; 256];
    for (local, key) in prev.iter().enumerate().take(EMPTY as usize) {
        if let Some(i) = members.iter().position(|(k, _)| k == key) {
            remap[local] = i as u8;
        }
    }
    let mut count = [0u32; N];
    for slot in table.iter_mut() {
        *slot = if prev.is_empty() {
            EMPTY
        } else {
            remap[*slot as usize]
        };
        if *slot != EMPTY {
            count[*slot as usize] += 1;
        }
    }
    // Shares: the slots left over by the division go to those holding most already.
    let mut order = [0u8; N];
    for (i, o) in order[..n].iter_mut().enumerate() {
        *o = i as u8;
    }
    order[..n].sort_unstable_by_key(|&i| (core::cmp::Reverse(count[i as usize]), i));
    let mut quota = [0u32; N];
    for (rank, &i) in order[..n].iter().enumerate() {
        quota[i as usize] = (MAGLEV_SIZE / n + usize::from(rank < MAGLEV_SIZE % n)) as u32;
    }
    let m = MAGLEV_SIZE as u64;
    // Member i's k-th preference is (offset + k * skip) % m; kept as a running position (one
    // add and compare per step instead of a multiplication and a division).
    let mut pos = [0u64; N];
    let mut skip = [0u64; N];
    let mut next = [0u64; N];
    for (i, (key, _)) in members.iter().enumerate() {
        pos[i] = (key >> 32) % m;
        skip[i] = (key & 0xffff_ffff) % (m - 1) + 1;
    }
    // Claimable slots only ever get fewer, so one walk along each permutation is enough.
    loop {
        let mut claimed = false;
        for i in 0..n {
            if count[i] >= quota[i] {
                continue;
            }
            while next[i] < m {
                let slot = pos[i] as usize;
                pos[i] += skip[i];
                if pos[i] >= m {
                    pos[i] -= m;
                }
                next[i] += 1;
                let owner = table[slot] as usize;
                let free = owner == EMPTY as usize;
                if free || (owner != i && count[owner] > quota[owner]) {
                    if !free {
                        count[owner] -= 1;
                    }
                    table[slot] = i as u8;
                    count[i] += 1;
                    claimed = true;
                    break;
                }
            }
        }
        if !claimed {
            break;
        }
    }
    for slot in table.iter_mut() {
        *slot = members.get(*slot as usize).map_or(0, |(_, local)| *local);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::MAX_BACKENDS;

    /// `n` sorted backend keys; `salt` picks another family of them.
    fn keys(n: usize, salt: u8) -> Vec<u64> {
        let mut k: Vec<u64> = (0..n)
            .map(|i| backend_key(&[10, 244, salt, i as u8], 8080))
            .collect();
        k.sort();
        k
    }

    /// Builds over `prev` (a table of keys; None: from nothing) and returns the table as keys.
    fn update(prev: Option<&[u64]>, members: &[u64]) -> Vec<u64> {
        let mut sorted = members.to_vec();
        sorted.sort();
        // Local indices in another order than the keys', as the daemon's list may have them.
        let local: Vec<(u64, u8)> = sorted
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, (sorted.len() - 1 - i) as u8))
            .collect();
        let mut t = [0u8; MAGLEV_SIZE];
        let mut prev_keys: Vec<u64> = Vec::new();
        if let Some(prev) = prev {
            prev_keys = prev
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            for (slot, key) in t.iter_mut().zip(prev) {
                *slot = prev_keys.iter().position(|k| k == key).unwrap() as u8;
            }
        }
        maglev_update::<MAX_BACKENDS>(&mut t, &prev_keys, &local);
        t.iter()
            .map(|l| local.iter().find(|(_, i)| i == l).unwrap().0)
            .collect()
    }

    fn moved(a: &[u64], b: &[u64]) -> f64 {
        a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / MAGLEV_SIZE as f64
    }

    fn assert_fair(t: &[u64], members: &[u64]) {
        for key in members {
            let share = t.iter().filter(|x| *x == key).count();
            let want = MAGLEV_SIZE / members.len();
            assert!(share.abs_diff(want) <= 1, "{share} slots, want {want}");
        }
    }

    #[test]
    fn every_backend_gets_a_fair_share() {
        for n in [1usize, 2, 3, 7, 64, MAX_BACKENDS] {
            let k = keys(n, 1);
            assert_fair(&update(None, &k), &k);
        }
    }

    /// The bound: removing one of N backends moves at most 1/N + 1 % of the slots,
    /// adding one about 1/(N+1) (here: at most 1/(N+1) + 1 %). Every backend removed in turn,
    /// N = 2..64; the shares stay fair.
    #[test]
    fn one_backend_more_or_less_moves_only_its_share() {
        for n in 2..=64usize {
            let all = keys(n + 1, 7);
            let before = update(None, &all[..n]);
            for gone in 0..n {
                let mut rest = all[..n].to_vec();
                rest.remove(gone);
                let after = update(Some(&before), &rest);
                let m = moved(&before, &after);
                let bound = 1.0 / n as f64 + 0.01;
                assert!(
                    m <= bound,
                    "n={n}, removing #{gone}: {m:.4} moved > {bound:.4}"
                );
                assert_fair(&after, &rest);
            }
            let after = update(Some(&before), &all);
            let m = moved(&before, &after);
            let bound = 1.0 / (n + 1) as f64 + 0.01;
            assert!(m <= bound, "n={n}, adding one: {m:.4} moved > {bound:.4}");
            assert_fair(&after, &all);
        }
    }

    /// From nothing, the table depends only on the set: the same after a restart, on any node.
    /// Unchanged members over an existing table change nothing.
    #[test]
    fn same_set_same_table() {
        let k = keys(5, 3);
        let mut shuffled = k.clone();
        shuffled.reverse();
        let t = update(None, &k);
        assert_eq!(t, update(None, &shuffled));
        assert_eq!(update(Some(&t), &k), t);
    }

    /// A long random history of joins and leaves keeps every share fair, and each step moves
    /// only what it must: the leavers' slots plus the joiners' shares.
    #[test]
    fn random_churn_stays_fair_and_minimal() {
        let pool = keys(100, 9);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut set: Vec<u64> = pool[..10].to_vec();
        let mut table = update(None, &set);
        for _ in 0..300 {
            let before = set.clone();
            for _ in 0..=rand(3) {
                let k = pool[rand(100) as usize];
                match set.iter().position(|x| *x == k) {
                    Some(i) if set.len() > 1 => {
                        set.remove(i);
                    }
                    Some(_) => {}
                    None => set.push(k),
                }
            }
            let next = update(Some(&table), &set);
            assert_fair(&next, &set);
            let left: usize = table.iter().filter(|k| !set.contains(k)).count();
            let joined = set.iter().filter(|k| !before.contains(k)).count();
            let bound = left + joined * (MAGLEV_SIZE / set.len() + 1) + set.len();
            let changed = table.iter().zip(&next).filter(|(a, b)| a != b).count();
            assert!(
                changed <= bound,
                "{changed} slots moved, at most {bound} had to"
            );
            table = next;
        }
    }

    #[test]
    fn empty_set_gives_a_zero_table_and_slots_stay_in_range() {
        let mut t = [7u8; MAGLEV_SIZE];
        maglev_update::<MAX_BACKENDS>(&mut t, &[], &[]);
        assert!(t.iter().all(|x| *x == 0));
        for h in [0u32, 1, u32::MAX / 2, u32::MAX] {
            assert!(maglev_slot(h) < MAGLEV_SIZE);
        }
    }

    #[test]
    fn cache_slots_spread_neighbouring_ports_and_clients() {
        let mut hit = std::vec![0u32; crate::FLOW_CACHE_SLOTS as usize];
        for client in 0..16u32 {
            for port in 0..4096u16 {
                let h = cache_hash_v4(
                    0x0a64_0002 + (client << 24),
                    0x0a0a_0a0a,
                    1024 + port,
                    80,
                    6,
                );
                hit[cache_slot(h) as usize] += 1;
            }
        }
        // 65,536 flows over 65,536 slots: no slot holds many.
        assert!(
            hit.iter().all(|h| *h <= 8),
            "max {}",
            hit.iter().max().unwrap()
        );
    }

    #[test]
    fn flow_hash_spreads_neighbouring_ports() {
        let mut hit = [0u32; 64];
        for port in 0..64_000u16 {
            let h = flow_hash_v4(0x0a64_0002, 0x0a0a_0a0a, port, 80, 6);
            hit[reduce(h, 64) as usize] += 1;
        }
        assert!(hit.iter().all(|h| *h > 800 && *h < 1200), "{hit:?}");
    }

    #[test]
    fn one_member_owns_every_slot_from_nothing_and_over_a_table() {
        let k = keys(3, 7);
        let mut t = [0u8; MAGLEV_SIZE];
        maglev_update::<MAX_BACKENDS>(&mut t, &[], &[(k[0], 5)]);
        assert!(t.iter().all(|&s| s == 5));
        // Over a table of three, the one left takes every slot.
        let mut members: Vec<(u64, u8)> =
            k.iter().enumerate().map(|(i, k)| (*k, i as u8)).collect();
        members.sort();
        maglev_update::<MAX_BACKENDS>(&mut t, &[], &members);
        assert!(t.iter().any(|&s| s != 2));
        maglev_update::<MAX_BACKENDS>(&mut t, &k, &[(k[2], 2)]);
        assert!(t.iter().all(|&s| s == 2));
    }
}
