//! Types that cross the kernel boundary between l3lb's eBPF programs and its daemon.
//!
//! Every struct is `#[repr(C)]` with explicit padding and a compile-time size check, so both sides
//! agree on the layout byte for byte. Fields holding network-order values end in `_be`.
#![no_std]

/// Name of the XDP program attached to each uplink (DNAT towards local endpoints).
pub const PROG_XDP_INGRESS: &str = "l3lb_xdp_ingress";
/// Name of the TC egress program attached to each uplink (reverse NAT of endpoint replies).
pub const PROG_TC_EGRESS: &str = "l3lb_tc_egress";

/// VIP:port/proto -> local endpoints.
pub const MAP_FRONTENDS_V4: &str = "L3LB_FRONTENDS_V4";
/// Translated flows, keyed as the endpoint's reply will look, so egress can restore VIP:port.
pub const MAP_FLOWS_V4: &str = "L3LB_FLOWS_V4";
/// Per-CPU verdict counters, indexed by [`Counter`].
pub const MAP_STATS: &str = "L3LB_STATS";

/// Capacity of the frontend map.
pub const MAX_FRONTENDS: u32 = 16_384;
/// Capacity of the flow (reverse NAT) LRU map.
pub const MAX_FLOWS: u32 = 262_144;
/// Endpoints a single frontend can spread over.
pub const MAX_BACKENDS: usize = 32;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

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
        Self { count: 0, _pad: 0, backends: [BackendV4::default(); MAX_BACKENDS] }
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
    /// XDP: a frontend with no endpoint: passed untouched.
    XdpNoBackend = 2,
    /// TC egress: reply of a translated flow, source restored to VIP:port.
    TcRevNat = 3,
    /// TC egress: not a translated flow: passed untouched.
    TcPassNotOurs = 4,
    /// XDP: the flow table could not record the flow (it will retry on the next packet).
    XdpFlowInsertFailed = 5,
}

pub const COUNTER_SLOTS: u32 = 8;

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
    h % count
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
            assert!(hit[..count as usize].iter().all(|&h| h >= mean / 2), "count={count} {hit:?}");
        }
        assert_eq!(flow_slot(1, 2, 0), 0);
    }
}
