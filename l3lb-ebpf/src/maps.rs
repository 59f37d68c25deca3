//! The maps shared with the daemon (names, key and value types from `l3lb-common`), one set per
//! address family, and the lookups more than one program part makes. Values are copied out
//! ([`raw::get`]) where the daemon may replace them mid-packet; the big frontend and config
//! values are read in place ([`raw::shared`]).
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use l3lb_common::{
    Affinity, AffinityKeyV4, AffinityKeyV6, BackendV4, BackendV6, CONFIG_LOG, CONFIG_REDIRECT,
    COUNTER_SLOTS, CachedPinV4, CachedPinV6, Config, ConnKeyV4, ConnKeyV6, Counter,
    FLOW_CACHE_SLOTS, FlowKeyV4, FlowKeyV6, FlowNatV4, FlowNatV6, Frontend, FrontendKeyV4,
    FrontendKeyV6, Ip6, MAX_AFFINITY, MAX_BACKEND_SLOTS, MAX_FLOWS, MAX_FRONTENDS, MAX_NEW_FLOWS,
    MAX_REDIRECT, MAX_VIPS, Pin, Stat, VipKeyV4, VipKeyV6, VipV4,
};

use crate::raw;

pub const NO_PREALLOC: usize = BPF_F_NO_PREALLOC as usize;
pub const FLOWS: usize = MAX_FLOWS as usize;
pub const NEW_FLOWS: usize = MAX_NEW_FLOWS as usize;
pub const SLOTS: usize = MAX_BACKEND_SLOTS as usize;
pub const CACHE: usize = FLOW_CACHE_SLOTS as usize;
pub const AFFINITY: usize = MAX_AFFINITY as usize;
pub const FRONTENDS: usize = MAX_FRONTENDS as usize;

/// Frontends are large (the Maglev table): allocated on insert, not for the whole capacity.
#[btf_map]
pub static L3LB_FRONTENDS_V4: HashMap<FrontendKeyV4, Frontend, FRONTENDS, NO_PREALLOC> =
    HashMap::new();
#[btf_map]
pub static L3LB_FRONTENDS_V6: HashMap<FrontendKeyV6, Frontend, FRONTENDS, NO_PREALLOC> =
    HashMap::new();

#[btf_map]
pub static L3LB_BACKENDS_V4: Array<BackendV4, SLOTS> = Array::new();
#[btf_map]
pub static L3LB_BACKENDS_V6: Array<BackendV6, SLOTS> = Array::new();

#[btf_map]
pub static L3LB_CONNS_V4: LruHashMap<ConnKeyV4, Pin, FLOWS> = LruHashMap::new();
#[btf_map]
pub static L3LB_CONNS_V6: LruHashMap<ConnKeyV6, Pin, FLOWS> = LruHashMap::new();

/// New flows (one client packet so far) apart from the established ones above: a flood of
/// them churns only these.
#[btf_map]
pub static L3LB_NEW_CONNS_V4: LruHashMap<ConnKeyV4, Pin, NEW_FLOWS> = LruHashMap::new();
#[btf_map]
pub static L3LB_NEW_CONNS_V6: LruHashMap<ConnKeyV6, Pin, NEW_FLOWS> = LruHashMap::new();

#[btf_map]
pub static L3LB_FLOW_CACHE_V4: Array<CachedPinV4, CACHE> = Array::new();
#[btf_map]
pub static L3LB_FLOW_CACHE_V6: Array<CachedPinV6, CACHE> = Array::new();

#[btf_map]
pub static L3LB_AFFINITY_V4: LruHashMap<AffinityKeyV4, Affinity, AFFINITY> = LruHashMap::new();
#[btf_map]
pub static L3LB_AFFINITY_V6: LruHashMap<AffinityKeyV6, Affinity, AFFINITY> = LruHashMap::new();

#[btf_map]
pub static L3LB_FLOWS_V4: LruHashMap<FlowKeyV4, FlowNatV4, FLOWS> = LruHashMap::new();
#[btf_map]
pub static L3LB_FLOWS_V6: LruHashMap<FlowKeyV6, FlowNatV6, FLOWS> = LruHashMap::new();

#[btf_map]
pub static L3LB_NEW_FLOWS_V4: LruHashMap<FlowKeyV4, FlowNatV4, NEW_FLOWS> = LruHashMap::new();
#[btf_map]
pub static L3LB_NEW_FLOWS_V6: LruHashMap<FlowKeyV6, FlowNatV6, NEW_FLOWS> = LruHashMap::new();

