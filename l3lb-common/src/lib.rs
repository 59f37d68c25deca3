//! Types that cross the kernel boundary between l3lb's eBPF programs and its daemon.
//!
//! Every struct is `#[repr(C)]` with explicit padding and a compile-time size check, so both sides
//! agree on the layout byte for byte. Fields holding network-order values end in `_be`.
#![no_std]

/// Name of the XDP program attached to each uplink (DNAT towards local endpoints).
pub const PROG_XDP_INGRESS: &str = "l3lb_xdp_ingress";
/// An XDP program that only passes: the benchmarks' floor. Loaded only by benchmarks.
pub const PROG_XDP_NOOP: &str = "l3lb_xdp_noop";
/// Name of the TC egress program attached to each uplink (reverse NAT of endpoint replies).
pub const PROG_TC_EGRESS: &str = "l3lb_tc_egress";

/// VIP:port/proto -> local endpoints.
pub const MAP_FRONTENDS_V4: &str = "L3LB_FRONTENDS_V4";
/// Translated flows, keyed as the endpoint's reply will look, so egress can restore VIP:port.
pub const MAP_FLOWS_V4: &str = "L3LB_FLOWS_V4";
/// Per-CPU verdict counters, indexed by [`Counter`].
pub const MAP_STATS: &str = "L3LB_STATS";
/// The VIPs with at least one frontend: XDP drops what reaches them on no frontend.
pub const MAP_VIPS_V4: &str = "L3LB_VIPS_V4";

/// Capacity of the frontend map.
pub const MAX_FRONTENDS: u32 = 16_384;
/// Capacity of the flow (reverse NAT) LRU map.
pub const MAX_FLOWS: u32 = 262_144;
/// Capacity of the VIP set: every VIP has at least one frontend.
pub const MAX_VIPS: u32 = MAX_FRONTENDS;
/// Endpoints a single frontend can spread over.
pub const MAX_BACKENDS: usize = 32;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;

/// A VIP of the VIP set (key of [`MAP_VIPS_V4`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKeyV4 {
    pub vip_be: u32,
}

/// Value of the VIP set; no flags are defined yet (always 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipV4 {
    pub flags: u32,
}

/// A service frontend: VIP, service port and IP protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrontendKeyV4 {
    pub vip_be: u32,
    pub port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// One local endpoint: pod address and target port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendV4 {
    pub addr_be: u32,
    pub port_be: u16,
    pub _pad: u16,
}

/// The whole backend set of a frontend, replaced in one map update.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendV4 {
    /// Number of valid entries at the start of `backends`; 0 means "known frontend, no endpoint".
    pub count: u32,
    pub _pad: u32,
    pub backends: [BackendV4; MAX_BACKENDS],
}

impl Default for FrontendV4 {
    fn default() -> Self {
        Self {
            count: 0,
            _pad: 0,
            backends: [BackendV4::default(); MAX_BACKENDS],
        }
    }
}

/// A translated flow as the endpoint's reply carries it: endpoint -> client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKeyV4 {
    pub backend_addr_be: u32,
    pub client_addr_be: u32,
    pub backend_port_be: u16,
    pub client_port_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// What the reply's source must be rewritten to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowNatV4 {
    pub vip_be: u32,
    pub port_be: u16,
    pub _pad: u16,
}

