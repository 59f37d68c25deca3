//! Map keys and values. Every struct is `#[repr(C)]` with explicit padding and a compile-time
//! size check, so both sides agree on the layout byte for byte. Fields holding network-order
//! values end in `_be`; addresses of both families are kept as the bytes on the wire.
use crate::{MAGLEV_SIZE, MAX_BACKENDS};

/// A VIP of the IPv4 VIP set (key of `L3LB_VIPS_V4`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKeyV4 {
    pub vip_be: u32,
}

/// An IPv6 address as the 16 bytes on the wire, in two words (8-byte aligned, so the program
/// moves it in two loads).
pub type Ip6 = [u64; 2];

/// The [`Ip6`] of an address's 16 bytes.
pub const fn ip6(octets: [u8; 16]) -> Ip6 {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        hi[i] = octets[i];
        lo[i] = octets[i + 8];
        i += 1;
    }
    [u64::from_ne_bytes(hi), u64::from_ne_bytes(lo)]
}

/// The 16 bytes of an [`Ip6`].
pub const fn ip6_octets(addr: Ip6) -> [u8; 16] {
    let hi = addr[0].to_ne_bytes();
    let lo = addr[1].to_ne_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 8 {
        out[i] = hi[i];
        out[i + 8] = lo[i];
        i += 1;
    }
    out
}

/// A VIP of the IPv6 VIP set (key of `L3LB_VIPS_V6`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKeyV6 {
    pub vip: Ip6,
}

/// Value of the VIP sets; no flags are defined yet (always 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipV4 {
    pub flags: u32,
}

/// A service frontend: IPv4 VIP, service port and IP protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrontendKeyV4 {
    pub vip_be: u32,
    pub port_be: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// A service frontend: IPv6 VIP, service port and IP protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrontendKeyV6 {
    pub vip: Ip6,
    pub port_be: u16,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u32,
}

/// [`Frontend::flags`]: `sessionAffinity: ClientIP`; new flows of a client go to the backend its
/// last flow used, for [`Frontend::affinity_timeout_s`] after that flow began.
pub const FRONTEND_AFFINITY: u32 = 1;

/// A frontend's whole backend set and consistent-hashing table, replaced in one map update.
/// The same value type serves both families; `backends` index the family's backend array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frontend {
    /// This frontend's slot in the per-frontend counters.
    pub id: u32,
    /// [`FRONTEND_AFFINITY`], ...
    pub flags: u32,
    pub affinity_timeout_s: u32,
    /// Backends in use by new flows (those the table names); 0: no backend for new flows.
    pub active: u32,
    /// Valid entries at the start of `backends`: the active ones and those draining.
    pub count: u32,
    pub _pad: u32,
    /// Backend ids (slots of the backend array), by local index.
    pub backends: [u32; MAX_BACKENDS],
    /// Maglev lookup table: a flow hashing to slot `s` goes to local index `table[s]`.
    pub table: [u8; MAGLEV_SIZE],
    pub _pad2: [u8; 3],
}

impl Default for Frontend {
    fn default() -> Self {
        Self {
            id: 0,
            flags: 0,
            affinity_timeout_s: 0,
            active: 0,
            count: 0,
            _pad: 0,
            backends: [0; MAX_BACKENDS],
            table: [0; MAGLEV_SIZE],
            _pad2: [0; 3],
        }
    }
}

/// [`BackendV4::state`] / [`BackendV6::state`]: the slot is free; flows naming it are stale.
pub const BACKEND_FREE: u8 = 0;
/// The backend takes new flows.
pub const BACKEND_ACTIVE: u8 = 1;
/// Terminating but still serving: its pinned flows go on, it gets no new ones.
pub const BACKEND_DRAINING: u8 = 2;

/// One local endpoint of one frontend (a slot of `L3LB_BACKENDS_V4`): pod address and target
/// port. `gen` changes whenever the slot is freed, so flows that name a reused slot are stale.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendV4 {
    pub addr_be: u32,
    pub port_be: u16,
    pub state: u8,
    pub _pad: u8,
    pub gen_: u32,
    /// The frontend this backend belongs to (its counter slot).
    pub frontend: u32,
}

/// [`BackendV4`] for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendV6 {
    pub addr: Ip6,
    pub port_be: u16,
    pub state: u8,
    pub _pad: u8,
    pub gen_: u32,
    pub frontend: u32,
    pub _pad2: u32,
}

/// A flow as it arrives from the client (key of `L3LB_CONNS_V4` and `L3LB_NEW_CONNS_V4`):
/// client -> VIP:port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnKeyV4 {
    pub client_be: u32,
    pub vip_be: u32,
    pub client_port_be: u16,
    pub vip_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u16,
}

/// [`ConnKeyV4`] for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnKeyV6 {
    pub client: Ip6,
    pub vip: Ip6,
    pub client_port_be: u16,
    pub vip_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u16,
}

/// The backend a flow is pinned to (value of the conn tables, established and new, and of the
/// affinity tables).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pin {
    pub backend: u32,
    /// The backend slot's `gen_` when the flow was pinned.
    pub gen_: u32,
}

/// A slot of the flow cache (`L3LB_FLOW_CACHE_V4`): a copy of one pin, found by the flow's
/// hash with one array access instead of a hash-table lookup. `check` binds `pin` to the flow's
/// hash ([`crate::hash::pin_check`]), so a slot read while another CPU rewrites it is not
/// mistaken for a pin; a miss falls back to the conn table, which always holds the pin.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedPinV4 {
    pub key: ConnKeyV4,
    pub pin: Pin,
    pub check: u32,
    pub _pad: u32,
}