#[btf_map]
pub static L3LB_VIPS_V4: HashMap<VipKeyV4, VipV4, { MAX_VIPS as usize }> = HashMap::new();
#[btf_map]
pub static L3LB_VIPS_V6: HashMap<VipKeyV6, VipV4, { MAX_VIPS as usize }> = HashMap::new();

#[btf_map]
pub static L3LB_STATS: PerCpuArray<Stat, { COUNTER_SLOTS as usize }> = PerCpuArray::new();
#[btf_map]
pub static L3LB_FRONTEND_STATS: PerCpuArray<Stat, FRONTENDS> = PerCpuArray::new();
#[btf_map]
pub static L3LB_BACKEND_STATS_V4: PerCpuArray<Stat, SLOTS> = PerCpuArray::new();
#[btf_map]
pub static L3LB_BACKEND_STATS_V6: PerCpuArray<Stat, SLOTS> = PerCpuArray::new();

#[btf_map]
pub static L3LB_CONFIG: Array<Config, 1> = Array::new();

/// Interfaces XDP may redirect translated packets into, by ifindex (the daemon keeps it).
#[btf_map]
pub static L3LB_REDIRECT: DevMapHash<{ MAX_REDIRECT as usize }> = DevMapHash::new();

/// Whether `addr_be` is an IPv4 VIP with at least one frontend.
#[inline(always)]
pub fn is_vip_v4(addr_be: u32) -> bool {
    L3LB_VIPS_V4.get_ptr(VipKeyV4 { vip_be: addr_be }).is_some()
}

/// Whether `addr` is an IPv6 VIP with at least one frontend.
#[inline(always)]
pub fn is_vip_v6(addr: Ip6) -> bool {
    L3LB_VIPS_V6.get_ptr(VipKeyV6 { vip: addr }).is_some()
}

#[inline(always)]
fn config() -> Option<&'static Config> {
    raw::shared(&L3LB_CONFIG, &0)
}

/// Whether the daemon has listed any redirect target.
#[inline(always)]
pub fn redirecting() -> bool {
    config().is_some_and(|c| c.flags & CONFIG_REDIRECT != 0)
}

/// Whether the daemon forwards the programs' log records (rare events only).
#[inline(always)]
pub fn logging() -> bool {
    config().is_some_and(|c| c.flags & CONFIG_LOG != 0)
}

/// The translation of reply `key`: an established flow's, else a new flow's; with the counter
/// of the table it came from.
#[inline(always)]
pub fn reply_v4(key: &FlowKeyV4) -> Option<(FlowNatV4, Counter)> {
    match raw::get(&L3LB_FLOWS_V4, key) {
        Some(nat) => Some((nat, Counter::TcRevNat)),
        None => Some((raw::get(&L3LB_NEW_FLOWS_V4, key)?, Counter::TcRevNatNew)),
    }
}

/// [`reply_v4`] for IPv6.
#[inline(always)]
pub fn reply_v6(key: &FlowKeyV6) -> Option<(FlowNatV6, Counter)> {
    match raw::get(&L3LB_FLOWS_V6, key) {
        Some(nat) => Some((nat, Counter::TcRevNat)),
        None => Some((raw::get(&L3LB_NEW_FLOWS_V6, key)?, Counter::TcRevNatNew)),
    }
}

/// Whether `addr_be` lies in one of the VIP prefixes (or no IPv4 prefix is configured).
#[inline(always)]
pub fn in_prefixes_v4(addr_be: u32) -> bool {
    let Some(config) = config() else {
        return true;
    };
    let count = config.v4_count as usize;
    if count == 0 {
        return true;
    }
    let mut i = 0;
    while i < config.v4.len() && i < count {
        let [net, mask] = config.v4[i];
        if addr_be & mask == net {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether `addr` lies in one of the IPv6 VIP prefixes (or none is configured).
#[inline(always)]
pub fn in_prefixes_v6(addr: Ip6) -> bool {
    let Some(config) = config() else {
        return true;
    };
    let count = config.v6_count as usize;
    if count == 0 {
        return true;
    }
    let mut i = 0;
    while i < config.v6.len() && i < count {
        let [net, mask] = config.v6[i];
        if addr[0] & mask[0] == net[0] && addr[1] & mask[1] == net[1] {
            return true;
        }
        i += 1;
    }
    false
}