/// Per-CPU counters, one slot per verdict; the daemon and `bpftool map dump` read them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// XDP: not for a frontend (or not parseable): passed untouched.
    XdpPassNotOurs = 0,
    /// XDP: DNATed to a local endpoint and handed to the kernel's forwarding path.
    XdpDnatPass = 1,
    /// XDP: a frontend with no endpoint: dropped (the host's sockets must not answer for it).
    XdpNoBackend = 2,
    /// TC egress: reply of a translated flow, source restored to VIP:port.
    TcRevNat = 3,
    /// TC egress: not a translated flow: passed untouched.
    TcPassNotOurs = 4,
    /// XDP: the flow table could not record the flow (it will retry on the next packet). An event
    /// counted in addition to the packet's verdict ([`Counter::XdpDnatPass`]).
    XdpFlowInsertFailed = 5,
    /// XDP: an IPv4 fragment not addressed to a VIP: passed untouched.
    XdpPassFragment = 6,
    /// TC egress: rewriting a translated reply failed half-way; the packet was dropped.
    TcRevNatError = 7,
    /// XDP: addressed to a VIP but on no frontend (a port/protocol no Service serves, another
    /// IP protocol, an ICMP type not let through, a truncated header): dropped, so host sockets
    /// listening on all addresses are not reachable through a VIP.
    XdpDropVipNoFrontend = 8,
    /// XDP: an IPv4 fragment addressed to a VIP: dropped.
    XdpDropVipFragment = 9,
    /// XDP: an IPv4 packet with options addressed to a VIP: dropped.
    XdpDropVipIpOptions = 10,
    /// XDP: ICMP echo request, destination unreachable or time exceeded to a VIP: passed to the
    /// host untouched.
    XdpPassVipIcmp = 11,
}

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; 12] = [
        Counter::XdpPassNotOurs,
        Counter::XdpDnatPass,
        Counter::XdpNoBackend,
        Counter::TcRevNat,
        Counter::TcPassNotOurs,
        Counter::XdpFlowInsertFailed,
        Counter::XdpPassFragment,
        Counter::TcRevNatError,
        Counter::XdpDropVipNoFrontend,
        Counter::XdpDropVipFragment,
        Counter::XdpDropVipIpOptions,
        Counter::XdpPassVipIcmp,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::XdpPassNotOurs => "xdp_pass_not_ours",
            Counter::XdpDnatPass => "xdp_dnat_pass",
            Counter::XdpNoBackend => "xdp_no_backend",
            Counter::TcRevNat => "tc_rev_nat",
            Counter::TcPassNotOurs => "tc_pass_not_ours",
            Counter::XdpFlowInsertFailed => "xdp_flow_insert_failed",
            Counter::XdpPassFragment => "xdp_pass_fragment",
            Counter::TcRevNatError => "tc_rev_nat_error",
            Counter::XdpDropVipNoFrontend => "xdp_drop_vip_no_frontend",
            Counter::XdpDropVipFragment => "xdp_drop_vip_fragment",
            Counter::XdpDropVipIpOptions => "xdp_drop_vip_ip_options",
            Counter::XdpPassVipIcmp => "xdp_pass_vip_icmp",
        }
    }
}

/// Slots in the stats map; larger than the number of counters so new ones need no map resize.
pub const COUNTER_SLOTS: u32 = 16;
const _: () = assert!(Counter::ALL.len() as u32 <= COUNTER_SLOTS);

/// Packets and bytes seen for one counter slot on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<FrontendKeyV4>() == 8);
const _: () = assert!(core::mem::size_of::<BackendV4>() == 8);
const _: () = assert!(core::mem::size_of::<FrontendV4>() == 8 + 8 * MAX_BACKENDS);
const _: () = assert!(core::mem::size_of::<FlowKeyV4>() == 16);
const _: () = assert!(core::mem::size_of::<FlowNatV4>() == 8);
const _: () = assert!(core::mem::size_of::<Stat>() == 16);
const _: () = assert!(core::mem::size_of::<VipKeyV4>() == 4);
const _: () = assert!(core::mem::size_of::<VipV4>() == 4);

/// Picks a backend slot for a flow; shared so host tests cover the same arithmetic as the kernel.
#[inline(always)]
pub fn flow_slot(saddr: u32, sport: u16, count: u32) -> u32 {
    if count == 0 {
        return 0;
    }
    // Cheap avalanche (murmur3 finaliser) so neighbouring client ports spread over backends.
    let mut h = saddr ^ ((sport as u32) << 16 | sport as u32);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    // Multiply-shift range reduction (Lemire) rather than `%`: no division, and the verifier can
    // bound the result (< count) from the multiplication, which it cannot do for a modulo.
    ((h as u64 * count as u64) >> 32) as u32
}

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

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain-old-data, repr(C), no implicit padding (asserted above).
    unsafe impl aya::Pod for FrontendKeyV4 {}
    unsafe impl aya::Pod for BackendV4 {}
    unsafe impl aya::Pod for FrontendV4 {}
    unsafe impl aya::Pod for FlowKeyV4 {}
    unsafe impl aya::Pod for FlowNatV4 {}
    unsafe impl aya::Pod for Stat {}
    unsafe impl aya::Pod for VipKeyV4 {}
    unsafe impl aya::Pod for VipV4 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_slot_stays_in_range_and_spreads() {
        for count in 1..=MAX_BACKENDS as u32 {
            let mut hit = [0u32; MAX_BACKENDS];
            for port in 0..4096u16 {
                let s = flow_slot(0x0a64_0002, 1024 + port, count);
                assert!(s < count);
                hit[s as usize] += 1;
            }
            // every slot gets a fair share: at least half the mean
            let mean = 4096 / count;
            assert!(
                hit[..count as usize].iter().all(|&h| h >= mean / 2),
                "count={count} {hit:?}"
            );
        }
        assert_eq!(flow_slot(1, 2, 0), 0);
    }

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

    #[test]
    fn counters_cover_their_slots() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