/// [`CachedPinV4`] for IPv6 (`L3LB_FLOW_CACHE_V6`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedPinV6 {
    pub key: ConnKeyV6,
    pub pin: Pin,
    pub check: u32,
    pub _pad: u32,
}

/// A client of a frontend with `sessionAffinity: ClientIP` (key of `L3LB_AFFINITY_V4`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AffinityKeyV4 {
    pub frontend: u32,
    pub client_be: u32,
}

/// [`AffinityKeyV4`] for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AffinityKeyV6 {
    pub frontend: u32,
    pub _pad: u32,
    pub client: Ip6,
}

/// Where a client's flows of an affine frontend go, and since when (`bpf_ktime_get_ns`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Affinity {
    pub pin: Pin,
    pub since_ns: u64,
}

/// A translated flow as the endpoint's reply carries it (key of `L3LB_FLOWS_V4` and
/// `L3LB_NEW_FLOWS_V4`): endpoint -> client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKeyV4 {
    pub backend_addr_be: u32,
    pub client_addr_be: u32,
    pub backend_port_be: u16,
    pub client_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u16,
}

/// [`FlowKeyV4`] for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKeyV6 {
    pub backend_addr: Ip6,
    pub client_addr: Ip6,
    pub backend_port_be: u16,
    pub client_port_be: u16,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u16,
}

/// What the reply's source must be rewritten to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowNatV4 {
    pub vip_be: u32,
    pub port_be: u16,
    pub _pad: u16,
}

/// [`FlowNatV4`] for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowNatV6 {
    pub vip: Ip6,
    pub port_be: u16,
    pub _pad: u16,
    pub _pad2: u32,
}

/// Prefixes VIPs may come from (value of `L3LB_CONFIG`, one entry): XDP passes anything outside
/// them without a map lookup. No prefix of a family: every address of it is looked up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub v4_count: u32,
    pub v6_count: u32,
    /// (network, mask), network order.
    pub v4: [[u32; 2]; MAX_PREFIXES],
    /// (network, mask).
    pub v6: [[Ip6; 2]; MAX_PREFIXES],
    /// `CONFIG_*` flags.
    pub flags: u32,
    pub _pad: u32,
}

/// [`Config::flags`]: `L3LB_REDIRECT` lists at least one interface, so translated packets are
/// looked up in the FIB for a redirect (without it, no packet pays for that lookup).
pub const CONFIG_REDIRECT: u32 = 1;
/// [`Config::flags`]: the daemon forwards the programs' log records (rare events: a failed flow
/// insert, a state that should not occur; never one per packet) to its own log.
pub const CONFIG_LOG: u32 = 2;

/// Prefixes of each family [`Config`] holds.
pub const MAX_PREFIXES: usize = 8;

/// Packets and bytes seen for one counter slot on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(size_of::<VipKeyV4>() == 4 && size_of::<VipKeyV6>() == 16);
const _: () = assert!(size_of::<VipV4>() == 4);
const _: () = assert!(size_of::<FrontendKeyV4>() == 8 && size_of::<FrontendKeyV6>() == 24);
const _: () = assert!(size_of::<Frontend>() == 24 + 4 * MAX_BACKENDS + MAGLEV_SIZE + 3);
const _: () = assert!(size_of::<Frontend>().is_multiple_of(8));
const _: () = assert!(size_of::<BackendV4>() == 16 && size_of::<BackendV6>() == 32);
const _: () = assert!(size_of::<ConnKeyV4>() == 16 && size_of::<ConnKeyV6>() == 40);
const _: () = assert!(size_of::<Pin>() == 8 && size_of::<Affinity>() == 16);
const _: () = assert!(size_of::<CachedPinV4>() == 32 && size_of::<CachedPinV6>() == 56);
const _: () = assert!(size_of::<AffinityKeyV4>() == 8 && size_of::<AffinityKeyV6>() == 24);
const _: () = assert!(size_of::<FlowKeyV4>() == 16 && size_of::<FlowKeyV6>() == 40);
const _: () = assert!(size_of::<FlowNatV4>() == 8 && size_of::<FlowNatV6>() == 24);
const _: () = assert!(size_of::<Config>() == 8 + 8 * MAX_PREFIXES + 32 * MAX_PREFIXES + 8);
const _: () = assert!(size_of::<Stat>() == 16);

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain-old-data, repr(C), no implicit padding (sizes asserted above).
    unsafe impl aya::Pod for VipKeyV4 {}
    unsafe impl aya::Pod for VipKeyV6 {}
    unsafe impl aya::Pod for VipV4 {}
    unsafe impl aya::Pod for FrontendKeyV4 {}
    unsafe impl aya::Pod for FrontendKeyV6 {}
    unsafe impl aya::Pod for Frontend {}
    unsafe impl aya::Pod for BackendV4 {}
    unsafe impl aya::Pod for BackendV6 {}
    unsafe impl aya::Pod for ConnKeyV4 {}
    unsafe impl aya::Pod for ConnKeyV6 {}
    unsafe impl aya::Pod for Pin {}
    unsafe impl aya::Pod for CachedPinV4 {}
    unsafe impl aya::Pod for CachedPinV6 {}
    unsafe impl aya::Pod for AffinityKeyV4 {}
    unsafe impl aya::Pod for AffinityKeyV6 {}
    unsafe impl aya::Pod for Affinity {}
    unsafe impl aya::Pod for FlowKeyV4 {}
    unsafe impl aya::Pod for FlowKeyV6 {}
    unsafe impl aya::Pod for FlowNatV4 {}
    unsafe impl aya::Pod for FlowNatV6 {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Stat {}
}
